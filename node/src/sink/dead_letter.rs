//! The dead-letter sink: every event that cannot be delivered lands here with
//! its reason, its provenance (project, logstore, shard, cursor) and its raw
//! payload — as a JSON line in a rotating file, as a log in an SLS logstore
//! (`[dead_letter.sls]`), or both. A batch with dead letters counts as
//! delivered only after they are stored: the handler answers after the file
//! write and after SLS accepted the PutLogs, and messages are handled one at
//! a time.
//!
//! A failing SLS write is retried with capped backoff (counted in `errors`
//! and `retries`) while the shards that sent it hold their checkpoints, as a
//! refused HEC token does. What one dead letter may cost is bounded, so that
//! one huge letter cannot hold every shard: the JSON line keeps the whole
//! payload, the SLS log keeps its first [`SLS_RAW_MAX`] bytes with
//! `raw_bytes` (the payload's size) and `raw_truncated`, and log groups are
//! cut by size as well as by count. A group past an SLS size limit (which
//! can never succeed; only a letter with a huge reason gets there) is split
//! until one letter is left, and that letter is logged as an error with its
//! shard, cursor and kind, counted in `trail_dead_letters_dropped`, and
//! passed (the file copy, when configured, keeps it).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use base64::Engine as _;
use bytes::Bytes;
use trail_proto::sls::{Log, LogContent, LogGroup};

use crate::record::write_json_str;
use crate::record::DeadLetter;
use crate::sink::file::RotatingFile;
use crate::sink::SinkStats;
use crate::sls::{PutTarget, SlsClient, SlsError};

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Write these dead letters; answered after they are stored.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), DeadLetterError>")]
pub struct DeadLetters(pub Vec<DeadLetter>);

/// Where `[dead_letter.sls]` writes.
pub struct SlsDeadLetters {
    pub client: SlsClient,
    pub project: String,
    pub logstore: String,
    pub topic: String,
}

/// The dead-letter actor: a file, a logstore, or both.
pub struct DeadLetterSink {
    file: Option<RotatingFile>,
    sls: Option<Arc<SlsDeadLetters>>,
    stats: Arc<SinkStats>,
}

impl DeadLetterSink {
    pub fn new(
        file: Option<RotatingFile>,
        sls: Option<SlsDeadLetters>,
        stats: Arc<SinkStats>,
    ) -> Self {
        DeadLetterSink {
            file,
            sls: sls.map(Arc::new),
            stats,
        }
    }
}

impl Actor for DeadLetterSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Senders await each write; a short queue keeps memory bounded.
        ctx.set_mailbox_capacity(64);
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The raw payload as text, or base64 when it is not UTF-8: `(key, value)`.
fn raw_field(raw: &[u8]) -> (&'static str, std::borrow::Cow<'_, str>) {
    match std::str::from_utf8(raw) {
        Ok(text) => ("raw", text.into()),
        Err(_) => (
            "raw_base64",
            base64::engine::general_purpose::STANDARD.encode(raw).into(),
        ),
    }
}

/// The most payload bytes an SLS dead letter keeps (a log group holds at
/// most 5 MiB; an `oversize` letter may carry a whole log content).
pub const SLS_RAW_MAX: usize = 1024 * 1024;

