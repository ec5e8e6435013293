//! The data devstack's SLS server holds: projects, logstores, shards and their
//! log groups, consumer groups.
//!
//! Facts it keeps (see the protocol notes, §3):
//! * Shard key ranges are `[begin, end)` over the 128-bit MD5 space, written as
//!   32 lowercase hex digits; the last shard ends at `ffff…ffff`.
//! * A shard's cursors are consecutive integers, one per log group:
//!   `base + sequence`, where `base` is the shard's creation time × 10⁹ (so they
//!   look like real ones). `begin` is the first group, `end` the next to write.
//! * Log groups are stored as the bytes the client sent (plus server tags when
//!   the logstore has `appendMeta`), so a PullLogs body is the concatenation of
//!   stored groups: no re-encoding on the read path.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::sls::consumer_group::ConsumerGroup;
use crate::sls::error::ApiError;

/// Consumer groups allowed per logstore (current SLS docs).
pub const MAX_CONSUMER_GROUPS: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardStatus {
    ReadWrite,
    ReadOnly,
}

/// One stored log group.
#[derive(Debug, Clone)]
pub struct StoredGroup {
    /// Server receive time, unix seconds; never decreases within a shard.
    pub receive_time: u32,
    /// The encoded `LogGroup`.
    pub bytes: Bytes,
}

/// A shard's log groups, behind their own lock so reads of one shard do not
/// wait for writes to another.
#[derive(Debug, Default)]
pub struct ShardData {
    pub groups: Vec<StoredGroup>,
}

#[derive(Debug, Clone)]
pub struct Shard {
    pub id: u32,
    pub status: ShardStatus,
    pub begin_key: u128,
    /// Exclusive, except that `u128::MAX` closes the key space.
    pub end_key: u128,
    pub create_time: u32,
    /// The shard(s) this one was split or merged from (for ordered consumption).
    pub parents: Vec<u32>,
    /// Cursor of sequence 0.
    pub base: i64,
    pub data: Arc<RwLock<ShardData>>,
}

impl Shard {
    pub fn new(
        id: u32,
        begin_key: u128,
        end_key: u128,
        create_time: u32,
        parents: Vec<u32>,
    ) -> Shard {
        Shard {
            id,
            status: ShardStatus::ReadWrite,
            begin_key,
            end_key,
            create_time,
            parents,
            base: i64::from(create_time) * 1_000_000_000,
            data: Arc::default(),
        }
    }

    pub fn contains_key(&self, key: u128) -> bool {
        key >= self.begin_key && (key < self.end_key || self.end_key == u128::MAX)
    }

    pub fn len(&self) -> i64 {
        self.data.read().groups.len() as i64
    }

    pub fn end_cursor(&self) -> i64 {
        self.base + self.len()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "shardID": self.id,
            "status": self.status,
            "inclusiveBeginKey": hex_key(self.begin_key),
            "exclusiveEndKey": hex_key(self.end_key),
            "createTime": self.create_time,
        })
    }
}

/// Logstore settings as CreateLogstore takes them and GetLogstore returns them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogstoreConfig {
    pub ttl: u32,
    pub enable_tracking: bool,
    pub auto_split: bool,
    pub max_split_shard: u32,
    pub append_meta: bool,
    pub telemetry_type: String,
    pub mode: String,
}

impl Default for LogstoreConfig {
    fn default() -> Self {
        LogstoreConfig {
            ttl: 30,
            enable_tracking: false,
            auto_split: false,
            max_split_shard: 64,
            append_meta: false,
            telemetry_type: String::new(),
            mode: "standard".into(),
        }
    }
}

#[derive(Debug)]
pub struct Logstore {
    pub name: String,
    pub config: LogstoreConfig,
    pub shard_count: u32,
    pub create_time: u32,
    pub last_modify_time: u32,
    pub shards: BTreeMap<u32, Shard>,
    pub next_shard_id: u32,
    pub consumer_groups: BTreeMap<String, ConsumerGroup>,
    /// The index config as CreateIndex/UpdateIndex gave it (validated).
    pub index: Option<serde_json::Value>,
    pub index_modify_time: u32,
    lb_next: usize,
}

