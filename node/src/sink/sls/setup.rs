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

fn key(ty: &str) -> Value {
    match ty {
        "long" | "double" => json!({ "type": ty, "doc_value": true, "alias": "" }),
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
    })
}

/// The index of a business-view logstore: every business field, `shard`,
/// and `{tag_prefix}{k}` for each tag key. The original event (`event`) is
/// reached by the full-text (`line`) index only: its keys vary by service.
pub fn business_view_index<S: AsRef<str>>(tag_prefix: &str, tag_keys: &[S]) -> Value {
    let fields = BUSINESS_FIELDS.iter().map(|f| ((*f).to_owned(), "text"));
    let tags = tag_keys
        .iter()
        .map(|k| (format!("{tag_prefix}{}", k.as_ref()), "text"));
    index(fields.chain([("shard".to_owned(), "long")]).chain(tags))
}

/// The index of the dead-letter logstore.
pub fn dead_letter_index() -> Value {
    index(
        dead_letter::LOG_FIELDS
            .iter()
            .map(|(k, ty)| ((*k).to_owned(), *ty)),
    )
}

/// The saved searches of a business-view logstore: changes by project ×
/// RAM user, failed changes, sensitive actions. Names start `trail-` and
/// end with the logstore, so two sinks in one project keep theirs apart.
pub fn saved_searches(logstore: &str, tag_prefix: &str) -> Vec<Value> {
    let project = format!("\"{tag_prefix}project\"");
    let sensitive = SENSITIVE_ACTIONS
        .iter()
        .map(|a| format!("eventName: {a}"))
        .collect::<Vec<_>>()
        .join(" or ");
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
                "eventRW: Write and ({sensitive}) | SELECT eventTime, userName, eventName, \
                 {project} AS project, resources, errorCode, sourceIpAddress \
                 ORDER BY eventTime DESC LIMIT 1000"
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
    /// Add these keys (and the full-text index if `line` is missing):
    /// `merged` is the existing config with them, for UpdateIndex.
    Update {
        merged: Value,
        added: Vec<String>,
        line_added: bool,
    },
    /// Every wanted key is there.
    UpToDate,
}

/// A wanted key indexed with another type than Trail writes: left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMismatch {
    pub key: String,
    pub have: String,
    pub want: String,
}

/// Compares an existing index (`GetIndex`, `None` without one) with the
/// wanted one.
pub fn plan_index(existing: Option<&Value>, wanted: &Value) -> (IndexPlan, Vec<TypeMismatch>) {
    let Some(existing) = existing else {
        return (IndexPlan::Create(wanted.clone()), Vec::new());
    };
    let mut merged = existing.clone();
    let mut added = Vec::new();
    let mut mismatched = Vec::new();
    let Some(m) = merged.as_object_mut() else {
        return (IndexPlan::Create(wanted.clone()), Vec::new());
    };
    for k in READ_ONLY {
        m.remove(*k);
    }
    let line_added = !m.get("line").is_some_and(Value::is_object);
    if line_added {
        m.insert("line".into(), wanted["line"].clone());
    }
    if !m.get("keys").is_some_and(Value::is_object) {
        m.insert("keys".into(), json!({}));
    }
    let keys = m["keys"]
        .as_object_mut()
        .expect("an object, just made sure");
    if let Some(want) = wanted["keys"].as_object() {
        for (name, w) in want {
            match keys.get(name) {
                None => {
                    keys.insert(name.clone(), w.clone());
                    added.push(name.clone());
                }
                Some(have) => {
                    let ty = |v: &Value| v["type"].as_str().unwrap_or("text").to_owned();
                    if ty(have) != ty(w) {
                        mismatched.push(TypeMismatch {
                            key: name.clone(),
                            have: ty(have),
                            want: ty(w),
                        });
                    }
                }
            }
        }
    }
    let plan = if added.is_empty() && !line_added {
        IndexPlan::UpToDate
    } else {
        IndexPlan::Update {
            merged,
            added,
            line_added,
        }
    };
    (plan, mismatched)
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
        assert_eq!(plan_index(Some(&got), &want), (IndexPlan::UpToDate, vec![]));
    }

    #[test]
    fn an_existing_index_gains_only_what_it_lacks_and_keeps_the_operators_choices() {
        let want = business_view_index("tag_", &["project", "env"]);
        let mut got = json!({
            "keys": {
                "userName": { "type": "text", "token": [","], "alias": "user" },
                "shard": { "type": "text", "token": [","] },
                "custom": { "type": "double" },
            },
            "ttl": 30,
            "storage": "pg",
        });
        let (plan, mismatched) = plan_index(Some(&got), &want);
        assert_eq!(
            mismatched,
            vec![TypeMismatch {
                key: "shard".into(),
                have: "text".into(),
                want: "long".into()
            }]
        );
        let IndexPlan::Update {
            merged,
            added,
            line_added,
        } = plan
        else {
            panic!("expected an update, got {plan:?}");
        };
        assert!(line_added);
        assert!(added.contains(&"tag_env".to_owned()) && added.contains(&"eventName".to_owned()));
        assert!(!added.contains(&"userName".to_owned()));
        assert_eq!(
            merged["keys"]["userName"]["alias"], "user",
            "kept as it was"
        );
        assert_eq!(merged["keys"]["shard"]["type"], "text", "not re-typed");
        assert_eq!(merged["keys"]["custom"]["type"], "double");
        assert!(merged.get("ttl").is_none() && merged.get("storage").is_none());
        // Applying the update makes the next plan a no-op.
        got = merged;
        assert_eq!(plan_index(Some(&got), &want).0, IndexPlan::UpToDate);
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
            .all(|a| sensitive.contains(&format!("eventName: {a} "))
                || sensitive.contains(&format!("eventName: {a})"))));
    }
}
