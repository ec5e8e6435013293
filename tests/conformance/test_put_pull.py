"""Checklist items 6-13 and 20: PutLogs in every compression, routing, cursors,
PullLogs semantics and limits."""

import base64

import pytest
from aliyun.log import LogException, LogItem, PutLogsRequest

from conftest import LOGSTORE, PROJECT

TOPIC = "actiontrail_audit_event"
SOURCE = "10.0.0.7"


def items(start, n, t=1790000000):
    out = []
    for i in range(start, start + n):
        item = LogItem(timestamp=t + i, contents=[("event", f'{{"eventId":"e-{i}","who":"ü{i}"}}'), ("seq", str(i)), ("z", "")])
        item.set_time_nano_part(i * 1000 + 7)
        out.append(item)
    return out


def put(client, start, n, key=None, **kw):
    req = PutLogsRequest(PROJECT, LOGSTORE, TOPIC, SOURCE, items(start, n), hashKey=key,
                         logtags=[("__pack_id__", f"81C4812927C6B529-{start:X}")], **kw)
    return client.put_logs(req)


def pull_all(client, shard, cursor=None, count=1000, **kw):
    """Reads a shard to its end; returns (log groups, final cursor)."""
    cursor = cursor or client.get_cursor(PROJECT, LOGSTORE, shard, "begin").get_cursor()
    groups = []
    while True:
        resp = client.pull_logs(PROJECT, LOGSTORE, shard, cursor, count=count, **kw)
        if resp.get_loggroup_count() == 0:
            assert resp.get_next_cursor() == cursor
            return groups, cursor
        groups.extend(resp.get_loggroup_list().LogGroups)
        cursor = resp.get_next_cursor()


def cursor_int(c):
    return int(base64.b64decode(c + "=" * (-len(c) % 4)))


@pytest.mark.parametrize("how", [{"compress": True}, {"compress_type": "zstd"}, {"compress": False}],
                         ids=["lz4", "zstd", "none"])
def test_06_put_logs_round_trip_intact(client, how):
    put(client, 0, 5, key="0" * 32, **how)
    groups, _ = pull_all(client, 0)
    assert len(groups) == 1
    g = groups[0]
    assert g.Topic == TOPIC and g.Source == SOURCE
    assert [(t.Key, t.Value) for t in g.LogTags] == [("__pack_id__", "81C4812927C6B529-0")]
    for i, log in enumerate(g.Logs):
        assert log.Time == 1790000000 + i
        assert log.Time_ns == i * 1000 + 7
        assert [c.Key for c in log.Contents] == ["event", "seq", "z"], "key order is kept"
        assert log.Contents[0].Value == f'{{"eventId":"e-{i}","who":"ü{i}"}}'


def test_07_route_key_lands_in_its_shard_and_go_style_put_is_accepted(client):
    put(client, 0, 1, key="00000000000000000000000000000001")
    put(client, 10, 1, key="f" * 32)
    put(client, 20, 1, key="7fffffffffffffffffffffffffffffff")
    in0, _ = pull_all(client, 0)
    in1, _ = pull_all(client, 1)
    seqs = lambda gs: [log.Contents[1].Value for g in gs for log in g.Logs]
    assert seqs(in0) == ["0", "20"]
    assert seqs(in1) == ["10"]

    # Go SDK without a hash key: POST /logstores/{ls}. Signed by the SDK's own code.
    from aliyun.log.log_logs_pb2 import LogGroup
    lg = LogGroup()
    lg.Topic = "go-style"
    log = lg.Logs.add()
    log.Time = 1790000000
    c = log.Contents.add()
    c.Key, c.Value = "k", "v"
    body = lg.SerializeToString()
    client._send("POST", PROJECT, body, f"/logstores/{LOGSTORE}", {},
                 {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(body))})
    topics = [g.Topic for s in (0, 1) for g in pull_all(client, s)[0]]
    assert "go-style" in topics


def test_08_begin_cursor_reads_in_write_order_and_end_repeats_the_cursor(client):
    for k in range(6):
        put(client, k * 3, 3, key="0" * 32)
    groups, end = pull_all(client, 0, count=4)
    seqs = [int(log.Contents[1].Value) for g in groups for log in g.Logs]
    assert seqs == list(range(18))
    resp = client.pull_logs(PROJECT, LOGSTORE, 0, end)
    assert resp.get_loggroup_count() == 0
    assert resp.get_next_cursor() == end
    assert resp.get_all_headers()["x-log-bodyrawsize"] == "0"


