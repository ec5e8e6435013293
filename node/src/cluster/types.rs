//! What the cluster replicates: the commands written through raft, their
//! replies, and the state they build. These are Trail's own types; the raft
//! type configuration that carries them is at the bottom and stays private
//! to `node::cluster`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's raft id (`[cluster] node_id`). Never reused after a removal.
pub type NodeId = u64;

/// What raft knows of a member: where to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAddr {
    /// host:port of the node's gRPC listener (peer, control and tags services).
    pub addr: String,
}

impl fmt::Display for MemberAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// A shard of a source logstore.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardKey {
    pub project: String,
    pub logstore: String,
    pub shard: u32,
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.logstore, self.shard)
    }
}

/// A checkpoint committed through raft: the cursor every sink acknowledged
/// up to, and the receive time of the data there (for lag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub cursor: String,
    pub cursor_time: Option<u32>,
    /// Unix milliseconds when the owner saved it.
    pub saved_ms: u64,
}

/// Where a shard is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardPhase {
    /// No owner (new, or its owner released it).
    Unassigned,
    /// The owner consumes it under `epoch`.
    Running,
    /// Moving to `ShardState::moving_to`: the owner drains its sinks and
    /// releases the shard with its final cursor.
    Revoking,
    /// A read-only shard read to its end.
    Done,
}

/// One shard in the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    pub owner: Option<NodeId>,
    /// Nodes kept ready to take over, in order of preference.
    pub standbys: Vec<NodeId>,
    /// The owner's fencing token: bumped at every assignment; checkpoint
    /// commits from any other epoch are refused.
    pub epoch: u64,
    pub phase: ShardPhase,
    pub moving_to: Option<NodeId>,
    /// Unix milliseconds of the revoke (the leader forces the move after a timeout).
    pub revoked_ms: u64,
    pub readonly: bool,
    pub checkpoint: Option<Checkpoint>,
    /// Unix milliseconds of the last owner change.
    pub assigned_ms: u64,
    /// Born of a split or merge: it appeared after its logstore's shards were
    /// first listed, so it starts at its beginning (`source.start` applies
    /// to the shards a trail had when Trail first saw it).
    #[serde(default)]
    pub child: bool,
    /// An S3 trail read by listing (`type = "s3"`): the key prefix of this
    /// partition, e.g. `AWSLogs/111122223333/CloudTrail/eu-west-1/`. The
    /// checkpoint's cursor is then the partition's listing cursor.
    #[serde(default)]
    pub partition: Option<String>,
}

impl ShardState {
    pub fn new() -> ShardState {
        ShardState {
            owner: None,
            standbys: Vec::new(),
            epoch: 0,
            phase: ShardPhase::Unassigned,
            moving_to: None,
            revoked_ms: 0,
            readonly: false,
            checkpoint: None,
            assigned_ms: 0,
            child: false,
            partition: None,
        }
    }
}

impl Default for ShardState {
    fn default() -> Self {
        ShardState::new()
    }
}

/// A member as the application sees it (raft keeps voters and learners).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// The node's `[node] id`.
    pub name: String,
    pub addr: String,
    /// Consumer slots: the most shards the node owns (with `auto_slots`,
    /// what a leader from before auto slots plans with).
    pub slots: u32,
    /// `cluster.slots = 0`: the leader sizes this node's slots from the
    /// shard count (`scheduler::slots_of`). Absent in records written
    /// before auto slots, which read as fixed.
    #[serde(default)]
    pub auto_slots: bool,
    /// Takes no shards (set by `trailctl drain`).
    pub draining: bool,
    /// Shutting down (SIGTERM): takes no shards; cleared when it starts again.
    #[serde(default)]
    pub leaving: bool,
    /// The node applies [`Command::Plan`]. A release before batched plans
    /// cannot read one (its apply would fail and stop its raft), so the
    /// leader batches only when every raft node announced this.
    #[serde(default)]
    pub batched_plans: bool,
}

pub use crate::pipeline::s3_listing::PARTITION_BASE;

/// A resource's tags in the replicated tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    pub tags: BTreeMap<String, String>,
    /// "cloud" (fetched by a node, expires) or "api" (written through `Tags`).
    pub origin: String,
    pub updated_ms: u64,
}

/// One checkpoint in a commit batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCommit {
    pub shard: ShardKey,
    pub epoch: u64,
    pub checkpoint: Checkpoint,
}

