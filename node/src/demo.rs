//! `trail-node demo`: Trail's main job on this machine, nothing to set up.
//!
//! It starts devstack's SLS server and HEC receiver in-process, loads
//! `--events` generated ActionTrail events (deterministic by `--seed`) into a
//! logstore and writes the tags of their resources to a file, then runs the
//! real pipeline against them: shard consumers → enrichers (filter: writes
//! only; tags from the file) → HEC, with a dead-letter file. It shows progress,
//! then a summary and a business-view table (write events per tag `project` ×
//! userName) from what HEC received. With `--exit-when-done` it exits 0 only
//! if every event that passed the filters reached HEC.
//!
//! `--trail cloudtrail` runs the same job the way AWS delivers a trail:
//! devstack's S3 and SQS in-process, gzip'd CloudTrail log files in AWS's
//! key layout written into a bucket that announces each one to a queue
//! (and one poison object), tags from devstack's AWS `GetResources`, and
//! the node's `s3_sqs` source reading them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use indicatif::{ProgressBar, ProgressStyle};
use trail_devstack::cloud::{CloudConfig, CloudServer};
use trail_devstack::gen::Generator;
use trail_devstack::hec::{HecConfig, HecServer};
use trail_devstack::sls::{SlsConfig, SlsServer};
use trail_node::config::Config;
use trail_node::node::RunningNode;
use trail_node::sls::{Credentials, Endpoint, PutTarget, SlsClient};
use trail_proto::sls::{Log, LogContent, LogGroup};

/// The progress bar being drawn, if any: log lines are printed through it
/// ([`LogWriter`]) so that they never tear through the bar.
static BAR: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

/// Draws `bar` and routes log lines through it until it is finished.
fn drawn(bar: ProgressBar) -> ProgressBar {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    bar
}

