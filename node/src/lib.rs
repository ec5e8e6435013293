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
//! | [`sls`] | the SLS wire protocol: signing, addressing, ListShards, GetCursor, PullLogs, PutLogs, consumer-group checkpoints, body codecs |
//!
//! The house plan (`ARCHITECTURE.md` in the shared docs) adds, as they land:
//! `config`, `event`, `pipeline` (the `ShardConsumer` → `Enricher` → sink
//! actors), `sink/{hec,sls,file}`, `tags`, `cluster` (openraft) and `control`
//! (gRPC, `/metrics`).

pub mod config;
pub mod event;
pub mod pipeline;
pub mod secret;
pub mod sink;
pub mod sls;
pub mod tags;
