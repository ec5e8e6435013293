//! A Splunk HTTP Event Collector receiver, checked against the HEC notes'
//! conformance checklist: routes, the token matrix, channels, concatenated
//! batches with per-object errors (`invalid-event-number`), gzip, limits,
//! indexer acknowledgement, health, and faults for tests.
//!
//! Admin (unauthenticated, devstack only): `GET /_devstack/stats`,
//! `GET /_devstack/events?offset=N&limit=M` (indexed events, JSON lines, in
//! the order their requests arrived whole),
//! `PUT /_devstack/faults`.

mod parse;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::{json_response, Answer, Drop, Handler, Server};
pub use parse::{parse_events, parse_time, Indexed, Parsed};

/// HEC answer codes (HEC notes §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HecError {
    TokenDisabled,
    TokenRequired,
    InvalidAuthorization,
    InvalidToken,
    NoData,
    InvalidDataFormat,
    IncorrectIndex,
    ServerBusy,
    ChannelMissing,
    InvalidChannel,
    EventFieldRequired,
    EventFieldBlank,
    AckDisabled,
    IndexedFields,
    QueryAuthDisabled,
}

impl HecError {
    pub fn code(self) -> u16 {
        use HecError::*;
        match self {
            TokenDisabled => 1,
            TokenRequired => 2,
            InvalidAuthorization => 3,
            InvalidToken => 4,
            NoData => 5,
            InvalidDataFormat => 6,
            IncorrectIndex => 7,
            ServerBusy => 9,
            ChannelMissing => 10,
            InvalidChannel => 11,
            EventFieldRequired => 12,
            EventFieldBlank => 13,
            AckDisabled => 14,
            IndexedFields => 15,
            QueryAuthDisabled => 16,
        }
    }

    pub fn status(self) -> u16 {
        use HecError::*;
        match self {
            TokenDisabled | InvalidToken => 403,
            TokenRequired | InvalidAuthorization => 401,
            ServerBusy => 503,
            _ => 400,
        }
    }

    pub fn text(self) -> &'static str {
        use HecError::*;
        match self {
            TokenDisabled => "Token disabled",
            TokenRequired => "Token is required",
            InvalidAuthorization => "Invalid authorization",
            InvalidToken => "Invalid token",
            NoData => "No data",
            InvalidDataFormat => "Invalid data format",
            IncorrectIndex => "Incorrect index",
            ServerBusy => "Server is busy",
            ChannelMissing => "Data channel is missing",
            InvalidChannel => "Invalid data channel",
            EventFieldRequired => "Event field is required",
            EventFieldBlank => "Event field cannot be blank",
            AckDisabled => "ACK is disabled",
            IndexedFields => "Error in handling indexed fields",
            QueryAuthDisabled => "Query string authorization is not enabled",
        }
    }

    fn answer(self, invalid_event_number: Option<usize>) -> Response<Full<Bytes>> {
        let mut body = json!({"text": self.text(), "code": self.code()});
        if let Some(n) = invalid_event_number {
            body["invalid-event-number"] = json!(n);
        }
        json_response(self.status(), &body)
    }
}

/// Faults, set by flags or `PUT /_devstack/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct HecFaults {
    /// Every Nth event request answers 503 code 9, taking nothing (0: off).
    #[arg(long = "busy-every", default_value_t = 0)]
    pub busy_every: u64,
    /// Every Nth event request closes the connection without an answer, after
    /// indexing nothing (0: off).
    #[arg(long = "drop-conn-every", default_value_t = 0)]
    pub drop_conn_every: u64,
    /// With --ack: every Nth acknowledged request is never acked (0: off).
    #[arg(long = "withhold-ack-every", default_value_t = 0)]
    pub withhold_ack_every: u64,
}

