//! Tags from a file: JSON (`{"resources":[{"arn":…,"tags":{…}}]}`, what
//! `trail-devstack gen --tags-out` writes) or CSV (`arn,key,value` rows).
//! The file is re-read when its modification time changes (checked at most
//! once per `recheck` interval), so operators can edit it in place.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::RwLock;
use serde::Deserialize;

use crate::tags::{Lookup, ResourceKey, TagProvider, TagSet};

#[derive(Debug, thiserror::Error)]
pub enum TagsFileError {
    #[error("tags file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tags file {path}: {message}")]
    Format { path: PathBuf, message: String },
}

#[derive(Deserialize)]
struct JsonFile {
    resources: Vec<JsonResource>,
}

#[derive(Deserialize)]
struct JsonResource {
    arn: String,
    tags: BTreeMap<String, String>,
}

struct Loaded {
    by_arn: Table,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// A [`TagProvider`] over a tags file.
pub struct StaticTags {
    path: PathBuf,
    recheck: Duration,
    loaded: RwLock<Loaded>,
}

impl StaticTags {
    pub fn open(path: &Path, recheck: Duration) -> Result<Self, TagsFileError> {
        let (by_arn, modified) = load(path)?;
        Ok(StaticTags {
            path: path.to_owned(),
            recheck,
            loaded: RwLock::new(Loaded {
                by_arn,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    pub fn len(&self) -> usize {
        self.loaded.read().by_arn.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every tag key the file names, sorted.
    pub fn keys(&self) -> std::collections::BTreeSet<String> {
        let l = self.loaded.read();
        l.by_arn.values().flat_map(|t| t.keys().cloned()).collect()
    }

    fn maybe_reload(&self) {
        if self.loaded.read().checked.elapsed() < self.recheck {
            return;
        }
        let mut l = self.loaded.write();
        l.checked = Instant::now();
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == l.modified {
            return;
        }
        match load(&self.path) {
            Ok((by_arn, modified)) => {
                tracing::info!(path = %self.path.display(), resources = by_arn.len(), "tags file reloaded");
                l.by_arn = by_arn;
                l.modified = modified;
            }
            // Keep serving the last good file.
            Err(e) => tracing::warn!(error = %e, "tags file not reloaded"),
        }
    }
}

impl TagProvider for StaticTags {
    fn lookup(&self, arn: &ResourceKey) -> Lookup {
        let answer = |l: &Loaded| match l.by_arn.get(arn) {
            Some(t) if !t.is_empty() => Lookup::Tags(t.clone()),
            _ => Lookup::None,
        };
        {
            let l = self.loaded.read();
            if l.checked.elapsed() < self.recheck {
                return answer(&l);
            }
        }
        self.maybe_reload();
        answer(&self.loaded.read())
    }

    fn in_memory(&self) -> bool {
        true
    }
}

/// ARN → tags, hashed with foldhash: ARNs come from the trail, but the table
/// is the operator's file, so a keyed DoS-resistant hash buys nothing here.
pub(crate) type Table = HashMap<Arc<str>, TagSet, foldhash::fast::RandomState>;

fn load(path: &Path) -> Result<(Table, Option<SystemTime>), TagsFileError> {
    let io = |source| TagsFileError::Io {
        path: path.to_owned(),
        source,
    };
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path).map_err(io)?;
    let format = |message: String| TagsFileError::Format {
        path: path.to_owned(),
        message,
    };
    let is_json =
        path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    Ok((parse(&text, is_json).map_err(format)?, modified))
}

/// A tags file's text: JSON (`{"resources": [{"arn", "tags"}]}`) or CSV
/// lines `arn,key,value`.
pub(crate) fn parse(text: &str, is_json: bool) -> Result<Table, String> {
    let mut table: HashMap<Arc<str>, BTreeMap<String, String>> = HashMap::new();
    if is_json {
        let f: JsonFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for r in f.resources {
            table.entry(r.arn.into()).or_default().extend(r.tags);
        }
    } else {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("arn,")) {
                continue;
            }
            let mut cols = line.splitn(3, ',');
            let (Some(arn), Some(k), Some(v)) = (cols.next(), cols.next(), cols.next()) else {
                return Err(format!("line {}: expected arn,key,value", n + 1));
            };
            table
                .entry(arn.trim().into())
                .or_default()
                .insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    // Resources of one project and environment carry the same tags: one
    // shared set each (less memory, and rendered once for every resource).
    let mut sets: HashMap<BTreeMap<String, String>, TagSet> = HashMap::new();
    Ok(table
        .into_iter()
        .map(|(k, v)| {
            let set = sets
                .entry(v)
                .or_insert_with_key(|v| TagSet::new(v.clone()))
                .clone();
            (k, set)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_csv_and_reload() {
        let dir = std::env::temp_dir().join(format!("trail-tags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("t.json");
        std::fs::write(
            &json,
            r#"{"resources":[{"arn":"arn:acs:ecs:r:1:instance/i-1","tags":{"project":"p1"}}]}"#,
        )
        .unwrap();
        let t = StaticTags::open(&json, Duration::ZERO).unwrap();
        let key = "arn:acs:ecs:r:1:instance/i-1";
        assert_eq!(
            t.lookup(key),
            Lookup::Tags(TagSet::new([("project".into(), "p1".into())].into()))
        );
        assert_eq!(t.lookup("nope"), Lookup::None);

        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(
            &json,
            r#"{"resources":[{"arn":"arn:acs:ecs:r:1:instance/i-1","tags":{"project":"p2"}}]}"#,
        )
        .unwrap();
        let f = std::fs::File::options().write(true).open(&json).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            t.lookup(key),
            Lookup::Tags(TagSet::new([("project".into(), "p2".into())].into()))
        );

        let csv = dir.join("t.csv");
        std::fs::write(
            &csv,
            "arn,key,value\nacs:ram::1:user/bob,team,core\nacs:ram::1:user/bob,env,prod\n\
             acs:ram::1:user/amy,env,prod\nacs:ram::1:user/amy,team,core\nacs:ram::1:user/cy,team,x\n",
        )
        .unwrap();
        let c = StaticTags::open(&csv, Duration::from_secs(60)).unwrap();
        let (Lookup::Tags(bob), Lookup::Tags(amy), Lookup::Tags(cy)) = (
            c.lookup("acs:ram::1:user/bob"),
            c.lookup("acs:ram::1:user/amy"),
            c.lookup("acs:ram::1:user/cy"),
        ) else {
            panic!("all three have tags");
        };
        assert_eq!(bob.len(), 2);
        // Equal tags are one shared set; different ones are not.
        assert!(TagSet::ptr_eq(&bob, &amy));
        assert!(!TagSet::ptr_eq(&bob, &cy));
        std::fs::write(&csv, "only-one-column\n").unwrap();
        assert!(matches!(
            StaticTags::open(&csv, Duration::ZERO),
            Err(TagsFileError::Format { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
