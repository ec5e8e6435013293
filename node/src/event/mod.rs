//! Audit events: ActionTrail and CloudTrail records parsed into one
//! [`AuditEvent`], borrowing from the input buffer wherever the JSON has no
//! escapes, and the filters and resource references built on it.
//!
//! Floor 1: imports nothing of the crate; every later stage reads events
//! through this module.
//!
//! # Layout
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | [`AuditEvent`] and [`parse`] |
//! | `lenient.rs` | field decoders that accept the types real trails actually use (a number where a string is documented, null, PascalCase keys) |
//! | `resource.rs` | resource references from `resourceType`/`resourceName` (`;` between types, `,` within) or CloudTrail `resources[]` |
//! | `filter.rs` | the configured filters, with a reason for every event they drop |
//! | `prescan.rs` | `eventRW` read off the bytes before parsing, when they leave no doubt, so reads the filter drops cost a scan |
//! | `time.rs` | `eventTime` variants → unix time |
//!
//! Parsing never panics: malformed JSON, a missing `eventId`, or a value of
//! a type we cannot use is a [`ParseError`] naming what was wrong, for the
//! dead-letter sink.

mod filter;
mod lenient;
pub mod prescan;
mod resource;
mod time;

use std::borrow::Cow;

use serde::Deserialize;

pub use filter::{DropReason, EventFilter, FilterConfig, RwFilter, UnknownRw};
use lenient::{Lenient, ResourceMap};
pub use resource::{ResourceField, ResourceRef};
pub use time::parse_event_time;

/// The trail an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    ActionTrail,
    CloudTrail,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::ActionTrail => "actiontrail",
            Format::CloudTrail => "cloudtrail",
        }
    }
}

/// One audit event, normalized. String fields borrow from the input where
/// they can (`Cow::Borrowed`); only values with JSON escapes are copied.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent<'a> {
    pub format: Format,
    pub event_id: Cow<'a, str>,
    pub event_name: Option<Cow<'a, str>>,
    /// `Read` / `Write` (CloudTrail: from `readOnly`).
    pub event_rw: Option<Cow<'a, str>>,
    pub event_source: Option<Cow<'a, str>>,
    pub event_time: Option<Cow<'a, str>>,
    pub event_type: Option<Cow<'a, str>>,
    /// `acsRegion` / `awsRegion`.
    pub region: Option<Cow<'a, str>>,
    /// ActionTrail `serviceName`; CloudTrail: the first label of `eventSource`.
    pub service_name: Option<Cow<'a, str>>,
    pub resource_type: Option<Cow<'a, str>>,
    pub resource_name: Option<Cow<'a, str>>,
    pub account_id: Option<Cow<'a, str>>,
    pub recipient_account_id: Option<Cow<'a, str>>,
    pub principal_id: Option<Cow<'a, str>>,
    pub user_name: Option<Cow<'a, str>>,
    pub user_type: Option<Cow<'a, str>>,
    pub source_ip: Option<Cow<'a, str>>,
    /// Empty or absent on success.
    pub error_code: Option<Cow<'a, str>>,
    pub request_id: Option<Cow<'a, str>>,
    /// CloudTrail `resources[]`.
    pub arns: Vec<CloudTrailArn<'a>>,
    /// ActionTrail `referencedResources`: (type as written, ids).
    pub referenced: Vec<(Cow<'a, str>, Vec<Cow<'a, str>>)>,
    /// `event_rw` was not in the event but inferred from its name
    /// ([`infer_rw`]); set by the filter's `unknown_rw = "infer"` policy.
    pub rw_inferred: bool,
}

/// One item of CloudTrail's `resources[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudTrailArn<'a> {
    pub arn: Cow<'a, str>,
    /// `AWS::EC2::Instance`, when given.
    pub kind: Option<Cow<'a, str>>,
    /// `accountId`, when given (else the ARN's account field).
    pub account: Option<Cow<'a, str>>,
}

