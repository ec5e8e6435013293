//! `trail-node setup`: the logstores Trail writes made ready to query, and
//! the online half of `trail-node check`. Floor 6, beside the composition
//! root whose clients it uses.
//!
//! For every SLS sink (the business view) and `[dead_letter.sls]`, setup
//! makes, idempotently: the logstore (CreateLogStore; one that exists is
//! kept as it is), its index ([`crate::sink::sls::setup`]: every field the
//! sink writes; an existing index only gains what it lacks) and, for a
//! business view, the saved searches. Running it twice changes nothing the
//! second time. `check` reads the same indexes and warns about what setup
//! would add; it never changes anything, and a logstore it cannot reach is
//! a warning, not a failure (the config is still valid).

use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, SinkConfig};
use crate::node::{sls_client_builder, StartError};
use crate::secret::SecretSource;
use crate::sink::sls::setup::{
    business_view_index, dead_letter_index, plan_index, saved_searches, IndexPlan, DEFAULT_TAG_KEYS,
};
use crate::sls::{ErrorCode, RetryPolicy, SlsClient, SlsError};
use crate::tags::StaticTags;

/// How new logstores are made.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Days a new logstore keeps data.
    pub ttl_days: u32,
    /// Shards of a new logstore (SLS splits them further as it needs).
    pub shards: u32,
}

/// Where the indexed tag keys came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKeysFrom {
    /// `--tag-key` on the command line.
    Given,
    /// Every key the configured tags file names.
    TagsFile,
    /// [`DEFAULT_TAG_KEYS`]: nothing named any.
    Defaults,
}

/// The tag keys to index: those `given`, else the tags file's, else
/// [`DEFAULT_TAG_KEYS`] (cloud tag providers have no list to read).
/// `project` is indexed whatever this says (the saved searches use it).
pub fn tag_keys(
    config: &Config,
    given: &[String],
) -> Result<(Vec<String>, TagKeysFrom), StartError> {
    if !given.is_empty() {
        return Ok((given.to_vec(), TagKeysFrom::Given));
    }
    if let Some(path) = &config.tags.file {
        let keys = StaticTags::open(path, Duration::MAX)?.keys();
        if !keys.is_empty() {
            return Ok((keys.into_iter().collect(), TagKeysFrom::TagsFile));
        }
    }
    let defaults = DEFAULT_TAG_KEYS.iter().map(|k| (*k).to_owned()).collect();
    Ok((defaults, TagKeysFrom::Defaults))
}

/// A logstore Trail writes, with what it should have.
pub struct Target {
    /// The config key that names it (`sinks[1]`, `dead_letter.sls`).
    pub key: String,
    pub project: String,
    pub logstore: String,
    client: SlsClient,
    index: Value,
    searches: Vec<Value>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("key", &self.key)
            .field("project", &self.project)
            .field("logstore", &self.logstore)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}/{})", self.key, self.project, self.logstore)
    }
}

/// Where a configured logstore is and how to reach it: the fields the SLS
/// sink and the SLS dead-letter sink share.
struct Logstore<'a> {
    endpoint: &'a str,
    address: Option<&'a str>,
    access_key_id: &'a str,
    access_key_secret: &'a SecretSource,
    security_token: Option<&'a SecretSource>,
    project: &'a str,
    logstore: &'a str,
}

/// Why setup stopped.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("{target}: {step}: {source}")]
    Sls {
        target: String,
        step: &'static str,
        source: SlsError,
    },
}

