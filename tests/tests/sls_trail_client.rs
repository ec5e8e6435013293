//! Trail's SLS client against a real `trail-devstack sls` process.

use std::time::Duration;

use bytes::Bytes;
use trail_node::sls::{
    Compression, Credentials, CursorPosition, Endpoint, ErrorClass, ErrorCode, PullRequest,
    PutTarget, RetryPolicy, SlsClient, SlsError,
};
use trail_proto::sls::{Log, LogContent, LogGroup, LogTag};
use trail_tests::{Devstack, ACCESS_KEY_ID, ACCESS_KEY_SECRET};

const PROJECT: &str = "trail-test";
const LOGSTORE: &str = "audit";

fn client(server: &Devstack, secret: &str, retry: RetryPolicy) -> SlsClient {
    let endpoint = Endpoint::parse("http://sls.test")
        .unwrap()
        .with_address(&server.addr.to_string())
        .unwrap();
    SlsClient::builder(endpoint, Credentials::new(ACCESS_KEY_ID, secret))
        .retry(retry)
        .build()
        .unwrap()
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        quota_max_attempts: 10,
        quota_base_delay: Duration::from_millis(20),
        quota_max_delay: Duration::from_millis(100),
    }
}

fn spawn(shards: u32, extra: &[&str]) -> Devstack {
    let shards = shards.to_string();
    let mut args = vec![
        "--project",
        PROJECT,
        "--logstore",
        LOGSTORE,
        "--shards",
        &shards,
    ];
    args.extend_from_slice(extra);
    Devstack::sls(&args)
}

/// A group whose contents exercise every field: unicode, empty values,
/// nanoseconds, topic, source and tags.
fn group(g: u64, logs: u64) -> LogGroup {
    LogGroup {
        logs: (0..logs)
            .map(|i| Log {
                time: 1_790_000_000 + g as u32,
                contents: vec![
                    LogContent {
                        key: Bytes::from_static(b"event"),
                        value: Bytes::from(format!(
                            r#"{{"eventId":"{g:06}-{i:04}","userName":"用户-{i}","note":"{}"}}"#,
                            "x".repeat((i % 7) as usize * 13)
                        )),
                    },
                    LogContent {
                        key: Bytes::from_static(b"empty"),
                        value: Bytes::new(),
                    },
                ],
                time_ns: Some((g * 1000 + i) as u32 % 1_000_000_000),
            })
            .collect(),
        topic: Some(Bytes::from_static(b"actiontrail_audit_event")),
        source: Some(Bytes::from(format!("10.0.0.{}", g % 250))),
        log_tags: vec![LogTag {
            key: Bytes::from_static(b"__pack_id__"),
            value: Bytes::from(format!("81C4812927C6B529-{g:X}")),
        }],
        ..Default::default()
    }
}

