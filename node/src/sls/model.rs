//! The values SLS calls take and return.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use trail_proto::sls::LogGroupList;

use crate::sls::codec::{self, CodecError, Compression};

/// A shard's position as SLS gives it: base64 of a decimal int64. Opaque to
/// callers; [`Cursor::sequence`] decodes it for arithmetic (cursors of one
/// shard are consecutive integers, one per log group).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor(String);

impl Cursor {
    pub fn new(value: impl Into<String>) -> Self {
        Cursor(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The integer behind the cursor, if it is well-formed (padded or not).
    pub fn sequence(&self) -> Option<i64> {
        let trimmed = self.0.trim_end_matches('=');
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .ok()?;
        std::str::from_utf8(&raw).ok()?.trim().parse().ok()
    }

    /// The cursor for an integer position (padded, as SLS writes it).
    pub fn from_sequence(seq: i64) -> Self {
        Cursor(base64::engine::general_purpose::STANDARD.encode(seq.to_string()))
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({})", self.0)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where GetCursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorPosition {
    /// The oldest retained log group.
    Begin,
    /// The next position to be written.
    End,
    /// The first log group received at or after this unix time (seconds).
    Time(u32),
}

impl CursorPosition {
    pub(crate) fn query_value(self) -> String {
        match self {
            CursorPosition::Begin => "begin".into(),
            CursorPosition::End => "end".into(),
            CursorPosition::Time(t) => t.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardStatus {
    ReadWrite,
    /// Split or merged: readable to its end, then finished.
    ReadOnly,
}

impl<'de> Deserialize<'de> for ShardStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.eq_ignore_ascii_case("readwrite") {
            Ok(ShardStatus::ReadWrite)
        } else if s.eq_ignore_ascii_case("readonly") {
            Ok(ShardStatus::ReadOnly)
        } else {
            Err(serde::de::Error::custom(format!(
                "unknown shard status {s:?}"
            )))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Shard {
    #[serde(rename = "shardID")]
    pub shard_id: u32,
    pub status: ShardStatus,
    #[serde(rename = "inclusiveBeginKey")]
    pub inclusive_begin_key: String,
    #[serde(rename = "exclusiveEndKey")]
    pub exclusive_end_key: String,
    #[serde(rename = "createTime", default)]
    pub create_time: i64,
}

/// What one PullLogs asks for.
#[derive(Debug, Clone)]
pub struct PullRequest<'a> {
    pub cursor: &'a Cursor,
    /// Log groups at most, 1..=1000.
    pub count: u32,
    /// Stop before this cursor.
    pub end_cursor: Option<&'a Cursor>,
    /// The body compression we accept.
    pub compression: Compression,
    /// The most the answer may hold, raw (decompressed) or on the wire: a
    /// larger one is refused before it is read ([`SlsError::TooLarge`]).
    pub max_bytes: usize,
}

/// [`PullRequest::max_bytes`] unless set: far above the 2 MiB a consumer
/// aims a pull at, and six SLS log groups (≤ 5 MB each).
pub const DEFAULT_MAX_PULL_BYTES: usize = 32 * 1024 * 1024;

impl<'a> PullRequest<'a> {
    pub fn new(cursor: &'a Cursor) -> Self {
        PullRequest {
            cursor,
            count: 1000,
            end_cursor: None,
            compression: Compression::Lz4,
            max_bytes: DEFAULT_MAX_PULL_BYTES,
        }
    }
}

/// A PullLogs answer. The body is left compressed so the caller chooses where the
/// CPU work of [`PulledBody::decode`] happens.
#[derive(Debug, Clone)]
pub struct PullResponse {
    /// The cursor to pull from next. Equal to the request cursor when caught up.
    pub next_cursor: Cursor,
    /// Log groups returned.
    pub count: u32,
    /// `x-log-read-last-cursor`: the decimal position of the last group returned.
    pub read_last_cursor: Option<i64>,
    /// `x-log-cursor-time`: receive time of the data returned (0 when none).
    pub cursor_time: Option<u32>,
    /// `x-log-end-of-cursor: 1`: the reader has caught up.
    pub end_of_cursor: bool,
    pub body: PulledBody,
}

impl PullResponse {
    /// True when nothing came back and the cursor did not move.
    pub fn caught_up(&self, request_cursor: &Cursor) -> bool {
        self.count == 0 && &self.next_cursor == request_cursor
    }
}

/// A PullLogs body as it came over the wire.
#[derive(Debug, Clone)]
pub struct PulledBody {
    pub compression: Compression,
    /// Declared uncompressed size (`x-log-bodyrawsize`).
    pub raw_size: usize,
    pub bytes: Bytes,
}

impl PulledBody {
    /// Decompresses and decodes. Keys and values borrow the decompressed buffer.
    pub fn decode(self) -> Result<LogGroupList, CodecError> {
        if self.raw_size == 0 {
            return Ok(LogGroupList::default());
        }
        let raw = codec::decompress(self.compression, self.bytes, self.raw_size)?;
        codec::decode_log_group_list(raw)
    }
}

/// Where PutLogs sends a log group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutTarget<'a> {
    /// `/shards/lb`: the service picks a readwrite shard.
    LoadBalanced,
    /// `/shards/route?key=`: the readwrite shard whose range holds this 32-hex key.
    HashKey(&'a str),
}

/// One shard's checkpoint in a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConsumerGroupCheckpoint {
    pub shard: u32,
    /// Empty when nothing was ever committed.
    pub checkpoint: String,
    #[serde(rename = "updateTime", default)]
    pub update_time: i64,
    #[serde(default)]
    pub consumer: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_decodes_padded_and_unpadded() {
        let c = Cursor::new("MTQ0NzI5OTYwNjg5NjYzMjM1Ng==");
        assert_eq!(c.sequence(), Some(1447299606896632356));
        assert_eq!(
            Cursor::new("MTQ0NzI5OTYwNjg5NjYzMjM1Ng").sequence(),
            Some(1447299606896632356)
        );
        assert_eq!(Cursor::from_sequence(1447299606896632356), c);
        assert_eq!(Cursor::new("not base64!").sequence(), None);
    }

    #[test]
    fn shard_json_parses() {
        let s: Vec<Shard> = serde_json::from_str(
            r#"[{"shardID":0,"status":"readwrite","inclusiveBeginKey":"00000000000000000000000000000000",
                 "exclusiveEndKey":"80000000000000000000000000000000","createTime":1700000000},
                {"shardID":1,"status":"readonly","inclusiveBeginKey":"8","exclusiveEndKey":"f"}]"#,
        )
        .unwrap();
        assert_eq!(s[0].status, ShardStatus::ReadWrite);
        assert_eq!(s[1].status, ShardStatus::ReadOnly);
    }
}