fn finish(bar: &ProgressBar) {
    bar.finish();
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Where the demo's log lines go: stderr, with the current progress bar
/// cleared for the line and drawn again after it (indicatif's `suspend`).
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(b) if !b.is_finished() => b.suspend(|| std::io::stderr().write_all(buf))?,
            _ => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Which trail: ActionTrail in an SLS logstore, or CloudTrail in S3 (SQS).
    #[arg(long, value_enum, default_value_t = TrailKind::Actiontrail)]
    trail: TrailKind,
    /// Events to generate and deliver.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Same seed, same events (same event ids).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Exit when done: 0 only if every event that passed the filters was delivered.
    #[arg(long)]
    exit_when_done: bool,
    /// Where devstack's SLS server listens.
    #[arg(long, default_value = "127.0.0.1:39001")]
    listen: SocketAddr,
    /// Shards of the demo logstore.
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Where the control API (for `trailctl`) listens.
    #[arg(long, default_value = "127.0.0.1:7400")]
    control: SocketAddr,
    /// Send to this HEC instead of the in-process receiver (a base URL such as
    /// https://splunk.example.com:8088, or the full collector URL).
    #[arg(long, requires = "hec_token")]
    hec_url: Option<String>,
    #[arg(long, env = "TRAIL_DEMO_HEC_TOKEN", hide_env_values = true)]
    hec_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrailKind {
    Actiontrail,
    Cloudtrail,
}

const PROJECT: &str = "trail-demo";
const LOGSTORE: &str = "actiontrail_demo";
const EVENTS_PER_GROUP: u64 = 64;
/// One malformed event per this many, to show the dead-letter sink at work.
const MALFORMED_EVERY: u64 = 100_000;

pub async fn run(args: DemoArgs) -> Result<()> {
    if args.trail == TrailKind::Cloudtrail {
        return run_cloudtrail(args).await;
    }
    let data_dir = std::env::temp_dir().join(format!("trail-demo-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;

    // devstack.
    let mut sls_cfg = SlsConfig::on(args.listen);
    sls_cfg.project = PROJECT.into();
    sls_cfg.logstore = LOGSTORE.into();
    sls_cfg.shards = args.shards;
    let sls = SlsServer::start(sls_cfg.clone()).await.with_context(|| {
        format!(
            "starting devstack SLS on {} (try --listen 127.0.0.1:0)",
            args.listen
        )
    })?;
    let hec = match &args.hec_url {
        Some(_) => None,
        None => Some(HecServer::start(HecConfig::on("127.0.0.1:0".parse()?)).await?),
    };
    let (hec_url, hec_token) = match (&args.hec_url, &hec) {
        (Some(url), _) => (url.clone(), args.hec_token.clone().unwrap_or_default()),
        (None, Some(h)) => (
            format!("http://{}", h.local_addr()),
            HecConfig::on("127.0.0.1:0".parse()?).token,
        ),
        (None, None) => unreachable!("one of them is set"),
    };
    println!("devstack SLS    http://{{project}}.sls.test at {}   logstore {PROJECT}/{LOGSTORE}, {} shards", sls.local_addr(), args.shards);
    println!(
        "HEC             {hec_url}{}",
        if hec.is_some() {
            "  (devstack receiver)"
        } else {
            ""
        }
    );
    println!("data            {}", data_dir.display());

    // Load the trail and write the tags file.
    let mut generator = Generator::new(args.seed);
    let tags_path = data_dir.join("tags.json");
    std::fs::write(&tags_path, serde_json::to_vec(&generator.tags_file())?)?;
    // devstack's cloud APIs serve those tags; Trail asks them as it would
    // ask Alibaba Cloud: the Tag service, and STS for member accounts.
    let mut cloud_cfg = CloudConfig::on("127.0.0.1:0".parse()?);
    cloud_cfg.tags = Some(tags_path.clone());
    cloud_cfg.seed = args.seed;
    cloud_cfg.management_account = Some(generator.accounts()[0].clone());
    let cloud = CloudServer::start(cloud_cfg.clone()).await?;
    println!(
        "devstack cloud  http://{}   Tag + STS APIs, management account {}, {} member accounts",
        cloud.local_addr(),
        cloud.management_account(),
        generator.accounts().len() - 1
    );
    let client = SlsClient::builder(
        Endpoint::parse("http://sls.test")?.with_address(&sls.local_addr().to_string())?,
        Credentials::new(&sls_cfg.access_key_id, &sls_cfg.access_key_secret),
    )
    .build()?;
    let bar = drawn(
        ProgressBar::new(args.events).with_style(ProgressStyle::with_template(
            "loading    {bar:40} {pos}/{len} events {msg}",
        )?),
    );
    let mut loaded = 0u64;
    let mut raw_bytes = 0u64;
    while loaded < args.events {
        let n = EVENTS_PER_GROUP.min(args.events - loaded);
        let logs: Vec<Log> = (loaded..loaded + n)
            .map(|i| {
                let mut json = generator.next_event();
                if i % MALFORMED_EVERY == MALFORMED_EVERY - 1 {
                    json.truncate(json.len() / 2); // cut in half: not JSON any more
                }
                raw_bytes += json.len() as u64;
                Log {
                    time: 1_795_000_000 + (i / 20) as u32,
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
            source: Some(Bytes::from_static(b"actiontrail")),
            ..Default::default()
        };
        client
            .put_logs(PROJECT, LOGSTORE, &group, PutTarget::LoadBalanced)
            .await?;
        loaded += n;
        bar.set_position(loaded);
    }
    bar.set_message(format!("({:.1} MB of event JSON)", raw_bytes as f64 / 1e6));
    finish(&bar);

    // The node.
    let config_text = format!(
        r#"
[node]
id = "demo-node"
data_dir = {data_dir:?}

[source]
endpoint = "http://sls.test"
address = "{sls_addr}"
project = "{PROJECT}"
logstore = "{LOGSTORE}"
access_key_id = "{ak}"
access_key_secret = "{sk}"
consumer_group = "trail"
start = "begin"
empty_backoff_max_ms = 200

[filter]
event_rw = "write"

[tags]
budget_ms = 1000
batch_window_ms = 20

[tags.alibaba]
tag_endpoint = "http://tag.{{region}}.aliyuncs.com"
sts_endpoint = "http://sts.aliyuncs.com"
address = "{cloud_addr}"
access_key_id = "{cloud_ak}"
access_key_secret = {{ env = "TRAIL_DEMO_CLOUD_SECRET" }}
management_account = "{management}"
sweep = true

[[sinks]]
type = "hec"
url = "{hec_url}"
token = {{ env = "TRAIL_DEMO_HEC_TOKEN" }}

[dead_letter]
path = {dead:?}

[control]
listen = "{control}"
"#,
        control = args.control,
        data_dir = data_dir.display().to_string(),
        sls_addr = sls.local_addr(),
        ak = sls_cfg.access_key_id,
        sk = sls_cfg.access_key_secret,
        cloud_addr = cloud.local_addr(),
        cloud_ak = cloud_cfg.access_key_id,
        management = cloud.management_account(),
        dead = data_dir.join("dead-letters.jsonl").display().to_string(),
    );
    std::fs::write(data_dir.join("trail.toml"), &config_text)?;
    // The token reaches the config through the environment, as in production.
    std::env::set_var("TRAIL_DEMO_HEC_TOKEN", &hec_token);
    std::env::set_var("TRAIL_DEMO_CLOUD_SECRET", &cloud_cfg.access_key_secret);
    let config: Config = toml::from_str(&config_text).context("the demo's own config")?;
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let node = RunningNode::start(config).await?;

    let bar = drawn(
        ProgressBar::new(args.events).with_style(ProgressStyle::with_template(
            "delivering {bar:40} {pos}/{len} events read  {msg}",
        )?),
    );
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let read = node
            .stats
            .sum(|s| s.logs.load(std::sync::atomic::Ordering::Relaxed));
        let mb =
            node.stats
                .sum(|s| s.raw_bytes.load(std::sync::atomic::Ordering::Relaxed)) as f64
                / 1e6;
        let behind = node
            .stats
            .shards
            .lock()
            .values()
            .filter(|s| s.caught_up.load(std::sync::atomic::Ordering::Relaxed) == 0)
            .count();
        bar.set_position(read);
        bar.set_message(format!(
            "{:.1} MB/s, {behind} shard(s) behind",
            mb / started.elapsed().as_secs_f64()
        ));
        if read >= args.events && behind == 0 && node.in_flight().await == 0 {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    finish(&bar);
    let stats = node.stats.clone();
    let control_addr = node.control_addr;

    // Summary.
    use std::sync::atomic::Ordering::Relaxed;
    let read = stats.sum(|s| s.logs.load(Relaxed));
    let passed = stats.sum(|s| s.passed.load(Relaxed));
    let tagged = stats.sum(|s| s.tagged.load(Relaxed));
    let mb = stats.sum(|s| s.raw_bytes.load(Relaxed)) as f64 / 1e6;
    let mut dropped: BTreeMap<&str, u64> = BTreeMap::new();
    for s in stats.shards.lock().values() {
        for (k, v) in s.dropped.lock().iter() {
            *dropped.entry(k).or_default() += v;
        }
    }
    println!();
    println!("read          {read} events, {mb:.1} MB, in {elapsed:.1}s ({:.0} events/s, {:.1} MB/s; {cpu:.1} CPU-s in this process, devstack included)", read as f64 / elapsed, mb / elapsed);
    println!(
        "filtered out  {}",
        if dropped.is_empty() {
            "none".to_string()
        } else {
            dropped
                .iter()
                .map(|(k, v)| format!("{v} by {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!("enriched      {passed} passed the filters, {tagged} with tags");
    let by_field = trail_node::event::ResourceField::ALL
        .iter()
        .map(|f| {
            let n = stats.sum(|s| s.tagged_by[*f as usize].load(Relaxed));
            format!("{n} through {}", f.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "resources     tagged {by_field}; eventRW inferred from the name for {} Write and {} Read events; {} untagged for want of an account",
        stats.sum(|s| s.rw_inferred[1].load(Relaxed)),
        stats.sum(|s| s.rw_inferred[0].load(Relaxed)),
        stats.sum(|s| s.tag_no_account.load(Relaxed)),
    );
    let cs = cloud.stats();
    let api = |name: &str| -> u64 {
        cs["answers"][name]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0)
    };
    println!(
        "tags          {} Tag API calls ({} region listings, {} resources asked by ARN), {} STS AssumeRole; {} events sent pending, {} unavailable",
        api("tag:ListTagResources"),
        cs["listings"],
        cs["arns_asked"],
        api("sts:AssumeRole"),
        stats.sum(|s| s.tag_pending.load(Relaxed)),
        stats.sum(|s| s.tag_unavailable.load(Relaxed)),
    );
    for s in stats.sinks.lock().iter() {
        println!(
            "delivered     {}: {} events, {} requests, {} retries, {} dead-lettered",
            s.name,
            s.stats.events.load(Relaxed),
            s.stats.requests.load(Relaxed),
            s.stats.retries.load(Relaxed),
            s.stats.dead_lettered.load(Relaxed)
        );
    }
    println!(
        "dead letters  {} (in {})",
        stats.dead_letters.events.load(Relaxed),
        data_dir.join("dead-letters.jsonl").display()
    );

    let mut ok = stats
        .sinks
        .lock()
        .iter()
        .all(|s| s.stats.events.load(Relaxed) + s.stats.dead_lettered.load(Relaxed) >= passed);
    if let Some(h) = &hec {
        let ids = h.event_id_counts();
        let dup = ids.values().filter(|&&n| n > 1).count();
        println!(
            "HEC received  {} distinct events, {dup} delivered more than once",
            ids.len()
        );
        ok &= ids.len() as u64 == passed;
        business_view(&h.events());
    }
    if !ok {
        bail!("not every event that passed the filters was delivered");
    }
    if args.exit_when_done {
        node.shutdown(Duration::from_secs(10)).await;
        return Ok(());
    }
    println!(
        "\nDone. The node and devstack stay up; Ctrl-C to stop. Try:\n  cargo run -p trailctl -- --endpoint http://{} status",
        control_addr.map(|a| a.to_string()).unwrap_or_default()
    );
    tokio::signal::ctrl_c().await?;
    node.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

const BUCKET: &str = "trail-demo-org";
const QUEUE: &str = "trail-demo-files";
const RECORDS_PER_FILE: u64 = 250;

/// The CloudTrail flavour: S3 + SQS → the `s3_sqs` source → HEC.
async fn run_cloudtrail(args: DemoArgs) -> Result<()> {
    use trail_devstack::aws::client::AwsClient;
    use trail_devstack::aws::{S3Config, S3Server};
    use trail_devstack::gen::cloudtrail::CloudTrailGenerator;
    let data_dir = std::env::temp_dir().join(format!("trail-demo-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    let mut aws_cfg = S3Config::on("127.0.0.1:0".parse()?);
    aws_cfg.notify = vec![format!("{BUCKET}={QUEUE}:AWSLogs/")];
    let aws = S3Server::start(aws_cfg.clone()).await?;
    let hec = match &args.hec_url {
        Some(_) => None,
        None => Some(HecServer::start(HecConfig::on("127.0.0.1:0".parse()?)).await?),
    };
    let (hec_url, hec_token) = match (&args.hec_url, &hec) {
        (Some(url), _) => (url.clone(), args.hec_token.clone().unwrap_or_default()),
        (None, Some(h)) => (
            format!("http://{}", h.local_addr()),
            HecConfig::on("127.0.0.1:0".parse()?).token,
        ),
        (None, None) => unreachable!("one of them is set"),
    };
    let queue_url = format!("http://{}/{}/{QUEUE}", aws.local_addr(), aws_cfg.account);
    println!(
        "devstack S3+SQS http://{}   bucket {BUCKET} announces AWSLogs/ to queue {QUEUE}",
        aws.local_addr()
    );
    println!(
        "HEC             {hec_url}{}",
        if hec.is_some() {
            "  (devstack receiver)"
        } else {
            ""
        }
    );
    println!("data            {}", data_dir.display());

    let mut generator = CloudTrailGenerator::new(args.seed).organization("o-trail0demo");
    let tags_path = data_dir.join("tags.json");
    std::fs::write(&tags_path, serde_json::to_vec(&generator.tags_file())?)?;
    let mut cloud_cfg = CloudConfig::on("127.0.0.1:0".parse()?);
    cloud_cfg.tags = Some(tags_path.clone());
    let cloud = CloudServer::start(cloud_cfg.clone()).await?;
    println!(
        "devstack cloud  http://{}   AWS GetResources over {} tagged resources",
        cloud.local_addr(),
        generator.tags_file().resources.len()
    );

    // CloudTrail delivers: one gzip'd file per account, region and window.
    let client = AwsClient::new(
        &format!("http://{}", aws.local_addr()),
        &aws_cfg.access_key_id,
        &aws_cfg.secret_access_key,
        &aws_cfg.region,
    );
    let bar = drawn(
        ProgressBar::new(args.events).with_style(ProgressStyle::with_template(
            "delivering to S3 {bar:40} {pos}/{len} records {msg}",
        )?),
    );
    let (mut loaded, mut files, mut gz_bytes, mut raw_bytes) = (0u64, 0u64, 0usize, 0usize);
    let mut writes = 0u64;
    while loaded < args.events {
        let n = RECORDS_PER_FILE.min(args.events - loaded);
        let f = generator.next_file(n as usize);
        gz_bytes += f.gzip.len();
        for r in &f.records {
            raw_bytes += r.len();
            writes += u64::from(r.contains("\"readOnly\":false"));
        }
        client
            .put_object(BUCKET, &f.key, Bytes::from(f.gzip), "application/json")
            .await?;
        loaded += n;
        files += 1;
        bar.set_position(loaded);
    }
    // One object that is not a trail file, to show the dead-letter sink.
    client
        .put_object(
            BUCKET,
            "AWSLogs/o-trail0demo/000000000000/CloudTrail/us-east-1/2026/11/18/poison.json.gz",
            Bytes::from_static(b"not gzip, not JSON"),
            "application/json",
        )
        .await?;
    bar.set_message(format!(
        "in {files} files ({:.1} MB gzip'd, {:.1} MB of JSON)",
        gz_bytes as f64 / 1e6,
        raw_bytes as f64 / 1e6
    ));
    finish(&bar);

    let config_text = format!(
        r#"
[node]
id = "demo-node"
data_dir = {data_dir:?}

[[sources]]
type = "s3_sqs"
name = "org-trail"
queue_url = "{queue_url}"
region = "{region}"
sqs_endpoint = "http://sqs.{{region}}.amazonaws.com"
s3_endpoint = "http://s3.{{region}}.amazonaws.com"
address = "{aws_addr}"
path_style = true
access_key_id = "{ak}"
secret_access_key = {{ env = "TRAIL_DEMO_AWS_SECRET" }}
wait_secs = 1

[filter]
event_rw = "write"

[tags]
budget_ms = 1000
batch_window_ms = 20

[tags.aws]
endpoint = "http://tagging.{{region}}.amazonaws.com"
address = "{cloud_addr}"
access_key_id = "{cloud_ak}"
secret_access_key = {{ env = "TRAIL_DEMO_CLOUD_SECRET" }}

[[sinks]]
type = "hec"
url = "{hec_url}"
token = {{ env = "TRAIL_DEMO_HEC_TOKEN" }}

[dead_letter]
path = {dead:?}

[control]
listen = "{control}"
"#,
        control = args.control,
        data_dir = data_dir.display().to_string(),
        region = aws_cfg.region,
        aws_addr = aws.local_addr(),
        ak = aws_cfg.access_key_id,
        cloud_addr = cloud.local_addr(),
        cloud_ak = cloud_cfg.access_key_id,
        dead = data_dir.join("dead-letters.jsonl").display().to_string(),
    );
    std::fs::write(data_dir.join("trail.toml"), &config_text)?;
    std::env::set_var("TRAIL_DEMO_HEC_TOKEN", &hec_token);
    std::env::set_var("TRAIL_DEMO_AWS_SECRET", &aws_cfg.secret_access_key);
    std::env::set_var("TRAIL_DEMO_CLOUD_SECRET", &cloud_cfg.access_key_secret);
    let config: Config = toml::from_str(&config_text).context("the demo's own config")?;
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let node = RunningNode::start(config).await?;
    use std::sync::atomic::Ordering::Relaxed;
    let sum = |f: &dyn Fn(&trail_node::pipeline::queue_consumer::QueueStats) -> u64| -> u64 {
        node.queue_stats
            .sources
            .lock()
            .iter()
            .map(|(_, q)| f(q))
            .sum()
    };
    let bar = drawn(
        ProgressBar::new(args.events).with_style(ProgressStyle::with_template(
            "reading    {bar:40} {pos}/{len} records  {msg}",
        )?),
    );
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let read = sum(&|q| q.records.load(Relaxed));
        let s = aws.stats();
        bar.set_position(read);
        bar.set_message(format!(
            "{} objects, {} messages left",
            sum(&|q| q.objects.load(Relaxed)),
            s["messages_visible"].as_u64().unwrap_or(0)
                + s["messages_in_flight"].as_u64().unwrap_or(0)
        ));
        if read >= args.events && s["messages_visible"] == 0 && s["messages_in_flight"] == 0 {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    finish(&bar);
    let read = sum(&|q| q.records.load(Relaxed));
    let passed = sum(&|q| q.events.passed.load(Relaxed));
    let tagged = sum(&|q| q.events.tagged.load(Relaxed));
    let gz = sum(&|q| q.object_bytes.load(Relaxed)) as f64 / 1e6;
    let mb = sum(&|q| q.raw_bytes.load(Relaxed)) as f64 / 1e6;
    println!();
    println!("read          {read} records from {} objects ({gz:.1} MB gzip'd, {mb:.1} MB JSON) in {elapsed:.1}s ({cpu:.1} CPU-s in this process, devstack included)", sum(&|q| q.objects.load(Relaxed)));
    println!(
        "queue         {} messages received, {} deleted once delivered, {} redelivered",
        sum(&|q| q.received.load(Relaxed)),
        sum(&|q| q.deleted.load(Relaxed)),
        sum(&|q| q.redelivered.load(Relaxed))
    );
    println!(
        "enriched      {passed} passed the filter (writes: {writes} generated), {tagged} with tags"
    );
    let cs = cloud.stats();
    println!(
        "tags          {} GetResources calls, {} ARNs asked",
        cs["answers"]["aws:GetResources"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum::<u64>())
            .unwrap_or(0),
        cs["arns_asked"]
    );
    let stats = node.stats.clone();
    for s in stats.sinks.lock().iter() {
        println!(
            "delivered     {}: {} events, {} requests, {} retries",
            s.name,
            s.stats.events.load(Relaxed),
            s.stats.requests.load(Relaxed),
            s.stats.retries.load(Relaxed)
        );
    }
    println!(
        "dead letters  {} (in {})",
        stats.dead_letters.events.load(Relaxed),
        data_dir.join("dead-letters.jsonl").display()
    );
    let mut ok = passed == writes && read == args.events;
    if let Some(h) = &hec {
        let ids = h.event_id_counts();
        let dup = ids.values().filter(|&&n| n > 1).count();
        println!(
            "HEC received  {} distinct events, {dup} delivered more than once",
            ids.len()
        );
        ok &= ids.len() as u64 == passed;
        business_view(&h.events());
    }
    if !ok {
        bail!("not every write record was delivered");
    }
    let control_addr = node.control_addr;
    if args.exit_when_done {
        node.shutdown(Duration::from_secs(10)).await;
        return Ok(());
    }
    println!("\nDone. The node and devstack stay up; Ctrl-C to stop. Try:\n  cargo run -p trailctl -- --endpoint http://{} status", control_addr.map(|a| a.to_string()).unwrap_or_default());
    tokio::signal::ctrl_c().await?;
    node.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

/// Write events per tag `project` × userName, from what HEC indexed.
fn business_view(events: &[trail_devstack::hec::Indexed]) {
    let mut counts: HashMap<(String, String), u64> = HashMap::new();
    for e in events {
        let f = |k: &str| {
            e.fields
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("-")
                .to_owned()
        };
        *counts.entry((f("tag_project"), f("userName"))).or_default() += 1;
    }
    let untagged: u64 = counts
        .iter()
        .filter(|((p, _), _)| p == "-")
        .map(|(_, n)| n)
        .sum();
    let mut rows: Vec<_> = counts.into_iter().filter(|((p, _), _)| p != "-").collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["tag project", "userName", "write events"]);
    for ((project, user), n) in rows.iter().take(12) {
        t.add_row(vec![project.clone(), user.clone(), n.to_string()]);
    }
    println!(
        "\nBusiness view: who changed resources of which project (top 12 of {} pairs)",
        rows.len()
    );
    println!("{t}");
    println!("({untagged} write events touched no tagged resource)");
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}
