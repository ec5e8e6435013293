//! The replicated state machine: members, shards (owner, standbys, epoch,
//! committed checkpoint) and the shared tag tier.
//!
//! The state lives in memory and is rebuilt at start from the latest
//! snapshot (kept in the `meta` table of `raft.redb`) plus the committed
//! log, which openraft replays. Readers never touch raft: the pipeline and
//! the scheduler watch [`Assignments`] (published after every applied batch
//! that changed it), the enrichers get tag changes through a hook.
//!
//! Every rule that keeps delivery safe is here, applied in log order on
//! every node alike:
//! * a checkpoint commit counts only from the shard's owner under its
//!   current epoch (the epoch is the fencing token);
//! * an assignment names the epoch it expects, so two leaders' plans cannot
//!   both win;
//! * a release (end of a graceful move) carries the owner's final cursor.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use redb::Database;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::log_store::{io_err, meta_get, StoreResult};
use super::types::{
    Assignments, Command, MemberAddr, NodeId, Reply, ShardPhase, ShardState, TagRecord, TypeConfig,
};

/// Called for every tag change applied (`None`: deleted).
pub type TagHook = Arc<dyn Fn(&str, Option<&TagRecord>) + Send + Sync>;

/// The whole replicated state (what a snapshot holds).
///
/// The tag tier is a persistent map: a clone shares every node with the
/// original and costs O(1), so a snapshot is built from a clone taken
/// under the read lock for an instant and serialized outside it, while
/// applies go on (each put then copies only the tree nodes on its path).
/// It serializes as a JSON object like a `BTreeMap`: snapshots are read
/// and written as before.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Data {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, MemberAddr>,
    pub assignments: Assignments,
    pub tags: imbl::OrdMap<String, TagRecord>,
}

/// What the cluster handle shares with the state machine.
#[derive(Clone)]
pub(crate) struct Shared {
    pub data: Arc<RwLock<Data>>,
    pub assignments: watch::Sender<Arc<Assignments>>,
    pub tag_hook: Arc<Mutex<Option<TagHook>>>,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            data: Arc::default(),
            assignments: watch::channel(Arc::new(Assignments::default())).0,
            tag_hook: Arc::default(),
        }
    }

    fn publish(&self) {
        let a = Arc::new(self.data.read().assignments.clone());
        self.assignments.send_replace(a);
    }
}

/// A snapshot as releases before this one stored it: one JSON value,
/// its bytes an array of numbers. Read, never written.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, MemberAddr>,
    data: Vec<u8>,
}

/// A stored snapshot's meta and bytes.
type StoredParts = (SnapshotMeta<NodeId, MemberAddr>, Vec<u8>);

/// The stored snapshot: its meta (JSON under `snapshot_meta`) and its bytes
/// as they are (`snapshot_data`), or one of an earlier release.
fn stored_snapshot(db: &Database) -> Result<Option<StoredParts>, String> {
    use redb::ReadableDatabase as _;
    if let Some(meta) = meta_get::<SnapshotMeta<NodeId, MemberAddr>>(db, "snapshot_meta")? {
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        let t = txn
            .open_table(super::log_store::META)
            .map_err(|e| e.to_string())?;
        let data = t
            .get("snapshot_data")
            .map_err(|e| e.to_string())?
            .ok_or("snapshot_meta without snapshot_data")?
            .value()
            .to_vec();
        return Ok(Some((meta, data)));
    }
    Ok(meta_get::<StoredSnapshot>(db, "snapshot")?.map(|s| (s.meta, s.data)))
}

#[derive(Clone)]
pub(crate) struct StateMachine {
    db: Arc<Database>,
    shared: Shared,
    snapshot_seq: Arc<std::sync::atomic::AtomicU64>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    io_err(StorageIOError::read_state_machine)(&e)
}

fn snap_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    io_err(|a| StorageIOError::write_snapshot(None, a))(&e)
}

impl StateMachine {
    /// Loads the latest snapshot, if any; openraft replays the log after it.
    pub fn open(db: Arc<Database>, shared: Shared) -> Result<StateMachine, String> {
        if let Some((_, bytes)) = stored_snapshot(&db)? {
            let data: Data = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            *shared.data.write() = data;
            shared.publish();
        }
        Ok(StateMachine {
            db,
            shared,
            snapshot_seq: Arc::default(),
        })
    }

