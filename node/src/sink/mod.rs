//! Sinks: where enriched events go. One folder per destination, one file per
//! stage (after Vector's layout); the shared vocabulary lives here.
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

pub mod dead_letter;
pub mod file;
pub mod hec;
pub mod sls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use crate::pipeline::encode::EventSlab;
use crate::pipeline::enrich::Provenance;

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
}

/// Counters every sink keeps, read by metrics, the demo and `trailctl status`.
#[derive(Debug, Default)]
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
    /// Request latency (send to response).
    pub latency: Latency,
}

/// A latency histogram: power-of-two buckets from 1 ms to ~65 s, lock-free.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; 18],
}

impl Latency {
    pub fn record(&self, d: std::time::Duration) {
        let ms = d.as_millis().max(1) as u64;
        let i = (63 - ms.leading_zeros() as usize).min(17);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The bucket bound (seconds) under which 99 % of requests finished; 0 without requests.
    pub fn p99_seconds(&self) -> f64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let want = total - total / 100;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return (2u64 << i) as f64 / 1000.0;
            }
        }
        (2u64 << 17) as f64 / 1000.0
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

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// A configured sink, as the pipeline holds it.
#[derive(Clone)]
pub struct SinkHandle {
    pub name: String,
    pub kind: &'static str,
    pub deliver: Recipient<Deliver>,
    pub stats: Arc<SinkStats>,
}
