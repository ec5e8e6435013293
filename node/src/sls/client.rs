//! [`SlsClient`]: the SLS calls Trail makes, each signed, retried and typed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aliyun_log_sdk_sign::{sign_v1, QueryParams};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_TYPE};
use http::Method;
use serde::Deserialize;
use trail_proto::sls::LogGroup;

use crate::sls::codec::{self, Compression, MAX_LOG_GROUP_RAW, MAX_REQUEST_BODY};
use crate::sls::credentials::Credentials;
use crate::sls::endpoint::Endpoint;
use crate::sls::error::{ErrorCode, SlsError};
use crate::sls::model::{
    ConsumerGroupCheckpoint, Cursor, CursorPosition, PullRequest, PullResponse, PulledBody,
    PutTarget, Shard,
};
use crate::sls::retry::RetryPolicy;

const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";

/// Counters of what the client did, for metrics and `trailctl status`.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retries_transient: AtomicU64,
    pub retries_quota: AtomicU64,
    pub errors: AtomicU64,
}

/// A client of one SLS endpoint with one set of credentials. Cheap to clone.
#[derive(Clone)]
pub struct SlsClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    credentials: Arc<RwLock<Credentials>>,
    retry: RetryPolicy,
    stats: Arc<ClientStats>,
}

impl std::fmt::Debug for SlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlsClient")
            .field("endpoint", &self.endpoint)
            .field(
                "credentials",
                &*self.credentials.read().expect("not poisoned"),
            )
            .finish()
    }
}

/// Builds an [`SlsClient`].
pub struct SlsClientBuilder {
    endpoint: Endpoint,
    credentials: Credentials,
    retry: RetryPolicy,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl SlsClientBuilder {
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    pub fn build(self) -> Result<SlsClient, SlsError> {
        let mut builder =
            crate::net::http::client_builder(self.connect_timeout, self.request_timeout);
        if let Some(resolver) = self.endpoint.resolver() {
            builder = builder.dns_resolver(resolver);
        }
        let http = builder.build().map_err(SlsError::Network)?;
        Ok(SlsClient {
            http,
            endpoint: self.endpoint,
            credentials: Arc::new(RwLock::new(self.credentials)),
            retry: self.retry,
            stats: Arc::default(),
        })
    }
}

/// A request body with its SLS framing.
struct Body {
    bytes: Bytes,
    content_type: &'static str,
    raw_size: usize,
    compression: Compression,
}

impl Body {
    fn json(value: &serde_json::Value) -> Body {
        let bytes = Bytes::from(serde_json::to_vec(value).expect("JSON values serialize"));
        Body {
            raw_size: bytes.len(),
            bytes,
            content_type: JSON,
            compression: Compression::None,
        }
    }
}

struct Call<'a> {
    method: Method,
    project: &'a str,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Body>,
    /// PullLogs only: the compression we accept.
    accept_encoding: Option<Compression>,
    /// The largest answer read: body bytes, and for PullLogs also the
    /// declared raw size.
    max_body: usize,
}

/// The largest answer of any call but PullLogs (shard lists, checkpoints,
/// index configs are kilobytes).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

impl<'a> Call<'a> {
    fn new(method: Method, project: &'a str, path: String) -> Self {
        Call {
            method,
            project,
            path,
            query: Vec::new(),
            body: None,
            accept_encoding: None,
            max_body: MAX_ANSWER_BYTES,
        }
    }

    fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }
}

struct Answer {
    headers: HeaderMap,
    body: Bytes,
}

