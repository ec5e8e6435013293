//! `--data-dir`: what devstack's SLS server keeps across restarts.
//!
//! * `meta.json`: projects, logstores, shards (ranges, status, lineage, cursor
//!   base), consumer groups with their checkpoints. Rewritten whole (temp file,
//!   then rename) after each change; it is small.
//! * `groups/{project}/{logstore}/{shard}.log`: the shard's log groups, appended
//!   as `[u32 LE receive time][u32 LE length][LogGroup bytes]`, flushed per put.
//!
//! Consumer liveness (who holds which shard) is not kept: consumers re-register
//! with their next heartbeat, as they would after a server failover.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::sls::consumer_group::{Checkpoint, ConsumerGroup};
use crate::sls::store::{
    Logstore, LogstoreConfig, Project, Shard, ShardData, ShardStatus, Store, StoredGroup,
};

#[derive(Serialize, Deserialize)]
struct MetaFile {
    projects: Vec<ProjectMeta>,
}

#[derive(Serialize, Deserialize)]
struct ProjectMeta {
    name: String,
    description: String,
    create_time: u32,
    last_modify_time: u32,
    logstores: Vec<LogstoreMeta>,
    #[serde(default)]
    saved_searches: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct LogstoreMeta {
    name: String,
    config: LogstoreConfig,
    shard_count: u32,
    create_time: u32,
    last_modify_time: u32,
    next_shard_id: u32,
    shards: Vec<ShardMeta>,
    consumer_groups: Vec<GroupMeta>,
    #[serde(default)]
    index: Option<serde_json::Value>,
    #[serde(default)]
    index_modify_time: u32,
}

#[derive(Serialize, Deserialize)]
struct ShardMeta {
    id: u32,
    status: ShardStatus,
    begin_key: String,
    end_key: String,
    create_time: u32,
    parents: Vec<u32>,
    base: i64,
}

#[derive(Serialize, Deserialize)]
struct GroupMeta {
    name: String,
    timeout: u32,
    order: bool,
    checkpoints: BTreeMap<u32, Checkpoint>,
    over: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The data directory and its open shard files.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    writers: Mutex<HashMap<PathBuf, BufWriter<File>>>,
}

impl DataDir {
    pub fn open(root: &Path) -> Result<Self, PersistError> {
        fs::create_dir_all(root.join("groups")).map_err(io(root))?;
        Ok(DataDir {
            root: root.to_owned(),
            writers: Mutex::default(),
        })
    }

    fn shard_file(&self, project: &str, logstore: &str, shard: u32) -> PathBuf {
        self.root
            .join("groups")
            .join(project)
            .join(logstore)
            .join(format!("{shard}.log"))
    }

    pub fn append_group(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        receive_time: u32,
        bytes: &[u8],
    ) -> Result<(), PersistError> {
        let path = self.shard_file(project, logstore, shard);
        let mut writers = self.writers.lock();
        if !writers.contains_key(&path) {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io(dir))?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            writers.insert(path.clone(), BufWriter::new(f));
        }
        let w = writers.get_mut(&path).expect("inserted above");
        let len = u32::try_from(bytes.len()).map_err(|_| PersistError::Corrupt {
            path: path.clone(),
            message: "log group over 4 GiB".into(),
        })?;
        w.write_all(&receive_time.to_le_bytes())
            .and_then(|_| w.write_all(&len.to_le_bytes()))
            .and_then(|_| w.write_all(bytes))
            .and_then(|_| w.flush())
            .map_err(io(&path))
    }

