//! The assignment planner: which node consumes which shard, and who stands
//! by. Pure: it reads the replicated [`Assignments`] and the leader's view of
//! who is alive, and returns the commands to write. The leader runs it every
//! tick; `trailctl rebalance --dry-run` shows its answer without writing it.
//! The algorithm and its reasons are in `README.md` beside this file.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::types::{Assignments, Command, NodeId, ShardKey, ShardPhase, ShardState};

/// One planned change, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub shard: ShardKey,
    pub from: Option<NodeId>,
    pub to: NodeId,
    /// "unassigned", "dead", "drain", "balance", "revoke-timeout".
    pub reason: String,
    /// Graceful (revoke → drain → release) or at once (epoch + 1).
    pub graceful: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Move shards to even out load (auto, on join, or `trailctl rebalance`).
    pub balance: bool,
    /// Wall time, only to stamp commands (`at_ms`) for status; no decision
    /// reads it, so a clock step changes no plan.
    pub now_ms: u64,
    /// A revoke not released within this is forced (the epoch fences the old owner).
    pub revoke_timeout_ms: u64,
    /// How long (ms) this leader has seen each revoking shard revoking under
    /// its current epoch, on its own monotonic clock (from its election at
    /// the earliest). Revoke timeouts are measured on this, never on the
    /// wall clocks of the leaders that wrote the revoke.
    pub revoking_ms: BTreeMap<ShardKey, u64>,
    /// Each shard's throughput (events per second, smoothed over minutes
    /// by the leader: [`ShardRates`]). Balance evens out throughput (each
    /// shard weighs [`Weights::of`]); without rates every shard weighs the
    /// same and balance evens out shard counts.
    pub rates: BTreeMap<ShardKey, f64>,
}

/// What a shard weighs in balance: `0.1 + 0.9 × rate / mean rate`. An
/// average shard weighs 1, one five times the mean 4.6, an idle one 0.1
/// (it still holds a consumer and a slot); a shard without a rate yet
/// weighs 1. Rates count only where they say something: with fewer than
/// half the shards rated, or a mean under [`MIN_MEAN_RATE`] (a trickle,
/// where a few log groups more or less would make the rates noise), every
/// shard weighs 1 and balance is by count. Moves only, no swaps: a node
/// may end with more, lighter shards than another; slots bound how many.
struct Weights {
    rates: BTreeMap<ShardKey, f64>,
    mean: f64,
}

/// Events per second per shard, on average, below which balance ignores
/// rates.
pub const MIN_MEAN_RATE: f64 = 20.0;

impl Weights {
    fn new(a: &Assignments, rates: &BTreeMap<ShardKey, f64>) -> Weights {
        let active = a
            .shards
            .iter()
            .filter(|(_, s)| s.phase != ShardPhase::Done)
            .count();
        let rated: Vec<f64> = a
            .shards
            .iter()
            .filter(|(_, s)| s.phase != ShardPhase::Done)
            .filter_map(|(k, _)| rates.get(k).map(|r| r.max(0.0)))
            .collect();
        let mean = if rated.is_empty() {
            0.0
        } else {
            rated.iter().sum::<f64>() / rated.len() as f64
        };
        let telling = rated.len() * 2 >= active && mean >= MIN_MEAN_RATE;
        Weights {
            rates: if telling {
                rates.clone()
            } else {
                BTreeMap::new()
            },
            mean: if telling { mean } else { 0.0 },
        }
    }

    fn of(&self, k: &ShardKey) -> f64 {
        if self.mean <= f64::EPSILON {
            return 1.0;
        }
        let Some(r) = self.rates.get(k).map(|r| r.max(0.0)) else {
            return 1.0;
        };
        // Capped, so one runaway reading cannot pin a node's whole load.
        0.1 + 0.9 * (r / self.mean).min(16.0)
    }
}

/// The leader's smoothed view of each shard's throughput, from the
/// `events_per_second` every owner reports with its beats: an exponential
/// average over [`ShardRates::HORIZON`], so a burst of a few seconds moves
/// nothing and a shard that turned hot for good is seen within minutes.
/// A shard's rate is given to the planner only once it was observed for a
/// whole horizon (a new leader, a shard catching up a backlog at start).
#[derive(Debug, Default)]
pub struct ShardRates {
    /// Shard → (average, how long observed).
    rates: BTreeMap<ShardKey, (f64, std::time::Duration)>,
}

impl ShardRates {
    /// The time constant of the average.
    pub const HORIZON: std::time::Duration = std::time::Duration::from_secs(120);

    /// Folds in one round of reports, `elapsed` after the previous one;
    /// shards no longer reported are forgotten.
    pub fn observe(&mut self, reports: &BTreeMap<ShardKey, f64>, elapsed: std::time::Duration) {
        let a = 1.0 - (-elapsed.as_secs_f64() / Self::HORIZON.as_secs_f64()).exp();
        self.rates.retain(|k, _| reports.contains_key(k));
        for (k, x) in reports {
            let (r, age) = self
                .rates
                .entry(k.clone())
                .or_insert((*x, std::time::Duration::ZERO));
            *r += (x - *r) * a;
            *age += elapsed;
        }
    }

