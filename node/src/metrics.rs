//! Metrics: the vocabulary every component uses to expose what it counts,
//! on top of `prometheus-client` (the Prometheus project's Rust client).
//!
//! Components keep their counters as plain atomics on the hot path and
//! register a [`Collector`] that reads them at scrape time; distributions
//! are [`Histogram`]s (lock-free buckets) that both the exposition and
//! `trailctl status` (its p99 columns) read. The control plane only serves
//! the [`Registry`] the node's assembly filled.
//!
//! Names follow the cluster design notes §5 and Prometheus naming: base
//! units in the name (`_seconds`, `_bytes`), `_total` on counters (added
//! by the encoder: pass counter names without it), bounded labels only.
//!
//! Floor 0: imports nothing of the crate.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
pub use prometheus_client::registry::Registry;

/// A sample's labels: bounded names and values (never a cursor).
pub type Labels = Vec<(&'static str, String)>;

/// Request and pull latencies: 1 ms … ~65 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 65.0,
];
/// End-to-end delays (receive → every sink acknowledged): 10 ms … 1 h.
pub const DELAY_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Events per request: 1 … 64 Ki.
pub const EVENT_COUNT_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0,
];
/// Bytes per request: 1 KiB … 64 MiB.
pub const BYTE_BUCKETS: &[f64] = &[
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// A histogram with fixed bounds, lock-free: observing is two atomic adds
/// and a CAS on the sum. Readable for quantiles (status) and encodable as a
/// Prometheus histogram.
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus the overflow (+Inf) bucket; not cumulative.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Histogram(count {})", self.count())
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// A latency histogram (seconds).
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Relaxed);
        let mut cur = self.sum.load(Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match self.sum.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// The sum of histograms of the same bounds (`None` if there are none).
    pub fn merged<'h>(hs: impl IntoIterator<Item = &'h Histogram>) -> Option<Histogram> {
        let mut out: Option<Histogram> = None;
        for h in hs {
            let o = out.get_or_insert_with(|| Histogram::new(h.bounds));
            debug_assert_eq!(o.bounds, h.bounds);
            for (a, b) in o.counts.iter().zip(h.counts.iter()) {
                a.fetch_add(b.load(Relaxed), Relaxed);
            }
            o.sum.store(
                (f64::from_bits(o.sum.load(Relaxed)) + h.sum()).to_bits(),
                Relaxed,
            );
        }
        out
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Relaxed))
    }

    /// The upper bound of the bucket holding quantile `q` (0 < q ≤ 1):
    /// at least a fraction `q` of observations were at or below it. 0 with
    /// no observations; the largest bound if `q` falls into the overflow.
    pub fn quantile(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return self.bounds.get(i).copied().unwrap_or(f64::INFINITY).min(
                    // The overflow bucket reports the largest finite bound.
                    *self.bounds.last().unwrap_or(&0.0),
                );
            }
        }
        *self.bounds.last().unwrap_or(&0.0)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().map(|c| c.load(Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Writes one metric family from rows read at scrape time.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    rows: impl IntoIterator<Item = (Labels, M)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, metric_type)?;
    for (labels, v) in rows {
        // An empty label set is written without braces.
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A counter family; `name` without `_total` (the encoder adds it).
pub fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        MetricType::Counter,
        rows.into_iter().map(|(l, v)| (l, ConstCounter::new(v))),
    )
}

/// One unlabelled counter; `name` without `_total`.
pub fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    counters(enc, name, help, [(Labels::new(), v)])
}

/// A gauge family (integral values: states, counts, whole seconds).
pub fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, i64)>,
) -> fmt::Result {
    family(
        enc,
        name,
        help,
        MetricType::Gauge,
        rows.into_iter().map(|(l, v)| (l, ConstGauge::new(v))),
    )
}

/// One unlabelled gauge.
pub fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    gauges(enc, name, help, [(Labels::new(), v)])
}

/// A histogram family.
pub fn histograms<'h>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, &'h Histogram)>,
) -> fmt::Result {
    family(enc, name, help, MetricType::Histogram, rows)
}

impl EncodeMetric for &Histogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), fmt::Error> {
        (*self).encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Renders a registry in the Prometheus text format (0.0.4).
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(8192);
    // Writing to a String cannot fail; a collector's error leaves what it wrote.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds() {
        let h = Histogram::new(&[0.1, 1.0, 10.0]);
        assert_eq!(h.quantile(0.99), 0.0, "no observations");
        for _ in 0..98 {
            h.observe(0.05);
        }
        h.observe(0.5);
        h.observe(5.0);
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), 0.1);
        assert_eq!(h.quantile(0.99), 1.0);
        assert_eq!(h.quantile(1.0), 10.0);
        h.observe(99.0);
        assert_eq!(h.quantile(1.0), 10.0, "overflow reports the largest bound");
        assert!((h.sum() - (98.0 * 0.05 + 0.5 + 5.0 + 99.0)).abs() < 1e-9);
    }

    #[derive(Debug)]
    struct Fixed(Histogram);

    impl Collector for Fixed {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            counters(
                &mut enc,
                "trail_x_events",
                "Events.",
                [(vec![("shard", "3".to_string())], 7)],
            )?;
            gauge(&mut enc, "trail_x_up", "Up.", 1)?;
            histograms(
                &mut enc,
                "trail_x_duration_seconds",
                "Durations.",
                [(vec![("component_id", "hec#0".to_string())], &self.0)],
            )
        }
    }

    #[test]
    fn exposition_in_prometheus_text() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(3.0);
        let mut r = Registry::default();
        r.register_collector(Box::new(Fixed(h)));
        let text = render(&r);
        for line in [
            "# TYPE trail_x_events_total counter",
            "trail_x_events_total{shard=\"3\"} 7",
            "# TYPE trail_x_up gauge",
            "trail_x_up 1",
            "# TYPE trail_x_duration_seconds histogram",
            "trail_x_duration_seconds_bucket{component_id=\"hec#0\",le=\"0.1\"} 1",
            "trail_x_duration_seconds_bucket{component_id=\"hec#0\",le=\"1\"} 2",
            "trail_x_duration_seconds_bucket{component_id=\"hec#0\",le=\"+Inf\"} 3",
            "trail_x_duration_seconds_count{component_id=\"hec#0\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
    }
}
