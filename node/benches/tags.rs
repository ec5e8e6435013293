//! The tag cache's hit path: what an enricher pays per event once the
//! cache is warm (moka lookup; for remote sources also the per-batch
//! freshness check in `request`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use trail_node::tags::aws::CloudTags;
use trail_node::tags::{BatchConfig, TagCache, Ttls};

fn arns(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("arn:acs:ecs:cn-hangzhou:1384920045567123:instance/i-bp1example{i:08}"))
        .collect()
}

fn tags() -> BTreeMap<String, String> {
    [
        ("project", "payments"),
        ("env", "prod"),
        ("team", "sre"),
        ("cost-center", "cc-42"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    // A remote cache (no cloud behind it: every key below is already cached).
    let cache = TagCache::remote(
        Arc::new(CloudTags {
            alibaba: None,
            aws: None,
        }),
        1_000_000,
        Ttls {
            tags: Duration::from_secs(3600),
            negative: Duration::from_secs(300),
            error: Duration::from_secs(10),
        },
        BatchConfig {
            window: Duration::from_millis(5),
            concurrency: 1,
            throttle_backoff: Duration::from_millis(500),
        },
    );
    let keys = arns(100_000);
    for k in &keys {
        cache.put(k, tags());
    }
    let batch: Vec<&str> = keys
        .iter()
        .step_by(333)
        .take(300)
        .map(String::as_str)
        .collect();

    let mut g = c.benchmark_group("tag_cache_hit");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function(BenchmarkId::new("get", batch.len()), |b| {
        b.iter(|| {
            batch
                .iter()
                .filter(|k| matches!(cache.get(k), trail_node::tags::Lookup::Tags(_)))
                .count()
        })
    });
    g.bench_function(BenchmarkId::new("request_then_get", batch.len()), |b| {
        b.iter(|| {
            if let Some(wait) = cache.request(batch.iter().copied(), Duration::from_millis(200)) {
                wait.block();
            }
            batch
                .iter()
                .filter(|k| matches!(cache.get(k), trail_node::tags::Lookup::Tags(_)))
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
