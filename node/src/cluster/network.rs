//! Raft's network over tonic: one lazily connected HTTP/2 channel per peer
//! address, reused by raft, heartbeats and forwarded writes.
//!
//! Payloads are serde_json in the versioned `Envelope` of
//! `proto/trail/cluster/v1/peer.proto`. A peer that cannot be reached maps to
//! `Unreachable` (openraft backs off); an error raised by the peer's raft
//! comes back as `RemoteError`. Snapshots travel as raw bytes in chunks of
//! [`SNAPSHOT_CHUNK`] (`InstallSnapshot`, a client stream): no message
//! grows with the replicated state, and bytes stay bytes (inside a JSON
//! envelope each would be a number, ~3.5 × the size).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Snapshot, SnapshotMeta, Vote};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};
use trail_proto::trail::cluster::v1 as pb;
use trail_proto::trail::cluster::v1::peer_client::PeerClient;

use super::types::{MemberAddr, NodeId, TypeConfig};

/// The envelope format this build speaks.
pub(crate) const VERSION: u32 = 1;

/// A peer call that failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer {addr} unreachable: {message}")]
    Unreachable { addr: String, message: String },
    #[error("peer {addr} answered {code:?}: {message}")]
    Status {
        addr: String,
        code: tonic::Code,
        message: String,
    },
    #[error("peer {addr} sent an unreadable {kind} reply: {message}")]
    Decode {
        addr: String,
        kind: String,
        message: String,
    },
    #[error("cannot encode a {kind} request: {message}")]
    Encode { kind: String, message: String },
}

impl PeerError {
    /// The peer may not have seen the request at all.
    pub fn is_unreachable(&self) -> bool {
        match self {
            PeerError::Unreachable { .. } => true,
            PeerError::Status { code, .. } => {
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                )
            }
            PeerError::Decode { .. } | PeerError::Encode { .. } => false,
        }
    }
}

/// The snapshot as a peer of an earlier release takes it: one envelope,
/// its bytes a JSON array of numbers.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotTransfer {
    pub vote: Vote<NodeId>,
    pub meta: SnapshotMeta<NodeId, MemberAddr>,
    pub data: Vec<u8>,
}

/// The first chunk's header of a streamed snapshot: all but its bytes.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    pub vote: Vote<NodeId>,
    pub meta: SnapshotMeta<NodeId, MemberAddr>,
}

/// Bytes of a snapshot per `SnapshotChunk`.
pub(crate) const SNAPSHOT_CHUNK: usize = 1 << 20;

/// How long a snapshot may take to send and install, at least: a large
/// tag tier is hundreds of MB to move, parse and store.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);

fn bearer<T>(request: &mut tonic::Request<T>, token: &Option<Arc<str>>) {
    if let Some(t) = token {
        if let Ok(v) = format!("Bearer {t}").parse() {
            request.metadata_mut().insert("authorization", v);
        }
    }
}

/// A peer's answer, read.
fn decode_reply<Resp: DeserializeOwned>(
    addr: &str,
    kind: &str,
    reply: &pb::Envelope,
) -> Result<Resp, PeerError> {
    serde_json::from_slice(&reply.payload).map_err(|e| PeerError::Decode {
        addr: addr.into(),
        kind: kind.into(),
        message: e.to_string(),
    })
}

/// A failed call's status as a [`PeerError`].
fn status_error(addr: &str, status: tonic::Status) -> PeerError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown
            if status.message().contains("transport") || status.message().contains("connect") =>
        {
            PeerError::Unreachable {
                addr: addr.into(),
                message: status.message().into(),
            }
        }
        code => PeerError::Status {
            addr: addr.into(),
            code,
            message: status.message().into(),
        },
    }
}

/// Channels to peers, by address.
#[derive(Clone)]
pub(crate) struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    token: Option<Arc<str>>,
    tls: Option<crate::net::tls::PeerTls>,
}

/// Which RPC of the `Peer` service.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rpc {
    Raft,
    Heartbeat,
    Forward,
}

impl Peers {
    pub fn new(token: Option<String>, tls: Option<crate::net::tls::PeerTls>) -> Peers {
        Peers {
            channels: Arc::default(),
            token: token.map(Arc::from),
            tls,
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, PeerError> {
        if let Some(c) = self.channels.lock().get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(|e| {
            PeerError::Unreachable {
                addr: addr.into(),
                message: e.to_string(),
            }
        })?;
        if let Some(tls) = &self.tls {
            ep = ep
                .tls_config(tls.0.clone())
                .map_err(|e| PeerError::Unreachable {
                    addr: addr.into(),
                    message: format!("TLS: {e}"),
                })?;
        }
        let ep = ep
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let c = ep.connect_lazy();
        self.channels.lock().insert(addr.into(), c.clone());
        Ok(c)
    }

    /// Calls `rpc` on the peer at `addr` with a serde payload.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        rpc: Rpc,
        kind: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let mut client = PeerClient::new(self.channel(addr)?)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        let payload = serde_json::to_vec(req).map_err(|e| PeerError::Encode {
            kind: kind.into(),
            message: e.to_string(),
        })?;
        let mut request = tonic::Request::new(pb::Envelope {
            version: VERSION,
            kind: kind.into(),
            payload,
        });
        request.set_timeout(timeout);
        bearer(&mut request, &self.token);
        let call = async {
            match rpc {
                Rpc::Raft => client.raft(request).await,
                Rpc::Heartbeat => client.heartbeat(request).await,
                Rpc::Forward => client.forward(request).await,
            }
        };
        let reply = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return Err(status_error(addr, status)),
            Err(_) => {
                return Err(PeerError::Unreachable {
                    addr: addr.into(),
                    message: format!("no answer within {timeout:?}"),
                })
            }
        };
        decode_reply(addr, kind, &reply)
    }
}

