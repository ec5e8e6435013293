//! AWS CloudTrail as AWS delivers it: log files of `{"Records":[…]}`,
//! gzip'd, one per (account, region) and delivery window, under the real
//! key layout (events notes §4.2):
//! `[prefix/]AWSLogs/[o-org/]{account}/CloudTrail/{region}/YYYY/MM/DD/{account}_CloudTrail_{region}_YYYYMMDDTHHmmZ_{16 chars}.json.gz`.
//!
//! Records (§4.1): `eventVersion` 1.08–1.11, the `userIdentity` types a
//! trail carries (IAM users, assumed roles with their session issuer, root,
//! AWS services, federated users, Identity Center users), management API
//! calls of EC2, S3, IAM, RDS and Lambda (~20 % writes, `readOnly` set on
//! every one), `resources[]` on ~40 % (else the resource is named only in
//! `requestParameters`, as it often is), errors on ~3 %, `tlsDetails`,
//! records not in time order within a file. Resources live in the estate
//! with tags (~80 % tagged), served by `trail-devstack cloud` through
//! `GetResources` from the tags file. Deterministic by seed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use super::{alnum, ip, iso, random_tags, uuid, TaggedResource, TagsFile};

const REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"];

/// One AWS resource of the estate.
#[derive(Debug, Clone)]
struct AwsResource {
    kind: Kind,
    account: String,
    region: String,
    id: String,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Instance,
    Bucket,
    Role,
    Db,
    Function,
}

impl AwsResource {
    fn arn(&self) -> String {
        let (a, r, id) = (&self.account, &self.region, &self.id);
        match self.kind {
            Kind::Instance => format!("arn:aws:ec2:{r}:{a}:instance/{id}"),
            Kind::Bucket => format!("arn:aws:s3:::{id}"),
            Kind::Role => format!("arn:aws:iam::{a}:role/{id}"),
            Kind::Db => format!("arn:aws:rds:{r}:{a}:db:{id}"),
            Kind::Function => format!("arn:aws:lambda:{r}:{a}:function:{id}"),
        }
    }
    fn cfn_type(&self) -> &'static str {
        match self.kind {
            Kind::Instance => "AWS::EC2::Instance",
            Kind::Bucket => "AWS::S3::Bucket",
            Kind::Role => "AWS::IAM::Role",
            Kind::Db => "AWS::RDS::DBInstance",
            Kind::Function => "AWS::Lambda::Function",
        }
    }
}

/// (event source, kind, writes, reads)
const APIS: &[(&str, Kind, &[&str], &[&str])] = &[
    (
        "ec2.amazonaws.com",
        Kind::Instance,
        &[
            "RunInstances",
            "StopInstances",
            "StartInstances",
            "TerminateInstances",
            "ModifyInstanceAttribute",
            "CreateTags",
        ],
        &["DescribeInstances", "DescribeInstanceStatus"],
    ),
    (
        "s3.amazonaws.com",
        Kind::Bucket,
        &[
            "CreateBucket",
            "PutBucketPolicy",
            "DeleteBucketPolicy",
            "PutBucketEncryption",
            "PutBucketTagging",
        ],
        &["GetBucketAcl", "GetBucketLocation", "ListBuckets"],
    ),
    (
        "iam.amazonaws.com",
        Kind::Role,
        &[
            "CreateRole",
            "AttachRolePolicy",
            "PutRolePolicy",
            "UpdateAssumeRolePolicy",
            "DeleteRole",
        ],
        &["GetRole", "ListAttachedRolePolicies"],
    ),
    (
        "rds.amazonaws.com",
        Kind::Db,
        &["ModifyDBInstance", "RebootDBInstance", "CreateDBSnapshot"],
        &["DescribeDBInstances"],
    ),
    (
        "lambda.amazonaws.com",
        Kind::Function,
        &[
            "UpdateFunctionCode20150331v2",
            "UpdateFunctionConfiguration20150331v2",
            "AddPermission20150331v2",
        ],
        &["GetFunction20150331v2", "ListFunctions20150331"],
    ),
];

/// A generated log file.
pub struct LogFile {
    pub key: String,
    pub account: String,
    pub region: String,
    /// The records' JSON, one per record, in the file's order.
    pub records: Vec<String>,
    /// The object: gzip'd `{"Records":[…]}`.
    pub gzip: Vec<u8>,
}

