//! Events shaped as the clouds publish them (events-and-tags §1.1, §1.4,
//! §4.1; written here, not copied), through the real enrichment with a
//! tags file and the HEC encoder: resources from every field that names
//! them, bare type names, owning accounts, `eventRW` missing, CloudTrail
//! callers, CIM fields, and what goes to the dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use trail_node::event::{EventFilter, FilterConfig, ResourceField};
use trail_node::pipeline::enrich::{EnrichStats, Enrichment};
use trail_node::sink::hec::cim::CimMap;
use trail_node::sink::hec::{HecEncoder, HecEnvelope, IndexedFields};
use trail_node::tags::{builtin_kinds, StaticTags, TagCache};

const A: &str = "1384920045567123";
const B: &str = "1593020045567890";
const AWS: &str = "123456789012";

fn tags_file() -> Value {
    json!({"resources": [
        {"arn": format!("arn:acs:ecs:cn-shanghai:{A}:instance/i-uf6f3k2x9trailtest1"), "tags": {"project": "payments", "env": "prod"}},
        {"arn": format!("arn:acs:vpc:cn-hangzhou:{A}:vswitch/vsw-bp1trailtest2"), "tags": {"project": "search"}},
        {"arn": format!("arn:acs:vpc:cn-hangzhou:{A}:vpc/vpc-bp1trailtest3"), "tags": {"project": "search", "team": "net"}},
        {"arn": format!("acs:ram::{B}:role/etl-role"), "tags": {"project": "data-lake"}},
        {"arn": format!("arn:acs:ecs:cn-hangzhou:{B}:instance/i-bp1trailtest4"), "tags": {"project": "risk"}},
        {"arn": format!("arn:acs:ecs:cn-beijing:{A}:disk/d-2zetrailtest5"), "tags": {"project": "archive"}},
        {"arn": format!("arn:aws:ec2:us-east-1:{AWS}:instance/i-0trailtest6"), "tags": {"project": "storefront"}},
    ]})
}

fn ram_user() -> String {
    format!(
        r#"{{"type":"ram-user","accountId":"{A}","principalId":"271830045512908877","userName":"deploy-bot","accessKeyId":"LTAI5tTrailTestKey01"}}"#
    )
}

/// An ActionTrail API call; `rest` is spliced in as more top-level keys.
fn call(id: &str, name: &str, region: &str, service: &str, identity: &str, rest: &str) -> String {
    format!(
        r#"{{"eventId":"{id}","eventVersion":1,"eventCategory":"Management","eventType":"ApiCall","eventName":"{name}","eventSource":"{svc}.{region}.aliyuncs.com","eventTime":"2026-11-20T08:00:00Z","acsRegion":"{region}","serviceName":"{service}","sourceIpAddress":"203.0.113.9","userAgent":"aliyun-cli/3.0.204","requestId":"{id}","userIdentity":{identity},"requestParameters":{{"RegionId":"{region}","SystemDisk.Size":40,"DryRun":"false","Tags":[]}},{rest}}}"#,
        svc = service.to_ascii_lowercase(),
    )
}

