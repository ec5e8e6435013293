//! The node's control surfaces: the HTTP endpoints `/metrics` (Prometheus
//! text), `/healthz` (the process answers) and `/readyz` (every shard has a
//! consumer and no sink is stopped) here, and the gRPC control API
//! (`trail.v1.Control`, for `trailctl`) in [`grpc`].
//!
//! Metric names follow the cluster design notes §5: snake_case, base units,
//! `_total` on counters, bounded labels (never a cursor).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::pipeline::node::NodeStats;

pub mod grpc;
mod tags;
pub mod tls;

/// Renders the node's metrics in the Prometheus text format.
pub fn render(stats: &NodeStats) -> String {
    let mut out = String::with_capacity(4096);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut counter = |name: &str, help: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let shards = stats.shards.lock().clone();
    counter(
        "trail_component_received_events_total",
        "Events read from SLS.",
        shards
            .iter()
            .map(|(id, s)| {
                (
                    format!("component_kind=\"source\",shard=\"{id}\""),
                    s.logs.load(Relaxed),
                )
            })
            .collect(),
    );
    counter(
        "trail_component_received_bytes_total",
        "Raw event bytes read from SLS.",
        shards
            .iter()
            .map(|(id, s)| {
                (
                    format!("component_kind=\"source\",shard=\"{id}\""),
                    s.raw_bytes.load(Relaxed),
                )
            })
            .collect(),
    );
    let mut dropped = std::collections::BTreeMap::<&str, u64>::new();
    for s in shards.values() {
        for (k, v) in s.dropped.lock().iter() {
            *dropped.entry(k).or_default() += v;
        }
    }
    counter(
        "trail_component_discarded_events_total",
        "Events the filters dropped, by reason.",
        dropped
            .into_iter()
            .map(|(k, v)| (format!("intentional=\"true\",reason=\"{k}\""), v))
            .collect(),
    );
    counter(
        "trail_dead_lettered_events_total",
        "Events written to the dead-letter sink.",
        vec![(String::new(), stats.dead_letters.events.load(Relaxed))],
    );
    counter(
        "trail_tag_status_events_total",
        "Events delivered whose tags were incomplete, by tag_status.",
        vec![
            (
                "status=\"pending\"".into(),
                stats.sum(|s| s.tag_pending.load(Relaxed)),
            ),
            (
                "status=\"unavailable\"".into(),
                stats.sum(|s| s.tag_unavailable.load(Relaxed)),
            ),
        ],
    );
    counter(
        "trail_tag_cache_invalidations_total",
        "Cache entries dropped because the trail changed a resource's tags.",
        vec![(
            String::new(),
            stats.sum(|s| s.tag_invalidations.load(Relaxed)),
        )],
    );
    if let Some(c) = stats.tag_cache.lock().clone() {
        counter(
            "trail_tag_cache_lookups_total",
            "Tag lookups by cache tier and result (a hit may be stale and refreshing).",
            vec![
                ("tier=\"moka\",result=\"hit\"".into(), c.hits.load(Relaxed)),
                (
                    "tier=\"moka\",result=\"miss\"".into(),
                    c.misses.load(Relaxed),
                ),
            ],
        );
    }
    if let Some(r) = stats.tag_remote.lock().clone() {
        for (name, help, v) in [
            (
                "trail_tag_api_calls_total",
                "Batched tag API calls.",
                &r.calls,
            ),
            (
                "trail_tag_api_arns_total",
                "Resources asked for in tag API calls.",
                &r.arns,
            ),
            (
                "trail_tag_api_throttled_total",
                "Tag API calls answered with throttling.",
                &r.throttled,
            ),
            (
                "trail_tag_api_errors_total",
                "Tag API calls failed otherwise.",
                &r.errors,
            ),
        ] {
            counter(name, help, vec![(String::new(), v.load(Relaxed))]);
        }
    }
    counter(
        "trail_shard_restarts_total",
        "Shard chains restarted from their checkpoint.",
        shards
            .iter()
            .map(|(id, s)| (format!("shard=\"{id}\""), s.restarts.load(Relaxed)))
            .collect(),
    );
    counter(
        "trail_shard_pull_errors_total",
        "PullLogs calls that failed after the client's retries.",
        shards
            .iter()
            .map(|(id, s)| (format!("shard=\"{id}\""), s.pull_errors.load(Relaxed)))
            .collect(),
    );
    let sinks = stats.sinks.lock().clone();
    for (name, help, get) in [
        (
            "trail_component_sent_events_total",
            "Events a sink delivered.",
            (|s: &crate::sink::SinkStats| s.events.load(Relaxed))
                as fn(&crate::sink::SinkStats) -> u64,
        ),
        (
            "trail_component_sent_bytes_total",
            "Bytes a sink delivered (uncompressed).",
            |s| s.bytes.load(Relaxed),
        ),
        (
            "trail_component_errors_total",
            "Failed requests of a sink.",
            |s| s.errors.load(Relaxed),
        ),
        (
            "trail_component_retries_total",
            "Requests a sink sent again.",
            |s| s.retries.load(Relaxed),
        ),
        (
            "trail_sink_dead_lettered_events_total",
            "Events a destination refused for good.",
            |s| s.dead_lettered.load(Relaxed),
        ),
    ] {
        counter(
            name,
            help,
            sinks
                .iter()
                .map(|h| {
                    (
                        format!("component_kind=\"sink\",component_id=\"{}\"", h.name),
                        get(&h.stats),
                    )
                })
                .collect(),
        );
    }
    let _ = writeln!(out, "# HELP trail_sink_stopped 1 while a sink refuses to send (credentials refused).\n# TYPE trail_sink_stopped gauge");
    for h in &sinks {
        let _ = writeln!(
            out,
            "trail_sink_stopped{{component_id=\"{}\"}} {}",
            h.name,
            h.stats.stopped.load(Relaxed)
        );
    }
    if let Some(c) = stats.cluster.lock().clone() {
        render_cluster(&mut out, &c, &shards);
    }
    let _ = writeln!(out, "# HELP trail_shard_lag_seconds Now minus the receive time at the committed checkpoint (0 when caught up).\n# TYPE trail_shard_lag_seconds gauge");
    for (id, s) in &shards {
        let t = s.checkpoint_time.load(Relaxed);
        let lag = if s.caught_up.load(Relaxed) == 1 || t == 0 {
            0
        } else {
            now.saturating_sub(t)
        };
        let _ = writeln!(out, "trail_shard_lag_seconds{{shard=\"{id}\"}} {lag}");
    }
    out
}

