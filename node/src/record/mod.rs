//! The business-view record: an enriched event as every sink sees it.
//!
//! An event that passed the filters becomes a [`View`]: the borrowed
//! [`AuditEvent`](crate::event::AuditEvent), its raw JSON, its [`Tags`] and
//! [`TagStatus`], where it came from ([`Provenance`]) and its cursor. Each
//! sink's [`EventEncoder`] writes a view in the sink's format; the JSON all
//! of them write goes through one writer ([`json`]). Events encoded for one
//! sink travel as an [`EventSlab`]. An event that cannot go on becomes a
//! [`DeadLetter`] with its reason.
//!
//! Floor 1: imports only `event` (same floor, never back). `tags` and the
//! sinks build on this module, never the other way.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | provenance, tags, the view, dead letters, the business fields |
//! | `json.rs` | the one JSON string and number writer every encoder shares |
//! | `slab.rs` | the encoder trait; encoded events in one buffer |

pub mod json;
pub mod slab;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::event::AuditEvent;

pub use json::{
    write_json_str, write_json_str_joined, write_json_str_parts, write_tag_fields, write_time,
};
pub use slab::{EncodedEvents, EventEncoder, EventSlab};

/// One resource's tags, shared between the cache and every event that
/// touched the resource (and, from the tags file, between every resource
/// with the same tags).
///
/// It also keeps its own JSON field text, `,"{prefix}{key}":"{value}"` per
/// tag, rendered the first time a sink writes it and copied whole for every
/// later event — the common case of an event with one tagged resource then
/// costs one `memcpy` instead of an escape scan per tag. One prefix is kept
/// (the first asked for; every sink of a node normally shares `tag_`); a
/// sink with another prefix renders as it goes. The rendering costs its
/// length once per set written, about the set's own size.
#[derive(Clone)]
pub struct TagSet(Arc<TagSetInner>);

struct TagSetInner {
    map: BTreeMap<String, String>,
    rendered: std::sync::OnceLock<(Box<str>, Box<[u8]>)>,
}

impl TagSet {
    pub fn new(map: BTreeMap<String, String>) -> Self {
        TagSet(Arc::new(TagSetInner {
            map,
            rendered: std::sync::OnceLock::new(),
        }))
    }

    /// The same set (not merely equal tags).
    pub fn ptr_eq(a: &TagSet, b: &TagSet) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// Appends `,"{prefix}{key}":"{value}"` for every tag.
    #[inline]
    pub fn write_fields(&self, prefix: &str, out: &mut Vec<u8>) {
        let (p, bytes) = self.0.rendered.get_or_init(|| {
            let mut b = Vec::new();
            json::write_fields(&mut b, prefix, self.iter_str());
            (prefix.into(), b.into_boxed_slice())
        });
        if **p == *prefix {
            out.extend_from_slice(bytes);
        } else {
            json::write_fields(out, prefix, self.iter_str());
        }
    }

    fn iter_str(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl std::ops::Deref for TagSet {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0.map
    }
}

impl From<BTreeMap<String, String>> for TagSet {
    fn from(map: BTreeMap<String, String>) -> Self {
        TagSet::new(map)
    }
}

impl PartialEq for TagSet {
    fn eq(&self, other: &Self) -> bool {
        TagSet::ptr_eq(self, other) || self.0.map == other.0.map
    }
}

impl Eq for TagSet {}

impl std::fmt::Debug for TagSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.map.fmt(f)
    }
}

/// Where an event came from.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub project: Arc<str>,
    pub logstore: Arc<str>,
    pub shard: u32,
    /// The shard's epoch the event was read under in a cluster (0 when
    /// standalone): with the HEC `host` it says which owner delivered it.
    pub epoch: u64,
    /// What kind of source read it. For S3, `project` is the bucket,
    /// `logstore` the object's key and `shard` the poller.
    pub source: SourceKind,
}

