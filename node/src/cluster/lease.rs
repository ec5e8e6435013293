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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::types::{NodeId, ShardKey};

/// How recent the leader's last quorum acknowledgement must be for it to
/// acknowledge a beat (renew a lease).
///
/// A leader cut off from its quorum at `q` keeps answering beats until
/// `q + F`; a beat sent then holds the node's lease until about
/// `q + F + lease − margin`. The others elect a new leader no earlier than
/// `q − rtt + election_timeout` (their timers run from the last message
/// they had), which grants everyone a full lease before declaring anyone
/// dead: not before `q − rtt + election_timeout + lease`. So the old lease
/// ends first as long as `F + rtt < election_timeout + margin`. `lease / 2`
/// alone broke that for long leases (`lease_ms = 6000`: ~1.45 s of overlap);
/// half the election timeout keeps it for every valid config (proptested
/// below with 50 ms of round trip), and is three raft heartbeats long.
pub fn quorum_freshness(lease: Duration, election_timeout: Duration) -> Duration {
    (lease / 2).min(election_timeout / 2)
}

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
    /// The node's last applied log index when it sent the beat (absent
    /// from nodes of an older version: taken as caught up).
    #[serde(default)]
    pub applied: Option<u64>,
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

/// What the leader answers a beat with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BeatVerdict {
    /// The lease may be renewed.
    Renew,
    /// Declared dead: its shards are being moved.
    Dead,
    /// The beat does not show the node applied what was committed a beat
    /// earlier (or it is its first beat to this leader).
    Behind,
}

