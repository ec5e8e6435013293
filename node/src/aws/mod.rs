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

use std::sync::Arc;
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
    /// The service refused the credentials the request was signed with
    /// (expired or unknown session token, a key rotated away): temporary
    /// or refreshable credentials, so the node's trouble, not the
    /// object's; the provider loads new ones before the next request.
    #[error("{op}: HTTP {status} {code}: {message}")]
    Refused {
        op: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// No credentials to sign with.
    #[error("{op}: {source}")]
    Credentials {
        op: &'static str,
        #[source]
        source: Box<CredentialsError>,
    },
}

impl AwsError {
    /// Worth trying again: connection trouble, throttling, 5xx, a request
    /// signed at a time AWS does not accept (this node's clock), no
    /// credentials to sign with or credentials AWS refused.
    pub fn transient(&self) -> bool {
        match self {
            AwsError::Http { .. } => true,
            AwsError::Status { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || code.contains("Throttl")
                    || code == "SlowDown"
                    || code == "RequestTimeout"
                    || CLOCK_CODES.contains(&code.as_str())
            }
            // The node's trouble, never the object's or the message's:
            // tried again, never a reason to dead-letter.
            AwsError::Credentials { .. } | AwsError::Refused { .. } => true,
            AwsError::Invalid { .. } | AwsError::TooLarge { .. } => false,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            AwsError::Status { code, .. } | AwsError::Refused { code, .. } => code,
            _ => "",
        }
    }
}

/// The codes with which AWS refuses the credentials themselves, per
/// protocol: S3 (`ExpiredToken`, `InvalidToken`, `TokenRefreshRequired`,
/// `InvalidAccessKeyId`), the Query protocol (STS, SQS's query-compatible
/// `x-amzn-query-error`: `ExpiredToken`, `InvalidClientTokenId`) and the
/// JSON protocol's `__type` (`ExpiredTokenException`,
/// `UnrecognizedClientException`): the set AWS's SDKs refresh
/// credentials on.
const REFUSED_CODES: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidToken",
    "TokenRefreshRequired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
];

/// A request signed at a time AWS does not accept: this node's clock (or
/// a request held too long), never the object's trouble.
const CLOCK_CODES: &[&str] = &[
    "RequestTimeTooSkewed",
    "RequestExpired",
    "RequestInTheFuture",
];

/// An answer, and the credentials its request was signed with.
pub(crate) struct Sent {
    pub response: reqwest::Response,
    pub signer: Option<Arc<AwsCredentials>>,
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
    /// percent-encoded path. The answer comes with the credentials it was
    /// signed with, for [`judge`](Self::judge).
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
    ) -> Result<Sent, AwsError> {
        // Credentials first: the request is dated when it is signed, not
        // before a wait for them (AWS refuses a date 15 minutes off).
        let signer = match &self.credentials {
            Some(provider) => {
                Some(
                    provider
                        .credentials()
                        .await
                        .map_err(|source| AwsError::Credentials {
                            op,
                            source: Box::new(source),
                        })?,
                )
            }
            None => None,
        };
        let payload = sign::sha256_hex(&body);
        headers.push(("host".to_owned(), host.to_owned()));
        headers.push(("x-amz-date".to_owned(), sign::amz_date(SystemTime::now())));
        if self.service == "s3" {
            headers.push(("x-amz-content-sha256".to_owned(), payload.clone()));
        }
        let auth = signer.as_ref().map(|c| {
            if let Some(t) = &c.session_token {
                headers.push(("x-amz-security-token".to_owned(), t.expose().to_owned()));
            }
            sign::sigv4_authorization(
                &c.access_key_id,
                c.secret_access_key.expose(),
                &self.region,
                self.service,
                method.as_str(),
                path,
                query,
                &headers,
                &payload,
            )
        });
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
        let response = req
            .send()
            .await
            .map_err(|source| AwsError::Http { op, source })?;
        Ok(Sent { response, signer })
    }

    /// An error answer to a request `signer` signed: when AWS refused
    /// those credentials and they are temporary (a session token) or come
    /// from a provider that loads them again, the provider drops them (the
    /// next request loads new ones, as AWS's SDKs refresh on these codes)
    /// and the error is [`AwsError::Refused`], the node's trouble.
    pub fn judge(&self, signer: Option<&Arc<AwsCredentials>>, e: AwsError) -> AwsError {
        let AwsError::Status {
            op,
            status,
            code,
            message,
        } = e
        else {
            return e;
        };
        let refused = REFUSED_CODES.contains(&code.as_str()) && matches!(status, 400 | 403);
        match (&self.credentials, signer) {
            (Some(provider), Some(c))
                if refused && (c.session_token.is_some() || provider.refreshable()) =>
            {
                if provider.invalidate(c) {
                    tracing::warn!(
                        op,
                        code = %code,
                        provider = provider.provider().unwrap_or(""),
                        "AWS refused the credentials; loading them again"
                    );
                }
                AwsError::Refused {
                    op,
                    status,
                    code,
                    message,
                }
            }
            _ => AwsError::Status {
                op,
                status,
                code,
                message,
            },
        }
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
