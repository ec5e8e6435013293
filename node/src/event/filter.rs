//! Which events go on: by log-group topic, `eventRW`, service and event name.
//! Every drop has a reason, counted in metrics.

use std::borrow::Cow;

use serde::Deserialize;

use crate::event::{infer_rw, AuditEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RwFilter {
    /// Write events only (the usual setting for a business view).
    #[default]
    Write,
    Read,
    All,
}

/// What to do with an event that carries no `eventRW` (ActionTrail
/// archives before 2020-12-16 and some services; CloudTrail records
/// without `readOnly`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownRw {
    /// Infer it from the event name ([`infer_rw`]: read verbs are `Read`,
    /// everything else `Write`), mark the event (`eventRW_inferred`) and
    /// filter on the inferred value.
    #[default]
    Infer,
    /// Keep the event whatever `event_rw` asks, with no `eventRW`.
    Keep,
    /// Drop it (counted as `event_rw`).
    Drop,
}

/// `[filter]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    pub event_rw: RwFilter,
    /// Events without `eventRW`: `infer` (default), `keep` or `drop`.
    pub unknown_rw: UnknownRw,
    /// `serviceName`s to keep (case-insensitive); empty keeps all.
    pub services: Vec<String>,
    /// Log-group topics to keep; empty keeps all.
    pub topics: Vec<String>,
    /// Event names to keep (exact, or a prefix ending in `*`); empty keeps all.
    pub include_event_names: Vec<String>,
    /// Event names to drop (exact, or a prefix ending in `*`).
    pub exclude_event_names: Vec<String>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            event_rw: RwFilter::Write,
            unknown_rw: UnknownRw::Infer,
            services: Vec::new(),
            topics: vec!["actiontrail_audit_event".into(), "actiontrail_event".into()],
            include_event_names: Vec::new(),
            exclude_event_names: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    Topic,
    EventRw,
    Service,
    EventName,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::Topic,
        DropReason::EventRw,
        DropReason::Service,
        DropReason::EventName,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Topic => "topic",
            DropReason::EventRw => "event_rw",
            DropReason::Service => "service",
            DropReason::EventName => "event_name",
        }
    }
}

/// The compiled filter.
#[derive(Debug, Clone)]
pub struct EventFilter {
    rw: RwFilter,
    unknown_rw: UnknownRw,
    services: Vec<String>,
    topics: Vec<String>,
    include: Vec<String>,
    exclude: Vec<String>,
}

