//! `[[sinks]] type = "hec"`.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

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
}