    pub fn save_meta(&self, store: &Store) -> Result<(), PersistError> {
        let meta = MetaFile {
            projects: store
                .projects
                .values()
                .map(|p| ProjectMeta {
                    name: p.name.clone(),
                    description: p.description.clone(),
                    create_time: p.create_time,
                    last_modify_time: p.last_modify_time,
                    logstores: p
                        .logstores
                        .values()
                        .map(|l| LogstoreMeta {
                            name: l.name.clone(),
                            config: l.config.clone(),
                            shard_count: l.shard_count,
                            create_time: l.create_time,
                            last_modify_time: l.last_modify_time,
                            next_shard_id: l.next_shard_id,
                            shards: l
                                .shards
                                .values()
                                .map(|s| ShardMeta {
                                    id: s.id,
                                    status: s.status,
                                    begin_key: format!("{:032x}", s.begin_key),
                                    end_key: format!("{:032x}", s.end_key),
                                    create_time: s.create_time,
                                    parents: s.parents.clone(),
                                    base: s.base,
                                })
                                .collect(),
                            consumer_groups: l
                                .consumer_groups
                                .values()
                                .map(|g| GroupMeta {
                                    name: g.name.clone(),
                                    timeout: g.timeout_secs,
                                    order: g.order,
                                    checkpoints: g.checkpoints.clone(),
                                    over: g.over.iter().copied().collect(),
                                })
                                .collect(),
                            index: l.index.clone(),
                            index_modify_time: l.index_modify_time,
                        })
                        .collect(),
                    saved_searches: p.saved_searches.clone(),
                })
                .collect(),
        };
        let path = self.root.join("meta.json");
        let tmp = self.root.join("meta.json.tmp");
        let json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
        fs::write(&tmp, json).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Loads what an earlier run left, or an empty store.
    pub fn load(&self) -> Result<Store, PersistError> {
        let path = self.root.join("meta.json");
        let raw = match fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Store::default()),
            Err(e) => return Err(io(&path)(e)),
        };
        let meta: MetaFile = serde_json::from_slice(&raw).map_err(|e| PersistError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut store = Store::default();
        for p in meta.projects {
            let mut logstores = BTreeMap::new();
            for l in p.logstores {
                let mut ls = Logstore::new(&l.name, l.shard_count, l.config, l.create_time);
                ls.last_modify_time = l.last_modify_time;
                ls.next_shard_id = l.next_shard_id;
                ls.index = l.index;
                ls.index_modify_time = l.index_modify_time;
                ls.shards.clear();
                for s in l.shards {
                    let key = |k: &str| {
                        u128::from_str_radix(k, 16).map_err(|e| PersistError::Corrupt {
                            path: path.clone(),
                            message: format!("shard key {k:?}: {e}"),
                        })
                    };
                    let mut shard = Shard::new(
                        s.id,
                        key(&s.begin_key)?,
                        key(&s.end_key)?,
                        s.create_time,
                        s.parents,
                    );
                    shard.status = s.status;
                    shard.base = s.base;
                    shard.data = Arc::new(RwLock::new(self.read_groups(&p.name, &l.name, s.id)?));
                    ls.shards.insert(s.id, shard);
                }
                for g in l.consumer_groups {
                    let mut group = ConsumerGroup::new(&g.name, g.timeout, g.order);
                    group.checkpoints = g.checkpoints;
                    group.over = g.over.into_iter().collect();
                    ls.consumer_groups.insert(g.name, group);
                }
                logstores.insert(l.name, ls);
            }
            store.projects.insert(
                p.name.clone(),
                Project {
                    name: p.name,
                    description: p.description,
                    create_time: p.create_time,
                    last_modify_time: p.last_modify_time,
                    logstores,
                    saved_searches: p.saved_searches,
                },
            );
        }
        Ok(store)
    }

    fn read_groups(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
    ) -> Result<ShardData, PersistError> {
        let path = self.shard_file(project, logstore, shard);
        let mut raw = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut raw).map_err(io(&path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ShardData::default()),
            Err(e) => return Err(io(&path)(e)),
        }
        let raw = Bytes::from(raw);
        let mut groups = Vec::new();
        let mut at = 0usize;
        while at + 8 <= raw.len() {
            let t = u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
            let len = u32::from_le_bytes(raw[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
            if at + 8 + len > raw.len() {
                // A torn final record (killed mid-write): the put was never acknowledged.
                tracing::warn!(path = %path.display(), "dropping a torn record at the end of the file");
                break;
            }
            groups.push(StoredGroup {
                receive_time: t,
                bytes: raw.slice(at + 8..at + 8 + len),
            });
            at += 8 + len;
        }
        Ok(ShardData { groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("devstack-persist-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let d = DataDir::open(&dir).unwrap();
        let mut store = Store::default();
        store.create_project("proj", "", 1).unwrap();
        store
            .create_logstore("proj", "ls", 2, LogstoreConfig::default(), 1)
            .unwrap();
        store
            .projects
            .get_mut("proj")
            .unwrap()
            .logstores
            .get_mut("ls")
            .unwrap()
            .split(0, "40000000000000000000000000000000", 2)
            .unwrap();
        d.save_meta(&store).unwrap();
        d.append_group("proj", "ls", 1, 7, b"abc").unwrap();
        d.append_group("proj", "ls", 1, 8, b"defg").unwrap();
        drop(d);

        let back = DataDir::open(&dir).unwrap().load().unwrap();
        let ls = back.project("proj").unwrap().logstore("ls").unwrap();
        assert_eq!(ls.shards.len(), 4);
        assert_eq!(ls.shards[&0].status, ShardStatus::ReadOnly);
        let g = ls.shards[&1].data.read();
        assert_eq!(g.groups.len(), 2);
        assert_eq!(&g.groups[1].bytes[..], b"defg");
        assert_eq!(g.groups[1].receive_time, 8);
        fs::remove_dir_all(&dir).unwrap();
    }
}
