//! Delivering parts to HEC: chunking under the request limits, retries, the
//! partial-resend rule, dead letters, and indexer acknowledgement.
//!
//! * Events go out in order, in chunks of at most `batch_max_bytes` /
//!   `batch_max_events` (uncompressed), gzip on by default.
//! * 408, 429, 5xx (not 501) and transport errors: the same chunk again after
//!   a jittered, growing pause (`Retry-After` honoured). Never dropped.
//! * 400 with `invalid-event-number` N: events before N are delivered, event N
//!   goes to the dead-letter sink with Splunk's reason, the rest is resent.
//! * 401/403: the sink stops sending (status and metrics say why) and keeps
//!   the chunk; it probes again every `retry_max`. The checkpoint holds.
//! * 413: the chunk is halved; a single event too large is dead-lettered.
//! * With `indexer_ack`, a chunk counts as delivered only once its ack id
//!   polls true; after `ack_timeout` it is sent again (duplicates possible,
//!   loss not).
//! * One [`Channel`] per lane, not one per sink: Splunk's ack ids belong to
//!   the indexer and channel that took the request, and the load balancers
//!   in front of HEC tiers (Splunk Cloud, most on-prem) route by cookie. A
//!   channel keeps the cookies its responses set and sends them with its
//!   later requests and ack polls, so a lane's polls reach the indexer that
//!   holds its ids — an ack polled at another indexer is `false` forever,
//!   and every request would be sent again after `ack_timeout`.
//!
//! A part is acknowledged to its shard once all of its events are settled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Recipient;
use bytes::Bytes;
use serde_json::json;
use url::Url;

use crate::fence::Fence;
use crate::net::http::{client_builder, read_body};
use crate::record::EventSlab;
use crate::record::{DeadLetter, Provenance};
use crate::secret::Secret;
use crate::sink::dead_letter::DeadLetters;
use crate::sink::hec::config::HecSinkConfig;
use crate::sink::hec::retry::{classify, Action};
use crate::sink::{Ack, Deliver, SinkStats};

/// The largest HEC answer to an event post read: HEC says `{"text":…,"code":…}`.
const MAX_HEC_ANSWER: usize = 64 * 1024;
/// The largest ack-poll answer read: one boolean per id asked.
const MAX_ACK_ANSWER: usize = 1024 * 1024;

/// A HEC channel: its id and the cookies its responses set (a load
/// balancer's stickiness), sent with its every later request.
pub struct Channel {
    pub id: String,
    cookies: parking_lot::Mutex<Vec<(String, String)>>,
}

