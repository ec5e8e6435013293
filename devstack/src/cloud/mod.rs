//! Alibaba Cloud's Tag, ECS, SLB and STS APIs and AWS's Resource Groups
//! Tagging API, backed by a tags file (the generator's, or your own), for
//! tag enrichment without a cloud.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | config, routing (`Action` / `x-acs-action` / `X-Amz-Target`, Host ignored), credentials and STS sessions, throttling injection, stats |
//! | `auth.rs` | RPC V2, ACS3-HMAC-SHA256 and SigV4 checks |
//! | `api.rs` | ListTagResources (Tag 2018-08-28, ECS 2014-05-26, SLB 2014-05-15), AssumeRole, GetResources |
//!
//! Access follows the resource directory: the configured key belongs to the
//! management account and may read only its resources; a member's resources
//! need `AssumeRole` into `acs:ram::{member}:role/{role}` first
//! (`InvalidResourceARN.Account` otherwise). Admin (unauthenticated):
//! `GET /_devstack/stats` (requests per API and answer, ARNs asked for),
//! `PUT /_devstack/faults` (`{"throttle_every": N}`).

mod api;
pub(crate) mod auth;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Digest;

use crate::gen::TagsFile;
use crate::http::{json_response, Answer, Handler, Server};

/// `trail-devstack cloud` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CloudConfig {
    #[arg(long, default_value = "127.0.0.1:39002")]
    pub listen: SocketAddr,
    /// The management account's AccessKey id.
    #[arg(
        long,
        env = "DEVSTACK_CLOUD_ACCESS_KEY_ID",
        default_value = "devstack-cloud-ak"
    )]
    pub access_key_id: String,
    #[arg(
        long,
        env = "DEVSTACK_CLOUD_ACCESS_KEY_SECRET",
        default_value = "devstack-cloud-secret",
        hide_env_values = true
    )]
    pub access_key_secret: String,
    /// The tags to serve (the generator's tags file format); the
    /// generator's estate for `--seed` if absent.
    #[arg(long)]
    pub tags: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The management account (default: the seed's first account).
    #[arg(long)]
    pub management_account: Option<String>,
    /// The role members trust the management account with.
    #[arg(long, default_value = "ResourceDirectoryAccountAccessRole")]
    pub role_name: String,
    /// The role's MaxSessionDuration (DurationSeconds above it is refused).
    #[arg(long, default_value_t = 3600)]
    pub max_session_secs: u64,
    /// Every Nth tag call (any product) answers a throttling error.
    #[arg(long, default_value_t = 0)]
    pub throttle_every: u64,
    /// HTTP status of throttling answers (undocumented upstream; SDKs go by the code).
    #[arg(long, default_value_t = 400)]
    pub throttle_status: u16,
    /// Extra latency per answer, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
}

impl CloudConfig {
    pub fn on(listen: SocketAddr) -> CloudConfig {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            c: CloudConfig,
        }
        let mut c = P::parse_from(["x"]).c;
        c.listen = listen;
        c
    }
}

/// An STS session handed out by AssumeRole.
#[derive(Debug, Clone)]
struct Session {
    secret: String,
    token: String,
    account: String,
    expires: SystemTime,
}

pub(crate) struct CloudState {
    config: CloudConfig,
    management_account: String,
    /// ARN → tags.
    tags: HashMap<String, BTreeMap<String, String>>,
    /// Accounts with a trusting role.
    accounts: Vec<String>,
    sessions: Mutex<HashMap<String, Session>>,
    throttle_every: Mutex<u64>,
    stats: Mutex<Stats>,
}

#[derive(Default)]
struct Stats {
    calls: u64,
    /// API → answer code → count.
    answers: BTreeMap<String, BTreeMap<String, u64>>,
    arns_asked: u64,
    /// ListTagResources calls without ARNs (whole-region listings).
    listings: u64,
    sessions_issued: u64,
}

/// A running cloud server.
pub struct CloudServer {
    server: Server,
    state: Arc<CloudState>,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("tags file {path}: {message}")]
    Tags { path: String, message: String },
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

