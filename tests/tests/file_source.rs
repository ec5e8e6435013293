//! The `file` source with a real `trail-node` process: CloudTrail
//! `Records` files (gzip'd, AWS's key layout, as `gen --cloudtrail
//! --out-dir` writes them) and an ActionTrail JSON-lines file with a
//! broken line, to devstack's HEC. Killed with SIGKILL mid-file, it
//! resumes from its checkpoint; restarted after the end, it sends nothing
//! again; a file that appears later is found.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use trail_tests::{binary, Devstack, TrailNode, HEC_TOKEN};

async fn ids(hec: &Devstack) -> HashMap<String, u32> {
    trail_tests::hec_event_ids(hec).await
}

/// Distinct event ids HEC indexed (cheap: its stats, not the events).
async fn distinct(hec: &Devstack) -> usize {
    let v: Value = reqwest::get(format!("http://{}/_devstack/stats", hec.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["distinct_event_ids"].as_u64().unwrap_or(0) as usize
}

/// Waits until HEC holds `total` distinct ids, every one of `want` among them.
async fn wait_for(
    hec: &Devstack,
    node: &mut TrailNode,
    want: &[String],
    total: usize,
    log: &Path,
) -> HashMap<String, u32> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = distinct(hec).await;
        if n >= total {
            let got = ids(hec).await;
            let missing = want.iter().filter(|w| !got.contains_key(*w)).count();
            assert_eq!(
                missing, 0,
                "{total} distinct ids, yet {missing} expected ones missing"
            );
            return got;
        }
        assert!(node.alive(), "trail-node died; see {}", log.display());
        assert!(
            Instant::now() < deadline,
            "{n} of {total} arrived; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_read_once_resumed_after_a_kill_and_new_ones_found() {
    let dir = std::env::temp_dir().join(format!("trail-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let trail = dir.join("trail");
    std::fs::create_dir_all(&trail).unwrap();
    // CloudTrail files, as downloaded from the bucket.
    let gen = |args: &[&str]| {
        let out = std::process::Command::new(binary("trail-devstack"))
            .arg("gen")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    gen(&[
        "--cloudtrail",
        "--events",
        "1500",
        "--records-per-file",
        "300",
        "--out-dir",
        trail.to_str().unwrap(),
    ]);
    // ActionTrail JSON lines, one line cut short.
    let lines = trail.join("actiontrail.jsonl");
    gen(&[
        "--events",
        "12000",
        "--seed",
        "5",
        "--out",
        lines.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&lines).unwrap();
    let mut all: Vec<String> = text.lines().map(str::to_owned).collect();
    all[10] = all[10][..all[10].len() / 2].to_owned();
    std::fs::write(&lines, all.join("\n") + "\n").unwrap();
    let mut want: Vec<String> = all
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["eventId"].as_str().unwrap().to_owned())
        .collect();
    for entry in walk(&trail) {
        if entry.extension().is_some_and(|e| e == "gz") {
            let doc: Value =
                serde_json::from_slice(&gunzip(&std::fs::read(&entry).unwrap())).unwrap();
            want.extend(
                doc["Records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["eventID"].as_str().unwrap().to_owned()),
            );
        }
    }
    assert_eq!(want.len(), 1500 + 11_999);

    let hec = Devstack::hec(&[]);
    let config = dir.join("trail.toml");
    std::fs::write(
        &config,
        format!(
            r#"[node]
id = "files"
data_dir = {data:?}

[[sources]]
type = "file"
name = "backfill"
paths = ["{trail}/AWSLogs/**/*.json.gz", "{trail}/*.jsonl"]
rescan_secs = 1
batch_bytes = 65536

[filter]
event_rw = "all"

[enrich]
threads = 2

[[sinks]]
type = "hec"
url = "http://{hec}"
token = "{HEC_TOKEN}"
flush_interval_ms = 50

[dead_letter]
path = {dead:?}
"#,
            data = dir.join("data").display().to_string(),
            trail = trail.display(),
            hec = hec.addr,
            dead = dir.join("dead.jsonl").display().to_string(),
        ),
    )
    .unwrap();
    let log = config.with_extension("log");
    let mut node = TrailNode::spawn(&config);
    // Kill mid-way through the JSON lines (read after the CloudTrail files).
    let deadline = Instant::now() + Duration::from_secs(60);
    while distinct(&hec).await < 1500 + 3000 {
        assert!(
            Instant::now() < deadline && node.alive(),
            "no progress; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill();
    let before = distinct(&hec).await;
    assert!(
        before < want.len(),
        "killed mid-file ({before} of {})",
        want.len()
    );
    let mut node = TrailNode::spawn(&config);
    let got = wait_for(&hec, &mut node, &want, want.len(), &log).await;
    let dups: u32 = got.values().map(|n| n - 1).sum();
    // Bounded by the batches in flight at the kill (2 × 64 KiB of lines, ~100 events).
    assert!(dups <= 400, "{dups} duplicates after the kill");
    let dead = std::fs::read_to_string(dir.join("dead.jsonl")).unwrap_or_default();
    assert_eq!(
        dead.lines().count(),
        1,
        "the cut line, with its file: {dead}"
    );
    assert!(dead.contains("actiontrail.jsonl"), "{dead}");

    // A new file is found by the rescan; finished files are not read again.
    let settled = ids(&hec).await.values().sum::<u32>();
    let later = trail.join("later.jsonl");
    gen(&[
        "--events",
        "100",
        "--seed",
        "9",
        "--out",
        later.to_str().unwrap(),
    ]);
    let new: Vec<String> = std::fs::read_to_string(&later)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["eventId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    wait_for(&hec, &mut node, &new, want.len() + new.len(), &log).await;
    node.kill();
    let mut node = TrailNode::spawn(&config);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(node.alive());
    let total = ids(&hec).await.values().sum::<u32>();
    assert_eq!(
        total,
        settled + 100,
        "a restart after the end sends nothing again"
    );
    node.kill();
}

fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![d.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}
