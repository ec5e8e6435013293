//! A small PutLogs client for `trail-devstack gen --sls-endpoint`: loads
//! generated events into devstack's SLS server or a real logstore.
//!
//! It signs with signature v1 — the algorithm `auth.rs` verifies, which the
//! conformance suite checks against Alibaba's own SDKs — and speaks the wire
//! form every SDK uses: a protobuf `LogGroup`, lz4-compressed, to
//! `POST /logstores/{logstore}/shards/lb` on `{project}.{endpoint host}`.
//! Throttling (403 `*QuotaExceed*`), 5xx and connection errors are retried
//! with backoff; anything else is an error naming the SLS code.

use std::time::Duration;

use md5::{Digest, Md5};
use prost::Message;
use trail_proto::sls::LogGroup;

use super::auth::{sign, SignedRequest};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("SLS endpoint {0:?}: expected http(s)://host[:port]")]
    Endpoint(String),
    #[error("address {0:?}: expected host:port")]
    Address(String),
    #[error("PutLogs: HTTP {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("PutLogs: {0}")]
    Transport(#[from] reqwest::Error),
}

/// PutLogs into one project's logstores.
pub struct Writer {
    http: reqwest::Client,
    base: String,
    host: String,
    access_key_id: String,
    access_key_secret: String,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("base", &self.base)
            .field("host", &self.host)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// `endpoint` is `https://cn-hangzhou.log.aliyuncs.com` (the project
    /// becomes a subdomain); `address`, if given, is dialled instead while
    /// the Host header stays `{project}.{host}` (devstack, VPC endpoints).
    pub fn new(
        endpoint: &str,
        address: Option<&str>,
        project: &str,
        access_key_id: &str,
        access_key_secret: &str,
    ) -> Result<Writer, WriteError> {
        let url = url::Url::parse(endpoint).map_err(|_| WriteError::Endpoint(endpoint.into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WriteError::Endpoint(endpoint.into()));
        }
        let domain = url
            .host_str()
            .ok_or_else(|| WriteError::Endpoint(endpoint.into()))?;
        let host = format!("{project}.{domain}");
        let port = url.port_or_known_default().unwrap_or(80);
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10));
        if let Some(a) = address {
            let addr: std::net::SocketAddr =
                a.parse().map_err(|_| WriteError::Address(a.into()))?;
            http = http.resolve(&host, addr);
        }
        let base = match url.port() {
            Some(p) => format!("{}://{host}:{p}", url.scheme()),
            None if address.is_some() => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        Ok(Writer {
            http: http.build()?,
            base,
            host,
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
        })
    }

    /// One PutLogs, load-balanced over the logstore's shards; retried on
    /// throttling, 5xx and connection errors.
    pub async fn put_logs(&self, logstore: &str, group: &LogGroup) -> Result<(), WriteError> {
        let raw = group.encode_to_vec();
        let body = lz4_flex::block::compress(&raw);
        let path = format!("/logstores/{logstore}/shards/lb");
        let mut pause = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.put_once(&path, &body, raw.len()).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 10 && retryable(&e) => {
                    tracing::warn!(error = %e, ?pause, "PutLogs failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn put_once(&self, path: &str, body: &[u8], raw_len: usize) -> Result<(), WriteError> {
        let md5 = hex::encode_upper(Md5::digest(body));
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let headers: Vec<(String, String)> = [
            ("content-md5", md5.as_str()),
            ("content-type", "application/x-protobuf"),
            ("date", date.as_str()),
            ("host", self.host.as_str()),
            ("x-log-apiversion", "0.6.0"),
            ("x-log-bodyrawsize", &raw_len.to_string()),
            ("x-log-compresstype", "lz4"),
            ("x-log-signaturemethod", "hmac-sha1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let to_sign = SignedRequest {
            method: "POST",
            path,
            query: &[],
            headers: &headers,
        }
        .string_to_sign(true);
        let signature = sign(&self.access_key_secret, &to_sign);
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(
                "authorization",
                format!("LOG {}:{signature}", self.access_key_id),
            )
            .body(body.to_vec());
        for (k, v) in &headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Err(WriteError::Refused {
            status,
            code: v["errorCode"].as_str().unwrap_or("").to_owned(),
            message: v["errorMessage"].as_str().unwrap_or(&text).to_owned(),
        })
    }
}

fn retryable(e: &WriteError) -> bool {
    match e {
        WriteError::Transport(_) => true,
        WriteError::Refused { status, code, .. } => {
            *status >= 500 || code.contains("QuotaExceed") || code.contains("Throttl")
        }
        _ => false,
    }
}
