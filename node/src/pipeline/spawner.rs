//! Making shard consumers: one `ShardConsumer` per shard, wired to the
//! enricher pool, the sinks and a checkpoint sink, on the consumers'
//! arbiter. Without a cluster the [`Spawner`] itself lists the shards and
//! consumes them all; under a cluster the reconciler (`cluster::assignment`)
//! asks it for the shards the replicated state assigns this node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::pipeline::checkpoint::{CheckpointSink, CheckpointStore};
use crate::pipeline::enricher::Enricher;
use crate::pipeline::shard_consumer::{ConsumerSettings, MarkReadOnly, ShardConsumer, ShardStats};
use crate::pipeline::stats::PipelineStats;
use crate::record::{Provenance, SourceKind};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::SinkHandle;
use crate::sls::{Cursor, CursorPosition, ShardStatus, SlsClient, SlsError};

/// The running consumers by shard.
pub type Consumers = Arc<Mutex<HashMap<u32, Addr<ShardConsumer>>>>;

/// The logstore this node consumes (`[source]`).
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
    pub client: SlsClient,
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
}

impl Spawner {
    /// Starts a consumer for `shard` at `start`, saving checkpoints to `store`.
    pub fn consumer(
        &self,
        shard: u32,
        readonly: bool,
        start: Cursor,
        store: Arc<dyn CheckpointSink>,
        epoch: u64,
        stop: CancellationToken,
    ) -> Addr<ShardConsumer> {
        let s = &self.source;
        let shard_stats = Arc::new(ShardStats::default());
        shard_stats
            .epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
        self.stats.shards.lock().insert(shard, shard_stats.clone());
        let provenance = Arc::new(Provenance {
            project: s.project.as_str().into(),
            logstore: s.logstore.as_str().into(),
            shard,
            epoch,
            source: SourceKind::Sls,
        });
        let consumer = ShardConsumer::new(
            shard,
            readonly,
            provenance,
            self.client.clone(),
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
        self.consumers.lock().insert(shard, addr.clone());
        addr
    }

    /// Lists the shards and starts a consumer for each new one (no
    /// cluster); a running consumer whose shard turned read-only is told so.
    pub async fn rescan(&self) -> Result<(), SlsError> {
        let s = &self.source;
        // Shards found after the first listing are split or merge children.
        let first_listing = !self.listed.load(std::sync::atomic::Ordering::Relaxed);
        for shard in self.client.list_shards(&s.project, &s.logstore).await? {
            let running = self.consumers.lock().get(&shard.shard_id).cloned();
            if let Some(consumer) = running {
                if shard.status == ShardStatus::ReadOnly {
                    consumer.do_send(MarkReadOnly);
                }
                continue;
            }
            let readonly = shard.status == ShardStatus::ReadOnly;
            let start = self
                .start_cursor(shard.shard_id, true, !first_listing)
                .await?;
            self.consumer(
                shard.shard_id,
                readonly,
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
    pub async fn start_cursor(
        &self,
        shard: u32,
        local: bool,
        child: bool,
    ) -> Result<Cursor, SlsError> {
        let s = &self.source;
        if let Some(saved) = self
            .store
            .get(&CheckpointStore::key(&s.project, &s.logstore, shard))
            .filter(|_| local)
        {
            return Ok(Cursor::new(saved.cursor));
        }
        if let Some(group) = &s.consumer_group {
            match self
                .client
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
        self.client
            .get_cursor(&s.project, &s.logstore, shard, position)
            .await
    }
}
