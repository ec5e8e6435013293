//! Making shard consumers: one `ShardConsumer` per shard (of an SLS
//! logstore) or partition (of an S3 trail read by listing), wired to the
//! enricher pool, the sinks and a checkpoint sink, on the consumers'
//! arbiter. A node has a [`Spawner`] per such source. Without a cluster
//! each spawner lists its shards and consumes them all; under a cluster the
//! reconciler (`cluster::assignment`) asks it for the shards the replicated
//! state assigns this node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::aws::AwsError;
use crate::pipeline::checkpoint::{CheckpointSink, CheckpointStore};
use crate::pipeline::enricher::Enricher;
use crate::pipeline::s3_listing::{S3Listing, PARTITION_BASE};
use crate::pipeline::shard_consumer::{
    ConsumerSettings, MarkReadOnly, ShardConsumer, ShardReader, ShardStats,
};
use crate::pipeline::stats::PipelineStats;
use crate::record::{Provenance, SourceKind};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::SinkHandle;
use crate::sls::{Cursor, CursorPosition, ShardStatus, SlsClient, SlsError};

/// How a node numbers its consumers (the key of [`Consumers`] and of the
/// pipeline's per-shard stats): the shards of its first SLS source keep
/// their own numbers, those of its i-th (from 0) are numbered from
/// `i × SLS_SOURCE_STRIDE`, and the partitions of S3 trails from
/// [`PARTITION_BASE`]. SLS numbers a logstore's shards from 0 up, one more
/// per split or merge, so a logstore never comes near 2²⁴; a node reads
/// at most 127 SLS logstores (`config` checks).
pub const SLS_SOURCE_STRIDE: u32 = 1 << 24;

/// A running consumer: the shard it reads and its address.
#[derive(Clone)]
pub struct RunningConsumer {
    pub project: Arc<str>,
    pub logstore: Arc<str>,
    /// The shard's own number (an SLS shard id, or a partition's number).
    pub shard: u32,
    pub addr: Addr<ShardConsumer>,
}

/// The running consumers by the node's consumer number.
pub type Consumers = Arc<Mutex<HashMap<u32, RunningConsumer>>>;

/// Why a source's shards could not be listed or started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Sls(#[from] SlsError),
    #[error("S3 source {source_name}: {error}")]
    S3 {
        source_name: String,
        #[source]
        error: AwsError,
    },
    #[error("shard {shard} of S3 source {source_name} has no partition prefix")]
    NoPartition { shard: u32, source_name: String },
    #[error("shard {shard} of {project}/{logstore}: SLS shard ids past {} are not read", SLS_SOURCE_STRIDE - 1)]
    ShardIdTooLarge {
        project: String,
        logstore: String,
        shard: u32,
    },
}

/// What a spawner's consumers read.
#[derive(Clone)]
pub enum SourceReader {
    Sls(SlsClient),
    S3(Arc<S3Listing>),
}

/// The source a spawner consumes: an SLS logstore (`[source]`), or an S3
/// trail (`project` = `s3://{bucket}`, `logstore` = the source's name).
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub project: String,
    pub logstore: String,
    /// Where a shard with no checkpoint anywhere starts (`source.start`).
    pub start: CursorPosition,
    /// The SLS consumer group checkpoints are mirrored to and read from.
    pub consumer_group: Option<String>,
}

/// Makes shard consumers: for every shard (no cluster) or for the shards
/// the cluster assigns this node (`cluster::assignment`).
pub struct Spawner {
    pub source: SourceSettings,
    pub reader: SourceReader,
    pub store: CheckpointStore,
    pub settings: Arc<ConsumerSettings>,
    pub enricher: Addr<Enricher>,
    pub sinks: Arc<[SinkHandle]>,
    pub dead_letters: Recipient<DeadLetters>,
    /// Where the consumers run.
    pub arbiter: ArbiterHandle,
    pub stats: PipelineStats,
    pub consumers: Consumers,
    pub stop: CancellationToken,
    /// Set once the shards were listed (without a cluster): shards that
    /// appear later are split or merge children.
    pub listed: std::sync::atomic::AtomicBool,
    /// Without a cluster: the numbers given to partitions, in the order
    /// found (checkpoints are kept by prefix, so the numbers need not last).
    pub local_partitions: Mutex<BTreeMap<String, u32>>,
    /// Added to an SLS shard's number to make the node's consumer number
    /// ([`SLS_SOURCE_STRIDE`] × the source's place); 0 for S3 trails.
    pub local_base: u32,
}