    fn hook(&self) -> Option<TagHook> {
        self.shared.tag_hook.lock().clone()
    }
}

/// Applies one command. Pure: the same log gives the same state everywhere.
pub(crate) fn apply(
    data: &mut Data,
    cmd: &Command,
    hook: Option<&TagHook>,
) -> (Reply, bool /* assignments changed */) {
    let a = &mut data.assignments;
    match cmd {
        Command::Init { cluster_id } => {
            if a.cluster_id.is_empty() {
                a.cluster_id = cluster_id.clone();
                (Reply::ok(), true)
            } else {
                (Reply::refused("the cluster id is already set"), false)
            }
        }
        Command::Member { id, state } if a.removed.contains(id) => (
            Reply::refused(format!(
                "node {id} was removed from the cluster; ids are never reused"
            )),
            false,
        ),
        Command::Member { id, state } => {
            let draining = a.members.get(id).is_some_and(|m| m.draining);
            a.members.insert(
                *id,
                super::types::MemberState {
                    draining,
                    ..state.clone()
                },
            );
            (Reply::ok(), true)
        }
        Command::Leaving { id } => match a.members.get_mut(id) {
            Some(m) => {
                m.leaving = true;
                (Reply::ok(), true)
            }
            None => (Reply::refused(format!("no member {id}")), false),
        },
        Command::Drain { id, draining } => match a.members.get_mut(id) {
            Some(m) => {
                m.draining = *draining;
                (Reply::ok(), true)
            }
            None => (Reply::refused(format!("no member {id}")), false),
        },
        Command::Forget { id } => {
            a.members.remove(id);
            a.removed.insert(*id);
            for s in a.shards.values_mut() {
                s.standbys.retain(|n| n != id);
                if s.owner == Some(*id) {
                    // Fenced: the next assignment bumps the epoch.
                    s.owner = None;
                    s.phase = if s.phase == ShardPhase::Done {
                        ShardPhase::Done
                    } else {
                        ShardPhase::Unassigned
                    };
                    s.moving_to = None;
                }
            }
            (Reply::ok(), true)
        }
        Command::Shards {
            project,
            logstore,
            shards,
        } => {
            // Shards that appear after a logstore's first listing were born of
            // a split or merge: they start at their beginning.
            let listed_before = a
                .shards
                .keys()
                .any(|k| &k.project == project && &k.logstore == logstore);
            for (id, readonly) in shards {
                let key = super::types::ShardKey {
                    project: project.clone(),
                    logstore: logstore.clone(),
                    shard: *id,
                };
                let new = !a.shards.contains_key(&key);
                let s = a.shards.entry(key).or_default();
                s.readonly = *readonly;
                if new && listed_before {
                    s.child = true;
                }
            }
            (Reply::ok(), true)
        }
        Command::Partitions {
            project,
            logstore,
            prefixes,
        } => {
            let mut next = a
                .shards
                .iter()
                .filter(|(_, s)| s.partition.is_some())
                .map(|(k, _)| k.shard.saturating_add(1))
                .max()
                .unwrap_or(super::types::PARTITION_BASE);
            for prefix in prefixes {
                let known = a.shards.iter().any(|(k, s)| {
                    &k.project == project
                        && &k.logstore == logstore
                        && s.partition.as_ref() == Some(prefix)
                });
                if known {
                    continue;
                }
                if next == u32::MAX {
                    return (Reply::refused("partition numbers are exhausted"), false);
                }
                let key = super::types::ShardKey {
                    project: project.clone(),
                    logstore: logstore.clone(),
                    shard: next,
                };
                next += 1;
                a.shards.insert(
                    key,
                    ShardState {
                        partition: Some(prefix.clone()),
                        ..ShardState::new()
                    },
                );
            }
            (Reply::ok(), true)
        }
        Command::Assign {
            shard,
            owner,
            standbys,
            expect_epoch,
            at_ms,
        } => {
            let Some(s) = a.shards.get_mut(shard) else {
                return (Reply::refused(format!("no shard {shard}")), false);
            };
            if s.epoch != *expect_epoch {
                return (
                    Reply::refused(format!(
                        "shard {shard} is at epoch {}, not {expect_epoch}",
                        s.epoch
                    )),
                    false,
                );
            }
            if s.phase == ShardPhase::Done {
                return (Reply::refused(format!("shard {shard} is done")), false);
            }
            s.epoch += 1;
            s.owner = Some(*owner);
            s.standbys = standbys.clone();
            s.phase = ShardPhase::Running;
            s.moving_to = None;
            s.assigned_ms = *at_ms;
            (Reply::ok(), true)
        }
        Command::Standbys { shard, standbys } => match a.shards.get_mut(shard) {
            Some(s) => {
                s.standbys = standbys.clone();
                (Reply::ok(), true)
            }
            None => (Reply::refused(format!("no shard {shard}")), false),
        },
        Command::Revoke {
            shard,
            epoch,
            to,
            at_ms,
        } => match a.shards.get_mut(shard) {
            Some(s) if s.epoch == *epoch && s.phase == ShardPhase::Running => {
                s.phase = ShardPhase::Revoking;
                s.moving_to = Some(*to);
                s.revoked_ms = *at_ms;
                (Reply::ok(), true)
            }
            _ => (
                Reply::refused(format!("shard {shard} is not running at epoch {epoch}")),
                false,
            ),
        },
        Command::Release {
            shard,
            epoch,
            checkpoint,
            at_ms,
        } => match a.shards.get_mut(shard) {
            Some(s)
                if s.epoch == *epoch
                    && matches!(s.phase, ShardPhase::Running | ShardPhase::Revoking) =>
            {
                if let Some(c) = checkpoint {
                    s.checkpoint = Some(c.clone());
                }
                match s.moving_to.take() {
                    Some(to) => {
                        s.epoch += 1;
                        s.owner = Some(to);
                        s.standbys.retain(|n| *n != to);
                        s.phase = ShardPhase::Running;
                    }
                    None => {
                        s.owner = None;
                        s.phase = ShardPhase::Unassigned;
                    }
                }
                s.assigned_ms = *at_ms;
                (Reply::ok(), true)
            }
            _ => (
                Reply::refused(format!("shard {shard} is not held at epoch {epoch}")),
                false,
            ),
        },
        Command::Commit { node, checkpoints } => {
            let mut reply = Reply::ok();
            let mut changed = false;
            for c in checkpoints {
                match a.shards.get_mut(&c.shard) {
                    Some(s)
                        if s.epoch == c.epoch
                            && s.owner == Some(*node)
                            && matches!(s.phase, ShardPhase::Running | ShardPhase::Revoking) =>
                    {
                        // A commit retried (a forwarded write answered late, re-sent
                        // with the next batch) may carry an older cursor: the
                        // checkpoint never moves backwards. Not a refusal: the
                        // writer still holds the shard.
                        if !behind(&c.checkpoint, s.checkpoint.as_ref()) {
                            s.checkpoint = Some(c.checkpoint.clone());
                            changed = true;
                        }
                    }
                    _ => reply.refused.push(c.shard.clone()),
                }
            }
            (reply, changed)
        }
        Command::Finish {
            shard,
            epoch,
            checkpoint,
        } => match a.shards.get_mut(shard) {
            Some(s) if s.epoch == *epoch => {
                if let Some(c) = checkpoint {
                    s.checkpoint = Some(c.clone());
                }
                s.phase = ShardPhase::Done;
                s.owner = None;
                s.standbys.clear();
                s.moving_to = None;
                (Reply::ok(), true)
            }
            _ => (
                Reply::refused(format!("shard {shard} is not at epoch {epoch}")),
                false,
            ),
        },
        Command::PutTags {
            tags,
            expire_before_ms,
        } => {
            for (arn, rec) in tags {
                if let Some(h) = hook {
                    h(arn, Some(rec));
                }
                data.tags.insert(arn.clone(), rec.clone());
            }
            // Written by releases before the leader expired tags itself
            // (`tag_expiry`); replayed as they were applied then.
            if *expire_before_ms > 0 {
                let old: Vec<String> = data
                    .tags
                    .iter()
                    .filter(|(_, r)| r.origin == "cloud" && r.updated_ms < *expire_before_ms)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in old {
                    data.tags.remove(&k);
                }
            }
            (Reply::ok(), false)
        }
        Command::DeleteTags { arns } => {
            for arn in arns {
                if data.tags.remove(arn).is_some() {
                    if let Some(h) = hook {
                        h(arn, None);
                    }
                }
            }
            (Reply::ok(), false)
        }
        Command::Plan { steps } => apply_plan(data, steps),
    }
}

