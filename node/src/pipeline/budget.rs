//! The node's budget of bytes in flight, shared by every shard it consumes.
//!
//! A shard's credits (`in_flight_batches`) bound its own batches; this
//! bounds them all together, so memory follows configuration and not the
//! number of shards a node happens to own. Before each pull a shard takes
//! a share for the batch it expects (its last batch's size), and resizes it
//! to the answer's decompressed size (`x-log-bodyrawsize`) before decoding;
//! the share goes back when the batch leaves the checkpoint tracker, i.e.
//! once every sink acknowledged it (a restarted loop's orphans keep theirs
//! until their parts settle).
//!
//! **Fair shares.** Each shard may hold at most `budget / shards` (its
//! fair share), except that a shard holding nothing may always take one
//! batch; and shards aim their pulls at their fair share split between
//! their credits when that is below `pull_target_bytes`. So shards whose sink lane is stuck (a throttled
//! route, a retrying part) hold at most their own shares, and the others
//! keep theirs: one slow shard never stalls the node. Waiters are served
//! in arrival order (tokio's semaphore is fair); a batch larger than the
//! whole budget takes all of it and runs alone.
//!
//! What a budgeted byte costs: the compressed answer and the decoded log
//! groups while the batch is enriched, then each sink's rendered part
//! until it is acknowledged (an HEC part is ~1.2–1.5 raw bytes before
//! gzip); BENCHMARKS.md has the measured peak RSS with 16 shards of backlog.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::metrics::{counter, gauge, Collector, DescriptorEncoder};

/// Budget units are KiB: a semaphore counts in `u32` per acquire.
const UNIT: usize = 1024;

fn units_of(bytes: usize) -> u64 {
    (bytes.div_ceil(UNIT) as u64).max(1)
}

#[derive(Debug)]
pub struct InFlightBudget {
    room: Arc<Semaphore>,
    units: u32,
    /// Shards consuming on this node (each holds a [`ShardBudget`]).
    shards: AtomicUsize,
    /// Batches that had to wait for room.
    waits: AtomicU64,
}

/// One shard's access to the node's budget; counts the shard while it lives.
#[derive(Debug)]
pub struct ShardBudget {
    budget: Arc<InFlightBudget>,
    /// Units this shard's shares hold now.
    held: Arc<AtomicU64>,
    /// Told whenever one of this shard's shares is given back.
    released: Arc<Notify>,
}

/// A batch's share of the budget; given back when dropped.
#[derive(Debug)]
pub struct BudgetShare {
    permit: OwnedSemaphorePermit,
    held: Arc<AtomicU64>,
    released: Arc<Notify>,
}

/// What a batch in flight holds until it leaves the tracker: its shard's
/// credit and its share of the node's budget.
#[derive(Debug)]
pub struct Credit {
    pub batch: OwnedSemaphorePermit,
    pub bytes: Option<BudgetShare>,
}

impl InFlightBudget {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: usize) -> Self {
        let units = (bytes / UNIT).clamp(1, u32::MAX as usize >> 4) as u32;
        InFlightBudget {
            room: Arc::new(Semaphore::new(units as usize)),
            units,
            shards: AtomicUsize::new(0),
            waits: AtomicU64::new(0),
        }
    }

    /// A shard's handle; the shard counts for fair shares while it lives.
    pub fn for_shard(self: &Arc<Self>) -> ShardBudget {
        self.shards.fetch_add(1, Relaxed);
        ShardBudget {
            budget: self.clone(),
            held: Arc::default(),
            released: Arc::default(),
        }
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> u64 {
        self.units as u64 * UNIT as u64
    }

    /// Bytes held by batches in flight now.
    pub fn in_flight(&self) -> u64 {
        (self.units as u64 - self.room.available_permits() as u64) * UNIT as u64
    }

    pub fn waits(&self) -> u64 {
        self.waits.load(Relaxed)
    }

    async fn acquire(&self, units: u32) -> OwnedSemaphorePermit {
        match self.room.clone().try_acquire_many_owned(units) {
            Ok(p) => p,
            Err(_) => {
                self.waits.fetch_add(1, Relaxed);
                self.room
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    .expect("the budget's semaphore is never closed")
            }
        }
    }

    fn clamp(&self, units: u64) -> u32 {
        units.clamp(1, self.units as u64) as u32
    }
}

