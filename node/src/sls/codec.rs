//! Body codecs of the SLS API: compression and the `LogGroup` protobuf.
//!
//! * `lz4` is a **raw LZ4 block** (no frame, no size prefix); its size comes from
//!   `x-log-bodyrawsize`. `zstd` is a standard frame. Trail asks for and sends
//!   only these two (SLS also knows `deflate`, which Java clients use).
//! * Decoding checks before it allocates: a declared raw size above
//!   [`MAX_RAW_SIZE`] is refused before any buffer is reserved, and the
//!   decompressed length must equal the declared one exactly.
//! * [`decode_log_group_list`] decodes from a `Bytes` buffer: every key, value,
//!   topic and source in the result is a slice of that buffer (see
//!   `proto/sls/log.proto`), so there is one allocation per log (its contents
//!   vector), none per field.

use bytes::Bytes;
use prost::Message;
use trail_proto::sls::{LogGroup, LogGroupList};

/// The largest decompressed body we accept (a PullLogs of 1000 groups is far
/// below this; a lying `x-log-bodyrawsize` is not).
pub const MAX_RAW_SIZE: usize = 256 * 1024 * 1024;

/// The largest request body SLS accepts (413 `PostBodyTooLarge` above it).
pub const MAX_REQUEST_BODY: usize = 10 * 1024 * 1024;

/// The largest raw (uncompressed) LogGroup SLS accepts in one PutLogs.
pub const MAX_LOG_GROUP_RAW: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    #[default]
    Lz4,
    Zstd,
}

