//! The `Enricher`: a pool of actors on their own OS threads (`SyncArbiter`),
//! so parsing and encoding never block the I/O actors. Any member of the pool
//! may take any batch; each shard awaits its batches in order.

use std::sync::Arc;

use actix::prelude::*;
use trail_proto::sls::LogGroupList;

use crate::pipeline::enrich::{EnrichStats, Enrichment};
use crate::record::{DeadLetter, EventEncoder, EventSlab, Provenance};

/// Enrich one decoded batch.
#[derive(Message)]
#[rtype(result = "Enriched")]
pub struct Enrich {
    pub list: LogGroupList,
    /// The cursor of each log group.
    pub cursors: Vec<String>,
    pub provenance: Arc<Provenance>,
}

/// One slab per sink (in the sinks' order), dead letters, counts.
#[derive(MessageResponse)]
pub struct Enriched {
    pub parts: Vec<EventSlab>,
    pub dead_letters: Vec<DeadLetter>,
    pub stats: EnrichStats,
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
    type Result = Enriched;

    fn handle(&mut self, msg: Enrich, _ctx: &mut Self::Context) -> Enriched {
        let out = self
            .enrichment
            .run(&msg.list, &msg.cursors, &msg.provenance, &self.encoders);
        Enriched {
            parts: out.parts.into_iter().map(|p| p.freeze()).collect(),
            dead_letters: out.dead_letters,
            stats: out.stats,
        }
    }
}
