//! The pipeline under a cluster: this node consumes the shards the
//! replicated state assigns it, under their epochs. (The cluster drives the
//! pipeline here; the pipeline never sees the cluster.)
//!
//! The [`Reconciler`] watches the applied [`Assignments`] and makes the
//! running consumers match: start a consumer for each shard this node owns
//! (at the committed checkpoint), stop at once any whose shard moved away or
//! whose epoch changed (fenced), and for a shard being revoked drain it:
//! stop pulling, wait for the sinks to acknowledge what is in flight, then
//! release it through raft with the final cursor, so the next owner starts
//! exactly there (no duplicates). Checkpoints go to raft through the
//! cluster's committer, each carrying the consumer's epoch.
//!
//! Standbys are warm in that every node holds the replicated checkpoint of
//! every shard and a ready SLS client: taking over is one raft commit and
//! one PullLogs away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_ms;
use crate::cluster::types::CheckpointCommit;
use crate::cluster::{
    Assignments, Checkpoint, CheckpointCommitter, Cluster, Command, NodeLive, ShardKey, ShardLive,
    ShardPhase, ShardSource, ShardState, SourceShards,
};
use crate::pipeline::checkpoint::{CheckpointSink, Saved, StoreError};
use crate::pipeline::s3_listing::S3Listing;
use crate::pipeline::shard_consumer::{
    EndEpoch, MarkReadOnly, Progress, ShardConsumer, Stop, StopPulling, Unsettled,
};
use crate::pipeline::{PipelineStats, RunningConsumer, SourceReader, Spawner};
use crate::sls::{Cursor, ShardStatus, SlsClient};
use crate::tags::TagCache;

/// How long a revoked shard may take to drain before its epoch is ended here
/// (sinks give up what they hold) and it is released. `cluster.revoke_timeout_ms`
/// is validated against it (config.rs): the forced move must come later.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sinks may take to give up a shard's parts once its epoch ended.
/// They race the fence, so this is a bound for the unexpected.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A consumer's checkpoints, committed through raft under its epoch.
struct EpochCheckpoints {
    committer: CheckpointCommitter,
    shard: ShardKey,
    epoch: u64,
    /// Set when the consumer is stopped: a last save after that is not sent.
    closed: AtomicBool,
}

impl CheckpointSink for EpochCheckpoints {
    fn save(&self, _key: &str, saved: Saved) -> Result<(), StoreError> {
        if !self.closed.load(Ordering::Relaxed) {
            self.committer.save(
                self.shard.clone(),
                self.epoch,
                Checkpoint {
                    cursor: saved.cursor,
                    cursor_time: saved.cursor_time,
                    saved_ms: unix_ms(),
                },
            );
        }
        Ok(())
    }

    fn eager(&self) -> bool {
        true
    }
}

struct Running {
    addr: Addr<ShardConsumer>,
    epoch: u64,
    checkpoints: Arc<EpochCheckpoints>,
    stop: CancellationToken,
    draining: bool,
    finish_sent: bool,
    /// Told that its shard turned read-only (split or merged).
    readonly: bool,
}

/// Keeps this node's consumers in line with the replicated assignments.
pub struct Reconciler {
    cluster: Cluster,
    /// One per source with shards (an SLS logstore, S3 trails read by
    /// listing); their shard numbers never meet (partitions are numbered
    /// from `PARTITION_BASE`), and they share the node's stats and consumers.
    spawners: Vec<Arc<Spawner>>,
    running: HashMap<u32, Running>,
    /// The key of each running shard, for heartbeats.
    keys: Arc<Mutex<HashMap<u32, ShardKey>>>,
}

/// Lists the source's shards for the leader.
struct SlsShards {
    client: SlsClient,
    project: String,
    logstore: String,
}

