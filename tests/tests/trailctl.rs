//! `trailctl status` against a real `trail-node` process (single node):
//! tables and `-o json`, bearer-token auth, and clear errors when the node
//! is unreachable or the token is wrong.

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use trail_devstack::gen::Generator;
use trail_node::sls::{Credentials, Endpoint, PutTarget, SlsClient};
use trail_proto::sls::{Log, LogContent, LogGroup};
use trail_tests::{
    binary, free_port, Devstack, TrailNode, ACCESS_KEY_ID, ACCESS_KEY_SECRET, HEC_TOKEN,
};

const TOKEN: &str = "ctl-test-token";

fn trailctl(endpoint: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(binary("trailctl"));
    c.args(["--endpoint", endpoint])
        .args(args)
        .env_remove("TRAIL_TOKEN");
    if let Some(t) = token {
        c.env("TRAIL_TOKEN", t);
    }
    c.output().expect("run trailctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_nodes_shards_and_sinks_behind_a_token() {
    let dir = std::env::temp_dir().join(format!("trail-ctl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sls = Devstack::sls(&[
        "--project",
        "ctl",
        "--logstore",
        "trail_ctl",
        "--shards",
        "3",
    ]);
    let hec = Devstack::hec(&[]);
    let client = SlsClient::builder(
        Endpoint::parse("http://sls.test")
            .unwrap()
            .with_address(&sls.addr.to_string())
            .unwrap(),
        Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET),
    )
    .build()
    .unwrap();
    let mut g = Generator::new(3);
    for _ in 0..20 {
        let logs = (0..100)
            .map(|_| Log {
                time: 1_795_000_000,
                contents: vec![LogContent {
                    key: Bytes::from_static(b"event"),
                    value: Bytes::from(g.next_event()),
                }],
                time_ns: None,
            })
            .collect();
        let group = LogGroup {
            logs,
            topic: Some(Bytes::from_static(b"actiontrail_audit_event")),
            ..Default::default()
        };
        client
            .put_logs("ctl", "trail_ctl", &group, PutTarget::LoadBalanced)
            .await
            .unwrap();
    }
    let port = free_port();
    let config = dir.join("trail.toml");
    std::fs::write(
        &config,
        format!(
            r#"[node]
id = "ctl-node"
data_dir = {data:?}

[source]
endpoint = "http://sls.test"
address = "{sls}"
project = "ctl"
logstore = "trail_ctl"
access_key_id = "{ACCESS_KEY_ID}"
access_key_secret = "{ACCESS_KEY_SECRET}"
empty_backoff_max_ms = 200

[[sinks]]
type = "hec"
url = "http://{hec}"
token = "{HEC_TOKEN}"
flush_interval_ms = 100

[dead_letter]
path = {dead:?}

[control]
listen = "127.0.0.1:{port}"
token = {{ env = "CTL_TEST_TOKEN" }}
"#,
            data = dir.join("data").display().to_string(),
            sls = sls.addr,
            hec = hec.addr,
            dead = dir.join("dead.jsonl").display().to_string(),
        ),
    )
    .unwrap();
    std::env::set_var("CTL_TEST_TOKEN", TOKEN);
    let mut node = TrailNode::spawn(&config);
    let endpoint = format!("http://127.0.0.1:{port}");

    // Status as JSON, once the shards are consumed and the writes delivered.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let out = trailctl(&endpoint, Some(TOKEN), &["status", "-o", "json"]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let delivered = v["sinks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "hec#0" && s["events"].as_u64() > Some(0));
            let caught_up = v["shards"].as_array().unwrap().len() == 3
                && v["shards"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|s| s["state"] == "caught_up");
            if delivered && caught_up {
                break v;
            }
        }
        assert!(
            node.alive(),
            "trail-node died; see {}",
            config.with_extension("log").display()
        );
        assert!(
            Instant::now() < deadline,
            "no complete status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let n = &status["nodes"][0];
    assert_eq!(n["id"], "ctl-node");
    assert_eq!(n["addr"], format!("127.0.0.1:{port}"));
    assert_eq!(n["role"], "single");
    assert_eq!(n["pid"].as_u64(), Some(u64::from(node.pid())));
    assert_eq!(status["leader_id"], "ctl-node");
    for s in status["shards"].as_array().unwrap() {
        assert_eq!(s["logstore"], "trail_ctl");
        assert_eq!(s["owner"], "ctl-node");
        assert!(s["epoch"].is_u64());
        assert_eq!(s["lag_seconds"].as_f64(), Some(0.0), "caught up: no lag");
    }

    // Tables by default.
    let out = trailctl(&endpoint, Some(TOKEN), &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in [
        "cluster ctl-node",
        "trail_ctl",
        "lag",
        "hec#0",
        "dead_letter",
    ] {
        assert!(text.contains(word), "{word:?} missing from:\n{text}");
    }

    // No token, a wrong one, an unreachable node: clear errors, non-zero exits.
    for token in [None, Some("wrong")] {
        let out = trailctl(&endpoint, token, &["status"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unauthorized"), "{err}");
        assert!(!err.contains(TOKEN), "the token is never printed");
    }
    let out = trailctl(
        &format!("http://127.0.0.1:{}", free_port()),
        Some(TOKEN),
        &["status"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach a Trail node"));

    // The address as status prints it (`host:port`, no scheme) is an endpoint.
    let out = trailctl(&format!("127.0.0.1:{port}"), Some(TOKEN), &["status"]);
    assert!(
        out.status.success(),
        "a bare host:port: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A user's error is the error and its causes, never a Rust backtrace.
    let out = Command::new(binary("trailctl"))
        .args(["--endpoint", &format!("127.0.0.1:{port}"), "status"])
        .env_remove("TRAIL_TOKEN")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run trailctl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.starts_with("trailctl: unauthorized"), "{err}");
    assert!(
        !err.contains("backtrace") && !err.contains("Stack"),
        "{err}"
    );

    assert_eq!(node.terminate().map(|s| s.success()), Some(true));
}
