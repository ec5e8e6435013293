//! Where requests go: the endpoint, the project subdomain, and an optional
//! explicit address.
//!
//! SLS puts the project in the Host: `https://{project}.{region}.log.aliyuncs.com`.
//! For private or loopback endpoints (devstack, a VPC address, a test proxy) the
//! endpoint may name an explicit `address`: Trail then still builds
//! `{scheme}://{project}.{domain}/...` and sends `Host: {project}.{domain}`, but
//! the connection goes to `address` through a resolver override. One code path
//! serves the cloud and devstack; nothing about the request differs but the IP.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An SLS endpoint: scheme, domain (without project), optional explicit address.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    scheme: Scheme,
    /// e.g. `cn-hangzhou.log.aliyuncs.com`; may carry `:port`.
    domain: String,
    address: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("endpoint {0:?}: scheme must be http or https")]
    Scheme(String),
    #[error("endpoint {0:?}: expected a host name such as cn-hangzhou.log.aliyuncs.com")]
    Domain(String),
    #[error("endpoint address {0:?}: expected IP:port or host:port")]
    Address(String),
}

impl Endpoint {
    /// Parses `https://cn-hangzhou.log.aliyuncs.com`, `cn-hangzhou.log.aliyuncs.com`
    /// (https assumed) or `http://sls.test:8080`.
    pub fn parse(endpoint: &str) -> Result<Self, EndpointError> {
        let (scheme, rest) = match endpoint.split_once("://") {
            Some(("https", rest)) => (Scheme::Https, rest),
            Some(("http", rest)) => (Scheme::Http, rest),
            Some(_) => return Err(EndpointError::Scheme(endpoint.to_owned())),
            None => (Scheme::Https, endpoint),
        };
        let domain = rest.trim_end_matches('/');
        let valid = !domain.is_empty()
            && !domain.contains('/')
            && Url::parse(&format!("{}://p.{domain}/", scheme.as_str())).is_ok();
        if !valid {
            return Err(EndpointError::Domain(endpoint.to_owned()));
        }
        Ok(Endpoint {
            scheme,
            domain: domain.to_ascii_lowercase(),
            address: None,
        })
    }

    /// Connect to `address` (`IP:port`, or `host:port` resolved once now) instead
    /// of resolving `{project}.{domain}`.
    pub fn with_address(mut self, address: &str) -> Result<Self, EndpointError> {
        let addr = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| EndpointError::Address(address.to_owned()))?;
        self.address = Some(addr);
        Ok(self)
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// The URL of `path` in `project` (or on the bare endpoint for project-less calls).
    pub fn url(&self, project: Option<&str>, path: &str) -> Url {
        let host = match project {
            Some(p) => format!("{p}.{}", self.domain),
            None => self.domain.clone(),
        };
        // Validated in `parse`; project names are `[a-z0-9-]`, checked by the client.
        Url::parse(&format!("{}://{host}{path}", self.scheme.as_str()))
            .expect("endpoint and project were validated")
    }

    /// The resolver override for an explicit address, if any.
    pub(crate) fn resolver(&self) -> Option<Arc<FixedResolver>> {
        self.address.map(|addr| {
            Arc::new(FixedResolver {
                domain: self.domain.split(':').next().unwrap_or_default().to_owned(),
                addr,
            })
        })
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.domain)?;
        if let Some(a) = self.address {
            write!(f, " via {a}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Resolves `{domain}` and every `*.{domain}` to one fixed address. When the URL
/// carries no port, the address's port is used (hyper-util keeps a resolver's
/// non-zero port), so `Host` stays `{project}.{domain}` like the cloud's.
#[derive(Debug)]
pub(crate) struct FixedResolver {
    domain: String,
    addr: SocketAddr,
}

impl FixedResolver {
    fn covers(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        name.eq_ignore_ascii_case(&self.domain)
            || name
                .len()
                .checked_sub(self.domain.len() + 1)
                .is_some_and(|cut| {
                    name.as_bytes()[cut] == b'.'
                        && name[cut + 1..].eq_ignore_ascii_case(&self.domain)
                })
    }
}

impl Resolve for FixedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let result: Result<Addrs, Box<dyn std::error::Error + Send + Sync>> =
            if self.covers(name.as_str()) {
                Ok(Box::new(std::iter::once(self.addr)))
            } else {
                // Anything else (a proxy host, say) resolves normally.
                let host = name.as_str().to_owned();
                match (host.as_str(), 0).to_socket_addrs() {
                    Ok(addrs) => Ok(Box::new(addrs.collect::<Vec<_>>().into_iter())),
                    Err(e) => Err(Box::new(e)),
                }
            };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_endpoint_puts_project_in_host() {
        let ep = Endpoint::parse("https://cn-hangzhou.log.aliyuncs.com").unwrap();
        let url = ep.url(Some("audit-prod"), "/logstores/actiontrail_x/shards");
        assert_eq!(
            url.as_str(),
            "https://audit-prod.cn-hangzhou.log.aliyuncs.com/logstores/actiontrail_x/shards"
        );
        assert_eq!(
            Endpoint::parse("cn-hangzhou.log.aliyuncs.com").unwrap(),
            ep,
            "https is the default"
        );
        assert_eq!(
            ep.url(None, "/").as_str(),
            "https://cn-hangzhou.log.aliyuncs.com/"
        );
    }

    #[test]
    fn explicit_address_keeps_host_and_resolves_subdomains() {
        let ep = Endpoint::parse("http://sls.test")
            .unwrap()
            .with_address("127.0.0.1:39001")
            .unwrap();
        assert_eq!(ep.url(Some("p1"), "/").host_str(), Some("p1.sls.test"));
        let r = ep.resolver().unwrap();
        assert!(r.covers("p1.sls.test"));
        assert!(r.covers("sls.test"));
        assert!(r.covers("P1.SLS.TEST."));
        assert!(!r.covers("evilsls.test"));
        assert!(!r.covers("example.com"));
    }

    #[test]
    fn bad_endpoints_name_the_problem() {
        assert!(matches!(
            Endpoint::parse("ftp://x"),
            Err(EndpointError::Scheme(_))
        ));
        assert!(matches!(Endpoint::parse(""), Err(EndpointError::Domain(_))));
        assert!(matches!(
            Endpoint::parse("https://a/b"),
            Err(EndpointError::Domain(_))
        ));
        assert!(matches!(
            Endpoint::parse("sls.test")
                .unwrap()
                .with_address("nonsense"),
            Err(EndpointError::Address(_))
        ));
    }
}
