//! Amazon S3, SQS and STS, as far as a CloudTrail collector uses them:
//! where AWS delivers a trail (gzip'd `{"Records":[…]}` objects in a
//! bucket), how it announces each file (S3 event notifications or
//! CloudTrail's SNS messages, into an SQS queue), and how a reader in
//! another account gets in (STS roles, container credentials).
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | config, routing (`X-Amz-Target: AmazonSQS.*` → SQS, a form-encoded `Action=` to `/` → STS, else S3), SigV4 on every request (the access key or a live role session with its token), `--require-role`, faults, stats, admin |
//! | `s3.rs` | buckets and objects: CreateBucket, PutObject (plain or `aws-chunked`), GetObject, HeadObject, DeleteObject, ListObjectsV2 (prefix, delimiter, continuation, `encoding-type=url`), bucket notifications to SQS |
//! | `sqs.rs` | queues in the JSON 1.0 protocol current SDKs speak: CreateQueue, GetQueueUrl, ListQueues, SendMessage, ReceiveMessage (long polling, visibility timeout, receive counts), DeleteMessage (+Batch), ChangeMessageVisibility, GetQueueAttributes, PurgeQueue |
//! | `sts.rs` | AssumeRole (SigV4; `--role ARN[:EXTERNAL_ID]`, the external id required when the role has one), AssumeRoleWithWebIdentity (unsigned; `--web-identity-token`), GetCallerIdentity; role sessions (`ASIA…` key, secret, session token, expiry); the container credentials endpoint |
//! | `client.rs` | a small signed client, for the generator's uploads and tests |
//!
//! Addressing: path style (`/{bucket}/{key}`, what SDKs use with a custom
//! endpoint) and virtual-host style (`Host: {bucket}.{anything}`, what they
//! use against AWS) both work. Signatures are checked with devstack's own
//! SigV4 (`cloud::auth`, written from the spec, not Trail's signer); the
//! chunk signatures of `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` bodies are not
//! checked (the seed signature over the headers is).
//!
//! Who may do what: the access key may do everything, unless
//! `--require-role`: then it keeps only the writes CloudTrail itself does
//! (CreateBucket, PutObject, bucket notifications, CreateQueue,
//! GetQueueUrl, SendMessage) and every read is `AccessDenied` to it; role
//! sessions may do everything while they last.
//!
//! Container credentials: with `--container-token T`,
//! `GET /_devstack/container-credentials` with `Authorization: T` answers a
//! session of `--container-role` in ECS's JSON shape (`AccessKeyId`,
//! `SecretAccessKey`, `Token`, `Expiration`, `RoleArn`), for
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` (loopback http is what the SDKs
//! accept).
//!
//! Admin (unauthenticated): `GET /_devstack/stats` (requests per operation
//! and answer — STS's too —, objects, messages visible / in flight /
//! deleted, receives, STS sessions issued and live),
//! `PUT /_devstack/faults` (`{"fail_every": N, "fail_status": 503,
//! "drop_every": N, "latency_ms": N, "ops": ["GetObject", …]}`: every Nth
//! request of the named operations, all when `ops` is empty, answers
//! `fail_status` or loses its connection).

pub mod client;
mod s3;
mod sqs;
mod sts;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest;

use crate::cloud::auth;
use crate::http::{json_response, Answer, Drop, Handler, Server};

/// `trail-devstack s3` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct S3Config {
    #[arg(long, default_value = "127.0.0.1:39003")]
    pub listen: SocketAddr,
    #[arg(
        long,
        env = "DEVSTACK_AWS_ACCESS_KEY_ID",
        default_value = "AKIADEVSTACK0000TEST"
    )]
    pub access_key_id: String,
    #[arg(
        long,
        env = "DEVSTACK_AWS_SECRET_ACCESS_KEY",
        default_value = "devstack/aws/secret/key/for/tests/only0000",
        hide_env_values = true
    )]
    pub secret_access_key: String,
    /// The region in queue ARNs and notifications.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// The account that owns the queues.
    #[arg(long, default_value = "123456789012")]
    pub account: String,
    /// Buckets to create at start.
    #[arg(long = "bucket")]
    pub buckets: Vec<String>,
    /// Queues to create at start.
    #[arg(long = "queue")]
    pub queues: Vec<String>,
    /// `BUCKET=QUEUE[:PREFIX]`: every object created in BUCKET (under
    /// PREFIX) is announced to QUEUE as S3 announces it.
    #[arg(long = "notify")]
    pub notify: Vec<String>,
    /// A new queue's default visibility timeout, seconds.
    #[arg(long, default_value_t = 30)]
    pub visibility_timeout: u32,
    /// Largest request body accepted, bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
    /// `ARN[:EXTERNAL_ID]` (repeatable): a role STS AssumeRole hands out
    /// sessions of; with an external id, AssumeRole must carry exactly it.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// S3 and SQS refuse every read by the access key itself
    /// (AccessDenied): only role sessions read. The key keeps CloudTrail's
    /// writes.
    #[arg(long)]
    pub require_role: bool,
    /// A role's longest session (a larger DurationSeconds is refused), seconds.
    #[arg(long, default_value_t = 3600)]
    pub max_session_secs: u64,
    /// The one token AssumeRoleWithWebIdentity accepts (absent: none).
    #[arg(long, env = "DEVSTACK_WEB_IDENTITY_TOKEN", hide_env_values = true)]
    pub web_identity_token: Option<String>,
    /// Serve container credentials at `GET /_devstack/container-credentials`
    /// to requests whose `Authorization` header is this token.
    #[arg(long, env = "DEVSTACK_CONTAINER_TOKEN", hide_env_values = true)]
    pub container_token: Option<String>,
    /// The role container credentials are sessions of (default: the first
    /// `--role`, else `arn:aws:iam::{account}:role/devstack-task`).
    #[arg(long)]
    pub container_role: Option<String>,
    /// How long container credentials last, seconds (ECS's are hours).
    #[arg(long, default_value_t = 21_600)]
    pub container_session_secs: u64,
}

