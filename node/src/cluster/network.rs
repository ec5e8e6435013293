//! Raft's network over tonic: one lazily connected HTTP/2 channel per peer
//! address, reused by raft, heartbeats and forwarded writes.
//!
//! Payloads are serde_json in the versioned `Envelope` of
//! `proto/trail/cluster/v1/peer.proto`. A peer that cannot be reached maps to
//! `Unreachable` (openraft backs off); an error raised by the peer's raft
//! comes back as `RemoteError`.

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

/// The snapshot as it travels.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotTransfer {
    pub vote: Vote<NodeId>,
    pub meta: SnapshotMeta<NodeId, MemberAddr>,
    pub data: Vec<u8>,
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
        if let Some(t) = &self.token {
            if let Ok(v) = format!("Bearer {t}").parse() {
                request.metadata_mut().insert("authorization", v);
            }
        }
        let call = async {
            match rpc {
                Rpc::Raft => client.raft(request).await,
                Rpc::Heartbeat => client.heartbeat(request).await,
                Rpc::Forward => client.forward(request).await,
            }
        };
        let reply = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown
                        if status.message().contains("transport")
                            || status.message().contains("connect") =>
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
                })
            }
            Err(_) => {
                return Err(PeerError::Unreachable {
                    addr: addr.into(),
                    message: format!("no answer within {timeout:?}"),
                })
            }
        };
        serde_json::from_slice(&reply.payload).map_err(|e| PeerError::Decode {
            addr: addr.into(),
            kind: kind.into(),
            message: e.to_string(),
        })
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
        let transfer = SnapshotTransfer {
            vote,
            meta: snapshot.meta.clone(),
            data: *snapshot.snapshot,
        };
        // openraft only cancels; the deadline is ours.
        let timeout = option.hard_ttl().max(Duration::from_secs(30));
        let call = self
            .peers
            .call::<_, Result<SnapshotResponse<NodeId>, Fatal<NodeId>>>(
                &self.addr,
                Rpc::Raft,
                "snapshot",
                &transfer,
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
