//! `[[sinks]] type = "hec"`.

use std::time::Duration;

use std::fmt;

use serde::de::{self, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use url::Url;

use crate::record::{business_field_index, BUSINESS_FIELDS};
use crate::secret::SecretSource;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HecSinkConfig {
    /// `https://splunk.example.com:8088` or the full collector URL.
    pub url: String,
    pub token: SecretSource,
    #[serde(default = "yes")]
    pub gzip: bool,
    pub index: Option<String>,
    /// Default: the logstore the events came from.
    pub source: Option<String>,
    /// Default: `alibaba:actiontrail` or `aws:cloudtrail` by the event's trail.
    pub sourcetype: Option<String>,
    /// Default: the node id.
    pub host: Option<String>,
    /// Uncompressed bytes per request.
    #[serde(default = "default_batch_bytes")]
    pub batch_max_bytes: usize,
    #[serde(default = "default_batch_events")]
    pub batch_max_events: usize,
    #[serde(default = "default_flush_ms")]
    pub flush_interval_ms: u64,
    /// Requests in flight at once. Each shard always uses the same lane, so
    /// its events stay in order.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    #[serde(default)]
    pub indexer_ack: bool,
    #[serde(default = "default_ack_poll_ms")]
    pub ack_poll_interval_ms: u64,
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_secs: u64,
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Prefix of tag fields.
    pub tag_prefix: Option<String>,
    /// Write Splunk CIM fields (Change, Authentication) for ActionTrail
    /// events as indexed fields.
    #[serde(default = "yes")]
    pub cim: bool,
    /// Extra event-name → CIM `action` rows, matched before the built-in
    /// table: `[{ match = "Purchase*", action = "created" }]`.
    #[serde(default)]
    pub cim_actions: Vec<super::cim::ActionRule>,
    /// Which business fields go into the envelope's indexed `fields`:
    /// `"tstats"` (default), `"all"`, or a list of names. `shard`, `epoch`,
    /// CIM fields and tags are always written.
    #[serde(default)]
    pub indexed_fields: IndexedFields,
}

/// The business fields a HEC sink indexes (`indexed_fields`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IndexedFields {
    /// What Splunk users group by with `tstats` ([`IndexedFields::TSTATS`]);
    /// `logstore` too when `source` is configured (otherwise `source` is
    /// the logstore already).
    #[default]
    Tstats,
    /// Every business field, copies of the raw event's values included.
    All,
    /// These, in this order.
    List(Vec<String>),
}

impl IndexedFields {
    /// The `tstats` selection: no field whose value is only a copy of a
    /// raw-event value nobody groups by (`eventId`, `eventTime` — the
    /// envelope's `time` —, `requestId`, `eventSource`, ...).
    pub const TSTATS: &'static [&'static str] = &[
        "eventName",
        "eventRW",
        "eventRW_inferred",
        "accountId",
        "userName",
        "errorCode",
        "resources",
        "tag_status",
        "cursor",
    ];

    /// (index in `BUSINESS_FIELDS`, name) of every selected field.
    pub fn selected(&self, source_configured: bool) -> Vec<(usize, &'static str)> {
        let names: Vec<&str> = match self {
            IndexedFields::Tstats => {
                let mut v = Self::TSTATS.to_vec();
                if source_configured {
                    v.push("logstore");
                }
                v
            }
            IndexedFields::All => BUSINESS_FIELDS.to_vec(),
            IndexedFields::List(names) => names.iter().map(String::as_str).collect(),
        };
        let mut out: Vec<(usize, &'static str)> = Vec::with_capacity(names.len());
        for name in names {
            // Names are checked when read; an unknown one cannot get here.
            if let Some(i) = business_field_index(name) {
                if !out.iter().any(|(j, _)| *j == i) {
                    out.push((i, BUSINESS_FIELDS[i]));
                }
            }
        }
        out
    }
}

impl<'de> Deserialize<'de> for IndexedFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IndexedFields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"tstats\", \"all\" or a list of business field names")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "tstats" => Ok(IndexedFields::Tstats),
                    "all" => Ok(IndexedFields::All),
                    other => Err(E::invalid_value(Unexpected::Str(other), &self)),
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    if business_field_index(&name).is_none() {
                        return Err(de::Error::custom(format!(
                            "unknown business field {name:?} (known: {})",
                            BUSINESS_FIELDS.join(", ")
                        )));
                    }
                    names.push(name);
                }
                Ok(IndexedFields::List(names))
            }
        }
        d.deserialize_any(V)
    }
}

