"""Conformance of devstack's SLS server with Alibaba's official Python SDK.

Every test starts its own ``trail-devstack sls`` process on a free loopback
port and kills it afterwards. The SDK reaches it unchanged, the ways the
protocol notes (§1.1) found work for the real client:

* proxy mode (default): ``HTTP_PROXY`` points at devstack and the endpoint is
  ``sls.test:PORT``; requests sends absolute-form targets;
* /etc/hosts mode and bare-IP mode: see test_auth_and_addressing.py.

Test names carry the checklist item they prove (``test_01_...``).
"""

import json
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from aliyun.log import LogClient

ROOT = Path(__file__).resolve().parents[2]
AK = "conf-ak"
SK = "conf-secret"
PROJECT = "conf"
LOGSTORE = "ls"


def devstack_bin():
    path = os.environ.get("TRAIL_DEVSTACK_BIN") or str(ROOT / "target" / "debug" / "trail-devstack")
    if not Path(path).exists():
        pytest.exit(f"{path} not found: build it first (cargo build --workspace --bins)", returncode=2)
    return path


class Devstack:
    """A ``trail-devstack sls`` process."""

    def __init__(self, *args, listen="127.0.0.1:0", shards=2, project=PROJECT, logstore=LOGSTORE):
        cmd = [
            devstack_bin(), "sls", "--listen", listen,
            "--access-key-id", AK, "--access-key-secret", SK,
            "--project", project, "--logstore", logstore, "--shards", str(shards),
            *args,
        ]
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        first = self.proc.stdout.readline()
        assert first.startswith("listening on "), f"devstack did not start: {first!r}"
        self.addr = first.split()[-1]
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    # Admin endpoints, reached directly (never through a proxy).
    def admin(self, method, path, body=None):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.addr}/_devstack/{path}", data=data, method=method)
        with opener.open(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self):
        return self.admin("GET", "stats")

    def set_faults(self, **faults):
        return self.admin("PUT", "faults", faults)

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=10)

    @property
    def proxy_env(self):
        return {"HTTP_PROXY": f"http://{self.addr}", "http_proxy": f"http://{self.addr}"}

    @property
    def endpoint(self):
        return f"sls.test:{self.port}"

    def client(self, access_key_id=AK, access_key=SK, **kw):
        return LogClient(self.endpoint, access_key_id, access_key, **kw)


@pytest.fixture
def start_devstack(monkeypatch):
    """Starts devstack processes (killed at teardown) and points the SDK's
    proxy at the last one started."""
    started = []

    def start(*args, **kw):
        d = Devstack(*args, **kw)
        started.append(d)
        for k, v in d.proxy_env.items():
            monkeypatch.setenv(k, v)
        for k in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(k, raising=False)
        return d

    yield start
    for d in started:
        assert d.alive(), "devstack must never die on client input"
        d.kill()


@pytest.fixture
def devstack(start_devstack):
    return start_devstack()


@pytest.fixture
def client(devstack):
    return devstack.client()


def wait_for(predicate, timeout, what, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
