//! `FileConsumer`: trail files on local disk — backfills, and the "download
//! the trail, then analyse it" flow. One actor per `file` source: it finds
//! the files its paths match (globs: `*`, `?`, `**`), reads them in name
//! order, and hands batches to the same `Enricher` pool and sinks as every
//! other source.
//!
//! A file is JSON lines (one event per line: ActionTrail or CloudTrail
//! records), or one CloudTrail `{"Records":[…]}` document; either may be
//! gzip'd (`.gz`). The checkpoint is the file and the offset (into the
//! decompressed bytes) up to which every sink acknowledged everything; it
//! is saved in the node's data dir as each batch completes, in order, so a
//! restart resumes there. Files that appear later are found by a rescan.
//! A line that is not an event is dead-lettered by the enricher with its
//! file and offset; a file that cannot be read is logged, counted and tried
//! again at the next rescan.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use trail_proto::sls::{Log, LogContent, LogGroup, LogGroupList};

use crate::fence::Fence;
use crate::pipeline::budget::Credit;
use crate::pipeline::checkpoint::{CheckpointStore, Saved, Tracker};
use crate::pipeline::enricher::{Enrich, EnrichReply, Enricher};
use crate::pipeline::shard_consumer::ShardStats;
use crate::record::{DeadLetter, Provenance, SourceKind};
use crate::sink::dead_letter::DeadLetters;
use crate::sink::{Ack, BatchAck, Deliver, SinkHandle};
use crate::sls::Cursor;

/// One `file` source's settings.
#[derive(Debug, Clone)]
pub struct FileSettings {
    pub name: Arc<str>,
    /// Globs, absolute or relative to the working directory.
    pub paths: Vec<String>,
    pub rescan: Duration,
    /// A batch holds about this many bytes of lines.
    pub batch_bytes: usize,
    pub in_flight_batches: usize,
    /// The largest `Records` document or decompressed line read.
    pub max_envelope_bytes: usize,
    pub event_key: Bytes,
}

/// A file source's counters.
#[derive(Debug, Default)]
pub struct FileStats {
    pub files_done: AtomicU64,
    pub bytes: AtomicU64,
    pub records: AtomicU64,
    pub errors: AtomicU64,
    pub events: ShardStats,
}

/// Whether `name` matches `pat`: `*` and `?` within one path segment, `**`
/// across segments.
pub fn glob_match(pat: &str, name: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=s.len()).any(|i| (i == 0 || s[i - 1] == b'/') && go(rest, &s[i..]))
                    || go(&p[2..], s)
            }
            Some(b'*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| go(&p[1..], &s[i..])),
            Some(b'?') => s.first().is_some_and(|c| *c != b'/') && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    go(pat.as_bytes(), name.as_bytes())
}

/// The files a glob matches, sorted.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let wild = pattern.find(['*', '?']).unwrap_or(pattern.len());
    let base = match pattern[..wild].rfind('/') {
        Some(i) if wild < pattern.len() => &pattern[..=i],
        _ if wild < pattern.len() => "./",
        _ => {
            return Path::new(pattern)
                .is_file()
                .then(|| PathBuf::from(pattern))
                .into_iter()
                .collect()
        }
    };
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from(base)];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(p),
                Ok(t) if t.is_file() => {
                    let s = p.to_string_lossy();
                    let s = s.strip_prefix("./").filter(|_| base == "./").unwrap_or(&s);
                    if glob_match(pattern, s) {
                        out.push(p);
                    }
                }
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Reads a file's events in batches; `offset` counts decompressed bytes.
struct FileReader {
    lines: Box<dyn BufRead + Send>,
    offset: u64,
    /// One `Records` document: read whole, once.
    document: bool,
    done: bool,
}