fn events() -> Vec<String> {
    let sys = r#"{"type":"system","userName":"ecs.aliyuncs.com"}"#;
    vec![
        // Current shape: referencedResources only.
        call(
            "e-ref",
            "StopInstance",
            "cn-shanghai",
            "Ecs",
            &ram_user(),
            r#""eventRW":"Write","referencedResources":{"ACS::ECS::Instance":["i-uf6f3k2x9trailtest1"]},"errorCode":"""#,
        ),
        // A bare type name, and the older pair naming the same resources again.
        call(
            "e-bare",
            "CreateVSwitch",
            "cn-hangzhou",
            "Vpc",
            &format!(
                r#"{{"type":"assumed-role","accountId":"{A}","principalId":"364212045590011223:ci","userName":"terraform-role:ci","accessKeyId":"STS.NTtrailtest","sessionContext":{{"sessionAttributes":{{"mfaAuthenticated":"false"}}}}}}"#
            ),
            r#""eventRW":"Write","referencedResources":{"ACS::VPC::VPC":["vpc-bp1trailtest3"],"VSwitch":["vsw-bp1trailtest2"]},"resourceType":"ACS::VPC::VPC;ACS::VPC::VSwitch","resourceName":"vpc-bp1trailtest3;vsw-bp1trailtest2""#,
        ),
        // Archive shape (before 2020-12-16): no eventRW, no pair.
        call(
            "e-archive-write",
            "ResizeDisk",
            "cn-beijing",
            "Ecs",
            &ram_user(),
            r#""referencedResources":{"ACS::ECS::Disk":["d-2zetrailtest5"]}"#,
        ),
        call(
            "e-archive-read",
            "DescribeDisks",
            "cn-beijing",
            "Ecs",
            &ram_user(),
            r#""referencedResources":{"ACS::ECS::Disk":["d-2zetrailtest5"]}"#,
        ),
        // System callers: no account, then one from recipientAccountId, then one from an ARN.
        call(
            "e-sys-noacct",
            "DeleteSnapshot",
            "cn-hangzhou",
            "Ecs",
            sys,
            r#""eventRW":"Write","referencedResources":{"ACS::ECS::Snapshot":["s-bp1trailtest7"]}"#,
        ),
        call(
            "e-sys-recipient",
            "RebootInstance",
            "cn-hangzhou",
            "Ecs",
            sys,
            &format!(
                r#""eventRW":"Write","recipientAccountId":"{B}","referencedResources":{{"ACS::ECS::Instance":["i-bp1trailtest4"]}}"#
            ),
        ),
        call(
            "e-sys-arn",
            "UpdateRole",
            "cn-hangzhou",
            "Ram",
            r#"{"type":"system","userName":"ram.aliyuncs.com"}"#,
            &format!(
                r#""eventRW":"Write","referencedResources":{{"ACS::RAM::Role":["acs:ram::{B}:role/etl-role"]}}"#
            ),
        ),
        // A type no table knows: kept for the output.
        call(
            "e-unknown",
            "ModifyWidget",
            "cn-hangzhou",
            "Gadget",
            &ram_user(),
            r#""eventRW":"Write","referencedResources":{"ACS::Gadget::Widget":["w-9"]}"#,
        ),
        // The pair alone.
        call(
            "e-pair",
            "StartInstance",
            "cn-shanghai",
            "Ecs",
            &ram_user(),
            r#""eventRW":"Write","resourceType":"ACS::ECS::Instance","resourceName":"i-uf6f3k2x9trailtest1""#,
        ),
        // A failed change.
        call(
            "e-failed",
            "DeleteInstance",
            "cn-shanghai",
            "Ecs",
            &ram_user(),
            r#""eventRW":"Write","referencedResources":{"ACS::ECS::Instance":["i-uf6f3k2x9trailtest1"]},"errorCode":"Forbidden.RAM","errorMessage":"User not authorized""#,
        ),
        // Sign-ins: success says "success" in errorMessage; failure has a code.
        format!(
            r#"{{"eventId":"1.203_1795000000000_8c1f","eventVersion":"","eventType":"ConsoleSignin","eventRW":"Write","eventName":"ConsoleSignin","eventSource":"signin.aliyun.com","serviceName":"AasSub","eventTime":"2026-11-20T08:00:01Z","acsRegion":"cn-hangzhou","sourceIpAddress":"2001:db8::7","userIdentity":{{"type":"ram-user","accountId":"{A}","principalId":"229910045500337766","userName":"alice"}},"additionalEventData":{{"loginAccount":"alice@{A}.onaliyun.com","mfaChecked":"true"}},"errorCode":null,"errorMessage":"success"}}"#
        ),
        format!(
            r#"{{"eventId":"1.203_1795000000001_9d2e","eventVersion":"1","eventType":"ConsoleSignin","eventRW":"Write","eventName":"ConsoleSignin","eventSource":"signin.aliyun.com","serviceName":"AasSub","eventTime":"2026-11-20T08:00:02Z","acsRegion":"cn-hangzhou","sourceIpAddress":"11.168.XX.XX","userIdentity":{{"type":"ram-user","accountId":"{A}","userName":"mallory"}},"errorCode":"InvalidPassword","errorMessage":"wrong password"}}"#
        ),
        // CloudTrail: an assumed role with resources[]; one without readOnly.
        format!(
            r#"{{"eventVersion":"1.11","userIdentity":{{"type":"AssumedRole","principalId":"AROATRAILTEST:ci-42","arn":"arn:aws:sts::{AWS}:assumed-role/Deploy/ci-42","accountId":"{AWS}","accessKeyId":"ASIATRAILTEST","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"AROATRAILTEST","arn":"arn:aws:iam::{AWS}:role/Deploy","accountId":"{AWS}","userName":"Deploy"}},"attributes":{{"creationDate":"2026-11-20T07:00:00Z","mfaAuthenticated":"false"}}}}}},"eventTime":"2026-11-20T08:00:03Z","eventSource":"ec2.amazonaws.com","eventName":"StopInstances","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.4, 10.0.0.1","userAgent":"aws-cli/2.15","requestParameters":null,"responseElements":null,"requestID":"r-1","eventID":"ct-1","readOnly":false,"resources":[{{"accountId":"{AWS}","type":"AWS::EC2::Instance","ARN":"arn:aws:ec2:us-east-1:{AWS}:instance/i-0trailtest6"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{AWS}","eventCategory":"Management","tlsDetails":{{"tlsVersion":"TLSv1.3"}}}}"#
        ),
        format!(
            r#"{{"eventVersion":"1.05","userIdentity":{{"type":"AWSService","invokedBy":"autoscaling.amazonaws.com"}},"eventTime":"2026-11-20T08:00:04Z","eventSource":"ec2.amazonaws.com","eventName":"TerminateInstances","awsRegion":"us-east-1","sourceIPAddress":"autoscaling.amazonaws.com","eventID":"ct-2","errorCode":"200","recipientAccountId":"{AWS}"}}"#
        ),
        // Invalid JSON as vendor samples sometimes are: masked bare numbers.
        format!(
            r#"{{"eventId":"e-masked","acsRegion":"cn-hangzhou","serviceName":"Ecs","userIdentity":{{"accountId":1384XXXX}}}}"#
        ),
    ]
}