/// `trail-devstack hec` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct HecConfig {
    #[arg(long, default_value = "127.0.0.1:38088")]
    pub listen: SocketAddr,
    /// The token clients send (`Authorization: Splunk <token>`).
    #[arg(
        long,
        env = "DEVSTACK_HEC_TOKEN",
        default_value = "devstack-hec-token",
        hide_env_values = true
    )]
    pub token: String,
    /// A token that exists but is disabled (403 code 1).
    #[arg(long)]
    pub disabled_token: Option<String>,
    /// Indexer acknowledgement for the token (channels become required).
    #[arg(long)]
    pub ack: bool,
    /// The first ack id of every channel. Splunk counts per indexer; two
    /// devstack "indexers" with distinct bases make an ack polled at the
    /// wrong one unknown there — `false` forever, as behind a load balancer
    /// that lost a channel's stickiness.
    #[arg(long, default_value_t = 0)]
    pub first_ack_id: u64,
    /// Accept `?token=` (allowQueryStringAuth).
    #[arg(long)]
    pub allow_query_token: bool,
    /// Indexes the token may write (any if empty).
    #[arg(long = "index", value_delimiter = ',')]
    pub indexes: Vec<String>,
    /// max_content_length: larger bodies get 413.
    #[arg(long, default_value_t = 838_860_800)]
    pub max_content_length: usize,
    /// maxEventSize: a larger object gets 400 code 6.
    #[arg(long, default_value_t = 5 * 1024 * 1024)]
    pub max_event_size: usize,
    /// Keep only counts and event ids, not whole events (for long benchmarks).
    #[arg(long)]
    pub ids_only: bool,
    #[command(flatten)]
    pub faults: HecFaults,
}

impl HecConfig {
    pub fn on(listen: SocketAddr) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            c: HecConfig,
        }
        let mut c = W::parse_from(["devstack"]).c;
        c.listen = listen;
        c
    }
}

#[derive(Default)]
struct Channel {
    next_ack: u64,
    /// Ack ids not yet reported true; `false` = withheld (never acked).
    pending: HashMap<u64, bool>,
}

#[derive(Default)]
struct Store {
    /// In the order their requests arrived whole (see [`HecState::keep`]).
    events: Vec<Indexed>,
    /// The arrival number of each of `events`' requests.
    arrivals: Vec<u64>,
    ids: HashMap<String, u32>,
    indexed: u64,
    raw_bytes: u64,
    wire_bytes: u64,
    answers: BTreeMap<String, u64>,
    channels: HashMap<String, Channel>,
}

/// The receiver's state.
pub struct HecState {
    config: HecConfig,
    faults: Mutex<HecFaults>,
    requests: AtomicU64,
    acked_requests: AtomicU64,
    store: Mutex<Store>,
}

/// A running HEC receiver.
pub struct HecServer {
    server: Server,
    state: Arc<HecState>,
}