    /// The rates observed for a whole horizon: what the planner weighs.
    pub fn get(&self) -> BTreeMap<ShardKey, f64> {
        self.rates
            .iter()
            .filter(|(_, (_, age))| *age >= Self::HORIZON)
            .map(|(k, (r, _))| (k.clone(), *r))
            .collect()
    }

    /// Every average, however young.
    pub fn all(&self) -> BTreeMap<ShardKey, f64> {
        self.rates
            .iter()
            .map(|(k, (r, _))| (k.clone(), *r))
            .collect()
    }
}

/// The planner's answer: moves (for people) and commands (for raft).
#[derive(Debug, Default)]
pub struct Plan {
    pub moves: Vec<Move>,
    pub commands: Vec<Command>,
}

struct Load {
    /// Shards owned or arriving, per eligible node.
    owned: BTreeMap<NodeId, u32>,
    standby: BTreeMap<NodeId, u32>,
    slots: BTreeMap<NodeId, u32>,
}

impl Load {
    fn least_loaded(&self, except: &[NodeId]) -> Option<NodeId> {
        self.owned
            .iter()
            .filter(|(n, c)| !except.contains(n) && **c < self.slots[n])
            .min_by_key(|(n, c)| (**c, self.standby.get(n).copied().unwrap_or(0), **n))
            .map(|(n, _)| *n)
    }

    fn has_room(&self, n: NodeId) -> bool {
        self.owned.get(&n).is_some_and(|c| *c < self.slots[&n])
    }

    fn take(&mut self, to: NodeId, from: Option<NodeId>) {
        *self.owned.entry(to).or_default() += 1;
        if let Some(f) = from {
            if let Some(c) = self.owned.get_mut(&f) {
                *c = c.saturating_sub(1);
            }
        }
    }
}

/// Members that may take shards: alive, not draining, not leaving.
fn eligible(a: &Assignments, alive: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
    a.members
        .iter()
        .filter(|(id, m)| alive.contains(id) && !m.draining && !m.leaving)
        .map(|(id, _)| *id)
        .collect()
}

/// Shards still to be consumed (not read to their end).
fn active_shards(a: &Assignments) -> usize {
    a.shards
        .values()
        .filter(|s| s.phase != ShardPhase::Done)
        .count()
}

/// The slots the planner gives each member: its `cluster.slots`, or for
/// auto members (`cluster.slots = 0`, the default) an equal part of what
/// fixed members leave of `ceil(1.5 × active shards)`: room for half as
/// many shards again as there are, so the survivors of a death have room
/// for its shards. Recomputed every plan from who may take shards.
pub fn slots_of(a: &Assignments, eligible: &BTreeSet<NodeId>) -> BTreeMap<NodeId, u32> {
    let want = (active_shards(a) * 3).div_ceil(2) as u64;
    let fixed: u64 = eligible
        .iter()
        .filter_map(|id| a.members.get(id))
        .filter(|m| !m.auto_slots)
        .map(|m| u64::from(m.slots.max(1)))
        .sum();
    let autos = eligible
        .iter()
        .filter(|id| a.members.get(id).is_some_and(|m| m.auto_slots))
        .count() as u64;
    let each = want
        .saturating_sub(fixed)
        .div_ceil(autos.max(1))
        .clamp(1, u64::from(u32::MAX)) as u32;
    a.members
        .iter()
        .map(|(id, m)| (*id, if m.auto_slots { each } else { m.slots.max(1) }))
        .collect()
}

/// What the cluster can hold, as the leader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Shards not read to their end.
    pub active: u32,
    /// Of those, without an owner.
    pub unassigned: u32,
    /// The slots of the members that may take shards.
    pub slots: u32,
    /// Slots not yet filled, summed over those members.
    pub free: u32,
    /// Slots left over once the worst single death is absorbed (the
    /// survivors' auto slots recomputed): negative, that many shards would
    /// find no owner.
    pub headroom: i64,
}

impl Capacity {
    /// Shards wait for an owner and no member has room: more slots or
    /// nodes are needed (an operator's problem, not a transient one).
    pub fn exhausted(&self) -> bool {
        self.unassigned > 0 && self.free == 0
    }
}

/// The cluster's capacity for the given state. `alive` as for [`plan`].
pub fn capacity(a: &Assignments, alive: &BTreeSet<NodeId>) -> Capacity {
    let eligible = eligible(a, alive);
    let active = active_shards(a);
    let live =
        |n: Option<NodeId>| n.is_some_and(|n| alive.contains(&n) && a.members.contains_key(&n));
    let mut owned: BTreeMap<NodeId, u32> = BTreeMap::new();
    let mut unassigned = 0;
    for s in a.shards.values() {
        // Who consumes it now or next: nobody, or a node that is gone (a
        // dead owner whose shard found no room is still `Running`).
        let holder = match s.phase {
            ShardPhase::Done => continue,
            ShardPhase::Unassigned => None,
            ShardPhase::Running => s.owner,
            ShardPhase::Revoking if live(s.moving_to) => s.moving_to,
            ShardPhase::Revoking => s.owner,
        };
        if live(holder) {
            *owned.entry(holder.expect("live")).or_default() += 1;
        } else {
            unassigned += 1;
        }
    }
    let slots = slots_of(a, &eligible);
    let total: u32 = eligible.iter().map(|id| slots[id]).sum();
    let free = eligible
        .iter()
        .map(|id| slots[id].saturating_sub(owned.get(id).copied().unwrap_or(0)))
        .sum();
    // After a death the survivors' auto slots are recomputed for one node
    // fewer; the worst death is the one that leaves the fewest.
    let left_after = |dead: NodeId| -> i64 {
        let mut survivors = eligible.clone();
        survivors.remove(&dead);
        let slots = slots_of(a, &survivors);
        survivors.iter().map(|id| i64::from(slots[id])).sum()
    };
    let worst = eligible.iter().map(|d| left_after(*d)).min().unwrap_or(0);
    Capacity {
        active: active as u32,
        unassigned,
        slots: total,
        free,
        headroom: worst - active as i64,
    }
}