/// Where a source reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// An SLS logstore's shard: log groups with topics.
    Sls,
    /// CloudTrail log files in S3, announced through SQS.
    S3,
    /// Files on local disk (JSON lines or `Records` documents).
    File,
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
    /// A remote lookup was not answered within the budget.
    Pending,
    /// The provider failed (throttled with nothing cached, denied).
    Unavailable,
    /// The event names resources but no account owns them as far as the
    /// event says (a `system` caller, no `recipientAccountId`, no ARN).
    NoAccount,
}

impl TagStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TagStatus::Ok => "ok",
            TagStatus::None => "none",
            TagStatus::NoResource => "no_resource",
            TagStatus::Pending => "pending",
            TagStatus::Unavailable => "unavailable",
            TagStatus::NoAccount => "no_account",
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
    /// Every tag, by key.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let map: Option<&BTreeMap<String, String>> = match self {
            Tags::Empty => None,
            Tags::One(t) => Some(t),
            Tags::Merged(m) => Some(m),
        };
        map.into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        match self {
            Tags::Empty => None,
            Tags::One(t) => t.get(key).map(String::as_str),
            Tags::Merged(m) => m.get(key).map(String::as_str),
        }
    }

    /// Adds one resource's tags.
    pub fn add(&mut self, set: TagSet) {
        match self {
            Tags::Empty => *self = Tags::One(set),
            Tags::One(first) => {
                if TagSet::ptr_eq(first, &set) {
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

/// A resource an event touched, as the business view names it: the full
/// type where the resource-type table knows the written one (`VSwitch` →
/// `ACS::VPC::VSwitch`), else the type as written (possibly empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touched<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
}

impl Touched<'_> {
    /// Appends the `resources` field's text: `type/id` joined by `,`.
    pub fn render_all(touched: &[Touched<'_>], out: &mut String) {
        out.clear();
        for (i, t) in touched.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(t.resource_type);
            out.push('/');
            out.push_str(t.id);
        }
    }
}

/// Everything an encoder may write about one event.
pub struct View<'a> {
    pub event: &'a AuditEvent<'a>,
    /// Every resource the event named, de-duplicated, known types or not.
    pub resources: &'a [Touched<'a>],
    /// `resources` as the `resources` field's text ([`Touched::render_all`]).
    pub resources_text: &'a str,
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

/// The names [`business_fields`] may give, in its order: what a business-view
/// logstore indexes (`trail-node setup`); `tests/tests/sls_setup.rs` checks
/// that every field the SLS sink writes is indexed.
pub const BUSINESS_FIELDS: &[&str] = &[
    "eventId",
    "eventName",
    "eventRW",
    "eventRW_inferred",
    "eventSource",
    "eventTime",
    "eventType",
    "acsRegion",
    "serviceName",
    "resourceType",
    "resourceName",
    "resources",
    "accountId",
    "principalId",
    "userName",
    "userType",
    "sourceIpAddress",
    "errorCode",
    "requestId",
    "logstore",
    "cursor",
    "tag_status",
];

/// One business field's text, and whether it can be written between quotes
/// as it is: a value the parser borrowed from the input had no escapes (and
/// JSON forbids raw control bytes), a constant has none; anything else is
/// escaped when written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldText<'v> {
    pub text: &'v str,
    /// Needs no JSON escaping.
    pub plain: bool,
}

impl<'v> FieldText<'v> {
    /// The Cow itself, not its `&str`: whether it is borrowed is the point.
    #[inline]
    #[allow(clippy::ptr_arg)]
    fn of(c: &'v Cow<'_, str>) -> Self {
        FieldText {
            text: c,
            plain: matches!(c, Cow::Borrowed(_)),
        }
    }

    #[inline]
    fn constant(text: &'v str) -> Self {
        FieldText { text, plain: true }
    }

    #[inline]
    fn text(text: &'v str) -> Self {
        FieldText { text, plain: false }
    }

