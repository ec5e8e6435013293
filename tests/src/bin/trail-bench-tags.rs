//! `trail-bench-tags`: the replicated tag tier at scale, with real
//! `trail-node` processes on loopback.
//!
//! 1. Node 1 bootstraps a cluster (`snapshot_logs` small, so the log is
//!    compacted into snapshots while the tags arrive).
//! 2. `--tags` resources (an ARN and four tags, shaped as Alibaba Cloud
//!    resources are named) are imported through `trail.v1.Tags/Import`,
//!    committed through raft in batches (250 resources an entry).
//! 3. Node 2 joins. Its log starts behind the leader's snapshot, so it is
//!    sent the snapshot and installs it: the time from its start to its
//!    last applied index reaching the leader's commit index is
//!    **join-to-caught-up**.
//!
//! Reported: import rate; the snapshot (bytes, tags, build time, from node
//! 1's log: `snapshot built`); its install on node 2 (`snapshot
//! installed`); join-to-caught-up; peak RSS of both nodes; their data
//! directories on disk. `--write BENCHMARKS.md` replaces that file's
//! "The tag tier at scale" section.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use trail_proto::trail::v1 as pb;
use trail_tests::cluster::peak_rss_mib;
use trail_tests::{free_port, TrailNode};

#[derive(Parser)]
struct Args {
    /// Resources to import.
    #[arg(long, default_value_t = 1_000_000)]
    tags: usize,
    /// Raft entries between snapshots on both nodes.
    #[arg(long, default_value_t = 200)]
    snapshot_logs: u64,
    /// Give up on the join after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Replace the "The tag tier at scale" section of this file.
    #[arg(long)]
    write: Option<PathBuf>,
}

const TOKEN: &str = "bench-tags-token";

struct Node {
    id: u64,
    port: u16,
    metrics: u16,
    config: PathBuf,
    data: PathBuf,
    proc: Option<TrailNode>,
}