impl Logstore {
    pub fn new(name: &str, shard_count: u32, config: LogstoreConfig, now: u32) -> Logstore {
        let n = u128::from(shard_count.max(1));
        let shards = (0..n)
            .map(|i| {
                let id = i as u32;
                let end = if i + 1 == n {
                    u128::MAX
                } else {
                    split_point(i + 1, n)
                };
                (id, Shard::new(id, split_point(i, n), end, now, Vec::new()))
            })
            .collect();
        Logstore {
            name: name.to_owned(),
            config,
            shard_count: shard_count.max(1),
            create_time: now,
            last_modify_time: now,
            shards,
            next_shard_id: shard_count.max(1),
            consumer_groups: BTreeMap::new(),
            index: None,
            index_modify_time: 0,
            lb_next: 0,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "logstoreName": self.name,
            "ttl": c.ttl,
            "shardCount": self.shards.values().filter(|s| s.status == ShardStatus::ReadWrite).count(),
            "enable_tracking": c.enable_tracking,
            "autoSplit": c.auto_split,
            "maxSplitShard": c.max_split_shard,
            "appendMeta": c.append_meta,
            "telemetryType": c.telemetry_type,
            "mode": c.mode,
            "createTime": self.create_time,
            "lastModifyTime": self.last_modify_time,
        })
    }

    pub fn shard(&self, id: u32) -> Result<&Shard, ApiError> {
        self.shards
            .get(&id)
            .ok_or_else(|| ApiError::shard_not_exist(id))
    }

    /// The shard a load-balanced PutLogs goes to: round robin over readwrite shards.
    pub fn pick_lb(&mut self) -> Result<u32, ApiError> {
        let writable: Vec<u32> = self.writable().collect();
        if writable.is_empty() {
            return Err(ApiError::bad(
                "LogStoreWithoutShard",
                "logstore has no writable shard",
            ));
        }
        let id = writable[self.lb_next % writable.len()];
        self.lb_next = self.lb_next.wrapping_add(1);
        Ok(id)
    }

    /// The readwrite shard whose range holds `key` (up to 32 hex digits; a shorter
    /// key is the prefix of one, padded with zeros).
    pub fn route(&self, key: &str) -> Result<u32, ApiError> {
        let key = parse_key(key).ok_or_else(|| {
            ApiError::bad(
                "ParameterInvalid",
                format!("key {key:?} is not a hex hash key"),
            )
        })?;
        self.shards
            .values()
            .find(|s| s.status == ShardStatus::ReadWrite && s.contains_key(key))
            .map(|s| s.id)
            .ok_or_else(|| ApiError::bad("LogStoreWithoutShard", "no writable shard holds the key"))
    }

    fn writable(&self) -> impl Iterator<Item = u32> + '_ {
        self.shards
            .values()
            .filter(|s| s.status == ShardStatus::ReadWrite)
            .map(|s| s.id)
    }

    /// SplitShard: `id` turns readonly; two new readwrite shards cover its range.
    pub fn split(&mut self, id: u32, key: &str, now: u32) -> Result<Vec<u32>, ApiError> {
        let key_value = parse_key(key).filter(|_| key.len() == 32).ok_or_else(|| {
            ApiError::bad(
                "ParameterInvalid",
                format!("split key {key:?} must be 32 hex digits"),
            )
        })?;
        let parent = self.shard(id)?.clone();
        if parent.status != ShardStatus::ReadWrite {
            return Err(ApiError::bad(
                "ParameterInvalid",
                format!("shard {id} is readonly"),
            ));
        }
        if key_value <= parent.begin_key || key_value >= parent.end_key {
            return Err(ApiError::bad(
                "ParameterInvalid",
                format!("split key {key} is not inside shard {id}'s range"),
            ));
        }
        let (a, b) = (self.next_shard_id, self.next_shard_id + 1);
        self.next_shard_id += 2;
        self.shards.get_mut(&id).expect("checked above").status = ShardStatus::ReadOnly;
        self.shards
            .insert(a, Shard::new(a, parent.begin_key, key_value, now, vec![id]));
        self.shards
            .insert(b, Shard::new(b, key_value, parent.end_key, now, vec![id]));
        self.last_modify_time = now;
        Ok(vec![id, a, b])
    }

    /// MergeShard: `id` and the readwrite shard right after it turn readonly; one
    /// new shard covers both ranges.
    pub fn merge(&mut self, id: u32, now: u32) -> Result<Vec<u32>, ApiError> {
        let left = self.shard(id)?.clone();
        if left.status != ShardStatus::ReadWrite {
            return Err(ApiError::bad(
                "ParameterInvalid",
                format!("shard {id} is readonly"),
            ));
        }
        let right = self
            .shards
            .values()
            .find(|s| s.status == ShardStatus::ReadWrite && s.begin_key == left.end_key)
            .cloned()
            .ok_or_else(|| {
                ApiError::bad(
                    "ParameterInvalid",
                    format!("shard {id} has no adjacent readwrite shard"),
                )
            })?;
        let m = self.next_shard_id;
        self.next_shard_id += 1;
        for s in [left.id, right.id] {
            self.shards.get_mut(&s).expect("exists").status = ShardStatus::ReadOnly;
        }
        self.shards.insert(
            m,
            Shard::new(
                m,
                left.begin_key,
                right.end_key,
                now,
                vec![left.id, right.id],
            ),
        );
        self.last_modify_time = now;
        Ok(vec![left.id, right.id, m])
    }
}

