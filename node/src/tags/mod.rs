//! Resource tags: the [`TagCache`] the enrichers ask, and the providers behind it.
//!
//! Floor 2: imports `record` (the tag set type), `net`, `secret` and
//! `metrics`; the cluster's replicated tier reaches in through
//! [`TagCache::put`] and the publisher hook, never the other way.
//!
//! # Layout
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | [`TagCache`]: moka in front; TTLs, stale serving, negative and error entries; `request` for a batch's misses |
//! | `remote.rs` | the batcher: misses per (cloud, account, region), single flight, throttling backoff; [`TagWait`] |
//! | `alibaba.rs` | Tag service `ListTagResources` (by ARN, or whole-region sweeps), ECS/SLB per product, STS `AssumeRole` per member account |
//! | `aws.rs` | Resource Groups Tagging `GetResources`; [`aws::CloudTags`] routes scopes to clouds |
//! | `sign.rs` | RPC V2, ACS3-HMAC-SHA256, SigV4 (with the published test vectors) |
//! | `static_file.rs` | tags from a JSON or CSV file, reloaded when it changes |
//! | `resource_types.rs` | ActionTrail resource types → Tag-service product and type |
//!
//! Two kinds of source: a [`TagProvider`] answers on the spot (the file);
//! a [`TagFetcher`] is a remote API, batched by [`Remote`]. Enrichers call
//! [`TagCache::request`] once per batch with every ARN the batch needs; if
//! some are missing they get a [`TagWait`] back and hand the batch to its
//! shard to wait (at most the budget) off the enricher thread; then
//! [`TagCache::get`] per event. The raft-replicated tier (cluster issue) and a CMDB push
//! (gRPC `Tags` service) write into the same cache through
//! [`TagCache::put`].

pub mod alibaba;
pub mod aws;
pub mod remote;
mod resource_types;

pub(crate) mod static_file;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use remote::{
    BatchConfig, Cloud, FetchError, Outcome, Remote, RemoteStats, Scope, TagFetcher, TagWait,
};
pub use resource_types::{
    arn_into, arn_parts, builtin as builtin_kinds, ResourceKind, ResourceTypes,
};
pub use static_file::{StaticTags, TagsFileError};

pub use crate::record::TagSet;

use crate::metrics::{counter, counters, Collector, DescriptorEncoder, Labels};

/// What identifies a resource for tag lookups: its ARN
/// (`arn:acs:ecs:cn-hangzhou:123:instance/i-1`, or a RAM `acs:ram::123:user/x`).
pub type ResourceKey = str;

/// The outcome of one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Tags(TagSet),
    /// The provider knows the resource has no tags (or does not exist).
    None,
    /// Asked for, not answered within the budget (remote providers).
    Pending,
    /// The provider failed (throttled with nothing stale to serve, denied).
    Unavailable,
}

/// A source of tags answered on the spot (a file, memory). Remote APIs
/// implement [`TagFetcher`] instead and are batched.
pub trait TagProvider: Send + Sync + 'static {
    fn lookup(&self, arn: &ResourceKey) -> Lookup;

    /// The provider answers from a table it already holds in memory (the
    /// tags file): a cache in front would only add a second lookup, so
    /// [`TagCache`] asks it directly and keeps moka for tags put by API.
    fn in_memory(&self) -> bool {
        false
    }
}

/// How long entries count as fresh; after that they are still served (stale)
/// while a refresh runs, until twice the positive TTL.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub tags: Duration,
    /// Resources with no tags, or unknown.
    pub negative: Duration,
    /// Failed lookups.
    pub error: Duration,
}

#[derive(Debug, Clone)]
struct Entry {
    lookup: Lookup,
    at: Instant,
    /// The trail changed the resource's tags: served to events racing the
    /// change, refetched (and waited for) by the next batch that needs it.
    invalidated: bool,
}

impl Entry {
    fn new(lookup: Lookup) -> Entry {
        Entry {
            lookup,
            at: Instant::now(),
            invalidated: false,
        }
    }

    fn fresh(&self, ttls: &Ttls) -> bool {
        if self.invalidated {
            return false;
        }
        let ttl = match self.lookup {
            Lookup::Tags(_) => ttls.tags,
            Lookup::None => ttls.negative,
            Lookup::Pending | Lookup::Unavailable => ttls.error,
        };
        self.at.elapsed() < ttl
    }
}