impl CloudServer {
    pub async fn start(config: CloudConfig) -> Result<CloudServer, CloudError> {
        let generator = crate::gen::Generator::new(config.seed);
        let file: TagsFile = match &config.tags {
            Some(p) => {
                let err = |m: String| CloudError::Tags {
                    path: p.display().to_string(),
                    message: m,
                };
                let text = std::fs::read(p).map_err(|e| err(e.to_string()))?;
                serde_json::from_slice(&text).map_err(|e| err(e.to_string()))?
            }
            None => generator.tags_file(),
        };
        let mut accounts: Vec<String> = generator.accounts().to_vec();
        for r in &file.resources {
            if let Some(a) = api::arn_account(&r.arn) {
                if !accounts.iter().any(|x| x == a) {
                    accounts.push(a.to_owned());
                }
            }
        }
        let management_account = config
            .management_account
            .clone()
            .unwrap_or_else(|| accounts[0].clone());
        let state = Arc::new(CloudState {
            throttle_every: Mutex::new(config.throttle_every),
            management_account,
            tags: file
                .resources
                .into_iter()
                .map(|r| (r.arn, r.tags))
                .collect(),
            accounts,
            sessions: Mutex::default(),
            stats: Mutex::default(),
            config: config.clone(),
        });
        let server = Server::start(config.listen, state.clone()).await?;
        Ok(CloudServer { server, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn management_account(&self) -> &str {
        &self.state.management_account
    }

    pub fn stats(&self) -> Value {
        self.state.stats_json()
    }

    pub fn set_throttle_every(&self, n: u64) {
        *self.state.throttle_every.lock() = n;
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// One parsed request.
pub(crate) struct Call {
    pub method: String,
    pub path: String,
    /// Query pairs (decoded).
    pub query: Vec<(String, String)>,
    /// Query and form-body parameters together (what RPC reads).
    pub params: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Call {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    /// `Name.1`, `Name.2`, … in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        (1..)
            .map_while(|i| self.param(&format!("{name}.{i}")).map(str::to_owned))
            .collect()
    }
}

/// An answer: status and JSON body.
pub(crate) type Reply = (u16, Value);

pub(crate) fn ali_error(status: u16, code: &str, message: &str) -> Reply {
    (
        status,
        json!({
            "RequestId": request_id(),
            "HostId": "devstack",
            "Code": code,
            "Message": message,
            "Recommend": "https://api.aliyun.com/troubleshoot",
        }),
    )
}

pub(crate) fn aws_error(status: u16, kind: &str, message: &str) -> Reply {
    (status, json!({"__type": kind, "Message": message}))
}

pub(crate) fn request_id() -> String {
    let mut r = fastrand::Rng::new();
    format!(
        "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
        r.u32(..),
        r.u16(..),
        r.u16(..),
        r.u16(..),
        r.u64(..1 << 48)
    )
}

impl CloudState {
    fn stats_json(&self) -> Value {
        let s = self.stats.lock();
        json!({
            "calls": s.calls,
            "answers": s.answers,
            "arns_asked": s.arns_asked,
            "listings": s.listings,
            "sessions_issued": s.sessions_issued,
            "throttle_every": *self.throttle_every.lock(),
        })
    }

    fn count(&self, api: &str, answer: &str) {
        let mut s = self.stats.lock();
        *s.answers
            .entry(api.to_owned())
            .or_default()
            .entry(answer.to_owned())
            .or_default() += 1;
    }

    /// The secret and account of an access key (main key or live STS session).
    fn credential(
        &self,
        signed: &auth::Signed,
        token: Option<&str>,
    ) -> Result<(String, String), Reply> {
        if signed.access_key_id == self.config.access_key_id {
            return Ok((
                self.config.access_key_secret.clone(),
                self.management_account.clone(),
            ));
        }
        let sessions = self.sessions.lock();
        let Some(s) = sessions.get(&signed.access_key_id) else {
            return Err(ali_error(
                404,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found.",
            ));
        };
        if token != Some(s.token.as_str()) {
            return Err(ali_error(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "The security token does not match the access key.",
            ));
        }
        if SystemTime::now() > s.expires {
            return Err(ali_error(
                400,
                "InvalidSecurityToken.Expired",
                "Specified SecurityToken is expired.",
            ));
        }
        Ok((s.secret.clone(), s.account.clone()))
    }

    /// Checks the signature; the caller's account.
    fn authenticate(&self, call: &Call, aws: bool) -> Result<String, Reply> {
        let auth_header = call.header("authorization");
        let signed = auth::claimed(auth_header, &call.params).map_err(|e| match e {
            auth::AuthError::Missing => {
                ali_error(400, "MissingParameter", "Signature is mandatory.")
            }
            auth::AuthError::Malformed(m) => ali_error(400, "InvalidAuthorization", &m),
            auth::AuthError::Mismatch(_) => unreachable!("claimed never compares"),
        })?;
        let token = call
            .param("SecurityToken")
            .or(call.header("x-acs-security-token"))
            .or(call.header("x-amz-security-token"));
        let (secret, account) = self.credential(&signed, token)?;
        let body_hash = hex::encode(sha2::Sha256::digest(&call.body));
        let checked = match auth_header {
            None => auth::verify_v2(&call.method, &call.params, &secret),
            Some(a) if a.starts_with("ACS3") => auth::verify_v3(
                &call.method,
                &call.path,
                &call.query,
                &call.headers,
                a,
                &body_hash,
                &secret,
            ),
            Some(a) => auth::verify_sigv4(
                &call.method,
                &call.path,
                &call.query,
                &call.headers,
                a,
                &body_hash,
                &secret,
            ),
        };
        match checked {
            Ok(()) => Ok(account),
            Err(auth::AuthError::Mismatch(s)) if aws => Err(aws_error(
                403,
                "InvalidSignatureException",
                &format!("The request signature we calculated does not match the signature you provided. String to sign: {s}"),
            )),
            Err(auth::AuthError::Mismatch(s)) => Err(ali_error(
                400,
                "SignatureDoesNotMatch",
                &format!("Specified signature is not matched with our calculation. server string to sign is:{s}"),
            )),
            Err(e) => Err(ali_error(400, "InvalidAuthorization", &format!("{e:?}"))),
        }
    }

    /// Every Nth tag call is throttled.
    fn throttled(&self) -> bool {
        let every = *self.throttle_every.lock();
        let mut s = self.stats.lock();
        s.calls += 1;
        every > 0 && s.calls.is_multiple_of(every)
    }
}

impl Handler for CloudState {
    async fn call(&self, req: Request<Incoming>, _peer: SocketAddr) -> Answer {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, 8 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(json_response(413, &json!({"Code": "RequestTooLarge"}))),
        };
        let path = parts.uri.path().to_owned();
        if let Some(admin) = path.strip_prefix("/_devstack/") {
            return Ok(self.admin(&parts.method, admin, &body));
        }
        let query = crate::http::query_pairs(&parts.uri);
        let mut params = query.clone();
        let form = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form {
            params.extend(url::form_urlencoded::parse(&body).into_owned());
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
            path,
            query,
            params,
            headers,
            body,
        };
        let (api, reply) = api::dispatch(self, &call);
        let answer = if reply.0 == 200 {
            "200".to_owned()
        } else {
            reply.1["Code"]
                .as_str()
                .or(reply.1["__type"].as_str())
                .unwrap_or("error")
                .to_owned()
        };
        self.count(&api, &answer);
        if self.config.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.latency_ms)).await;
        }
        Ok(json_response(reply.0, &reply.1))
    }
}

impl CloudState {
    fn admin(
        &self,
        method: &http::Method,
        path: &str,
        body: &[u8],
    ) -> http::Response<http_body_util::Full<Bytes>> {
        match (method.as_str(), path) {
            ("GET", "stats") => json_response(200, &self.stats_json()),
            ("PUT", "faults") => match serde_json::from_slice::<Value>(body) {
                Ok(v) => {
                    if let Some(n) = v["throttle_every"].as_u64() {
                        *self.throttle_every.lock() = n;
                    }
                    json_response(200, &self.stats_json())
                }
                Err(e) => json_response(400, &json!({"error": e.to_string()})),
            },
            _ => json_response(404, &json!({"error": "no such admin route"})),
        }
    }
}