#[derive(Debug)]
pub struct Project {
    pub name: String,
    pub description: String,
    pub create_time: u32,
    pub last_modify_time: u32,
    pub logstores: BTreeMap<String, Logstore>,
    /// Saved searches by name, as CreateSavedSearch gave them.
    pub saved_searches: BTreeMap<String, serde_json::Value>,
}

impl Project {
    pub fn json(&self, region: &str) -> serde_json::Value {
        serde_json::json!({
            "projectName": self.name,
            "status": "Normal",
            "description": self.description,
            "region": region,
            "owner": "devstack",
            "createTime": self.create_time.to_string(),
            "lastModifyTime": self.last_modify_time.to_string(),
            "dataRedundancyType": "LRS",
            "resourceGroupId": "",
        })
    }

    pub fn logstore(&self, name: &str) -> Result<&Logstore, ApiError> {
        self.logstores
            .get(name)
            .ok_or_else(|| ApiError::logstore_not_exist(name))
    }

    pub fn logstore_mut(&mut self, name: &str) -> Result<&mut Logstore, ApiError> {
        self.logstores
            .get_mut(name)
            .ok_or_else(|| ApiError::logstore_not_exist(name))
    }
}

/// All projects.
#[derive(Debug, Default)]
pub struct Store {
    pub projects: BTreeMap<String, Project>,
}

impl Store {
    pub fn project(&self, name: &str) -> Result<&Project, ApiError> {
        self.projects
            .get(name)
            .ok_or_else(|| ApiError::project_not_exist(name))
    }

    pub fn project_mut(&mut self, name: &str) -> Result<&mut Project, ApiError> {
        self.projects
            .get_mut(name)
            .ok_or_else(|| ApiError::project_not_exist(name))
    }

    pub fn create_project(
        &mut self,
        name: &str,
        description: &str,
        now: u32,
    ) -> Result<(), ApiError> {
        check_name("project", name, 3, 63)?;
        if self.projects.contains_key(name) {
            return Err(ApiError::bad(
                "ProjectAlreadyExist",
                format!("Project {name} already exist"),
            ));
        }
        self.projects.insert(
            name.to_owned(),
            Project {
                name: name.to_owned(),
                description: description.to_owned(),
                create_time: now,
                last_modify_time: now,
                logstores: BTreeMap::new(),
                saved_searches: BTreeMap::new(),
            },
        );
        Ok(())
    }

    pub fn create_logstore(
        &mut self,
        project: &str,
        name: &str,
        shard_count: u32,
        config: LogstoreConfig,
        now: u32,
    ) -> Result<(), ApiError> {
        check_name("logstore", name, 2, 63)?;
        if shard_count == 0 || shard_count > 256 {
            return Err(ApiError::bad(
                "ParameterInvalid",
                format!("shardCount {shard_count} must be 1..=256"),
            ));
        }
        let p = self.project_mut(project)?;
        if p.logstores.contains_key(name) {
            return Err(ApiError::bad(
                "LogStoreAlreadyExist",
                format!("logstore {name} already exists"),
            ));
        }
        p.logstores.insert(
            name.to_owned(),
            Logstore::new(name, shard_count, config, now),
        );
        Ok(())
    }
}

