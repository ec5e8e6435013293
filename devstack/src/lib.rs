//! # trail-devstack
//!
//! Local stand-ins for the clouds Trail talks to. Our machines reach no cloud,
//! so every test, demo and benchmark runs against these; they are worth
//! something only if the vendors' own clients cannot tell them from the real
//! services, which `tests/conformance` checks with Alibaba's official SDKs.
//!
//! ## Layout
//!
//! | module | stands in for |
//! |---|---|
//! | [`sls`] | Alibaba Cloud Log Service (SLS): projects, logstores, shards, PutLogs, PullLogs, cursors, consumer groups, faults |
//! | [`hec`] | Splunk HTTP Event Collector: routes, tokens, channels, batches with per-object errors, gzip, indexer acks, faults |
//! | [`gen`] | realistic ActionTrail events and the tags of their resources, deterministic by seed |
//! | [`http`] | the listener they all run on (connection cap, graceful shutdown) |
//!
//! The Tag/ECS/SLB/STS server joins with the tag work.

pub mod cloud;
pub mod gen;
pub mod hec;
pub mod http;
pub mod sls;