impl SlsClient {
    pub fn builder(endpoint: Endpoint, credentials: Credentials) -> SlsClientBuilder {
        SlsClientBuilder {
            endpoint,
            credentials,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Replaces the credentials (an STS refresh); requests already signed keep theirs.
    pub fn set_credentials(&self, credentials: Credentials) {
        *self.credentials.write().expect("not poisoned") = credentials;
    }

    /// ListShards: every shard of a logstore, readonly ones included.
    pub async fn list_shards(&self, project: &str, logstore: &str) -> Result<Vec<Shard>, SlsError> {
        let call = Call::new(
            Method::GET,
            project,
            format!("/logstores/{}/shards", name(logstore)?),
        );
        self.json(call).await
    }

    /// GetCursor at the beginning, the end, or a receive time.
    pub async fn get_cursor(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        position: CursorPosition,
    ) -> Result<Cursor, SlsError> {
        #[derive(Deserialize)]
        struct R {
            cursor: String,
        }
        let call = Call::new(Method::GET, project, shard_path(logstore, shard)?)
            .query("type", "cursor")
            .query("from", position.query_value());
        let r: R = self.json(call).await?;
        Ok(Cursor::new(r.cursor))
    }

    /// GetCursorTime: the server receive time (unix seconds) of the group at `cursor`.
    pub async fn get_cursor_time(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        cursor: &Cursor,
    ) -> Result<u32, SlsError> {
        #[derive(Deserialize)]
        struct R {
            cursor_time: u32,
        }
        let call = Call::new(Method::GET, project, shard_path(logstore, shard)?)
            .query("type", "cursor_time")
            .query("cursor", cursor.as_str());
        let r: R = self.json(call).await?;
        Ok(r.cursor_time)
    }

    /// PullLogs. The body comes back compressed: see [`PulledBody::decode`].
    pub async fn pull_logs(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        request: &PullRequest<'_>,
    ) -> Result<PullResponse, SlsError> {
        if !(1..=1000).contains(&request.count) {
            return Err(SlsError::InvalidRequest(format!(
                "PullLogs count {} is outside 1..=1000",
                request.count
            )));
        }
        let mut call = Call::new(Method::GET, project, shard_path(logstore, shard)?)
            .query("type", "log")
            .query("cursor", request.cursor.as_str())
            .query("count", request.count.to_string());
        if let Some(end) = request.end_cursor {
            call = call.query("end_cursor", end.as_str());
        }
        call.accept_encoding = Some(request.compression);
        call.max_body = request.max_bytes;
        let answer = self.execute(&call).await?;
        parse_pull(answer)
    }

    /// PutLogs of one log group (lz4-compressed, as every SDK sends it).
    pub async fn put_logs(
        &self,
        project: &str,
        logstore: &str,
        group: &LogGroup,
        target: PutTarget<'_>,
    ) -> Result<(), SlsError> {
        let raw = codec::encode_log_group(group);
        self.put_encoded_logs(project, logstore, &raw, target).await
    }

    /// PutLogs of an already encoded `LogGroup` (a sink that builds its own bytes).
    pub async fn put_encoded_logs(
        &self,
        project: &str,
        logstore: &str,
        raw: &[u8],
        target: PutTarget<'_>,
    ) -> Result<(), SlsError> {
        if raw.len() > MAX_LOG_GROUP_RAW {
            return Err(SlsError::RequestTooLarge {
                what: "a log group",
                size: raw.len(),
                limit: MAX_LOG_GROUP_RAW,
            });
        }
        let compression = Compression::Lz4;
        let bytes = codec::compress(compression, raw)?;
        if bytes.len() > MAX_REQUEST_BODY {
            return Err(SlsError::RequestTooLarge {
                what: "a compressed body",
                size: bytes.len(),
                limit: MAX_REQUEST_BODY,
            });
        }
        let logstore = name(logstore)?;
        let mut call = match target {
            PutTarget::LoadBalanced => Call::new(
                Method::POST,
                project,
                format!("/logstores/{logstore}/shards/lb"),
            ),
            PutTarget::HashKey(key) => {
                if key.is_empty() || key.len() > 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(SlsError::InvalidRequest(format!(
                        "hash key {key:?} is not up to 32 hex digits"
                    )));
                }
                Call::new(
                    Method::POST,
                    project,
                    format!("/logstores/{logstore}/shards/route"),
                )
                .query("key", key.to_ascii_lowercase())
            }
        };
        call.body = Some(Body {
            bytes,
            content_type: PROTOBUF,
            raw_size: raw.len(),
            compression,
        });
        self.execute(&call).await.map(drop)
    }

    /// CreateConsumerGroup. `ConsumerGroupAlreadyExist` comes back as an error;
    /// see [`SlsClient::ensure_consumer_group`].
    pub async fn create_consumer_group(
        &self,
        project: &str,
        logstore: &str,
        group: &str,
        timeout_secs: u32,
        in_order: bool,
    ) -> Result<(), SlsError> {
        let mut call = Call::new(
            Method::POST,
            project,
            format!("/logstores/{}/consumergroups", name(logstore)?),
        );
        call.body = Some(Body::json(&serde_json::json!({
            "consumerGroup": name(group)?,
            "timeout": timeout_secs,
            "order": in_order,
        })));
        self.execute(&call).await.map(drop)
    }

    /// Creates the consumer group unless it exists already.
    pub async fn ensure_consumer_group(
        &self,
        project: &str,
        logstore: &str,
        group: &str,
        timeout_secs: u32,
    ) -> Result<(), SlsError> {
        match self
            .create_consumer_group(project, logstore, group, timeout_secs, false)
            .await
        {
            Err(e) if e.code() == Some(&ErrorCode::ConsumerGroupAlreadyExist) => Ok(()),
            other => other,
        }
    }

    /// GetCheckPoint of one shard, or of every shard with `None`. A shard that
    /// never committed has an empty `checkpoint`.
    pub async fn get_checkpoints(
        &self,
        project: &str,
        logstore: &str,
        group: &str,
        shard: Option<u32>,
    ) -> Result<Vec<ConsumerGroupCheckpoint>, SlsError> {
        let mut call = Call::new(Method::GET, project, group_path(logstore, group)?);
        if let Some(shard) = shard {
            call = call.query("shard", shard.to_string());
        }
        self.json(call).await
    }

    /// UpdateCheckPoint. Trail mirrors its own checkpoints with no consumer name
    /// and `force_success = true` (it never joins the group by heartbeat).
    #[allow(clippy::too_many_arguments)] // the call's own parameters, as SLS names them
    pub async fn update_checkpoint(
        &self,
        project: &str,
        logstore: &str,
        group: &str,
        shard: u32,
        checkpoint: &Cursor,
        consumer: Option<&str>,
        force_success: bool,
    ) -> Result<(), SlsError> {
        let mut call = Call::new(Method::POST, project, group_path(logstore, group)?)
            .query("type", "checkpoint")
            .query("consumer", consumer.unwrap_or_default())
            .query("forceSuccess", if force_success { "true" } else { "false" });
        call.body = Some(Body::json(&serde_json::json!({
            "shard": shard,
            "checkpoint": checkpoint.as_str(),
        })));
        self.execute(&call).await.map(drop)
    }

    /// CreateLogStore. `LogStoreAlreadyExist` comes back as an error.
    pub async fn create_logstore(
        &self,
        project: &str,
        logstore: &str,
        ttl_days: u32,
        shards: u32,
    ) -> Result<(), SlsError> {
        let mut call = Call::new(Method::POST, project, "/logstores".to_owned());
        call.body = Some(Body::json(&serde_json::json!({
            "logstoreName": name(logstore)?,
            "ttl": ttl_days,
            "shardCount": shards,
            "autoSplit": true,
            "maxSplitShard": 64,
            "appendMeta": true,
        })));
        self.execute(&call).await.map(drop)
    }

    /// GetIndex: the logstore's index config, `None` when it has none
    /// (`IndexConfigNotExist`).
    pub async fn get_index(
        &self,
        project: &str,
        logstore: &str,
    ) -> Result<Option<serde_json::Value>, SlsError> {
        let call = Call::new(
            Method::GET,
            project,
            format!("/logstores/{}/index", name(logstore)?),
        );
        match self.json(call).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code().map(ErrorCode::as_str) == Some("IndexConfigNotExist") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// CreateIndex (`create`) or UpdateIndex with an index config.
    pub async fn put_index(
        &self,
        project: &str,
        logstore: &str,
        index: &serde_json::Value,
        create: bool,
    ) -> Result<(), SlsError> {
        let method = if create { Method::POST } else { Method::PUT };
        let mut call = Call::new(
            method,
            project,
            format!("/logstores/{}/index", name(logstore)?),
        );
        call.body = Some(Body::json(index));
        self.execute(&call).await.map(drop)
    }

    /// Creates or replaces a saved search (`savedsearchName` names it).
    pub async fn put_saved_search(
        &self,
        project: &str,
        search: &serde_json::Value,
    ) -> Result<(), SlsError> {
        let search_name = search["savedsearchName"].as_str().unwrap_or_default();
        let mut call = Call::new(Method::POST, project, "/savedsearches".to_owned());
        call.body = Some(Body::json(search));
        match self.execute(&call).await {
            Err(e) if e.code().map(ErrorCode::as_str) == Some("SavedSearchAlreadyExist") => {
                let mut call = Call::new(
                    Method::PUT,
                    project,
                    format!("/savedsearches/{}", name(search_name)?),
                );
                call.body = Some(Body::json(search));
                self.execute(&call).await.map(drop)
            }
            other => other.map(drop),
        }
    }

    /// GetSavedSearch: the saved search, `None` when there is none by that
    /// name (`SavedSearchNotExist`).
    pub async fn get_saved_search(
        &self,
        project: &str,
        search_name: &str,
    ) -> Result<Option<serde_json::Value>, SlsError> {
        let call = Call::new(
            Method::GET,
            project,
            format!("/savedsearches/{}", name(search_name)?),
        );
        match self.json(call).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code().map(ErrorCode::as_str) == Some("SavedSearchNotExist") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, call: Call<'_>) -> Result<T, SlsError> {
        let answer = self.execute(&call).await?;
        serde_json::from_slice(&answer.body)
            .map_err(|e| SlsError::InvalidResponse(format!("{} {}: {e}", call.method, call.path)))
    }

    /// Sends `call`, retrying per the policy. Each attempt is signed afresh (Date).
    async fn execute(&self, call: &Call<'_>) -> Result<Answer, SlsError> {
        name(call.project)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let err = match self.execute_once(call).await {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            let class = err.class();
            match self.retry.backoff(class, attempt) {
                Some(pause) => {
                    let counter = match class {
                        crate::sls::error::ErrorClass::Quota => &self.stats.retries_quota,
                        _ => &self.stats.retries_transient,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        method = %call.method, path = %call.path, attempt, ?pause, error = %err,
                        "SLS call failed, retrying"
                    );
                    tokio::time::sleep(pause).await;
                }
                None => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(err);
                }
            }
        }
    }

    async fn execute_once(&self, call: &Call<'_>) -> Result<Answer, SlsError> {
        let mut headers = HeaderMap::new();
        let body = call.body.as_ref();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(body.map_or(JSON, |b| b.content_type)),
        );
        headers.insert(
            HeaderName::from_static("x-log-bodyrawsize"),
            HeaderValue::from(body.map_or(0, |b| b.raw_size)),
        );
        if let Some(token) = body.and_then(|b| b.compression.header_value()) {
            headers.insert(
                HeaderName::from_static("x-log-compresstype"),
                HeaderValue::from_static(token),
            );
        }
        if let Some(accept) = call.accept_encoding {
            headers.insert(ACCEPT, HeaderValue::from_static(PROTOBUF));
            headers.insert(
                ACCEPT_ENCODING,
                HeaderValue::from_static(accept.header_value().unwrap_or("")),
            );
        }
        {
            let creds = self.credentials.read().expect("not poisoned");
            let query: QueryParams<'_> = call
                .query
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>()
                .into();
            sign_v1(
                &creds.access_key_id,
                creds.access_key_secret.expose(),
                creds.security_token.as_ref().map(|t| t.expose()),
                call.method.clone(),
                &call.path,
                &mut headers,
                query,
                body.map(|b| &b.bytes[..]),
            )
            .map_err(|e| SlsError::InvalidRequest(format!("signing: {e}")))?;
        }

        let mut url = self.endpoint.url(Some(call.project), &call.path);
        if !call.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &call.query {
                pairs.append_pair(k, v);
            }
        }
        let mut request = self.http.request(call.method.clone(), url).headers(headers);
        if let Some(b) = body {
            request = request.body(b.bytes.clone());
        }
        let response = request.send().await.map_err(SlsError::Network)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // A PullLogs body says how large it will be once decompressed:
        // refuse a larger one before reading a byte of it.
        if status == 200 && call.accept_encoding.is_some() {
            if let Some(raw) =
                header_str(&headers, "x-log-bodyrawsize").and_then(|v| v.parse::<u64>().ok())
            {
                if raw > call.max_body as u64 {
                    return Err(SlsError::TooLarge {
                        size: Some(raw),
                        cap: call.max_body,
                    });
                }
            }
        }
        let body = crate::net::http::read_body(response, call.max_body)
            .await
            .map_err(|e| match e {
                crate::net::http::BodyError::TooLarge { cap } => {
                    SlsError::TooLarge { size: None, cap }
                }
                crate::net::http::BodyError::Read(e) => SlsError::Network(e),
            })?;
        if status == 200 {
            return Ok(Answer { headers, body });
        }
        Err(service_error(status, &headers, &body))
    }
}

