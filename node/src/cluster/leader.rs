//! What only the leader does: serve forwarded requests (writes, membership
//! changes, rebalancing, the liveness table), and the duty loop that watches
//! liveness, lists the source's shards and writes the planner's commands.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::forward::{LeaderError, LeaderReply, LeaderRequest};
use super::scheduler::{capacity, plan, Move, PlanOptions};
use super::types::{Command, MemberAddr, NodeId, ShardKey};
use super::Cluster;
use crate::clock::unix_ms;

/// Steps per [`Command::Plan`] entry (a step is ~150 bytes of JSON: an
/// entry stays well under 200 KiB). A larger plan is several entries, each
/// all or nothing.
const PLAN_STEPS_PER_ENTRY: usize = 1024;

/// A voter declared dead (a lease after its last beat) and still dead this
/// many leases later is replaced by a live learner: longer than a pause the
/// cluster tests stage (about one lease) or a quick restart, short enough
/// that a second death soon after still finds a quorum.
const VOTER_REPLACE_AFTER_LEASES: u32 = 3;

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, MemberAddr>>) -> LeaderError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            LeaderError::NotLeader(f.leader_id)
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            LeaderError::Refused(c.to_string())
        }
        other => LeaderError::Failed(other.to_string()),
    }
}

impl Cluster {
    async fn write_here(&self, cmd: Command) -> Result<super::types::Reply, LeaderError> {
        self.inner
            .raft
            .client_write(cmd)
            .await
            .map(|r| r.data)
            .map_err(write_error)
    }

