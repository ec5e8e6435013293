//! `trail.v1.Control` and `trail.v1.Tags` over gRPC (tonic), plus the
//! cluster's `Peer` service, on one listener: what `trailctl`, other systems
//! and the other nodes call.
//!
//! Without `[cluster]` the node is its own cluster and leader ("single");
//! with it, status joins the replicated state (shards, epochs, checkpoints),
//! raft's view and the leader's liveness table, and the admin calls are
//! served by the leader (forwarded from any node).
//!
//! Authentication: with `[control] token`, every call must carry
//! `authorization: Bearer <token>` (compared in constant time) or gets
//! UNAUTHENTICATED. Peers send the same token.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use trail_proto::trail::v1 as pb;
use trail_proto::trail::v1::control_server::{Control, ControlServer};
use trail_proto::trail::v1::tags_server::TagsServer;

use super::{cluster_status, StatusView};
use crate::clock::unix_secs as now_secs;
use crate::cluster::{Cluster, Move, ShardPhase};
use crate::pipeline::PipelineStats;

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
    stats: PipelineStats,
    cluster: Option<Cluster>,
}

fn no_cluster() -> Status {
    Status::failed_precondition("this node runs without a cluster (no [cluster] in its config)")
}

impl ControlService {
    fn sinks(&self) -> Vec<pb::Sink> {
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
                queued: h.stats.queued.load(Relaxed),
                p99_latency_seconds: h.stats.latency.quantile(0.99),
                delivery: h.delivery.into(),
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
            dead_lettered: dl.dead_lettered.load(Relaxed),
            stopped: false,
            queued: 0,
            p99_latency_seconds: 0.0,
            delivery: "flushed".into(),
        });
        sinks
    }

    /// A node without a cluster: itself, every shard.
    fn status_single(&self) -> pb::StatusResponse {
        let now = now_secs();
        let rates = self.stats.rates.lock().clone();
        let shards = self.stats.shards.lock().clone();
        let mut out_shards = Vec::new();
        let mut errors = 0;
        for (id, s) in &shards {
            let l = s.live_view(now);
            errors += s.pull_errors.load(Relaxed) + s.dead_lettered.load(Relaxed);
            let at = s.committed_at.load(Relaxed);
            let (logstore, shard) = s.name(*id);
            out_shards.push(pb::Shard {
                logstore: logstore.map_or_else(|| self.info.logstore.clone(), |l| l.to_string()),
                shard,
                owner: self.info.node_id.clone(),
                epoch: 0,
                state: l.0.into(),
                checkpoint_age_seconds: if at == 0 {
                    0.0
                } else {
                    now.saturating_sub(at) as f64
                },
                lag_seconds: l.1,
                events_per_second: rates.get(id).copied().unwrap_or(0.0),
                cursor: s.committed.lock().clone(),
                standbys: vec![],
                partition: String::new(),
            });
        }
        let sinks = self.sinks();
        errors += sinks.iter().map(|s| s.errors).sum::<u64>();
        let id = self.info.node_id.clone();
        let n = out_shards.len() as u32;
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
                shards_owned: n,
                shards_standby: 0,
                events_per_second: rates.values().sum(),
                errors,
                name: id.clone(),
                state: "alive".into(),
            }],
            shards: out_shards,
            sinks,
            answered_by: id,
            voters: 1,
            learners: 0,
            shards_assigned: n,
            shards_total: n,
            slots: n,
            slots_free: 0,
            slot_headroom: None,
        }
    }

    /// The cluster as this node sees it, with the leader's liveness table.
    async fn status_cluster(&self, c: &Cluster) -> pb::StatusResponse {
        let view = c.raft_view();
        let a = c.assignments().borrow().clone();
        let live = c.live_table().await.unwrap_or_default();
        let now_ms = crate::clock::unix_ms();
        let mut nodes = Vec::new();
        let mut ids: Vec<u64> = a.members.keys().copied().collect();
        for v in view.voters.iter().chain(&view.learners) {
            if !ids.contains(v) {
                ids.push(*v);
            }
        }
        ids.sort_unstable();
        let alive_ids: std::collections::BTreeSet<u64> = live
            .iter()
            .filter(|(_, l)| l.alive)
            .map(|(id, _)| *id)
            .collect();
        let capacity = crate::cluster::scheduler::capacity(&a, &alive_ids);
        for id in ids {
            let m = a.members.get(&id);
            let l = live.get(&id);
            let alive = l.is_some_and(|l| l.alive);
            nodes.push(pb::Node {
                id: id.to_string(),
                addr: m
                    .map(|m| m.addr.clone())
                    .or_else(|| view.addrs.get(&id).cloned())
                    .unwrap_or_default(),
                role: if view.leader == Some(id) {
                    "leader"
                } else if view.learners.contains(&id) {
                    "learner"
                } else if view.voters.contains(&id) {
                    "follower"
                } else {
                    "removed"
                }
                .into(),
                pid: l.map(|l| l.live.pid).unwrap_or(0),
                heartbeat_age_seconds: l.map(|l| l.heartbeat_age_seconds).unwrap_or(-1.0),
                shards_owned: a.owned_by(id) as u32,
                shards_standby: a
                    .shards
                    .values()
                    .filter(|s| s.phase != ShardPhase::Done && s.standbys.contains(&id))
                    .count() as u32,
                events_per_second: l.map(|l| l.live.events_per_second).unwrap_or(0.0),
                errors: l.map(|l| l.live.errors).unwrap_or(0),
                name: m.map(|m| m.name.clone()).unwrap_or_default(),
                state: if m.is_some_and(|m| m.draining) {
                    "draining"
                } else if live.is_empty() {
                    "unknown"
                } else if alive {
                    "alive"
                } else {
                    "dead"
                }
                .into(),
            });
        }
        let mut shards = Vec::new();
        for (k, s) in &a.shards {
            let reported = s.owner.and_then(|o| live.get(&o)).and_then(|l| {
                l.live
                    .shards
                    .iter()
                    .find(|x| &x.shard == k && x.epoch == s.epoch)
            });
            let state = match s.phase {
                ShardPhase::Unassigned => "unassigned".to_string(),
                ShardPhase::Revoking => "revoking".to_string(),
                ShardPhase::Done => "done".to_string(),
                ShardPhase::Running => match reported {
                    Some(r) if r.pulled => r.state.clone(),
                    _ => "starting".to_string(),
                },
            };
            let cp = s.checkpoint.as_ref();
            let lag = match reported {
                Some(r) => r.lag_seconds,
                None => cp
                    .and_then(|c| c.cursor_time)
                    .map(|t| now_secs().saturating_sub(u64::from(t)) as f64)
                    .unwrap_or(0.0),
            };
            shards.push(pb::Shard {
                logstore: k.logstore.clone(),
                shard: k.shard,
                owner: s.owner.map(|o| o.to_string()).unwrap_or_default(),
                epoch: s.epoch,
                state,
                checkpoint_age_seconds: cp
                    .map(|c| now_ms.saturating_sub(c.saved_ms) as f64 / 1000.0)
                    .unwrap_or(0.0),
                lag_seconds: if s.phase == ShardPhase::Done {
                    0.0
                } else {
                    lag
                },
                events_per_second: reported.map(|r| r.events_per_second).unwrap_or(0.0),
                cursor: cp.map(|c| c.cursor.clone()).unwrap_or_default(),
                standbys: s.standbys.iter().map(|n| n.to_string()).collect(),
                partition: s.partition.clone().unwrap_or_default(),
            });
        }
        let total = a
            .shards
            .values()
            .filter(|s| s.phase != ShardPhase::Done)
            .count() as u32;
        // Owned by a live node; without the leader's liveness, by anyone.
        let assigned = if live.is_empty() {
            a.shards
                .values()
                .filter(|s| matches!(s.phase, ShardPhase::Running | ShardPhase::Revoking))
                .count() as u32
        } else {
            capacity.active - capacity.unassigned
        };
        pb::StatusResponse {
            cluster_id: a.cluster_id.clone(),
            leader_id: view.leader.map(|l| l.to_string()).unwrap_or_default(),
            term: view.term,
            commit_index: view.commit_index,
            applied_index: view.applied_index,
            nodes,
            shards,
            sinks: self.sinks(),
            answered_by: c.id().to_string(),
            voters: view.voters.len() as u32,
            learners: view.learners.len() as u32,
            shards_assigned: assigned,
            shards_total: total,
            slots: capacity.slots,
            slots_free: capacity.free,
            slot_headroom: (!live.is_empty()).then_some(capacity.headroom),
        }
    }

    fn cluster(&self) -> Result<&Cluster, Status> {
        self.cluster.as_ref().ok_or_else(no_cluster)
    }

    fn members(&self) -> Result<pb::MembersResponse, Status> {
        let c = self.cluster()?;
        let view = c.raft_view();
        let a = c.assignments().borrow().clone();
        let members = view
            .addrs
            .iter()
            .map(|(id, addr)| pb::Member {
                id: *id,
                addr: addr.clone(),
                role: if view.voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .into(),
                draining: a.members.get(id).is_some_and(|m| m.draining),
                name: a
                    .members
                    .get(id)
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
            })
            .collect();
        Ok(pb::MembersResponse {
            members,
            joint: view.joint,
        })
    }
}