fn service_error(status: u16, headers: &HeaderMap, body: &[u8]) -> SlsError {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(rename = "errorCode")]
        code: String,
        #[serde(rename = "errorMessage", default)]
        message: String,
    }
    let request_id = header_str(headers, "x-log-requestid")
        .unwrap_or("-")
        .to_owned();
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => SlsError::Service {
            status,
            code: ErrorCode::parse(&e.code),
            message: e.message,
            request_id,
        },
        Err(_) => SlsError::Service {
            status,
            code: ErrorCode::Other(format!("HTTP{status}")),
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            request_id,
        },
    }
}

fn parse_pull(answer: Answer) -> Result<PullResponse, SlsError> {
    let h = &answer.headers;
    let missing = |name: &str| {
        SlsError::InvalidResponse(format!("PullLogs: header {name} missing or invalid"))
    };
    let next_cursor = header_str(h, "x-log-cursor").ok_or_else(|| missing("x-log-cursor"))?;
    let count = header_str(h, "x-log-count")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| missing("x-log-count"))?;
    let raw_size = header_str(h, "x-log-bodyrawsize")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| missing("x-log-bodyrawsize"))?;
    let compression = match header_str(h, "x-log-compresstype") {
        Some(v) => Compression::from_header(v)?,
        None => Compression::None,
    };
    Ok(PullResponse {
        next_cursor: Cursor::new(next_cursor),
        count,
        read_last_cursor: header_str(h, "x-log-read-last-cursor").and_then(|v| v.parse().ok()),
        cursor_time: header_str(h, "x-log-cursor-time").and_then(|v| v.parse().ok()),
        end_of_cursor: header_str(h, "x-log-end-of-cursor") == Some("1"),
        body: PulledBody {
            compression,
            raw_size,
            bytes: answer.body,
        },
    })
}