impl Drop for ShardBudget {
    fn drop(&mut self) {
        self.budget.shards.fetch_sub(1, Relaxed);
    }
}

impl ShardBudget {
    /// This shard's fair share of the budget, in bytes.
    pub fn fair_bytes(&self) -> usize {
        let shards = self.budget.shards.load(Relaxed).max(1) as u64;
        ((self.budget.units as u64 / shards).max(1) * UNIT as u64) as usize
    }

    /// Room for a batch of about `bytes`: waits while this shard holds its
    /// fair share (for its own batches to finish), then while the node's
    /// budget is spent.
    pub async fn take(&self, bytes: usize) -> BudgetShare {
        let units = self.budget.clamp(units_of(bytes));
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let held = self.held.load(Relaxed);
            let fair = (self.fair_bytes() / UNIT) as u64;
            if held == 0 || held + u64::from(units) <= fair {
                break;
            }
            released.await;
        }
        let permit = self.budget.acquire(units).await;
        self.held.fetch_add(u64::from(units), Relaxed);
        BudgetShare {
            permit,
            held: self.held.clone(),
            released: self.released.clone(),
        }
    }

    /// Resizes `share` to `bytes` (the answer's size, now known): gives back
    /// what it does not need; for more, takes it at once if there is room,
    /// else gives the share back and waits for the whole size in line
    /// (holding part of the budget while waiting for more would deadlock
    /// two shards that each hold half).
    pub async fn resize(&self, share: &mut BudgetShare, bytes: usize) {
        let want = self.budget.clamp(units_of(bytes)) as usize;
        let have = share.permit.num_permits();
        if want < have {
            self.give_back(share, have - want);
        } else if want > have {
            match self
                .budget
                .room
                .clone()
                .try_acquire_many_owned((want - have) as u32)
            {
                Ok(more) => {
                    share.permit.merge(more);
                    self.held.fetch_add((want - have) as u64, Relaxed);
                }
                Err(_) => {
                    self.give_back(share, have);
                    let all = self.budget.acquire(want as u32).await;
                    share.permit.merge(all);
                    self.held.fetch_add(want as u64, Relaxed);
                }
            }
        }
    }

    fn give_back(&self, share: &mut BudgetShare, units: usize) {
        if let Some(surplus) = share.permit.split(units) {
            drop(surplus);
            self.held.fetch_sub(units as u64, Relaxed);
            self.released.notify_waiters();
        }
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.held
            .fetch_sub(self.permit.num_permits() as u64, Relaxed);
        self.released.notify_waiters();
    }
}

/// `trail_in_flight_bytes`, its limit, and the waits for room.
#[derive(Debug)]
pub struct BudgetMetrics(pub Arc<InFlightBudget>);