fn moves(m: Vec<Move>) -> Vec<pb::Move> {
    m.into_iter()
        .map(|m| pb::Move {
            logstore: m.shard.logstore.clone(),
            shard: m.shard.shard,
            from: m.from.map(|f| f.to_string()).unwrap_or_default(),
            to: m.to.to_string(),
            reason: m.reason,
        })
        .collect()
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(match &self.cluster {
            Some(c) => self.status_cluster(c).await,
            None => self.status_single(),
        }))
    }

    async fn rebalance(
        &self,
        request: Request<pb::RebalanceRequest>,
    ) -> Result<Response<pb::RebalanceResponse>, Status> {
        let dry_run = request.into_inner().dry_run;
        let m = self
            .cluster()?
            .rebalance(dry_run)
            .await
            .map_err(cluster_status)?;
        Ok(Response::new(pb::RebalanceResponse {
            moves: moves(m),
            applied: !dry_run,
        }))
    }

    async fn list_members(
        &self,
        _request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        Ok(Response::new(self.members()?))
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        let r = request.into_inner();
        if r.id == 0 || r.addr.is_empty() {
            return Err(Status::invalid_argument("id (≥ 1) and addr are required"));
        }
        self.cluster()?
            .add_member(r.id, r.addr)
            .await
            .map_err(cluster_status)?;
        Ok(Response::new(self.members()?))
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        self.cluster()?
            .remove_member(request.into_inner().id)
            .await
            .map_err(cluster_status)?;
        Ok(Response::new(self.members()?))
    }

    async fn drain(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        let r = request.into_inner();
        let m = self
            .cluster()?
            .drain(r.id, r.undo)
            .await
            .map_err(cluster_status)?;
        Ok(Response::new(pb::DrainResponse { moves: moves(m) }))
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the gRPC services on `listen` until `stop`; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    token: Option<String>,
    info: NodeInfo,
    view: StatusView,
    tls: Option<tonic::transport::ServerTlsConfig>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let StatusView { pipeline, cluster } = view;
    let service = ControlService {
        info,
        addr,
        stats: pipeline,
        cluster: cluster.clone(),
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
    let tags = super::tags::TagsService {
        cluster: cluster.clone(),
    };
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls)
            .map_err(|e| std::io::Error::other(format!("control.tls: {e}")))?;
    }
    let mut router = server
        .add_service(ControlServer::with_interceptor(service, check.clone()))
        .add_service(TagsServer::with_interceptor(tags, check.clone()));
    if let Some(c) = cluster {
        router = router.add_service(tonic::service::interceptor::InterceptedService::new(
            crate::cluster::peer_service(c),
            check,
        ));
    }
    tokio::spawn(async move {
        let r = router
            .serve_with_incoming_shutdown(incoming, stop.cancelled())
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "gRPC services stopped");
        }
    });
    Ok(addr)
}
