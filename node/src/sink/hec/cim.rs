//! Splunk Common Information Model fields for ActionTrail, written as
//! indexed fields so Enterprise Security's data models (and `tstats`) see
//! ActionTrail changes and sign-ins without a search-time add-on — which
//! does not exist for ActionTrail. CloudTrail events get none: Splunk's
//! AWS add-on maps `aws:cloudtrail` at search time from the raw `event`.
//!
//! * **Change** (write events): `action` from the event name by the
//!   [`ACTIONS`] table (first matching row wins; rows from config go
//!   first), `change_type` (`AAA` for identity services, else `cloud`),
//!   `command` (the event name), `object` / `object_id` / `object_category`
//!   from the resources, `user`, `user_name`, `user_type`, `src`, `dest`
//!   (the service host, else the region), `status` (`success` / `failure`
//!   from `errorCode`), `result` (`success` or the error code),
//!   `vendor_product`.
//! * **Authentication** (`ConsoleSignin`, `ConsoleSignout`): `action`
//!   (`success` / `failure`), `app`, `src`, `dest`, `user`, `signature`,
//!   `vendor_product`.
//!
//! Not derived: `object_attrs` (ActionTrail does not say which attributes a
//! call changed, only its request parameters), `object_path`.

use serde::Deserialize;

use crate::event::Format;
use crate::record::{write_json_str, write_json_str_joined, View};

/// `,"name":`
fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `,"name":"value"`, unless the value is absent or empty.
fn field(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        key(out, name);
        write_json_str(out, value);
    }
}

pub const VENDOR_PRODUCT: &str = "Alibaba Cloud ActionTrail";

/// Event-name patterns → CIM Change `action`, in order; the first match
/// wins. A pattern is `Verb*` (the name starts with `Verb` at a word
/// boundary: `Stop*` matches `StopInstance`, not `Stopwatch`), `*Word*`
/// (the name contains `Word`), `*Suffix` (ends with it), or an exact name.
pub const ACTIONS: &[(&str, &str)] = &[
    // Permissions first: `AttachPolicyToUser` is an ACL change, not a modify.
    ("*Acl", "acl_modified"),
    ("*Acl*", "acl_modified"),
    ("AttachPolicy*", "acl_modified"),
    ("DetachPolicy*", "acl_modified"),
    ("*Permission*", "acl_modified"),
    ("Authorize*", "acl_modified"),
    ("Revoke*", "acl_modified"),
    ("Grant*", "acl_modified"),
    ("SetPolicy*", "acl_modified"),
    ("Create*", "created"),
    ("Run*", "created"),
    ("Allocate*", "created"),
    ("Add*", "created"),
    ("Import*", "created"),
    ("Copy*", "created"),
    ("Clone*", "created"),
    ("Register*", "created"),
    ("Upload*", "created"),
    ("Purchase*", "created"),
    ("Buy*", "created"),
    ("Delete*", "deleted"),
    ("Release*", "deleted"),
    ("Remove*", "deleted"),
    ("Destroy*", "deleted"),
    ("Terminate*", "deleted"),
    ("Deregister*", "deleted"),
    ("Unregister*", "deleted"),
    ("Stop*", "stopped"),
    ("Modify*", "modified"),
    ("Update*", "modified"),
    ("Set*", "modified"),
    ("Put*", "modified"),
    ("Change*", "modified"),
    ("Reset*", "modified"),
    ("Replace*", "modified"),
    ("Attach*", "modified"),
    ("Detach*", "modified"),
    ("Associate*", "modified"),
    ("Unassociate*", "modified"),
    ("Bind*", "modified"),
    ("Unbind*", "modified"),
    ("Enable*", "modified"),
    ("Disable*", "modified"),
    ("Rename*", "modified"),
    ("Resize*", "modified"),
    ("Renew*", "modified"),
    ("Upgrade*", "modified"),
    ("Downgrade*", "modified"),
    ("Move*", "modified"),
    ("Join*", "modified"),
    ("Leave*", "modified"),
    ("Tag*", "modified"),
    ("Untag*", "modified"),
    ("Apply*", "modified"),
    ("Assign*", "modified"),
    ("Unassign*", "modified"),
    ("Start*", "modified"),
    ("Reboot*", "modified"),
    ("Restart*", "modified"),
    ("Resume*", "modified"),
    ("Suspend*", "modified"),
    ("Cancel*", "modified"),
];