fn run(filter: FilterConfig) -> (BTreeMap<String, Value>, EnrichStats, Vec<String>) {
    run_with(filter, events())
}

fn run_with(
    filter: FilterConfig,
    events: Vec<String>,
) -> (BTreeMap<String, Value>, EnrichStats, Vec<String>) {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("trail-published-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tags.json");
    std::fs::write(&path, tags_file().to_string()).unwrap();
    let cache = TagCache::new(
        Arc::new(StaticTags::open(&path, Duration::from_secs(3600)).unwrap()),
        10_000,
        Duration::from_secs(3600),
    );
    let e = Enrichment {
        filter: EventFilter::new(&filter),
        tags: Some(cache),
        kinds: builtin_kinds().into(),
        max_event_bytes: 1 << 20,
        max_envelope_bytes: 32 << 20,
        event_key: b"event".to_vec(),
        tag_budget: Duration::from_secs(1),
    };
    let encoder = HecEncoder::new(HecEnvelope {
        host: "t".into(),
        source: None,
        sourcetype: None,
        index: None,
        tag_prefix: "tag_".into(),
        cim: Some(CimMap::default()),
        indexed: IndexedFields::All,
    });
    let (envelopes, out) = trail_tests::enrich_for_hec(&e, events, encoder, 0);
    let by_id = envelopes
        .into_iter()
        .map(|v| (v["fields"]["eventId"].as_str().unwrap().to_owned(), v))
        .collect();
    let dead = out.dead_letters.iter().map(|d| d.reason.clone()).collect();
    (by_id, out.stats, dead)
}

