//! Checkpoints: the ordered tracker that turns sink acknowledgements into a
//! cursor, and the local store that keeps it across restarts.
//!
//! A shard's batches are numbered as they are pulled. Each waits for one
//! acknowledgement per sink part it was sent as (a batch everything filtered
//! out of waits for none). The checkpoint is the next cursor of the longest
//! fully acknowledged prefix: a later batch finishing first never moves it,
//! so nothing unacknowledged is ever skipped. A batch's credit (its permit)
//! is released when it leaves the tracker.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::pipeline::budget::Credit;
use crate::sls::Cursor;

struct Entry {
    seq: u64,
    next_cursor: Cursor,
    /// Receive time of the batch's last group (for lag), if known.
    cursor_time: Option<u32>,
    waiting: usize,
    /// A part was given up unsent (its epoch ended here): the checkpoint
    /// never moves past this batch on this node.
    failed: bool,
    credit: Option<Credit>,
}

/// The checkpoint a prefix of batches reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub cursor: Cursor,
    pub cursor_time: Option<u32>,
}

/// A shard's batches in flight, in pull order.
#[derive(Default)]
pub struct Tracker {
    entries: VecDeque<Entry>,
    /// Parts still held by sinks for batches of a loop that was restarted
    /// (by seq): they no longer move the checkpoint, but they are not
    /// settled either, so a hand-over waits for them and a restarted loop
    /// does not overtake them. Each keeps its credit (its share of the
    /// node's budget) until its last part settles: the sinks still hold it.
    orphans: BTreeMap<u64, (usize, Option<Credit>)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrackError {
    #[error("batch {0} was acknowledged more times than it was sent")]
    TooManyAcks(u64),
}

impl Tracker {
    /// A batch sent as `parts` sink parts. Batches must be registered in order.
    pub fn register(
        &mut self,
        seq: u64,
        next_cursor: Cursor,
        cursor_time: Option<u32>,
        parts: usize,
        credit: Option<Credit>,
    ) -> Option<Reached> {
        debug_assert!(
            self.entries.back().is_none_or(|e| e.seq < seq),
            "batches register in order"
        );
        self.entries.push_back(Entry {
            seq,
            next_cursor,
            cursor_time,
            waiting: parts,
            failed: false,
            credit,
        });
        self.advance()
    }

    /// One part of batch `seq` is acknowledged. Unknown batches (from before a
    /// restart) are ignored.
    pub fn ack(&mut self, seq: u64) -> Result<Option<Reached>, TrackError> {
        let Some(e) = self.entries.iter_mut().find(|e| e.seq == seq) else {
            self.settle_orphan(seq);
            return Ok(None);
        };
        if e.waiting == 0 {
            return Err(TrackError::TooManyAcks(seq));
        }
        e.waiting -= 1;
        Ok(self.advance())
    }

    /// One part of batch `seq` was given up unsent: it settles, but the
    /// checkpoint stops before this batch for good.
    /// True if the batch is one of the current loop's (not an orphan).
    pub fn give_up(&mut self, seq: u64) -> bool {
        match self.entries.iter_mut().find(|e| e.seq == seq) {
            Some(e) => {
                e.waiting = e.waiting.saturating_sub(1);
                e.failed = true;
                true
            }
            None => {
                self.settle_orphan(seq);
                false
            }
        }
    }