/// Plans for the given state. `alive`: members the leader heard from within their lease.
pub fn plan(a: &Assignments, alive: &BTreeSet<NodeId>, o: PlanOptions) -> Plan {
    let eligible = eligible(a, alive);
    let mut load = Load {
        owned: eligible.iter().map(|n| (*n, 0)).collect(),
        standby: eligible.iter().map(|n| (*n, 0)).collect(),
        slots: slots_of(a, &eligible),
    };
    for s in a.shards.values() {
        if s.phase == ShardPhase::Done {
            continue;
        }
        // A shard being moved counts for where it is going.
        let holder = if s.phase == ShardPhase::Revoking {
            s.moving_to
        } else {
            s.owner
        };
        if let Some(c) = holder.and_then(|h| load.owned.get_mut(&h)) {
            *c += 1;
        }
        for sb in &s.standbys {
            if let Some(c) = load.standby.get_mut(sb) {
                *c += 1;
            }
        }
    }

    let mut plan = Plan::default();
    let mut moving: BTreeSet<NodeId> = BTreeSet::new();
    let pick = |load: &Load, standbys: &[NodeId], except: &[NodeId]| -> Option<NodeId> {
        standbys
            .iter()
            .copied()
            .find(|n| eligible.contains(n) && !except.contains(n) && load.has_room(*n))
            .or_else(|| load.least_loaded(except))
    };

    for (key, s) in &a.shards {
        let owner_ok = s
            .owner
            .is_some_and(|o| alive.contains(&o) && a.members.contains_key(&o));
        let at_once = |to: NodeId, reason: &str, plan: &mut Plan| {
            plan.moves.push(Move {
                shard: key.clone(),
                from: s.owner,
                to,
                reason: reason.into(),
                graceful: false,
            });
            plan.commands.push(Command::Assign {
                shard: key.clone(),
                owner: to,
                standbys: s.standbys.iter().copied().filter(|n| *n != to).collect(),
                expect_epoch: s.epoch,
                at_ms: o.now_ms,
            });
        };
        match s.phase {
            ShardPhase::Done => {}
            ShardPhase::Unassigned => {
                if let Some(to) = pick(&load, &s.standbys, &[]) {
                    load.take(to, None);
                    at_once(to, "unassigned", &mut plan);
                }
            }
            ShardPhase::Running if !owner_ok => {
                let exclude: Vec<NodeId> = s.owner.into_iter().collect();
                if let Some(to) = pick(&load, &s.standbys, &exclude) {
                    load.take(to, None);
                    at_once(to, "dead", &mut plan);
                }
            }
            ShardPhase::Revoking => {
                let target_ok = s.moving_to.is_some_and(|t| eligible.contains(&t));
                let timed_out = o
                    .revoking_ms
                    .get(key)
                    .is_some_and(|ms| *ms > o.revoke_timeout_ms);
                if !owner_ok || timed_out || !target_ok {
                    let reason = if !owner_ok { "dead" } else { "revoke-timeout" };
                    let to = if target_ok {
                        s.moving_to
                    } else {
                        let exclude: Vec<NodeId> = s.owner.into_iter().collect();
                        pick(&load, &s.standbys, &exclude).inspect(|t| load.take(*t, None))
                    };
                    if let Some(to) = to {
                        at_once(to, reason, &mut plan);
                    }
                }
            }
            ShardPhase::Running => {
                let Some(owner) = s.owner else {
                    continue; // not reachable: a running shard has an owner
                };
                let draining = a.members.get(&owner).is_some_and(|m| m.draining);
                if draining && !moving.contains(&owner) {
                    if let Some(to) = pick(&load, &s.standbys, &[owner]) {
                        load.take(to, None);
                        moving.insert(owner);
                        plan.moves.push(Move {
                            shard: key.clone(),
                            from: Some(owner),
                            to,
                            reason: "drain".into(),
                            graceful: true,
                        });
                        plan.commands.push(Command::Revoke {
                            shard: key.clone(),
                            epoch: s.epoch,
                            to,
                            at_ms: o.now_ms,
                        });
                    }
                }
            }
        }
    }

    // Shards with a command in the plan so far, and running shards by owner:
    // indexes, so that a plan stays O(shards · log shards) at 10,000 shards
    // (scanning the commands per shard was quadratic).
    let mut planned: BTreeSet<&ShardKey> = plan
        .commands
        .iter()
        .filter_map(Command::plan_shard)
        .filter_map(|k| a.shards.get_key_value(k).map(|(k, _)| k))
        .collect();

    // Balance: graceful moves from the most to the least loaded (by
    // weight: [`Weights`]) while a move narrows their gap by more than an
    // average shard — the hysteresis that keeps shards from flapping
    // (every move lowers the sum of squared loads, so moves end). With
    // equal weights that is "while they differ by more than one shard".
    // A node gives at most one shard per plan (revokes of earlier rounds
    // may still be draining) and a node that gives receives none; a node
    // may receive one from each giver, so a join takes up to one shard
    // from every other node per plan and the planner re-reads the state
    // between rounds. Slots bound the receiver by count, whatever it weighs.
    if o.balance {
        let weights = Weights::new(a, &o.rates);
        let mut weight: BTreeMap<NodeId, f64> = load.owned.keys().map(|n| (*n, 0.0)).collect();
        for (k, s) in &a.shards {
            let holder = match s.phase {
                ShardPhase::Done | ShardPhase::Unassigned => None,
                ShardPhase::Revoking => s.moving_to,
                ShardPhase::Running => s.owner,
            };
            // Shards planned above (assigns of a death) count for their new owner.
            let holder = plan
                .moves
                .iter()
                .find(|m| &m.shard == k)
                .map(|m| m.to)
                .or(holder);
            if let Some(w) = holder.and_then(|h| weight.get_mut(&h)) {
                *w += weights.of(k);
            }
        }
        let mut receiving: BTreeSet<NodeId> = BTreeSet::new();
        let mut running: BTreeMap<NodeId, Vec<(&ShardKey, &ShardState)>> = BTreeMap::new();
        for (k, s) in &a.shards {
            if let (ShardPhase::Running, Some(owner)) = (s.phase, s.owner) {
                running.entry(owner).or_default().push((k, s));
            }
        }
        let mut guard = a.shards.len();
        loop {
            guard = guard.saturating_sub(1);
            let Some((&max_n, &max_w)) = weight
                .iter()
                .filter(|(n, _)| !moving.contains(n) && !receiving.contains(n))
                .max_by(|(an, aw), (bn, bw)| aw.total_cmp(bw).then(bn.cmp(an)))
            else {
                break;
            };
            let Some((&min_n, &min_w)) = weight
                .iter()
                .filter(|(n, _)| **n != max_n && load.has_room(**n))
                .min_by(|(an, aw), (bn, bw)| {
                    aw.total_cmp(bw)
                        .then(load.standby.get(an).cmp(&load.standby.get(bn)))
                        .then(an.cmp(bn))
                })
            else {
                break;
            };
            let gap = max_w - min_w;
            if gap <= 1.0 + 1e-9 || guard == 0 || moving.contains(&min_n) {
                break;
            }
            // The shard to move: running on max_n, narrowing the gap by
            // more than an average shard; preferably one whose standby is
            // min_n, then the one that evens the pair best.
            let candidate = running
                .get(&max_n)
                .into_iter()
                .flatten()
                .filter(|(k, _)| !planned.contains(k))
                .map(|(k, s)| (*k, *s, weights.of(k)))
                .filter(|(_, _, w)| (gap - 2.0 * w).abs() < gap - 1.0 - 1e-9)
                .max_by(|(_, a_s, a_w), (_, b_s, b_w)| {
                    (a_s.standbys.first() == Some(&min_n))
                        .cmp(&(b_s.standbys.first() == Some(&min_n)))
                        .then((gap - 2.0 * b_w).abs().total_cmp(&(gap - 2.0 * a_w).abs()))
                });
            let Some((key, s, w)) = candidate else {
                break;
            };
            load.take(min_n, Some(max_n));
            *weight.get_mut(&max_n).expect("eligible") -= w;
            *weight.get_mut(&min_n).expect("eligible") += w;
            moving.insert(max_n);
            receiving.insert(min_n);
            planned.insert(key);
            plan.moves.push(Move {
                shard: key.clone(),
                from: Some(max_n),
                to: min_n,
                reason: if weights.mean > f64::EPSILON {
                    "balance by load".into()
                } else {
                    "balance".into()
                },
                graceful: true,
            });
            plan.commands.push(Command::Revoke {
                shard: key.clone(),
                epoch: s.epoch,
                to: min_n,
                at_ms: o.now_ms,
            });
        }
    }

    // Standbys: every running shard keeps one warm standby on another live node.
    let mut assigns: BTreeMap<&ShardKey, usize> = BTreeMap::new();
    let mut revoked: BTreeSet<&ShardKey> = BTreeSet::new();
    for (i, c) in plan.commands.iter().enumerate() {
        let Some((k, _)) = c.plan_shard().and_then(|k| a.shards.get_key_value(k)) else {
            continue;
        };
        match c {
            Command::Assign { .. } => {
                assigns.entry(k).or_insert(i);
            }
            Command::Revoke { .. } => {
                revoked.insert(k);
            }
            _ => {}
        }
    }
    let mut standby_commands = Vec::new();
    for (key, s) in &a.shards {
        if s.phase == ShardPhase::Done || s.phase == ShardPhase::Revoking {
            continue;
        }
        let assign = assigns.get(key).copied();
        let planned_owner = assign.and_then(|i| match &plan.commands[i] {
            Command::Assign { owner, .. } => Some(*owner),
            _ => None,
        });
        let Some(owner) = planned_owner.or(s.owner) else {
            continue;
        };
        if revoked.contains(key) {
            continue;
        }
        let keep: Vec<NodeId> = s
            .standbys
            .iter()
            .copied()
            .filter(|n| *n != owner && eligible.contains(n))
            .take(1)
            .collect();
        let want = if keep.is_empty() {
            load.standby
                .iter()
                .filter(|(n, _)| **n != owner)
                .min_by_key(|(n, c)| (**c, load.owned.get(n).copied().unwrap_or(0), **n))
                .map(|(n, _)| vec![*n])
                .unwrap_or_default()
        } else {
            keep
        };
        for n in &want {
            *load.standby.entry(*n).or_default() += 1;
        }
        match assign.map(|i| &mut plan.commands[i]) {
            Some(Command::Assign { standbys, .. }) => *standbys = want,
            _ if want != s.standbys => standby_commands.push(Command::Standbys {
                shard: key.clone(),
                standbys: want,
            }),
            _ => {}
        }
    }
    plan.commands.extend(standby_commands);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::types::{MemberState, ShardState};

    fn key(n: u32) -> ShardKey {
        ShardKey {
            project: "p".into(),
            logstore: "l".into(),
            shard: n,
        }
    }

    fn cluster(nodes: &[NodeId], shards: u32) -> Assignments {
        let mut a = Assignments::default();
        for n in nodes {
            a.members.insert(
                *n,
                MemberState {
                    name: format!("n{n}"),
                    addr: String::new(),
                    slots: 8,
                    auto_slots: false,
                    draining: false,
                    leaving: false,
                    batched_plans: true,
                },
            );
        }
        for s in 0..shards {
            a.shards.insert(key(s), ShardState::new());
        }
        a
    }

    fn opts(balance: bool) -> PlanOptions {
        PlanOptions {
            balance,
            now_ms: 1_000,
            revoke_timeout_ms: 10_000,
            revoking_ms: BTreeMap::new(),
            rates: BTreeMap::new(),
        }
    }

    /// Applies a plan the way the state machine would.
    fn apply(a: &mut Assignments, p: &Plan) {
        let mut d = crate::cluster::state_machine::Data {
            assignments: a.clone(),
            ..Default::default()
        };
        // As the leader writes it: one plan, all or nothing. A plan the
        // state machine refuses as a whole would never make progress.
        let (r, _) = crate::cluster::state_machine::apply(
            &mut d,
            &Command::Plan {
                steps: p.commands.clone(),
            },
            None,
        );
        assert!(r.ok, "the plan is refused: {}", r.message);
        *a = d.assignments;
    }

    /// Finishes graceful moves (the owners release).
    fn release_all(a: &mut Assignments) {
        let mut d = crate::cluster::state_machine::Data {
            assignments: a.clone(),
            ..Default::default()
        };
        let revoking: Vec<(ShardKey, u64)> = a
            .shards
            .iter()
            .filter(|(_, s)| s.phase == ShardPhase::Revoking)
            .map(|(k, s)| (k.clone(), s.epoch))
            .collect();
        for (k, e) in revoking {
            crate::cluster::state_machine::apply(
                &mut d,
                &Command::Release {
                    shard: k,
                    epoch: e,
                    checkpoint: None,
                    at_ms: 2,
                },
                None,
            );
        }
        *a = d.assignments;
    }

    fn owners(a: &Assignments) -> BTreeMap<NodeId, usize> {
        let mut m = BTreeMap::new();
        for s in a.shards.values() {
            if let Some(o) = s.owner {
                *m.entry(o).or_default() += 1;
            }
        }
        m
    }

    fn settle(a: &mut Assignments, alive: &BTreeSet<NodeId>) {
        for _ in 0..20 {
            let p = plan(a, alive, opts(true));
            if p.commands.is_empty() {
                return;
            }
            apply(a, &p);
            release_all(a);
        }
        panic!("the plan does not settle");
    }

    fn with_slots(a: &mut Assignments, slots: u32) {
        for m in a.members.values_mut() {
            m.slots = slots;
            m.auto_slots = slots == 0;
        }
    }

    #[test]
    fn auto_slots_own_every_shard_of_a_large_cluster_and_absorb_a_death() {
        let nodes: Vec<NodeId> = (1..=10).collect();
        let mut a = cluster(&nodes, 512);
        with_slots(&mut a, 0);
        let mut alive: BTreeSet<NodeId> = nodes.iter().copied().collect();
        let p = plan(&a, &alive, opts(false));
        apply(&mut a, &p);
        let c = capacity(&a, &alive);
        assert_eq!((c.active, c.unassigned), (512, 0), "{c:?}");
        // ceil(1.5 × 512 / 10) = 77 each; a death leaves 9 × ceil(768 / 9).
        assert_eq!(c.slots, 770);
        assert_eq!(c.headroom, 9 * 86 - 512, "{c:?}");
        assert!(!c.exhausted());
        let o = owners(&a);
        assert!(o.values().all(|n| (51..=52).contains(n)), "{o:?}");
        // The node with the most shards dies: every one of them is owned again at once.
        let (&dead, _) = o.iter().max_by_key(|(_, n)| **n).unwrap();
        alive.remove(&dead);
        let p = plan(&a, &alive, opts(false));
        apply(&mut a, &p);
        let c = capacity(&a, &alive);
        assert_eq!(c.unassigned, 0, "{c:?}");
        assert!(a
            .shards
            .values()
            .all(|s| s.owner.is_some_and(|o| o != dead)));
    }

    #[test]
    fn too_few_fixed_slots_are_seen_as_exhausted_capacity() {
        let nodes: Vec<NodeId> = (1..=10).collect();
        let mut a = cluster(&nodes, 512);
        with_slots(&mut a, 8);
        let alive: BTreeSet<NodeId> = nodes.iter().copied().collect();
        let p = plan(&a, &alive, opts(false));
        apply(&mut a, &p);
        let c = capacity(&a, &alive);
        assert_eq!(c.unassigned, 512 - 80, "{c:?}");
        assert_eq!((c.slots, c.free), (80, 0));
        assert!(c.exhausted());
        assert_eq!(c.headroom, 72 - 512);
        // One node with room: not exhausted, and the next plan fills it.
        a.members.get_mut(&3).unwrap().slots = 20;
        let c = capacity(&a, &alive);
        assert!(!c.exhausted() && c.free == 12, "{c:?}");
        let p = plan(&a, &alive, opts(false));
        assert_eq!(
            p.moves.iter().filter(|m| m.reason == "unassigned").count(),
            12
        );
    }

    #[test]
    fn a_dead_owners_shards_with_nowhere_to_go_count_as_unowned() {
        let mut a = cluster(&[1, 2, 3], 12);
        with_slots(&mut a, 4);
        let mut alive = BTreeSet::from([1, 2, 3]);
        let p = plan(&a, &alive, opts(false));
        apply(&mut a, &p);
        assert_eq!(capacity(&a, &alive).unassigned, 0);
        alive.remove(&1);
        let p = plan(&a, &alive, opts(false));
        apply(&mut a, &p);
        // Node 1's shards stay `Running` under it (no room anywhere): unowned all the same.
        let c = capacity(&a, &alive);
        assert_eq!((c.unassigned, c.free), (4, 0), "{c:?}");
        assert!(c.exhausted());
    }

    #[test]
    fn auto_slots_make_room_beside_fixed_ones() {
        let mut a = cluster(&[1, 2, 3], 12);
        with_slots(&mut a, 1);
        let m = a.members.get_mut(&3).unwrap();
        (m.slots, m.auto_slots) = (8, true);
        let alive = BTreeSet::from([1, 2, 3]);
        // ceil(1.5 × 12) = 18, of which the fixed nodes take 2: node 3 gets 16.
        assert_eq!(slots_of(&a, &alive)[&3], 16);
        let p = plan(&a, &alive, opts(false));
        apply(&mut a, &p);
        let c = capacity(&a, &alive);
        assert_eq!((c.slots, c.unassigned), (18, 0), "{c:?}");
    }

    #[test]
    fn shards_spread_evenly_with_a_standby_on_another_node() {
        let mut a = cluster(&[1, 2, 3], 8);
        let alive = BTreeSet::from([1, 2, 3]);
        settle(&mut a, &alive);
        let o = owners(&a);
        assert!(o.values().all(|c| (2..=3).contains(c)), "{o:?}");
        for s in a.shards.values() {
            assert_eq!(s.standbys.len(), 1);
            assert_ne!(Some(s.standbys[0]), s.owner, "standby on another node");
            assert_eq!(s.epoch, 1, "assigned once, never moved");
        }
        assert!(plan(&a, &alive, opts(true)).commands.is_empty(), "stable");
    }

    #[test]
    fn a_dead_owners_shards_go_to_their_standbys_at_once() {
        let mut a = cluster(&[1, 2, 3], 6);
        settle(&mut a, &BTreeSet::from([1, 2, 3]));
        let before = a.clone();
        let alive = BTreeSet::from([2, 3]);
        let p = plan(&a, &alive, opts(false));
        let dead: Vec<&Move> = p.moves.iter().filter(|m| m.reason == "dead").collect();
        assert_eq!(dead.len(), owners(&before)[&1]);
        for m in &dead {
            let s = &before.shards[&m.shard];
            assert_eq!(m.to, s.standbys[0], "the warm standby takes over");
            assert!(!m.graceful);
        }
        apply(&mut a, &p);
        for (k, s) in &a.shards {
            let b = &before.shards[k];
            if b.owner == Some(1) {
                assert_eq!(s.epoch, b.epoch + 1, "fenced by a new epoch");
            } else {
                assert_eq!((s.owner, s.epoch), (b.owner, b.epoch), "others never pause");
            }
            assert_ne!(s.standbys.first(), s.owner.as_ref());
        }
    }

    #[test]
    fn a_new_node_takes_shards_by_graceful_moves_only() {
        let mut a = cluster(&[1, 2, 3], 8);
        settle(&mut a, &BTreeSet::from([1, 2, 3]));
        a.members.insert(
            4,
            MemberState {
                name: "n4".into(),
                addr: String::new(),
                slots: 8,
                auto_slots: false,
                draining: false,
                leaving: false,
                batched_plans: true,
            },
        );
        let alive = BTreeSet::from([1, 2, 3, 4]);
        let before = a.clone();
        let p = plan(&a, &alive, opts(true));
        assert!(!p.moves.is_empty());
        assert!(
            p.moves.iter().all(|m| m.graceful && m.to == 4),
            "{:?}",
            p.moves
        );
        settle(&mut a, &alive);
        let o = owners(&a);
        assert_eq!(o[&4], 2, "{o:?}");
        let moved = a
            .shards
            .iter()
            .filter(|(k, s)| s.owner != before.shards[*k].owner)
            .count();
        assert_eq!(moved, 2, "sticky: only what balance needs moves");
    }

    /// Plans with `rates` until nothing moves (at most `rounds` rounds).
    fn settle_by_load(
        a: &mut Assignments,
        alive: &BTreeSet<NodeId>,
        rates: &BTreeMap<ShardKey, f64>,
        rounds: usize,
    ) -> usize {
        for round in 0..rounds {
            let p = plan(
                a,
                alive,
                PlanOptions {
                    rates: rates.clone(),
                    ..opts(true)
                },
            );
            if p.commands.is_empty() {
                return round;
            }
            apply(a, &p);
            release_all(a);
        }
        panic!("balance by load does not settle in {rounds} rounds");
    }

    fn node_rate(a: &Assignments, rates: &BTreeMap<ShardKey, f64>, n: NodeId) -> f64 {
        a.shards
            .iter()
            .filter(|(_, s)| s.owner == Some(n))
            .map(|(k, _)| rates.get(k).copied().unwrap_or(0.0))
            .sum()
    }

    #[test]
    fn balance_weighs_throughput_and_moves_a_hot_shard_off_a_node_with_even_counts() {
        let mut a = cluster(&[1, 2], 8);
        let alive = BTreeSet::from([1, 2]);
        settle(&mut a, &alive);
        assert_eq!(owners(&a), BTreeMap::from([(1, 4), (2, 4)]));
        // Node 1's shards carry the trail; node 2's are nearly idle.
        let rates: BTreeMap<ShardKey, f64> = a
            .shards
            .iter()
            .map(|(k, s)| (k.clone(), if s.owner == Some(1) { 1000.0 } else { 10.0 }))
            .collect();
        let p = plan(
            &a,
            &alive,
            PlanOptions {
                rates: rates.clone(),
                ..opts(true)
            },
        );
        assert_eq!(p.moves.len(), 1, "{:?}", p.moves);
        assert_eq!((p.moves[0].from, p.moves[0].to), (Some(1), 2));
        assert_eq!(p.moves[0].reason, "balance by load");
        assert!(p.moves[0].graceful);
        settle_by_load(&mut a, &alive, &rates, 10);
        let (r1, r2) = (node_rate(&a, &rates, 1), node_rate(&a, &rates, 2));
        assert!(
            (r1 - r2).abs() <= 1000.0 + 1e-6,
            "within one hot shard of even: {r1} vs {r2}"
        );
        // Counts are allowed to part: node 2 now runs more, lighter shards.
        assert!(owners(&a)[&2] > owners(&a)[&1], "{:?}", owners(&a));
        // Without rates, the same cluster is balanced by count again only
        // if counts differ by more than one.
        let o = owners(&a);
        let p = plan(&a, &alive, opts(true));
        assert_eq!(
            p.moves.is_empty(),
            o[&2] - o[&1] <= 1,
            "{:?} {o:?}",
            p.moves
        );
    }

    #[test]
    fn rates_within_an_average_shard_of_even_move_nothing() {
        let mut a = cluster(&[1, 2, 3], 9);
        let alive = BTreeSet::from([1, 2, 3]);
        settle(&mut a, &alive);
        // Noisy but even: every shard between 90 and 110 events/s.
        let rates: BTreeMap<ShardKey, f64> = a
            .shards
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), 90.0 + (i * 7 % 21) as f64))
            .collect();
        let p = plan(
            &a,
            &alive,
            PlanOptions {
                rates,
                ..opts(true)
            },
        );
        assert!(p.moves.is_empty(), "hysteresis: {:?}", p.moves);
    }

    #[test]
    fn balance_by_load_settles_whatever_the_rates_and_a_settled_plan_is_empty() {
        // Skewed rates (a few shards carry most of the trail) over uneven
        // starting points: every round lowers the sum of squared loads, so
        // planning ends, and a settled cluster plans nothing more.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..40 {
            let nodes: Vec<NodeId> = (1..=(2 + case % 5) as u64).collect();
            let shards = 4 + (next() % 40) as u32;
            let mut a = cluster(&nodes, shards);
            let alive: BTreeSet<NodeId> = nodes.iter().copied().collect();
            settle(&mut a, &alive);
            let rates: BTreeMap<ShardKey, f64> = a
                .shards
                .keys()
                .map(|k| {
                    let r = next() % 100;
                    (k.clone(), if r < 10 { 5000.0 } else { r as f64 })
                })
                .collect();
            let rounds = settle_by_load(&mut a, &alive, &rates, 200);
            assert!(rounds < 200, "case {case}");
            let again = plan(
                &a,
                &alive,
                PlanOptions {
                    rates: rates.clone(),
                    ..opts(true)
                },
            );
            assert!(again.commands.is_empty(), "case {case}: {:?}", again.moves);
            for n in &nodes {
                assert!(owners(&a).get(n).copied().unwrap_or(0) <= 8, "slots hold");
            }
        }
    }

    #[test]
    fn a_trickle_or_too_few_rated_shards_leave_balance_to_counts() {
        let mut a = cluster(&[1, 2], 8);
        let alive = BTreeSet::from([1, 2]);
        settle(&mut a, &alive);
        let skewed = |hot: f64, cold: f64| -> BTreeMap<ShardKey, f64> {
            a.shards
                .iter()
                .map(|(k, s)| (k.clone(), if s.owner == Some(1) { hot } else { cold }))
                .collect()
        };
        let moves = |rates: BTreeMap<ShardKey, f64>| {
            plan(
                &a,
                &alive,
                PlanOptions {
                    rates,
                    ..opts(true)
                },
            )
            .moves
            .len()
        };
        assert_eq!(moves(skewed(1000.0, 10.0)), 1, "skewed and telling");
        assert_eq!(moves(skewed(30.0, 1.0)), 0, "a mean under MIN_MEAN_RATE");
        let mut few = skewed(1000.0, 10.0);
        let keep: Vec<ShardKey> = few.keys().take(3).cloned().collect();
        few.retain(|k, _| keep.contains(k));
        assert_eq!(moves(few), 0, "fewer than half the shards rated");
    }

    #[test]
    fn shard_rates_average_over_minutes() {
        let mut r = ShardRates::default();
        let k = key(0);
        let sec = std::time::Duration::from_secs(1);
        r.observe(&BTreeMap::from([(k.clone(), 100.0)]), sec);
        assert_eq!(r.all()[&k], 100.0, "the first report is taken as it is");
        assert!(r.get().is_empty(), "not weighed before a whole horizon");
        // A 5-second burst barely moves the average...
        for _ in 0..5 {
            r.observe(&BTreeMap::from([(k.clone(), 10_000.0)]), sec);
        }
        assert!(r.all()[&k] < 600.0, "{}", r.all()[&k]);
        // ...a change that lasts is taken within minutes.
        for _ in 0..600 {
            r.observe(&BTreeMap::from([(k.clone(), 1000.0)]), sec);
        }
        assert!((r.get()[&k] - 1000.0).abs() < 30.0, "{}", r.get()[&k]);
        // A shard no longer reported is forgotten.
        r.observe(&BTreeMap::new(), sec);
        assert!(r.all().is_empty());
    }

    #[test]
    fn a_join_takes_one_shard_from_every_other_node_per_plan() {
        let mut a = cluster(&[1, 2, 3, 4, 5], 40);
        settle(&mut a, &BTreeSet::from([1, 2, 3, 4, 5]));
        let mut joiner = a.members[&1].clone();
        joiner.name = "n6".into();
        a.members.insert(6, joiner);
        let alive = BTreeSet::from([1, 2, 3, 4, 5, 6]);
        let before = a.clone();
        let p = plan(&a, &alive, opts(true));
        let givers: BTreeSet<Option<NodeId>> = p.moves.iter().map(|m| m.from).collect();
        assert_eq!(p.moves.len(), 5, "{:?}", p.moves);
        assert_eq!(givers.len(), 5, "one shard per giver: {:?}", p.moves);
        assert!(p.moves.iter().all(|m| m.graceful && m.to == 6));
        settle(&mut a, &alive);
        let o = owners(&a);
        assert!((6..=7).contains(&o[&6]), "{o:?}");
        let moved = a
            .shards
            .iter()
            .filter(|(k, s)| s.owner != before.shards[*k].owner)
            .count();
        assert_eq!(moved, o[&6], "sticky: only shards for the joiner move");
    }

    #[test]
    fn draining_moves_everything_off_and_dry_runs_change_nothing() {
        let mut a = cluster(&[1, 2], 4);
        settle(&mut a, &BTreeSet::from([1, 2]));
        a.members.get_mut(&2).unwrap().draining = true;
        let alive = BTreeSet::from([1, 2]);
        let p = plan(&a, &alive, opts(false));
        assert!(p.moves.iter().all(|m| m.reason == "drain" && m.to == 1));
        settle(&mut a, &alive);
        assert_eq!(owners(&a).get(&2), None);
    }

    #[test]
    fn a_revoke_that_times_out_is_forced() {
        let mut a = cluster(&[1, 2], 2);
        settle(&mut a, &BTreeSet::from([1, 2]));
        let (k, s) = a.shards.iter().next().unwrap();
        let (k, epoch, owner) = (k.clone(), s.epoch, s.owner.unwrap());
        let to = if owner == 1 { 2 } else { 1 };
        let mut d = crate::cluster::state_machine::Data {
            assignments: a.clone(),
            ..Default::default()
        };
        crate::cluster::state_machine::apply(
            &mut d,
            &Command::Revoke {
                shard: k.clone(),
                epoch,
                to,
                at_ms: 0,
            },
            None,
        );
        // A wall clock stepped far ahead (or back) changes nothing: only
        // the leader's own monotonic count of the revoke's age does.
        let mut o = opts(false);
        o.now_ms = u64::MAX / 2;
        o.revoking_ms.insert(k.clone(), 9_000);
        let p = plan(&d.assignments, &BTreeSet::from([1, 2]), o.clone());
        assert!(p.moves.is_empty(), "not timed out after 9 s: {:?}", p.moves);
        o.now_ms = 0;
        o.revoking_ms.insert(k.clone(), 10_001);
        let p = plan(&d.assignments, &BTreeSet::from([1, 2]), o);
        assert_eq!(p.moves.len(), 1);
        assert_eq!(p.moves[0].reason, "revoke-timeout");
        assert_eq!(p.moves[0].to, to);
    }
}