impl Channel {
    fn new() -> Self {
        Channel {
            id: random_guid(),
            cookies: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// The `Cookie` header value, if any cookie is set.
    fn cookie_header(&self) -> Option<String> {
        let c = self.cookies.lock();
        (!c.is_empty()).then(|| {
            c.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Takes the `Set-Cookie` headers of a response: `name=value` kept,
    /// replaced by name; `Max-Age=0` (or a value-less cookie) removes it.
    /// Attributes (path, domain, expiry dates) are not interpreted: the
    /// channel talks to one URL, and a sticky cookie lives as long as the
    /// channel does here.
    fn absorb(&self, headers: &reqwest::header::HeaderMap) {
        let mut c = self.cookies.lock();
        for h in headers.get_all(reqwest::header::SET_COOKIE) {
            let Ok(h) = h.to_str() else { continue };
            let mut attrs = h.split(';');
            let Some((name, value)) = attrs.next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim().trim_matches('"'));
            if name.is_empty() {
                continue;
            }
            let expired = attrs.any(|a| {
                a.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("max-age") && v.trim().starts_with(['0', '-'])
                })
            });
            c.retain(|(k, _)| k != name);
            if !expired && !value.is_empty() && c.len() < 32 {
                c.push((name.to_owned(), value.to_owned()));
            }
        }
    }
}

pub struct HecService {
    http: reqwest::Client,
    event_url: Url,
    ack_url: Url,
    token: Secret,
    /// One per lane.
    channels: Vec<Channel>,
    cfg: Arc<HecSinkConfig>,
    pub(crate) stats: Arc<SinkStats>,
    dead_letters: Recipient<DeadLetters>,
    /// The node's fence (self-fencing); each part also carries its shard's.
    fence: Fence,
}

/// How a chunk ended.
enum Settled {
    Delivered,
    /// The fence was lost: nothing more is written for these parts.
    Fenced,
    Partial {
        at: usize,
        reason: String,
    },
    DeadLetterAll {
        reason: String,
    },
    Split,
}

struct Part {
    provenance: Arc<Provenance>,
    events: EventSlab,
    ack: Option<Ack>,
    fence: Fence,
}

impl HecService {
    pub fn new(
        cfg: Arc<HecSinkConfig>,
        token: Secret,
        stats: Arc<SinkStats>,
        dead_letters: Recipient<DeadLetters>,
        fence: Fence,
    ) -> Result<Self, String> {
        let http = client_builder(
            Duration::from_secs(10),
            Duration::from_secs(cfg.request_timeout_secs),
        )
        .build()
        .map_err(|e| e.to_string())?;
        Ok(HecService {
            http,
            event_url: cfg.event_url()?,
            ack_url: cfg.ack_url()?,
            token,
            channels: (0..cfg.concurrency.max(1))
                .map(|_| Channel::new())
                .collect(),
            cfg,
            stats,
            dead_letters,
            fence,
        })
    }

    /// Delivers `parts` in order on lane `lane`'s channel and acknowledges
    /// each once settled.
    pub async fn deliver(&self, lane: usize, parts: Vec<Deliver>) {
        let channel = &self.channels[lane % self.channels.len()];
        let _queued = crate::sink::Queued(&self.stats.queued, parts.len() as u64);
        let mut parts: Vec<Part> = parts
            .into_iter()
            .map(|d| Part {
                provenance: d.provenance,
                events: d.events,
                ack: Some(d.ack),
                fence: d.fence,
            })
            .collect();
        // Every event as (part, index), in order.
        let mut order: Vec<(usize, usize)> = parts
            .iter()
            .enumerate()
            .flat_map(|(p, part)| (0..part.events.len()).map(move |i| (p, i)))
            .collect();
        let mut at = 0usize;
        let mut max_events = self.cfg.batch_max_events;
        let mut acked_upto = 0usize; // parts before this are acknowledged
        loop {
            // Parts whose events all went out are acknowledged first: a
            // fence lost after their last request must not give them up
            // (they are delivered; re-reading them would duplicate).
            Self::ack_settled(&mut parts, &order, at, &mut acked_upto);
            // Give up the parts whose shard's fence is lost (moved, epoch
            // ended, lease out): abandoned unsent, their events dropped from
            // what is left to send. The other shards' parts go on.
            let node_fenced = !self.fence.holds();
            let lost: Vec<usize> = (acked_upto..parts.len())
                .filter(|&p| parts[p].ack.is_some() && (node_fenced || !parts[p].fence.holds()))
                .collect();
            if !lost.is_empty() {
                tracing::warn!(
                    parts = lost.len(),
                    "fence lost: abandoning parts unsent; their shard is re-read by its owner"
                );
                for &p in &lost {
                    if let Some(ack) = parts[p].ack.take() {
                        ack.abandon();
                    }
                }
                let rest: Vec<(usize, usize)> = order[at..]
                    .iter()
                    .filter(|(p, _)| !lost.contains(p))
                    .copied()
                    .collect();
                order.truncate(at);
                order.extend(rest);
            }
            // Acknowledge parts whose events are all settled.
            Self::ack_settled(&mut parts, &order, at, &mut acked_upto);
            if at >= order.len() {
                break;
            }
            // The next chunk: as many events as fit.
            let mut end = at;
            let mut bytes = 0usize;
            while end < order.len() && end - at < max_events {
                let (p, i) = order[end];
                let len = parts[p].events.range_len(i..i + 1) + 1;
                if end > at && bytes + len > self.cfg.batch_max_bytes {
                    break;
                }
                bytes += len;
                end += 1;
            }
            let chunk = &order[at..end];
            match self.send_until_settled(channel, &parts, chunk).await {
                // The top of the loop gives up the parts that lost it.
                Settled::Fenced => continue,
                Settled::Delivered => {
                    SinkStats::add(&self.stats.events, chunk.len() as u64);
                    SinkStats::add(&self.stats.bytes, bytes as u64);
                    at = end;
                    max_events = self.cfg.batch_max_events;
                }
                Settled::Partial { at: n, reason } => {
                    let n = n.min(chunk.len() - 1);
                    SinkStats::add(&self.stats.events, n as u64);
                    // The first n are delivered; the top of the loop gives
                    // up the rest if the dead letter lost the race.
                    at += n;
                    if self.dead_letter(&parts, &chunk[n..=n], &reason).await {
                        at += 1;
                    }
                }
                Settled::DeadLetterAll { reason } => {
                    if self.dead_letter(&parts, chunk, &reason).await {
                        at = end;
                    }
                }
                Settled::Split if chunk.len() == 1 => {
                    let written = self
                        .dead_letter(
                            &parts,
                            chunk,
                            "HEC 413: the event alone exceeds the request size limit",
                        )
                        .await;
                    if written {
                        at = end;
                    }
                }
                Settled::Split => max_events = (chunk.len() / 2).max(1),
            }
        }
        for p in &mut parts {
            if let Some(ack) = p.ack.take() {
                ack.done();
            }
        }
    }

    /// Acknowledges the parts before the one `order[at]` belongs to.
    fn ack_settled(
        parts: &mut [Part],
        order: &[(usize, usize)],
        at: usize,
        acked_upto: &mut usize,
    ) {
        let next_part = order.get(at).map_or(parts.len(), |(p, _)| *p);
        while *acked_upto < next_part {
            if let Some(ack) = parts[*acked_upto].ack.take() {
                ack.done();
            }
            *acked_upto += 1;
        }
    }

    /// Writes events to the dead-letter sink, retrying until it has them:
    /// their part must not be acknowledged before. False if a fence of
    /// their parts was lost first (the caller gives those parts up).
    async fn dead_letter(&self, parts: &[Part], events: &[(usize, usize)], reason: &str) -> bool {
        let letters: Vec<DeadLetter> = events
            .iter()
            .map(|&(p, i)| DeadLetter {
                reason: reason.to_owned(),
                kind: "hec_rejected",
                project: parts[p].provenance.project.clone(),
                logstore: parts[p].provenance.logstore.clone(),
                shard: parts[p].provenance.shard,
                cursor: String::new(),
                raw: parts[p].events.event(i),
            })
            .collect();
        let fences = chunk_fences(parts, events);
        let mut pause = self.cfg.retry_initial();
        loop {
            match self.dead_letters.send(DeadLetters(letters.clone())).await {
                Ok(Ok(())) => {
                    SinkStats::add(&self.stats.dead_lettered, letters.len() as u64);
                    return true;
                }
                Ok(Err(e)) => tracing::error!(error = %e, "dead-letter sink refused; retrying"),
                Err(e) => tracing::error!(error = %e, "dead-letter sink unreachable; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.fence.lost() => return false,
                _ = Fence::any_lost(fences.iter().copied()) => return false,
            }
            pause = (pause * 2).min(self.cfg.retry_max());
        }
    }

    /// The chunk's events as runs of their slabs (no copy): runs of one
    /// part are contiguous in its slab.
    fn runs(parts: &[Part], chunk: &[(usize, usize)]) -> Vec<Bytes> {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < chunk.len() {
            let (p, first) = chunk[i];
            let mut j = i;
            while j + 1 < chunk.len() && chunk[j + 1].0 == p {
                j += 1;
            }
            let last = chunk[j].1;
            runs.push(parts[p].events.range(first..last + 1));
            i = j + 1;
        }
        runs
    }

    async fn send_until_settled(
        &self,
        channel: &Channel,
        parts: &[Part],
        chunk: &[(usize, usize)],
    ) -> Settled {
        let runs = Self::runs(parts, chunk);
        let raw_len: usize = runs.iter().map(Bytes::len).sum();
        let body: Bytes = if self.cfg.gzip {
            // The runs go straight into the encoder, on a blocking thread.
            match tokio::task::spawn_blocking(move || gzip(&runs, raw_len)).await {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::error!(error = %e, "gzip task failed");
                    return Settled::DeadLetterAll {
                        reason: format!("could not compress the request: {e}"),
                    };
                }
            }
        } else if runs.len() == 1 {
            runs.into_iter().next().unwrap_or_default()
        } else {
            let mut body = Vec::with_capacity(raw_len);
            for r in &runs {
                body.extend_from_slice(r);
            }
            Bytes::from(body)
        };
        let fences = chunk_fences(parts, chunk);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            // Self-fencing: nothing is written for a part whose fence is lost.
            if !self.fence.holds() || fences.iter().any(|f| !f.holds()) {
                return Settled::Fenced;
            }
            self.stats.sent(chunk.len(), raw_len);
            let mut req = self
                .http
                .post(self.event_url.clone())
                .header("Authorization", format!("Splunk {}", self.token.expose()))
                .header("X-Splunk-Request-Channel", &channel.id)
                .header("Content-Type", "application/json")
                .body(body.clone());
            if self.cfg.gzip {
                req = req.header("Content-Encoding", "gzip");
            }
            if let Some(cookie) = channel.cookie_header() {
                req = req.header(reqwest::header::COOKIE, cookie);
            }
            let started = std::time::Instant::now();
            let sent = tokio::select! {
                r = req.send() => r,
                _ = Fence::any_lost(fences.iter().copied()) => return Settled::Fenced,
            };
            self.stats.latency.observe_duration(started.elapsed());
            let action = match sent {
                Ok(resp) => {
                    channel.absorb(resp.headers());
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    // Drain the body so the connection can be reused; HEC
                    // answers in bytes, so a larger body is not read (and
                    // is classified by its status alone).
                    let text = read_body(resp, MAX_HEC_ANSWER).await.unwrap_or_default();
                    classify(status, retry_after.as_deref(), &text)
                }
                Err(e) => Action::Retry {
                    reason: format!("transport: {e}"),
                    after: None,
                },
            };
            match action {
                Action::Delivered { ack_id } => {
                    self.stats
                        .stopped
                        .store(0, std::sync::atomic::Ordering::Relaxed);
                    match (self.cfg.indexer_ack, ack_id) {
                        (true, Some(id)) => {
                            if self.wait_for_ack(channel, id).await {
                                return Settled::Delivered;
                            }
                            SinkStats::add(&self.stats.retries, 1);
                            tracing::warn!(
                                ack_id = id,
                                "indexer acknowledgement timed out; sending again"
                            );
                        }
                        _ => return Settled::Delivered,
                    }
                }
                Action::Partial { at, code, text } => {
                    return Settled::Partial {
                        at,
                        reason: format!("HEC 400 code {code}: {text}"),
                    }
                }
                Action::DeadLetterAll { reason } => return Settled::DeadLetterAll { reason },
                Action::Split => return Settled::Split,
                Action::Retry { reason, after } => {
                    SinkStats::add(&self.stats.retries, 1);
                    SinkStats::add(&self.stats.errors, 1);
                    let pause = after.unwrap_or_else(|| self.backoff(attempt));
                    tracing::warn!(%reason, attempt, ?pause, "HEC request failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = Fence::any_lost(fences.iter().copied()) => return Settled::Fenced,
                    }
                }
                Action::Stop { reason } => {
                    SinkStats::add(&self.stats.errors, 1);
                    self.stats
                        .stopped
                        .store(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(%reason, "HEC refuses the token; holding the checkpoint and probing again");
                    tokio::select! {
                        _ = tokio::time::sleep(self.cfg.retry_max()) => {}
                        _ = Fence::any_lost(fences.iter().copied()) => return Settled::Fenced,
                    }
                }
            }
        }
    }

    /// Full jitter over an exponential ceiling.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        let ceiling = self
            .cfg
            .retry_initial()
            .saturating_mul(factor)
            .min(self.cfg.retry_max());
        ceiling
            .mul_f64(fastrand::f64())
            .max(Duration::from_millis(5))
    }

    /// Polls the ack id until it is true or `ack_timeout` passes.
    async fn wait_for_ack(&self, channel: &Channel, id: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(self.cfg.ack_timeout_secs);
        let every = Duration::from_millis(self.cfg.ack_poll_interval_ms);
        while Instant::now() < deadline {
            tokio::time::sleep(every).await;
            let mut req = self
                .http
                .post(self.ack_url.clone())
                .header("Authorization", format!("Splunk {}", self.token.expose()))
                .header("X-Splunk-Request-Channel", &channel.id)
                .header("Content-Type", "application/json")
                .body(json!({"acks": [id]}).to_string());
            if let Some(cookie) = channel.cookie_header() {
                req = req.header(reqwest::header::COOKIE, cookie);
            }
            let resp = req.send().await;
            if let Ok(r) = &resp {
                channel.absorb(r.headers());
            }
            let acked = match resp {
                Ok(r) if r.status().is_success() => read_body(r, MAX_ACK_ANSWER)
                    .await
                    .is_ok_and(|b| acked(&b, id)),
                // An error answer proves nothing: keep polling until the deadline.
                _ => false,
            };
            if acked {
                return true;
            }
        }
        false
    }
}

/// Whether an ack poll's answer (`{"acks":{"7":true}}`) says `id` is indexed.
fn acked(body: &[u8], id: u64) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["acks"][id.to_string()].as_bool())
        .unwrap_or(false)
}

