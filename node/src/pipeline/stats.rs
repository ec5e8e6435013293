//! What the pipeline on this node did: the counters of every shard, sink,
//! the dead-letter sink and the tag cache, as one shared view. The control
//! plane, the heartbeats and the demo read it; nothing here knows who reads.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::event::ResourceField;
use crate::metrics::{
    counter, counters, gauges, histograms, Collector, DescriptorEncoder, Histogram, Labels,
    Registry,
};
use crate::pipeline::shard_consumer::ShardStats;
use crate::sink::{SinkHandle, SinkMetrics, SinkStats};
use crate::tags::{CacheStats, RemoteStats, TagMetrics};

/// How often per-shard rates are sampled.
const SAMPLE: Duration = Duration::from_secs(5);

/// The pipeline's counters on this node. Cheap to clone: every clone reads
/// the same counters.
#[derive(Clone, Default)]
pub struct PipelineStats {
    pub shards: Arc<Mutex<BTreeMap<u32, Arc<ShardStats>>>>,
    pub sinks: Arc<Mutex<Vec<SinkHandle>>>,
    pub dead_letters: Arc<SinkStats>,
    /// The remote tag tier's counters, when cloud providers are configured.
    pub tag_remote: Arc<Mutex<Option<Arc<RemoteStats>>>>,
    pub tag_cache: Arc<Mutex<Option<Arc<CacheStats>>>>,
    /// shard → log events per second over the last sample.
    pub rates: Arc<Mutex<BTreeMap<u32, f64>>>,
}

impl PipelineStats {
    /// Registers the metrics of the pipeline's components: shards, sinks
    /// and the dead-letter sink, the tag cache (once it is set).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(ShardMetrics {
            shards: self.shards.clone(),
        }));
        registry.register_collector(Box::new(SinkMetrics {
            sinks: self.sinks.clone(),
            dead_letters: self.dead_letters.clone(),
        }));
        registry.register_collector(Box::new(TagMetrics {
            cache: self.tag_cache.clone(),
            remote: self.tag_remote.clone(),
        }));
    }

    pub fn sum(&self, f: impl Fn(&ShardStats) -> u64) -> u64 {
        self.shards.lock().values().map(|s| f(s)).sum()
    }

    /// Samples per-shard event rates into `rates` every few seconds until `stop`.
    pub fn sample_rates(&self, stop: CancellationToken) {
        let stats = self.clone();
        tokio::spawn(async move {
            let mut last: BTreeMap<u32, u64> = BTreeMap::new();
            let mut tick = tokio::time::interval(SAMPLE);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let now: BTreeMap<u32, u64> = stats
                    .shards
                    .lock()
                    .iter()
                    .map(|(id, s)| (*id, s.logs.load(Relaxed)))
                    .collect();
                let mut r = stats.rates.lock();
                r.clear();
                for (id, n) in &now {
                    let before = last.get(id).copied().unwrap_or(*n);
                    r.insert(*id, n.saturating_sub(before) as f64 / SAMPLE.as_secs_f64());
                }
                last = now;
            }
        });
    }
}

/// Every shard consumer's counters, gauges and histograms.
#[derive(Debug)]
struct ShardMetrics {
    shards: Arc<Mutex<BTreeMap<u32, Arc<ShardStats>>>>,
}