/// Appends a receive-time and client-IP tag to an encoded LogGroup (field 6),
/// as SLS does for logstores with `appendMeta`.
pub fn append_meta_tags(group: Bytes, receive_time: u32, client_ip: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(group.len() + 80);
    out.extend_from_slice(&group);
    for (k, v) in [
        ("__receive_time__", receive_time.to_string()),
        ("__client_ip__", client_ip.to_owned()),
    ] {
        let tag = trail_proto::sls::LogTag {
            key: Bytes::from(k),
            value: Bytes::from(v),
        };
        prost::encoding::message::encode(6, &tag, &mut out);
    }
    out.freeze()
}

/// The start of part `i` of `n` equal parts of the 128-bit key space: ⌊i·2¹²⁸/n⌋.
fn split_point(i: u128, n: u128) -> u128 {
    if i == 0 {
        return 0;
    }
    i * (u128::MAX / n) + (i * (u128::MAX % n + 1)) / n
}

pub fn hex_key(k: u128) -> String {
    format!("{k:032x}")
}

fn parse_key(key: &str) -> Option<u128> {
    if key.is_empty() || key.len() > 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{key:0<32}");
    u128::from_str_radix(&padded, 16).ok()
}

/// SLS names: lowercase letters, digits, `-` and `_`; must start and end with a
/// letter or digit.
pub fn check_name(what: &str, name: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let ok = (min..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(
            "ParameterInvalid",
            format!("{what} name {name:?} is invalid"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges_cover_the_md5_space() {
        for n in [1u32, 2, 3, 4, 7, 16] {
            let ls = Logstore::new("ls", n, LogstoreConfig::default(), 0);
            let shards: Vec<_> = ls.shards.values().collect();
            assert_eq!(shards[0].begin_key, 0);
            assert_eq!(shards.last().unwrap().end_key, u128::MAX);
            for w in shards.windows(2) {
                assert_eq!(
                    w[0].end_key, w[1].begin_key,
                    "n={n}: ranges must be contiguous"
                );
                assert!(w[0].begin_key < w[0].end_key);
            }
        }
        let two = Logstore::new("ls", 2, LogstoreConfig::default(), 0);
        assert_eq!(
            hex_key(two.shards[&1].begin_key),
            "80000000000000000000000000000000"
        );
        assert_eq!(
            hex_key(two.shards[&1].end_key),
            "ffffffffffffffffffffffffffffffff"
        );
    }

    #[test]
    fn split_routes_keys_to_children() {
        let mut ls = Logstore::new("ls", 2, LogstoreConfig::default(), 0);
        let ids = ls.split(0, "40000000000000000000000000000000", 5).unwrap();
        assert_eq!(ids, vec![0, 2, 3]);
        assert_eq!(ls.shards[&0].status, ShardStatus::ReadOnly);
        assert_eq!(ls.route("10000000000000000000000000000000").unwrap(), 2);
        assert_eq!(ls.route("50000000000000000000000000000000").unwrap(), 3);
        assert_eq!(ls.route("ffffffffffffffffffffffffffffffff").unwrap(), 1);
        assert!(
            ls.split(0, "20000000000000000000000000000000", 5).is_err(),
            "readonly"
        );
        assert!(
            ls.split(1, "10000000000000000000000000000000", 5).is_err(),
            "outside range"
        );
        let merged = ls.merge(2, 6).unwrap();
        assert_eq!(merged, vec![2, 3, 4]);
        assert_eq!(ls.route("10000000000000000000000000000000").unwrap(), 4);
        assert_eq!(ls.shards[&4].parents, vec![2, 3]);
    }

    #[test]
    fn names_follow_sls_rules() {
        assert!(check_name("project", "trail-demo", 3, 63).is_ok());
        assert!(check_name("project", "Trail", 3, 63).is_err());
        assert!(check_name("project", "-ab", 3, 63).is_err());
        assert!(check_name("logstore", "actiontrail_x", 2, 63).is_ok());
    }
}
