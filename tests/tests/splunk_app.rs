//! `deploy/splunk/trail_business_view`: there is no Splunk here, so this
//! checks what can be checked — every `.conf` parses as Splunk's conf
//! syntax, the views are well-formed XML, the lookup is a proper CSV, the
//! cross references hold (tags → eventtypes, props → transforms → lookup
//! file), and every field the app's searches and fields.conf name is one
//! Trail emits for generated events (or a key of the raw event, or one the
//! search defines itself).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use trail_devstack::gen::Generator;
use trail_node::event::{EventFilter, FilterConfig, RwFilter};
use trail_node::pipeline::enrich::Enrichment;
use trail_node::sink::hec::cim::CimMap;
use trail_node::sink::hec::{HecEncoder, HecEnvelope};
use trail_node::tags::{builtin_kinds, StaticTags, TagCache};

type Conf = BTreeMap<String, BTreeMap<String, String>>;

fn app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/splunk/trail_business_view")
}

/// Splunk's .conf syntax: `[stanza]` headers, `key = value` lines, `#`
/// comments, a trailing `\` continuing a value on the next line. Anything
/// else, or a key twice in one stanza, is an error naming file and line.
fn parse_conf(path: &Path) -> Result<Conf, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut conf = Conf::new();
    let mut stanza = "default".to_string();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let at = || format!("{}:{}", path.display(), n + 1);
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| format!("{}: unclosed stanza header", at()))?;
            if conf.contains_key(name) {
                return Err(format!("{}: stanza [{name}] twice", at()));
            }
            stanza = name.to_string();
            conf.entry(stanza.clone()).or_default();
            continue;
        }
        let (key, value) = t
            .split_once('=')
            .ok_or_else(|| format!("{}: neither a stanza nor key = value: {t}", at()))?;
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("{}: bad key {key:?}", at()));
        }
        let mut value = value.trim().to_string();
        while value.ends_with('\\') {
            value.pop();
            let (_, next) = lines
                .next()
                .ok_or_else(|| format!("{}: continuation at end of file", at()))?;
            value.push('\n');
            value.push_str(next.trim());
        }
        let s = conf.entry(stanza.clone()).or_default();
        if s.insert(key.to_string(), value).is_some() {
            return Err(format!("{}: key {key} twice in [{stanza}]", at()));
        }
    }
    Ok(conf)
}

fn conf(name: &str) -> Conf {
    parse_conf(&app().join("default").join(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// The text of every element named `tag` (well-formedness is checked on the way).
fn xml_texts(path: &Path, tag: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let text = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let (mut depth, mut inside, mut out) = (0i32, false, Vec::new());
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                depth += 1;
                inside = e.name().as_ref() == tag.as_bytes();
                if inside {
                    out.push(String::new());
                }
            }
            Ok(Event::End(_)) => {
                depth -= 1;
                inside = false;
            }
            Ok(Event::Text(t)) if inside => {
                out.last_mut().unwrap().push_str(&t.unescape().unwrap());
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{}: not well-formed XML: {e}", path.display()),
        }
    }
    assert_eq!(depth, 0, "{}: unbalanced elements", path.display());
    out
}

/// Every field name Trail's HEC encoder writes (envelope and `fields`) for a
/// few thousand generated events, and every key path of the raw events.
fn emitted() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut g = Generator::new(11);
    let dir = std::env::temp_dir().join(format!("trail-splunk-app-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tags = dir.join("tags.json");
    std::fs::write(&tags, serde_json::to_vec(&g.tags_file()).unwrap()).unwrap();
    let raw: Vec<String> = (0..3000).map(|_| g.next_event()).collect();
    let e = Enrichment {
        filter: EventFilter::new(&FilterConfig {
            event_rw: RwFilter::All,
            ..Default::default()
        }),
        tags: Some(TagCache::new(
            Arc::new(StaticTags::open(&tags, Duration::from_secs(3600)).unwrap()),
            100_000,
            Duration::from_secs(3600),
        )),
        kinds: builtin_kinds().into(),
        max_event_bytes: 1 << 20,
        max_envelope_bytes: 32 << 20,
        event_key: b"event".to_vec(),
        tag_budget: Duration::from_secs(1),
    };
    let encoder = HecEncoder::new(HecEnvelope {
        host: "n1".into(),
        source: None,
        sourcetype: None,
        index: Some("audit".into()),
        tag_prefix: "tag_".into(),
        cim: Some(CimMap::default()),
        indexed: Default::default(),
    });
    let (envelopes, _) = trail_tests::enrich_for_hec(&e, raw, encoder, 3);
    let mut fields = BTreeSet::new();
    let mut keys = BTreeSet::new();
    fn paths(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
        if let Value::Object(m) = v {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                paths(&p, v, out);
                out.insert(p);
            }
        }
    }
    for v in &envelopes {
        for (k, _) in v.as_object().unwrap() {
            if k != "fields" && k != "event" {
                fields.insert(k.clone());
            }
        }
        fields.extend(v["fields"].as_object().unwrap().keys().cloned());
        paths("", &v["event"], &mut keys);
    }
    // ActionTrail's own sensitive-action marker: in the spec (§1.1), not in the generator.
    keys.insert("eventAttributes.SensitiveAction".into());
    (fields, keys)
}

/// Field names a search uses: `name=`, `name!=`, `name IN (`, after `by`
/// and `table`, and quoted `'name'` in `where`. Quoted strings are skipped.
fn fields_named(spl: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // Drop "..." literals so their contents are not read as names.
    let mut bare = String::new();
    let mut in_str = false;
    for c in spl.chars() {
        match c {
            '"' => {
                in_str = !in_str;
                bare.push(' ');
            }
            _ if in_str => {}
            _ => bare.push(c),
        }
    }
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !s.chars().next().unwrap().is_ascii_digit()
    };
    let words: Vec<&str> = bare
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let mut listing = false;
    for (i, w) in words.iter().enumerate() {
        if *w == "|" {
            listing = false;
            continue;
        }
        if listing && ident(w) {
            out.insert(w.to_string());
            continue;
        }
        listing = matches!(*w, "by" | "table");
        if let Some(name) = w.split(['=', '!']).next().filter(|_| w.contains('=')) {
            let name = name.trim_matches('\'');
            if ident(name) {
                out.insert(name.to_string());
            }
        }
        if words.get(i + 1) == Some(&"IN") && ident(w) {
            out.insert(w.to_string());
        }
        if w.starts_with('\'') && w.ends_with('\'') && w.len() > 2 {
            out.insert(w.trim_matches('\'').to_string());
        }
    }
    out
}