#[test]
fn resources_are_found_wherever_the_trail_names_them() {
    let (ev, stats, dead) = run(FilterConfig::default());
    let f = |id: &str, k: &str| ev[id]["fields"][k].as_str().map(str::to_owned);
    let s = |v: &str| Some(v.to_owned());

    assert_eq!(f("e-ref", "tag_project"), s("payments"));
    assert_eq!(f("e-ref", "tag_env"), s("prod"));
    assert_eq!(
        f("e-ref", "resources"),
        s("ACS::ECS::Instance/i-uf6f3k2x9trailtest1")
    );
    // Bare `VSwitch` resolved; the pair's repeats are the same two resources.
    assert_eq!(
        f("e-bare", "resources"),
        s("ACS::VPC::VPC/vpc-bp1trailtest3,ACS::VPC::VSwitch/vsw-bp1trailtest2")
    );
    assert_eq!(
        f("e-bare", "tag_project"),
        s("search"),
        "one value from two resources"
    );
    assert_eq!(f("e-bare", "tag_team"), s("net"));
    assert_eq!(f("e-pair", "tag_project"), s("payments"));
    // Owning accounts: none → no_account; recipientAccountId; an ARN's.
    assert_eq!(f("e-sys-noacct", "tag_status"), s("no_account"));
    assert_eq!(f("e-sys-recipient", "tag_project"), s("risk"));
    assert_eq!(f("e-sys-recipient", "accountId"), s(B));
    assert_eq!(f("e-sys-arn", "tag_project"), s("data-lake"));
    // Unknown types are kept with their id.
    assert_eq!(f("e-unknown", "resources"), s("ACS::Gadget::Widget/w-9"));
    assert_eq!(f("e-unknown", "tag_status"), s("no_resource"));
    // CloudTrail resources[].
    assert_eq!(f("ct-1", "tag_project"), s("storefront"));

    assert_eq!(
        stats.tagged_by,
        BTreeMap::from([
            (ResourceField::ReferencedResources, 6),
            (ResourceField::ResourceName, 1),
            (ResourceField::Resources, 1),
        ]),
        "e-ref, e-bare, e-archive-write, e-sys-recipient, e-sys-arn, e-failed; e-pair; ct-1"
    );
    assert_eq!(stats.tag_no_account, 1);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("not valid JSON"), "{dead:?}");
}

#[test]
fn events_without_event_rw_are_inferred_and_marked() {
    let (ev, stats, _) = run(FilterConfig::default());
    let f = |id: &str, k: &str| ev[id]["fields"][k].as_str().map(str::to_owned);
    assert_eq!(f("e-archive-write", "eventRW").as_deref(), Some("Write"));
    assert_eq!(
        f("e-archive-write", "eventRW_inferred").as_deref(),
        Some("true")
    );
    assert_eq!(
        f("e-archive-write", "tag_project").as_deref(),
        Some("archive")
    );
    assert!(
        !ev.contains_key("e-archive-read"),
        "an inferred read is dropped as a read"
    );
    assert_eq!(f("ct-2", "eventRW_inferred").as_deref(), Some("true"));
    assert_eq!(f("e-ref", "eventRW_inferred"), None, "only where inferred");
    assert_eq!((stats.rw_inferred_read, stats.rw_inferred_write), (1, 2));
    assert_eq!(stats.dropped.get("event_rw"), Some(&1));

    // keep: both archive events pass a writes-only filter, nothing made up.
    let (ev, _, _) = run(FilterConfig {
        unknown_rw: trail_node::event::UnknownRw::Keep,
        ..Default::default()
    });
    assert!(ev.contains_key("e-archive-read"));
    assert!(ev["e-archive-read"]["fields"].get("eventRW").is_none());
    // drop: neither does.
    let (ev, stats, _) = run(FilterConfig {
        unknown_rw: trail_node::event::UnknownRw::Drop,
        ..Default::default()
    });
    assert!(!ev.contains_key("e-archive-write") && !ev.contains_key("ct-2"));
    assert_eq!(stats.dropped.get("event_rw"), Some(&3));
}

