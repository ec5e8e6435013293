//! Request and response bodies: the 10 MiB limit, `x-log-compresstype`
//! (lz4 raw block, zstd, deflate) and `x-log-bodyrawsize`, with the SLS error
//! for each way a body can be wrong.

use std::io::{Read, Write};

use bytes::Bytes;

use crate::sls::error::ApiError;

/// SLS refuses request bodies above this with 413 `PostBodyTooLarge`.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// The largest uncompressed body devstack will inflate (a lying
/// `x-log-bodyrawsize` must not make it reserve gigabytes).
pub const MAX_RAW_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCompression {
    None,
    Lz4,
    Zstd,
    Deflate,
}

impl BodyCompression {
    pub fn token(self) -> Option<&'static str> {
        match self {
            BodyCompression::None => None,
            BodyCompression::Lz4 => Some("lz4"),
            BodyCompression::Zstd => Some("zstd"),
            BodyCompression::Deflate => Some("deflate"),
        }
    }

    /// PullLogs' choice from `Accept-Encoding`: the first token we know; an empty
    /// header means uncompressed.
    pub fn from_accept_encoding(v: &str) -> Self {
        v.split(',')
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .find_map(|t| match t.as_str() {
                "lz4" => Some(BodyCompression::Lz4),
                "zstd" => Some(BodyCompression::Zstd),
                "deflate" | "gzip" => Some(BodyCompression::Deflate),
                _ => None,
            })
            .unwrap_or(BodyCompression::None)
    }
}

/// Decodes a request body per its `x-log-compresstype` and `x-log-bodyrawsize`.
pub fn decode_request(
    body: Bytes,
    compress_type: Option<&str>,
    raw_size: Option<&str>,
) -> Result<Bytes, ApiError> {
    let Some(ct) = compress_type.map(str::trim).filter(|c| !c.is_empty()) else {
        // Without compression, x-log-bodyrawsize is unreliable (SDKs send 0): ignore it.
        return Ok(body);
    };
    let kind = match ct.to_ascii_lowercase().as_str() {
        "lz4" => BodyCompression::Lz4,
        "zstd" => BodyCompression::Zstd,
        "deflate" | "gzip" => BodyCompression::Deflate,
        other => {
            return Err(ApiError::bad(
                "InvalidCompressType",
                format!("compress type {other:?} is not supported"),
            ))
        }
    };
    let raw_size = raw_size.ok_or_else(|| {
        ApiError::bad(
            "MissingBodyRawSize",
            "x-log-bodyrawsize is required with x-log-compresstype",
        )
    })?;
    let raw_size: usize = raw_size.trim().parse().map_err(|_| {
        ApiError::bad(
            "InvalidBodyRawSize",
            format!("x-log-bodyrawsize {raw_size:?} is not a size"),
        )
    })?;
    if raw_size > MAX_RAW_BODY {
        return Err(ApiError::bad(
            "InvalidBodyRawSize",
            format!("x-log-bodyrawsize {raw_size} exceeds {MAX_RAW_BODY}"),
        ));
    }
    let corrupt = |e: String| {
        ApiError::bad(
            "PostBodyInvalid",
            format!("{ct} body does not decompress: {e}"),
        )
    };
    let out = match kind {
        BodyCompression::None => unreachable!("matched above"),
        BodyCompression::Lz4 => {
            let mut out = vec![0u8; raw_size];
            let n = lz4_flex::block::decompress_into(&body, &mut out)
                .map_err(|e| corrupt(e.to_string()))?;
            out.truncate(n);
            out
        }
        BodyCompression::Zstd => {
            zstd::bulk::decompress(&body, raw_size).map_err(|e| corrupt(e.to_string()))?
        }
        BodyCompression::Deflate => {
            let mut out = Vec::with_capacity(raw_size.min(MAX_BODY));
            flate2::read::ZlibDecoder::new(&body[..])
                .take(raw_size as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(e.to_string()))?;
            out
        }
    };
    if out.len() != raw_size {
        return Err(ApiError::bad(
            "InvalidBodyRawSize",
            format!(
                "body decompressed to {} bytes, x-log-bodyrawsize says {raw_size}",
                out.len()
            ),
        ));
    }
    Ok(Bytes::from(out))
}

/// Compresses a response body.
pub fn compress(kind: BodyCompression, raw: &[u8]) -> Bytes {
    match kind {
        BodyCompression::None => Bytes::copy_from_slice(raw),
        BodyCompression::Lz4 => Bytes::from(lz4_flex::block::compress(raw)),
        BodyCompression::Zstd => {
            Bytes::from(zstd::bulk::compress(raw, 1).expect("zstd compresses any input"))
        }
        BodyCompression::Deflate => {
            let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(raw).expect("writing to a Vec cannot fail");
            Bytes::from(enc.finish().expect("writing to a Vec cannot fail"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_way_a_body_is_wrong_has_its_error() {
        let raw = b"hello hello hello hello".to_vec();
        let lz4 = compress(BodyCompression::Lz4, &raw);
        let n = raw.len().to_string();
        assert_eq!(
            decode_request(lz4.clone(), Some("lz4"), Some(&n)).unwrap(),
            raw
        );
        let code = |r: Result<Bytes, ApiError>| r.unwrap_err().code;
        assert_eq!(
            code(decode_request(lz4.clone(), Some("lz4"), None)),
            "MissingBodyRawSize"
        );
        assert_eq!(
            code(decode_request(lz4.clone(), Some("lz4"), Some("x"))),
            "InvalidBodyRawSize"
        );
        assert_eq!(
            code(decode_request(lz4.clone(), Some("lz4"), Some("999"))),
            "InvalidBodyRawSize"
        );
        assert_eq!(
            code(decode_request(lz4.clone(), Some("lz4"), Some("3"))),
            "PostBodyInvalid"
        );
        assert_eq!(
            code(decode_request(lz4.clone(), Some("snappy"), Some(&n))),
            "InvalidCompressType"
        );
        assert_eq!(
            code(decode_request(lz4, Some("lz4"), Some("99999999999"))),
            "InvalidBodyRawSize"
        );
        for k in [BodyCompression::Zstd, BodyCompression::Deflate] {
            let c = compress(k, &raw);
            assert_eq!(
                decode_request(c, k.token(), Some(&n)).unwrap(),
                raw,
                "{k:?}"
            );
        }
    }

    #[test]
    fn accept_encoding_choice() {
        assert_eq!(
            BodyCompression::from_accept_encoding("lz4"),
            BodyCompression::Lz4
        );
        assert_eq!(
            BodyCompression::from_accept_encoding(""),
            BodyCompression::None
        );
        assert_eq!(
            BodyCompression::from_accept_encoding("zstd"),
            BodyCompression::Zstd
        );
        assert_eq!(
            BodyCompression::from_accept_encoding("gzip, deflate"),
            BodyCompression::Deflate
        );
        assert_eq!(
            BodyCompression::from_accept_encoding("br"),
            BodyCompression::None
        );
    }
}
