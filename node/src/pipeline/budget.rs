//! The node's budget of bytes in flight, shared by every shard it consumes.
//!
//! A shard's credits (`in_flight_batches`) bound its own batches; this
//! bounds them all together, so memory follows configuration and not the
//! number of shards a node happens to own. A pulled batch takes its
//! decompressed size (`x-log-bodyrawsize`) from the budget as soon as its
//! answer is in, before it is decoded, and gives it back when it leaves the
//! checkpoint tracker, i.e. once every sink acknowledged it. While the
//! budget is spent a shard waits with its answer still compressed; waiters
//! are served in arrival order (tokio's semaphore is fair), so no shard
//! starves behind smaller ones. A batch larger than the whole budget takes
//! all of it, and runs alone.
//!
//! What a budgeted byte costs: the decoded log groups while the batch is
//! enriched, then each sink's rendered part until it is acknowledged (an
//! HEC part is ~1.2–1.5 raw bytes before gzip); BENCHMARKS.md has the
//! measured peak RSS for a node with a backlog on 16 shards.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{counter, gauge, Collector, DescriptorEncoder};

/// Budget units are KiB: a semaphore counts in `u32` per acquire.
const UNIT: usize = 1024;

#[derive(Debug)]
pub struct InFlightBudget {
    room: Arc<Semaphore>,
    units: u32,
    /// Batches that had to wait for room.
    waits: AtomicU64,
}

/// A batch's share of the budget; given back when dropped.
#[derive(Debug)]
pub struct BudgetShare {
    _permit: OwnedSemaphorePermit,
}

/// What a batch in flight holds until it leaves the tracker: its shard's
/// credit and, once its answer is in, its share of the node's budget.
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
            waits: AtomicU64::new(0),
        }
    }

    /// Room for a batch of `bytes` decompressed bytes (all of the budget if
    /// it is larger than the budget); waits while the budget is spent.
    pub async fn take(&self, bytes: usize) -> BudgetShare {
        let units = (bytes.div_ceil(UNIT) as u64).clamp(1, self.units as u64) as u32;
        let permit = match self.room.clone().try_acquire_many_owned(units) {
            Ok(p) => p,
            Err(_) => {
                self.waits.fetch_add(1, Relaxed);
                self.room
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    .expect("the budget's semaphore is never closed")
            }
        };
        BudgetShare { _permit: permit }
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

    #[tokio::test]
    async fn shares_bound_the_bytes_in_flight_and_come_back_when_dropped() {
        let budget = InFlightBudget::new(4 * 1024 * 1024);
        let a = budget.take(3 * 1024 * 1024).await;
        assert_eq!(budget.in_flight(), 3 * 1024 * 1024);
        // 2 MiB more does not fit: it waits until `a` is given back.
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.take(2 << 20));
        assert!(waiting.await.is_err(), "took more than the budget");
        assert_eq!(budget.waits(), 1);
        drop(a);
        let b = budget.take(2 << 20).await;
        assert_eq!(budget.in_flight(), 2 << 20);
        // Larger than the whole budget: all of it, once the rest is back.
        drop(b);
        let all = budget.take(100 << 20).await;
        assert_eq!(budget.in_flight(), budget.limit());
        drop(all);
        assert_eq!(budget.in_flight(), 0);
        // A few bytes still take a unit.
        let tiny = budget.take(1).await;
        assert_eq!(budget.in_flight(), 1024);
        drop(tiny);
    }

    #[tokio::test]
    async fn waiters_are_served_in_arrival_order() {
        let budget = Arc::new(InFlightBudget::new(4 << 20));
        let hold = budget.take(4 << 20).await;
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // A big waiter first, then small ones: the small ones must not pass it.
        for (i, size) in [(0, 3 << 20), (1, 1 << 20), (2, 1 << 20)] {
            let (budget, order) = (budget.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let share = budget.take(size).await;
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
