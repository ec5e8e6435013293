//! A small SigV4 client for devstack's S3 and SQS (path-style addressing),
//! for the generator's uploads and the tests' set-up. Signed with
//! devstack's own signer, so it shares nothing with Trail's clients.

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::Digest;

use super::s3::elements;
use crate::cloud::auth::sign_sigv4;

#[derive(Clone)]
pub struct AwsClient {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash.
    endpoint: String,
    access_key_id: String,
    secret: String,
    region: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("{op}: HTTP {status}: {body}")]
    Status {
        op: String,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Url(String),
}

fn amz_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    crate::gen::iso(secs).replace(['-', ':'], "")
}

fn encode_key(key: &str) -> String {
    key.split('/')
        .map(|seg| {
            url::form_urlencoded::byte_serialize(seg.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl AwsClient {
    pub fn new(endpoint: &str, access_key_id: &str, secret: &str, region: &str) -> AwsClient {
        AwsClient {
            http: reqwest::Client::new(),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            access_key_id: access_key_id.to_owned(),
            secret: secret.to_owned(),
            region: region.to_owned(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        op: &str,
        method: reqwest::Method,
        service: &str,
        path: &str,
        query: &[(String, String)],
        mut headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Result<reqwest::Response, ClientError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.endpoint))
            .map_err(|e| ClientError::Url(e.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_owned(),
        };
        let payload = hex::encode(sha2::Sha256::digest(&body));
        headers.push(("host".into(), host));
        headers.push(("x-amz-date".into(), amz_date()));
        if service == "s3" {
            headers.push(("x-amz-content-sha256".into(), payload.clone()));
        }
        let auth = sign_sigv4(
            method.as_str(),
            url.path(),
            query,
            &headers,
            &payload,
            &self.access_key_id,
            &self.secret,
            &self.region,
            service,
        );
        let mut req = self.http.request(method, url).body(body);
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            req = req.header(k, v);
        }
        let resp = req.header("authorization", auth).send().await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                op: op.to_owned(),
                status,
                body,
            });
        }
        Ok(resp)
    }

    pub async fn create_bucket(&self, bucket: &str) -> Result<(), ClientError> {
        match self
            .send(
                "CreateBucket",
                reqwest::Method::PUT,
                "s3",
                &format!("/{bucket}"),
                &[],
                vec![],
                Bytes::new(),
            )
            .await
        {
            Err(ClientError::Status { status: 409, .. }) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), ClientError> {
        let headers = vec![("content-type".to_owned(), content_type.to_owned())];
        let path = format!("/{bucket}/{}", encode_key(key));
        self.send(
            "PutObject",
            reqwest::Method::PUT,
            "s3",
            &path,
            &[],
            headers,
            body,
        )
        .await
        .map(|_| ())
    }

    /// Every key of the bucket (ListObjectsV2, page by page).
    pub async fn list_keys(&self, bucket: &str) -> Result<Vec<String>, ClientError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("list-type".to_owned(), "2".to_owned())];
            if let Some(t) = &token {
                q.push(("continuation-token".to_owned(), t.clone()));
            }
            let resp = self
                .send(
                    "ListObjectsV2",
                    reqwest::Method::GET,
                    "s3",
                    &format!("/{bucket}"),
                    &q,
                    vec![],
                    Bytes::new(),
                )
                .await?;
            let text = resp.text().await?;
            keys.extend(elements(&text, "Key").into_iter().map(unescape));
            token = elements(&text, "NextContinuationToken")
                .first()
                .map(|t| t.to_string());
            if token.is_none() {
                return Ok(keys);
            }
        }
    }

    async fn sqs(&self, op: &str, body: Value) -> Result<Value, ClientError> {
        let headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.0".to_owned(),
            ),
            ("x-amz-target".to_owned(), format!("AmazonSQS.{op}")),
        ];
        let resp = self
            .send(
                op,
                reqwest::Method::POST,
                "sqs",
                "/",
                &[],
                headers,
                Bytes::from(body.to_string()),
            )
            .await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Url(format!("{op}: {e}")))
    }

    /// Creates the queue (or finds it); its URL.
    pub async fn create_queue(&self, name: &str) -> Result<String, ClientError> {
        let v = self.sqs("CreateQueue", json!({"QueueName": name})).await?;
        Ok(v["QueueUrl"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn send_message(&self, queue_url: &str, body: &str) -> Result<(), ClientError> {
        self.sqs(
            "SendMessage",
            json!({"QueueUrl": queue_url, "MessageBody": body}),
        )
        .await
        .map(|_| ())
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
