//! The `ShardConsumer`: one per owned shard. It pulls with bounded credits,
//! has each batch enriched, hands the parts to the sinks in order, and moves
//! the shard's checkpoint only past batches every sink acknowledged.
//!
//! * Credits: a batch in flight holds a permit of the shard's semaphore
//!   (`in_flight_batches`); it returns when the batch leaves the tracker.
//!   Memory is bounded by credits × batch size, whatever the backlog; and
//!   for the node as a whole by its [`InFlightBudget`]: an answer takes its
//!   decompressed size from it before it is decoded and gives it back with
//!   the credit.
//! * Pulls back off on empty reads (growing to `empty_backoff_max`), on quota
//!   errors and on 5xx (the client retries first). A body that does not decode
//!   is pulled again; if it still does not, it is dead-lettered whole and the
//!   shard moves on.
//! * A read-only shard (split or merged) is read to its end, its final
//!   checkpoint committed, and the consumer stops.
//! * Any failure (a sink reporting a part lost, the pull loop dying) restarts
//!   the shard's chain from its last checkpoint, with capped backoff.
//! * Checkpoints are saved locally at most every `checkpoint_interval` (and on
//!   stop), and mirrored to the SLS consumer group every `mirror_interval`.

mod s3;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::fence::Fence;
use crate::metrics::{Histogram, DELAY_BUCKETS};
use crate::pipeline::budget::{Credit, InFlightBudget, ShardBudget};
use crate::pipeline::checkpoint::{CheckpointSink, CheckpointStore, Saved, Tracker};
use crate::pipeline::enrich::EnrichStats;
use crate::pipeline::enricher::{Enrich, EnrichReply, Enricher};
use crate::pipeline::s3_listing::S3Listing;
use crate::record::{DeadLetter, EventSlab, Provenance};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::{Ack, BatchAck, Deliver, SinkHandle};
use crate::sls::{Compression, Cursor, ErrorClass, PullRequest, SlsClient, SlsError};

/// What a consumer reads: an SLS shard, or a partition of an S3 trail.
#[derive(Clone)]
pub enum ShardReader {
    Sls(SlsClient),
    S3 {
        listing: Arc<S3Listing>,
        /// The partition's key prefix.
        partition: Arc<str>,
    },
}

/// How a shard is consumed (`[source]` in the config).
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The most log groups one PullLogs asks for.
    pub pull_count: u32,
    /// The size a pull aims at: the count adapts to the groups' size, so a
    /// batch stays near this many decompressed bytes whatever producers do.
    pub pull_target_bytes: usize,
    /// The largest PullLogs answer read (raw or on the wire).
    pub max_pull_bytes: usize,
    pub in_flight_batches: usize,
    pub compression: Compression,
    pub empty_backoff_max: Duration,
    pub checkpoint_interval: Duration,
    /// The SLS consumer group Trail mirrors its checkpoints to.
    pub mirror_group: Option<String>,
    pub mirror_interval: Duration,
    /// No pulls and no deliveries while this fence is lost (self-fencing;
    /// never lost without a cluster).
    pub fence: Fence,
    /// The node's bytes in flight, shared by all its shards.
    pub budget: Arc<InFlightBudget>,
}

/// What a shard did, for metrics, the demo and status.
#[derive(Debug)]
pub struct ShardStats {
    pub groups: AtomicU64,
    pub logs: AtomicU64,
    pub raw_bytes: AtomicU64,
    pub passed: AtomicU64,
    pub tagged: AtomicU64,
    pub tag_pending: AtomicU64,
    pub tag_unavailable: AtomicU64,
    pub tag_no_account: AtomicU64,
    pub tag_invalidations: AtomicU64,
    /// Tagged events by the field that named their first tagged resource,
    /// in [`crate::event::ResourceField::ALL`]'s order.
    pub tagged_by: [AtomicU64; 3],
    /// Events without `eventRW` given an inferred `Read` / `Write`.
    pub rw_inferred: [AtomicU64; 2],
    pub dead_lettered: AtomicU64,
    pub pull_errors: AtomicU64,
    pub restarts: AtomicU64,
    pub dropped: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Receive time (unix s) at the committed checkpoint; 0 if unknown.
    pub checkpoint_time: AtomicU64,
    /// 1 once caught up with the shard's end at least once since the last pull with data.
    pub caught_up: AtomicU64,
    /// 1 when a read-only shard is finished.
    pub finished: AtomicU64,
    pub committed: Mutex<String>,
    /// When (unix s) the committed cursor last moved.
    pub committed_at: AtomicU64,
    /// The lease epoch the shard is consumed under (0 without a cluster).
    pub epoch: AtomicU64,
    /// At least one pull answered since the consumer started.
    pub pulled: AtomicBool,
    /// Pulls held back because the node's lease had expired.
    pub fenced_waits: AtomicU64,
    /// PullLogs latency (request to answer, including the client's retries), seconds.
    pub pull_latency: Histogram,
    /// End-to-end delay: the SLS receive time of a batch to the moment every
    /// sink acknowledged it and the checkpoint moved past it, seconds.
    pub delivery_delay: Histogram,
    /// Which shard of which source these are (the node keys them by its
    /// own consumer number, see `spawner::SLS_SOURCE_STRIDE`); set when the
    /// consumer is made.
    pub of: Mutex<Option<Arc<Provenance>>>,
}

