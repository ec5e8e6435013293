//! The resources an event touched.
//!
//! ActionTrail: `resourceType` lists types separated by `;`, and
//! `resourceName` lists, in the same order, each type's ids separated by `,`:
//! `ACS::ECS::Instance;ACS::VPC::VPC` with `i-a,i-b;vpc-x`. CloudTrail:
//! `resources[]` with an ARN each.

use crate::event::AuditEvent;

/// One resource reference, borrowed from its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceRef<'e> {
    /// `ACS::ECS::Instance`, `AWS::EC2::Instance`; empty when unknown.
    pub resource_type: &'e str,
    pub id: &'e str,
    /// The full ARN when the trail gave one (CloudTrail).
    pub arn: Option<&'e str>,
}

pub(crate) fn refs<'e>(e: &'e AuditEvent<'_>) -> Vec<ResourceRef<'e>> {
    let mut out: Vec<ResourceRef<'e>> = Vec::new();
    let mut push = |r: ResourceRef<'e>| {
        if !r.id.is_empty() && !out.contains(&r) {
            out.push(r);
        }
    };
    if let (Some(types), Some(names)) = (e.resource_type.as_deref(), e.resource_name.as_deref()) {
        for (t, ids) in types.split(';').zip(names.split(';')) {
            let t = t.trim();
            for id in ids.split(',') {
                push(ResourceRef {
                    resource_type: t,
                    id: id.trim(),
                    arn: None,
                });
            }
        }
    }
    for (arn, kind) in &e.arns {
        let id = arn.rsplit(['/', ':']).next().unwrap_or(arn);
        push(ResourceRef {
            resource_type: kind.as_deref().unwrap_or(""),
            id,
            arn: Some(arn),
        });
    }
    out
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
            (r[1].id, r[1].arn),
            ("i-9", Some("arn:aws:ec2:us-east-1:1:instance/i-9"))
        );
    }
}
