//! `eventRW` read off an event's bytes before it is parsed, so the filter
//! can drop what it would drop anyway — 82 % of a trail are reads, and a
//! writes-only filter is the default — at the cost of a scan, not a parse.
//!
//! A search for `"eventRW":"` ahead of any nesting decides the events as
//! the trails write them (the key comes early) at memchr speed. Otherwise
//! the scan walks the top-level object's keys the way a JSON parser does
//! (strings with their escapes, nested objects and arrays skipped whole,
//! in any key order) without building anything. It answers only when the
//! answer cannot differ from the parser's on a valid event: one top-level
//! `eventRW` (or its alias `EventRW`) whose value is a string without
//! escapes, no top-level key written with an escape (it could spell
//! `eventRW`), and no top-level `awsRegion` (a CloudTrail record takes its
//! read/write from `readOnly`). Anything else returns `None`: parse to know.
//!
//! One difference remains, by design: an event the parser would refuse
//! (no `eventId`, broken JSON inside, a duplicate key, invalid UTF-8
//! elsewhere, nesting past the parser's limit) whose top level says it is a
//! read is dropped as a read instead of being dead-lettered. An event cut
//! short — one that does not end with `}` — is always left to the parser. The filter would have dropped its valid
//! twin anyway.

/// The event's top-level `eventRW` value, when the bytes say it beyond
/// doubt (see the module doc); `None` means "parse to know".
pub fn event_rw(json: &[u8]) -> Option<&str> {
    match early(json) {
        Some(rw) => Some(rw),
        None => walk(json),
    }
}

/// The fast path, at search speed: `"eventRW":"…"` as the trails write it,
/// ahead of every nested value and escape (so at the top level, at a key
/// position, outside any string), and no `awsRegion` anywhere. A later
/// duplicate would make the event invalid, which the module doc allows.
fn early(json: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"eventRW\":\"";
    let start = ws(json, 0);
    // An object that does not end as one (an event cut short, the usual
    // damage) is left to the parser, which dead-letters it.
    if *json.get(start)? != b'{'
        || json.iter().rev().find(|b| !b.is_ascii_whitespace()) != Some(&b'}')
    {
        return None;
    }
    let at = memchr::memmem::find(&json[start + 1..], KEY)? + start + 1;
    let before = &json[start + 1..at];
    if memchr::memchr3(b'{', b'[', b'\\', before).is_some()
        || !memchr::memchr_iter(b'"', before).count().is_multiple_of(2)
        || !matches!(
            before.iter().rev().find(|b| !b.is_ascii_whitespace()),
            None | Some(b',')
        )
    {
        return None;
    }
    let value = at + KEY.len();
    let len = memchr::memchr2(b'"', b'\\', json.get(value..)?)?;
    // Only a `\u` escape can spell a letter, so without one no key can be
    // `awsRegion` (a CloudTrail record) unless it is written plainly.
    if json[value + len] != b'"'
        || memchr::memmem::find(json, b"\"awsRegion\"").is_some()
        || memchr::memmem::find(json, b"\\u").is_some()
    {
        return None;
    }
    std::str::from_utf8(&json[value..value + len]).ok()
}

/// The slow path: every top-level key walked, nested values skipped whole.
fn walk(json: &[u8]) -> Option<&str> {
    let mut i = ws(json, 0);
    if *json.get(i)? != b'{' {
        return None;
    }
    i += 1;
    let mut found: Option<&[u8]> = None;
    loop {
        i = ws(json, i);
        if *json.get(i)? != b'"' {
            return None;
        }
        let (key, escaped, next) = string(json, i)?;
        if escaped {
            return None;
        }
        i = ws(json, next);
        if *json.get(i)? != b':' {
            return None;
        }
        i = ws(json, i + 1);
        match key {
            b"eventRW" | b"EventRW" => {
                if found.is_some() || *json.get(i)? != b'"' {
                    return None;
                }
                let (value, escaped, next) = string(json, i)?;
                if escaped {
                    return None;
                }
                found = Some(value);
                i = next;
            }
            b"awsRegion" => return None,
            _ => i = skip_value(json, i)?,
        }
        i = ws(json, i);
        match *json.get(i)? {
            b',' => i += 1,
            b'}' => break,
            _ => return None,
        }
    }
    std::str::from_utf8(found?).ok()
}

