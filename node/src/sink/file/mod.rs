//! The file sink: JSON lines (business view, tags, and the original event),
//! rotated by size. A part is acknowledged once written and flushed to the OS.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::prelude::*;
use serde::Deserialize;

use crate::record::View;
use crate::record::{business_fields, write_json_str, write_tag_fields, write_time, EventEncoder};
use crate::sink::{Deliver, SinkStats};

/// `[[sinks]] type = "file"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    /// Rotate when the file reaches this size.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`).
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// Prefix of tag fields.
    #[serde(default)]
    pub tag_prefix: Option<String>,
}

fn default_max_bytes() -> u64 {
    256 * 1024 * 1024
}

fn default_keep() -> u32 {
    5
}

/// An append-only file that rotates by size: `path` → `path.1` → … → `path.keep`.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    out: BufWriter<File>,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        let size = f.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            max_bytes,
            keep,
            out: BufWriter::with_capacity(1 << 20, f),
            size,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and flushes; rotates first if the file is full.
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(bytes)?;
        self.out.flush()?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            let _ = fs::remove_file(name(self.keep));
            for i in (1..self.keep).rev() {
                let _ = fs::rename(name(i), name(i + 1));
            }
            fs::rename(&self.path, name(1))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.out = BufWriter::with_capacity(1 << 20, f);
        self.size = 0;
        Ok(())
    }
}

/// One event as a JSON line: business fields, tags under the prefix, and the
/// original event under `event`.
pub struct JsonLinesEncoder {
    pub tag_prefix: String,
}

impl EventEncoder for JsonLinesEncoder {
    fn encode(&self, v: &View<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":");
        write_time(out, v.time);
        for (k, val) in business_fields(v) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            write_json_str(out, val);
        }
        let _ = write!(out, ",\"shard\":{}", v.provenance.shard);
        write_tag_fields(out, &self.tag_prefix, v.tags);
        out.extend_from_slice(b",\"event\":");
        out.extend_from_slice(v.raw);
        out.extend_from_slice(b"}\n");
    }
}

/// The `FileSink` actor.
pub struct FileSink {
    file: RotatingFile,
    stats: Arc<SinkStats>,
}

impl FileSink {
    pub fn new(file: RotatingFile, stats: Arc<SinkStats>) -> Self {
        FileSink { file, stats }
    }
}

impl Actor for FileSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Parts are bounded by the shards' credits; the mailbox only needs to
        // hold one round of them.
        ctx.set_mailbox_capacity(64);
    }
}

impl Handler<Deliver> for FileSink {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let bytes = msg.events.range(0..msg.events.len());
        match self.file.write_all(&bytes) {
            Ok(()) => {
                SinkStats::add(&self.stats.events, msg.events.len() as u64);
                SinkStats::add(&self.stats.bytes, bytes.len() as u64);
                msg.ack.done();
            }
            Err(e) => {
                // The part stays unacknowledged (the Ack reports failure when
                // dropped); the shard resumes from its checkpoint.
                SinkStats::add(&self.stats.errors, 1);
                tracing::error!(path = %self.file.path().display(), error = %e, "file sink write failed");
                ctx.stop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = std::env::temp_dir().join(format!("trail-rot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("out.jsonl");
        let mut f = RotatingFile::open(&path, 10, 2).unwrap();
        for i in 0..5 {
            f.write_all(format!("line-{i}\n").as_bytes()).unwrap();
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "line-4\n");
        assert_eq!(
            fs::read_to_string(dir.join("out.jsonl.1")).unwrap(),
            "line-3\n"
        );
        assert_eq!(
            fs::read_to_string(dir.join("out.jsonl.2")).unwrap(),
            "line-2\n"
        );
        assert!(!dir.join("out.jsonl.3").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