/// Prefixes of event names that only read, in ActionTrail's and
/// CloudTrail's API naming (a prefix counts only before an upper-case
/// letter or the end: `ListTagResources`, not `Listener…`).
const READ_PREFIXES: &[&str] = &[
    "Describe", "List", "Get", "Query", "Check", "Search", "Lookup", "Head", "BatchGet", "Select",
    "Scan", "Preview", "Inquire", "Validate", "Verify", "Estimate", "Test",
];

/// `Read` or `Write`, from an event name alone, for events without
/// `eventRW` (archives before 2020-12-16, some services): names that start
/// with a read verb are `Read`, everything else `Write` — so a writes-only
/// filter never drops an unknown name.
pub fn infer_rw(event_name: &str) -> &'static str {
    let reads = READ_PREFIXES.iter().any(|p| {
        event_name
            .strip_prefix(p)
            .is_some_and(|rest| rest.chars().next().is_none_or(|c| c.is_ascii_uppercase()))
    });
    if reads {
        "Read"
    } else {
        "Write"
    }
}

/// CloudTrail's caller as its users read it: `userName`; for an assumed
/// role the issuer's name and the session (`Role/session`); for an
/// `AWSService` caller the service (`invokedBy`); else the last part of
/// the ARN (`root`).
fn cloudtrail_user<'a>(i: &mut Identity<'a>) -> Option<Cow<'a, str>> {
    if let Some(u) = i.user_name.0.take().filter(|u| !u.is_empty()) {
        return Some(u);
    }
    let arn = i.arn.0.take().filter(|a| !a.is_empty());
    let last = |a: &str| -> String {
        a.rsplit('/')
            .next()
            .and_then(|p| p.rsplit(':').next())
            .unwrap_or(a)
            .to_owned()
    };
    let issuer = i
        .session_context
        .take()
        .and_then(|c| c.session_issuer)
        .and_then(|s| s.user_name.0)
        .filter(|s| !s.is_empty());
    if let Some(issuer) = issuer {
        return Some(match &arn {
            Some(a) if a.contains(":assumed-role/") => Cow::Owned(format!("{issuer}/{}", last(a))),
            _ => issuer,
        });
    }
    let invoked_by = i.invoked_by.0.take().filter(|s| !s.is_empty());
    let service = i
        .kind
        .0
        .as_deref()
        .is_some_and(|k| k.eq_ignore_ascii_case("AWSService"));
    if service && invoked_by.is_some() {
        return invoked_by;
    }
    match arn {
        Some(a) => Some(Cow::Owned(last(&a))),
        None => invoked_by,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("event is not valid JSON: {0}")]
    Json(String),
    /// JSON is UTF-8; serde skips what it ignores without looking, and the
    /// raw event goes out inside every envelope, so it is checked whole.
    #[error("event is not UTF-8: invalid byte at offset {0}")]
    Utf8(usize),
    #[error("event has no eventId")]
    MissingEventId,
    #[error("event is neither ActionTrail (acsRegion/serviceName) nor CloudTrail (awsRegion)")]
    UnknownFormat,
}

impl ParseError {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::Json(_) => "invalid_json",
            ParseError::Utf8(_) => "invalid_utf8",
            ParseError::MissingEventId => "missing_event_id",
            ParseError::UnknownFormat => "unknown_format",
        }
    }
}

#[derive(Deserialize)]
struct Identity<'a> {
    #[serde(default, borrow, rename = "type", alias = "Type")]
    kind: Lenient<'a>,
    #[serde(default, borrow, rename = "accountId", alias = "AccountId")]
    account_id: Lenient<'a>,
    #[serde(default, borrow, rename = "principalId", alias = "PrincipalId")]
    principal_id: Lenient<'a>,
    #[serde(default, borrow, rename = "userName", alias = "UserName")]
    user_name: Lenient<'a>,
    #[serde(default, borrow)]
    arn: Lenient<'a>,
    /// CloudTrail `AWSService` callers: the service acting.
    #[serde(default, borrow, rename = "invokedBy")]
    invoked_by: Lenient<'a>,
    #[serde(default, borrow, rename = "sessionContext")]
    session_context: Option<SessionContext<'a>>,
}

