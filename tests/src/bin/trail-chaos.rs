//! `trail-chaos`: a long hostile run of a real cluster, checked end to end.
//!
//! Starts 3 `trail-node` processes with the default cluster timing, devstack
//! SLS answering a share of its requests with 5xx, and devstack HEC
//! answering 503 to some requests and dropping the connection on others;
//! a steady stream feeds the source. Every `--every` seconds a node is
//! SIGKILLed (the raft leader every third time, a random other node
//! otherwise) and restarted with its data dir a few seconds later.
//!
//! At the end the stream stops, the faults are lifted and the source is
//! read back against what Splunk received:
//! * **lost** — source events never delivered (target 0);
//! * **duplicates** — deliveries beyond the first, in % of events (target ≤ 0.5 %);
//! * **history** — per shard, each epoch delivered by one node and epochs
//!   never going back in the receiver's order (target: no violation);
//! * every shard consumed by a live owner at the end;
//! * peak RSS of any node (VmHWM, sampled before each kill and at the end).
//!
//! `--write BENCHMARKS.md` adds a row to that file's "Chaos" table. Exit
//! status 1 if a target is missed.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::Parser;
use serde_json::json;
use trail_tests::cluster::{check_history, duplicates, peak_rss_mib, LocalCluster, Timing};

#[derive(Parser)]
struct Args {
    /// How long the faults and kills go on, in seconds.
    #[arg(long, default_value_t = 300)]
    secs: u64,
    /// Seconds between kills.
    #[arg(long, default_value_t = 20)]
    every: u64,
    /// Seconds a killed node stays down.
    #[arg(long, default_value_t = 3)]
    down: u64,
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Events per second written into the source.
    #[arg(long, default_value_t = 400)]
    rate: u64,
    /// Share of SLS requests answered 5xx.
    #[arg(long, default_value_t = 0.02)]
    sls_5xx_rate: f64,
    /// Every Nth HEC request answers 503 (taking nothing).
    #[arg(long, default_value_t = 7)]
    hec_busy_every: u64,
    /// Every Nth HEC request has its connection dropped (indexing nothing).
    #[arg(long, default_value_t = 13)]
    hec_drop_every: u64,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    write: Option<PathBuf>,
}

