//! `trailctl`: the operator CLI of a Trail cluster, over its gRPC API.
//!
//! The control API (`Control`, `Tags` in `proto/trail/v1`) arrives with the
//! cluster; until then every command says so instead of pretending.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "trailctl", version, about = "Operate a Trail cluster")]
struct Cli {
    /// The node to talk to.
    #[arg(
        long,
        env = "TRAIL_ENDPOINT",
        default_value = "http://127.0.0.1:7701",
        global = true
    )]
    endpoint: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cluster, node, shard and sink status.
    Status,
    /// Plan (and apply) a sticky rebalance of shards over nodes.
    Rebalance {
        #[arg(long)]
        dry_run: bool,
    },
    /// List, add or remove cluster members.
    Members,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let what = match cli.command {
        Command::Status => "status",
        Command::Rebalance { .. } => "rebalance",
        Command::Members => "members",
    };
    bail!(
        "`trailctl {what}` needs the cluster's control API, which trail-node does not serve yet \
         (endpoint {})",
        cli.endpoint
    )
}
