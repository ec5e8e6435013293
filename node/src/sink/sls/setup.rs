//! What a business-view logstore needs to be queried on day one: an index
//! on every field the SLS sink writes (and the dead-letter logstore's), and
//! saved searches for the questions audit teams ask. `trail-node setup`
//! applies these; `trail-node check` compares them with what is there.
//!
//! An index here is SLS's index config JSON (`line` for full-text search,
//! `keys` per field). Names are `text` with analytics on (`doc_value`, so
//! `| SELECT … GROUP BY` works); `shard` is `long`. A logstore that already
//! has an index keeps it: setup only adds what is missing, and reports a
//! field indexed with another type without changing it (re-typing a field
//! changes how old data reads, the operator's call).

use serde_json::{json, Map, Value};

use crate::record::BUSINESS_FIELDS;
use crate::sink::dead_letter;

/// SLS's default token list (the console's), so `ACS::ECS::Instance/i-1`
/// splits into `ACS`, `ECS`, `Instance`, `i-1`.
pub const TOKENS: &[&str] = &[
    ",", " ", "'", "\"", ";", "=", "(", ")", "[", "]", "{", "}", "?", "@", "&", "<", ">", "/", ":",
    "\n", "\t", "\r",
];

/// Tag keys indexed when nothing names them (no tags file, no `--tag-key`).
pub const DEFAULT_TAG_KEYS: &[&str] = &["project", "env", "team", "owner"];

/// Event names the business view calls sensitive: changes to the trail
/// itself, to identities and their keys and policies, to network exposure,
/// and deletions of data stores and keys. `deploy/splunk/…/lookups/
/// trail_sensitive_actions.csv` lists the same names (`tests/splunk_app.rs`).
pub const SENSITIVE_ACTIONS: &[&str] = &[
    "DeleteTrail",
    "StopLogging",
    "UpdateTrail",
    "CreateAccessKey",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "AttachPolicyToUser",
    "AttachPolicyToRole",
    "AttachPolicyToGroup",
    "CreatePolicyVersion",
    "SetDefaultPolicyVersion",
    "UpdateRole",
    "CreateUser",
    "DeleteUser",
    "CreateLoginProfile",
    "UpdateLoginProfile",
    "DeleteBucket",
    "PutBucketAcl",
    "PutBucketPolicy",
    "DeleteDBInstance",
    "ModifySecurityIps",
    "AuthorizeSecurityGroup",
    "DeleteLogStore",
    "DeleteProject",
    "ScheduleKeyDeletion",
    "DisableKey",
];

/// GetIndex answers with these besides the config; they are not sent back.
const READ_ONLY: &[&str] = &["ttl", "lastModifyTime", "index_mode", "storage"];

/// The longest value SLS indexes whole (its default is 2048; 16384 is
/// its maximum): resource lists and raw events run longer.
const MAX_TEXT_LEN: u32 = 16_384;

fn key(ty: &str) -> Value {
    match ty {
        "long" | "double" => json!({ "type": ty, "doc_value": true, "alias": "" }),
        // Searchable, but no analytics column: a raw payload is never
        // grouped by, and a column of them costs storage.
        "payload" => json!({
            "type": "text",
            "token": TOKENS,
            "caseSensitive": false,
            "chn": false,
            "doc_value": false,
            "alias": "",
        }),
        _ => json!({
            "type": "text",
            "token": TOKENS,
            "caseSensitive": false,
            "chn": false,
            "doc_value": true,
            "alias": "",
        }),
    }
}

