//! An S3 trail read by listing (`type = "s3"`, no SQS) in a 3-node cluster
//! that also has an SLS source: each (account, region) prefix is a
//! partition assigned through raft like a shard. Real `trail-node`
//! processes, devstack's S3 and HEC; the owner of the most partitions is
//! killed with SIGKILL while new files land, and a file lands late (its key
//! sorting before keys already read).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::Value;
use trail_devstack::aws::client::AwsClient;
use trail_devstack::gen::cloudtrail::{CloudTrailGenerator, LogFile};
use trail_tests::cluster::{check_history, LocalCluster, Timing};
use trail_tests::Devstack;

const AK: &str = "AKIATRAILTESTS000002";
const SK: &str = "trail/tests/aws/listing/0000000000000000";
const BUCKET: &str = "org-trail";

fn put(rt: &tokio::runtime::Runtime, client: &AwsClient, files: &[LogFile]) {
    rt.block_on(async {
        for f in files {
            client
                .put_object(BUCKET, &f.key, f.gzip.clone().into(), "application/x-gzip")
                .await
                .unwrap();
        }
    });
}

fn ids(files: &[LogFile]) -> BTreeSet<String> {
    files
        .iter()
        .flat_map(|f| f.records.iter())
        .map(|r| {
            let v: Value = serde_json::from_str(r).unwrap();
            v["eventID"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn delivered(c: &LocalCluster) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for e in c.hec_events() {
        if let Some(id) = e["event"]["eventID"].as_str() {
            *out.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

fn wait_all(c: &LocalCluster, want: &BTreeSet<String>, timeout: Duration) -> HashMap<String, u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = delivered(c);
        let missing = want.iter().filter(|id| !got.contains_key(*id)).count();
        if missing == 0 {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} records never delivered; logs in {}",
            want.len(),
            c.dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Partition prefix → (owner, epoch), from status.
fn partitions(s: &Value) -> BTreeMap<String, (String, u64)> {
    s["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| !x["partition"].as_str().unwrap_or("").is_empty())
        .map(|x| {
            (
                x["partition"].as_str().unwrap().to_owned(),
                (
                    x["owner"].as_str().unwrap_or("").to_owned(),
                    x["epoch"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn partitions_spread_over_three_nodes_a_kill_moves_them_and_late_files_are_read() {
    let aws = Devstack::spawn("s3", &["--access-key-id", AK, "--secret-access-key", SK]);
    let client = AwsClient::new(&format!("http://{}", aws.addr), AK, SK, "us-east-1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(client.create_bucket(BUCKET)).unwrap();

    // The trail's first hours: 4 accounts × up to 4 regions.
    let mut trail = CloudTrailGenerator::new(29);
    let first: Vec<LogFile> = (0..48).map(|_| trail.next_file(40)).collect();
    put(&rt, &client, &first);
    let prefixes: BTreeSet<String> = first
        .iter()
        .map(|f| format!("AWSLogs/{}/CloudTrail/{}/", f.account, f.region))
        .collect();
    assert!(prefixes.len() >= 6, "{prefixes:?}");

    let extra = format!(
        r#"
[[sources]]
type = "s3"
name = "org-trail"
bucket = "{BUCKET}"
region = "us-east-1"
s3_endpoint = "http://s3.{{region}}.amazonaws.com"
address = "{aws}"
path_style = true
access_key_id = "{AK}"
secret_access_key = "{SK}"
poll_secs = 1
relist_secs = 1
relist_minutes = 60
discover_secs = 1
"#,
        aws = aws.addr
    );
    // One SLS shard beside the trail: two sources, one assignment.
    let mut c = LocalCluster::start_extra("s3-listing", 3, 1, Timing::tests(), extra);
    let want = ids(&first);
    let got = wait_all(&c, &want, Duration::from_secs(90));
    assert!(
        got.values().all(|n| *n == 1),
        "without failures every record goes out once"
    );
    let s = c.wait_for("every partition owned", Duration::from_secs(30), |s| {
        let p = partitions(s);
        p.len() == prefixes.len() && p.values().all(|(o, _)| !o.is_empty())
    });
    let before = partitions(&s);
    assert_eq!(
        before.keys().cloned().collect::<BTreeSet<_>>(),
        prefixes,
        "a partition per (account, region), found by listing"
    );
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (owner, _) in before.values() {
        *per_node.entry(owner.clone()).or_default() += 1;
    }
    assert_eq!(
        per_node.len(),
        3,
        "partitions spread over every node: {per_node:?}"
    );
    // Every partition's SLS neighbour is there too.
    assert!(s["shards"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["logstore"] == "trail" || x["partition"] == ""));

    // Kill the owner of the most partitions while the next hours land.
    let (victim, _) = per_node.iter().max_by_key(|(_, n)| **n).unwrap();
    let victim = victim.clone();
    let id: u64 = victim.parse().unwrap();
    let theirs: Vec<String> = before
        .iter()
        .filter(|(_, (o, _))| *o == victim)
        .map(|(p, _)| p.clone())
        .collect();
    let second: Vec<LogFile> = (0..24).map(|_| trail.next_file(40)).collect();
    put(&rt, &client, &second[..12]);
    c.kill(id);
    put(&rt, &client, &second[12..]);

    // A late file: a key of a minute already passed in one of the killed
    // node's partitions (CloudTrail delivers such files minutes late).
    let newest = second
        .iter()
        .rev()
        .find(|f| theirs.contains(&format!("AWSLogs/{}/CloudTrail/{}/", f.account, f.region)))
        .or_else(|| second.last())
        .unwrap();
    let mut late = trail.next_file(25);
    // Ten minutes before the partition's newest key.
    let t = trail_node::pipeline::s3_listing::key_time(&newest.key).unwrap() - 600;
    let at = trail_node::pipeline::s3_listing::key_at(
        &format!("AWSLogs/{}/CloudTrail/{}/", newest.account, newest.region),
        t,
    )
    .unwrap();
    assert!(at.as_str() < newest.key.as_str());
    late.key = format!("{at}_LATEFILE00000001.json.gz");
    late.account = newest.account.clone();
    late.region = newest.region.clone();
    // Give the partitions time to pass the newest key first.
    let mut want2 = ids(&second);
    wait_all(&c, &want2, Duration::from_secs(90));
    put(&rt, &client, std::slice::from_ref(&late));
    want2.extend(ids(std::slice::from_ref(&late)));
    want2.extend(want.iter().cloned());
    let got = wait_all(&c, &want2, Duration::from_secs(60));

    let after = c.wait_for(
        "the dead node's partitions moved",
        Duration::from_secs(30),
        |s| {
            let p = partitions(s);
            theirs
                .iter()
                .all(|t| p.get(t).is_some_and(|(o, _)| !o.is_empty() && *o != victim))
        },
    );
    for t in &theirs {
        let (o, e) = &partitions(&after)[t];
        assert!(
            *e > before[t].1,
            "{t}: taken over under a new epoch ({o}, {e})"
        );
    }
    // Nothing lost; duplicates only from objects in flight at the kill
    // (at most `in_flight_objects` per partition, 40 records each).
    let dups: u32 = got.values().map(|n| n - 1).sum();
    println!(
        "partitions per node {per_node:?}; node {victim} killed with {} partitions; {} records, {dups} duplicates",
        theirs.len(),
        got.len()
    );
    let bound = theirs.len() as u32 * 4 * 40;
    assert!(dups <= bound, "{dups} duplicates exceed {bound}");
    let late_ids = ids(std::slice::from_ref(&late));
    assert!(
        late_ids.iter().all(|id| got.get(id) == Some(&1)),
        "the late file read once"
    );
    let violations = check_history(&c.hec_events());
    assert!(violations.is_empty(), "{violations:#?}");
}

fn hec_ids(rt: &tokio::runtime::Runtime, hec: &Devstack) -> HashMap<String, u32> {
    let text = rt.block_on(async {
        reqwest::get(format!("http://{}/_devstack/events", hec.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let mut out = HashMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(id) = v["event"]["eventID"].as_str() {
            *out.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

fn wait_hec(
    rt: &tokio::runtime::Runtime,
    hec: &Devstack,
    want: &BTreeSet<String>,
    timeout: Duration,
) -> HashMap<String, u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = hec_ids(rt, hec);
        let missing = want.iter().filter(|id| !got.contains_key(*id)).count();
        if missing == 0 {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} never delivered",
            want.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Without a cluster a node reads every partition itself and keeps each
/// partition's cursor in its data dir, by prefix: killed mid-trail and
/// started again it goes on from there.
#[test]
fn a_single_node_reads_every_partition_and_resumes_after_a_kill() {
    let aws = Devstack::spawn("s3", &["--access-key-id", AK, "--secret-access-key", SK]);
    let hec = Devstack::hec(&[]);
    let client = AwsClient::new(&format!("http://{}", aws.addr), AK, SK, "us-east-1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(client.create_bucket(BUCKET)).unwrap();
    // An organization trail under a trail prefix: `audit/AWSLogs/o-…/{account}/…`.
    let mut trail = CloudTrailGenerator::new(31)
        .organization("o-a1b2c3d4e5")
        .prefix("audit");
    let files: Vec<LogFile> = (0..40).map(|_| trail.next_file(50)).collect();
    put(&rt, &client, &files[..20]);
    let dir = std::env::temp_dir().join(format!("trail-s3-single-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("trail.toml");
    std::fs::write(
        &config,
        format!(
            r#"[node]
id = "single"
data_dir = {data:?}

[[sources]]
type = "s3"
name = "org-trail"
bucket = "{BUCKET}"
prefix = "audit"
region = "us-east-1"
s3_endpoint = "http://s3.{{region}}.amazonaws.com"
address = "{aws}"
path_style = true
access_key_id = "{AK}"
secret_access_key = "{SK}"
poll_secs = 1
discover_secs = 1

[filter]
event_rw = "all"

[[sinks]]
type = "hec"
url = "http://{hec}"
token = "{token}"
flush_interval_ms = 50

[dead_letter]
path = {dead:?}
"#,
            data = dir.join("data").display().to_string(),
            aws = aws.addr,
            hec = hec.addr,
            token = trail_tests::HEC_TOKEN,
            dead = dir.join("dead.jsonl").display().to_string(),
        ),
    )
    .unwrap();
    let mut node = trail_tests::TrailNode::spawn(&config);
    wait_hec(&rt, &hec, &ids(&files[..20]), Duration::from_secs(60));
    // Checkpoints are written every second without a cluster.
    std::thread::sleep(Duration::from_millis(2500));
    // More files while it runs; killed while they are read.
    put(&rt, &client, &files[20..30]);
    std::thread::sleep(Duration::from_millis(300));
    node.kill();
    put(&rt, &client, &files[30..]);
    let _node = trail_tests::TrailNode::spawn(&config);
    let got = wait_hec(&rt, &hec, &ids(&files), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2)); // anything read twice lands meanwhile
    let got_again = hec_ids(&rt, &hec);
    let dups: u32 = got_again.values().map(|n| n - 1).sum();
    let partitions: BTreeSet<String> = files
        .iter()
        .map(|f| format!("{}/{}", f.account, f.region))
        .collect();
    println!(
        "{} records over {} partitions; {dups} read twice after the kill",
        got.len(),
        partitions.len()
    );
    // Objects in flight at the kill, at most `in_flight_objects` (4) per
    // partition, are read again; nothing before the checkpoint is.
    let bound = partitions.len() as u32 * 4 * 50;
    assert!(dups <= bound, "{dups} duplicates exceed {bound}");
    let checkpointed = ids(&files[..20]);
    assert!(
        checkpointed.iter().all(|id| got_again.get(id) == Some(&1)),
        "the restart resumed from the checkpoints: nothing they cover is read again"
    );
}
