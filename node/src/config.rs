//! The node's configuration: one TOML file (see `deploy/trail.toml`),
//! validated once at start. Every error names the key it is about; secrets
//! are given inline, `{ env = "VAR" }` or `{ file = "path" }` and never printed.
//!
//! Floor 6: the components own their config types (`sink::hec::HecSinkConfig`,
//! `event::FilterConfig`, `net::tls::TlsConfig`, …); this module composes
//! them into the file's shape and validates across them. Only the node's
//! assembly and the binary import it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::event::FilterConfig;
pub use crate::net::tls::TlsConfig;
use crate::secret::SecretSource;
use crate::sink::file::FileSinkConfig;
use crate::sink::hec::HecSinkConfig;
use crate::sink::sls::SlsSinkConfig;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    /// The SLS logstore the trail is read from (the single-source form;
    /// `[[sources]]` with `type = "sls"` says the same).
    pub source: Option<SourceConfig>,
    /// Every source: SLS logstores, CloudTrail in S3 through SQS. All feed
    /// the same enrichers and sinks.
    #[serde(default)]
    pub sources: Vec<SourceEntry>,
    #[serde(default)]
    pub filter: FilterConfig,
    #[serde(default)]
    pub tags: TagsConfig,
    #[serde(default)]
    pub enrich: EnrichConfig,
    pub sinks: Vec<SinkConfig>,
    pub dead_letter: DeadLetterConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub control: ControlConfig,
    /// Absent: the node consumes every shard alone (no raft).
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: raft membership, leases, the planner. Needs `[control] listen`
/// (peers, trailctl and other systems share that gRPC listener).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's raft id: unique, never reused after a removal.
    pub node_id: u64,
    /// host:port peers reach this node at; defaults to `control.listen`.
    pub advertise: Option<String>,
    /// Start a new one-node cluster if the data dir has no raft state.
    #[serde(default)]
    pub bootstrap: bool,
    /// Members to ask for admission (any one is enough) when the data dir
    /// has no raft state.
    #[serde(default)]
    pub join: Vec<String>,
    /// Consumer slots: the most shards this node owns. 0 (the default):
    /// auto, `ceil(1.5 × shards / nodes)` as the leader plans, so the
    /// survivors of a death have room for its shards.
    #[serde(default)]
    pub slots: u32,
    /// Raft voters the leader keeps (1, 3, 5 or 7): every other member is
    /// a learner that replicates the state and owns shards like a voter
    /// but takes no part in elections or commits. A voter still dead three
    /// leases after it was declared dead is replaced by a live learner.
    /// Only the leader reads it: set the same value on every node.
    #[serde(default = "default_voters")]
    pub voters: u32,
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// The leader gives a silent node's shards to their standbys after this.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// A node stops consuming this much before the leader may declare it dead.
    #[serde(default = "default_fence_margin_ms")]
    pub fence_margin_ms: u64,
    /// Raft election timeout (the minimum; the maximum is twice it).
    #[serde(default = "default_election_ms")]
    pub election_timeout_ms: u64,
    /// Checkpoints are committed through raft at most this often per node.
    #[serde(default = "default_commit_ms")]
    pub commit_interval_ms: u64,
    /// A graceful move whose owner has not released the shard by then is forced.
    #[serde(default = "default_revoke_ms")]
    pub revoke_timeout_ms: u64,
    /// Moves shards to even the load on join and leave (else only `trailctl rebalance`).
    #[serde(default = "default_true")]
    pub auto_rebalance: bool,
    /// Snapshot the replicated state after this many log entries (and
    /// purge the log behind it, keeping a quarter).
    #[serde(default = "default_snapshot_logs")]
    pub snapshot_logs: u64,
    /// The most entries the replicated tag tier keeps: past it the leader
    /// evicts the oldest fetched (cloud) entries; tags put through the API
    /// are never evicted. Each entry costs ~250 B of memory on every node
    /// and ~200 B of snapshot (BENCHMARKS.md, "The tag tier at scale").
    #[serde(default = "default_max_tags")]
    pub max_tags: u64,
}

fn default_max_tags() -> u64 {
    2_000_000
}

fn default_voters() -> u32 {
    3
}

fn default_snapshot_logs() -> u64 {
    5_000
}

fn default_heartbeat_ms() -> u64 {
    250
}
fn default_lease_ms() -> u64 {
    2_000
}
fn default_fence_margin_ms() -> u64 {
    500
}
fn default_election_ms() -> u64 {
    600
}
fn default_commit_ms() -> u64 {
    250
}
fn default_revoke_ms() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}

/// `[control]`: the gRPC control API (`trailctl`, other systems).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Serve `trail.v1.Control` here.
    pub listen: Option<SocketAddr>,
    /// Callers must send `authorization: Bearer <token>`; open if absent.
    pub token: Option<SecretSource>,
    /// TLS for the listener and for calls to peers (mTLS with `client_auth`).
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: String,
    pub data_dir: PathBuf,
    /// On SIGTERM: how long the sinks may take to deliver what is in flight
    /// before the node ends its shards' epochs and hands them over (keep it
    /// under the supervisor's stop timeout, e.g. systemd `TimeoutStopSec`).
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

fn default_shutdown_grace_ms() -> u64 {
    30_000
}

/// The most SLS logstores one node reads (its consumer numbers are kept
/// apart by `pipeline::SLS_SOURCE_STRIDE`, below the partitions of S3 trails).
pub const MAX_SLS_SOURCES: usize = 127;

/// One element of `[[sources]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceEntry {
    Sls(SourceConfig),
    S3Sqs(S3SqsSourceConfig),
    S3(S3SourceConfig),
    File(FileSourceConfig),
}

/// `type = "s3"`: a CloudTrail trail in S3 read by listing (no SQS). Each
/// (account, region) prefix is a partition, consumed like a shard: in a
/// cluster assigned through raft, with epochs, standbys and checkpoints.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3SourceConfig {
    #[serde(default = "default_s3_name")]
    pub name: String,
    pub bucket: String,
    /// The trail's S3 key prefix, if it has one (`AWSLogs/` is below it).
    #[serde(default)]
    pub prefix: String,
    pub region: String,
    #[serde(default = "default_s3_endpoint")]
    pub s3_endpoint: String,
    /// Connect here instead (devstack, VPC endpoints), keeping the Host.
    pub address: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    /// Static keys. Without them, credentials come from AWS's default
    /// chain: `AWS_ACCESS_KEY_ID`… in the environment, the shared
    /// credentials files, web identity, container credentials, EC2
    /// instance metadata (see `deploy/trail.toml`).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretSource>,
    pub session_token: Option<SecretSource>,
    /// A profile of `~/.aws/credentials` / `~/.aws/config` (else
    /// `AWS_PROFILE`, else `default`).
    pub profile: Option<String>,
    /// A role to assume (STS AssumeRole) with those credentials: for a
    /// bucket and queue in another account.
    pub role_arn: Option<String>,
    /// What the role's trust policy requires as `sts:ExternalId`.
    pub external_id: Option<SecretSource>,
    #[serde(default = "default_role_session_name")]
    pub role_session_name: String,
    /// The role session's length (`DurationSeconds`), 900..=43200, up to
    /// the role's maximum session; AWS caps role chaining (assuming it with
    /// temporary credentials: a session token, web identity, container or
    /// instance credentials) at 3600.
    #[serde(default = "default_assume_role_secs")]
    pub assume_role_secs: u64,
    #[serde(default = "default_aws_sts_endpoint")]
    pub sts_endpoint: String,
    /// Where a partition never read starts: `begin` (every file kept), `end`
    /// (files from now on), or a unix time in seconds.
    #[serde(default = "default_s3_start")]
    pub start: String,
    /// How often an idle partition is listed for new files.
    #[serde(default = "default_s3_poll_secs")]
    pub poll_secs: u64,
    /// Late files (a key sorting before keys already read) are looked for
    /// this far behind the newest key read…
    #[serde(default = "default_relist_minutes")]
    pub relist_minutes: u64,
    /// …this often. `relist_minutes = 0`: never.
    #[serde(default = "default_relist_secs")]
    pub relist_secs: u64,
    /// New accounts and regions are looked for this often.
    #[serde(default = "default_discover_secs")]
    pub discover_secs: u64,
    /// Objects in flight per partition.
    #[serde(default = "default_in_flight")]
    pub in_flight_objects: usize,
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: usize,
}

