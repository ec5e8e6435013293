//! # trail-devstack
//!
//! Local stand-ins for the clouds Trail talks to. Our machines reach no cloud,
//! so every test, demo and benchmark runs against these; they are worth
//! something only if the vendors' own clients cannot tell them from the real
//! services, which `tests/conformance` checks with the vendors' official SDKs (Alibaba's
//! Python SDKs, AWS's boto3).
//!
//! ## Layout
//!
//! | module | stands in for |
//! |---|---|
//! | [`sls`] | Alibaba Cloud Log Service (SLS): projects, logstores, shards, PutLogs, PullLogs, cursors, consumer groups, faults |
//! | [`hec`] | Splunk HTTP Event Collector: routes, tokens, channels, batches with per-object errors, gzip, indexer acks, faults |
//! | [`aws`] | Amazon S3, SQS and STS as a CloudTrail collector uses them: buckets, objects, listings, event notifications, queues with visibility timeouts, roles with external ids, container credentials, faults |
//! | [`cloud`] | Alibaba Tag / ECS / SLB / STS and AWS resource tagging, from a tags file |
//! | [`gen`] | realistic ActionTrail events, CloudTrail log files, and the tags of their resources, deterministic by seed |
//! | [`http`] | the listener they all run on (connection cap, graceful shutdown) |

pub mod aws;
pub mod cloud;
pub mod gen;
pub mod hec;
pub mod http;
pub mod sls;