#[derive(Deserialize)]
struct SessionContext<'a> {
    #[serde(default, borrow, rename = "sessionIssuer")]
    session_issuer: Option<SessionIssuer<'a>>,
}

#[derive(Deserialize)]
struct SessionIssuer<'a> {
    #[serde(default, borrow, rename = "userName")]
    user_name: Lenient<'a>,
}

#[derive(Deserialize)]
struct CloudTrailResource<'a> {
    #[serde(default, borrow, rename = "ARN")]
    arn: Lenient<'a>,
    #[serde(default, borrow, rename = "type")]
    kind: Lenient<'a>,
    #[serde(default, borrow, rename = "accountId")]
    account_id: Lenient<'a>,
}

/// Both trails' keys, with the PascalCase variant as aliases. Every other key
/// (requestParameters, responseElements, ...) is skipped, not copied.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(
        default,
        borrow,
        rename = "eventId",
        alias = "eventID",
        alias = "EventId"
    )]
    event_id: Lenient<'a>,
    #[serde(default, borrow, rename = "eventName", alias = "EventName")]
    event_name: Lenient<'a>,
    #[serde(default, borrow, rename = "eventRW", alias = "EventRW")]
    event_rw: Lenient<'a>,
    #[serde(default, rename = "readOnly")]
    read_only: Option<serde_json::Value>,
    #[serde(default, borrow, rename = "eventSource", alias = "EventSource")]
    event_source: Lenient<'a>,
    #[serde(default, borrow, rename = "eventTime", alias = "EventTime")]
    event_time: Lenient<'a>,
    #[serde(default, borrow, rename = "eventType", alias = "EventType")]
    event_type: Lenient<'a>,
    #[serde(default, borrow, rename = "acsRegion", alias = "AcsRegion")]
    acs_region: Lenient<'a>,
    #[serde(default, borrow, rename = "awsRegion")]
    aws_region: Lenient<'a>,
    #[serde(default, borrow, rename = "serviceName", alias = "ServiceName")]
    service_name: Lenient<'a>,
    #[serde(default, borrow, rename = "resourceType", alias = "ResourceType")]
    resource_type: Lenient<'a>,
    #[serde(default, borrow, rename = "resourceName", alias = "ResourceName")]
    resource_name: Lenient<'a>,
    #[serde(default, borrow, rename = "recipientAccountId")]
    recipient_account_id: Lenient<'a>,
    #[serde(
        default,
        borrow,
        rename = "sourceIpAddress",
        alias = "sourceIPAddress",
        alias = "SourceIpAddress"
    )]
    source_ip: Lenient<'a>,
    #[serde(default, borrow, rename = "errorCode", alias = "ErrorCode")]
    error_code: Lenient<'a>,
    #[serde(
        default,
        borrow,
        rename = "requestId",
        alias = "requestID",
        alias = "RequestId"
    )]
    request_id: Lenient<'a>,
    #[serde(default, borrow, rename = "userIdentity", alias = "UserIdentity")]
    identity: Option<Identity<'a>>,
    #[serde(default, borrow)]
    resources: Option<Vec<CloudTrailResource<'a>>>,
    #[serde(
        default,
        borrow,
        rename = "referencedResources",
        alias = "ReferencedResources"
    )]
    referenced: ResourceMap<'a>,
}