impl HecServer {
    pub async fn start(config: HecConfig) -> std::io::Result<HecServer> {
        let state = Arc::new(HecState {
            faults: Mutex::new(config.faults.clone()),
            config: config.clone(),
            requests: AtomicU64::new(0),
            acked_requests: AtomicU64::new(0),
            store: Mutex::default(),
        });
        let server = Server::start(config.listen, state.clone()).await?;
        Ok(HecServer { server, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Events indexed so far.
    pub fn indexed(&self) -> u64 {
        self.state.store.lock().indexed
    }

    /// How many times each `event.eventId` was indexed.
    pub fn event_id_counts(&self) -> HashMap<String, u32> {
        self.state.store.lock().ids.clone()
    }

    /// The indexed events (empty with `ids_only`).
    pub fn events(&self) -> Vec<Indexed> {
        self.state.store.lock().events.clone()
    }

    pub fn stats(&self) -> Value {
        self.state.stats()
    }

    pub fn set_faults(&self, faults: HecFaults) {
        *self.state.faults.lock() = faults;
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    pub async fn stopped(&mut self) {
        self.server.stopped().await;
    }
}

enum Route {
    Event,
    Raw,
    Ack,
    Health,
}

impl Handler for HecState {
    async fn call(&self, req: Request<Incoming>, _peer: SocketAddr) -> Answer {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().trim_end_matches('/').to_owned();
        let query: Vec<(String, String)> = crate::http::query_pairs(&parts.uri);
        if let Some(admin) = path.strip_prefix("/_devstack/") {
            let bytes = read(body, self.config.max_content_length)
                .await
                .unwrap_or_default();
            return Ok(self.admin(&parts.method, admin, &query, &bytes));
        }
        let route = match path.as_str() {
            "/services/collector"
            | "/services/collector/event"
            | "/services/collector/event/1.0" => Route::Event,
            "/services/collector/raw" | "/services/collector/raw/1.0" => Route::Raw,
            "/services/collector/ack" => Route::Ack,
            "/services/collector/health" | "/services/collector/health/1.0" => Route::Health,
            _ => return Ok(not_found(404)),
        };
        let allowed = if matches!(route, Route::Health) {
            "GET,HEAD,OPTIONS"
        } else {
            "POST,OPTIONS"
        };
        if parts.method == Method::OPTIONS {
            let mut r = Response::new(Full::new(Bytes::new()));
            r.headers_mut()
                .insert("allow", http::HeaderValue::from_static(allowed));
            return Ok(r);
        }
        if !allowed.split(',').any(|m| m == parts.method.as_str()) {
            return Ok(not_found(405));
        }
        if matches!(route, Route::Health) {
            // Health ignores the token in practice.
            return Ok(json_response(
                200,
                &json!({"text": "HEC is healthy", "code": 17}),
            ));
        }
        let answer = self.authorized(&parts.headers, &query, route, body).await;
        let label = answer
            .as_ref()
            .map(|r| r.status().as_u16().to_string())
            .unwrap_or_else(|_| "dropped".into());
        *self.store.lock().answers.entry(label).or_default() += 1;
        answer
    }
}

fn not_found(status: u16) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"text": "The requested URL was not found on this server.", "code": 404}),
    )
}

async fn read(body: Incoming, limit: usize) -> Result<Bytes, ()> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| ())
}

