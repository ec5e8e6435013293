//! An S3 trail read by listing (`type = "s3"`, no SQS): each (account,
//! region) prefix — `AWSLogs/[{org}/]{account}/CloudTrail/{region}/` — is a
//! *partition*, consumed like a shard: one owner per epoch (assigned through
//! raft in a cluster), an ordered hand-off to the sinks, a checkpoint that
//! moves only past objects every sink acknowledged.
//!
//! A partition's keys sort by time: `{yyyy}/{mm}/{dd}/{account}_CloudTrail_
//! {region}_{yyyymmddThhmmZ}_{unique}.json.gz`. The owner lists after the
//! last key it handed on (`start-after`, so a new day is found by the same
//! listing), reads each object (gzip'd `{"Records":[…]}`) and hands it on as
//! one batch. A file that lands late — its key sorting before keys already
//! read — is found by a re-list of the last `relist_window` of keys every
//! `relist_every`: the cursor carries a digest of every key read inside
//! that window, so a re-list reads only what it has not read.
//!
//! The cursor (the checkpoint's text) is JSON: `{"after": key, "seen":
//! [[digest, key time], …]}`. An empty cursor is a partition never read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::aws::s3::{ListObjects, S3Client};
use crate::aws::AwsError;
use crate::sls::{Cursor, CursorPosition};

/// The first shard number of partitions. SLS numbers its shards from 0 and
/// never near 2³¹, so the two never meet: a node's consumers, stats and
/// metrics stay keyed by one number, whatever the sources.
pub const PARTITION_BASE: u32 = 1 << 31;

/// How an S3 trail is listed and read (`[[sources]] type = "s3"`).
#[derive(Debug, Clone)]
pub struct ListingSettings {
    /// The source's name: the partitions' "logstore".
    pub name: String,
    pub bucket: String,
    /// Where the trail's `AWSLogs/` is: `AWSLogs/`, or `{trail prefix}/AWSLogs/`.
    pub root: String,
    /// Where a partition never read starts.
    pub start: CursorPosition,
    /// Keys this far behind the newest read are listed again for late files.
    pub relist_window: Duration,
    pub relist_every: Duration,
    /// How often an idle partition is listed.
    pub poll: Duration,
    /// Partitions are looked for this often.
    pub discover_every: Duration,
    pub max_object_bytes: usize,
    pub max_envelope_bytes: usize,
    pub event_key: Bytes,
}

/// One S3 trail: its client, settings and the partitions last found.
pub struct S3Listing {
    pub s3: S3Client,
    pub settings: ListingSettings,
    found: Mutex<Found>,
}

#[derive(Default)]
struct Found {
    partitions: Option<Vec<String>>,
    at: Option<Instant>,
    running: bool,
}

impl S3Listing {
    pub fn new(s3: S3Client, settings: ListingSettings) -> S3Listing {
        S3Listing {
            s3,
            settings,
            found: Mutex::default(),
        }
    }

    /// The project partitions are recorded under: `s3://{bucket}`.
    pub fn project(&self) -> String {
        format!("s3://{}", self.settings.bucket)
    }

    /// Every partition under the root: accounts (and the accounts of an
    /// organization trail's `o-…` folder), then each account's regions.
    pub async fn discover(&self) -> Result<Vec<String>, AwsError> {
        let mut accounts = Vec::new();
        for p in self.prefixes(&self.settings.root).await? {
            let name = p[self.settings.root.len()..].trim_end_matches('/');
            if name.starts_with("o-") {
                accounts.extend(self.prefixes(&p).await?);
            } else {
                accounts.push(p);
            }
        }
        let mut partitions = Vec::new();
        for a in accounts {
            partitions.extend(self.prefixes(&format!("{a}CloudTrail/")).await?);
        }
        partitions.sort();
        Ok(partitions)
    }

