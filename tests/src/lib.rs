//! # trail-tests
//!
//! Tests that cross process boundaries. Every server here is a real process
//! started from the workspace's own binaries on loopback, and killed with
//! SIGKILL when the test is done with it (never `killall`: only our own pids).
//!
//! ## Layout
//!
//! | file | what it proves |
//! |---|---|
//! | `tests/sls_trail_client.rs` | Trail's SLS client against devstack: 100k logs round trip, faults, cursors, checkpoints, errors |
//! | `tests/sls_official_rust_sdk.rs` | Alibaba's `aliyun-log-rust-sdk` against devstack through an HTTP proxy |
//! | `tests/pipeline_e2e.rs` | devstack SLS → `trail-node run` → devstack HEC, file, SLS and dead-letter sinks: faults, malformed input, SIGKILL and restart, a refused token |
//! | `tests/pipeline_e2e.rs` (cont.) | CloudTrail imports; tags through devstack's cloud APIs (by ARN, sweep, throttled) equal the tags file's |
//! | `tests/cloud_tags.rs` | the remote tag cache over HTTP: budget, invalidation, sweep, per-product, AWS, failing accounts, stale serving |
//! | `tests/hec_receiver.rs` | devstack's HEC receiver against the HEC checklist: routes, tokens, batches, gzip, acks, faults |
//! | `tests/demo.rs` | the README's demo against an external HEC (base and full URL), deterministic ids |
//! | `tests/trailctl.rs` | `trailctl status` (tables, JSON, token, errors) against a `trail-node` process |
//! | `tests/cluster.rs` | three (and four) `trail-node` processes in a raft cluster ([`cluster::LocalCluster`]): steady state, SIGKILL of an owner and of the leader, restart, a fourth node and rebalancing, drains, a node cut off in a network namespace, a split, mTLS, shared tags |
//! | `tests/sls_setup.rs` | `trail-node setup` and `check` against devstack SLS: logstores, indexes (fresh, made by hand, unreachable), saved searches, idempotence; every field the SLS sink writes is indexed |
//! | `tests/deploy.rs` | every node config under `deploy/` passes `trail-node check` |
//! | `conformance/` | Alibaba's Python SDKs against devstack: SLS (one test per checklist item) and the Tag/STS/ECS/SLB APIs (pytest) |
//!
//! The binaries must be built first (`cargo build --workspace --bins`); the
//! README's test command does that.

