//! Sinks: where enriched events go. One folder per destination, one file per
//! stage (after Vector's layout); the shared vocabulary lives here.
//!
//! Floor 2: a sink sees `record` (what it encodes and sends), `fence` (may
//! it still write?), `net`, `sls`, `secret` and `metrics`; never the
//! pipeline that feeds it or the cluster that fences it.
//!
//! # Layout
//!
//! | module | destination |
//! |---|---|
//! | `hec/` | Splunk HTTP Event Collector: `config`, `encoder`, `request` (batch → gzip body), `retry` (answer → action, table-tested), `service` (send, partial resend, indexer acks), `mod` (the `HecSink` actor) |
//! | `sls/` | an SLS logstore (the business view) through PutLogs |
//! | `file/` | JSON lines with size-based rotation |
//! | `dead_letter.rs` | where undeliverable events go, each with its reason and provenance |
//!
//! # The delivery contract
//!
//! A sink receives a [`Deliver`] per batch and shard: the batch's events
//! already encoded for it ([`EventSlab`]) and an [`Ack`]. It calls
//! [`Ack::done`] only once every event of the part is delivered or has been
//! handed to the dead-letter sink and written there. Dropping an `Ack`
//! unanswered reports a failure: the shard's consumer then stops and resumes
//! from its last checkpoint, so nothing is lost.
//!
//! Every part carries its shard's [`Fence`]. A sink retries a part only
//! while that fence holds: once the shard moved or its epoch ended on this
//! node (or the node's lease ran out), the part is abandoned unsent, so a
//! destination never receives an old epoch's events after the new owner's.

pub mod dead_letter;
pub mod file;
pub mod hec;
pub mod sls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use crate::fence::Fence;
use crate::metrics::{
    counter, counters, gauges, histograms, Collector, DescriptorEncoder, Histogram, Labels,
    BYTE_BUCKETS, EVENT_COUNT_BUCKETS,
};
use crate::record::{EventSlab, Provenance};

/// What a shard's consumer hears back from a sink.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct BatchAck {
    pub shard: u32,
    pub seq: u64,
    pub sink: usize,
    pub ok: bool,
}

/// Acknowledges one sink's part of one batch. Must be answered.
pub struct Ack {
    to: Option<Recipient<BatchAck>>,
    shard: u32,
    seq: u64,
    sink: usize,
}

impl Ack {
    pub fn new(to: Recipient<BatchAck>, shard: u32, seq: u64, sink: usize) -> Self {
        Ack {
            to: Some(to),
            shard,
            seq,
            sink,
        }
    }

    /// Every event of the part is delivered (or dead-lettered and written).
    pub fn done(mut self) {
        if let Some(to) = self.to.take() {
            to.do_send(BatchAck {
                shard: self.shard,
                seq: self.seq,
                sink: self.sink,
                ok: true,
            });
        }
    }
}

impl Ack {
    /// Gives the part up unsent (the node lost its lease): the shard's
    /// consumer restarts from its checkpoint, or has been stopped.
    pub fn abandon(mut self) {
        if let Some(to) = self.to.take() {
            to.do_send(BatchAck {
                shard: self.shard,
                seq: self.seq,
                sink: self.sink,
                ok: false,
            });
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            tracing::error!(
                shard = self.shard,
                seq = self.seq,
                sink = self.sink,
                "a sink dropped a batch unacknowledged"
            );
            to.do_send(BatchAck {
                shard: self.shard,
                seq: self.seq,
                sink: self.sink,
                ok: false,
            });
        }
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ack(shard {}, seq {}, sink {})",
            self.shard, self.seq, self.sink
        )
    }
}

/// One sink's part of one batch.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Deliver {
    pub shard: u32,
    pub seq: u64,
    pub provenance: Arc<Provenance>,
    pub events: EventSlab,
    pub ack: Ack,
    /// The shard's fence under the epoch the part was read in: a sink
    /// checks it before each attempt and races it during one, and gives
    /// the part up ([`Ack::abandon`]) once it is lost.
    pub fence: Fence,
}

/// Counters every sink keeps, read by metrics, the demo and `trailctl status`.
#[derive(Debug)]
pub struct SinkStats {
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub retries: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Non-zero while the sink refuses to send (401/403), for status.
    pub stopped: AtomicU64,
    /// Parts handed to the sink and not yet settled (its queue).
    pub queued: AtomicU64,
    /// Request latency (send to response), seconds.
    pub latency: Histogram,
    /// Events per request.
    pub batch_events: Histogram,
    /// Uncompressed bytes per request.
    pub batch_bytes: Histogram,
}

impl Default for SinkStats {
    fn default() -> Self {
        SinkStats {
            events: AtomicU64::default(),
            bytes: AtomicU64::default(),
            requests: AtomicU64::default(),
            errors: AtomicU64::default(),
            retries: AtomicU64::default(),
            dead_lettered: AtomicU64::default(),
            stopped: AtomicU64::default(),
            queued: AtomicU64::default(),
            latency: Histogram::latency(),
            batch_events: Histogram::new(EVENT_COUNT_BUCKETS),
            batch_bytes: Histogram::new(BYTE_BUCKETS),
        }
    }
}

