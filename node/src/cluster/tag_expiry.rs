//! Keeping the replicated tag tier bounded: which entries the leader
//! deletes, as ordinary `DeleteTags` commands, every [`EXPIRE_EVERY`].
//!
//! Applying a command never scans the tier: a `PutTags` costs what it
//! carries. The leader alone looks at every entry, every half minute, in
//! a clone of the tier (O(1): a persistent map) outside the state's lock,
//! and writes what it finds in chunks:
//!
//! * a cloud entry older than its age — `2 × tags.ttl_secs` for tags
//!   found, `tags.negative_ttl_secs` for "no tags" (a resource gone or
//!   never tagged: cheap to ask again, costly to keep for every ARN a
//!   trail ever named);
//! * past `cluster.max_tags`, the oldest cloud entries, until the tier
//!   fits. Tags put through the API are never expired nor evicted: they
//!   are the operator's, not a cache.
//!
//! An entry refreshed between the leader's look and its delete is deleted
//! all the same: a cache entry lost, fetched again on its next miss.

use std::time::Duration;

use super::types::TagRecord;

/// How often the leader looks.
pub const EXPIRE_EVERY: Duration = Duration::from_secs(30);

/// Resources per `DeleteTags` entry.
pub const DELETE_CHUNK: usize = 1_000;

/// The tier's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagLimits {
    /// Cloud entries with tags live this long (0: forever).
    pub max_age_ms: u64,
    /// Cloud entries without tags live this long (0: as `max_age_ms`).
    pub negative_max_age_ms: u64,
    /// The most entries the tier keeps (API entries count, but are never evicted).
    pub max_tags: u64,
}

/// The entries to delete at `now_ms`, expired first, then the oldest
/// cloud entries while the tier is over `max_tags`.
pub fn doomed<'a>(
    tags: impl IntoIterator<Item = (&'a String, &'a TagRecord)>,
    now_ms: u64,
    l: TagLimits,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut kept_cloud: Vec<(u64, &String)> = Vec::new();
    let mut entries = 0usize;
    for (arn, r) in tags {
        entries += 1;
        if r.origin != "cloud" {
            continue;
        }
        let limit = if r.tags.is_empty() && l.negative_max_age_ms > 0 {
            l.negative_max_age_ms
        } else {
            l.max_age_ms
        };
        if limit > 0 && now_ms.saturating_sub(r.updated_ms) > limit {
            out.push(arn.clone());
        } else {
            kept_cloud.push((r.updated_ms, arn));
        }
    }
    let left = entries - out.len();
    let over = (left as u64).saturating_sub(l.max_tags) as usize;
    if over > 0 {
        let over = over.min(kept_cloud.len());
        if over < kept_cloud.len() {
            kept_cloud.select_nth_unstable(over);
        }
        out.extend(kept_cloud[..over].iter().map(|(_, a)| (*a).clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rec(origin: &str, at: u64, tagged: bool) -> TagRecord {
        TagRecord {
            tags: if tagged {
                [("project".to_string(), "x".to_string())].into()
            } else {
                BTreeMap::new()
            },
            origin: origin.into(),
            updated_ms: at,
        }
    }

    const LIMITS: TagLimits = TagLimits {
        max_age_ms: 1_000,
        negative_max_age_ms: 100,
        max_tags: u64::MAX,
    };

    #[test]
    fn cloud_entries_expire_by_their_age_and_api_entries_never() {
        let tags = BTreeMap::from([
            ("fresh".to_string(), rec("cloud", 9_500, true)),
            ("old".to_string(), rec("cloud", 8_000, true)),
            ("gone".to_string(), rec("cloud", 9_850, false)),
            ("gone-fresh".to_string(), rec("cloud", 9_950, false)),
            ("api".to_string(), rec("api", 0, true)),
        ]);
        let mut d = doomed(&tags, 10_000, LIMITS);
        d.sort();
        assert_eq!(d, ["gone", "old"]);
        let forever = TagLimits {
            max_age_ms: 0,
            negative_max_age_ms: 0,
            max_tags: u64::MAX,
        };
        assert!(doomed(&tags, 10_000, forever).is_empty());
    }

    #[test]
    fn past_the_bound_the_oldest_cloud_entries_go() {
        let mut tags = BTreeMap::new();
        for i in 0..100u64 {
            tags.insert(format!("c{i:03}"), rec("cloud", 1_000 + i, true));
        }
        for i in 0..10u64 {
            tags.insert(format!("a{i}"), rec("api", 0, true));
        }
        let l = TagLimits {
            max_tags: 50,
            ..LIMITS
        };
        let mut d = doomed(&tags, 1_100, l);
        d.sort();
        let want: Vec<String> = (0..60).map(|i| format!("c{i:03}")).collect();
        assert_eq!(d, want, "60 oldest cloud entries: 110 − 50");
        // Only API entries over the bound: nothing to evict.
        let l = TagLimits {
            max_tags: 5,
            ..LIMITS
        };
        let api: BTreeMap<String, TagRecord> = (0..10)
            .map(|i| (format!("a{i}"), rec("api", 0, true)))
            .collect();
        assert!(doomed(&api, 1_100, l).is_empty());
    }

    #[test]
    fn expired_entries_count_toward_the_bound_once() {
        let mut tags = BTreeMap::new();
        for i in 0..10u64 {
            tags.insert(format!("old{i}"), rec("cloud", 0, true));
            tags.insert(format!("new{i}"), rec("cloud", 5_000 + i, true));
        }
        let l = TagLimits {
            max_tags: 8,
            ..LIMITS
        };
        let d = doomed(&tags, 5_100, l);
        assert_eq!(d.len(), 12, "10 expired, then 2 of the 10 left: {d:?}");
        assert!(d.contains(&"new0".to_string()) && d.contains(&"new1".to_string()));
    }
}