/// Services whose changes are authentication, authorization and
/// accounting: CIM `change_type = AAA`.
const AAA_SERVICES: &[&str] = &[
    "Ram",
    "Sts",
    "Ims",
    "AasSub",
    "CloudSSO",
    "ResourceDirectory",
];

/// `[[sinks]] cim_actions` rows: `{ match = "Purchase*", action = "created" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRule {
    #[serde(rename = "match")]
    pub pattern: String,
    pub action: String,
}

/// The compiled mapping.
#[derive(Debug, Clone)]
pub struct CimMap {
    rules: Vec<(String, String)>,
}

impl Default for CimMap {
    fn default() -> Self {
        CimMap::new(&[])
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(inner), _) if inner.ends_with('*') => name.contains(&inner[..inner.len() - 1]),
        (Some(suffix), _) => name.ends_with(suffix),
        (None, Some(verb)) => name
            .strip_prefix(verb)
            .is_some_and(|rest| rest.chars().next().is_none_or(|c| !c.is_ascii_lowercase())),
        (None, None) => pattern == name,
    }
}

impl CimMap {
    /// The built-in table with `extra` rows ahead of it.
    pub fn new(extra: &[ActionRule]) -> Self {
        let mut rules: Vec<(String, String)> = extra
            .iter()
            .map(|r| (r.pattern.clone(), r.action.clone()))
            .collect();
        rules.extend(
            ACTIONS
                .iter()
                .map(|(p, a)| ((*p).to_owned(), (*a).to_owned())),
        );
        CimMap { rules }
    }

    /// The CIM Change `action` of a write event's name; `unknown` when no row matches.
    pub fn action(&self, event_name: &str) -> &str {
        self.rules
            .iter()
            .find(|(p, _)| matches(p, event_name))
            .map(|(_, a)| a.as_str())
            .unwrap_or("unknown")
    }

    /// Appends `,"name":"value"` for every CIM field of `v`; none for
    /// CloudTrail and for read events. Writes straight into the envelope:
    /// nothing is built per event.
    pub fn write_fields(&self, v: &View<'_>, out: &mut Vec<u8>) {
        let e = v.event;
        if e.format != Format::ActionTrail {
            return;
        }
        let name = e.event_name.as_deref().unwrap_or("");
        let failed = e.error_code.as_deref().is_some_and(|c| !c.is_empty());
        let user = e.user_name.as_deref();
        let src = e.source_ip.as_deref();
        let dest = e
            .event_source
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(e.region.as_deref());
        if name == "ConsoleSignin" || name == "ConsoleSignout" {
            field(
                out,
                "action",
                Some(if failed { "failure" } else { "success" }),
            );
            field(
                out,
                "app",
                Some(e.event_source.as_deref().unwrap_or("signin.aliyun.com")),
            );
            field(out, "src", src);
            field(out, "dest", dest);
            field(out, "user", user);
            field(out, "signature", Some(name));
            field(out, "vendor_product", Some(VENDOR_PRODUCT));
            return;
        }
        if !e.is_write() {
            return;
        }
        let service = e.service_name.as_deref().unwrap_or("");
        let change_type = if AAA_SERVICES.iter().any(|s| s.eq_ignore_ascii_case(service)) {
            "AAA"
        } else {
            "cloud"
        };
        field(out, "action", Some(self.action(name)));
        field(out, "change_type", Some(change_type));
        field(out, "command", Some(name));
        if let Some(first) = v.resources.first() {
            field(out, "object", Some(first.id));
            let category = first.resource_type.rsplit("::").next().unwrap_or("");
            if !category.is_empty() {
                key(out, "object_category");
                let at = out.len();
                write_json_str(out, category);
                // Lower-casing leaves JSON escapes (`\"`, `\n`, `\u00xx`) intact.
                out[at..].make_ascii_lowercase();
            }
            key(out, "object_id");
            write_json_str_joined(out, v.resources.iter().map(|r| r.id), ",");
        }
        field(out, "user", user);
        field(out, "user_name", user);
        field(out, "user_type", e.user_type.as_deref());
        field(out, "src", src);
        field(out, "dest", dest);
        field(
            out,
            "status",
            Some(if failed { "failure" } else { "success" }),
        );
        field(
            out,
            "result",
            if failed {
                e.error_code.as_deref()
            } else {
                Some("success")
            },
        );
        field(out, "vendor_product", Some(VENDOR_PRODUCT));
    }

