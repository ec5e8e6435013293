//! Liveness and leases.
//!
//! Every node beats the raft leader every `heartbeat_ms`; the leader answers
//! only while raft tells it a quorum acknowledged it recently, so a leader
//! cut off from the majority stops renewing anyone's lease, its own too.
//!
//! * The node's lease ([`crate::fence::Lease`], renewed here) runs until the *send* time of its last
//!   acknowledged beat + `lease_ms` − `fence_margin_ms`, on the monotonic
//!   clock. Past that the node stops pulling and stops handing batches to
//!   its sinks (self-fencing) until a beat is acknowledged again.
//! * The leader ([`Liveness`]) counts a node dead `lease_ms` after it last
//!   *received* a beat from it, so its verdict always comes after the
//!   node's own fence. A new leader starts everyone's clock at its election
//!   (a full lease of grace).
//! * An acknowledgement renews the lease only once the node has applied the
//!   leader's commit index of that moment: a node back from a restart or a
//!   partition never consumes on the stale assignments in its own log.
//! * Even so, the epoch fences: a commit from an old epoch is refused by the
//!   state machine, whatever the clocks did.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::types::{NodeId, ShardKey};

/// What a node reports about one shard it owns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardLive {
    pub shard: ShardKey,
    pub epoch: u64,
    /// At least one pull answered under this epoch.
    pub pulled: bool,
    /// "consuming", "caught_up", "draining", "done".
    pub state: String,
    pub lag_seconds: f64,
    pub events_per_second: f64,
    pub events: u64,
}

/// What a node reports about itself with every beat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeLive {
    pub name: String,
    pub pid: u32,
    pub events_per_second: f64,
    pub errors: u64,
    pub shards: Vec<ShardLive>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Beat {
    pub node: NodeId,
    pub cluster_id: String,
    /// Unix ms of the process start: a restarted node is a new incarnation.
    pub incarnation: u64,
    pub live: NodeLive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BeatReply {
    pub ok: bool,
    pub leader: Option<NodeId>,
    pub message: String,
    /// The leader's commit index when it answered: the lease counts only
    /// once this node has applied up to it, so a node never consumes on an
    /// assignment older than what the leader knew (after a restart or a
    /// partition its log may be behind).
    #[serde(default)]
    pub commit_index: u64,
}

/// The leader's view of who is alive (kept in memory, never in the log).
#[derive(Debug)]
pub(crate) struct Liveness {
    /// When this node last became leader (grace for everyone).
    since: Mutex<Option<Instant>>,
    seen: Mutex<HashMap<NodeId, Seen>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub at: Instant,
    pub incarnation: u64,
    pub live: NodeLive,
}

/// One node in the leader's liveness table, as status shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveNode {
    pub heartbeat_age_seconds: f64,
    pub alive: bool,
    pub live: NodeLive,
}

impl Liveness {
    pub fn new() -> Liveness {
        Liveness {
            since: Mutex::new(None),
            seen: Mutex::default(),
        }
    }

    /// This node became leader (or stopped being it: `false`).
    pub fn leading(&self, yes: bool) {
        *self.since.lock() = if yes { Some(Instant::now()) } else { None };
        if !yes {
            self.seen.lock().clear();
        }
    }

    pub fn is_leading(&self) -> bool {
        self.since.lock().is_some()
    }

    pub fn record(&self, beat: &Beat) {
        let mut seen = self.seen.lock();
        if let Some(prev) = seen.get(&beat.node) {
            if prev.incarnation != beat.incarnation {
                tracing::info!(node = beat.node, "node restarted (new incarnation)");
            }
        }
        seen.insert(
            beat.node,
            Seen {
                at: Instant::now(),
                incarnation: beat.incarnation,
                live: beat.live.clone(),
            },
        );
    }

    /// When the node last showed life, counting the leader's own election as grace.
    fn last(&self, node: NodeId) -> Option<Instant> {
        let since = (*self.since.lock())?;
        let at = self.seen.lock().get(&node).map(|s| s.at);
        Some(at.map_or(since, |a| a.max(since)))
    }

    pub fn alive(&self, node: NodeId, ttl: Duration) -> bool {
        self.last(node).is_some_and(|at| at.elapsed() < ttl)
    }

    pub fn table(
        &self,
        members: impl Iterator<Item = NodeId>,
        ttl: Duration,
    ) -> BTreeMap<NodeId, LiveNode> {
        let seen = self.seen.lock().clone();
        members
            .map(|id| {
                let age = self.last(id).map(|a| a.elapsed()).unwrap_or(ttl);
                (
                    id,
                    LiveNode {
                        heartbeat_age_seconds: seen
                            .get(&id)
                            .map(|s| s.at.elapsed().as_secs_f64())
                            .unwrap_or(age.as_secs_f64()),
                        alive: age < ttl,
                        live: seen.get(&id).map(|s| s.live.clone()).unwrap_or_default(),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_leader_grants_a_full_lease_of_grace() {
        let l = Liveness::new();
        assert!(
            !l.alive(7, Duration::from_secs(1)),
            "not leading: nobody is known alive"
        );
        l.leading(true);
        assert!(
            l.alive(7, Duration::from_millis(300)),
            "unknown nodes get grace"
        );
        std::thread::sleep(Duration::from_millis(350));
        assert!(!l.alive(7, Duration::from_millis(300)));
        l.record(&Beat {
            node: 7,
            cluster_id: String::new(),
            incarnation: 1,
            live: NodeLive::default(),
        });
        assert!(l.alive(7, Duration::from_millis(300)));
    }
}
