//! Resource tags: the [`TagCache`] the enrichers ask, and the providers behind it.
//!
//! # Layout
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | [`TagCache`] (moka in front), [`ResourceKey`], [`TagProvider`] |
//! | `static_file.rs` | tags from a JSON or CSV file, reloaded when it changes |
//! | `resource_types.rs` | ActionTrail resource types → Tag-service product and type |
//!
//! The cloud providers (Tag API, per-product APIs, STS, AWS tagging) and the
//! raft-replicated tier arrive with their issues; they implement
//! [`TagProvider`], and the enrichers keep calling [`TagCache::get`].

mod resource_types;
pub mod sign;
mod static_file;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use resource_types::{arn_into, arn_parts, builtin as builtin_kinds, ResourceKind};
pub use static_file::{StaticTags, TagsFileError};

/// A resource's tags, shared (cheap to clone).
pub type TagSet = Arc<BTreeMap<String, String>>;

/// What identifies a resource for tag lookups: its ARN
/// (`arn:acs:ecs:cn-hangzhou:123:instance/i-1`, or a RAM `acs:ram::123:user/x`).
pub type ResourceKey = str;

/// The outcome of one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Tags(TagSet),
    /// The provider knows the resource has no tags (or does not exist).
    None,
}

/// A source of tags. Lookups must be cheap or cached by the implementation;
/// the enricher calls them on its own thread.
pub trait TagProvider: Send + Sync + 'static {
    fn lookup(&self, arn: &ResourceKey) -> Lookup;
}

/// moka in front of a provider: one entry per resource, bounded, with TTLs.
#[derive(Clone)]
pub struct TagCache {
    cache: moka::sync::Cache<Arc<str>, Lookup>,
    provider: Arc<dyn TagProvider>,
}

impl TagCache {
    pub fn new(provider: Arc<dyn TagProvider>, capacity: u64, ttl: Duration) -> Self {
        TagCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            provider,
        }
    }

    /// The tags of a resource. Concurrent misses for one key fetch once.
    pub fn get(&self, arn: &ResourceKey) -> Lookup {
        if let Some(hit) = self.cache.get(arn) {
            return hit;
        }
        self.cache
            .get_with(Arc::from(arn), || self.provider.lookup(arn))
    }

    /// Drops a cached entry (a tag change seen in the trail).
    pub fn invalidate(&self, arn: &ResourceKey) {
        self.cache.invalidate(arn);
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
                Lookup::Tags(Arc::new([("project".to_string(), "x".to_string())].into()))
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
}
