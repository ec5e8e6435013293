//! The pipeline on one node: `ShardConsumer` → `Enricher` → sinks.
//!
//! Floor 3: imports `fence`, `event`, `sls`, `record`, `tags` and `sink`,
//! never `cluster`, `control` or the node's assembly. A consumer knows the
//! mailboxes of the next stage (the enricher pool, each sink), a
//! [`CheckpointSink`](checkpoint::CheckpointSink) for its checkpoints and a
//! [`Fence`](crate::fence::Fence) for self-fencing; who implements those
//! (a local file or raft, the node's lease) is decided above.
//!
//! | file | job |
//! |---|---|
//! | `shard_consumer.rs` | one actor per shard: credits, pulls, ordered hand-off, checkpoints |
//! | `file_consumer.rs` | one actor per `file` source: globs, JSON lines or `Records` files (gzip too), checkpoint = file + offset |
//! | `queue_consumer.rs` | one actor per SQS poller of an `s3_sqs` source: receive, read the objects, delete once delivered |
//! | `s3_listing.rs` | an S3 trail read by listing: partitions (account, region), their cursors, the read loop a `ShardConsumer` runs for one |
//! | `budget.rs` | the node's budget of bytes in flight, shared by every shard |
//! | `enricher.rs` | the enrichment pool (a `SyncArbiter`: CPU work off the I/O threads) |
//! | `enrich.rs` | the pure enrichment step it runs |
//! | `checkpoint.rs` | the ordered ack tracker and the local checkpoint store |
//! | `spawner.rs` | making consumers; listing and consuming every shard without a cluster |
//! | `stats.rs` | the pipeline's counters, read by metrics, status and heartbeats |

pub mod budget;
pub mod checkpoint;
pub mod enrich;
pub mod enricher;
pub mod file_consumer;
pub mod queue_consumer;
pub mod s3_listing;
pub mod shard_consumer;
pub mod spawner;
pub mod stats;

pub use spawner::{
    Consumers, RunningConsumer, SourceReader, SourceSettings, SpawnError, Spawner,
    SLS_SOURCE_STRIDE,
};
pub use stats::PipelineStats;
