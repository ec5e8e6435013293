//! The enrichment step, pure: a decoded PullLogs batch in, for each sink its
//! events encoded, plus dead letters and counts out. The [`Enricher`](super::Enricher)
//! actor runs it on its own thread; the criterion bench runs it directly.
//!
//! Per log: topic filter → the `event` content (or `[enrich] event_key`; a
//! CloudTrail `{"Records": [...]}` file splits into its records) → parse ([`crate::event`]) →
//! filters → resources → tags (merged over the event's resources; values of
//! one key from several resources are joined with `,`) → one encoding per sink.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use trail_proto::sls::LogGroupList;

use crate::event::{self, AuditEvent, DropReason, EventFilter};
use crate::pipeline::encode::{EncodedEvents, EventEncoder};
use crate::tags::{arn_into, Lookup, ResourceKind, TagCache, TagSet};

/// Where an event came from.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub project: Arc<str>,
    pub logstore: Arc<str>,
    pub shard: u32,
}

/// How tags were found for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagStatus {
    /// At least one resource had tags.
    Ok,
    /// Resources were looked up; none had tags.
    None,
    /// The event names no resource we can look up.
    NoResource,
}

impl TagStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TagStatus::Ok => "ok",
            TagStatus::None => "none",
            TagStatus::NoResource => "no_resource",
        }
    }
}

/// An event's tags: one resource's set shared as is (the common case), or
/// several resources' sets merged, values of one key joined with `,`.
#[derive(Debug, Clone, Default)]
pub enum Tags {
    #[default]
    Empty,
    One(TagSet),
    Merged(BTreeMap<String, String>),
}

impl Tags {
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&str, &str)> + '_> {
        match self {
            Tags::Empty => Box::new(std::iter::empty()),
            Tags::One(t) => Box::new(t.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            Tags::Merged(m) => Box::new(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        match self {
            Tags::Empty => None,
            Tags::One(t) => t.get(key).map(String::as_str),
            Tags::Merged(m) => m.get(key).map(String::as_str),
        }
    }

    fn add(&mut self, set: TagSet) {
        match self {
            Tags::Empty => *self = Tags::One(set),
            Tags::One(first) => {
                if Arc::ptr_eq(first, &set) {
                    return;
                }
                let mut m: BTreeMap<String, String> =
                    first.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                merge_into(&mut m, &set);
                *self = Tags::Merged(m);
            }
            Tags::Merged(m) => merge_into(m, &set),
        }
    }
}

fn merge_into(m: &mut BTreeMap<String, String>, set: &TagSet) {
    for (k, v) in set.iter() {
        let entry = m.entry(k.clone()).or_default();
        if entry.is_empty() {
            entry.push_str(v);
        } else if !entry.split(',').any(|x| x == v) {
            entry.push(',');
            entry.push_str(v);
        }
    }
}

/// Everything an encoder may write about one event.
pub struct View<'a> {
    pub event: &'a AuditEvent<'a>,
    /// The event's original JSON text.
    pub raw: &'a [u8],
    pub tags: &'a Tags,
    pub tag_status: TagStatus,
    pub provenance: &'a Provenance,
    /// The cursor of the log group holding the event.
    pub cursor: &'a str,
    /// Unix seconds: `eventTime`, else the log's time.
    pub time: f64,
}

/// An event that cannot go on, with why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: String,
    /// Bounded label for metrics.
    pub kind: &'static str,
    pub project: Arc<str>,
    pub logstore: Arc<str>,
    pub shard: u32,
    pub cursor: String,
    pub raw: Bytes,
}

/// Counts of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrichStats {
    pub logs: u64,
    pub raw_bytes: u64,
    pub passed: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    pub dead_lettered: u64,
    pub tagged: u64,
}

pub struct EnrichOutput {
    /// One per encoder, in the encoders' order.
    pub parts: Vec<EncodedEvents>,
    pub dead_letters: Vec<DeadLetter>,
    pub stats: EnrichStats,
}

/// The configured enrichment.
pub struct Enrichment {
    pub filter: EventFilter,
    pub tags: Option<TagCache>,
    pub kinds: HashMap<String, ResourceKind>,
    pub max_event_bytes: usize,
    /// The log content holding the event (`event` for ActionTrail; imports
    /// often use `content`).
    pub event_key: Vec<u8>,
}

/// What one event needs besides its bytes.
struct Origin<'a> {
    cursor: &'a str,
    log_time: u32,
    provenance: &'a Provenance,
    encoders: &'a [Arc<dyn EventEncoder>],
}

fn dead(
    out: &mut EnrichOutput,
    origin: &Origin<'_>,
    kind: &'static str,
    reason: String,
    raw: Bytes,
) {
    out.stats.dead_lettered += 1;
    let p = origin.provenance;
    out.dead_letters.push(DeadLetter {
        reason,
        kind,
        project: p.project.clone(),
        logstore: p.logstore.clone(),
        shard: p.shard,
        cursor: origin.cursor.to_owned(),
        raw,
    });
}