impl ShardSource for SlsShards {
    fn list(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<SourceShards, String>> + Send + '_>,
    > {
        Box::pin(async move {
            let shards = self
                .client
                .list_shards(&self.project, &self.logstore)
                .await
                .map_err(|e| e.to_string())?;
            Ok(SourceShards {
                project: self.project.clone(),
                logstore: self.logstore.clone(),
                shards: shards
                    .into_iter()
                    .map(|s| (s.shard_id, s.status == ShardStatus::ReadOnly))
                    .collect(),
                partitions: Vec::new(),
            })
        })
    }
}

/// Lists an S3 trail's partitions for the leader (from the listing's
/// background discovery: the leader never waits on S3).
struct S3Partitions {
    listing: Arc<S3Listing>,
    logstore: String,
}

impl ShardSource for S3Partitions {
    fn list(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<SourceShards, String>> + Send + '_>,
    > {
        Box::pin(async move {
            Ok(SourceShards {
                project: self.listing.project(),
                logstore: self.logstore.clone(),
                shards: Vec::new(),
                partitions: self.listing.partitions()?,
            })
        })
    }
}

/// What this node reports with each heartbeat.
fn live(stats: &PipelineStats, name: &str, keys: &Mutex<HashMap<u32, ShardKey>>) -> NodeLive {
    let now = unix_ms() / 1000;
    let rates = stats.rates.lock().clone();
    let mut errors = 0;
    let shards = stats
        .shards
        .lock()
        .iter()
        .map(|(id, s)| {
            errors +=
                s.pull_errors.load(Ordering::Relaxed) + s.dead_lettered.load(Ordering::Relaxed);
            let (state, lag) = s.live_view(now);
            ShardLive {
                shard: keys.lock().get(id).cloned().unwrap_or(ShardKey {
                    project: String::new(),
                    logstore: String::new(),
                    shard: *id,
                }),
                epoch: s.epoch.load(Ordering::Relaxed),
                pulled: s.pulled.load(Ordering::Relaxed),
                state: state.into(),
                lag_seconds: lag,
                events_per_second: rates.get(id).copied().unwrap_or(0.0),
                events: s.logs.load(Ordering::Relaxed),
            }
        })
        .collect();
    errors += stats
        .sinks
        .lock()
        .iter()
        .map(|h| h.stats.errors.load(Ordering::Relaxed))
        .sum::<u64>();
    NodeLive {
        name: name.into(),
        pid: std::process::id(),
        events_per_second: rates.values().sum(),
        errors,
        shards,
    }
}

/// Joins the node's tag cache to the replicated tier: what it fetches is
/// shared, what any node fetched (or the Tags API wrote) lands in its cache.
pub fn share_tags(cluster: &Cluster, tags: &TagCache, ttl_secs: u64, negative_ttl_secs: u64) {
    let publisher = cluster.tag_publisher().clone();
    publisher
        .max_age_ms
        .store(ttl_secs.saturating_mul(2000), Ordering::Relaxed);
    publisher
        .negative_max_age_ms
        .store(negative_ttl_secs.saturating_mul(1000), Ordering::Relaxed);
    if tags.is_remote() {
        tags.set_publisher(Arc::new(move |arn, t| publisher.publish(arn, t.clone())));
    }
    let cache = tags.clone();
    cluster.set_tag_hook(Arc::new(move |arn, rec| match rec {
        Some(r) => cache.put(arn, r.tags.clone()),
        None => cache.invalidate(arn),
    }));
}

impl Reconciler {
    /// Wires the node to the cluster and starts reconciling.
    /// `name` is the node's `[node] id`, reported with every heartbeat.
    ///
    /// `spawners` share the node's stats, consumers and stop token.
    pub fn start(cluster: Cluster, spawners: Vec<Arc<Spawner>>, name: String) {
        let Some(first) = spawners.first().cloned() else {
            return;
        };
        for spawner in &spawners {
            let s = &spawner.source;
            match &spawner.reader {
                SourceReader::Sls(client) => cluster.add_shard_source(Arc::new(SlsShards {
                    client: client.clone(),
                    project: s.project.clone(),
                    logstore: s.logstore.clone(),
                })),
                SourceReader::S3(listing) => cluster.add_shard_source(Arc::new(S3Partitions {
                    listing: listing.clone(),
                    logstore: s.logstore.clone(),
                })),
            }
        }
        let keys: Arc<Mutex<HashMap<u32, ShardKey>>> = Arc::default();
        {
            let stats = first.stats.clone();
            let keys = keys.clone();
            cluster.set_live_source(move || live(&stats, &name, &keys));
        }
        let r = Reconciler {
            cluster,
            spawners,
            running: HashMap::new(),
            keys,
        };
        actix::spawn(r.run());
    }

    /// The node's stats, consumers and stop token (every spawner shares them).
    fn node(&self) -> &Spawner {
        &self.spawners[0]
    }

