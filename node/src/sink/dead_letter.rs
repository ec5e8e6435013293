//! The dead-letter sink: every event that cannot be delivered lands here with
//! its reason, its provenance (project, logstore, shard, cursor) and its raw
//! payload, as one JSON line. A batch with dead letters counts as delivered
//! only after they are written (the handler answers after the write).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use base64::Engine as _;

use crate::pipeline::encode::write_json_str;
use crate::pipeline::enrich::DeadLetter;
use crate::sink::file::RotatingFile;
use crate::sink::SinkStats;

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Write these dead letters; answered after they are written.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), DeadLetterError>")]
pub struct DeadLetters(pub Vec<DeadLetter>);

/// Dead letters as JSON lines in a rotating file.
pub struct DeadLetterSink {
    file: RotatingFile,
    stats: Arc<SinkStats>,
}

impl DeadLetterSink {
    pub fn new(file: RotatingFile, stats: Arc<SinkStats>) -> Self {
        DeadLetterSink { file, stats }
    }
}

impl Actor for DeadLetterSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Senders await each write; a short queue keeps memory bounded.
        ctx.set_mailbox_capacity(64);
    }
}

/// One dead letter as a JSON line.
pub fn encode(d: &DeadLetter, now: f64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":");
    crate::pipeline::encode::write_time(out, now);
    for (k, v) in [
        ("reason", d.reason.as_str()),
        ("kind", d.kind),
        ("project", &d.project),
        ("logstore", &d.logstore),
        ("cursor", d.cursor.as_str()),
    ] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":");
        write_json_str(out, v);
    }
    let _ = write!(out, ",\"shard\":{}", d.shard);
    match std::str::from_utf8(&d.raw) {
        Ok(text) => {
            out.extend_from_slice(b",\"raw\":");
            write_json_str(out, text);
        }
        Err(_) => {
            out.extend_from_slice(b",\"raw_base64\":");
            write_json_str(
                out,
                &base64::engine::general_purpose::STANDARD.encode(&d.raw),
            );
        }
    }
    out.extend_from_slice(b"}\n");
}

impl Handler<DeadLetters> for DeadLetterSink {
    type Result = Result<(), DeadLetterError>;

    fn handle(&mut self, msg: DeadLetters, _ctx: &mut Self::Context) -> Self::Result {
        if msg.0.is_empty() {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let mut buf = Vec::with_capacity(msg.0.len() * 512);
        for d in &msg.0 {
            tracing::warn!(shard = d.shard, cursor = %d.cursor, kind = d.kind, reason = %d.reason, "dead-lettered");
            encode(d, now, &mut buf);
        }
        self.file
            .write_all(&buf)
            .map_err(|source| DeadLetterError::Io {
                path: self.file.path().to_owned(),
                source,
            })?;
        SinkStats::add(&self.stats.events, msg.0.len() as u64);
        SinkStats::add(&self.stats.bytes, buf.len() as u64);
        Ok(())
    }
}
