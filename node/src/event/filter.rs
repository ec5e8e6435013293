//! Which events go on: by log-group topic, `eventRW`, service and event name.
//! Every drop has a reason, counted in metrics.

use serde::Deserialize;

use crate::event::AuditEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RwFilter {
    /// Write events only (the usual setting for a business view).
    #[default]
    Write,
    Read,
    All,
}

/// `[filter]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    pub event_rw: RwFilter,
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

    pub fn check(&self, e: &AuditEvent<'_>) -> Result<(), DropReason> {
        let rw = e.event_rw.as_deref().unwrap_or("");
        let rw_ok = match self.rw {
            RwFilter::All => true,
            RwFilter::Write => rw.eq_ignore_ascii_case("write"),
            RwFilter::Read => rw.eq_ignore_ascii_case("read"),
        };
        if !rw_ok {
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
        let check = |j: String| f.check(&parse(j.as_bytes()).unwrap());
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
            all.check(&parse(ev("Read", "Ram", "GetUser").as_bytes()).unwrap()),
            Ok(())
        );
        assert_eq!(all.check_topic("anything"), Ok(()));
    }
}