/// Applies a plan's steps in order, all or nothing: the shards the steps
/// touch are saved before their first change and put back if a step is
/// refused. Costs O(steps), never a copy of the whole state.
fn apply_plan(data: &mut Data, steps: &[Command]) -> (Reply, bool) {
    let mut saved: BTreeMap<super::types::ShardKey, Option<super::types::ShardState>> =
        BTreeMap::new();
    let mut changed = false;
    for (i, step) in steps.iter().enumerate() {
        let Some(shard) = step.plan_shard() else {
            restore(data, saved);
            return (
                Reply::refused(format!(
                    "plan step {i} is a {} command; a plan holds assign, revoke and standbys only",
                    step.kind()
                )),
                false,
            );
        };
        if !saved.contains_key(shard) {
            saved.insert(shard.clone(), data.assignments.shards.get(shard).cloned());
        }
        let (reply, step_changed) = apply(data, step, None);
        if !reply.ok {
            restore(data, saved);
            return (
                Reply::refused(format!(
                    "plan refused as a whole at step {i} of {} ({} {shard}): {}",
                    steps.len(),
                    step.kind(),
                    reply.message
                )),
                false,
            );
        }
        changed |= step_changed;
    }
    (Reply::ok(), changed)
}

fn restore(
    data: &mut Data,
    saved: BTreeMap<super::types::ShardKey, Option<super::types::ShardState>>,
) {
    for (k, v) in saved {
        match v {
            Some(v) => {
                data.assignments.shards.insert(k, v);
            }
            None => {
                data.assignments.shards.remove(&k);
            }
        }
    }
}

