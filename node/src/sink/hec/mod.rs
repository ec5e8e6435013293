//! The Splunk HEC sink.
//!
//! | file | stage |
//! |---|---|
//! | `config.rs` | `[[sinks]] type = "hec"`, validated |
//! | `encoder.rs` | event → HEC envelope (runs in the enrichers) |
//! | `retry.rs` | (HTTP status, HEC code) → action |
//! | `service.rs` | chunk → gzip → send → retry / partial resend / dead letter / indexer ack |
//! | `mod.rs` | the `HecSink` actor: lanes, batching by bytes, events and time |
//!
//! Concurrency is a fixed number of lanes; shard `s` always uses lane
//! `s % concurrency` and a lane has one request in flight, so a shard's events
//! reach Splunk in order even across retries.

pub mod cim;
pub mod config;
pub mod encoder;
pub mod retry;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use config::HecSinkConfig;
pub use config::IndexedFields;
pub use encoder::{HecEncoder, HecEnvelope};
use service::HecService;

use crate::sink::{Deliver, SinkStats};

#[derive(Default)]
struct Lane {
    pending: Vec<Deliver>,
    bytes: usize,
    events: usize,
    busy: bool,
}

/// The `HecSink` actor.
pub struct HecSink {
    service: Arc<HecService>,
    cfg: Arc<HecSinkConfig>,
    lanes: Vec<Lane>,
}

impl HecSink {
    pub fn new(service: HecService, cfg: Arc<HecSinkConfig>) -> Self {
        let lanes = (0..cfg.concurrency.max(1))
            .map(|_| Lane::default())
            .collect();
        HecSink {
            service: Arc::new(service),
            cfg,
            lanes,
        }
    }

    fn flush(&mut self, lane: usize, ctx: &mut Context<Self>) {
        let l = &mut self.lanes[lane];
        if l.busy || l.pending.is_empty() {
            return;
        }
        l.busy = true;
        l.bytes = 0;
        l.events = 0;
        let parts = std::mem::take(&mut l.pending);
        let service = self.service.clone();
        let me = ctx.address();
        actix::spawn(async move {
            service.deliver(lane, parts).await;
            me.do_send(LaneDone(lane));
        });
    }

    /// Gives up, unsent, the waiting parts whose shard's fence is lost: a
    /// lane busy with another shard's request (retrying through a 503
    /// storm, say) must not hold a moved shard's parts, or its hand-over
    /// could never settle.
    fn purge(&mut self, lane: usize) {
        let l = &mut self.lanes[lane];
        if crate::sink::give_up_lost(&mut l.pending, &self.service.stats.queued) {
            l.bytes = l.pending.iter().map(|d| d.events.byte_len()).sum();
            l.events = l.pending.iter().map(|d| d.events.len()).sum();
        }
    }

    fn full(&self, lane: usize) -> bool {
        let l = &self.lanes[lane];
        l.bytes >= self.cfg.batch_max_bytes || l.events >= self.cfg.batch_max_events
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct LaneDone(usize);

impl Actor for HecSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Parts are bounded by the shards' credits; one round fits.
        ctx.set_mailbox_capacity(64);
        ctx.run_interval(
            Duration::from_millis(self.cfg.flush_interval_ms),
            |act, ctx| {
                for lane in 0..act.lanes.len() {
                    act.purge(lane);
                    act.flush(lane, ctx);
                }
            },
        );
    }
}

impl Handler<Deliver> for HecSink {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        SinkStats::add(&self.service.stats.queued, 1);
        let lane = msg.shard as usize % self.lanes.len();
        let l = &mut self.lanes[lane];
        l.bytes += msg.events.byte_len();
        l.events += msg.events.len();
        l.pending.push(msg);
        if self.full(lane) {
            self.flush(lane, ctx);
        }
    }
}

impl Handler<LaneDone> for HecSink {
    type Result = ();

    fn handle(&mut self, msg: LaneDone, ctx: &mut Self::Context) {
        self.lanes[msg.0].busy = false;
        if self.full(msg.0) {
            self.flush(msg.0, ctx);
        }
    }
}