fn default_s3_name() -> String {
    "s3".into()
}
fn default_s3_start() -> String {
    "begin".into()
}
fn default_s3_poll_secs() -> u64 {
    30
}
fn default_relist_minutes() -> u64 {
    120
}
fn default_relist_secs() -> u64 {
    300
}
fn default_discover_secs() -> u64 {
    300
}

/// `type = "file"`: trail files on this node's disk (backfills; a trail
/// downloaded to analyse): JSON lines of events or CloudTrail `Records`
/// documents, either optionally gzip'd. Read in name order, each once; the
/// checkpoint (file and offset) lives in `node.data_dir`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    #[serde(default = "default_file_name")]
    pub name: String,
    /// Paths or globs (`*`, `?`, `**`), e.g. `/data/AWSLogs/**/*.json.gz`.
    pub paths: Vec<String>,
    /// New files are looked for this often.
    #[serde(default = "default_file_rescan_secs")]
    pub rescan_secs: u64,
    /// Lines per batch, in bytes.
    #[serde(default = "default_pull_target_bytes")]
    pub batch_bytes: usize,
    #[serde(default = "default_in_flight")]
    pub in_flight_batches: usize,
}

fn default_file_name() -> String {
    "file".into()
}
fn default_file_rescan_secs() -> u64 {
    10
}

/// `type = "s3_sqs"`: CloudTrail log files in S3, each announced through an
/// SQS queue (S3 event notifications, or CloudTrail's SNS messages). Every
/// node of a cluster polls the queue; SQS hands each message to one of them
/// at a time, so the queue needs no assignment through raft.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3SqsSourceConfig {
    /// Names the source in logs, metrics and status.
    #[serde(default = "default_s3_sqs_name")]
    pub name: String,
    /// `https://sqs.us-east-1.amazonaws.com/123456789012/trail-files`.
    pub queue_url: String,
    /// The region of the queue and the bucket.
    pub region: String,
    #[serde(default = "default_sqs_endpoint")]
    pub sqs_endpoint: String,
    #[serde(default = "default_s3_endpoint")]
    pub s3_endpoint: String,
    /// Connect here instead for both (devstack, VPC endpoints), keeping the Host.
    pub address: Option<String>,
    /// `/{bucket}/{key}` rather than `{bucket}.{host}/{key}`.
    #[serde(default)]
    pub path_style: bool,
    /// Static keys. Without them, credentials come from AWS's default
    /// chain: `AWS_ACCESS_KEY_ID`… in the environment, the shared
    /// credentials files, web identity, container credentials, EC2
    /// instance metadata (see `deploy/trail.toml`).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretSource>,
    pub session_token: Option<SecretSource>,
    /// A profile of `~/.aws/credentials` / `~/.aws/config` (else
    /// `AWS_PROFILE`, else `default`).
    pub profile: Option<String>,
    /// A role to assume (STS AssumeRole) with those credentials: for a
    /// bucket and queue in another account.
    pub role_arn: Option<String>,
    /// What the role's trust policy requires as `sts:ExternalId`.
    pub external_id: Option<SecretSource>,
    #[serde(default = "default_role_session_name")]
    pub role_session_name: String,
    /// The role session's length (`DurationSeconds`), 900..=43200, up to
    /// the role's maximum session; AWS caps role chaining (assuming it with
    /// temporary credentials: a session token, web identity, container or
    /// instance credentials) at 3600.
    #[serde(default = "default_assume_role_secs")]
    pub assume_role_secs: u64,
    #[serde(default = "default_aws_sts_endpoint")]
    pub sts_endpoint: String,
    /// Concurrent long polls on this node.
    #[serde(default = "default_pollers")]
    pub pollers: usize,
    /// Messages being read or delivered at once per poller: with
    /// `max_object_bytes` it bounds memory.
    #[serde(default = "default_messages_in_flight")]
    pub messages_in_flight: usize,
    /// How long a received message stays hidden from other receivers; it
    /// is extended while its objects are in flight.
    #[serde(default = "default_visibility_secs")]
    pub visibility_timeout_secs: u64,
    /// The long poll's wait (0..=20).
    #[serde(default = "default_wait_secs")]
    pub wait_secs: u64,
    /// Buckets objects may be read from; an object elsewhere (anyone who
    /// can send to the queue can name any bucket) is dead-lettered unread.
    /// Empty: any.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// The largest object read (as stored, gzip'd); a larger one is dead-lettered unread.
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: usize,
}

fn default_s3_sqs_name() -> String {
    "s3_sqs".into()
}
fn default_sqs_endpoint() -> String {
    "https://sqs.{region}.amazonaws.com".into()
}
fn default_s3_endpoint() -> String {
    "https://s3.{region}.amazonaws.com".into()
}
fn default_aws_sts_endpoint() -> String {
    "https://sts.{region}.amazonaws.com".into()
}
fn default_role_session_name() -> String {
    "trail".into()
}
fn default_assume_role_secs() -> u64 {
    3600
}

/// The credential keys both AWS sources share, borrowed from either.
#[derive(Debug, Clone, Copy)]
pub struct AwsAuth<'a> {
    pub access_key_id: Option<&'a str>,
    pub secret_access_key: Option<&'a SecretSource>,
    pub session_token: Option<&'a SecretSource>,
    pub profile: Option<&'a str>,
    pub role_arn: Option<&'a str>,
    pub external_id: Option<&'a SecretSource>,
    pub role_session_name: &'a str,
    pub assume_role_secs: u64,
    pub sts_endpoint: &'a str,
    pub region: &'a str,
    /// The source's `address`: STS is dialled there too.
    pub address: Option<&'a str>,
}

macro_rules! aws_auth {
    ($q:expr) => {
        AwsAuth {
            access_key_id: $q.access_key_id.as_deref(),
            secret_access_key: $q.secret_access_key.as_ref(),
            session_token: $q.session_token.as_ref(),
            profile: $q.profile.as_deref(),
            role_arn: $q.role_arn.as_deref(),
            external_id: $q.external_id.as_ref(),
            role_session_name: &$q.role_session_name,
            assume_role_secs: $q.assume_role_secs,
            sts_endpoint: &$q.sts_endpoint,
            region: &$q.region,
            address: $q.address.as_deref(),
        }
    };
}

impl S3SourceConfig {
    pub fn aws_auth(&self) -> AwsAuth<'_> {
        aws_auth!(self)
    }
}

impl S3SqsSourceConfig {
    pub fn aws_auth(&self) -> AwsAuth<'_> {
        aws_auth!(self)
    }
}