pub struct CloudTrailGenerator {
    rng: fastrand::Rng,
    accounts: Vec<String>,
    /// (account, user name, principal id)
    users: Vec<(String, String, String)>,
    /// (account, role name, role id)
    roles: Vec<(String, String, String)>,
    resources: Vec<AwsResource>,
    org: Option<String>,
    prefix: String,
    time: i64,
}

impl CloudTrailGenerator {
    pub fn new(seed: u64) -> CloudTrailGenerator {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0xC10D_7EA1);
        let accounts: Vec<String> = (0..4)
            .map(|_| format!("{:012}", rng.u64(100_000_000_000..1_000_000_000_000)))
            .collect();
        let users = (0..24)
            .map(|i| {
                let a = accounts[rng.usize(..accounts.len())].clone();
                let name = format!(
                    "{}-{i:02}",
                    ["alice", "bob", "deploy-bot", "carol", "ops", "ci"][i % 6]
                );
                (
                    a,
                    name,
                    format!("AIDA{}", alnum(&mut rng, 17).to_uppercase()),
                )
            })
            .collect();
        let roles = (0..8)
            .map(|i| {
                let a = accounts[rng.usize(..accounts.len())].clone();
                let name = [
                    "OrganizationAccountAccessRole",
                    "ci-deploy",
                    "terraform",
                    "oncall",
                ][i % 4]
                    .to_owned();
                (
                    a,
                    name,
                    format!("AROA{}", alnum(&mut rng, 17).to_uppercase()),
                )
            })
            .collect();
        let mut resources = Vec::new();
        for (kind, n) in [
            (Kind::Instance, 600),
            (Kind::Bucket, 200),
            (Kind::Role, 120),
            (Kind::Db, 120),
            (Kind::Function, 160),
        ] {
            for i in 0..n {
                let account = accounts[rng.usize(..accounts.len())].clone();
                let region = if kind == Kind::Role || kind == Kind::Bucket {
                    "us-east-1".to_owned()
                } else {
                    REGIONS[rng.usize(..REGIONS.len())].to_owned()
                };
                let id = match kind {
                    Kind::Instance => format!("i-0{}", alnum(&mut rng, 16)),
                    Kind::Bucket => format!("trail-{}-{i}", alnum(&mut rng, 8)),
                    Kind::Role => format!("svc-{}-{i}", alnum(&mut rng, 6)),
                    Kind::Db => format!("db-{}-{i}", alnum(&mut rng, 6)),
                    Kind::Function => format!("fn-{}-{i}", alnum(&mut rng, 6)),
                };
                let tags = random_tags(&mut rng);
                resources.push(AwsResource {
                    kind,
                    account,
                    region,
                    id,
                    tags,
                });
            }
        }
        CloudTrailGenerator {
            rng,
            accounts,
            users,
            roles,
            resources,
            org: None,
            prefix: String::new(),
            time: 1_795_000_000,
        }
    }

    /// An organization trail: keys carry the org id after `AWSLogs/`.
    pub fn organization(mut self, org: &str) -> Self {
        self.org = Some(org.to_owned());
        self
    }

    /// The trail's S3 key prefix.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.trim_matches('/').to_owned();
        self
    }

    pub fn accounts(&self) -> &[String] {
        &self.accounts
    }

    /// Every tagged resource, as `trail-devstack cloud --tags` reads it.
    pub fn tags_file(&self) -> TagsFile {
        TagsFile {
            resources: self
                .resources
                .iter()
                .filter(|r| !r.tags.is_empty())
                .map(|r| TaggedResource {
                    arn: r.arn(),
                    tags: r.tags.clone(),
                })
                .collect(),
        }
    }

    /// The next log file of `records` records; each file advances the
    /// trail's clock by five minutes.
    pub fn next_file(&mut self, records: usize) -> LogFile {
        let account = self.accounts[self.rng.usize(..self.accounts.len())].clone();
        let region = REGIONS[self.rng.usize(..REGIONS.len())];
        let delivered = self.time + 300;
        let mut recs: Vec<(i64, String)> = (0..records)
            .map(|_| {
                let t = self.time + self.rng.i64(0..300);
                (t, self.record(&account, region, t))
            })
            .collect();
        // Not in time order within a file, as AWS writes them.
        self.rng.shuffle(&mut recs);
        self.time = delivered;
        let stamp = iso(delivered);
        let (day, hm) = (&stamp[..10], stamp[11..16].replace(':', ""));
        let compact = format!("{}T{hm}Z", day.replace('-', ""));
        let mut key = String::new();
        if !self.prefix.is_empty() {
            let _ = write!(key, "{}/", self.prefix);
        }
        key.push_str("AWSLogs/");
        if let Some(o) = &self.org {
            let _ = write!(key, "{o}/");
        }
        let _ = write!(
            key,
            "{account}/CloudTrail/{region}/{}/{account}_CloudTrail_{region}_{compact}_{}.json.gz",
            day.replace('-', "/"),
            alnum(&mut self.rng, 16).to_uppercase()
        );
        let records: Vec<String> = recs.into_iter().map(|(_, r)| r).collect();
        let body = format!("{{\"Records\":[{}]}}", records.join(","));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.as_bytes()).expect("writing to a Vec");
        LogFile {
            key,
            account,
            region: region.to_owned(),
            records,
            gzip: gz.finish().expect("writing to a Vec"),
        }
    }

    fn identity(&mut self, account: &str) -> String {
        let rng = &mut self.rng;
        let key = format!("AKIA{}", alnum(rng, 16).to_uppercase());
        match rng.u8(..100) {
            0..=39 => {
                let (a, name, pid) = self.users[rng.usize(..self.users.len())].clone();
                let a = if rng.bool() { account.to_owned() } else { a };
                format!(
                    r#"{{"type":"IAMUser","principalId":"{pid}","arn":"arn:aws:iam::{a}:user/{name}","accountId":"{a}","accessKeyId":"{key}","userName":"{name}"}}"#
                )
            }
            40..=79 => {
                let (a, role, rid) = self.roles[rng.usize(..self.roles.len())].clone();
                let a = if rng.bool() { account.to_owned() } else { a };
                let session = [
                    "ci-build",
                    "alice@example.com",
                    "terraform-run",
                    "i-0session",
                ][rng.usize(..4)];
                let mfa = rng.bool();
                format!(
                    r#"{{"type":"AssumedRole","principalId":"{rid}:{session}","arn":"arn:aws:sts::{a}:assumed-role/{role}/{session}","accountId":"{a}","accessKeyId":"ASIA{}","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"{rid}","arn":"arn:aws:iam::{a}:role/{role}","accountId":"{a}","userName":"{role}"}},"attributes":{{"creationDate":"{}","mfaAuthenticated":"{mfa}"}}}}}}"#,
                    alnum(rng, 16).to_uppercase(),
                    iso(self.time - 600)
                )
            }
            80..=84 => format!(
                r#"{{"type":"Root","principalId":"{account}","arn":"arn:aws:iam::{account}:root","accountId":"{account}","accessKeyId":"{key}"}}"#
            ),
            85..=94 => {
                let svc = [
                    "cloudformation.amazonaws.com",
                    "autoscaling.amazonaws.com",
                    "config.amazonaws.com",
                ][rng.usize(..3)];
                format!(r#"{{"type":"AWSService","invokedBy":"{svc}"}}"#)
            }
            95..=97 => format!(
                r#"{{"type":"FederatedUser","principalId":"{account}:federated-ops","arn":"arn:aws:sts::{account}:federated-user/federated-ops","accountId":"{account}","accessKeyId":"ASIA{}","sessionContext":{{"sessionIssuer":{{"type":"IAMUser","principalId":"AIDAFEDERATOR","arn":"arn:aws:iam::{account}:user/federator","accountId":"{account}","userName":"federator"}},"attributes":{{"creationDate":"{}","mfaAuthenticated":"false"}}}}}}"#,
                alnum(rng, 16).to_uppercase(),
                iso(self.time - 900)
            ),
            _ => format!(
                r#"{{"type":"IdentityCenterUser","accountId":"{account}","onBehalfOf":{{"userId":"{}","identityStoreArn":"arn:aws:identitystore::{account}:identitystore/d-{}"}},"credentialId":"{}"}}"#,
                uuid(rng).to_lowercase(),
                alnum(rng, 10),
                alnum(rng, 20)
            ),
        }
    }

    fn record(&mut self, account: &str, region: &str, time: i64) -> String {
        let identity = self.identity(account);
        let rng = &mut self.rng;
        let (source, kind, writes, reads) = APIS[rng.usize(..APIS.len())];
        let write = rng.u8(..100) < 20;
        let name = if write {
            writes[rng.usize(..writes.len())]
        } else {
            reads[rng.usize(..reads.len())]
        };
        // A resource of that kind in this account and region when there is one.
        let here: Vec<usize> = (0..self.resources.len())
            .filter(|&i| {
                let r = &self.resources[i];
                r.kind == kind
                    && r.account == account
                    && (r.region == region || kind == Kind::Role || kind == Kind::Bucket)
            })
            .collect();
        let res = (!here.is_empty()).then(|| self.resources[here[rng.usize(..here.len())]].clone());
        let global = kind == Kind::Role;
        let region = if global { "us-east-1" } else { region };
        let params = match (&res, kind) {
            (Some(r), Kind::Instance) => format!(
                r#"{{"instancesSet":{{"items":[{{"instanceId":"{}"}}]}}}}"#,
                r.id
            ),
            (Some(r), Kind::Bucket) => format!(
                r#"{{"bucketName":"{}","Host":"{}.s3.amazonaws.com"}}"#,
                r.id, r.id
            ),
            (Some(r), Kind::Role) => format!(r#"{{"roleName":"{}"}}"#, r.id),
            (Some(r), Kind::Db) => format!(r#"{{"dBInstanceIdentifier":"{}"}}"#, r.id),
            (Some(r), Kind::Function) => format!(r#"{{"functionName":"{}"}}"#, r.id),
            (None, _) => "null".to_owned(),
        };
        let resources = match &res {
            Some(r) if rng.u8(..100) < 40 => format!(
                r#""resources":[{{"accountId":"{}","type":"{}","ARN":"{}"}}],"#,
                r.account,
                r.cfn_type(),
                r.arn()
            ),
            _ => String::new(),
        };
        let error = if rng.u8(..100) < 3 {
            r#","errorCode":"AccessDenied","errorMessage":"User is not authorized to perform this operation""#
        } else {
            ""
        };
        let response = if write && error.is_empty() && rng.bool() {
            format!(
                r#"{{"requestId":"{}","_return":true}}"#,
                uuid(rng).to_lowercase()
            )
        } else {
            "null".to_owned()
        };
        let version = ["1.08", "1.09", "1.10", "1.11", "1.11", "1.11"][rng.usize(..6)];
        let agent = [
            "aws-cli/2.22.4 md/Botocore#1.35.70 ua/2.0 os/linux#6.8",
            "Boto3/1.35.70 md/Botocore#1.35.70 ua/2.0 os/linux#6.8",
            "AWS Internal",
            "console.amazonaws.com",
            "aws-sdk-go-v2/1.32.5 os/linux lang/go#1.23",
        ][rng.usize(..5)];
        let tls = if agent == "AWS Internal" {
            String::new()
        } else {
            format!(
                r#","tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"{}.{region}.amazonaws.com"}}"#,
                source.split('.').next().unwrap_or("ec2")
            )
        };
        format!(
            r#"{{"eventVersion":"{version}","userIdentity":{identity},"eventTime":"{}","eventSource":"{source}","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{}","userAgent":"{agent}"{error},"requestParameters":{params},"responseElements":{response},"requestID":"{}","eventID":"{}","readOnly":{},{resources}"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management"{tls}}}"#,
            iso(time),
            ip(rng),
            uuid(rng).to_lowercase(),
            uuid(rng).to_lowercase(),
            !write,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn files_are_gzip_records_under_the_real_key_layout() {
        let mut g = CloudTrailGenerator::new(7)
            .organization("o-a1b2c3d4e5")
            .prefix("trail/");
        let f = g.next_file(50);
        let re = format!(
            "trail/AWSLogs/o-a1b2c3d4e5/{}/CloudTrail/{}/",
            f.account, f.region
        );
        assert!(f.key.starts_with(&re), "{}", f.key);
        assert!(f.key.ends_with(".json.gz"));
        let name = f.key.rsplit('/').next().unwrap();
        assert!(
            name.starts_with(&format!("{}_CloudTrail_{}_", f.account, f.region)),
            "{name}"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&f.gzip[..])
            .read_to_string(&mut text)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let recs = v["Records"].as_array().unwrap();
        assert_eq!(recs.len(), 50);
        for r in recs {
            assert_eq!(r["recipientAccountId"], f.account.as_str());
            assert!(r["readOnly"].is_boolean());
            assert!(r["eventID"].is_string() && r["userIdentity"]["type"].is_string());
        }
        assert!(recs.iter().any(|r| r["resources"].is_array()));
        let times: Vec<&str> = recs
            .iter()
            .map(|r| r["eventTime"].as_str().unwrap())
            .collect();
        assert!(
            times.windows(2).any(|w| w[0] > w[1]),
            "records are not in time order"
        );
    }

    #[test]
    fn same_seed_same_files() {
        let a = CloudTrailGenerator::new(3).next_file(10);
        let b = CloudTrailGenerator::new(3).next_file(10);
        assert_eq!((a.key, a.records), (b.key, b.records));
    }
}
