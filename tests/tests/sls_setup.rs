//! `trail-node setup` and the index half of `trail-node check`, as an
//! operator runs them: real processes against devstack SLS, read back with
//! Trail's SLS client. And the property the index rests on: every field the
//! SLS sink writes, for thousands of generated events, is one it indexes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::{json, Value};
use trail_devstack::gen::Generator;
use trail_node::event::{EventFilter, FilterConfig, RwFilter};
use trail_node::pipeline::enrich::Enrichment;
use trail_node::record::BUSINESS_FIELDS;
use trail_node::sink::sls::setup::{business_view_index, saved_searches};
use trail_node::sink::sls::SlsLogEncoder;
use trail_node::tags::{builtin_kinds, StaticTags, TagCache};
use trail_tests::{binary, free_port, Devstack, ACCESS_KEY_ID, ACCESS_KEY_SECRET};

const PROJECT: &str = "audit";

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trail-setup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A node config with the business view and dead letters in SLS at `sls`.
fn config(dir: &Path, sls: &str, tags: &Path) -> PathBuf {
    let path = dir.join("trail.toml");
    let text = format!(
        r#"
[node]
id = "setup-node"
data_dir = {data:?}

[source]
endpoint = "http://sls.test"
address = "{sls}"
project = "{PROJECT}"
logstore = "actiontrail"
access_key_id = "{ACCESS_KEY_ID}"
access_key_secret = "{ACCESS_KEY_SECRET}"
consumer_group = "trail"

[tags]
file = {tags:?}

[[sinks]]
type = "sls"
endpoint = "http://sls.test"
address = "{sls}"
project = "{PROJECT}"
logstore = "business_view"
access_key_id = "{ACCESS_KEY_ID}"
access_key_secret = "{ACCESS_KEY_SECRET}"

[dead_letter]
[dead_letter.sls]
endpoint = "http://sls.test"
address = "{sls}"
project = "{PROJECT}"
logstore = "trail_dead_letters"
access_key_id = "{ACCESS_KEY_ID}"
access_key_secret = "{ACCESS_KEY_SECRET}"
"#,
        data = dir.join("data").display().to_string(),
        tags = tags.display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn trail_node(args: &[&str]) -> (Output, String) {
    let out = Command::new(binary("trail-node"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run trail-node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "trail-node {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out, stdout)
}

fn warnings(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect()
}

fn tags_file(dir: &Path, g: &Generator) -> (PathBuf, BTreeSet<String>) {
    let path = dir.join("tags.json");
    std::fs::write(&path, serde_json::to_vec(&g.tags_file()).unwrap()).unwrap();
    let keys = StaticTags::open(&path, Duration::from_secs(3600))
        .unwrap()
        .keys();
    assert!(keys.contains("project"), "the generator tags by project");
    (path, keys)
}

fn index_keys(index: &Value) -> &serde_json::Map<String, Value> {
    index["keys"].as_object().expect("an index with keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_makes_the_business_view_queryable_and_a_second_run_changes_nothing() {
    let dir = dir("fresh");
    let sls = Devstack::sls(&["--project", PROJECT, "--logstore", "actiontrail"]);
    let (tags, tag_keys) = tags_file(&dir, &Generator::new(5));
    let cfg = config(&dir, &sls.addr.to_string(), &tags);
    let cfg = cfg.to_str().unwrap();

    // Before: check names both logstores as missing, and still passes.
    let (_, out) = trail_node(&["check", "--config", cfg]);
    let w = warnings(&out);
    assert!(
        w.iter()
            .any(|l| l.contains("sinks[0] (audit/business_view): the logstore does not exist")),
        "{out}"
    );
    assert!(
        w.iter().any(|l| l
            .contains("dead_letter.sls (audit/trail_dead_letters): the logstore does not exist")),
        "{out}"
    );
    assert!(out.trim_end().ends_with(": ok"), "{out}");

    let (_, out) = trail_node(&["setup", "--config", cfg, "--ttl-days", "30"]);
    assert!(out.contains("(the tags file)"), "{out}");
    for want in [
        "sinks[0] (audit/business_view): logstore created (30 days, 2 shards)",
        "sinks[0] (audit/business_view): index created",
        "sinks[0] (audit/business_view): saved searches created: trail-changes-by-project-business_view, trail-failed-changes-business_view, trail-sensitive-actions-business_view",
        "dead_letter.sls (audit/trail_dead_letters): logstore created",
        "dead_letter.sls (audit/trail_dead_letters): index created",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    // What SLS now holds, read back.
    let c = trail_tests::cluster::sls_client(&sls);
    let ix = c
        .get_index(PROJECT, "business_view")
        .await
        .unwrap()
        .expect("an index");
    assert_eq!(ix["ttl"], 30, "the logstore was made with --ttl-days");
    let keys = index_keys(&ix);
    for f in BUSINESS_FIELDS {
        assert_eq!(keys[*f]["type"], "text", "{f}");
        assert_eq!(
            keys[*f]["doc_value"], true,
            "{f}: analytics on, for SELECT … GROUP BY"
        );
    }
    assert_eq!(keys["shard"]["type"], "long");
    for k in &tag_keys {
        assert_eq!(keys[&format!("tag_{k}")]["type"], "text", "tag {k}");
    }
    assert!(ix["line"]["token"].is_array(), "a full-text index");
    let dl = c
        .get_index(PROJECT, "trail_dead_letters")
        .await
        .unwrap()
        .expect("an index");
    assert_eq!(index_keys(&dl)["reason"]["type"], "text");
    assert_eq!(index_keys(&dl)["shard"]["type"], "long");
    for s in saved_searches("business_view", "tag_") {
        let name = s["savedsearchName"].as_str().unwrap();
        let got = c
            .get_saved_search(PROJECT, name)
            .await
            .unwrap()
            .expect(name);
        assert_eq!(got["logstore"], "business_view");
        assert_eq!(got["searchQuery"], s["searchQuery"]);
    }

    // After: check is quiet; a second setup keeps everything (a second
    // later, so that an UpdateIndex would show in lastModifyTime).
    let (_, out) = trail_node(&["check", "--config", cfg]);
    assert_eq!(warnings(&out), Vec::<&str>::new(), "{out}");
    std::thread::sleep(Duration::from_millis(1100));
    let (_, out) = trail_node(&["setup", "--config", cfg]);
    for want in [
        "sinks[0] (audit/business_view): logstore exists (kept as it is)",
        "sinks[0] (audit/business_view): index up to date",
        "sinks[0] (audit/business_view): saved searches up to date: 3",
        "dead_letter.sls (audit/trail_dead_letters): index up to date",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(
        !out.contains("): logstore created")
            && !out.contains("index created")
            && !out.contains("updated"),
        "{out}"
    );
    let again = c
        .get_index(PROJECT, "business_view")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again["lastModifyTime"], ix["lastModifyTime"],
        "no UpdateIndex on a second run"
    );
    assert_eq!(again["ttl"], 30, "an existing logstore is kept as it is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_made_by_hand_gains_what_it_lacks_and_keeps_the_operators_choices() {
    let dir = dir("existing");
    let sls = Devstack::sls(&[
        "--project",
        PROJECT,
        "--logstore",
        "actiontrail",
        "--extra-logstore",
        "business_view",
    ]);
    let (tags, _) = tags_file(&dir, &Generator::new(6));
    let cfg = config(&dir, &sls.addr.to_string(), &tags);
    let cfg = cfg.to_str().unwrap();
    let c = trail_tests::cluster::sls_client(&sls);
    // An operator's index: a few keys and no full text; `shard` as text,
    // `eventName` without analytics (the saved searches' SQL needs it),
    // and a key of their own.
    let by_hand = json!({
        "keys": {
            "userName": { "type": "text", "token": [",", " "], "alias": "user", "doc_value": true },
            "shard": { "type": "text", "token": [","], "doc_value": true },
            "eventName": { "type": "text", "token": [","] },
            "region_label": { "type": "text", "token": [","] },
        }
    });
    c.put_index(PROJECT, "business_view", &by_hand, true)
        .await
        .unwrap();

    let (_, out) = trail_node(&["check", "--config", cfg]);
    let w: Vec<&str> = warnings(&out)
        .into_iter()
        .filter(|l| l.contains("sinks[0]"))
        .collect();
    let has = |text: &str| w.iter().any(|l| l.contains(text));
    assert!(
        has("sinks[0] (audit/business_view): the index lacks"),
        "{out}"
    );
    assert!(
        has("`shard` is indexed as text with analytics, Trail needs long with analytics"),
        "{out}"
    );
    assert!(
        has("`eventName` is indexed as text without analytics, Trail needs text with analytics"),
        "{out}"
    );
    assert!(has("saved searches missing"), "{out}");
    assert_eq!(w.len(), 4, "{out}");

    let (_, out) = trail_node(&["setup", "--config", cfg]);
    for want in [
        "sinks[0] (audit/business_view): logstore exists",
        "sinks[0] (audit/business_view): index updated: added",
        "warning: `shard` is indexed as text with analytics, Trail needs long with analytics; left as it is",
        "the index has no full-text part: left so",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let ix = c
        .get_index(PROJECT, "business_view")
        .await
        .unwrap()
        .unwrap();
    let keys = index_keys(&ix);
    assert_eq!(
        keys["userName"]["alias"], "user",
        "an existing key is kept as it was"
    );
    assert_eq!(keys["userName"]["token"], json!([",", " "]));
    assert_eq!(keys["shard"]["type"], "text", "never re-typed");
    assert!(
        keys["eventName"].get("doc_value").is_none(),
        "never changed"
    );
    assert!(
        keys.contains_key("region_label"),
        "the operator's own key stays"
    );
    assert_eq!(keys["eventId"]["type"], "text", "added");
    assert_eq!(keys["tag_project"]["type"], "text", "added");
    assert!(
        ix.get("line").is_none(),
        "full text is the operator's choice"
    );

    // Only the mismatches are left for check to mention.
    let (_, out) = trail_node(&["check", "--config", cfg]);
    assert_eq!(warnings(&out).len(), 2, "{out}");

    // A saved search edited by hand: check says so, setup puts Trail's back.
    let mut edited = saved_searches("business_view", "tag_").remove(1);
    edited["searchQuery"] = json!("errorCode: *");
    c.put_saved_search(PROJECT, &edited).await.unwrap();
    let (_, out) = trail_node(&["check", "--config", cfg]);
    assert!(
        out.contains(
            "saved searches differ from what Trail makes: trail-failed-changes-business_view"
        ),
        "{out}"
    );
    let (_, out) = trail_node(&["setup", "--config", cfg]);
    assert!(
        out.contains(
            "saved searches updated (their query differed): trail-failed-changes-business_view"
        ),
        "{out}"
    );
    assert!(out.contains("saved searches up to date: 2"), "{out}");
}

#[test]
fn check_does_not_hang_on_a_silent_sls_and_offline_asks_nothing() {
    let dir = dir("unreachable");
    let (tags, _) = tags_file(&dir, &Generator::new(7));
    // An SLS that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let cfg = config(&dir, &addr.to_string(), &tags);
    let cfg = cfg.to_str().unwrap();
    let started = Instant::now();
    let (_, out) = trail_node(&["check", "--config", cfg]);
    // One 5 s try per logstore, both at once; never the retry policy's.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "check took {:?}",
        started.elapsed()
    );
    let w = warnings(&out);
    assert_eq!(w.len(), 2, "{out}");
    assert!(
        w.iter().all(|l| l.contains("could not read its index")),
        "{out}"
    );
    let (_, out) = trail_node(&["check", "--offline", "--config", cfg]);
    assert_eq!(warnings(&out), Vec::<&str>::new(), "{out}");
    assert!(out.trim_end().ends_with(": ok"), "{out}");
    // And setup, which must not pretend: it fails, naming the logstore.
    let cfg = config(&dir, &format!("127.0.0.1:{}", free_port()), &tags);
    let out = Command::new(binary("trail-node"))
        .args(["setup", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sinks[0] (audit/business_view): CreateLogStore"),
        "{err}"
    );
}

/// The SLS sink's output for 4,000 generated events (every event kept):
/// each key is indexed by the index setup makes from the same tags file,
/// and every business field the index names is written by some event.
#[test]
fn every_field_the_sls_sink_writes_is_indexed() {
    let dir = dir("fields");
    let mut g = Generator::new(13);
    let (tags, tag_keys) = tags_file(&dir, &g);
    let raw: Vec<String> = (0..4000).map(|_| g.next_event()).collect();
    let e = Enrichment {
        filter: EventFilter::new(&FilterConfig {
            event_rw: RwFilter::All,
            ..Default::default()
        }),
        tags: Some(TagCache::new(
            Arc::new(StaticTags::open(&tags, Duration::from_secs(3600)).unwrap()),
            100_000,
            Duration::from_secs(3600),
        )),
        kinds: builtin_kinds().into(),
        max_event_bytes: 1 << 20,
        max_envelope_bytes: 32 << 20,
        event_key: b"event".to_vec(),
        tag_budget: Duration::from_secs(1),
    };
    let encoder = SlsLogEncoder {
        tag_prefix: "tag_".into(),
        include_event: true,
    };
    let (logs, out) = trail_tests::enrich_with(&e, raw, Arc::new(encoder), 1);
    assert_eq!(
        logs.len(),
        4000,
        "every event kept: {:?}",
        out.dead_letters.len()
    );
    let tag_keys: Vec<String> = tag_keys.into_iter().collect();
    let index = business_view_index("tag_", &tag_keys);
    let indexed = index_keys(&index);
    let mut written = BTreeSet::new();
    for bytes in &logs {
        let log = trail_proto::sls::Log::decode(&bytes[..]).expect("a Log message");
        for c in log.contents {
            written.insert(String::from_utf8(c.key.to_vec()).unwrap());
        }
    }
    let unindexed: Vec<&String> = written
        .iter()
        .filter(|k| *k != "event" && !indexed.contains_key(*k))
        .collect();
    assert!(
        unindexed.is_empty(),
        "written but not indexed: {unindexed:?}"
    );
    let never: Vec<&&str> = BUSINESS_FIELDS
        .iter()
        .filter(|f| !written.contains(**f))
        .collect();
    assert!(never.is_empty(), "indexed but never written: {never:?}");
    assert!(written.contains("tag_project") && written.contains("shard"));
}