/// Every decoder of an SLS answer, over bytes from a fuzzer (`crate::fuzz`):
/// a status and header lines, an empty line, the body.
pub(crate) fn decode_answers(data: &[u8]) {
    let (head, body) = match memchr::memmem::find(data, b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (&data[..0], data),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let status = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.trim().parse::<u16>().ok())
        .unwrap_or(200);
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    let _ = service_error(status, &headers, body).to_string();
    let answer = Answer {
        headers,
        body: Bytes::copy_from_slice(body),
    };
    if let Ok(pulled) = parse_pull(answer) {
        // The consumer refuses a declared size past `max_pull_bytes` first.
        if pulled.body.raw_size <= 4 << 20 {
            if let Ok(raw) = codec::decompress(
                pulled.body.compression,
                pulled.body.bytes,
                pulled.body.raw_size,
            ) {
                let _ = codec::decode_log_group_list(raw);
            }
        }
    }
    let _ = serde_json::from_slice::<Vec<Shard>>(body);
    let _ = serde_json::from_slice::<Vec<ConsumerGroupCheckpoint>>(body);
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Project, logstore and consumer-group names go into URLs and the signed path:
/// refuse anything outside SLS's own name rules rather than escape it.
fn name(value: &str) -> Result<&str, SlsError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(value)
    } else {
        Err(SlsError::InvalidRequest(format!(
            "{value:?} is not a valid SLS name (lowercase letters, digits, '-' and '_')"
        )))
    }
}

fn shard_path(logstore: &str, shard: u32) -> Result<String, SlsError> {
    Ok(format!("/logstores/{}/shards/{shard}", name(logstore)?))
}

fn group_path(logstore: &str, group: &str) -> Result<String, SlsError> {
    Ok(format!(
        "/logstores/{}/consumergroups/{}",
        name(logstore)?,
        name(group)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_a_url() {
        assert!(name("audit-prod_1").is_ok());
        assert!(name("../etc").is_err());
        assert!(name("A").is_err());
        assert!(name("").is_err());
    }
}
