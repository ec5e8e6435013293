//! `trail-devstack`: run a local stand-in for a cloud service.

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use std::io::Write as _;

use trail_devstack::aws::{S3Config, S3Server};
use trail_devstack::cloud::{CloudConfig, CloudServer};
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
    /// Alibaba Tag / ECS / SLB / STS APIs and AWS resource tagging, from a tags file.
    Cloud(CloudConfig),
    /// Amazon S3 and SQS (a CloudTrail bucket and its notification queue).
    S3(S3Config),
    /// Generate realistic ActionTrail events (JSON lines) or CloudTrail log
    /// files, and their resources' tags.
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
    /// Write the events into this SLS endpoint instead of JSON lines
    /// (`https://cn-hangzhou.log.aliyuncs.com`, or `http://sls.test` with
    /// `--sls-address` for devstack).
    #[arg(long, requires_all = ["project", "logstore", "access_key_id"])]
    sls_endpoint: Option<String>,
    /// Dial this host:port instead; the Host header keeps `{project}.{endpoint host}`.
    #[arg(long, requires = "sls_endpoint")]
    sls_address: Option<String>,
    #[arg(long)]
    project: Option<String>,
    #[arg(long)]
    logstore: Option<String>,
    #[arg(long, env = "DEVSTACK_ACCESS_KEY_ID")]
    access_key_id: Option<String>,
    /// The secret; better from the environment than the command line.
    #[arg(long, env = "DEVSTACK_ACCESS_KEY_SECRET", hide_env_values = true)]
    access_key_secret: Option<String>,
    /// Events per PutLogs (one LogGroup).
    #[arg(long, default_value_t = 256)]
    group_size: usize,
    /// With `--sls-endpoint`: write at most this many events per second
    /// (a steady trail, as a live ActionTrail delivers it); 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// CloudTrail instead of ActionTrail: gzip'd log files of `{"Records":[…]}`
    /// in AWS's key layout, into `--bucket` at `--s3-endpoint`, or into `--out-dir`.
    #[arg(long)]
    cloudtrail: bool,
    /// Records per CloudTrail log file.
    #[arg(long, default_value_t = 100)]
    records_per_file: usize,
    /// Where the log files go: an S3 endpoint (`http://127.0.0.1:39003` for devstack).
    #[arg(long, requires = "bucket")]
    s3_endpoint: Option<String>,
    #[arg(long)]
    bucket: Option<String>,
    /// Or a directory: the files under their keys.
    #[arg(long)]
    out_dir: Option<std::path::PathBuf>,
    /// The trail's key prefix.
    #[arg(long, default_value = "")]
    prefix: String,
    /// An organization trail's org id (`o-…`), after `AWSLogs/` in every key.
    #[arg(long)]
    org: Option<String>,
    /// Announce each file to this SQS queue URL as CloudTrail does (an SNS
    /// notification naming `s3ObjectKey`), besides any bucket notification.
    #[arg(long, requires = "s3_endpoint")]
    sns_queue: Option<String>,
    #[arg(
        long,
        env = "DEVSTACK_AWS_ACCESS_KEY_ID",
        default_value = "AKIADEVSTACK0000TEST"
    )]
    aws_access_key_id: String,
    #[arg(
        long,
        env = "DEVSTACK_AWS_SECRET_ACCESS_KEY",
        default_value = "devstack/aws/secret/key/for/tests/only0000",
        hide_env_values = true
    )]
    aws_secret_access_key: String,
    #[arg(long, default_value = "us-east-1")]
    aws_region: String,
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
        Command::Cloud(config) => run_cloud(config).await,
        Command::S3(config) => run_s3(config).await,
        Command::Gen(args) => gen(args).await,
    }
}

