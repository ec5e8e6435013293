//! One event as an HEC envelope: `time` from `eventTime`, `host`, `source`,
//! `sourcetype`, optional `index`, indexed `fields` (business view, shard, the
//! shard's epoch in a cluster, the CIM fields of an ActionTrail event
//! ([`super::cim`]), tags; flat strings) and the original event, untouched, as `event`. No other
//! envelope key is ever written (Splunk silently drops objects after one).

use std::io::Write;

use super::cim::CimMap;
use crate::event::Format;
use crate::record::View;
use crate::record::{business_fields, write_json_str, write_tag_fields, write_time, EventEncoder};

pub struct HecEncoder {
    pub host: String,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    pub index: Option<String>,
    pub tag_prefix: String,
    /// CIM fields for ActionTrail events (`cim = true`, the default).
    pub cim: Option<CimMap>,
}

impl EventEncoder for HecEncoder {
    fn encode(&self, v: &View<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":");
        write_time(out, v.time);
        out.extend_from_slice(b",\"host\":");
        write_json_str(out, &self.host);
        out.extend_from_slice(b",\"source\":");
        write_json_str(
            out,
            self.source.as_deref().unwrap_or(&v.provenance.logstore),
        );
        out.extend_from_slice(b",\"sourcetype\":");
        let sourcetype = self.sourcetype.as_deref().unwrap_or(match v.event.format {
            Format::ActionTrail => "alibaba:actiontrail",
            Format::CloudTrail => "aws:cloudtrail",
        });
        write_json_str(out, sourcetype);
        if let Some(index) = &self.index {
            out.extend_from_slice(b",\"index\":");
            write_json_str(out, index);
        }
        out.extend_from_slice(b",\"fields\":{");
        let mut first = true;
        for (k, val) in business_fields(v) {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            write_json_str(out, val);
        }
        let _ = write!(out, ",\"shard\":\"{}\"", v.provenance.shard);
        if v.provenance.epoch > 0 {
            let _ = write!(out, ",\"epoch\":\"{}\"", v.provenance.epoch);
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
