"""The SLS calls `trail-node setup` makes — CreateLogStore, CreateIndex /
UpdateIndex / GetIndex / DeleteIndex, and saved searches — as the official
Python SDK makes and reads them."""

import pytest
from aliyun.log import LogException
from aliyun.log.index_config import IndexConfig, IndexKeyConfig, IndexLineConfig

from conftest import LOGSTORE, PROJECT

TOKENS = [",", " ", "'", '"', ";", "=", "(", ")", "[", "]", "{", "}", "?", "@", "&", "<", ">", "/", ":", "\n", "\t", "\r"]


def business_index():
    keys = {
        "eventName": IndexKeyConfig(token_list=TOKENS, index_type="text", doc_value=True),
        "userName": IndexKeyConfig(token_list=TOKENS, index_type="text", doc_value=True),
        "tag_project": IndexKeyConfig(token_list=TOKENS, index_type="text", doc_value=True),
        "shard": IndexKeyConfig(index_type="long", doc_value=True),
    }
    return IndexConfig(line_config=IndexLineConfig(token_list=TOKENS), key_config_list=keys)


def test_an_index_is_created_read_back_updated_and_deleted(client):
    client.create_logstore(PROJECT, "business_view", ttl=90, shard_count=2)
    client.create_index(PROJECT, "business_view", business_index())

    got = client.get_index_config(PROJECT, "business_view").get_index_config()
    keys = got.key_config_list
    assert set(keys) == {"eventName", "userName", "tag_project", "shard"}
    assert keys["shard"].index_type == "long"
    assert keys["eventName"].index_type == "text" and keys["eventName"].doc_value
    assert keys["eventName"].token_list == TOKENS
    assert got.line_config.token_list == TOKENS
    assert got.ttl == 90, "GetIndex reports the logstore's ttl"

    # A second create is refused by name; an update adds the key.
    with pytest.raises(LogException) as e:
        client.create_index(PROJECT, "business_view", business_index())
    assert e.value.get_error_code() == "IndexAlreadyExist"
    cfg = business_index()
    cfg.key_config_list["tag_env"] = IndexKeyConfig(token_list=TOKENS, doc_value=True)
    client.update_index(PROJECT, "business_view", cfg)
    keys = client.get_index_config(PROJECT, "business_view").get_index_config().key_config_list
    assert "tag_env" in keys

    client.delete_index(PROJECT, "business_view")
    with pytest.raises(LogException) as e:
        client.get_index_config(PROJECT, "business_view")
    assert (e.value.get_error_code(), e.value.get_resp_status()) == ("IndexConfigNotExist", 404)
    with pytest.raises(LogException) as e:
        client.update_index(PROJECT, "business_view", cfg)
    assert e.value.get_error_code() == "IndexConfigNotExist"


def test_a_malformed_index_is_refused_with_a_reason(client):
    bad = IndexConfig(key_config_list={"n": IndexKeyConfig(index_type="vector")})
    with pytest.raises(LogException) as e:
        client.create_index(PROJECT, LOGSTORE, bad)
    assert e.value.get_error_code() == "ParameterInvalid"
    assert "unknown type" in e.value.get_error_message()
    with pytest.raises(LogException) as e:
        client.create_index(PROJECT, "no_such_store", business_index())
    assert e.value.get_error_code() == "LogStoreNotExist"


def test_saved_searches_round_trip(client):
    search = {
        "savedsearchName": "trail-changes-by-project",
        "displayName": "Which RAM users changed which project's resources",
        "logstore": LOGSTORE,
        "topic": "",
        "searchQuery": "eventRW: Write | SELECT tag_project, userName, count(1) AS changes GROUP BY tag_project, userName ORDER BY changes DESC",
    }
    client.create_savedsearch(PROJECT, search)
    got = client.get_savedsearch(PROJECT, "trail-changes-by-project").get_entity()
    assert got["searchQuery"] == search["searchQuery"]
    assert got["logstore"] == LOGSTORE

    with pytest.raises(LogException) as e:
        client.create_savedsearch(PROJECT, search)
    assert e.value.get_error_code() == "SavedSearchAlreadyExist"

    search["searchQuery"] = "eventRW: Write and status: failure"
    client.update_savedsearch(PROJECT, search)
    assert client.get_savedsearch(PROJECT, "trail-changes-by-project").get_entity()["searchQuery"] == search["searchQuery"]

    listed = client.list_savedsearch(PROJECT)
    assert listed.get_entities() == ["trail-changes-by-project"]
    assert listed.get_total() == 1

    client.delete_savedsearch(PROJECT, "trail-changes-by-project")
    with pytest.raises(LogException) as e:
        client.get_savedsearch(PROJECT, "trail-changes-by-project")
    assert (e.value.get_error_code(), e.value.get_resp_status()) == ("SavedSearchNotExist", 404)

    with pytest.raises(LogException) as e:
        client.create_savedsearch(PROJECT, {"savedsearchName": "x", "logstore": LOGSTORE})
    assert e.value.get_error_code() == "ParameterInvalid"
