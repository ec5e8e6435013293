//! Fuzz targets: every decoder a byte from outside the node reaches, each
//! as a `fn(&[u8])` that must return — never panic, never allocate past
//! what the input justifies. `panic = "abort"` makes any panic a node
//! crash (and a poison event would crash each owner of its shard in turn),
//! so these are the node's real entry points, called as the node calls
//! them, with the invariants the pipeline relies on asserted after.
//!
//! `trail-fuzz` (tests/src/bin) drives them with structure-aware mutations
//! of realistic seeds; `tests/tests/fuzz_replay.rs` replays the kept
//! corpora (`tests/fuzz/corpus/<target>/`) and a short run in CI.
//!
//! Floor 6: reaches into every floor below, only to call.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

use crate::event::{self, EventFilter, FilterConfig, RwFilter};
use crate::pipeline::enrich::Enrichment;
use crate::record::{EventEncoder, Provenance, SourceKind};
use crate::sink::hec::cim::CimMap;
use crate::sink::hec::{HecEncoder, HecEnvelope, IndexedFields};
use crate::sink::sls::SlsLogEncoder;
use crate::sls::codec::{self, Compression};
use crate::tags::{builtin_kinds, StaticTags, TagCache};

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// What its bytes are.
    pub input: &'static str,
    pub run: fn(&[u8]),
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "pull_body",
        input: "byte 0: compression (bits 0-1: none, lz4, zstd, none) and filter \
                (bit 2: every event, else writes only); bytes 1-3: declared raw size \
                (u24 LE); the rest: a PullLogs body",
        run: pull_body,
    },
    Target {
        name: "event",
        input: "one event's JSON (ActionTrail, CloudTrail, or {\"Records\": [...]})",
        run: event,
    },
    Target {
        name: "sls_answer",
        input: "status line, header lines, an empty line, the body",
        run: crate::sls::client::decode_answers,
    },
    Target {
        name: "hec_answer",
        input: "2 bytes of status (LE), a Retry-After line, the body",
        run: crate::sink::hec::service::decode_answers,
    },
    Target {
        name: "tag_answer",
        input: "a ListTagResources, AssumeRole or GetResources JSON answer",
        run: tag_answer,
    },
    Target {
        name: "tags_file",
        input: "byte 0: JSON (odd) or CSV (even); the rest: a tags file",
        run: tags_file,
    },
    Target {
        name: "config",
        input: "a node's TOML config",
        run: config,
    },
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The pipeline as a node builds it: a tags file, both filters, an HEC
/// encoder (CIM on, every business field) and an SLS one.
struct Pipeline {
    writes: Enrichment,
    all: Enrichment,
    encoders: Vec<Arc<dyn EventEncoder>>,
    provenance: Provenance,
}

fn pipeline() -> &'static Pipeline {
    static P: OnceLock<Pipeline> = OnceLock::new();
    P.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("trail-fuzz-tags-{}.csv", std::process::id()));
        std::fs::write(
            &path,
            "arn,key,value\n\
             acs:ecs:cn-hangzhou:1234567890123456:instance/i-bp1,project,fuzz\n\
             acs:ecs:cn-hangzhou:1234567890123456:instance/i-bp1,team,\"q\\\n",
        )
        .expect("the temp dir is writable");
        let tags = TagCache::new(
            Arc::new(StaticTags::open(&path, Duration::from_secs(3600)).expect("written above")),
            1000,
            Duration::from_secs(3600),
        );
        let enrichment = |event_rw| Enrichment {
            filter: EventFilter::new(&FilterConfig {
                event_rw,
                ..Default::default()
            }),
            tags: Some(tags.clone()),
            kinds: builtin_kinds().into(),
            max_event_bytes: 64 * 1024,
            max_envelope_bytes: 1 << 20,
            event_key: b"event".to_vec(),
            tag_budget: Duration::from_millis(1),
        };
        Pipeline {
            writes: enrichment(RwFilter::Write),
            all: enrichment(RwFilter::All),
            encoders: vec![
                Arc::new(HecEncoder::new(HecEnvelope {
                    host: "fuzz".into(),
                    source: None,
                    sourcetype: None,
                    index: Some("audit".into()),
                    tag_prefix: "tag_".into(),
                    cim: Some(CimMap::default()),
                    indexed: IndexedFields::All,
                })),
                Arc::new(SlsLogEncoder {
                    tag_prefix: "tag_".into(),
                    include_event: true,
                }),
            ],
            provenance: Provenance {
                project: "p".into(),
                logstore: "actiontrail_fuzz".into(),
                shard: 1,
                epoch: 3,
                source: SourceKind::Sls,
            },
        }
    })
}

