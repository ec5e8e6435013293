//! The pipeline end to end, in real processes on loopback:
//! `trail-devstack sls` → `trail-node run` → `trail-devstack hec` (plus file,
//! SLS and dead-letter sinks), with faults, malformed input, SIGKILL and a
//! refused token. Each test asserts that every event that passes the filters
//! arrives, and bounds the duplicates.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use trail_devstack::gen::Generator;
use trail_node::sls::{CursorPosition, PutTarget, SlsClient};
use trail_proto::sls::{Log, LogContent, LogGroup};
use trail_tests::{Devstack, TrailNode, ACCESS_KEY_ID, ACCESS_KEY_SECRET, HEC_TOKEN};

const PROJECT: &str = "e2e";
const LOGSTORE: &str = "actiontrail_e2e";
const PER_GROUP: usize = 32;

struct Setup {
    dir: PathBuf,
    sls: Devstack,
    hec: Devstack,
    /// eventIds that pass the filters (writes).
    expected: Vec<String>,
    malformed: usize,
}

fn client(sls: &Devstack) -> SlsClient {
    trail_tests::cluster::sls_client(sls)
}

/// devstack SLS (4 shards) and HEC with `hec_args`; `events` generated events
/// loaded, every `malformed_every`th one broken.
async fn setup(
    name: &str,
    events: usize,
    malformed_every: usize,
    sls_args: &[&str],
    hec_args: &[&str],
) -> Setup {
    let dir = std::env::temp_dir().join(format!("trail-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = vec![
        "--project",
        PROJECT,
        "--logstore",
        LOGSTORE,
        "--shards",
        "4",
    ];
    args.extend_from_slice(sls_args);
    let sls = Devstack::sls(&args);
    let hec = Devstack::hec(hec_args);
    let mut g = Generator::new(7);
    std::fs::write(
        dir.join("tags.json"),
        serde_json::to_vec(&g.tags_file()).unwrap(),
    )
    .unwrap();
    let c = client(&sls);
    let mut expected = Vec::new();
    let mut malformed = 0;
    let mut logs = Vec::new();
    for i in 0..events {
        let mut json = g.next_event();
        if malformed_every > 0 && i % malformed_every == malformed_every - 1 {
            json.truncate(json.len() / 3);
            // By design a broken event the read scan calls a read is
            // dropped as one (event::prescan); one cut short never is.
            assert_eq!(
                trail_node::event::prescan::event_rw(json.as_bytes()),
                None,
                "a truncated event is left to the parser"
            );
            malformed += 1;
        } else {
            let v: Value = serde_json::from_str(&json).unwrap();
            if trail_devstack::gen::is_write(&v) {
                expected.push(v["eventId"].as_str().unwrap().to_owned());
            }
        }
        logs.push(Log {
            time: 1_795_000_000,
            contents: vec![LogContent {
                key: Bytes::from_static(b"event"),
                value: Bytes::from(json),
            }],
            time_ns: None,
        });
        if logs.len() == PER_GROUP || i + 1 == events {
            let group = LogGroup {
                logs: std::mem::take(&mut logs),
                topic: Some(Bytes::from_static(b"actiontrail_audit_event")),
                ..Default::default()
            };
            c.put_logs(PROJECT, LOGSTORE, &group, PutTarget::LoadBalanced)
                .await
                .unwrap();
        }
    }
    Setup {
        dir,
        sls,
        hec,
        expected,
        malformed,
    }
}

impl Setup {
    /// A config for this setup; `extra` is appended (more sinks, say).
    fn config(&self, token: &str, extra: &str) -> PathBuf {
        self.config_with(token, "", extra)
    }

    /// `hec` is appended to the HEC sink's table.
    fn config_with(&self, token: &str, hec: &str, extra: &str) -> PathBuf {
        self.config_at(&self.hec.addr.to_string(), token, hec, extra)
    }

    /// The same with the HEC sink sending to `hec_addr`.
    fn config_at(&self, hec_addr: &str, token: &str, hec: &str, extra: &str) -> PathBuf {
        let path = self.dir.join("trail.toml");
        let text = format!(
            r#"
[node]
id = "e2e-node"
data_dir = {data:?}

[source]
endpoint = "http://sls.test"
address = "{sls}"
project = "{PROJECT}"
logstore = "{LOGSTORE}"
access_key_id = "{ACCESS_KEY_ID}"
access_key_secret = {{ env = "E2E_SLS_SECRET" }}
consumer_group = "trail"
pull_count = 10
in_flight_batches = 2
checkpoint_interval_ms = 100
empty_backoff_max_ms = 200
shard_rescan_secs = 1

[tags]
file = {tags:?}

[enrich]
threads = 2

[[sinks]]
type = "hec"
url = "http://{hec}"
token = "{token}"
flush_interval_ms = 100
retry_initial_ms = 20
retry_max_ms = 500
{hec_extra}

[dead_letter]
path = {dead:?}
{extra}
"#,
            data = self.dir.join("data").display().to_string(),
            sls = self.sls.addr,
            tags = self.dir.join("tags.json").display().to_string(),
            hec = hec_addr,
            dead = self.dir.join("dead.jsonl").display().to_string(),
            hec_extra = hec,
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn node(&self, config: &Path) -> TrailNode {
        std::env::set_var("E2E_SLS_SECRET", ACCESS_KEY_SECRET);
        TrailNode::spawn(config)
    }

    /// eventId → times HEC indexed it.
    async fn hec_ids(&self) -> HashMap<String, u32> {
        trail_tests::hec_event_ids(&self.hec).await
    }

    async fn wait_delivered(
        &self,
        node: &mut TrailNode,
        timeout: Duration,
    ) -> HashMap<String, u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let ids = self.hec_ids().await;
            if self.expected.iter().all(|e| ids.contains_key(e)) {
                return ids;
            }
            assert!(
                node.alive(),
                "trail-node died; see {}",
                self.dir.join("trail.log").display()
            );
            assert!(
                Instant::now() < deadline,
                "only {} of {} events arrived; log: {}",
                ids.len(),
                self.expected.len(),
                self.dir.join("trail.log").display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn dead_letters(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("dead.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Every log in `logstore` of the test project.
async fn pull_all(c: &SlsClient, logstore: &str) -> Vec<(Option<Bytes>, Log)> {
    trail_tests::pull_all(c, PROJECT, logstore).await
}

fn field<'a>(log: &'a Log, key: &str) -> Option<&'a str> {
    log.contents
        .iter()
        .find(|c| &c.key[..] == key.as_bytes())
        .and_then(|c| std::str::from_utf8(&c.value).ok())
}

/// Batches in flight can be delivered again after a crash: shards ×
/// in_flight_batches × pull_count groups × events per group.
const DUPLICATE_WINDOW: usize = 4 * 2 * 10 * PER_GROUP;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_event_arrives_through_hec_and_sls_faults() {
    let s = setup(
        "faults",
        6000,
        0,
        &["--fault-5xx-every", "13"],
        &["--busy-every", "5", "--drop-conn-every", "7"],
    )
    .await;
    let mut node = s.node(&s.config(HEC_TOKEN, ""));
    let ids = s.wait_delivered(&mut node, Duration::from_secs(120)).await;
    assert_eq!(ids.len(), s.expected.len(), "only writes pass the filter");
    let dups = ids.values().filter(|&&n| n > 1).count();
    assert_eq!(
        dups, 0,
        "busy and dropped requests are resent, never duplicated"
    );
    let stats: Value = reqwest::get(format!("http://{}/_devstack/stats", s.hec.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        stats["answers"]["503"].as_u64().unwrap_or(0) > 0,
        "faults were injected: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_are_dead_lettered_with_their_reason_and_nothing_stalls() {
    let s = setup(
        "malformed",
        3000,
        250,
        &["--extra-logstore", "dead_letters"],
        &[],
    )
    .await;
    // Dead letters go to a file and to a logstore.
    let extra = format!(
        r#"
[dead_letter.sls]
endpoint = "http://sls.test"
address = "{sls}"
project = "{PROJECT}"
logstore = "dead_letters"
access_key_id = "{ACCESS_KEY_ID}"
access_key_secret = {{ env = "E2E_SLS_SECRET" }}
"#,
        sls = s.sls.addr
    );
    let mut node = s.node(&s.config(HEC_TOKEN, &extra));
    s.wait_delivered(&mut node, Duration::from_secs(120)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.dead_letters().len() < s.malformed {
        assert!(
            Instant::now() < deadline,
            "dead letters: {} of {}",
            s.dead_letters().len(),
            s.malformed
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dl = s.dead_letters();
    assert_eq!(dl.len(), s.malformed);
    for d in &dl {
        assert_eq!(d["kind"], "invalid_json");
        assert!(d["reason"].as_str().unwrap().contains("not valid JSON"));
        assert!(
            d["cursor"].as_str().is_some_and(|c| !c.is_empty()),
            "provenance names the cursor"
        );
        assert_eq!(d["logstore"], LOGSTORE);
        assert!(
            d["raw"]
                .as_str()
                .is_some_and(|r| r.starts_with("{\"eventId\"")),
            "the raw payload is kept"
        );
    }

    // The same letters, as logs in the dead-letter logstore.
    let logs = pull_all(&client(&s.sls), "dead_letters").await;
    assert_eq!(logs.len(), s.malformed, "each dead letter once in SLS");
    for (topic, l) in &logs {
        assert_eq!(topic.as_deref(), Some(&b"trail_dead_letter"[..]));
        assert_eq!(field(l, "kind"), Some("invalid_json"));
        assert_eq!(field(l, "logstore"), Some(LOGSTORE));
        assert!(field(l, "cursor").is_some_and(|c| !c.is_empty()));
        assert!(field(l, "shard").is_some_and(|x| x.parse::<u32>().is_ok()));
        assert!(field(l, "raw").is_some_and(|r| r.starts_with("{\"eventId\"")));
        assert!(field(l, "reason").is_some_and(|r| r.contains("not valid JSON")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_resumes_from_the_checkpoint() {
    // Reads capped at 1 MB/s (~10 s for the trail), so the kill lands
    // mid-stream however fast the machine is.
    let s = setup(
        "sigkill",
        8000,
        0,
        &["--read-cap-bytes-per-sec", "1000000"],
        &["--busy-every", "3"],
    )
    .await;
    let config = s.config(HEC_TOKEN, "");
    let mut node = s.node(&config);
    // Kill once part of the trail is through.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = s.hec_ids().await.len();
        if n > s.expected.len() / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline && node.alive(),
            "no progress before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill();
    let before = s.hec_ids().await.len();
    assert!(
        before < s.expected.len(),
        "killed mid-stream ({before} of {})",
        s.expected.len()
    );
    let saved: Value =
        serde_json::from_slice(&std::fs::read(s.dir.join("data/checkpoints.json")).unwrap())
            .unwrap();
    assert!(
        saved.as_object().is_some_and(|m| !m.is_empty()),
        "checkpoints were saved before the kill"
    );

    let mut node = s.node(&config);
    let ids = s.wait_delivered(&mut node, Duration::from_secs(120)).await;
    let dups: usize = ids.values().map(|&n| n as usize - 1).sum();
    assert!(
        dups <= DUPLICATE_WINDOW,
        "{dups} duplicates exceed the in-flight window {DUPLICATE_WINDOW}"
    );
    assert_eq!(
        node.terminate().map(|s| s.success()),
        Some(true),
        "SIGTERM stops the node cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_holds_the_checkpoint_until_a_good_one_delivers() {
    let s = setup("token", 1500, 0, &[], &[]).await;
    let mut node = s.node(&s.config("wrong-token", ""));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(node.alive());
    assert!(
        s.hec_ids().await.is_empty(),
        "nothing is indexed with a refused token"
    );
    node.kill();
    // Nothing was acknowledged, so no checkpoint moved past the start.
    let c = client(&s.sls);
    let cps = c
        .get_checkpoints(PROJECT, LOGSTORE, "trail", None)
        .await
        .unwrap();
    for cp in &cps {
        let begin = c
            .get_cursor(PROJECT, LOGSTORE, cp.shard, CursorPosition::Begin)
            .await
            .unwrap();
        assert!(
            cp.checkpoint.is_empty() || cp.checkpoint == begin.as_str(),
            "shard {} moved to {}",
            cp.shard,
            cp.checkpoint
        );
    }
    let local = std::fs::read_to_string(s.dir.join("data/checkpoints.json")).unwrap_or_default();
    let begin = c
        .get_cursor(PROJECT, LOGSTORE, 0, CursorPosition::Begin)
        .await
        .unwrap();
    for (_, v) in serde_json::from_str::<serde_json::Map<String, Value>>(&local).unwrap_or_default()
    {
        assert_eq!(
            v["cursor"].as_str(),
            Some(begin.as_str()),
            "local checkpoints stay at the start"
        );
    }

    let mut node = s.node(&s.config(HEC_TOKEN, ""));
    let ids = s.wait_delivered(&mut node, Duration::from_secs(60)).await;
    assert_eq!(ids.len(), s.expected.len());
}

/// `n` generated events as one log group, with the writes' ids.
fn group_of(g: &mut Generator, n: usize) -> (LogGroup, Vec<String>) {
    let mut writes = Vec::new();
    let events: Vec<String> = (0..n).map(|_| g.next_event()).collect();
    for json in &events {
        let v: Value = serde_json::from_str(json).unwrap();
        if trail_devstack::gen::is_write(&v) {
            writes.push(v["eventId"].as_str().unwrap().to_owned());
        }
    }
    (trail_tests::event_log_group(events), writes)
}

/// A PullLogs answer past `max_pull_bytes` is never read: the shard asks
/// for fewer groups until one fits, and a single group past it (which SLS
/// itself would never hold) is dead-lettered with its cursor and passed,
/// the shard going on behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_past_max_pull_bytes_are_asked_again_smaller_and_an_oversize_group_is_passed() {
    let mut s = setup("max-pull", 640, 0, &[], &[]).await;
    let c = client(&s.sls);
    // Shard 0 holds a group of 200 events (~350 KB raw), then a small one.
    let shard0 = PutTarget::HashKey("00000000000000000000000000000000");
    let mut g = Generator::new(99);
    let (big, lost) = group_of(&mut g, 200);
    c.put_logs(PROJECT, LOGSTORE, &big, shard0).await.unwrap();
    let (after, writes) = group_of(&mut g, PER_GROUP);
    c.put_logs(PROJECT, LOGSTORE, &after, shard0).await.unwrap();
    s.expected.extend(writes);
    assert!(!lost.is_empty());

    let path = s.config(HEC_TOKEN, "");
    // 10 groups of 32 (~570 KB) do not fit in 150 kB; two do; the big one never.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "shard_rescan_secs = 1\n",
        "shard_rescan_secs = 1\nmax_pull_bytes = 150000\npull_target_bytes = 1024\n",
    );
    std::fs::write(&path, text).unwrap();
    let mut node = s.node(&path);
    let ids = s.wait_delivered(&mut node, Duration::from_secs(120)).await;
    let arrived: Vec<&String> = lost.iter().filter(|id| ids.contains_key(*id)).collect();
    assert!(
        arrived.is_empty(),
        "events of the skipped group arrived: {arrived:?}"
    );
    let dead = s.dead_letters();
    let oversize: Vec<&Value> = dead
        .iter()
        .filter(|d| d["kind"] == "oversize_log_group")
        .collect();
    assert_eq!(oversize.len(), 1, "{dead:?}");
    assert_eq!(oversize[0]["shard"], 0);
    let reason = oversize[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("exceeds source.max_pull_bytes (150000); skipped unread"),
        "{reason}"
    );
    assert!(!oversize[0]["cursor"].as_str().unwrap().is_empty());
    assert!(node.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_sls_sinks_receive_the_business_view() {
    let s = setup(
        "sinks",
        2000,
        0,
        &["--extra-logstore", "business_view"],
        &[],
    )
    .await;
    let c = client(&s.sls);
    let out = s.dir.join("out.jsonl");
    let extra = format!(
        r#"
[[sinks]]
type = "file"
path = {out:?}

[[sinks]]
type = "sls"
endpoint = "http://sls.test"
address = "{sls}"
project = "{PROJECT}"
logstore = "business_view"
access_key_id = "{ACCESS_KEY_ID}"
access_key_secret = "{ACCESS_KEY_SECRET}"
"#,
        out = out.display().to_string(),
        sls = s.sls.addr
    );
    let mut node = s.node(&s.config(HEC_TOKEN, &extra));
    s.wait_delivered(&mut node, Duration::from_secs(60)).await;

    // File: one JSON line per write event, tags as fields.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count();
        if lines >= s.expected.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "file sink has {lines} of {}",
            s.expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["eventRW"], "Write");
    assert!(
        first["event"]["eventId"].is_string(),
        "the original event rides along"
    );

    // SLS: the business view in the target logstore.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = pull_all(&c, "business_view").await;
        if logs.len() >= s.expected.len() {
            assert!(logs
                .iter()
                .all(|(topic, _)| topic.as_deref() == Some(&b"trail_business_view"[..])));
            assert!(
                logs.iter()
                    .any(|(_, l)| l.contents.iter().any(|c| c.key.starts_with(b"tag_project"))),
                "tags are fields of the business view"
            );
            // Lanes keep each source shard's order: its cursors never go back.
            let mut last: HashMap<String, i64> = HashMap::new();
            for (_, l) in &logs {
                let shard = field(l, "shard").unwrap().to_owned();
                let seq = trail_node::sls::Cursor::new(field(l, "cursor").unwrap())
                    .sequence()
                    .unwrap();
                let prev = last.insert(shard.clone(), seq).unwrap_or(i64::MIN);
                assert!(prev <= seq, "shard {shard}: cursor {seq} after {prev}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SLS sink has {} of {}",
            logs.len(),
            s.expected.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexer_acks_gate_delivery_and_withheld_acks_are_resent() {
    let s = setup(
        "acks",
        2000,
        0,
        &[],
        &["--ack", "--withhold-ack-every", "3"],
    )
    .await;
    let config = s.config_with(
        HEC_TOKEN,
        "indexer_ack = true\nack_poll_interval_ms = 50\nack_timeout_secs = 1",
        "",
    );
    let mut node = s.node(&config);
    s.wait_delivered(&mut node, Duration::from_secs(120)).await;
    // devstack indexes a request before withholding its ack, so every id is
    // there early; the resend comes once the sink's ack timeout (1 s) passes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let dups = loop {
        let dups: usize = s.hec_ids().await.values().map(|&n| n as usize - 1).sum();
        if dups > 0 {
            break dups;
        }
        assert!(
            Instant::now() < deadline,
            "requests whose ack was withheld were never sent again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stats: Value = reqwest::get(format!("http://{}/_devstack/stats", s.hec.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requests = stats["requests"].as_u64().unwrap() as usize;
    assert!(
        dups <= requests * 10 * PER_GROUP,
        "duplicates come only from resent requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_refusing_single_events_dead_letters_them_and_resends_the_rest() {
    // Envelopes over 4 KB are refused (400 code 6, invalid-event-number N):
    // events before N count as delivered, N is dead-lettered, the rest resent.
    let s = setup("partial", 3000, 0, &[], &["--max-event-size", "4000"]).await;
    let mut node = s.node(&s.config(HEC_TOKEN, ""));
    let deadline = Instant::now() + Duration::from_secs(120);
    let (ids, dead) = loop {
        let ids = s.hec_ids().await;
        let dead: Vec<String> = s
            .dead_letters()
            .iter()
            .filter(|d| d["kind"] == "hec_rejected")
            .map(|d| {
                let envelope: Value = serde_json::from_str(d["raw"].as_str().unwrap()).unwrap();
                envelope["event"]["eventId"].as_str().unwrap().to_owned()
            })
            .collect();
        if s.expected
            .iter()
            .all(|e| ids.contains_key(e) || dead.contains(e))
        {
            break (ids, dead);
        }
        assert!(
            node.alive() && Instant::now() < deadline,
            "{} delivered + {} dead of {}",
            ids.len(),
            dead.len(),
            s.expected.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!dead.is_empty(), "some envelopes exceed 4 KB");
    assert!(
        dead.len() < s.expected.len() / 4,
        "only the large ones are refused"
    );
    assert!(
        dead.iter().all(|d| !ids.contains_key(d)),
        "a refused event is not also indexed"
    );
    assert!(
        ids.values().all(|&n| n == 1),
        "the rest is resent once, not duplicated"
    );
    let reason = s
        .dead_letters()
        .iter()
        .find(|d| d["kind"] == "hec_rejected")
        .unwrap()["reason"]
        .clone();
    assert!(reason.as_str().unwrap().contains("code 6"), "{reason}");
}

async fn split_shard(sls: &Devstack, shard: u32, key: &str) -> Value {
    trail_tests::split_shard(sls, PROJECT, LOGSTORE, shard, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_split_mid_stream_is_read_to_its_end_and_its_children_are_consumed() {
    let mut s = setup("split", 3000, 0, &[], &[]).await;
    let mut node = s.node(&s.config(HEC_TOKEN, ""));
    s.wait_delivered(&mut node, Duration::from_secs(60)).await;

    // Split shard 0 ([0, 4…)) and write into both children.
    let split = split_shard(&s.sls, 0, "20000000000000000000000000000000").await;
    assert_eq!(split.as_array().unwrap().len(), 3);
    let c = client(&s.sls);
    let mut g = Generator::new(99);
    for (n, key) in [
        (0u32, "10000000000000000000000000000000"),
        (1, "30000000000000000000000000000000"),
    ] {
        let mut logs = Vec::new();
        for _ in 0..200 {
            let json = g.next_event();
            let v: Value = serde_json::from_str(&json).unwrap();
            if trail_devstack::gen::is_write(&v) {
                s.expected.push(v["eventId"].as_str().unwrap().to_owned());
            }
            logs.push(Log {
                time: 1_795_000_000 + n,
                contents: vec![LogContent {
                    key: Bytes::from_static(b"event"),
                    value: Bytes::from(json),
                }],
                time_ns: None,
            });
        }
        let group = LogGroup {
            logs,
            topic: Some(Bytes::from_static(b"actiontrail_audit_event")),
            ..Default::default()
        };
        c.put_logs(PROJECT, LOGSTORE, &group, PutTarget::HashKey(key))
            .await
            .unwrap();
    }
    s.wait_delivered(&mut node, Duration::from_secs(60)).await;

    // The parent's checkpoint reaches its end; the children have checkpoints.
    let parent_end = c
        .get_cursor(PROJECT, LOGSTORE, 0, CursorPosition::End)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let saved: Value = serde_json::from_slice(
            &std::fs::read(s.dir.join("data/checkpoints.json")).unwrap_or_default(),
        )
        .unwrap_or(Value::Null);
        let at = |shard: u32| {
            saved[format!("{PROJECT}/{LOGSTORE}/{shard}")]["cursor"]
                .as_str()
                .map(str::to_owned)
        };
        if at(0).as_deref() == Some(parent_end.as_str()) && at(4).is_some() && at(5).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "checkpoints: {saved}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(s.dir.join("trail.log")).unwrap();
    assert!(
        log.contains("read-only shard finished"),
        "the parent is done"
    );
}

/// A CloudTrail record as S3 holds it (and an SLS import carries it).
fn cloudtrail_record(i: usize, read_only: bool) -> String {
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","principalId":"AIDAEXAMPLE{i}","arn":"arn:aws:iam::123456789012:user/alice","accountId":"123456789012","userName":"alice"}},"eventTime":"2026-11-23T09:{m:02}:{s:02}Z","eventSource":"ec2.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.5","userAgent":"aws-cli/2.15","requestParameters":{{"instancesSet":{{"items":[{{"instanceId":"i-0abc{i:04}"}}]}}}},"responseElements":null,"requestID":"req-{i}","eventID":"ct-{i:06}","readOnly":{read_only},"resources":[{{"accountId":"123456789012","type":"AWS::EC2::Instance","ARN":"arn:aws:ec2:us-east-1:123456789012:instance/i-0abc{i:04}"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management"}}"#,
        m = i / 60 % 60,
        s = i % 60,
        name = if read_only {
            "DescribeInstances"
        } else {
            "StopInstances"
        },
    )
}

/// CloudTrail imported into SLS: one record per log under `content`, and
/// whole `{"Records": [...]}` files as single logs. Every write record
/// arrives once with sourcetype `aws:cloudtrail`; reads are filtered; a
/// broken file is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_imports_by_record_and_by_file_are_delivered() {
    let s = setup("cloudtrail", 0, 0, &[], &[]).await;
    let c = client(&s.sls);
    let log = |text: String| Log {
        time: 1_795_000_000,
        contents: vec![LogContent {
            key: Bytes::from_static(b"content"),
            value: Bytes::from(text),
        }],
        time_ns: None,
    };
    let mut expected = Vec::new();
    let mut logs = Vec::new();
    // 300 records, one per log; every third is a read.
    for i in 0..300 {
        let read = i % 3 == 0;
        if !read {
            expected.push(format!("ct-{i:06}"));
        }
        logs.push(log(cloudtrail_record(i, read)));
    }
    // 20 files of 10 records each, all writes.
    for f in 0..20 {
        let records: Vec<String> = (0..10)
            .map(|k| {
                let i = 1000 + f * 10 + k;
                expected.push(format!("ct-{i:06}"));
                cloudtrail_record(i, false)
            })
            .collect();
        logs.push(log(format!("{{\"Records\":[{}]}}", records.join(","))));
    }
    logs.push(log("{\"Records\":[{\"eventID\":\"cut".into()));
    for chunk in logs.chunks(PER_GROUP) {
        let group = LogGroup {
            logs: chunk.to_vec(),
            topic: Some(Bytes::from_static(b"cloudtrail_import")),
            ..Default::default()
        };
        c.put_logs(PROJECT, LOGSTORE, &group, PutTarget::LoadBalanced)
            .await
            .unwrap();
    }
    let config = s.config(HEC_TOKEN, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[enrich]\nthreads = 2",
        "[enrich]\nthreads = 2\nevent_key = \"content\"\n\n[filter]\ntopics = [\"cloudtrail_import\"]",
    );
    std::fs::write(&config, text).unwrap();
    let mut node = s.node(&config);

    let deadline = Instant::now() + Duration::from_secs(60);
    let events = loop {
        let text = reqwest::get(format!("http://{}/_devstack/events", s.hec.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if events.len() >= expected.len() {
            break events;
        }
        assert!(node.alive(), "trail-node died");
        assert!(
            Instant::now() < deadline,
            "{} of {} arrived",
            events.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["eventID"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    expected.sort();
    assert_eq!(ids, expected, "every write record once, no read");
    for e in &events {
        assert_eq!(e["sourcetype"], "aws:cloudtrail");
        assert_eq!(e["fields"]["userName"], "alice");
        assert_eq!(e["fields"]["eventRW"], "Write");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.dead_letters().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the broken file is dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dl = s.dead_letters();
    assert_eq!(dl.len(), 1);
    assert!(dl[0]["reason"].as_str().unwrap().contains("Records"));
}

/// Tag fields (`tag_*`) and `tag_status` of every event HEC indexed, by eventId.
async fn hec_tags(hec: &Devstack) -> HashMap<String, (String, Vec<(String, String)>)> {
    let text = reqwest::get(format!("http://{}/_devstack/events", hec.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let f = v["fields"].as_object().unwrap();
            let mut tags: Vec<(String, String)> = f
                .iter()
                .filter(|(k, _)| k.starts_with("tag_") && *k != "tag_status")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect();
            tags.sort();
            (
                v["event"]["eventId"].as_str().unwrap().to_owned(),
                (f["tag_status"].as_str().unwrap_or("").to_owned(), tags),
            )
        })
        .collect()
}

impl Setup {
    /// Runs a fresh node over the whole trail with tags from `cloud`, into a
    /// fresh HEC receiver; waits until every write arrived. Returns the node
    /// and receiver (still running) and the tag fields of every event.
    async fn run_with_cloud(
        &self,
        cloud: &Devstack,
        budget_ms: u64,
        sweep: bool,
    ) -> (
        TrailNode,
        Devstack,
        HashMap<String, (String, Vec<(String, String)>)>,
    ) {
        let hec = Devstack::hec(&[]);
        let config = self.config(HEC_TOKEN, "");
        use_cloud(&config, cloud, &self.hec, &hec, budget_ms, sweep);
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        let mut node = self.node(&config);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = hec_tags(&hec).await;
            if t.len() >= self.expected.len() {
                return (node, hec, t);
            }
            assert!(
                node.alive(),
                "trail-node died; see {}",
                config.with_extension("log").display()
            );
            assert!(
                Instant::now() < deadline,
                "stalled: {} of {} arrived",
                t.len(),
                self.expected.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn devstack_stats(d: &Devstack) -> Value {
    reqwest::get(format!("http://{}/_devstack/stats", d.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Switches a setup's config from the tags file to devstack's cloud server,
/// and its HEC sink from `old` to `new`.
fn use_cloud(
    config: &Path,
    cloud: &Devstack,
    old: &Devstack,
    new: &Devstack,
    budget_ms: u64,
    sweep: bool,
) {
    let management = Generator::new(7).accounts()[0].clone();
    let text = std::fs::read_to_string(config).unwrap();
    let start = text.find("[tags]\nfile = ").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let tags = format!(
        r#"[tags]
budget_ms = {budget_ms}
batch_window_ms = 50

[tags.alibaba]
tag_endpoint = "http://tag.{{region}}.aliyuncs.com"
sts_endpoint = "http://sts.aliyuncs.com"
address = "{addr}"
access_key_id = "cloud-ak"
access_key_secret = "cloud-secret"
management_account = "{management}"
sweep = {sweep}"#,
        addr = cloud.addr
    );
    let text = format!("{}{tags}{}", &text[..start], &text[end..]).replace(
        &format!("url = \"http://{}\"", old.addr),
        &format!("url = \"http://{}\"", new.addr),
    );
    std::fs::write(config, text).unwrap();
}

fn cloud_server(dir: &Path, extra: &[&str]) -> Devstack {
    let mut args = vec![
        "--access-key-id",
        "cloud-ak",
        "--access-key-secret",
        "cloud-secret",
        "--seed",
        "7",
    ];
    let tags = dir.join("tags.json").display().to_string();
    let management = Generator::new(7).accounts()[0].clone();
    let mut owned = vec![
        "--tags".to_owned(),
        tags,
        "--management-account".to_owned(),
        management,
    ];
    owned.extend(extra.iter().map(|s| s.to_string()));
    args.extend(owned.iter().map(String::as_str));
    Devstack::spawn("cloud", &args)
}

/// The cloud tag providers give every event the same tags as the tags file
/// they serve, through the Tag API and STS AssumeRole, with each resource
/// asked for once and an STS call per member account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_tags_match_the_tags_file_with_each_resource_asked_once() {
    let s = setup("cloudtags", 4000, 0, &[], &[]).await;
    // Run 1: the tags file.
    let mut node = s.node(&s.config(HEC_TOKEN, ""));
    s.wait_delivered(&mut node, Duration::from_secs(60)).await;
    node.kill();
    let by_file = hec_tags(&s.hec).await;

    // Run 2: devstack's cloud APIs, from the same file, into a fresh receiver.
    let cloud = cloud_server(&s.dir, &[]);
    let (mut node, _hec, by_cloud) = s.run_with_cloud(&cloud, 5000, false).await;
    assert_eq!(by_cloud.len(), by_file.len());
    let tagged = by_file.values().filter(|(st, _)| st == "ok").count();
    assert!(
        tagged > by_file.len() / 2,
        "most writes touch tagged resources"
    );
    for (id, (status, tags)) in &by_file {
        let (cstatus, ctags) = &by_cloud[id];
        assert_eq!((cstatus, ctags), (status, tags), "event {id}");
    }

    let stats = devstack_stats(&cloud).await;
    let calls = stats["answers"]["tag:ListTagResources"]["200"]
        .as_u64()
        .unwrap();
    let asked = stats["arns_asked"].as_u64().unwrap();
    let sts = stats["answers"]["sts:AssumeRole"]["200"]
        .as_u64()
        .unwrap_or(0);
    let members = Generator::new(7).accounts().len() as u64 - 1;
    eprintln!("Tag API calls {calls}, ARNs asked {asked}, AssumeRole {sts}");
    assert!(
        sts >= 1 && sts <= members,
        "one AssumeRole per member account: {sts}"
    );
    // Resources are discovered as the stream goes, so calls sit above the
    // ideal ceil(R/50) per scope; they must still carry several ARNs each.
    assert!(
        calls * 3 <= asked,
        "batched: {calls} calls for {asked} ARNs"
    );
    assert_eq!(node.terminate().map(|s| s.success()), Some(true));

    // Run 3: sweep mode — each (account, region) listed once — same tags.
    let cloud = cloud_server(&s.dir, &[]);
    let (_node, _hec, by_sweep) = s.run_with_cloud(&cloud, 5000, true).await;
    for (id, (status, tags)) in &by_file {
        assert_eq!(&by_sweep[id], &(status.clone(), tags.clone()), "event {id}");
    }
    let stats = devstack_stats(&cloud).await;
    let sweep_calls = stats["answers"]["tag:ListTagResources"]["200"]
        .as_u64()
        .unwrap();
    let listings = stats["listings"].as_u64().unwrap();
    eprintln!("sweep: {sweep_calls} Tag API calls ({listings} listings) instead of {calls}");
    assert_eq!(sweep_calls, listings, "only listings: nothing changed tags");
    // By ARN got cheaper once parked batches stopped holding enricher
    // threads (more misses share a call), so only the direction is asserted.
    assert!(
        sweep_calls < calls,
        "{sweep_calls} calls in sweep mode vs {calls} by ARN"
    );
}

/// With every other Tag API call throttled, nothing stalls: every write is
/// delivered, and an event either has all its tags (`ok`, the same as the
/// file gives) or says it does not (`unavailable` / `pending`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_tag_apis_never_stall_a_shard_and_incomplete_tags_say_so() {
    let s = setup("throttled", 3000, 0, &[], &[]).await;
    let mut node = s.node(&s.config(HEC_TOKEN, ""));
    s.wait_delivered(&mut node, Duration::from_secs(60)).await;
    node.kill();
    let by_file = hec_tags(&s.hec).await;

    let cloud = cloud_server(&s.dir, &["--throttle-every", "2"]);
    let (_node, _hec, by_cloud) = s.run_with_cloud(&cloud, 300, false).await;
    let mut incomplete = 0;
    for (id, (status, tags)) in &by_cloud {
        match status.as_str() {
            "ok" => assert_eq!(tags, &by_file[id].1, "event {id}"),
            "unavailable" | "pending" => incomplete += 1,
            _ => assert_eq!(status, &by_file[id].0, "event {id}"),
        }
    }
    let stats = devstack_stats(&cloud).await;
    let throttled = stats["answers"]["tag:ListTagResources"]["Throttling.User"]
        .as_u64()
        .unwrap_or(0);
    eprintln!("throttled calls {throttled}, events with incomplete tags {incomplete}");
    assert!(throttled > 0, "throttling was injected: {stats}");
}

/// `/metrics` after a delivery: every name the node has always served,
/// plus the histograms, each with observations where the run made some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_serve_the_counters_and_the_latency_histograms() {
    let s = setup("metrics", 2000, 200, &[], &[]).await;
    let port = trail_tests::free_port();
    let mut node = s.node(&s.config(
        HEC_TOKEN,
        &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    ));
    s.wait_delivered(&mut node, Duration::from_secs(120)).await;
    // The checkpoint moves (and the delay is observed) once every sink acked.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let resp = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = resp.text().await.unwrap();
        let delays: u64 = sample_sum(&text, "trail_shard_delivery_delay_seconds_count");
        if delays > 0 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for family in [
        "trail_component_received_events_total counter",
        "trail_component_received_bytes_total counter",
        "trail_component_discarded_events_total counter",
        "trail_dead_lettered_events_total counter",
        "trail_tag_status_events_total counter",
        "trail_tag_cache_invalidations_total counter",
        "trail_tag_cache_lookups_total counter",
        "trail_shard_restarts_total counter",
        "trail_shard_pull_errors_total counter",
        "trail_component_sent_events_total counter",
        "trail_component_sent_bytes_total counter",
        "trail_component_errors_total counter",
        "trail_component_retries_total counter",
        "trail_sink_dead_lettered_events_total counter",
        "trail_sink_stopped gauge",
        "trail_shard_lag_seconds gauge",
        "trail_shard_epoch gauge",
        "trail_source_pull_duration_seconds histogram",
        "trail_sink_request_duration_seconds histogram",
        "trail_sink_request_events histogram",
        "trail_sink_request_bytes histogram",
        "trail_shard_delivery_delay_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == format!("# TYPE {family}")),
            "# TYPE {family} missing from\n{text}"
        );
    }
    let read = sample_sum(&text, "trail_component_received_events_total");
    assert_eq!(read, 2000, "every event read once");
    let sent = sample_sum(&text, "trail_component_sent_events_total");
    assert_eq!(sent as usize, s.expected.len(), "every write sent once");
    assert_eq!(sample_sum(&text, "trail_dead_lettered_events_total"), 10);
    assert!(sample_sum(&text, "trail_source_pull_duration_seconds_count") > 0);
    let requests = sample_sum(&text, "trail_sink_request_duration_seconds_count");
    assert!(requests > 0, "{text}");
    assert_eq!(
        sample_sum(&text, "trail_sink_request_events_count"),
        requests,
        "one size observation per request"
    );
    assert!(
        sample_sum(&text, "trail_shard_delivery_delay_seconds_count") > 0,
        "the end-to-end delay is observed once every sink acknowledged"
    );
    assert!(
        text.contains("trail_sink_request_duration_seconds_bucket{component_kind=\"sink\",component_id=\"hec#0\",le=\"+Inf\"}"),
        "{text}"
    );
    assert_eq!(node.terminate().map(|s| s.success()), Some(true));
}

/// A node's budget of bytes in flight far below what its shards would pull
/// on their credits: the shards take turns, nothing is lost, dead letters
/// and retried pulls give their share back, and once the backlog is done the
/// budget is whole again (no share leaks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_node_budget_serves_every_shard_in_turn_and_every_share_comes_back() {
    let s = setup("budget", 3000, 150, &[], &[]).await;
    let port = trail_tests::free_port();
    let config = s.config(
        HEC_TOKEN,
        &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "in_flight_batches = 2\n",
        "in_flight_batches = 2\npull_target_bytes = 16384\nmax_in_flight_bytes = 32768\n",
    );
    std::fs::write(&config, text).unwrap();
    let mut node = s.node(&config);
    let metrics = || async {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let ids = s.wait_delivered(&mut node, Duration::from_secs(180)).await;
    assert!(s.expected.iter().all(|e| ids.contains_key(e)));
    assert_eq!(s.dead_letters().len(), s.malformed);
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics().await;
        if sample_sum(&text, "trail_in_flight_bytes") == 0 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(sample_sum(&text, "trail_in_flight_bytes_limit"), 32768);
    assert_eq!(
        sample_sum(&text, "trail_in_flight_bytes"),
        0,
        "every batch's share is back once the backlog is delivered"
    );
    assert!(
        sample_sum(&text, "trail_in_flight_budget_waits_total") > 0,
        "4 shards with 2 credits of 16 KiB each must have waited for a 32 KiB budget"
    );
    assert_eq!(
        sample_sum(&text, "trail_component_received_events_total"),
        3000
    );
    assert_eq!(node.terminate().map(|s| s.success()), Some(true));
}

/// The sum of a sample's values over its label sets (`name{…} v` and `name v`).
fn sample_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A load balancer in front of HEC indexers as Splunk Cloud and most
/// on-prem tiers run one: a request without its cookie goes to the next
/// indexer in turn and the answer sets `trail_lb=<indexer>`; a request with
/// the cookie goes where it says. It records which indexer each channel's
/// requests and ack polls reached.
struct CookieLb {
    indexers: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    http: reqwest::Client,
    /// (channel, indexer, is an ack poll)
    seen: std::sync::Mutex<Vec<(String, usize, bool)>>,
}

impl trail_devstack::http::Handler for CookieLb {
    async fn call(
        &self,
        req: http::Request<hyper::body::Incoming>,
        _peer: std::net::SocketAddr,
    ) -> trail_devstack::http::Answer {
        use http_body_util::BodyExt;
        let (head, body) = req.into_parts();
        let header = |k: &str| {
            head.headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let sticky = header("cookie").and_then(|c| {
            c.split(';')
                .filter_map(|kv| kv.trim().strip_prefix("trail_lb="))
                .find_map(|n| n.parse::<usize>().ok())
                .filter(|n| *n < self.indexers.len())
        });
        let to = sticky.unwrap_or_else(|| {
            self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.indexers.len()
        });
        let channel = header("x-splunk-request-channel").unwrap_or_default();
        let path = head.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        self.seen
            .lock()
            .unwrap()
            .push((channel, to, path.contains("/ack")));
        let body = body
            .collect()
            .await
            .map_err(|_| trail_devstack::http::Drop)?
            .to_bytes();
        let mut fwd = self
            .http
            .post(format!("http://{}{path}", self.indexers[to]))
            .body(body);
        for k in [
            "authorization",
            "content-type",
            "content-encoding",
            "x-splunk-request-channel",
        ] {
            if let Some(v) = header(k) {
                fwd = fwd.header(k, v);
            }
        }
        let resp = fwd.send().await.map_err(|_| trail_devstack::http::Drop)?;
        let mut out = http::Response::builder().status(resp.status().as_u16());
        if sticky.is_none() {
            out = out.header("set-cookie", format!("trail_lb={to}; Path=/; HttpOnly"));
        }
        let bytes = resp.bytes().await.map_err(|_| trail_devstack::http::Drop)?;
        Ok(out
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes))
            .unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_behind_a_cookie_routing_load_balancer_reach_the_indexer_that_took_the_request() {
    // Two indexers with acknowledgement; an ack id polled at the indexer that
    // did not issue it is `false` forever, so a sink that lost its way would
    // send every request again after ack_timeout (2 s here).
    let s = setup("lb", 1500, 0, &[], &["--ack"]).await;
    let second = Devstack::hec(&["--ack", "--first-ack-id", "1000000000"]);
    let lb = std::sync::Arc::new(CookieLb {
        indexers: vec![s.hec.addr.to_string(), second.addr.to_string()],
        next: Default::default(),
        http: reqwest::Client::new(),
        seen: Default::default(),
    });
    let server = trail_devstack::http::Server::start("127.0.0.1:0".parse().unwrap(), lb.clone())
        .await
        .unwrap();
    let config = s.config_at(
        &server.local_addr().to_string(),
        HEC_TOKEN,
        "indexer_ack = true\nack_poll_interval_ms = 50\nack_timeout_secs = 2\nconcurrency = 4",
        "",
    );
    let mut node = s.node(&config);
    let both = || async {
        let mut ids = s.hec_ids().await;
        for (id, n) in trail_tests::hec_event_ids(&second).await {
            *ids.entry(id).or_default() += n;
        }
        ids
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ids = both().await;
        if s.expected.iter().all(|e| ids.contains_key(e)) {
            break;
        }
        assert!(
            node.alive(),
            "trail-node died; see {}",
            s.dir.join("trail.log").display()
        );
        assert!(
            Instant::now() < deadline,
            "{} of {} arrived",
            ids.len(),
            s.expected.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past one more ack timeout: nothing was sent again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ids = both().await;
    let dups: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "{} events delivered twice: {:?}",
        dups.len(),
        &dups[..dups.len().min(5)]
    );
    assert_eq!(ids.len(), s.expected.len());

    let seen = lb.seen.lock().unwrap().clone();
    let mut by_channel: HashMap<String, std::collections::BTreeSet<usize>> = HashMap::new();
    let mut polls = 0;
    for (channel, to, ack) in &seen {
        assert!(!channel.is_empty(), "every request names its channel");
        by_channel.entry(channel.clone()).or_default().insert(*to);
        polls += usize::from(*ack);
    }
    assert!(polls > 0, "acks were polled");
    for (channel, indexers) in &by_channel {
        assert_eq!(
            indexers.len(),
            1,
            "channel {channel} reached indexers {indexers:?}"
        );
    }
    assert!(
        (2..=4).contains(&by_channel.len()),
        "one channel per lane: {by_channel:?}"
    );
    let used: std::collections::BTreeSet<usize> = by_channel.values().flatten().copied().collect();
    assert_eq!(used.len(), 2, "the lanes spread over both indexers");
    drop(node);
    server.shutdown().await;
}
