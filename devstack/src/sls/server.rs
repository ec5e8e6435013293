//! The SLS request path, Host → project → authentication → faults → body →
//! API → answer. The listener itself is `crate::http`.
//!
//! Requests may come in origin form (`GET /logstores`) or absolute form
//! (`GET http://proj.sls.test:9000/logstores`, as clients send through an HTTP
//! proxy); both route the same.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use parking_lot::RwLock;

use crate::http::{Answer, Handler, Server};
use crate::sls::api::{self, ApiRequest};
use crate::sls::auth::{self, SignedRequest};
use crate::sls::body::{self, MAX_BODY};
use crate::sls::error::ApiError;
use crate::sls::faults::{FaultConfig, Faults, Stats};
use crate::sls::persist::{DataDir, PersistError};
use crate::sls::store::{LogstoreConfig, Store};
use crate::sls::{Settings, SlsConfig, SlsState};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("--data-dir: {0}")]
    DataDir(#[from] PersistError),
    #[error("--sts-credential {0:?}: expected AK:SECRET:TOKEN")]
    StsCredential(String),
    #[error("--project/--logstore: {0}")]
    Seed(ApiError),
}

/// A running SLS server. Dropping it does not stop it; call [`SlsServer::shutdown`].
pub struct SlsServer {
    server: Server,
    state: Arc<SlsState>,
}

impl SlsServer {
    /// Binds, seeds the default project and logstore, and starts serving.
    pub async fn start(config: SlsConfig) -> Result<SlsServer, StartError> {
        let mut credentials = auth::Credentials::default();
        credentials.add(&config.access_key_id, &config.access_key_secret, None);
        for sts in &config.sts_credentials {
            let mut parts = sts.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(ak), Some(sk), Some(token)) if !ak.is_empty() && !token.is_empty() => {
                    credentials.add(ak, sk, Some(token))
                }
                _ => return Err(StartError::StsCredential(sts.clone())),
            }
        }

        let data_dir = config.data_dir.as_deref().map(DataDir::open).transpose()?;
        let mut store = match &data_dir {
            Some(d) => d.load()?,
            None => Store::default(),
        };
        seed(&mut store, &config).map_err(StartError::Seed)?;

        let state = Arc::new(SlsState {
            store: RwLock::new(store),
            credentials,
            faults: Faults::new(config.faults.clone()),
            stats: Stats::default(),
            config: Settings {
                domains: config
                    .domains
                    .iter()
                    .map(|d| d.to_ascii_lowercase())
                    .collect(),
                region: config.region.clone(),
                clamp_cursors: config.clamp_cursors,
            },
            data_dir,
            request_seq: AtomicU64::new(0),
        });
        state.persist_meta();

        let server = Server::start(config.listen, state.clone())
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(SlsServer { server, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Changes the injected faults while running.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.state.faults.set(faults);
    }

    /// Stops accepting, lets in-flight requests finish, and returns when all
    /// connections are closed.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// Resolves when the server has stopped.
    pub async fn stopped(&mut self) {
        self.server.stopped().await;
    }
}

fn seed(store: &mut Store, config: &SlsConfig) -> Result<(), ApiError> {
    let now = unix_now();
    if config.project.is_empty() {
        return Ok(());
    }
    if !store.projects.contains_key(&config.project) {
        store.create_project(&config.project, "created by trail-devstack", now)?;
    }
    let wanted = std::iter::once(&config.logstore).chain(&config.extra_logstores);
    for logstore in wanted.filter(|l| !l.is_empty()) {
        if !store
            .project(&config.project)?
            .logstores
            .contains_key(logstore)
        {
            store.create_logstore(
                &config.project,
                logstore,
                config.shards,
                LogstoreConfig::default(),
                now,
            )?;
        }
    }
    Ok(())
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or_default()
}

impl Handler for SlsState {
    async fn call(&self, req: Request<Incoming>, peer: SocketAddr) -> Answer {
        Ok(handle(self, req, peer).await)
    }
}

