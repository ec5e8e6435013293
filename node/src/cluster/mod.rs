//! The cluster: openraft consensus over tonic, the replicated state
//! (members, shards with their epochs and checkpoints, tags), leases and
//! the leader's planner. openraft's types never leave this module: the rest
//! of the node sees [`Cluster`], [`Assignments`], [`Command`] and the
//! [`Lease`](crate::fence::Lease) it renews.
//!
//! # Layout
//!
//! | file | job |
//! |---|---|
//! | `types.rs` | commands, replies, the replicated state's types; the raft type config |
//! | `log_store.rs` | the raft log and vote on redb (fsync per write) |
//! | `state_machine.rs` | applying commands (fencing by epoch), snapshots |
//! | `network.rs` | raft RPCs over tonic: channels per peer, the envelope |
//! | `service.rs` | the `Peer` gRPC service: raft, heartbeats, forwarded requests |
//! | `forward.rs` | any node → leader: writes and admin requests |
//! | `leader.rs` | the leader's duties: liveness, shard discovery, planning; membership changes |
//! | `lease.rs` | heartbeats, the node's self-fencing lease, the leader's liveness table |
//! | `scheduler/` | the sticky planner (algorithm in `scheduler/README.md`) |
//! | `checkpoints.rs` | batching checkpoint commits and tag puts into raft |
//! | `assignment.rs` | the reconciler: this node's shard consumers follow the replicated assignments |
//!
//! Floor 4: imports the pipeline (to run what raft assigns), `fence` (it
//! renews the lease that fences writers), `net`, `clock`, `sls`, `tags`;
//! never `control` or the node's assembly.
//!
//! # Start
//! A node opens `{data_dir}/raft.redb`. With `bootstrap` and no raft state it
//! initializes a one-voter cluster and stamps a new cluster id; with `join`
//! it asks a member to add it (learner, catch-up, then voter); a restarted
//! node just resumes. The cluster id is also written to
//! `{data_dir}/cluster_id`; a data dir from another cluster is refused.

pub mod assignment;
mod checkpoints;
mod forward;
mod leader;
pub mod lease;
mod log_store;
mod metrics;
mod network;
pub mod scheduler;
mod service;
mod state_machine;
pub mod tag_expiry;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{Raft, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::fence::Lease;
pub use assignment::{release_all, share_tags, Reconciler};
pub use checkpoints::{CheckpointCommitter, TagPublisher};
pub use lease::{LiveNode, NodeLive, ShardLive};
pub use scheduler::Move;
pub use service::peer_service;
pub use state_machine::TagHook;
pub use types::{
    Assignments, Checkpoint, Command, MemberState, NodeId, Reply, ShardKey, ShardPhase, ShardState,
    TagRecord,
};

use forward::{LeaderReply, LeaderRequest};
use lease::{Beat, BeatReply, Liveness};
use types::{MemberAddr, TypeConfig};

/// How the node takes part in the cluster (`[cluster]` in the config).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: NodeId,
    /// The node's `[node] id`.
    pub name: String,
    /// The address peers and trailctl reach this node at.
    pub advertise: String,
    pub data_dir: PathBuf,
    pub bootstrap: bool,
    pub join: Vec<String>,
    pub slots: u32,
    /// Voters the leader keeps; other members are learners.
    pub voters: usize,
    pub heartbeat: Duration,
    /// The leader declares a node dead this long after its last beat.
    pub lease: Duration,
    /// The node fences itself this much before the leader may declare it dead.
    pub fence_margin: Duration,
    pub election_timeout: Duration,
    pub commit_interval: Duration,
    pub revoke_timeout: Duration,
    pub shard_rescan: Duration,
    pub auto_rebalance: bool,
    /// Snapshot after this many log entries.
    pub snapshot_logs: u64,
    /// The most entries the replicated tag tier keeps (`tag_expiry`).
    pub max_tags: u64,
    /// Bearer token for peer calls (the control token).
    pub token: Option<String>,
    /// TLS (and a client certificate) for peer calls, with `[control.tls]`.
    pub tls: Option<crate::net::tls::PeerTls>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("raft storage {path}: {message}")]
    Storage { path: PathBuf, message: String },
    #[error("raft: {0}")]
    Raft(String),
    #[error("data dir {path} belongs to cluster {found}, not {expected}")]
    WrongCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("no leader reachable: {0}")]
    NoLeader(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("joining through {seeds:?} failed: {message}")]
    Join { seeds: Vec<String>, message: String },
}