impl Spawner {
    /// The node's number for this source's `shard` (see [`SLS_SOURCE_STRIDE`]);
    /// `None` for an SLS shard id too large to be given one.
    pub fn local_id(&self, shard: u32) -> Option<u32> {
        match self.reader {
            SourceReader::S3(_) => Some(shard),
            SourceReader::Sls(_) if shard < SLS_SOURCE_STRIDE => Some(self.local_base + shard),
            SourceReader::Sls(_) => None,
        }
    }

    /// Starts a consumer for `shard` (the source's own number) at `start`,
    /// saving checkpoints to `store`.
    #[allow(clippy::too_many_arguments)]
    pub fn consumer(
        &self,
        shard: u32,
        partition: Option<&str>,
        readonly: bool,
        start: Cursor,
        store: Arc<dyn CheckpointSink>,
        epoch: u64,
        stop: CancellationToken,
    ) -> Result<Addr<ShardConsumer>, SpawnError> {
        let s = &self.source;
        let local = self
            .local_id(shard)
            .ok_or_else(|| SpawnError::ShardIdTooLarge {
                project: s.project.clone(),
                logstore: s.logstore.clone(),
                shard,
            })?;
        let shard_stats = Arc::new(ShardStats::default());
        shard_stats
            .epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
        let provenance = Arc::new(Provenance {
            project: s.project.as_str().into(),
            logstore: s.logstore.as_str().into(),
            shard,
            epoch,
            source: match self.reader {
                SourceReader::Sls(_) => SourceKind::Sls,
                SourceReader::S3(_) => SourceKind::S3,
            },
        });
        *shard_stats.of.lock() = Some(provenance.clone());
        self.stats.shards.lock().insert(local, shard_stats.clone());
        let reader = match (&self.reader, partition) {
            (SourceReader::S3(listing), Some(p)) => ShardReader::S3 {
                listing: listing.clone(),
                partition: p.into(),
            },
            (SourceReader::S3(listing), None) => {
                // A shard of an S3 source always has a partition; a state
                // without one is from a bug, said loudly, read as nothing.
                tracing::error!(shard, "an S3 source's shard without a partition prefix");
                ShardReader::S3 {
                    listing: listing.clone(),
                    partition: "\u{0}no-partition/".into(),
                }
            }
            (SourceReader::Sls(client), _) => ShardReader::Sls(client.clone()),
        };
        let consumer = ShardConsumer::new(
            shard,
            readonly,
            provenance,
            reader,
            self.settings.clone(),
            self.enricher.clone(),
            self.sinks.clone(),
            self.dead_letters.clone(),
            store,
            shard_stats,
            start,
            stop,
        );
        let addr = ShardConsumer::start_in_arbiter(&self.arbiter, move |_| consumer);
        self.consumers.lock().insert(
            local,
            RunningConsumer {
                project: s.project.as_str().into(),
                logstore: s.logstore.as_str().into(),
                shard,
                addr: addr.clone(),
            },
        );
        Ok(addr)
    }

