//! `trail-node demo`: Trail on this machine with nothing to set up.
//!
//! Today it shows the SLS line of Trail end to end: it starts devstack's SLS
//! server in-process, writes `--events` ActionTrail-shaped logs into a
//! logstore through Trail's own client (PutLogs, lz4), reads every shard back
//! from the beginning (GetCursor, PullLogs), checks that every event came back
//! once, intact and in order per shard, and prints what it measured. The
//! enrichment pipeline and the HEC sink join this command with their issue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use trail_devstack::sls::{SlsConfig, SlsServer};
use trail_node::sls::{Credentials, CursorPosition, Endpoint, PullRequest, PutTarget, SlsClient};
use trail_proto::sls::{Log, LogContent, LogGroup};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Events to write and read back.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Exit once the run is checked (0 only if every event came back) instead of
    /// staying up for other clients.
    #[arg(long)]
    exit_when_done: bool,
    /// Where devstack's SLS server listens.
    #[arg(long, default_value = "127.0.0.1:39001")]
    listen: SocketAddr,
    /// Shards of the demo logstore.
    #[arg(long, default_value_t = 4)]
    shards: u32,
}

const PROJECT: &str = "trail-demo";
const LOGSTORE: &str = "actiontrail_demo";
const GROUP_SIZE: u64 = 512;