/// The shards a source has, as ListShards says: (shard, read-only); or,
/// for an S3 trail read by listing, its partitions (key prefixes), which
/// the state machine numbers.
#[derive(Debug, Clone)]
pub struct SourceShards {
    pub project: String,
    pub logstore: String,
    pub shards: Vec<(u32, bool)>,
    pub partitions: Vec<String>,
}

/// Lists a source's shards for the leader (the pipeline's SLS client, an
/// S3 listing).
pub trait ShardSource: Send + Sync + 'static {
    fn list(&self) -> Pin<Box<dyn Future<Output = Result<SourceShards, String>> + Send + '_>>;
}

/// Raft's state as status shows it.
#[derive(Debug, Clone, Default)]
pub struct RaftView {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// "leader", "follower", "candidate", "learner", "shutdown".
    pub role: &'static str,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub joint: bool,
    /// node → address, from the membership config.
    pub addrs: BTreeMap<NodeId, String>,
}

type LiveSource = Arc<dyn Fn() -> NodeLive + Send + Sync>;

struct Inner {
    settings: ClusterSettings,
    raft: Raft<TypeConfig>,
    shared: state_machine::Shared,
    peers: network::Peers,
    lease: Arc<Lease>,
    liveness: Liveness,
    incarnation: u64,
    shard_sources: Mutex<Vec<Arc<dyn ShardSource>>>,
    live_source: Mutex<Option<LiveSource>>,
    /// One membership change at a time (operator's or the leader's own).
    admin: Arc<tokio::sync::Mutex<()>>,
    recording: tokio::sync::Mutex<()>,
    committer: CheckpointCommitter,
    tags: TagPublisher,
    /// What the cluster can hold, as this node last planned it as leader
    /// (`None` while it does not lead).
    capacity: Mutex<Option<scheduler::Capacity>>,
    /// The leader's smoothed throughput per shard, for load-aware balance.
    rates: Mutex<scheduler::ShardRates>,
    stop: CancellationToken,
}

/// What a node records of its `cluster.slots`: `(slots, auto)`. Auto (0)
/// is recorded as 8 slots with the auto flag, so that a leader still on a
/// release before auto slots (which ignores the flag) plans as it always
/// did instead of giving the node a single slot.
fn announced_slots(configured: u32) -> (u32, bool) {
    match configured {
        0 => (8, true),
        n => (n, false),
    }
}