#[test]
fn every_conf_file_parses_as_splunk_conf() {
    let dir = app().join("default");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "conf") {
            parse_conf(&p).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(
        n >= 6,
        "app, props, transforms, eventtypes, tags, fields: {n}"
    );
    parse_conf(&app().join("metadata/default.meta")).unwrap();
    // The parser can fail.
    let bad = std::env::temp_dir().join(format!("trail-bad-{}.conf", std::process::id()));
    for text in [
        "[open\nkey = v\n",
        "[s]\njust words\n",
        "[s]\nk = 1\nk = 2\n",
        "[s]\nk = a \\",
    ] {
        std::fs::write(&bad, text).unwrap();
        assert!(parse_conf(&bad).is_err(), "{text:?}");
    }
}

#[test]
fn references_between_the_files_hold() {
    let eventtypes = conf("eventtypes.conf");
    for stanza in conf("tags.conf").keys() {
        let et = stanza
            .strip_prefix("eventtype=")
            .unwrap_or_else(|| panic!("tags.conf [{stanza}] is not an eventtype"));
        assert!(
            eventtypes.contains_key(et),
            "tags.conf names eventtype {et}"
        );
    }
    let transforms = conf("transforms.conf");
    for (k, v) in &conf("props.conf")["alibaba:actiontrail"] {
        if k.starts_with("LOOKUP-") {
            let name = v.split_whitespace().next().unwrap();
            let t = transforms
                .get(name)
                .unwrap_or_else(|| panic!("props names transform {name}"));
            let csv = app().join("lookups").join(&t["filename"]);
            let text = std::fs::read_to_string(&csv).unwrap();
            let mut rows = text.lines();
            let header: Vec<&str> = rows.next().unwrap().split(',').collect();
            assert_eq!(header, ["eventName", "sensitive"]);
            for r in rows {
                assert_eq!(r.split(',').count(), 2, "{r}");
            }
            // The lookup's input and output fields are the ones props names.
            assert!(
                v.contains(" eventName ") && v.ends_with(" sensitive"),
                "{v}"
            );
        }
    }
    // The CIM tags the models use.
    let tags = conf("tags.conf");
    let tagged: BTreeSet<&str> = tags
        .values()
        .flat_map(|s| s.keys())
        .map(String::as_str)
        .collect();
    for t in ["change", "audit", "account", "instance", "authentication"] {
        assert!(tagged.contains(t), "tag {t}");
    }
    // The nav's views exist.
    for name in xml_attr_values(&app().join("default/data/ui/nav/default.xml"), "name") {
        if name != "search" {
            assert!(
                app()
                    .join(format!("default/data/ui/views/{name}.xml"))
                    .exists(),
                "view {name}"
            );
        }
    }
}