/// Raft, lease, checkpoint-commit and epoch metrics of a cluster node.
fn render_cluster(
    out: &mut String,
    c: &crate::cluster::Cluster,
    shards: &std::collections::BTreeMap<
        u32,
        std::sync::Arc<crate::pipeline::shard_consumer::ShardStats>,
    >,
) {
    let v = c.raft_view();
    let lease = c.lease();
    let committer = c.committer();
    let gauges = [
        ("trail_raft_term", "The raft term.", v.term),
        (
            "trail_raft_is_leader",
            "1 on the raft leader.",
            u64::from(v.role == "leader"),
        ),
        (
            "trail_raft_commit_index",
            "The raft commit index (the applied index on followers).",
            v.commit_index,
        ),
        (
            "trail_raft_last_applied_index",
            "The last log index applied to the state machine.",
            v.applied_index,
        ),
        (
            "trail_raft_voters",
            "Voters in the raft membership.",
            v.voters.len() as u64,
        ),
        (
            "trail_lease_valid",
            "1 while the node's lease lets it consume (self-fencing otherwise).",
            u64::from(lease.valid()),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let counters = [
        (
            "trail_lease_fenced_total",
            "Times the node's lease ran out and it stopped consuming.",
            lease.fenced.load(Relaxed),
        ),
        (
            "trail_checkpoint_commits_total",
            "Checkpoint batches committed through raft.",
            committer.commits.load(Relaxed),
        ),
        (
            "trail_checkpoint_refused_total",
            "Checkpoints the state machine refused (stale epoch: fenced).",
            committer.refused_total.load(Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(out, "# HELP trail_shard_epoch The lease epoch this node consumes the shard under.\n# TYPE trail_shard_epoch gauge");
    for (id, s) in shards {
        let _ = writeln!(
            out,
            "trail_shard_epoch{{shard=\"{id}\"}} {}",
            s.epoch.load(Relaxed)
        );
    }
}

/// Whether the node is ready. Alone: shards are consumed and no sink is
/// stopped. In a cluster: a leader is known and the node's lease is valid
/// (a node may rightly own no shard: a standby, or drained).
pub fn ready(stats: &NodeStats) -> Result<(), String> {
    if let Some(c) = stats.cluster.lock().clone() {
        if c.raft_view().leader.is_none() {
            return Err("no raft leader known".into());
        }
        if !c.lease().valid() {
            return Err("no valid lease (not consuming)".into());
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
    stats: NodeStats,
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
            let stats = stats.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let stats = stats.clone();
                    async move {
                        let (status, body) = match req.uri().path() {
                            "/metrics" => (200, render(&stats)),
                            "/healthz" => (200, "ok\n".to_owned()),
                            "/readyz" => match ready(&stats) {
                                Ok(()) => (200, "ready\n".to_owned()),
                                Err(why) => (503, format!("not ready: {why}\n")),
                            },
                            _ => (404, "not found\n".to_owned()),
                        };
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
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
