//! `trail.v1.Control` over gRPC (tonic), served next to the metrics port:
//! what `trailctl` and other systems call. On a single node the node is its
//! own cluster and leader; the cluster issue fills in raft's view.
//!
//! Authentication: with `[control] token`, every call must carry
//! `authorization: Bearer <token>` (compared in constant time) or gets
//! UNAUTHENTICATED.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use trail_proto::trail::v1 as pb;
use trail_proto::trail::v1::control_server::{Control, ControlServer};

use crate::pipeline::node::NodeStats;

/// How often per-shard rates are sampled.
const SAMPLE: Duration = Duration::from_secs(5);

/// What the service knows about its node.
#[derive(Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub project: String,
    pub logstore: String,
}

struct ControlService {
    info: NodeInfo,
    addr: SocketAddr,
    stats: NodeStats,
    /// shard → log events per second over the last sample.
    rates: Arc<Mutex<BTreeMap<u32, f64>>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ControlService {
    fn status(&self) -> pb::StatusResponse {
        let now = now_secs();
        let rates = self.rates.lock().clone();
        let shards = self.stats.shards.lock().clone();
        let mut out_shards = Vec::new();
        let mut errors = 0;
        for (id, s) in &shards {
            let caught_up = s.caught_up.load(Relaxed) == 1;
            let t = s.checkpoint_time.load(Relaxed);
            let lag = if caught_up || t == 0 {
                0
            } else {
                now.saturating_sub(t)
            };
            let at = s.committed_at.load(Relaxed);
            errors += s.pull_errors.load(Relaxed) + s.dead_lettered.load(Relaxed);
            out_shards.push(pb::Shard {
                logstore: self.info.logstore.clone(),
                shard: *id,
                owner: self.info.node_id.clone(),
                epoch: 0,
                state: if s.finished.load(Relaxed) == 1 {
                    "done"
                } else if caught_up {
                    "caught_up"
                } else {
                    "consuming"
                }
                .into(),
                checkpoint_age_seconds: if at == 0 {
                    0.0
                } else {
                    now.saturating_sub(at) as f64
                },
                lag_seconds: lag as f64,
                events_per_second: rates.get(id).copied().unwrap_or(0.0),
                cursor: s.committed.lock().clone(),
            });
        }
        let mut sinks: Vec<pb::Sink> = self
            .stats
            .sinks
            .lock()
            .iter()
            .map(|h| pb::Sink {
                name: h.name.clone(),
                kind: h.kind.into(),
                events: h.stats.events.load(Relaxed),
                bytes: h.stats.bytes.load(Relaxed),
                errors: h.stats.errors.load(Relaxed),
                retries: h.stats.retries.load(Relaxed),
                requests: h.stats.requests.load(Relaxed),
                dead_lettered: h.stats.dead_lettered.load(Relaxed),
                stopped: h.stats.stopped.load(Relaxed) != 0,
            })
            .collect();
        let dl = &self.stats.dead_letters;
        sinks.push(pb::Sink {
            name: "dead_letter".into(),
            kind: "dead_letter".into(),
            events: dl.events.load(Relaxed),
            bytes: dl.bytes.load(Relaxed),
            errors: dl.errors.load(Relaxed),
            retries: dl.retries.load(Relaxed),
            requests: dl.requests.load(Relaxed),
            dead_lettered: 0,
            stopped: false,
        });
        errors += sinks.iter().map(|s| s.errors).sum::<u64>();
        let id = self.info.node_id.clone();
        pb::StatusResponse {
            cluster_id: id.clone(),
            leader_id: id.clone(),
            term: 0,
            commit_index: 0,
            applied_index: 0,
            nodes: vec![pb::Node {
                id: id.clone(),
                addr: self.addr.to_string(),
                role: "single".into(),
                pid: std::process::id(),
                heartbeat_age_seconds: 0.0,
                shards_owned: out_shards.len() as u32,
                shards_standby: 0,
                events_per_second: rates.values().sum(),
                errors,
            }],
            shards: out_shards,
            sinks,
            answered_by: id,
        }
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(ControlService::status(self)))
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the control API on `listen` until `stop`; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    token: Option<String>,
    info: NodeInfo,
    stats: NodeStats,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let rates: Arc<Mutex<BTreeMap<u32, f64>>> = Arc::default();
    // Per-shard rates, sampled.
    {
        let (stats, rates, stop) = (stats.clone(), rates.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last: BTreeMap<u32, u64> = BTreeMap::new();
            let mut tick = tokio::time::interval(SAMPLE);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let now: BTreeMap<u32, u64> = stats
                    .shards
                    .lock()
                    .iter()
                    .map(|(id, s)| (*id, s.logs.load(Relaxed)))
                    .collect();
                let mut r = rates.lock();
                for (id, n) in &now {
                    let before = last.get(id).copied().unwrap_or(*n);
                    r.insert(*id, n.saturating_sub(before) as f64 / SAMPLE.as_secs_f64());
                }
                last = now;
            }
        });
    }
    let service = ControlService {
        info,
        addr,
        stats,
        rates,
    };
    let check = move |req: Request<()>| -> Result<Request<()>, Status> {
        let Some(want) = &token else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_eq(given.as_bytes(), want.as_bytes()) {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "a valid `authorization: Bearer <token>` is required",
            ))
        }
    };
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(async move {
        let r = tonic::transport::Server::builder()
            .add_service(ControlServer::with_interceptor(service, check))
            .serve_with_incoming_shutdown(incoming, stop.cancelled())
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "control API stopped");
        }
    });
    Ok(addr)
}