    /// Serves a request on this node, which must be the leader.
    pub(crate) async fn serve_as_leader(
        &self,
        req: LeaderRequest,
    ) -> Result<LeaderReply, LeaderError> {
        let view = self.raft_view();
        if view.leader != Some(self.id()) {
            return Err(LeaderError::NotLeader(view.leader));
        }
        match req {
            LeaderRequest::Write(cmd) => self.write_here(cmd).await.map(LeaderReply::Written),
            LeaderRequest::Live => {
                let members = self.member_ids();
                Ok(LeaderReply::Live(
                    self.inner
                        .liveness
                        .table(members.into_iter(), self.inner.settings.lease),
                ))
            }
            LeaderRequest::Rebalance { dry_run } => {
                let (p, _) = self.plan_now(true);
                if !dry_run && !self.write_plan(p.commands).await? {
                    return Err(LeaderError::Refused(
                        "the plan was refused, in whole or in part: shards moved meanwhile; run it again".into(),
                    ));
                }
                Ok(LeaderReply::Moves(p.moves))
            }
            LeaderRequest::Drain { id, undo } => {
                if !self.assignments().borrow().members.contains_key(&id) {
                    return Err(LeaderError::Refused(format!("no member {id}")));
                }
                self.write_here(Command::Drain {
                    id,
                    draining: !undo,
                })
                .await?;
                let (p, _) = self.plan_now(false);
                let moves: Vec<Move> = p.moves.into_iter().filter(|m| m.from == Some(id)).collect();
                Ok(LeaderReply::Moves(moves))
            }
            LeaderRequest::AddMember { id, addr } => {
                let _one = self.one_membership_change()?;
                if self.assignments().borrow().removed.contains(&id) {
                    return Err(LeaderError::Refused(format!(
                        "node id {id} was removed; ids are never reused"
                    )));
                }
                let m = self.raft_view();
                if m.voters.contains(&id) || m.learners.contains(&id) {
                    if m.addrs.get(&id) != Some(&addr) {
                        // A member at a new address: raft must call it there.
                        tracing::info!(node = id, %addr, "a member's address changed");
                        self.inner
                            .raft
                            .change_membership(
                                ChangeMembers::SetNodes(BTreeMap::from([(
                                    id,
                                    MemberAddr { addr },
                                )])),
                                false,
                            )
                            .await
                            .map_err(write_error)?;
                    }
                    return Ok(LeaderReply::Done);
                }
                tracing::info!(node = id, %addr, "adding a member: learner first");
                self.inner
                    .raft
                    .add_learner(id, MemberAddr { addr }, true)
                    .await
                    .map_err(write_error)?;
                let want = self.inner.settings.voters;
                if m.voters.len() < want {
                    let voters = BTreeSet::from([id]);
                    self.inner
                        .raft
                        .change_membership(ChangeMembers::AddVoterIds(voters), false)
                        .await
                        .map_err(write_error)?;
                    tracing::info!(node = id, "member added as a voter");
                } else {
                    tracing::info!(
                        node = id,
                        voters = m.voters.len(),
                        "member added as a learner: the cluster has its voters (cluster.voters); a learner owns shards like any node"
                    );
                }
                Ok(LeaderReply::Done)
            }
            LeaderRequest::RemoveMember { id } => {
                let _one = self.one_membership_change()?;
                if id == self.id() {
                    return Err(LeaderError::Refused(
                        "the leader cannot remove itself; remove it from another node after it steps down, or drain it first".into(),
                    ));
                }
                if self.assignments().borrow().members.contains_key(&id) {
                    self.write_here(Command::Drain { id, draining: true })
                        .await?;
                    // Its shards move first (gracefully while it is alive).
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while self.assignments().borrow().owned_by(id) > 0 && Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                if self.assignments().borrow().owned_by(id) > 0 {
                    // It would not hand its shards over in time. Once out of
                    // raft it never applies the Forget that unassigns them,
                    // so first let any lease it holds run out: its beats are
                    // refused from now on.
                    self.inner.liveness.declare_dead(id);
                    tracing::warn!(
                        node = id,
                        "removing a member that still owns shards: waiting out its lease first"
                    );
                    tokio::time::sleep(self.inner.settings.lease).await;
                }
                if self.raft_view().voters.contains(&id) {
                    // Joint consensus; with retain = false it leaves the nodes too.
                    self.inner
                        .raft
                        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                        .await
                        .map_err(write_error)?;
                }
                if self.raft_view().learners.contains(&id) {
                    self.inner
                        .raft
                        .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                        .await
                        .map_err(write_error)?;
                }
                self.write_here(Command::Forget { id }).await?;
                tracing::info!(node = id, "member removed");
                Ok(LeaderReply::Done)
            }
        }
    }

    /// Writes a plan's commands. When every raft node reads
    /// [`Command::Plan`], the assigns and then the other steps go in
    /// entries of up to [`PLAN_STEPS_PER_ENTRY`] steps, each applied all or
    /// nothing: a death's assigns wait for one commit, not one each. Otherwise (a node on a release before
    /// batched plans) one entry per command, as those releases wrote them.
    /// `Ok(false)`: some entry or step was refused (the shards moved
    /// meanwhile); the next round plans again from what was applied.
    pub(super) async fn write_plan(&self, commands: Vec<Command>) -> Result<bool, LeaderError> {
        let mut all = true;
        if !self.everyone_reads_plans() {
            for c in commands {
                let kind = c.kind();
                let r = self.write_here(c).await?;
                if !r.ok {
                    tracing::debug!(kind, message = %r.message, "plan step refused");
                    all = false;
                }
            }
            return Ok(all);
        }
        let (total, started) = (commands.len(), Instant::now());
        let mut entries = 0;
        // Assigns (deaths, unowned shards) first, in entries of their own:
        // a stale revoke or standby change must not hold a takeover back.
        let (assigns, rest): (Vec<Command>, Vec<Command>) = commands
            .into_iter()
            .partition(|c| matches!(c, Command::Assign { .. }));
        for group in [assigns, rest] {
            let mut group = group.into_iter().peekable();
            while group.peek().is_some() {
                let steps: Vec<Command> = group.by_ref().take(PLAN_STEPS_PER_ENTRY).collect();
                let n = steps.len();
                let r = self.write_here(Command::Plan { steps }).await?;
                entries += 1;
                if !r.ok {
                    tracing::info!(steps = n, message = %r.message, "plan refused; planning again");
                    return Ok(false);
                }
            }
        }
        if total > 0 {
            tracing::info!(
                steps = total,
                entries,
                ms = started.elapsed().as_millis() as u64,
                "plan committed"
            );
        }
        Ok(all)
    }

    /// Every node raft replicates to (voters and learners) recorded that it
    /// applies [`Command::Plan`]. A node added but not yet recorded counts
    /// as not reading them.
    /// Writes what a source listing found that the state lacks: new shards
    /// (or changed read-only flags), new partitions.
    async fn record_listing(&self, listing: super::SourceShards) {
        let known = self.assignments().borrow().clone();
        let ours = |k: &ShardKey| k.project == listing.project && k.logstore == listing.logstore;
        let new_partitions: Vec<String> = listing
            .partitions
            .iter()
            .filter(|p| {
                !known
                    .shards
                    .iter()
                    .any(|(k, s)| ours(k) && s.partition.as_ref() == Some(*p))
            })
            .cloned()
            .collect();
        if !new_partitions.is_empty() {
            tracing::info!(
                project = %listing.project,
                source = %listing.logstore,
                new = new_partitions.len(),
                "new partitions found"
            );
            if let Err(e) = self
                .write_here(Command::Partitions {
                    project: listing.project.clone(),
                    logstore: listing.logstore.clone(),
                    prefixes: new_partitions,
                })
                .await
            {
                tracing::warn!(error = %e, "recording partitions failed");
            }
        }
        let changed = listing.shards.iter().any(|(id, ro)| {
            known
                .shards
                .iter()
                .find(|(k, _)| ours(k) && k.shard == *id)
                .is_none_or(|(_, s)| s.readonly != *ro)
        });
        if changed {
            tracing::info!(shards = listing.shards.len(), "source shards changed");
            if let Err(e) = self
                .write_here(Command::Shards {
                    project: listing.project,
                    logstore: listing.logstore,
                    shards: listing.shards,
                })
                .await
            {
                tracing::warn!(error = %e, "recording shards failed");
            }
        }
    }

    fn everyone_reads_plans(&self) -> bool {
        let view = self.raft_view();
        let a = self.assignments().borrow().clone();
        view.voters
            .iter()
            .chain(&view.learners)
            .all(|id| a.members.get(id).is_some_and(|m| m.batched_plans))
    }

    /// Keeps `cluster.voters` voters among the live members, one change per
    /// round: promotes a live learner while voters are missing, replaces a
    /// voter dead for [`VOTER_REPLACE_AFTER_LEASES`] leases by a live
    /// learner (the dead one stays a learner and catches up if it comes
    /// back), and demotes voters beyond the number (a cluster from a
    /// release where every node voted), dead ones first. The leader is
    /// never demoted. A change is made only if the live voters are a
    /// majority of both the old and the new voter set, so the change itself
    /// can always commit. It runs as its own task holding the membership
    /// lock: openraft's second step (joint → new) is driven by the caller's
    /// future, which must not be dropped. A joint configuration left behind
    /// (a leader change, or an operator's call cut off midway) is finished
    /// here when no change is running.
    async fn keep_voters(
        &self,
        alive: &BTreeSet<NodeId>,
        dead_since: &mut BTreeMap<NodeId, Instant>,
    ) {
        let view = self.raft_view();
        let a = self.assignments().borrow().clone();
        let now = Instant::now();
        // Only recorded members are judged alive or dead; a voter that has
        // not recorded itself yet (a join in progress) is left alone.
        let dead = |v: &NodeId| a.members.contains_key(v) && !alive.contains(v);
        dead_since.retain(|id, _| view.voters.contains(id) && dead(id));
        for v in &view.voters {
            if dead(v) {
                dead_since.entry(*v).or_insert(now);
            }
        }
        let Ok(one) = self.inner.admin.clone().try_lock_owned() else {
            return; // a change is running
        };
        let majority_alive = |set: &BTreeSet<NodeId>| {
            2 * set.iter().filter(|v| alive.contains(v)).count() > set.len()
        };
        if view.joint {
            let joint = self
                .inner
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_joint_config()
                .clone();
            let Some(target) = joint.last().cloned() else {
                return;
            };
            // Leaving the joint configuration commits under both sets.
            if !joint.iter().all(&majority_alive) {
                return;
            }
            let why = format!("finishing a joint configuration left behind: voters {target:?}");
            self.change_voters(target, why, one);
            return;
        }
        let healthy = |id: &NodeId| {
            alive.contains(id)
                && !a.removed.contains(id)
                && a.members.get(id).is_some_and(|m| !m.leaving)
        };
        let replace_after = self.inner.settings.lease * VOTER_REPLACE_AFTER_LEASES;
        let long_dead: Vec<NodeId> = view
            .voters
            .iter()
            .copied()
            .filter(|v| {
                *v != self.id() && dead_since.get(v).is_some_and(|t| now - *t >= replace_after)
            })
            .collect();
        let candidate = view.learners.iter().copied().find(|l| healthy(l));
        let want = self.inner.settings.voters;
        let mut voters = view.voters.clone();
        let why = if voters.len() > want {
            // Any voter not alive goes first, then the highest healthy id.
            let out = voters
                .iter()
                .copied()
                .find(|v| *v != self.id() && !alive.contains(v))
                .or_else(|| {
                    voters
                        .iter()
                        .rev()
                        .copied()
                        .find(|v| *v != self.id() && healthy(v))
                });
            let Some(out) = out else { return };
            voters.remove(&out);
            format!("node {out} becomes a learner: more voters than cluster.voters = {want}")
        } else if let Some(learner) = candidate {
            if voters.len() < want {
                voters.insert(learner);
                format!(
                    "learner {learner} becomes a voter: fewer voters than cluster.voters = {want}"
                )
            } else if let Some(dead) = long_dead.first().copied() {
                voters.remove(&dead);
                voters.insert(learner);
                format!(
                    "voter {dead} dead for {} s: learner {learner} takes its vote, {dead} stays a learner",
                    replace_after.as_secs_f32()
                )
            } else {
                return;
            }
        } else {
            return;
        };
        if !majority_alive(&view.voters) || !majority_alive(&voters) {
            tracing::debug!(voters = ?voters, "not changing the voters: the live ones would not be a majority of both sets");
            return;
        }
        self.change_voters(voters, why, one);
    }

    /// Runs a voter change to its end in its own task, holding `one` (the
    /// membership lock) until raft left the joint configuration.
    fn change_voters(
        &self,
        voters: BTreeSet<NodeId>,
        why: String,
        one: tokio::sync::OwnedMutexGuard<()>,
    ) {
        tracing::warn!(voters = ?voters, "{why}");
        let me = self.clone();
        tokio::spawn(async move {
            let _one = one;
            // retain = true: a node leaving the voters stays a learner.
            let r = me
                .inner
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(voters), true)
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "changing the voters failed; the next round looks again");
            }
        });
    }

    /// Membership changes run one at a time (openraft interleaves concurrent ones).
    fn one_membership_change(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, LeaderError> {
        self.inner
            .admin
            .try_lock()
            .map_err(|_| LeaderError::Refused("another membership change is in progress".into()))
    }

    fn member_ids(&self) -> Vec<NodeId> {
        self.assignments()
            .borrow()
            .members
            .keys()
            .copied()
            .collect()
    }

    /// A plan from the admin path (rebalance, drain preview): liveness is
    /// decided by the same sweep as the duty loop's, so a node it leaves
    /// out is declared dead before any command moving its shards exists.
    fn plan_now(&self, balance: bool) -> (super::scheduler::Plan, BTreeSet<NodeId>) {
        let alive =
            self.inner
                .liveness
                .sweep(self.member_ids(), self.id(), self.inner.settings.lease);
        (self.plan_for(&alive, balance), alive)
    }

    fn plan_for(&self, alive: &BTreeSet<NodeId>, balance: bool) -> super::scheduler::Plan {
        let a = self.assignments().borrow().clone();
        plan(
            &a,
            alive,
            PlanOptions {
                balance,
                now_ms: unix_ms(),
                revoke_timeout_ms: self.inner.settings.revoke_timeout.as_millis() as u64,
                revoking_ms: self.inner.liveness.revoking_ms(&a.shards),
                rates: self.inner.rates.lock().get(),
            },
        )
    }

    /// Deletes what the tag tier must not keep (`tag_expiry`), in a task of
    /// its own (planning never waits on it), one run at a time.
    fn expire_tags(&self, running: &std::sync::Arc<std::sync::atomic::AtomicBool>) {
        use std::sync::atomic::Ordering;
        if running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (this, running) = (self.clone(), running.clone());
        tokio::spawn(async move {
            this.expire_tags_now().await;
            running.store(false, Ordering::Release);
        });
    }

    async fn expire_tags_now(&self) {
        use super::tag_expiry::{doomed, TagLimits, DELETE_CHUNK};
        use std::sync::atomic::Ordering;
        let p = &self.inner.tags;
        let limits = TagLimits {
            max_age_ms: p.max_age_ms.load(Ordering::Relaxed),
            negative_max_age_ms: p.negative_max_age_ms.load(Ordering::Relaxed),
            max_tags: self.inner.settings.max_tags,
        };
        let started = Instant::now();
        // A clone of the tier is O(1) (a persistent map): scanned outside the lock.
        let tags = self.inner.shared.data.read().tags.clone();
        let entries = tags.len();
        let doomed = tokio::task::spawn_blocking(move || doomed(&tags, unix_ms(), limits))
            .await
            .unwrap_or_default();
        if doomed.is_empty() {
            if entries as u64 > limits.max_tags {
                tracing::warn!(entries, max_tags = limits.max_tags, "the tag tier is over cluster.max_tags with tags put through the API alone; nothing to evict");
            }
            return;
        }
        tracing::info!(
            expiring = doomed.len(),
            entries,
            scan_ms = started.elapsed().as_millis() as u64,
            "expiring tags"
        );
        for chunk in doomed.chunks(DELETE_CHUNK) {
            if let Err(e) = self
                .write(Command::DeleteTags {
                    arns: chunk.to_vec(),
                })
                .await
            {
                tracing::warn!(error = %e, "expiring tags failed; the next round tries again");
                return;
            }
        }
    }

    /// Folds the throughput each live owner reported for its shards into
    /// the leader's smoothed rates (what load-aware balance weighs).
    fn observe_rates(&self, alive: &BTreeSet<NodeId>, last: &mut Option<Instant>) {
        let elapsed = last.map_or(Duration::ZERO, |t| t.elapsed());
        *last = Some(Instant::now());
        let a = self.assignments().borrow().clone();
        let table = self
            .inner
            .liveness
            .table(alive.iter().copied(), self.inner.settings.lease);
        let mut reports: BTreeMap<ShardKey, f64> = BTreeMap::new();
        for (id, node) in &table {
            for s in &node.live.shards {
                // Only the owner's word counts (a node handing the shard
                // over may still report it for a beat).
                if a.shards.get(&s.shard).and_then(|x| x.owner) == Some(*id) {
                    reports.insert(s.shard.clone(), s.events_per_second.max(0.0));
                }
            }
        }
        self.inner.rates.lock().observe(&reports, elapsed);
    }

    /// The leader's loop: liveness, shard discovery, planning.
    pub(crate) async fn leader_duties(self) {
        let tick = (self.inner.settings.heartbeat / 2).max(Duration::from_millis(50));
        // Leadership is keyed on the term: losing and regaining it between
        // two ticks is a new term, and the liveness table starts over.
        let mut led_term: Option<u64> = None;
        let mut last_listing: Option<Instant> = None;
        let mut warned_dead: BTreeMap<NodeId, bool> = BTreeMap::new();
        let mut voter_dead_since: BTreeMap<NodeId, Instant> = BTreeMap::new();
        let mut last_rates: Option<Instant> = None;
        let mut last_expiry: Option<Instant> = None;
        let expiring = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = self.inner.stop.cancelled() => return,
            }
            if let Err(e) = &self.inner.raft.metrics().borrow().running_state {
                // Raft stopped (a storage failure): a node that cannot keep
                // its log must not run; exit so the supervisor restarts it
                // and the others take its shards.
                tracing::error!(error = %e, "raft stopped; exiting");
                std::process::exit(70);
            }
            let view = self.raft_view();
            let leader = view.leader == Some(self.id());
            let term = leader.then_some(view.term);
            if term != led_term {
                self.inner.liveness.leading(term);
                tracing::info!(
                    node = self.id(),
                    leader,
                    term = view.term,
                    "leadership changed"
                );
                led_term = term;
                last_listing = None;
                voter_dead_since.clear();
            }
            if !leader {
                *self.inner.capacity.lock() = None;
                continue;
            }
            // Shard discovery.
            let rescan = self.inner.settings.shard_rescan;
            if last_listing.is_none_or(|t| t.elapsed() >= rescan) {
                let sources = self.inner.shard_sources.lock().clone();
                if !sources.is_empty() {
                    last_listing = Some(Instant::now());
                }
                for source in sources {
                    match source.list().await {
                        Ok(listing) => self.record_listing(listing).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "listing a source's shards failed; retrying in a second");
                            last_listing = Some(Instant::now() - rescan + Duration::from_secs(1));
                        }
                    }
                }
            }

            // Who died. A node declared dead gets no lease from its beats
            // until a later round, which sees it alive again, has written
            // its plan: by then the moves of its shards are committed, so
            // the commit index it is answered with covers them (it renews
            // only once it applied them, and stops those shards).
            let alive =
                self.inner
                    .liveness
                    .sweep(self.member_ids(), self.id(), self.inner.settings.lease);
            for id in self.assignments().borrow().members.keys() {
                let dead = !alive.contains(id);
                if warned_dead.insert(*id, dead) != Some(dead) && dead {
                    tracing::warn!(
                        node = id,
                        "node missed its lease: its shards go to their standbys"
                    );
                } else if !dead && warned_dead.get(id) == Some(&true) {
                    tracing::info!(node = id, "node is alive again");
                }
            }

            self.observe_rates(&alive, &mut last_rates);
            let p = self.plan_for(&alive, self.inner.settings.auto_rebalance);
            for m in &p.moves {
                tracing::info!(shard = %m.shard, from = ?m.from, to = m.to, reason = %m.reason, graceful = m.graceful, "moving shard");
            }
            // A refused plan is applied (refused as a whole, determinately)
            // and moves no shard of a node it counted alive, so those
            // nodes may renew; a failed write may still commit later.
            let written = match self.write_plan(p.commands).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "writing the plan failed");
                    false
                }
            };
            // This round planned with these nodes alive and its plan is
            // committed: their beats renew leases again.
            if written {
                self.inner.liveness.revive(&alive);
            }
            self.keep_voters(&alive, &mut voter_dead_since).await;
            if last_expiry.is_none_or(|t| t.elapsed() >= super::tag_expiry::EXPIRE_EVERY) {
                last_expiry = Some(Instant::now());
                self.expire_tags(&expiring);
            }
            let now = capacity(&self.assignments().borrow(), &alive);
            let was = self.inner.capacity.lock().replace(now.clone());
            if now.exhausted() && was.as_ref().is_none_or(|w| !w.exhausted()) {
                tracing::warn!(
                    unassigned = now.unassigned, slots = now.slots, active = now.active,
                    "shards wait for an owner and no node has a free slot: raise cluster.slots (0 = auto) or add nodes"
                );
            } else if now.headroom < 0 && was.as_ref().is_none_or(|w| w.headroom >= 0) {
                tracing::warn!(
                    headroom = now.headroom,
                    slots = now.slots,
                    active = now.active,
                    "if the node with the most slots died, some of its shards would find no owner"
                );
            }
        }
    }
}