#[test]
fn cloudtrail_callers_are_named_as_aws_users_read_them() {
    let (ev, _, _) = run(FilterConfig::default());
    assert_eq!(ev["ct-1"]["fields"]["userName"], "Deploy/ci-42");
    assert_eq!(
        ev["ct-2"]["fields"]["userName"],
        "autoscaling.amazonaws.com"
    );
    assert_eq!(ev["ct-1"]["sourcetype"], "aws:cloudtrail");
    // The raw record rides along untouched, and no CIM field is added:
    // Splunk's AWS add-on maps aws:cloudtrail itself.
    assert_eq!(
        ev["ct-1"]["event"]["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"],
        "Deploy"
    );
    for k in CimMap::FIELD_NAMES {
        assert!(ev["ct-1"]["fields"].get(*k).is_none(), "{k}");
    }
}

#[test]
fn actiontrail_changes_and_sign_ins_carry_cim_fields() {
    let (ev, _, _) = run(FilterConfig::default());
    let f = |id: &str, k: &str| ev[id]["fields"][k].as_str().unwrap_or("").to_owned();
    assert_eq!(f("e-ref", "action"), "stopped");
    assert_eq!(f("e-ref", "change_type"), "cloud");
    assert_eq!(f("e-ref", "command"), "StopInstance");
    assert_eq!(f("e-ref", "object"), "i-uf6f3k2x9trailtest1");
    assert_eq!(f("e-ref", "object_category"), "instance");
    assert_eq!(f("e-ref", "object_id"), "i-uf6f3k2x9trailtest1");
    assert_eq!(f("e-ref", "user"), "deploy-bot");
    assert_eq!(f("e-ref", "user_name"), "deploy-bot");
    assert_eq!(f("e-ref", "user_type"), "ram-user");
    assert_eq!(f("e-ref", "src"), "203.0.113.9");
    assert_eq!(f("e-ref", "dest"), "ecs.cn-shanghai.aliyuncs.com");
    assert_eq!(f("e-ref", "status"), "success");
    assert_eq!(f("e-ref", "result"), "success");
    assert_eq!(f("e-ref", "vendor_product"), "Alibaba Cloud ActionTrail");
    assert_eq!(f("e-bare", "action"), "created");
    assert_eq!(f("e-bare", "object_category"), "vpc");
    assert_eq!(
        f("e-bare", "object_id"),
        "vpc-bp1trailtest3,vsw-bp1trailtest2"
    );
    assert_eq!(f("e-sys-arn", "change_type"), "AAA");
    assert_eq!(f("e-failed", "action"), "deleted");
    assert_eq!(f("e-failed", "status"), "failure");
    assert_eq!(f("e-failed", "result"), "Forbidden.RAM");
    // Authentication.
    assert_eq!(f("1.203_1795000000000_8c1f", "action"), "success");
    assert_eq!(f("1.203_1795000000000_8c1f", "app"), "signin.aliyun.com");
    assert_eq!(f("1.203_1795000000000_8c1f", "signature"), "ConsoleSignin");
    assert_eq!(f("1.203_1795000000000_8c1f", "src"), "2001:db8::7");
    assert_eq!(f("1.203_1795000000000_8c1f", "user"), "alice");
    assert_eq!(f("1.203_1795000000001_9d2e", "action"), "failure");
    assert_eq!(f("1.203_1795000000001_9d2e", "src"), "11.168.XX.XX");
    assert_eq!(
        f("1.203_1795000000000_8c1f", "change_type"),
        "",
        "not a Change event"
    );
}

