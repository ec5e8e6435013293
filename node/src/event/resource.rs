//! The resources an event touched, from every place a trail names them.
//!
//! ActionTrail: `referencedResources`, a map from resource type to ids
//! (`{"ACS::ECS::Instance":["i-a"]}`; some services write bare type names
//! such as `VSwitch`, which the enricher maps to full types); and, since
//! 2020-12-16, `resourceType` listing types separated by `;` with
//! `resourceName` listing, in the same order, each type's ids separated by
//! `,` (`ACS::ECS::Instance;ACS::VPC::VPC` with `i-a,i-b;vpc-x`).
//! CloudTrail: `resources[]` with an ARN each. The same resource named in
//! two places is one reference (the first place wins); an id that is itself
//! an ARN (`acs:ram::123:role/x`) gives the reference its ARN and account.

use crate::event::AuditEvent;

/// Which field of the event named a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceField {
    ReferencedResources,
    ResourceName,
    Resources,
}

impl ResourceField {
    pub const ALL: [ResourceField; 3] = [
        ResourceField::ReferencedResources,
        ResourceField::ResourceName,
        ResourceField::Resources,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceField::ReferencedResources => "referencedResources",
            ResourceField::ResourceName => "resourceName",
            ResourceField::Resources => "resources",
        }
    }
}

/// One resource reference, borrowed from its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceRef<'e> {
    /// `ACS::ECS::Instance`, `AWS::EC2::Instance`, or a bare `VSwitch` as
    /// written; empty when unknown.
    pub resource_type: &'e str,
    pub id: &'e str,
    /// The full ARN when the trail gave one (CloudTrail, or an ARN as id).
    pub arn: Option<&'e str>,
    /// The owning account when the reference itself says (CloudTrail
    /// `resources[].accountId`, an ARN's account field).
    pub account: Option<&'e str>,
    pub field: ResourceField,
}

impl ResourceRef<'_> {
    fn same(&self, o: &ResourceRef<'_>) -> bool {
        self.id == o.id && self.resource_type == o.resource_type
    }
}

/// The account field of an ARN (`arn:acs:ecs:cn-hangzhou:123:instance/i-1`,
/// `acs:ram::123:role/x`, `arn:aws:ec2:us-east-1:123:instance/i-1`).
pub fn arn_account(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:").unwrap_or(arn);
    let mut parts = rest.splitn(5, ':');
    let (_partition, _service, _region) = (parts.next()?, parts.next()?, parts.next()?);
    let account = parts.next()?;
    parts.next()?;
    Some(account).filter(|a| !a.is_empty())
}

/// `str::trim`, without its per-char Unicode walk when neither end can be
/// whitespace (the usual id).
#[inline]
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

fn is_arn(s: &str) -> bool {
    s.starts_with("acs:") || s.starts_with("arn:")
}

fn last_part(arn: &str) -> &str {
    arn.rsplit(['/', ':'])
        .find(|p| !p.is_empty())
        .unwrap_or(arn)
}

