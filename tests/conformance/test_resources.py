"""Checklist items 4, 5 and 22: resources parse in the SDK; unknown ones are
named errors; answers are 200 with lowercase headers and no compresstype on JSON."""

import http.client

import pytest
from aliyun.log import LogException

from conftest import LOGSTORE, PROJECT


def test_04_project_logstore_and_shards_parse(client):
    client.create_project("fresh-proj", "made by the conformance suite")
    p = client.get_project("fresh-proj")
    assert p.get_projectname() == "fresh-proj"
    assert p.get_description() == "made by the conformance suite"
    assert p.get_status() == "Normal"

    client.create_logstore("fresh-proj", "store2", ttl=7, shard_count=2)
    ls = client.get_logstore("fresh-proj", "store2")
    assert ls.get_ttl() == 7
    assert ls.get_shard_count() == 2

    shards = client.list_shards("fresh-proj", "store2").get_shards_info()
    assert [s["status"] for s in shards] == ["readwrite", "readwrite"]
    # The ranges cover the MD5 space with no gap.
    assert shards[0]["inclusiveBeginKey"] == "0" * 32
    assert shards[0]["exclusiveEndKey"] == shards[1]["inclusiveBeginKey"] == "8" + "0" * 31
    assert shards[1]["exclusiveEndKey"] == "f" * 32
    assert all(len(s["inclusiveBeginKey"]) == 32 for s in shards)

    names = client.list_logstore("fresh-proj").get_logstores()
    assert names == ["store2"]


@pytest.mark.parametrize(
    "call, code, status",
    [
        (lambda c: c.list_shards("no-such-proj", LOGSTORE), "ProjectNotExist", 404),
        (lambda c: c.list_shards(PROJECT, "no_such_store"), "LogStoreNotExist", 404),
        (lambda c: c.get_cursor(PROJECT, LOGSTORE, 42, "begin"), "ShardNotExist", 400),
    ],
    ids=["project", "logstore", "shard"],
)
def test_05_unknown_resources_are_named(client, call, code, status):
    with pytest.raises(LogException) as e:
        call(client)
    assert e.value.get_error_code() == code
    assert e.value.get_resp_status() == status


def test_22_answers_are_200_lowercase_and_json_has_no_compresstype(devstack, client):
    # Look at the raw answer: header names exactly as sent on the wire.
    conn = http.client.HTTPConnection(devstack.host, devstack.port, timeout=10)
    conn.request("GET", "/_devstack/stats")
    raw = conn.getresponse()
    raw.read()
    assert all(k == k.lower() for k in raw.headers.keys()), raw.headers.keys()

    resp = client.list_shards(PROJECT, LOGSTORE)
    headers = resp.get_all_headers()
    assert all(k == k.lower() for k in headers), headers
    assert "x-log-compresstype" not in headers
    assert headers.get("x-log-requestid")
    cursor = client.get_cursor(PROJECT, LOGSTORE, 0, "begin")
    assert "x-log-compresstype" not in cursor.get_all_headers()