enum Source {
    Local(Arc<dyn TagProvider>),
    Remote(Arc<Remote>),
}

/// moka in front of a provider: one entry per resource, bounded, with TTLs;
/// for remote providers, misses batched and waited for within a budget.
#[derive(Clone)]
pub struct TagCache {
    cache: moka::sync::Cache<Arc<str>, Entry>,
    source: Arc<Source>,
    ttls: Ttls,
    pub stats: Arc<CacheStats>,
    publish: Arc<parking_lot::Mutex<Option<Publish>>>,
    /// Tags were put by API ([`TagCache::put`]): an in-memory provider's
    /// answers are then checked against moka first.
    overridden: Arc<std::sync::atomic::AtomicBool>,
}

/// Lookups answered from moka (hits, stale ones included) or not.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: std::sync::atomic::AtomicU64,
    pub misses: std::sync::atomic::AtomicU64,
}

impl CacheStats {
    fn count(&self, hit: bool) {
        let c = if hit { &self.hits } else { &self.misses };
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The tag tier's metrics: moka hits and misses, the remote tier's calls.
/// The slots are filled once the node has built its cache (if any).
#[derive(Debug)]
pub struct TagMetrics {
    pub cache: Arc<parking_lot::Mutex<Option<Arc<CacheStats>>>>,
    pub remote: Arc<parking_lot::Mutex<Option<Arc<RemoteStats>>>>,
}

impl Collector for TagMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(c) = self.cache.lock().clone() {
            let row = |result: &str, v: u64| -> (Labels, u64) {
                (vec![("tier", "moka".into()), ("result", result.into())], v)
            };
            counters(
                &mut enc,
                "trail_tag_cache_lookups",
                "Tag lookups by cache tier and result (a hit may be stale and refreshing).",
                [
                    row("hit", c.hits.load(Relaxed)),
                    row("miss", c.misses.load(Relaxed)),
                ],
            )?;
        }
        if let Some(r) = self.remote.lock().clone() {
            for (name, help, v) in [
                ("trail_tag_api_calls", "Batched tag API calls.", &r.calls),
                (
                    "trail_tag_api_arns",
                    "Resources asked for in tag API calls.",
                    &r.arns,
                ),
                (
                    "trail_tag_api_throttled",
                    "Tag API calls answered with throttling.",
                    &r.throttled,
                ),
                (
                    "trail_tag_api_errors",
                    "Tag API calls failed otherwise.",
                    &r.errors,
                ),
                (
                    "trail_tag_batches_parked",
                    "Batches handed back to their shard to wait for missing tags (no enricher thread waits).",
                    &r.parked,
                ),
            ] {
                counter(&mut enc, name, help, v.load(Relaxed))?;
            }
        }
        Ok(())
    }
}

/// Shares what this node fetched (the cluster's replicated tier).
pub type Publish = Arc<dyn Fn(&str, &BTreeMap<String, String>) + Send + Sync>;

/// The batcher's writer into the cache.
struct CacheSink {
    cache: moka::sync::Cache<Arc<str>, Entry>,
    publish: Arc<parking_lot::Mutex<Option<Publish>>>,
}

impl remote::Sink for CacheSink {
    fn store(&self, arn: Arc<str>, outcome: Outcome) {
        let publish = self.publish.lock().clone();
        let lookup = match outcome {
            Outcome::Tags(t) => {
                if let Some(p) = &publish {
                    p(&arn, &t);
                }
                Lookup::Tags(TagSet::new(t))
            }
            Outcome::None => {
                if let Some(p) = &publish {
                    p(&arn, &BTreeMap::new());
                }
                Lookup::None
            }
            Outcome::Failed(_) => {
                // Serve what we had (stale) rather than nothing.
                if self.cache.contains_key(&arn) {
                    return;
                }
                Lookup::Unavailable
            }
        };
        self.cache.insert(arn, Entry::new(lookup));
    }
}