impl HecState {
    fn check_token(&self, headers: &HeaderMap, query: &[(String, String)]) -> Result<(), HecError> {
        let known = |t: &str| {
            if t == self.config.token {
                Ok(())
            } else if self.config.disabled_token.as_deref() == Some(t) {
                Err(HecError::TokenDisabled)
            } else {
                Err(HecError::InvalidToken)
            }
        };
        // A query token overrides the header, even when query auth is off.
        if let Some((_, t)) = query.iter().find(|(k, _)| k == "token") {
            known(t)?;
            return if self.config.allow_query_token {
                Ok(())
            } else {
                Err(HecError::QueryAuthDisabled)
            };
        }
        let auth = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(HecError::TokenRequired)?;
        if let Some(t) = auth.strip_prefix("Splunk ") {
            return known(t.trim());
        }
        if let Some(b) = auth.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| HecError::InvalidAuthorization)?;
            let text = String::from_utf8(decoded).map_err(|_| HecError::InvalidAuthorization)?;
            let (_, password) = text.split_once(':').ok_or(HecError::InvalidAuthorization)?;
            return known(password);
        }
        Err(HecError::InvalidAuthorization)
    }

    async fn authorized(
        &self,
        headers: &HeaderMap,
        query: &[(String, String)],
        route: Route,
        body: Incoming,
    ) -> Answer {
        if let Err(e) = self.check_token(headers, query) {
            return Ok(e.answer(None));
        }
        let channel = headers
            .get("x-splunk-request-channel")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                query
                    .iter()
                    .find(|(k, _)| k == "channel")
                    .map(|(_, v)| v.clone())
            });
        if self.config.ack {
            match &channel {
                None => return Ok(HecError::ChannelMissing.answer(None)),
                Some(c) if !is_guid(c) => return Ok(HecError::InvalidChannel.answer(None)),
                Some(_) => {}
            }
        }
        if let Route::Ack = route {
            if !self.config.ack {
                return Ok(HecError::AckDisabled.answer(None));
            }
            let body = read(body, self.config.max_content_length)
                .await
                .unwrap_or_default();
            return Ok(self.poll_acks(channel.as_deref().unwrap_or(""), &body));
        }

        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.config.max_content_length) {
            return Ok(Response::builder()
                .status(413)
                .body(Full::new(Bytes::new()))
                .expect("static response"));
        }
        let Ok(wire) = read(body, self.config.max_content_length).await else {
            return Ok(Response::builder()
                .status(413)
                .body(Full::new(Bytes::new()))
                .expect("static response"));
        };

        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let faults = self.faults.lock().clone();
        if faults.drop_conn_every > 0 && n.is_multiple_of(faults.drop_conn_every) {
            return Err(Drop);
        }
        if faults.busy_every > 0 && n.is_multiple_of(faults.busy_every) {
            return Ok(HecError::ServerBusy.answer(None));
        }

        let raw = match headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
        {
            None | Some("identity") => wire.clone(),
            Some("gzip") => {
                let mut out = Vec::new();
                let mut dec = flate2::read::GzDecoder::new(&wire[..])
                    .take(self.config.max_content_length as u64 + 1);
                if dec.read_to_end(&mut out).is_err() {
                    return Ok(HecError::InvalidDataFormat.answer(None));
                }
                Bytes::from(out)
            }
            Some(_) => {
                return Ok(Response::builder()
                    .status(415)
                    .header("content-type", "text/html")
                    .body(Full::new(Bytes::from_static(
                        b"<html><body>Unsupported Media Type</body></html>",
                    )))
                    .expect("static response"))
            }
        };

        let parsed = match route {
            Route::Event => parse_events(&raw, &self.config.indexes, self.config.max_event_size),
            _ => raw_events(&raw, query),
        };
        self.keep(n, &parsed, raw.len(), wire.len());
        if let Some((err, at)) = parsed.error {
            return Ok(err.answer(Some(at)));
        }
        let mut body = json!({"text": "Success", "code": 0});
        if self.config.ack {
            body["ackId"] =
                json!(self.new_ack(channel.as_deref().unwrap_or(""), faults.withhold_ack_every));
        }
        Ok(json_response(200, &body))
    }

    /// Stores a request's events in the order requests *arrived* (body
    /// read whole), not the order their decoding finished: a sender controls
    /// when it sends, and on a loaded machine a big request decoded
    /// concurrently with a later small one would otherwise be stored after
    /// it. Order is what the cluster tests check across a hand-over.
    fn keep(&self, arrival: u64, parsed: &Parsed, raw: usize, wire: usize) {
        let mut s = self.store.lock();
        // Where this request's events go: after every earlier arrival.
        let mut at = s.arrivals.partition_point(|a| *a <= arrival);
        s.raw_bytes += raw as u64;
        s.wire_bytes += wire as u64;
        for e in &parsed.indexed {
            s.indexed += 1;
            if let Some(id) = e
                .event
                .get("eventId")
                .or_else(|| e.event.get("eventID"))
                .and_then(Value::as_str)
            {
                *s.ids.entry(id.to_owned()).or_default() += 1;
            }
            if !self.config.ids_only {
                s.events.insert(at, e.clone());
                s.arrivals.insert(at, arrival);
                at += 1;
            }
        }
    }

    fn new_ack(&self, channel: &str, withhold_every: u64) -> u64 {
        let k = self.acked_requests.fetch_add(1, Ordering::Relaxed) + 1;
        let withheld = withhold_every > 0 && k.is_multiple_of(withhold_every);
        let mut s = self.store.lock();
        let first = self.config.first_ack_id;
        let c = s
            .channels
            .entry(channel.to_owned())
            .or_insert_with(|| Channel {
                next_ack: first,
                ..Default::default()
            });
        let id = c.next_ack;
        c.next_ack += 1;
        c.pending.insert(id, !withheld);
        id
    }

    fn poll_acks(&self, channel: &str, body: &[u8]) -> Response<Full<Bytes>> {
        #[derive(Deserialize)]
        struct Poll {
            acks: Vec<u64>,
        }
        let Ok(poll) = serde_json::from_slice::<Poll>(body) else {
            return HecError::InvalidDataFormat.answer(None);
        };
        let mut s = self.store.lock();
        let mut out = serde_json::Map::new();
        for id in poll.acks {
            let done = s
                .channels
                .get_mut(channel)
                .and_then(|c| match c.pending.get(&id) {
                    Some(true) => c.pending.remove(&id),
                    _ => None,
                })
                .is_some();
            out.insert(id.to_string(), json!(done));
        }
        json_response(200, &json!({"acks": out}))
    }

    fn stats(&self) -> Value {
        let s = self.store.lock();
        json!({
            "indexed": s.indexed,
            "distinct_event_ids": s.ids.len(),
            "duplicate_event_ids": s.ids.values().filter(|&&n| n > 1).count(),
            "raw_bytes": s.raw_bytes,
            "wire_bytes": s.wire_bytes,
            "answers": s.answers,
            "requests": self.requests.load(Ordering::Relaxed),
        })
    }

    fn admin(
        &self,
        method: &Method,
        what: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> Response<Full<Bytes>> {
        let q = |k: &str| {
            query
                .iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        match (method.as_str(), what) {
            ("GET", "stats") => json_response(200, &self.stats()),
            ("GET", "events") => {
                let s = self.store.lock();
                let offset = q("offset").unwrap_or(0).min(s.events.len());
                let limit = q("limit").unwrap_or(usize::MAX);
                let mut out = Vec::new();
                for e in s.events.iter().skip(offset).take(limit) {
                    let line = json!({"time": e.time, "host": e.host, "source": e.source, "sourcetype": e.sourcetype,
                        "index": e.index, "fields": e.fields, "event": e.event});
                    out.extend_from_slice(line.to_string().as_bytes());
                    out.push(b'\n');
                }
                Response::new(Full::new(Bytes::from(out)))
            }
            ("GET", "faults") => json_response(
                200,
                &serde_json::to_value(self.faults.lock().clone()).expect("serializes"),
            ),
            ("PUT", "faults") => match serde_json::from_slice::<HecFaults>(body) {
                Ok(f) => {
                    *self.faults.lock() = f.clone();
                    json_response(200, &serde_json::to_value(f).expect("serializes"))
                }
                Err(e) => json_response(
                    400,
                    &json!({"text": format!("fault config: {e}"), "code": 6}),
                ),
            },
            _ => not_found(404),
        }
    }
}

/// `/raw`: one event per non-empty line, metadata from the query string.
fn raw_events(body: &[u8], query: &[(String, String)]) -> Parsed {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let text = String::from_utf8_lossy(body);
    let indexed: Vec<Indexed> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Indexed {
            time: None,
            host: q("host"),
            source: q("source"),
            sourcetype: q("sourcetype"),
            index: q("index"),
            fields: serde_json::Map::new(),
            event: serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_owned())),
        })
        .collect();
    let error = indexed.is_empty().then_some((HecError::NoData, 0));
    Parsed {
        indexed,
        error,
        skipped: 0,
    }
}

/// 8-4-4-4-12 hex digits.
fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids() {
        assert!(is_guid("0b5d4a28-4f6e-4e3c-9a3f-0123456789ab"));
        assert!(!is_guid("not-a-guid"));
        assert!(!is_guid("0b5d4a28-4f6e-4e3c-9a3f-0123456789a"));
    }
}
