//! The enrichment step, pure: a decoded PullLogs batch in, for each sink its
//! events encoded, plus dead letters and counts out. The [`Enricher`](super::Enricher)
//! actor runs it on its own thread; the criterion bench runs it directly.
//!
//! Per log: topic filter → the `event` content (or `[enrich] event_key`; a
//! CloudTrail `{"Records": [...]}` file splits into its records) → parse ([`crate::event`]) →
//! filters (an event without `eventRW` gets one inferred under the default
//! policy) → resources (from `referencedResources`, `resourceType`/
//! `resourceName` and CloudTrail `resources[]`, bare type names resolved,
//! de-duplicated; each owned by the account the reference or the event
//! names) → tags (merged over the event's resources; values of one key from
//! several resources are joined with `,`) → one encoding per sink.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use trail_proto::sls::LogGroupList;

use crate::event::{self, AuditEvent, DropReason, EventFilter, ResourceField, ResourceRef};
use crate::record::{
    DeadLetter, EncodedEvents, EventEncoder, Provenance, SourceKind, TagStatus, Tags, Touched, View,
};
use crate::tags::{arn_into, Lookup, ResourceTypes, TagCache, TagWait};

/// Counts of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrichStats {
    pub logs: u64,
    /// Events seen: one per log, or one per record of a CloudTrail
    /// `Records` file.
    pub events: u64,
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
    /// Events sent with `tag_status` = `no_account`.
    pub tag_no_account: u64,
    /// Tagged events by the field that named the first tagged resource.
    pub tagged_by: BTreeMap<ResourceField, u64>,
    /// Events without `eventRW` given an inferred one, by value (whether
    /// the filter then kept them or not).
    pub rw_inferred_read: u64,
    pub rw_inferred_write: u64,
    /// Of the `event_rw` drops, those decided from the bytes without a
    /// parse ([`event::prescan`]).
    pub prescanned: u64,
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
    pub kinds: ResourceTypes,
    pub max_event_bytes: usize,
    /// A CloudTrail `Records` envelope larger than this is dead-lettered unparsed.
    pub max_envelope_bytes: usize,
    /// The log content holding the event (`event` for ActionTrail; imports
    /// often use `content`).
    pub event_key: Vec<u8>,
    /// Remote tag providers: the longest a batch waits for missing tags.
    pub tag_budget: std::time::Duration,
}

/// Which pass over a batch this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Misses are asked for, tag changes made by the trail applied.
    First,
    /// The batch waited for its tags: what is still missing goes out
    /// `pending`; the first pass already applied the trail's tag changes.
    AfterWait,
}

