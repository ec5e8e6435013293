//! Alibaba's official `aliyun-log-rust-sdk` (pinned) against a real
//! `trail-devstack sls` process: a second, independent client, so devstack
//! cannot drift into a dialect only Trail speaks.
//!
//! The SDK always dials `{project}.{endpoint}`, so it reaches devstack the way
//! the protocol notes found works unchanged: `HTTP_PROXY` points at devstack and
//! the endpoint is a fake domain (`sls.test:PORT`); reqwest then sends
//! absolute-form requests, which devstack routes by their Host.
//!
//! One test function: the proxy is process-wide environment.

use aliyun_log_rust_sdk::get_cursor_models::CursorPos;
use aliyun_log_rust_sdk::{Client, Config, FromConfig};
use aliyun_log_sdk_protobuf::{Log, LogGroup};
use trail_tests::{Devstack, ACCESS_KEY_ID, ACCESS_KEY_SECRET};

const PROJECT: &str = "sdk-test";
const LOGSTORE: &str = "audit";

#[tokio::test]
async fn official_rust_sdk_put_pull_cursors_checkpoints_through_proxy() {
    let server = Devstack::sls(&[
        "--project",
        PROJECT,
        "--logstore",
        LOGSTORE,
        "--shards",
        "2",
    ]);
    // SAFETY-free in edition 2021; this binary has a single test, so nothing
    // else reads the environment concurrently.
    std::env::set_var("HTTP_PROXY", format!("http://{}", server.addr));
    std::env::set_var("http_proxy", format!("http://{}", server.addr));
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");

    let endpoint = format!("sls.test:{}", server.addr.port());
    let client = Client::from_config(
        Config::builder()
            .access_key(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .endpoint(&endpoint)
            .build()
            .unwrap(),
    )
    .unwrap();

    // ListShards parses (the SDK needs all five fields).
    let shards = client.list_shards(PROJECT, LOGSTORE).send().await.unwrap();
    let shards = shards.get_body().shards();
    assert_eq!(shards.len(), 2);

    // PutLogs (lz4, load-balanced): 6 groups land over both shards.
    let mut sent = Vec::new();
    for g in 0..6 {
        let mut group = LogGroup::new();
        group
            .set_topic("actiontrail_audit_event")
            .set_source("10.1.2.3");
        group.add_log_tag_kv("__pack_id__", format!("ABCDEF-{g}"));
        for i in 0..3 {
            let mut log = Log::from_unixtime(1_790_000_000 + g);
            log.add_content_kv("event", format!(r#"{{"eventId":"{g}-{i}","who":"ü"}}"#));
            log.set_time_ns(123_456_789);
            group.add_log(log);
        }
        client
            .put_logs(PROJECT, LOGSTORE)
            .log_group(group.clone())
            .send()
            .await
            .unwrap();
        sent.push(group);
    }

    // Begin cursor, PullLogs (lz4 response), end: everything back intact.
    let mut received = Vec::new();
    for shard in shards {
        let id = *shard.shard_id();
        let begin = client
            .get_cursor(PROJECT, LOGSTORE, id)
            .cursor_pos(CursorPos::Begin)
            .send()
            .await
            .unwrap();
        let begin = begin.get_body().cursor().to_string();
        let end = client
            .get_cursor(PROJECT, LOGSTORE, id)
            .cursor_pos(CursorPos::End)
            .send()
            .await
            .unwrap();
        let end = end.get_body().cursor().to_string();
        let pulled = client
            .pull_logs(PROJECT, LOGSTORE, id)
            .cursor(begin.as_str())
            .count(1000)
            .send()
            .await
            .unwrap();
        let body = pulled.get_body();
        assert_eq!(
            body.next_cursor(),
            &end,
            "shard {id}: read to the end cursor"
        );
        assert_eq!(
            *body.log_group_count() as usize,
            body.log_group_list().len()
        );
        received.extend(body.log_group_list().iter().cloned());

        // At the end: count 0 and the same cursor back.
        let again = client
            .pull_logs(PROJECT, LOGSTORE, id)
            .cursor(end.as_str())
            .count(10)
            .send()
            .await
            .unwrap();
        assert_eq!(*again.get_body().log_group_count(), 0);
        assert_eq!(again.get_body().next_cursor(), &end);
    }
    assert_eq!(received.len(), sent.len());
    for g in &sent {
        assert!(received.contains(g), "a group came back different: {g:?}");
    }

    // Consumer group: create, checkpoint round trip, list.
    client
        .create_consumer_group(PROJECT, LOGSTORE, "sdk-group")
        .timeout(30)
        .order(false)
        .send()
        .await
        .unwrap();
    let dup = client
        .create_consumer_group(PROJECT, LOGSTORE, "sdk-group")
        .timeout(30)
        .order(false)
        .send()
        .await
        .err()
        .expect("a second create must fail");
    assert!(
        matches!(&dup, aliyun_log_rust_sdk::Error::Server { error_code, .. } if error_code == "ConsumerGroupAlreadyExist"),
        "{dup:?}"
    );
    let cursor = client
        .get_cursor(PROJECT, LOGSTORE, 0)
        .cursor_pos(CursorPos::End)
        .send()
        .await
        .unwrap()
        .get_body()
        .cursor()
        .to_string();
    // The server assigns: a lone consumer gets every shard.
    let hb = client
        .consumer_group_heartbeat(PROJECT, LOGSTORE, "sdk-group")
        .consumer("sdk-consumer")
        .shards(vec![])
        .send()
        .await
        .unwrap();
    let mut assigned = hb.get_body().shards().clone();
    assigned.sort();
    assert_eq!(assigned, vec![0, 1]);
    client
        .update_consumer_group_checkpoint(PROJECT, LOGSTORE, "sdk-group")
        .consumer_id("sdk-consumer")
        .shard_id(0)
        .checkpoint(&cursor)
        .force_success(true)
        .send()
        .await
        .unwrap();
    let cps = client
        .get_consumer_group_checkpoint(PROJECT, LOGSTORE, "sdk-group")
        .send()
        .await
        .unwrap();
    let cps = cps.get_body().checkpoints();
    assert_eq!(cps.len(), 2, "an entry for every shard");
    let zero = cps.iter().find(|c| *c.shard_id() == 0).unwrap();
    assert_eq!(zero.checkpoint(), &cursor);
    assert_eq!(zero.consumer(), "sdk-consumer");
    let one = cps.iter().find(|c| *c.shard_id() == 1).unwrap();
    assert_eq!(one.checkpoint(), "", "never committed");
}