fn name_matches(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

impl EventFilter {
    pub fn new(c: &FilterConfig) -> Self {
        EventFilter {
            rw: c.event_rw,
            unknown_rw: c.unknown_rw,
            services: c.services.iter().map(|s| s.to_ascii_lowercase()).collect(),
            topics: c.topics.clone(),
            include: c.include_event_names.clone(),
            exclude: c.exclude_event_names.clone(),
        }
    }

    /// Whether a log group with this topic is read at all.
    pub fn check_topic(&self, topic: &str) -> Result<(), DropReason> {
        if self.topics.is_empty() || self.topics.iter().any(|t| t == topic) {
            Ok(())
        } else {
            Err(DropReason::Topic)
        }
    }

    /// Whether the event goes on. An event without `eventRW` gets one
    /// inferred here under the `infer` policy (and `rw_inferred` set).
    /// Whether an event whose `eventRW` says `rw` is dropped for it, as
    /// [`check`](Self::check) drops it (an empty `rw` is unknown: never).
    #[inline]
    pub fn rejects_rw(&self, rw: &str) -> bool {
        !rw.is_empty()
            && match self.rw {
                RwFilter::All => false,
                RwFilter::Write => !rw.eq_ignore_ascii_case("write"),
                RwFilter::Read => !rw.eq_ignore_ascii_case("read"),
            }
    }

    /// Whether [`rejects_rw`](Self::rejects_rw) can ever say yes, i.e. a
    /// scan of `eventRW` before parsing can save a parse.
    pub fn filters_rw(&self) -> bool {
        self.rw != RwFilter::All
    }

    pub fn check(&self, e: &mut AuditEvent<'_>) -> Result<(), DropReason> {
        let known = e.event_rw.as_deref().is_some_and(|rw| !rw.is_empty());
        if !known {
            match self.unknown_rw {
                UnknownRw::Infer => {
                    e.event_rw = Some(Cow::Borrowed(infer_rw(
                        e.event_name.as_deref().unwrap_or(""),
                    )));
                    e.rw_inferred = true;
                }
                UnknownRw::Keep => e.event_rw = None,
                UnknownRw::Drop => return Err(DropReason::EventRw),
            }
        }
        if e.event_rw.as_deref().is_some_and(|rw| self.rejects_rw(rw)) {
            return Err(DropReason::EventRw);
        }
        if !self.services.is_empty() {
            let s = e.service_name.as_deref().unwrap_or("");
            if !self.services.iter().any(|x| x.eq_ignore_ascii_case(s)) {
                return Err(DropReason::Service);
            }
        }
        let name = e.event_name.as_deref().unwrap_or("");
        if (!self.include.is_empty() && !name_matches(&self.include, name))
            || name_matches(&self.exclude, name)
        {
            return Err(DropReason::EventName);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse;

    fn ev(rw: &str, svc: &str, name: &str) -> String {
        format!(
            r#"{{"eventId":"x","acsRegion":"r","eventRW":"{rw}","serviceName":"{svc}","eventName":"{name}"}}"#
        )
    }

    #[test]
    fn each_filter_drops_with_its_reason() {
        let f = EventFilter::new(&FilterConfig {
            services: vec!["ecs".into(), "Slb".into()],
            include_event_names: vec!["Stop*".into(), "AddBackendServers".into()],
            exclude_event_names: vec!["StopInstances".into()],
            ..Default::default()
        });
        let check = |j: String| f.check(&mut parse(j.as_bytes()).unwrap());
        assert_eq!(check(ev("Write", "Ecs", "StopInstance")), Ok(()));
        assert_eq!(
            check(ev("Read", "Ecs", "StopInstance")),
            Err(DropReason::EventRw)
        );
        assert_eq!(
            check(ev("Write", "Ram", "StopInstance")),
            Err(DropReason::Service)
        );
        assert_eq!(
            check(ev("Write", "Slb", "DescribeLoadBalancers")),
            Err(DropReason::EventName)
        );
        assert_eq!(
            check(ev("Write", "Ecs", "StopInstances")),
            Err(DropReason::EventName)
        );
        assert_eq!(f.check_topic("actiontrail_event"), Ok(()));
        assert_eq!(f.check_topic("something_else"), Err(DropReason::Topic));
        let all = EventFilter::new(&FilterConfig {
            event_rw: RwFilter::All,
            topics: vec![],
            ..Default::default()
        });
        assert_eq!(
            all.check(&mut parse(ev("Read", "Ram", "GetUser").as_bytes()).unwrap()),
            Ok(())
        );
        assert_eq!(all.check_topic("anything"), Ok(()));
    }

    fn no_rw(name: &str) -> String {
        format!(r#"{{"eventId":"x","acsRegion":"r","serviceName":"Ecs","eventName":"{name}"}}"#)
    }

    #[test]
    fn events_without_event_rw_follow_the_unknown_rw_policy() {
        let with = |unknown_rw| {
            EventFilter::new(&FilterConfig {
                unknown_rw,
                ..Default::default()
            })
        };
        // (verdict, eventRW after the check, inferred?)
        let run = |f: &EventFilter, json: String| {
            let mut e = parse(json.as_bytes()).unwrap();
            let v = f.check(&mut e);
            (v, e.event_rw.map(|r| r.into_owned()), e.rw_inferred)
        };
        let w = Some("Write".to_string());
        // infer (the default): reads dropped as reads, writes kept and marked.
        let f = with(UnknownRw::Infer);
        assert_eq!(
            run(&f, no_rw("DescribeInstances")).0,
            Err(DropReason::EventRw)
        );
        assert_eq!(run(&f, no_rw("StopInstance")), (Ok(()), w.clone(), true));
        // An event that says what it is is never re-inferred.
        let (v, _, inferred) = run(&f, ev("Read", "Ecs", "StopInstance"));
        assert_eq!((v, inferred), (Err(DropReason::EventRw), false));
        // keep: passes a writes-only filter, with no eventRW made up.
        assert_eq!(
            run(&with(UnknownRw::Keep), no_rw("DescribeInstances")),
            (Ok(()), None, false)
        );
        // drop.
        assert_eq!(
            run(&with(UnknownRw::Drop), no_rw("StopInstance")).0,
            Err(DropReason::EventRw)
        );
        // An empty eventRW is unknown too.
        assert_eq!(run(&f, ev("", "Ecs", "DeleteInstance")), (Ok(()), w, true));
    }

    #[test]
    fn read_verbs_infer_read_and_every_other_name_write() {
        use crate::event::infer_rw;
        for read in [
            "DescribeInstances",
            "ListTagResources",
            "GetUser",
            "QueryUserInfo",
            "CheckInstanceStatus",
            "SearchResources",
            "LookupEvents",
            "HeadObject",
            "BatchGetItem",
            "Get",
            "List",
        ] {
            assert_eq!(infer_rw(read), "Read", "{read}");
        }
        for write in [
            "StopInstance",
            "CreateVSwitch",
            "DeleteBucket",
            "AttachPolicyToUser",
            "ConsoleSignin",
            "Listener",
            "Getaway",
            "Describer",
            "PutBucketAcl",
            "",
            "TagResources",
            "Create",
        ] {
            assert_eq!(infer_rw(write), "Write", "{write}");
        }
    }
}
