//! `QueueConsumer`: CloudTrail in S3, announced through SQS. One actor per
//! poller: it long-polls the queue, reads the objects each message names
//! (GetObject, gunzip, the `{"Records":[…]}` envelope split by the
//! enricher), hands them to the same `Enricher` pool and sinks as the SLS
//! shards, and deletes a message only once every sink acknowledged every
//! record of every object it named.
//!
//! The queue is the lease: a received message is hidden from every other
//! receiver for its visibility timeout, which the consumer extends while
//! the message is in flight. A node that dies (or is paused past the
//! timeout) leaves its messages to reappear for another poller, so every
//! node of a cluster polls the queue and raft assigns nothing. Duplicates
//! after a crash are bounded by the objects of the messages in flight;
//! a message whose delivery failed is made visible again at once.
//!
//! A message that is not a notification, an object that is missing, too
//! large, or neither gzip nor JSON is dead-lettered with its key and the
//! message deleted: it never blocks the queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use trail_proto::sls::{Log, LogContent, LogGroup, LogGroupList};

use crate::aws::notification::{self, Notice, ObjectRef};
use crate::aws::s3::{decode_object, S3Client};
use crate::aws::sqs::{Message, SqsClient};
use crate::aws::AwsError;
use crate::fence::Fence;
use crate::metrics::{counters, gauges, Collector, DescriptorEncoder, Labels};
use crate::pipeline::enricher::{Enrich, EnrichReply, Enricher};
use crate::pipeline::shard_consumer::ShardStats;
use crate::record::{DeadLetter, Provenance, SourceKind};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::{Ack, BatchAck, Deliver, SinkHandle};

/// One `s3_sqs` source's settings, shared by its pollers.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// The source's name (logs, metrics).
    pub name: Arc<str>,
    pub visibility: Duration,
    pub wait: Duration,
    pub messages_in_flight: usize,
    pub max_object_bytes: usize,
    /// The largest decompressed object (`enrich.max_envelope_bytes`).
    pub max_envelope_bytes: usize,
    /// The log content the enricher reads the event from.
    pub event_key: Bytes,
    /// Buckets objects may come from; empty: any the notifications name.
    pub buckets: Vec<String>,
}

/// Receives of one message after which an object that cannot be read for
/// a reason that does not pass (access denied, wrong region, a bad
/// signature) is dead-lettered rather than tried again.
const MAX_RECEIVES: u32 = 5;

/// Counters of one source, over its pollers.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub received: AtomicU64,
    /// Messages received again (another receiver's timeout ran out, or a
    /// failed delivery made them visible).
    pub redelivered: AtomicU64,
    pub deleted: AtomicU64,
    pub objects: AtomicU64,
    /// Object bytes as stored (gzip'd).
    pub object_bytes: AtomicU64,
    /// Decompressed bytes.
    pub raw_bytes: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Failed calls (receive, get, delete, visibility), retried.
    pub errors: AtomicU64,
    pub extended: AtomicU64,
    /// Messages made visible again after a failed delivery.
    pub released: AtomicU64,
    pub in_flight: AtomicU64,
    /// Records read from the objects.
    pub records: AtomicU64,
    /// What the enricher did with the objects' records.
    pub events: ShardStats,
}

/// The metrics of every `s3_sqs` source, labelled by source name.
#[derive(Debug, Default)]
pub struct QueueMetrics {
    pub sources: parking_lot::Mutex<Vec<(Arc<str>, Arc<QueueStats>)>>,
}