impl Default for ShardStats {
    fn default() -> Self {
        ShardStats {
            groups: AtomicU64::default(),
            logs: AtomicU64::default(),
            raw_bytes: AtomicU64::default(),
            passed: AtomicU64::default(),
            tagged: AtomicU64::default(),
            tag_pending: AtomicU64::default(),
            tag_unavailable: AtomicU64::default(),
            tag_no_account: AtomicU64::default(),
            tag_invalidations: AtomicU64::default(),
            tagged_by: Default::default(),
            rw_inferred: Default::default(),
            dead_lettered: AtomicU64::default(),
            pull_errors: AtomicU64::default(),
            restarts: AtomicU64::default(),
            dropped: Mutex::default(),
            checkpoint_time: AtomicU64::default(),
            caught_up: AtomicU64::default(),
            finished: AtomicU64::default(),
            committed: Mutex::default(),
            committed_at: AtomicU64::default(),
            epoch: AtomicU64::default(),
            pulled: AtomicBool::default(),
            fenced_waits: AtomicU64::default(),
            pull_latency: Histogram::latency(),
            delivery_delay: Histogram::new(DELAY_BUCKETS),
            of: Mutex::default(),
        }
    }
}

impl ShardStats {
    /// The source's logstore (an S3 trail's name) and the shard's own
    /// number, for status and metric labels; `(None, id)` before it is set.
    pub fn name(&self, id: u32) -> (Option<Arc<str>>, u32) {
        match &*self.of.lock() {
            Some(p) => (Some(p.logstore.clone()), p.shard),
            None => (None, id),
        }
    }

    /// State and lag in seconds, as status shows them.
    pub fn live_view(&self, now_secs: u64) -> (&'static str, f64) {
        let caught_up = self.caught_up.load(Ordering::Relaxed) == 1;
        let t = self.checkpoint_time.load(Ordering::Relaxed);
        let lag = if caught_up || t == 0 {
            0
        } else {
            now_secs.saturating_sub(t)
        };
        let state = if self.finished.load(Ordering::Relaxed) == 1 {
            "done"
        } else if caught_up {
            "caught_up"
        } else {
            "consuming"
        };
        (state, lag as f64)
    }

    pub fn add(&self, s: &EnrichStats) {
        self.logs.fetch_add(s.logs, Ordering::Relaxed);
        self.raw_bytes.fetch_add(s.raw_bytes, Ordering::Relaxed);
        self.passed.fetch_add(s.passed, Ordering::Relaxed);
        self.tagged.fetch_add(s.tagged, Ordering::Relaxed);
        self.tag_pending.fetch_add(s.tag_pending, Ordering::Relaxed);
        self.tag_unavailable
            .fetch_add(s.tag_unavailable, Ordering::Relaxed);
        self.tag_invalidations
            .fetch_add(s.tag_invalidations, Ordering::Relaxed);
        self.tag_no_account
            .fetch_add(s.tag_no_account, Ordering::Relaxed);
        for (field, n) in &s.tagged_by {
            self.tagged_by[*field as usize].fetch_add(*n, Ordering::Relaxed);
        }
        self.rw_inferred[0].fetch_add(s.rw_inferred_read, Ordering::Relaxed);
        self.rw_inferred[1].fetch_add(s.rw_inferred_write, Ordering::Relaxed);
        self.dead_lettered
            .fetch_add(s.dead_lettered, Ordering::Relaxed);
        let mut d = self.dropped.lock();
        for (k, v) in &s.dropped {
            *d.entry(k).or_default() += v;
        }
    }
}