/// A CloudTrail log file's envelope, `{"Records": [...]}`, as S3 holds it
/// and an SLS import may carry it in one log: the records' JSON texts, as
/// slices of `json`. `None` when `json` is not such an envelope (the first
/// key decides: a single event never starts with `Records`).
pub fn records(json: &[u8]) -> Option<Result<Vec<&[u8]>, ParseError>> {
    if !is_records_envelope(json) {
        return None;
    }
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "Records", borrow)]
        records: Vec<&'a serde_json::value::RawValue>,
    }
    Some(
        serde_json::from_slice::<Envelope<'_>>(json)
            .map(|e| e.records.into_iter().map(|r| r.get().as_bytes()).collect())
            .map_err(|e| ParseError::Json(format!("CloudTrail Records envelope: {e}"))),
    )
}

/// Whether `json` starts as a CloudTrail `{"Records": …}` envelope (its
/// first key; read before anything is parsed, so a size cap can come first).
pub fn is_records_envelope(json: &[u8]) -> bool {
    json.trim_ascii_start()
        .strip_prefix(b"{")
        .is_some_and(|rest| rest.trim_ascii_start().starts_with(b"\"Records\""))
}

/// Parses one event from its JSON text.
pub fn parse(json: &[u8]) -> Result<AuditEvent<'_>, ParseError> {
    // serde would read an array positionally into the struct.
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ParseError::Json("an event must be a JSON object".into()));
    }
    let text = std::str::from_utf8(json).map_err(|e| ParseError::Utf8(e.valid_up_to()))?;
    let raw: Raw<'_> = serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    let event_id = raw
        .event_id
        .0
        .filter(|s| !s.is_empty())
        .ok_or(ParseError::MissingEventId)?;
    let format = if raw.aws_region.0.is_some() {
        Format::CloudTrail
    } else if raw.acs_region.0.is_some() || raw.service_name.0.is_some() {
        Format::ActionTrail
    } else {
        return Err(ParseError::UnknownFormat);
    };
    let (user_type, account_id, principal_id, user_name) = match raw.identity {
        Some(mut i) => {
            let user = match format {
                Format::ActionTrail => i.user_name.0.take().or(i.arn.0.take()),
                Format::CloudTrail => cloudtrail_user(&mut i),
            };
            (i.kind.0, i.account_id.0, i.principal_id.0, user)
        }
        None => (None, None, None, None),
    };
    let (event_rw, region, service_name) = match format {
        Format::ActionTrail => (raw.event_rw.0, raw.acs_region.0, raw.service_name.0),
        Format::CloudTrail => {
            let rw = match raw.read_only {
                Some(serde_json::Value::Bool(true)) => Some(Cow::Borrowed("Read")),
                Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("true") => {
                    Some(Cow::Borrowed("Read"))
                }
                Some(_) => Some(Cow::Borrowed("Write")),
                None => None,
            };
            let service = raw.event_source.0.as_ref().map(|s| match s {
                Cow::Borrowed(b) => Cow::Borrowed(b.split('.').next().unwrap_or(b)),
                Cow::Owned(o) => Cow::Owned(o.split('.').next().unwrap_or(o).to_owned()),
            });
            (rw, raw.aws_region.0, service)
        }
    };
    let arns = raw
        .resources
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            r.arn.0.filter(|a| !a.is_empty()).map(|arn| CloudTrailArn {
                arn,
                kind: r.kind.0,
                account: r.account_id.0.filter(|a| !a.is_empty()),
            })
        })
        .collect();
    Ok(AuditEvent {
        format,
        event_id,
        event_name: raw.event_name.0,
        event_rw,
        event_source: raw.event_source.0,
        event_time: raw.event_time.0,
        event_type: raw.event_type.0,
        region,
        service_name,
        resource_type: raw.resource_type.0,
        resource_name: raw.resource_name.0,
        account_id,
        recipient_account_id: raw.recipient_account_id.0,
        principal_id,
        user_name,
        user_type,
        source_ip: raw.source_ip.0,
        error_code: raw.error_code.0.filter(|c| !c.is_empty()),
        request_id: raw.request_id.0,
        arns,
        referenced: raw.referenced.0,
        rw_inferred: false,
    })
}