impl AwsAuth<'_> {
    /// Checks every key, naming it in the error. Whether credentials can
    /// be found at all is known only at run time (the environment, the
    /// instance): the node checks that at start.
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        self.settings(key).map(|_| ())
    }

    /// What `aws::CredentialsProvider` is built from, secrets resolved.
    pub fn settings(
        &self,
        key: &str,
    ) -> Result<crate::aws::credentials::CredentialsSettings, ConfigError> {
        use crate::aws::credentials::{AssumeRole, CredentialsSettings};
        use crate::aws::AwsCredentials;
        let keys = match (self.access_key_id, self.secret_access_key) {
            (Some(id), Some(secret)) => {
                if id.trim().is_empty() {
                    return Err(invalid(format!("{key}.access_key_id"), "must not be empty"));
                }
                Some(AwsCredentials {
                    access_key_id: id.trim().to_owned(),
                    secret_access_key: secret.resolve(&format!("{key}.secret_access_key"))?,
                    session_token: self
                        .session_token
                        .map(|t| t.resolve(&format!("{key}.session_token")))
                        .transpose()?,
                })
            }
            (None, None) => {
                if self.session_token.is_some() {
                    return Err(invalid(
                        format!("{key}.session_token"),
                        "given without access_key_id and secret_access_key (keys from the environment bring AWS_SESSION_TOKEN)",
                    ));
                }
                None
            }
            (Some(_), None) => {
                return Err(invalid(
                    format!("{key}.secret_access_key"),
                    "missing (access_key_id is set)",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    format!("{key}.access_key_id"),
                    "missing (secret_access_key is set)",
                ))
            }
        };
        if let Some(p) = self.profile {
            if keys.is_some() {
                return Err(invalid(
                    format!("{key}.profile"),
                    "given with access_key_id: use one or the other",
                ));
            }
            if p.trim().is_empty() || p.contains([']', '[', '\n', '\r']) {
                return Err(invalid(format!("{key}.profile"), "not a profile name"));
            }
        }
        let sts_endpoint = crate::aws::AwsEndpoint::parse(self.sts_endpoint, self.address)
            .map_err(|e| invalid(format!("{key}.sts_endpoint"), e))?;
        let assume_role = match self.role_arn {
            Some(arn) => {
                if !valid_role_arn(arn) {
                    return Err(invalid(
                        format!("{key}.role_arn"),
                        format!("{arn:?} is not a role ARN (arn:aws:iam::123456789012:role/NAME)"),
                    ));
                }
                let external_id = self
                    .external_id
                    .map(|x| x.resolve(&format!("{key}.external_id")))
                    .transpose()?;
                if let Some(x) = &external_id {
                    let ok = (2..=1224).contains(&x.expose().len())
                        && x.expose()
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
                    if !ok {
                        return Err(invalid(
                            format!("{key}.external_id"),
                            "must be 2..=1224 characters of A-Z a-z 0-9 _ + = , . @ : / -",
                        ));
                    }
                }
                let name = self.role_session_name;
                if !(2..=64).contains(&name.len())
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
                {
                    return Err(invalid(
                        format!("{key}.role_session_name"),
                        "must be 2..=64 characters of A-Z a-z 0-9 _ + = , . @ -",
                    ));
                }
                if !(900..=43_200).contains(&self.assume_role_secs) {
                    return Err(invalid(
                        format!("{key}.assume_role_secs"),
                        "must be 900..=43200 (STS's range; the role's maximum session may be lower, and AWS caps role chaining, a role assumed with temporary credentials, at 3600)",
                    ));
                }
                if self.session_token.is_some() && self.assume_role_secs > 3600 {
                    return Err(invalid(
                        format!("{key}.assume_role_secs"),
                        "at most 3600 with a session_token: assuming a role with temporary credentials is role chaining, which AWS caps at one hour",
                    ));
                }
                Some(AssumeRole {
                    role_arn: arn.to_owned(),
                    external_id,
                    role_session_name: name.to_owned(),
                    duration: std::time::Duration::from_secs(self.assume_role_secs),
                })
            }
            None => {
                if self.external_id.is_some() {
                    return Err(invalid(
                        format!("{key}.external_id"),
                        "given without role_arn",
                    ));
                }
                None
            }
        };
        Ok(CredentialsSettings {
            keys,
            profile: self.profile.map(|p| p.trim().to_owned()),
            region: self.region.to_owned(),
            sts_endpoint,
            assume_role,
        })
    }
}

/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`: a 12-digit account, a
/// name of IAM's characters.
fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "iam", "", account, resource] = parts[..] else {
        return false;
    };
    let Some(path) = resource.strip_prefix("role/") else {
        return false;
    };
    partition.starts_with("aws")
        && partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && arn.len() <= 2048
        && path
            .rsplit('/')
            .next()
            .is_some_and(|n| (1..=64).contains(&n.len()))
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@/-".contains(&b))
}
fn default_pollers() -> usize {
    2
}
fn default_messages_in_flight() -> usize {
    4
}
fn default_visibility_secs() -> u64 {
    300
}
fn default_wait_secs() -> u64 {
    20
}
fn default_max_object_bytes() -> usize {
    64 << 20
}

/// Where the trail is read: an SLS logstore.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `https://cn-hangzhou.log.aliyuncs.com`.
    pub endpoint: String,
    /// Connect here instead (private endpoints, devstack), keeping the project Host.
    pub address: Option<String>,
    pub project: String,
    pub logstore: String,
    pub access_key_id: String,
    pub access_key_secret: SecretSource,
    pub security_token: Option<SecretSource>,
    /// Where a shard with no checkpoint starts: `begin`, `end`, or a unix time.
    #[serde(default = "default_start")]
    pub start: String,
    /// The SLS consumer group Trail mirrors checkpoints to (console lag, recovery).
    pub consumer_group: Option<String>,
    /// The most log groups one PullLogs asks for (1..=1000).
    #[serde(default = "default_pull_count")]
    pub pull_count: u32,
    /// Pulls aim at this many decompressed bytes; with `in_flight_batches`
    /// and the shard count it bounds memory, whatever the group sizes.
    #[serde(default = "default_pull_target_bytes")]
    pub pull_target_bytes: usize,
    /// The largest PullLogs answer read, raw or on the wire; a larger one
    /// is asked again for fewer log groups (a single group past it is
    /// dead-lettered and skipped). Bounds memory per credit.
    #[serde(default = "default_max_pull_bytes")]
    pub max_pull_bytes: usize,
    #[serde(default = "default_in_flight")]
    pub in_flight_batches: usize,
    /// Decompressed bytes of pulled batches in flight on this node, all
    /// shards together (a batch holds its size from its answer until every
    /// sink acknowledged it): what bounds memory when a node owns many
    /// shards with a backlog.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    #[serde(default = "default_checkpoint_ms")]
    pub checkpoint_interval_ms: u64,
    #[serde(default = "default_mirror_secs")]
    pub mirror_interval_secs: u64,
    #[serde(default = "default_empty_backoff_ms")]
    pub empty_backoff_max_ms: u64,
    #[serde(default = "default_rescan_secs")]
    pub shard_rescan_secs: u64,
}

fn default_start() -> String {
    "begin".into()
}
fn default_pull_count() -> u32 {
    1000
}
fn default_max_pull_bytes() -> usize {
    crate::sls::DEFAULT_MAX_PULL_BYTES
}
fn default_max_in_flight_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_pull_target_bytes() -> usize {
    2 * 1024 * 1024
}
fn default_in_flight() -> usize {
    2
}
fn default_checkpoint_ms() -> u64 {
    1000
}
fn default_mirror_secs() -> u64 {
    30
}
fn default_empty_backoff_ms() -> u64 {
    2000
}
fn default_rescan_secs() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TagsConfig {
    /// A tags file (JSON or CSV), reloaded when it changes.
    pub file: Option<PathBuf>,
    /// Tag `k` becomes field `{prefix}{k}`; must not be empty, so tags can
    /// never collide with event fields.
    pub prefix: String,
    pub cache_capacity: u64,
    pub ttl_secs: u64,
    /// Extra ActionTrail resource types: `"ACS::X::Y" = { product = "x", type = "y" }`.
    pub resource_types: BTreeMap<String, ResourceTypeConfig>,
    /// Remote providers: an enricher waits at most this long for missing
    /// tags; then the event goes out with `tag_status` = `pending`.
    pub budget_ms: u64,
    /// How long "no tags" / "no such resource" is believed.
    pub negative_ttl_secs: u64,
    /// How long a failed lookup is remembered before asking again.
    pub error_ttl_secs: u64,
    /// A miss waits this long for others of its account and region.
    pub batch_window_ms: u64,
    /// Tag API calls in flight at once.
    pub concurrency: usize,
    /// Alibaba Cloud's Tag service (and STS for member accounts).
    pub alibaba: Option<AlibabaTagsConfig>,
    /// AWS Resource Groups Tagging API (CloudTrail events).
    pub aws: Option<AwsTagsConfig>,
}

