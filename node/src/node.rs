//! The composition root: a node assembled from its config, started and
//! stopped. Floor 6: the only module that sees every other one; nothing
//! below imports it.
//!
//! Inside the actix `System` (on a multi-thread tokio runtime): the dead-letter
//! sink and each configured sink on an `Arbiter` of its own, the `Enricher`
//! pool on `enrich.threads` OS threads, and one `ShardConsumer` per shard on a
//! consumers' arbiter. Each shard starts from, in order: its local checkpoint,
//! the SLS consumer group's checkpoint, the configured `source.start`.
//! Shards are listed again every `shard_rescan_secs`; new ones (splits) get a
//! consumer, and a consumer whose shard turned read-only reads it to the end.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterSettings, Reconciler};
use crate::config::{Config, ConfigError, SinkConfig};
use crate::control::StatusView;
use crate::event::EventFilter;
use crate::fence::Fence;
use crate::metrics::Registry;
use crate::net::tls::Tls;
use crate::pipeline::budget::{BudgetMetrics, InFlightBudget};
use crate::pipeline::checkpoint::{CheckpointStore, StoreError};
use crate::pipeline::enrich::Enrichment;
use crate::pipeline::enricher::Enricher;
use crate::pipeline::file_consumer::{FileConsumer, FileSettings, FileStats};
use crate::pipeline::queue_consumer::{
    InFlightMessages, QueueConsumer, QueueMetrics, QueueSettings, QueueStats, StopReceiving,
};
use crate::pipeline::shard_consumer::{ConsumerSettings, Progress, ShardConsumer, StopPulling};
use crate::pipeline::{
    Consumers, PipelineStats, SourceReader, SourceSettings, Spawner, SLS_SOURCE_STRIDE,
};
use crate::record::EventEncoder;
use crate::sink::dead_letter::{DeadLetterSink, DeadLetters, SlsDeadLetters};
use crate::sink::file::{FileSink, JsonLinesEncoder, RotatingFile};
use crate::sink::hec::cim::CimMap;
use crate::sink::hec::service::HecService;
use crate::sink::hec::{HecEncoder, HecEnvelope, HecSink};
use crate::sink::sls::{SlsLogEncoder, SlsSink};
use crate::sink::{SinkHandle, SinkStats};
use crate::sls::{
    Compression, Credentials, CursorPosition, Endpoint, SlsClient, SlsClientBuilder, SlsError,
};
use crate::tags::{builtin_kinds, ResourceKind, StaticTags, TagCache, TagsFileError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("checkpoints: {0}")]
    Store(#[from] StoreError),
    #[error("tags: {0}")]
    Tags(#[from] TagsFileError),
    #[error("{key}: {message}")]
    Sink { key: String, message: String },
    #[error("source: {0}")]
    Source(#[from] SlsError),
    #[error(transparent)]
    Spawn(#[from] crate::pipeline::SpawnError),
    #[error("cluster: {0}")]
    Cluster(crate::cluster::ClusterError),
}

/// A running node.
pub struct RunningNode {
    pub stats: PipelineStats,
    /// Where `/metrics`, `/healthz` and `/readyz` answer, if configured.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the gRPC control API answers, if configured.
    pub control_addr: Option<std::net::SocketAddr>,
    consumers: Consumers,
    /// The pollers of every `s3_sqs` source.
    queues: Vec<Addr<QueueConsumer>>,
    /// The counters of every `s3_sqs` source.
    pub queue_stats: Arc<QueueMetrics>,
    /// This node's handle on the cluster, with `[cluster]`.
    pub cluster: Option<Cluster>,
    stop: CancellationToken,
}

/// `[control] token`, resolved (callers and peers must send it).
fn control_token(config: &Config) -> Result<Option<String>, StartError> {
    Ok(match &config.control.token {
        Some(t) => Some(
            t.resolve("control.token")
                .map_err(ConfigError::from)?
                .expose()
                .to_owned(),
        ),
        None => None,
    })
}

/// `[control.tls]`, loaded (the listener's and the peer client's settings).
fn control_tls(config: &Config) -> Result<Option<Tls>, StartError> {
    config
        .control
        .tls
        .as_ref()
        .map(|t| {
            crate::net::tls::load(t).map_err(|message| StartError::Sink {
                key: "control.tls".into(),
                message,
            })
        })
        .transpose()
}

/// Starts raft for `[cluster]` (the gRPC listener starts after it).
async fn start_cluster(
    config: &Config,
    c: &crate::config::ClusterConfig,
    stop: CancellationToken,
) -> Result<Cluster, StartError> {
    let listen = config
        .control
        .listen
        .expect("validated: [cluster] needs control.listen");
    let token = control_token(config)?;
    let settings = ClusterSettings {
        node_id: c.node_id,
        name: config.node.id.clone(),
        advertise: c.advertise.clone().unwrap_or_else(|| listen.to_string()),
        data_dir: config.node.data_dir.clone(),
        bootstrap: c.bootstrap,
        join: c.join.clone(),
        slots: c.slots,
        voters: c.voters as usize,
        heartbeat: Duration::from_millis(c.heartbeat_ms),
        lease: Duration::from_millis(c.lease_ms),
        fence_margin: Duration::from_millis(c.fence_margin_ms),
        election_timeout: Duration::from_millis(c.election_timeout_ms),
        commit_interval: Duration::from_millis(c.commit_interval_ms),
        revoke_timeout: Duration::from_millis(c.revoke_timeout_ms),
        shard_rescan: Duration::from_secs(
            config
                .sls_sources()
                .map(|(_, s)| s.shard_rescan_secs)
                .min()
                .unwrap_or(60)
                .max(1),
        ),
        auto_rebalance: c.auto_rebalance,
        snapshot_logs: c.snapshot_logs,
        max_tags: c.max_tags,
        token,
        tls: control_tls(config)?.map(|t| t.peers),
    };
    tracing::info!(node = c.node_id, advertise = %settings.advertise, "starting raft");
    Cluster::start(settings, stop)
        .await
        .map_err(StartError::Cluster)
}

fn sls_client(
    endpoint: &str,
    address: Option<&str>,
    key_id: &str,
    secret: &crate::secret::SecretSource,
    token: Option<&crate::secret::SecretSource>,
    key: &str,
) -> Result<SlsClient, StartError> {
    Ok(sls_client_builder(endpoint, address, key_id, secret, token, key)?.build()?)
}

/// An SLS client for a configured logstore, to be tuned before it is built;
/// errors name the config `key`.
pub fn sls_client_builder(
    endpoint: &str,
    address: Option<&str>,
    key_id: &str,
    secret: &crate::secret::SecretSource,
    token: Option<&crate::secret::SecretSource>,
    key: &str,
) -> Result<SlsClientBuilder, StartError> {
    let mut ep = Endpoint::parse(endpoint).map_err(|e| StartError::Sink {
        key: format!("{key}.endpoint"),
        message: e.to_string(),
    })?;
    if let Some(a) = address {
        ep = ep.with_address(a).map_err(|e| StartError::Sink {
            key: format!("{key}.address"),
            message: e.to_string(),
        })?;
    }
    let mut creds = Credentials::new(
        key_id,
        secret
            .resolve(&format!("{key}.access_key_secret"))
            .map_err(ConfigError::from)?
            .expose(),
    );
    if let Some(t) = token {
        creds = creds.with_security_token(
            t.resolve(&format!("{key}.security_token"))
                .map_err(ConfigError::from)?
                .expose(),
        );
    }
    Ok(SlsClient::builder(ep, creds))
}

/// The cloud tag providers behind a remote cache.
fn cloud_tags(t: &crate::config::TagsConfig) -> Result<TagCache, StartError> {
    use crate::tags::alibaba::{AlibabaConfig, AlibabaTags};
    use crate::tags::aws::{AwsConfig, AwsTags, CloudTags};
    use crate::tags::{BatchConfig, Ttls};
    let http_err = |key: &str| {
        let key = key.to_owned();
        move |e: reqwest::Error| StartError::Sink {
            key: key.clone(),
            message: e.to_string(),
        }
    };
    let alibaba = match &t.alibaba {
        Some(a) => Some(Arc::new(
            AlibabaTags::new(AlibabaConfig {
                tag_endpoint: a.tag_endpoint.clone(),
                sts_endpoint: a.sts_endpoint.clone(),
                address: a.address.clone(),
                access_key_id: a.access_key_id.clone(),
                access_key_secret: crate::secret::Secret::new(
                    a.access_key_secret
                        .resolve("tags.alibaba.access_key_secret")
                        .map_err(ConfigError::from)?
                        .expose(),
                ),
                management_account: a.management_account.clone(),
                role_name: a.role_name.clone(),
                session_secs: a.session_secs,
                default_region: a.default_region.clone(),
                sweep: a.sweep,
                per_product: a.per_product,
                ecs_endpoint: a.ecs_endpoint.clone(),
                slb_endpoint: a.slb_endpoint.clone(),
                sweep_ttl: Duration::from_secs(t.ttl_secs),
            })
            .map_err(http_err("tags.alibaba"))?,
        )),
        None => None,
    };
    let aws = match &t.aws {
        Some(a) => Some(Arc::new(
            AwsTags::new(AwsConfig {
                endpoint: a.endpoint.clone(),
                address: a.address.clone(),
                access_key_id: a.access_key_id.clone(),
                secret_access_key: crate::secret::Secret::new(
                    a.secret_access_key
                        .resolve("tags.aws.secret_access_key")
                        .map_err(ConfigError::from)?
                        .expose(),
                ),
                session_token: match &a.session_token {
                    Some(s) => Some(crate::secret::Secret::new(
                        s.resolve("tags.aws.session_token")
                            .map_err(ConfigError::from)?
                            .expose(),
                    )),
                    None => None,
                },
            })
            .map_err(http_err("tags.aws"))?,
        )),
        None => None,
    };
    tracing::info!(
        alibaba = alibaba.is_some(),
        aws = aws.is_some(),
        "cloud tag providers"
    );
    Ok(TagCache::remote(
        Arc::new(CloudTags { alibaba, aws }),
        t.cache_capacity,
        Ttls {
            tags: Duration::from_secs(t.ttl_secs),
            negative: Duration::from_secs(t.negative_ttl_secs),
            error: Duration::from_secs(t.error_ttl_secs),
        },
        BatchConfig {
            window: Duration::from_millis(t.batch_window_ms),
            concurrency: t.concurrency,
            throttle_backoff: Duration::from_millis(500),
        },
    ))
}

/// The registry owns its collectors; the node keeps adding sources to this one.
#[derive(Debug)]
struct SharedQueueMetrics(Arc<QueueMetrics>);

impl crate::metrics::Collector for SharedQueueMetrics {
    fn encode(&self, enc: crate::metrics::DescriptorEncoder) -> std::fmt::Result {
        self.0.encode(enc)
    }
}

/// An AWS source's credentials: its keys, else AWS's default chain, with
/// a role assumed on top when it names one. Loaded once here, so that a
/// node with none stops at start, saying everything it tried, as does one
/// whose credentials are set up wrongly or refused (a missing profile, a
/// role that does not trust it). A source whose credentials are there but
/// could not be fetched just now (a timeout, STS or the instance metadata
/// service answering 5xx) starts anyway: its requests ask again, and wait
/// out the failure as they wait out any other of the node's own.
async fn aws_credentials(
    key: &str,
    auth: crate::config::AwsAuth<'_>,
) -> Result<crate::aws::CredentialsProvider, StartError> {
    let failed = |message: String| StartError::Sink {
        key: key.to_owned(),
        message,
    };
    let provider = crate::aws::CredentialsProvider::new(auth.settings(key)?)
        .map_err(|e| failed(e.to_string()))?;
    match provider.credentials().await {
        Ok(_) => tracing::info!(
            source = key,
            provider = provider.provider().unwrap_or(""),
            "AWS credentials"
        ),
        Err(e) if e.transient() => tracing::warn!(
            source = key,
            error = %e,
            "AWS credentials could not be loaded yet; starting anyway, requests will ask again"
        ),
        Err(e) => return Err(failed(format!("AWS credentials: {e}"))),
    }
    Ok(provider)
}

/// A spawner per S3 trail read by listing (`type = "s3"`).
#[allow(clippy::too_many_arguments)]
async fn s3_spawners(
    config: &Config,
    store: &CheckpointStore,
    enricher: &Addr<Enricher>,
    sinks: &Arc<[SinkHandle]>,
    dead_letters: &Recipient<DeadLetters>,
    fence: &Fence,
    budget: &Arc<InFlightBudget>,
    node: &RunningNode,
) -> Result<Vec<Arc<Spawner>>, StartError> {
    use crate::aws::{s3::S3Client, AwsEndpoint};
    use crate::pipeline::s3_listing::{ListingSettings, S3Listing};
    let mut out = Vec::new();
    for (key, q) in config.s3() {
        let err = |k: &str, m: String| StartError::Sink {
            key: format!("{key}.{k}"),
            message: m,
        };
        let credentials = aws_credentials(&key, q.aws_auth()).await?;
        let endpoint = AwsEndpoint::parse(&q.s3_endpoint, q.address.as_deref())
            .map_err(|m| err("s3_endpoint", m))?;
        let s3 = S3Client::new(endpoint, credentials, &q.region, q.path_style)
            .map_err(|e| err("s3_endpoint", e.to_string()))?;
        let start = match q.start.as_str() {
            "begin" => CursorPosition::Begin,
            "end" => CursorPosition::End,
            t => CursorPosition::Time(t.parse().unwrap_or(0)), // validated
        };
        let root = match q.prefix.trim_end_matches('/') {
            "" => "AWSLogs/".to_owned(),
            p => format!("{p}/AWSLogs/"),
        };
        let poll = Duration::from_secs(q.poll_secs);
        let listing = Arc::new(S3Listing::new(
            s3,
            ListingSettings {
                name: q.name.clone(),
                bucket: q.bucket.clone(),
                root,
                start,
                relist_window: Duration::from_secs(q.relist_minutes * 60),
                relist_every: Duration::from_secs(q.relist_secs),
                poll,
                discover_every: Duration::from_secs(q.discover_secs),
                max_object_bytes: q.max_object_bytes,
                max_envelope_bytes: config.enrich.max_envelope_bytes,
                event_key: bytes::Bytes::from(config.enrich.event_key.clone().into_bytes()),
            },
        ));
        tracing::info!(source = %q.name, bucket = %q.bucket, "S3 source (listing; a partition per account and region)");
        let settings = Arc::new(ConsumerSettings {
            pull_count: 1,
            pull_target_bytes: 1 << 20,
            max_pull_bytes: q.max_object_bytes,
            in_flight_batches: q.in_flight_objects,
            compression: Compression::Lz4,
            empty_backoff_max: poll,
            checkpoint_interval: Duration::from_secs(1),
            mirror_group: None,
            mirror_interval: Duration::from_secs(60),
            fence: fence.clone(),
            budget: budget.clone(),
        });
        out.push(Arc::new(Spawner {
            source: SourceSettings {
                project: listing.project(),
                logstore: q.name.clone(),
                start,
                consumer_group: None,
            },
            reader: SourceReader::S3(listing),
            store: store.clone(),
            settings,
            enricher: enricher.clone(),
            sinks: sinks.clone(),
            dead_letters: dead_letters.clone(),
            arbiter: Arbiter::new().handle(),
            stats: node.stats.clone(),
            consumers: node.consumers.clone(),
            stop: node.stop.clone(),
            listed: Default::default(),
            local_partitions: Default::default(),
            local_base: 0,
        }));
    }
    Ok(out)
}

/// Starts the pollers of every `s3_sqs` source, each on its own arbiter.
async fn start_queue_sources(
    config: &Config,
    enricher: &Addr<Enricher>,
    sinks: &Arc<[SinkHandle]>,
    dead_letters: Recipient<DeadLetters>,
    metrics: &Arc<QueueMetrics>,
    fence: &Fence,
    stop: CancellationToken,
) -> Result<Vec<Addr<QueueConsumer>>, StartError> {
    use crate::aws::{s3::S3Client, sqs::SqsClient, AwsEndpoint};
    let mut out = Vec::new();
    for (key, q) in config.s3_sqs() {
        let err = |k: &str, m: String| StartError::Sink {
            key: format!("{key}.{k}"),
            message: m,
        };
        let credentials = aws_credentials(&key, q.aws_auth()).await?;
        let sqs_ep = AwsEndpoint::parse(&q.sqs_endpoint, q.address.as_deref())
            .map_err(|m| err("sqs_endpoint", m))?;
        let s3_ep = AwsEndpoint::parse(&q.s3_endpoint, q.address.as_deref())
            .map_err(|m| err("s3_endpoint", m))?;
        let sqs = SqsClient::new(sqs_ep, credentials.clone(), &q.region, &q.queue_url)
            .map_err(|e| err("sqs_endpoint", e.to_string()))?;
        let s3 = S3Client::new(s3_ep, credentials, &q.region, q.path_style)
            .map_err(|e| err("s3_endpoint", e.to_string()))?;
        let settings = Arc::new(QueueSettings {
            name: q.name.as_str().into(),
            visibility: Duration::from_secs(q.visibility_timeout_secs),
            wait: Duration::from_secs(q.wait_secs),
            messages_in_flight: q.messages_in_flight,
            max_object_bytes: q.max_object_bytes,
            max_envelope_bytes: config.enrich.max_envelope_bytes,
            event_key: bytes::Bytes::from(config.enrich.event_key.clone().into_bytes()),
            buckets: q.buckets.clone(),
        });
        let stats = Arc::new(QueueStats::default());
        metrics
            .sources
            .lock()
            .push((settings.name.clone(), stats.clone()));
        tracing::info!(source = %q.name, queue = %q.queue_url, pollers = q.pollers, "S3 source (SQS notifications)");
        for p in 0..q.pollers {
            let c = QueueConsumer::new(
                p as u32,
                settings.clone(),
                sqs.clone(),
                s3.clone(),
                enricher.clone(),
                sinks.clone(),
                dead_letters.clone(),
                stats.clone(),
                fence.clone(),
                stop.clone(),
            );
            out.push(QueueConsumer::start_in_arbiter(
                &Arbiter::new().handle(),
                move |_| c,
            ));
        }
    }
    Ok(out)
}

impl RunningNode {
    /// Builds and starts everything. Call inside an actix `System`.
    pub async fn start(config: Config) -> Result<RunningNode, StartError> {
        config.validate()?;
        let stats = PipelineStats::default();
        let stop = CancellationToken::new();
        let store = CheckpointStore::open(&config.node.data_dir)?;
        let cluster = match &config.cluster {
            Some(c) => Some(start_cluster(&config, c, stop.clone()).await?),
            None => None,
        };
        let fence = match &cluster {
            Some(c) => c.fence(),
            None => Fence::open(),
        };
        // Every SLS logstore the node reads, each with its own client.
        let sls = config.sls();
        let mut sls_sources = Vec::new();
        for (key, s) in config.sls_sources() {
            let client = sls_client(
                &s.endpoint,
                s.address.as_deref(),
                &s.access_key_id,
                &s.access_key_secret,
                s.security_token.as_ref(),
                &key,
            )?;
            sls_sources.push((s, client));
        }

        // Dead letters: a file, a logstore, or both.
        let dl = &config.dead_letter;
        let dl_file = match &dl.path {
            Some(path) => Some(
                RotatingFile::open(path, dl.max_bytes, dl.keep).map_err(|e| StartError::Sink {
                    key: "dead_letter.path".into(),
                    message: e.to_string(),
                })?,
            ),
            None => None,
        };
        let dl_sls = match &dl.sls {
            Some(x) => Some(SlsDeadLetters {
                client: sls_client(
                    &x.endpoint,
                    x.address.as_deref(),
                    &x.access_key_id,
                    &x.access_key_secret,
                    x.security_token.as_ref(),
                    "dead_letter.sls",
                )?,
                project: x.project.clone(),
                logstore: x.logstore.clone(),
                topic: x.topic.clone(),
            }),
            None => None,
        };
        let dl_stats = stats.dead_letters.clone();
        let dead_letters = DeadLetterSink::start_in_arbiter(&Arbiter::new().handle(), move |_| {
            DeadLetterSink::new(dl_file, dl_sls, dl_stats)
        });

        // Sinks, each with its encoder.
        let mut encoders: Vec<Arc<dyn EventEncoder>> = Vec::new();
        let mut handles = Vec::new();
        for (i, sink) in config.sinks.iter().enumerate() {
            let key = format!("sinks[{i}]");
            let sink_stats = Arc::new(SinkStats::default());
            let arbiter = Arbiter::new().handle();
            let name = format!("{}#{i}", sink.kind());
            let deliver = match sink {
                SinkConfig::Hec(h) => {
                    let token = h
                        .token
                        .resolve(&format!("{key}.token"))
                        .map_err(ConfigError::from)?;
                    encoders.push(Arc::new(HecEncoder::new(HecEnvelope {
                        host: h.host.clone().unwrap_or_else(|| config.node.id.clone()),
                        source: h.source.clone(),
                        sourcetype: h.sourcetype.clone(),
                        index: h.index.clone(),
                        tag_prefix: h
                            .tag_prefix
                            .clone()
                            .unwrap_or_else(|| config.tags.prefix.clone()),
                        cim: h.cim.then(|| CimMap::new(&h.cim_actions)),
                        indexed: h.indexed_fields.clone(),
                    })));
                    let cfg = Arc::new(h.clone());
                    let service = HecService::new(
                        cfg.clone(),
                        token,
                        sink_stats.clone(),
                        dead_letters.clone().recipient(),
                        fence.clone(),
                    )
                    .map_err(|message| StartError::Sink {
                        key: key.clone(),
                        message,
                    })?;
                    HecSink::start_in_arbiter(&arbiter, move |_| HecSink::new(service, cfg))
                        .recipient()
                }
                SinkConfig::File(f) => {
                    encoders.push(Arc::new(JsonLinesEncoder {
                        tag_prefix: f
                            .tag_prefix
                            .clone()
                            .unwrap_or_else(|| config.tags.prefix.clone()),
                    }));
                    let file = RotatingFile::open(&f.path, f.max_bytes, f.keep).map_err(|e| {
                        StartError::Sink {
                            key: format!("{key}.path"),
                            message: e.to_string(),
                        }
                    })?;
                    let st = sink_stats.clone();
                    FileSink::start_in_arbiter(&arbiter, move |_| FileSink::new(file, st))
                        .recipient()
                }
                SinkConfig::Sls(x) => {
                    encoders.push(Arc::new(SlsLogEncoder {
                        tag_prefix: x
                            .tag_prefix
                            .clone()
                            .unwrap_or_else(|| config.tags.prefix.clone()),
                        include_event: x.include_event,
                    }));
                    let c = sls_client(
                        &x.endpoint,
                        x.address.as_deref(),
                        &x.access_key_id,
                        &x.access_key_secret,
                        x.security_token.as_ref(),
                        &key,
                    )?;
                    let cfg = Arc::new(x.clone());
                    let st = sink_stats.clone();
                    let dl = dead_letters.clone().recipient();
                    let fence = fence.clone();
                    SlsSink::start_in_arbiter(&arbiter, move |_| {
                        SlsSink::new(c, cfg, st, dl, fence)
                    })
                    .recipient()
                }
            };
            handles.push(SinkHandle {
                name,
                kind: sink.kind(),
                delivery: sink.delivery(),
                deliver,
                stats: sink_stats,
            });
        }
        *stats.sinks.lock() = handles.clone();
        let sinks: Arc<[SinkHandle]> = handles.into();

        // Enrichment.
        let tags = match &config.tags.file {
            Some(path) => {
                let provider = StaticTags::open(path, Duration::from_secs(5))?;
                tracing::info!(resources = provider.len(), path = %path.display(), "static tags loaded");
                Some(TagCache::new(
                    Arc::new(provider),
                    config.tags.cache_capacity,
                    Duration::from_secs(config.tags.ttl_secs),
                ))
            }
            None if config.tags.alibaba.is_some() || config.tags.aws.is_some() => {
                Some(cloud_tags(&config.tags)?)
            }
            None => None,
        };
        let tag_cache = tags.clone();
        *stats.tag_remote.lock() = tags.as_ref().and_then(TagCache::remote_stats);
        *stats.tag_cache.lock() = tags.as_ref().map(|t| t.stats.clone());
        let mut kinds = builtin_kinds();
        for (t, k) in &config.tags.resource_types {
            kinds.insert(
                t.clone(),
                ResourceKind {
                    product: k.product.clone(),
                    arn_type: k.arn_type.clone(),
                    global: k.global,
                },
            );
        }
        let enrichment = Arc::new(Enrichment {
            filter: EventFilter::new(&config.filter),
            tags,
            kinds: kinds.into(),
            max_event_bytes: config.enrich.max_event_bytes,
            max_envelope_bytes: config.enrich.max_envelope_bytes,
            event_key: config.enrich.event_key.clone().into_bytes(),
            tag_budget: Duration::from_millis(config.tags.budget_ms),
        });
        let encoders: Arc<[Arc<dyn EventEncoder>]> = encoders.into();
        let enricher = SyncArbiter::start(config.enrich.threads, move || {
            Enricher::new(enrichment.clone(), encoders.clone())
        });

        let budget = Arc::new(InFlightBudget::new(
            sls.map_or(32 << 20, |s| s.max_in_flight_bytes),
        ));
        let settings = sls_sources.iter().map(|(s, _)| {
            Arc::new(ConsumerSettings {
                pull_count: s.pull_count,
                pull_target_bytes: s.pull_target_bytes,
                max_pull_bytes: s.max_pull_bytes,
                in_flight_batches: s.in_flight_batches,
                compression: Compression::Lz4,
                empty_backoff_max: Duration::from_millis(s.empty_backoff_max_ms),
                checkpoint_interval: Duration::from_millis(s.checkpoint_interval_ms),
                mirror_group: s.consumer_group.clone(),
                mirror_interval: Duration::from_secs(s.mirror_interval_secs),
                fence: fence.clone(),
                budget: budget.clone(),
            })
        });
        let settings: Vec<Arc<ConsumerSettings>> = settings.collect();
        for (s, client) in &sls_sources {
            let Some(group) = &s.consumer_group else {
                continue;
            };
            if let Err(e) = client
                .ensure_consumer_group(&s.project, &s.logstore, group, 60)
                .await
            {
                tracing::warn!(error = %e, project = %s.project, logstore = %s.logstore, group, "cannot create the SLS consumer group; checkpoints will not be mirrored");
            }
        }
        let queue_metrics = Arc::new(QueueMetrics::default());

        // Metrics: each component registers its own collectors.
        let mut registry = Registry::default();
        stats.register_metrics(&mut registry);
        registry.register_collector(Box::new(BudgetMetrics(budget.clone())));
        registry.register_collector(Box::new(SharedQueueMetrics(queue_metrics.clone())));
        if let Some(c) = &cluster {
            c.register_metrics(&mut registry);
        }
        let registry = Arc::new(registry);
        stats.sample_rates(stop.clone());
        let view = StatusView {
            pipeline: stats.clone(),
            cluster: cluster.clone(),
        };
        let metrics_addr = match config.metrics.listen {
            Some(listen) => Some(
                crate::control::serve(listen, registry.clone(), view.clone(), stop.clone())
                    .await
                    .map_err(|e| StartError::Sink {
                        key: "metrics.listen".into(),
                        message: e.to_string(),
                    })?,
            ),
            None => None,
        };
        if let Some(addr) = metrics_addr {
            tracing::info!(%addr, "metrics at /metrics, /healthz, /readyz");
        }
        let control_addr = match config.control.listen {
            Some(listen) => {
                let token = control_token(&config)?;
                let info = crate::control::grpc::NodeInfo {
                    node_id: config.node.id.clone(),
                    project: sls.map(|s| s.project.clone()).unwrap_or_default(),
                    logstore: sls.map(|s| s.logstore.clone()).unwrap_or_default(),
                };
                let tls = control_tls(&config)?.map(|t| t.server);
                let addr =
                    crate::control::grpc::serve(listen, token, info, view, tls, stop.clone())
                        .await
                        .map_err(|e| StartError::Sink {
                            key: "control.listen".into(),
                            message: e.to_string(),
                        })?;
                tracing::info!(%addr, "control API (trail.v1.Control) for trailctl");
                Some(addr)
            }
            None => None,
        };
        for (i, f) in config.files().enumerate() {
            let settings = Arc::new(FileSettings {
                name: f.name.as_str().into(),
                paths: f.paths.clone(),
                rescan: Duration::from_secs(f.rescan_secs.max(1)),
                batch_bytes: f.batch_bytes,
                in_flight_batches: f.in_flight_batches,
                max_envelope_bytes: config.enrich.max_envelope_bytes,
                event_key: bytes::Bytes::from(config.enrich.event_key.clone().into_bytes()),
            });
            tracing::info!(source = %f.name, index = i, paths = ?f.paths, "file source");
            let c = FileConsumer::new(
                settings,
                enricher.clone(),
                sinks.clone(),
                dead_letters.clone().recipient(),
                store.clone(),
                Arc::new(FileStats::default()),
                fence.clone(),
                stop.clone(),
            );
            FileConsumer::start_in_arbiter(&Arbiter::new().handle(), move |_| c);
        }
        let queues = start_queue_sources(
            &config,
            &enricher,
            &sinks,
            dead_letters.clone().recipient(),
            &queue_metrics,
            &fence,
            stop.clone(),
        )
        .await?;
        let node = RunningNode {
            stats,
            metrics_addr,
            control_addr,
            consumers: Consumers::default(),
            queues,
            queue_stats: queue_metrics.clone(),
            cluster: cluster.clone(),
            stop,
        };
        let spawners = s3_spawners(
            &config,
            &store,
            &enricher,
            &sinks,
            &dead_letters.clone().recipient(),
            &fence,
            &budget,
            &node,
        )
        .await?;
        let s3_rescans: Vec<Duration> = config
            .s3()
            .map(|(_, q)| Duration::from_secs(q.discover_secs))
            .collect();
        // One spawner per SLS logstore, numbering its consumers apart.
        let sls_spawners: Vec<(Arc<Spawner>, Duration)> = sls_sources
            .into_iter()
            .zip(settings)
            .enumerate()
            .map(|(i, ((s, client), settings))| {
                let spawner = Arc::new(Spawner {
                    source: SourceSettings {
                        project: s.project.clone(),
                        logstore: s.logstore.clone(),
                        start: match s.start.as_str() {
                            "begin" => CursorPosition::Begin,
                            "end" => CursorPosition::End,
                            t => CursorPosition::Time(t.parse().unwrap_or(0)), // validated
                        },
                        consumer_group: s.consumer_group.clone(),
                    },
                    reader: SourceReader::Sls(client),
                    store: store.clone(),
                    settings,
                    enricher: enricher.clone(),
                    sinks: sinks.clone(),
                    dead_letters: dead_letters.clone().recipient(),
                    arbiter: Arbiter::new().handle(),
                    stats: node.stats.clone(),
                    consumers: node.consumers.clone(),
                    stop: node.stop.clone(),
                    listed: Default::default(),
                    local_partitions: Default::default(),
                    local_base: i as u32 * SLS_SOURCE_STRIDE,
                });
                (spawner, Duration::from_secs(s.shard_rescan_secs.max(1)))
            })
            .collect();
        if let Some(c) = cluster {
            if let Some(tags) = &tag_cache {
                crate::cluster::share_tags(
                    &c,
                    tags,
                    config.tags.ttl_secs,
                    config.tags.negative_ttl_secs,
                );
            }
            c.join_if_needed().await.map_err(StartError::Cluster)?;
            // Shards (of SLS logstores) and partitions (of S3 trails read
            // by listing) are assigned; without either the cluster shares
            // the tag cache and every node polls its queues.
            let all: Vec<Arc<Spawner>> = sls_spawners
                .into_iter()
                .map(|(s, _)| s)
                .chain(spawners)
                .collect();
            Reconciler::start(c, all, config.node.id.clone());
            return Ok(node);
        }
        for (spawner, every) in sls_spawners
            .into_iter()
            .chain(spawners.into_iter().zip(s3_rescans))
        {
            spawner.rescan().await?;
            spawner.keep_rescanning(every);
        }
        Ok(node)
    }

    /// Stops pulling, waits up to `grace` for what is in flight to be
    /// acknowledged, saves checkpoints.
    pub async fn shutdown(self, grace: Duration) {
        // Queues first: nothing new is received; what is in flight is
        // delivered (and deleted) within the grace, or reappears later.
        for q in &self.queues {
            let _ = q.send(StopReceiving).await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let mut n = 0;
            for q in &self.queues {
                n += q.send(InFlightMessages).await.unwrap_or(0);
            }
            if n == 0 || tokio::time::Instant::now() >= deadline {
                if n > 0 {
                    tracing::warn!(messages = n, "stopping with SQS messages in flight; they reappear after their visibility timeout");
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(c) = &self.cluster {
            // Hand the shards over with their final cursors, then leave.
            crate::cluster::release_all(c, &self.consumers, grace).await;
            self.stop.cancel();
            c.shutdown().await;
            return;
        }
        // The node's token ends every shard's fence (sinks give their parts
        // up), so it is cancelled only after the sinks had their grace.
        let consumers: Vec<Addr<ShardConsumer>> = self
            .consumers
            .lock()
            .values()
            .map(|c| c.addr.clone())
            .collect();
        for c in &consumers {
            let _ = c.send(StopPulling).await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let mut in_flight = 0;
            for c in &consumers {
                in_flight += c.send(Progress).await.map(|(n, _)| n).unwrap_or(0);
            }
            if in_flight == 0 || tokio::time::Instant::now() >= deadline {
                if in_flight > 0 {
                    tracing::warn!(
                        in_flight,
                        "stopping with batches unacknowledged; they will be read again"
                    );
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for c in &consumers {
            let _ = c.send(StopPulling).await; // saves the final checkpoint
        }
        self.stop.cancel();
    }

    /// Batches in flight over all shards.
    pub async fn in_flight(&self) -> usize {
        let consumers: Vec<Addr<ShardConsumer>> = self
            .consumers
            .lock()
            .values()
            .map(|c| c.addr.clone())
            .collect();
        let mut n = 0;
        for c in consumers {
            n += c.send(Progress).await.map(|(n, _)| n).unwrap_or(0);
        }
        n
    }
}