async fn gen(args: GenArgs) -> Result<()> {
    if args.cloudtrail {
        return gen_cloudtrail(&args).await;
    }
    let mut g = Generator::new(args.seed);
    if let Some(endpoint) = &args.sls_endpoint {
        gen_into_sls(&mut g, endpoint, &args).await?;
    } else {
        gen_json_lines(&mut g, &args)?;
    }
    if let Some(path) = &args.tags_out {
        std::fs::write(path, serde_json::to_vec_pretty(&g.tags_file())?)?;
        eprintln!(
            "tags of {} resources written to {}",
            g.tags_file().resources.len(),
            path.display()
        );
    }
    Ok(())
}

/// ActionTrail as SLS delivers it: topic `actiontrail_audit_event`, one key
/// `event` holding the JSON, the log time from `eventTime`.
async fn gen_into_sls(g: &mut Generator, endpoint: &str, args: &GenArgs) -> Result<()> {
    use bytes::Bytes;
    use trail_proto::sls::{Log, LogContent, LogGroup};
    let project = args.project.as_deref().unwrap_or_default();
    let logstore = args.logstore.as_deref().unwrap_or_default();
    let secret = args.access_key_secret.as_deref().context(
        "--access-key-secret (or DEVSTACK_ACCESS_KEY_SECRET) is needed with --sls-endpoint",
    )?;
    let writer = trail_devstack::sls::writer::Writer::new(
        endpoint,
        args.sls_address.as_deref(),
        project,
        args.access_key_id.as_deref().unwrap_or_default(),
        secret,
    )?;
    let started = std::time::Instant::now();
    let (mut sent, mut bytes) = (0u64, 0usize);
    while sent < args.events {
        if args.rate > 0 {
            // Pace: the n-th event is due n / rate seconds after the start.
            let due = std::time::Duration::from_secs_f64(sent as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let n = (args.events - sent).min(args.group_size.max(1) as u64);
        let logs: Vec<Log> = (0..n)
            .map(|_| {
                let time = g.next_time() as u32;
                let json = g.next_event();
                bytes += json.len();
                Log {
                    time,
                    contents: vec![LogContent {
                        key: Bytes::from_static(b"event"),
                        value: Bytes::from(json),
                    }],
                    time_ns: None,
                }
            })
            .collect();
        let group = LogGroup {
            logs,
            topic: Some(Bytes::from_static(b"actiontrail_audit_event")),
            source: Some(Bytes::from_static(b"trail-devstack-gen")),
            ..Default::default()
        };
        writer
            .put_logs(logstore, &group)
            .await
            .with_context(|| format!("writing to {project}/{logstore}"))?;
        sent += n;
    }
    eprintln!(
        "{sent} events ({:.1} MB) written to {project}/{logstore} in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn gen_json_lines(g: &mut Generator, args: &GenArgs) -> Result<()> {
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
    Ok(())
}

/// CloudTrail log files, as AWS delivers them.
async fn gen_cloudtrail(args: &GenArgs) -> Result<()> {
    use trail_devstack::aws::client::AwsClient;
    use trail_devstack::gen::cloudtrail::CloudTrailGenerator;
    let mut g = CloudTrailGenerator::new(args.seed).prefix(&args.prefix);
    if let Some(org) = &args.org {
        g = g.organization(org);
    }
    let client = args.s3_endpoint.as_deref().map(|e| {
        AwsClient::new(
            e,
            &args.aws_access_key_id,
            &args.aws_secret_access_key,
            &args.aws_region,
        )
    });
    if client.is_none() && args.out_dir.is_none() {
        anyhow::bail!("--cloudtrail needs --s3-endpoint and --bucket, or --out-dir");
    }
    let bucket = args.bucket.as_deref().unwrap_or_default();
    if let Some(c) = &client {
        c.create_bucket(bucket)
            .await
            .context("creating the bucket")?;
    }
    let started = std::time::Instant::now();
    let (mut sent, mut files, mut bytes) = (0u64, 0u64, 0usize);
    while sent < args.events {
        let n = (args.events - sent).min(args.records_per_file.max(1) as u64) as usize;
        let f = g.next_file(n);
        bytes += f.gzip.len();
        if let Some(dir) = &args.out_dir {
            let path = dir.join(&f.key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &f.gzip).with_context(|| path.display().to_string())?;
        }
        if let Some(c) = &client {
            c.put_object(
                bucket,
                &f.key,
                bytes::Bytes::from(f.gzip),
                "application/json",
            )
            .await
            .with_context(|| format!("PutObject {}", f.key))?;
            if let Some(q) = &args.sns_queue {
                let message =
                    serde_json::json!({"s3Bucket": bucket, "s3ObjectKey": [f.key]}).to_string();
                let sns = serde_json::json!({
                    "Type": "Notification",
                    "MessageId": format!("devstack-{files}"),
                    "TopicArn": format!("arn:aws:sns:{}:{}:cloudtrail", args.aws_region, f.account),
                    "Message": message,
                    "Timestamp": trail_devstack::gen::iso(g_time()),
                    "SignatureVersion": "1",
                    "Signature": "devstack",
                    "SigningCertURL": "https://sns.us-east-1.amazonaws.com/devstack.pem",
                    "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
                });
                c.send_message(q, &sns.to_string())
                    .await
                    .context("SendMessage")?;
            }
        }
        sent += n as u64;
        files += 1;
    }
    eprintln!(
        "{sent} CloudTrail records in {files} files ({:.1} MB gzip'd) in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.tags_out {
        std::fs::write(path, serde_json::to_vec_pretty(&g.tags_file())?)?;
        eprintln!(
            "tags of {} AWS resources written to {}",
            g.tags_file().resources.len(),
            path.display()
        );
    }
    Ok(())
}

fn g_time() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn run_s3(config: S3Config) -> Result<()> {
    let mut server = S3Server::start(config.clone()).await?;
    let addr = server.local_addr();
    println!("listening on {addr}");
    println!(
        "S3 and SQS      http://{addr}  (path-style; virtual-host with Host: {{bucket}}.anything)"
    );
    println!(
        "access key      {} (region {}, account {})",
        config.access_key_id, config.region, config.account
    );
    for n in &config.notify {
        println!("notify          {n}");
    }
    for r in &config.roles {
        // ARN[:EXTERNAL_ID]: the external id is the role's secret-ish part.
        let arn = r.find(":role/").map_or(r.as_str(), |i| {
            r[i + 6..].find(':').map_or(r.as_str(), |j| &r[..i + 6 + j])
        });
        let x = if arn.len() < r.len() {
            " (external id required)"
        } else {
            ""
        };
        println!("role            {arn}{x}  (STS AssumeRole on this listener)");
    }
    if config.require_role {
        println!("require-role    the access key may only write; reads need a role session");
    }
    if config.container_token.is_some() {
        println!("container creds AWS_CONTAINER_CREDENTIALS_FULL_URI=http://{addr}/_devstack/container-credentials AWS_CONTAINER_AUTHORIZATION_TOKEN=…");
    }
    println!("stats           curl http://{addr}/_devstack/stats");
    println!("example         AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY=… aws --endpoint-url http://{addr} s3 ls", config.access_key_id);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            eprintln!("shutting down");
            server.shutdown().await;
        }
        _ = server.stopped() => {}
    }
    Ok(())
}

async fn run_cloud(config: CloudConfig) -> Result<()> {
    let server = CloudServer::start(config.clone()).await?;
    let addr = server.local_addr();
    println!("listening on {addr}");
    println!("endpoint        http://{addr}  (any Host: tag.*, ecs.*, slb.*, sts.*, tagging.*)");
    println!(
        "access key      {} (management account {}); members via AssumeRole into role {}",
        config.access_key_id,
        server.management_account(),
        config.role_name
    );
    println!("stats           curl http://{addr}/_devstack/stats");
    tokio::signal::ctrl_c().await?;
    eprintln!("shutting down");
    server.shutdown().await;
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
