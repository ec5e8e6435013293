"""Checklist items 14-17 and 19: consumer-group CRUD, server-side assignment,
timeouts, checkpoints, and splits during consumption. Driven call by call with
the SDK's own consumer-group API (the ConsumerWorker runs in test_consumer_worker.py)."""

import time

import pytest
from aliyun.log import LogException, LogItem, PutLogsRequest

from conftest import LOGSTORE, PROJECT

G = "cg"


def hb(client, consumer, held=(), group=G):
    return sorted(client.heart_beat(PROJECT, LOGSTORE, group, consumer, list(held)).get_shards())


def test_14_consumer_group_crud(client):
    client.create_consumer_group(PROJECT, LOGSTORE, G, timeout=30, in_order=False)
    with pytest.raises(LogException) as e:
        client.create_consumer_group(PROJECT, LOGSTORE, G, timeout=30)
    assert e.value.get_error_code() == "ConsumerGroupAlreadyExist"

    groups = client.list_consumer_group(PROJECT, LOGSTORE).get_consumer_groups()
    assert [(g.get_consumer_group_name(), g.get_timeout(), g.is_in_order()) for g in groups] == [(G, 30, False)]
    client.update_consumer_group(PROJECT, LOGSTORE, G, timeout=45, in_order=True)
    g = client.list_consumer_group(PROJECT, LOGSTORE).get_consumer_groups()[0]
    assert (g.get_timeout(), g.is_in_order()) == (45, True)

    client.delete_consumer_group(PROJECT, LOGSTORE, G)
    with pytest.raises(LogException) as e:
        hb(client, "c1")
    assert e.value.get_error_code() == "ConsumerGroupNotExist"

    for i in range(30):
        client.create_consumer_group(PROJECT, LOGSTORE, f"g{i:02}", timeout=30)
    with pytest.raises(LogException) as e:
        client.create_consumer_group(PROJECT, LOGSTORE, "g30", timeout=30)
    assert e.value.get_error_code() == "ConsumerGroupQuotaExceed"


def test_15_assignment_is_balanced_and_moves_only_after_release(start_devstack):
    client = start_devstack(shards=4).client()
    client.create_consumer_group(PROJECT, LOGSTORE, G, timeout=60)
    assert hb(client, "a") == [0, 1, 2, 3], "one consumer gets every shard"
    assert hb(client, "a", [0, 1, 2, 3]) == [0, 1, 2, 3]

    assert hb(client, "b") == [], "shards in transfer wait for their holder"
    a_now = hb(client, "a", [0, 1, 2, 3])
    assert len(a_now) == 2, "transferring shards leave the holder's reply at once"
    assert hb(client, "b") == [], "still reported by a: not handed over yet"
    hb(client, "a", a_now)  # a lets go
    b_now = hb(client, "b")
    assert len(b_now) == 2 and not set(a_now) & set(b_now)

    # A third and fourth consumer: ±1 holds at every step once holders release.
    hb(client, "c")
    for _ in range(3):
        a_now = hb(client, "a", a_now)
        b_now = hb(client, "b", b_now)
        c_now = hb(client, "c", hb(client, "c"))
    loads = sorted(len(x) for x in (a_now, b_now, c_now))
    assert loads == [1, 1, 2]


def test_15_consumers_beyond_the_shard_count_get_nothing(client):
    client.create_consumer_group(PROJECT, LOGSTORE, G, timeout=60)
    a = hb(client, "a")
    b = hb(client, "b")
    a = hb(client, "a", a)
    b = hb(client, "b", b)
    assert len(a) == 1 and len(b) == 1
    assert hb(client, "c") == []


def test_16_a_silent_consumer_loses_its_shards(client):
    client.create_consumer_group(PROJECT, LOGSTORE, G, timeout=2)
    a = hb(client, "a")
    assert hb(client, "a", a) == [0, 1]
    hb(client, "b")
    time.sleep(3)
    assert hb(client, "b") == [0, 1]