    /// The common prefixes one level below `prefix`, every page.
    async fn prefixes(&self, prefix: &str) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .s3
                .list_objects(
                    &self.settings.bucket,
                    &ListObjects {
                        delimiter: Some("/"),
                        token: token.as_deref(),
                        ..ListObjects::under(prefix)
                    },
                )
                .await?;
            out.extend(page.prefixes);
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// The partitions last found, for the leader's shard discovery, which
    /// must not wait on S3 (it also watches for dead nodes): a listing runs
    /// in the background when the last is older than `discover_every`; an
    /// error until the first one finished.
    pub fn partitions(self: &Arc<Self>) -> Result<Vec<String>, String> {
        let mut f = self.found.lock();
        let stale =
            f.at.is_none_or(|t| t.elapsed() >= self.settings.discover_every);
        if stale && !f.running {
            f.running = true;
            let me = self.clone();
            tokio::spawn(async move {
                let r = me.discover().await;
                let mut f = me.found.lock();
                f.running = false;
                f.at = Some(Instant::now());
                match r {
                    Ok(p) => f.partitions = Some(p),
                    Err(e) => {
                        tracing::warn!(source = %me.settings.name, bucket = %me.settings.bucket, error = %e, "listing the trail's partitions failed");
                        // Retried at the next call.
                        f.at = None;
                    }
                }
            });
        }
        f.partitions.clone().ok_or_else(|| {
            format!(
                "{}: the first listing of partitions is under way",
                self.settings.name
            )
        })
    }

    /// Where a partition never read starts: before its first key (`begin`),
    /// or before the keys of the minute `start` names (`end`: now).
    pub fn start_cursor(&self, partition: &str) -> Cursor {
        let after = match self.settings.start {
            CursorPosition::Begin => partition.to_owned(),
            CursorPosition::End => {
                key_at(partition, crate::clock::unix_secs()).unwrap_or_else(|| partition.to_owned())
            }
            CursorPosition::Time(t) => {
                key_at(partition, u64::from(t)).unwrap_or_else(|| partition.to_owned())
            }
        };
        Cursor::new(
            PartitionCursor {
                after,
                seen: Vec::new(),
            }
            .render(),
        )
    }
}

/// A partition's position: every key up to `after` was handed on, and the
/// keys read inside the re-list window (`[digest, key time]`), so a re-list
/// tells a late file from one already read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCursor {
    pub after: String,
    #[serde(default)]
    pub seen: Vec<(String, u64)>,
}

impl PartitionCursor {
    pub fn parse(cursor: &str, partition: &str) -> Result<PartitionCursor, String> {
        if cursor.is_empty() {
            return Ok(PartitionCursor {
                after: partition.to_owned(),
                seen: Vec::new(),
            });
        }
        let c: PartitionCursor = serde_json::from_str(cursor)
            .map_err(|e| format!("partition cursor {cursor:?}: {e}"))?;
        if !c.after.starts_with(partition) {
            return Err(format!(
                "partition cursor {:?} is not inside {partition:?}",
                c.after
            ));
        }
        Ok(c)
    }

    pub fn render(&self) -> String {
        serde_json::to_string(self).expect("a cursor serializes")
    }

    #[cfg(test)]
    fn has_seen(&self, digest: &str) -> bool {
        self.seen.iter().any(|(d, _)| d == digest)
    }

    /// Records `key` as handed on; keys older than `window` behind the
    /// newest are forgotten (a re-list no longer looks there).
    pub fn read(&mut self, key: &str, window: Duration) {
        if key > self.after.as_str() {
            self.after = key.to_owned();
        }
        if let Some(t) = key_time(key) {
            self.seen.push((digest(key), t));
        }
        let newest = self.seen.iter().map(|(_, t)| *t).max().unwrap_or(0);
        let keep_from = newest.saturating_sub(window.as_secs());
        self.seen.retain(|(_, t)| *t >= keep_from);
    }

    /// The time of the oldest key a re-list looks at.
    pub fn window_start(&self, window: Duration) -> Option<u64> {
        let newest = key_time(&self.after)?;
        Some(newest.saturating_sub(window.as_secs()))
    }
}

