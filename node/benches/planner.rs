//! The assignment planner alone at scale (issue 13): 100 nodes × 10,000
//! shards. Plan time for a cold start (every shard unassigned), a death
//! (one node's shards go to their standbys), a join (balance on: one
//! graceful move per giving node, the joiner takes one from each) and a
//! steady state (nothing to do). The number of moves each plan makes is
//! printed once before timing, and after timing how many plan rounds a
//! join takes to reach its fair share.

use std::collections::{BTreeMap, BTreeSet};

use criterion::{criterion_group, criterion_main, Criterion};
use trail_node::cluster::scheduler::{plan, PlanOptions};
use trail_node::cluster::types::{
    Assignments, MemberState, NodeId, ShardKey, ShardPhase, ShardState,
};

const NODES: u64 = 100;
const SHARDS: u32 = 10_000;

fn key(n: u32) -> ShardKey {
    ShardKey {
        project: "audit".into(),
        logstore: "actiontrail_audit".into(),
        shard: n,
    }
}

fn members(nodes: u64, slots: u32) -> BTreeMap<NodeId, MemberState> {
    (1..=nodes)
        .map(|n| {
            (
                n,
                MemberState {
                    name: format!("trail-{n}"),
                    addr: format!("10.0.{}.{}:7001", n / 250, n % 250),
                    slots,
                    auto_slots: false,
                    draining: false,
                    leaving: false,
                    batched_plans: true,
                },
            )
        })
        .collect()
}

/// Every shard running, spread evenly, each with a standby on the next node.
fn assigned(nodes: u64) -> Assignments {
    let mut a = Assignments {
        members: members(nodes, SHARDS),
        ..Default::default()
    };
    for s in 0..SHARDS {
        let owner = 1 + (s as u64 % nodes);
        let mut st = ShardState::new();
        st.owner = Some(owner);
        st.standbys = vec![1 + (owner % nodes)];
        st.epoch = 1;
        st.phase = ShardPhase::Running;
        a.shards.insert(key(s), st);
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

/// Plans, applies every move as the owners would (released at once), and
/// plans again until nothing moves: (rounds, moves).
fn settle(
    a: &mut Assignments,
    alive: &BTreeSet<NodeId>,
    opts: impl Fn() -> PlanOptions,
) -> (usize, usize) {
    let (mut rounds, mut moves) = (0, 0);
    loop {
        let p = plan(a, alive, opts());
        if p.moves.is_empty() || rounds == 1_000 {
            return (rounds, moves);
        }
        rounds += 1;
        moves += p.moves.len();
        for m in &p.moves {
            let s = a.shards.get_mut(&m.shard).unwrap();
            s.owner = Some(m.to);
            s.epoch += 1;
            s.standbys.retain(|n| *n != m.to);
        }
    }
}

fn bench(c: &mut Criterion) {
    let everyone: BTreeSet<NodeId> = (1..=NODES).collect();

    let mut cold = Assignments {
        members: members(NODES, SHARDS),
        ..Default::default()
    };
    for s in 0..SHARDS {
        cold.shards.insert(key(s), ShardState::new());
    }
    let steady = assigned(NODES);
    let mut without_7 = everyone.clone();
    without_7.remove(&7);
    let mut joined = assigned(NODES - 1);
    joined.members = members(NODES, SHARDS);

    let cases: [(&str, &Assignments, &BTreeSet<NodeId>, bool); 4] = [
        ("cold_start", &cold, &everyone, false),
        ("death", &steady, &without_7, false),
        ("join_rebalance", &joined, &everyone, true),
        ("steady", &steady, &everyone, true),
    ];
    let mut g = c.benchmark_group(format!("planner_{NODES}_nodes_{SHARDS}_shards"));
    g.sample_size(10);
    for (name, a, alive, balance) in cases {
        let p = plan(a, alive, opts(balance));
        println!(
            "{name}: {} moves, {} commands",
            p.moves.len(),
            p.commands.len()
        );
        g.bench_function(name, |b| b.iter(|| plan(a, alive, opts(balance))));
    }
    g.finish();

    // A join to its fair share: plan, let every revoke release (what the
    // owners do), plan again. One shard per round before batched plans.
    let mut a = joined.clone();
    let (rounds, moves) = settle(&mut a, &everyone, || opts(true));
    let joiner = a.owned_by(NODES);
    println!(
        "join to fair share: {rounds} plan rounds, {moves} moves, the joiner owns {joiner} (fair {})",
        SHARDS as u64 / NODES
    );
}

/// Balance by load at the same scale: the steady cluster (counts even)
/// with a skewed trail (one shard in ten carries fifty times the others'
/// rate, and as shards are dealt out, ten nodes own only those): the plan time of one
/// round, and the rounds and moves until the rates are even within an
/// average shard.
fn bench_load(c: &mut Criterion) {
    let everyone: BTreeSet<NodeId> = (1..=NODES).collect();
    let steady = assigned(NODES);
    let rates: BTreeMap<ShardKey, f64> = steady
        .shards
        .keys()
        .map(|k| (k.clone(), if k.shard % 10 == 0 { 5_000.0 } else { 100.0 }))
        .collect();
    let with_rates = |balance| PlanOptions {
        rates: rates.clone(),
        ..opts(balance)
    };
    let mut g = c.benchmark_group(format!("planner_{NODES}_nodes_{SHARDS}_shards"));
    g.sample_size(10);
    let p = plan(&steady, &everyone, with_rates(true));
    println!(
        "rebalance_by_load: {} moves in the first round",
        p.moves.len()
    );
    g.bench_function("rebalance_by_load", |b| {
        b.iter(|| plan(&steady, &everyone, with_rates(true)))
    });
    g.finish();
    let mut a = steady.clone();
    let (rounds, moves) = settle(&mut a, &everyone, || with_rates(true));
    let load = |n: NodeId| -> f64 {
        a.shards
            .iter()
            .filter(|(_, s)| s.owner == Some(n))
            .map(|(k, _)| rates[k])
            .sum()
    };
    let (lo, hi) = everyone
        .iter()
        .map(|n| load(*n))
        .fold((f64::MAX, 0.0f64), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let mean: f64 = rates.values().sum::<f64>() / rates.len() as f64;
    println!(
        "rebalance by load to settled: {rounds} plan rounds, {moves} moves; node load {lo:.0}..{hi:.0} events/s (an average shard: {mean:.0})"
    );
}

criterion_group!(benches, bench, bench_load);
criterion_main!(benches);
