//! `trailctl`: the operator CLI of a Trail cluster, over its gRPC control
//! API (`trail.v1.Control`, `proto/trail/v1/control.proto`).
//!
//! `trailctl status` prints the cluster header, nodes, shards (with lag in
//! seconds) and sinks as tables, or `-o json`; `--watch N` refreshes. The
//! endpoint comes from `--endpoint` or `TRAIL_ENDPOINT`, the bearer token
//! from `--token` or `TRAIL_TOKEN`. Membership, rebalancing, drains and the
//! Tags service arrive with the cluster; until then those commands say so.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::{json, Value};
use tonic::metadata::MetadataValue;
use trail_proto::trail::v1 as pb;
use trail_proto::trail::v1::control_client::ControlClient;

#[derive(Parser)]
#[command(name = "trailctl", version, about = "Operate a Trail cluster")]
struct Cli {
    /// Any node's control API.
    #[arg(
        long,
        env = "TRAIL_ENDPOINT",
        default_value = "http://127.0.0.1:7400",
        global = true
    )]
    endpoint: String,
    /// The control token (`[control] token` of the nodes).
    #[arg(long, env = "TRAIL_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Cluster, node, shard and sink status.
    Status {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        /// Refresh every N seconds until interrupted.
        #[arg(long, value_name = "SECS")]
        watch: Option<u64>,
    },
    /// Plan (and apply) a sticky rebalance of shards over nodes.
    Rebalance {
        #[arg(long)]
        dry_run: bool,
    },
    /// List, add or remove cluster members.
    Members,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Status { output, watch } => loop {
            let s = status(&cli.endpoint, cli.token.as_deref()).await?;
            if watch.is_some() && matches!(output, Output::Table) {
                print!("\x1b[2J\x1b[H");
            }
            match output {
                Output::Table => print_tables(&s),
                Output::Json => println!("{}", serde_json::to_string_pretty(&to_json(&s))?),
            }
            match watch {
                Some(n) => tokio::time::sleep(Duration::from_secs(n.max(1))).await,
                None => return Ok(()),
            }
        },
        Command::Rebalance { .. } | Command::Members => bail!(
            "this command needs the clustered control API (membership, leases), \
             which arrives with the cluster; a single node serves `status` only"
        ),
    }
}

async fn status(endpoint: &str, token: Option<&str>) -> Result<pb::StatusResponse> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("endpoint {endpoint:?} is not a URL (e.g. http://127.0.0.1:7400)"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach a Trail node at {endpoint}: {e} (is trail-node running with [control] listen?)"))?;
    let bearer: Option<MetadataValue<_>> = match token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .context("the token is not a valid header value")?,
        ),
        None => None,
    };
    let mut client = ControlClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(b) = &bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        Ok(req)
    });
    match client.status(pb::StatusRequest {}).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) if s.code() == tonic::Code::Unauthenticated => bail!(
            "unauthorized by {endpoint}: {} (set --token or TRAIL_TOKEN)",
            s.message()
        ),
        Err(s) => bail!("{endpoint} answered {:?}: {}", s.code(), s.message()),
    }
}

fn to_json(s: &pb::StatusResponse) -> Value {
    json!({
        "cluster_id": s.cluster_id,
        "leader_id": s.leader_id,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "answered_by": s.answered_by,
        "nodes": s.nodes.iter().map(|n| json!({
            "id": n.id, "addr": n.addr, "role": n.role, "pid": n.pid,
            "heartbeat_age_seconds": n.heartbeat_age_seconds,
            "shards_owned": n.shards_owned, "shards_standby": n.shards_standby,
            "events_per_second": n.events_per_second, "errors": n.errors,
        })).collect::<Vec<_>>(),
        "shards": s.shards.iter().map(|x| json!({
            "logstore": x.logstore, "shard": x.shard, "owner": x.owner, "epoch": x.epoch,
            "state": x.state, "checkpoint_age_seconds": x.checkpoint_age_seconds,
            "lag_seconds": x.lag_seconds, "events_per_second": x.events_per_second,
            "cursor": x.cursor,
        })).collect::<Vec<_>>(),
        "sinks": s.sinks.iter().map(|x| json!({
            "name": x.name, "kind": x.kind, "events": x.events, "bytes": x.bytes,
            "errors": x.errors, "retries": x.retries, "requests": x.requests,
            "dead_lettered": x.dead_lettered, "stopped": x.stopped,
        })).collect::<Vec<_>>(),
    })
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

fn print_tables(s: &pb::StatusResponse) {
    let assigned = s.shards.iter().filter(|x| !x.owner.is_empty()).count();
    println!(
        "cluster {}  leader {}  term {}  commit/applied {}/{}  voters {}  shards {}/{} assigned  (answered by {})",
        s.cluster_id,
        s.leader_id,
        s.term,
        s.commit_index,
        s.applied_index,
        s.nodes.iter().filter(|n| n.role != "learner").count(),
        assigned,
        s.shards.len(),
        s.answered_by
    );
    let mut t = table(&[
        "node",
        "addr",
        "role",
        "pid",
        "heartbeat",
        "owned",
        "standby",
        "events/s",
        "errors",
    ]);
    for n in &s.nodes {
        t.add_row(vec![
            n.id.clone(),
            n.addr.clone(),
            n.role.clone(),
            n.pid.to_string(),
            format!("{:.1}s", n.heartbeat_age_seconds),
            n.shards_owned.to_string(),
            n.shards_standby.to_string(),
            format!("{:.0}", n.events_per_second),
            n.errors.to_string(),
        ]);
    }
    println!("{t}");
    let mut t = table(&[
        "logstore",
        "shard",
        "owner",
        "epoch",
        "state",
        "checkpoint age",
        "lag",
        "events/s",
    ]);
    for x in &s.shards {
        t.add_row(vec![
            x.logstore.clone(),
            x.shard.to_string(),
            x.owner.clone(),
            x.epoch.to_string(),
            x.state.clone(),
            format!("{:.0}s", x.checkpoint_age_seconds),
            format!("{:.0}s", x.lag_seconds),
            format!("{:.0}", x.events_per_second),
        ]);
    }
    println!("{t}");
    let mut t = table(&[
        "sink",
        "events",
        "bytes",
        "requests",
        "errors",
        "retries",
        "dead-lettered",
        "state",
    ]);
    for x in &s.sinks {
        t.add_row(vec![
            x.name.clone(),
            x.events.to_string(),
            x.bytes.to_string(),
            x.requests.to_string(),
            x.errors.to_string(),
            x.retries.to_string(),
            x.dead_lettered.to_string(),
            if x.stopped { "STOPPED" } else { "ok" }.to_owned(),
        ]);
    }
    println!("{t}");
}