    /// Lists the shards and starts a consumer for each new one (no
    /// cluster); a running consumer whose shard turned read-only is told so.
    pub async fn rescan(&self) -> Result<(), SpawnError> {
        let client = match &self.reader {
            SourceReader::Sls(c) => c,
            SourceReader::S3(listing) => {
                let listing = listing.clone();
                return self
                    .rescan_partitions(&listing)
                    .await
                    .map_err(|error| SpawnError::S3 {
                        source_name: self.source.logstore.clone(),
                        error,
                    });
            }
        };
        let s = &self.source;
        // Shards found after the first listing are split or merge children.
        let first_listing = !self.listed.load(std::sync::atomic::Ordering::Relaxed);
        for shard in client.list_shards(&s.project, &s.logstore).await? {
            let Some(local) = self.local_id(shard.shard_id) else {
                tracing::error!(project = %s.project, logstore = %s.logstore, shard = shard.shard_id, "an SLS shard id too large to be given a consumer number; not read");
                continue;
            };
            let running = self.consumers.lock().get(&local).cloned();
            if let Some(consumer) = running {
                if shard.status == ShardStatus::ReadOnly {
                    consumer.addr.do_send(MarkReadOnly);
                }
                continue;
            }
            let readonly = shard.status == ShardStatus::ReadOnly;
            let start = self
                .start_cursor(shard.shard_id, None, true, !first_listing)
                .await?;
            self.consumer(
                shard.shard_id,
                None,
                readonly,
                start,
                Arc::new(self.store.clone()),
                0,
                self.stop.child_token(),
            )?;
        }
        self.listed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Without a cluster: finds the trail's partitions and consumes each new one.
    async fn rescan_partitions(&self, listing: &S3Listing) -> Result<(), AwsError> {
        for prefix in listing.discover().await? {
            let shard = {
                let mut local = self.local_partitions.lock();
                if local.contains_key(&prefix) {
                    continue;
                }
                let n = PARTITION_BASE + local.len() as u32;
                local.insert(prefix.clone(), n);
                n
            };
            let start = self
                .start_cursor(shard, Some(&prefix), true, false)
                .await
                .unwrap_or_else(|_| listing.start_cursor(&prefix));
            tracing::info!(source = %self.source.logstore, partition = %prefix, shard, "consuming a partition");
            // A partition's number is the node's own: it always has one.
            let _ = self.consumer(
                shard,
                Some(&prefix),
                false,
                start,
                Arc::new(self.store.clone()),
                0,
                self.stop.child_token(),
            );
        }
        self.listed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Lists the shards again every `every` until the node stops: splits get
    /// consumers, shards turned read-only are read to their end.
    pub fn keep_rescanning(self: Arc<Self>, every: Duration) {
        actix::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = self.stop.cancelled() => return,
                }
                if let Err(e) = self.rescan().await {
                    tracing::warn!(error = %e, "listing shards failed");
                }
            }
        });
    }

    /// Where a shard with no checkpoint of its own starts: the local file
    /// (`local`, no cluster), the SLS consumer group, then `source.start` —
    /// or, for a split or merge `child`, its beginning: `source.start`
    /// applies to the shards the trail had when Trail first listed it, and
    /// a child's first events were written before anyone listed it.
    ///
    /// A partition starts at its local checkpoint (`local`) or where the
    /// source's `start` says.
    pub async fn start_cursor(
        &self,
        shard: u32,
        partition: Option<&str>,
        local: bool,
        child: bool,
    ) -> Result<Cursor, SpawnError> {
        let s = &self.source;
        let client = match (&self.reader, partition) {
            (SourceReader::Sls(c), _) => c,
            (SourceReader::S3(listing), Some(p)) => {
                let saved = self
                    .store
                    .get(&CheckpointStore::partition_key(&s.logstore, p))
                    .filter(|_| local);
                return Ok(match saved {
                    Some(saved) => Cursor::new(saved.cursor),
                    None => listing.start_cursor(p),
                });
            }
            (SourceReader::S3(_), None) => {
                return Err(SpawnError::NoPartition {
                    shard,
                    source_name: s.logstore.clone(),
                })
            }
        };
        if let Some(saved) = self
            .store
            .get(&CheckpointStore::key(&s.project, &s.logstore, shard))
            .filter(|_| local)
        {
            return Ok(Cursor::new(saved.cursor));
        }
        if let Some(group) = &s.consumer_group {
            match client
                .get_checkpoints(&s.project, &s.logstore, group, Some(shard))
                .await
            {
                Ok(cps) => {
                    if let Some(cp) = cps
                        .into_iter()
                        .find(|c| c.shard == shard && !c.checkpoint.is_empty())
                    {
                        tracing::info!(shard, "starting from the SLS consumer group's checkpoint");
                        return Ok(Cursor::new(cp.checkpoint));
                    }
                }
                Err(e) => {
                    tracing::warn!(shard, error = %e, "reading the consumer group checkpoint failed")
                }
            }
        }
        let position = if child {
            CursorPosition::Begin
        } else {
            s.start
        };
        Ok(client
            .get_cursor(&s.project, &s.logstore, shard, position)
            .await?)
    }
}