/// A node's handle on the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Cluster {
    /// Opens the raft state and starts raft, heartbeats and the leader's
    /// duties. Call on a tokio runtime; serve [`peer_service`] for peers.
    pub async fn start(
        settings: ClusterSettings,
        stop: CancellationToken,
    ) -> Result<Cluster, ClusterError> {
        let path = settings.data_dir.join("raft.redb");
        let storage = |message: String| ClusterError::Storage {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| storage(e.to_string()))?;
        let db = Arc::new(redb::Database::create(&path).map_err(|e| storage(e.to_string()))?);
        let shared = state_machine::Shared::new();
        let sm = state_machine::StateMachine::open(db.clone(), shared.clone()).map_err(storage)?;
        let log = log_store::LogStore::new(db);

        let election = settings.election_timeout.as_millis() as u64;
        let config = openraft::Config {
            cluster_name: "trail".into(),
            heartbeat_interval: (election / 6).max(20),
            election_timeout_min: election,
            election_timeout_max: election * 2,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_logs),
            max_in_snapshot_log_to_keep: settings.snapshot_logs / 4,
            purge_batch_size: (settings.snapshot_logs / 10).max(1),
            // An AppendEntries must arrive within a heartbeat interval; a
            // tag entry carries up to 250 resources (~50 KB), so a learner
            // catching up is sent at most ~1.6 MB a request, never a
            // request that always times out.
            max_payload_entries: 32,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let peers = network::Peers::new(settings.token.clone(), settings.tls.clone());
        let raft = Raft::new(
            settings.node_id,
            Arc::new(config),
            network::Network {
                peers: peers.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;

        let lease = Arc::new(Lease::new(
            settings.lease.saturating_sub(settings.fence_margin),
        ));
        let cluster = Cluster {
            inner: Arc::new(Inner {
                committer: CheckpointCommitter::new(settings.node_id),
                tags: TagPublisher::default(),
                capacity: Mutex::default(),
                rates: Mutex::default(),
                settings,
                raft,
                shared,
                peers,
                lease,
                liveness: Liveness::new(),
                incarnation: crate::clock::unix_ms(),
                shard_sources: Mutex::default(),
                live_source: Mutex::default(),
                admin: Arc::new(tokio::sync::Mutex::new(())),
                recording: tokio::sync::Mutex::new(()),
                stop,
            }),
        };
        cluster.check_stamp()?;
        let initialized = cluster
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let s = &cluster.inner.settings;
        if !initialized && s.bootstrap {
            tracing::info!(node = s.node_id, addr = %s.advertise, "bootstrapping a new cluster");
            let members = BTreeMap::from([(
                s.node_id,
                MemberAddr {
                    addr: s.advertise.clone(),
                },
            )]);
            cluster
                .inner
                .raft
                .initialize(members)
                .await
                .map_err(|e| ClusterError::Raft(e.to_string()))?;
        }
        tokio::spawn(cluster.clone().leader_duties());
        tokio::spawn(cluster.clone().heartbeats());
        tokio::spawn(cluster.clone().stamp_keeper());
        tokio::spawn(cluster.inner.committer.clone().run(cluster.clone()));
        tokio::spawn(cluster.inner.tags.clone().run(cluster.clone()));
        Ok(cluster)
    }

    /// Joins through `join` if this node has no raft state yet. Call once the
    /// node's gRPC listener serves [`peer_service`]: the leader replicates to
    /// it while it catches up.
    pub async fn join_if_needed(&self) -> Result<(), ClusterError> {
        let s = &self.inner.settings;
        let initialized = self
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        if initialized || s.bootstrap {
            return Ok(());
        }
        if s.join.is_empty() {
            tracing::warn!(
                node = s.node_id,
                "no raft state, no bootstrap, no join: waiting to be added (trailctl members add)"
            );
            return Ok(());
        }
        self.join().await
    }

    /// Asks the seeds, in turn, to add this node, until one succeeds.
    async fn join(&self) -> Result<(), ClusterError> {
        let s = &self.inner.settings;
        let req = LeaderRequest::AddMember {
            id: s.node_id,
            addr: s.advertise.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            for seed in &s.join {
                match self
                    .inner
                    .peers
                    .call::<_, Result<LeaderReply, forward::LeaderError>>(
                        seed,
                        network::Rpc::Forward,
                        "leader",
                        &req,
                        Duration::from_secs(30),
                    )
                    .await
                {
                    Ok(Ok(_)) => {
                        tracing::info!(node = s.node_id, seed = %seed, "joined the cluster");
                        return Ok(());
                    }
                    Ok(Err(e)) => last = e.to_string(),
                    Err(e) => last = e.to_string(),
                }
            }
            if self.inner.stop.is_cancelled() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(ClusterError::Join {
            seeds: s.join.clone(),
            message: last,
        })
    }

    pub fn id(&self) -> NodeId {
        self.inner.settings.node_id
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.inner.settings
    }

    /// The applied members and shards; changes with every applied write that touches them.
    pub fn assignments(&self) -> watch::Receiver<Arc<Assignments>> {
        self.inner.shared.assignments.subscribe()
    }

    pub fn lease(&self) -> Arc<Lease> {
        self.inner.lease.clone()
    }

    /// Registers raft's, the lease's and the checkpoint committer's metrics.
    pub fn register_metrics(&self, registry: &mut crate::metrics::Registry) {
        registry.register_collector(Box::new(metrics::ClusterMetrics {
            cluster: self.clone(),
        }));
    }

    /// The fence every writer of this node holds: lost when the lease runs out.
    pub fn fence(&self) -> crate::fence::Fence {
        crate::fence::Fence::of(self.inner.lease.clone())
    }

    /// The cluster's capacity as this node last planned it, if it leads.
    pub fn capacity(&self) -> Option<scheduler::Capacity> {
        self.inner.capacity.lock().clone()
    }

    pub fn committer(&self) -> &CheckpointCommitter {
        &self.inner.committer
    }

    pub fn tag_publisher(&self) -> &TagPublisher {
        &self.inner.tags
    }

    pub fn add_shard_source(&self, source: Arc<dyn ShardSource>) {
        self.inner.shard_sources.lock().push(source);
    }

    pub fn set_live_source(&self, f: impl Fn() -> NodeLive + Send + Sync + 'static) {
        *self.inner.live_source.lock() = Some(Arc::new(f));
    }

    /// Called for every applied tag change (and for all tags of an installed snapshot).
    pub fn set_tag_hook(&self, hook: TagHook) {
        {
            let d = self.inner.shared.data.read();
            for (arn, rec) in &d.tags {
                hook(arn, Some(rec));
            }
        }
        *self.inner.shared.tag_hook.lock() = Some(hook);
    }

    /// Tags from the local replica.
    pub fn tags_get(&self, arns: &[String]) -> Vec<(String, TagRecord)> {
        let d = self.inner.shared.data.read();
        arns.iter()
            .filter_map(|a| d.tags.get(a).map(|r| (a.clone(), r.clone())))
            .collect()
    }

    /// Tags from the local replica, in ARN order after `after`.
    pub fn tags_list(&self, prefix: &str, after: &str, limit: usize) -> Vec<(String, TagRecord)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let d = self.inner.shared.data.read();
        let start = if after.is_empty() {
            if prefix.is_empty() {
                Unbounded
            } else {
                std::ops::Bound::Included(prefix.to_string())
            }
        } else {
            Excluded(after.to_string())
        };
        d.tags
            .range((start, Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn raft_view(&self) -> RaftView {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        let addrs = membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let commit = match &m.replication {
            Some(rep) if m.state == ServerState::Leader => {
                let mut matched: Vec<u64> = voters
                    .iter()
                    .map(|v| {
                        if *v == m.id {
                            m.last_log_index.unwrap_or(0)
                        } else {
                            rep.get(v).and_then(|l| l.map(|l| l.index)).unwrap_or(0)
                        }
                    })
                    .collect();
                matched.sort_unstable_by(|a, b| b.cmp(a));
                matched.get(voters.len() / 2).copied().unwrap_or(applied)
            }
            _ => applied,
        };
        RaftView {
            leader: m.current_leader,
            term: m.current_term,
            commit_index: commit.max(applied),
            applied_index: applied,
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            joint: membership.get_joint_config().len() > 1,
            voters,
            learners,
            addrs,
        }
    }

    fn member_addr(&self, id: NodeId) -> Option<String> {
        self.raft_view().addrs.get(&id).cloned()
    }

    /// The leader's liveness table (asked of the leader from any node).
    pub async fn live_table(&self) -> Result<BTreeMap<NodeId, LiveNode>, ClusterError> {
        match self
            .to_leader(LeaderRequest::Live, Duration::from_secs(2))
            .await?
        {
            LeaderReply::Live(t) => Ok(t),
            other => Err(ClusterError::Refused(format!("unexpected reply {other:?}"))),
        }
    }

    pub async fn rebalance(&self, dry_run: bool) -> Result<Vec<Move>, ClusterError> {
        match self
            .to_leader(
                LeaderRequest::Rebalance { dry_run },
                Duration::from_secs(10),
            )
            .await?
        {
            LeaderReply::Moves(m) => Ok(m),
            other => Err(ClusterError::Refused(format!("unexpected reply {other:?}"))),
        }
    }

    pub async fn drain(&self, id: NodeId, undo: bool) -> Result<Vec<Move>, ClusterError> {
        match self
            .to_leader(LeaderRequest::Drain { id, undo }, Duration::from_secs(10))
            .await?
        {
            LeaderReply::Moves(m) => Ok(m),
            other => Err(ClusterError::Refused(format!("unexpected reply {other:?}"))),
        }
    }

    pub async fn add_member(&self, id: NodeId, addr: String) -> Result<(), ClusterError> {
        self.to_leader(
            LeaderRequest::AddMember { id, addr },
            Duration::from_secs(60),
        )
        .await?;
        self.until_seen_here(|v| v.addrs.contains_key(&id)).await;
        Ok(())
    }

    pub async fn remove_member(&self, id: NodeId) -> Result<(), ClusterError> {
        self.to_leader(LeaderRequest::RemoveMember { id }, Duration::from_secs(60))
            .await?;
        self.until_seen_here(|v| !v.addrs.contains_key(&id)).await;
        Ok(())
    }

    /// The leader answers once a membership change is committed; this node
    /// (a follower answering `trailctl`) may not have it in its log yet. Wait
    /// briefly so the caller's next read here shows what it just did.
    async fn until_seen_here(&self, seen: impl Fn(&RaftView) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !seen(&self.raft_view()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn member_recorded(&self) -> bool {
        let s = &self.inner.settings;
        let a = self.assignments();
        let a = a.borrow();
        !a.cluster_id.is_empty()
            && a.members.get(&s.node_id).is_some_and(|h| {
                h.name == s.name
                    && h.addr == s.advertise
                    && (h.slots, h.auto_slots) == announced_slots(s.slots)
                    && h.batched_plans
                    && !h.leaving
            })
    }

    /// Records this node's name, address and slots when the state lacks or differs from them.
    async fn ensure_member_record(&self) {
        let _one = match self.inner.recording.try_lock() {
            Ok(g) => g,
            Err(_) => return,
        };
        if self.member_recorded() {
            return;
        }
        let s = &self.inner.settings;
        let (slots, auto_slots) = announced_slots(s.slots);
        let want = MemberState {
            name: s.name.clone(),
            addr: s.advertise.clone(),
            slots,
            auto_slots,
            draining: false,
            leaving: false,
            batched_plans: true,
        };
        let have = self.assignments().borrow().members.get(&s.node_id).cloned();
        if have.is_some_and(|h| {
            h.name == want.name
                && h.addr == want.addr
                && (h.slots, h.auto_slots) == (want.slots, want.auto_slots)
                && h.batched_plans
        }) {
            return;
        }
        let cid = self.assignments().borrow().cluster_id.clone();
        if cid.is_empty() && self.raft_view().leader == Some(s.node_id) {
            let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            let _ = self.write(Command::Init { cluster_id: id }).await;
        }
        if let Err(e) = self
            .write(Command::Member {
                id: s.node_id,
                state: want,
            })
            .await
        {
            tracing::debug!(error = %e, "recording this member failed; will retry");
        }
    }

    /// `{data_dir}/cluster_id` against the replicated cluster id.
    fn check_stamp(&self) -> Result<(), ClusterError> {
        let path = self.inner.settings.data_dir.join("cluster_id");
        let found = std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_string());
        let cid = self.assignments().borrow().cluster_id.clone();
        match found {
            Some(f) if !cid.is_empty() && f != cid => Err(ClusterError::WrongCluster {
                path,
                found: f,
                expected: cid,
            }),
            None if !cid.is_empty() => {
                std::fs::write(&path, &cid).map_err(|e| ClusterError::Storage {
                    path,
                    message: e.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    async fn stamp_keeper(self) {
        let mut rx = self.assignments();
        loop {
            if let Err(e) = self.check_stamp() {
                tracing::error!(error = %e, "this data dir belongs to another cluster; stopping");
                std::process::exit(2);
            }
            if !self.assignments().borrow().cluster_id.is_empty() {
                return;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = self.inner.stop.cancelled() => return,
            }
        }
    }

    /// A beat received (here or from a peer) while this node may be the leader.
    pub(crate) async fn on_beat(&self, beat: Beat) -> BeatReply {
        let view = self.raft_view();
        let refuse = |message: &str| BeatReply {
            ok: false,
            leader: view.leader,
            message: message.into(),
            commit_index: 0,
        };
        // Answered only once the duty loop took this term over (its table, its grace).
        if view.leader != Some(self.id()) || self.inner.liveness.leading_term() != Some(view.term) {
            return refuse("not the leader");
        }
        let cid = self.assignments().borrow().cluster_id.clone();
        if !cid.is_empty() && !beat.cluster_id.is_empty() && cid != beat.cluster_id {
            return refuse("another cluster");
        }
        // A leader cut off from its quorum renews nobody's lease.
        if view.voters.len() > 1 {
            let ack = self.inner.raft.metrics().borrow().millis_since_quorum_ack;
            let s = &self.inner.settings;
            let fresh = lease::quorum_freshness(s.lease, s.election_timeout).as_millis() as u64;
            if ack.is_none_or(|ms| ms > fresh) {
                return refuse("no recent quorum");
            }
        }
        match self.inner.liveness.beat(&beat, view.commit_index) {
            lease::BeatVerdict::Renew => {}
            // Recorded (the next round sees it alive), but no lease yet: the
            // moves of its shards may not be committed at this index.
            lease::BeatVerdict::Dead => {
                return refuse("declared dead: its shards are being moved; a later beat renews")
            }
            lease::BeatVerdict::Behind => return refuse(
                "behind the log: a beat renews once it applied what was committed a beat earlier",
            ),
        }
        // The barrier: a quorum confirms this node still leads (a deposed
        // leader gets no answer), and the index it confirms covers every
        // command committed before, the moves of any shard planned so far.
        // The node renews only once it applied it.
        let wait = (self.inner.settings.heartbeat * 2).max(Duration::from_millis(300));
        let read = match tokio::time::timeout(wait, self.inner.raft.get_read_log_id()).await {
            Ok(Ok((read, _applied))) => read.map_or(0, |l| l.index),
            Ok(Err(e)) => return refuse(&format!("leadership not confirmed: {e}")),
            Err(_) => return refuse("no quorum confirmed the leadership in time"),
        };
        if self.inner.liveness.is_declared_dead(beat.node) {
            return refuse("declared dead: its shards are being moved; a later beat renews");
        }
        BeatReply {
            ok: true,
            leader: view.leader,
            message: String::new(),
            commit_index: read.max(view.commit_index),
        }
    }

    /// Beats the leader every `heartbeat`, renewing the lease on each acknowledgement.
    async fn heartbeats(self) {
        let s = &self.inner.settings;
        let mut tick = tokio::time::interval(s.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.inner.stop.cancelled() => return,
            }
            // Notice an expired lease at once (it logs and counts), not at the next pull.
            self.inner.lease.valid();
            let Some(leader) = self.raft_view().leader else {
                continue;
            };
            if self.assignments().borrow().removed.contains(&s.node_id) {
                tracing::error!(
                    node = s.node_id,
                    "this node was removed from the cluster and node ids are never reused: \
                     start it with a new cluster.node_id and an empty node.data_dir; exiting"
                );
                std::process::exit(2);
            }
            // Announce this node (name, address, slots) until the state knows it.
            if !self.member_recorded() {
                let me = self.clone();
                tokio::spawn(async move { me.ensure_member_record().await });
            }
            let live = self
                .inner
                .live_source
                .lock()
                .clone()
                .map(|f| f())
                .unwrap_or_default();
            let beat = Beat {
                node: s.node_id,
                cluster_id: self.assignments().borrow().cluster_id.clone(),
                incarnation: self.inner.incarnation,
                live,
                applied: Some(self.raft_view().applied_index),
            };
            let sent = Instant::now();
            if leader == s.node_id {
                let me = self.clone();
                // The barrier takes a quorum round: the next beat must not wait for it.
                tokio::spawn(async move {
                    let r = me.on_beat(beat).await;
                    if r.ok {
                        me.renew_when_caught_up(sent, r.commit_index).await;
                    } else {
                        tracing::debug!(message = %r.message, "own beat refused");
                    }
                });
            } else if let Some(addr) = self.member_addr(leader) {
                let me = self.clone();
                // Longer than the leader's barrier wait (2 heartbeats, ≥ 300 ms)
                // plus a round trip, or its answers would be dropped here.
                let timeout = (s.heartbeat * 3).max(Duration::from_millis(500));
                // Beats do not wait for each other: a slow answer must not delay the next.
                tokio::spawn(async move {
                    match me
                        .inner
                        .peers
                        .call::<_, BeatReply>(
                            &addr,
                            network::Rpc::Heartbeat,
                            "beat",
                            &beat,
                            timeout,
                        )
                        .await
                    {
                        Ok(r) if r.ok => me.renew_when_caught_up(sent, r.commit_index).await,
                        Ok(r) => tracing::debug!(message = %r.message, "beat refused"),
                        Err(e) => tracing::debug!(error = %e, "beat failed"),
                    }
                });
            }
        }
    }

    /// Renews the lease for a beat sent at `sent` once this node has applied
    /// the leader's `commit_index` (waiting at most a lease for it).
    async fn renew_when_caught_up(&self, sent: Instant, commit_index: u64) {
        if self.raft_view().applied_index < commit_index {
            let caught_up = self
                .inner
                .raft
                .wait(Some(self.inner.settings.lease))
                .applied_index_at_least(Some(commit_index), "lease")
                .await;
            if caught_up.is_err() {
                tracing::debug!(
                    commit_index,
                    "not caught up with the leader; lease not renewed"
                );
                return;
            }
        }
        self.inner.lease.renew(sent);
    }

    /// Stops raft (the node's other tasks stop with the token given at start).
    pub async fn shutdown(&self) {
        let _ = self.inner.raft.shutdown().await;
    }
}