pub mod cluster;
pub mod fuzz;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Path of a workspace binary next to the test executable (`target/{profile}/NAME`).
pub fn binary(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(format!(
        "TRAIL_{}_BIN",
        name.to_uppercase().replace('-', "_")
    )) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("executable path");
    // Tests run from target/{profile}/deps/, binaries from target/{profile}/.
    let mut dir = exe
        .parent()
        .expect("executable has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// A free TCP port on loopback (for a listener a process will bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` generated ActionTrail events as SLS delivers them: one log group,
/// topic `actiontrail_audit_event`, key `event`, log time from eventTime.
/// One log group as ActionTrail delivers to SLS: a log per event, each
/// event under `event`, topic `actiontrail_audit_event`, one fixed log time.
pub fn event_log_group(
    events: impl IntoIterator<Item = impl Into<bytes::Bytes>>,
) -> trail_proto::sls::LogGroup {
    use trail_proto::sls::{Log, LogContent, LogGroup};
    LogGroup {
        logs: events
            .into_iter()
            .map(|e| Log {
                time: 1_795_000_000,
                contents: vec![LogContent {
                    key: bytes::Bytes::from_static(b"event"),
                    value: e.into(),
                }],
                time_ns: None,
            })
            .collect(),
        topic: Some(bytes::Bytes::from_static(b"actiontrail_audit_event")),
        ..Default::default()
    }
}

pub fn actiontrail_group(
    g: &mut trail_devstack::gen::Generator,
    n: usize,
) -> trail_proto::sls::LogGroup {
    use bytes::Bytes;
    use trail_proto::sls::{Log, LogContent, LogGroup};
    let logs = (0..n)
        .map(|_| Log {
            time: g.next_time() as u32,
            contents: vec![LogContent {
                key: Bytes::from_static(b"event"),
                value: Bytes::from(g.next_event()),
            }],
            time_ns: None,
        })
        .collect();
    LogGroup {
        logs,
        topic: Some(Bytes::from_static(b"actiontrail_audit_event")),
        ..Default::default()
    }
}

/// SplitShard, signed with Alibaba's signing crate (Trail's client has no
/// reason to split shards; operators do). Returns the shards it answers.
pub async fn split_shard(
    sls: &Devstack,
    project: &str,
    logstore: &str,
    shard: u32,
    key: &str,
) -> serde_json::Value {
    let path = format!("/logstores/{logstore}/shards/{shard}");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-log-bodyrawsize",
        reqwest::header::HeaderValue::from_static("0"),
    );
    aliyun_log_sdk_sign::sign_v1(
        ACCESS_KEY_ID,
        ACCESS_KEY_SECRET,
        None,
        reqwest::Method::POST,
        &path,
        &mut headers,
        [("action", "split"), ("key", key)].into(),
        None,
    )
    .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}?action=split&key={key}", sls.addr))
        .headers(headers)
        .header("host", format!("{project}.sls.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A `trail-devstack` stand-in process on a free loopback port.
pub struct Devstack {
    child: Child,
    pub addr: SocketAddr,
}

pub const ACCESS_KEY_ID: &str = "test-ak";
pub const ACCESS_KEY_SECRET: &str = "test-secret";
pub const HEC_TOKEN: &str = "test-hec-token";

impl Devstack {
    /// `trail-devstack sls` with the test keys, then `args`.
    pub fn sls(args: &[&str]) -> Devstack {
        let mut all = vec![
            "--access-key-id",
            ACCESS_KEY_ID,
            "--access-key-secret",
            ACCESS_KEY_SECRET,
        ];
        all.extend_from_slice(args);
        Self::spawn("sls", &all)
    }

    /// `trail-devstack hec` with the test token, then `args`.
    pub fn hec(args: &[&str]) -> Devstack {
        let mut all = vec!["--token", HEC_TOKEN];
        all.extend_from_slice(args);
        Self::spawn("hec", &all)
    }

    /// Starts `trail-devstack SERVICE --listen 127.0.0.1:0 ARGS` and waits for its address.
    pub fn spawn(service: &str, args: &[&str]) -> Devstack {
        Self::spawn_on(service, "127.0.0.1", args)
    }

    /// The same on another local address.
    pub fn spawn_on(service: &str, ip: &str, args: &[&str]) -> Devstack {
        let mut child = Command::new(binary("trail-devstack"))
            .args([service, "--listen", &format!("{ip}:0")])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn trail-devstack");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("trail-devstack printed no address within 30 s");
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from trail-devstack: {first:?}"));
        Devstack { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Devstack {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `trail-node run --config FILE` process; its log goes to `FILE.log`.
pub struct TrailNode {
    child: Child,
}

impl TrailNode {
    pub fn spawn(config: &std::path::Path) -> TrailNode {
        Self::spawn_in(config, None)
    }

    /// In a network namespace (`ip netns exec NS`, which execs the node: the
    /// pid is the node's).
    pub fn spawn_in(config: &std::path::Path, netns: Option<&str>) -> TrailNode {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(config.with_extension("log"))
            .expect("node log file");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary("trail-node"));
                c
            }
            None => Command::new(binary("trail-node")),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn trail-node");
        TrailNode { child }
    }

    /// With `env` set and none of the test's own `AWS_*` variables (keys,
    /// profiles, container or instance credentials): the node finds only
    /// the credentials the test gives it.
    pub fn spawn_with_env(config: &std::path::Path, env: &[(&str, &str)]) -> TrailNode {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(config.with_extension("log"))
            .expect("node log file");
        let mut cmd = Command::new(binary("trail-node"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn trail-node");
        TrailNode { child }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM and wait: a graceful stop.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for TrailNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every log of `project/logstore`, read from the beginning of each shard
/// with Trail's client: (log group topic, log).
pub async fn pull_all(
    c: &trail_node::sls::SlsClient,
    project: &str,
    logstore: &str,
) -> Vec<(Option<bytes::Bytes>, trail_proto::sls::Log)> {
    use trail_node::sls::{CursorPosition, PullRequest};
    let mut out = Vec::new();
    for shard in c.list_shards(project, logstore).await.unwrap() {
        let mut cursor = c
            .get_cursor(project, logstore, shard.shard_id, CursorPosition::Begin)
            .await
            .unwrap();
        loop {
            let r = c
                .pull_logs(
                    project,
                    logstore,
                    shard.shard_id,
                    &PullRequest::new(&cursor),
                )
                .await
                .unwrap();
            if r.caught_up(&cursor) {
                break;
            }
            for g in r.body.decode().unwrap().log_group_list {
                for l in g.logs {
                    out.push((g.topic.clone(), l));
                }
            }
            cursor = r.next_cursor;
        }
    }
    out
}

/// eventId (ActionTrail) or eventID (CloudTrail) → how many times a
/// `trail-devstack hec` receiver indexed it.
pub async fn hec_event_ids(hec: &Devstack) -> std::collections::HashMap<String, u32> {
    let text = reqwest::get(format!("http://{}/_devstack/events", hec.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut ids = std::collections::HashMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["event"]["eventId"]
            .as_str()
            .or(v["event"]["eventID"].as_str());
        *ids.entry(id.unwrap_or("?").to_owned()).or_default() += 1;
    }
    ids
}

/// One batch of ActionTrail `events` (one log group, topic
/// `actiontrail_audit_event`, each event under `event`) through `e` with
/// one HEC encoder: every encoded envelope as JSON, and what else the
/// batch gave (dead letters, counts). `epoch` is the shard's lease epoch.
pub fn enrich_for_hec(
    e: &trail_node::pipeline::enrich::Enrichment,
    events: impl IntoIterator<Item = String>,
    encoder: trail_node::sink::hec::HecEncoder,
    epoch: u64,
) -> (
    Vec<serde_json::Value>,
    trail_node::pipeline::enrich::EnrichOutput,
) {
    let (encoded, out) = enrich_with(e, events, std::sync::Arc::new(encoder), epoch);
    let envelopes = encoded
        .iter()
        .map(|b| serde_json::from_slice(b).expect("the encoder writes JSON"))
        .collect();
    (envelopes, out)
}

/// The same with any encoder: each event's encoded bytes.
pub fn enrich_with(
    e: &trail_node::pipeline::enrich::Enrichment,
    events: impl IntoIterator<Item = String>,
    encoder: std::sync::Arc<dyn trail_node::record::EventEncoder>,
    epoch: u64,
) -> (
    Vec<bytes::Bytes>,
    trail_node::pipeline::enrich::EnrichOutput,
) {
    let list = trail_proto::sls::LogGroupList {
        log_group_list: vec![event_log_group(events)],
    };
    let encoders = vec![encoder];
    let provenance = trail_node::record::Provenance {
        project: "p".into(),
        logstore: "actiontrail_test".into(),
        shard: 0,
        epoch,
        source: trail_node::record::SourceKind::Sls,
    };
    let mut out = e.run(&list, &["c".to_owned()], &provenance, &encoders);
    let slab = out.parts.pop().expect("one encoder").freeze();
    let encoded = (0..slab.len()).map(|i| slab.event(i)).collect();
    (encoded, out)
}
