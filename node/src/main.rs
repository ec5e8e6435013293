//! The `trail-node` binary: `run` a node from a config file, or `demo` Trail
//! end to end on this machine against devstack.
//!
//! Runtime: an actix `System` on a multi-thread tokio runtime, so actors,
//! tonic and plain tokio tasks share one runtime (cluster design notes §2).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use trail_node::config::Config;
use trail_node::node::RunningNode;

#[derive(Parser)]
#[command(name = "trail-node", version, about = "A Trail cluster node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node from a TOML config file (see deploy/trail.toml).
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file and exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run Trail against devstack on this machine, with nothing to set up.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The demo draws progress bars on the terminal: only warnings unless asked.
    #[cfg(feature = "demo")]
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    #[cfg(not(feature = "demo"))]
    let default_level = "info";
    use std::io::IsTerminal as _;
    let logs = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        );
    // The demo prints log lines through its progress bars.
    #[cfg(feature = "demo")]
    logs.with_writer(|| demo::LogWriter).init();
    #[cfg(not(feature = "demo"))]
    logs.with_writer(std::io::stderr).init();
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    });
    let result = system.block_on(async move {
        match cli.command {
            Command::Run { config } => run(&config).await,
            Command::Check { config } => {
                Config::load(&config)?;
                println!("{}: ok", config.display());
                Ok(())
            }
            #[cfg(feature = "demo")]
            Command::Demo(args) => demo::run(args).await,
        }
    });
    actix::System::current().stop();
    result
}

async fn run(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    let grace = Duration::from_millis(config.node.shutdown_grace_ms);
    tracing::info!(node = %config.node.id, project = %config.source.project, logstore = %config.source.logstore, "starting");
    let node = RunningNode::start(config)
        .await
        .context("starting the node")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping: draining what is in flight");
    node.shutdown(grace).await;
    Ok(())
}

#[cfg(feature = "demo")]
mod demo;