#[inline]
fn ws(json: &[u8], mut i: usize) -> usize {
    while json
        .get(i)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// The string starting at `json[i] == '"'`: its raw content, whether it
/// holds an escape, and the index after its closing quote.
#[inline]
fn string(json: &[u8], i: usize) -> Option<(&[u8], bool, usize)> {
    let start = i + 1;
    let mut j = start;
    let mut escaped = false;
    loop {
        j += memchr::memchr2(b'"', b'\\', json.get(j..)?)?;
        if json[j] == b'"' {
            return Some((&json[start..j], escaped, j + 1));
        }
        escaped = true;
        j += 2; // the backslash and the byte it escapes
    }
}

/// The index after the value starting at `json[i]`.
fn skip_value(json: &[u8], mut i: usize) -> Option<usize> {
    match *json.get(i)? {
        b'"' => string(json, i).map(|(_, _, next)| next),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match *json.get(i)? {
                    b'"' => {
                        i = string(json, i)?.2;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // A number, true, false or null: up to the next delimiter.
        _ => {
            while !matches!(
                *json.get(i)?,
                b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
            ) {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Wherever the scan answers on an event the parser takes, the parser
    /// says the same: generated trail events as written, with their keys
    /// re-ordered (sorted) and pretty-printed.
    #[test]
    fn the_scan_never_contradicts_the_parser_on_the_trail() {
        let mut g = trail_devstack::gen::Generator::new(21);
        let (mut answered, mut reads, mut reads_answered) = (0, 0, 0);
        for _ in 0..20_000 {
            let text = g.next_event();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let sorted = serde_json::to_string(&v).unwrap();
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            for json in [&text, &sorted, &pretty] {
                let scanned = event_rw(json.as_bytes());
                let parsed = crate::event::parse(json.as_bytes());
                if let Some(rw) = scanned {
                    answered += 1;
                    let ev = parsed.unwrap_or_else(|e| panic!("{e}: {json}"));
                    assert_eq!(ev.event_rw.as_deref(), Some(rw), "{json}");
                }
            }
            if v["eventRW"] == "Read" {
                reads += 1;
                reads_answered += usize::from(event_rw(text.as_bytes()).is_some());
            }
        }
        assert!(
            answered > 30_000,
            "the scan answered only {answered} of 60,000"
        );
        assert_eq!(
            reads, reads_answered,
            "every generated read is decided by the scan"
        );
    }

    #[test]
    fn a_broken_read_is_read_as_a_read_by_design() {
        // The parser would refuse these; the filter drops their valid twins.
        assert_eq!(event_rw(br#"{"eventRW":"Read","x":{"y":1}"#), Some("Read"));
        assert_eq!(
            event_rw(br#"{"eventRW":"Read","eventRW":"Write"}"#),
            Some("Read")
        );
        assert_eq!(
            event_rw(br#"{"eventRW":"Read","acsRegion":}"#),
            Some("Read")
        );
        // Cut short, as damaged events usually are: left to the parser.
        assert_eq!(event_rw(br#"{"eventRW":"Read""#), None);
        assert_eq!(event_rw(br#"{"eventRW":"Read","x":{"#), None);
        assert_eq!(event_rw(br#"{"eventRW":"Read","eventId":"#), None);
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-zA-Z\\\"{}\\[\\],: ]{0,8}".prop_map(serde_json::Value::from),
            prop_oneof![Just("Read"), Just("Write"), Just("eventRW")]
                .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("eventRW".to_owned()),
                        Just("EventRW".to_owned()),
                        "[a-z\\\"]{1,6}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// On any JSON object: an answer is the top-level `eventRW` (or
        /// `EventRW`) string, exactly.
        #[test]
        fn an_answer_is_the_top_level_value(v in json_value(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
            if let Some(rw) = event_rw(text.as_bytes()) {
                let top = v.as_object().expect("only objects are answered");
                // Both names: a duplicate field to the parser, which refuses
                // the event; any answer is allowed then.
                if !(top.contains_key("eventRW") && top.contains_key("EventRW")) {
                    let value = top.get("eventRW").or_else(|| top.get("EventRW"));
                    prop_assert_eq!(value.and_then(|x| x.as_str()), Some(rw), "{}", text);
                }
            }
        }

        /// On any bytes: no panic, and an answer lies within them.
        #[test]
        fn any_bytes_are_scanned_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = event_rw(&bytes);
        }

        /// Cut anywhere, a real event is never misread.
        #[test]
        fn a_truncated_event_is_never_misread(cut in 0usize..4000, seed in 0u64..1000) {
            let text = trail_devstack::gen::Generator::new(seed).next_event();
            let cut = cut.min(text.len());
            if let Some(rw) = event_rw(&text.as_bytes()[..cut]) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(v["eventRW"].as_str(), Some(rw));
            }
        }
    }

    #[test]
    fn the_top_level_value_is_read_off_the_bytes_in_any_key_order() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"eventId":"e1","eventRW":"Read","userIdentity":{"type":"ram-user"}}"#,
                "Read",
            ),
            (r#"  {"eventRW":"Write","eventId":"e1"}"#, "Write"),
            (
                r#"{ "apiVersion" : "2014-05-26" , "eventRW" : "Read" }"#,
                "Read",
            ),
            (
                r#"{"userIdentity":{"eventRW":"Write","a":[1,{"b":"}"}]},"requestParameters":{"q":"\"x\\"},"eventRW":"Read"}"#,
                "Read",
            ),
            (r#"{"n":-1.5e3,"t":true,"z":null,"eventRW":"Read"}"#, "Read"),
            (r#"{"EventRW":"Write"}"#, "Write"),
            (r#"{"eventRW":""}"#, ""),
        ];
        for (json, want) in cases {
            assert_eq!(event_rw(json.as_bytes()), Some(*want), "{json}");
        }
    }

    #[test]
    fn anything_ambiguous_is_left_to_the_parser() {
        for json in [
            // Only nested, or only inside a string.
            r#"{"userIdentity":{"eventRW":"Read"}}"#,
            r#"{"errorMessage":"\"eventRW\":\"Read\""}"#,
            // A key or the value with an escape.
            r#"{"event\u0052W":"Write","eventRW":"Read"}"#,
            r#"{"eventRW":"Re\u0061d"}"#,
            // Twice after nesting (the parser refuses a duplicate), not a string.
            r#"{"a":{},"eventRW":"Read","EventRW":"Write"}"#,
            r#"{"eventRW":1}"#,
            r#"{"eventRW":null}"#,
            // A CloudTrail record: its read/write is `readOnly`, even
            // with the key spelled by escapes.
            r#"{"eventRW":"Read","awsRegion":"us-east-1","readOnly":false}"#,
            r#"{"eventRW":"Read","aws\u0052egion":"us-east-1","readOnly":false}"#,
            // Not an object, no key, cut short.
            r#"["eventRW","Read"]"#,
            r#"{"eventId":"e1"}"#,
            r#"{"x":{},"eventRW":"Read""#,
            r#"{"x":{},"eventRW":"Read","y":{"#,
            r#"{"a":"x""eventRW":"Read"}"#,
            r#"{"a" "eventRW":"Read"}"#,
            "{",
            "",
            "   ",
        ] {
            assert_eq!(event_rw(json.as_bytes()), None, "{json}");
        }
    }
}