pub async fn run(args: DemoArgs) -> Result<()> {
    let mut config = SlsConfig::on(args.listen);
    config.project = PROJECT.into();
    config.logstore = LOGSTORE.into();
    config.shards = args.shards;
    let server = SlsServer::start(config.clone()).await.with_context(|| {
        format!(
            "starting devstack SLS on {} (try --listen 127.0.0.1:0)",
            args.listen
        )
    })?;
    let addr = server.local_addr();
    println!("devstack SLS    http://{{project}}.sls.test served at {addr}");
    println!(
        "AccessKey       {} / {}",
        config.access_key_id, config.access_key_secret
    );
    println!(
        "logstore        {PROJECT}/{LOGSTORE}, {} shards",
        args.shards
    );

    let endpoint = Endpoint::parse("http://sls.test")?.with_address(&addr.to_string())?;
    let client = SlsClient::builder(
        endpoint,
        Credentials::new(&config.access_key_id, &config.access_key_secret),
    )
    .build()?;

    // Write.
    let started = Instant::now();
    let mut raw_bytes = 0u64;
    let mut written = 0u64;
    while written < args.events {
        let n = GROUP_SIZE.min(args.events - written);
        let group = LogGroup {
            logs: (written..written + n).map(event).collect(),
            topic: Some(Bytes::from_static(b"actiontrail_audit_event")),
            source: Some(Bytes::from_static(b"trail-demo")),
            ..Default::default()
        };
        raw_bytes += group
            .logs
            .iter()
            .map(|l| l.contents[0].value.len() as u64)
            .sum::<u64>();
        client
            .put_logs(PROJECT, LOGSTORE, &group, PutTarget::LoadBalanced)
            .await?;
        written += n;
    }
    let put_secs = started.elapsed().as_secs_f64();

    // Read every shard back from the beginning.
    let started = Instant::now();
    let mut seen: HashMap<u64, u32> = HashMap::with_capacity(args.events as usize);
    let mut per_shard = Vec::new();
    for shard in client.list_shards(PROJECT, LOGSTORE).await? {
        let mut cursor = client
            .get_cursor(PROJECT, LOGSTORE, shard.shard_id, CursorPosition::Begin)
            .await?;
        let mut last_seq_in_shard: Option<u64> = None;
        let mut count = 0u64;
        loop {
            let resp = client
                .pull_logs(
                    PROJECT,
                    LOGSTORE,
                    shard.shard_id,
                    &PullRequest::new(&cursor),
                )
                .await?;
            if resp.caught_up(&cursor) {
                break;
            }
            for group in resp.body.decode()?.log_group_list {
                for log in group.logs {
                    let seq = parse_seq(&log).context("a demo event came back altered")?;
                    // Groups were written in increasing order, so within a shard
                    // sequence numbers must only grow.
                    ensure!(
                        last_seq_in_shard.is_none_or(|l| seq > l),
                        "shard {}: event {seq} came after {last_seq_in_shard:?}",
                        shard.shard_id
                    );
                    last_seq_in_shard = Some(seq);
                    *seen.entry(seq).or_default() += 1;
                    count += 1;
                }
            }
            cursor = resp.next_cursor;
        }
        per_shard.push((shard.shard_id, count));
    }
    let pull_secs = started.elapsed().as_secs_f64();

    let missing = (0..args.events).filter(|s| !seen.contains_key(s)).count();
    let duplicated = seen.values().filter(|&&n| n > 1).count();
    let mb = raw_bytes as f64 / 1e6;
    println!();
    println!("wrote   {written} events, {mb:.1} MB of event JSON, in {put_secs:.2}s ({:.0} events/s, {:.1} MB/s)",
        written as f64 / put_secs, mb / put_secs);
    println!(
        "read    {} events in {pull_secs:.2}s ({:.0} events/s, {:.1} MB/s)",
        seen.values().map(|&n| u64::from(n)).sum::<u64>(),
        seen.len() as f64 / pull_secs,
        mb / pull_secs
    );
    for (shard, n) in &per_shard {
        println!("  shard {shard}: {n} events");
    }
    println!("check   missing {missing}, duplicated {duplicated}, order per shard kept");
    let stats = client.stats();
    println!(
        "client  {} requests, {} transient retries, {} quota retries",
        stats.requests.load(std::sync::atomic::Ordering::Relaxed),
        stats
            .retries_transient
            .load(std::sync::atomic::Ordering::Relaxed),
        stats
            .retries_quota
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    ensure!(
        missing == 0 && duplicated == 0,
        "{missing} events missing, {duplicated} duplicated"
    );

    if args.exit_when_done {
        server.shutdown().await;
        return Ok(());
    }
    println!();
    println!("devstack stays up for other clients (the official SDKs work too); Ctrl-C to stop.");
    println!(
        "  HTTP_PROXY=http://{addr} python3 -c \"from aliyun.log import LogClient; \
         print(LogClient('sls.test:{}', '{}', '{}').list_shards('{PROJECT}', '{LOGSTORE}').get_shards_info())\"",
        addr.port(),
        config.access_key_id,
        config.access_key_secret
    );
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}

/// One ActionTrail-shaped event (the realistic generator comes with devstack `gen`).
fn event(seq: u64) -> Log {
    let write = seq % 7 == 0;
    let json = format!(
        concat!(
            r#"{{"eventId":"demo-{seq:012}","eventVersion":1,"eventCategory":"Management","eventType":"ApiCall","#,
            r#""eventRW":"{rw}","eventName":"{name}","eventSource":"ecs.cn-shanghai.aliyuncs.com","#,
            r#""eventTime":"2026-11-23T07:{m:02}:{s:02}Z","acsRegion":"cn-shanghai","serviceName":"Ecs","#,
            r#""sourceIpAddress":"203.0.113.{ip}","userAgent":"AlibabaCloud (Linux; amd64) Go/1.21.6 Core/1.62.700","#,
            r#""requestId":"demo-{seq:012}","userIdentity":{{"type":"ram-user","accountId":"1384920045567123","#,
            r#""principalId":"2718300455129088{u:02}","userName":"user-{u:02}","accessKeyId":"LTAI5tQx9ExampleKeyId01"}},"#,
            r#""resourceType":"ACS::ECS::Instance","resourceName":"i-uf6f3k2x9example{r:04}","errorCode":"","errorMessage":""}}"#
        ),
        seq = seq,
        rw = if write { "Write" } else { "Read" },
        name = if write {
            "StopInstance"
        } else {
            "DescribeInstances"
        },
        m = (seq / 60) % 60,
        s = seq % 60,
        ip = seq % 250,
        u = seq % 40,
        r = seq % 5000,
    );
    Log {
        time: 1_795_000_000 + (seq / 1000) as u32,
        contents: vec![LogContent {
            key: Bytes::from_static(b"event"),
            value: Bytes::from(json),
        }],
        time_ns: None,
    }
}

fn parse_seq(log: &Log) -> Option<u64> {
    let value = std::str::from_utf8(&log.contents.first()?.value).ok()?;
    let rest = value.strip_prefix(r#"{"eventId":"demo-"#)?;
    let seq: u64 = rest.get(..12)?.parse().ok()?;
    (event(seq).contents[0].value == log.contents[0].value).then_some(seq)
}