/// The first `max` bytes of `raw`, cut at a character boundary when the
/// payload is text (so a cut payload stays `raw`, not `raw_base64`).
fn raw_prefix(raw: &[u8], max: usize) -> &[u8] {
    if raw.len() <= max {
        return raw;
    }
    let mut end = max;
    // A UTF-8 sequence is at most 4 bytes: step back over continuation bytes.
    while end > max.saturating_sub(3) && (raw[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &raw[..end]
}

/// One dead letter as a JSON line.
pub fn encode(d: &DeadLetter, now: f64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":");
    crate::record::write_time(out, now);
    let (raw_key, raw) = raw_field(&d.raw);
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
    let _ = write!(out, ",\"shard\":{},\"{raw_key}\":", d.shard);
    write_json_str(out, &raw);
    out.extend_from_slice(b"}\n");
}

/// The fields of a dead letter as an SLS log (`shard` is a number, the
/// rest text): what the dead-letter logstore indexes.
pub const LOG_FIELDS: &[(&str, &str)] = &[
    ("reason", "text"),
    ("kind", "text"),
    ("project", "text"),
    ("logstore", "text"),
    ("shard", "long"),
    ("cursor", "text"),
    ("raw", "text"),
    ("raw_base64", "text"),
    ("raw_bytes", "long"),
    ("raw_truncated", "text"),
];

/// One dead letter as an SLS log: the same fields as the JSON line, the
/// payload cut to [`SLS_RAW_MAX`] bytes (`raw_bytes` says how large it was,
/// `raw_truncated` that it was cut).
pub fn to_log(d: &DeadLetter, now: f64) -> Log {
    // Text or base64 as the whole payload is, like the JSON line.
    let text = std::str::from_utf8(&d.raw).is_ok();
    let kept = if text {
        raw_prefix(&d.raw, SLS_RAW_MAX)
    } else {
        &d.raw[..d.raw.len().min(SLS_RAW_MAX)]
    };
    let (raw_key, raw) = if text {
        ("raw", std::str::from_utf8(kept).unwrap_or_default().into())
    } else {
        (
            "raw_base64",
            std::borrow::Cow::Owned(base64::engine::general_purpose::STANDARD.encode(kept)),
        )
    };
    let shard = d.shard.to_string();
    let raw_bytes = d.raw.len().to_string();
    let mut fields = vec![
        ("reason", d.reason.as_str()),
        ("kind", d.kind),
        ("project", &d.project),
        ("logstore", &d.logstore),
        ("shard", &shard),
        ("cursor", d.cursor.as_str()),
        (raw_key, &raw),
        ("raw_bytes", &raw_bytes),
    ];
    if kept.len() < d.raw.len() {
        fields.push(("raw_truncated", "true"));
    }
    let contents = fields
        .into_iter()
        .map(|(k, v)| LogContent {
            key: Bytes::from_static(k.as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect();
    Log {
        time: now as u32,
        contents,
        time_ns: Some((now.fract() * 1e9) as u32),
    }
}

/// SLS log groups of at most this many dead letters...
const LOGS_PER_GROUP: usize = 512;
/// ...and about this many payload bytes (a group may hold 5 MiB; one
/// letter's log is at most `SLS_RAW_MAX` plus its short fields, or 4/3 of
/// that in base64).
const BYTES_PER_GROUP: usize = 2 * SLS_RAW_MAX;

/// The letters cut into runs that make one log group each: at most
/// [`LOGS_PER_GROUP`] letters and, past the first, [`BYTES_PER_GROUP`]
/// payload bytes.
fn groups(letters: &[DeadLetter]) -> impl Iterator<Item = &[DeadLetter]> {
    let mut rest = letters;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut n = 0;
        while n < rest.len() && n < LOGS_PER_GROUP {
            // Payload kept (4/3 of it when base64) plus the reason.
            let cost = rest[n].raw.len().min(SLS_RAW_MAX) * 4 / 3 + rest[n].reason.len();
            if n > 0 && bytes + cost > BYTES_PER_GROUP {
                break;
            }
            bytes += cost;
            n += 1;
        }
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

impl SlsDeadLetters {
    /// Writes every letter; retries until SLS takes them, except a group
    /// past an SLS size limit, which can never succeed: it is split until a
    /// single letter is left, and that one is logged, counted, and passed.
    /// Returns how many letters were not stored.
    async fn write(&self, letters: &[DeadLetter], now: f64, stats: &SinkStats) -> u64 {
        let mut dropped = 0;
        let mut runs: Vec<&[DeadLetter]> = groups(letters).collect();
        runs.reverse();
        while let Some(run) = runs.pop() {
            let group = LogGroup {
                logs: run.iter().map(|d| to_log(d, now)).collect(),
                topic: Some(Bytes::from(self.topic.clone())),
                source: Some(Bytes::from_static(b"trail")),
                ..Default::default()
            };
            let mut pause = Duration::from_millis(200);
            loop {
                SinkStats::add(&stats.requests, 1);
                match self
                    .client
                    .put_logs(
                        &self.project,
                        &self.logstore,
                        &group,
                        PutTarget::LoadBalanced,
                    )
                    .await
                {
                    Ok(()) => break,
                    Err(SlsError::RequestTooLarge { .. }) if run.len() > 1 => {
                        let (a, b) = run.split_at(run.len() / 2);
                        runs.push(b);
                        runs.push(a);
                        break;
                    }
                    Err(e @ SlsError::RequestTooLarge { .. }) => {
                        SinkStats::add(&stats.errors, 1);
                        dropped += 1;
                        let d = &run[0];
                        tracing::error!(
                            error = %e, logstore = %self.logstore, shard = d.shard,
                            cursor = %d.cursor, kind = d.kind, raw_bytes = d.raw.len(),
                            reason_bytes = d.reason.len(),
                            "the dead-letter logstore can never take this letter; not stored there"
                        );
                        break;
                    }
                    Err(e) => {
                        SinkStats::add(&stats.errors, 1);
                        SinkStats::add(&stats.retries, 1);
                        tracing::error!(
                            error = %e, logstore = %self.logstore, ?pause,
                            "dead-letter logstore refused a write; holding checkpoints and retrying"
                        );
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
        dropped
    }
}

impl Handler<DeadLetters> for DeadLetterSink {
    type Result = AtomicResponse<Self, Result<(), DeadLetterError>>;

    fn handle(&mut self, msg: DeadLetters, _ctx: &mut Self::Context) -> Self::Result {
        let letters = msg.0;
        let now = now();
        let mut written = 0;
        if !letters.is_empty() {
            for d in &letters {
                tracing::warn!(shard = d.shard, cursor = %d.cursor, kind = d.kind, reason = %d.reason, "dead-lettered");
            }
        }
        if let (Some(file), false) = (&mut self.file, letters.is_empty()) {
            let mut buf = Vec::with_capacity(letters.len() * 512);
            for d in &letters {
                encode(d, now, &mut buf);
            }
            if let Err(source) = file.write_all(&buf) {
                SinkStats::add(&self.stats.errors, 1);
                let err = DeadLetterError::Io {
                    path: file.path().to_owned(),
                    source,
                };
                return AtomicResponse::new(Box::pin(async move { Err(err) }.into_actor(self)));
            }
            written = buf.len();
        }
        let sls = self.sls.clone();
        let stats = self.stats.clone();
        // Letters the logstore drops are still stored when the file has them.
        let file_too = self.file.is_some();
        AtomicResponse::new(Box::pin(
            async move {
                let mut stored = letters.len() as u64;
                if let (Some(sls), false) = (sls, letters.is_empty()) {
                    let dropped = sls.write(&letters, now, &stats).await;
                    SinkStats::add(&stats.dead_lettered, dropped);
                    if !file_too {
                        stored -= dropped;
                    }
                }
                SinkStats::add(&stats.events, stored);
                SinkStats::add(&stats.bytes, written as u64);
                Ok(())
            }
            .into_actor(self),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(raw: &[u8]) -> DeadLetter {
        DeadLetter {
            reason: "event JSON: expected value at line 1 column 1".into(),
            kind: "malformed_json",
            project: "audit".into(),
            logstore: "actiontrail".into(),
            shard: 3,
            cursor: "MTUwMA==".into(),
            raw: Bytes::copy_from_slice(raw),
        }
    }

    #[test]
    fn a_json_line_carries_reason_provenance_and_raw() {
        let mut out = Vec::new();
        encode(&letter(b"{not json"), 1.5, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["kind"], "malformed_json");
        assert_eq!(v["shard"], 3);
        assert_eq!(v["cursor"], "MTUwMA==");
        assert_eq!(v["raw"], "{not json");
        let mut out = Vec::new();
        encode(&letter(&[0xff, 0xfe]), 1.5, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["raw_base64"], "//4=");
    }

    #[test]
    fn an_sls_log_has_the_same_fields() {
        let log = to_log(&letter(b"{not json"), 1_790_000_000.25);
        assert_eq!(log.time, 1_790_000_000);
        let get = |k: &str| {
            log.contents
                .iter()
                .find(|c| &c.key[..] == k.as_bytes())
                .map(|c| String::from_utf8(c.value.to_vec()).unwrap())
        };
        assert_eq!(get("kind").as_deref(), Some("malformed_json"));
        assert_eq!(get("shard").as_deref(), Some("3"));
        assert_eq!(get("raw").as_deref(), Some("{not json"));
        assert_eq!(get("logstore").as_deref(), Some("actiontrail"));
        for d in [letter(b"{not json"), letter(b"\xff\xfe")] {
            for c in to_log(&d, 0.0).contents {
                let key = std::str::from_utf8(&c.key).unwrap();
                assert!(
                    LOG_FIELDS.iter().any(|(k, _)| *k == key),
                    "{key} is written but not in LOG_FIELDS (the logstore would not index it)"
                );
            }
        }
    }

    #[test]
    fn an_sls_log_keeps_a_bounded_prefix_and_says_so() {
        // Text cut inside a 3-byte character: the cut steps back to its start.
        let mut raw = vec![b'a'; SLS_RAW_MAX - 1];
        raw.extend_from_slice("€".as_bytes());
        raw.extend_from_slice(&[b'b'; 5000]);
        let log = to_log(&letter(&raw), 0.0);
        let get = |k: &str| {
            log.contents
                .iter()
                .find(|c| &c.key[..] == k.as_bytes())
                .map(|c| c.value.clone())
        };
        assert_eq!(get("raw").unwrap().len(), SLS_RAW_MAX - 1);
        assert_eq!(get("raw_bytes").unwrap(), raw.len().to_string().as_bytes());
        assert_eq!(get("raw_truncated").unwrap(), &b"true"[..]);
        // Binary: the kept prefix goes as base64 of at most SLS_RAW_MAX bytes.
        let log = to_log(&letter(&vec![0xff; 3 * SLS_RAW_MAX]), 0.0);
        let b64 = &log
            .contents
            .iter()
            .find(|c| &c.key[..] == b"raw_base64")
            .unwrap()
            .value;
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
                .len(),
            SLS_RAW_MAX
        );
        // A small one is whole and not marked.
        let log = to_log(&letter(b"{not json"), 0.0);
        assert!(log.contents.iter().all(|c| &c.key[..] != b"raw_truncated"));
        // The JSON line keeps everything.
        let mut out = Vec::new();
        encode(&letter(&raw), 0.0, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["raw"].as_str().unwrap().len(), raw.len());
    }

    #[test]
    fn log_groups_are_cut_by_size_and_count_and_each_fits_sls() {
        let big = letter(&vec![b'x'; 20 * 1024 * 1024]);
        let small = letter(b"{not json");
        let mut letters = vec![small.clone(); 700];
        letters.insert(3, big.clone());
        letters.insert(4, big.clone());
        letters.push(big);
        let runs: Vec<_> = groups(&letters).collect();
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), letters.len());
        for run in &runs {
            assert!(run.len() <= LOGS_PER_GROUP);
            let group = LogGroup {
                logs: run.iter().map(|d| to_log(d, 0.0)).collect(),
                ..Default::default()
            };
            let raw = crate::sls::codec::encode_log_group(&group);
            assert!(
                raw.len() <= crate::sls::codec::MAX_LOG_GROUP_RAW,
                "a group of {} letters is {} bytes",
                run.len(),
                raw.len()
            );
        }
        assert!(runs.len() >= 3, "{} groups", runs.len());
    }
}
