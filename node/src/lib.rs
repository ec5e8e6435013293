//! # trail-node
//!
//! A Trail node pulls cloud audit trails (ActionTrail in SLS logstores, shard
//! by shard; CloudTrail files from S3 as SQS announces them), gives every
//! event its business meaning from resource tags, and delivers it at least
//! once to SLS, Splunk HEC or files. Nodes form a raft
//! cluster so that losing one host loses nothing.
//!
//! ## Layout: floors
//!
//! A module imports only from its own floor or below, and no two modules
//! import each other (`tests/tests/layers.rs` reads every `use crate::…`
//! and fails on an upward import or a circle).
//!
//! | floor | module | owns |
//! |---|---|---|
//! | 0 | [`secret`] | secrets inline, from env or files; never printed |
//! | 0 | [`clock`] | wall-clock time for reports (safety runs on the monotonic clock) |
//! | 0 | [`fence`] | the token a writer checks before and races during every write; the node's lease |
//! | 0 | [`net`] | TLS material (`[control.tls]`), the one HTTP client builder, response bodies read within a cap |
//! | 0 | [`metrics`] | histograms and collector helpers over `prometheus-client` |
//! | 1 | [`event`] | ActionTrail / CloudTrail → `AuditEvent` (borrowed), resources, filters |
//! | 1 | [`sls`] | the SLS wire protocol: signing, addressing, ListShards, GetCursor, PullLogs, PutLogs, consumer-group checkpoints, body codecs |
//! | 1 | [`aws`] | the AWS wire protocols of a CloudTrail source: SigV4 requests, S3 GetObject, SQS receive/delete/visibility, the notifications that name new objects, credentials (AWS's default chain, STS AssumeRole) |
//! | 1 | [`record`] | the business-view record: provenance, tags, the view encoders write, dead letters, the shared JSON writer, encoded slabs |
//! | 2 | [`tags`] | `TagCache` (moka) and its providers (file, Alibaba Cloud, AWS) |
//! | 2 | [`sink`] | HEC, SLS, file and dead-letter sinks; each folder owns its config, encoder, service and retry |
//! | 3 | [`pipeline`] | the actors: `ShardConsumer` → `Enricher` → sinks; checkpoints; the pipeline's counters |
//! | 4 | [`cluster`] | openraft, redb storage, leases, the planner; the reconciler that runs what raft assigns |
//! | 5 | [`control`] | gRPC (`trail.v1.Control`, `trail.v1.Tags`, the peers' service), `/metrics`, `/healthz`, `/readyz` |
//! | 6 | [`config`], [`node`], [`setup`], [`fuzz`] | the TOML config (errors name the key); the composition root that builds, starts and stops a node; `trail-node setup` (logstores, indexes, saved searches); the fuzz targets (every decoder outside bytes reach) |
//!
//! The `trail-node` binary (`main.rs`, `demo.rs`) sits on top of floor 6.

pub mod clock;
pub mod fence;
pub mod metrics;
pub mod net;
pub mod secret;

pub mod aws;
pub mod event;
pub mod record;
pub mod sls;

pub mod sink;
pub mod tags;

pub mod pipeline;

pub mod cluster;

pub mod control;

pub mod config;
pub mod fuzz;
pub mod node;
pub mod setup;