fn config(
    dir: &Path,
    id: u64,
    port: u16,
    metrics: u16,
    join: Option<u16>,
    snapshot_logs: u64,
) -> PathBuf {
    let data = dir.join(format!("n{id}"));
    let empty = dir.join("no-files");
    std::fs::create_dir_all(&empty).unwrap();
    let join = match join {
        None => "bootstrap = true".to_owned(),
        Some(p) => format!("join = [\"127.0.0.1:{p}\"]"),
    };
    let text = format!(
        r#"[node]
id = "n{id}"
data_dir = {data:?}

[[sources]]
type = "file"
name = "none"
paths = [{files:?}]

[[sinks]]
type = "file"
path = {out:?}

[dead_letter]
path = {dead:?}

[metrics]
listen = "127.0.0.1:{metrics}"

[control]
listen = "127.0.0.1:{port}"
token = {{ env = "TRAIL_BENCH_TAGS_TOKEN" }}

[cluster]
node_id = {id}
{join}
snapshot_logs = {snapshot_logs}
"#,
        data = data.display().to_string(),
        files = empty.join("*.json").display().to_string(),
        out = dir.join(format!("n{id}-out.jsonl")).display().to_string(),
        dead = dir.join(format!("n{id}-dead.jsonl")).display().to_string(),
    );
    let path = dir.join(format!("n{id}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A metric's value on a node (the first sample of that name).
async fn metric(port: u16, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn wait_metric(
    port: u16,
    name: &str,
    timeout: Duration,
    ok: impl Fn(f64) -> bool,
) -> Result<f64> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = metric(port, name).await {
            if ok(v) {
                return Ok(v);
            }
        }
        if Instant::now() > deadline {
            bail!("{name} on :{port} not as wanted within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One resource: an ECS instance of one of 40 accounts in one of 6
/// regions, with the four tags an estate's tag policy asks for.
fn resource(i: usize, now_ms: i64) -> pb::ResourceTags {
    const REGIONS: [&str; 6] = [
        "cn-hangzhou",
        "cn-shanghai",
        "cn-beijing",
        "cn-shenzhen",
        "ap-southeast-1",
        "eu-central-1",
    ];
    let account = 1_384_920_045_560_000u64 + (i % 40) as u64;
    let region = REGIONS[i % REGIONS.len()];
    pb::ResourceTags {
        arn: format!(
            "acs:ecs:{region}:{account}:instance/i-{:020x}",
            i as u64 * 0x9e37_79b9
        ),
        tags: [
            ("project".to_owned(), format!("project-{}", i % 300)),
            (
                "env".to_owned(),
                ["prod", "staging", "dev"][i % 3].to_owned(),
            ),
            ("owner".to_owned(), format!("team-{}@example.com", i % 57)),
            ("cost-center".to_owned(), format!("cc-{:04}", i % 1200)),
        ]
        .into(),
        origin: "api".into(),
        updated_ms: now_ms,
    }
}

/// `key=value` of a tracing line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim_matches('"').parse().ok())
}

fn log_lines(config: &Path, what: &str) -> Vec<String> {
    std::fs::read_to_string(config.with_extension("log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_owned)
        .collect()
}

/// The resident set (VmRSS) of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dir_mib(p: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else {
            return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        };
        rd.flatten().map(|e| walk(&e.path())).sum()
    }
    walk(p) as f64 / (1024.0 * 1024.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    std::env::set_var("TRAIL_BENCH_TAGS_TOKEN", TOKEN);
    let dir = std::env::temp_dir().join(format!("trail-bench-tags-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut nodes: Vec<Node> = (1..=2)
        .map(|id| {
            let port = free_port();
            Node {
                id,
                port,
                metrics: free_port(),
                config: PathBuf::new(),
                data: dir.join(format!("n{id}")),
                proc: None,
            }
        })
        .collect();
    let leader_port = nodes[0].port;
    for n in &mut nodes {
        let join = (n.id != 1).then_some(leader_port);
        n.config = config(&dir, n.id, n.port, n.metrics, join, args.snapshot_logs);
    }

    // 1. The leader.
    nodes[0].proc = Some(TrailNode::spawn(&nodes[0].config));
    wait_metric(
        nodes[0].metrics,
        "trail_raft_is_leader",
        Duration::from_secs(60),
        |v| v == 1.0,
    )
    .await
    .context("node 1 never led")?;

    let rss_before = rss_mib(nodes[0].proc.as_ref().unwrap().pid());

    // 2. The tags.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{leader_port}"))?
            .connect()
            .await?;
    let mut tags = pb::tags_client::TagsClient::new(channel).max_decoding_message_size(64 << 20);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let n = args.tags;
    let started = Instant::now();
    let mut req = tonic::Request::new(tokio_stream::iter((0..n).map(move |i| resource(i, now_ms))));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse()?);
    let written = tags.import(req).await?.into_inner().written;
    let import_secs = started.elapsed().as_secs_f64();
    if written as usize != n {
        bail!("imported {written} of {n}");
    }
    let commit = metric(nodes[0].metrics, "trail_raft_commit_index")
        .await
        .context("commit index")?;
    wait_metric(
        nodes[0].metrics,
        "trail_raft_last_applied_index",
        Duration::from_secs(60),
        |v| v >= commit,
    )
    .await?;
    println!(
        "imported {n} resources in {import_secs:.1} s ({:.0}/s); commit index {commit}",
        n as f64 / import_secs
    );
    // The last snapshot built while the tags arrived (`snapshot_logs` is
    // small: it holds all but the last few batches; the joiner gets it and
    // the log after it).
    let deadline = Instant::now() + Duration::from_secs(120);
    let built = loop {
        let last = log_lines(&nodes[0].config, "snapshot built").pop();
        let index = last.as_deref().and_then(|l| {
            let i = l.find("index=Some(")? + "index=Some(".len();
            l[i..].split(')').next()?.parse::<f64>().ok()
        });
        if let (Some(l), Some(i)) = (&last, index) {
            if i + args.snapshot_logs as f64 >= commit {
                break l.clone();
            }
        }
        if Instant::now() > deadline {
            break last
                .context("no snapshot built on node 1: raise --tags or lower --snapshot-logs")?;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lease_lost = log_lines(&nodes[0].config, "lease expired").len();
    let leader_pid = nodes[0].proc.as_ref().unwrap().pid();
    let leader_rss = peak_rss_mib(leader_pid);
    // Resident once the snapshot's buffers are gone: what the entries hold.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_mib(leader_pid);
    let per_entry = (rss_after - rss_before) * 1024.0 * 1024.0 / n as f64;

    // 3. The join.
    let join_started = Instant::now();
    nodes[1].proc = Some(TrailNode::spawn(&nodes[1].config));
    let caught_up = wait_metric(
        nodes[1].metrics,
        "trail_raft_last_applied_index",
        Duration::from_secs(args.timeout_secs),
        |v| v >= commit,
    )
    .await;
    let join_secs = join_started.elapsed().as_secs_f64();
    let joiner_pid = nodes[1].proc.as_ref().unwrap().pid();
    let joiner_rss = peak_rss_mib(joiner_pid);
    let installed = log_lines(&nodes[1].config, "snapshot installed").pop();
    let tried = log_lines(&nodes[0].config, "snapshot").len();
    let errors: Vec<String> = log_lines(&nodes[0].config, "ERROR")
        .into_iter()
        .chain(
            log_lines(&nodes[0].config, "WARN")
                .into_iter()
                .filter(|l| l.contains("snapshot")),
        )
        .take(3)
        .collect();
    for n in &mut nodes {
        if let Some(mut p) = n.proc.take() {
            p.kill();
        }
    }

    let snap_mib = field(&built, "bytes").unwrap_or(0.0) / (1024.0 * 1024.0);
    let per_tag =
        field(&built, "bytes").unwrap_or(0.0) / field(&built, "tags").unwrap_or(1.0).max(1.0);
    let mut rows = vec![
        ("resources imported (Tags/Import)".to_owned(), format!("{n} in {import_secs:.1} s ({:.0}/s)", n as f64 / import_secs)),
        ("snapshot (node 1)".to_owned(), format!(
            "{snap_mib:.1} MiB of {} resources ({per_tag:.0} B each); state lock held {}, serialized in {} ms, built and stored in {} ms",
            field(&built, "tags").unwrap_or(0.0),
            match field(&built, "locked_us") {
                Some(us) => format!("{:.1} ms", us / 1000.0),
                None => format!("{} ms (while serializing)", field(&built, "serialized_ms").unwrap_or(0.0)),
            },
            field(&built, "serialized_ms").unwrap_or(0.0),
            field(&built, "total_ms").unwrap_or(0.0),
        )),
        ("node 1 peak RSS, data dir".to_owned(), format!("{leader_rss:.0} MiB, {:.0} MiB", dir_mib(&nodes[0].data))),
        ("node 1 resident before → after the import (one entry's memory)".to_owned(), format!("{rss_before:.0} → {rss_after:.0} MiB (**{per_entry:.0} B an entry**)")),
        ("node 1 lost its own lease (apply stalls)".to_owned(), format!("{lease_lost} times")),
    ];
    match (&caught_up, &installed) {
        (Ok(_), Some(i)) => {
            rows.push((
                "snapshot install (node 2)".to_owned(),
                format!("{} ms", field(i, "total_ms").unwrap_or(0.0)),
            ));
            rows.push((
                "join to caught up (node 2 start → applied = commit)".to_owned(),
                format!("**{join_secs:.1} s**"),
            ));
            rows.push((
                "node 2 peak RSS, data dir".to_owned(),
                format!("{joiner_rss:.0} MiB, {:.0} MiB", dir_mib(&nodes[1].data)),
            ));
        }
        (Ok(_), None) => {
            rows.push((
                "join to caught up (from the log, no snapshot)".to_owned(),
                format!("**{join_secs:.1} s**"),
            ));
        }
        (Err(e), _) => {
            rows.push(("join".to_owned(), format!("**not caught up** after {join_secs:.0} s: {e}; node 1 logged {tried} snapshot lines; {}", errors.join(" | ").chars().take(400).collect::<String>())));
        }
    }
    let mut table = String::from("| what | measured |\n|---|---|\n");
    for (k, v) in &rows {
        table.push_str(&format!("| {k} | {v} |\n"));
    }
    println!("{table}");
    if let Some(path) = args.write {
        let machine = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_default();
        let section = format!(
            "## The tag tier at scale (trail-bench-tags, issue 13)\n\n`target/release/trail-bench-tags --tags {n} --snapshot-logs {}` on {} cores ({machine}): two real `trail-node` processes on loopback; node 1 bootstraps, takes the resources through `trail.v1.Tags/Import`, compacts its log into a snapshot; node 2 joins and is sent it.\n\n{table}\n",
            args.snapshot_logs,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        );
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let head = "## The tag tier at scale";
        let new = match old.find(head) {
            Some(start) => {
                let end = old[start + head.len()..]
                    .find("\n## ")
                    .map(|e| start + head.len() + e + 1)
                    .unwrap_or(old.len());
                format!("{}{section}{}", &old[..start], &old[end..])
            }
            None => format!("{old}\n{section}"),
        };
        std::fs::write(&path, new)?;
    }
    if caught_up.is_err() {
        eprintln!("node 2 never caught up; logs in {}", dir.display());
        std::process::exit(1);
    }
    Ok(())
}
