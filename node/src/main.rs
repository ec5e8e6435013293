//! The `trail-node` binary: `run` a node from a config file, or `demo` Trail
//! end to end on this machine against devstack.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "trail-node", version, about = "A Trail cluster node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node from a TOML config file.
    Run {
        #[arg(long, short)]
        config: std::path::PathBuf,
    },
    /// Run Trail against devstack on this machine, with nothing to set up.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run { config } => anyhow::bail!(
            "`trail-node run` needs the pipeline, which is not built yet \
             (config {} not read); use `trail-node demo` to see devstack",
            config.display()
        ),
        #[cfg(feature = "demo")]
        Command::Demo(args) => runtime.block_on(demo::run(args)),
    }
}

#[cfg(feature = "demo")]
mod demo;