impl FileReader {
    fn open(path: &Path, from: u64) -> std::io::Result<FileReader> {
        let mut f = std::fs::File::open(path)?;
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic)?;
        drop(f);
        let f = std::fs::File::open(path)?;
        let raw: Box<dyn Read + Send> = if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(flate2::read::MultiGzDecoder::new(f))
        } else {
            Box::new(f)
        };
        let mut lines: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(1 << 20, raw));
        // A CloudTrail document starts `{"Records"`; JSON lines start each
        // line with an event.
        let head = lines.fill_buf()?;
        let document = crate::event::is_records_envelope(head);
        let mut r = FileReader {
            lines,
            offset: 0,
            document,
            done: false,
        };
        // Resume: skip what was delivered.
        let mut skip = from;
        while skip > 0 {
            let buf = r.lines.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let n = buf.len().min(skip as usize);
            r.lines.consume(n);
            skip -= n as u64;
            r.offset += n as u64;
        }
        Ok(r)
    }

    /// The next lines (whole), up to about `max` bytes; the offset after them.
    fn next(&mut self, max: usize, cap: usize) -> std::io::Result<Option<(Vec<Bytes>, u64)>> {
        if self.done {
            return Ok(None);
        }
        if self.document {
            let mut all = Vec::new();
            (&mut self.lines)
                .take(cap as u64 + 1)
                .read_to_end(&mut all)?;
            self.offset += all.len() as u64;
            self.done = true;
            return Ok((!all.is_empty()).then(|| (vec![Bytes::from(all)], self.offset)));
        }
        let (mut out, mut size) = (Vec::new(), 0);
        while size < max {
            let mut line = Vec::new();
            let n = (&mut self.lines)
                .take(cap as u64 + 2)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.offset += n as u64;
            let trimmed = line.trim_ascii_end().len();
            line.truncate(trimmed);
            if line.trim_ascii_start().is_empty() {
                continue;
            }
            size += line.len();
            out.push(Bytes::from(line));
        }
        Ok((!out.is_empty()).then_some((out, self.offset)))
    }
}

pub struct FileConsumer {
    pub settings: Arc<FileSettings>,
    pub enricher: Addr<Enricher>,
    pub sinks: Arc<[SinkHandle]>,
    pub dead_letters: Recipient<DeadLetters>,
    pub store: CheckpointStore,
    pub stats: Arc<FileStats>,
    pub fence: Fence,
    pub stop: CancellationToken,
    /// The file being read and its tracker (batches in flight, in order).
    current: Option<(PathBuf, Tracker)>,
}

impl FileConsumer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Arc<FileSettings>,
        enricher: Addr<Enricher>,
        sinks: Arc<[SinkHandle]>,
        dead_letters: Recipient<DeadLetters>,
        store: CheckpointStore,
        stats: Arc<FileStats>,
        fence: Fence,
        stop: CancellationToken,
    ) -> Self {
        FileConsumer {
            settings,
            enricher,
            sinks,
            dead_letters,
            store,
            stats,
            fence,
            stop,
            current: None,
        }
    }

    fn key(&self, path: &Path) -> String {
        format!("file:{}:{}", self.settings.name, path.display())
    }
}

/// The saved checkpoint of a file: `done`, or an offset.
fn saved_offset(store: &CheckpointStore, key: &str) -> Option<u64> {
    let s = store.get(key)?;
    if s.cursor == "done" {
        return Some(u64::MAX);
    }
    s.cursor.parse().ok()
}

impl Actor for FileConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.in_flight_batches * (self.sinks.len() + 2) + 16);
        tracing::info!(source = %self.settings.name, paths = ?self.settings.paths, "file source started");
        let run = FileLoop {
            settings: self.settings.clone(),
            enricher: self.enricher.clone(),
            sinks: self.sinks.clone(),
            dead_letters: self.dead_letters.clone(),
            store: self.store.clone(),
            stats: self.stats.clone(),
            fence: self.fence.until(self.stop.clone()),
            stop: self.stop.clone(),
            me: ctx.address(),
            credits: Arc::new(Semaphore::new(self.settings.in_flight_batches.max(1))),
        };
        actix::spawn(run.run());
    }
}

/// A file is next: batches that follow are its own.
#[derive(Message)]
#[rtype(result = "()")]
struct Begin(PathBuf);

