//! `trail-bench`: the end-to-end benchmark. Real processes on loopback:
//! `trail-devstack sls` → `trail-node run` → `trail-devstack hec`.
//!
//! It loads `--events` generated ActionTrail events into devstack SLS once,
//! then, per `--filter` mode, starts a fresh node (own data, own consumer
//! group, own HEC receiver): `all` keeps every event (each is parsed,
//! tagged, HEC-encoded and gzipped), `writes` is the default filter (writes
//! only; the generator's own verdict says how many HEC must index). For
//! each it waits until HEC has indexed what should pass and reports
//! events/s, MB/s of raw event JSON, the node's CPU seconds, MB per
//! CPU-second and peak RSS (from /proc), appending a row per mode to
//! BENCHMARKS.md.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use trail_devstack::gen::Generator;
use trail_node::sls::{Credentials, Endpoint, PutTarget, SlsClient};
use trail_tests::{Devstack, TrailNode, ACCESS_KEY_ID, ACCESS_KEY_SECRET, HEC_TOKEN};

#[derive(Parser)]
#[command(about = "End-to-end benchmark: devstack SLS → trail-node → devstack HEC")]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Append the result to this file (a row of its table).
    #[arg(long)]
    write: Option<PathBuf>,
    /// A note for the row (what changed).
    #[arg(long, default_value = "")]
    note: String,
    /// Where tags come from: `file` (the tags file), `cloud` (devstack's
    /// Tag/STS APIs, by ARN), `sweep` (the same, whole-region listings) or
    /// `none` (enrichment off, to see its cost).
    #[arg(long, default_value = "file", value_parser = ["file", "cloud", "sweep", "none"])]
    tags: String,
    /// `all` (every event kept), `writes` (the default filter) or `both`,
    /// one after the other on the same loaded events.
    #[arg(long, default_value = "both", value_parser = ["all", "writes", "both"])]
    filter: String,
    /// The node's `source.max_in_flight_bytes` (its default when not given);
    /// a very large one measures a node bounded by per-shard credits only.
    #[arg(long)]
    max_in_flight_bytes: Option<u64>,
}

/// What one node run measured.
struct Run {
    mode: &'static str,
    kept: u64,
    wall: f64,
    cpu: f64,
    peak_mb: f64,
    hits: f64,
    misses: f64,
    hec: serde_json::Value,
}

fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, hwm_kb)
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let dir = std::env::temp_dir().join(format!("trail-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let shards = a.shards.to_string();
    let sls = Devstack::sls(&[
        "--project",
        "bench",
        "--logstore",
        "actiontrail_bench",
        "--shards",
        &shards,
    ]);

    // Load.
    let client = SlsClient::builder(
        Endpoint::parse("http://sls.test")?.with_address(&sls.addr.to_string())?,
        Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET),
    )
    .build()?;
    let mut g = Generator::new(a.seed);
    std::fs::write(dir.join("tags.json"), serde_json::to_vec(&g.tags_file())?)?;
    let g_accounts = g.accounts().to_vec();
    let mut raw = 0u64;
    let mut writes = 0u64;
    let load = Instant::now();
    let mut n = 0;
    while n < a.events {
        let k = 64.min(a.events - n);
        let events: Vec<String> = (0..k).map(|_| g.next_event()).collect();
        for e in &events {
            raw += e.len() as u64;
            if trail_devstack::gen::is_write(&serde_json::from_str(e).expect("generated JSON")) {
                writes += 1;
            }
        }
        let group = trail_tests::event_log_group(events);
        client
            .put_logs(
                "bench",
                "actiontrail_bench",
                &group,
                PutTarget::LoadBalanced,
            )
            .await?;
        n += k;
    }
    eprintln!(
        "loaded {} events ({:.1} MB) in {:.1}s",
        a.events,
        raw as f64 / 1e6,
        load.elapsed().as_secs_f64()
    );

    let management = g_accounts.first().cloned().unwrap_or_default();
    let cloud = matches!(a.tags.as_str(), "cloud" | "sweep").then(|| {
        Devstack::spawn(
            "cloud",
            &[
                "--access-key-id",
                "bench-ak",
                "--access-key-secret",
                "bench-secret",
                "--tags",
                &dir.join("tags.json").display().to_string(),
                "--management-account",
                &management,
            ],
        )
    });
    let tags = match (a.tags.as_str(), &cloud) {
        ("file", _) => format!(
            "[tags]\nfile = {:?}\n",
            dir.join("tags.json").display().to_string()
        ),
        (mode, Some(c)) => format!(
            "[tags]\nbudget_ms = 1000\nbatch_window_ms = 20\n\n[tags.alibaba]\n\
             tag_endpoint = \"http://tag.{{region}}.aliyuncs.com\"\n\
             sts_endpoint = \"http://sts.aliyuncs.com\"\naddress = \"{}\"\n\
             access_key_id = \"bench-ak\"\naccess_key_secret = \"bench-secret\"\n\
             management_account = \"{management}\"\nsweep = {}\n",
            c.addr,
            mode == "sweep"
        ),
        _ => String::new(),
    };
    let modes: &[&'static str] = match a.filter.as_str() {
        "all" => &["all"],
        "writes" => &["writes"],
        _ => &["all", "writes"],
    };
    let mut runs = Vec::new();
    for mode in modes {
        let kept = if *mode == "all" { a.events } else { writes };
        let source_extra = a
            .max_in_flight_bytes
            .map(|b| format!("max_in_flight_bytes = {b}\n"))
            .unwrap_or_default();
        runs.push(
            measure(
                mode,
                kept,
                &dir,
                &sls.addr.to_string(),
                &tags,
                &source_extra,
            )
            .await?,
        );
    }
    let mb = raw as f64 / 1e6;
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "events {} ({mb:.1} MB of raw event JSON), {writes} writes",
        a.events
    );
    // Cloud tag APIs are counted over every run, so they go with the first.
    let mut tag_note = String::new();
    if let Some(c) = &cloud {
        let cs: serde_json::Value = reqwest::get(format!("http://{}/_devstack/stats", c.addr))
            .await?
            .json()
            .await?;
        let count = |api: &str| -> u64 {
            cs["answers"][api]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
                .unwrap_or(0)
        };
        let calls = count("tag:ListTagResources");
        // By ARN, devstack counts each distinct resource asked once (single
        // flight); sweeps ask none by ARN, so the cache's misses stand in.
        let misses: f64 = runs.iter().map(|r| r.misses).sum();
        let hits: f64 = runs.iter().map(|r| r.hits).sum();
        let asked = cs["arns_asked"].as_u64().unwrap_or(0);
        let r = if asked > 0 { asked } else { misses as u64 };
        let sts = count("sts:AssumeRole");
        println!(
            "tag APIs          {calls} ListTagResources ({} listings) for R = {r} distinct resources (ceil(R/50) = {}), {sts} AssumeRole for {} member accounts",
            cs["listings"],
            r.div_ceil(50),
            g_accounts.len().saturating_sub(1)
        );
        tag_note = format!(
            "tags via devstack cloud ({}): {calls} Tag API calls over the runs for R = {r} (ceil(R/50) = {}), {sts} AssumeRole, {:.2} % cache hits; ",
            a.tags,
            r.div_ceil(50),
            100.0 * hits / (hits + misses).max(1.0)
        );
    }
    let mut rows = Vec::new();
    let date = std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    for r in &runs {
        let what = match r.mode {
            "all" => "every event kept".to_owned(),
            _ => format!(
                "default filter (writes only: {} of {} kept)",
                r.kept, a.events
            ),
        };
        println!();
        println!("{what}");
        println!(
            "  wall            {:.1} s  ({:.0} events/s read, {:.1} MB/s)",
            r.wall,
            a.events as f64 / r.wall,
            mb / r.wall
        );
        println!(
            "  node CPU        {:.1} s   ({:.1} MB per CPU-second)",
            r.cpu,
            mb / r.cpu
        );
        println!("  node peak RSS   {:.0} MB", r.peak_mb);
        if r.hits + r.misses > 0.0 {
            println!(
                "  tag cache       {:.2} % hits of {:.0} lookups",
                100.0 * r.hits / (r.hits + r.misses),
                r.hits + r.misses
            );
        }
        println!(
            "  HEC             {} indexed, {} distinct, {} wire bytes (gzip)",
            r.hec["indexed"], r.hec["distinct_event_ids"], r.hec["wire_bytes"]
        );
        rows.push(format!(
            "| {date} | {} | {mb:.0} | {:.1} | {:.0} | {:.1} | {:.1} | **{:.1}** | {:.0} | {cores}× {cpu_model} | {what}; {}{}{} |",
            a.events,
            r.wall,
            a.events as f64 / r.wall,
            mb / r.wall,
            r.cpu,
            mb / r.cpu,
            r.peak_mb,
            if a.tags == "none" { "enrichment off; " } else { "" },
            if rows.is_empty() { tag_note.as_str() } else { "" },
            a.note
        ));
    }
    if let Some(path) = a.write {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| path.display().to_string())?;
        for row in &rows {
            writeln!(f, "{row}")?;
        }
        eprintln!("appended {} rows to {}", rows.len(), path.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts a node for `mode` against the loaded logstore and a fresh HEC
/// receiver, and waits until HEC has indexed `kept` events.
async fn measure(
    mode: &'static str,
    kept: u64,
    dir: &std::path::Path,
    sls: &str,
    tags: &str,
    source_extra: &str,
) -> Result<Run> {
    let hec = Devstack::hec(&["--ids-only"]);
    let event_rw = if mode == "all" { "all" } else { "write" };
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.join(format!("trail-{mode}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"[node]
id = "bench"
data_dir = {data:?}

[source]
endpoint = "http://sls.test"
address = "{sls}"
project = "bench"
logstore = "actiontrail_bench"
access_key_id = "{ACCESS_KEY_ID}"
access_key_secret = "{ACCESS_KEY_SECRET}"
consumer_group = "bench-{mode}"
{source_extra}
[filter]
event_rw = "{event_rw}"

{tags}
[enrich]
threads = 2

[[sinks]]
type = "hec"
url = "http://{hec}"
token = "{HEC_TOKEN}"

[dead_letter]
path = {dead:?}

[metrics]
listen = "127.0.0.1:{metrics_port}"
"#,
            data = dir.join(format!("data-{mode}")).display().to_string(),
            hec = hec.addr,
            dead = dir.join("dead.jsonl").display().to_string(),
        ),
    )?;
    let mut node = TrailNode::spawn(&config);
    let pid = node.pid();
    let started = Instant::now();
    let stats_url = format!("http://{}/_devstack/stats", hec.addr);
    let mut peak_rss = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, rss) = proc_stat(pid);
        peak_rss = peak_rss.max(rss);
        let stats: serde_json::Value = reqwest::get(&stats_url).await?.json().await?;
        let indexed = stats["indexed"].as_u64().unwrap_or(0);
        if indexed >= kept {
            break;
        }
        if !node.alive() {
            bail!(
                "trail-node died; see {}",
                config.with_extension("log").display()
            );
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("not done after an hour ({indexed} of {kept})");
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu, hwm) = proc_stat(pid);
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await?
        .text()
        .await?;
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let hits = metric("trail_tag_cache_lookups_total{tier=\"moka\",result=\"hit\"}");
    let misses = metric("trail_tag_cache_lookups_total{tier=\"moka\",result=\"miss\"}");
    node.kill();
    let hec_stats: serde_json::Value = reqwest::get(&stats_url).await?.json().await?;
    Ok(Run {
        mode,
        kept,
        wall,
        cpu,
        peak_mb: hwm.max(peak_rss) as f64 / 1024.0,
        hits,
        misses,
        hec: hec_stats,
    })
}