    /// Appends the value as a JSON string literal.
    #[inline]
    pub fn write_json(self, out: &mut Vec<u8>) {
        if self.plain {
            debug_assert!(!json::needs_escape(self.text), "{:?}", self.text);
            out.push(b'"');
            out.extend_from_slice(self.text.as_bytes());
            out.push(b'"');
        } else {
            write_json_str(out, self.text);
        }
    }
}

/// The business field `BUSINESS_FIELDS[i]` of an event, unless absent or empty.
#[inline]
pub fn business_field<'v>(v: &'v View<'_>, i: usize) -> Option<FieldText<'v>> {
    let e = v.event;
    let opt = |c: &'v Option<Cow<'_, str>>| c.as_ref().map(FieldText::of);
    let f = match i {
        0 => Some(FieldText::of(&e.event_id)),
        1 => opt(&e.event_name),
        2 => opt(&e.event_rw),
        3 => e.rw_inferred.then_some(FieldText::constant("true")),
        4 => opt(&e.event_source),
        5 => opt(&e.event_time),
        6 => opt(&e.event_type),
        7 => opt(&e.region),
        8 => opt(&e.service_name),
        9 => opt(&e.resource_type),
        10 => opt(&e.resource_name),
        11 => Some(FieldText::text(v.resources_text)),
        12 => match &e.recipient_account_id {
            Some(r) if !r.is_empty() => Some(FieldText::of(r)),
            _ => opt(&e.account_id),
        },
        13 => opt(&e.principal_id),
        14 => opt(&e.user_name),
        15 => opt(&e.user_type),
        16 => opt(&e.source_ip),
        17 => opt(&e.error_code),
        18 => opt(&e.request_id),
        19 => Some(FieldText::text(&v.provenance.logstore)),
        20 => Some(FieldText::text(v.cursor)),
        21 => Some(FieldText::constant(v.tag_status.as_str())),
        _ => None,
    };
    f.filter(|f| !f.text.is_empty())
}

/// The index of a business field's name in [`BUSINESS_FIELDS`].
pub fn business_field_index(name: &str) -> Option<usize> {
    BUSINESS_FIELDS.iter().position(|f| *f == name)
}

/// The business-view fields of an event, by name, skipping empty ones.
/// ActionTrail's names are kept for both trails (`acsRegion` holds a CloudTrail
/// `awsRegion`), so one dashboard reads both.
#[inline]
pub fn business_fields<'v>(v: &'v View<'_>) -> impl Iterator<Item = (&'static str, &'v str)> {
    (0..BUSINESS_FIELDS.len())
        .filter_map(move |i| business_field(v, i).map(|f| (BUSINESS_FIELDS[i], f.text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(tags: &Tags, prefix: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut out = b"{\"x\":1".to_vec();
        write_tag_fields(&mut out, prefix, tags);
        out.push(b'}');
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_tag_set_renders_once_and_every_prefix_is_right() {
        let set = TagSet::new(
            [
                ("project".to_string(), "falcon".to_string()),
                ("owner\"q".to_string(), "a\\b\n".to_string()),
            ]
            .into(),
        );
        let one = Tags::One(set.clone());
        for _ in 0..2 {
            let f = fields(&one, "tag_");
            assert_eq!(f["tag_project"], "falcon");
            assert_eq!(f["tag_owner\"q"], "a\\b\n");
        }
        assert!(set.0.rendered.get().is_some_and(|(p, _)| &**p == "tag_"));
        // Another sink's prefix is rendered as it goes, not from the cache.
        let f = fields(&one, "t.");
        assert_eq!(f["t.project"], "falcon");
        assert!(!f.contains_key("tag_project"));
        // Merged sets join values of one key.
        let mut merged = Tags::One(set.clone());
        merged.add(TagSet::new(
            [("project".to_string(), "kite".to_string())].into(),
        ));
        assert_eq!(fields(&merged, "tag_")["tag_project"], "falcon,kite");
        assert_eq!(fields(&Tags::Empty, "tag_").len(), 1);
    }
}