def test_09_end_cursor_time_cursor_and_cursor_time(client):
    put(client, 0, 1, key="0" * 32)
    end = client.get_cursor(PROJECT, LOGSTORE, 0, "end").get_cursor()
    assert client.pull_logs(PROJECT, LOGSTORE, 0, end).get_loggroup_count() == 0
    put(client, 1, 1, key="0" * 32)
    resp = client.pull_logs(PROJECT, LOGSTORE, 0, end)
    assert resp.get_loggroup_count() == 1
    assert resp.get_loggroup_list().LogGroups[0].Logs[0].Contents[1].Value == "1"

    begin = client.get_cursor(PROJECT, LOGSTORE, 0, "begin").get_cursor()
    t = client.get_cursor_time(PROJECT, LOGSTORE, 0, begin).get_cursor_time()
    assert client.get_cursor(PROJECT, LOGSTORE, 0, t).get_cursor() == begin
    assert client.get_cursor(PROJECT, LOGSTORE, 0, t + 3600).get_cursor() == \
        client.get_cursor(PROJECT, LOGSTORE, 0, "end").get_cursor()
    assert client.get_cursor(PROJECT, LOGSTORE, 0, t - 3600).get_cursor() == begin
    # The previous cursor of the end is the last group: its time is t (same second or later).
    prev = client.get_previous_cursor_time(PROJECT, LOGSTORE, 0,
                                           client.get_cursor(PROJECT, LOGSTORE, 0, "end").get_cursor())
    assert prev.get_cursor_time() >= t


def test_10_count_caps_end_cursor_stops_and_both_type_spellings_work(client):
    for k in range(5):
        put(client, k, 1, key="0" * 32)
    begin = client.get_cursor(PROJECT, LOGSTORE, 0, "begin").get_cursor()
    assert client.pull_logs(PROJECT, LOGSTORE, 0, begin, count=2).get_loggroup_count() == 2
    stop = base64.b64encode(str(cursor_int(begin) + 3).encode()).decode()
    resp = client.pull_logs(PROJECT, LOGSTORE, 0, begin, end_cursor=stop)  # Python: end_cursor
    assert resp.get_loggroup_count() == 3 and resp.get_next_cursor() == stop
    # Rust and the PullData docs spell it endCursor, with type=logs.
    _, headers = client._send("GET", PROJECT, None, f"/logstores/{LOGSTORE}/shards/0",
                              {"type": "logs", "cursor": begin, "count": "100", "endCursor": stop},
                              {"Accept": "application/x-protobuf", "Accept-Encoding": "lz4"}, "binary")
    assert headers["x-log-count"] == "3"


@pytest.mark.parametrize("accept, header", [(None, "lz4"), ("zstd", "zstd")], ids=["lz4", "zstd"])
def test_11_compressed_pull_bodies_decode(client, accept, header):
    put(client, 0, 50, key="0" * 32)
    resp = client.pull_logs(PROJECT, LOGSTORE, 0, client.get_cursor(PROJECT, LOGSTORE, 0, "begin").get_cursor(),
                            accept_compress_type=accept)
    assert resp.get_all_headers()["x-log-compresstype"] == header
    assert int(resp.get_all_headers()["x-log-bodyrawsize"]) == resp.get_loggroup_list().ByteSize()
    assert resp.get_log_count() == 50


def test_11_uncompressed_pull_has_no_compresstype(client):
    put(client, 0, 5, key="0" * 32)
    resp = client.pull_logs(PROJECT, LOGSTORE, 0, client.get_cursor(PROJECT, LOGSTORE, 0, "begin").get_cursor(),
                            compress=False)
    assert "x-log-compresstype" not in resp.get_all_headers()
    assert resp.get_log_count() == 5


def test_12_read_last_cursor_and_consecutive_cursors(client):
    for k in range(4):
        put(client, k, 1, key="0" * 32)
    cursor = client.get_cursor(PROJECT, LOGSTORE, 0, "begin").get_cursor()
    for _ in range(4):
        resp = client.pull_logs(PROJECT, LOGSTORE, 0, cursor, count=1)
        nxt = resp.get_next_cursor()
        assert cursor_int(nxt) == cursor_int(cursor) + 1
        assert int(resp.get_all_headers()["x-log-read-last-cursor"]) == cursor_int(nxt) - 1
        cursor = nxt


def test_13_malformed_cursor_is_parameter_invalid(client):
    with pytest.raises(LogException) as e:
        client.pull_logs(PROJECT, LOGSTORE, 0, "this is not a cursor")
    assert e.value.get_error_code() == "ParameterInvalid"


def test_13_out_of_range_cursor_is_invalid_cursor_or_clamped(client, start_devstack):
    far = base64.b64encode(str(9 * 10**18).encode()).decode()
    with pytest.raises(LogException) as e:
        client.pull_logs(PROJECT, LOGSTORE, 0, far)
    assert e.value.get_error_code() == "InvalidCursor"

    clamped = start_devstack("--clamp-cursors").client()
    resp = clamped.pull_logs(PROJECT, LOGSTORE, 0, far)
    assert resp.get_loggroup_count() == 0
    assert resp.get_next_cursor() == far


def test_20_body_over_10_mib_is_post_body_too_large(client):
    big = [LogItem(timestamp=1790000000, contents=[("blob", "x" * (1 << 20))]) for _ in range(11)]
    with pytest.raises(LogException) as e:
        client.put_logs(PutLogsRequest(PROJECT, LOGSTORE, TOPIC, SOURCE, big, compress=False))
    assert e.value.get_error_code() == "PostBodyTooLarge"
    assert e.value.get_resp_status() == 413
    # And the server keeps serving.
    assert len(client.list_shards(PROJECT, LOGSTORE).get_shards_info()) == 2