/// The issue's headline: 100k logs in several shards come back byte-identical
/// and in order, over both compressions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_pull_100k_logs_byte_identical_in_order() {
    let server = spawn(4, &[]);
    let c = client(&server, ACCESS_KEY_SECRET, RetryPolicy::default());
    let shards = c.list_shards(PROJECT, LOGSTORE).await.unwrap();
    assert_eq!(shards.len(), 4);

    // 400 groups × 250 logs. Hash keys spread groups over all shards; which
    // shard a key lands in is known from the ranges.
    let mut expected: Vec<Vec<LogGroup>> = vec![Vec::new(); 4];
    for g in 0..400u64 {
        let key = format!(
            "{:032x}",
            (g as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        );
        let shard = shards
            .iter()
            .position(|s| {
                s.inclusive_begin_key.as_str() <= key.as_str()
                    && (key.as_str() < s.exclusive_end_key.as_str()
                        || s.exclusive_end_key == "ffffffffffffffffffffffffffffffff")
            })
            .unwrap();
        let lg = group(g, 250);
        c.put_logs(PROJECT, LOGSTORE, &lg, PutTarget::HashKey(&key))
            .await
            .unwrap();
        expected[shard].push(lg);
    }
    assert!(
        expected.iter().all(|e| !e.is_empty()),
        "every shard got data"
    );

    let mut total = 0;
    for (i, shard) in shards.iter().enumerate() {
        let compression = if i % 2 == 0 {
            Compression::Lz4
        } else {
            Compression::Zstd
        };
        let mut cursor = c
            .get_cursor(PROJECT, LOGSTORE, shard.shard_id, CursorPosition::Begin)
            .await
            .unwrap();
        let mut got = Vec::new();
        loop {
            let req = PullRequest {
                count: 37,
                compression,
                ..PullRequest::new(&cursor)
            };
            let resp = c
                .pull_logs(PROJECT, LOGSTORE, shard.shard_id, &req)
                .await
                .unwrap();
            if resp.caught_up(&cursor) {
                assert_eq!(
                    resp.next_cursor, cursor,
                    "caught up: the cursor does not move"
                );
                break;
            }
            assert!(resp.count <= 37);
            let next_seq = resp.next_cursor.sequence().unwrap();
            assert_eq!(resp.read_last_cursor, Some(next_seq - 1));
            assert_eq!(
                next_seq - cursor.sequence().unwrap(),
                i64::from(resp.count),
                "cursors are consecutive"
            );
            got.extend(resp.body.decode().unwrap().log_group_list);
            cursor = resp.next_cursor;
        }
        assert_eq!(got.len(), expected[i].len());
        for (a, b) in got.iter().zip(&expected[i]) {
            assert!(a == b, "shard {i}: a group came back different");
        }
        total += got.iter().map(|g| g.logs.len()).sum::<usize>();
    }
    assert_eq!(total, 100_000);
}

