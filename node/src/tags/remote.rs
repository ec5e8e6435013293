//! The remote tier behind [`TagCache`](super::TagCache): misses are batched
//! per [`Scope`] (cloud, account, region), one call per up to 50 ARNs (100 on
//! AWS), with one fetch in flight per key, backoff on throttling, and a
//! batch waiting at most its budget.
//!
//! ```text
//! enricher ──request(arn)──▶ queue ──▶ batcher task ──▶ TagFetcher (Tag API / GetResources)
//!                                          │ window: a few ms or a full batch
//! parked batch ◀── Notify (cache updated) ◀┘ results → moka
//! ```
//!
//! A batch that misses tags does not hold its enricher thread: the enricher
//! hands back a [`TagWait`], the shard's pull loop awaits it (on tokio),
//! and the batch is enriched again once the tags came or the budget passed.
//! Only tests and benches block a thread on it ([`TagWait::block`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::mpsc;

/// Which provider answers for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cloud {
    Alibaba,
    Aws,
}

/// What one batched call covers: a cloud, an account, a region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub cloud: Cloud,
    pub account: String,
    /// Empty for global resources (RAM).
    pub region: String,
}

impl Scope {
    /// `arn:acs:{product}:{region}:{account}:…`, `acs:ram::{account}:…`,
    /// `arn:aws:{service}:{region}:{account}:…`.
    pub fn of(arn: &str) -> Option<Scope> {
        let (cloud, rest) = if let Some(r) = arn.strip_prefix("arn:aws:") {
            (Cloud::Aws, r)
        } else if let Some(r) = arn
            .strip_prefix("arn:acs:")
            .or_else(|| arn.strip_prefix("acs:"))
        {
            (Cloud::Alibaba, r)
        } else {
            return None;
        };
        let mut it = rest.splitn(4, ':');
        let _product = it.next()?;
        let region = it.next()?;
        let account = it.next()?;
        it.next()?;
        if account.is_empty() {
            return None;
        }
        Some(Scope {
            cloud,
            account: account.to_owned(),
            region: region.to_owned(),
        })
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// `Throttling*` / `ThrottledException`: back off, serve stale entries.
    #[error("throttled: {0}")]
    Throttled(String),
    /// Credentials or permissions (AssumeRole refused, NoPermission, …).
    #[error("denied: {0}")]
    Denied(String),
    /// Anything else (transport, 5xx, unreadable answer).
    #[error("failed: {0}")]
    Failed(String),
}

/// Tags by ARN; resources absent from the map have none (or do not exist).
pub type Fetched = HashMap<String, BTreeMap<String, String>>;

pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Fetched, FetchError>> + Send + 'a>>;

/// A cloud API that returns the tags of a batch of resources of one scope.
pub trait TagFetcher: Send + Sync + 'static {
    /// The most ARNs one call takes.
    fn max_batch(&self, scope: &Scope) -> usize;
    /// A fetch may answer for more resources than asked (a whole scope
    /// listed at once); the extra answers are cached too.
    fn fetch<'a>(&'a self, scope: &'a Scope, arns: &'a [Arc<str>]) -> FetchFuture<'a>;
    /// The trail changed this resource's tags: what the fetcher knows about
    /// it in bulk (a scope listing) no longer holds.
    fn invalidated(&self, _arn: &str) {}
}

/// Sends a tag API request and reads its JSON answer: (HTTP status, body).
/// A transport failure or an unreadable body is [`FetchError::Failed`];
/// the caller classifies the service's own error codes.
pub(super) async fn send_json(
    req: reqwest::RequestBuilder,
    api: &str,
) -> Result<(u16, serde_json::Value), FetchError> {
    let resp = req
        .send()
        .await
        .map_err(|e| FetchError::Failed(format!("{api}: {e}")))?;
    let status = resp.status().as_u16();
    // A tag page is at most a few hundred kilobytes.
    let body = crate::net::http::read_body(resp, 16 * 1024 * 1024)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| FetchError::Failed(format!("{api}: HTTP {status}, unreadable answer")))?;
    Ok((status, body))
}

/// Counters of the remote tier (metrics, benchmarks).
#[derive(Debug, Default)]
pub struct RemoteStats {
    /// Batched calls made (pages count once).
    pub calls: AtomicU64,
    pub arns: AtomicU64,
    pub throttled: AtomicU64,
    pub errors: AtomicU64,
    /// Batches handed back to their shard to wait for missing tags.
    pub parked: AtomicU64,
}

/// How a fetch ended for one key: written into the cache by the batcher.
pub enum Outcome {
    Tags(BTreeMap<String, String>),
    None,
    Failed(FetchError),
}