/// What an envelope adds to an event, on average, for sizing buffers up
/// front (a guess that only saves reallocations; the buffers still grow).
const ENVELOPE_ESTIMATE: usize = 512;

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
    /// Missing remote tags are waited for on the calling thread (tests,
    /// benches, the fuzzer); the pipeline uses [`Enrichment::first_pass`].
    pub fn run(
        &self,
        list: &LogGroupList,
        cursors: &[String],
        provenance: &Provenance,
        encoders: &[Arc<dyn EventEncoder>],
    ) -> EnrichOutput {
        let Ok(out) = self.go(list, cursors, provenance, encoders, Pass::First, |wait| {
            wait.block();
            Ok::<(), std::convert::Infallible>(())
        });
        out
    }

    /// Enriches one batch, unless remote tags it needs are missing: then
    /// they are asked for and the [`TagWait`] comes back instead, so the
    /// thread can take other work while the batch waits; after the wait,
    /// [`Enrichment::after_wait`] enriches it. Parsing twice costs less than
    /// a thread held for the budget: a warm cache never parks.
    pub fn first_pass(
        &self,
        list: &LogGroupList,
        cursors: &[String],
        provenance: &Provenance,
        encoders: &[Arc<dyn EventEncoder>],
    ) -> Result<EnrichOutput, TagWait> {
        self.go(list, cursors, provenance, encoders, Pass::First, Err)
    }

    /// Enriches a batch that waited for its tags: whatever is still
    /// missing goes out `pending`, nothing waits again.
    pub fn after_wait(
        &self,
        list: &LogGroupList,
        cursors: &[String],
        provenance: &Provenance,
        encoders: &[Arc<dyn EventEncoder>],
    ) -> EnrichOutput {
        let Ok(out) = self.go(list, cursors, provenance, encoders, Pass::AfterWait, |_| {
            Ok::<(), std::convert::Infallible>(())
        });
        out
    }

    /// One pass; `missing` decides what a batch with missing tags does:
    /// wait on the spot (`Ok`) or give up the pass (`Err`).
    fn go<E>(
        &self,
        list: &LogGroupList,
        cursors: &[String],
        provenance: &Provenance,
        encoders: &[Arc<dyn EventEncoder>],
        pass: Pass,
        missing: impl FnOnce(TagWait) -> Result<(), E>,
    ) -> Result<EnrichOutput, E> {
        let mut out = EnrichOutput {
            parts: encoders.iter().map(|_| EncodedEvents::default()).collect(),
            dead_letters: Vec::new(),
            stats: EnrichStats::default(),
        };
        let mut passed: Vec<Passed<'_>> = Vec::new();
        for (g, group) in list.log_group_list.iter().enumerate() {
            let cursor = cursors.get(g).map(String::as_str).unwrap_or("");
            // Topics are SLS's: an S3 object's group has none to check.
            let topic = group.topic.as_deref().unwrap_or(b"");
            let topic_ok = provenance.source != SourceKind::Sls
                || std::str::from_utf8(topic)
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
                if raw.len() > self.max_envelope_bytes && event::is_records_envelope(raw) {
                    let reason = format!(
                        "a Records envelope of {} bytes exceeds max_envelope_bytes {}",
                        raw.len(),
                        self.max_envelope_bytes
                    );
                    dead(&mut out, &origin, "oversize", reason, raw.clone());
                    continue;
                }
                match event::records(raw) {
                    None => {
                        out.stats.events += 1;
                        self.one(raw, raw, &origin, &mut out, &mut passed)
                    }
                    Some(Ok(records)) => {
                        out.stats.events += records.len() as u64;
                        for r in records {
                            self.one(raw, r, &origin, &mut out, &mut passed);
                        }
                    }
                    Some(Err(e)) => dead(&mut out, &origin, e.kind(), e.to_string(), raw.clone()),
                }
            }
        }
        self.tag_and_encode(&passed, provenance, encoders, &mut out, pass, missing)?;
        Ok(out)
    }

    /// Tags for every passed event — for remote providers, missing ones are
    /// asked for in batches and, on the first pass, waited for at most
    /// `tag_budget` (how: `missing`) — then one encoding per sink.
    fn tag_and_encode<E>(
        &self,
        passed: &[Passed<'_>],
        provenance: &Provenance,
        encoders: &[Arc<dyn EventEncoder>],
        out: &mut EnrichOutput,
        pass: Pass,
        missing: impl FnOnce(TagWait) -> Result<(), E>,
    ) -> Result<(), E> {
        // Every event's resources resolved once, into vectors of the whole
        // batch (no vector per event); the batch's ARNs back to back in one
        // string.
        let mut batch = Batch::with_capacity(passed.len());
        let resolved: Vec<Resolved> = passed
            .iter()
            .map(|p| self.resolve(&p.ev, &mut batch))
            .collect();
        if let Some(cache) = &self.tags {
            for (p, r) in passed.iter().zip(&resolved) {
                if p.ev.error_code.as_deref().is_none_or(str::is_empty)
                    && p.ev.event_name.as_deref().is_some_and(changes_tags)
                {
                    for arn in batch.arns(r) {
                        if pass == Pass::First {
                            cache.invalidate(arn);
                        }
                        out.stats.tag_invalidations += 1;
                    }
                }
            }
            if cache.is_remote() {
                let all = resolved.iter().flat_map(|r| batch.arns(r));
                match pass {
                    Pass::First => {
                        if let Some(wait) = cache.request(all, self.tag_budget) {
                            missing(wait)?;
                        }
                    }
                    Pass::AfterWait => cache.recheck(all),
                }
            }
        }
        // Each sink's buffer sized once for the batch: the raw events plus
        // what an envelope adds.
        let raw: usize = passed.iter().map(|p| p.raw.len()).sum();
        for part in &mut out.parts {
            part.reserve(passed.len(), raw + passed.len() * ENVELOPE_ESTIMATE);
        }
        let mut text = String::with_capacity(128);
        for (p, r) in passed.iter().zip(&resolved) {
            let (tags, tag_status) = self.tags_of(r, &batch, out);
            match tag_status {
                TagStatus::Ok => out.stats.tagged += 1,
                TagStatus::Pending => out.stats.tag_pending += 1,
                TagStatus::Unavailable => out.stats.tag_unavailable += 1,
                TagStatus::NoAccount => out.stats.tag_no_account += 1,
                _ => {}
            }
            let touched = &batch.touched[r.touched.clone()];
            Touched::render_all(touched, &mut text);
            let view = View {
                event: &p.ev,
                resources: touched,
                resources_text: &text,
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
        Ok(())
    }

    /// An event's resources: types resolved through the table, the same
    /// resource once, and for each one we can look up its ARN — given
    /// (CloudTrail, an ARN as id) or built from the type, the region and
    /// the owning account (the reference's, else `recipientAccountId`,
    /// else the caller's).
    fn resolve<'p>(&'p self, ev: &'p AuditEvent<'_>, batch: &mut Batch<'p>) -> Resolved {
        let region = ev.region.as_deref().unwrap_or("");
        let owner = ev.owner_account().filter(|a| !a.is_empty());
        let service = ev.service_name.as_deref();
        let (touched_start, lookups_start) = (batch.touched.len(), batch.lookups.len());
        let mut no_account = false;
        ev.resources_into(&mut batch.refs);
        for x in batch.refs.drain(..) {
            let known = self.kinds.resolve(x.resource_type, service);
            let resource_type: &'p str = match known {
                Some((full, _)) => full,
                None => x.resource_type,
            };
            let t = Touched {
                resource_type,
                id: x.id,
            };
            if batch.touched[touched_start..].contains(&t) {
                continue;
            }
            batch.touched.push(t);
            let span = match (x.arn, known) {
                (Some(arn), _) => Some(batch.arena.push(arn)),
                (None, Some((_, kind))) => match x.account.or(owner) {
                    Some(account) => {
                        arn_into(&mut batch.arena.buf, kind, region, account, x.id);
                        Some(batch.arena.push_buf())
                    }
                    None => {
                        no_account = true;
                        None
                    }
                },
                (None, None) => None,
            };
            if let Some(span) = span {
                batch.lookups.push((span, x.field));
            }
        }
        Resolved {
            touched: touched_start..batch.touched.len(),
            lookups: lookups_start..batch.lookups.len(),
            no_account,
        }
    }

    /// One event (`json`, within the log content `content`)    /// One event (`json`, within the log content `content`): size check,
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
        // Most of a trail is reads and the usual filter drops them: say so
        // from the bytes when they leave no doubt, and skip the parse.
        if self.filter.filters_rw()
            && event::prescan::event_rw(json).is_some_and(|rw| self.filter.rejects_rw(rw))
        {
            *out.stats
                .dropped
                .entry(DropReason::EventRw.as_str())
                .or_default() += 1;
            out.stats.prescanned += 1;
            return;
        }
        let mut ev = match event::parse(json) {
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
        let verdict = self.filter.check(&mut ev);
        if ev.rw_inferred {
            match ev.event_rw.as_deref() {
                Some("Read") => out.stats.rw_inferred_read += 1,
                _ => out.stats.rw_inferred_write += 1,
            }
        }
        if let Err(reason) = verdict {
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

    fn tags_of(
        &self,
        r: &Resolved,
        batch: &Batch<'_>,
        out: &mut EnrichOutput,
    ) -> (Tags, TagStatus) {
        let mut tags = Tags::Empty;
        let Some(cache) = &self.tags else {
            return (tags, TagStatus::NoResource);
        };
        let (mut pending, mut unavailable) = (false, false);
        let mut tagged_by = None;
        for (span, field) in &batch.lookups[r.lookups.clone()] {
            match cache.get(&batch.arena.text[span.clone()]) {
                Lookup::Tags(set) => {
                    tagged_by.get_or_insert(*field);
                    tags.add(set);
                }
                Lookup::None => {}
                Lookup::Pending => pending = true,
                Lookup::Unavailable => unavailable = true,
            }
        }
        let looked_up = !r.lookups.is_empty();
        // An event whose tags may be incomplete says so, even if some came.
        let status = match (&tags, looked_up) {
            _ if pending => TagStatus::Pending,
            _ if unavailable => TagStatus::Unavailable,
            (Tags::Empty, _) if r.no_account => TagStatus::NoAccount,
            (Tags::Empty, true) => TagStatus::None,
            (Tags::Empty, false) => TagStatus::NoResource,
            _ => TagStatus::Ok,
        };
        if let (TagStatus::Ok, Some(field)) = (status, tagged_by) {
            *out.stats.tagged_by.entry(field).or_default() += 1;
        }
        (tags, status)
    }
}

/// The ARNs of a batch, back to back in one string.
struct Arena {
    text: String,
    /// Scratch for building one ARN.
    buf: String,
}

impl Arena {
    fn push(&mut self, arn: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(arn);
        start..self.text.len()
    }

    fn push_buf(&mut self) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(&self.buf);
        start..self.text.len()
    }
}

/// The resolved resources of a whole batch, one vector each
/// ([`Enrichment::resolve`]); an event holds ranges of them ([`Resolved`]).
struct Batch<'p> {
    touched: Vec<Touched<'p>>,
    /// The ARN (a span of `arena`) of each resource we can look up, with
    /// the field that named it.
    lookups: Vec<(Range<usize>, ResourceField)>,
    arena: Arena,
    /// Scratch: one event's references before resolving.
    refs: Vec<ResourceRef<'p>>,
}

impl<'p> Batch<'p> {
    fn with_capacity(events: usize) -> Self {
        Batch {
            touched: Vec::with_capacity(events * 2),
            lookups: Vec::with_capacity(events * 2),
            arena: Arena {
                text: String::with_capacity(events * 2 * 64),
                buf: String::with_capacity(128),
            },
            refs: Vec::with_capacity(16),
        }
    }

    fn arns<'a>(&'a self, r: &Resolved) -> impl Iterator<Item = &'a str> + 'a {
        self.lookups[r.lookups.clone()]
            .iter()
            .map(|(s, _)| &self.arena.text[s.clone()])
    }
}

/// One event's resources: ranges of its [`Batch`].
struct Resolved {
    touched: Range<usize>,
    lookups: Range<usize>,
    /// Some resource of a known type had no owning account.
    no_account: bool,
}