impl Collector for QueueMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let sources = self.sources.lock().clone();
        let rows = |get: fn(&QueueStats) -> u64| -> Vec<(Labels, u64)> {
            sources
                .iter()
                .map(|(n, s)| (vec![("source", n.to_string())], get(s)))
                .collect()
        };
        for (name, help, get) in [
            (
                "trail_queue_messages_received",
                "SQS messages received.",
                (|s: &QueueStats| s.received.load(Ordering::Relaxed)) as fn(&QueueStats) -> u64,
            ),
            (
                "trail_queue_messages_redelivered",
                "SQS messages received more than once.",
                |s| s.redelivered.load(Ordering::Relaxed),
            ),
            (
                "trail_queue_messages_deleted",
                "SQS messages deleted after every sink acknowledged their objects.",
                |s| s.deleted.load(Ordering::Relaxed),
            ),
            (
                "trail_queue_messages_released",
                "SQS messages made visible again after a failed delivery.",
                |s| s.released.load(Ordering::Relaxed),
            ),
            ("trail_s3_objects", "S3 objects read.", |s| {
                s.objects.load(Ordering::Relaxed)
            }),
            (
                "trail_s3_object_bytes",
                "S3 object bytes read, as stored.",
                |s| s.object_bytes.load(Ordering::Relaxed),
            ),
            (
                "trail_s3_raw_bytes",
                "S3 object bytes read, decompressed.",
                |s| s.raw_bytes.load(Ordering::Relaxed),
            ),
            (
                "trail_queue_dead_lettered",
                "Messages and objects dead-lettered by the S3 source.",
                |s| s.dead_lettered.load(Ordering::Relaxed),
            ),
            (
                "trail_queue_errors",
                "Failed S3 and SQS calls (retried).",
                |s| s.errors.load(Ordering::Relaxed),
            ),
            ("trail_s3_events", "Records read from S3 objects.", |s| {
                s.events.logs.load(Ordering::Relaxed)
            }),
            (
                "trail_s3_events_passed",
                "Records from S3 that passed the filters.",
                |s| s.events.passed.load(Ordering::Relaxed),
            ),
            (
                "trail_s3_events_tagged",
                "Records from S3 with at least one tagged resource.",
                |s| s.events.tagged.load(Ordering::Relaxed),
            ),
        ] {
            counters(&mut enc, name, help, rows(get))?;
        }
        gauges(
            &mut enc,
            "trail_queue_messages_in_flight",
            "SQS messages being read or delivered.",
            sources.iter().map(|(n, s)| {
                (
                    vec![("source", n.to_string())],
                    s.in_flight.load(Ordering::Relaxed) as i64,
                )
            }),
        )
    }
}

/// Everything a poller is made of.
pub struct QueueConsumer {
    pub poller: u32,
    pub settings: Arc<QueueSettings>,
    pub sqs: SqsClient,
    pub s3: S3Client,
    pub enricher: Addr<Enricher>,
    pub sinks: Arc<[SinkHandle]>,
    pub dead_letters: Recipient<DeadLetters>,
    pub stats: Arc<QueueStats>,
    /// The node's stop: ends every part's fence.
    pub stop: CancellationToken,
    /// The node's lease (a cluster's, or always held): parts carry it, and
    /// nothing is received while it is lost (the sinks would refuse it all).
    pub fence: Fence,
    receiving: CancellationToken,
    next_seq: u64,
    in_flight: HashMap<u64, InFlight>,
}

struct InFlight {
    message: Message,
    /// Parts handed to sinks and not yet acknowledged.
    pending: usize,
    /// Every object was read and handed on.
    read: bool,
    failed: bool,
    /// Its delete or release is on its way (it still holds its credit).
    settling: bool,
    /// Told when the parts in flight are all acknowledged: the reader
    /// reads the next object only then, so a message holds one object's
    /// bytes at a time.
    drained: Arc<tokio::sync::Notify>,
    /// The credit the message holds until it settles.
    _credit: OwnedSemaphorePermit,
}

