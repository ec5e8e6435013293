//! SQS in the JSON 1.0 protocol: ReceiveMessage (long polling),
//! DeleteMessage, ChangeMessageVisibility.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AwsEndpoint, AwsError, CredentialsProvider, Signed};

/// One queue.
#[derive(Clone)]
pub struct SqsClient {
    signed: Signed,
    queue_url: String,
}

/// A received message.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    /// The latest receipt: what deletes or extends this receive.
    pub receipt: String,
    pub body: String,
    /// How many times the queue handed it out (1 the first time).
    pub receive_count: u32,
}

#[derive(Deserialize)]
struct Received {
    #[serde(rename = "Messages", default)]
    messages: Vec<RawMessage>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(rename = "MessageId")]
    id: String,
    #[serde(rename = "ReceiptHandle")]
    receipt: String,
    #[serde(rename = "Body", default)]
    body: String,
    #[serde(rename = "Attributes", default)]
    attributes: std::collections::BTreeMap<String, String>,
}

/// A JSON-protocol error's code: the query-compatible one
/// (`x-amzn-query-error: CODE;Sender`) when SQS sends it, else the
/// `__type`'s shape (`com.amazon.coral.service#ExpiredTokenException`,
/// anything after a `:` dropped, as the SDKs read it).
fn error_code(query_code: Option<&str>, type_: Option<&str>) -> String {
    if let Some(c) = query_code.map(str::trim).filter(|c| !c.is_empty()) {
        return c.to_owned();
    }
    let t = type_.unwrap_or("");
    let t = t.split(':').next().unwrap_or("");
    t.rsplit('#').next().unwrap_or("").trim().to_owned()
}

impl SqsClient {
    /// `queue_url` as SQS gives it (`https://sqs.{region}.amazonaws.com/{account}/{name}`);
    /// `credentials`: fixed keys (`AwsCredentials`) or a
    /// [`CredentialsProvider`], asked before every request.
    pub fn new(
        endpoint: AwsEndpoint,
        credentials: impl Into<CredentialsProvider>,
        region: &str,
        queue_url: &str,
    ) -> Result<SqsClient, reqwest::Error> {
        Ok(SqsClient {
            signed: Signed::new(
                endpoint,
                Some(credentials.into()),
                region,
                "sqs",
                Duration::from_secs(30),
            )?,
            queue_url: queue_url.to_owned(),
        })
    }

    async fn call(
        &self,
        op: &'static str,
        body: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, AwsError> {
        let headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.0".to_owned(),
            ),
            ("x-amz-target".to_owned(), format!("AmazonSQS.{op}")),
        ];
        let host = self.signed.host().to_owned();
        let sent = self
            .signed
            .send(
                op,
                reqwest::Method::POST,
                &host,
                "/",
                &[],
                headers,
                Bytes::from(body.to_string()),
                timeout,
            )
            .await?;
        let resp = sent.response;
        let status = resp.status().as_u16();
        let query_code = resp
            .headers()
            .get("x-amzn-query-error")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        // Ten messages of up to 1 MiB, JSON-escaped: well under 64 MiB.
        let body = crate::net::http::read_body(resp, 64 << 20)
            .await
            .map_err(|e| AwsError::Invalid {
                op,
                message: e.to_string(),
            })?;
        let parsed = if body.is_empty() {
            Ok(json!({}))
        } else {
            serde_json::from_slice::<Value>(&body)
        };
        if status != 200 {
            // Decided by the status: a balancer's HTML 5xx is still a 5xx.
            let v = parsed.unwrap_or_else(|_| json!({}));
            let e = AwsError::Status {
                op,
                status,
                code: error_code(query_code.as_deref(), v["__type"].as_str()),
                message: v["message"]
                    .as_str()
                    .or(v["Message"].as_str())
                    .unwrap_or("")
                    .to_owned(),
            };
            return Err(self.signed.judge(sent.signer.as_ref(), e));
        }
        parsed.map_err(|e| AwsError::Invalid {
            op,
            message: format!("the answer is not JSON: {e}"),
        })
    }

    /// Up to `max` messages (1..=10), waiting up to `wait` for the first,
    /// each hidden from other receivers for `visibility`.
    pub async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, AwsError> {
        let v = self
            .call(
                "ReceiveMessage",
                json!({
                    "QueueUrl": self.queue_url,
                    "MaxNumberOfMessages": max.clamp(1, 10),
                    "WaitTimeSeconds": wait.as_secs().min(20),
                    "VisibilityTimeout": visibility.as_secs(),
                    "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
                    "AttributeNames": ["ApproximateReceiveCount"],
                }),
                Some(wait + Duration::from_secs(10)),
            )
            .await?;
        let r: Received = serde_json::from_value(v).map_err(|e| AwsError::Invalid {
            op: "ReceiveMessage",
            message: e.to_string(),
        })?;
        Ok(r.messages
            .into_iter()
            .map(|m| Message {
                receive_count: m
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                id: m.id,
                receipt: m.receipt,
                body: m.body,
            })
            .collect())
    }

    pub async fn delete(&self, receipt: &str) -> Result<(), AwsError> {
        self.call(
            "DeleteMessage",
            json!({"QueueUrl": self.queue_url, "ReceiptHandle": receipt}),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Hides the message for `visibility` from now (0: visible at once).
    pub async fn change_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), AwsError> {
        self.call(
            "ChangeMessageVisibility",
            json!({"QueueUrl": self.queue_url, "ReceiptHandle": receipt, "VisibilityTimeout": visibility.as_secs()}),
            None,
        )
        .await
        .map(|_| ())
    }
}
