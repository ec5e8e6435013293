"""Checklist items 1-3: signatures, STS tokens, clock skew, project addressing."""

import datetime
import json
import os
import subprocess
import sys
import tempfile

import pytest
from aliyun.log import LogClient, LogException
from aliyun.log.auth import AuthV1

from conftest import AK, LOGSTORE, PROJECT, SK, Devstack

HERE = os.path.dirname(os.path.abspath(__file__))


def test_01_v1_signature_passes_with_x_log_date_unsigned(client):
    # Python adds x-log-date after signing; devstack must verify without it.
    shards = client.list_shards(PROJECT, LOGSTORE).get_shards_info()
    assert [s["shardID"] for s in shards] == [0, 1]


def test_01_wrong_secret_is_signature_not_match(devstack):
    with pytest.raises(LogException) as e:
        devstack.client(access_key="not-the-secret").list_shards(PROJECT, LOGSTORE)
    assert e.value.get_error_code() == "SignatureNotMatch"
    assert e.value.get_resp_status() == 401
    assert e.value.get_request_id(), "every answer carries x-log-requestid"
    assert "not matched" in e.value.get_error_message()


def test_01_unknown_access_key_is_unauthorized(devstack):
    with pytest.raises(LogException) as e:
        devstack.client(access_key_id="nobody").list_shards(PROJECT, LOGSTORE)
    assert e.value.get_error_code() == "Unauthorized"
    assert e.value.get_resp_status() == 401


def test_02_sts_token_is_signed_and_accepted(start_devstack):
    d = start_devstack("--sts-credential", "STS.devstack:sts-secret:token-123")
    ok = d.client(access_key_id="STS.devstack", access_key="sts-secret", securityToken="token-123")
    assert len(ok.list_shards(PROJECT, LOGSTORE).get_shards_info()) == 2
    wrong = d.client(access_key_id="STS.devstack", access_key="sts-secret", securityToken="expired")
    with pytest.raises(LogException) as e:
        wrong.list_shards(PROJECT, LOGSTORE)
    assert e.value.get_error_code() == "Unauthorized"


def test_02_date_more_than_15_minutes_off_is_request_time_expired(client, monkeypatch):
    stale = (datetime.datetime.utcnow() - datetime.timedelta(minutes=20)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    monkeypatch.setattr(AuthV1, "_getGMT", staticmethod(lambda: stale))
    with pytest.raises(LogException) as e:
        client.list_shards(PROJECT, LOGSTORE)
    assert e.value.get_error_code() == "RequestTimeExpired"
    assert e.value.get_resp_status() == 400


def test_03_proxy_mode_resolves_the_project(client, devstack):
    # The default fixture is proxy mode: absolute-form requests to conf.sls.test.
    assert client.get_project(PROJECT).get_projectname() == PROJECT
    assert devstack.stats()["apis"]["Project"]["200"] >= 1


def _run_isolated(script, env):
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)


LIST_SHARDS = (
    "import json,sys; from aliyun.log import LogClient; "
    "c = LogClient(sys.argv[1] if len(sys.argv) > 1 else {endpoint!r}, {ak!r}, {sk!r}); "
    "print(json.dumps(c.list_shards({project!r}, {logstore!r}).get_shards_info()))"
)


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    return env


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace over /etc/hosts")
def test_03_etc_hosts_mode_resolves_the_project(devstack):
    """/etc/hosts names conf.sls.test; no proxy. The hosts file is replaced only
    inside a private mount namespace of the child process."""
    with tempfile.NamedTemporaryFile("w", suffix=".hosts", delete=False) as hosts:
        hosts.write("127.0.0.1 localhost\n127.0.0.1 conf.sls.test\n")
    script = LIST_SHARDS.format(endpoint=devstack.endpoint, ak=AK, sk=SK, project=PROJECT, logstore=LOGSTORE)
    cmd = f"mount --bind {hosts.name} /etc/hosts && exec {sys.executable} -c \"$SCRIPT\""
    out = subprocess.run(
        ["unshare", "--mount", "sh", "-c", cmd],
        env=dict(_clean_env(), SCRIPT=script), capture_output=True, text=True, timeout=60,
    )
    os.unlink(hosts.name)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="bare-IP mode needs port 80")
def test_03_bare_ip_mode_resolves_the_project():
    """Endpoint '127.0.0.2': Python dials http://127.0.0.2:80 and sends
    Host: conf.127.0.0.2. 127.0.0.2 keeps us off anything on 127.0.0.1:80."""
    d = Devstack(listen="127.0.0.2:80")
    try:
        script = LIST_SHARDS.format(endpoint="127.0.0.2", ak=AK, sk=SK, project=PROJECT, logstore=LOGSTORE)
        out = _run_isolated(script, _clean_env())
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)) == 2
    finally:
        d.kill()


def test_01_v4_signatures_verify_for_every_kind_of_call(devstack):
    from aliyun.log.auth import AUTH_VERSION_4
    from aliyun.log import LogItem, PutLogsRequest

    v4 = devstack.client(auth_version=AUTH_VERSION_4, region="cn-hangzhou")
    assert len(v4.list_shards(PROJECT, LOGSTORE).get_shards_info()) == 2
    v4.put_logs(PutLogsRequest(PROJECT, LOGSTORE, "t", "10.0.0.1",
                               [LogItem(timestamp=1790000000, contents=[("k", "v w+x=y")])], hashKey="0" * 32))
    cursor = v4.get_cursor(PROJECT, LOGSTORE, 0, "begin").get_cursor()  # contains '=' to encode
    assert v4.pull_logs(PROJECT, LOGSTORE, 0, cursor).get_log_count() == 1
    v4.create_consumer_group(PROJECT, LOGSTORE, "v4group", timeout=30)
    v4.update_check_point(PROJECT, LOGSTORE, "v4group", 0, cursor)  # consumer='' : an empty value

    wrong = devstack.client(access_key="nope", auth_version=AUTH_VERSION_4, region="cn-hangzhou")
    with pytest.raises(LogException) as e:
        wrong.list_shards(PROJECT, LOGSTORE)
    assert e.value.get_error_code() == "SignatureNotMatch"
