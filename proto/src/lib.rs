//! Trail's protocol schemas.
//!
//! # Layout
//!
//! | module | schema | used by |
//! |---|---|---|
//! | [`sls`] | `proto/sls/log.proto`: SLS `LogGroup` / `LogGroupList` (proto2) | `trail-node`'s SLS client and sink, devstack's SLS server |
//!
//! The gRPC control API (`trail.v1`) and the raft RPC envelope join this crate with
//! the cluster work. Only generated code lives here: conversions and logic belong
//! to `trail-node`.

/// SLS log wire format. Byte fields are `bytes::Bytes`, so decoding from a
/// `Bytes` buffer is zero-copy for keys, values, topics and sources.
#[allow(clippy::all, missing_docs)]
pub mod sls {
    include!(concat!(env!("OUT_DIR"), "/sls.rs"));
}