/// A key's digest in the cursor (FNV-1a, 64 bits, hex): stable across
/// versions and hosts, 16 characters whatever the key's length.
pub fn digest(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The unix time in a CloudTrail file name: `…_{yyyymmddThhmmZ}_{unique}.json.gz`.
pub fn key_time(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    let stamp = name
        .split('_')
        .find(|p| p.len() == 14 && p.as_bytes()[8] == b'T' && p.ends_with('Z'))?;
    let iso = format!(
        "{}-{}-{}T{}:{}:00Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13]
    );
    crate::event::parse_event_time(&iso).map(|t| t as u64)
}

/// The position before a partition's keys of the minute of `t`: keys sort
/// by day folder, then by the stamp in the name.
pub fn key_at(partition: &str, t: u64) -> Option<String> {
    // .../{account}/CloudTrail/{region}/
    let mut parts = partition.trim_end_matches('/').rsplit('/');
    let region = parts.next()?;
    if parts.next()? != "CloudTrail" {
        return None;
    }
    let account = parts.next()?;
    let (y, m, d, hh, mm) = civil(t);
    Some(format!(
        "{partition}{y:04}/{m:02}/{d:02}/{account}_CloudTrail_{region}_{y:04}{m:02}{d:02}T{hh:02}{mm:02}Z"
    ))
}

/// Unix seconds → (year, month, day, hour, minute), UTC (Hinnant's algorithm).
fn civil(t: u64) -> (i64, u32, u32, u32, u32) {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, (secs / 3600) as u32, (secs % 3600 / 60) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "AWSLogs/111122223333/CloudTrail/eu-west-1/";

    fn key(stamp: &str, unique: &str) -> String {
        format!(
            "{P}{}/{}/{}/111122223333_CloudTrail_eu-west-1_{stamp}_{unique}.json.gz",
            &stamp[0..4],
            &stamp[4..6],
            &stamp[6..8]
        )
    }

    #[test]
    fn key_times_and_positions_sort_with_the_keys() {
        let k = key("20261204T0405Z", "ABC");
        let t = key_time(&k).unwrap();
        assert_eq!(t, 1_796_357_100);
        assert_eq!(civil(t), (2026, 12, 4, 4, 5));
        let at = key_at(P, t).unwrap();
        assert!(at < k, "{at} sorts before the keys of its minute");
        assert!(key_at(P, t - 60).unwrap() < at);
        assert!(key("20261204T0404Z", "ZZZ") < at);
        assert!(key("20261204T0406Z", "AAA") > k);
        // A new day sorts after the last key of the day before.
        assert!(key("20261205T0000Z", "A") > key("20261204T2355Z", "Z"));
        assert_eq!(
            key_time("AWSLogs/x/CloudTrail-Digest/whatever.json.gz"),
            None
        );
        assert_eq!(key_at("custom/prefix/", t), None);
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0));
    }

    #[test]
    fn cursors_round_trip_and_keep_only_the_window() {
        let mut c = PartitionCursor::parse("", P).unwrap();
        assert_eq!(c.after, P);
        let window = Duration::from_secs(3600);
        c.read(&key("20261204T0000Z", "A"), window);
        c.read(&key("20261204T0030Z", "B"), window);
        c.read(&key("20261204T0115Z", "C"), window);
        assert_eq!(c.after, key("20261204T0115Z", "C"));
        assert_eq!(c.seen.len(), 2, "00:00 is more than an hour behind 01:15");
        // A late key inside the window is remembered; `after` stays.
        c.read(&key("20261204T0031Z", "L"), window);
        assert_eq!(c.after, key("20261204T0115Z", "C"));
        assert!(c.has_seen(&digest(&key("20261204T0031Z", "L"))));
        let back = PartitionCursor::parse(&c.render(), P).unwrap();
        assert_eq!(back, c);
        assert!(PartitionCursor::parse("{not json", P).is_err());
        assert!(PartitionCursor::parse(&c.render(), "AWSLogs/999/CloudTrail/x/").is_err());
    }
}