impl S3Config {
    pub fn on(listen: SocketAddr) -> S3Config {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            c: S3Config,
        }
        let mut c = P::parse_from(["x"]).c;
        c.listen = listen;
        c
    }
}

/// Faults, set at runtime through `PUT /_devstack/faults`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub fail_every: u64,
    pub fail_status: Option<u16>,
    pub drop_every: u64,
    pub latency_ms: u64,
    /// Operations the faults apply to; empty: all.
    pub ops: Vec<String>,
}

#[derive(Default)]
struct Stats {
    /// Operation → answer → count.
    answers: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests counted against the faults.
    faultable: u64,
    received: u64,
    redelivered: u64,
    deleted: u64,
    sent: u64,
    notifications: u64,
}

pub(crate) struct AwsState {
    config: S3Config,
    s3: Mutex<s3::Buckets>,
    sqs: sqs::Queues,
    /// `--role`, parsed.
    roles: Vec<sts::Role>,
    sts: sts::Sessions,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
}

/// One request, parsed once.
pub(crate) struct Call {
    pub method: String,
    /// The path as sent (percent-encoded): what SigV4 signs.
    pub raw_path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl Call {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    pub fn query(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn has_query(&self, k: &str) -> bool {
        self.query.iter().any(|(n, _)| n == k)
    }
    /// The Host header without its port.
    pub fn host(&self) -> &str {
        let h = self.header("host").unwrap_or("");
        match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        }
    }
}

/// An answer before it becomes HTTP.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The code counted in the stats (`200`, or the error code).
    pub code: String,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            code: status.to_string(),
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Reply {
        self.headers.push((k.to_owned(), v.into()));
        self
    }
}

/// A running S3 + SQS server.
pub struct S3Server {
    server: Server,
    state: Arc<AwsState>,
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("--notify {0:?}: expected BUCKET=QUEUE[:PREFIX]")]
    Notify(String),
    #[error("{0}")]
    Role(String),
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

