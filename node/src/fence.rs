//! Fencing: may this writer still write?
//!
//! A writer (a shard's pull loop, a sink request) holds a [`Fence`]. It
//! checks it before each attempt ([`Fence::holds`]) and races it during one
//! ([`Fence::lost`]): once the fence is lost, work in flight is dropped
//! unsent and nothing new starts, so a host that may no longer be the
//! shard's owner writes nothing.
//!
//! Today a fence is the node's [`Lease`]: granted by the cluster for each
//! heartbeat the raft leader acknowledged (see `cluster::lease`), always
//! held by a node without a cluster. The lease runs on the monotonic clock,
//! so a wall-clock step changes nothing.
//!
//! Floor 0: this module imports nothing of the crate; the cluster renews
//! leases, pipeline and sinks only read them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// A node's right to consume the shards it owns.
#[derive(Debug)]
pub struct Lease {
    valid_until: Mutex<Option<Instant>>,
    /// `None`: no cluster, always valid.
    ttl: Option<Duration>,
    /// Times the node found its lease expired (fenced itself).
    pub fenced: AtomicU64,
    was_valid: std::sync::atomic::AtomicBool,
}

impl Lease {
    /// A lease that never expires (a node without a cluster).
    pub fn unbounded() -> Lease {
        Lease {
            valid_until: Mutex::new(None),
            ttl: None,
            fenced: AtomicU64::new(0),
            was_valid: true.into(),
        }
    }

    /// A lease of `ttl` per acknowledged beat (already less the margin).
    pub fn new(ttl: Duration) -> Lease {
        Lease {
            valid_until: Mutex::new(None),
            ttl: Some(ttl),
            fenced: AtomicU64::new(0),
            was_valid: false.into(),
        }
    }

    /// A beat sent at `sent_at` was acknowledged.
    pub fn renew(&self, sent_at: Instant) {
        if let Some(ttl) = self.ttl {
            let until = sent_at + ttl;
            let mut v = self.valid_until.lock();
            if v.is_none_or(|u| u < until) {
                *v = Some(until);
            }
        }
    }

    pub fn valid(&self) -> bool {
        let ok = match self.ttl {
            None => true,
            Some(_) => self.valid_until.lock().is_some_and(|u| Instant::now() < u),
        };
        let was = self.was_valid.swap(ok, Ordering::Relaxed);
        if was && !ok {
            self.fenced.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("lease expired: not pulling or delivering until the leader answers");
        } else if !was && ok {
            tracing::info!("lease granted");
        }
        ok
    }

    /// Resolves once the lease has expired (never without a cluster): work
    /// in flight (a pull, a sink request) races this and is dropped.
    pub async fn expired(&self) {
        if self.ttl.is_none() {
            return std::future::pending().await;
        }
        while self.valid() {
            let left = self
                .valid_until
                .lock()
                .map(|u| u.saturating_duration_since(Instant::now()))
                .unwrap_or_default();
            tokio::time::sleep(left.clamp(Duration::from_millis(5), Duration::from_millis(50)))
                .await;
        }
    }

    /// Waits until the lease is valid; false if `stop` fired first.
    pub async fn wait_valid(&self, stop: &CancellationToken) -> bool {
        loop {
            if self.valid() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = stop.cancelled() => return false,
            }
        }
    }
}

/// The token a writer checks before and races during every write.
/// Cheap to clone; every clone reads the same lease and the same stop.
///
/// A node's fence is its lease. A shard's fence ([`Fence::until`]) is the
/// node's, also lost for good once the shard's consumer is stopped: its
/// shard moved, its epoch ended, or a hand-over gave up waiting for it. A
/// sink that retries a part "until delivered" retries only while the part's
/// fence holds, so no part of an old epoch lands after its shard moved.
#[derive(Debug, Clone)]
pub struct Fence {
    lease: Arc<Lease>,
    /// Cancelled when the shard's epoch ends on this node (`None`: the node's fence).
    stop: Option<CancellationToken>,
}

impl Fence {
    /// A fence that is never lost (a node without a cluster).
    pub fn open() -> Fence {
        Fence::of(Arc::new(Lease::unbounded()))
    }