/// Where the batcher writes what it learned.
pub trait Sink: Send + Sync + 'static {
    fn store(&self, arn: Arc<str>, outcome: Outcome);
}

/// The request side, shared with the enrichers.
pub struct Remote {
    queue: mpsc::Sender<Arc<str>>,
    fetcher: Arc<dyn TagFetcher>,
    in_flight: Mutex<HashSet<Arc<str>>>,
    /// Bumped (and blocking waiters woken) whenever results were stored.
    updated: (Mutex<u64>, Condvar),
    /// Wakes parked batches whenever results were stored.
    notify: tokio::sync::Notify,
    pub stats: Arc<RemoteStats>,
}

/// Batching knobs.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// How long the first miss waits for company.
    pub window: Duration,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// First pause after throttling (doubles, capped at 30 s, jittered).
    pub throttle_backoff: Duration,
}

impl Remote {
    /// Starts the batcher on the current tokio runtime.
    pub fn start(
        fetcher: Arc<dyn TagFetcher>,
        sink: Arc<dyn Sink>,
        cfg: BatchConfig,
    ) -> Arc<Remote> {
        let (tx, rx) = mpsc::channel(65_536);
        let remote = Arc::new(Remote {
            queue: tx,
            fetcher: fetcher.clone(),
            in_flight: Mutex::default(),
            updated: (Mutex::new(0), Condvar::new()),
            notify: tokio::sync::Notify::new(),
            stats: Arc::default(),
        });
        tokio::spawn(batcher(remote.clone(), fetcher, sink, cfg, rx));
        remote
    }

    /// Asks for `arn` unless it is already on its way. False if the queue is full.
    pub fn request(&self, arn: &str) -> bool {
        let mut f = self.in_flight.lock();
        if f.contains(arn) {
            return true;
        }
        let key: Arc<str> = Arc::from(arn);
        if self.queue.try_send(key.clone()).is_err() {
            return false;
        }
        f.insert(key);
        true
    }

    /// Tells the fetcher a resource's tags changed.
    pub fn invalidated(&self, arn: &str) {
        self.fetcher.invalidated(arn);
    }

    pub fn is_in_flight(&self, arn: &str) -> bool {
        self.in_flight.lock().contains(arn)
    }

    fn any_in_flight(&self, arns: &[Arc<str>]) -> bool {
        let f = self.in_flight.lock();
        arns.iter().any(|a| f.contains(a))
    }

    /// Blocks the calling thread until none of `arns` is in flight, or `deadline`.
    fn block(&self, arns: &[Arc<str>], deadline: Instant) {
        let (lock, cv) = &self.updated;
        let mut g = lock.lock();
        while self.any_in_flight(arns) {
            if cv.wait_until(&mut g, deadline).timed_out() {
                return;
            }
        }
    }

    /// Resolves once none of `arns` is in flight, or at `deadline`.
    async fn wait(&self, arns: &[Arc<str>], deadline: Instant) {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            // Registered before the check, so a store in between still wakes us.
            let stored = self.notify.notified();
            tokio::pin!(stored);
            stored.as_mut().enable();
            if !self.any_in_flight(arns) {
                return;
            }
            tokio::select! {
                _ = stored => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    fn finished(&self, arns: &[Arc<str>]) {
        {
            let mut f = self.in_flight.lock();
            for a in arns {
                f.remove(a);
            }
        }
        let (lock, cv) = &self.updated;
        *lock.lock() += 1;
        cv.notify_all();
        self.notify.notify_waiters();
    }
}

/// A batch's missing tags, asked for: wait for them (at most until the
/// batch's budget ends), then enrich the batch again.
#[must_use = "a batch waits for its tags, then is enriched again"]
pub struct TagWait {
    remote: Arc<Remote>,
    keys: Vec<Arc<str>>,
    deadline: Instant,
}

impl TagWait {
    pub(super) fn new(remote: Arc<Remote>, keys: Vec<Arc<str>>, deadline: Instant) -> Self {
        remote.stats.parked.fetch_add(1, Ordering::Relaxed);
        TagWait {
            remote,
            keys,
            deadline,
        }
    }

    /// The resources waited for.
    pub fn keys(&self) -> &[Arc<str>] {
        &self.keys
    }

    /// Until every key is answered or the budget is spent; a task awaits
    /// this, not an enricher thread.
    pub async fn wait(self) {
        self.remote.wait(&self.keys, self.deadline).await;
    }

    /// The same, blocking the calling thread (tests, benches, the fuzzer).
    pub fn block(self) {
        self.remote.block(&self.keys, self.deadline);
    }
}

impl std::fmt::Debug for TagWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagWait")
            .field("keys", &self.keys.len())
            .field("deadline", &self.deadline)
            .finish()
    }
}