impl QueueConsumer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        poller: u32,
        settings: Arc<QueueSettings>,
        sqs: SqsClient,
        s3: S3Client,
        enricher: Addr<Enricher>,
        sinks: Arc<[SinkHandle]>,
        dead_letters: Recipient<DeadLetters>,
        stats: Arc<QueueStats>,
        fence: Fence,
        stop: CancellationToken,
    ) -> Self {
        QueueConsumer {
            fence,
            receiving: stop.child_token(),
            poller,
            settings,
            sqs,
            s3,
            enricher,
            sinks,
            dead_letters,
            stats,
            stop,
            next_seq: 1,
            in_flight: HashMap::new(),
        }
    }

    /// Settles a message once it is read and acknowledged (delete) or
    /// failed (visible again).
    fn settle(&mut self, seq: u64, ctx: &mut Context<Self>) {
        let Some(m) = self.in_flight.get(&seq) else {
            return;
        };
        // Settled once read to the end and every part acknowledged (or
        // given up): a failure is acted on only then, so nothing of the
        // message is still on its way when it becomes visible again.
        if !(m.read && m.pending == 0) || m.settling {
            return;
        }
        let (sqs, stats, stop) = (self.sqs.clone(), self.stats.clone(), self.stop.clone());
        let receipt = m.message.receipt.clone();
        let source = self.settings.name.clone();
        let failed = m.failed;
        // Back off with each receive: a fault that lasts never spins.
        let backoff =
            Duration::from_secs(1 << m.message.receive_count.min(12)).min(self.settings.visibility);
        if let Some(m) = self.in_flight.get_mut(&seq) {
            m.settling = true;
        }
        ctx.spawn(
            async move {
                if failed {
                    stats.released.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = sqs.change_visibility(&receipt, backoff).await {
                        tracing::warn!(%source, error = %e, "releasing a failed message; it reappears after its visibility timeout");
                    }
                    return;
                }
                let mut pause = Duration::from_millis(200);
                loop {
                    match sqs.delete(&receipt).await {
                        Ok(()) => {
                            stats.deleted.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Err(e) if e.transient() && !stop.is_cancelled() => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%source, error = %e, "DeleteMessage failed; retrying");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(5));
                        }
                        Err(e) => {
                            // Delivered, not deleted: it comes back once, a duplicate.
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(%source, error = %e, "DeleteMessage failed; the message will be delivered again");
                            return;
                        }
                    }
                }
            }
            .into_actor(self)
            .map(move |(), act, _| {
                // Gone from the queue (or released): its credit returns.
                if act.in_flight.remove(&seq).is_some() {
                    act.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                }
            }),
        );
    }

    fn extend(&mut self, ctx: &mut Context<Self>) {
        let receipts: Vec<String> = self
            .in_flight
            .values()
            .filter(|m| !m.settling)
            .map(|m| m.message.receipt.clone())
            .collect();
        if receipts.is_empty() {
            return;
        }
        let (sqs, stats, vis) = (
            self.sqs.clone(),
            self.stats.clone(),
            self.settings.visibility,
        );
        let source = self.settings.name.clone();
        ctx.spawn(
            async move {
                for r in receipts {
                    match sqs.change_visibility(&r, vis).await {
                        Ok(()) => {
                            stats.extended.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%source, error = %e, "extending a message's visibility failed; it may be delivered twice");
                        }
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for QueueConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let n = self.settings.messages_in_flight.max(1);
        ctx.set_mailbox_capacity(n * (self.sinks.len() + 4) + 16);
        tracing::info!(source = %self.settings.name, poller = self.poller, "queue consumer started");
        let receiver = Receiver {
            sqs: self.sqs.clone(),
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            credits: Arc::new(Semaphore::new(n)),
            me: ctx.address(),
            fence: self.fence.clone(),
            stop: self.receiving.clone(),
        };
        actix::spawn(receiver.run());
        // Extend well before the timeout runs out.
        let every = (self.settings.visibility / 3).max(Duration::from_secs(1));
        ctx.run_interval(every, |act, ctx| act.extend(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.receiving.cancel();
    }
}

/// A message was received: read its objects.
#[derive(Message)]
#[rtype(result = "()")]
struct Received(Message, OwnedSemaphorePermit);

impl Handler<Received> for QueueConsumer {
    type Result = ();

    fn handle(&mut self, m: Received, ctx: &mut Self::Context) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let drained = Arc::new(tokio::sync::Notify::new());
        let reader = Reader {
            drained: drained.clone(),
            seq,
            poller: self.poller,
            message: m.0.clone(),
            settings: self.settings.clone(),
            s3: self.s3.clone(),
            enricher: self.enricher.clone(),
            sinks: self.sinks.clone(),
            dead_letters: self.dead_letters.clone(),
            stats: self.stats.clone(),
            me: ctx.address(),
            fence: self.fence.until(self.stop.clone()),
            stop: self.stop.clone(),
        };
        self.in_flight.insert(
            seq,
            InFlight {
                message: m.0,
                pending: 0,
                read: false,
                failed: false,
                settling: false,
                drained,
                _credit: m.1,
            },
        );
        let me = ctx.address();
        actix::spawn(async move {
            let ok = reader.run().await;
            me.do_send(ReadDone { seq, ok });
        });
    }
}

/// Parts about to go to sinks for message `seq`.
#[derive(Message)]
#[rtype(result = "()")]
struct Expect {
    seq: u64,
    parts: usize,
}

impl Handler<Expect> for QueueConsumer {
    type Result = ();

    fn handle(&mut self, m: Expect, _ctx: &mut Self::Context) {
        if let Some(f) = self.in_flight.get_mut(&m.seq) {
            f.pending += m.parts;
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ReadDone {
    seq: u64,
    ok: bool,
}

impl Handler<ReadDone> for QueueConsumer {
    type Result = ();

    fn handle(&mut self, m: ReadDone, ctx: &mut Self::Context) {
        if let Some(f) = self.in_flight.get_mut(&m.seq) {
            f.read = true;
            f.failed |= !m.ok;
        }
        self.settle(m.seq, ctx);
    }
}

impl Handler<BatchAck> for QueueConsumer {
    type Result = ();

    fn handle(&mut self, m: BatchAck, ctx: &mut Self::Context) {
        if let Some(f) = self.in_flight.get_mut(&m.seq) {
            f.pending = f.pending.saturating_sub(1);
            f.failed |= !m.ok;
            if f.pending == 0 {
                f.drained.notify_one();
            }
        }
        self.settle(m.seq, ctx);
    }
}

/// Messages in flight, for a graceful stop.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct InFlightMessages;

impl Handler<InFlightMessages> for QueueConsumer {
    type Result = usize;

    fn handle(&mut self, _m: InFlightMessages, _ctx: &mut Self::Context) -> usize {
        self.in_flight.len()
    }
}

/// Stop receiving; what is in flight goes on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopReceiving;

impl Handler<StopReceiving> for QueueConsumer {
    type Result = ();

    fn handle(&mut self, _m: StopReceiving, _ctx: &mut Self::Context) {
        self.receiving.cancel();
    }
}

/// The long-poll loop: one receive at a time, as many messages as free credits.
struct Receiver {
    sqs: SqsClient,
    settings: Arc<QueueSettings>,
    stats: Arc<QueueStats>,
    credits: Arc<Semaphore>,
    me: Addr<QueueConsumer>,
    fence: Fence,
    stop: CancellationToken,
}

impl Receiver {
    async fn run(self) {
        let mut pause = Duration::from_millis(200);
        loop {
            let first = tokio::select! {
                p = self.credits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = self.stop.cancelled() => return,
            };
            // Nothing is received while the lease is lost: the sinks would
            // give every part up.
            if !self.fence.holds() && !self.fence.regained(&self.stop).await {
                return;
            }
            let mut permits = vec![first];
            while permits.len() < 10 {
                match self.credits.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let got = tokio::select! {
                r = self.sqs.receive(permits.len() as u32, self.settings.wait, self.settings.visibility) => r,
                _ = self.stop.cancelled() => return,
            };
            match got {
                Ok(messages) => {
                    pause = Duration::from_millis(200);
                    if messages.is_empty() && self.settings.wait.is_zero() {
                        // A short poll found nothing: do not spin on the queue.
                        drop(permits);
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = self.stop.cancelled() => return,
                        }
                        continue;
                    }
                    for m in messages {
                        self.stats.received.fetch_add(1, Ordering::Relaxed);
                        if m.receive_count > 1 {
                            self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                        let Some(p) = permits.pop() else { break };
                        if self.me.send(Received(m, p)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(source = %self.settings.name, error = %e, ?pause, "ReceiveMessage failed");
                    drop(permits);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.stop.cancelled() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Reads one message's objects and hands them on.
struct Reader {
    seq: u64,
    poller: u32,
    message: Message,
    settings: Arc<QueueSettings>,
    s3: S3Client,
    enricher: Addr<Enricher>,
    sinks: Arc<[SinkHandle]>,
    dead_letters: Recipient<DeadLetters>,
    stats: Arc<QueueStats>,
    me: Addr<QueueConsumer>,
    fence: Fence,
    stop: CancellationToken,
    drained: Arc<tokio::sync::Notify>,
}

/// Why an object is not read.
enum Unread {
    /// Dead-lettered: the message may go.
    Dead(DeadLetter),
    /// Try again later (the message becomes visible again); `lasting`:
    /// a reason that will not pass by itself (access denied, …).
    Retry { reason: String, lasting: bool },
}

impl Reader {
    fn letter(
        &self,
        project: &str,
        logstore: &str,
        cursor: &str,
        kind: &'static str,
        reason: String,
        raw: Bytes,
    ) -> DeadLetter {
        DeadLetter {
            reason,
            kind,
            project: project.into(),
            logstore: logstore.into(),
            shard: self.poller,
            cursor: cursor.to_owned(),
            raw,
        }
    }

    /// True when every object was handed on (or dead-lettered).
    async fn run(self) -> bool {
        let objects = match notification::parse(&self.message.body) {
            Ok(Notice::Objects(o)) => o,
            Ok(Notice::Test) => return true,
            Err(reason) => {
                let l = self.letter(
                    &self.settings.name,
                    "",
                    &format!("sqs:{}", self.message.id),
                    "bad_notification",
                    format!("SQS message {}: {reason}", self.message.id),
                    Bytes::from(self.message.body.clone()),
                );
                return self.dead(vec![l]).await;
            }
        };
        for o in objects {
            if self.stop.is_cancelled() {
                return false;
            }
            let list = match self.fetch(&o).await {
                Ok(list) => list,
                Err(Unread::Dead(l)) => {
                    if !self.dead(vec![l]).await {
                        return false;
                    }
                    continue;
                }
                Err(Unread::Retry { reason, lasting })
                    if lasting && self.message.receive_count >= MAX_RECEIVES =>
                {
                    let cursor = format!("s3://{}/{}", o.bucket, o.key);
                    let l = self.letter(
                        &o.bucket,
                        &o.key,
                        &cursor,
                        "object_unreadable",
                        format!(
                            "{cursor}: still unreadable after {} receives: {reason}",
                            self.message.receive_count
                        ),
                        Bytes::new(),
                    );
                    if !self.dead(vec![l]).await {
                        return false;
                    }
                    continue;
                }
                Err(Unread::Retry { reason, .. }) => {
                    tracing::warn!(source = %self.settings.name, bucket = %o.bucket, key = %o.key, %reason, receives = self.message.receive_count, "object not read; the message will be received again");
                    return false;
                }
            };
            if !self.deliver(&o, list).await {
                return false;
            }
        }
        true
    }

    async fn dead(&self, letters: Vec<DeadLetter>) -> bool {
        self.stats
            .dead_lettered
            .fetch_add(letters.len() as u64, Ordering::Relaxed);
        loop {
            match self.dead_letters.send(DeadLetters(letters.clone())).await {
                Ok(Ok(())) => return true,
                Ok(Err(e)) => tracing::error!(error = %e, "dead-letter sink refused; retrying"),
                Err(_) => return false,
            }
            if self.stop.is_cancelled() {
                return false;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// GetObject (transient failures retried a few times), then gunzip.
    async fn fetch(&self, o: &ObjectRef) -> Result<LogGroupList, Unread> {
        let cursor = format!("s3://{}/{}", o.bucket, o.key);
        if !self.settings.buckets.is_empty() && !self.settings.buckets.contains(&o.bucket) {
            return Err(Unread::Dead(self.letter(
                &o.bucket,
                &o.key,
                &cursor,
                "foreign_bucket",
                format!(
                    "{cursor}: bucket {} is not one of this source's buckets; not read",
                    o.bucket
                ),
                Bytes::new(),
            )));
        }
        let mut pause = Duration::from_millis(200);
        let mut attempt = 0;
        let body = loop {
            attempt += 1;
            let r = tokio::select! {
                r = self.s3.get_object(&o.bucket, &o.key, self.settings.max_object_bytes) => r,
                _ = self.stop.cancelled() => return Err(Unread::Retry { reason: "stopping".into(), lasting: false }),
            };
            match r {
                Ok(b) => break b,
                Err(AwsError::TooLarge { cap, .. }) => {
                    return Err(Unread::Dead(self.letter(
                        &o.bucket,
                        &o.key,
                        &cursor,
                        "oversize_object",
                        format!("{cursor} is larger than max_object_bytes ({cap}); skipped unread"),
                        Bytes::new(),
                    )));
                }
                Err(e) if e.code() == "NoSuchKey" => {
                    return Err(Unread::Dead(self.letter(
                        &o.bucket,
                        &o.key,
                        &cursor,
                        "object_missing",
                        format!("{cursor}: {e}"),
                        Bytes::new(),
                    )));
                }
                Err(e) if e.transient() && attempt < 5 => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%cursor, error = %e, attempt, "GetObject failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(Unread::Retry {
                        lasting: !e.transient(),
                        reason: e.to_string(),
                    });
                }
            }
        };
        self.stats.objects.fetch_add(1, Ordering::Relaxed);
        self.stats
            .object_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let cap = self.settings.max_envelope_bytes;
        let raw = body.clone();
        let decoded = tokio::task::spawn_blocking(move || decode_object(&raw, cap))
            .await
            .map_err(|e| Unread::Retry {
                reason: format!("decode task: {e}"),
                lasting: false,
            })?;
        let json = match decoded {
            Ok(j) => j,
            Err((kind, reason)) => {
                return Err(Unread::Dead(self.letter(
                    &o.bucket,
                    &o.key,
                    &cursor,
                    kind,
                    format!("{cursor}: {reason}"),
                    body,
                )));
            }
        };
        self.stats
            .raw_bytes
            .fetch_add(json.len() as u64, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or_default();
        Ok(LogGroupList {
            log_group_list: vec![LogGroup {
                logs: vec![Log {
                    time: now,
                    contents: vec![LogContent {
                        key: self.settings.event_key.clone(),
                        value: json,
                    }],
                    time_ns: None,
                }],
                topic: None,
                source: None,
                ..Default::default()
            }],
        })
    }

    /// Enriches one object and hands its parts to the sinks.
    async fn deliver(&self, o: &ObjectRef, list: LogGroupList) -> bool {
        let provenance = Arc::new(Provenance {
            project: o.bucket.as_str().into(),
            logstore: o.key.as_str().into(),
            shard: self.poller,
            epoch: 0,
            source: SourceKind::S3,
        });
        let cursor = format!("s3://{}/{}", o.bucket, o.key);
        let mut batch = Enrich::new(list, vec![cursor], provenance.clone());
        let out = loop {
            match self.enricher.send(batch).await {
                Ok(EnrichReply::Done(out)) => break out,
                Ok(EnrichReply::Parked(again, wait)) => {
                    tokio::select! {
                        _ = wait.wait() => {}
                        _ = self.stop.cancelled() => return false,
                    }
                    batch = *again;
                }
                Err(_) => return false,
            }
        };
        self.stats.events.add(&out.stats);
        self.stats
            .records
            .fetch_add(out.stats.events, Ordering::Relaxed);
        if !out.dead_letters.is_empty() && !self.dead(out.dead_letters).await {
            return false;
        }
        let live: Vec<(usize, crate::record::EventSlab)> = out
            .parts
            .into_iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .collect();
        if live.is_empty() {
            return true;
        }
        if self
            .me
            .send(Expect {
                seq: self.seq,
                parts: live.len(),
            })
            .await
            .is_err()
        {
            return false;
        }
        let me = self.me.clone().recipient::<BatchAck>();
        let mut rest = live.into_iter();
        while let Some((i, events)) = rest.next() {
            let part = Deliver {
                shard: self.poller,
                seq: self.seq,
                provenance: provenance.clone(),
                events,
                ack: Ack::new(me.clone(), self.poller, self.seq, i),
                fence: self.fence.clone(),
            };
            if self.sinks[i].deliver.send(part).await.is_err() {
                // The part's Ack reported it; the unsent ones must settle too.
                for (j, _) in rest {
                    Ack::new(me.clone(), self.poller, self.seq, j).abandon();
                }
                return false;
            }
        }
        // One object's bytes at a time per message.
        tokio::select! {
            _ = self.drained.notified() => true,
            _ = self.stop.cancelled() => false,
        }
    }
}