    async fn run(mut self) {
        let mut rx = self.cluster.assignments();
        let stop = self.node().stop.clone();
        loop {
            let a = rx.borrow_and_update().clone();
            self.reconcile(&a).await;
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// The spawner of `k`'s source, if this node reads that source.
    fn spawner_of(&self, k: &ShardKey) -> Option<&Arc<Spawner>> {
        self.spawners
            .iter()
            .find(|sp| k.project == sp.source.project && k.logstore == sp.source.logstore)
    }

    /// The node's number for `k`'s consumer, if this node reads its source.
    fn local(&self, k: &ShardKey) -> Option<u32> {
        self.spawner_of(k)?.local_id(k.shard)
    }

    fn stop_now(&mut self, shard: u32, why: &str) {
        if let Some(r) = self.running.remove(&shard) {
            tracing::info!(shard, epoch = r.epoch, why, "stopping the shard's consumer");
            r.checkpoints.closed.store(true, Ordering::Relaxed);
            r.stop.cancel();
            r.addr.do_send(Stop);
            self.node().consumers.lock().remove(&shard);
            self.node().stats.shards.lock().remove(&shard);
            self.keys.lock().remove(&shard);
        }
    }

    async fn reconcile(&mut self, a: &Assignments) {
        let me = self.cluster.id();
        for (k, epoch) in self.cluster.committer().take_refused() {
            let Some(local) = self.local(&k) else {
                continue;
            };
            if self.running.get(&local).is_some_and(|r| r.epoch == epoch) {
                self.stop_now(local, "checkpoint refused: fenced");
            }
        }
        // Stop what is no longer ours (or not at this epoch).
        let stale: Vec<(u32, &'static str)> = self
            .running
            .iter()
            .filter_map(|(shard, r)| {
                let state = a
                    .shards
                    .iter()
                    .find(|(k, _)| self.local(k) == Some(*shard))
                    .map(|(_, s)| s);
                match state {
                    None => Some((*shard, "shard unknown")),
                    Some(s) if s.owner != Some(me) => Some((*shard, "shard moved away")),
                    Some(s) if s.epoch != r.epoch => Some((*shard, "epoch changed")),
                    Some(s) if s.phase == ShardPhase::Done => Some((*shard, "shard done")),
                    _ => None,
                }
            })
            .collect();
        for (shard, why) in stale {
            self.stop_now(shard, why);
        }
        for (k, s) in &a.shards {
            if s.owner != Some(me) {
                continue;
            }
            let Some(local) = self.local(k) else {
                continue;
            };
            match (s.phase, self.running.get_mut(&local)) {
                // Only under a valid lease: the assignment is then at least
                // as new as what the leader had committed.
                (ShardPhase::Running, None) if self.cluster.lease().valid() => {
                    self.take(k, s).await
                }
                (ShardPhase::Running, Some(r)) => {
                    if s.readonly && !r.readonly {
                        // Split or merged: read it to its end, then `Finish`.
                        r.readonly = true;
                        r.addr.do_send(MarkReadOnly);
                    }
                    let finished = self.spawners[0]
                        .stats
                        .shards
                        .lock()
                        .get(&local)
                        .is_some_and(|st| st.finished.load(Ordering::Relaxed) == 1);
                    if finished && !r.finish_sent {
                        r.finish_sent = true;
                        let cluster = self.cluster.clone();
                        let (shard, epoch) = (k.clone(), r.epoch);
                        let addr = r.addr.clone();
                        let cursor_time = self.cursor_time(local);
                        tokio::spawn(async move {
                            let cursor = addr.send(Progress).await.map(|(_, c)| c).ok();
                            let checkpoint = cursor.map(|cursor| Checkpoint {
                                cursor,
                                cursor_time,
                                saved_ms: unix_ms(),
                            });
                            if let Err(e) = cluster
                                .write(Command::Finish {
                                    shard: shard.clone(),
                                    epoch,
                                    checkpoint,
                                })
                                .await
                            {
                                tracing::warn!(%shard, error = %e, "recording a finished shard failed");
                            }
                        });
                    }
                }
                (ShardPhase::Revoking, Some(r)) if !r.draining => {
                    r.draining = true;
                    let cluster = self.cluster.clone();
                    let (shard, epoch, addr) = (k.clone(), r.epoch, r.addr.clone());
                    let checkpoints = r.checkpoints.clone();
                    let stats = self.node().stats.clone();
                    tokio::spawn(async move {
                        hand_over(&cluster, &shard, local, epoch, &addr, &checkpoints, &stats)
                            .await;
                    });
                }
                _ => {}
            }
        }
    }

    /// Where a shard with no checkpoint anywhere starts, resolved once: a
    /// split or merge child at its beginning, any other shard as configured
    /// (`source.start`, the SLS consumer group). The cursor is committed
    /// through raft under this epoch before the first delivery, so a later
    /// owner (after a crash, say) starts there too instead of resolving
    /// `end` or a time again and skipping what came in between.
    async fn first_start(&self, k: &ShardKey, s: &ShardState) -> Option<Cursor> {
        let spawner = self.spawner_of(k)?;
        let cursor = match spawner
            .start_cursor(k.shard, s.partition.as_deref(), false, s.child)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(shard = k.shard, error = %e, "no start cursor yet; will retry");
                return None;
            }
        };
        let commit = Command::Commit {
            node: self.cluster.id(),
            checkpoints: vec![CheckpointCommit {
                shard: k.clone(),
                epoch: s.epoch,
                checkpoint: Checkpoint {
                    cursor: cursor.to_string(),
                    cursor_time: None,
                    saved_ms: unix_ms(),
                },
            }],
        };
        match self.cluster.write(commit).await {
            Ok(r) if r.refused.is_empty() => {
                tracing::info!(shard = k.shard, epoch = s.epoch, cursor = %cursor, child = s.child, "start cursor resolved and committed");
                Some(cursor)
            }
            Ok(_) => {
                tracing::warn!(
                    shard = k.shard,
                    epoch = s.epoch,
                    "start cursor refused: the shard moved meanwhile"
                );
                None
            }
            Err(e) => {
                tracing::warn!(shard = k.shard, error = %e, "committing the start cursor failed; will retry");
                None
            }
        }
    }

    fn cursor_time(&self, shard: u32) -> Option<u32> {
        self.node()
            .stats
            .shards
            .lock()
            .get(&shard)
            .map(|s| s.checkpoint_time.load(Ordering::Relaxed) as u32)
            .filter(|t| *t > 0)
    }

    async fn take(&mut self, k: &ShardKey, s: &ShardState) {
        let (epoch, readonly) = (s.epoch, s.readonly);
        let start = match &s.checkpoint {
            Some(c) => Cursor::new(c.cursor.clone()),
            None => match self.first_start(k, s).await {
                Some(c) => c,
                None => return, // retried at the next reconcile
            },
        };
        tracing::info!(shard = k.shard, epoch, cursor = %start, "taking the shard");
        let checkpoints = Arc::new(EpochCheckpoints {
            committer: self.cluster.committer().clone(),
            shard: k.clone(),
            epoch,
            closed: AtomicBool::new(false),
        });
        let (Some(spawner), Some(local)) = (self.spawner_of(k).cloned(), self.local(k)) else {
            return;
        };
        let stop = spawner.stop.child_token();
        let addr = match spawner.consumer(
            k.shard,
            s.partition.as_deref(),
            readonly,
            start,
            checkpoints.clone(),
            epoch,
            stop.clone(),
        ) {
            Ok(addr) => addr,
            Err(e) => {
                tracing::error!(%k, error = %e, "the shard cannot be consumed here");
                return;
            }
        };
        self.keys.lock().insert(local, k.clone());
        self.running.insert(
            local,
            Running {
                addr,
                epoch,
                checkpoints,
                stop,
                draining: false,
                finish_sent: false,
                readonly,
            },
        );
    }
}

/// A graceful hand-over: stop pulling, let the sinks acknowledge what is in
/// flight, release the shard with its final cursor (the new owner starts
/// there), stop.
/// `local` is the node's number for the shard's consumer.
#[allow(clippy::too_many_arguments)]
async fn hand_over(
    cluster: &Cluster,
    shard: &ShardKey,
    local: u32,
    epoch: u64,
    addr: &Addr<ShardConsumer>,
    checkpoints: &EpochCheckpoints,
    stats: &PipelineStats,
) {
    let started = Instant::now();
    let _ = addr.send(StopPulling).await;
    let mut cursor = None;
    loop {
        match addr.send(Progress).await {
            Ok((in_flight, c)) => {
                cursor = Some(c);
                if in_flight == 0 {
                    break;
                }
            }
            Err(_) => break,
        }
        if started.elapsed() > DRAIN_TIMEOUT {
            // The sinks cannot deliver in time (a destination refusing, say).
            // Never release with parts in flight: they would land after the
            // next owner's. End the epoch here first: every sink gives its
            // parts up unsent, and only then is the shard released at the
            // last cursor every sink acknowledged.
            tracing::warn!(%shard, epoch, "drain timed out: ending the epoch here before releasing");
            if !end_epoch(addr).await {
                tracing::warn!(%shard, epoch, "sinks still hold parts of the shard: not releasing; the leader's forced revoke takes it over");
                checkpoints.closed.store(true, Ordering::Relaxed);
                return;
            }
            cursor = addr.send(Progress).await.ok().map(|(_, c)| c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    checkpoints.closed.store(true, Ordering::Relaxed);
    checkpoints.committer.forget(shard);
    let cursor_time = stats
        .shards
        .lock()
        .get(&local)
        .map(|s| s.checkpoint_time.load(Ordering::Relaxed) as u32)
        .filter(|t| *t > 0);
    let checkpoint = cursor.map(|cursor| Checkpoint {
        cursor,
        cursor_time,
        saved_ms: unix_ms(),
    });
    match cluster
        .write(Command::Release {
            shard: shard.clone(),
            epoch,
            checkpoint,
            at_ms: unix_ms(),
        })
        .await
    {
        Ok(r) if r.ok => {
            tracing::info!(%shard, epoch, drained_ms = started.elapsed().as_millis() as u64, "shard handed over")
        }
        Ok(r) => tracing::warn!(%shard, epoch, message = %r.message, "release refused"),
        Err(e) => {
            tracing::warn!(%shard, epoch, error = %e, "release failed; the leader forces the move after its timeout")
        }
    }
}

/// Ends a consumer's epoch on this node and waits (a bounded while) until
/// every sink settled its parts; false if some sink still holds one.
async fn end_epoch(addr: &Addr<ShardConsumer>) -> bool {
    let _ = addr.send(EndEpoch).await;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match addr.send(Unsettled).await {
            Ok(0) | Err(_) => return true,
            Ok(_) if Instant::now() >= deadline => return false,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// On a graceful stop: hands every owned shard over (drained, final cursor
/// committed), so the others take them at once and re-read nothing.
pub async fn release_all(
    cluster: &Cluster,
    consumers: &Mutex<HashMap<u32, RunningConsumer>>,
    grace: Duration,
) {
    let me = cluster.id();
    // First: no new shards for a node on its way out.
    if let Err(e) = cluster.write(Command::Leaving { id: me }).await {
        tracing::warn!(error = %e, "could not announce leaving; shards may be given to this node meanwhile");
    }
    let a = cluster.assignments().borrow().clone();
    let consumers: Vec<RunningConsumer> = consumers.lock().values().cloned().collect();
    let deadline = Instant::now() + grace;
    // Every shard drains at once, against one deadline: a slow sink for one
    // shard must not eat the others' grace.
    let owned: Vec<_> = consumers
        .into_iter()
        .filter_map(|c| {
            a.shards
                .iter()
                .find(|(k, s)| {
                    k.shard == c.shard
                        && *k.logstore == *c.logstore
                        && *k.project == *c.project
                        && s.owner == Some(me)
                })
                .map(|(k, s)| (k.clone(), s.clone(), c.addr))
        })
        .collect();
    let handed = futures_util::future::join_all(
        owned
            .iter()
            .map(|(k, s, addr)| release_one(cluster, k, s, addr, deadline)),
    )
    .await
    .into_iter()
    .filter(|ok| *ok)
    .count();
    tracing::info!(shards = handed, "shards handed over; leaving");
}

/// Drains one shard until `deadline`, releases it with its final cursor and
/// stops its consumer; true if released.
async fn release_one(
    cluster: &Cluster,
    k: &ShardKey,
    s: &ShardState,
    addr: &Addr<ShardConsumer>,
    deadline: Instant,
) -> bool {
    let _ = addr.send(StopPulling).await;
    let mut cursor = None;
    let mut drained = false;
    while Instant::now() < deadline {
        match addr.send(Progress).await {
            Ok((n, c)) => {
                cursor = Some(c);
                if n == 0 {
                    drained = true;
                    break;
                }
            }
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !drained {
        // As in a hand-over: nothing of this epoch may land after the
        // release, so the sinks give the shard's parts up first.
        if !end_epoch(addr).await {
            tracing::warn!(shard = %k, "sinks still hold parts of the shard: not releasing; the leader's forced revoke takes it over");
            addr.do_send(Stop);
            return false;
        }
        cursor = addr.send(Progress).await.ok().map(|(_, c)| c);
    }
    let checkpoint = cursor.map(|cursor| Checkpoint {
        cursor,
        cursor_time: s.checkpoint.as_ref().and_then(|c| c.cursor_time),
        saved_ms: unix_ms(),
    });
    let released = match cluster
        .write(Command::Release {
            shard: k.clone(),
            epoch: s.epoch,
            checkpoint,
            at_ms: unix_ms(),
        })
        .await
    {
        Ok(r) if r.ok => true,
        Ok(r) => {
            tracing::warn!(shard = %k, message = %r.message, "release refused");
            false
        }
        Err(e) => {
            tracing::warn!(shard = %k, error = %e, "release failed");
            false
        }
    };
    addr.do_send(Stop);
    released
}