/// Gives up, unsent, the waiting parts of `pending` whose shard's fence is
/// lost (a lane busy with another shard's request must not hold them, or
/// their hand-over could never settle); true if any were.
pub fn give_up_lost(pending: &mut Vec<Deliver>, queued: &AtomicU64) -> bool {
    if pending.iter().all(|d| d.fence.holds()) {
        return false;
    }
    let (keep, lost): (Vec<Deliver>, Vec<Deliver>) = std::mem::take(pending)
        .into_iter()
        .partition(|d| d.fence.holds());
    tracing::warn!(
        parts = lost.len(),
        "fence lost: giving up waiting parts unsent"
    );
    SinkStats::sub(queued, lost.len() as u64);
    for d in lost {
        d.ack.abandon();
    }
    *pending = keep;
    true
}

impl SinkStats {
    /// One request sent: its size, before it is answered.
    pub fn sent(&self, events: usize, bytes: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.batch_events.observe(events as f64);
        self.batch_bytes.observe(bytes as f64);
    }
}

/// Takes a part off the sink's queue count when dropped (settled, however).
pub struct Queued<'a>(pub &'a AtomicU64, pub u64);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}

impl SinkStats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(c: &AtomicU64, n: u64) {
        c.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The sinks' metrics: every configured sink's counters and histograms,
/// labelled by `component_id`, and the dead-letter sink's.
#[derive(Debug)]
pub struct SinkMetrics {
    pub sinks: Arc<parking_lot::Mutex<Vec<SinkHandle>>>,
    pub dead_letters: Arc<SinkStats>,
}

impl Collector for SinkMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let sinks = self.sinks.lock().clone();
        let id = |h: &SinkHandle| -> Labels {
            vec![
                ("component_kind", "sink".into()),
                ("component_id", h.name.clone()),
            ]
        };
        for (name, help, get) in [
            (
                "trail_component_sent_events",
                "Events a sink delivered.",
                (|s: &SinkStats| s.events.load(Ordering::Relaxed)) as fn(&SinkStats) -> u64,
            ),
            (
                "trail_component_sent_bytes",
                "Bytes a sink delivered (uncompressed).",
                |s| s.bytes.load(Ordering::Relaxed),
            ),
            (
                "trail_component_errors",
                "Failed requests of a sink.",
                |s| s.errors.load(Ordering::Relaxed),
            ),
            (
                "trail_component_retries",
                "Requests a sink sent again.",
                |s| s.retries.load(Ordering::Relaxed),
            ),
            (
                "trail_sink_dead_lettered_events",
                "Events a destination refused for good.",
                |s| s.dead_lettered.load(Ordering::Relaxed),
            ),
        ] {
            counters(
                &mut enc,
                name,
                help,
                sinks.iter().map(|h| (id(h), get(&h.stats))),
            )?;
        }
        gauges(
            &mut enc,
            "trail_sink_stopped",
            "1 while a sink refuses to send (credentials refused).",
            sinks.iter().map(|h| {
                (
                    vec![("component_id", h.name.clone())],
                    h.stats.stopped.load(Ordering::Relaxed) as i64,
                )
            }),
        )?;
        gauges(
            &mut enc,
            "trail_sink_queued_parts",
            "Batch parts handed to a sink and not yet settled.",
            sinks
                .iter()
                .map(|h| (id(h), h.stats.queued.load(Ordering::Relaxed) as i64)),
        )?;
        histograms(
            &mut enc,
            "trail_sink_request_duration_seconds",
            "Time from sending a request to its answer (HEC, PutLogs).",
            sinks.iter().map(|h| (id(h), &h.stats.latency)),
        )?;
        histograms(
            &mut enc,
            "trail_sink_request_events",
            "Events per request a sink sent.",
            sinks.iter().map(|h| (id(h), &h.stats.batch_events)),
        )?;
        histograms(
            &mut enc,
            "trail_sink_request_bytes",
            "Uncompressed bytes per request a sink sent.",
            sinks.iter().map(|h| (id(h), &h.stats.batch_bytes)),
        )?;
        counter(
            &mut enc,
            "trail_dead_lettered_events",
            "Events written to the dead-letter sink.",
            self.dead_letters.events.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            "trail_dead_letters_dropped",
            "Dead letters the dead-letter logstore could never take (refused before sending; logged with shard and cursor).",
            self.dead_letters.dead_lettered.load(Ordering::Relaxed),
        )
    }
}

/// A configured sink, as the pipeline holds it.
#[derive(Clone, Debug)]
pub struct SinkHandle {
    pub name: String,
    pub kind: &'static str,
    /// What an acknowledgement means: `indexed`, `received`, `stored`, `flushed`.
    pub delivery: &'static str,
    pub deliver: Recipient<Deliver>,
    pub stats: Arc<SinkStats>,
}
