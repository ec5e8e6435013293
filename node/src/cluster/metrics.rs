//! The cluster's metrics: raft's view, the node's lease, checkpoint commits.

use std::sync::atomic::Ordering::Relaxed;

use super::Cluster;
use crate::metrics::{counter, gauge, Collector, DescriptorEncoder};

/// Reads the cluster at scrape time.
pub(super) struct ClusterMetrics {
    pub cluster: Cluster,
}

impl std::fmt::Debug for ClusterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterMetrics")
    }
}

impl Collector for ClusterMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let c = &self.cluster;
        let v = c.raft_view();
        let lease = c.lease();
        let committer = c.committer();
        for (name, help, value) in [
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
                "trail_raft_learners",
                "Learners in the raft membership (members that own shards but do not vote).",
                v.learners.len() as u64,
            ),
            (
                "trail_lease_valid",
                "1 while the node's lease lets it consume (self-fencing otherwise).",
                u64::from(lease.valid()),
            ),
        ] {
            gauge(&mut enc, name, help, value as i64)?;
        }
        // Only the leader knows who is alive: it also counts the shards of a
        // dead owner that found no room; other nodes count what the
        // replicated state leaves unowned. Free slots and headroom: leader only.
        let unassigned = match c.capacity() {
            Some(cap) => cap.unassigned as usize,
            None => c
                .assignments()
                .borrow()
                .shards
                .values()
                .filter(|s| s.phase == super::types::ShardPhase::Unassigned)
                .count(),
        };
        gauge(
            &mut enc,
            "trail_shards_unassigned",
            "Shards without a live owner (the leader) or without an owner in the replicated state (other nodes).",
            unassigned as i64,
        )?;
        if let Some(cap) = c.capacity() {
            gauge(
                &mut enc,
                "trail_slots_free",
                "Consumer slots not filled on the nodes that may take shards (leader only).",
                i64::from(cap.free),
            )?;
            gauge(
                &mut enc,
                "trail_slot_headroom",
                "Slots left once the worst single node death is absorbed; negative: shards without an owner after it (leader only).",
                cap.headroom,
            )?;
        }
        counter(
            &mut enc,
            "trail_lease_fenced",
            "Times the node's lease ran out and it stopped consuming.",
            lease.fenced.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "trail_checkpoint_commits",
            "Checkpoint batches committed through raft.",
            committer.commits.load(Relaxed),
        )?;
        counter(
            &mut enc,
            "trail_checkpoint_refused",
            "Checkpoints the state machine refused (stale epoch: fenced).",
            committer.refused_total.load(Relaxed),
        )
    }
}