#[test]
fn reads_a_writes_only_filter_drops_are_dropped_before_parsing() {
    let read = call(
        "e-read",
        "DescribeInstances",
        "cn-shanghai",
        "Ecs",
        &ram_user(),
        r#""eventRW":"Read","referencedResources":{"ACS::ECS::Instance":["i-uf6f3k2x9trailtest1"]}"#,
    );
    let write = call(
        "e-write",
        "StopInstance",
        "cn-shanghai",
        "Ecs",
        &ram_user(),
        r#""eventRW":"Write","referencedResources":{"ACS::ECS::Instance":["i-uf6f3k2x9trailtest1"]}"#,
    );
    // A read the parser refuses (no eventId): dropped as a read, by design.
    let broken_read = read.replace(r#""eventId":"e-read","#, "");
    // A CloudTrail read: its verdict is `readOnly`, so it is parsed first.
    let cloudtrail_read = format!(
        r#"{{"eventVersion":"1.11","userIdentity":{{"type":"IAMUser","accountId":"{AWS}","userName":"ops"}},"eventTime":"2026-11-20T08:00:05Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"us-east-1","eventID":"ct-read","readOnly":true,"recipientAccountId":"{AWS}"}}"#
    );
    let all = vec![read, write, broken_read, cloudtrail_read];

    let (ev, stats, dead) = run_with(FilterConfig::default(), all.clone());
    assert_eq!(ev.keys().collect::<Vec<_>>(), ["e-write"]);
    assert_eq!(stats.dropped.get("event_rw"), Some(&3));
    assert_eq!(stats.prescanned, 2, "the two ActionTrail reads, unparsed");
    assert!(dead.is_empty(), "{dead:?}");

    // Every event kept: nothing is scanned, the broken one is a dead letter.
    let (ev, stats, dead) = run_with(
        FilterConfig {
            event_rw: trail_node::event::RwFilter::All,
            ..Default::default()
        },
        all,
    );
    assert_eq!(ev.len(), 3);
    assert_eq!(stats.prescanned, 0);
    assert_eq!(dead.len(), 1, "{dead:?}");
}

/// A CloudTrail log file imported as one log content is held to its own cap
/// before it is parsed; under the cap each record is an event.
#[test]
fn a_records_envelope_past_its_cap_is_dead_lettered_unparsed() {
    let record = |n: u32| {
        format!(
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","accountId":"{AWS}","userName":"alice"}},"eventTime":"2026-11-20T08:00:0{n}Z","eventSource":"ec2.amazonaws.com","eventName":"StopInstances","awsRegion":"us-east-1","eventID":"ct-cap-{n}","readOnly":false,"requestParameters":{{"pad":"{}"}},"eventType":"AwsApiCall"}}"#,
            "x".repeat(1500)
        )
    };
    let envelope = format!(
        r#"{{"Records":[{},{},{}]}}"#,
        record(1),
        record(2),
        record(3)
    );
    let enrich = |cap: usize| {
        let e = Enrichment {
            filter: EventFilter::new(&FilterConfig::default()),
            tags: None,
            kinds: builtin_kinds().into(),
            max_event_bytes: 1 << 20,
            max_envelope_bytes: cap,
            event_key: b"event".to_vec(),
            tag_budget: Duration::from_secs(1),
        };
        let encoder = HecEncoder::new(HecEnvelope {
            host: "t".into(),
            source: None,
            sourcetype: None,
            index: None,
            tag_prefix: "tag_".into(),
            cim: None,
            indexed: IndexedFields::All,
        });
        trail_tests::enrich_for_hec(&e, vec![envelope.clone()], encoder, 0)
    };
    let (sent, out) = enrich(4096);
    assert!(sent.is_empty());
    assert_eq!(out.dead_letters.len(), 1);
    let d = &out.dead_letters[0];
    assert_eq!(d.kind, "oversize");
    assert!(d.reason.contains("max_envelope_bytes 4096"), "{}", d.reason);
    assert_eq!(d.raw.len(), envelope.len(), "the whole content is kept");
    let (sent, out) = enrich(1 << 20);
    assert!(out.dead_letters.is_empty());
    assert_eq!(sent.len(), 3);
}