    fn settle_orphan(&mut self, seq: u64) {
        if let Some((n, _)) = self.orphans.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.orphans.remove(&seq);
            }
        }
    }

    /// Parts handed to sinks and not yet settled (delivered or given up),
    /// orphans included.
    pub fn unsettled(&self) -> usize {
        self.entries.iter().map(|e| e.waiting).sum::<usize>() + self.orphaned()
    }

    /// Parts sinks still hold for batches of a restarted loop.
    pub fn orphaned(&self) -> usize {
        self.orphans.values().map(|(n, _)| n).sum()
    }

    fn advance(&mut self) -> Option<Reached> {
        let mut reached = None;
        while self
            .entries
            .front()
            .is_some_and(|e| e.waiting == 0 && !e.failed)
        {
            let e = self.entries.pop_front().expect("checked");
            reached = Some(Reached {
                cursor: e.next_cursor,
                cursor_time: e.cursor_time,
            });
        }
        reached
    }

    /// Batches sent and not yet fully acknowledged, and batches of a
    /// restarted loop that sinks still hold parts of.
    pub fn in_flight(&self) -> usize {
        self.entries.len() + self.orphans.len()
    }

    /// A restart from the last checkpoint: the batches leave (the
    /// checkpoint never moves for them), but parts sinks still hold stay
    /// counted as orphans, with their credits, until each settles.
    pub fn orphan_all(&mut self) {
        for e in self.entries.drain(..) {
            if e.waiting > 0 {
                self.orphans.insert(e.seq, (e.waiting, e.credit));
            }
        }
    }
}

/// One shard's saved checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub cursor: String,
    /// Unix seconds of the save.
    pub updated: u64,
    /// Receive time at the cursor, for lag.
    #[serde(default)]
    pub cursor_time: Option<u32>,
}

/// Where a consumer saves its checkpoint: the local file (no cluster) or
/// raft, fenced by the consumer's epoch (`pipeline::assignment`).
pub trait CheckpointSink: Send + Sync + 'static {
    fn save(&self, key: &str, saved: Saved) -> Result<(), StoreError>;

    /// Cheap enough to take every checkpoint as it moves (an in-memory
    /// batch that raft commits every `commit_interval`), rather than one
    /// per `checkpoint_interval`: fewer events re-read after a failover.
    fn eager(&self) -> bool {
        false
    }
}

impl CheckpointSink for CheckpointStore {
    fn save(&self, key: &str, saved: Saved) -> Result<(), StoreError> {
        CheckpointStore::save(self, key, saved)
    }
}