/// Stores a snapshot unless one of a later log id is stored already, in
/// one durable transaction (compare and set on `snapshot_log_id`): a
/// snapshot built concurrently with later commands never lands over an
/// installed, newer one. True if stored.
fn put_snapshot(
    db: &redb::Database,
    meta: &SnapshotMeta<NodeId, MemberAddr>,
    data: &[u8],
) -> Result<bool, String> {
    let last = meta.last_log_id;
    use redb::ReadableTable as _;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut txn = db.begin_write().map_err(|x| e(&x))?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(|x| e(&x))?;
    {
        let mut t = txn.open_table(super::log_store::META).map_err(|x| e(&x))?;
        let current: Option<LogId<NodeId>> = match t.get("snapshot_log_id").map_err(|x| e(&x))? {
            Some(v) => serde_json::from_slice(v.value()).map_err(|x| e(&x))?,
            None => None,
        };
        if current > last {
            return Ok(false); // dropping the transaction aborts it
        }
        let id = serde_json::to_vec(&last).map_err(|x| e(&x))?;
        let m = serde_json::to_vec(meta).map_err(|x| e(&x))?;
        t.insert("snapshot_meta", m.as_slice()).map_err(|x| e(&x))?;
        t.insert("snapshot_data", data).map_err(|x| e(&x))?;
        t.remove("snapshot").map_err(|x| e(&x))?;
        t.insert("snapshot_log_id", id.as_slice())
            .map_err(|x| e(&x))?;
    }
    txn.commit().map_err(|x| e(&x))?;
    Ok(true)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let started = std::time::Instant::now();
        // An instant under the lock (the tags are shared, not copied)...
        let data = self.shared.data.read().clone();
        let locked_us = started.elapsed().as_micros() as u64;
        // ...and the serializing outside it, off the async threads.
        let (bytes, data) = tokio::task::spawn_blocking(move || {
            let bytes = serde_json::to_vec(&data);
            (bytes, data)
        })
        .await
        .map_err(snap_err)?;
        let bytes = bytes.map_err(snap_err)?;
        let (last_applied, membership, tags) =
            (data.last_applied, data.membership.clone(), data.tags.len());
        drop(data);
        let serialized_ms = started.elapsed().as_millis() as u64;
        let seq = self
            .snapshot_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id: format!(
                "{}-{}-{seq}",
                last_applied.map(|l| l.leader_id.term).unwrap_or(0),
                last_applied.map(|l| l.index).unwrap_or(0)
            ),
        };
        let db = self.db.clone();
        let last = meta.last_log_id;
        let m = meta.clone();
        let (kept, bytes) = tokio::task::spawn_blocking(move || {
            let kept = put_snapshot(&db, &m, &bytes);
            (kept, bytes)
        })
        .await
        .map_err(snap_err)?;
        let kept = kept.map_err(snap_err)?;
        tracing::info!(
            index = ?last.map(|l| l.index),
            bytes = bytes.len(),
            tags,
            locked_us,
            serialized_ms,
            total_ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        if !kept {
            // Built from state older than a snapshot installed meanwhile:
            // storing it would make the next restart start before the
            // installed one, whose logs are purged.
            tracing::info!(index = ?last.map(|l| l.index), "a newer snapshot was stored meanwhile; this one is not kept");
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(bytes),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, MemberAddr>)> {
        let d = self.shared.data.read();
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Reply>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let hook = self.hook();
        let mut replies = Vec::new();
        let mut changed = false;
        {
            let mut d = self.shared.data.write();
            for entry in entries {
                d.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => replies.push(Reply::ok()),
                    EntryPayload::Normal(cmd) => {
                        let (reply, c) = apply(&mut d, &cmd, hook.as_ref());
                        if !reply.ok {
                            tracing::debug!(kind = cmd.kind(), message = %reply.message, "command refused");
                        }
                        changed |= c;
                        replies.push(reply);
                    }
                    EntryPayload::Membership(m) => {
                        d.membership = StoredMembership::new(Some(entry.log_id), m);
                        changed = true;
                        replies.push(Reply::ok());
                    }
                }
            }
        }
        if changed {
            self.shared.publish();
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Vec<u8>>> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, MemberAddr>,
        snapshot: Box<Vec<u8>>,
    ) -> StoreResult<()> {
        let started = std::time::Instant::now();
        let size = snapshot.len();
        let db = self.db.clone();
        let m = meta.clone();
        // Parsing and storing hundreds of MB: off the async threads.
        let data: Data = tokio::task::spawn_blocking(move || -> Result<Data, String> {
            let data: Data = serde_json::from_slice(&snapshot).map_err(|e| e.to_string())?;
            put_snapshot(&db, &m, &snapshot)?;
            Ok(data)
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        if let Some(h) = self.hook() {
            for (arn, rec) in &data.tags {
                h(arn, Some(rec));
            }
        }
        let tags = data.tags.len();
        *self.shared.data.write() = data;
        self.shared.publish();
        tracing::info!(
            index = ?meta.last_log_id.map(|l| l.index),
            bytes = size,
            tags,
            total_ms = started.elapsed().as_millis() as u64,
            "snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        match stored_snapshot(&self.db).map_err(sm_err)? {
            Some((meta, data)) => Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(data),
            })),
            None => Ok(None),
        }
    }
}