impl Compression {
    /// The `x-log-compresstype` / `Accept-Encoding` token; `None` for no compression.
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Lz4 => Some("lz4"),
            Compression::Zstd => Some("zstd"),
        }
    }

    pub fn from_header(value: &str) -> Result<Self, CodecError> {
        match value.trim() {
            "" => Ok(Compression::None),
            v if v.eq_ignore_ascii_case("lz4") => Ok(Compression::Lz4),
            v if v.eq_ignore_ascii_case("zstd") => Ok(Compression::Zstd),
            other => Err(CodecError::UnknownCompression(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("unknown compression type {0:?}")]
    UnknownCompression(String),
    #[error("declared raw size {declared} exceeds the limit of {limit} bytes")]
    RawSizeTooLarge { declared: usize, limit: usize },
    #[error("{kind} body does not decompress: {reason}")]
    Corrupt { kind: &'static str, reason: String },
    #[error("{kind} body decompressed to {actual} bytes, but {declared} were declared")]
    RawSizeMismatch {
        kind: &'static str,
        declared: usize,
        actual: usize,
    },
    #[error("protobuf: {0}")]
    Protobuf(String),
}

/// Decompresses `body` that was declared to be `raw_size` bytes uncompressed.
pub fn decompress(
    compression: Compression,
    body: Bytes,
    raw_size: usize,
) -> Result<Bytes, CodecError> {
    if compression == Compression::None {
        return Ok(body);
    }
    if raw_size > MAX_RAW_SIZE {
        return Err(CodecError::RawSizeTooLarge {
            declared: raw_size,
            limit: MAX_RAW_SIZE,
        });
    }
    let (kind, out) = match compression {
        Compression::None => unreachable!("handled above"),
        Compression::Lz4 => {
            // Allocates `raw_size` once, without zero-filling it first, and
            // refuses output beyond it.
            let out =
                lz4_flex::block::decompress(&body, raw_size).map_err(|e| CodecError::Corrupt {
                    kind: "lz4",
                    reason: e.to_string(),
                })?;
            ("lz4", out)
        }
        Compression::Zstd => {
            // `bulk::decompress` refuses output larger than the capacity we give it.
            let out = zstd::bulk::decompress(&body, raw_size).map_err(|e| CodecError::Corrupt {
                kind: "zstd",
                reason: e.to_string(),
            })?;
            ("zstd", out)
        }
    };
    if out.len() != raw_size {
        return Err(CodecError::RawSizeMismatch {
            kind,
            declared: raw_size,
            actual: out.len(),
        });
    }
    Ok(Bytes::from(out))
}

/// Compresses a request body. Returns the body as sent.
pub fn compress(compression: Compression, raw: &[u8]) -> Result<Bytes, CodecError> {
    match compression {
        Compression::None => Ok(Bytes::copy_from_slice(raw)),
        Compression::Lz4 => Ok(Bytes::from(lz4_flex::block::compress(raw))),
        Compression::Zstd => {
            zstd::bulk::compress(raw, 1)
                .map(Bytes::from)
                .map_err(|e| CodecError::Corrupt {
                    kind: "zstd",
                    reason: e.to_string(),
                })
        }
    }
}

/// Decodes a PullLogs body (already decompressed). Zero-copy for byte fields.
pub fn decode_log_group_list(raw: Bytes) -> Result<LogGroupList, CodecError> {
    LogGroupList::decode(raw).map_err(|e| CodecError::Protobuf(e.to_string()))
}

/// Encodes one LogGroup for PutLogs.
pub fn encode_log_group(group: &LogGroup) -> Vec<u8> {
    group.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trail_proto::sls::{Log, LogContent};

    fn sample_list() -> LogGroupList {
        LogGroupList {
            log_group_list: vec![LogGroup {
                logs: vec![Log {
                    time: 1_700_000_000,
                    contents: vec![LogContent {
                        key: Bytes::from_static(b"event"),
                        value: Bytes::from_static(b"{\"eventId\":\"x\"}"),
                    }],
                    time_ns: Some(7),
                }],
                topic: Some(Bytes::from_static(b"actiontrail_audit_event")),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn lz4_and_zstd_round_trip_with_declared_size() {
        let raw = sample_list().encode_to_vec();
        for c in [Compression::Lz4, Compression::Zstd, Compression::None] {
            let body = compress(c, &raw).unwrap();
            let back = decompress(c, body, raw.len()).unwrap();
            assert_eq!(&back[..], &raw[..], "{c:?}");
            assert_eq!(decode_log_group_list(back).unwrap(), sample_list());
        }
    }

    #[test]
    fn lying_raw_size_is_an_error_not_a_panic() {
        let raw = sample_list().encode_to_vec();
        let body = compress(Compression::Lz4, &raw).unwrap();
        let short = decompress(Compression::Lz4, body.clone(), raw.len() - 1).unwrap_err();
        assert!(
            matches!(short, CodecError::Corrupt { kind: "lz4", .. }),
            "{short:?}"
        );
        let long = decompress(Compression::Lz4, body, raw.len() + 10).unwrap_err();
        assert!(
            matches!(long, CodecError::RawSizeMismatch { .. }),
            "{long:?}"
        );
        let huge = decompress(Compression::Zstd, Bytes::from_static(b"x"), usize::MAX).unwrap_err();
        assert!(matches!(huge, CodecError::RawSizeTooLarge { .. }));
    }

    #[test]
    fn garbage_is_an_error() {
        let junk = Bytes::from_static(&[0xff, 0xff, 0xff, 0x01, 0x02]);
        assert!(decompress(Compression::Lz4, junk.clone(), 100).is_err());
        assert!(decompress(Compression::Zstd, junk.clone(), 100).is_err());
        assert!(decode_log_group_list(junk).is_err());
    }

    #[test]
    fn decoded_fields_borrow_the_buffer() {
        let raw = Bytes::from(sample_list().encode_to_vec());
        let range = raw.as_ptr() as usize..raw.as_ptr() as usize + raw.len();
        let list = decode_log_group_list(raw.clone()).unwrap();
        let value = &list.log_group_list[0].logs[0].contents[0].value;
        assert!(
            range.contains(&(value.as_ptr() as usize)),
            "value should be a slice of the response buffer, not a copy"
        );
    }

    #[test]
    fn compression_tokens() {
        assert_eq!(Compression::from_header("LZ4").unwrap(), Compression::Lz4);
        assert_eq!(Compression::from_header("").unwrap(), Compression::None);
        assert!(Compression::from_header("snappy").is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body: Vec<u8>, raw_size in 0usize..4096) {
            let body = Bytes::from(body);
            let _ = decompress(Compression::Lz4, body.clone(), raw_size);
            let _ = decompress(Compression::Zstd, body.clone(), raw_size);
            let _ = decode_log_group_list(body);
        }
    }
}
