//! The AWS wire protocols a CloudTrail source needs: S3 (GetObject;
//! ListObjectsV2 comes with the listing source) and SQS (ReceiveMessage, DeleteMessage,
//! ChangeMessageVisibility, in the JSON 1.0 protocol), signed with SigV4
//! (`net::sign`, checked against AWS's published vector), the
//! notifications that name a trail's new files (`notification`), and where
//! the credentials come from (`credentials`: static keys, AWS's default
//! chain, STS AssumeRole).
//!
//! Floor 1: imports only `net` and `secret`. The same code reaches AWS
//! (`https://s3.{region}.amazonaws.com`, virtual-host buckets,
//! `https://sqs.{region}.amazonaws.com`) and devstack (`endpoint` plus
//! `address`, path-style buckets).
//!
//! Why not the AWS SDK for Rust: measured on this 2-core machine (a crate
//! with `aws-config` + `aws-sdk-s3` + `aws-sdk-sqs` 1.x and tokio, clean
//! debug build: 127 s wall, 201 s CPU; 272 crates in its tree, 71 of them
//! not already in trail-node), it would add about two minutes to every
//! clean CI build (today ≈ 16 of its 30) and a second HTTP and TLS
//! configuration beside the one every other Trail client shares. The calls
//! a trail source makes are this page over the SigV4 signer Trail already
//! has; devstack's boto3 suite pins the protocol they speak.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | endpoints, one signed request, errors |
//! | `credentials.rs` | static keys → environment → shared files → web identity → container → EC2 instance metadata, STS AssumeRole on top; cached, refreshed before expiry |
//! | `s3.rs` | GetObject within a cap, ListObjectsV2 |
//! | `sqs.rs` | ReceiveMessage (long poll), DeleteMessage, ChangeMessageVisibility |
//! | `notification.rs` | S3 event notifications and CloudTrail's SNS messages → objects |
//! | `xml.rs` | the element reads S3's and STS's XML answers need |

pub mod credentials;
pub mod notification;
pub mod s3;
pub mod sqs;
mod xml;

use std::time::{Duration, SystemTime};

pub use credentials::{AwsCredentials, CredentialsError, CredentialsProvider};

use crate::net::sign;

/// Where a service is: its endpoint (`{region}` in it is replaced by the
/// client's region), and optionally the host:port to dial instead (the
/// `Host` stays the endpoint's: devstack behind a name).
#[derive(Debug, Clone)]
pub struct AwsEndpoint {
    template: String,
    pub address: Option<String>,
}

impl AwsEndpoint {
    pub fn parse(template: &str, address: Option<&str>) -> Result<AwsEndpoint, String> {
        let u = url::Url::parse(&template.replace("{region}", "us-east-1"))
            .map_err(|e| format!("{template}: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
            return Err(format!("{template}: expected http(s)://host[:port]"));
        }
        Ok(AwsEndpoint {
            template: template.trim_end_matches('/').to_owned(),
            address: address.map(str::to_owned),
        })
    }

    /// Scheme and authority (`host[:port]`) in `region`.
    fn resolve(&self, region: &str) -> (String, String) {
        let u =
            url::Url::parse(&self.template.replace("{region}", region)).expect("checked at parse");
        let host = u.host_str().unwrap_or_default().to_owned();
        let authority = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        (u.scheme().to_owned(), authority)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{op}: {source}")]
    Http {
        op: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{op}: HTTP {status} {code}: {message}")]
    Status {
        op: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{op}: {message}")]
    Invalid { op: &'static str, message: String },
    #[error("{op}: the answer is larger than the {cap} bytes allowed")]
    TooLarge { op: &'static str, cap: usize },
    /// No credentials to sign with.
    #[error("{op}: {source}")]
    Credentials {
        op: &'static str,
        #[source]
        source: Box<CredentialsError>,
    },
}

impl AwsError {
    /// Worth trying again: connection trouble, throttling, 5xx, no
    /// credentials to sign with.
    pub fn transient(&self) -> bool {
        match self {
            AwsError::Http { .. } => true,
            AwsError::Status { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || code.contains("Throttl")
                    || code == "SlowDown"
                    || code == "RequestTimeout"
            }
            // The node's trouble, never the object's or the message's:
            // tried again, never a reason to dead-letter.
            AwsError::Credentials { .. } => true,
            AwsError::Invalid { .. } | AwsError::TooLarge { .. } => false,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            AwsError::Status { code, .. } => code,
            _ => "",
        }
    }
}

/// A client for one AWS service in one region.
#[derive(Clone)]
pub(crate) struct Signed {
    http: reqwest::Client,
    endpoint: AwsEndpoint,
    /// Asked before every request; `None`: unsigned (STS
    /// AssumeRoleWithWebIdentity).
    credentials: Option<CredentialsProvider>,
    region: String,
    service: &'static str,
    scheme: String,
    authority: String,
}

impl Signed {
    pub fn new(
        endpoint: AwsEndpoint,
        credentials: Option<CredentialsProvider>,
        region: &str,
        service: &'static str,
        request_timeout: Duration,
    ) -> Result<Signed, reqwest::Error> {
        let (scheme, authority) = endpoint.resolve(region);
        Ok(Signed {
            http: crate::net::http::client_builder(Duration::from_secs(5), request_timeout)
                .build()?,
            scheme,
            authority,
            endpoint,
            credentials,
            region: region.to_owned(),
            service,
        })
    }

    /// Sends one request, signed with the provider's current credentials.
    /// `host` is the authority the request is for, `path` its
    /// percent-encoded path.
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        op: &'static str,
        method: reqwest::Method,
        host: &str,
        path: &str,
        query: &[(String, String)],
        mut headers: Vec<(String, String)>,
        body: bytes::Bytes,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, AwsError> {
        let payload = sign::sha256_hex(&body);
        headers.push(("host".to_owned(), host.to_owned()));
        headers.push(("x-amz-date".to_owned(), sign::amz_date(SystemTime::now())));
        if self.service == "s3" {
            headers.push(("x-amz-content-sha256".to_owned(), payload.clone()));
        }
        let auth = match &self.credentials {
            Some(provider) => {
                let c = provider
                    .credentials()
                    .await
                    .map_err(|source| AwsError::Credentials {
                        op,
                        source: Box::new(source),
                    })?;
                if let Some(t) = &c.session_token {
                    headers.push(("x-amz-security-token".to_owned(), t.expose().to_owned()));
                }
                Some(sign::sigv4_authorization(
                    &c.access_key_id,
                    c.secret_access_key.expose(),
                    &self.region,
                    self.service,
                    method.as_str(),
                    path,
                    query,
                    &headers,
                    &payload,
                ))
            }
            None => None,
        };
        let authority = self.endpoint.address.as_deref().unwrap_or(host);
        let mut target = format!("{}://{authority}{path}", self.scheme);
        if !query.is_empty() {
            target.push('?');
            target.push_str(&sign::canonical_query(query));
        }
        let mut req = self.http.request(method, target).body(body);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.send()
            .await
            .map_err(|source| AwsError::Http { op, source })
    }

    /// The endpoint's authority (`host[:port]`) in this client's region.
    pub fn host(&self) -> &str {
        &self.authority
    }
}

/// A bucket name goes into a Host or a path: only what S3 allows.
pub fn valid_bucket(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.contains("..")
}