    /// Every field name [`CimMap::write_fields`] can write (for the Splunk app's check).
    pub const FIELD_NAMES: &'static [&'static str] = &[
        "action",
        "app",
        "change_type",
        "command",
        "dest",
        "object",
        "object_category",
        "object_id",
        "result",
        "signature",
        "src",
        "status",
        "user",
        "user_name",
        "user_type",
        "vendor_product",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the table, by an event name it is meant for.
    #[test]
    fn each_row_maps_the_names_it_is_for() {
        let m = CimMap::default();
        let cases = [
            ("PutBucketAcl", "acl_modified"),
            ("SetBucketAclPolicy", "acl_modified"),
            ("AttachPolicyToUser", "acl_modified"),
            ("DetachPolicyFromRole", "acl_modified"),
            ("GrantPermissions", "acl_modified"),
            ("AuthorizeSecurityGroup", "acl_modified"),
            ("RevokeSecurityGroupEgress", "acl_modified"),
            ("GrantAccountPrivilege", "acl_modified"),
            ("SetPolicyVersion", "acl_modified"),
            ("CreateVSwitch", "created"),
            ("RunInstances", "created"),
            ("AllocateEipAddress", "created"),
            ("AddBackendServers", "created"),
            ("ImportKeyPair", "created"),
            ("CopyImage", "created"),
            ("CloneDBInstance", "created"),
            ("RegisterInstance", "created"),
            ("UploadServerCertificate", "created"),
            ("PurchaseReservedInstancesOffering", "created"),
            ("BuyInstance", "created"),
            ("DeleteInstance", "deleted"),
            ("ReleaseEipAddress", "deleted"),
            ("RemoveBackendServers", "deleted"),
            ("DestroyCluster", "deleted"),
            ("TerminateInstance", "deleted"),
            ("DeregisterDelegatedAdministrator", "deleted"),
            ("UnregisterDevice", "deleted"),
            ("StopInstance", "stopped"),
            ("ModifyInstanceAttribute", "modified"),
            ("UpdateUser", "modified"),
            ("SetLoadBalancerStatus", "modified"),
            ("PutBucketLifecycle", "modified"),
            ("ChangeResourceGroup", "modified"),
            ("ResetDisk", "modified"),
            ("ReplaceSystemDisk", "modified"),
            ("AttachDisk", "modified"),
            ("DetachDisk", "modified"),
            ("AssociateEipAddress", "modified"),
            ("UnassociateEipAddress", "modified"),
            ("BindListener", "modified"),
            ("UnbindListener", "modified"),
            ("EnableMFA", "modified"),
            ("DisableMFA", "modified"),
            ("RenameBucket", "modified"),
            ("ResizeDisk", "modified"),
            ("RenewInstance", "modified"),
            ("UpgradeDBInstanceEngineVersion", "modified"),
            ("DowngradeInstance", "modified"),
            ("MoveResourceGroup", "modified"),
            ("JoinSecurityGroup", "modified"),
            ("LeaveSecurityGroup", "modified"),
            ("TagResources", "modified"),
            ("UntagResources", "modified"),
            ("ApplyAutoSnapshotPolicy", "modified"),
            ("AssignPrivateIpAddresses", "modified"),
            ("UnassignPrivateIpAddresses", "modified"),
            ("StartInstance", "modified"),
            ("RebootInstance", "modified"),
            ("RestartDBInstance", "modified"),
            ("ResumeInstance", "modified"),
            ("SuspendInstance", "modified"),
            ("CancelTask", "modified"),
            ("Create", "created"),
            ("Modify", "modified"),
            ("Renew", "modified"),
            // Word boundaries, and names no row knows.
            ("Stopwatch", "unknown"),
            ("Adduct", "unknown"),
            ("ConsoleSignin", "unknown"),
            ("", "unknown"),
        ];
        for (name, action) in cases {
            assert_eq!(m.action(name), action, "{name}");
        }
        // Every row is exercised by some case above (the first row may
        // shadow a later one only where meant).
        for (pattern, action) in ACTIONS {
            assert!(
                cases
                    .iter()
                    .any(|(n, a)| matches(pattern, n) && a == action),
                "row {pattern} → {action} has no case"
            );
        }
    }

    #[test]
    fn rows_from_config_come_first() {
        let m = CimMap::new(&[
            ActionRule {
                pattern: "Purchase*".into(),
                action: "updated".into(),
            },
            ActionRule {
                pattern: "Frobnicate".into(),
                action: "cleared".into(),
            },
        ]);
        assert_eq!(m.action("PurchaseSomething"), "updated");
        assert_eq!(m.action("Frobnicate"), "cleared");
        assert_eq!(m.action("CreateVpc"), "created");
    }
}
