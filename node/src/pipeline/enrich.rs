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
use crate::record::{DeadLetter, EncodedEvents, EventEncoder, Provenance, TagStatus, Tags, View};
use crate::tags::{arn_into, Lookup, ResourceKind, TagCache};

/// Counts of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrichStats {
    pub logs: u64,
    pub raw_bytes: u64,
    pub passed: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    pub dead_lettered: u64,
    pub tagged: u64,
    /// Events sent with `tag_status` = `pending` / `unavailable`.
    pub tag_pending: u64,
    pub tag_unavailable: u64,
    /// Cache entries dropped because the trail itself changed the resource's tags.
    pub tag_invalidations: u64,
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
    /// Remote tag providers: the longest an enricher waits for missing tags per batch.
    pub tag_budget: std::time::Duration,
}

/// An event that passed the filters, waiting for its tags.
struct Passed<'a> {
    ev: AuditEvent<'a>,
    raw: &'a [u8],
    cursor: &'a str,
    log_time: u32,
}

/// Event names that change a resource's tags or end it: the cache entry of
/// each resource they name is dropped, so the next lookup asks again.
const TAG_CHANGES: &[&str] = &[
    "TagResources",
    "UntagResources",
    "AddTags",
    "RemoveTags",
    "DeleteTags",
    "CreateTags",
    "TagResource",
    "UntagResource",
    "ModifyTags",
];

fn changes_tags(name: &str) -> bool {
    TAG_CHANGES.contains(&name)
        || ["Delete", "Release", "Remove"]
            .iter()
            .any(|p| name.starts_with(p) && !name.ends_with("Tags"))
}

/// What one event needs besides its bytes.
struct Origin<'a> {
    cursor: &'a str,
    log_time: u32,
    provenance: &'a Provenance,
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
        let mut passed: Vec<Passed<'_>> = Vec::new();
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
                    None => self.one(raw, raw, &origin, &mut out, &mut passed),
                    Some(Ok(records)) => {
                        for r in records {
                            self.one(raw, r, &origin, &mut out, &mut passed);
                        }
                    }
                    Some(Err(e)) => dead(&mut out, &origin, e.kind(), e.to_string(), raw.clone()),
                }
            }
        }
        self.tag_and_encode(&passed, provenance, encoders, &mut out);
        out
    }

    /// Tags for every passed event — for remote providers, missing ones are
    /// fetched in batches and waited for at most `tag_budget`, once per
    /// batch — then one encoding per sink.
    fn tag_and_encode(
        &self,
        passed: &[Passed<'_>],
        provenance: &Provenance,
        encoders: &[Arc<dyn EventEncoder>],
        out: &mut EnrichOutput,
    ) {
        // One buffer for built ARNs, reused for every event of the batch.
        let mut buf = String::with_capacity(96);
        if let Some(cache) = &self.tags {
            let remote = cache.is_remote();
            // The batch's ARNs, back to back in one string (remote sources only).
            let mut arena = String::new();
            let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
            for p in passed {
                if p.ev.error_code.as_deref().is_none_or(str::is_empty)
                    && p.ev.event_name.as_deref().is_some_and(changes_tags)
                {
                    self.each_arn(&p.ev, &mut buf, |arn| {
                        cache.invalidate(arn);
                        out.stats.tag_invalidations += 1;
                    });
                }
                if remote {
                    self.each_arn(&p.ev, &mut buf, |arn| {
                        let start = arena.len();
                        arena.push_str(arn);
                        spans.push(start..arena.len());
                    });
                }
            }
            if remote {
                cache.prefetch(spans.iter().map(|r| &arena[r.clone()]), self.tag_budget);
            }
        }
        for p in passed {
            let (tags, tag_status) = self.tags_of(&p.ev, &mut buf);
            match tag_status {
                TagStatus::Ok => out.stats.tagged += 1,
                TagStatus::Pending => out.stats.tag_pending += 1,
                TagStatus::Unavailable => out.stats.tag_unavailable += 1,
                _ => {}
            }
            let view = View {
                event: &p.ev,
                raw: p.raw,
                tags: &tags,
                tag_status,
                provenance,
                cursor: p.cursor,
                time: p.ev.unix_time().unwrap_or(f64::from(p.log_time)),
            };
            for (enc, part) in encoders.iter().zip(out.parts.iter_mut()) {
                part.push_with(|buf| enc.encode(&view, buf));
            }
        }
    }

    /// Calls `f` with the ARN of each of the event's resources we know how
    /// to name: given (CloudTrail), or built into `buf` from the resource
    /// type table (ActionTrail).
    fn each_arn(&self, ev: &AuditEvent<'_>, buf: &mut String, mut f: impl FnMut(&str)) {
        let region = ev.region.as_deref().unwrap_or("");
        let account = ev.owner_account().unwrap_or("");
        for r in ev.resources() {
            match (r.arn, self.kinds.get(r.resource_type)) {
                (Some(arn), _) => f(arn),
                (None, Some(kind)) => {
                    arn_into(buf, kind, region, account, r.id);
                    f(buf);
                }
                (None, None) => {}
            }
        }
    }

    /// One event (`json`, within the log content `content`): size check,
    /// parse, filters; what passes waits in `passed` for its tags.
    fn one<'a>(
        &self,
        content: &Bytes,
        json: &'a [u8],
        origin: &Origin<'a>,
        out: &mut EnrichOutput,
        passed: &mut Vec<Passed<'a>>,
    ) {
        if json.len() > self.max_event_bytes {
            let reason = format!(
                "event of {} bytes exceeds max_event_bytes {}",
                json.len(),
                self.max_event_bytes
            );
            dead(out, origin, "oversize", reason, content.slice_ref(json));
            return;
        }
        let ev = match event::parse(json) {
            Ok(ev) => ev,
            Err(e) => {
                dead(
                    out,
                    origin,
                    e.kind(),
                    e.to_string(),
                    content.slice_ref(json),
                );
                return;
            }
        };
        if let Err(reason) = self.filter.check(&ev) {
            *out.stats.dropped.entry(reason.as_str()).or_default() += 1;
            return;
        }
        out.stats.passed += 1;
        passed.push(Passed {
            ev,
            raw: json,
            cursor: origin.cursor,
            log_time: origin.log_time,
        });
    }

    fn tags_of(&self, ev: &AuditEvent<'_>, buf: &mut String) -> (Tags, TagStatus) {
        let mut tags = Tags::Empty;
        let Some(cache) = &self.tags else {
            return (tags, TagStatus::NoResource);
        };
        let mut looked_up = false;
        let (mut pending, mut unavailable) = (false, false);
        self.each_arn(ev, buf, |arn| {
            looked_up = true;
            match cache.get(arn) {
                Lookup::Tags(set) => tags.add(set),
                Lookup::None => {}
                Lookup::Pending => pending = true,
                Lookup::Unavailable => unavailable = true,
            }
        });
        // An event whose tags may be incomplete says so, even if some came.
        let status = match (&tags, looked_up) {
            _ if pending => TagStatus::Pending,
            _ if unavailable => TagStatus::Unavailable,
            (Tags::Empty, true) => TagStatus::None,
            (Tags::Empty, false) => TagStatus::NoResource,
            _ => TagStatus::Ok,
        };
        (tags, status)
    }
}
