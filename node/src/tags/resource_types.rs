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

/// The resource-type table with the bare names some events write in
/// `referencedResources` (`VSwitch`, `SecurityGroup`, `Instance`): a bare
/// name resolves to the full type of the event's service ending in it
/// (`serviceName` `Slb` + `LoadBalancer` → `ACS::SLB::LoadBalancer`), else
/// to the one full type ending in it (an ECS event's `VSwitch` is a VPC
/// vSwitch); several and none of the service's, it stays unresolved. A
/// wrong guess costs nothing worse than a lookup that finds no tags: ids
/// carry their product's prefix (`i-`, `vsw-`, `rm-`).
#[derive(Debug, Clone, Default)]
pub struct ResourceTypes {
    kinds: HashMap<String, ResourceKind>,
    /// lower-cased last segment → full types ending in it.
    bare: HashMap<String, Vec<String>>,
}

impl From<HashMap<String, ResourceKind>> for ResourceTypes {
    fn from(kinds: HashMap<String, ResourceKind>) -> Self {
        let mut bare: HashMap<String, Vec<String>> = HashMap::new();
        for t in kinds.keys() {
            if let Some(last) = t.rsplit("::").next().filter(|_| t.contains("::")) {
                bare.entry(last.to_ascii_lowercase())
                    .or_default()
                    .push(t.clone());
            }
        }
        for v in bare.values_mut() {
            v.sort();
        }
        ResourceTypes { kinds, bare }
    }
}

impl ResourceTypes {
    /// The full type and its Tag-service kind for a type as written, or
    /// `None` when the table does not know it.
    pub fn resolve<'t>(
        &'t self,
        written: &str,
        service: Option<&str>,
    ) -> Option<(&'t str, &'t ResourceKind)> {
        if let Some((t, k)) = self.kinds.get_key_value(written) {
            return Some((t.as_str(), k));
        }
        let full = if written.contains("::") {
            // Full but differently cased (`ACS::Ecs::Instance`).
            self.kinds
                .keys()
                .find(|t| t.eq_ignore_ascii_case(written))?
        } else {
            let candidates = self.bare.get(&written.to_ascii_lowercase())?;
            let of_service = service.and_then(|svc| {
                candidates.iter().find(|t| {
                    t.split("::")
                        .nth(1)
                        .is_some_and(|p| p.eq_ignore_ascii_case(svc))
                })
            });
            match (of_service, candidates.as_slice()) {
                (Some(t), _) => t,
                (None, [one]) => one,
                _ => return None,
            }
        };
        self.kinds.get_key_value(full).map(|(t, k)| (t.as_str(), k))
    }

    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
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

    #[test]
    fn bare_type_names_resolve_to_full_types() {
        let t = ResourceTypes::from(builtin());
        let full = |w: &str, svc: Option<&str>| t.resolve(w, svc).map(|(full, _)| full);
        assert_eq!(full("ACS::ECS::Instance", None), Some("ACS::ECS::Instance"));
        assert_eq!(full("VSwitch", None), Some("ACS::VPC::VSwitch"));
        assert_eq!(
            full("SecurityGroup", Some("Ecs")),
            Some("ACS::ECS::SecurityGroup")
        );
        assert_eq!(full("securitygroup", None), Some("ACS::ECS::SecurityGroup"));
        // Ambiguous names need the event's service.
        assert_eq!(full("LoadBalancer", None), None);
        assert_eq!(full("Instance", Some("Ecs")), Some("ACS::ECS::Instance"));
        assert_eq!(
            full("Instance", None),
            Some("ACS::ECS::Instance"),
            "one type ends in it"
        );
        assert_eq!(full("VSwitch", Some("Ecs")), Some("ACS::VPC::VSwitch"));
        assert_eq!(
            full("LoadBalancer", Some("Ecs")),
            None,
            "two, neither ECS's"
        );
        assert_eq!(
            full("LoadBalancer", Some("Slb")),
            Some("ACS::SLB::LoadBalancer")
        );
        assert_eq!(
            full("LoadBalancer", Some("Alb")),
            Some("ACS::ALB::LoadBalancer")
        );
        assert_eq!(
            full("DBInstance", Some("Rds")),
            Some("ACS::RDS::DBInstance")
        );
        assert_eq!(full("ACS::Ecs::Instance", None), Some("ACS::ECS::Instance"));
        assert_eq!(full("ACS::Foo::Bar", None), None);
        assert_eq!(full("Gadget", Some("Ecs")), None);
        assert_eq!(full("", None), None);
    }
}