/// How long `check` waits for an SLS answer: it runs before a node starts
/// (systemd's `ExecStartPre`), so an unreachable endpoint must not hold it.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The logstores of `config`, each with the index it should have. With
/// `quick`, clients give up after one short try (for `check`). A target
/// that cannot be built (a secret not set) is an error under its key.
pub fn targets(
    config: &Config,
    tag_keys: &[String],
    quick: bool,
) -> Vec<Result<Target, (String, StartError)>> {
    // One logstore of the config: its client (errors under `key`) and
    // what it should have.
    let target = |key: String,
                  x: Logstore<'_>,
                  index: Value,
                  searches: Vec<Value>|
     -> Result<Target, (String, StartError)> {
        let mut b = sls_client_builder(
            x.endpoint,
            x.address,
            x.access_key_id,
            x.access_key_secret,
            x.security_token,
            &key,
        )
        .map_err(|e| (key.clone(), e))?;
        if quick {
            b = b
                .retry(RetryPolicy::none())
                .connect_timeout(CHECK_TIMEOUT)
                .request_timeout(CHECK_TIMEOUT);
        }
        let client = b.build().map_err(|e| (key.clone(), StartError::from(e)))?;
        Ok(Target {
            key,
            project: x.project.to_owned(),
            logstore: x.logstore.to_owned(),
            client,
            index,
            searches,
        })
    };
    let mut out = Vec::new();
    for (i, sink) in config.sinks.iter().enumerate() {
        let SinkConfig::Sls(x) = sink else { continue };
        let prefix = x.tag_prefix.as_deref().unwrap_or(&config.tags.prefix);
        out.push(target(
            format!("sinks[{i}]"),
            Logstore {
                endpoint: &x.endpoint,
                address: x.address.as_deref(),
                access_key_id: &x.access_key_id,
                access_key_secret: &x.access_key_secret,
                security_token: x.security_token.as_ref(),
                project: &x.project,
                logstore: &x.logstore,
            },
            business_view_index(prefix, tag_keys),
            saved_searches(&x.logstore, prefix),
        ));
    }
    if let Some(x) = &config.dead_letter.sls {
        out.push(target(
            "dead_letter.sls".to_owned(),
            Logstore {
                endpoint: &x.endpoint,
                address: x.address.as_deref(),
                access_key_id: &x.access_key_id,
                access_key_secret: &x.access_key_secret,
                security_token: x.security_token.as_ref(),
                project: &x.project,
                logstore: &x.logstore,
            },
            dead_letter_index(),
            Vec::new(),
        ));
    }
    out
}

fn code(e: &SlsError) -> Option<&str> {
    e.code().map(ErrorCode::as_str)
}

fn keys_of(index: &Value) -> usize {
    index["keys"].as_object().map_or(0, |k| k.len())
}

/// Lists up to eight names, then how many more.
fn some(names: &[String]) -> String {
    let mut s = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 8 {
        s.push_str(&format!(" and {} more", names.len() - 8));
    }
    s
}

/// Waits after a logstore was just created: SLS may answer
/// `LogStoreNotExist` for a moment while it propagates.
const SETTLE: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// Makes `t` ready; what was done, one line per step.
pub async fn apply(t: &Target, opts: &SetupOptions) -> Result<Vec<String>, SetupError> {
    let fail = |step: &'static str| {
        let target = t.to_string();
        move |source| SetupError::Sls {
            target,
            step,
            source,
        }
    };
    let mut done = Vec::new();
    let created = match t
        .client
        .create_logstore(&t.project, &t.logstore, opts.ttl_days, opts.shards)
        .await
    {
        Ok(()) => {
            done.push(format!(
                "logstore created ({} days, {} shards)",
                opts.ttl_days, opts.shards
            ));
            true
        }
        Err(e) if code(&e) == Some("LogStoreAlreadyExist") => {
            done.push("logstore exists (kept as it is)".to_owned());
            false
        }
        Err(e) => return Err(fail("CreateLogStore")(e)),
    };
    let mut settle = SETTLE.iter();
    // A create that meets an index made meanwhile (another setup, or a
    // retried POST whose first try landed) reads it again and updates.
    let mut rounds = 0;
    let findings = loop {
        rounds += 1;
        let existing = match t.client.get_index(&t.project, &t.logstore).await {
            Err(e) if created && code(&e) == Some("LogStoreNotExist") => match settle.next() {
                Some(pause) => {
                    tokio::time::sleep(*pause).await;
                    continue;
                }
                None => return Err(fail("GetIndex")(e)),
            },
            other => other.map_err(fail("GetIndex"))?,
        };
        let (plan, findings) = plan_index(existing.as_ref(), &t.index);
        let (index, create, line) = match plan {
            IndexPlan::Create(index) => {
                let line = format!("index created ({} fields + full text)", keys_of(&index));
                (index, true, line)
            }
            IndexPlan::Update { merged, added } => {
                let line = format!(
                    "index updated: added {} fields ({})",
                    added.len(),
                    some(&added)
                );
                (merged, false, line)
            }
            IndexPlan::UpToDate => {
                let n = existing.as_ref().map_or(0, keys_of);
                done.push(format!("index up to date ({n} fields)"));
                break findings;
            }
        };
        match t
            .client
            .put_index(&t.project, &t.logstore, &index, create)
            .await
        {
            Ok(()) => {
                done.push(line);
                break findings;
            }
            Err(e) if create && rounds < 3 && code(&e) == Some("IndexAlreadyExist") => continue,
            Err(e) => return Err(fail(if create { "CreateIndex" } else { "UpdateIndex" })(e)),
        }
    };
    for m in &findings.mismatched {
        done.push(format!(
            "warning: `{}` is indexed as {}, Trail needs {}; left as it is",
            m.key, m.have, m.want
        ));
    }
    if findings.no_full_text {
        done.push(
            "the index has no full-text part: left so (the raw `event` is searched through it)"
                .to_owned(),
        );
    }
    let (mut made, mut updated, mut same) = (Vec::new(), Vec::new(), 0);
    for s in &t.searches {
        let name = s["savedsearchName"].as_str().unwrap_or_default();
        match t
            .client
            .get_saved_search(&t.project, name)
            .await
            .map_err(fail("GetSavedSearch"))?
        {
            Some(have) if same_search(&have, s) => same += 1,
            have => {
                t.client
                    .put_saved_search(&t.project, s)
                    .await
                    .map_err(fail("saved search"))?;
                match have {
                    None => made.push(name.to_owned()),
                    Some(_) => updated.push(name.to_owned()),
                }
            }
        }
    }
    if !made.is_empty() {
        done.push(format!("saved searches created: {}", made.join(", ")));
    }
    if !updated.is_empty() {
        done.push(format!(
            "saved searches updated (their query differed): {}",
            updated.join(", ")
        ));
    }
    if same > 0 {
        done.push(format!("saved searches up to date: {same}"));
    }
    Ok(done)
}

