//! The node's control surfaces: the HTTP endpoints `/metrics` (Prometheus
//! text), `/healthz` (the process answers) and `/readyz` (every shard has a
//! consumer and no sink is stopped) here, and the gRPC control API
//! (`trail.v1.Control`, for `trailctl`) in [`grpc`].
//!
//! Floor 5: control reads a [`StatusView`] (the pipeline's counters and the
//! cluster handle) and serves a metrics [`Registry`] the components filled
//! (each registers its own collectors; names in the cluster design notes
//! §5). Nothing below imports it; it never sees the node's assembly.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::cluster::{Cluster, ClusterError};
use crate::metrics::Registry;
use crate::pipeline::PipelineStats;

pub mod grpc;
mod tags;

/// What the control plane reads about its node.
#[derive(Clone)]
pub struct StatusView {
    pub pipeline: PipelineStats,
    /// With `[cluster]`: raft, the lease, the replicated state.
    pub cluster: Option<Cluster>,
}

/// A cluster error as the gRPC status callers see (shared by every service).
pub(crate) fn cluster_status(e: ClusterError) -> Status {
    match e {
        ClusterError::NoLeader(m) => Status::unavailable(format!("no leader reachable: {m}")),
        ClusterError::Refused(m) => Status::failed_precondition(m),
        other => Status::internal(other.to_string()),
    }
}

/// Whether the node is ready. Alone: shards are consumed and no sink is
/// stopped. In a cluster: a leader is known and the node's lease is valid
/// (a node may rightly own no shard: a standby, or drained); the leader is
/// not ready while shards wait for an owner and no node has a free slot.
pub fn ready(view: &StatusView) -> Result<(), String> {
    let stats = &view.pipeline;
    if let Some(c) = &view.cluster {
        if c.raft_view().leader.is_none() {
            return Err("no raft leader known".into());
        }
        if !c.lease().valid() {
            return Err("no valid lease (not consuming)".into());
        }
        if let Some(cap) = c.capacity().filter(|cap| cap.exhausted()) {
            return Err(format!(
                "leader: {} shard(s) without an owner and no free slot (raise cluster.slots, 0 = auto, or add nodes)",
                cap.unassigned
            ));
        }
    } else if stats.shards.lock().is_empty() {
        return Err("no shard consumer yet".into());
    }
    for h in stats.sinks.lock().iter() {
        if h.stats.stopped.load(Relaxed) != 0 {
            return Err(format!("sink {} is stopped (credentials refused)", h.name));
        }
    }
    Ok(())
}

/// Serves the endpoints on `listen` until `stop`.
pub async fn serve(
    listen: SocketAddr,
    registry: Arc<Registry>,
    view: StatusView,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                _ = stop.cancelled() => return,
            };
            let (registry, view) = (registry.clone(), view.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (registry, view) = (registry.clone(), view.clone());
                    async move {
                        let mut content_type = "text/plain; charset=utf-8";
                        let (status, body) = match req.uri().path() {
                            "/metrics" => {
                                content_type = crate::metrics::CONTENT_TYPE;
                                (200, crate::metrics::render(&registry))
                            }
                            "/healthz" => (200, "ok\n".to_owned()),
                            "/readyz" => match ready(&view) {
                                Ok(()) => (200, "ready\n".to_owned()),
                                Err(why) => (503, format!("not ready: {why}\n")),
                            },
                            _ => (404, "not found\n".to_owned()),
                        };
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
                        resp.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(content_type),
                        );
                        *resp.status_mut() =
                            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