#[tokio::test]
async fn injected_5xx_and_quota_errors_are_retried_without_loss() {
    let server = spawn(
        2,
        &[
            "--fault-5xx-every",
            "3",
            "--fault-read-quota-every",
            "4",
            "--fault-write-quota-every",
            "5",
        ],
    );
    let c = client(&server, ACCESS_KEY_SECRET, fast_retries());
    for g in 0..40 {
        c.put_logs(PROJECT, LOGSTORE, &group(g, 10), PutTarget::LoadBalanced)
            .await
            .unwrap();
    }
    let mut logs = 0;
    for shard in c.list_shards(PROJECT, LOGSTORE).await.unwrap() {
        let mut cursor = c
            .get_cursor(PROJECT, LOGSTORE, shard.shard_id, CursorPosition::Begin)
            .await
            .unwrap();
        loop {
            let req = PullRequest {
                count: 3,
                ..PullRequest::new(&cursor)
            };
            let resp = c
                .pull_logs(PROJECT, LOGSTORE, shard.shard_id, &req)
                .await
                .unwrap();
            if resp.caught_up(&cursor) {
                break;
            }
            logs += resp
                .body
                .decode()
                .unwrap()
                .log_group_list
                .iter()
                .map(|g| g.logs.len())
                .sum::<usize>();
            cursor = resp.next_cursor;
        }
    }
    assert_eq!(logs, 400);
    let s = c.stats();
    assert!(
        s.retries_transient
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    assert!(s.retries_quota.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn cursors_by_time_end_cursor_and_cursor_time() {
    let server = spawn(1, &[]);
    let c = client(&server, ACCESS_KEY_SECRET, RetryPolicy::default());
    let begin = c
        .get_cursor(PROJECT, LOGSTORE, 0, CursorPosition::Begin)
        .await
        .unwrap();
    for g in 0..5 {
        c.put_logs(PROJECT, LOGSTORE, &group(g, 2), PutTarget::LoadBalanced)
            .await
            .unwrap();
    }
    let end = c
        .get_cursor(PROJECT, LOGSTORE, 0, CursorPosition::End)
        .await
        .unwrap();
    assert_eq!(end.sequence().unwrap() - begin.sequence().unwrap(), 5);

    // end_cursor stops the read before it.
    let stop = trail_node::sls::Cursor::from_sequence(begin.sequence().unwrap() + 2);
    let req = PullRequest {
        end_cursor: Some(&stop),
        ..PullRequest::new(&begin)
    };
    let resp = c.pull_logs(PROJECT, LOGSTORE, 0, &req).await.unwrap();
    assert_eq!(resp.count, 2);
    assert_eq!(resp.next_cursor, stop);

    let t = c
        .get_cursor_time(PROJECT, LOGSTORE, 0, &begin)
        .await
        .unwrap();
    let by_time = c
        .get_cursor(PROJECT, LOGSTORE, 0, CursorPosition::Time(t))
        .await
        .unwrap();
    assert_eq!(
        by_time, begin,
        "the first group received at or after its own time"
    );
    let future = c
        .get_cursor(PROJECT, LOGSTORE, 0, CursorPosition::Time(t + 3600))
        .await
        .unwrap();
    assert_eq!(future, end, "a time in the future behaves as end");
}

#[tokio::test]
async fn errors_are_typed_and_permanent_ones_are_not_retried() {
    let server = spawn(2, &[]);
    let good = client(&server, ACCESS_KEY_SECRET, RetryPolicy::default());
    let code = |e: SlsError| e.code().cloned();

    let e = client(&server, "wrong-secret", RetryPolicy::default())
        .list_shards(PROJECT, LOGSTORE)
        .await
        .unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::SignatureNotMatch));
    let e = good.list_shards(PROJECT, "nope").await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert_eq!(code(e), Some(ErrorCode::LogStoreNotExist));
    let e = good
        .list_shards("no-such-project", LOGSTORE)
        .await
        .unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::ProjectNotExist));
    let bad = trail_node::sls::Cursor::new("bm90LWEtbnVtYmVy"); // "not-a-number"
    let e = good
        .pull_logs(PROJECT, LOGSTORE, 0, &PullRequest::new(&bad))
        .await
        .unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::ParameterInvalid));
    let far = trail_node::sls::Cursor::from_sequence(i64::MAX - 1);
    let e = good
        .pull_logs(PROJECT, LOGSTORE, 0, &PullRequest::new(&far))
        .await
        .unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::InvalidCursor));
    let e = good
        .get_cursor(PROJECT, LOGSTORE, 9, CursorPosition::Begin)
        .await
        .unwrap_err();
    assert_eq!(code(e), Some(ErrorCode::ShardNotExist));
    assert_eq!(
        good.stats()
            .retries_transient
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // Refused locally, before the 10 MiB limit could answer 413.
    let huge = LogGroup {
        logs: vec![Log {
            time: 1,
            contents: vec![LogContent {
                key: Bytes::from_static(b"k"),
                value: Bytes::from(vec![b'a'; 6 << 20]),
            }],
            time_ns: None,
        }],
        ..Default::default()
    };
    let e = good
        .put_logs(PROJECT, LOGSTORE, &huge, PutTarget::LoadBalanced)
        .await
        .unwrap_err();
    assert!(matches!(e, SlsError::RequestTooLarge { .. }), "{e}");
}

#[tokio::test]
async fn consumer_group_checkpoints_round_trip() {
    let server = spawn(2, &[]);
    let c = client(&server, ACCESS_KEY_SECRET, RetryPolicy::default());
    c.ensure_consumer_group(PROJECT, LOGSTORE, "trail", 60)
        .await
        .unwrap();
    c.ensure_consumer_group(PROJECT, LOGSTORE, "trail", 60)
        .await
        .unwrap(); // idempotent

    let before = c
        .get_checkpoints(PROJECT, LOGSTORE, "trail", None)
        .await
        .unwrap();
    assert_eq!(
        before.len(),
        2,
        "an entry for every shard, committed or not"
    );
    assert!(before.iter().all(|cp| cp.checkpoint.is_empty()));

    c.put_logs(PROJECT, LOGSTORE, &group(1, 3), PutTarget::LoadBalanced)
        .await
        .unwrap();
    let end = c
        .get_cursor(PROJECT, LOGSTORE, 1, CursorPosition::End)
        .await
        .unwrap();
    c.update_checkpoint(PROJECT, LOGSTORE, "trail", 1, &end, None, true)
        .await
        .unwrap();
    let after = c
        .get_checkpoints(PROJECT, LOGSTORE, "trail", Some(1))
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].checkpoint, end.as_str());

    let e = c
        .update_checkpoint(
            PROJECT,
            LOGSTORE,
            "trail",
            1,
            &trail_node::sls::Cursor::new("%%%"),
            None,
            true,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::InvalidShardCheckPoint));
    let e = c
        .update_checkpoint(PROJECT, LOGSTORE, "trail", 1, &end, Some("stranger"), false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::ConsumerNotExist));
}