impl Peers {
    /// Sends a snapshot to the peer at `addr` as a stream of chunks; a
    /// peer of an earlier release (no `InstallSnapshot`) is sent it whole
    /// in one envelope, as before.
    pub async fn send_snapshot<Resp: DeserializeOwned>(
        &self,
        addr: &str,
        header: SnapshotHeader,
        data: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let kind = "snapshot";
        let mut client = PeerClient::new(self.channel(addr)?)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(2 * SNAPSHOT_CHUNK);
        let payload = serde_json::to_vec(&header).map_err(|e| PeerError::Encode {
            kind: kind.into(),
            message: e.to_string(),
        })?;
        let data = Arc::new(data);
        let chunks = data.len().div_ceil(SNAPSHOT_CHUNK).max(1);
        let bytes = data.clone();
        let mut envelope = Some(pb::Envelope {
            version: VERSION,
            kind: kind.into(),
            payload,
        });
        let stream = tokio_stream::iter((0..chunks).map(move |i| {
            let from = i * SNAPSHOT_CHUNK;
            let to = (from + SNAPSHOT_CHUNK).min(bytes.len());
            pb::SnapshotChunk {
                header: envelope.take(),
                data: bytes[from..to].to_vec(),
            }
        }));
        let mut request = tonic::Request::new(stream);
        request.set_timeout(timeout);
        bearer(&mut request, &self.token);
        let reply = match tokio::time::timeout(timeout, client.install_snapshot(request)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                let whole = SnapshotTransfer {
                    vote: header.vote,
                    meta: header.meta,
                    data: Arc::try_unwrap(data).unwrap_or_else(|d| (*d).clone()),
                };
                return self.call(addr, Rpc::Raft, kind, &whole, timeout).await;
            }
            Ok(Err(status)) => return Err(status_error(addr, status)),
            Err(_) => {
                return Err(PeerError::Unreachable {
                    addr: addr.into(),
                    message: format!("no answer within {timeout:?}"),
                })
            }
        };
        decode_reply(addr, kind, &reply)
    }
}

/// openraft's factory: one [`RaftPeer`] per target.
pub(crate) struct Network {
    pub peers: Peers,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: NodeId, node: &MemberAddr) -> RaftPeer {
        RaftPeer {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
        }
    }
}

pub(crate) struct RaftPeer {
    target: NodeId,
    addr: String,
    peers: Peers,
}

type RaftRpcError<E = openraft::error::Infallible> =
    RPCError<NodeId, MemberAddr, RaftError<NodeId, E>>;

impl RaftPeer {
    async fn raft<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Result<Resp, RaftError<NodeId>>, RaftRpcError> {
        self.peers
            .call(&self.addr, Rpc::Raft, kind, req, option.hard_ttl())
            .await
            .map_err(|e| {
                if e.is_unreachable() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftRpcError> {
        self.raft("append", &rpc, &option)
            .await?
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RaftRpcError> {
        self.raft("vote", &rpc, &option)
            .await?
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    #[allow(deprecated)]
    async fn install_snapshot(
        &mut self,
        _rpc: openraft::raft::InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<openraft::raft::InstallSnapshotResponse<NodeId>, RaftRpcError<InstallSnapshotError>>
    {
        // Snapshots travel whole through `full_snapshot`.
        Err(RPCError::Network(NetworkError::new(
            &std::io::Error::other("chunked snapshots are not used; full_snapshot is"),
        )))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let header = SnapshotHeader {
            vote,
            meta: snapshot.meta.clone(),
        };
        // openraft only cancels; the deadline is ours.
        let timeout = option.hard_ttl().max(SNAPSHOT_TIMEOUT);
        let call = self
            .peers
            .send_snapshot::<Result<SnapshotResponse<NodeId>, Fatal<NodeId>>>(
                &self.addr,
                header,
                *snapshot.snapshot,
                timeout,
            );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = call => match r {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(fatal)) => Err(StreamingError::RemoteError(RemoteError::new(self.target, fatal))),
                Err(e) if e.is_unreachable() => Err(StreamingError::Unreachable(Unreachable::new(&e))),
                Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
            }
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