fn xml_attr_values(path: &Path, attr: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let text = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                for a in e.attributes() {
                    let a = a.unwrap();
                    if a.key.as_ref() == attr.as_bytes() {
                        out.push(String::from_utf8(a.value.to_vec()).unwrap());
                    }
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    out
}

#[test]
fn every_field_the_app_names_is_one_trail_emits() {
    let (emitted, raw_keys) = emitted();
    // Fields every CIM table row promises are among what the generator's events produced.
    for f in CimMap::FIELD_NAMES {
        assert!(
            emitted.contains(*f),
            "CIM field {f} never emitted: {emitted:?}"
        );
    }
    let splunk = [
        "index",
        "sourcetype",
        "source",
        "host",
        "_time",
        "count",
        "eventtype",
        "tag",
    ];
    // Defined by the searches themselves (lookup output).
    let defined = ["sensitive"];
    let mut searches: Vec<(String, String)> = Vec::new();
    for (name, s) in conf("eventtypes.conf") {
        searches.push((format!("eventtypes.conf [{name}]"), s["search"].clone()));
    }
    let views = app().join("default/data/ui/views");
    let mut view_count = 0;
    for entry in std::fs::read_dir(&views).unwrap() {
        let p = entry.unwrap().path();
        view_count += 1;
        for q in xml_texts(&p, "query") {
            searches.push((p.display().to_string(), q));
        }
    }
    assert!(view_count >= 1 && searches.len() >= 8, "{searches:?}");
    for (at, spl) in &searches {
        let spl = spl.replace("$index$", "*");
        let named = fields_named(&spl);
        assert!(!named.is_empty(), "{at}: no field found in {spl}");
        // tstats reads only indexed fields: a raw key is not enough there,
        // so the default `indexed_fields` must keep what the panels use.
        let tstats = spl.trim_start().starts_with("tstats") || spl.contains("| tstats");
        for f in named {
            if tstats {
                assert!(
                    emitted.contains(&f) || splunk.contains(&f.as_str()),
                    "{at}: tstats by `{f}`, which the default envelope does not index"
                );
            }
            assert!(
                emitted.contains(&f)
                    || raw_keys.contains(&f)
                    || splunk.contains(&f.as_str())
                    || defined.contains(&f.as_str()),
                "{at}: `{f}` is neither emitted by Trail nor a key of the raw event"
            );
        }
    }
    // fields.conf declares only what Trail itself writes.
    for field in conf("fields.conf").keys() {
        assert!(
            emitted.contains(field),
            "fields.conf [{field}] is never emitted"
        );
        assert!(
            !raw_keys.contains(field),
            "fields.conf [{field}] is also a raw key: INDEXED would hide raw-only events"
        );
    }
}

#[test]
fn the_field_finder_finds_what_searches_name() {
    let f = fields_named(
        r#"| tstats count where index=* sourcetype="a:b" status="failure" by eventName userName | where sensitive="true" OR 'eventAttributes.SensitiveAction'="true" | table _time resources"#,
    );
    let want: BTreeSet<String> = [
        "index",
        "sourcetype",
        "status",
        "eventName",
        "userName",
        "sensitive",
        "eventAttributes.SensitiveAction",
        "_time",
        "resources",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(f, want);
    let f = fields_named(r#"x NOT eventName IN ("ConsoleSignin", "b=c")"#);
    assert_eq!(f, BTreeSet::from(["eventName".to_string()]));
}

/// Splunk's lookup of sensitive actions and the SLS saved search that
/// `trail-node setup` makes name the same events.
#[test]
fn the_sensitive_actions_lookup_is_the_list_setup_searches_for() {
    let csv = std::fs::read_to_string(app().join("lookups/trail_sensitive_actions.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("eventName,sensitive"));
    let in_lookup: Vec<&str> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.strip_suffix(",true")
                .unwrap_or_else(|| panic!("{l:?}: expected NAME,true"))
        })
        .collect();
    assert_eq!(
        in_lookup,
        trail_node::sink::sls::setup::SENSITIVE_ACTIONS,
        "deploy/splunk/trail_business_view/lookups/trail_sensitive_actions.csv and \
         sink::sls::setup::SENSITIVE_ACTIONS differ"
    );
}
