//! The pipeline on one node: `ShardConsumer` → `Enricher` → sinks.
//!
//! | file | job |
//! |---|---|
//! | `shard_consumer.rs` | one actor per shard: credits, pulls, ordered hand-off, checkpoints |
//! | `enricher.rs` | the enrichment pool (a `SyncArbiter`: CPU work off the I/O threads) |
//! | `enrich.rs` | the pure enrichment step it runs |
//! | `encode.rs` | encoded events, the business view |
//! | `checkpoint.rs` | the ordered ack tracker and the local checkpoint store |
//! | `node.rs` | assembling a node from its config and running it |

pub mod assignment;
pub mod checkpoint;
pub mod encode;
pub mod enrich;
pub mod enricher;
pub mod node;
pub mod shard_consumer;
