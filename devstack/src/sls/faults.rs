//! Fault injection and request counters, for tests and benchmarks.
//!
//! Faults are set by flags at start and changed at run time with
//! `PUT /_devstack/faults` (JSON, same field names); `GET /_devstack/stats`
//! returns what was served and what was injected.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::sls::error::ApiError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Every Nth API request answers a 5xx (0: off).
    #[arg(long = "fault-5xx-every", default_value_t = 0)]
    pub error_every: u64,
    /// A random fraction of API requests answers a 5xx (0.0: off).
    #[arg(long = "fault-5xx-rate", default_value_t = 0.0)]
    pub error_rate: f64,
    /// The 5xx status to answer: 500 (InternalServerError), 503 (ServerBusy), or 0 to alternate.
    #[arg(long = "fault-5xx-status", default_value_t = 0)]
    pub error_status: u16,
    /// Every Nth PullLogs answers 403 ShardReadQuotaExceed (0: off).
    #[arg(long = "fault-read-quota-every", default_value_t = 0)]
    pub read_quota_every: u64,
    /// Every Nth PutLogs answers 403 ShardWriteQuotaExceed (0: off).
    #[arg(long = "fault-write-quota-every", default_value_t = 0)]
    pub write_quota_every: u64,
    /// Per-shard read cap in raw bytes per second; above it PullLogs answers
    /// 403 ShardReadQuotaExceed, as SLS does (0: no cap).
    #[arg(long = "read-cap-bytes-per-sec", default_value_t = 0)]
    pub read_cap_bytes_per_sec: u64,
}

/// The live fault settings and their counters.
#[derive(Debug, Default)]
pub struct Faults {
    config: RwLock<FaultConfig>,
    api_requests: AtomicU64,
    errors_injected: AtomicU64,
    pulls: AtomicU64,
    puts: AtomicU64,
    read_windows: Mutex<HashMap<String, (Instant, u64)>>,
    injected: Mutex<BTreeMap<String, u64>>,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Faults {
            config: RwLock::new(config),
            ..Default::default()
        }
    }

    pub fn config(&self) -> FaultConfig {
        self.config.read().clone()
    }

    pub fn set(&self, config: FaultConfig) {
        *self.config.write() = config;
    }

    fn count(&self, code: &str) {
        *self.injected.lock().entry(code.to_owned()).or_default() += 1;
    }

    pub fn injected(&self) -> BTreeMap<String, u64> {
        self.injected.lock().clone()
    }

    /// Before any SLS API request.
    pub fn before_api(&self) -> Result<(), ApiError> {
        let c = self.config.read();
        let n = self.api_requests.fetch_add(1, Ordering::Relaxed) + 1;
        let hit = (c.error_every > 0 && n.is_multiple_of(c.error_every))
            || (c.error_rate > 0.0 && fastrand::f64() < c.error_rate);
        if !hit {
            return Ok(());
        }
        let k = self.errors_injected.fetch_add(1, Ordering::Relaxed);
        let status = match c.error_status {
            0 if k.is_multiple_of(2) => 500,
            0 => 503,
            s => s,
        };
        let err = if status == 503 {
            ApiError::new(
                503,
                "ServerBusy",
                "injected by devstack: the server is busy",
            )
        } else {
            ApiError::new(
                status,
                "InternalServerError",
                "injected by devstack: internal error",
            )
        };
        drop(c);
        self.count(err.code);
        Err(err)
    }

    /// Before a PullLogs of `shard_key`.
    pub fn before_pull(&self, shard_key: &str) -> Result<(), ApiError> {
        let c = self.config.read();
        let n = self.pulls.fetch_add(1, Ordering::Relaxed) + 1;
        let quota = ApiError::new(403, "ShardReadQuotaExceed", "shard read quota exceeded");
        if c.read_quota_every > 0 && n.is_multiple_of(c.read_quota_every) {
            drop(c);
            self.count("ShardReadQuotaExceed");
            return Err(quota);
        }
        if c.read_cap_bytes_per_sec > 0 {
            let windows = self.read_windows.lock();
            if let Some((start, used)) = windows.get(shard_key) {
                if start.elapsed() < Duration::from_secs(1) && *used >= c.read_cap_bytes_per_sec {
                    drop(windows);
                    drop(c);
                    self.count("ShardReadQuotaExceed(cap)");
                    return Err(quota);
                }
            }
        }
        Ok(())
    }

    /// After a PullLogs returned `bytes` raw bytes of `shard_key`.
    pub fn charge_read(&self, shard_key: &str, bytes: u64) {
        if self.config.read().read_cap_bytes_per_sec == 0 {
            return;
        }
        let mut windows = self.read_windows.lock();
        let w = windows
            .entry(shard_key.to_owned())
            .or_insert((Instant::now(), 0));
        if w.0.elapsed() >= Duration::from_secs(1) {
            *w = (Instant::now(), 0);
        }
        w.1 += bytes;
    }

    /// Before a PutLogs.
    pub fn before_put(&self) -> Result<(), ApiError> {
        let every = self.config.read().write_quota_every;
        let n = self.puts.fetch_add(1, Ordering::Relaxed) + 1;
        if every > 0 && n.is_multiple_of(every) {
            self.count("ShardWriteQuotaExceed");
            return Err(ApiError::new(
                403,
                "ShardWriteQuotaExceed",
                "shard write quota exceeded",
            ));
        }
        Ok(())
    }
}

/// Requests served, by API and by answer.
#[derive(Debug, Default)]
pub struct Stats {
    by_api: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Stats {
    pub fn record(&self, api: &'static str, outcome: &str) {
        *self
            .by_api
            .lock()
            .entry((api, outcome.to_owned()))
            .or_default() += 1;
    }

    pub fn json(&self) -> serde_json::Value {
        let mut out: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
        for ((api, outcome), n) in self.by_api.lock().iter() {
            out.entry(api).or_default().insert(outcome.clone(), *n);
        }
        serde_json::to_value(out).expect("maps serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_request_fails_and_alternates_500_503() {
        let f = Faults::new(FaultConfig {
            error_every: 2,
            ..Default::default()
        });
        let answers: Vec<Option<u16>> = (0..6)
            .map(|_| f.before_api().err().map(|e| e.status))
            .collect();
        assert_eq!(
            answers,
            vec![None, Some(500), None, Some(503), None, Some(500)]
        );
        assert_eq!(f.injected()["InternalServerError"], 2);
        assert_eq!(f.injected()["ServerBusy"], 1);
    }

    #[test]
    fn read_cap_refuses_within_the_window() {
        let f = Faults::new(FaultConfig {
            read_cap_bytes_per_sec: 100,
            ..Default::default()
        });
        assert!(f.before_pull("s").is_ok());
        f.charge_read("s", 150);
        assert_eq!(f.before_pull("s").unwrap_err().code, "ShardReadQuotaExceed");
        assert!(f.before_pull("other").is_ok(), "caps are per shard");
    }
}
