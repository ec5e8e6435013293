//! The SLS sink: the business view written to a logstore with PutLogs.
//!
//! The encoder (run in the enrichers) writes each event as a protobuf `Log`:
//! business fields, shard, tags under their prefix and, optionally, the
//! original event. The sink frames those bytes into `LogGroup`s within the
//! SLS limits (≤ 4096 logs, ≤ 4 MiB raw) without decoding them, and sends
//! them lz4-compressed. With `route_by_shard`, every source shard writes
//! through one hash key, so its events keep their order in the target.
//! Transient and quota errors are retried without end; a permanent refusal
//! dead-letters the group with SLS's reason. Writes go through
//! `concurrency` lanes; a source shard always uses the same one, which
//! writes its parts one after another, so order holds across retries.
//! `setup.rs` says what the logstore needs to be queried: its index (every
//! field the encoder writes) and saved searches (`trail-node setup`).

pub mod setup;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::BufMut;
use serde::Deserialize;

use crate::fence::Fence;
use crate::record::{business_fields, EventEncoder};
use crate::record::{DeadLetter, View};
use crate::secret::SecretSource;
use crate::sink::dead_letter::DeadLetters;
use crate::sink::{Deliver, SinkStats};
use crate::sls::{ErrorClass, PutTarget, SlsClient};

/// `[[sinks]] type = "sls"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlsSinkConfig {
    pub endpoint: String,
    pub address: Option<String>,
    pub project: String,
    pub logstore: String,
    pub access_key_id: String,
    pub access_key_secret: SecretSource,
    pub security_token: Option<SecretSource>,
    #[serde(default = "default_topic")]
    pub topic: String,
    #[serde(default)]
    pub source: Option<String>,
    /// Keep each source shard's order in the target (one hash key per shard).
    #[serde(default = "yes")]
    pub route_by_shard: bool,
    /// Also store the original event JSON under `event`.
    #[serde(default = "yes")]
    pub include_event: bool,
    pub tag_prefix: Option<String>,
    /// Requests in flight: lanes, each with one PutLogs at a time; a source
    /// shard always uses the same lane, so its order holds across retries.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_concurrency() -> usize {
    4
}

fn default_topic() -> String {
    "trail_business_view".into()
}

fn yes() -> bool {
    true
}

const MAX_LOGS: usize = 4096;
const MAX_GROUP_BYTES: usize = 4 * 1024 * 1024;

/// Writes one event as a protobuf `Log` message body.
pub struct SlsLogEncoder {
    pub tag_prefix: String,
    pub include_event: bool,
}

fn content(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    content_parts(out, &[key], value);
}