/// Checkpoints of every shard this node consumed, in `{data_dir}/checkpoints.json`
/// (written whole to a temp file, synced, renamed).
#[derive(Clone)]
pub struct CheckpointStore {
    path: PathBuf,
    map: Arc<Mutex<BTreeMap<String, Saved>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("checkpoint file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl CheckpointStore {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("checkpoints.json");
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let map = match std::fs::read(&path) {
            Ok(raw) => serde_json::from_slice(&raw).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(CheckpointStore {
            path,
            map: Arc::new(Mutex::new(map)),
        })
    }

    pub fn key(project: &str, logstore: &str, shard: u32) -> String {
        format!("{project}/{logstore}/{shard}")
    }

    /// A partition of S3 source `source` (`type = "s3"`), by its prefix.
    pub fn partition_key(source: &str, prefix: &str) -> String {
        format!("s3:{source}:{prefix}")
    }

    pub fn get(&self, key: &str) -> Option<Saved> {
        self.map.lock().get(key).cloned()
    }

    pub fn all(&self) -> BTreeMap<String, Saved> {
        self.map.lock().clone()
    }

    /// Records and writes a checkpoint.
    pub fn save(&self, key: &str, saved: Saved) -> Result<(), StoreError> {
        let snapshot = {
            let mut m = self.map.lock();
            m.insert(key.to_owned(), saved);
            serde_json::to_vec_pretty(&*m).expect("checkpoints serialize")
        };
        let tmp = self.path.with_extension("json.tmp");
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&snapshot).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_up_part_settles_but_the_checkpoint_never_passes_it() {
        let mut t = Tracker::default();
        assert_eq!(
            t.register(1, Cursor::new("2".to_string()), None, 2, None),
            None
        );
        assert_eq!(
            t.register(2, Cursor::new("3".to_string()), None, 1, None),
            None
        );
        assert_eq!(t.unsettled(), 3);
        t.give_up(1);
        assert_eq!(
            t.ack(1),
            Ok(None),
            "batch 1 lost a part: no checkpoint past it"
        );
        assert_eq!(t.ack(2), Ok(None), "nor past it to batch 2");
        assert_eq!(t.unsettled(), 0, "everything settled");
        assert_eq!(t.in_flight(), 2);
    }

    fn c(n: i64) -> Cursor {
        Cursor::from_sequence(n)
    }

    #[test]
    fn a_restart_leaves_parts_in_sinks_counted_until_they_settle() {
        let mut t = Tracker::default();
        t.register(1, c(10), None, 2, None);
        t.register(2, c(20), None, 1, None);
        t.ack(1).unwrap();
        t.orphan_all();
        assert_eq!(
            t.unsettled(),
            2,
            "one part of 1 and the part of 2 are still out"
        );
        assert_eq!(t.in_flight(), 2, "a drain must wait for them");
        t.register(3, c(10), None, 1, None);
        assert_eq!(
            t.ack(1).unwrap(),
            None,
            "an orphan never moves the checkpoint"
        );
        t.give_up(2);
        assert_eq!(t.orphaned(), 0);
        assert_eq!(t.unsettled(), 1, "only the new loop's batch");
        assert_eq!(t.ack(3).unwrap().unwrap().cursor, c(10));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn only_the_acknowledged_prefix_moves_the_checkpoint() {
        let mut t = Tracker::default();
        assert_eq!(t.register(1, c(10), None, 2, None), None);
        assert_eq!(t.register(2, c(20), None, 1, None), None);
        assert_eq!(
            t.register(3, c(30), None, 0, None),
            None,
            "empty batch waits for earlier ones"
        );
        assert_eq!(t.ack(2).unwrap(), None, "batch 2 done, batch 1 not");
        assert_eq!(t.ack(1).unwrap(), None, "batch 1 still has a part out");
        let r = t.ack(1).unwrap().unwrap();
        assert_eq!(r.cursor, c(30), "1, 2 and the empty 3 complete together");
        assert_eq!(t.in_flight(), 0);
        assert_eq!(
            t.ack(1).unwrap(),
            None,
            "late acks of finished batches are ignored"
        );
        assert_eq!(t.register(4, c(40), None, 0, None).unwrap().cursor, c(40));
        t.register(5, c(50), None, 1, None);
        t.ack(5).unwrap();
        assert!(t.register(6, c(60), None, 1, None).is_none());
    }

    #[test]
    fn credits_return_when_batches_leave() {
        let sem = Arc::new(tokio::sync::Semaphore::new(2));
        let mut t = Tracker::default();
        t.register(
            1,
            c(1),
            None,
            1,
            Some(Credit {
                batch: sem.clone().try_acquire_owned().unwrap(),
                bytes: None,
            }),
        );
        t.register(
            2,
            c(2),
            None,
            1,
            Some(Credit {
                batch: sem.clone().try_acquire_owned().unwrap(),
                bytes: None,
            }),
        );
        assert_eq!(sem.available_permits(), 0);
        t.ack(2).unwrap();
        assert_eq!(sem.available_permits(), 0, "2 waits behind 1");
        t.ack(1).unwrap();
        assert_eq!(sem.available_permits(), 2);
        t.register(
            3,
            c(3),
            None,
            1,
            Some(Credit {
                batch: sem.clone().try_acquire_owned().unwrap(),
                bytes: None,
            }),
        );
        t.orphan_all();
        assert_eq!(
            sem.available_permits(),
            1,
            "an orphan keeps its credit while a sink holds its part"
        );
        t.ack(3).unwrap();
        assert_eq!(sem.available_permits(), 2);
    }

    #[test]
    fn store_round_trips() {
        let dir = std::env::temp_dir().join(format!("trail-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = CheckpointStore::open(&dir).unwrap();
        let k = CheckpointStore::key("p", "ls", 3);
        s.save(
            &k,
            Saved {
                cursor: "MTA=".into(),
                updated: 5,
                cursor_time: Some(7),
            },
        )
        .unwrap();
        let again = CheckpointStore::open(&dir).unwrap();
        assert_eq!(again.get(&k).unwrap().cursor, "MTA=");
        std::fs::write(dir.join("checkpoints.json"), b"{not json").unwrap();
        assert!(matches!(
            CheckpointStore::open(&dir),
            Err(StoreError::Corrupt { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