fn index(keys: impl IntoIterator<Item = (String, &'static str)>) -> Value {
    let keys: Map<String, Value> = keys.into_iter().map(|(k, ty)| (k, key(ty))).collect();
    json!({
        "line": { "token": TOKENS, "caseSensitive": false, "chn": false },
        "keys": keys,
        "max_text_len": MAX_TEXT_LEN,
    })
}

/// The keys the saved searches read with SQL: they need analytics
/// (`doc_value`), or the searches fail.
pub const QUERIED: &[&str] = &[
    "eventRW",
    "eventName",
    "eventTime",
    "userName",
    "errorCode",
    "resources",
    "sourceIpAddress",
];

/// The index of a business-view logstore: every business field, `shard`,
/// and `{tag_prefix}{k}` for each tag key, `project` always (the saved
/// searches group by it). The original event (`event`) is reached by the
/// full-text (`line`) index only: its keys vary by service.
pub fn business_view_index<S: AsRef<str>>(tag_prefix: &str, tag_keys: &[S]) -> Value {
    let fields = BUSINESS_FIELDS.iter().map(|f| ((*f).to_owned(), "text"));
    let tags = std::iter::once("project")
        .chain(tag_keys.iter().map(AsRef::as_ref))
        .map(|k| (format!("{tag_prefix}{k}"), "text"));
    index(fields.chain([("shard".to_owned(), "long")]).chain(tags))
}

/// The index of the dead-letter logstore.
pub fn dead_letter_index() -> Value {
    index(dead_letter::LOG_FIELDS.iter().map(|(k, ty)| {
        let ty = match *k {
            "raw" | "raw_base64" => "payload",
            _ => *ty,
        };
        ((*k).to_owned(), ty)
    }))
}

/// The saved searches of a business-view logstore: changes by project ×
/// RAM user, failed changes, sensitive actions. Names start `trail-` and
/// end with the logstore, so two sinks in one project keep theirs apart.
pub fn saved_searches(logstore: &str, tag_prefix: &str) -> Vec<Value> {
    let project = format!("\"{tag_prefix}project\"");
    // SQL's IN, not `eventName: A or eventName: B …`: a search allows
    // only 30 conditions, and the list grows.
    let sensitive = SENSITIVE_ACTIONS
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let search = |name: &str, display: &str, query: String| {
        json!({
            "savedsearchName": search_name(name, logstore),
            "displayName": display,
            "logstore": logstore,
            "topic": "",
            "searchQuery": query,
        })
    };
    vec![
        search(
            "changes-by-project",
            "Which RAM users changed which project's resources",
            format!(
                "eventRW: Write | SELECT {project} AS project, userName, count(1) AS changes \
                 GROUP BY project, userName ORDER BY changes DESC LIMIT 1000"
            ),
        ),
        search(
            "failed-changes",
            "Failed changes",
            format!(
                "eventRW: Write and errorCode: * | SELECT eventTime, userName, eventName, \
                 errorCode, {project} AS project, resources, sourceIpAddress \
                 ORDER BY eventTime DESC LIMIT 1000"
            ),
        ),
        search(
            "sensitive-actions",
            "Sensitive actions",
            format!(
                "eventRW: Write | SELECT eventTime, userName, eventName, \
                 {project} AS project, resources, errorCode, sourceIpAddress \
                 WHERE eventName IN ({sensitive}) ORDER BY eventTime DESC LIMIT 1000"
            ),
        ),
    ]
}

/// `trail-{what}-{logstore}`, cut to SLS's 63 characters with a hash of
/// the logstore so that long names stay apart.
fn search_name(what: &str, logstore: &str) -> String {
    let full = format!("trail-{what}-{logstore}");
    if full.len() <= 63 {
        return full;
    }
    let hash = logstore.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head: String = full.chars().take(54).collect();
    format!("{head}-{:08x}", hash as u32)
}

/// What setup would do to a logstore's index.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexPlan {
    /// The logstore has no index: create `wanted`.
    Create(Value),
    /// Add these keys: `merged` is the existing config with them, for
    /// UpdateIndex.
    Update { merged: Value, added: Vec<String> },
    /// Every wanted key is there.
    UpToDate,
}

/// What the comparison found besides missing keys; reported, never
/// changed (re-typing a field changes how its old data reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Wanted keys indexed otherwise than Trail needs them.
    pub mismatched: Vec<KeyMismatch>,
    /// The index has no full-text part: `event` cannot be searched.
    pub no_full_text: bool,
}

