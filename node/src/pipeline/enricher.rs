//! The `Enricher`: a pool of actors on their own OS threads (`SyncArbiter`),
//! so parsing and encoding never block the I/O actors. Any member of the pool
//! may take any batch; each shard awaits its batches in order.
//!
//! No member waits for remote tags: a batch that misses some comes back
//! [`EnrichReply::Parked`] with its [`TagWait`]; the shard's pull loop awaits
//! it and sends the batch again (`waited`), while the thread takes the next.

use std::sync::Arc;

use actix::prelude::*;
use trail_proto::sls::LogGroupList;

use crate::pipeline::enrich::{EnrichOutput, EnrichStats, Enrichment};
use crate::record::{DeadLetter, EventEncoder, EventSlab, Provenance};
use crate::tags::TagWait;

/// Enrich one decoded batch.
#[derive(Message)]
#[rtype(result = "EnrichReply")]
pub struct Enrich {
    pub list: LogGroupList,
    /// The cursor of each log group.
    pub cursors: Vec<String>,
    pub provenance: Arc<Provenance>,
    /// The batch already parked for its tags once: it does not again.
    pub waited: bool,
}

impl Enrich {
    pub fn new(list: LogGroupList, cursors: Vec<String>, provenance: Arc<Provenance>) -> Self {
        Enrich {
            list,
            cursors,
            provenance,
            waited: false,
        }
    }
}

/// One slab per sink (in the sinks' order), dead letters, counts.
pub struct Enriched {
    pub parts: Vec<EventSlab>,
    pub dead_letters: Vec<DeadLetter>,
    pub stats: EnrichStats,
}

impl From<EnrichOutput> for Enriched {
    fn from(out: EnrichOutput) -> Self {
        Enriched {
            parts: out.parts.into_iter().map(|p| p.freeze()).collect(),
            dead_letters: out.dead_letters,
            stats: out.stats,
        }
    }
}

#[derive(MessageResponse)]
pub enum EnrichReply {
    Done(Enriched),
    /// Remote tags are missing: await the wait, then send the batch again.
    Parked(Box<Enrich>, TagWait),
}

pub struct Enricher {
    enrichment: Arc<Enrichment>,
    encoders: Arc<[Arc<dyn EventEncoder>]>,
}

impl Enricher {
    pub fn new(enrichment: Arc<Enrichment>, encoders: Arc<[Arc<dyn EventEncoder>]>) -> Self {
        Enricher {
            enrichment,
            encoders,
        }
    }
}

impl Actor for Enricher {
    type Context = SyncContext<Self>;
}

impl Handler<Enrich> for Enricher {
    type Result = EnrichReply;

    fn handle(&mut self, mut msg: Enrich, _ctx: &mut Self::Context) -> EnrichReply {
        let (e, enc) = (&self.enrichment, &self.encoders[..]);
        if msg.waited {
            let out = e.after_wait(&msg.list, &msg.cursors, &msg.provenance, enc);
            return EnrichReply::Done(out.into());
        }
        match e.first_pass(&msg.list, &msg.cursors, &msg.provenance, enc) {
            Ok(out) => EnrichReply::Done(out.into()),
            Err(wait) => {
                msg.waited = true;
                EnrichReply::Parked(Box::new(msg), wait)
            }
        }
    }
}