/// xorshift64*: enough to pick victims, and reproducible with `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let seed = a.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    });
    let mut rng = Rng(seed);
    let timing = Timing::defaults();
    let mut c = LocalCluster::start("chaos", 3, a.shards, timing);
    c.start_stream(a.rate, seed % 1000);
    c.wait_settled(Duration::from_secs(120));
    c.faults(&c.sls, json!({ "error_rate": a.sls_5xx_rate }));
    c.faults(
        &c.hec,
        json!({ "busy_every": a.hec_busy_every, "drop_conn_every": a.hec_drop_every }),
    );
    println!(
        "chaos for {} s: a kill every {} s (seed {seed}), SLS 5xx {:.0} %, HEC 503 every {}, dropped every {}",
        a.secs,
        a.every,
        a.sls_5xx_rate * 100.0,
        a.hec_busy_every,
        a.hec_drop_every
    );
    let started = Instant::now();
    let mut kills = 0u64;
    let mut leader_kills = 0u64;
    let mut peak = 0.0f64;
    while started.elapsed() + Duration::from_secs(a.every) <= Duration::from_secs(a.secs) {
        std::thread::sleep(Duration::from_secs(a.every.saturating_sub(a.down)));
        for n in c.nodes.values() {
            peak = peak.max(peak_rss_mib(n.pid()));
        }
        let leader: Option<u64> = c
            .status()
            .and_then(|s| s["leader_id"].as_str().and_then(|l| l.parse().ok()));
        let ids: Vec<u64> = c.nodes.keys().copied().collect();
        let victim = match leader {
            Some(l) if kills % 3 == 2 => l,
            Some(l) => {
                let others: Vec<u64> = ids.iter().copied().filter(|i| *i != l).collect();
                others[(rng.next() % others.len() as u64) as usize]
            }
            None => ids[(rng.next() % ids.len() as u64) as usize],
        };
        let was_leader = leader == Some(victim);
        c.kill(victim);
        kills += 1;
        leader_kills += u64::from(was_leader);
        println!(
            "{:>6.1} s: kill -9 node {victim}{}; written so far {}",
            started.elapsed().as_secs_f64(),
            if was_leader { " (the leader)" } else { "" },
            c.written.load(std::sync::atomic::Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_secs(a.down));
        c.add_node(victim);
    }
    c.stop_stream();
    c.faults(&c.sls, json!({}));
    c.faults(&c.hec, json!({}));
    let settled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.wait_settled(Duration::from_secs(180));
    }))
    .is_ok();
    let (got, lost, total) = c.delivered_within(Duration::from_secs(180));
    for n in c.nodes.values() {
        peak = peak.max(peak_rss_mib(n.pid()));
    }
    let dups = duplicates(&got);
    let dup_pct = 100.0 * dups as f64 / total.max(1) as f64;
    let violations = check_history(&c.hec_events());
    let minutes = a.secs as f64 / 60.0;
    println!(
        "\n{total} events over {minutes:.1} min; {kills} kills ({leader_kills} of the leader); \
lost {lost}; duplicates {dups} ({dup_pct:.3} %); history violations {}; every shard consumed at the end: {settled}; \
peak RSS of a node {peak:.0} MiB",
        violations.len()
    );
    for v in violations.iter().take(10) {
        println!("  {v}");
    }
    let ok = lost == 0 && dup_pct <= 0.5 && violations.is_empty() && settled;
    if let Some(path) = a.write {
        let title = "## Chaos (trail-chaos)";
        let head = "| date | minutes | kills (leader) | events | lost | duplicates | history violations | all shards consumed | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|\n";
        let row = format!(
            "| {} | {minutes:.1} | {kills} ({leader_kills}) | {total} | {lost} | {dups} ({dup_pct:.3} %) | {} | {} | {peak:.0} |\n",
            today(),
            violations.len(),
            if settled { "yes" } else { "no" }
        );
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let new = match old.find(title) {
            Some(start) => {
                let end = old[start + title.len()..]
                    .find("\n## ")
                    .map_or(old.len(), |e| start + title.len() + e + 1);
                let section = old[start..end].trim_end_matches('\n');
                format!("{}{section}\n{row}\n{}", &old[..start], &old[end..])
            }
            None => format!(
                "{}\n{title}\n\n`cargo run -p trail-tests --bin trail-chaos -- --secs N --write BENCHMARKS.md` on the machine above: \
3 `trail-node` processes (debug build: the run checks safety, not speed; default cluster timing), devstack SLS fed {rate} events/s over {shards} shards \
answering {sls:.0} % of requests 5xx, devstack HEC answering 503 to every {busy}th request and dropping every \
{drop}th connection; a node SIGKILLed every {every} s (the leader every third time) and restarted {down} s later. \
At the end the faults stop, and the source is read back against what HEC indexed. Targets: 0 lost, duplicates \
≤ 0.5 %, no history violation (per shard one node per epoch, epochs never going back).\n\n{head}{row}",
                old.trim_end_matches('\n').to_owned() + "\n",
                rate = a.rate,
                shards = a.shards,
                sls = a.sls_5xx_rate * 100.0,
                busy = a.hec_busy_every,
                drop = a.hec_drop_every,
                every = a.every,
                down = a.down,
            ),
        };
        std::fs::write(&path, new)?;
        println!("written to {}", path.display());
    }
    if !ok {
        bail!("a target was missed; logs in {}", c.dir.display());
    }
    Ok(())
}

/// Today's date (UTC), as the signers format it.
fn today() -> String {
    trail_node::net::sign::iso8601(SystemTime::now())[..10].to_owned()
}
