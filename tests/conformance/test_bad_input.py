"""Bad requests get the right SLS error, and the server keeps serving
(issue §3): malformed protobuf, lying bodyrawsize, unknown compression,
wrong content type. Sent with the SDK's own signing path."""

import lz4.block
import pytest
from aliyun.log import LogException

from conftest import LOGSTORE, PROJECT

RESOURCE = f"/logstores/{LOGSTORE}/shards/lb"


def send(client, body, **headers):
    h = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(body))}
    h.update(headers)
    return client._send("POST", PROJECT, body, RESOURCE, {}, h)


@pytest.mark.parametrize(
    "body, headers, code",
    [
        (b"\xff\xff\xff\xff\x0f garbage", {}, "PostBodyInvalid"),
        (lz4.block.compress(b"\x0a\x02\x08\x01" * 10, store_size=False),
         {"x-log-compresstype": "lz4", "x-log-bodyrawsize": "7"}, "PostBodyInvalid"),
        (lz4.block.compress(b"\x0a\x02\x08\x01" * 10, store_size=False),
         {"x-log-compresstype": "lz4", "x-log-bodyrawsize": "400"}, "InvalidBodyRawSize"),
        (lz4.block.compress(b"\x0a\x02\x08\x01", store_size=False),
         {"x-log-compresstype": "lz4", "x-log-bodyrawsize": "4294967296"}, "InvalidBodyRawSize"),
        (b"abc", {"x-log-compresstype": "snappy"}, "InvalidCompressType"),
        (b"{}", {"Content-Type": "application/json"}, "InvalidContentType"),
    ],
    ids=["protobuf", "lz4-short", "lz4-long", "lz4-huge", "compresstype", "content-type"],
)
def test_bad_bodies_get_their_error_and_the_server_lives(devstack, client, body, headers, code):
    with pytest.raises(LogException) as e:
        send(client, body, **headers)
    assert e.value.get_error_code() == code
    assert e.value.get_resp_status() == 400
    assert devstack.alive()
    assert len(client.list_shards(PROJECT, LOGSTORE).get_shards_info()) == 2
