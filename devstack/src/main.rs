//! `trail-devstack`: run a local stand-in for a cloud service.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::Write as _;

use trail_devstack::gen::Generator;
use trail_devstack::hec::{HecConfig, HecServer};
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
    /// A Splunk HTTP Event Collector receiver.
    Hec(HecConfig),
    /// Generate realistic ActionTrail events (JSON lines) and their resources' tags.
    Gen(GenArgs),
}

#[derive(clap::Args)]
struct GenArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Same seed, same events and tags.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the events go (JSON lines); `-` is stdout.
    #[arg(long, default_value = "-")]
    out: String,
    /// Where the tags file goes (JSON), if anywhere.
    #[arg(long)]
    tags_out: Option<std::path::PathBuf>,
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
        Command::Hec(config) => run_hec(config).await,
        Command::Gen(args) => gen(args),
    }
}

fn gen(args: GenArgs) -> Result<()> {
    let mut g = Generator::new(args.seed);
    let mut out: Box<dyn std::io::Write> = if args.out == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(std::io::BufWriter::new(std::fs::File::create(&args.out)?))
    };
    for _ in 0..args.events {
        out.write_all(g.next_event().as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if let Some(path) = args.tags_out {
        std::fs::write(&path, serde_json::to_vec_pretty(&g.tags_file())?)?;
        eprintln!(
            "tags of {} resources written to {}",
            g.tags_file().resources.len(),
            path.display()
        );
    }
    Ok(())
}

async fn run_hec(config: HecConfig) -> Result<()> {
    let mut server = HecServer::start(config.clone()).await?;
    let addr = server.local_addr();
    println!("listening on {addr}");
    println!("HEC endpoint    http://{addr}/services/collector/event");
    println!(
        "token           {}{}",
        config.token,
        if config.ack {
            "  (indexer acknowledgement on)"
        } else {
            ""
        }
    );
    println!("stats           curl http://{addr}/_devstack/stats");
    println!("example         curl -H 'Authorization: Splunk {}' -d '{{\"event\":\"hello\"}}' http://{addr}/services/collector/event", config.token);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            eprintln!("shutting down");
            server.shutdown().await;
        }
        _ = server.stopped() => {}
    }
    Ok(())
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