impl Handler<Begin> for FileConsumer {
    type Result = ();
    fn handle(&mut self, m: Begin, _ctx: &mut Self::Context) {
        self.current = Some((m.0, Tracker::default()));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Track {
    seq: u64,
    end: u64,
    parts: usize,
    last: bool,
    credit: Credit,
}

impl FileConsumer {
    fn reached(&mut self, cursor: Cursor) {
        let Some((path, _)) = &self.current else {
            return;
        };
        let key = self.key(path);
        let saved = Saved {
            cursor: cursor.as_str().to_owned(),
            updated: crate::clock::unix_secs(),
            cursor_time: None,
        };
        if cursor.as_str() == "done" {
            self.stats.files_done.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = self.store.save(&key, saved) {
            tracing::error!(source = %self.settings.name, error = %e, "saving a file checkpoint failed");
        }
    }
}

impl Handler<Track> for FileConsumer {
    type Result = ();
    fn handle(&mut self, m: Track, _ctx: &mut Self::Context) {
        let cursor = Cursor::new(if m.last {
            "done".to_owned()
        } else {
            m.end.to_string()
        });
        let reached = match &mut self.current {
            Some((_, t)) => t.register(m.seq, cursor, None, m.parts, Some(m.credit)),
            None => None,
        };
        if let Some(r) = reached {
            self.reached(r.cursor);
        }
    }
}

impl Handler<BatchAck> for FileConsumer {
    type Result = ();
    fn handle(&mut self, m: BatchAck, _ctx: &mut Self::Context) {
        let Some((path, t)) = &mut self.current else {
            return;
        };
        if !m.ok {
            // Given up (stopping, or the lease lost): the checkpoint stays
            // before it; the file is read again from there next time.
            t.give_up(m.seq);
            tracing::warn!(file = %path.display(), seq = m.seq, "a batch was given up; it is read again after a restart");
            return;
        }
        if let Ok(Some(r)) = t.ack(m.seq) {
            self.reached(r.cursor);
        }
    }
}

/// Batches still in flight for the current file.
#[derive(Message)]
#[rtype(result = "usize")]
struct InFlight;

impl Handler<InFlight> for FileConsumer {
    type Result = usize;
    fn handle(&mut self, _m: InFlight, _ctx: &mut Self::Context) -> usize {
        self.current.as_ref().map_or(0, |(_, t)| t.in_flight())
    }
}

struct FileLoop {
    settings: Arc<FileSettings>,
    enricher: Addr<Enricher>,
    sinks: Arc<[SinkHandle]>,
    dead_letters: Recipient<DeadLetters>,
    store: CheckpointStore,
    stats: Arc<FileStats>,
    fence: Fence,
    stop: CancellationToken,
    me: Addr<FileConsumer>,
    credits: Arc<Semaphore>,
}

impl FileLoop {
    async fn run(self) {
        let mut seq = 0u64;
        loop {
            let mut files: Vec<PathBuf> =
                self.settings.paths.iter().flat_map(|p| expand(p)).collect();
            files.sort();
            files.dedup();
            let key = |p: &Path| format!("file:{}:{}", self.settings.name, p.display());
            for path in files {
                let from = saved_offset(&self.store, &key(&path)).unwrap_or(0);
                if from == u64::MAX {
                    continue;
                }
                if !self.file(&path, from, &mut seq).await {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.rescan) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }

    /// Reads one file to its end; false when stopping.
    async fn file(&self, path: &Path, from: u64, seq: &mut u64) -> bool {
        if self.me.send(Begin(path.to_owned())).await.is_err() {
            return false;
        }
        let (p, cap) = (path.to_owned(), self.settings.max_envelope_bytes);
        let opened = tokio::task::spawn_blocking(move || FileReader::open(&p, from)).await;
        let mut reader = match opened {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %path.display(), error = %e, "cannot open; trying again at the next rescan");
                return true;
            }
            Err(_) => return false,
        };
        tracing::info!(file = %path.display(), from, "reading");
        let provenance = Arc::new(Provenance {
            project: format!("file:{}", self.settings.name).into(),
            logstore: path.display().to_string().into(),
            shard: 0,
            epoch: 0,
            source: SourceKind::File,
        });
        loop {
            let permit = tokio::select! {
                p = self.credits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return false },
                _ = self.stop.cancelled() => return false,
            };
            let max = self.settings.batch_bytes;
            let read = tokio::task::spawn_blocking(move || {
                let r = reader.next(max, cap);
                (reader, r)
            })
            .await;
            let (r, batch) = match read {
                Ok(x) => x,
                Err(_) => return false,
            };
            reader = r;
            let (lines, end) = match batch {
                Ok(Some(b)) => b,
                Ok(None) => {
                    // Read to the end: mark it done once all before is acknowledged.
                    *seq += 1;
                    let credit = Credit {
                        batch: permit,
                        bytes: None,
                    };
                    let _ = self
                        .me
                        .send(Track {
                            seq: *seq,
                            end: reader.offset,
                            parts: 0,
                            last: true,
                            credit,
                        })
                        .await;
                    return self.drain().await;
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(file = %path.display(), error = %e, "read failed; trying again at the next rescan");
                    return self.drain().await;
                }
            };
            let start = end - lines.iter().map(|l| l.len() as u64).sum::<u64>().min(end);
            self.stats.bytes.fetch_add(
                lines.iter().map(|l| l.len() as u64).sum(),
                Ordering::Relaxed,
            );
            let list = LogGroupList {
                log_group_list: vec![LogGroup {
                    logs: lines
                        .into_iter()
                        .map(|value| Log {
                            time: crate::clock::unix_secs() as u32,
                            contents: vec![LogContent {
                                key: self.settings.event_key.clone(),
                                value,
                            }],
                            time_ns: None,
                        })
                        .collect(),
                    ..Default::default()
                }],
            };
            let cursor = format!("{}@{start}", path.display());
            let mut batch = Enrich::new(list, vec![cursor], provenance.clone());
            let out = loop {
                match self.enricher.send(batch).await {
                    Ok(EnrichReply::Done(out)) => break out,
                    Ok(EnrichReply::Parked(again, wait)) => {
                        tokio::select! {
                            _ = wait.wait() => {}
                            _ = self.stop.cancelled() => return false,
                        }
                        batch = *again;
                    }
                    Err(_) => return false,
                }
            };
            self.stats.events.add(&out.stats);
            self.stats
                .records
                .fetch_add(out.stats.events, Ordering::Relaxed);
            if !out.dead_letters.is_empty() && !self.dead(out.dead_letters).await {
                return false;
            }
            let live: Vec<(usize, crate::record::EventSlab)> = out
                .parts
                .into_iter()
                .enumerate()
                .filter(|(_, p)| !p.is_empty())
                .collect();
            *seq += 1;
            let credit = Credit {
                batch: permit,
                bytes: None,
            };
            if self
                .me
                .send(Track {
                    seq: *seq,
                    end,
                    parts: live.len(),
                    last: false,
                    credit,
                })
                .await
                .is_err()
            {
                return false;
            }
            let me = self.me.clone().recipient::<BatchAck>();
            let mut rest = live.into_iter();
            while let Some((i, events)) = rest.next() {
                let part = Deliver {
                    shard: 0,
                    seq: *seq,
                    provenance: provenance.clone(),
                    events,
                    ack: Ack::new(me.clone(), 0, *seq, i),
                    fence: self.fence.clone(),
                };
                if self.sinks[i].deliver.send(part).await.is_err() {
                    for (j, _) in rest {
                        Ack::new(me.clone(), 0, *seq, j).abandon();
                    }
                    return false;
                }
            }
        }
    }

    /// Waits until the file's batches are all settled.
    async fn drain(&self) -> bool {
        loop {
            match self.me.send(InFlight).await {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = self.stop.cancelled() => return false,
            }
        }
    }

    async fn dead(&self, letters: Vec<DeadLetter>) -> bool {
        loop {
            match self.dead_letters.send(DeadLetters(letters.clone())).await {
                Ok(Ok(())) => return true,
                Ok(Err(e)) => tracing::error!(error = %e, "dead-letter sink refused; retrying"),
                Err(_) => return false,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.stop.cancelled() => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_segments() {
        assert!(glob_match("/d/*.json", "/d/a.json"));
        assert!(!glob_match("/d/*.json", "/d/x/a.json"));
        assert!(glob_match("/d/**/*.json.gz", "/d/a.json.gz"));
        assert!(glob_match(
            "/d/**/*.json.gz",
            "/d/AWSLogs/1/CloudTrail/us-east-1/2026/12/03/f.json.gz"
        ));
        assert!(glob_match("/d/20??-*.log", "/d/2026-12.log"));
        assert!(!glob_match("/d/20??-*.log", "/d/2026/-12.log"));
        assert!(glob_match("/d/a", "/d/a") && !glob_match("/d/a", "/d/ab"));
    }

    #[test]
    fn readers_batch_lines_and_resume_from_an_offset() {
        use std::io::Write as _;
        let dir = std::env::temp_dir().join(format!("trail-file-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lines = dir.join("a.jsonl");
        std::fs::write(
            &lines,
            "{\"eventId\":\"1\"}\n\n{\"eventId\":\"2\"}\n{\"eventId\":\"3\"}",
        )
        .unwrap();
        let mut r = FileReader::open(&lines, 0).unwrap();
        let (b, end) = r.next(20, 1 << 20).unwrap().unwrap();
        assert_eq!((b.len(), end), (2, 33));
        let (b, _) = r.next(20, 1 << 20).unwrap().unwrap();
        assert_eq!(&b[0][..], b"{\"eventId\":\"3\"}");
        assert!(r.next(20, 1 << 20).unwrap().is_none());
        let mut again = FileReader::open(&lines, end).unwrap();
        assert_eq!(again.next(1 << 20, 1 << 20).unwrap().unwrap().0.len(), 1);
        // A gzip'd Records document is one log.
        let doc = dir.join("b.json.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"{\"Records\":[{\"eventID\":\"x\"},{\"eventID\":\"y\"}]}")
            .unwrap();
        std::fs::write(&doc, e.finish().unwrap()).unwrap();
        let mut r = FileReader::open(&doc, 0).unwrap();
        assert!(r.document);
        assert_eq!(r.next(10, 1 << 20).unwrap().unwrap().0.len(), 1);
        assert!(r.next(10, 1 << 20).unwrap().is_none());
        let found = expand(&format!("{}/*.json.gz", dir.display()));
        assert_eq!(found, vec![doc.clone()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
