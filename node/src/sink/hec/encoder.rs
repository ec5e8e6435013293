//! One event as an HEC envelope: `time` from `eventTime`, `host`, `source`,
//! `sourcetype`, optional `index`, indexed `fields` and the original event,
//! untouched, as `event`. No other envelope key is ever written (Splunk
//! silently drops objects after one).
//!
//! Indexed `fields` (flat strings): `shard`, the shard's `epoch` in a
//! cluster, the business fields [`IndexedFields`] selects, the CIM fields of
//! an ActionTrail event ([`super::cim`]) and the tags. Indexed fields cost
//! bytes on the wire, in deflate and in Splunk's tsidx; the default
//! (`tstats`) keeps what Splunk users group by — the event name, read/write,
//! who, which account, which resources, tag status, where it came from —
//! and leaves out the copies of values the raw `event` already carries
//! (search-time JSON extraction finds those).
//!
//! Everything constant is rendered once per sink: `,"host":…`, a configured
//! `,"source":…`, and per trail `,"sourcetype":…,"index":…,"fields":{"shard":"`,
//! as are each selected field's `,"name":`. A value the parser borrowed
//! unescaped is copied between quotes without a second look.

use std::io::Write;

use super::cim::CimMap;
use super::config::IndexedFields;
use crate::event::Format;
use crate::record::View;
use crate::record::{business_field, write_json_str, write_tag_fields, write_time, EventEncoder};

/// What a HEC sink's envelopes say besides the event.
#[derive(Debug, Clone)]
pub struct HecEnvelope {
    pub host: String,
    /// Default: the logstore the event came from.
    pub source: Option<String>,
    /// Default: `alibaba:actiontrail` / `aws:cloudtrail` by the event's trail.
    pub sourcetype: Option<String>,
    pub index: Option<String>,
    pub tag_prefix: String,
    /// CIM fields for ActionTrail events (`cim = true`, the default).
    pub cim: Option<CimMap>,
    pub indexed: IndexedFields,
}

/// Writes [`HecEnvelope`]s; built once per sink.
pub struct HecEncoder {
    /// `,"host":"…"`
    host: Box<[u8]>,
    /// `,"source":"…"` when the source is configured.
    source: Option<Box<[u8]>>,
    /// Per [`Format`]: `,"sourcetype":"…"[,"index":"…"],"fields":{"shard":"`.
    middle: [Box<[u8]>; 2],
    /// The selected business fields: index into `BUSINESS_FIELDS`, `,"name":`.
    fields: Box<[(usize, Box<[u8]>)]>,
    tag_prefix: String,
    cim: Option<CimMap>,
}

impl HecEncoder {
    pub fn new(envelope: HecEnvelope) -> Self {
        let render = |key: &str, value: &str| {
            let mut out = Vec::with_capacity(key.len() + value.len() + 6);
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            write_json_str(&mut out, value);
            out
        };
        let middle = |format: Format| {
            let sourcetype = envelope.sourcetype.as_deref().unwrap_or(match format {
                Format::ActionTrail => "alibaba:actiontrail",
                Format::CloudTrail => "aws:cloudtrail",
            });
            let mut out = render("sourcetype", sourcetype);
            if let Some(index) = &envelope.index {
                out.extend_from_slice(&render("index", index));
            }
            out.extend_from_slice(b",\"fields\":{\"shard\":\"");
            out.into_boxed_slice()
        };
        let fields = envelope
            .indexed
            .selected(envelope.source.is_some())
            .into_iter()
            .map(|(i, name)| (i, format!(",\"{name}\":").into_bytes().into_boxed_slice()))
            .collect();
        HecEncoder {
            host: render("host", &envelope.host).into_boxed_slice(),
            source: envelope
                .source
                .as_deref()
                .map(|s| render("source", s).into_boxed_slice()),
            middle: [middle(Format::ActionTrail), middle(Format::CloudTrail)],
            fields,
            tag_prefix: envelope.tag_prefix,
            cim: envelope.cim,
        }
    }
}

impl EventEncoder for HecEncoder {
    fn encode(&self, v: &View<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":");
        write_time(out, v.time);
        out.extend_from_slice(&self.host);
        match &self.source {
            Some(source) => out.extend_from_slice(source),
            None => {
                out.extend_from_slice(b",\"source\":");
                write_json_str(out, &v.provenance.logstore);
            }
        }
        out.extend_from_slice(match v.event.format {
            Format::ActionTrail => &self.middle[0],
            Format::CloudTrail => &self.middle[1],
        });
        let _ = write!(out, "{}\"", v.provenance.shard);
        if v.provenance.epoch > 0 {
            let _ = write!(out, ",\"epoch\":\"{}\"", v.provenance.epoch);
        }
        for (i, key) in self.fields.iter() {
            if let Some(value) = business_field(v, *i) {
                out.extend_from_slice(key);
                value.write_json(out);
            }
        }
        if let Some(cim) = &self.cim {
            cim.write_fields(v, out);
        }
        write_tag_fields(out, &self.tag_prefix, v.tags);
        out.extend_from_slice(b"},\"event\":");
        out.extend_from_slice(v.raw);
        out.push(b'}');
    }
}
