//! A deterministic generator of realistic ActionTrail events and the tags of
//! the resources they touch.
//!
//! Shape (protocol notes, events §1 and §6): median ~1.2 KB per event with a
//! tail to ~15 KB; ~15 % writes; services ECS, SLB, VPC, OSS, RAM, RDS; RAM
//! users, assumed roles, root and system callers; ~1.2 resources per event
//! (some events name several); ~80 % of resources tagged (none / 1–3 / 4–8 /
//! 9–20 tags, plus a few `acs:` system tags). Resources are named the way
//! the published trail names them: every API call carries
//! `referencedResources` (some with bare type names such as `VSwitch`);
//! ~60 % carry nothing else, ~25 % also the `resourceType`/`resourceName`
//! pair (`;` between types, `,` within one), and ~15 % are archive-shaped
//! (before 2020-12-16: no `eventRW`, no pair). `system` callers carry no
//! account; half of their events name it in `recipientAccountId`.
//! Everything follows from the seed: the same seed gives the same event
//! ids, bytes and tags on every run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub mod cloudtrail;

use serde::{Deserialize, Serialize};

/// One resource of the simulated estate.
#[derive(Debug, Clone)]
pub struct Resource {
    pub account: String,
    pub region: String,
    /// ActionTrail resource type, e.g. `ACS::ECS::Instance`.
    pub resource_type: &'static str,
    /// Tag-service product and type, e.g. `ecs` / `instance`.
    pub product: &'static str,
    pub arn_type: &'static str,
    pub id: String,
    pub tags: BTreeMap<String, String>,
}

impl Resource {
    /// `arn:acs:{product}:{region}:{account}:{type}/{id}` (RAM: no `arn:`, no region).
    pub fn arn(&self) -> String {
        if self.product == "ram" {
            format!("acs:ram::{}:{}/{}", self.account, self.arn_type, self.id)
        } else {
            format!(
                "arn:acs:{}:{}:{}:{}/{}",
                self.product, self.region, self.account, self.arn_type, self.id
            )
        }
    }
}

/// The tags file: what the static tag provider reads and devstack's cloud
/// server serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TagsFile {
    pub resources: Vec<TaggedResource>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaggedResource {
    pub arn: String,
    pub tags: BTreeMap<String, String>,
}

struct Service {
    name: &'static str,
    source: &'static str,
    api_version: &'static str,
    kinds: &'static [(&'static str, &'static str, &'static str, &'static str)],
    reads: &'static [&'static str],
    writes: &'static [&'static str],
}

