//! `trail-devstack`: run a local stand-in for a cloud service.

use anyhow::Result;
use clap::{Parser, Subcommand};
use trail_devstack::sls::{SlsConfig, SlsServer};

#[derive(Parser)]
#[command(
    name = "trail-devstack",
    version,
    about = "Local stand-ins for the clouds Trail talks to"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// An SLS (Alibaba Cloud Log Service) compatible server.
    Sls(SlsConfig),
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Sls(config) => run_sls(config).await,
    }
}

async fn run_sls(config: SlsConfig) -> Result<()> {
    let mut server = SlsServer::start(config.clone()).await?;
    let addr = server.local_addr();
    // First line: machine-readable, for tests and scripts.
    println!("listening on {addr}");
    print_banner(&config, addr);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            eprintln!("shutting down");
            server.shutdown().await;
        }
        _ = server.stopped() => {}
    }
    Ok(())
}

fn print_banner(c: &SlsConfig, addr: std::net::SocketAddr) {
    let domain = c.domains.first().map(String::as_str).unwrap_or("sls.test");
    let port = addr.port();
    println!("SLS endpoint    http://{{project}}.{domain}  (served at {addr})");
    println!("  Trail         endpoint = \"http://{domain}\", address = \"{addr}\"");
    println!("  proxy mode    HTTP_PROXY=http://{addr}  with endpoint {domain}:{port}");
    println!(
        "AccessKey       {} / {}",
        c.access_key_id, c.access_key_secret
    );
    if !c.project.is_empty() {
        println!("project         {}", c.project);
        if !c.logstore.is_empty() {
            println!("logstore        {} ({} shards)", c.logstore, c.shards);
        }
    }
    if let Some(d) = &c.data_dir {
        println!("data            {}", d.display());
    } else {
        println!("data            in memory (--data-dir DIR to keep it)");
    }
    println!("example (official Python SDK):");
    println!(
        "  HTTP_PROXY=http://{addr} python3 -c \"from aliyun.log import LogClient; \
         print(LogClient('{domain}:{port}', '{}', '{}').list_shards('{}', '{}').get_shards_info())\"",
        c.access_key_id, c.access_key_secret, c.project, c.logstore
    );
}