    /// A fence held while `lease` is valid.
    pub fn of(lease: Arc<Lease>) -> Fence {
        Fence { lease, stop: None }
    }

    /// This fence, and also lost for good once `stop` is cancelled.
    pub fn until(&self, stop: CancellationToken) -> Fence {
        Fence {
            lease: self.lease.clone(),
            stop: Some(stop),
        }
    }

    /// Lost for good: its shard's epoch ended here (a lapsed lease may come back).
    pub fn ended(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// Check before an attempt: may the writer start it?
    pub fn holds(&self) -> bool {
        !self.ended() && self.lease.valid()
    }

    /// Race during an attempt: resolves once the fence is lost (never for
    /// an open fence). The attempt is then dropped unsent.
    pub async fn lost(&self) {
        match &self.stop {
            Some(stop) => tokio::select! {
                _ = self.lease.expired() => {}
                _ = stop.cancelled() => {}
            },
            None => self.lease.expired().await,
        }
    }

    /// Resolves once any of `fences` is lost (never if there are none).
    pub async fn any_lost<'f>(fences: impl IntoIterator<Item = &'f Fence>) {
        let lost: Vec<_> = fences.into_iter().map(|f| Box::pin(f.lost())).collect();
        if lost.is_empty() {
            return std::future::pending().await;
        }
        futures_util::future::select_all(lost).await;
    }

    /// Waits until the fence is held again; false if `stop` fired first or
    /// the fence ended for good.
    pub async fn regained(&self, stop: &CancellationToken) -> bool {
        loop {
            if self.ended() {
                return false;
            }
            if self.lease.valid() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = stop.cancelled() => return false,
                _ = self.ending() => return false,
            }
        }
    }

    /// Resolves once the fence ended for good (never for a node's fence).
    async fn ending(&self) {
        match &self.stop {
            Some(s) => s.cancelled().await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_runs_from_the_send_time_of_the_acknowledged_beat() {
        let l = Lease::new(Duration::from_millis(200));
        assert!(!l.valid(), "no lease before the first acknowledged beat");
        let sent = Instant::now();
        l.renew(sent);
        assert!(l.valid());
        l.renew(sent - Duration::from_secs(10)); // a late, older ack never shortens it
        assert!(l.valid());
        std::thread::sleep(Duration::from_millis(250));
        assert!(!l.valid(), "expired without a new ack");
        assert_eq!(l.fenced.load(Ordering::Relaxed), 1);
        assert!(Lease::unbounded().valid());
    }

    #[tokio::test]
    async fn a_fence_is_lost_when_its_lease_runs_out() {
        let lease = Arc::new(Lease::new(Duration::from_millis(100)));
        let fence = Fence::of(lease.clone());
        assert!(!fence.holds(), "no lease yet: no writes");
        lease.renew(Instant::now());
        assert!(fence.holds());
        let t = Instant::now();
        fence.lost().await;
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(!fence.clone().holds(), "clones read the same lease");
        assert!(Fence::open().holds());
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!fence.regained(&stop).await);
    }

    #[tokio::test]
    async fn a_shard_fence_ends_with_its_epoch_and_never_comes_back() {
        let lease = Arc::new(Lease::new(Duration::from_secs(60)));
        lease.renew(Instant::now());
        let node = Fence::of(lease.clone());
        let epoch_ended = CancellationToken::new();
        let shard = node.until(epoch_ended.clone());
        let other = node.until(CancellationToken::new());
        assert!(shard.holds() && other.holds());
        let racing = tokio::spawn({
            let (shard, other) = (shard.clone(), other.clone());
            async move { Fence::any_lost([&other, &shard]).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!racing.is_finished(), "both fences hold");
        epoch_ended.cancel();
        tokio::time::timeout(Duration::from_secs(1), racing)
            .await
            .expect("any_lost resolves when one fence is lost")
            .unwrap();
        assert!(!shard.holds() && shard.ended());
        assert!(
            other.holds() && node.holds(),
            "other shards and the node keep writing"
        );
        lease.renew(Instant::now());
        assert!(
            !shard.holds(),
            "a renewed lease does not revive an ended epoch"
        );
        assert!(!shard.regained(&CancellationToken::new()).await);
    }
}