/// (ActionTrail type, product, ARN type, id prefix)
const SERVICES: &[Service] = &[
    Service {
        name: "Ecs",
        source: "ecs.aliyuncs.com",
        api_version: "2014-05-26",
        kinds: &[
            ("ACS::ECS::Instance", "ecs", "instance", "i-"),
            ("ACS::ECS::Disk", "ecs", "disk", "d-"),
            ("ACS::ECS::SecurityGroup", "ecs", "securitygroup", "sg-"),
        ],
        reads: &[
            "DescribeInstances",
            "DescribeDisks",
            "DescribeSecurityGroupAttribute",
            "DescribeInstanceStatus",
        ],
        writes: &[
            "StopInstance",
            "StartInstance",
            "RebootInstance",
            "ModifyInstanceAttribute",
            "AuthorizeSecurityGroup",
            "DeleteInstance",
            "AttachDisk",
        ],
    },
    Service {
        name: "Slb",
        source: "slb.aliyuncs.com",
        api_version: "2014-05-15",
        kinds: &[("ACS::SLB::LoadBalancer", "slb", "instance", "lb-")],
        reads: &[
            "DescribeLoadBalancers",
            "DescribeHealthStatus",
            "DescribeLoadBalancerAttribute",
        ],
        writes: &[
            "AddBackendServers",
            "RemoveBackendServers",
            "SetLoadBalancerStatus",
            "CreateLoadBalancerHTTPListener",
        ],
    },
    Service {
        name: "Vpc",
        source: "vpc.aliyuncs.com",
        api_version: "2016-04-28",
        kinds: &[
            ("ACS::VPC::VPC", "vpc", "vpc", "vpc-"),
            ("ACS::VPC::VSwitch", "vpc", "vswitch", "vsw-"),
            ("ACS::VPC::EIP", "vpc", "eip", "eip-"),
        ],
        reads: &["DescribeVpcs", "DescribeVSwitches", "DescribeEipAddresses"],
        writes: &[
            "ModifyVpcAttribute",
            "CreateVSwitch",
            "AssociateEipAddress",
            "ReleaseEipAddress",
        ],
    },
    Service {
        name: "Oss",
        source: "oss-cn-hangzhou.aliyuncs.com",
        api_version: "",
        kinds: &[("ACS::OSS::Bucket", "oss", "bucket", "audit-bucket-")],
        reads: &["GetBucketInfo", "GetBucketAcl", "ListObjects"],
        writes: &["PutBucketAcl", "PutBucketLifecycle", "DeleteBucket"],
    },
    Service {
        name: "Ram",
        source: "ram.aliyuncs.com",
        api_version: "2015-05-01",
        kinds: &[("ACS::RAM::User", "ram", "user", "svc-user-")],
        reads: &["GetUser", "ListPoliciesForUser", "ListAccessKeys"],
        writes: &[
            "AttachPolicyToUser",
            "CreateAccessKey",
            "UpdateUser",
            "DeleteAccessKey",
        ],
    },
    Service {
        name: "Rds",
        source: "rds.aliyuncs.com",
        api_version: "2014-08-15",
        kinds: &[("ACS::RDS::DBInstance", "rds", "dbinstance", "rm-")],
        reads: &[
            "DescribeDBInstances",
            "DescribeDBInstanceAttribute",
            "DescribeBackups",
        ],
        writes: &[
            "ModifySecurityIps",
            "RestartDBInstance",
            "ModifyDBInstanceSpec",
            "CreateBackup",
        ],
    },
];

const REGIONS: &[&str] = &["cn-hangzhou", "cn-shanghai", "cn-beijing", "ap-southeast-1"];
const PROJECTS: &[&str] = &[
    "payments",
    "search",
    "ml-platform",
    "data-lake",
    "identity",
    "storefront",
    "logistics",
    "risk",
];
const ENVS: &[&str] = &["prod", "staging", "dev"];
const TEAMS: &[&str] = &["core", "infra", "sre", "growth", "security", "analytics"];
const EXTRA_KEYS: &[&str] = &[
    "cost-center",
    "app",
    "owner",
    "tier",
    "compliance",
    "backup",
    "data-class",
    "on-call",
    "region-group",
    "service-level",
    "lifecycle",
    "created-by",
    "budget",
    "product",
    "component",
    "version",
];

/// Whether the generator made `event` (its JSON) as a write: by `eventRW`,
/// or for archive-shaped events without it, by the name lists it drew the
/// name from — the ground truth a reader's inference must agree with.
pub fn is_write(event: &serde_json::Value) -> bool {
    match event["eventRW"].as_str() {
        Some(rw) => rw == "Write",
        None => {
            let name = event["eventName"].as_str().unwrap_or("");
            name == "ConsoleSignin" || SERVICES.iter().any(|s| s.writes.contains(&name))
        }
    }
}