impl S3Server {
    pub async fn start(config: S3Config) -> Result<S3Server, S3Error> {
        let roles = config
            .roles
            .iter()
            .map(|r| sts::parse_role(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(S3Error::Role)?;
        if let Some(r) = &config.container_role {
            sts::parse_role(r).map_err(S3Error::Role)?;
        }
        let state = Arc::new(AwsState {
            s3: Mutex::new(s3::Buckets::default()),
            sqs: sqs::Queues::default(),
            roles,
            sts: sts::Sessions::default(),
            faults: Mutex::default(),
            stats: Mutex::default(),
            config: config.clone(),
        });
        for b in &config.buckets {
            state.s3.lock().create(b);
        }
        for q in &config.queues {
            state.sqs.create(q, config.visibility_timeout);
        }
        for n in &config.notify {
            let (bucket, rest) = n
                .split_once('=')
                .ok_or_else(|| S3Error::Notify(n.clone()))?;
            let (queue, prefix) = rest.split_once(':').unwrap_or((rest, ""));
            if bucket.is_empty() || queue.is_empty() {
                return Err(S3Error::Notify(n.clone()));
            }
            state.s3.lock().create(bucket);
            state.sqs.create(queue, config.visibility_timeout);
            let arn = format!("arn:aws:sqs:{}:{}:{queue}", config.region, config.account);
            state.s3.lock().notify(bucket, "devstack", &arn, prefix, "");
        }
        let server = Server::start(config.listen, state.clone()).await?;
        Ok(S3Server { server, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn stats(&self) -> Value {
        self.state.stats_json()
    }

    pub fn set_faults(&self, f: Faults) {
        *self.state.faults.lock() = f;
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    pub async fn stopped(&mut self) {
        self.server.stopped().await;
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// `YYYYMMDDTHHMMSSZ` → unix milliseconds.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss)
        .ok()
        .map(|t| t * 1000)
}

pub(crate) fn request_id() -> String {
    let mut r = fastrand::Rng::new();
    (0..16)
        .map(|_| char::from(b"0123456789ABCDEF"[r.usize(..16)]))
        .collect()
}

/// Which service a request is for, and its operation name.
enum Route {
    Sqs(String),
    Sts(String),
    S3,
}

/// What the access key may still do under `--require-role`: the writes
/// CloudTrail itself makes.
const KEY_WRITES: &[&str] = &[
    "CreateBucket",
    "PutObject",
    "PutBucketNotificationConfiguration",
    "CreateQueue",
    "GetQueueUrl",
    "SendMessage",
    "SendMessageBatch",
];

impl AwsState {
    fn stats_json(&self) -> Value {
        // Queues and buckets first: a receive holds its queue, then the stats.
        let (objects, bytes) = self.s3.lock().totals();
        let q = self.sqs.totals();
        let faults = self.faults.lock().clone();
        let s = self.stats.lock();
        json!({
            "answers": s.answers,
            "objects": objects,
            "object_bytes": bytes,
            "messages_visible": q.visible,
            "messages_in_flight": q.in_flight,
            "messages_sent": s.sent,
            "messages_received": s.received,
            "messages_redelivered": s.redelivered,
            "messages_deleted": s.deleted,
            "notifications": s.notifications,
            "sts_sessions_issued": self.sts.issued(),
            "sts_sessions_live": self.sts.live(),
            "faults": {
                "fail_every": faults.fail_every,
                "drop_every": faults.drop_every,
                "latency_ms": faults.latency_ms,
            },
        })
    }

    fn count(&self, op: &str, code: &str) {
        *self
            .stats
            .lock()
            .answers
            .entry(op.to_owned())
            .or_default()
            .entry(code.to_owned())
            .or_default() += 1;
    }

    /// Fault to inject for this request, if any: `Some(None)` drops it.
    fn fault(&self, op: &str) -> Option<Option<u16>> {
        let f = self.faults.lock().clone();
        if !f.ops.is_empty() && !f.ops.iter().any(|o| o == op) {
            return None;
        }
        let n = {
            let mut s = self.stats.lock();
            s.faultable += 1;
            s.faultable
        };
        if f.drop_every > 0 && n.is_multiple_of(f.drop_every) {
            return Some(None);
        }
        if f.fail_every > 0 && n.is_multiple_of(f.fail_every) {
            return Some(Some(f.fail_status.unwrap_or(503)));
        }
        None
    }

    /// SigV4 over the request as received: who signed it. `payload` is
    /// what the client said it signed as the payload (S3:
    /// `x-amz-content-sha256`; others: the body's hash).
    fn authenticate(
        &self,
        call: &Call,
        payload: &str,
        service: &str,
    ) -> Result<sts::Principal, (u16, &'static str, String)> {
        let Some(a) = call.header("authorization") else {
            return Err((
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token".into(),
            ));
        };
        let signed = auth::claimed(Some(a), &[])
            .map_err(|e| (400, "IncompleteSignature", format!("{e:?}")))?;
        // The scope must be this service in this region, the Host signed,
        // the time within 15 minutes: what AWS checks before the signature.
        let field = |name: &str| {
            a.split_once(' ')
                .map(|x| x.1)
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or("")
        };
        let scope: Vec<&str> = field("Credential").split('/').collect();
        if scope.len() != 5 || scope[2] != self.config.region || scope[3] != service {
            return Err((
                403,
                "SignatureDoesNotMatch",
                format!(
                    "Credential should be scoped to a valid region and service {service} in {}: {:?}",
                    self.config.region,
                    scope.get(1..).unwrap_or_default()
                ),
            ));
        }
        if !field("SignedHeaders").split(';').any(|h| h == "host") {
            return Err((
                403,
                "SignatureDoesNotMatch",
                "the host header must be signed".into(),
            ));
        }
        let skewed = call
            .header("x-amz-date")
            .and_then(parse_amz_date)
            .is_none_or(|t| now_ms().abs_diff(t) > 15 * 60 * 1000);
        if skewed {
            return Err((
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.".into(),
            ));
        }
        let (secret, principal) = sts::credential(
            self,
            &signed.access_key_id,
            call.header("x-amz-security-token"),
            service,
        )?;
        match auth::verify_sigv4(
            &call.method,
            &call.raw_path,
            &call.query,
            &call.headers,
            a,
            payload,
            &secret,
        ) {
            Ok(()) => Ok(principal),
            Err(auth::AuthError::Mismatch(s)) => Err((
                403,
                "SignatureDoesNotMatch",
                format!("The request signature we calculated does not match the signature you provided. Check your key and signing method. String to sign: {s}"),
            )),
            Err(e) => Err((400, "IncompleteSignature", format!("{e:?}"))),
        }
    }

    /// May `principal` do `op`? Only the access key is ever refused, and
    /// only under `--require-role`.
    fn permit(
        &self,
        principal: &sts::Principal,
        op: &str,
    ) -> Result<(), (u16, &'static str, String)> {
        if self.config.require_role
            && *principal == sts::Principal::Key
            && !KEY_WRITES.contains(&op)
        {
            return Err((
                403,
                "AccessDenied",
                format!(
                    "User: arn:aws:iam::{}:user/devstack is not authorized to perform: {op} (only role sessions may read)",
                    self.config.account
                ),
            ));
        }
        Ok(())
    }

    fn admin(&self, method: &http::Method, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
        match (method.as_str(), path) {
            ("GET", "stats") => json_response(200, &self.stats_json()),
            ("PUT", "faults") => match serde_json::from_slice::<Faults>(body) {
                Ok(f) => {
                    *self.faults.lock() = f;
                    json_response(200, &self.stats_json())
                }
                Err(e) => json_response(400, &json!({"error": e.to_string()})),
            },
            _ => json_response(404, &json!({"error": "no such admin route"})),
        }
    }
}

impl Handler for AwsState {
    async fn call(&self, req: Request<Incoming>, peer: SocketAddr) -> Answer {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, self.config.max_body_bytes)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                let r = s3::error(
                    413,
                    "EntityTooLarge",
                    "Your proposed upload exceeds the maximum allowed size",
                    "",
                );
                return Ok(to_http(r));
            }
        };
        let raw_path = parts.uri.path().to_owned();
        if raw_path == "/_devstack/container-credentials" {
            let (resp, code) = sts::container_credentials(self, &parts.method, &parts.headers);
            self.count("ContainerCredentials", code);
            return Ok(resp);
        }
        if let Some(admin) = raw_path.strip_prefix("/_devstack/") {
            return Ok(self.admin(&parts.method, admin, &body));
        }
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let call = Call {
            method: parts.method.as_str().to_owned(),
            raw_path,
            query: crate::http::query_pairs(&parts.uri),
            headers,
            body,
            peer,
        };
        let route = match call.header("x-amz-target") {
            Some(t) if t.starts_with("AmazonSQS.") => {
                Route::Sqs(t["AmazonSQS.".len()..].to_owned())
            }
            _ => match sts::action(&call) {
                Some(action) => Route::Sts(action),
                None => Route::S3,
            },
        };
        let op = match &route {
            Route::Sqs(op) | Route::Sts(op) => op.clone(),
            Route::S3 => s3::operation(self, &call),
        };
        let latency = self.faults.lock().latency_ms;
        match self.fault(&op) {
            Some(None) => {
                self.count(&op, "dropped");
                return Err(Drop);
            }
            Some(Some(status)) => {
                self.count(&op, &format!("fault {status}"));
                let r = match route {
                    Route::Sqs(_) => sqs::error(
                        status,
                        "ServiceUnavailable",
                        "AWS.SimpleQueueService.ServiceUnavailable",
                        "devstack fault injection",
                    ),
                    Route::Sts(_) => {
                        sts::error(status, "ServiceUnavailable", "devstack fault injection")
                    }
                    Route::S3 => s3::error(
                        status,
                        "ServiceUnavailable",
                        "Please reduce your request rate.",
                        "",
                    ),
                };
                return Ok(to_http(r));
            }
            None => {}
        }
        if latency > 0 && !ops_exempt(&op) {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let reply = match route {
            Route::Sqs(op) => {
                let hash = hex::encode(sha2::Sha256::digest(&call.body));
                match self
                    .authenticate(&call, &hash, "sqs")
                    .and_then(|who| self.permit(&who, &op))
                {
                    Ok(()) => sqs::dispatch(self, &op, &call).await,
                    Err((status, code, message)) => sqs::error(status, code, code, &message),
                }
            }
            Route::Sts(action) => sts::dispatch(self, &action, &call),
            Route::S3 => s3::dispatch(self, &call),
        };
        self.count(&op, &reply.code);
        if reply.status == 0 {
            return Err(Drop);
        }
        Ok(to_http(reply))
    }
}

/// Long polls wait on their own clock; latency faults are for the data path.
fn ops_exempt(op: &str) -> bool {
    op == "ReceiveMessage"
}

fn to_http(r: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(r.body));
    *resp.status_mut() =
        http::StatusCode::from_u16(r.status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let h = resp.headers_mut();
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            h.append(k, v);
        }
    }
    h.insert(
        "x-amz-request-id",
        http::HeaderValue::from_str(&request_id()).expect("hex"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_read_back_as_the_generator_writes_them() {
        for t in [0i64, 1_795_000_000, 951_782_400 /* 2000-02-29 */] {
            let s = crate::gen::iso(t).replace(['-', ':'], "");
            assert_eq!(parse_amz_date(&s), Some(t as u64 * 1000), "{s}");
        }
        assert_eq!(parse_amz_date("2026-12-03"), None);
        assert_eq!(parse_amz_date("20261303T000000Z"), None);
        assert_eq!(parse_amz_date("2026120ЖT00000Z"), None);
    }
}
