//! CloudTrail where AWS delivers it: gzip'd log files in S3, each announced
//! through SQS, read by a real `trail-node` process and delivered to
//! devstack's HEC receiver, with tags from devstack's AWS
//! `GetResources`. Every stand-in is a `trail-devstack` process; the node
//! is killed with SIGKILL mid-stream. Credentials come from the config, a
//! role assumed with an external id, or container credentials.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trail_devstack::aws::client::AwsClient;
use trail_node::aws::credentials::{AssumeRole, CredentialsSettings};
use trail_node::aws::{AwsEndpoint, CredentialsProvider};
use trail_tests::{binary, Devstack, TrailNode, HEC_TOKEN};

const AK: &str = "AKIATRAILTESTS000001";
const SK: &str = "trail/tests/aws/secret/000000000000000000";
const QUEUE: &str = "trail-files";
const BUCKET: &str = "org-trail";
/// The trail's account lets this role read, for whoever names the
/// external id.
const ROLE: &str = "arn:aws:iam::210987654321:role/trail-reader";
const EXTERNAL_ID: &str = "trail-ext-4f9c2a";
/// What devstack's container credentials endpoint wants in `Authorization`.
const CONTAINER_TOKEN: &str = "container-token-for-tests";

struct Setup {
    dir: PathBuf,
    aws: Devstack,
    hec: Devstack,
    _cloud: Devstack,
    /// eventID → the record, for every record written.
    records: HashMap<String, Value>,
    /// ARN → tags, as the cloud serves them.
    tags: HashMap<String, BTreeMap<String, String>>,
}

fn queue_url(aws: &Devstack) -> String {
    format!("http://{}/123456789012/{QUEUE}", aws.addr)
}

/// How the trail announces its files.
#[derive(Clone, Copy, PartialEq)]
enum Announce {
    /// The bucket's event notifications.
    S3,
    /// CloudTrail's own SNS notifications (subscribed to the queue).
    Sns,
}

async fn setup(name: &str, files: usize, per_file: usize, aws_args: &[&str]) -> Setup {
    setup_with(name, files, per_file, aws_args, Announce::S3).await
}