fn yes() -> bool {
    true
}
fn default_batch_bytes() -> usize {
    1_000_000
}
fn default_batch_events() -> usize {
    10_000
}
fn default_flush_ms() -> u64 {
    500
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> u64 {
    30
}
fn default_ack_poll_ms() -> u64 {
    1000
}
fn default_ack_timeout() -> u64 {
    300
}
fn default_retry_initial_ms() -> u64 {
    200
}
fn default_retry_max_ms() -> u64 {
    30_000
}

impl HecSinkConfig {
    /// The event endpoint: a bare base URL gets `/services/collector/event`.
    pub fn event_url(&self) -> Result<Url, String> {
        let mut u = Url::parse(&self.url).map_err(|e| format!("url {:?}: {e}", self.url))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("url {:?}: scheme must be http or https", self.url));
        }
        let path = u.path().trim_end_matches('/').to_owned();
        // A base URL, or the bare collector path: the event endpoint.
        if path.is_empty() || path == "/services/collector" {
            u.set_path("/services/collector/event");
        }
        Ok(u)
    }

    /// The indexer acknowledgement endpoint next to the event endpoint.
    pub fn ack_url(&self) -> Result<Url, String> {
        let mut u = self.event_url()?;
        u.set_path("/services/collector/ack");
        u.set_query(None);
        Ok(u)
    }

    pub fn retry_initial(&self) -> Duration {
        Duration::from_millis(self.retry_initial_ms)
    }

    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.event_url()?;
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if self.batch_max_bytes < 1024 {
            return Err("batch_max_bytes must be at least 1024".into());
        }
        if self.batch_max_events == 0 {
            return Err("batch_max_events must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> HecSinkConfig {
        toml::from_str(&format!("url = {url:?}\ntoken = \"t\"")).unwrap()
    }

    #[test]
    fn base_and_full_urls_both_work() {
        for (given, event) in [
            (
                "https://splunk.example.com:8088",
                "https://splunk.example.com:8088/services/collector/event",
            ),
            (
                "https://splunk.example.com:8088/",
                "https://splunk.example.com:8088/services/collector/event",
            ),
            (
                "http://127.0.0.1:38088/services/collector",
                "http://127.0.0.1:38088/services/collector/event",
            ),
            (
                "http://h/services/collector/event/1.0",
                "http://h/services/collector/event/1.0",
            ),
        ] {
            assert_eq!(cfg(given).event_url().unwrap().as_str(), event);
        }
        assert_eq!(
            cfg("http://h:1").ack_url().unwrap().as_str(),
            "http://h:1/services/collector/ack"
        );
        assert!(cfg("ftp://h").validate().is_err());
    }

    fn indexed(toml_value: &str) -> Result<IndexedFields, String> {
        toml::from_str::<HecSinkConfig>(&format!(
            "url = \"http://h\"\ntoken = \"t\"\nindexed_fields = {toml_value}"
        ))
        .map(|c| c.indexed_fields)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn indexed_fields_are_a_preset_or_a_list_of_known_names() {
        assert_eq!(cfg("http://h").indexed_fields, IndexedFields::Tstats);
        assert_eq!(indexed("\"all\"").unwrap(), IndexedFields::All);
        assert_eq!(
            indexed("[\"eventName\", \"acsRegion\"]").unwrap(),
            IndexedFields::List(vec!["eventName".into(), "acsRegion".into()])
        );
        let e = indexed("[\"eventName\", \"region\"]").unwrap_err();
        assert!(
            e.contains("indexed_fields") && e.contains("\"region\""),
            "{e}"
        );
        let e = indexed("\"slim\"").unwrap_err();
        assert!(e.contains("indexed_fields") && e.contains("tstats"), "{e}");
        assert!(indexed("3").is_err());
    }

    #[test]
    fn the_tstats_selection_names_logstore_only_when_source_hides_it() {
        let names = |source| -> Vec<&str> {
            IndexedFields::Tstats
                .selected(source)
                .into_iter()
                .map(|(_, n)| n)
                .collect()
        };
        assert_eq!(names(false), IndexedFields::TSTATS);
        assert_eq!(names(true).last(), Some(&"logstore"));
        assert_eq!(
            IndexedFields::All.selected(false).len(),
            BUSINESS_FIELDS.len()
        );
        let listed = IndexedFields::List(vec!["userName".into(), "userName".into()]);
        assert_eq!(listed.selected(false), vec![(14, "userName")]);
        for (i, name) in IndexedFields::All.selected(true) {
            assert_eq!(BUSINESS_FIELDS[i], name);
        }
    }
}