/// One request, start to finish. Never panics on client input: every failure
/// becomes an SLS error answer.
async fn handle(
    state: &SlsState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let request_id = next_request_id(state);
    let (parts, incoming) = req.into_parts();
    let path_raw = parts.uri.path().to_owned();

    if let Some(admin) = path_raw.strip_prefix("/_devstack/") {
        let body = read_body(&parts.headers, incoming).await;
        return admin_answer(state, &parts.method, admin, body, &request_id);
    }

    let mut api_label = "Unknown";
    let result = async {
        // Host header first; absolute-form targets carry the host in the URI too.
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .ok_or_else(|| ApiError::bad("InvalidHost", "the request has no Host"))?;
        let project = project_from_host(&host, &state.config.domains);
        let path = percent_decode(&path_raw);
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let query: Vec<(String, String)> = crate::http::query_pairs(&parts.uri);
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

        auth::verify(
            &state.credentials,
            &SignedRequest {
                method: parts.method.as_str(),
                path: &path,
                query: &query,
                headers: &headers,
            },
            SystemTime::now(),
        )?;
        let raw = read_body(&parts.headers, incoming).await?;
        let header = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        let body = body::decode_request(
            raw,
            header("x-log-compresstype"),
            header("x-log-bodyrawsize"),
        )?;
        let req = ApiRequest {
            method: parts.method.clone(),
            project,
            segments,
            query,
            headers,
            body,
            client_ip: peer.ip().to_string(),
        };
        api_label = api::api_name(&req);
        state.faults.before_api()?;
        api::dispatch(state, &req)
    }
    .await;

    match result {
        Ok(reply) => {
            state.stats.record(api_label, "200");
            let mut resp = Response::new(Full::new(reply.body));
            let h = resp.headers_mut();
            h.insert("content-type", HeaderValue::from_static(reply.content_type));
            h.insert("x-log-requestid", header_value(&request_id));
            for (k, v) in reply.headers {
                h.insert(k, header_value(&v));
            }
            resp
        }
        Err(e) => {
            state.stats.record(api_label, e.code);
            tracing::debug!(request_id, api = api_label, error = %e, "request refused");
            error_response(&e, &request_id)
        }
    }
}

/// Reads a body under the 10 MiB limit.
async fn read_body(headers: &http::HeaderMap, incoming: Incoming) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            "PostBodyTooLarge",
            format!("body size exceeds the limit of {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(incoming, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad(
            "PostBodyInvalid",
            format!("reading the body failed: {e}"),
        )),
    }
}

fn admin_answer(
    state: &SlsState,
    method: &http::Method,
    what: &str,
    body: Result<Bytes, ApiError>,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let reply = match (method.as_str(), what) {
        ("GET", "stats") => Ok(serde_json::json!({
            "apis": state.stats.json(),
            "injected": state.faults.injected(),
            "faults": state.faults.config(),
        })),
        ("GET", "faults") => Ok(serde_json::to_value(state.faults.config()).expect("serializes")),
        ("PUT", "faults") => body.and_then(|b| {
            let c: FaultConfig = serde_json::from_slice(&b)
                .map_err(|e| ApiError::bad("PostBodyInvalid", format!("fault config: {e}")))?;
            state.faults.set(c.clone());
            tracing::info!(?c, "faults changed");
            Ok(serde_json::to_value(c).expect("serializes"))
        }),
        _ => Err(ApiError::new(
            404,
            "ParameterInvalid",
            format!("no admin endpoint {method} /_devstack/{what}"),
        )),
    };
    match reply {
        Ok(v) => {
            let mut resp = Response::new(Full::new(Bytes::from(
                serde_json::to_vec(&v).expect("serializes"),
            )));
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            resp.headers_mut()
                .insert("x-log-requestid", header_value(request_id));
            resp
        }
        Err(e) => error_response(&e, request_id),
    }
}

fn error_response(e: &ApiError, request_id: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(e.body_json())));
    *resp.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-log-requestid", header_value(request_id));
    resp
}

fn header_value(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn next_request_id(state: &SlsState) -> String {
    let seq = state.request_seq.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("{t:08X}{:04X}{seq:012X}", std::process::id() & 0xffff)
}

/// The project named by a Host: `{project}.{domain}` for a configured base
/// domain, or `{project}.{IPv4}`; nothing for a bare domain or address.
fn project_from_host(host: &str, domains: &[String]) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let host = if host.starts_with('[') {
        return None; // [IPv6]:port — no project
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host.as_str(), |(h, _)| h)
            .to_owned()
    };
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    for d in domains {
        if let Some(p) = host
            .strip_suffix(d.as_str())
            .and_then(|p| p.strip_suffix('.'))
        {
            return Some(p.to_owned());
        }
    }
    let (first, rest) = host.split_once('.')?;
    rest.parse::<std::net::Ipv4Addr>()
        .is_ok()
        .then(|| first.to_owned())
}

fn percent_decode(path: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_comes_from_the_host() {
        let d = vec!["sls.test".to_string(), "localhost".to_string()];
        assert_eq!(
            project_from_host("proj.sls.test:39001", &d).as_deref(),
            Some("proj")
        );
        assert_eq!(
            project_from_host("proj.sls.test", &d).as_deref(),
            Some("proj")
        );
        assert_eq!(
            project_from_host("proj.127.0.0.2", &d).as_deref(),
            Some("proj")
        );
        assert_eq!(
            project_from_host("proj.localhost:80", &d).as_deref(),
            Some("proj")
        );
        assert_eq!(project_from_host("sls.test:39001", &d), None);
        assert_eq!(project_from_host("127.0.0.1:39001", &d), None);
        assert_eq!(project_from_host("[::1]:39001", &d), None);
        assert_eq!(project_from_host("other.example.com", &d), None);
    }

    #[test]
    fn paths_are_percent_decoded_but_plus_is_kept() {
        assert_eq!(percent_decode("/logstores/a%5Fb"), "/logstores/a_b");
        assert_eq!(percent_decode("/a+b"), "/a+b");
    }
}