/// A `LogContent` whose key is the concatenation of `key` (a prefixed tag name).
fn content_parts(out: &mut Vec<u8>, key: &[&[u8]], value: &[u8]) {
    let key_len: usize = key.iter().map(|k| k.len()).sum();
    let inner = 1 + varint_len(key_len) + key_len + 1 + varint_len(value.len()) + value.len();
    out.put_u8(0x12); // Log.Contents (2), length-delimited
    prost::encoding::encode_varint(inner as u64, out);
    out.put_u8(0x0a); // LogContent.Key (1)
    prost::encoding::encode_varint(key_len as u64, out);
    for k in key {
        out.extend_from_slice(k);
    }
    out.put_u8(0x12); // LogContent.Value (2)
    prost::encoding::encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

fn varint_len(v: usize) -> usize {
    prost::encoding::encoded_len_varint(v as u64)
}

impl EventEncoder for SlsLogEncoder {
    fn encode(&self, v: &View<'_>, out: &mut Vec<u8>) {
        out.put_u8(0x08); // Log.Time (1)
        prost::encoding::encode_varint(v.time.max(0.0) as u64, out);
        for (k, val) in business_fields(v) {
            content(out, k.as_bytes(), val.as_bytes());
        }
        content(out, b"shard", v.provenance.shard.to_string().as_bytes());
        for (k, val) in v.tags.iter() {
            content_parts(
                out,
                &[self.tag_prefix.as_bytes(), k.as_bytes()],
                val.as_bytes(),
            );
        }
        if self.include_event {
            content(out, b"event", v.raw);
        }
    }
}

/// The `SlsSink` actor: parts queue in lanes (shard `s` uses lane
/// `s % concurrency`); a lane writes its parts one after another.
pub struct SlsSink {
    writer: Arc<Writer>,
    lanes: Vec<Lane>,
}

#[derive(Default)]
struct Lane {
    pending: Vec<Deliver>,
    busy: bool,
}

/// What a lane needs to write a part.
struct Writer {
    client: SlsClient,
    cfg: Arc<SlsSinkConfig>,
    stats: Arc<SinkStats>,
    dead_letters: Recipient<DeadLetters>,
    /// The node's fence (self-fencing); each part also carries its shard's.
    fence: Fence,
}

impl SlsSink {
    pub fn new(
        client: SlsClient,
        cfg: Arc<SlsSinkConfig>,
        stats: Arc<SinkStats>,
        dead_letters: Recipient<DeadLetters>,
        fence: Fence,
    ) -> Self {
        let lanes = (0..cfg.concurrency.max(1))
            .map(|_| Lane::default())
            .collect();
        SlsSink {
            writer: Arc::new(Writer {
                client,
                cfg,
                stats,
                dead_letters,
                fence,
            }),
            lanes,
        }
    }

    fn flush(&mut self, lane: usize, ctx: &mut Context<Self>) {
        let l = &mut self.lanes[lane];
        if l.busy || l.pending.is_empty() {
            return;
        }
        l.busy = true;
        // One part at a time: the others wait here, where a lost fence
        // gives them up (`purge`), not behind another shard's retries.
        let part = l.pending.remove(0);
        let writer = self.writer.clone();
        let me = ctx.address();
        actix::spawn(async move {
            writer.write(part).await;
            me.do_send(LaneDone(lane));
        });
    }

    /// Gives up, unsent, the waiting parts whose shard's fence is lost.
    fn purge(&mut self) {
        for l in &mut self.lanes {
            crate::sink::give_up_lost(&mut l.pending, &self.writer.stats.queued);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct LaneDone(usize);

impl Actor for SlsSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Parts are bounded by the shards' credits; one round fits.
        ctx.set_mailbox_capacity(64);
        ctx.run_interval(Duration::from_millis(100), |act, _| act.purge());
    }
}

/// A `LogGroup` from encoded `Log` bodies `[from, to)`.
fn frame(part: &Deliver, from: usize, to: usize, topic: &str, source: &str) -> Vec<u8> {
    let mut g = Vec::with_capacity(part.events.range_len(from..to) + 8 * (to - from) + 64);
    for i in from..to {
        let log = part.events.event(i);
        g.put_u8(0x0a); // LogGroup.Logs (1)
        prost::encoding::encode_varint(log.len() as u64, &mut g);
        g.extend_from_slice(&log);
    }
    for (tag, text) in [(0x1a_u8, topic), (0x22, source)] {
        g.put_u8(tag); // Topic (3), Source (4)
        prost::encoding::encode_varint(text.len() as u64, &mut g);
        g.extend_from_slice(text.as_bytes());
    }
    g
}

impl Writer {
    /// Writes one part in ≤ 4096-log, ≤ 4 MiB groups; acknowledges it after
    /// the last group was accepted or dead-lettered.
    async fn write(&self, part: Deliver) {
        let Writer {
            client,
            cfg,
            stats,
            dead_letters,
            fence,
        } = self;
        let _queued = crate::sink::Queued(&stats.queued, 1);
        let source = cfg
            .source
            .clone()
            .unwrap_or_else(|| part.provenance.logstore.to_string());
        let key = format!(
            "{:032x}",
            route_hash(&format!("{}/{}", part.provenance.logstore, part.shard))
        );
        let mut from = 0;
        while from < part.events.len() {
            let mut to = from;
            let mut bytes = 0;
            while to < part.events.len() && to - from < MAX_LOGS {
                let len = part.events.range_len(to..to + 1) + 8;
                if to > from && bytes + len > MAX_GROUP_BYTES {
                    break;
                }
                bytes += len;
                to += 1;
            }
            let group = frame(&part, from, to, &cfg.topic, &source);
            let target = if cfg.route_by_shard {
                PutTarget::HashKey(&key)
            } else {
                PutTarget::LoadBalanced
            };
            let mut pause = Duration::from_millis(200);
            loop {
                if !fence.holds() || !part.fence.holds() {
                    tracing::warn!(
                        "fence lost: abandoning a part unsent; the shard is re-read by its owner"
                    );
                    part.ack.abandon();
                    return;
                }
                stats.sent(to - from, group.len());
                let started = std::time::Instant::now();
                let put = tokio::select! {
                    r = client.put_encoded_logs(&cfg.project, &cfg.logstore, &group, target) => r,
                    _ = Fence::any_lost([fence, &part.fence]) => continue,
                };
                stats.latency.observe_duration(started.elapsed());
                match put {
                    Ok(()) => {
                        SinkStats::add(&stats.events, (to - from) as u64);
                        SinkStats::add(&stats.bytes, group.len() as u64);
                        break;
                    }
                    Err(e) if e.class() != ErrorClass::Permanent => {
                        SinkStats::add(&stats.retries, 1);
                        tracing::warn!(error = %e, ?pause, "SLS sink: PutLogs failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = Fence::any_lost([fence, &part.fence]) => {}
                        }
                        pause = (pause * 2).min(Duration::from_secs(30));
                    }
                    Err(e) => {
                        SinkStats::add(&stats.errors, 1);
                        let letters: Vec<DeadLetter> = (from..to)
                            .map(|i| DeadLetter {
                                reason: format!("SLS sink refused: {e}"),
                                kind: "sls_rejected",
                                project: part.provenance.project.clone(),
                                logstore: part.provenance.logstore.clone(),
                                shard: part.shard,
                                cursor: String::new(),
                                raw: part.events.event(i),
                            })
                            .collect();
                        let mut written = false;
                        loop {
                            match dead_letters.send(DeadLetters(letters.clone())).await {
                                Ok(Ok(())) => {
                                    written = true;
                                    break;
                                }
                                Ok(Err(e)) => {
                                    tracing::error!(error = %e, "dead-letter sink refused; retrying")
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "dead-letter sink unreachable; retrying")
                                }
                            }
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                // Given up at the top of the next attempt.
                                _ = Fence::any_lost([fence, &part.fence]) => break,
                            }
                        }
                        if !written {
                            continue;
                        }
                        SinkStats::add(&stats.dead_lettered, letters.len() as u64);
                        break;
                    }
                }
            }
            from = to;
        }
        part.ack.done();
    }
}

