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
//!
//! The Splunk HEC receiver, the Tag/ECS/SLB/STS server and the ActionTrail
//! generator join as the pipeline and tag work lands.

pub mod gen;
pub mod sls;
