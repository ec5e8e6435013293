//! PullLogs decode: lz4 (raw block) → LogGroupList with `Bytes`-backed fields.
//!
//! The input is what one PullLogs of an ActionTrail logstore returns: 100 log
//! groups of 40 events of ~1.2 KB JSON each (~4.8 MB raw). Throughput is in raw
//! (decompressed) bytes, the unit the pipeline's MB-per-CPU-second target uses.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use trail_node::sls::codec::{self, Compression};
use trail_proto::sls::{Log, LogContent, LogGroup, LogGroupList, LogTag};

fn event(i: u64) -> String {
    format!(
        concat!(
            r#"{{"eventId":"7C1E4B2A-93D5-5F0E-8A61-{i:012}","eventVersion":1,"eventCategory":"Management","#,
            r#""eventType":"ApiCall","eventRW":"Write","eventName":"StopInstance","eventSource":"ecs.cn-shanghai.aliyuncs.com","#,
            r#""eventTime":"2024-05-14T02:31:07Z","acsRegion":"cn-shanghai","serviceName":"Ecs","apiVersion":"2014-05-26","#,
            r#""sourceIpAddress":"203.0.113.24","userAgent":"AlibabaCloud (Linux; amd64) Go/1.21.6 Core/1.62.700","#,
            r#""requestId":"7C1E4B2A-93D5-5F0E-8A61-{i:012}","isGlobal":false,"#,
            r#""userIdentity":{{"type":"ram-user","accountId":"1384920045567123","principalId":"271830045512908877","#,
            r#""userName":"deploy-bot-{u}","accessKeyId":"LTAI5tQx9ExampleKeyId01"}},"#,
            r#""requestParameters":{{"RegionId":"cn-shanghai","InstanceId":"i-uf6f3k2x9examplevm{r:02}","ForceStop":false,"#,
            r#""AcsProduct":"Ecs","AcsHost":"ecs.cn-shanghai.aliyuncs.com"}},"#,
            r#""responseElements":{{"RequestId":"7C1E4B2A-93D5-5F0E-8A61-{i:012}"}},"#,
            r#""referencedResources":{{"ACS::ECS::Instance":["i-uf6f3k2x9examplevm{r:02}"]}},"#,
            r#""resourceType":"ACS::ECS::Instance","resourceName":"i-uf6f3k2x9examplevm{r:02}","#,
            r#""additionalEventData":{{"Scheme":"https"}},"errorCode":"","errorMessage":""}}"#
        ),
        i = i,
        u = i % 17,
        r = i % 97
    )
}

fn pull_body() -> (Bytes, usize) {
    let list = LogGroupList {
        log_group_list: (0..100u64)
            .map(|g| LogGroup {
                logs: (0..40u64)
                    .map(|i| Log {
                        time: 1_715_653_867,
                        contents: vec![LogContent {
                            key: Bytes::from_static(b"event"),
                            value: Bytes::from(event(g * 40 + i)),
                        }],
                        time_ns: None,
                    })
                    .collect(),
                topic: Some(Bytes::from_static(b"actiontrail_audit_event")),
                source: Some(Bytes::from_static(b"actiontrail")),
                log_tags: vec![LogTag {
                    key: Bytes::from_static(b"__receive_time__"),
                    value: Bytes::from_static(b"1715653868"),
                }],
                ..Default::default()
            })
            .collect(),
    };
    let raw = list.encode_to_vec();
    let compressed = codec::compress(Compression::Lz4, &raw).unwrap();
    (compressed, raw.len())
}

fn bench(c: &mut Criterion) {
    let (compressed, raw_len) = pull_body();
    let raw = codec::decompress(Compression::Lz4, compressed.clone(), raw_len).unwrap();

    let mut g = c.benchmark_group("pull_decode");
    g.throughput(Throughput::Bytes(raw_len as u64));
    g.bench_function("lz4_decompress", |b| {
        b.iter(|| {
            codec::decompress(Compression::Lz4, black_box(compressed.clone()), raw_len).unwrap()
        })
    });
    g.bench_function("protobuf_decode_bytes_backed", |b| {
        b.iter(|| codec::decode_log_group_list(black_box(raw.clone())).unwrap())
    });
    g.bench_function("lz4_then_decode", |b| {
        b.iter(|| {
            let raw = codec::decompress(Compression::Lz4, black_box(compressed.clone()), raw_len)
                .unwrap();
            codec::decode_log_group_list(raw).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
