//! The one JSON writer every encoder shares: string literals escaped in
//! runs (plain bytes copied whole), field names built from parts without
//! concatenating them, times with millisecond precision.

use crate::record::Tags;

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
#[inline]
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    write_json_str_parts(out, &[s]);
}

/// Appends the concatenation of `parts` as one JSON string literal, without
/// building the concatenation (a prefixed field name, say).
#[inline]
pub fn write_json_str_parts(out: &mut Vec<u8>, parts: &[&str]) {
    out.push(b'"');
    for s in parts {
        escape_into(out, s);
    }
    out.push(b'"');
}

/// Appends `items` joined by `sep` as one JSON string literal, without
/// building the joined string.
#[inline]
pub fn write_json_str_joined<'a>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = &'a str>,
    sep: &str,
) {
    out.push(b'"');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            escape_into(out, sep);
        }
        escape_into(out, s);
    }
    out.push(b'"');
}

/// Appends `,"{prefix}{key}":"{value}"` for every tag: one resource's set
/// as it rendered itself once ([`TagSet::write_fields`](crate::record::TagSet::write_fields)),
/// merged sets as they go.
#[inline]
pub fn write_tag_fields(out: &mut Vec<u8>, prefix: &str, tags: &Tags) {
    match tags {
        Tags::Empty => {}
        Tags::One(set) => set.write_fields(prefix, out),
        Tags::Merged(m) => {
            write_fields(out, prefix, m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        }
    }
}

/// Appends `,"{prefix}{key}":"{value}"` for every pair.
pub(crate) fn write_fields<'a>(
    out: &mut Vec<u8>,
    prefix: &str,
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) {
    for (k, v) in pairs {
        out.push(b',');
        write_json_str_parts(out, &[prefix, k]);
        out.push(b':');
        write_json_str(out, v);
    }
}

/// Whether a JSON string literal of `s` would escape anything.
pub fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| NEEDS_ESCAPE[b as usize])
}

#[inline]
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
#[inline]
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
    fn joined_strings_escape_as_one_string() {
        let mut out = Vec::new();
        write_json_str_joined(&mut out, ["a", "b\"c", ""], ",");
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), "a,b\"c,");
        out.clear();
        write_json_str_joined(&mut out, std::iter::empty(), ",");
        assert_eq!(out, b"\"\"");
    }

    #[test]
    fn times_have_milliseconds() {
        let mut out = Vec::new();
        write_time(&mut out, 1715653867.5);
        assert_eq!(out, b"1715653867.500");
    }
}