impl TagCache {
    fn builder(capacity: u64, ttls: &Ttls) -> moka::sync::Cache<Arc<str>, Entry> {
        moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttls.tags * 2)
            .build()
    }

    /// A cache over a provider answered on the spot (the static file).
    pub fn new(provider: Arc<dyn TagProvider>, capacity: u64, ttl: Duration) -> Self {
        let ttls = Ttls {
            tags: ttl,
            negative: ttl,
            error: ttl,
        };
        TagCache {
            cache: Self::builder(capacity, &ttls),
            source: Arc::new(Source::Local(provider)),
            ttls,
            stats: Arc::default(),
            publish: Arc::default(),
            overridden: Arc::default(),
        }
    }

    /// A cache over a remote API; starts its batcher on the current tokio runtime.
    pub fn remote(
        fetcher: Arc<dyn TagFetcher>,
        capacity: u64,
        ttls: Ttls,
        batch: BatchConfig,
    ) -> Self {
        let cache = Self::builder(capacity, &ttls);
        let publish: Arc<parking_lot::Mutex<Option<Publish>>> = Arc::default();
        let remote = Remote::start(
            fetcher,
            Arc::new(CacheSink {
                cache: cache.clone(),
                publish: publish.clone(),
            }),
            batch,
        );
        TagCache {
            cache,
            source: Arc::new(Source::Remote(remote)),
            ttls,
            stats: Arc::default(),
            publish,
            overridden: Arc::default(),
        }
    }

    /// Whether misses go to a remote API (and `request` matters).
    pub fn is_remote(&self) -> bool {
        matches!(&*self.source, Source::Remote(_))
    }

    /// The remote tier's counters, if remote.
    pub fn remote_stats(&self) -> Option<Arc<RemoteStats>> {
        match &*self.source {
            Source::Remote(r) => Some(r.stats.clone()),
            Source::Local(_) => None,
        }
    }

    /// Remote providers: asks for every missing or stale key among `arns`.
    /// Stale entries are refreshed in the background, never waited for; if
    /// some are missing (or changed by the trail), the [`TagWait`] for them,
    /// which ends when they are answered or `budget` has passed. Counts each
    /// key as a hit or a miss.
    pub fn request<'a>(
        &self,
        arns: impl IntoIterator<Item = &'a str>,
        budget: Duration,
    ) -> Option<TagWait> {
        self.ask(arns, budget, true)
    }

    /// A batch's second look after its wait: keys still missing are asked
    /// again (nothing waits); not counted again as hits or misses.
    pub fn recheck<'a>(&self, arns: impl IntoIterator<Item = &'a str>) {
        let none = self.ask(arns, Duration::ZERO, false);
        debug_assert!(none.is_none());
    }

    fn ask<'a>(
        &self,
        arns: impl IntoIterator<Item = &'a str>,
        budget: Duration,
        count: bool,
    ) -> Option<TagWait> {
        let Source::Remote(remote) = &*self.source else {
            return None;
        };
        let deadline = Instant::now() + budget;
        let mut wait: Vec<Arc<str>> = Vec::new();
        for arn in arns {
            let entry = self.cache.get(arn);
            if count {
                self.stats
                    .count(entry.as_ref().is_some_and(|e| !e.invalidated));
            }
            match entry {
                Some(e) if e.fresh(&self.ttls) => {}
                Some(e) if e.invalidated => {
                    if remote.request(arn) {
                        wait.push(Arc::from(arn));
                    }
                }
                Some(_) => {
                    remote.request(arn);
                }
                None => {
                    if remote.request(arn) {
                        wait.push(Arc::from(arn));
                    }
                }
            }
        }
        (!wait.is_empty() && !budget.is_zero())
            .then(|| TagWait::new(remote.clone(), wait, deadline))
    }

    /// The tags of a resource. In-memory providers (the tags file): their
    /// answer, unless tags were put for the key. Other local providers:
    /// concurrent misses for one key fetch once. Remote providers: what the cache holds (stale entries are
    /// refreshed in the background), else [`Lookup::Pending`].
    pub fn get(&self, arn: &ResourceKey) -> Lookup {
        match &*self.source {
            Source::Local(provider) if provider.in_memory() => {
                if self.overridden.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(hit) = self.cache.get(arn) {
                        self.stats.count(true);
                        return hit.lookup;
                    }
                }
                provider.lookup(arn)
            }
            Source::Local(provider) => {
                if let Some(hit) = self.cache.get(arn) {
                    self.stats.count(true);
                    return hit.lookup;
                }
                self.stats.count(false);
                self.cache
                    .get_with(Arc::from(arn), || Entry::new(provider.lookup(arn)))
                    .lookup
            }
            Source::Remote(remote) => match self.cache.get(arn) {
                Some(e) => {
                    if !e.fresh(&self.ttls) {
                        remote.request(arn);
                    }
                    e.lookup
                }
                None => {
                    remote.request(arn);
                    Lookup::Pending
                }
            },
        }
    }

    /// Drops a cached entry (a tag change seen in the trail).
    /// Marks an entry changed (a tag change seen in the trail): local
    /// providers drop it; remote ones keep serving it to events racing the
    /// change while the next batch that needs it refetches and waits.
    pub fn invalidate(&self, arn: &ResourceKey) {
        match &*self.source {
            Source::Local(_) => self.cache.invalidate(arn),
            Source::Remote(r) => {
                if let Some(mut e) = self.cache.get(arn) {
                    e.invalidated = true;
                    self.cache.insert(Arc::from(arn), e);
                }
                r.invalidated(arn);
            }
        }
    }

    /// Stores tags learned elsewhere (a CMDB push, the replicated tier).
    pub fn put(&self, arn: &ResourceKey, tags: BTreeMap<String, String>) {
        let lookup = if tags.is_empty() {
            Lookup::None
        } else {
            Lookup::Tags(TagSet::new(tags))
        };
        self.cache.insert(Arc::from(arn), Entry::new(lookup));
        self.overridden
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Everything fetched from the remote APIs is also handed to `publish`
    /// (the cluster shares it, so a fetch by any node serves all).
    pub fn set_publisher(&self, publish: Publish) {
        *self.publish.lock() = Some(publish);
    }

    /// The positive TTL.
    pub fn ttl(&self) -> Duration {
        self.ttls.tags
    }

    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Counting(AtomicU64);
    impl TagProvider for Counting {
        fn lookup(&self, key: &ResourceKey) -> Lookup {
            self.0.fetch_add(1, Ordering::Relaxed);
            if key.ends_with("tagged") {
                Lookup::Tags(TagSet::new(
                    [("project".to_string(), "x".to_string())].into(),
                ))
            } else {
                Lookup::None
            }
        }
    }

    #[test]
    fn cache_calls_the_provider_once_per_key() {
        let p = Arc::new(Counting(AtomicU64::new(0)));
        let c = TagCache::new(p.clone(), 1000, Duration::from_secs(60));
        let k = "a/tagged";
        for _ in 0..10 {
            assert!(matches!(c.get(k), Lookup::Tags(_)));
            assert_eq!(c.get("b"), Lookup::None);
        }
        assert_eq!(p.0.load(Ordering::Relaxed), 2);
        c.invalidate(k);
        c.get(k);
        assert_eq!(p.0.load(Ordering::Relaxed), 3);
    }

    struct InMemory(Counting);
    impl TagProvider for InMemory {
        fn lookup(&self, key: &ResourceKey) -> Lookup {
            self.0.lookup(key)
        }
        fn in_memory(&self) -> bool {
            true
        }
    }

    #[test]
    fn an_in_memory_provider_is_asked_directly_and_put_tags_win() {
        let p = Arc::new(InMemory(Counting(AtomicU64::new(0))));
        let c = TagCache::new(p.clone(), 1000, Duration::from_secs(60));
        for _ in 0..10 {
            assert!(matches!(c.get("a/tagged"), Lookup::Tags(_)));
        }
        assert_eq!(p.0 .0.load(Ordering::Relaxed), 10, "no cache in front");
        assert_eq!(c.entry_count(), 0);
        c.put("a/tagged", [("project".into(), "put".into())].into());
        c.put("b", [("team".into(), "t".into())].into());
        let Lookup::Tags(t) = c.get("a/tagged") else {
            panic!("put tags are served")
        };
        assert_eq!(t.get("project").map(String::as_str), Some("put"));
        assert!(matches!(c.get("b"), Lookup::Tags(_)));
        assert!(
            matches!(c.get("c/tagged"), Lookup::Tags(_)),
            "the file still answers"
        );
        c.invalidate("a/tagged");
        assert!(matches!(c.get("a/tagged"), Lookup::Tags(t) if t.get("project").unwrap() == "x"));
    }
}
