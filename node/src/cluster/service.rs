//! The `Peer` gRPC service (proto/trail/cluster/v1/peer.proto): raft's RPCs,
//! heartbeats, and requests forwarded to the leader. Served on the node's
//! gRPC listener beside `Control` and `Tags`, behind the same bearer token.

use std::time::Duration;

use openraft::Snapshot;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};
use trail_proto::trail::cluster::v1 as pb;
use trail_proto::trail::cluster::v1::peer_server::{Peer, PeerServer};

use super::forward::{LeaderError, LeaderRequest};
use super::lease::Beat;
use super::network::{SnapshotHeader, SnapshotTransfer, SNAPSHOT_CHUNK, VERSION};

/// The largest snapshot a node takes from a peer.
const MAX_SNAPSHOT_BYTES: usize = 8 << 30;
use super::Cluster;

struct PeerService {
    cluster: Cluster,
}

/// The service for a node's gRPC server.
pub fn peer_service(cluster: Cluster) -> PeerServer<impl Peer> {
    PeerServer::new(PeerService { cluster })
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20)
}

fn open<T: DeserializeOwned>(req: Request<pb::Envelope>) -> Result<(String, T), Status> {
    open_envelope(req.into_inner())
}

fn open_envelope<T: DeserializeOwned>(e: pb::Envelope) -> Result<(String, T), Status> {
    if e.version != VERSION {
        return Err(Status::failed_precondition(format!(
            "peer envelope version {} is not {VERSION}: nodes of different Trail versions cannot form a cluster",
            e.version
        )));
    }
    let v = serde_json::from_slice(&e.payload)
        .map_err(|err| Status::invalid_argument(format!("{} payload: {err}", e.kind)))?;
    Ok((e.kind, v))
}

fn seal<T: Serialize>(kind: &str, v: &T) -> Result<Response<pb::Envelope>, Status> {
    Ok(Response::new(pb::Envelope {
        version: VERSION,
        kind: kind.into(),
        payload: serde_json::to_vec(v).map_err(|e| Status::internal(e.to_string()))?,
    }))
}

/// A `grpc-timeout` header value: digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(v: &str) -> Option<Duration> {
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, req: Request<pb::Envelope>) -> Result<Response<pb::Envelope>, Status> {
        let kind = req.get_ref().kind.clone();
        let raft = &self.cluster.inner.raft;
        match kind.as_str() {
            "vote" => {
                let (_, r) = open(req)?;
                seal(&kind, &raft.vote(r).await)
            }
            "append" => {
                let (_, r) = open(req)?;
                seal(&kind, &raft.append_entries(r).await)
            }
            "snapshot" => {
                let (_, t): (_, SnapshotTransfer) = open(req)?;
                let snapshot = Snapshot {
                    meta: t.meta,
                    snapshot: Box::new(t.data),
                };
                seal(&kind, &raft.install_full_snapshot(t.vote, snapshot).await)
            }
            other => Err(Status::invalid_argument(format!(
                "unknown raft kind {other:?}"
            ))),
        }
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::Envelope>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty snapshot stream"))?;
        let header = first
            .header
            .ok_or_else(|| Status::invalid_argument("the first snapshot chunk has no header"))?;
        let (kind, h): (_, SnapshotHeader) = open_envelope(header)?;
        let mut data = first.data;
        while let Some(chunk) = stream.message().await? {
            if chunk.header.is_some() || chunk.data.len() > SNAPSHOT_CHUNK {
                return Err(Status::invalid_argument(
                    "a snapshot chunk after the first with a header, or larger than a chunk",
                ));
            }
            if data.len() + chunk.data.len() > MAX_SNAPSHOT_BYTES {
                return Err(Status::resource_exhausted(format!(
                    "a snapshot larger than {MAX_SNAPSHOT_BYTES} bytes"
                )));
            }
            data.extend_from_slice(&chunk.data);
        }
        let snapshot = Snapshot {
            meta: h.meta,
            snapshot: Box::new(data),
        };
        let raft = &self.cluster.inner.raft;
        seal(&kind, &raft.install_full_snapshot(h.vote, snapshot).await)
    }

    async fn heartbeat(
        &self,
        req: Request<pb::Envelope>,
    ) -> Result<Response<pb::Envelope>, Status> {
        let (kind, beat): (_, Beat) = open(req)?;
        seal(&kind, &self.cluster.on_beat(beat).await)
    }

    async fn forward(&self, req: Request<pb::Envelope>) -> Result<Response<pb::Envelope>, Status> {
        // As long as the caller waits (its `grpc-timeout`), at most a minute.
        let within = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(grpc_timeout)
            .unwrap_or(Duration::from_secs(10))
            .min(Duration::from_secs(60));
        let (kind, r): (_, LeaderRequest) = open(req)?;
        // Served here if this node leads, else passed on to the leader it knows.
        let res = self
            .cluster
            .to_leader(r, within)
            .await
            .map_err(|e| match e {
                super::ClusterError::Refused(m) => LeaderError::Refused(m),
                other => LeaderError::Failed(other.to_string()),
            });
        seal(&kind, &res)
    }
}