impl Enrichment {
    /// Enriches one batch. `cursors[i]` is the cursor of log group `i`.
    pub fn run(
        &self,
        list: &LogGroupList,
        cursors: &[String],
        provenance: &Provenance,
        encoders: &[Arc<dyn EventEncoder>],
    ) -> EnrichOutput {
        let mut out = EnrichOutput {
            parts: encoders.iter().map(|_| EncodedEvents::default()).collect(),
            dead_letters: Vec::new(),
            stats: EnrichStats::default(),
        };
        for (g, group) in list.log_group_list.iter().enumerate() {
            let cursor = cursors.get(g).map(String::as_str).unwrap_or("");
            let topic = group.topic.as_deref().unwrap_or(b"");
            let topic_ok = std::str::from_utf8(topic)
                .map(|t| self.filter.check_topic(t).is_ok())
                .unwrap_or(false);
            for log in &group.logs {
                out.stats.logs += 1;
                if !topic_ok {
                    *out.stats
                        .dropped
                        .entry(DropReason::Topic.as_str())
                        .or_default() += 1;
                    continue;
                }
                let origin = Origin {
                    cursor,
                    log_time: log.time,
                    provenance,
                    encoders,
                };
                let Some(raw) = log
                    .contents
                    .iter()
                    .find(|c| c.key[..] == self.event_key[..])
                    .map(|c| &c.value)
                else {
                    let all = log
                        .contents
                        .iter()
                        .map(|c| {
                            format!(
                                "{}={}",
                                String::from_utf8_lossy(&c.key),
                                String::from_utf8_lossy(&c.value)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    let reason = format!(
                        "the log has no `{}` content",
                        String::from_utf8_lossy(&self.event_key)
                    );
                    dead(&mut out, &origin, "no_event_key", reason, Bytes::from(all));
                    continue;
                };
                out.stats.raw_bytes += raw.len() as u64;
                match event::records(raw) {
                    None => self.one(raw.clone(), &origin, &mut out),
                    Some(Ok(records)) => {
                        for r in records {
                            self.one(raw.slice_ref(r), &origin, &mut out);
                        }
                    }
                    Some(Err(e)) => dead(&mut out, &origin, e.kind(), e.to_string(), raw.clone()),
                }
            }
        }
        out
    }

    /// One event: size check, parse, filters, tags, one encoding per sink.
    fn one(&self, raw: Bytes, origin: &Origin<'_>, out: &mut EnrichOutput) {
        if raw.len() > self.max_event_bytes {
            let reason = format!(
                "event of {} bytes exceeds max_event_bytes {}",
                raw.len(),
                self.max_event_bytes
            );
            dead(out, origin, "oversize", reason, raw);
            return;
        }
        let ev = match event::parse(&raw) {
            Ok(ev) => ev,
            Err(e) => {
                dead(out, origin, e.kind(), e.to_string(), raw.clone());
                return;
            }
        };
        if let Err(reason) = self.filter.check(&ev) {
            *out.stats.dropped.entry(reason.as_str()).or_default() += 1;
            return;
        }
        out.stats.passed += 1;
        let (tags, tag_status) = self.tags_of(&ev);
        if tag_status == TagStatus::Ok {
            out.stats.tagged += 1;
        }
        let view = View {
            event: &ev,
            raw: &raw,
            tags: &tags,
            tag_status,
            provenance: origin.provenance,
            cursor: origin.cursor,
            time: ev.unix_time().unwrap_or(f64::from(origin.log_time)),
        };
        for (enc, part) in origin.encoders.iter().zip(out.parts.iter_mut()) {
            part.push_with(|buf| enc.encode(&view, buf));
        }
    }

    fn tags_of(&self, ev: &AuditEvent<'_>) -> (Tags, TagStatus) {
        let mut tags = Tags::Empty;
        let Some(cache) = &self.tags else {
            return (tags, TagStatus::NoResource);
        };
        let region = ev.region.as_deref().unwrap_or("");
        let account = ev.owner_account().unwrap_or("");
        let mut looked_up = false;
        let mut buf = String::with_capacity(96);
        for r in ev.resources() {
            let arn: &str = match (r.arn, self.kinds.get(r.resource_type)) {
                (Some(arn), _) => arn,
                (None, Some(kind)) => {
                    arn_into(&mut buf, kind, region, account, r.id);
                    &buf
                }
                (None, None) => continue,
            };
            looked_up = true;
            if let Lookup::Tags(set) = cache.get(arn) {
                tags.add(set);
            }
        }
        let status = match (&tags, looked_up) {
            (Tags::Empty, true) => TagStatus::None,
            (Tags::Empty, false) => TagStatus::NoResource,
            _ => TagStatus::Ok,
        };
        (tags, status)
    }
}
