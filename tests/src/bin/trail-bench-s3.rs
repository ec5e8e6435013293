//! `trail-bench-s3`: the end-to-end benchmark of the CloudTrail path. Real
//! processes on loopback: `trail-devstack s3` (a bucket that announces
//! each new object to an SQS queue) → `trail-node run` (an `s3_sqs`
//! source) → `trail-devstack hec`.
//!
//! Per `--filter` mode it writes `--events` generated CloudTrail records
//! (gzip'd log files of `--records-per-file`, AWS's key layout) into a
//! fresh bucket and queue, starts a fresh node, waits until HEC has indexed
//! what should pass (`all`: every record; `writes`: the default filter,
//! `readOnly: false`), and reports MB of gzip'd objects and MB of record
//! JSON per node CPU-second and peak RSS (from /proc), appending a row per
//! mode to BENCHMARKS.md.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use trail_devstack::gen::cloudtrail::CloudTrailGenerator;
use trail_tests::{binary, Devstack, TrailNode, HEC_TOKEN};

const AK: &str = "AKIABENCHMARK0000001";
const SK: &str = "bench/aws/secret/000000000000000000000000";

#[derive(Parser)]
#[command(about = "End-to-end benchmark: devstack S3 + SQS → trail-node → devstack HEC")]
struct Args {
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 1000)]
    records_per_file: u64,
    /// Append the result to this file (a row of its table).
    #[arg(long)]
    write: Option<PathBuf>,
    #[arg(long, default_value = "")]
    note: String,
    /// `all`, `writes` or `both`.
    #[arg(long, default_value = "both", value_parser = ["all", "writes", "both"])]
    filter: String,
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
    let dir = std::env::temp_dir().join(format!("trail-bench-s3-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let modes: Vec<&'static str> = match a.filter.as_str() {
        "all" => vec!["all"],
        "writes" => vec!["writes"],
        _ => vec!["all", "writes"],
    };
    let notify: Vec<String> = modes
        .iter()
        .map(|m| format!("bench-{m}=files-{m}:AWSLogs/"))
        .collect();
    let mut args = vec!["--access-key-id", AK, "--secret-access-key", SK];
    for n in &notify {
        args.extend(["--notify", n.as_str()]);
    }
    let aws = Devstack::spawn("s3", &args);

    // What must arrive, from the generator itself.
    let (mut records, mut writes, mut json_bytes, mut gz_bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut g = CloudTrailGenerator::new(a.seed);
    std::fs::write(dir.join("tags.json"), serde_json::to_vec(&g.tags_file())?)?;
    while records < a.events {
        let n = a.records_per_file.min(a.events - records);
        let f = g.next_file(n as usize);
        gz_bytes += f.gzip.len() as u64;
        for r in &f.records {
            json_bytes += r.len() as u64;
            writes += u64::from(r.contains("\"readOnly\":false"));
        }
        records += n;
    }
    let mut rows = Vec::new();
    for mode in modes {
        let load = Instant::now();
        let out = std::process::Command::new(binary("trail-devstack"))
            .args(["gen", "--cloudtrail", "--seed", &a.seed.to_string()])
            .args([
                "--events",
                &a.events.to_string(),
                "--records-per-file",
                &a.records_per_file.to_string(),
            ])
            .args([
                "--s3-endpoint",
                &format!("http://{}", aws.addr),
                "--bucket",
                &format!("bench-{mode}"),
            ])
            .args(["--aws-access-key-id", AK, "--aws-secret-access-key", SK])
            .output()?;
        if !out.status.success() {
            bail!("gen: {}", String::from_utf8_lossy(&out.stderr));
        }
        eprintln!(
            "{mode}: {records} records in {} files ({:.1} MB gzip'd, {:.1} MB JSON) written in {:.1} s",
            records.div_ceil(a.records_per_file),
            gz_bytes as f64 / 1e6,
            json_bytes as f64 / 1e6,
            load.elapsed().as_secs_f64()
        );
        let kept = if mode == "all" { records } else { writes };
        let hec = Devstack::hec(&["--ids-only"]);
        let config = dir.join(format!("trail-{mode}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"[node]
id = "bench-s3"
data_dir = {data:?}

[[sources]]
type = "s3_sqs"
name = "bench"
queue_url = "http://{aws}/123456789012/files-{mode}"
region = "us-east-1"
sqs_endpoint = "http://sqs.{{region}}.amazonaws.com"
s3_endpoint = "http://s3.{{region}}.amazonaws.com"
address = "{aws}"
path_style = true
access_key_id = "{AK}"
secret_access_key = "{SK}"
wait_secs = 1

[filter]
event_rw = "{rw}"

[tags]
file = {tags:?}

[enrich]
threads = 2

[[sinks]]
type = "hec"
url = "http://{hec}"
token = "{HEC_TOKEN}"

[dead_letter]
path = {dead:?}
"#,
                data = dir.join(format!("data-{mode}")).display().to_string(),
                aws = aws.addr,
                rw = if mode == "all" { "all" } else { "write" },
                tags = dir.join("tags.json").display().to_string(),
                hec = hec.addr,
                dead = dir.join("dead.jsonl").display().to_string(),
            ),
        )?;
        let mut node = TrailNode::spawn(&config);
        let pid = node.pid();
        let started = Instant::now();
        let stats_url = format!("http://{}/_devstack/stats", hec.addr);
        let mut peak = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            peak = peak.max(proc_stat(pid).1);
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
        node.kill();
        let (gz, mb) = (gz_bytes as f64 / 1e6, json_bytes as f64 / 1e6);
        let row = format!(
            "| {date} | {commit} | {mode} | {records} | {kept} | {wall:.1} | {cpu:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {note} |",
            gz / cpu,
            mb / cpu,
            records as f64 / wall,
            hwm.max(peak) as f64 / 1024.0,
            date = run("date", &["+%Y-%m-%d"]),
            commit = run("git", &["rev-parse", "--short", "HEAD"]),
            note = a.note,
        );
        eprintln!("{row}");
        rows.push(row);
    }
    println!("| date | commit | filter | records | to HEC | wall s | node CPU s | MB gzip / CPU-s | MB JSON / CPU-s | records/s | peak RSS MB | note |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    if let Some(path) = &a.write {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| path.display().to_string())?;
        for row in &rows {
            writeln!(f, "{row}")?;
        }
        eprintln!("appended {} rows to {}", rows.len(), path.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn run(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
