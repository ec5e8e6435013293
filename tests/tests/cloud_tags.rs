//! The remote tag cache over real HTTP against devstack's cloud server
//! (in process): the enrichment budget, and invalidation by tag changes seen
//! in the trail itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use trail_devstack::cloud::{CloudConfig, CloudServer};
use trail_devstack::gen::{Generator, TagsFile};
use trail_node::event::{EventFilter, FilterConfig, RwFilter};
use trail_node::pipeline::enrich::Enrichment;
use trail_node::secret::Secret;
use trail_node::sink::hec::{HecEncoder, HecEnvelope};
use trail_node::tags::alibaba::{AlibabaConfig, AlibabaTags};
use trail_node::tags::{builtin_kinds, BatchConfig, TagCache, Ttls};

/// An ECS instance of the management account with tags, and the server.
async fn start(latency_ms: u64) -> (CloudServer, String, String, String, std::path::PathBuf) {
    let g = Generator::new(7);
    let management = g.accounts()[0].clone();
    let file: TagsFile = g.tags_file();
    let dir = std::env::temp_dir().join(format!(
        "trail-cloudtags-{}-{latency_ms}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tags.json");
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let arn = file
        .resources
        .iter()
        .find(|r| {
            r.arn.starts_with(&"arn:acs:ecs:".to_string())
                && r.arn.contains(&format!(":{management}:instance/"))
        })
        .unwrap()
        .arn
        .clone();
    let mut cfg = CloudConfig::on("127.0.0.1:0".parse().unwrap());
    cfg.tags = Some(path.clone());
    cfg.seed = 7;
    cfg.management_account = Some(management.clone());
    cfg.latency_ms = latency_ms;
    let server = CloudServer::start(cfg.clone()).await.unwrap();
    (server, management, arn, cfg.access_key_secret, dir)
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Mode {
    ByArn,
    Sweep,
    PerProduct,
}

fn cache(server: &CloudServer, management: &str, secret: &str, sweep: Mode) -> TagCache {
    cache_ttl(server, management, secret, sweep, Duration::from_secs(3600))
}

fn cache_ttl(
    server: &CloudServer,
    management: &str,
    secret: &str,
    sweep: Mode,
    ttl: Duration,
) -> TagCache {
    let tags = AlibabaTags::new(AlibabaConfig {
        tag_endpoint: "http://tag.{region}.aliyuncs.com".into(),
        sts_endpoint: "http://sts.aliyuncs.com".into(),
        address: Some(server.local_addr().to_string()),
        access_key_id: "devstack-cloud-ak".into(),
        access_key_secret: Secret::new(secret),
        management_account: management.into(),
        role_name: "ResourceDirectoryAccountAccessRole".into(),
        session_secs: 3600,
        default_region: "cn-hangzhou".into(),
        sweep: sweep == Mode::Sweep,
        sweep_ttl: Duration::from_secs(3600),
        per_product: sweep == Mode::PerProduct,
        ecs_endpoint: "http://ecs.{region}.aliyuncs.com".into(),
        slb_endpoint: "http://slb.{region}.aliyuncs.com".into(),
    })
    .unwrap();
    TagCache::remote(
        Arc::new(tags),
        10_000,
        Ttls {
            tags: ttl,
            negative: Duration::from_secs(300),
            error: Duration::from_secs(10),
        },
        BatchConfig {
            window: Duration::from_millis(5),
            concurrency: 4,
            throttle_backoff: Duration::from_millis(100),
        },
    )
}

/// An ActionTrail write event on the instance `arn`.
fn event(arn: &str, name: &str, n: u32) -> String {
    let parts: Vec<&str> = arn.split(':').collect();
    let (region, account, id) = (parts[3], parts[4], parts[5].rsplit('/').next().unwrap());
    format!(
        r#"{{"eventId":"ev-{n}","eventVersion":1,"eventType":"ApiCall","eventRW":"Write","eventName":"{name}","eventSource":"ecs.aliyuncs.com","eventTime":"2026-11-23T10:00:00Z","acsRegion":"{region}","serviceName":"Ecs","userIdentity":{{"type":"ram-user","accountId":"{account}","principalId":"2","userName":"alice"}},"resourceType":"ACS::ECS::Instance","resourceName":"{id}","errorCode":""}}"#
    )
}

/// Enriches one batch on a blocking thread (the enricher blocks within its budget).
async fn run(e: &Arc<Enrichment>, events: Vec<String>) -> Vec<(String, Value)> {
    let e = e.clone();
    tokio::task::spawn_blocking(move || {
        let encoder = HecEncoder::new(HecEnvelope {
            host: "t".into(),
            source: None,
            sourcetype: None,
            index: None,
            tag_prefix: "tag_".into(),
            cim: None,
            indexed: Default::default(),
        });
        let (envelopes, _) = trail_tests::enrich_for_hec(&e, events, encoder, 0);
        envelopes
            .into_iter()
            .map(|v| {
                (
                    v["fields"]["tag_status"].as_str().unwrap().to_owned(),
                    v["fields"].clone(),
                )
            })
            .collect()
    })
    .await
    .unwrap()
}

fn enrichment(cache: TagCache, budget: Duration) -> Arc<Enrichment> {
    Arc::new(Enrichment {
        filter: EventFilter::new(&FilterConfig {
            event_rw: RwFilter::All,
            ..Default::default()
        }),
        tags: Some(cache),
        kinds: builtin_kinds().into(),
        max_event_bytes: 1 << 20,
        max_envelope_bytes: 32 << 20,
        event_key: b"event".to_vec(),
        tag_budget: budget,
    })
}

fn asked(server: &CloudServer) -> u64 {
    server.stats()["arns_asked"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_change_in_the_trail_refreshes_the_resource() {
    let (server, management, arn, secret, _dir) = start(0).await;
    let e = enrichment(
        cache(&server, &management, &secret, Mode::ByArn),
        Duration::from_secs(5),
    );
    let out = run(&e, vec![event(&arn, "StopInstance", 1)]).await;
    assert_eq!(out[0].0, "ok");
    assert_eq!(asked(&server), 1);
    // Cached: no call.
    let out = run(&e, vec![event(&arn, "StartInstance", 2)]).await;
    assert_eq!(out[0].0, "ok");
    assert_eq!(asked(&server), 1, "served from the cache");
    // TagResources on it: the entry is dropped and fetched again.
    let out = run(
        &e,
        vec![
            event(&arn, "TagResources", 3),
            event(&arn, "StartInstance", 4),
        ],
    )
    .await;
    assert!(out.iter().all(|(s, _)| s == "ok"));
    assert_eq!(asked(&server), 2, "refreshed once after the tag change");
    // A failed TagResources changes nothing.
    let failed = event(&arn, "TagResources", 5)
        .replace(r#""errorCode":"""#, r#""errorCode":"NoPermission""#);
    run(&e, vec![failed]).await;
    assert_eq!(asked(&server), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_api_costs_at_most_the_budget_then_events_say_pending() {
    let (server, management, arn, secret, _dir) = start(1500).await;
    let e = enrichment(
        cache(&server, &management, &secret, Mode::ByArn),
        Duration::from_millis(100),
    );
    let started = std::time::Instant::now();
    let out = run(&e, vec![event(&arn, "StopInstance", 1)]).await;
    let took = started.elapsed();
    assert_eq!(out[0].0, "pending");
    assert!(
        out[0]
            .1
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("tag_") || k == "tag_status"),
        "no tags yet"
    );
    assert!(
        took < Duration::from_millis(1200),
        "waited {took:?}, budget 100 ms"
    );
    // The answer lands in the cache; the next event has its tags.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let out = run(&e, vec![event(&arn, "StartInstance", 2)]).await;
    assert_eq!(out[0].0, "ok");
    assert_eq!(asked(&server), 1, "the pending lookup was not asked twice");
}

/// What the enricher actor does with a batch: the first pass, and if it
/// parks, the wait and the pass after it.
fn hec_first_pass(
    e: &Enrichment,
    events: Vec<String>,
) -> Result<Vec<String>, trail_node::tags::TagWait> {
    let (list, provenance, encoders) = hec_batch(events);
    let out = e.first_pass(&list, &["c".to_owned()], &provenance, &encoders)?;
    Ok(statuses(out))
}

fn hec_after_wait(e: &Enrichment, events: Vec<String>) -> Vec<String> {
    let (list, provenance, encoders) = hec_batch(events);
    statuses(e.after_wait(&list, &["c".to_owned()], &provenance, &encoders))
}

fn hec_batch(
    events: Vec<String>,
) -> (
    trail_proto::sls::LogGroupList,
    trail_node::record::Provenance,
    Vec<Arc<dyn trail_node::record::EventEncoder>>,
) {
    let encoder = HecEncoder::new(HecEnvelope {
        host: "t".into(),
        source: None,
        sourcetype: None,
        index: None,
        tag_prefix: "tag_".into(),
        cim: None,
        indexed: Default::default(),
    });
    let list = trail_proto::sls::LogGroupList {
        log_group_list: vec![trail_tests::event_log_group(events)],
    };
    let provenance = trail_node::record::Provenance {
        project: "p".into(),
        logstore: "actiontrail_test".into(),
        shard: 0,
        epoch: 0,
        source: trail_node::record::SourceKind::Sls,
    };
    (list, provenance, vec![Arc::new(encoder)])
}

fn statuses(mut out: trail_node::pipeline::enrich::EnrichOutput) -> Vec<String> {
    let slab = out.parts.pop().unwrap().freeze();
    (0..slab.len())
        .map(|i| {
            let v: Value = serde_json::from_slice(&slab.event(i)).unwrap();
            v["fields"]["tag_status"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Two slow batches must not stall every shard: a batch missing tags gives
/// its thread back at once (the pull loop awaits the wait), the same thread
/// enriches other batches meanwhile, and the parked one gets its tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waiting_for_tags_gives_its_thread_back() {
    let (server, management, arn, secret, _dir) = start(1500).await;
    let e = enrichment(
        cache(&server, &management, &secret, Mode::ByArn),
        Duration::from_secs(20),
    );
    let slow = vec![event(&arn, "StopInstance", 1)];
    // An event with no resource to look up: nothing to wait for.
    let other = event(&arn, "StopInstance", 2).replace(
        r#","resourceType":"ACS::ECS::Instance","resourceName":"#,
        r#","x":"#,
    );
    let (first, second) = {
        let (e, slow, other) = (e.clone(), slow.clone(), other.clone());
        tokio::task::spawn_blocking(move || {
            let first = hec_first_pass(&e, slow).map(|_| ()).unwrap_err();
            let second = hec_first_pass(&e, vec![other; 3]);
            (first, second)
        })
        .await
        .unwrap()
    };
    assert_eq!(&*first.keys()[0], arn.as_str(), "parked for the instance");
    assert_eq!(
        second.expect("a batch without misses does not park"),
        ["no_resource"; 3]
    );
    let cache = e.tags.as_ref().unwrap();
    assert!(
        matches!(cache.get(&arn), trail_node::tags::Lookup::Pending),
        "the thread was free before the slow answer came"
    );
    let started = std::time::Instant::now();
    first.wait().await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "woken by the answer, not the budget"
    );
    let e2 = e.clone();
    let out = tokio::task::spawn_blocking(move || hec_after_wait(&e2, slow))
        .await
        .unwrap();
    assert_eq!(out, ["ok"]);
    assert_eq!(asked(&server), 1);
    assert_eq!(
        cache
            .remote_stats()
            .unwrap()
            .parked
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_mode_lists_a_scope_once_and_asks_changed_resources_by_arn() {
    let (server, management, arn, secret, _dir) = start(0).await;
    let e = enrichment(
        cache(&server, &management, &secret, Mode::Sweep),
        Duration::from_secs(5),
    );
    let listings = |s: &CloudServer| s.stats()["listings"].as_u64().unwrap();
    let out = run(&e, vec![event(&arn, "StopInstance", 1)]).await;
    assert_eq!(out[0].0, "ok");
    assert_eq!(
        (listings(&server), asked(&server)),
        (1, 0),
        "one listing, no ARN asked"
    );
    // Another instance of the same account and region: answered by the listing.
    let (prefix, _) = arn.rsplit_once('/').unwrap();
    let other = format!("{prefix}/i-not-tagged");
    let out = run(&e, vec![event(&other, "StopInstance", 2)]).await;
    assert_eq!(out[0].0, "none");
    assert_eq!((listings(&server), asked(&server)), (1, 0));
    // The trail tags it: asked by ARN, once.
    let out = run(&e, vec![event(&arn, "TagResources", 3)]).await;
    assert_eq!(out[0].0, "ok");
    assert_eq!((listings(&server), asked(&server)), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_product_apis_tag_ecs_resources_without_the_tag_service() {
    let (server, management, arn, secret, _dir) = start(0).await;
    let e = enrichment(
        cache(&server, &management, &secret, Mode::PerProduct),
        Duration::from_secs(5),
    );
    let by_arn = enrichment(
        cache(&server, &management, &secret, Mode::ByArn),
        Duration::from_secs(5),
    );
    let out = run(&e, vec![event(&arn, "StopInstance", 1)]).await;
    let want = run(&by_arn, vec![event(&arn, "StopInstance", 1)]).await;
    assert_eq!(out[0].0, "ok");
    assert_eq!(
        out[0].1, want[0].1,
        "the same fields as through the Tag service"
    );
    let answers = &server.stats()["answers"];
    assert_eq!(answers["ecs:ListTagResources"]["200"], 1);
}

/// CloudTrail events get AWS tags through GetResources (SigV4) on devstack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudtrail_events_get_aws_tags_through_get_resources() {
    use trail_node::tags::aws::{AwsConfig, AwsTags, CloudTags};
    let arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc0001";
    let file = TagsFile {
        resources: vec![trail_devstack::gen::TaggedResource {
            arn: arn.into(),
            tags: [("project".to_owned(), "payments".to_owned())].into(),
        }],
    };
    let dir = std::env::temp_dir().join(format!("trail-awstags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tags.json"), serde_json::to_vec(&file).unwrap()).unwrap();
    let mut cfg = CloudConfig::on("127.0.0.1:0".parse().unwrap());
    cfg.tags = Some(dir.join("tags.json"));
    let server = CloudServer::start(cfg.clone()).await.unwrap();
    let aws = |secret: &str| {
        Arc::new(
            AwsTags::new(AwsConfig {
                endpoint: "http://tagging.{region}.amazonaws.com".into(),
                address: Some(server.local_addr().to_string()),
                access_key_id: cfg.access_key_id.clone(),
                secret_access_key: Secret::new(secret),
                session_token: None,
            })
            .unwrap(),
        )
    };
    let cache = |secret: &str| {
        TagCache::remote(
            Arc::new(CloudTags {
                alibaba: None,
                aws: Some(aws(secret)),
            }),
            1000,
            Ttls {
                tags: Duration::from_secs(60),
                negative: Duration::from_secs(60),
                error: Duration::from_secs(10),
            },
            BatchConfig {
                window: Duration::from_millis(5),
                concurrency: 2,
                throttle_backoff: Duration::from_millis(100),
            },
        )
    };
    let record = |n: u32| {
        format!(
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","accountId":"123456789012","userName":"alice"}},"eventTime":"2026-11-23T09:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"StopInstances","awsRegion":"us-east-1","eventID":"ct-{n}","readOnly":false,"resources":[{{"accountId":"123456789012","type":"AWS::EC2::Instance","ARN":"{arn}"}}],"eventType":"AwsApiCall"}}"#
        )
    };
    let e = enrichment(cache(&cfg.access_key_secret), Duration::from_secs(5));
    let out = run(&e, vec![record(1)]).await;
    assert_eq!(out[0].0, "ok");
    assert_eq!(out[0].1["tag_project"], "payments");
    assert_eq!(server.stats()["answers"]["aws:GetResources"]["200"], 1);
    // A wrong secret: refused by SigV4 verification; the event says so.
    let bad = enrichment(cache("wrong"), Duration::from_secs(5));
    let out = run(&bad, vec![record(2)]).await;
    assert_eq!(out[0].0, "unavailable");
    assert_eq!(
        server.stats()["answers"]["aws:GetResources"]["InvalidSignatureException"],
        1
    );
}

/// An account whose AssumeRole fails backs off alone: its events say
/// `unavailable`, other accounts' events keep their tags, and the failing
/// account is not asked again during its backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_member_account_backs_off_without_holding_others_up() {
    let (server, management, arn, secret, _dir) = start(0).await;
    let e = enrichment(
        cache(&server, &management, &secret, Mode::ByArn),
        Duration::from_secs(5),
    );
    let stranger = "arn:acs:ecs:cn-hangzhou:1999999999999999:instance/i-stranger";
    let out = run(
        &e,
        vec![
            event(stranger, "StopInstance", 1),
            event(&arn, "StopInstance", 2),
        ],
    )
    .await;
    assert_eq!(out[0].0, "unavailable");
    assert_eq!(out[1].0, "ok");
    let refused =
        |s: &CloudServer| s.stats()["answers"]["sts:AssumeRole"]["EntityNotExist.Role"].as_u64();
    assert_eq!(refused(&server), Some(1));
    // Another resource of that account, soon after: no second AssumeRole.
    let again = "arn:acs:ecs:cn-hangzhou:1999999999999999:instance/i-stranger-2";
    let out = run(&e, vec![event(again, "StopInstance", 3)]).await;
    assert_eq!(out[0].0, "unavailable");
    assert_eq!(refused(&server), Some(1), "the account backs off");
}

/// Throttled while an entry is stale: the event keeps the stale tags
/// (`ok`), the refresh is throttled and counted, and nothing waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_tags_are_served_while_the_api_throttles() {
    let (server, management, arn, secret, _dir) = start(0).await;
    // Fresh for 1 s, served stale until 2 s.
    let cache = cache_ttl(
        &server,
        &management,
        &secret,
        Mode::ByArn,
        Duration::from_millis(1000),
    );
    let e = enrichment(cache, Duration::from_secs(2));
    let fresh = run(&e, vec![event(&arn, "StopInstance", 1)]).await;
    assert_eq!(fresh[0].0, "ok");
    tokio::time::sleep(Duration::from_millis(1100)).await; // stale now
    server.set_throttle_every(1);
    let started = std::time::Instant::now();
    let out = run(&e, vec![event(&arn, "StartInstance", 2)]).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "stale entries are not waited for"
    );
    assert_eq!(out[0].0, "ok");
    assert_eq!(
        out[0]
            .1
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("tag_") && *k != "tag_status")
            .count(),
        fresh[0]
            .1
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("tag_") && *k != "tag_status")
            .count(),
        "the stale tags"
    );
    // The background refresh was throttled, and the stale entry survived it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        server.stats()["answers"]["tag:ListTagResources"]["Throttling.User"].as_u64() >= Some(1)
    );
    let out = run(&e, vec![event(&arn, "StartInstance", 3)]).await;
    assert_eq!(out[0].0, "ok", "still served after a throttled refresh");
}