/// devstack's read throughput cap slows a reader down with 403s; with Trail's
/// quota backoff nothing is lost.
#[tokio::test]
async fn read_cap_throttles_without_loss() {
    let server = spawn(1, &["--read-cap-bytes-per-sec", "20000"]);
    let c = client(&server, ACCESS_KEY_SECRET, fast_retries());
    for g in 0..20 {
        c.put_logs(PROJECT, LOGSTORE, &group(g, 20), PutTarget::LoadBalanced)
            .await
            .unwrap();
    }
    let mut cursor = c
        .get_cursor(PROJECT, LOGSTORE, 0, CursorPosition::Begin)
        .await
        .unwrap();
    let mut groups = 0;
    let started = std::time::Instant::now();
    loop {
        let req = PullRequest {
            count: 2,
            ..PullRequest::new(&cursor)
        };
        let resp = match c.pull_logs(PROJECT, LOGSTORE, 0, &req).await {
            Ok(r) => r,
            // Retries exhausted while throttled: a consumer waits and goes on.
            Err(e) if e.class() == ErrorClass::Quota => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        if resp.caught_up(&cursor) {
            break;
        }
        groups += resp.count;
        cursor = resp.next_cursor;
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
    }
    assert_eq!(groups, 20);
    assert!(
        c.stats()
            .retries_quota
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

/// `trail-devstack gen --sls-endpoint` loads exactly the events it would
/// print as JSON lines, as ActionTrail does: topic `actiontrail_audit_event`,
/// key `event`, log time = eventTime; a wrong secret or logstore is an error.
#[tokio::test]
async fn gen_loads_the_same_events_into_sls_as_it_prints() {
    let server = Devstack::sls(&[
        "--project",
        PROJECT,
        "--logstore",
        LOGSTORE,
        "--shards",
        "3",
    ]);
    let gen = |extra: &[&str]| {
        std::process::Command::new(trail_tests::binary("trail-devstack"))
            .args(["gen", "--events", "3000", "--seed", "11"])
            .args(extra)
            .env("DEVSTACK_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
            .output()
            .unwrap()
    };
    let addr = server.addr.to_string();
    let sls_args = |logstore: &'static str| {
        vec![
            "--sls-endpoint",
            "http://sls.test",
            "--sls-address",
            addr.as_str(),
            "--project",
            PROJECT,
            "--logstore",
            logstore,
            "--access-key-id",
            ACCESS_KEY_ID,
        ]
    };
    let printed = gen(&[]);
    assert!(printed.status.success());
    let loaded = gen(&sls_args(LOGSTORE));
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let refused = gen(&sls_args("no_such_logstore"));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("LogStoreNotExist"));

    let mut want: Vec<String> = String::from_utf8(printed.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let c = client(&server, ACCESS_KEY_SECRET, fast_retries());
    let mut got = Vec::new();
    for (topic, l) in trail_tests::pull_all(&c, PROJECT, LOGSTORE).await {
        assert_eq!(topic.as_deref(), Some(&b"actiontrail_audit_event"[..]));
        assert_eq!(&l.contents[0].key[..], b"event");
        let json = String::from_utf8(l.contents[0].value.to_vec()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let t = v["eventTime"].as_str().unwrap();
        assert_eq!(trail_devstack::gen::iso(i64::from(l.time)), t);
        got.push(json);
    }
    want.sort();
    got.sort();
    assert_eq!(got.len(), 3000);
    assert!(got == want, "the same events, byte for byte");
}