async fn batcher(
    remote: Arc<Remote>,
    fetcher: Arc<dyn TagFetcher>,
    sink: Arc<dyn Sink>,
    cfg: BatchConfig,
    mut rx: mpsc::Receiver<Arc<str>>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1)));
    let backoff: Arc<Mutex<HashMap<Scope, (Instant, Duration)>>> = Arc::default();
    while let Some(first) = rx.recv().await {
        // Collect for the window, or until every scope could fill a call.
        let mut keys = vec![first];
        let until = tokio::time::Instant::now() + cfg.window;
        while let Ok(Some(k)) = tokio::time::timeout_at(until, rx.recv()).await {
            keys.push(k);
            if keys.len() >= 1000 {
                break;
            }
        }
        let mut by_scope: BTreeMap<Scope, Vec<Arc<str>>> = BTreeMap::new();
        for k in keys {
            match Scope::of(&k) {
                Some(s) => by_scope.entry(s).or_default().push(k),
                None => {
                    sink.store(k.clone(), Outcome::None);
                    remote.finished(&[k]);
                }
            }
        }
        for (scope, keys) in by_scope {
            let max = fetcher.max_batch(&scope).max(1);
            for chunk in keys.chunks(max) {
                let chunk: Vec<Arc<str>> = chunk.to_vec();
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                let (remote, fetcher, sink, backoff, scope, cfg) = (
                    remote.clone(),
                    fetcher.clone(),
                    sink.clone(),
                    backoff.clone(),
                    scope.clone(),
                    cfg.clone(),
                );
                tokio::spawn(async move {
                    let _permit = permit;
                    let wait = backoff.lock().get(&scope).map(|(until, _)| *until);
                    if let Some(until) = wait {
                        tokio::time::sleep_until(until.into()).await;
                    }
                    remote.stats.calls.fetch_add(1, Ordering::Relaxed);
                    remote
                        .stats
                        .arns
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    match fetcher.fetch(&scope, &chunk).await {
                        Ok(mut found) => {
                            backoff.lock().remove(&scope);
                            for k in &chunk {
                                let o = match found.remove(&**k) {
                                    Some(t) if !t.is_empty() => Outcome::Tags(t),
                                    _ => Outcome::None,
                                };
                                sink.store(k.clone(), o);
                            }
                            // A listing answers for resources nobody asked about yet.
                            for (arn, tags) in found {
                                if !tags.is_empty() && !remote.is_in_flight(&arn) {
                                    sink.store(Arc::from(arn), Outcome::Tags(tags));
                                }
                            }
                        }
                        Err(e) => {
                            if matches!(e, FetchError::Throttled(_)) {
                                remote.stats.throttled.fetch_add(1, Ordering::Relaxed);
                                let mut b = backoff.lock();
                                let pause = b
                                    .get(&scope)
                                    .map(|(_, p)| (*p * 2).min(Duration::from_secs(30)))
                                    .unwrap_or(cfg.throttle_backoff);
                                let jitter = pause.mul_f64(0.5 + fastrand::f64() / 2.0);
                                b.insert(scope.clone(), (Instant::now() + jitter, pause));
                            } else {
                                remote.stats.errors.fetch_add(1, Ordering::Relaxed);
                            }
                            tracing::warn!(cloud = ?scope.cloud, account = %scope.account, region = %scope.region, error = %e, "tag fetch failed");
                            for k in &chunk {
                                sink.store(k.clone(), Outcome::Failed(e.clone()));
                            }
                        }
                    }
                    remote.finished(&chunk);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_of_arns() {
        let s = Scope::of("arn:acs:ecs:cn-hangzhou:123:instance/i-1").unwrap();
        assert_eq!(
            (s.cloud, s.account.as_str(), s.region.as_str()),
            (Cloud::Alibaba, "123", "cn-hangzhou")
        );
        let s = Scope::of("acs:ram::123:user/alice").unwrap();
        assert_eq!((s.account.as_str(), s.region.as_str()), ("123", ""));
        let s = Scope::of("arn:aws:ec2:us-east-1:999:instance/i-0abc").unwrap();
        assert_eq!(s.cloud, Cloud::Aws);
        assert!(Scope::of("i-123").is_none());
        assert!(
            Scope::of("arn:aws:s3:::bucket").is_none(),
            "no account: not batchable"
        );
    }
}