/// A change to the replicated state. Every command carries what the state
/// machine needs to apply it deterministically (times come from the writer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Stamps the cluster id (the first command of a new cluster).
    Init {
        cluster_id: String,
    },
    /// Records a member's name, address and slots (on join and restart).
    Member {
        id: NodeId,
        state: MemberState,
    },
    Drain {
        id: NodeId,
        draining: bool,
    },
    Forget {
        id: NodeId,
    },
    /// The node is stopping: give it no shards (its own release follows).
    Leaving {
        id: NodeId,
    },
    /// The shards a ListShards found: new ones are added unassigned,
    /// read-only flags updated.
    Shards {
        project: String,
        logstore: String,
        shards: Vec<(u32, bool)>,
    },
    /// The partitions (key prefixes) a listing of an S3 trail found: each
    /// new one becomes a shard, numbered from [`PARTITION_BASE`] upwards in
    /// the order first seen (one numbering over every source, so numbers
    /// never repeat). Partitions are never removed: an account that stops
    /// writing leaves an idle partition.
    Partitions {
        project: String,
        logstore: String,
        prefixes: Vec<String>,
    },
    /// Gives a shard to `owner` with epoch `expect_epoch + 1`; refused if
    /// the epoch moved meanwhile.
    Assign {
        shard: ShardKey,
        owner: NodeId,
        standbys: Vec<NodeId>,
        expect_epoch: u64,
        at_ms: u64,
    },
    Standbys {
        shard: ShardKey,
        standbys: Vec<NodeId>,
    },
    /// Asks the owner to hand the shard to `to` (graceful move).
    Revoke {
        shard: ShardKey,
        epoch: u64,
        to: NodeId,
        at_ms: u64,
    },
    /// The owner drained and hands over with its final checkpoint: the
    /// shard goes to the revoke's target under epoch + 1.
    Release {
        shard: ShardKey,
        epoch: u64,
        checkpoint: Option<Checkpoint>,
        at_ms: u64,
    },
    /// Checkpoints of one node, batched; each is fenced by its epoch.
    Commit {
        node: NodeId,
        checkpoints: Vec<CheckpointCommit>,
    },
    /// A read-only shard was read to its end under `epoch`.
    Finish {
        shard: ShardKey,
        epoch: u64,
        checkpoint: Option<Checkpoint>,
    },
    /// Tags fetched or written; cloud entries older than `expire_before_ms` are dropped.
    PutTags {
        tags: Vec<(String, TagRecord)>,
        expire_before_ms: u64,
    },
    DeleteTags {
        arns: Vec<String>,
    },
    /// One step of the leader's plan (every assign of a death, every move
    /// of a rebalance round, the standbys that go with them) in one log
    /// entry. Applied all or nothing: each step is checked as if written
    /// alone (expected epochs, phases), in order; if any step is refused,
    /// none takes effect and the reply names it. Steps are `Assign`,
    /// `Revoke` and `Standbys` only. Written only once every raft node
    /// announced [`MemberState::batched_plans`].
    Plan {
        steps: Vec<Command>,
    },
}

impl Command {
    /// The shard of a plan step (assign, revoke, standbys); `None` for
    /// every other command.
    pub fn plan_shard(&self) -> Option<&ShardKey> {
        match self {
            Command::Assign { shard, .. }
            | Command::Revoke { shard, .. }
            | Command::Standbys { shard, .. } => Some(shard),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Command::Init { .. } => "init",
            Command::Member { .. } => "member",
            Command::Drain { .. } => "drain",
            Command::Forget { .. } => "forget",
            Command::Leaving { .. } => "leaving",
            Command::Shards { .. } => "shards",
            Command::Partitions { .. } => "partitions",
            Command::Assign { .. } => "assign",
            Command::Standbys { .. } => "standbys",
            Command::Revoke { .. } => "revoke",
            Command::Release { .. } => "release",
            Command::Commit { .. } => "commit",
            Command::Finish { .. } => "finish",
            Command::PutTags { .. } => "put_tags",
            Command::DeleteTags { .. } => "delete_tags",
            Command::Plan { .. } => "plan",
        }
    }
}

/// What applying a command answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// False when the command was refused as a whole (stale epoch, unknown shard).
    pub ok: bool,
    /// Commit: the shards whose checkpoint was refused (the node is fenced off them).
    pub refused: Vec<ShardKey>,
    pub message: String,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            ..Reply::default()
        }
    }

    pub fn refused(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            refused: Vec::new(),
            message: message.into(),
        }
    }
}

/// The part of the replicated state the pipeline and the scheduler read:
/// members and shards (tags are kept apart; they are large).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    pub cluster_id: String,
    pub members: BTreeMap<NodeId, MemberState>,
    /// Serialized as a list of pairs: JSON object keys must be strings.
    #[serde(with = "pairs")]
    pub shards: BTreeMap<ShardKey, ShardState>,
    /// Tombstones of removed members: ids are never reused, and a removed
    /// node restarted on its old data dir cannot record itself again.
    #[serde(default)]
    pub removed: BTreeSet<NodeId>,
}

/// A map with structured keys as a JSON list of `[key, value]` pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

impl Assignments {
    pub fn owned_by(&self, node: NodeId) -> usize {
        self.shards
            .values()
            .filter(|s| s.owner == Some(node) && s.phase != ShardPhase::Done)
            .count()
    }
}

openraft::declare_raft_types!(
    /// openraft's view of Trail's types.
    pub(crate) TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = MemberAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Vec<u8>,
        AsyncRuntime = openraft::TokioRuntime,
);