async fn setup_with(
    name: &str,
    files: usize,
    per_file: usize,
    aws_args: &[&str],
    announce: Announce,
) -> Setup {
    let dir = std::env::temp_dir().join(format!("trail-s3-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let notify = format!("{BUCKET}={QUEUE}:AWSLogs/");
    let mut args = vec!["--access-key-id", AK, "--secret-access-key", SK];
    match announce {
        Announce::S3 => args.extend(["--notify", notify.as_str()]),
        Announce::Sns => args.extend(["--queue", QUEUE, "--bucket", BUCKET]),
    }
    args.extend_from_slice(aws_args);
    let aws = Devstack::spawn("s3", &args);
    let hec = Devstack::hec(&[]);
    // The trail: CloudTrail's own generator writes the files into the
    // bucket (the bucket notifies the queue) and the estate's tags.
    let tags_path = dir.join("tags.json");
    let out = std::process::Command::new(binary("trail-devstack"))
        .args(["gen", "--cloudtrail", "--seed", "11"])
        .args(["--events", &(files * per_file).to_string()])
        .args(["--records-per-file", &per_file.to_string()])
        .args([
            "--s3-endpoint",
            &format!("http://{}", aws.addr),
            "--bucket",
            BUCKET,
        ])
        .args(["--aws-access-key-id", AK, "--aws-secret-access-key", SK])
        .arg("--tags-out")
        .arg(&tags_path)
        .args(match announce {
            Announce::S3 => vec![],
            Announce::Sns => vec!["--sns-queue".to_owned(), queue_url(&aws)],
        })
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tags_file: Value = serde_json::from_slice(&std::fs::read(&tags_path).unwrap()).unwrap();
    let tags = tags_file["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["arn"].as_str().unwrap().to_owned(),
                serde_json::from_value(r["tags"].clone()).unwrap(),
            )
        })
        .collect();
    let cloud = Devstack::spawn(
        "cloud",
        &[
            "--access-key-id",
            "cloud-ak",
            "--access-key-secret",
            "cloud-secret",
            "--tags",
            tags_path.to_str().unwrap(),
        ],
    );
    // What was written, read back (as the role when only it may read).
    let mut records = HashMap::new();
    let list = reqwest::get(format!("http://{}/_devstack/stats", aws.addr))
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let reader = match aws_args.contains(&"--require-role") {
        true => role_reader(&aws),
        false => creds().into(),
    };
    for (key, body) in objects(&aws, reader).await {
        let doc: Value = serde_json::from_slice(&gunzip(&body)).unwrap();
        for r in doc["Records"].as_array().unwrap() {
            records.insert(r["eventID"].as_str().unwrap().to_owned(), r.clone());
        }
        assert!(key.starts_with("AWSLogs/"));
    }
    assert_eq!(records.len(), files * per_file);
    Setup {
        dir,
        aws,
        hec,
        _cloud: cloud,
        records,
        tags,
    }
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Every object of the bucket, through signed ListObjectsV2 + GetObject.
async fn objects(aws: &Devstack, reader: CredentialsProvider) -> Vec<(String, Vec<u8>)> {
    let s3 = trail_node::aws::s3::S3Client::new(
        AwsEndpoint::parse(&format!("http://{}", aws.addr), None).unwrap(),
        reader,
        "us-east-1",
        true,
    )
    .unwrap();
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut list = trail_node::aws::s3::ListObjects::under("");
        list.token = token.as_deref();
        let page = s3.list_objects(BUCKET, &list).await.unwrap();
        keys.extend(page.objects.into_iter().map(|o| o.key));
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut out = Vec::new();
    for k in keys {
        let body = s3.get_object(BUCKET, &k, 64 << 20).await.unwrap();
        out.push((k, body.to_vec()));
    }
    out
}

fn creds() -> trail_node::aws::AwsCredentials {
    trail_node::aws::AwsCredentials {
        access_key_id: AK.into(),
        secret_access_key: trail_node::secret::Secret::new(SK),
        session_token: None,
    }
}

/// The role, assumed with the test's keys through devstack's STS.
fn role_reader(aws: &Devstack) -> CredentialsProvider {
    CredentialsProvider::new(CredentialsSettings {
        keys: Some(creds()),
        profile: None,
        region: "us-east-1".into(),
        sts_endpoint: AwsEndpoint::parse(&format!("http://{}", aws.addr), None).unwrap(),
        assume_role: Some(AssumeRole {
            role_arn: ROLE.into(),
            external_id: Some(trail_node::secret::Secret::new(EXTERNAL_ID)),
            role_session_name: "trail-tests".into(),
            duration: Duration::from_secs(900),
        }),
    })
    .unwrap()
}

fn devstack_client(aws: &Devstack) -> AwsClient {
    AwsClient::new(&format!("http://{}", aws.addr), AK, SK, "us-east-1")
}

impl Setup {
    /// The node's config: the test's keys, then `extra_source`.
    fn config(&self, extra_source: &str) -> PathBuf {
        let keys =
            format!("access_key_id = \"{AK}\"\nsecret_access_key = {{ env = \"S3_TEST_SECRET\" }}");
        self.config_with(&keys, extra_source)
    }

    /// The node's config with `keys` as the source's credential keys.
    fn config_with(&self, keys: &str, extra_source: &str) -> PathBuf {
        let path = self.dir.join("trail.toml");
        let text = format!(
            r#"
[node]
id = "s3-node"
data_dir = {data:?}

[[sources]]
type = "s3_sqs"
name = "org-trail"
queue_url = "{queue}"
region = "us-east-1"
sqs_endpoint = "http://sqs.{{region}}.amazonaws.com"
s3_endpoint = "http://s3.{{region}}.amazonaws.com"
address = "{aws}"
path_style = true
{keys}
wait_secs = 1
{extra_source}

[filter]
event_rw = "all"

[tags]
budget_ms = 3000
batch_window_ms = 20

[tags.aws]
endpoint = "http://tagging.{{region}}.amazonaws.com"
address = "{cloud}"
access_key_id = "cloud-ak"
secret_access_key = "cloud-secret"

[enrich]
threads = 2

[[sinks]]
type = "hec"
url = "http://{hec}"
token = "{HEC_TOKEN}"
flush_interval_ms = 100
retry_initial_ms = 20
retry_max_ms = 500

[dead_letter]
path = {dead:?}
"#,
            data = self.dir.join("data").display().to_string(),
            queue = queue_url(&self.aws),
            aws = self.aws.addr,
            cloud = self._cloud.addr,
            hec = self.hec.addr,
            dead = self.dir.join("dead.jsonl").display().to_string(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn node(&self, config: &Path) -> TrailNode {
        std::env::set_var("S3_TEST_SECRET", SK);
        TrailNode::spawn(config)
    }

    /// eventID → (times indexed, the last HEC event).
    async fn delivered(&self) -> HashMap<String, (u32, Value)> {
        let text = reqwest::get(format!("http://{}/_devstack/events", self.hec.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut out: HashMap<String, (u32, Value)> = HashMap::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let id = v["event"]["eventID"].as_str().unwrap_or("?").to_owned();
            let e = out.entry(id).or_insert((0, Value::Null));
            e.0 += 1;
            e.1 = v;
        }
        out
    }

    async fn wait_all(
        &self,
        node: &mut TrailNode,
        timeout: Duration,
    ) -> HashMap<String, (u32, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.delivered().await;
            if self.records.keys().all(|k| got.contains_key(k)) {
                return got;
            }
            assert!(
                node.alive(),
                "trail-node died; see {}",
                self.dir.join("trail.log").display()
            );
            assert!(
                Instant::now() < deadline,
                "only {} of {} records arrived; log: {}",
                got.len(),
                self.records.len(),
                self.dir.join("trail.log").display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn aws_stats(&self) -> Value {
        reqwest::get(format!("http://{}/_devstack/stats", self.aws.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the queue holds nothing, visible or in flight.
    async fn wait_queue_empty(&self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.aws_stats().await;
            if s["messages_visible"] == 0 && s["messages_in_flight"] == 0 {
                return s;
            }
            assert!(Instant::now() < deadline, "the queue never emptied: {s}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn dead_letters(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("dead.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cloudtrail_record_arrives_once_tagged_and_a_poison_object_is_dead_lettered() {
    let s = setup("once", 12, 100, &[]).await;
    // A poison object under the trail's prefix (announced like the rest),
    // and a message that is no notification at all.
    let c = devstack_client(&s.aws);
    let poison = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/12/03/123456789012_CloudTrail_us-east-1_20261203T1200Z_POISONPOISON0001.json.gz";
    c.put_object(
        BUCKET,
        poison,
        bytes::Bytes::from_static(b"PK\x03\x04 not gzip"),
        "application/json",
    )
    .await
    .unwrap();
    c.send_message(&queue_url(&s.aws), "hello, not a notification")
        .await
        .unwrap();

    let mut node = s.node(&s.config(""));
    let got = s.wait_all(&mut node, Duration::from_secs(120)).await;
    let stats = s.wait_queue_empty(Duration::from_secs(30)).await;
    // Once each, in the aws:cloudtrail shape, with the object as provenance.
    let twice: Vec<_> = got
        .iter()
        .filter(|(_, (n, _))| *n > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(
        twice.is_empty(),
        "{} records delivered twice without any failure",
        twice.len()
    );
    let mut tagged = 0;
    for (id, (_, ev)) in &got {
        let rec = &s.records[id];
        assert_eq!(ev["sourcetype"], "aws:cloudtrail", "{ev}");
        assert_eq!(&ev["event"], rec, "the record is delivered as written");
        assert!(
            ev["source"].as_str().unwrap().starts_with("AWSLogs/"),
            "{}",
            ev["source"]
        );
        // A record naming a tagged regional resource carries its tags.
        // (Buckets' ARNs name no account or region, IAM's no region: the
        // AWS provider does not look them up yet.)
        let regional = |arn: &str| arn.split(':').nth(3).is_some_and(|r| !r.is_empty());
        if let Some(arn) = rec["resources"][0]["ARN"].as_str().filter(|a| regional(a)) {
            if let Some(project) = s.tags.get(arn).and_then(|t| t.get("project")) {
                assert_eq!(ev["fields"]["tag_project"], json!(project), "{id}: {ev}");
                tagged += 1;
            }
        }
    }
    assert!(
        tagged > 50,
        "only {tagged} records carried their resource's tags"
    );
    let dead = s.dead_letters();
    assert!(
        dead.iter().any(|d| d["kind"] == "undecodable_object"
            && d["cursor"].as_str().unwrap().ends_with(poison)),
        "the poison object is dead-lettered with its key: {dead:?}"
    );
    assert!(
        dead.iter().any(|d| d["kind"] == "bad_notification"),
        "{dead:?}"
    );
    // Every message deleted: 12 files, the poison, the bad one.
    assert_eq!(stats["messages_deleted"], 14, "{stats}");
    assert_eq!(node.terminate().map(|s| s.success()), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_object_loses_nothing_and_its_messages_return_after_their_visibility_timeout(
) {
    // GetObject is slow (400 ms each): the kill lands with messages in flight.
    let s = setup("kill", 24, 50, &[]).await;
    let faults = json!({"latency_ms": 400, "ops": ["GetObject"]});
    reqwest::Client::new()
        .put(format!("http://{}/_devstack/faults", s.aws.addr))
        .json(&faults)
        .send()
        .await
        .unwrap();
    let config = s.config("visibility_timeout_secs = 10\nmessages_in_flight = 2");
    let mut node = s.node(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.delivered().await.len() < 200 {
        assert!(
            Instant::now() < deadline && node.alive(),
            "no progress before the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.kill();
    let before = s.aws_stats().await;
    assert!(
        before["messages_in_flight"].as_u64().unwrap() > 0,
        "killed with messages in flight: {before}"
    );
    assert!(
        s.delivered().await.len() < s.records.len(),
        "killed mid-stream"
    );
    // A new node receives them again once their timeout ran out.
    let mut node = s.node(&config);
    let got = s.wait_all(&mut node, Duration::from_secs(120)).await;
    s.wait_queue_empty(Duration::from_secs(30)).await;
    let after = s.aws_stats().await;
    assert!(
        after["messages_redelivered"].as_u64().unwrap() > 0,
        "{after}"
    );
    // Duplicates: at most the objects of the messages in flight at the kill
    // (2 pollers × 2 messages × 50 records).
    let dups: u32 = got.values().map(|(n, _)| n - 1).sum();
    assert!(
        dups <= 200,
        "{dups} duplicates exceed the messages in flight"
    );
    assert_eq!(node.terminate().map(|s| s.success()), Some(true));
}

/// A Splunk outage longer than the visibility timeout: the node keeps its
/// messages hidden (it extends them while their parts retry), so nothing
/// is received twice, and once HEC answers again every record arrives
/// once. Files announced as CloudTrail announces them (SNS messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hec_outage_longer_than_the_visibility_timeout_sends_each_record_once() {
    let s = setup_with("outage", 6, 50, &[], Announce::Sns).await;
    let hec_faults = |busy: u64| {
        let url = format!("http://{}/_devstack/faults", s.hec.addr);
        async move {
            let r = reqwest::Client::new()
                .put(url)
                .json(&json!({"busy_every": busy}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    hec_faults(1).await; // every request: 503, server busy
    let config = s.config("visibility_timeout_secs = 10");
    let mut node = s.node(&config);
    // Longer than the timeout, with the messages received and held.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let during = s.aws_stats().await;
    assert!(node.alive());
    assert!(
        during["messages_in_flight"].as_u64().unwrap() > 0,
        "{during}"
    );
    assert_eq!(
        during["messages_redelivered"], 0,
        "extended, not redelivered: {during}"
    );
    assert!(
        s.delivered().await.is_empty(),
        "HEC took nothing during the outage"
    );
    hec_faults(0).await;
    let got = s.wait_all(&mut node, Duration::from_secs(90)).await;
    s.wait_queue_empty(Duration::from_secs(30)).await;
    let twice = got.values().filter(|(n, _)| *n > 1).count();
    assert_eq!(twice, 0, "records delivered twice");
    let after = s.aws_stats().await;
    assert_eq!(after["messages_redelivered"], 0, "{after}");
    assert_eq!(after["messages_deleted"], 6, "{after}");
    assert_eq!(node.terminate().map(|s| s.success()), Some(true));
}

/// Waits for a node that should stop by itself; its log.
fn failed_start(s: &Setup, node: &mut TrailNode) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.alive() {
        assert!(Instant::now() < deadline, "the node kept running");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = node.terminate().unwrap();
    assert!(!status.success(), "{status:?}");
    std::fs::read_to_string(s.dir.join("trail.log")).unwrap()
}

/// The bucket and queue belong to another account: the node's own keys
/// may not read them (devstack `--require-role`), only the role they
/// assume with the external id the role's trust names. A wrong external
/// id stops the node at start with STS's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_assumes_a_role_with_its_external_id_delivers_every_record() {
    let role = format!("{ROLE}:{EXTERNAL_ID}");
    let s = setup("role", 6, 50, &["--role", &role, "--require-role"]).await;
    // The premise: the keys alone cannot read the queue.
    let sqs = trail_node::aws::sqs::SqsClient::new(
        AwsEndpoint::parse(&format!("http://{}", s.aws.addr), None).unwrap(),
        creds(),
        "us-east-1",
        &queue_url(&s.aws),
    )
    .unwrap();
    let e = sqs
        .receive(1, Duration::ZERO, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "AccessDenied", "{e}");

    let role_keys = |external_id: &str| {
        format!(
            "role_arn = \"{ROLE}\"\nexternal_id = \"{external_id}\"\n\
             sts_endpoint = \"http://sts.{{region}}.amazonaws.com\"\nassume_role_secs = 900"
        )
    };
    let mut wrong = s.node(&s.config(&role_keys("trail-ext-wrong")));
    let log = failed_start(&s, &mut wrong);
    assert!(
        log.contains("AssumeRole: HTTP 403 AccessDenied"),
        "the start error says what STS said: {log}"
    );
    assert!(!log.contains(SK), "no secret in the log");

    let mut node = s.node(&s.config(&role_keys(EXTERNAL_ID)));
    let got = s.wait_all(&mut node, Duration::from_secs(120)).await;
    let stats = s.wait_queue_empty(Duration::from_secs(30)).await;
    assert_eq!(got.values().filter(|(n, _)| *n > 1).count(), 0);
    assert_eq!(stats["messages_deleted"], 6, "{stats}");
    let answers = &stats["answers"];
    assert!(
        answers["AssumeRole"]["200"].as_u64() >= Some(2),
        "{answers}"
    );
    assert_eq!(answers["AssumeRole"]["AccessDenied"], 1, "{answers}");
    assert!(
        answers["GetObject"].get("AccessDenied").is_none()
            && answers["ReceiveMessage"]["AccessDenied"] == 1,
        "only the premise's receive was refused: {answers}"
    );
    let log = std::fs::read_to_string(s.dir.join("trail.log")).unwrap();
    assert!(
        log.contains(r#"AWS credentials source="sources[0]" provider="assume role""#),
        "the log says where credentials came from: {log}"
    );
    assert_eq!(node.terminate().map(|s| s.success()), Some(true));
    // Both nodes' logs: neither external id, the wrong one nor the right
    // one, nor the secret, is ever written.
    let log = std::fs::read_to_string(s.dir.join("trail.log")).unwrap();
    for secret in [EXTERNAL_ID, "trail-ext-wrong", SK] {
        assert!(!log.contains(secret), "{secret} in the node's log");
    }
}

/// No keys in the config or the environment: the node takes container
/// credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, a loopback http URI
/// as the SDKs allow, with its authorization token) from devstack, whose
/// S3 and SQS let only role sessions read. Without them, the node stops at
/// start listing every place it looked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_container_credentials_and_no_keys_delivers_every_record() {
    let role = format!("{ROLE}:{EXTERNAL_ID}");
    let s = setup(
        "container",
        6,
        50,
        &[
            "--role",
            &role,
            "--require-role",
            "--container-token",
            CONTAINER_TOKEN,
        ],
    )
    .await;
    let config = s.config_with("", "");
    let nowhere = s.dir.join("no-such-aws-dir");
    let files = [
        ("HOME", nowhere.to_str().unwrap()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut bare = TrailNode::spawn_with_env(&config, &files);
    let log = failed_start(&s, &mut bare);
    for link in [
        "no AWS credentials found",
        "environment: AWS_ACCESS_KEY_ID not set",
        "shared files: profile default not in",
        "web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set",
        "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI not set",
        "instance metadata: AWS_EC2_METADATA_DISABLED=true",
    ] {
        assert!(log.contains(link), "{link:?} not in the start error: {log}");
    }

    let uri = format!("http://{}/_devstack/container-credentials", s.aws.addr);
    let mut env = files.to_vec();
    env.extend([
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN),
    ]);
    let mut node = TrailNode::spawn_with_env(&config, &env);
    let got = s.wait_all(&mut node, Duration::from_secs(120)).await;
    let stats = s.wait_queue_empty(Duration::from_secs(30)).await;
    assert_eq!(got.values().filter(|(n, _)| *n > 1).count(), 0);
    assert_eq!(stats["messages_deleted"], 6, "{stats}");
    assert!(
        stats["answers"]["ContainerCredentials"]["200"].as_u64() >= Some(1),
        "{stats}"
    );
    assert_eq!(node.terminate().map(|s| s.success()), Some(true));
}

/// Devstack's container credentials endpoint behind a relay that answers
/// 503 until `up`: the credentials service of a node that starts during
/// an outage.
async fn flaky_container_endpoint(
    aws: &Devstack,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = format!("http://{}/_devstack/container-credentials", aws.addr);
    tokio::spawn(async move {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (up, http, target) = (up.clone(), http.clone(), target.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let token = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization:"))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let (status, body) = if up.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = http
                        .get(&target)
                        .header("authorization", token)
                        .send()
                        .await
                        .unwrap();
                    (r.status().as_u16(), r.text().await.unwrap())
                } else {
                    (
                        503,
                        r#"{"code":"ServiceUnavailable","message":"down"}"#.to_owned(),
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}/v2/credentials")
}

/// Credentials that are there but cannot be had just now (the container
/// credentials endpoint answers 503): the node starts anyway, says so,
/// and reads every record once the endpoint answers; nothing is
/// dead-lettered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_credentials_service_is_down_at_start_starts_and_delivers_once_it_is_back() {
    let role = format!("{ROLE}:{EXTERNAL_ID}");
    let s = setup(
        "credentials-outage",
        4,
        20,
        &[
            "--role",
            &role,
            "--require-role",
            "--container-token",
            CONTAINER_TOKEN,
        ],
    )
    .await;
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let uri = flaky_container_endpoint(&s.aws, up.clone()).await;
    let nowhere = s.dir.join("no-such-aws-dir");
    let env = [
        ("HOME", nowhere.to_str().unwrap()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN),
    ];
    let mut node = TrailNode::spawn_with_env(&s.config_with("", ""), &env);
    let log_path = s.dir.join("trail.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            node.alive(),
            "the node stopped: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("AWS credentials could not be loaded yet; starting anyway") {
            assert!(log.contains("HTTP 503 ServiceUnavailable: down"), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "no warning: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still running a while later, nothing read yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(node.alive());
    assert!(s.delivered().await.is_empty());
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let got = s.wait_all(&mut node, Duration::from_secs(120)).await;
    let stats = s.wait_queue_empty(Duration::from_secs(30)).await;
    assert_eq!(got.values().filter(|(n, _)| *n > 1).count(), 0);
    assert_eq!(stats["messages_deleted"], 4, "{stats}");
    assert!(s.dead_letters().is_empty(), "{:?}", s.dead_letters());
    assert_eq!(node.terminate().map(|s| s.success()), Some(true));
}