/// A PullLogs body through decompression, protobuf and the whole
/// enrichment, as a shard consumer hands it over. Asserts what the sinks
/// rely on: every HEC envelope is one JSON object, every SLS log decodes,
/// every passed event is encoded once per sink, every dead letter counted.
pub fn pull_body(data: &[u8]) {
    let [head, s0, s1, s2, body @ ..] = data else {
        return;
    };
    let compression = match head & 3 {
        1 => Compression::Lz4,
        2 => Compression::Zstd,
        _ => Compression::None,
    };
    let raw_size = u32::from_le_bytes([*s0, *s1, *s2, 0]) as usize;
    let Ok(raw) = codec::decompress(compression, Bytes::copy_from_slice(body), raw_size) else {
        return;
    };
    let Ok(list) = codec::decode_log_group_list(raw) else {
        return;
    };
    let p = pipeline();
    let e = if head & 4 != 0 { &p.all } else { &p.writes };
    let cursors: Vec<String> = (0..list.log_group_list.len())
        .map(|i| format!("MTcxNTY1Mzg2Nzk{i}"))
        .collect();
    let out = e.run(&list, &cursors, &p.provenance, &p.encoders);
    let s = &out.stats;
    assert_eq!(out.dead_letters.len() as u64, s.dead_lettered);
    let mut parts = out.parts.into_iter();
    let hec = parts.next().expect("two encoders").freeze();
    let sls = parts.next().expect("two encoders").freeze();
    assert_eq!(hec.len() as u64, s.passed);
    assert_eq!(sls.len() as u64, s.passed);
    for i in 0..hec.len() {
        let envelope = hec.event(i);
        let e: Envelope = std::str::from_utf8(&envelope)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(text).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("HEC envelope is not JSON ({e}): {envelope:?}"));
        assert!(e.time.is_finite() && e.fields.contains_key("shard"));
    }
    for i in 0..sls.len() {
        let log = sls.event(i);
        trail_proto::sls::Log::decode(&log[..]).expect("the SLS encoder writes a Log");
    }
}

/// What an HEC envelope must be: UTF-8, JSON by the grammar, everything
/// Trail writes strictly valid (a `serde_json::Value`). The raw `event` is
/// held to the grammar only: the trail's own values, such as a lone
/// surrogate escape or a number past f64 in a part Trail never reads, are
/// passed as written (Splunk's answer to them is handled as any 400).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Envelope {
    time: f64,
    host: String,
    source: String,
    sourcetype: String,
    index: Option<String>,
    fields: serde_json::Map<String, serde_json::Value>,
    event: serde::de::IgnoredAny,
}

/// One event's bytes through every reader of events: the read scan, the
/// parser, the `Records` splitter, resources and time. The scan never
/// contradicts the parser.
pub fn event(data: &[u8]) {
    let scanned = event::prescan::event_rw(data);
    match event::parse(data) {
        Ok(ev) => {
            if let Some(rw) = scanned {
                assert_eq!(ev.event_rw.as_deref(), Some(rw), "scan vs parse");
            }
            let _ = ev.resources();
            let _ = ev.unix_time();
            let _ = ev.owner_account();
            if let Some(name) = ev.event_name.as_deref() {
                let _ = event::infer_rw(name);
            }
        }
        Err(e) => {
            let _ = (e.kind(), e.to_string());
        }
    }
    if let Some(Ok(records)) = event::records(data) {
        for r in records {
            let _ = event::prescan::event_rw(r);
            let _ = event::parse(r);
        }
    }
}

pub fn tag_answer(data: &[u8]) {
    crate::tags::alibaba::decode_answers(data);
    crate::tags::aws::decode_answers(data);
}

pub fn tags_file(data: &[u8]) {
    let [head, text @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(table) = crate::tags::static_file::parse(text, head & 1 == 1) {
        for (arn, tags) in table.iter().take(16) {
            let _ = (arn.len(), tags.len());
        }
    }
}

pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = toml::from_str::<crate::config::Config>(text) {
        let _ = c.validate().map_err(|e| e.to_string());
        // Debug output is what logs see: it must not fail either.
        let _ = format!("{c:?}");
    }
}
