//! ActionTrail resource types → the Tag service's product and resource type,
//! so an event's `ACS::ECS::Instance` + `i-1` becomes
//! `arn:acs:ecs:{region}:{account}:instance/i-1`. Extensible from config.

use std::collections::HashMap;

/// A product/type pair of the Tag service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceKind {
    pub product: String,
    pub arn_type: String,
    /// Global resources (RAM) carry no region in their ARN.
    pub global: bool,
}

/// The built-in table: ECS, SLB, VPC, OSS, RAM, RDS, KMS and friends.
pub fn builtin() -> HashMap<String, ResourceKind> {
    let rows: &[(&str, &str, &str, bool)] = &[
        ("ACS::ECS::Instance", "ecs", "instance", false),
        ("ACS::ECS::Disk", "ecs", "disk", false),
        ("ACS::ECS::SecurityGroup", "ecs", "securitygroup", false),
        ("ACS::ECS::Image", "ecs", "image", false),
        ("ACS::ECS::Snapshot", "ecs", "snapshot", false),
        ("ACS::ECS::NetworkInterface", "ecs", "eni", false),
        ("ACS::ECS::KeyPair", "ecs", "keypair", false),
        ("ACS::SLB::LoadBalancer", "slb", "instance", false),
        ("ACS::SLB::Certificate", "slb", "certificate", false),
        ("ACS::ALB::LoadBalancer", "alb", "loadbalancer", false),
        ("ACS::VPC::VPC", "vpc", "vpc", false),
        ("ACS::VPC::VSwitch", "vpc", "vswitch", false),
        ("ACS::VPC::EIP", "vpc", "eip", false),
        ("ACS::VPC::NatGateway", "vpc", "natgateway", false),
        ("ACS::VPC::RouteTable", "vpc", "routetable", false),
        ("ACS::OSS::Bucket", "oss", "bucket", false),
        ("ACS::RAM::User", "ram", "user", true),
        ("ACS::RAM::Role", "ram", "role", true),
        ("ACS::RDS::DBInstance", "rds", "dbinstance", false),
        ("ACS::KMS::Key", "kms", "key", false),
        ("ACS::KMS::Secret", "kms", "secret", false),
        ("ACS::SLS::Project", "log", "project", false),
        ("ACS::CS::Cluster", "cs", "cluster", false),
        ("ACS::Redis::DBInstance", "kvstore", "instance", false),
        ("ACS::PolarDB::DBCluster", "polardb", "cluster", false),
    ];
    rows.iter()
        .map(|(t, p, a, g)| {
            (
                (*t).to_owned(),
                ResourceKind {
                    product: (*p).to_owned(),
                    arn_type: (*a).to_owned(),
                    global: *g,
                },
            )
        })
        .collect()
}

/// `arn:acs:{product}:{region}:{account}:{type}/{id}`, or for global kinds
/// `acs:ram::{account}:{type}/{id}`.
pub fn arn_parts(kind: &ResourceKind, region: &str, account: &str, id: &str) -> String {
    let mut s = String::new();
    arn_into(&mut s, kind, region, account, id);
    s
}

/// [`arn_parts`] into a reused buffer (cleared first).
pub fn arn_into(out: &mut String, kind: &ResourceKind, region: &str, account: &str, id: &str) {
    out.clear();
    if !kind.global {
        out.push_str("arn:");
    }
    out.push_str("acs:");
    out.push_str(&kind.product);
    out.push(':');
    if !kind.global {
        out.push_str(region);
    }
    out.push(':');
    out.push_str(account);
    out.push(':');
    out.push_str(&kind.arn_type);
    out.push('/');
    out.push_str(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        let t = builtin();
        assert_eq!(
            arn_parts(&t["ACS::ECS::Instance"], "cn-hangzhou", "123", "i-1"),
            "arn:acs:ecs:cn-hangzhou:123:instance/i-1"
        );
        assert_eq!(
            arn_parts(&t["ACS::RAM::User"], "cn-hangzhou", "123", "bob"),
            "acs:ram::123:user/bob"
        );
    }
}
