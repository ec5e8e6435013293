//! Trail's protocol schemas.
//!
//! # Layout
//!
//! | module | schema | used by |
//! |---|---|---|
//! | [`sls`] | `proto/sls/log.proto`: SLS `LogGroup` / `LogGroupList` (proto2) | `trail-node`'s SLS client and sink, devstack's SLS server |
//! | [`trail::v1`] | `proto/trail/v1/{control,tags}.proto`: the `Control` and `Tags` gRPC services | `trail-node` (server), `trailctl` and other systems (clients) |
//! | [`trail::cluster::v1`] | `proto/trail/cluster/v1/peer.proto`: node-to-node RPCs (raft, heartbeats, forwarding) in a versioned envelope | `trail-node` only |
//!
//! Only generated code lives here: conversions and logic belong to `trail-node`.

/// SLS log wire format. Byte fields are `bytes::Bytes`, so decoding from a
/// `Bytes` buffer is zero-copy for keys, values, topics and sources.
#[allow(clippy::all, missing_docs)]
pub mod sls {
    include!(concat!(env!("OUT_DIR"), "/sls.rs"));
}

/// Trail's own APIs.
pub mod trail {
    /// Version 1 of the control API (see `proto/trail/v1/control.proto`).
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/trail.v1.rs"));
    }

    /// Node-to-node RPCs (see `proto/trail/cluster/v1/peer.proto`).
    pub mod cluster {
        #[allow(clippy::all, missing_docs)]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/trail.cluster.v1.rs"));
        }
    }
}