/// Every decoder of a HEC answer, over bytes from a fuzzer (`crate::fuzz`):
/// two bytes of status, a `Retry-After` line, the body.
pub(crate) fn decode_answers(data: &[u8]) {
    let (status, rest) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => (200, data),
    };
    let (retry_after, body) = match memchr::memchr(b'\n', rest) {
        Some(at) => (std::str::from_utf8(&rest[..at]).ok(), &rest[at + 1..]),
        None => (None, rest),
    };
    let _ = super::retry::classify(status, retry_after, body);
    let _ = acked(body, u64::from(status));
}

/// The fences of the parts in a chunk (runs of one part are contiguous).
fn chunk_fences<'a>(parts: &'a [Part], chunk: &[(usize, usize)]) -> Vec<&'a Fence> {
    let mut fences: Vec<&Fence> = Vec::new();
    for (p, _) in chunk {
        let f = &parts[*p].fence;
        if !fences.last().is_some_and(|l| std::ptr::eq(*l, f)) {
            fences.push(f);
        }
    }
    fences
}

/// One gzip member of the runs back to back, at level 1 (the output is
/// sized for the ~1:4 that envelopes of audit events compress to).
fn gzip(runs: &[Bytes], raw_len: usize) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw_len / 4 + 64),
        flate2::Compression::fast(),
    );
    for r in runs {
        enc.write_all(r).expect("writing to a Vec cannot fail");
    }
    enc.finish().expect("writing to a Vec cannot fail")
}