impl<'a> AuditEvent<'a> {
    /// The account the event's resources belong to: `recipientAccountId` when
    /// present (organization trails), else the caller's account.
    pub fn owner_account(&self) -> Option<&str> {
        self.recipient_account_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.account_id.as_deref())
    }

    pub fn is_write(&self) -> bool {
        self.event_rw
            .as_deref()
            .is_some_and(|rw| rw.eq_ignore_ascii_case("write"))
    }

    /// The resources this event touched.
    pub fn resources(&self) -> Vec<ResourceRef<'_>> {
        let mut out = Vec::new();
        resource::refs_into(self, &mut out);
        out
    }

    /// [`Self::resources`] into a vector the caller reuses (cleared first).
    pub fn resources_into<'e>(&'e self, out: &mut Vec<ResourceRef<'e>>) {
        resource::refs_into(self, out);
    }

    /// Unix time of `eventTime`, if it parses.
    pub fn unix_time(&self) -> Option<f64> {
        self.event_time.as_deref().and_then(parse_event_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"{"eventId":"7C1E4B2A-93D5-5F0E-8A61-2D3F9B0C4E17","eventVersion":1,"eventCategory":"Management",
 "eventType":"ApiCall","eventRW":"Write","eventName":"StopInstance","eventSource":"ecs.cn-shanghai.aliyuncs.com",
 "eventTime":"2024-05-14T02:31:07Z","acsRegion":"cn-shanghai","serviceName":"Ecs","apiVersion":"2014-05-26",
 "sourceIpAddress":"203.0.113.24","userAgent":"AlibabaCloud (Linux; amd64) Go/1.21.6 Core/1.62.700",
 "requestId":"7C1E4B2A-93D5-5F0E-8A61-2D3F9B0C4E17","isGlobal":false,
 "userIdentity":{"type":"ram-user","accountId":"1384920045567123","principalId":"271830045512908877",
   "userName":"deploy-bot","accessKeyId":"LTAI5tQx9ExampleKeyId01"},
 "requestParameters":{"RegionId":"cn-shanghai","InstanceId":"i-uf6f3k2x9examplevm01","ForceStop":false,
   "AcsProduct":"Ecs","AcsHost":"ecs.cn-shanghai.aliyuncs.com"},
 "responseElements":{"RequestId":"7C1E4B2A-93D5-5F0E-8A61-2D3F9B0C4E17"},
 "referencedResources":{"ACS::ECS::Instance":["i-uf6f3k2x9examplevm01"]},
 "resourceType":"ACS::ECS::Instance","resourceName":"i-uf6f3k2x9examplevm01",
 "additionalEventData":{"Scheme":"https"},"errorCode":"","errorMessage":""}"#;

    #[test]
    fn actiontrail_sample_a() {
        let e = parse(A.as_bytes()).unwrap();
        assert_eq!(e.format, Format::ActionTrail);
        assert_eq!(e.event_id, "7C1E4B2A-93D5-5F0E-8A61-2D3F9B0C4E17");
        assert!(
            matches!(e.event_id, Cow::Borrowed(_)),
            "no copy without escapes"
        );
        assert_eq!(e.event_name.as_deref(), Some("StopInstance"));
        assert!(e.is_write());
        assert_eq!(e.service_name.as_deref(), Some("Ecs"));
        assert_eq!(e.user_type.as_deref(), Some("ram-user"));
        assert_eq!(e.user_name.as_deref(), Some("deploy-bot"));
        assert_eq!(e.owner_account(), Some("1384920045567123"));
        assert_eq!(e.error_code, None, "an empty errorCode is success");
        assert_eq!(e.unix_time(), Some(1_715_653_867.0));
    }

    #[test]
    fn invalid_utf8_anywhere_is_refused_even_where_the_parser_skips() {
        // Found by trail-fuzz: a byte 0xff inside an object nobody reads
        // passed the parse and made every envelope carrying it invalid JSON.
        let bad = A.replace("\"Scheme\"", "\"S\u{1}cheme\"").into_bytes();
        let at = bad.windows(2).position(|w| w == b"S\x01").unwrap() + 1;
        let mut bad = bad;
        bad[at] = 0xff;
        assert_eq!(parse(&bad).unwrap_err(), ParseError::Utf8(at));
        assert_eq!(parse(&bad).unwrap_err().kind(), "invalid_utf8");
        assert!(parse(A.as_bytes()).is_ok());
    }

    #[test]
    fn variations_seen_in_real_trails_parse() {
        // eventVersion as string, errorMessage "success", IPv6, number where a string is documented.
        let e = parse(br#"{"eventId":"1.203_1715653822015_8c1f","eventVersion":"","acsRegion":"cn-hangzhou",
            "serviceName":"AasSub","sourceIpAddress":"2001:db8::1","errorCode":null,"errorMessage":"success",
            "userIdentity":{"type":"system","userName":"ecs.aliyuncs.com"},"requestId":12345}"#).unwrap();
        assert_eq!(e.source_ip.as_deref(), Some("2001:db8::1"));
        assert_eq!(e.error_code, None);
        assert_eq!(e.request_id.as_deref(), Some("12345"));
        // PascalCase variant.
        let e = parse(br#"{"EventId":"x","EventName":"Create","AcsRegion":"cn-beijing","ServiceName":"Ecs",
            "UserIdentity":{"Type":"ram-user","UserName":"bob"},"EventTime":"2020-12-01T11:54:59.366+0000"}"#).unwrap();
        assert_eq!(e.event_name.as_deref(), Some("Create"));
        assert_eq!(e.user_name.as_deref(), Some("bob"));
        assert!(e.unix_time().is_some());
        // Escapes are decoded (and copied).
        let e =
            parse(br#"{"eventId":"a\"b","acsRegion":"r","userIdentity":{"userName":"\u00fc"}}"#)
                .unwrap();
        assert_eq!(e.event_id, "a\"b");
        assert_eq!(e.user_name.as_deref(), Some("ü"));
    }

    #[test]
    fn a_records_envelope_splits_into_slices_of_the_input() {
        let file = br#" { "Records" : [ {"eventID":"a","awsRegion":"us-east-1"}, {"eventID":"b","awsRegion":"eu-west-1","readOnly":false} ] }"#;
        let recs = records(file).unwrap().unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], br#"{"eventID":"a","awsRegion":"us-east-1"}"#);
        let range = file.as_ptr_range();
        assert!(range.contains(&recs[1].as_ptr()), "borrowed, not copied");
        assert_eq!(parse(recs[1]).unwrap().event_id, "b");
        assert!(records(br#"{"eventId":"x","Records":[]}"#).is_none());
        assert!(records(br#"{"Records": [1, 2"#).unwrap().is_err());
    }

    #[test]
    fn cloudtrail_record() {
        let e = parse(br#"{"eventVersion":"1.11","userIdentity":{"type":"AssumedRole","principalId":"AROA:s",
            "arn":"arn:aws:sts::123456789012:assumed-role/r/s","accountId":"123456789012"},
            "eventTime":"2024-05-14T02:31:07Z","eventSource":"ec2.amazonaws.com","eventName":"StopInstances",
            "awsRegion":"us-east-1","sourceIPAddress":"203.0.113.5","readOnly":false,"eventID":"e-1",
            "requestID":"r-1","errorCode":"200","recipientAccountId":"123456789012",
            "resources":[{"ARN":"arn:aws:ec2:us-east-1:123456789012:instance/i-1","accountId":"123456789012","type":"AWS::EC2::Instance"}]}"#).unwrap();
        assert_eq!(e.format, Format::CloudTrail);
        assert_eq!(e.event_id, "e-1");
        assert_eq!(e.service_name.as_deref(), Some("ec2"));
        assert!(e.is_write());
        assert_eq!(
            e.user_name.as_deref(),
            Some("s"),
            "no issuer: the ARN's last part"
        );
        assert_eq!(e.arns.len(), 1);
        assert_eq!(e.error_code.as_deref(), Some("200"));
    }

    #[test]
    fn cloudtrail_callers_are_named_as_their_users_read_them() {
        let user = |identity: &str| {
            let json =
                format!(r#"{{"eventID":"e","awsRegion":"us-east-1","userIdentity":{identity}}}"#);
            parse(json.as_bytes())
                .unwrap()
                .user_name
                .map(|u| u.into_owned())
        };
        assert_eq!(
            user(r#"{"type":"IAMUser","userName":"alice","arn":"arn:aws:iam::1:user/alice","invokedBy":"cloudformation.amazonaws.com"}"#).as_deref(),
            Some("alice")
        );
        assert_eq!(
            user(r#"{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/Deploy/ci-42",
                "sessionContext":{"sessionIssuer":{"type":"Role","userName":"Deploy","arn":"arn:aws:iam::1:role/Deploy"},
                "attributes":{"mfaAuthenticated":"false"}}}"#).as_deref(),
            Some("Deploy/ci-42")
        );
        assert_eq!(
            user(r#"{"type":"AWSService","invokedBy":"cloudtrail.amazonaws.com"}"#).as_deref(),
            Some("cloudtrail.amazonaws.com")
        );
        assert_eq!(
            user(r#"{"type":"Root","arn":"arn:aws:iam::123456789012:root","accountId":"123456789012"}"#).as_deref(),
            Some("root")
        );
        assert_eq!(
            user(r#"{"type":"IdentityCenterUser","arn":"arn:aws:identitystore::1:user/u-1","userName":""}"#).as_deref(),
            Some("u-1")
        );
        assert_eq!(user(r#"{"principalId":"x"}"#), None, "type may be absent");
        // ActionTrail keeps its own userName, roles as `role:session`.
        let e = parse(br#"{"eventId":"x","acsRegion":"r","userIdentity":{"type":"assumed-role","userName":"ci-role:etl"}}"#).unwrap();
        assert_eq!(e.user_name.as_deref(), Some("ci-role:etl"));
    }

    #[test]
    fn a_cloudtrail_record_without_read_only_has_no_event_rw_until_inferred() {
        let e =
            parse(br#"{"eventID":"e","awsRegion":"us-east-1","eventName":"DescribeInstances"}"#)
                .unwrap();
        assert_eq!(e.event_rw, None);
        assert_eq!(infer_rw(e.event_name.as_deref().unwrap()), "Read");
    }

    #[test]
    fn bad_input_is_an_error_naming_the_problem() {
        assert!(matches!(parse(b"{\"eventId\":"), Err(ParseError::Json(_))));
        assert!(matches!(parse(b"[1,2]"), Err(ParseError::Json(_))));
        assert_eq!(
            parse(br#"{"acsRegion":"r"}"#),
            Err(ParseError::MissingEventId)
        );
        assert_eq!(parse(br#"{"eventId":"x"}"#), Err(ParseError::UnknownFormat));
        assert!(
            matches!(parse(b"{\"eventId\":\"x\",}"), Err(ParseError::Json(_))),
            "trailing comma"
        );
        assert!(matches!(parse(&[0xff, 0xfe]), Err(ParseError::Json(_))));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>) {
            let _ = parse(&bytes);
        }

        #[test]
        fn arbitrary_strings_in_fields_never_panic(s in ".*", t in ".*") {
            let json = serde_json::json!({"eventId": s, "acsRegion": t, "resourceType": s, "resourceName": t, "eventTime": s});
            let text = json.to_string();
            if let Ok(e) = parse(text.as_bytes()) {
                let _ = e.resources();
                let _ = e.unix_time();
            }
        }
    }
}
