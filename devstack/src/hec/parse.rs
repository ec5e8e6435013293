//! HEC `/event` bodies: concatenated JSON objects, each checked the way Splunk
//! does (HEC notes §2, §3), so a refused object has the code Splunk gives and
//! the index (`invalid-event-number`) of the first object not taken.

use serde_json::{Map, Value};

use crate::hec::HecError;

/// An object Splunk would index.
#[derive(Debug, Clone, PartialEq)]
pub struct Indexed {
    /// Seconds, microsecond precision; `None` means receipt time.
    pub time: Option<f64>,
    pub host: Option<String>,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    pub index: Option<String>,
    pub fields: Map<String, Value>,
    pub event: Value,
}

/// What a body yields: the objects taken, and the error that stopped it, if any.
#[derive(Debug)]
pub struct Parsed {
    pub indexed: Vec<Indexed>,
    pub error: Option<(HecError, usize)>,
    /// Objects silently not indexed (an unknown key, or `fields` without `event`).
    pub skipped: usize,
}

const KEYS: [&str; 7] = [
    "event",
    "time",
    "host",
    "source",
    "sourcetype",
    "index",
    "fields",
];

/// Parses a `/event` body. `allowed_indexes` empty means any index.
pub fn parse_events(body: &[u8], allowed_indexes: &[String], max_event_size: usize) -> Parsed {
    let mut out = Parsed {
        indexed: Vec::new(),
        error: None,
        skipped: 0,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        out.error = Some((HecError::NoData, 0));
        return out;
    }
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let mut n = 0usize;
    loop {
        let start = stream.byte_offset();
        let value = match stream.next() {
            None => break,
            Some(Ok(v)) => v,
            Some(Err(_)) => {
                out.error = Some((HecError::InvalidDataFormat, n));
                return out;
            }
        };
        let size = stream.byte_offset() - start;
        let Value::Object(mut obj) = value else {
            // A JSON array is not a batch; neither is any other non-object.
            out.error = Some((HecError::InvalidDataFormat, n));
            return out;
        };
        if obj.keys().any(|k| !KEYS.contains(&k.as_str())) {
            // Splunk answers 200 but indexes nothing from here on (a sole object: 400 code 5).
            if n == 0 && stream.next().is_none() {
                out.error = Some((HecError::NoData, 0));
            } else {
                out.skipped += 1;
            }
            return out;
        }
        if size > max_event_size {
            out.error = Some((HecError::InvalidDataFormat, n));
            return out;
        }
        let event = match obj.remove("event") {
            None if obj.contains_key("fields") => {
                out.skipped += 1; // taken as a metric, not indexed
                n += 1;
                continue;
            }
            None => {
                out.error = Some((HecError::EventFieldRequired, n));
                return out;
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                out.error = Some((HecError::EventFieldBlank, n));
                return out;
            }
            Some(Value::Null | Value::Bool(false)) => {
                out.error = Some((HecError::InvalidDataFormat, n));
                return out;
            }
            Some(e) => e,
        };
        let fields = match obj.remove("fields") {
            None => Map::new(),
            Some(Value::Object(f)) => {
                let nested = f.values().any(|v| match v {
                    Value::Object(_) => true,
                    Value::Array(a) => a.iter().any(|x| x.is_object() || x.is_array()),
                    _ => false,
                });
                if nested {
                    out.error = Some((HecError::IndexedFields, n));
                    return out;
                }
                // Splunk silently drops integer-valued indexed fields.
                f.into_iter()
                    .filter(|(_, v)| !(v.is_i64() || v.is_u64()))
                    .collect()
            }
            Some(_) => {
                out.error = Some((HecError::IndexedFields, n));
                return out;
            }
        };
        let text = |o: &mut Map<String, Value>, k: &str| match o.remove(k) {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let index = text(&mut obj, "index");
        if let Some(i) = &index {
            if !allowed_indexes.is_empty() && !allowed_indexes.contains(i) {
                out.error = Some((HecError::IncorrectIndex, n));
                return out;
            }
        }
        let time = match obj.remove("time") {
            None | Some(Value::Null) => None,
            Some(v) => match parse_time(&v) {
                Some(t) => Some(t),
                None => {
                    out.error = Some((HecError::InvalidDataFormat, n));
                    return out;
                }
            },
        };
        out.indexed.push(Indexed {
            time,
            host: text(&mut obj, "host"),
            source: text(&mut obj, "source"),
            sourcetype: text(&mut obj, "sourcetype"),
            index,
            fields,
            event,
        });
        n += 1;
    }
    out
}

/// `time`: seconds (fraction allowed), as a number or numeric string; 13-digit
/// integers are milliseconds and 19-digit ones nanoseconds. Kept to microseconds.
pub fn parse_time(v: &Value) -> Option<f64> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    let secs = if text.bytes().all(|b| b.is_ascii_digit()) {
        let n: f64 = text.parse().ok()?;
        match text.len() {
            13 => n / 1e3,
            19 => n / 1e9,
            _ => n,
        }
    } else {
        text.parse::<f64>().ok().filter(|t| t.is_finite())?
    };
    Some((secs * 1e6).round() / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Parsed {
        parse_events(
            body.as_bytes(),
            &["main".to_string(), "audit".to_string()],
            5 << 20,
        )
    }

    #[test]
    fn concatenated_objects_with_and_without_whitespace() {
        let p = parse(r#"{"event":"a"}{"event":{"b":1}} {"event":"c","time":"1433188255.500"}"#);
        assert!(p.error.is_none());
        assert_eq!(p.indexed.len(), 3);
        assert_eq!(p.indexed[2].time, Some(1433188255.5));
    }

    #[test]
    fn per_object_errors_name_the_object_and_keep_the_prefix() {
        let cases = [
            (r#"{"event":"a"}{"event":"b""#, HecError::InvalidDataFormat),
            (
                r#"{"event":"a"}{"event":"  "}{"event":"c"}"#,
                HecError::EventFieldBlank,
            ),
            (
                r#"{"event":"a"}{"time":1}{"event":"c"}"#,
                HecError::EventFieldRequired,
            ),
            (
                r#"{"event":"a"}{"event":"b","fields":{"x":{"y":1}}}{"event":"c"}"#,
                HecError::IndexedFields,
            ),
            (
                r#"{"event":"a"}{"event":"b","index":"secret"}{"event":"c"}"#,
                HecError::IncorrectIndex,
            ),
            (
                r#"{"event":"a"}{"event":null}{"event":"c"}"#,
                HecError::InvalidDataFormat,
            ),
        ];
        for (body, code) in cases {
            let p = parse(body);
            assert_eq!(p.error, Some((code, 1)), "{body}");
            assert_eq!(p.indexed.len(), 1, "{body}: object 0 is indexed");
        }
    }

    #[test]
    fn arrays_empty_bodies_and_unknown_keys() {
        assert_eq!(
            parse(r#"[{"event":"a"}]"#).error,
            Some((HecError::InvalidDataFormat, 0))
        );
        assert_eq!(parse("  ").error, Some((HecError::NoData, 0)));
        assert_eq!(
            parse(r#"{"event":"a","extra":1}"#).error,
            Some((HecError::NoData, 0))
        );
        let p = parse(r#"{"event":"a"}{"event":"b","extra":1}{"event":"c"}"#);
        assert!(p.error.is_none());
        assert_eq!(p.indexed.len(), 1, "200, but only the prefix is indexed");
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time(&serde_json::json!(1433188255.5)),
            Some(1433188255.5)
        );
        assert_eq!(
            parse_time(&serde_json::json!("1433188255")),
            Some(1433188255.0)
        );
        assert_eq!(
            parse_time(&serde_json::json!(1433188255500u64)),
            Some(1433188255.5)
        );
        assert_eq!(
            parse_time(&serde_json::json!(1433188255500000000u64)),
            Some(1433188255.5)
        );
        assert_eq!(parse_time(&serde_json::json!("soon")), None);
    }

    #[test]
    fn integer_fields_are_dropped_like_splunk() {
        let p = parse(r#"{"event":"a","fields":{"s":"x","i":3,"f":1.5,"arr":["a","b"]}}"#);
        let f = &p.indexed[0].fields;
        assert!(f.contains_key("s") && f.contains_key("f") && f.contains_key("arr"));
        assert!(!f.contains_key("i"));
    }
}