/// Everything a consumer is made of.
pub struct ShardConsumer {
    pub shard: u32,
    /// Set at start, or later by a shard rescan that finds the shard split or merged.
    readonly: Arc<AtomicBool>,
    pub provenance: Arc<Provenance>,
    pub reader: ShardReader,
    pub settings: Arc<ConsumerSettings>,
    pub enricher: Addr<Enricher>,
    pub sinks: Arc<[SinkHandle]>,
    pub dead_letters: Recipient<DeadLetters>,
    pub store: Arc<dyn CheckpointSink>,
    pub stats: Arc<ShardStats>,
    /// Where to start: the committed checkpoint.
    pub committed: Cursor,
    pub stop: CancellationToken,
    tracker: Tracker,
    committed_time: Option<u32>,
    dirty: bool,
    mirrored: Option<Cursor>,
    loop_stop: CancellationToken,
    next_seq: Arc<AtomicU64>,
    restarts: u32,
    read_only_end: Option<Cursor>,
    /// Bumped at each (re)start; messages of older pull loops are ignored.
    generation: u64,
    /// A restart is scheduled (the next loop starts once orphans settle).
    restarting: bool,
    /// Told to stop pulling for good (a hand-over, a shutdown, a finished
    /// read-only shard): no restart may start a loop again.
    drained: bool,
    /// This shard's part of the node's budget of bytes in flight (shared
    /// by its loops: orphans of a restarted loop count against it).
    budget: Arc<ShardBudget>,
}

