//! # trail-node
//!
//! A Trail node pulls cloud audit trails (ActionTrail in SLS logstores) shard by
//! shard, gives every event its business meaning from resource tags, and
//! delivers it at least once to SLS, Splunk HEC or files. Nodes form a raft
//! cluster so that losing one host loses nothing.
//!
//! ## Layout
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the TOML config, validated at start; errors name the key |
//! | [`secret`] | secrets inline, from env or files; never printed |
//! | [`sls`] | the SLS wire protocol: signing, addressing, ListShards, GetCursor, PullLogs, PutLogs, consumer-group checkpoints, body codecs |
//! | [`event`] | ActionTrail / CloudTrail → `AuditEvent` (borrowed), resources, filters |
//! | [`tags`] | `TagCache` (moka) and its providers |
//! | [`pipeline`] | the actors: `ShardConsumer` → `Enricher` → sinks; checkpoints; assembling a node |
//! | [`sink`] | HEC, SLS, file and dead-letter sinks |
//! | [`control`] | `/metrics`, `/healthz`, `/readyz` |
//!
//! The cluster (`cluster`: openraft, leases, assignment) and the gRPC control
//! API join with their issue.

pub mod cluster;
pub mod config;
pub mod control;
pub mod event;
pub mod pipeline;
pub mod secret;
pub mod sink;
pub mod sls;
pub mod tags;
