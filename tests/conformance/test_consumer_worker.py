"""Checklist items 18 and 21: two ConsumerWorker processes of the official SDK
share a logstore; one is killed with SIGKILL and the other takes its shards from
the checkpoint, losing nothing. Injected faults are retried or slow the consumer
down, never losing data."""

import os
import subprocess
import sys
import time
from collections import Counter

from aliyun.log import LogItem, PutLogsRequest

from conftest import AK, LOGSTORE, PROJECT, SK, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def start_worker(devstack, name, outfile):
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(devstack.proxy_env)
    return subprocess.Popen(
        [sys.executable, os.path.join(HERE, "helpers", "consumer_worker.py"),
         devstack.endpoint, AK, SK, PROJECT, LOGSTORE, "workers", name, str(outfile)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def read(outfile):
    """-> (Counter of seq values, shards currently held)"""
    seqs, held = Counter(), set()
    if not outfile.exists():
        return seqs, held
    for line in outfile.read_text().splitlines():
        parts = line.split()
        if parts[0] == "seq" and len(parts) == 3:
            seqs[int(parts[2])] += 1
        elif parts[0] == "init":
            held.add(int(parts[1]))
        elif parts[0] == "stop":
            held.discard(int(parts[1]))
    return seqs, held


def put_batch(client, seqs):
    seqs = list(seqs)
    for i in range(0, len(seqs), 10):
        items = [LogItem(timestamp=1790000000, contents=[("seq", str(s))]) for s in seqs[i:i + 10]]
        client.put_logs(PutLogsRequest(PROJECT, LOGSTORE, "t", "10.0.0.1", items))


def test_18_two_workers_share_then_survivor_takes_over_from_checkpoint(start_devstack, tmp_path):
    d = start_devstack(shards=4)
    client = d.client()
    out_a, out_b = tmp_path / "a.txt", tmp_path / "b.txt"
    a = start_worker(d, "worker-a", out_a)
    b = start_worker(d, "worker-b", out_b)
    try:
        # Steady state: 2 + 2 shards.
        wait_for(lambda: len(read(out_a)[1]) == 2 and len(read(out_b)[1]) == 2, 60, "a 2/2 split of 4 shards")
        assert not read(out_a)[1] & read(out_b)[1]
        put_batch(client, range(0, 1000))
        both = lambda: read(out_a)[0] + read(out_b)[0]
        wait_for(lambda: set(range(1000)) <= set(both()), 60, "all of batch 1 consumed")
        time.sleep(1)
        assert max(both().values()) == 1, "steady state: every event exactly once"
        assert read(out_a)[0] and read(out_b)[0], "both workers consumed"

        # SIGKILL a; b takes its shards from their checkpoints.
        a.kill()
        a.wait()
        put_batch(client, range(1000, 2000))
        wait_for(lambda: len(read(out_b)[1]) == 4, 60, "b holding all 4 shards")
        wait_for(lambda: set(range(1000, 2000)) <= set(read(out_b)[0]), 60, "b consuming all of batch 2")
        missing = set(range(2000)) - set(both())
        assert not missing, f"lost events: {sorted(missing)[:10]}"
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()


def test_21_injected_5xx_are_retried_transparently(devstack, client):
    devstack.set_faults(error_every=3)
    put_batch(client, range(30))  # 3 puts
    cursor = client.get_cursor(PROJECT, LOGSTORE, 0, "begin").get_cursor()
    got = client.pull_logs(PROJECT, LOGSTORE, 0, cursor).get_log_count()
    got += client.pull_logs(PROJECT, LOGSTORE, 1, client.get_cursor(PROJECT, LOGSTORE, 1, "begin").get_cursor()).get_log_count()
    assert got == 30
    injected = devstack.stats()["injected"]
    assert injected.get("InternalServerError", 0) + injected.get("ServerBusy", 0) >= 2


def test_21_read_quota_errors_slow_the_consumer_without_loss(start_devstack, tmp_path):
    # Every 2nd pull fails: each shard needs a successful pull, so at least one
    # 403 lands before everything is consumed.
    d = start_devstack("--fault-read-quota-every", "2", shards=2)
    put_batch(d.client(), range(300))
    out = tmp_path / "w.txt"
    w = start_worker(d, "worker-q", out)
    try:
        wait_for(lambda: set(range(300)) <= set(read(out)[0]), 90, "all events despite 403s")
    finally:
        w.terminate()
        w.wait(timeout=15)
    assert d.stats()["injected"].get("ShardReadQuotaExceed", 0) >= 1