def test_17_checkpoints_round_trip_and_ownership(client):
    client.create_consumer_group(PROJECT, LOGSTORE, G, timeout=60)
    before = client.get_check_point(PROJECT, LOGSTORE, G).get_consumer_group_check_points()
    assert sorted((c["shard"], c["checkpoint"]) for c in before) == [(0, ""), (1, "")], \
        "every shard has an entry, committed or not"
    one = client.get_check_point(PROJECT, LOGSTORE, G, shard=1).get_consumer_group_check_points()
    assert [(c["shard"], c["checkpoint"]) for c in one] == [(1, "")]

    end = client.get_cursor(PROJECT, LOGSTORE, 0, "end").get_cursor()
    # Python sends forceSuccess=True (capital T).
    client.update_check_point(PROJECT, LOGSTORE, G, 0, end)
    cp = client.get_check_point(PROJECT, LOGSTORE, G, shard=0).get_consumer_group_check_points()[0]
    assert cp["checkpoint"] == end
    # Rust and Go send forceSuccess=true.
    client._send("POST", PROJECT, b'{"shard": 1, "checkpoint": "%s"}' % end.encode(),
                 f"/logstores/{LOGSTORE}/consumergroups/{G}",
                 {"type": "checkpoint", "consumer": "", "forceSuccess": "true"}, {"Content-Type": "application/json"})
    assert client.get_check_point(PROJECT, LOGSTORE, G, shard=1).get_consumer_group_check_points()[0]["checkpoint"] == end

    assert hb(client, "owner") == [0, 1]
    hb(client, "other")
    with pytest.raises(LogException) as e:
        client.update_check_point(PROJECT, LOGSTORE, G, 0, end, consumer="other", force_success=False)
    assert e.value.get_error_code() == "ConsumerNotMatch"
    with pytest.raises(LogException) as e:
        client.update_check_point(PROJECT, LOGSTORE, G, 0, "not base64 !", consumer="owner")
    assert e.value.get_error_code() == "InvalidShardCheckPoint"


def _put(client, seqs, key):
    items = [LogItem(timestamp=1790000000, contents=[("seq", str(s))]) for s in seqs]
    client.put_logs(PutLogsRequest(PROJECT, LOGSTORE, "t", "10.0.0.1", items, hashKey=key))


def _drain(client, shard, group=G):
    """Reads a shard from its checkpoint (or begin) to its end; returns (seqs, end cursor)."""
    cps = client.get_check_point(PROJECT, LOGSTORE, group, shard=shard).get_consumer_group_check_points()
    cursor = cps[0]["checkpoint"] or client.get_cursor(PROJECT, LOGSTORE, shard, "begin").get_cursor()
    seqs = []
    while True:
        resp = client.pull_logs(PROJECT, LOGSTORE, shard, cursor)
        if resp.get_loggroup_count() == 0:
            return seqs, cursor
        seqs += [int(log.Contents[0].Value) for g in resp.get_loggroup_list().LogGroups for log in g.Logs]
        cursor = resp.get_next_cursor()


def test_19_split_during_consumption_in_order(client):
    client.create_consumer_group(PROJECT, LOGSTORE, G, timeout=60, in_order=True)
    _put(client, range(0, 10), "1" + "0" * 31)  # shard 0
    _put(client, range(100, 110), "c" + "0" * 31)  # shard 1
    assert hb(client, "c1") == [0, 1]

    split = client.split_shard(PROJECT, LOGSTORE, 0, "4" + "0" * 31).get_shards_info()
    assert sorted(s["shardID"] for s in split) == [0, 2, 3]
    shards = {s["shardID"]: s for s in client.list_shards(PROJECT, LOGSTORE).get_shards_info()}
    assert shards[0]["status"] == "readonly"
    assert (shards[2]["inclusiveBeginKey"], shards[2]["exclusiveEndKey"]) == ("0" * 32, "4" + "0" * 31)

    # Keys of the parent's range now route to its children (item 20).
    _put(client, range(200, 205), "1" + "0" * 31)  # -> 2
    _put(client, range(300, 305), "5" + "0" * 31)  # -> 3
    assert hb(client, "c1", [0, 1]) == [0, 1], "in order: children wait for the parent"

    parent, end = _drain(client, 0)
    assert parent == list(range(10))
    client.update_check_point(PROJECT, LOGSTORE, G, 0, end, consumer="c1", force_success=False)
    assert hb(client, "c1", [0, 1]) == [1, 2, 3], "the finished parent is over; children are assigned"
    assert _drain(client, 2)[0] == list(range(200, 205))
    assert _drain(client, 3)[0] == list(range(300, 305))
    assert hb(client, "c1", [1, 2, 3]) == [1, 2, 3], "an over shard is never assigned again"