/// The leader's view of who is alive (kept in memory, never in the log).
#[derive(Debug)]
pub(crate) struct Liveness {
    /// When this node last became leader (grace for everyone).
    since: Mutex<Option<Instant>>,
    /// The term it leads in.
    term: Mutex<Option<u64>>,
    seen: Mutex<HashMap<NodeId, Seen>>,
    /// When this leader first saw each shard revoking under an epoch, on its
    /// monotonic clock (revoke timeouts never read a wall clock).
    revoking: Mutex<HashMap<(ShardKey, u64), Instant>>,
    /// Nodes declared dead whose beats are recorded (they may come back)
    /// but answered without a lease until a planning round that saw them
    /// alive again has committed its plan.
    dead: Mutex<BTreeSet<NodeId>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub at: Instant,
    pub incarnation: u64,
    pub live: NodeLive,
    /// The leader's commit index when this beat arrived: the next beat
    /// must report it applied for the node to count as caught up.
    pub want: u64,
    /// The last beat that reported the previous beat's `want` applied.
    pub caught_up: Option<Instant>,
    /// This incarnation's first beat to this leader: a node just joined or
    /// restarted has a lease's time from it to show it caught up.
    pub first: Instant,
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
            term: Mutex::new(None),
            seen: Mutex::default(),
            revoking: Mutex::default(),
            dead: Mutex::default(),
        }
    }

    /// This node leads in `term` (or stopped leading: `None`). Every new
    /// term starts over: grace for everyone, no one declared dead, revoke
    /// timers from zero.
    pub fn leading(&self, term: Option<u64>) {
        *self.since.lock() = term.map(|_| Instant::now());
        *self.term.lock() = term;
        self.seen.lock().clear();
        self.dead.lock().clear();
        self.revoking.lock().clear();
    }

    /// For each shard revoking now: how long (ms) this leader has seen it
    /// revoking under its current epoch (0 the first time it looks).
    pub fn revoking_ms(
        &self,
        shards: &BTreeMap<ShardKey, super::types::ShardState>,
    ) -> BTreeMap<ShardKey, u64> {
        let now = Instant::now();
        let mut seen = self.revoking.lock();
        let current: std::collections::HashSet<(ShardKey, u64)> = shards
            .iter()
            .filter(|(_, s)| s.phase == super::types::ShardPhase::Revoking)
            .map(|(k, s)| (k.clone(), s.epoch))
            .collect();
        seen.retain(|k, _| current.contains(k));
        current
            .into_iter()
            .map(|(k, epoch)| {
                let since = *seen.entry((k.clone(), epoch)).or_insert(now);
                (k, now.duration_since(since).as_millis() as u64)
            })
            .collect()
    }

    /// One planning round's view: the members alive (`me` always), every
    /// other member declared dead. Decided under the lock beats take, so no
    /// beat falls between "not alive" and "declared dead" and renews a lease
    /// with a commit index that predates the moves of its shards.
    pub fn sweep(
        &self,
        members: impl IntoIterator<Item = NodeId>,
        me: NodeId,
        ttl: Duration,
    ) -> BTreeSet<NodeId> {
        let since = *self.since.lock();
        let seen = self.seen.lock();
        let mut dead = self.dead.lock();
        let mut alive = BTreeSet::new();
        for id in members {
            if id == me || Self::live_in(since, seen.get(&id), ttl) {
                alive.insert(id);
            } else if dead.insert(id) {
                tracing::info!(
                    node = id,
                    "declared dead: its beats renew no lease until its shards' moves are committed"
                );
            }
        }
        alive
    }

    /// Declares one node dead outside a planning round (a removal): its
    /// beats renew nothing from now on.
    pub fn declare_dead(&self, id: NodeId) {
        let _seen = self.seen.lock(); // the lock beats take
        self.dead.lock().insert(id);
    }

    /// A planning round that counted these nodes alive committed its plan.
    pub fn revive(&self, alive: &BTreeSet<NodeId>) {
        self.dead.lock().retain(|id| !alive.contains(id));
    }

    /// Declared dead and not yet revived.
    pub fn is_declared_dead(&self, id: NodeId) -> bool {
        self.dead.lock().contains(&id)
    }

    /// The term this node's liveness table belongs to.
    pub fn leading_term(&self) -> Option<u64> {
        *self.term.lock()
    }

    /// A beat arrived: recorded (the next round sees it), and whether it
    /// may renew the node's lease. `commit_index` is the leader's now.
    ///
    /// Only a beat that itself proves the node caught up may: the sweep
    /// then counts the node alive for a full `ttl` from now, longer than
    /// the lease the node takes from the beat's send time, so no round can
    /// declare it dead (and give its shards away) while that lease runs.
    pub fn beat(&self, beat: &Beat, commit_index: u64) -> BeatVerdict {
        let mut seen = self.seen.lock();
        let now = Self::record_in(&mut seen, beat, commit_index);
        if self.dead.lock().contains(&beat.node) {
            BeatVerdict::Dead
        } else if seen.get(&beat.node).and_then(|s| s.caught_up) != Some(now) {
            BeatVerdict::Behind
        } else {
            BeatVerdict::Renew
        }
    }

    /// Records a beat; returns its arrival instant.
    fn record_in(seen: &mut HashMap<NodeId, Seen>, beat: &Beat, commit_index: u64) -> Instant {
        let now = Instant::now();
        let prev = seen.get(&beat.node);
        if prev.is_some_and(|p| p.incarnation != beat.incarnation) {
            tracing::info!(node = beat.node, "node restarted (new incarnation)");
        }
        let caught_up = match prev {
            Some(p)
                if p.incarnation == beat.incarnation
                    && beat.applied.is_none_or(|a| a >= p.want) =>
            {
                Some(now)
            }
            Some(p) if p.incarnation == beat.incarnation => p.caught_up,
            _ => None,
        };
        if let Some(p) = prev.filter(|p| {
            p.incarnation == beat.incarnation && beat.applied.is_some_and(|a| a < p.want)
        }) {
            tracing::debug!(
                node = beat.node,
                applied = beat.applied,
                want = p.want,
                "beat from a node behind the log"
            );
        }
        seen.insert(
            beat.node,
            Seen {
                at: now,
                incarnation: beat.incarnation,
                live: beat.live.clone(),
                want: commit_index,
                caught_up,
                first: prev
                    .filter(|p| p.incarnation == beat.incarnation)
                    .map_or(now, |p| p.first),
            },
        );
        now
    }

    /// Alive: a beat within `ttl`, and caught up within `ttl` (it applied
    /// what the leader had committed a beat earlier). A node that beats but
    /// cannot keep up with the log (a snapshot too big, a slow disk) cannot
    /// renew its lease either, so it must not keep shards it cannot consume.
    /// Everyone gets the grace of the leader's election.
    fn live_in(since: Option<Instant>, seen: Option<&Seen>, ttl: Duration) -> bool {
        let Some(since) = since else { return false };
        let beat = seen.map_or(since, |x| x.at.max(since));
        let caught_up = seen
            .map_or(since, |x| x.caught_up.unwrap_or(x.first))
            .max(since);
        beat.elapsed() < ttl && caught_up.elapsed() < ttl
    }

    /// When the node last showed life, counting the leader's own election as grace.
    fn last(&self, node: NodeId) -> Option<Instant> {
        let since = (*self.since.lock())?;
        let at = self.seen.lock().get(&node).map(|s| s.at);
        Some(at.map_or(since, |a| a.max(since)))
    }

    #[cfg(test)]
    pub fn alive(&self, node: NodeId, ttl: Duration) -> bool {
        let since = *self.since.lock();
        Self::live_in(since, self.seen.lock().get(&node), ttl)
    }

    pub fn table(
        &self,
        members: impl Iterator<Item = NodeId>,
        ttl: Duration,
    ) -> BTreeMap<NodeId, LiveNode> {
        let seen = self.seen.lock().clone();
        let since = *self.since.lock();
        members
            .map(|id| {
                let age = self.last(id).map(|a| a.elapsed()).unwrap_or(ttl);
                let alive = Self::live_in(since, seen.get(&id), ttl);
                (
                    id,
                    LiveNode {
                        heartbeat_age_seconds: seen
                            .get(&id)
                            .map(|s| s.at.elapsed().as_secs_f64())
                            .unwrap_or(age.as_secs_f64()),
                        alive,
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

    proptest::proptest! {
        /// For every config `Config::validate` accepts (election timeout
        /// ≥ 100 ms, heartbeat ≤ lease / 3, heartbeat ≤ margin < lease), an
        /// old leader's last acknowledged lease ends before a new leader may
        /// reassign the node's shards, with 50 ms of round trip.
        #[test]
        fn an_old_leaders_leases_end_before_a_new_leader_reassigns(
            election in 100u64..20_000,
            heartbeat in 1u64..2_000,
            lease_factor in 3u64..40,
            margin_frac in 0.0f64..1.0,
        ) {
            let lease = heartbeat * lease_factor;
            let margin = heartbeat + ((lease - heartbeat - 1) as f64 * margin_frac) as u64;
            proptest::prop_assume!(margin >= heartbeat && margin < lease);
            let f = quorum_freshness(Duration::from_millis(lease), Duration::from_millis(election));
            let rtt = 50;
            let old_lease_ends = f.as_millis() as u64 + lease - margin;
            let earliest_reassign = election.saturating_sub(rtt) + lease;
            proptest::prop_assert!(
                old_lease_ends < earliest_reassign,
                "F {f:?}, lease {lease}, margin {margin}, election {election}"
            );
        }
    }

    #[test]
    fn the_issue_config_with_a_long_lease_is_safe_now() {
        // lease_ms = 6000 with the defaults: lease / 2 gave 3 s of freshness.
        let f = quorum_freshness(Duration::from_millis(6000), Duration::from_millis(600));
        assert_eq!(f, Duration::from_millis(300));
        assert!(f.as_millis() as u64 + 6000 - 500 < 600 - 50 + 6000);
    }

    #[test]
    fn a_new_leader_grants_a_full_lease_of_grace() {
        let l = Liveness::new();
        assert!(
            !l.alive(7, Duration::from_secs(1)),
            "not leading: nobody is known alive"
        );
        l.leading(Some(1));
        assert!(
            l.alive(7, Duration::from_millis(300)),
            "unknown nodes get grace"
        );
        std::thread::sleep(Duration::from_millis(350));
        assert!(!l.alive(7, Duration::from_millis(300)));
        let beat = |applied| Beat {
            node: 7,
            cluster_id: String::new(),
            incarnation: 1,
            live: NodeLive::default(),
            applied: Some(applied),
        };
        assert_eq!(
            l.beat(&beat(0), 10),
            BeatVerdict::Behind,
            "a first beat renews nothing"
        );
        assert!(
            l.alive(7, Duration::from_millis(300)),
            "a node just seen has a lease's time to show it caught up"
        );
        assert_eq!(l.beat(&beat(10), 12), BeatVerdict::Renew);
        assert!(
            l.alive(7, Duration::from_millis(300)),
            "it applied what was committed a beat ago"
        );
    }

    #[test]
    fn a_node_that_beats_but_never_catches_up_is_not_alive() {
        let l = Liveness::new();
        l.leading(Some(1));
        let ttl = Duration::from_millis(200);
        let beat = |applied| Beat {
            node: 7,
            cluster_id: String::new(),
            incarnation: 1,
            live: NodeLive::default(),
            applied: Some(applied),
        };
        l.beat(&beat(5), 10);
        l.beat(&beat(10), 20);
        assert!(l.alive(7, ttl));
        // Stuck at 10 (a snapshot it cannot install) while the log moves on.
        for commit in 21..30 {
            std::thread::sleep(Duration::from_millis(30));
            assert_eq!(
                l.beat(&beat(10), commit),
                BeatVerdict::Behind,
                "no lease while behind"
            );
        }
        assert!(!l.alive(7, ttl), "beating is not enough");
        assert!(!l.sweep([1, 7], 1, ttl).contains(&7));
        // It catches up: alive again (a later round revives it).
        l.beat(&beat(29), 30);
        assert!(l.alive(7, ttl));
    }

    #[test]
    fn a_node_declared_dead_stays_so_until_a_round_that_saw_it_alive_committed() {
        let l = Liveness::new();
        l.leading(Some(1));
        std::thread::sleep(Duration::from_millis(30));
        let alive = l.sweep([1, 7, 8], 1, Duration::from_millis(20));
        assert_eq!(
            alive,
            BTreeSet::from([1]),
            "the leader itself is always alive"
        );
        assert!(l.is_declared_dead(7) && l.is_declared_dead(8));
        let beat = Beat {
            node: 8,
            cluster_id: String::new(),
            incarnation: 1,
            live: NodeLive::default(),
            applied: Some(0),
        };
        assert_eq!(
            l.beat(&beat, 0),
            BeatVerdict::Dead,
            "a beat of a declared-dead node renews nothing"
        );
        l.beat(&beat, 0);
        assert!(l.alive(8, Duration::from_millis(20)), "but it is recorded");
        l.revive(&BTreeSet::from([8]));
        assert!(l.is_declared_dead(7), "7 was not seen alive by that round");
        assert!(!l.is_declared_dead(8));
        l.leading(None);
        assert!(
            !l.is_declared_dead(7),
            "a new term starts with everyone's grace"
        );
    }
}