/// Appends the event's references to `out` (cleared first): one vector
/// reused for every event of a batch.
pub(crate) fn refs_into<'e>(e: &'e AuditEvent<'_>, out: &mut Vec<ResourceRef<'e>>) {
    out.clear();
    let mut push = |t: &'e str, id: &'e str, field: ResourceField| {
        let id = trim(id);
        if id.is_empty() {
            return;
        }
        let r = if is_arn(id) {
            ResourceRef {
                resource_type: t,
                id: last_part(id),
                arn: Some(id),
                account: arn_account(id),
                field,
            }
        } else {
            ResourceRef {
                resource_type: t,
                id,
                arn: None,
                account: None,
                field,
            }
        };
        if !out.iter().any(|o| o.same(&r)) {
            out.push(r);
        }
    };
    for (t, ids) in &e.referenced {
        for id in ids {
            push(trim(t), id, ResourceField::ReferencedResources);
        }
    }
    if let (Some(types), Some(names)) = (e.resource_type.as_deref(), e.resource_name.as_deref()) {
        for (t, ids) in types.split(';').zip(names.split(';')) {
            for id in ids.split(',') {
                push(trim(t), id, ResourceField::ResourceName);
            }
        }
    }
    for a in &e.arns {
        let r = ResourceRef {
            resource_type: a.kind.as_deref().unwrap_or(""),
            id: last_part(&a.arn),
            arn: Some(&a.arn),
            account: a.account.as_deref().or_else(|| arn_account(&a.arn)),
            field: ResourceField::Resources,
        };
        if !out.iter().any(|o| o.same(&r)) {
            out.push(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::event::parse;

    #[test]
    fn types_and_names_pair_by_position() {
        let e = parse(br#"{"eventId":"x","acsRegion":"r","resourceType":"ACS::SLB::LoadBalancer;ACS::ECS::Instance",
            "resourceName":"lb-1;i-a,i-b , i-a"}"#).unwrap();
        let r: Vec<(&str, &str)> = e
            .resources()
            .iter()
            .map(|r| (r.resource_type, r.id))
            .collect();
        assert_eq!(
            r,
            vec![
                ("ACS::SLB::LoadBalancer", "lb-1"),
                ("ACS::ECS::Instance", "i-a"),
                ("ACS::ECS::Instance", "i-b"),
            ]
        );
    }

    #[test]
    fn missing_or_uneven_lists_do_not_panic() {
        let e =
            parse(br#"{"eventId":"x","acsRegion":"r","resourceType":"A;B;C","resourceName":"1"}"#)
                .unwrap();
        assert_eq!(e.resources().len(), 1);
        let e = parse(br#"{"eventId":"x","acsRegion":"r","resourceName":"1"}"#).unwrap();
        assert!(e.resources().is_empty());
        let e =
            parse(br#"{"eventId":"x","acsRegion":"r","resourceType":"A","resourceName":";;,,"}"#)
                .unwrap();
        assert!(e.resources().is_empty());
    }

    #[test]
    fn cloudtrail_arns() {
        let e = parse(br#"{"eventID":"x","awsRegion":"us-east-1","resources":[{"ARN":"arn:aws:s3:::my-bucket","type":"AWS::S3::Bucket"},
            {"ARN":"arn:aws:ec2:us-east-1:1:instance/i-9"}]}"#).unwrap();
        let r = e.resources();
        assert_eq!(
            (r[0].id, r[0].resource_type),
            ("my-bucket", "AWS::S3::Bucket")
        );
        assert_eq!(
            (r[1].id, r[1].arn, r[1].account),
            (
                "i-9",
                Some("arn:aws:ec2:us-east-1:1:instance/i-9"),
                Some("1")
            )
        );
        assert!(r.iter().all(|r| r.field == super::ResourceField::Resources));
    }

    #[test]
    fn referenced_resources_come_first_and_repeat_nothing() {
        // The shape of a current event: referencedResources plus the older
        // pair naming the same resources; a bare type name; a type with two ids.
        let e = parse(br#"{"eventId":"x","acsRegion":"cn-hangzhou","serviceName":"Vpc",
            "referencedResources":{"ACS::VPC::VPC":["vpc-1"],"VSwitch":["vsw-1","vsw-2"],"ACS::Foo::Bar":["f-1"]},
            "resourceType":"ACS::VPC::VPC;VSwitch","resourceName":"vpc-1;vsw-2,vsw-3"}"#).unwrap();
        let r: Vec<(&str, &str, &str)> = e
            .resources()
            .iter()
            .map(|r| (r.resource_type, r.id, r.field.as_str()))
            .collect();
        assert_eq!(
            r,
            vec![
                ("ACS::VPC::VPC", "vpc-1", "referencedResources"),
                ("VSwitch", "vsw-1", "referencedResources"),
                ("VSwitch", "vsw-2", "referencedResources"),
                ("ACS::Foo::Bar", "f-1", "referencedResources"),
                ("VSwitch", "vsw-3", "resourceName"),
            ]
        );
    }

    #[test]
    fn referenced_resources_of_odd_shapes_do_not_fail_the_event() {
        for odd in [
            r#""referencedResources":null"#,
            r#""referencedResources":"i-1""#,
            r#""referencedResources":[1,2]"#,
            r#""referencedResources":{"ACS::ECS::Instance":"i-1"}"#,
            r#""referencedResources":{"ACS::ECS::Instance":[123, null, {"a":1}, "i-2"]}"#,
            r#""referencedResources":{"ACS::ECS::Instance":{"id":"i-1"}}"#,
            r#""referencedResources":{"":["i-1"],"ACS::ECS::Instance":[]}"#,
        ] {
            let json = format!(r#"{{"eventId":"x","acsRegion":"r",{odd}}}"#);
            let e = parse(json.as_bytes()).unwrap_or_else(|err| panic!("{odd}: {err}"));
            let ids: Vec<&str> = e.resources().iter().map(|r| r.id).collect();
            assert!(
                ids.iter().all(|i| ["i-1", "123", "i-2"].contains(i)),
                "{odd}: {ids:?}"
            );
        }
        let e = parse(br#"{"eventId":"x","acsRegion":"r","referencedResources":{"ACS::ECS::Instance":[123,"i-2"]}}"#).unwrap();
        assert_eq!(e.resources().len(), 2);
    }

    #[test]
    fn an_arn_as_id_names_its_account() {
        let e = parse(br#"{"eventId":"x","acsRegion":"r","userIdentity":{"type":"system","userName":"ram.aliyuncs.com"},
            "referencedResources":{"ACS::RAM::Role":["acs:ram::1384920045567123:role/etl-role"]}}"#).unwrap();
        let r = e.resources();
        assert_eq!(r[0].id, "etl-role");
        assert_eq!(r[0].account, Some("1384920045567123"));
        assert_eq!(r[0].arn, Some("acs:ram::1384920045567123:role/etl-role"));
        assert_eq!(
            super::arn_account("arn:acs:ecs:cn-hangzhou:42:instance/i-1"),
            Some("42")
        );
        assert_eq!(super::arn_account("arn:aws:s3:::bucket"), None);
        assert_eq!(super::arn_account("acs:ram"), None);
    }
}

#[cfg(test)]
mod trim_tests {
    #[test]
    fn ids_are_trimmed_as_str_trim_does() {
        for s in [
            "i-a",
            " i-a",
            "i-a\t",
            "\u{3000}i-a\u{3000}",
            "",
            " ",
            "é",
            "i-é ",
        ] {
            assert_eq!(super::trim(s), s.trim(), "{s:?}");
        }
    }
}