/// `[tags.alibaba]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlibabaTagsConfig {
    #[serde(default = "default_tag_endpoint")]
    pub tag_endpoint: String,
    #[serde(default = "default_sts_endpoint")]
    pub sts_endpoint: String,
    /// Dial this host:port for every call (devstack, a proxy).
    pub address: Option<String>,
    pub access_key_id: String,
    pub access_key_secret: SecretSource,
    /// The account the key belongs to; other accounts are assumed into.
    pub management_account: String,
    #[serde(default = "default_role_name")]
    pub role_name: String,
    #[serde(default = "default_session_secs")]
    pub session_secs: u64,
    /// RegionId for global resources (RAM).
    #[serde(default = "default_tag_region")]
    pub default_region: String,
    /// List each (account, region)'s tagged resources whole, once per
    /// `ttl_secs`, instead of asking by ARN (far fewer calls on large trails).
    #[serde(default)]
    pub sweep: bool,
    /// Ask ECS's and SLB's own ListTagResources instead of the Tag service
    /// (accounts without it); resources of other products get no tags.
    #[serde(default)]
    pub per_product: bool,
    #[serde(default = "default_ecs_endpoint")]
    pub ecs_endpoint: String,
    #[serde(default = "default_slb_endpoint")]
    pub slb_endpoint: String,
}

fn default_ecs_endpoint() -> String {
    "https://ecs.{region}.aliyuncs.com".into()
}
fn default_slb_endpoint() -> String {
    "https://slb.{region}.aliyuncs.com".into()
}

fn default_tag_endpoint() -> String {
    "https://tag.{region}.aliyuncs.com".into()
}
fn default_sts_endpoint() -> String {
    "https://sts.aliyuncs.com".into()
}
fn default_role_name() -> String {
    "ResourceDirectoryAccountAccessRole".into()
}
fn default_session_secs() -> u64 {
    3600
}
fn default_tag_region() -> String {
    "cn-hangzhou".into()
}

/// `[tags.aws]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsTagsConfig {
    #[serde(default = "default_aws_endpoint")]
    pub endpoint: String,
    pub address: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: SecretSource,
    pub session_token: Option<SecretSource>,
}

fn default_aws_endpoint() -> String {
    "https://tagging.{region}.amazonaws.com".into()
}

impl Default for TagsConfig {
    fn default() -> Self {
        TagsConfig {
            file: None,
            prefix: "tag_".into(),
            cache_capacity: 1_000_000,
            ttl_secs: 3600,
            resource_types: BTreeMap::new(),
            budget_ms: 200,
            negative_ttl_secs: 300,
            error_ttl_secs: 10,
            batch_window_ms: 5,
            concurrency: 8,
            alibaba: None,
            aws: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceTypeConfig {
    pub product: String,
    #[serde(rename = "type")]
    pub arn_type: String,
    #[serde(default)]
    pub global: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// Enricher threads (default: the number of cores).
    pub threads: usize,
    /// Larger events are dead-lettered.
    pub max_event_bytes: usize,
    /// Larger CloudTrail `{"Records": [...]}` envelopes (one log content
    /// holding a whole S3 log file) are dead-lettered before they are parsed;
    /// each record inside is still held to `max_event_bytes`.
    pub max_envelope_bytes: usize,
    /// The log content that holds the event JSON: `event` as ActionTrail
    /// delivers it; SLS imports (CloudTrail from S3, say) often use `content`.
    pub event_key: String,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            max_event_bytes: 1024 * 1024,
            max_envelope_bytes: 32 * 1024 * 1024,
            event_key: "event".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    Hec(HecSinkConfig),
    Sls(SlsSinkConfig),
    File(FileSinkConfig),
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Hec(_) => "hec",
            SinkConfig::Sls(_) => "sls",
            SinkConfig::File(_) => "file",
        }
    }

    /// What the sink's acknowledgement means, i.e. which guarantee a
    /// checkpoint past it rests on (shown by `trailctl status`).
    pub fn delivery(&self) -> &'static str {
        match self {
            // Splunk Cloud takes indexer acknowledgement only for some
            // inputs; without it a 200 means "received, looks valid".
            SinkConfig::Hec(h) if h.indexer_ack => "indexed",
            SinkConfig::Hec(_) => "received",
            SinkConfig::Sls(_) => "stored",
            SinkConfig::File(_) => "flushed",
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSON lines here (rotated by size).
    pub path: Option<PathBuf>,
    #[serde(default = "default_dl_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_dl_keep")]
    pub keep: u32,
    /// And/or an SLS logstore (`[dead_letter.sls]`).
    pub sls: Option<DeadLetterSlsConfig>,
}

/// `[dead_letter.sls]`: dead letters as logs in an SLS logstore.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSlsConfig {
    pub endpoint: String,
    pub address: Option<String>,
    pub project: String,
    pub logstore: String,
    pub access_key_id: String,
    pub access_key_secret: SecretSource,
    pub security_token: Option<SecretSource>,
    #[serde(default = "default_dl_topic")]
    pub topic: String,
}

fn default_dl_topic() -> String {
    "trail_dead_letter".into()
}

fn default_dl_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_dl_keep() -> u32 {
    10
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `/metrics`, `/healthz`, `/readyz` on this address.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
}

fn validate_sls(s: &SourceConfig, key: &str) -> Result<(), ConfigError> {
    crate::sls::Endpoint::parse(&s.endpoint)
        .map_err(|e| invalid(format!("{key}.endpoint"), e.to_string()))?;
    if !(1..=1000).contains(&s.pull_count) {
        return Err(invalid(format!("{key}.pull_count"), "must be 1..=1000"));
    }
    if s.max_pull_bytes < s.pull_target_bytes {
        return Err(invalid(
            format!("{key}.max_pull_bytes"),
            format!("must be at least {key}.pull_target_bytes"),
        ));
    }
    if s.pull_target_bytes < 1024 {
        return Err(invalid(
            format!("{key}.pull_target_bytes"),
            "must be at least 1024",
        ));
    }
    if s.in_flight_batches == 0 {
        return Err(invalid(
            format!("{key}.in_flight_batches"),
            "must be at least 1",
        ));
    }
    if s.max_in_flight_bytes < s.pull_target_bytes {
        return Err(invalid(
            format!("{key}.max_in_flight_bytes"),
            format!("must be at least {key}.pull_target_bytes"),
        ));
    }
    if !matches!(s.start.as_str(), "begin" | "end") && s.start.parse::<u32>().is_err() {
        return Err(invalid(
            format!("{key}.start"),
            format!("{:?} is not begin, end or a unix time", s.start),
        ));
    }
    s.access_key_secret
        .resolve(&format!("{key}.access_key_secret"))?;
    if let Some(t) = &s.security_token {
        t.resolve(&format!("{key}.security_token"))?;
    }
    Ok(())
}

fn validate_s3(q: &S3SourceConfig, key: &str) -> Result<(), ConfigError> {
    if !crate::aws::valid_bucket(&q.bucket) {
        return Err(invalid(
            format!("{key}.bucket"),
            "not a bucket name (3-63 of a-z 0-9 . -)",
        ));
    }
    if q.region.is_empty() {
        return Err(invalid(format!("{key}.region"), "must not be empty"));
    }
    if q.prefix.starts_with('/') {
        return Err(invalid(
            format!("{key}.prefix"),
            "the trail's key prefix, without a leading /",
        ));
    }
    crate::aws::AwsEndpoint::parse(&q.s3_endpoint, q.address.as_deref())
        .map_err(|e| invalid(format!("{key}.s3_endpoint"), e))?;
    q.aws_auth().validate(key)?;
    if q.start != "begin" && q.start != "end" && q.start.parse::<u32>().is_err() {
        return Err(invalid(
            format!("{key}.start"),
            "begin, end or a unix time in seconds",
        ));
    }
    for (k, v) in [
        ("poll_secs", q.poll_secs),
        ("relist_secs", q.relist_secs),
        ("discover_secs", q.discover_secs),
    ] {
        if v == 0 {
            return Err(invalid(format!("{key}.{k}"), "must be at least 1"));
        }
    }
    if q.in_flight_objects == 0 || q.in_flight_objects > 64 {
        return Err(invalid(
            format!("{key}.in_flight_objects"),
            "must be 1..=64",
        ));
    }
    Ok(())
}

fn validate_s3_sqs(q: &S3SqsSourceConfig, key: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(&q.queue_url)
        .map_err(|e| invalid(format!("{key}.queue_url"), e.to_string()))?;
    if url
        .path_segments()
        .map_or(0, |p| p.filter(|s| !s.is_empty()).count())
        != 2
    {
        return Err(invalid(
            format!("{key}.queue_url"),
            "expected https://sqs.{region}.amazonaws.com/{account}/{queue}",
        ));
    }
    if q.region.is_empty() {
        return Err(invalid(format!("{key}.region"), "must not be empty"));
    }
    for (k, v) in [
        ("sqs_endpoint", &q.sqs_endpoint),
        ("s3_endpoint", &q.s3_endpoint),
    ] {
        crate::aws::AwsEndpoint::parse(v, q.address.as_deref())
            .map_err(|e| invalid(format!("{key}.{k}"), e))?;
    }
    q.aws_auth().validate(key)?;
    if q.pollers == 0 || q.pollers > 64 {
        return Err(invalid(format!("{key}.pollers"), "must be 1..=64"));
    }
    if q.messages_in_flight == 0 || q.messages_in_flight > 100 {
        return Err(invalid(
            format!("{key}.messages_in_flight"),
            "must be 1..=100",
        ));
    }
    if q.wait_secs > 20 {
        return Err(invalid(
            format!("{key}.wait_secs"),
            "must be 0..=20 (SQS's longest poll)",
        ));
    }
    if !(10..=43_200).contains(&q.visibility_timeout_secs) {
        return Err(invalid(
            format!("{key}.visibility_timeout_secs"),
            "must be 10..=43200",
        ));
    }
    if q.max_object_bytes < 1024 {
        return Err(invalid(
            format!("{key}.max_object_bytes"),
            "must be at least 1024",
        ));
    }
    Ok(())
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let c: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// The first SLS source, as `[source]` or in `[[sources]]`.
    pub fn sls(&self) -> Option<&SourceConfig> {
        self.sls_sources().next().map(|(_, s)| s)
    }

    /// Every SLS source with its key in the config (`source`, or
    /// `sources[i]`): `[source]` first, then `[[sources]]` in order.
    pub fn sls_sources(&self) -> impl Iterator<Item = (String, &SourceConfig)> {
        let single = self.source.as_ref().map(|s| ("source".to_owned(), s));
        single.into_iter().chain(
            self.sources
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match e {
                    SourceEntry::Sls(s) => Some((format!("sources[{i}]"), s)),
                    _ => None,
                }),
        )
    }