/// The generator: a fixed estate (accounts, users, resources with tags) and a
/// stream of events over it.
pub struct Generator {
    rng: fastrand::Rng,
    accounts: Vec<String>,
    users: Vec<(String, String, String)>, // (account, principalId, userName)
    roles: Vec<(String, String, String)>, // (account, roleId, roleName)
    resources: Vec<Vec<Resource>>,        // per service
    seq: u64,
    base_time: i64,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        let mut rng = fastrand::Rng::with_seed(seed);
        let accounts: Vec<String> = (0..6)
            .map(|_| format!("1{:015}", rng.u64(..1_000_000_000_000_000)))
            .collect();
        let users = (0..60)
            .map(|i| {
                let a = accounts[rng.usize(..accounts.len())].clone();
                (
                    a,
                    format!("2{:017}", rng.u64(..100_000_000_000_000_000)),
                    format!(
                        "{}-{i:02}",
                        ["alice", "bob", "deploy-bot", "carol", "ops", "ci"][i % 6]
                    ),
                )
            })
            .collect();
        let roles = (0..12)
            .map(|i| {
                let a = accounts[rng.usize(..accounts.len())].clone();
                let name = if i == 0 {
                    "ResourceDirectoryAccountAccessRole".to_string()
                } else {
                    format!("{}-role", ["ci", "terraform", "oncall", "etl"][i % 4])
                };
                (
                    a,
                    format!("3{:017}", rng.u64(..100_000_000_000_000_000)),
                    name,
                )
            })
            .collect();
        let mut resources = Vec::new();
        for svc in SERVICES {
            let mut pool = Vec::new();
            for (k, kind) in svc.kinds.iter().enumerate() {
                let n = if k == 0 { 400 } else { 150 };
                for _ in 0..n {
                    let account = accounts[rng.usize(..accounts.len())].clone();
                    let region = REGIONS[rng.usize(..REGIONS.len())].to_string();
                    let id = format!(
                        "{}{}",
                        kind.3,
                        alnum(
                            &mut rng,
                            if kind.1 == "oss" || kind.1 == "ram" {
                                6
                            } else {
                                20
                            }
                        )
                    );
                    let tags = random_tags(&mut rng);
                    pool.push(Resource {
                        account,
                        region: if kind.1 == "ram" {
                            String::new()
                        } else {
                            region
                        },
                        resource_type: kind.0,
                        product: kind.1,
                        arn_type: kind.2,
                        id,
                        tags,
                    });
                }
            }
            resources.push(pool);
        }
        Generator {
            rng,
            accounts,
            users,
            roles,
            resources,
            seq: 0,
            base_time: 1_795_000_000, // 2026-11-18
        }
    }

    /// Every resource of the estate with at least one tag.
    pub fn tags_file(&self) -> TagsFile {
        TagsFile {
            resources: self
                .resources
                .iter()
                .flatten()
                .filter(|r| !r.tags.is_empty())
                .map(|r| TaggedResource {
                    arn: r.arn(),
                    tags: r.tags.clone(),
                })
                .collect(),
        }
    }

    pub fn accounts(&self) -> &[String] {
        &self.accounts
    }

    /// The next event, as minified JSON.
    /// The `eventTime` (unix seconds) of the event `next_event` returns next.
    pub fn next_time(&self) -> i64 {
        self.base_time + (self.seq / 20) as i64
    }

    pub fn next_event(&mut self) -> String {
        let time = self.next_time();
        self.seq += 1;
        let rng = &mut self.rng;
        let event_id = uuid(rng);
        let write = rng.f32() < 0.15;

        // 3 % console sign-ins: no resource.
        if rng.f32() < 0.03 {
            let (account, pid, user) = &self.users[rng.usize(..self.users.len())];
            return format!(
                concat!(
                    r#"{{"eventId":"{id}","eventVersion":"1","eventCategory":"Management","eventType":"ConsoleSignin","#,
                    r#""eventRW":"Write","eventName":"ConsoleSignin","eventSource":"signin.aliyun.com","serviceName":"AasSub","#,
                    r#""eventTime":"{t}","acsRegion":"cn-hangzhou","requestId":"{id}","sourceIpAddress":"{ip}","#,
                    r#""userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/537.36 Chrome/124.0","#,
                    r#""userIdentity":{{"type":"ram-user","accountId":"{a}","principalId":"{p}","userName":"{u}"}},"#,
                    r#""additionalEventData":{{"loginAccount":"{u}@{a}.onaliyun.com","mfaChecked":"{mfa}","callbackUrl":"https://home.console.aliyun.com/"}},"#,
                    r#""isGlobal":true,"errorCode":"","errorMessage":"success"}}"#
                ),
                id = event_id,
                t = iso(time),
                ip = ip(rng),
                a = account,
                p = pid,
                u = user,
                mfa = if rng.bool() { "true" } else { "false" },
            );
        }

        let s = rng.usize(..SERVICES.len());
        let svc = &SERVICES[s];
        let primary = self.resources[s][rng.usize(..self.resources[s].len())].clone();
        let mut touched = vec![primary.clone()];
        // ~20 % name more than one resource (same or another service).
        if rng.f32() < 0.2 {
            let extra = 1 + rng.usize(..3);
            for _ in 0..extra {
                let o = if rng.bool() {
                    s
                } else {
                    rng.usize(..SERVICES.len())
                };
                let mut r = self.resources[o][rng.usize(..self.resources[o].len())].clone();
                // Resources named together live in one account (and region).
                r.account = primary.account.clone();
                if !r.region.is_empty() {
                    r.region = primary.region.clone();
                }
                touched.push(r);
            }
        }
        let name = if write {
            svc.writes[rng.usize(..svc.writes.len())]
        } else {
            svc.reads[rng.usize(..svc.reads.len())]
        };
        let region = if primary.region.is_empty() {
            "cn-hangzhou".to_string()
        } else {
            primary.region.clone()
        };

        // The event is recorded in the account that owns the resource: the
        // caller is a user of that account or a role assumed into it.
        let a = &primary.account;
        let identity = match rng.u8(..100) {
            0..=59 => {
                let (_, p, u) = &self.users[rng.usize(..self.users.len())];
                format!(
                    r#"{{"type":"ram-user","accountId":"{a}","principalId":"{p}","userName":"{u}","accessKeyId":"LTAI5t{}"}}"#,
                    alnum(rng, 18)
                )
            }
            60..=89 => {
                let (_, rid, role) = &self.roles[rng.usize(..self.roles.len())];
                let session =
                    ["ci-pipeline", "terraform-apply", "oncall-42", "etl-nightly"][rng.usize(..4)];
                format!(
                    concat!(
                        r#"{{"type":"assumed-role","accountId":"{a}","principalId":"{rid}:{s}","userName":"{role}:{s}","#,
                        r#""accessKeyId":"STS.NT{k}","sessionContext":{{"attributes":{{"mfaAuthenticated":"false","creationDate":"{t}"}}}}}}"#
                    ),
                    a = a,
                    rid = rid,
                    s = session,
                    role = role,
                    k = alnum(rng, 20),
                    t = iso(time - 600)
                )
            }
            90..=94 => format!(
                r#"{{"type":"root-account","accountId":"{a}","principalId":"{a}","userName":"root"}}"#,
                a = primary.account
            ),
            _ => format!(r#"{{"type":"system","userName":"{}"}}"#, svc.source),
        };
        let system = identity.starts_with(r#"{"type":"system""#);
        let recipient = if system && rng.bool() {
            format!(r#""recipientAccountId":"{a}","#)
        } else {
            String::new()
        };
        // How the event names its resources (see the module doc).
        let shape = rng.u8(..100);
        let archive = shape < 15;
        let with_pair = (15..40).contains(&shape);

        // resourceType / resourceName: types joined by ';', ids of one type by ','.
        let mut by_type: Vec<(&str, Vec<&str>)> = Vec::new();
        for r in &touched {
            match by_type.iter_mut().find(|(t, _)| *t == r.resource_type) {
                Some((_, ids)) => {
                    if !ids.contains(&r.id.as_str()) {
                        ids.push(&r.id)
                    }
                }
                None => by_type.push((r.resource_type, vec![&r.id])),
            }
        }
        let resource_type: Vec<&str> = by_type.iter().map(|(t, _)| *t).collect();
        let resource_name: Vec<String> = by_type.iter().map(|(_, ids)| ids.join(",")).collect();
        let mut referenced = String::new();
        for (i, (t, ids)) in by_type.iter().enumerate() {
            if i > 0 {
                referenced.push(',');
            }
            // Some services write bare type names.
            let t = match *t {
                "ACS::VPC::VSwitch" | "ACS::ECS::SecurityGroup" if rng.bool() => {
                    t.rsplit("::").next().unwrap_or(t)
                }
                t => t,
            };
            let _ = write!(
                referenced,
                r#""{t}":[{}]"#,
                ids.iter()
                    .map(|id| format!(r#""{id}""#))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }

        // Error on ~3 % of calls.
        let (code, message) = if rng.u8(..100) < 3 {
            ("Forbidden.RAM", "User not authorized to operate on the specified resource, or this API doesn't support RAM.")
        } else {
            ("", "")
        };
        // Response size: log-normal-ish, so the median event is ~1.2 KB with a long tail.
        let padding = response_padding(rng);
        let rw = if archive {
            String::new()
        } else {
            format!(r#""eventRW":"{}","#, if write { "Write" } else { "Read" })
        };
        let pair = if with_pair {
            format!(
                r#""resourceType":"{}","resourceName":"{}","#,
                resource_type.join(";"),
                resource_name.join(";")
            )
        } else {
            String::new()
        };
        format!(
            concat!(
                r#"{{"eventId":"{id}","eventVersion":1,"eventCategory":"Management","eventType":"ApiCall","#,
                r#"{rw}"eventName":"{name}","eventSource":"{src}","eventTime":"{t}","#,
                r#""acsRegion":"{region}","serviceName":"{svc}","apiVersion":"{api}","sourceIpAddress":"{ip}","#,
                r#""userAgent":"{ua}","requestId":"{id}","isGlobal":{global},"userIdentity":{identity},{recipient}"#,
                r#""requestParameters":{{"RegionId":"{region}","ResourceId":"{rid}","AcsProduct":"{svc}","AcsHost":"{src}"}},"#,
                r#""responseElements":{{"RequestId":"{id}"{padding}}},"referencedResources":{{{referenced}}},"#,
                r#"{pair}"#,
                r#""additionalEventData":{{"Scheme":"https"}},"errorCode":"{code}","errorMessage":"{message}"}}"#
            ),
            id = event_id,
            rw = rw,
            name = name,
            src = svc.source,
            t = iso(time),
            region = region,
            svc = svc.name,
            api = svc.api_version,
            ip = ip(rng),
            ua = [
                "AlibabaCloud (Linux; amd64) Go/1.21.6 Core/1.62.700",
                "Terraform/1.7.5 terraform-provider-alicloud/1.220.1",
                "aliyun-cli/3.0.204",
                "AlibabaCloud-Python-SDK/2.16.1"
            ][rng.usize(..4)],
            global = svc.name == "Ram",
            identity = identity,
            rid = primary.id,
            padding = padding,
            referenced = referenced,
            recipient = recipient,
            pair = pair,
            code = code,
            message = message,
        )
    }
}

fn random_tags(rng: &mut fastrand::Rng) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    let n = match rng.u8(..100) {
        0..=19 => 0, // ~80 % tagged
        20..=49 => 1 + rng.usize(..3),
        50..=89 => 4 + rng.usize(..5),
        _ => 9 + rng.usize(..12),
    };
    if n == 0 {
        return tags;
    }
    tags.insert(
        "project".into(),
        PROJECTS[rng.usize(..PROJECTS.len())].into(),
    );
    if n > 1 {
        tags.insert("env".into(), ENVS[rng.usize(..ENVS.len())].into());
    }
    if n > 2 {
        tags.insert("team".into(), TEAMS[rng.usize(..TEAMS.len())].into());
    }
    for k in EXTRA_KEYS.iter().take(n.saturating_sub(3)) {
        tags.insert((*k).into(), format!("{k}-{}", rng.u16(..500)));
    }
    if rng.u8(..10) == 0 {
        tags.insert("acs:rm:rgId".into(), format!("rg-{}", alnum(rng, 14)));
    }
    tags
}

/// Extra response bytes: most events small, a tail of large ones.
fn response_padding(rng: &mut fastrand::Rng) -> String {
    let len = match rng.u8(..100) {
        0..=49 => rng.usize(0..120),
        50..=84 => rng.usize(120..900),
        85..=97 => rng.usize(900..3500),
        _ => rng.usize(3500..14000),
    };
    if len == 0 {
        return String::new();
    }
    let mut s = String::with_capacity(len + 40);
    s.push_str(r#","Items":{"Item":["#);
    let mut i = 0;
    while s.len() < len {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            r#"{{"Id":"{}","Status":"Running","Seq":{i}}}"#,
            alnum(rng, 12)
        );
        i += 1;
    }
    s.push_str("]}");
    s
}

fn alnum(rng: &mut fastrand::Rng, n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| CHARS[rng.usize(..CHARS.len())] as char)
        .collect()
}

fn uuid(rng: &mut fastrand::Rng) -> String {
    let a = rng.u128(..);
    let h = format!("{a:032X}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn ip(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        [203, 198, 100, 47][rng.usize(..4)],
        rng.u8(..),
        rng.u8(..),
        rng.u8(1..255)
    )
}

/// Unix seconds → `YYYY-MM-DDThh:mm:ssZ`.
pub fn iso(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events_and_tags() {
        let mut a = Generator::new(7);
        let mut b = Generator::new(7);
        for _ in 0..200 {
            assert_eq!(a.next_event(), b.next_event());
        }
        assert_eq!(a.tags_file(), b.tags_file());
        assert_ne!(
            Generator::new(8).next_event(),
            Generator::new(7).next_event()
        );
    }

    #[test]
    fn events_are_valid_json_with_the_expected_mix() {
        let mut g = Generator::new(1);
        let n = 5000;
        let mut sizes = Vec::with_capacity(n);
        let mut writes = 0;
        let mut multi = 0;
        let (mut pairs, mut archive) = (0, 0);
        for _ in 0..n {
            let e = g.next_event();
            sizes.push(e.len());
            let v: serde_json::Value = serde_json::from_str(&e).expect("valid JSON");
            if is_write(&v) {
                writes += 1;
            }
            let referenced = v["referencedResources"].as_object();
            if referenced.is_some_and(|m| {
                m.len() > 1 || m.values().any(|ids| ids.as_array().unwrap().len() > 1)
            }) {
                multi += 1;
            }
            if v["eventType"] == "ApiCall" {
                assert!(referenced.is_some(), "every API call names its resources");
            }
            if v.get("resourceName").is_some() {
                pairs += 1;
            }
            if v.get("eventRW").is_none() {
                archive += 1;
                assert!(v.get("resourceName").is_none(), "archives predate the pair");
            }
            assert!(v["eventId"].is_string() && v["userIdentity"]["type"].is_string());
        }
        sizes.sort();
        let median = sizes[n / 2];
        assert!((900..=1600).contains(&median), "median {median}");
        assert!(sizes[n * 99 / 100] > 3000, "a tail of large events");
        let w = writes as f64 / n as f64;
        assert!((0.10..0.25).contains(&w), "write ratio {w}");
        assert!(multi > n / 20, "some events name several resources");
        let (p, a) = (pairs as f64 / n as f64, archive as f64 / n as f64);
        assert!(
            (0.18..0.32).contains(&p),
            "resourceType/resourceName pair on {p}"
        );
        assert!((0.10..0.20).contains(&a), "archive-shaped {a}");
    }

    #[test]
    fn events_name_the_account_and_region_their_resources_live_in() {
        let mut g = Generator::new(5);
        let arns: std::collections::HashSet<String> =
            g.resources.iter().flatten().map(|r| r.arn()).collect();
        let (mut found, mut total) = (0, 0);
        for _ in 0..2000 {
            let v: serde_json::Value = serde_json::from_str(&g.next_event()).unwrap();
            let Some((t, ids)) = v["referencedResources"]
                .as_object()
                .and_then(|m| m.iter().next())
            else {
                continue;
            };
            let Some(account) = v["recipientAccountId"]
                .as_str()
                .or(v["userIdentity"]["accountId"].as_str())
            else {
                assert_eq!(v["userIdentity"]["type"], "system");
                continue;
            };
            let region = v["acsRegion"].as_str().unwrap();
            let kind = SERVICES
                .iter()
                .flat_map(|s| s.kinds.iter())
                .find(|k| k.0 == t || k.0.ends_with(&format!("::{t}")))
                .unwrap();
            let id = ids[0].as_str().unwrap();
            let arn = if kind.1 == "ram" {
                format!("acs:ram::{account}:{}/{id}", kind.2)
            } else {
                format!("arn:acs:{}:{region}:{account}:{}/{id}", kind.1, kind.2)
            };
            total += 1;
            found += arns.contains(&arn) as usize;
        }
        assert!(
            found as f64 > total as f64 * 0.9,
            "{found} of {total} primary resources resolvable"
        );
    }

    #[test]
    fn about_eighty_percent_of_resources_are_tagged() {
        let g = Generator::new(3);
        let total: usize = g.resources.iter().map(Vec::len).sum();
        let tagged = g.tags_file().resources.len();
        let ratio = tagged as f64 / total as f64;
        assert!((0.7..0.9).contains(&ratio), "{ratio}");
        assert!(g
            .tags_file()
            .resources
            .iter()
            .all(|r| r.tags.contains_key("project")));
    }

    #[test]
    fn iso_times() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_715_653_867), "2024-05-14T02:31:07Z");
    }
}