impl Handler<Deliver> for SlsSink {
    type Result = ();

    fn handle(&mut self, part: Deliver, ctx: &mut Self::Context) {
        SinkStats::add(&self.writer.stats.queued, 1);
        let lane = part.shard as usize % self.lanes.len();
        self.lanes[lane].pending.push(part);
        self.flush(lane, ctx);
    }
}

impl Handler<LaneDone> for SlsSink {
    type Result = ();

    fn handle(&mut self, msg: LaneDone, ctx: &mut Self::Context) {
        self.lanes[msg.0].busy = false;
        self.flush(msg.0, ctx);
    }
}

/// A stable 128-bit FNV-1a hash: the route key of a source shard (only its spread matters).
fn route_hash(s: &str) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in s.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn hand_framed_groups_decode_with_prost() {
        let mut out = Vec::new();
        out.put_u8(0x08);
        prost::encoding::encode_varint(1_790_000_000, &mut out);
        content(&mut out, b"eventId", b"e-1");
        content_parts(&mut out, &[b"tag_", b"project"], "payments ü".as_bytes());
        let log = trail_proto::sls::Log::decode(&out[..]).unwrap();
        assert_eq!(log.time, 1_790_000_000);
        assert_eq!(&log.contents[1].key[..], b"tag_project");
        assert_eq!(&log.contents[1].value[..], "payments ü".as_bytes());
    }
}