/// Whether `new` is behind `committed` (both SLS cursors, positions in the
/// shard). Cursors that are not positions are never called behind.
fn behind(new: &super::types::Checkpoint, committed: Option<&super::types::Checkpoint>) -> bool {
    let Some(old) = committed else { return false };
    let pos = |c: &super::types::Checkpoint| crate::sls::Cursor::new(c.cursor.clone()).sequence();
    matches!((pos(new), pos(old)), (Some(n), Some(o)) if n < o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::types::{Checkpoint, CheckpointCommit, ShardKey};

    fn key(n: u32) -> ShardKey {
        ShardKey {
            project: "p".into(),
            logstore: "l".into(),
            shard: n,
        }
    }

    fn cp(c: &str) -> Checkpoint {
        Checkpoint {
            cursor: c.into(),
            cursor_time: None,
            saved_ms: 0,
        }
    }

    fn run(d: &mut Data, c: Command) -> Reply {
        apply(d, &c, None).0
    }

    #[test]
    fn checkpoints_from_an_old_epoch_or_another_node_are_refused() {
        let mut d = Data::default();
        run(
            &mut d,
            Command::Shards {
                project: "p".into(),
                logstore: "l".into(),
                shards: vec![(0, false)],
            },
        );
        let assign = |owner, expect_epoch| Command::Assign {
            shard: key(0),
            owner,
            standbys: vec![],
            expect_epoch,
            at_ms: 1,
        };
        assert!(run(&mut d, assign(1, 0)).ok);
        assert!(!run(&mut d, assign(2, 0)).ok, "a stale plan loses");
        let commit = |node, epoch, c: &str| Command::Commit {
            node,
            checkpoints: vec![CheckpointCommit {
                shard: key(0),
                epoch,
                checkpoint: cp(c),
            }],
        };
        assert!(run(&mut d, commit(1, 1, "a")).refused.is_empty());
        // Failover: node 2 takes epoch 2; node 1's late commit is fenced.
        assert!(run(&mut d, assign(2, 1)).ok);
        assert_eq!(run(&mut d, commit(1, 1, "late")).refused, vec![key(0)]);
        assert_eq!(run(&mut d, commit(2, 1, "x")).refused, vec![key(0)]);
        assert!(run(&mut d, commit(2, 2, "b")).refused.is_empty());
        let s = &d.assignments.shards[&key(0)];
        assert_eq!((s.owner, s.epoch), (Some(2), 2));
        assert_eq!(s.checkpoint.as_ref().unwrap().cursor, "b");
    }

    #[test]
    fn a_plan_applies_all_or_nothing_with_every_step_checked_as_if_alone() {
        let mut d = Data::default();
        run(
            &mut d,
            Command::Shards {
                project: "p".into(),
                logstore: "l".into(),
                shards: (0..4).map(|i| (i, false)).collect(),
            },
        );
        let assign = |n, owner, expect_epoch| Command::Assign {
            shard: key(n),
            owner,
            standbys: vec![],
            expect_epoch,
            at_ms: 1,
        };
        assert!(run(&mut d, assign(0, 1, 0)).ok);
        let before = d.assignments.clone();

        // The last step is stale (shard 0 is at epoch 1): nothing changes,
        // not even the steps before it, nor a shard touched twice.
        let r = run(
            &mut d,
            Command::Plan {
                steps: vec![
                    assign(1, 2, 0),
                    assign(3, 1, 0),
                    assign(3, 2, 1),
                    Command::Standbys {
                        shard: key(1),
                        standbys: vec![3],
                    },
                    assign(0, 3, 0),
                ],
            },
        );
        assert!(!r.ok);
        assert!(r.message.contains("step 4 of 5"), "{}", r.message);
        assert!(r.message.contains("at epoch 1, not 0"), "{}", r.message);
        assert_eq!(d.assignments, before, "a refused plan changes nothing");

        // Only assign, revoke and standbys go into a plan.
        for odd in [
            Command::Forget { id: 1 },
            Command::Plan { steps: vec![] },
            Command::Commit {
                node: 1,
                checkpoints: vec![],
            },
        ] {
            let r = run(
                &mut d,
                Command::Plan {
                    steps: vec![assign(1, 2, 0), odd],
                },
            );
            assert!(!r.ok && r.message.contains("step 1"), "{}", r.message);
            assert_eq!(d.assignments, before);
        }

        // Accepted: the same state as the steps written one by one.
        let steps = vec![
            assign(1, 2, 0),
            Command::Standbys {
                shard: key(1),
                standbys: vec![3],
            },
            assign(3, 1, 0),
            assign(3, 2, 1),
            Command::Revoke {
                shard: key(0),
                epoch: 1,
                to: 2,
                at_ms: 5,
            },
        ];
        let mut one_by_one = d.clone();
        for step in &steps {
            assert!(run(&mut one_by_one, step.clone()).ok);
        }
        let (r, changed) = apply(&mut d, &Command::Plan { steps }, None);
        assert!(r.ok && changed, "{}", r.message);
        assert_eq!(d.assignments, one_by_one.assignments);
        let s3 = &d.assignments.shards[&key(3)];
        assert_eq!((s3.owner, s3.epoch), (Some(2), 2));
        assert_eq!(d.assignments.shards[&key(0)].phase, ShardPhase::Revoking);
    }

    #[test]
    fn partitions_are_numbered_once_from_the_base_over_every_source() {
        let mut d = Data::default();
        let parts = |logstore: &str, p: &[&str]| Command::Partitions {
            project: "s3://trail".into(),
            logstore: logstore.into(),
            prefixes: p.iter().map(|s| s.to_string()).collect(),
        };
        run(
            &mut d,
            Command::Shards {
                project: "p".into(),
                logstore: "l".into(),
                shards: vec![(0, false), (1, false)],
            },
        );
        assert!(run(&mut d, parts("a", &["x/", "y/"])).ok);
        assert!(run(&mut d, parts("a", &["y/", "z/", "x/"])).ok);
        assert!(run(&mut d, parts("b", &["x/"])).ok);
        let numbered: Vec<(String, u32, String)> = d
            .assignments
            .shards
            .iter()
            .filter_map(|(k, s)| {
                s.partition
                    .clone()
                    .map(|p| (k.logstore.clone(), k.shard, p))
            })
            .collect();
        let b = super::super::types::PARTITION_BASE;
        assert_eq!(
            numbered,
            vec![
                ("a".into(), b, "x/".into()),
                ("a".into(), b + 1, "y/".into()),
                ("a".into(), b + 2, "z/".into()),
                ("b".into(), b + 3, "x/".into()),
            ]
        );
        // Known partitions keep their number, epoch and checkpoint.
        let before = d.assignments.clone();
        assert!(run(&mut d, parts("a", &["z/"])).ok);
        assert_eq!(d.assignments, before);
    }

    #[test]
    fn a_late_retried_commit_never_moves_the_checkpoint_back() {
        let mut d = Data::default();
        run(
            &mut d,
            Command::Shards {
                project: "p".into(),
                logstore: "l".into(),
                shards: vec![(0, false)],
            },
        );
        let assign = Command::Assign {
            shard: key(0),
            owner: 1,
            standbys: vec![],
            expect_epoch: 0,
            at_ms: 1,
        };
        assert!(run(&mut d, assign).ok);
        let at = |n: i64| Command::Commit {
            node: 1,
            checkpoints: vec![CheckpointCommit {
                shard: key(0),
                epoch: 1,
                checkpoint: cp(&crate::sls::Cursor::from_sequence(n).to_string()),
            }],
        };
        assert!(run(&mut d, at(50)).refused.is_empty());
        let late = run(&mut d, at(40));
        assert!(
            late.refused.is_empty(),
            "not fenced: the writer holds the shard"
        );
        let s = &d.assignments.shards[&key(0)];
        assert_eq!(
            crate::sls::Cursor::new(s.checkpoint.as_ref().unwrap().cursor.clone()).sequence(),
            Some(50),
            "the checkpoint stays at 50"
        );
        assert!(run(&mut d, at(60)).refused.is_empty());
    }

    #[test]
    fn shards_that_appear_after_the_first_listing_are_split_children() {
        let mut d = Data::default();
        let shards = |ids: Vec<(u32, bool)>| Command::Shards {
            project: "p".into(),
            logstore: "l".into(),
            shards: ids,
        };
        run(&mut d, shards(vec![(0, false), (1, false)]));
        run(
            &mut d,
            shards(vec![(0, true), (1, false), (2, false), (3, false)]),
        );
        let child = |i| d.assignments.shards[&key(i)].child;
        assert!(
            !child(0) && !child(1),
            "the trail's shards start as configured"
        );
        assert!(
            child(2) && child(3),
            "a split's children start at their beginning"
        );
    }

    #[test]
    fn a_graceful_move_hands_over_the_final_cursor_under_the_next_epoch() {
        let mut d = Data::default();
        run(
            &mut d,
            Command::Shards {
                project: "p".into(),
                logstore: "l".into(),
                shards: vec![(0, false)],
            },
        );
        run(
            &mut d,
            Command::Assign {
                shard: key(0),
                owner: 1,
                standbys: vec![3],
                expect_epoch: 0,
                at_ms: 1,
            },
        );
        assert!(
            run(
                &mut d,
                Command::Revoke {
                    shard: key(0),
                    epoch: 1,
                    to: 2,
                    at_ms: 2
                }
            )
            .ok
        );
        // Still the owner while draining: its commits count.
        assert!(run(
            &mut d,
            Command::Commit {
                node: 1,
                checkpoints: vec![CheckpointCommit {
                    shard: key(0),
                    epoch: 1,
                    checkpoint: cp("mid")
                }]
            }
        )
        .refused
        .is_empty());
        assert!(
            !run(
                &mut d,
                Command::Release {
                    shard: key(0),
                    epoch: 0,
                    checkpoint: Some(cp("wrong")),
                    at_ms: 3
                }
            )
            .ok
        );
        assert!(
            run(
                &mut d,
                Command::Release {
                    shard: key(0),
                    epoch: 1,
                    checkpoint: Some(cp("final")),
                    at_ms: 3
                }
            )
            .ok
        );
        let s = &d.assignments.shards[&key(0)];
        assert_eq!(
            (s.owner, s.epoch, s.phase),
            (Some(2), 2, ShardPhase::Running)
        );
        assert_eq!(s.checkpoint.as_ref().unwrap().cursor, "final");
        assert_eq!(s.standbys, vec![3]);
    }

    #[test]
    fn an_older_snapshot_never_lands_over_a_newer_one() {
        let dir = std::env::temp_dir().join(format!("trail-snap-cas-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = redb::Database::create(dir.join("raft.redb")).unwrap();
        let id = |term, index| {
            Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(term, 1),
                index,
            ))
        };
        let meta = |last_log_id| SnapshotMeta {
            last_log_id,
            last_membership: Default::default(),
            snapshot_id: "s".into(),
        };
        assert!(put_snapshot(&db, &meta(id(1, 10)), b"ten").unwrap());
        // A build that read the state at index 5 finishes after the install at 10.
        assert!(!put_snapshot(&db, &meta(id(1, 5)), b"five").unwrap());
        assert!(!put_snapshot(&db, &meta(None), b"none").unwrap());
        let (m, data) = stored_snapshot(&db).unwrap().unwrap();
        assert_eq!((m.last_log_id, data.as_slice()), (id(1, 10), &b"ten"[..]));
        assert!(put_snapshot(&db, &meta(id(2, 12)), b"twelve").unwrap());
        assert_eq!(stored_snapshot(&db).unwrap().unwrap().1, b"twelve");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_snapshot_stored_by_an_earlier_release_is_read_and_replaced() {
        let dir = std::env::temp_dir().join(format!("trail-snap-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = redb::Database::create(dir.join("raft.redb")).unwrap();
        let meta = |index| SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            )),
            last_membership: Default::default(),
            snapshot_id: "s".into(),
        };
        let old = serde_json::to_vec(&StoredSnapshot {
            meta: meta(7),
            data: b"{\"old\":1}".to_vec(),
        })
        .unwrap();
        {
            let txn = db.begin_write().unwrap();
            txn.open_table(super::super::log_store::META)
                .unwrap()
                .insert("snapshot", old.as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let (m, data) = stored_snapshot(&db).unwrap().unwrap();
        assert_eq!(
            (m.last_log_id.unwrap().index, &data[..]),
            (7, &b"{\"old\":1}"[..])
        );
        assert!(put_snapshot(&db, &meta(9), b"new").unwrap());
        assert_eq!(stored_snapshot(&db).unwrap().unwrap().1, b"new");
        use redb::ReadableDatabase as _;
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(super::super::log_store::META).unwrap();
        assert!(t.get("snapshot").unwrap().is_none(), "the old form is gone");
        drop(t);
        drop(txn);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_whole_state_survives_a_snapshot() {
        let mut d = Data::default();
        run(
            &mut d,
            Command::Shards {
                project: "p".into(),
                logstore: "l".into(),
                shards: vec![(0, false), (1, true)],
            },
        );
        run(
            &mut d,
            Command::Assign {
                shard: key(1),
                owner: 3,
                standbys: vec![1],
                expect_epoch: 0,
                at_ms: 5,
            },
        );
        run(
            &mut d,
            Command::PutTags {
                tags: vec![(
                    "acs:ram::1:user/a".into(),
                    TagRecord {
                        tags: [("k".to_string(), "v".to_string())].into(),
                        origin: "api".into(),
                        updated_ms: 1,
                    },
                )],
                expire_before_ms: 0,
            },
        );
        let bytes = serde_json::to_vec(&d).expect("a snapshot serializes");
        let back: Data = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.assignments, d.assignments);
        assert_eq!(back.tags, d.tags);
    }

    #[test]
    fn cloud_tags_expire_and_api_tags_stay() {
        let mut d = Data::default();
        let rec = |origin: &str, at| TagRecord {
            tags: [("k".to_string(), "v".to_string())].into(),
            origin: origin.into(),
            updated_ms: at,
        };
        run(
            &mut d,
            Command::PutTags {
                tags: vec![("a".into(), rec("cloud", 10)), ("b".into(), rec("api", 10))],
                expire_before_ms: 0,
            },
        );
        run(
            &mut d,
            Command::PutTags {
                tags: vec![("c".into(), rec("cloud", 100))],
                expire_before_ms: 50,
            },
        );
        assert_eq!(
            d.tags.keys().cloned().collect::<Vec<_>>(),
            vec!["b".to_string(), "c".to_string()]
        );
    }
}
