//! Batching frequent writes into raft: checkpoints (one `Commit` per node
//! per `commit_interval`, each entry carrying its epoch) and tags fetched by
//! this node (one `PutTags` per 500 ms).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::types::{Checkpoint, CheckpointCommit, Command, NodeId, ShardKey, TagRecord};
use super::Cluster;
use crate::clock::unix_ms;

/// Collects the latest checkpoint per shard and commits them in batches.
#[derive(Clone)]
pub struct CheckpointCommitter {
    node: NodeId,
    pending: Arc<Mutex<BTreeMap<ShardKey, (u64, Checkpoint)>>>,
    /// Shards whose commits the state machine refused (fenced), for the pipeline.
    refused: Arc<Mutex<Vec<(ShardKey, u64)>>>,
    pub commits: Arc<AtomicU64>,
    pub refused_total: Arc<AtomicU64>,
}

impl CheckpointCommitter {
    pub(crate) fn new(node: NodeId) -> Self {
        CheckpointCommitter {
            node,
            pending: Arc::default(),
            refused: Arc::default(),
            commits: Arc::default(),
            refused_total: Arc::default(),
        }
    }

    /// Records a shard's checkpoint under `epoch`; committed with the next batch.
    pub fn save(&self, shard: ShardKey, epoch: u64, checkpoint: Checkpoint) {
        self.pending.lock().insert(shard, (epoch, checkpoint));
    }

    /// Drops a shard's pending checkpoint (it was handed over with its final cursor).
    pub fn forget(&self, shard: &ShardKey) {
        self.pending.lock().remove(shard);
    }

    /// Takes the (shard, epoch) pairs refused since the last call.
    pub fn take_refused(&self) -> Vec<(ShardKey, u64)> {
        std::mem::take(&mut *self.refused.lock())
    }

    pub(crate) async fn run(self, cluster: Cluster) {
        let every = cluster.settings().commit_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = cluster.inner.stop.cancelled() => return,
            }
            self.flush(&cluster).await;
        }
    }

    async fn flush(&self, cluster: &Cluster) {
        let batch: BTreeMap<ShardKey, (u64, Checkpoint)> =
            std::mem::take(&mut *self.pending.lock());
        if batch.is_empty() {
            return;
        }
        let checkpoints: Vec<CheckpointCommit> = batch
            .iter()
            .map(|(k, (epoch, c))| CheckpointCommit {
                shard: k.clone(),
                epoch: *epoch,
                checkpoint: c.clone(),
            })
            .collect();
        match cluster
            .write(Command::Commit {
                node: self.node,
                checkpoints,
            })
            .await
        {
            Ok(reply) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                if !reply.refused.is_empty() {
                    self.refused_total
                        .fetch_add(reply.refused.len() as u64, Ordering::Relaxed);
                    let mut r = self.refused.lock();
                    for k in reply.refused {
                        let epoch = batch.get(&k).map(|(e, _)| *e).unwrap_or(0);
                        tracing::warn!(shard = %k, epoch, "checkpoint refused: this node no longer holds the shard at that epoch");
                        r.push((k, epoch));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, shards = batch.len(), "committing checkpoints failed; retrying with the next batch");
                let mut p = self.pending.lock();
                for (k, v) in batch {
                    p.entry(k).or_insert(v);
                }
            }
        }
    }
}

/// Tags this node fetched from the clouds, shared with every node through raft.
#[derive(Clone, Default)]
pub struct TagPublisher {
    pending: Arc<Mutex<Vec<(String, TagRecord)>>>,
    /// Cloud entries older than this are dropped from the replicated tier
    /// (by the leader: `tag_expiry`).
    pub max_age_ms: Arc<AtomicU64>,
    /// Cloud entries without tags ("no tags", "no such resource"): sooner.
    pub negative_max_age_ms: Arc<AtomicU64>,
}

impl TagPublisher {
    pub fn publish(&self, arn: &str, tags: BTreeMap<String, String>) {
        let mut p = self.pending.lock();
        if p.len() < 100_000 {
            p.push((
                arn.to_string(),
                TagRecord {
                    tags,
                    origin: "cloud".into(),
                    updated_ms: unix_ms(),
                },
            ));
        }
    }

    pub(crate) async fn run(self, cluster: Cluster) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = cluster.inner.stop.cancelled() => return,
            }
            let batch = std::mem::take(&mut *self.pending.lock());
            if batch.is_empty() {
                continue;
            }
            // Expiry is the leader's (`tag_expiry`): applying a put never
            // scans the tier.
            // ~50 KB an entry: see `max_payload_entries` in `cluster`.
            for chunk in batch.chunks(250) {
                if let Err(e) = cluster
                    .write(Command::PutTags {
                        tags: chunk.to_vec(),
                        expire_before_ms: 0,
                    })
                    .await
                {
                    tracing::warn!(error = %e, "sharing fetched tags failed; this node keeps them");
                    break;
                }
            }
        }
    }
}