impl Collector for BudgetMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        gauge(
            &mut enc,
            "trail_in_flight_bytes",
            "Decompressed bytes of pulled batches not yet acknowledged by every sink, all shards of this node.",
            self.0.in_flight() as i64,
        )?;
        gauge(
            &mut enc,
            "trail_in_flight_bytes_limit",
            "source.max_in_flight_bytes: the node's budget of bytes in flight.",
            self.0.limit() as i64,
        )?;
        counter(
            &mut enc,
            "trail_in_flight_budget_waits",
            "Pulled batches that waited for room in the node's budget of bytes in flight.",
            self.0.waits(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: usize = 1 << 20;

    #[tokio::test]
    async fn shares_bound_the_bytes_in_flight_and_come_back_when_dropped() {
        let budget = Arc::new(InFlightBudget::new(4 * MIB));
        let (a, b) = (budget.for_shard(), budget.for_shard());
        let first = a.take(2 * MIB).await;
        assert_eq!(budget.in_flight(), 2 * MIB as u64);
        // The answer was larger than expected: the share grows to it.
        let mut first = first;
        a.resize(&mut first, 3 * MIB).await;
        assert_eq!(budget.in_flight(), 3 * MIB as u64);
        // 2 MiB more for the other shard does not fit until `first` is back.
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.take(2 * MIB));
        assert!(waiting.await.is_err(), "took more than the budget");
        assert_eq!(budget.waits(), 1);
        drop(first);
        drop(b.take(2 * MIB).await);
        // Two shards each holding half and each growing: neither may hold
        // its half while it waits for more (that would deadlock them).
        let (a, b) = (Arc::new(a), Arc::new(b));
        let mut tasks = Vec::new();
        for shard in [a.clone(), b.clone()] {
            let mut share = shard.take(2 * MIB).await;
            tasks.push(tokio::spawn(async move {
                shard.resize(&mut share, 3 * MIB).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(share);
            }));
        }
        let both = tokio::time::timeout(Duration::from_secs(5), async {
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert!(both.await.is_ok(), "two growing shares deadlocked");
        assert_eq!(budget.in_flight(), 0);
        let mut second = b.take(2 * MIB).await;
        // Smaller than expected: the surplus goes back at once.
        b.resize(&mut second, 100).await;
        assert_eq!(budget.in_flight(), 1024);
        drop(second);
        // Larger than the whole budget: all of it.
        let all = a.take(100 * MIB).await;
        assert_eq!(budget.in_flight(), budget.limit());
        drop(all);
        assert_eq!(budget.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_shard_stuck_on_its_shares_leaves_the_others_theirs() {
        let budget = Arc::new(InFlightBudget::new(8 * MIB));
        let shards: Vec<ShardBudget> = (0..4).map(|_| budget.for_shard()).collect();
        assert_eq!(shards[0].fair_bytes(), 2 * MIB);
        // Shard 0's sink is stuck: it holds its first batch and asks for more.
        let stuck = shards[0].take(2 * MIB).await;
        let more = tokio::time::timeout(Duration::from_millis(50), shards[0].take(MIB));
        assert!(
            more.await.is_err(),
            "a shard past its fair share waits for its own batches"
        );
        // Every other shard still gets its fair share at once.
        let mut held = Vec::new();
        for s in &shards[1..] {
            let share = tokio::time::timeout(Duration::from_millis(50), s.take(2 * MIB))
                .await
                .expect("a healthy shard got no room");
            held.push(share);
        }
        assert_eq!(budget.in_flight(), 8 * MIB as u64);
        // Within the fair share, a second batch is fine: 1 MiB + 1 MiB.
        drop(held);
        drop(stuck);
        let x = shards[1].take(MIB).await;
        let y = tokio::time::timeout(Duration::from_millis(50), shards[1].take(MIB)).await;
        assert!(y.is_ok());
        drop((x, y));
        // A shard that leaves gives the others a larger share.
        drop(shards);
        let alone = budget.for_shard();
        assert_eq!(alone.fair_bytes(), 8 * MIB);
    }

    #[tokio::test]
    async fn waiters_are_served_in_arrival_order() {
        let budget = Arc::new(InFlightBudget::new(4 * MIB));
        let holder = budget.for_shard();
        let hold = holder.take(4 * MIB).await;
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // A big waiter first, then small ones: the small ones must not pass it.
        for (i, size) in [(0, 3 * MIB), (1, MIB), (2, MIB)] {
            let (budget, order) = (budget.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let shard = budget.for_shard();
                let share = shard.take(size).await;
                order.lock().push(i);
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(share);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(hold);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2]);
    }
}
