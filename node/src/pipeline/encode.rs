//! Encoded events and the business view.
//!
//! Each sink brings an [`EventEncoder`]; the enricher calls every encoder for
//! every event that passes, on its own thread, so sinks receive bytes ready
//! to batch. A batch's events for one sink travel as one [`EventSlab`]: a
//! single buffer plus end offsets, so a sink can send, split or resend any
//! run of events without copying them one by one.

use std::ops::Range;

use bytes::Bytes;

use crate::pipeline::enrich::{Tags, View};

/// Writes one event in a sink's format.
pub trait EventEncoder: Send + Sync + 'static {
    fn encode(&self, view: &View<'_>, out: &mut Vec<u8>);
}

/// Events being encoded.
#[derive(Debug, Default)]
pub struct EncodedEvents {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl EncodedEvents {
    pub fn push_with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        f(&mut self.buf);
        self.ends.push(self.buf.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn freeze(self) -> EventSlab {
        EventSlab {
            bytes: Bytes::from(self.buf),
            ends: self.ends,
        }
    }
}

/// Encoded events, frozen: cheap to clone and slice.
#[derive(Debug, Clone, Default)]
pub struct EventSlab {
    bytes: Bytes,
    ends: Vec<usize>,
}

impl EventSlab {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all events.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// Event `i`.
    pub fn event(&self, i: usize) -> Bytes {
        self.bytes.slice(self.start(i)..self.ends[i])
    }

    /// Events `r`, contiguous.
    pub fn range(&self, r: Range<usize>) -> Bytes {
        if r.is_empty() {
            return Bytes::new();
        }
        self.bytes.slice(self.start(r.start)..self.ends[r.end - 1])
    }

    /// Bytes of events `r`.
    pub fn range_len(&self, r: Range<usize>) -> usize {
        if r.is_empty() {
            0
        } else {
            self.ends[r.end - 1] - self.start(r.start)
        }
    }
}

/// The business-view fields of an event, by name, skipping empty ones.
/// ActionTrail's names are kept for both trails (`acsRegion` holds a CloudTrail
/// `awsRegion`), so one dashboard reads both.
pub fn business_fields<'v>(v: &'v View<'_>) -> impl Iterator<Item = (&'static str, &'v str)> {
    let e = v.event;
    [
        ("eventId", Some(&*e.event_id)),
        ("eventName", e.event_name.as_deref()),
        ("eventRW", e.event_rw.as_deref()),
        ("eventSource", e.event_source.as_deref()),
        ("eventTime", e.event_time.as_deref()),
        ("eventType", e.event_type.as_deref()),
        ("acsRegion", e.region.as_deref()),
        ("serviceName", e.service_name.as_deref()),
        ("resourceType", e.resource_type.as_deref()),
        ("resourceName", e.resource_name.as_deref()),
        ("accountId", e.owner_account()),
        ("principalId", e.principal_id.as_deref()),
        ("userName", e.user_name.as_deref()),
        ("userType", e.user_type.as_deref()),
        ("sourceIpAddress", e.source_ip.as_deref()),
        ("errorCode", e.error_code.as_deref()),
        ("requestId", e.request_id.as_deref()),
        ("logstore", Some(&*v.provenance.logstore)),
        ("cursor", Some(v.cursor)),
        ("tag_status", Some(v.tag_status.as_str())),
    ]
    .into_iter()
    .filter_map(|(k, val)| val.filter(|s| !s.is_empty()).map(|s| (k, s)))
}

/// Bytes that need escaping in a JSON string: `"`, `\\` and controls.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Appends `s` as a JSON string literal. Runs of plain bytes are copied whole.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    write_json_str_parts(out, &[s]);
}

/// Appends the concatenation of `parts` as one JSON string literal, without
/// building the concatenation (a prefixed field name, say).
pub fn write_json_str_parts(out: &mut Vec<u8>, parts: &[&str]) {
    out.push(b'"');
    for s in parts {
        escape_into(out, s);
    }
    out.push(b'"');
}

/// Appends `,"{prefix}{key}":"{value}"` for every tag.
pub fn write_tag_fields(out: &mut Vec<u8>, prefix: &str, tags: &Tags) {
    for (k, v) in tags.iter() {
        out.push(b',');
        write_json_str_parts(out, &[prefix, k]);
        out.push(b':');
        write_json_str(out, v);
    }
}

fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len());
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !NEEDS_ESCAPE[b as usize] {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends a number of seconds with millisecond precision.
pub fn write_time(out: &mut Vec<u8>, t: f64) {
    use std::io::Write;
    let ms = (t * 1000.0).round() as i64;
    let _ = write!(out, "{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_exactly() {
        for s in [
            "plain",
            "quote\" back\\slash",
            "nl\n tab\t cr\r",
            "ctl\u{1}\u{1f}",
            "ü 用户 ☃",
            "",
        ] {
            let mut out = Vec::new();
            write_json_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn string_parts_escape_as_one_string() {
        let mut out = Vec::new();
        write_json_str_parts(&mut out, &["tag_", "a\"b"]);
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), "tag_a\"b");
    }

    #[test]
    fn times_have_milliseconds() {
        let mut out = Vec::new();
        write_time(&mut out, 1715653867.5);
        assert_eq!(out, b"1715653867.500");
    }

    #[test]
    fn slab_ranges() {
        let mut e = EncodedEvents::default();
        for w in ["aa", "b", "cccc"] {
            e.push_with(|b| b.extend_from_slice(w.as_bytes()));
        }
        let s = e.freeze();
        assert_eq!(s.len(), 3);
        assert_eq!(&s.event(1)[..], b"b");
        assert_eq!(&s.range(1..3)[..], b"bcccc");
        assert_eq!(s.range_len(0..2), 3);
        assert!(s.range(2..2).is_empty());
    }
}
