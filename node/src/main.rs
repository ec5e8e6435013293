//! The `trail-node` binary: `run` a node from a config file, `check` one,
//! `setup` the logstores it writes, or `demo` Trail end to end on this
//! machine against devstack.
//!
//! Runtime: an actix `System` on a multi-thread tokio runtime, so actors,
//! tonic and plain tokio tasks share one runtime (cluster design notes §2).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use trail_node::config::Config;
use trail_node::node::RunningNode;
use trail_node::setup;

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
    /// Check a config file and exit; warn when a logstore Trail writes lacks
    /// the index `setup` makes (never fails for that).
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Only the file: do not ask SLS about the logstores' indexes.
        #[arg(long)]
        offline: bool,
        /// A tag key the index should have, as given to `setup`.
        #[arg(long = "tag-key")]
        tag_keys: Vec<String>,
    },
    /// Make the logstores this config writes ready to query, idempotently:
    /// the business view (and dead-letter logstore) with an index on every
    /// field Trail writes, and saved searches.
    Setup(SetupArgs),
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
            Command::Check {
                config,
                offline,
                tag_keys,
            } => check(&config, offline, &tag_keys).await,
            Command::Setup(args) => setup(args).await,
            #[cfg(feature = "demo")]
            Command::Demo(args) => demo::run(args).await,
        }
    });
    actix::System::current().stop();
    result
}

#[derive(clap::Args)]
struct SetupArgs {
    #[arg(long, short)]
    config: PathBuf,
    /// A tag key to index (`{prefix}{key}`); repeat for more. Default: every
    /// key in the tags file, else project, env, team, owner.
    #[arg(long = "tag-key")]
    tag_keys: Vec<String>,
    /// Days a new logstore keeps data.
    #[arg(long, default_value_t = 180)]
    ttl_days: u32,
    /// Shards of a new logstore.
    #[arg(long, default_value_t = 2)]
    shards: u32,
}

async fn check(path: &Path, offline: bool, tag_keys: &[String]) -> Result<()> {
    let config = Config::load(path)?;
    if !offline {
        // Tag keys only when known (given, or the tags file's): setup's
        // defaults are a guess, not something to warn about on every start.
        let keys = match setup::tag_keys(&config, tag_keys)? {
            (_, setup::TagKeysFrom::Defaults) => Vec::new(),
            (keys, _) => keys,
        };
        let targets = setup::targets(&config, &keys, true);
        let checks = targets.iter().map(|t| async move {
            match t {
                Ok(t) => (t.to_string(), setup::check(t).await),
                Err((key, e)) => (key.clone(), vec![format!("not checked: {e}")]),
            }
        });
        for (target, warnings) in futures_util::future::join_all(checks).await {
            for w in warnings {
                println!("warning: {target}: {w}");
            }
        }
    }
    println!("{}: ok", path.display());
    Ok(())
}

async fn setup(args: SetupArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let (keys, from) = setup::tag_keys(&config, &args.tag_keys)?;
    let from = match from {
        setup::TagKeysFrom::Given => "--tag-key",
        setup::TagKeysFrom::TagsFile => "the tags file",
        setup::TagKeysFrom::Defaults => "defaults; name others with --tag-key",
    };
    println!("tag keys indexed: {} ({from})", keys.join(", "));
    let targets = setup::targets(&config, &keys, false);
    if targets.is_empty() {
        println!("nothing to set up: no SLS sink and no [dead_letter.sls]");
    }
    let opts = setup::SetupOptions {
        ttl_days: args.ttl_days,
        shards: args.shards,
    };
    for t in targets {
        let t = t.map_err(|(_, e)| e)?;
        for line in setup::apply(&t, &opts).await? {
            println!("{t}: {line}");
        }
    }
    Ok(())
}

async fn run(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    let grace = Duration::from_millis(config.node.shutdown_grace_ms);
    let sls: Vec<String> = config
        .sls_sources()
        .map(|(_, s)| format!("{}/{}", s.project, s.logstore))
        .collect();
    let s3_sqs: Vec<&str> = config.s3_sqs().map(|(_, q)| q.name.as_str()).collect();
    let s3: Vec<&str> = config.s3().map(|(_, q)| q.name.as_str()).collect();
    tracing::info!(node = %config.node.id, ?sls, ?s3_sqs, ?s3, "starting");
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