impl Collector for ShardMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let shards = self.shards.lock().clone();
        // Labelled by the shard's own number and its source's logstore (an
        // S3 trail's name): a node may read several sources.
        let names: BTreeMap<u32, (String, String)> = shards
            .iter()
            .map(|(id, s)| {
                let (logstore, shard) = s.name(*id);
                (
                    *id,
                    (
                        logstore.map(|l| l.to_string()).unwrap_or_default(),
                        shard.to_string(),
                    ),
                )
            })
            .collect();
        let source = |id: &u32| -> Labels {
            let (logstore, shard) = names[id].clone();
            vec![
                ("component_kind", "source".into()),
                ("logstore", logstore),
                ("shard", shard),
            ]
        };
        let shard = |id: &u32| -> Labels {
            let (logstore, shard) = names[id].clone();
            vec![("logstore", logstore), ("shard", shard)]
        };
        let sum = |f: fn(&ShardStats) -> &std::sync::atomic::AtomicU64| -> u64 {
            shards.values().map(|s| f(s).load(Relaxed)).sum()
        };
        counters(
            &mut enc,
            "trail_component_received_events",
            "Events read from SLS.",
            shards
                .iter()
                .map(|(id, s)| (source(id), s.logs.load(Relaxed))),
        )?;
        counters(
            &mut enc,
            "trail_component_received_bytes",
            "Raw event bytes read from SLS.",
            shards
                .iter()
                .map(|(id, s)| (source(id), s.raw_bytes.load(Relaxed))),
        )?;
        let mut dropped = BTreeMap::<&str, u64>::new();
        for s in shards.values() {
            for (k, v) in s.dropped.lock().iter() {
                *dropped.entry(k).or_default() += v;
            }
        }
        counters(
            &mut enc,
            "trail_component_discarded_events",
            "Events the filters dropped, by reason.",
            dropped.into_iter().map(|(k, v)| {
                (
                    vec![("intentional", "true".into()), ("reason", k.to_string())],
                    v,
                )
            }),
        )?;
        counters(
            &mut enc,
            "trail_tag_status_events",
            "Events delivered whose tags were incomplete, by tag_status.",
            [
                (
                    vec![("status", "pending".to_string())],
                    sum(|s| &s.tag_pending),
                ),
                (
                    vec![("status", "unavailable".to_string())],
                    sum(|s| &s.tag_unavailable),
                ),
                (
                    vec![("status", "no_account".to_string())],
                    sum(|s| &s.tag_no_account),
                ),
            ],
        )?;
        counters(
            &mut enc,
            "trail_events_tagged_by_field",
            "Tagged events by the event field that named their first tagged resource.",
            ResourceField::ALL.iter().map(|f| {
                let n = shards
                    .values()
                    .map(|s| s.tagged_by[*f as usize].load(Relaxed))
                    .sum();
                (vec![("field", f.as_str().to_string())], n)
            }),
        )?;
        counters(
            &mut enc,
            "trail_event_rw_inferred_events",
            "Events without eventRW given one inferred from the event name (the filter then applies).",
            ["Read", "Write"].iter().enumerate().map(|(i, rw)| {
                let n = shards.values().map(|s| s.rw_inferred[i].load(Relaxed)).sum();
                (vec![("event_rw", (*rw).to_string())], n)
            }),
        )?;
        counter(
            &mut enc,
            "trail_tag_cache_invalidations",
            "Cache entries dropped because the trail changed a resource's tags.",
            sum(|s| &s.tag_invalidations),
        )?;
        counters(
            &mut enc,
            "trail_shard_restarts",
            "Shard chains restarted from their checkpoint.",
            shards
                .iter()
                .map(|(id, s)| (shard(id), s.restarts.load(Relaxed))),
        )?;
        counters(
            &mut enc,
            "trail_shard_pull_errors",
            "PullLogs calls that failed after the client's retries.",
            shards
                .iter()
                .map(|(id, s)| (shard(id), s.pull_errors.load(Relaxed))),
        )?;
        let now = crate::clock::unix_secs();
        gauges(
            &mut enc,
            "trail_shard_lag_seconds",
            "Now minus the receive time at the committed checkpoint (0 when caught up).",
            shards
                .iter()
                .map(|(id, s)| (shard(id), s.live_view(now).1 as i64)),
        )?;
        gauges(
            &mut enc,
            "trail_shard_epoch",
            "The lease epoch this node consumes the shard under (0 without a cluster).",
            shards
                .iter()
                .map(|(id, s)| (shard(id), s.epoch.load(Relaxed) as i64)),
        )?;
        let pulls = Histogram::merged(shards.values().map(|s| &s.pull_latency));
        histograms(
            &mut enc,
            "trail_source_pull_duration_seconds",
            "PullLogs latency over this node's shards (request to answer, retries included).",
            pulls.iter().map(|h| (Labels::new(), h)),
        )?;
        histograms(
            &mut enc,
            "trail_shard_delivery_delay_seconds",
            "SLS receive time of a batch to every sink acknowledging it.",
            shards.iter().map(|(id, s)| (shard(id), &s.delivery_delay)),
        )
    }
}
