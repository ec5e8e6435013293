//! The raft log on disk: a redb database in `{data_dir}/raft.redb`.
//!
//! Tables: `log` (index → entry), `meta` (vote, committed id, last purged id,
//! the latest snapshot). Every write commits with `Durability::Immediate`
//! (fsync) on a blocking thread before openraft is told it is flushed; the
//! vote is durable before `save_vote` returns. The last purged id is kept, so
//! a node restarts after compaction.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{NodeId, TypeConfig};

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(crate) type StoreResult<T> = Result<T, StorageError<NodeId>>;

pub(crate) fn io_err(
    make: fn(AnyError) -> StorageIOError<NodeId>,
) -> impl Fn(&dyn std::fmt::Display) -> StorageError<NodeId> {
    move |e| StorageError::IO {
        source: make(AnyError::error(e.to_string())),
    }
}

fn read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    io_err(StorageIOError::read_logs)(&e)
}

fn write_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    io_err(StorageIOError::write_logs)(&e)
}

/// Reads a meta value.
pub(crate) fn meta_get<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    match table.get(key).map_err(|e| e.to_string())? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| format!("meta {key}: {e}")),
        None => Ok(None),
    }
}

/// Writes meta values in one durable transaction.
pub(crate) fn meta_put(db: &Database, kv: &[(&str, Vec<u8>)]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::Immediate)?;
    {
        let mut t = txn.open_table(META)?;
        for (k, v) in kv {
            t.insert(*k, v.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

// openraft fixes the error type of its storage traits; its size is theirs.
#[allow(clippy::result_large_err)]
fn json<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(write_err)
}

/// Runs a redb write on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, redb::Error> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(write_err)?
        .map_err(write_err)
}

#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
    }

    #[allow(clippy::result_large_err)]
    fn last_purged(&self) -> StoreResult<Option<LogId<NodeId>>> {
        meta_get(&self.db, "last_purged").map_err(read_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = match txn.open_table(LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(read_err(e)),
        };
        let mut out = Vec::new();
        for row in table.range(range).map_err(read_err)? {
            let (_, v) = row.map_err(read_err)?;
            out.push(serde_json::from_slice(v.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let last_purged = self.last_purged()?;
        let txn = self.db.begin_read().map_err(read_err)?;
        let last = match txn.open_table(LOG) {
            Ok(t) => match t.last().map_err(read_err)? {
                Some((_, v)) => {
                    let e: Entry<TypeConfig> =
                        serde_json::from_slice(v.value()).map_err(read_err)?;
                    Some(e.log_id)
                }
                None => None,
            },
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(read_err(e)),
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        let db = self.db.clone();
        let v = json(vote)?;
        blocking(move || meta_put(&db, &[("vote", v)])).await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        meta_get(&self.db, "vote").map_err(read_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        let db = self.db.clone();
        let v = json(&committed)?;
        blocking(move || meta_put(&db, &[("committed", v)])).await
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        Ok(meta_get::<Option<LogId<NodeId>>>(&self.db, "committed")
            .map_err(read_err)?
            .flatten())
    }

    #[allow(clippy::result_large_err)]
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, json(&e)?)))
            .collect::<StoreResult<Vec<(u64, Vec<u8>)>>>()?;
        let db = self.db.clone();
        let res = blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(redb::Durability::Immediate)?;
            {
                let mut t = txn.open_table(LOG)?;
                for (i, v) in &rows {
                    t.insert(*i, v.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await;
        match &res {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        res
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(redb::Durability::Immediate)?;
            {
                let mut t = txn.open_table(LOG)?;
                t.retain_in(log_id.index.., |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let db = self.db.clone();
        let v = json(&Some(log_id))?;
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(redb::Durability::Immediate)?;
            {
                let mut m = txn.open_table(META)?;
                m.insert("last_purged", v.as_slice())?;
                let mut t = txn.open_table(LOG)?;
                t.retain_in(..=log_id.index, |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }
}