impl ShardConsumer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shard: u32,
        readonly: bool,
        provenance: Arc<Provenance>,
        reader: ShardReader,
        settings: Arc<ConsumerSettings>,
        enricher: Addr<Enricher>,
        sinks: Arc<[SinkHandle]>,
        dead_letters: Recipient<DeadLetters>,
        store: Arc<dyn CheckpointSink>,
        stats: Arc<ShardStats>,
        start: Cursor,
        stop: CancellationToken,
    ) -> Self {
        *stats.committed.lock() = start.to_string();
        let budget = Arc::new(settings.budget.for_shard());
        ShardConsumer {
            budget,
            shard,
            readonly: Arc::new(AtomicBool::new(readonly)),
            provenance,
            reader,
            settings,
            enricher,
            sinks,
            dead_letters,
            store,
            stats,
            committed: start,
            stop,
            tracker: Tracker::default(),
            committed_time: None,
            dirty: false,
            mirrored: None,
            loop_stop: CancellationToken::new(),
            next_seq: Arc::new(AtomicU64::new(1)),
            restarts: 0,
            read_only_end: None,
            generation: 0,
            restarting: false,
            drained: false,
        }
    }

    fn key(&self) -> String {
        match &self.reader {
            ShardReader::Sls(_) => CheckpointStore::key(
                &self.provenance.project,
                &self.provenance.logstore,
                self.shard,
            ),
            // Partition numbers are local without a cluster: the prefix names it.
            ShardReader::S3 { partition, .. } => {
                CheckpointStore::partition_key(&self.provenance.logstore, partition)
            }
        }
    }

    fn start_loop(&mut self, ctx: &mut Context<Self>) {
        self.loop_stop = self.stop.child_token();
        self.generation += 1;
        let l = PullLoop {
            generation: self.generation,
            shard: self.shard,
            readonly: self.readonly.clone(),
            provenance: self.provenance.clone(),
            reader: self.reader.clone(),
            settings: self.settings.clone(),
            enricher: self.enricher.clone(),
            sinks: self.sinks.clone(),
            dead_letters: self.dead_letters.clone(),
            stats: self.stats.clone(),
            credits: Arc::new(Semaphore::new(self.settings.in_flight_batches.max(1))),
            budget: self.budget.clone(),
            me: ctx.address(),
            stop: self.loop_stop.clone(),
            next_seq: self.next_seq.clone(),
            fence: self.settings.fence.until(self.stop.clone()),
        };
        let cursor = self.committed.clone();
        let me = ctx.address();
        let generation = self.generation;
        actix::spawn(async move {
            if let Err(reason) = l.run(cursor).await {
                me.do_send(Failed(generation, reason));
            }
        });
    }

    fn persist(&mut self) {
        if !self.dirty {
            return;
        }
        let saved = Saved {
            cursor: self.committed.to_string(),
            updated: unix_now(),
            cursor_time: self.committed_time,
        };
        match self.store.save(&self.key(), saved) {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::error!(shard = self.shard, error = %e, "saving the checkpoint failed; will retry")
            }
        }
    }

    fn mirror(&mut self, ctx: &mut Context<Self>) {
        let Some(group) = self.settings.mirror_group.clone() else {
            return;
        };
        let ShardReader::Sls(client) = &self.reader else {
            return;
        };
        if self.mirrored.as_ref() == Some(&self.committed) {
            return;
        }
        let cursor = self.committed.clone();
        let client = client.clone();
        let p = self.provenance.clone();
        let shard = self.shard;
        ctx.spawn(
            async move {
                client.update_checkpoint(&p.project, &p.logstore, &group, shard, &cursor, None, true).await.map(|()| cursor)
            }
            .into_actor(self)
            .map(move |res, act, _| match res {
                Ok(cursor) => act.mirrored = Some(cursor),
                Err(e) => tracing::warn!(shard, error = %e, "mirroring the checkpoint to the SLS consumer group failed"),
            }),
        );
    }

    fn reached(&mut self, cursor: Cursor, cursor_time: Option<u32>, ctx: &mut Context<Self>) {
        self.committed = cursor;
        self.restarts = 0; // progress: the next restart backs off from the start
        if let Some(t) = cursor_time {
            // Every sink acknowledged everything up to here.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            self.stats
                .delivery_delay
                .observe((now - f64::from(t)).max(0.0));
            self.committed_time = cursor_time;
            self.stats
                .checkpoint_time
                .store(u64::from(cursor_time.unwrap_or(0)), Ordering::Relaxed);
        }
        *self.stats.committed.lock() = self.committed.to_string();
        self.stats.committed_at.store(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            Ordering::Relaxed,
        );
        self.dirty = true;
        if self.store.eager() {
            self.persist();
        }
        if self.read_only_end.as_ref() == Some(&self.committed) && self.tracker.in_flight() == 0 {
            self.finish(ctx);
        }
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(shard = self.shard, "read-only shard finished");
        self.persist();
        self.mirror(ctx);
        self.stats.finished.store(1, Ordering::Relaxed);
        self.drained = true;
        self.loop_stop.cancel();
    }

    fn restart(&mut self, reason: &str, ctx: &mut Context<Self>) {
        self.loop_stop.cancel();
        self.tracker.orphan_all();
        if self.restarting {
            return; // one restart at a time: the scheduled one reads from the checkpoint
        }
        self.restarting = true;
        self.restarts += 1;
        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        let pause = Duration::from_millis(500u64.saturating_mul(1 << self.restarts.min(7)))
            .min(Duration::from_secs(60));
        tracing::error!(shard = self.shard, %reason, ?pause, checkpoint = %self.committed, "restarting the shard from its checkpoint");
        ctx.run_later(pause, |act, ctx| act.resume(ctx));
    }

    /// Starts the next loop once sinks settled what the last one left with
    /// them: re-read batches never overtake their first copies.
    fn resume(&mut self, ctx: &mut Context<Self>) {
        if self.stop.is_cancelled() || self.drained {
            self.restarting = false;
            return;
        }
        if self.tracker.orphaned() > 0 {
            // A sink that never settles them (retrying through an outage)
            // stalls the shard here, as it would stall its credits.
            ctx.run_later(Duration::from_millis(50), |act, ctx| act.resume(ctx));
            return;
        }
        self.restarting = false;
        self.start_loop(ctx);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Actor for ShardConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Acks arrive at most once per sink per batch in flight.
        ctx.set_mailbox_capacity(self.settings.in_flight_batches * (self.sinks.len() + 2) + 16);
        tracing::info!(shard = self.shard, cursor = %self.committed, readonly = self.readonly.load(Ordering::Relaxed), "shard consumer started");
        self.start_loop(ctx);
        ctx.run_interval(self.settings.checkpoint_interval, |act, _| act.persist());
        ctx.run_interval(self.settings.mirror_interval, |act, ctx| act.mirror(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.loop_stop.cancel();
        self.persist();
    }
}

/// The pull loop registers a batch before its parts go out; it delivers
/// them only if the consumer accepted it (answers `false` once the loop was
/// stopped or replaced, so nothing reaches a sink after a hand-over's drain
/// saw the shard empty).
#[derive(Message)]
#[rtype(result = "bool")]
struct Track {
    generation: u64,
    seq: u64,
    next_cursor: Cursor,
    cursor_time: Option<u32>,
    parts: usize,
    credit: Credit,
}

impl Handler<Track> for ShardConsumer {
    type Result = bool;

    fn handle(&mut self, m: Track, ctx: &mut Self::Context) -> bool {
        if m.generation != self.generation || self.loop_stop.is_cancelled() {
            // A loop from before a restart, or told to stop: the batch is not
            // delivered (its credit returns with `m`); it is read again from
            // the checkpoint by whoever consumes the shard next.
            return false;
        }
        if let Some(r) =
            self.tracker
                .register(m.seq, m.next_cursor, m.cursor_time, m.parts, Some(m.credit))
        {
            self.reached(r.cursor, r.cursor_time, ctx);
        }
        true
    }
}

impl Handler<BatchAck> for ShardConsumer {
    type Result = ();

    fn handle(&mut self, m: BatchAck, ctx: &mut Self::Context) {
        if !m.ok {
            // The part was given up unsent: it settles, and the checkpoint
            // never passes its batch on this loop.
            let current = self.tracker.give_up(m.seq);
            if current && !self.stop.is_cancelled() {
                // Not asked for (EndEpoch, Stop end the epoch and the next
                // owner reads the part): re-read from the checkpoint.
                self.restart(
                    &format!("sink {} lost a part of batch {}", m.sink, m.seq),
                    ctx,
                );
            }
            return;
        }
        match self.tracker.ack(m.seq) {
            Ok(Some(r)) => self.reached(r.cursor, r.cursor_time, ctx),
            Ok(None) => {}
            Err(e) => self.restart(&e.to_string(), ctx),
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Failed(u64, String);

impl Handler<Failed> for ShardConsumer {
    type Result = ();

    fn handle(&mut self, m: Failed, ctx: &mut Self::Context) {
        if m.0 == self.generation {
            self.restart(&m.1, ctx);
        }
    }
}

/// A read-only shard was read to `end`.
#[derive(Message)]
#[rtype(result = "()")]
struct ReadToEnd(Cursor);

impl Handler<ReadToEnd> for ShardConsumer {
    type Result = ();

    fn handle(&mut self, m: ReadToEnd, ctx: &mut Self::Context) {
        self.read_only_end = Some(m.0.clone());
        if self.committed == m.0 && self.tracker.in_flight() == 0 {
            self.dirty = true;
            self.finish(ctx);
        }
    }
}

/// A rescan found the shard read-only (split or merged): read it to its end.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MarkReadOnly;

impl Handler<MarkReadOnly> for ShardConsumer {
    type Result = ();

    fn handle(&mut self, _m: MarkReadOnly, _ctx: &mut Self::Context) {
        if !self.readonly.swap(true, Ordering::Relaxed) {
            tracing::info!(
                shard = self.shard,
                "shard turned read-only; reading it to its end"
            );
        }
    }
}

/// Batches in flight and the committed cursor, for a graceful stop.
#[derive(Message)]
#[rtype(result = "(usize, String)")]
pub struct Progress;

impl Handler<Progress> for ShardConsumer {
    type Result = MessageResult<Progress>;

    fn handle(&mut self, _m: Progress, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult((self.tracker.in_flight(), self.committed.to_string()))
    }
}

/// Stops the consumer at once: the shard moved away (fenced) or was handed over.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for ShardConsumer {
    type Result = ();

    fn handle(&mut self, _m: Stop, ctx: &mut Self::Context) {
        // The epoch ends here too: whatever sinks still hold for the shard
        // is given up unsent, never written behind the next owner's.
        self.stop.cancel();
        self.loop_stop.cancel();
        ctx.stop();
    }
}

/// Ends the consumer's epoch on this node: pulling stops and its shard's
/// fence is lost, so every sink gives up the parts it still holds for it
/// (unsent; the next owner reads them). Used when a hand-over cannot wait
/// for the sinks any longer: nothing of this epoch is written after it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndEpoch;

impl Handler<EndEpoch> for ShardConsumer {
    type Result = ();

    fn handle(&mut self, _m: EndEpoch, _ctx: &mut Self::Context) {
        tracing::warn!(
            shard = self.shard,
            in_flight = self.tracker.unsettled(),
            "ending the epoch here: sinks give up what they hold for the shard"
        );
        self.stop.cancel();
        self.loop_stop.cancel();
    }
}

/// Parts handed to sinks and not yet settled (delivered or given up).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Unsettled;

impl Handler<Unsettled> for ShardConsumer {
    type Result = usize;

    fn handle(&mut self, _m: Unsettled, _ctx: &mut Self::Context) -> usize {
        self.tracker.unsettled()
    }
}

/// Stops pulling (sinks keep delivering what is in flight).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopPulling;

impl Handler<StopPulling> for ShardConsumer {
    type Result = ();

    fn handle(&mut self, _m: StopPulling, _ctx: &mut Self::Context) {
        self.drained = true;
        self.loop_stop.cancel();
        self.persist();
    }
}

/// The async side of a consumer: pull, decode, enrich, hand to sinks.
pub(super) struct PullLoop {
    generation: u64,
    pub(super) shard: u32,
    readonly: Arc<AtomicBool>,
    pub(super) provenance: Arc<Provenance>,
    reader: ShardReader,
    settings: Arc<ConsumerSettings>,
    pub(super) enricher: Addr<Enricher>,
    pub(super) sinks: Arc<[SinkHandle]>,
    dead_letters: Recipient<DeadLetters>,
    pub(super) stats: Arc<ShardStats>,
    pub(super) credits: Arc<Semaphore>,
    pub(super) budget: Arc<ShardBudget>,
    pub(super) me: Addr<ShardConsumer>,
    pub(super) stop: CancellationToken,
    pub(super) next_seq: Arc<AtomicU64>,
    /// The node's fence, ended with this consumer's epoch: every pull and
    /// every part handed to a sink carries it.
    pub(super) fence: Fence,
}

impl PullLoop {
    /// Hands a tracked batch's parts to their sinks, in order; `parts[i]`
    /// is sink `i`'s (empty: nothing for it). Fails if a sink is gone,
    /// with every part not sent given up, so the batch settles.
    async fn hand_on(
        &self,
        parts: Vec<EventSlab>,
        seq: u64,
        provenance: &Arc<Provenance>,
    ) -> Result<(), String> {
        let mut unsent: Vec<usize> = (0..parts.len()).filter(|i| !parts[*i].is_empty()).collect();
        for (i, events) in parts.into_iter().enumerate() {
            if events.is_empty() {
                continue;
            }
            unsent.retain(|j| *j != i);
            let sink = &self.sinks[i];
            let part = Deliver {
                shard: self.shard,
                seq,
                provenance: provenance.clone(),
                events,
                ack: Ack::new(self.me.clone().recipient(), self.shard, seq, i),
                fence: self.fence.clone(),
            };
            // `send` waits while the sink's mailbox is full: backpressure.
            if let Err(e) = sink.deliver.send(part).await {
                // That part came back and was dropped (its Ack gives it
                // up); the parts never sent must settle too, or the
                // batch would hold the restarted shard forever.
                for j in unsent {
                    Ack::new(self.me.clone().recipient(), self.shard, seq, j).abandon();
                }
                return Err(format!("sink {}: {e}", sink.name));
            }
        }
        Ok(())
    }

    async fn run(self, cursor: Cursor) -> Result<(), String> {
        match self.reader.clone() {
            ShardReader::Sls(client) => self.run_sls(&client, cursor).await,
            ShardReader::S3 { listing, partition } => {
                self.run_partition(listing, partition, cursor).await
            }
        }
    }

    async fn run_sls(&self, client: &SlsClient, mut cursor: Cursor) -> Result<(), String> {
        let p = &self.provenance;
        let mut empty_pause = Duration::from_millis(50);
        let mut decode_failures = 0u32;
        let mut count = self.settings.pull_count.clamp(1, 10);
        // What the next answer is expected to weigh (its budget share is
        // taken before the pull, then resized to the answer).
        let mut expected = self.settings.pull_target_bytes;
        loop {
            let permit = tokio::select! {
                p = self.credits.clone().acquire_owned() => p.map_err(|e| e.to_string())?,
                _ = self.stop.cancelled() => return Ok(()),
            };
            if !self.leased().await {
                return Ok(());
            }
            let mut share = tokio::select! {
                s = self.budget.take(expected) => s,
                _ = self.stop.cancelled() => return Ok(()),
            };
            let req = PullRequest {
                count,
                compression: self.settings.compression,
                max_bytes: self.settings.max_pull_bytes,
                ..PullRequest::new(&cursor)
            };
            let asked = std::time::Instant::now();
            let resp = tokio::select! {
                r = client.pull_logs(&p.project, &p.logstore, self.shard, &req) => {
                    self.stats.pull_latency.observe_duration(asked.elapsed());
                    r
                }
                _ = self.stop.cancelled() => return Ok(()),
                // Fenced mid-pull: drop it and wait for the lease at the top.
                _ = self.fence.lost() => continue,
            };
            let resp = match resp {
                Ok(r) => {
                    self.stats.pulled.store(true, Ordering::Relaxed);
                    r
                }
                // More than `max_pull_bytes`: ask for fewer groups, down to one.
                Err(SlsError::TooLarge { size, cap }) if count > 1 => {
                    count = (count / 4).max(1);
                    tracing::warn!(shard = self.shard, ?size, cap, count, "a PullLogs answer exceeds source.max_pull_bytes; asking for fewer log groups");
                    drop(permit);
                    continue;
                }
                // One log group larger than the cap (SLS keeps a group under
                // 5 MB, so only a misbehaving server gets here): said in a
                // dead letter with its cursor, and passed.
                Err(SlsError::TooLarge { size, cap }) => {
                    self.stats.pull_errors.fetch_add(1, Ordering::Relaxed);
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    let first = cursor
                        .sequence()
                        .ok_or_else(|| format!("cursor {cursor} is not a number"))?;
                    let size = size.map_or("an unknown size".to_owned(), |s| format!("{s} bytes"));
                    let letter = DeadLetter {
                        reason: format!(
                            "the log group at this cursor ({size}) exceeds source.max_pull_bytes ({cap}); skipped unread"
                        ),
                        kind: "oversize_log_group",
                        project: p.project.clone(),
                        logstore: p.logstore.clone(),
                        shard: self.shard,
                        cursor: cursor.to_string(),
                        raw: bytes::Bytes::new(),
                    };
                    let next = Cursor::from_sequence(first + 1);
                    let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                    let credit = Credit {
                        batch: permit,
                        bytes: None,
                    };
                    if !self
                        .track(vec![letter], seq, &next, None, 0, credit)
                        .await?
                    {
                        return Ok(());
                    }
                    cursor = next;
                    continue;
                }
                Err(e) => {
                    self.stats.pull_errors.fetch_add(1, Ordering::Relaxed);
                    let pause = match e.class() {
                        ErrorClass::Quota => Duration::from_secs(2),
                        ErrorClass::Transient => Duration::from_secs(1),
                        ErrorClass::Permanent => return Err(format!("PullLogs: {e}")),
                    };
                    tracing::warn!(shard = self.shard, error = %e, ?pause, "PullLogs failed");
                    drop(permit);
                    drop(share);
                    self.sleep(pause).await;
                    continue;
                }
            };
            if resp.caught_up(&cursor) {
                drop(permit);
                drop(share);
                // An idle shard's next poll reserves little; the share grows
                // to what comes when it comes.
                expected = 1024;
                self.stats.caught_up.store(1, Ordering::Relaxed);
                if self.readonly.load(Ordering::Relaxed) {
                    self.me.do_send(ReadToEnd(cursor.clone()));
                    return Ok(());
                }
                self.sleep(empty_pause).await;
                empty_pause = (empty_pause * 2).min(self.settings.empty_backoff_max);
                continue;
            }
            empty_pause = Duration::from_millis(50);
            self.stats.caught_up.store(0, Ordering::Relaxed);
            let first = cursor
                .sequence()
                .ok_or_else(|| format!("cursor {cursor} is not a number"))?;
            let next = resp.next_cursor.clone();
            let cursor_time = resp.cursor_time.filter(|t| *t > 0);
            // The share resized to the answer before it is decoded; held
            // until every sink acknowledged the batch.
            tokio::select! {
                _ = self.budget.resize(&mut share, resp.body.raw_size) => {}
                _ = self.stop.cancelled() => return Ok(()),
            }
            let credit = Credit {
                batch: permit,
                bytes: Some(share),
            };
            let raw_body = resp.body.bytes.clone();
            if resp.count > 0 {
                // Aim the next pull at the target size, or at this shard's
                // fair share of the node's budget when that is smaller.
                // (Split between the credits, so batches still overlap.)
                let credits = self.settings.in_flight_batches.max(1);
                let target = self
                    .settings
                    .pull_target_bytes
                    .min(self.budget.fair_bytes() / credits)
                    .max(1024);
                let per_group = (resp.body.raw_size / resp.count as usize).max(1);
                count = ((target / per_group) as u32).clamp(1, self.settings.pull_count);
                expected = per_group * count as usize;
            }
            let decoded = tokio::task::spawn_blocking(move || resp.body.decode())
                .await
                .map_err(|e| format!("decode task: {e}"))?;
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            let (parts, dead) = match decoded {
                Ok(list) => {
                    decode_failures = 0;
                    self.stats
                        .groups
                        .fetch_add(list.log_group_list.len() as u64, Ordering::Relaxed);
                    let cursors = (0..list.log_group_list.len() as i64)
                        .map(|i| Cursor::from_sequence(first + i).to_string())
                        .collect();
                    let mut batch = Enrich::new(list, cursors, p.clone());
                    let out = loop {
                        match self
                            .enricher
                            .send(batch)
                            .await
                            .map_err(|e| format!("enricher: {e}"))?
                        {
                            EnrichReply::Done(out) => break out,
                            // Tags on their way: wait here, not on an enricher thread.
                            EnrichReply::Parked(again, wait) => {
                                tokio::select! {
                                    _ = wait.wait() => {}
                                    _ = self.stop.cancelled() => return Ok(()),
                                }
                                batch = *again;
                            }
                        }
                    };
                    self.stats.add(&out.stats);
                    (out.parts, out.dead_letters)
                }
                Err(e) if decode_failures < 3 => {
                    decode_failures += 1;
                    tracing::warn!(shard = self.shard, error = %e, attempt = decode_failures, "a PullLogs body did not decode; pulling it again");
                    drop(credit);
                    self.sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    decode_failures = 0;
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    let letter = DeadLetter {
                        reason: format!("PullLogs body does not decode after 4 reads: {e}"),
                        kind: "undecodable_body",
                        project: p.project.clone(),
                        logstore: p.logstore.clone(),
                        shard: self.shard,
                        cursor: cursor.to_string(),
                        raw: raw_body,
                    };
                    (Vec::new(), vec![letter])
                }
            };
            let live = parts.iter().filter(|s| !s.is_empty()).count();
            if !self
                .track(dead, seq, &next, cursor_time, live, credit)
                .await?
            {
                return Ok(());
            }
            self.hand_on(parts, seq, p).await?;
            cursor = next;
        }
    }

    /// Hands a batch to the consumer for its checkpoint: its dead letters
    /// written first (before the batch can complete), then — once the lease
    /// holds, as nothing reaches a sink without it — the batch tracked with
    /// its `live` parts to come. False: stop pulling (stopped while fenced,
    /// or the consumer refused an old generation).
    pub(super) async fn track(
        &self,
        dead: Vec<DeadLetter>,
        seq: u64,
        next: &Cursor,
        cursor_time: Option<u32>,
        live: usize,
        credit: Credit,
    ) -> Result<bool, String> {
        if !dead.is_empty() && !self.write_dead_letters(dead).await? {
            return Ok(false);
        }
        if !self.leased().await {
            return Ok(false);
        }
        self.me
            .send(Track {
                generation: self.generation,
                seq,
                next_cursor: next.clone(),
                cursor_time,
                parts: live,
                credit,
            })
            .await
            .map_err(|e| format!("consumer: {e}"))
    }

    /// Writes dead letters, retrying while the sink refuses; they are
    /// written before their batch can complete. False: stopped before they
    /// were written (the batch is not tracked; it is read again).
    async fn write_dead_letters(&self, dead: Vec<DeadLetter>) -> Result<bool, String> {
        loop {
            match self.dead_letters.send(DeadLetters(dead.clone())).await {
                Ok(Ok(())) => return Ok(true),
                Ok(Err(e)) => {
                    tracing::error!(shard = self.shard, error = %e, "dead-letter sink refused; retrying")
                }
                Err(e) => return Err(format!("dead-letter sink: {e}")),
            }
            if self.stop.is_cancelled() {
                return Ok(false);
            }
            self.sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits while the fence is lost; false if stopped meanwhile.
    pub(super) async fn leased(&self) -> bool {
        if self.fence.holds() {
            return true;
        }
        self.stats.fenced_waits.fetch_add(1, Ordering::Relaxed);
        self.fence.regained(&self.stop).await
    }

    pub(super) async fn sleep(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.stop.cancelled() => {}
        }
    }
}