    /// The file sources.
    pub fn files(&self) -> impl Iterator<Item = &FileSourceConfig> {
        self.sources.iter().filter_map(|e| match e {
            SourceEntry::File(f) => Some(f),
            _ => None,
        })
    }

    /// The S3 + SQS sources, with their key in the config (`sources[i]`).
    pub fn s3_sqs(&self) -> impl Iterator<Item = (String, &S3SqsSourceConfig)> {
        self.sources
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                SourceEntry::S3Sqs(q) => Some((format!("sources[{i}]"), q)),
                _ => None,
            })
    }

    /// The S3 trails read by listing, with their key in the config.
    pub fn s3(&self) -> impl Iterator<Item = (String, &S3SourceConfig)> {
        self.sources
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                SourceEntry::S3(q) => Some((format!("sources[{i}]"), q)),
                _ => None,
            })
    }

    /// Checks every value that parsing cannot; secrets are resolved once here
    /// so a missing one stops the node at start, not at first use.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.id.trim().is_empty() {
            return Err(invalid("node.id", "must not be empty"));
        }
        let mut names = std::collections::BTreeSet::new();
        let named = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                SourceEntry::S3Sqs(q) => Some((i, q.name.as_str())),
                SourceEntry::S3(q) => Some((i, q.name.as_str())),
                SourceEntry::File(f) => Some((i, f.name.as_str())),
                SourceEntry::Sls(_) => None,
            });
        for (i, name) in named {
            if !names.insert(name) {
                return Err(invalid(
                    format!("sources[{i}].name"),
                    format!("{:?} names another source too (metrics and logs tell sources apart by name)", name),
                ));
            }
        }
        let mut sls = Vec::new();
        if let Some(s) = &self.source {
            sls.push(("source".to_owned(), s));
        }
        for (i, e) in self.sources.iter().enumerate() {
            let key = format!("sources[{i}]");
            match e {
                SourceEntry::Sls(s) => sls.push((key, s)),
                SourceEntry::S3Sqs(q) => validate_s3_sqs(q, &key)?,
                SourceEntry::S3(q) => validate_s3(q, &key)?,
                SourceEntry::File(f) => {
                    if f.paths.is_empty() || f.paths.iter().any(|p| p.trim().is_empty()) {
                        return Err(invalid(
                            format!("{key}.paths"),
                            "at least one path or glob, none empty",
                        ));
                    }
                    if f.in_flight_batches == 0 {
                        return Err(invalid(
                            format!("{key}.in_flight_batches"),
                            "must be at least 1",
                        ));
                    }
                    if f.batch_bytes < 1024 {
                        return Err(invalid(
                            format!("{key}.batch_bytes"),
                            "must be at least 1024",
                        ));
                    }
                }
            }
        }
        if sls.is_empty() && self.sources.is_empty() {
            return Err(invalid(
                "sources",
                "no source: give [source] (an SLS logstore) or [[sources]]",
            ));
        }
        // Several logstores (one per region or per trail, say): each its own
        // shards, settings and consumer group; the node numbers their
        // consumers apart (`pipeline::SLS_SOURCE_STRIDE`).
        if sls.len() > MAX_SLS_SOURCES {
            return Err(invalid(
                &sls[MAX_SLS_SOURCES].0,
                format!("a node reads at most {MAX_SLS_SOURCES} SLS logstores"),
            ));
        }
        for (i, (key, s)) in sls.iter().enumerate() {
            validate_sls(s, key)?;
            if let Some((other, _)) = sls[..i]
                .iter()
                .find(|(_, o)| o.project == s.project && o.logstore == s.logstore)
            {
                return Err(invalid(
                    format!("{key}.logstore"),
                    format!(
                        "{}/{} is read by {other} already (its shards would be read twice)",
                        s.project, s.logstore
                    ),
                ));
            }
            if s.max_in_flight_bytes != sls[0].1.max_in_flight_bytes {
                return Err(invalid(
                    format!("{key}.max_in_flight_bytes"),
                    format!(
                        "the node has one budget of bytes in flight for all its sources: give every SLS source the same value ({} has {})",
                        sls[0].0, sls[0].1.max_in_flight_bytes
                    ),
                ));
            }
        }
        if self.tags.prefix.is_empty() {
            return Err(invalid(
                "tags.prefix",
                "must not be empty (tags would collide with event fields)",
            ));
        }
        if let Some(tls) = &self.control.tls {
            for (key, path) in [
                ("control.tls.cert", &tls.cert),
                ("control.tls.key", &tls.key),
                ("control.tls.ca", &tls.ca),
            ] {
                if let Err(e) = std::fs::metadata(path) {
                    return Err(invalid(key, format!("{}: {e}", path.display())));
                }
            }
        }
        if let Some(t) = &self.control.token {
            if t.resolve("control.token")?.expose().is_empty() {
                return Err(invalid("control.token", "must not be empty"));
            }
        }
        if let Some(c) = &self.cluster {
            if self.control.listen.is_none() {
                return Err(invalid(
                    "control.listen",
                    "a [cluster] node needs it: peers, trailctl and other systems call it",
                ));
            }
            if !matches!(c.voters, 1 | 3 | 5 | 7) {
                return Err(invalid(
                    "cluster.voters",
                    "must be 1, 3, 5 or 7 (an even number of voters tolerates no more failures than one fewer)",
                ));
            }
            if c.node_id == 0 {
                return Err(invalid("cluster.node_id", "must be at least 1"));
            }
            if c.bootstrap && !c.join.is_empty() {
                return Err(invalid(
                    "cluster.join",
                    "a node either bootstraps a new cluster or joins one, not both",
                ));
            }
            if c.heartbeat_ms == 0 || c.heartbeat_ms * 3 > c.lease_ms {
                return Err(invalid(
                    "cluster.heartbeat_ms",
                    "must be at least 1 and at most a third of cluster.lease_ms",
                ));
            }
            if c.fence_margin_ms < c.heartbeat_ms || c.fence_margin_ms >= c.lease_ms {
                return Err(invalid(
                    "cluster.fence_margin_ms",
                    "must be between cluster.heartbeat_ms and cluster.lease_ms",
                ));
            }
            if c.election_timeout_ms < 100 {
                return Err(invalid(
                    "cluster.election_timeout_ms",
                    "must be at least 100",
                ));
            }
            // A leader acknowledges beats only while a quorum answered it
            // within min(lease, election timeout) / 2 (`lease::quorum_freshness`);
            // raft beats every election_timeout / 6, so a lease shorter than
            // 2/3 of the election timeout leaves no room for two of them and
            // every node would be fenced.
            if c.lease_ms * 3 < c.election_timeout_ms * 2 {
                return Err(invalid(
                    "cluster.election_timeout_ms",
                    "must be at most 1.5 × cluster.lease_ms (a leader checks its quorum within half a lease)",
                ));
            }
            if c.max_tags < 1_000 {
                return Err(invalid("cluster.max_tags", "must be at least 1000"));
            }
            if c.snapshot_logs < 10 {
                return Err(invalid("cluster.snapshot_logs", "must be at least 10"));
            }
            if c.commit_interval_ms == 0 {
                return Err(invalid("cluster.commit_interval_ms", "must be at least 1"));
            }
            // A revoked owner ends its epoch here at most the drain timeout
            // (5 s) after it applies the revoke, and a node counted alive
            // applies within a lease of the leader: the forced move (epoch +
            // 1 elsewhere) must come later, or two owners could overlap.
            let floor = 5_000 + c.lease_ms + c.heartbeat_ms;
            if c.revoke_timeout_ms < floor {
                return Err(invalid(
                    "cluster.revoke_timeout_ms",
                    format!(
                        "must be at least 5000 + cluster.lease_ms + cluster.heartbeat_ms ({floor} here): \
                         a revoked owner may take that long to end its epoch"
                    ),
                ));
            }
        }
        let t = &self.tags;
        if t.file.is_some() && (t.alibaba.is_some() || t.aws.is_some()) {
            return Err(invalid(
                "tags.file",
                "a tags file and cloud providers ([tags.alibaba], [tags.aws]) exclude each other",
            ));
        }
        if let Some(a) = &t.alibaba {
            a.access_key_secret
                .resolve("tags.alibaba.access_key_secret")?;
            for (k, v) in [
                ("tag_endpoint", &a.tag_endpoint),
                ("sts_endpoint", &a.sts_endpoint),
            ] {
                if !(v.starts_with("https://") || v.starts_with("http://")) {
                    return Err(invalid(
                        format!("tags.alibaba.{k}"),
                        "must be an http(s) URL",
                    ));
                }
            }
            if a.per_product && a.sweep {
                return Err(invalid(
                    "tags.alibaba.sweep",
                    "sweeping needs the Tag service; per_product cannot sweep",
                ));
            }
            if !(900..=43_200).contains(&a.session_secs) {
                return Err(invalid("tags.alibaba.session_secs", "must be 900..=43200"));
            }
        }
        if let Some(a) = &t.aws {
            a.secret_access_key.resolve("tags.aws.secret_access_key")?;
        }
        if t.concurrency == 0 {
            return Err(invalid("tags.concurrency", "must be at least 1"));
        }
        if self.enrich.event_key.is_empty() {
            return Err(invalid("enrich.event_key", "must not be empty"));
        }
        if self.enrich.threads == 0 {
            return Err(invalid("enrich.threads", "must be at least 1"));
        }
        if self.enrich.max_event_bytes < 1024 {
            return Err(invalid("enrich.max_event_bytes", "must be at least 1024"));
        }
        // Each record of an envelope is held to max_event_bytes; a smaller
        // envelope cap would dead-letter envelopes of one legal record.
        if self.enrich.max_envelope_bytes < self.enrich.max_event_bytes {
            return Err(invalid(
                "enrich.max_envelope_bytes",
                "must be at least enrich.max_event_bytes",
            ));
        }
        if self.sinks.is_empty() {
            return Err(invalid("sinks", "at least one sink is needed"));
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            let key = |k: &str| format!("sinks[{i}].{k}");
            match sink {
                SinkConfig::Hec(h) => {
                    h.validate()
                        .map_err(|m| invalid(format!("sinks[{i}]"), m))?;
                    h.token.resolve(&key("token"))?;
                }
                SinkConfig::Sls(x) => {
                    crate::sls::Endpoint::parse(&x.endpoint)
                        .map_err(|e| invalid(key("endpoint"), e.to_string()))?;
                    x.access_key_secret.resolve(&key("access_key_secret"))?;
                    if x.concurrency == 0 {
                        return Err(invalid(key("concurrency"), "must be at least 1"));
                    }
                }
                SinkConfig::File(f) => {
                    if f.path.as_os_str().is_empty() {
                        return Err(invalid(key("path"), "must not be empty"));
                    }
                }
            }
        }
        let dl = &self.dead_letter;
        if dl.path.is_none() && dl.sls.is_none() {
            return Err(invalid(
                "dead_letter",
                "needs `path` (a file), `[dead_letter.sls]` (a logstore) or both",
            ));
        }
        if let Some(p) = &dl.path {
            if p.as_os_str().is_empty() {
                return Err(invalid("dead_letter.path", "must not be empty"));
            }
        }
        if let Some(x) = &dl.sls {
            crate::sls::Endpoint::parse(&x.endpoint)
                .map_err(|e| invalid("dead_letter.sls.endpoint", e.to_string()))?;
            x.access_key_secret
                .resolve("dead_letter.sls.access_key_secret")?;
            if let Some(t) = &x.security_token {
                t.resolve("dead_letter.sls.security_token")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
id = "node-1"
data_dir = "/tmp/trail"

[source]
endpoint = "https://cn-hangzhou.log.aliyuncs.com"
project = "audit"
logstore = "actiontrail_main"
access_key_id = "LTAI"
access_key_secret = "s3cret"

[[sinks]]
type = "hec"
url = "https://splunk.example.com:8088"
token = "hec-token"

[[sinks]]
type = "file"
path = "/tmp/trail/out.jsonl"

[dead_letter]
path = "/tmp/trail/dead.jsonl"
"#;

    #[test]
    fn the_deploy_example_is_complete_and_valid() {
        let text = include_str!("../../deploy/trail.toml");
        let c: Config = toml::from_str(text).unwrap();
        std::env::set_var("TRAIL_SLS_ACCESS_KEY_SECRET", "x");
        std::env::set_var("TRAIL_HEC_TOKEN", "y");
        std::env::set_var("TRAIL_TAG_ACCESS_KEY_SECRET", "z");
        std::env::set_var("TRAIL_CONTROL_TOKEN", "t");
        c.validate().unwrap();
        assert_eq!(c.sinks.len(), 3);
        assert!(c.metrics.listen.is_some());
        assert!(c.tags.alibaba.is_some());
        assert!(c.control.listen.is_some() && c.control.token.is_some());
        assert!(
            !format!("{c:?}").contains("\"z\""),
            "secrets never in Debug"
        );
    }

    #[test]
    fn a_complete_config_parses_and_validates() {
        let c: Config = toml::from_str(GOOD).unwrap();
        c.validate().unwrap();
        assert_eq!(c.sinks.len(), 2);
        assert_eq!(c.sls().unwrap().pull_count, 1000);
        assert_eq!(c.tags.prefix, "tag_");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "secrets never in Debug"
        );
        assert!(!format!("{c:?}").contains("hec-token"));
    }

    const S3_SQS: &str = r#"
[[sources]]
type = "s3_sqs"
name = "org-trail"
queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/trail-files"
region = "us-east-1"
access_key_id = "AKIA"
secret_access_key = "aws-s3cret"
"#;

    #[test]
    fn sources_take_s3_sqs_beside_or_instead_of_sls() {
        let both: Config = toml::from_str(&format!("{GOOD}{S3_SQS}")).unwrap();
        both.validate().unwrap();
        assert_eq!(both.sls().unwrap().project, "audit");
        let q: Vec<_> = both.s3_sqs().map(|(_, q)| q).collect();
        assert_eq!((q.len(), q[0].pollers, q[0].wait_secs), (1, 2, 20));
        assert!(
            !format!("{both:?}").contains("aws-s3cret"),
            "secrets never in Debug"
        );
        // S3 only: no [source] at all.
        let only = GOOD.replace("[source]\nendpoint = \"https://cn-hangzhou.log.aliyuncs.com\"\nproject = \"audit\"\nlogstore = \"actiontrail_main\"\naccess_key_id = \"LTAI\"\naccess_key_secret = \"s3cret\"\n", "");
        assert!(!only.contains("[source]"));
        let c: Config = toml::from_str(&format!("{only}{S3_SQS}")).unwrap();
        c.validate().unwrap();
        assert!(c.sls().is_none());
        // The SLS source as an element of [[sources]].
        let sls = "\n[[sources]]\ntype = \"sls\"\nendpoint = \"https://cn-hangzhou.log.aliyuncs.com\"\nproject = \"p\"\nlogstore = \"l\"\naccess_key_id = \"a\"\naccess_key_secret = \"b\"\n";
        let c: Config = toml::from_str(&format!("{only}{sls}")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.sls().unwrap().project, "p");
        // Errors name the key.
        // Several SLS logstores: each read once, one budget for the node.
        let two: Config = toml::from_str(&format!("{GOOD}{sls}")).unwrap();
        two.validate().unwrap();
        let keys: Vec<(String, String)> = two
            .sls_sources()
            .map(|(k, s)| (k, s.logstore.clone()))
            .collect();
        assert_eq!(
            keys,
            [
                ("source".to_owned(), "actiontrail_main".to_owned()),
                ("sources[0]".to_owned(), "l".to_owned())
            ]
        );
        assert_eq!(two.sls().unwrap().logstore, "actiontrail_main");
        let again = sls.replace(
            "project = \"p\"\nlogstore = \"l\"",
            "project = \"audit\"\nlogstore = \"actiontrail_main\"",
        );
        assert!(
            err(&format!("{GOOD}{again}")).starts_with("sources[0].logstore:"),
            "the same logstore twice"
        );
        let budget = format!("{sls}max_in_flight_bytes = 1048576\n");
        assert!(
            err(&format!("{GOOD}{budget}")).starts_with("sources[0].max_in_flight_bytes:"),
            "two budgets for one node"
        );
        assert!(err(&only).starts_with("sources:"), "no source at all");
        let bad = |from: &str, to: &str| err(&format!("{GOOD}{}", S3_SQS.replace(from, to)));
        assert!(bad("region = \"us-east-1\"", "region = \"\"").starts_with("sources[0].region:"));
        assert!(bad("/123456789012/trail-files", "/").starts_with("sources[0].queue_url:"));
        assert!(bad("name = \"org-trail\"", "wait_secs = 21").starts_with("sources[0].wait_secs:"));
        assert!(bad("name = \"org-trail\"", "pollers = 0").starts_with("sources[0].pollers:"));
        assert!(bad("secret_access_key = \"aws-s3cret\"\n", "")
            .starts_with("sources[0].secret_access_key:"));
        assert!(bad("name = \"org-trail\"", "s3_endpoint = \"ftp://x\"")
            .starts_with("sources[0].s3_endpoint:"));
        assert!(
            bad("name = \"org-trail\"", "shiny = 1").contains("shiny"),
            "unknown keys are refused"
        );
        // Files: paths required; names unique across sources.
        let file = "\n[[sources]]\ntype = \"file\"\nname = \"org-trail\"\npaths = [\"/data/**/*.json.gz\"]\n";
        assert!(
            err(&format!("{GOOD}{S3_SQS}{file}")).starts_with("sources[1].name:"),
            "a name used twice"
        );
        let c: Config =
            toml::from_str(&format!("{GOOD}{}", file.replace("org-trail", "backfill"))).unwrap();
        c.validate().unwrap();
        assert_eq!(c.files().next().unwrap().paths, ["/data/**/*.json.gz"]);
        assert!(err(&format!(
            "{GOOD}{}",
            file.replace("\"/data/**/*.json.gz\"", "")
        ))
        .starts_with("sources[0].paths:"));
    }

    #[test]
    fn aws_sources_take_keys_a_profile_or_the_chain_and_a_role_on_top() {
        let bad = |from: &str, to: &str| err(&format!("{GOOD}{}", S3_SQS.replace(from, to)));
        let good = |from: &str, to: &str| {
            let c: Config = toml::from_str(&format!("{GOOD}{}", S3_SQS.replace(from, to))).unwrap();
            c.validate().unwrap();
            c
        };
        let keys = "access_key_id = \"AKIA\"\nsecret_access_key = \"aws-s3cret\"\n";
        // No keys at all: the chain's business, at start, not the config's.
        good(keys, "");
        good(keys, "profile = \"audit\"\n");
        assert!(bad("access_key_id = \"AKIA\"\n", "").starts_with("sources[0].access_key_id:"));
        assert!(bad(keys, "session_token = \"t\"\n").starts_with("sources[0].session_token:"));
        assert!(
            bad(keys, &format!("{keys}profile = \"audit\"\n")).starts_with("sources[0].profile:")
        );
        // A role, with its external id from the environment or inline.
        let role = "role_arn = \"arn:aws:iam::210987654321:role/trail/reader\"\nexternal_id = \"ext-1234:/x\"\n";
        let c = good(keys, &format!("{keys}{role}"));
        let (key, q) = c.s3_sqs().next().unwrap();
        let s = q.aws_auth().settings(&key).unwrap();
        let r = s.assume_role.as_ref().unwrap();
        assert_eq!(
            (r.role_session_name.as_str(), r.duration.as_secs()),
            ("trail", 3600)
        );
        assert_eq!(r.external_id.as_ref().unwrap().expose(), "ext-1234:/x");
        assert!(
            !format!("{c:?} {s:?}").contains("ext-1234"),
            "the external id never in Debug"
        );
        good(keys, "role_arn = \"arn:aws-cn:iam::210987654321:role/r\"\nassume_role_secs = 43200\nrole_session_name = \"node-1@trail\"\n");
        for (arn, why) in [
            ("arn:aws:iam::21098765432:role/r", "11 digits"),
            ("arn:aws:iam::210987654321:user/r", "a user"),
            ("arn:aws:s3:::bucket", "not IAM"),
            ("arn:aws:iam::210987654321:role/", "no name"),
            ("arn:aws:iam::210987654321:role/a b", "a space"),
        ] {
            let e = bad(keys, &format!("{keys}role_arn = \"{arn}\"\n"));
            assert!(e.starts_with("sources[0].role_arn:"), "{why}: {e}");
        }
        let with_role = |extra: &str| bad(keys, &format!("{keys}{role}{extra}"));
        assert!(with_role("assume_role_secs = 899\n").starts_with("sources[0].assume_role_secs:"));
        let e = with_role("assume_role_secs = 43201\n");
        assert!(
            e.starts_with("sources[0].assume_role_secs:") && e.contains("role chaining"),
            "{e}"
        );
        // Temporary keys: the role is chained, an hour at most.
        let e = bad(
            keys,
            &format!("{keys}session_token = \"t\"\n{role}assume_role_secs = 3601\n"),
        );
        assert!(
            e.starts_with("sources[0].assume_role_secs:") && e.contains("3600"),
            "{e}"
        );
        good(
            keys,
            &format!("{keys}session_token = \"t\"\n{role}assume_role_secs = 3600\n"),
        );
        assert!(
            with_role("role_session_name = \"a b\"\n").starts_with("sources[0].role_session_name:")
        );
        assert!(with_role("sts_endpoint = \"sts\"\n").starts_with("sources[0].sts_endpoint:"));
        let e = bad(
            keys,
            &format!(
                "{keys}role_arn = \"arn:aws:iam::210987654321:role/r\"\nexternal_id = \"x\"\n"
            ),
        );
        assert!(e.starts_with("sources[0].external_id:"), "{e}");
        let e = bad(keys, &format!("{keys}external_id = \"ext-1234\"\n"));
        assert!(
            e.starts_with("sources[0].external_id:") && e.contains("without role_arn"),
            "{e}"
        );
        let e = bad(
            keys,
            &format!(
                "{keys}{}",
                role.replace(
                    "\"ext-1234:/x\"",
                    "{ env = \"TRAIL_SURELY_UNSET_EXTERNAL_ID\" }"
                )
            ),
        );
        assert!(e.starts_with("sources[0].external_id:"), "{e}");
        // The listing source takes the same keys.
        let s3 = "\n[[sources]]\ntype = \"s3\"\nbucket = \"org-trail\"\nregion = \"us-east-1\"\n";
        let c: Config = toml::from_str(&format!("{GOOD}{s3}{role}")).unwrap();
        c.validate().unwrap();
        let e = err(&format!("{GOOD}{s3}role_arn = \"nope\"\n"));
        assert!(e.starts_with("sources[0].role_arn:"), "{e}");
    }

    fn err(text: &str) -> String {
        match toml::from_str::<Config>(text) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        }
    }

    #[test]
    fn lease_and_election_timings_that_would_fence_every_node_are_refused() {
        let cluster =
            "[control]\nlisten = \"127.0.0.1:7001\"\n[cluster]\nnode_id = 1\nbootstrap = true\n";
        let e = err(&format!(
            "{GOOD}\n{cluster}lease_ms = 900\nheartbeat_ms = 100\nfence_margin_ms = 200\nelection_timeout_ms = 3000\n"
        ));
        assert!(e.starts_with("cluster.election_timeout_ms:"), "{e}");
        let e = err(&format!("{GOOD}\n{cluster}revoke_timeout_ms = 6000\n"));
        assert!(e.starts_with("cluster.revoke_timeout_ms:"), "{e}");
        for voters in [0, 2, 4, 9] {
            let e = err(&format!("{GOOD}\n{cluster}voters = {voters}\n"));
            assert!(e.starts_with("cluster.voters:"), "{e}");
        }
        let ok = format!(
            "{GOOD}\n{cluster}lease_ms = 6000\nheartbeat_ms = 250\nfence_margin_ms = 500\nelection_timeout_ms = 600\nrevoke_timeout_ms = 12000\n"
        );
        toml::from_str::<Config>(&ok).unwrap().validate().unwrap();
    }

    #[test]
    fn a_node_budget_below_one_pull_is_refused() {
        let e = err(&GOOD.replace(
            "project = \"audit\"",
            "project = \"audit\"\nmax_in_flight_bytes = 1000",
        ));
        assert!(e.starts_with("source.max_in_flight_bytes:"), "{e}");
        let c: Config = toml::from_str(GOOD).unwrap();
        assert_eq!(c.sls().unwrap().max_in_flight_bytes, 32 << 20);
    }

    #[test]
    fn an_envelope_cap_below_the_event_cap_is_refused() {
        let e = err(&format!("{GOOD}\n[enrich]\nmax_envelope_bytes = 0\n"));
        assert!(e.starts_with("enrich.max_envelope_bytes:"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[enrich]\nmax_event_bytes = 2097152\nmax_envelope_bytes = 1048576\n"
        ));
        assert!(e.starts_with("enrich.max_envelope_bytes:"), "{e}");
        let e = err(&format!("{GOOD}\n[enrich]\nmax_event_bytes = 10\n"));
        assert!(e.starts_with("enrich.max_event_bytes:"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = err(&GOOD.replace(
            "project = \"audit\"",
            "project = \"audit\"\npull_count = 5000",
        ));
        assert!(e.starts_with("source.pull_count:"), "{e}");
        let e = err(&GOOD.replace(
            "token = \"hec-token\"",
            "token = { env = \"TRAIL_UNSET_FOR_TEST\" }",
        ));
        assert!(e.starts_with("sinks[0].token:"), "{e}");
        let e = err(&GOOD.replace(
            "url = \"https://splunk.example.com:8088\"",
            "url = \"ftp://x\"",
        ));
        assert!(e.starts_with("sinks[0]:"), "{e}");
        let e = err(&GOOD.replace("[node]", "[node]\ncolour = \"red\""));
        assert!(e.contains("colour"), "unknown keys are named: {e}");
        let e = err(&GOOD.replace("type = \"file\"", "type = \"kafka\""));
        assert!(e.contains("kafka"), "{e}");
        let e = err(&GOOD.replace(
            "endpoint = \"https://cn-hangzhou.log.aliyuncs.com\"",
            "endpoint = \"ftp://x\"",
        ));
        assert!(e.starts_with("source.endpoint:"), "{e}");
        let e = err(&GOOD.replace("path = \"/tmp/trail/dead.jsonl\"", ""));
        assert!(e.starts_with("dead_letter:"), "{e}");
        let e = err(&format!(
            "{GOOD}\n[dead_letter.sls]\nendpoint = \"https://cn-hangzhou.log.aliyuncs.com\"\n\
             project = \"audit\"\nlogstore = \"dl\"\naccess_key_id = \"LTAI\"\n\
             access_key_secret = {{ env = \"TRAIL_UNSET_FOR_TEST\" }}\n"
        ));
        assert!(e.starts_with("dead_letter.sls.access_key_secret:"), "{e}");
    }
}