/// A random channel GUID (8-4-4-4-12 hex).
pub fn random_guid() -> String {
    let h = format!("{:032x}", fastrand::u128(..));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, SET_COOKIE};

    fn set(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(SET_COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn a_channel_keeps_the_cookies_its_responses_set() {
        let c = Channel::new();
        assert_eq!(c.cookie_header(), None);
        c.absorb(&set(&[
            "AWSALB=abc123; Expires=Tue, 08 Dec 2026 10:00:00 GMT; Path=/",
            "splunk_lb=\"idx-2\"; Path=/; HttpOnly; Secure",
            "broken-without-value",
        ]));
        assert_eq!(
            c.cookie_header().as_deref(),
            Some("AWSALB=abc123; splunk_lb=idx-2")
        );
        // Replaced by name, removed by Max-Age=0.
        c.absorb(&set(&["AWSALB=def456; Path=/", "splunk_lb=; Max-Age=0"]));
        assert_eq!(c.cookie_header().as_deref(), Some("AWSALB=def456"));
        c.absorb(&set(&["AWSALB=x; Max-Age=-1"]));
        assert_eq!(c.cookie_header(), None);
        // A hostile backend cannot grow the jar without bound.
        let many: Vec<String> = (0..100).map(|i| format!("c{i}=v")).collect();
        c.absorb(&set(&many.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(c.cookies.lock().len(), 32);
    }

    #[test]
    fn channels_are_one_per_lane_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..8).map(|_| Channel::new().id).collect();
        assert_eq!(ids.len(), 8);
    }
}