/// A saved search as Trail makes it: query and logstore (SLS may add fields).
fn same_search(have: &Value, want: &Value) -> bool {
    have["searchQuery"] == want["searchQuery"] && have["logstore"] == want["logstore"]
}

/// What `t` lacks that setup would add (index fields, saved searches), and
/// fields indexed otherwise than Trail needs; empty when it is ready.
pub async fn check(t: &Target) -> Vec<String> {
    let setup = "run `trail-node setup --config …`";
    let existing = match t.client.get_index(&t.project, &t.logstore).await {
        Ok(x) => x,
        Err(e) if code(&e) == Some("LogStoreNotExist") => {
            return vec![format!("the logstore does not exist; {setup}")]
        }
        Err(e) => return vec![format!("could not read its index ({e}); not checked")],
    };
    let (plan, findings) = plan_index(existing.as_ref(), &t.index);
    let mut warnings = match plan {
        IndexPlan::Create(_) => vec![format!(
            "the logstore has no index: nothing Trail writes can be searched or queried; {setup}"
        )],
        IndexPlan::Update { added, .. } => vec![format!(
            "the index lacks {} fields Trail writes ({}); {setup}",
            added.len(),
            some(&added)
        )],
        IndexPlan::UpToDate => Vec::new(),
    };
    warnings.extend(findings.mismatched.into_iter().map(|m| {
        format!(
            "`{}` is indexed as {}, Trail needs {}: queries on it may fail",
            m.key, m.have, m.want
        )
    }));
    let (mut missing, mut differ) = (Vec::new(), Vec::new());
    for s in &t.searches {
        let name = s["savedsearchName"].as_str().unwrap_or_default();
        match t.client.get_saved_search(&t.project, name).await {
            Ok(Some(have)) if same_search(&have, s) => {}
            Ok(Some(_)) => differ.push(name.to_owned()),
            Ok(None) => missing.push(name.to_owned()),
            Err(e) => {
                warnings.push(format!("could not read saved search {name} ({e})"));
                break;
            }
        }
    }
    if !missing.is_empty() {
        warnings.push(format!(
            "saved searches missing: {}; {setup}",
            missing.join(", ")
        ));
    }
    if !differ.is_empty() {
        warnings.push(format!(
            "saved searches differ from what Trail makes: {}; {setup} to replace them",
            differ.join(", ")
        ));
    }
    warnings
}