/// A wanted key indexed with another type, or without the analytics the
/// saved searches' SQL needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMismatch {
    pub key: String,
    pub have: String,
    pub want: String,
}

fn describe(v: &Value) -> (String, bool) {
    (
        v["type"].as_str().unwrap_or("text").to_owned(),
        // SLS's default when absent: no analytics.
        v["doc_value"].as_bool().unwrap_or(false),
    )
}

fn kind((ty, analytics): &(String, bool)) -> String {
    if *analytics {
        format!("{ty} with analytics")
    } else {
        format!("{ty} without analytics")
    }
}

/// Compares an existing index (`GetIndex`, `None` without one) with the
/// wanted one. Only missing keys are added; the full-text part is never
/// switched on for an index that has none (it is the operator's cost).
pub fn plan_index(existing: Option<&Value>, wanted: &Value) -> (IndexPlan, Findings) {
    let none = Findings {
        mismatched: Vec::new(),
        no_full_text: false,
    };
    let Some(m) = existing.and_then(Value::as_object) else {
        return (IndexPlan::Create(wanted.clone()), none);
    };
    let mut m = m.clone();
    for k in READ_ONLY {
        m.remove(*k);
    }
    let mut findings = Findings {
        no_full_text: !m.get("line").is_some_and(Value::is_object),
        ..none
    };
    if !m.get("keys").is_some_and(Value::is_object) {
        m.insert("keys".into(), json!({}));
    }
    let keys = m
        .get_mut("keys")
        .and_then(Value::as_object_mut)
        .expect("an object, just made sure");
    let mut added = Vec::new();
    if let Some(want) = wanted["keys"].as_object() {
        for (name, w) in want {
            match keys.get(name) {
                None => {
                    keys.insert(name.clone(), w.clone());
                    added.push(name.clone());
                }
                Some(have) => {
                    let (h, w) = (describe(have), describe(w));
                    if h.0 != w.0 || (w.1 && !h.1) {
                        findings.mismatched.push(KeyMismatch {
                            key: name.clone(),
                            have: kind(&h),
                            want: kind(&w),
                        });
                    }
                }
            }
        }
    }
    let plan = if added.is_empty() {
        IndexPlan::UpToDate
    } else {
        IndexPlan::Update {
            merged: Value::Object(m),
            added,
        }
    };
    (plan, findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_business_view_index_types_every_field() {
        let ix = business_view_index("tag_", &["project", "cost-center"]);
        let keys = ix["keys"].as_object().unwrap();
        assert_eq!(keys.len(), BUSINESS_FIELDS.len() + 1 + 2);
        assert_eq!(keys["shard"]["type"], "long");
        assert_eq!(keys["userName"]["type"], "text");
        assert_eq!(keys["userName"]["doc_value"], true);
        assert_eq!(keys["tag_cost-center"]["type"], "text");
        assert!(
            !keys.contains_key("event"),
            "the raw event is full-text only"
        );
        assert_eq!(ix["line"]["token"].as_array().unwrap().len(), TOKENS.len());
        let dl = dead_letter_index();
        assert_eq!(dl["keys"]["shard"]["type"], "long");
        assert_eq!(dl["keys"]["reason"]["type"], "text");
    }

    #[test]
    fn a_missing_index_is_created_and_a_complete_one_left_alone() {
        let want = business_view_index("tag_", &["project"]);
        assert_eq!(plan_index(None, &want).0, IndexPlan::Create(want.clone()));
        // GetIndex's answer: the config plus read-only fields.
        let mut got = want.clone();
        got["ttl"] = json!(90);
        got["lastModifyTime"] = json!(1_790_000_000);
        let (plan, findings) = plan_index(Some(&got), &want);
        assert_eq!(plan, IndexPlan::UpToDate);
        assert_eq!(findings.mismatched, vec![]);
        assert!(!findings.no_full_text);
    }

    #[test]
    fn an_existing_index_gains_only_what_it_lacks_and_keeps_the_operators_choices() {
        let want = business_view_index("tag_", &["env"]);
        let mut got = json!({
            "keys": {
                "userName": { "type": "text", "token": [","], "alias": "user", "doc_value": true },
                "shard": { "type": "text", "token": [","], "doc_value": true },
                // No doc_value: SLS's default, no analytics; the SQL needs it.
                "eventName": { "type": "text", "token": [","] },
                "custom": { "type": "double" },
            },
            "ttl": 30,
            "storage": "pg",
        });
        let (plan, findings) = plan_index(Some(&got), &want);
        assert_eq!(
            findings.mismatched,
            vec![
                KeyMismatch {
                    key: "eventName".into(),
                    have: "text without analytics".into(),
                    want: "text with analytics".into()
                },
                KeyMismatch {
                    key: "shard".into(),
                    have: "text with analytics".into(),
                    want: "long with analytics".into()
                },
            ]
        );
        assert!(findings.no_full_text);
        let IndexPlan::Update { merged, added } = plan else {
            panic!("expected an update, got {plan:?}");
        };
        assert!(added.contains(&"tag_env".to_owned()) && added.contains(&"tag_project".to_owned()));
        assert!(added.contains(&"eventId".to_owned()));
        assert!(!added.contains(&"userName".to_owned()));
        assert_eq!(
            merged["keys"]["userName"]["alias"], "user",
            "kept as it was"
        );
        assert_eq!(merged["keys"]["shard"]["type"], "text", "not re-typed");
        assert_eq!(merged["keys"]["custom"]["type"], "double");
        assert!(merged.get("line").is_none(), "full text is not switched on");
        assert!(merged.get("ttl").is_none() && merged.get("storage").is_none());
        // Applying the update makes the next plan a no-op.
        got = merged;
        assert_eq!(plan_index(Some(&got), &want).0, IndexPlan::UpToDate);
    }

    #[test]
    fn raw_payloads_are_searchable_without_an_analytics_column() {
        let dl = dead_letter_index();
        assert_eq!(dl["keys"]["raw"]["doc_value"], false);
        assert_eq!(dl["keys"]["raw_base64"]["doc_value"], false);
        assert_eq!(dl["keys"]["reason"]["doc_value"], true);
        assert_eq!(dl["max_text_len"], MAX_TEXT_LEN);
        let ix = business_view_index("tag_", &[] as &[&str]);
        for k in QUERIED {
            assert_eq!(ix["keys"][*k]["doc_value"], true, "{k}");
        }
        assert_eq!(
            ix["keys"]["tag_project"]["doc_value"], true,
            "always indexed"
        );
    }

    #[test]
    fn saved_searches_name_their_logstore_and_the_tag_prefix() {
        let s = saved_searches("business_view", "biz_");
        assert_eq!(s.len(), 3);
        let names: Vec<&str> = s
            .iter()
            .map(|x| x["savedsearchName"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "trail-changes-by-project-business_view",
                "trail-failed-changes-business_view",
                "trail-sensitive-actions-business_view"
            ]
        );
        for x in &s {
            assert_eq!(x["logstore"], "business_view");
            let q = x["searchQuery"].as_str().unwrap();
            assert!(q.contains("\"biz_project\""), "{q}");
            assert!(q.starts_with("eventRW: Write"), "{q}");
        }
        let long = "a_logstore_name_long_enough_to_push_the_search_past_the_limit";
        let (a, b) = (
            search_name("changes-by-project", &format!("{long}_1")),
            search_name("changes-by-project", &format!("{long}_2")),
        );
        assert!(a.len() <= 63 && b.len() <= 63 && a != b, "{a} {b}");
        let sensitive = s[2]["searchQuery"].as_str().unwrap();
        assert!(SENSITIVE_ACTIONS
            .iter()
            .all(|a| sensitive.contains(&format!("'{a}'"))));
        // A search allows 30 conditions: the searches keep to one or two.
        for x in &s {
            let search = x["searchQuery"]
                .as_str()
                .unwrap()
                .split('|')
                .next()
                .unwrap();
            let conditions = search.split(" and ").count() + search.split(" or ").count() - 1;
            assert!(conditions <= 2, "{search}");
        }
    }
}
