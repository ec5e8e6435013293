//! The SLS API: one function per call, dispatched on method, path and `type` /
//! `action` query parameters. Input is an [`ApiRequest`] (already routed to a
//! project and authenticated); output is an [`ApiReply`] or an [`ApiError`].

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::sls::body::{self, BodyCompression};
use crate::sls::consumer_group::{ConsumerGroup, ShardView};
use crate::sls::error::ApiError;
use crate::sls::store::{self, LogstoreConfig, ShardStatus, StoredGroup, MAX_CONSUMER_GROUPS};
use crate::sls::SlsState;

/// A routed, authenticated request.
pub struct ApiRequest {
    pub method: http::Method,
    pub project: Option<String>,
    /// Percent-decoded path segments after the leading `/`.
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    /// Lowercased header names.
    pub headers: Vec<(String, String)>,
    /// The body, decompressed if `x-log-compresstype` said so.
    pub body: Bytes,
    pub client_ip: String,
}

impl ApiRequest {
    fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn project(&self) -> Result<&str, ApiError> {
        self.project.as_deref().ok_or_else(|| {
            ApiError::bad(
                "InvalidHost",
                "the Host names no project ({project}.{endpoint})",
            )
        })
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad(
                "PostBodyInvalid",
                format!("request body is not the expected JSON: {e}"),
            )
        })
    }
}

/// A successful answer (always HTTP 200).
pub struct ApiReply {
    pub content_type: &'static str,
    pub body: Bytes,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiReply {
    fn empty() -> Self {
        ApiReply {
            content_type: "application/json",
            body: Bytes::new(),
            headers: Vec::new(),
        }
    }

    fn json(v: Value) -> Self {
        ApiReply {
            content_type: "application/json",
            body: Bytes::from(serde_json::to_vec(&v).expect("values serialize")),
            headers: Vec::new(),
        }
    }
}

pub type ApiResult = Result<ApiReply, ApiError>;

/// The name of the API a request calls, for stats and fault scoping.
pub fn api_name(req: &ApiRequest) -> &'static str {
    use http::Method as M;
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let ty = req.query("type");
    match (&req.method, seg.as_slice()) {
        (&M::GET, []) if req.project.is_none() => "ListProject",
        (_, []) => "Project",
        (&M::POST, ["logstores", _]) => "PutLogs",
        (_, ["logstores"] | ["logstores", _]) => "Logstore",
        (&M::POST, ["logstores", _, "index"]) => "CreateIndex",
        (&M::PUT, ["logstores", _, "index"]) => "UpdateIndex",
        (&M::GET, ["logstores", _, "index"]) => "GetIndex",
        (&M::DELETE, ["logstores", _, "index"]) => "DeleteIndex",
        (_, ["savedsearches", ..]) => "SavedSearch",
        (&M::GET, ["logstores", _, "shards"]) => "ListShards",
        (&M::POST, ["logstores", _, "shards", "lb" | "route"]) => "PutLogs",
        (&M::GET, ["logstores", _, "shards", _]) => match ty {
            Some("cursor") => "GetCursor",
            Some("cursor_time") => "GetCursorTime",
            _ => "PullLogs",
        },
        (&M::POST, ["logstores", _, "shards", _]) => "SplitMergeShard",
        (&M::POST, ["logstores", _, "consumergroups", _]) if ty == Some("heartbeat") => {
            "ConsumerGroupHeartBeat"
        }
        (&M::POST, ["logstores", _, "consumergroups", _]) => "ConsumerGroupUpdateCheckPoint",
        (&M::GET, ["logstores", _, "consumergroups", _]) => "ConsumerGroupGetCheckPoint",
        (_, ["logstores", _, "consumergroups", ..]) => "ConsumerGroup",
        _ => "Unknown",
    }
}

pub fn dispatch(state: &SlsState, req: &ApiRequest) -> ApiResult {
    use http::Method as M;
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    match (&req.method, seg.as_slice()) {
        (&M::GET, []) if req.project.is_none() => list_projects(state),
        (&M::POST, []) => create_project(state, req),
        (&M::GET, []) => get_project(state, req),
        (&M::PUT, []) => update_project(state, req),
        (&M::DELETE, []) => delete_project(state, req),

        (&M::GET, ["logstores"]) => list_logstores(state, req),
        (&M::POST, ["logstores"]) => create_logstore(state, req),
        (&M::GET, ["logstores", ls]) => get_logstore(state, req, ls),
        (&M::PUT, ["logstores", ls]) => update_logstore(state, req, ls),
        (&M::DELETE, ["logstores", ls]) => delete_logstore(state, req, ls),
        // Go SDK: PutLogs without a hash key goes to the logstore itself.
        (&M::POST, ["logstores", ls]) => put_logs(state, req, ls, None),

        (&M::POST, ["logstores", ls, "index"]) => create_index(state, req, ls),
        (&M::PUT, ["logstores", ls, "index"]) => update_index(state, req, ls),
        (&M::GET, ["logstores", ls, "index"]) => get_index(state, req, ls),
        (&M::DELETE, ["logstores", ls, "index"]) => delete_index(state, req, ls),

        (&M::GET, ["savedsearches"]) => list_saved_searches(state, req),
        (&M::POST, ["savedsearches"]) => create_saved_search(state, req),
        (&M::GET, ["savedsearches", name]) => get_saved_search(state, req, name),
        (&M::PUT, ["savedsearches", name]) => update_saved_search(state, req, name),
        (&M::DELETE, ["savedsearches", name]) => delete_saved_search(state, req, name),

        (&M::GET, ["logstores", ls, "shards"]) => list_shards(state, req, ls),
        (&M::POST, ["logstores", ls, "shards", "lb"]) => put_logs(state, req, ls, None),
        (&M::POST, ["logstores", ls, "shards", "route"]) => {
            let key = req
                .query("key")
                .ok_or_else(|| ApiError::bad("ParameterInvalid", "route needs a key"))?;
            put_logs(state, req, ls, Some(key))
        }
        (&M::GET, ["logstores", ls, "shards", id]) => {
            let id = shard_id(id)?;
            match req.query("type") {
                Some("cursor") => get_cursor(state, req, ls, id),
                Some("cursor_time") => get_cursor_time(state, req, ls, id),
                Some("log" | "logs") => pull_logs(state, req, ls, id),
                other => Err(ApiError::bad(
                    "ParameterInvalid",
                    format!("unknown type {other:?}"),
                )),
            }
        }
        (&M::POST, ["logstores", ls, "shards", id]) => {
            split_or_merge(state, req, ls, shard_id(id)?)
        }

        (&M::GET, ["logstores", ls, "consumergroups"]) => list_groups(state, req, ls),
        (&M::POST, ["logstores", ls, "consumergroups"]) => create_group(state, req, ls),
        (&M::PUT, ["logstores", ls, "consumergroups", cg]) => update_group(state, req, ls, cg),
        (&M::DELETE, ["logstores", ls, "consumergroups", cg]) => delete_group(state, req, ls, cg),
        (&M::POST, ["logstores", ls, "consumergroups", cg]) => match req.query("type") {
            Some("heartbeat") => heartbeat(state, req, ls, cg),
            Some("checkpoint") => update_checkpoint(state, req, ls, cg),
            other => Err(ApiError::bad(
                "ParameterInvalid",
                format!("unknown type {other:?}"),
            )),
        },
        (&M::GET, ["logstores", ls, "consumergroups", cg]) => get_checkpoints(state, req, ls, cg),

        _ => Err(ApiError::new(
            404,
            "ParameterInvalid",
            format!(
                "devstack does not implement {} /{}",
                req.method,
                req.segments.join("/")
            ),
        )),
    }
}

fn now_unix() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or_default()
}

fn shard_id(s: &str) -> Result<u32, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad(
            "ParameterInvalid",
            format!("shard id {s:?} is not a number"),
        )
    })
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Decodes a cursor: base64 (padded or not) of a decimal int64.
pub fn decode_cursor(c: &str) -> Option<i64> {
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(c.trim().trim_end_matches('='))
        .ok()?;
    std::str::from_utf8(&raw).ok()?.trim().parse().ok()
}

pub fn encode_cursor(v: i64) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

// ---- projects ---------------------------------------------------------------

fn list_projects(state: &SlsState) -> ApiResult {
    let store = state.store.read();
    let projects: Vec<Value> = store
        .projects
        .values()
        .map(|p| p.json(&state.config.region))
        .collect();
    Ok(ApiReply::json(
        json!({"count": projects.len(), "total": projects.len(), "projects": projects}),
    ))
}

fn create_project(state: &SlsState, req: &ApiRequest) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        #[serde(rename = "projectName")]
        name: Option<String>,
        #[serde(default)]
        description: String,
    }
    let b: Body = req.json()?;
    // Python names the project in the Host, Rust only in the body.
    let name = b
        .name
        .or_else(|| req.project.clone())
        .ok_or_else(|| ApiError::bad("ParameterInvalid", "projectName is missing"))?;
    state
        .store
        .write()
        .create_project(&name, &b.description, now_unix())?;
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn get_project(state: &SlsState, req: &ApiRequest) -> ApiResult {
    let store = state.store.read();
    Ok(ApiReply::json(
        store.project(req.project()?)?.json(&state.config.region),
    ))
}

fn update_project(state: &SlsState, req: &ApiRequest) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        description: Option<String>,
    }
    let b: Body = req.json()?;
    let mut store = state.store.write();
    let p = store.project_mut(req.project()?)?;
    if let Some(d) = b.description {
        p.description = d;
    }
    p.last_modify_time = now_unix();
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn delete_project(state: &SlsState, req: &ApiRequest) -> ApiResult {
    let name = req.project()?;
    let removed = state.store.write().projects.remove(name);
    removed.ok_or_else(|| ApiError::project_not_exist(name))?;
    state.persist_meta();
    Ok(ApiReply::empty())
}

// ---- logstores --------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogstoreBody {
    #[serde(rename = "logstoreName")]
    name: Option<String>,
    ttl: Option<u32>,
    #[serde(rename = "shardCount")]
    shard_count: Option<u32>,
    enable_tracking: Option<bool>,
    #[serde(rename = "autoSplit")]
    auto_split: Option<bool>,
    #[serde(rename = "maxSplitShard")]
    max_split_shard: Option<u32>,
    #[serde(rename = "appendMeta")]
    append_meta: Option<bool>,
    #[serde(rename = "telemetryType")]
    telemetry_type: Option<String>,
    mode: Option<String>,
}

impl LogstoreBody {
    fn apply(self, c: &mut LogstoreConfig) {
        if let Some(v) = self.ttl {
            c.ttl = v;
        }
        if let Some(v) = self.enable_tracking {
            c.enable_tracking = v;
        }
        if let Some(v) = self.auto_split {
            c.auto_split = v;
        }
        if let Some(v) = self.max_split_shard {
            c.max_split_shard = v;
        }
        if let Some(v) = self.append_meta {
            c.append_meta = v;
        }
        if let Some(v) = self.telemetry_type {
            c.telemetry_type = v;
        }
        if let Some(v) = self.mode {
            c.mode = v;
        }
    }
}

fn list_logstores(state: &SlsState, req: &ApiRequest) -> ApiResult {
    let store = state.store.read();
    let names: Vec<&String> = store.project(req.project()?)?.logstores.keys().collect();
    Ok(ApiReply::json(
        json!({"count": names.len(), "total": names.len(), "logstores": names}),
    ))
}

fn create_logstore(state: &SlsState, req: &ApiRequest) -> ApiResult {
    let mut b: LogstoreBody = req.json()?;
    let name = b
        .name
        .take()
        .ok_or_else(|| ApiError::bad("ParameterInvalid", "logstoreName is missing"))?;
    let shards = b.shard_count.take().unwrap_or(2);
    let mut config = LogstoreConfig::default();
    b.apply(&mut config);
    state
        .store
        .write()
        .create_logstore(req.project()?, &name, shards, config, now_unix())?;
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn get_logstore(state: &SlsState, req: &ApiRequest, ls: &str) -> ApiResult {
    let store = state.store.read();
    Ok(ApiReply::json(
        store.project(req.project()?)?.logstore(ls)?.json(),
    ))
}

fn update_logstore(state: &SlsState, req: &ApiRequest, ls: &str) -> ApiResult {
    let b: LogstoreBody = req.json()?;
    let mut store = state.store.write();
    let l = store.project_mut(req.project()?)?.logstore_mut(ls)?;
    b.apply(&mut l.config);
    l.last_modify_time = now_unix();
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn delete_logstore(state: &SlsState, req: &ApiRequest, ls: &str) -> ApiResult {
    let mut store = state.store.write();
    let p = store.project_mut(req.project()?)?;
    p.logstores
        .remove(ls)
        .ok_or_else(|| ApiError::logstore_not_exist(ls))?;
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

// ---- indexes ----------------------------------------------------------------
//
// CreateIndex/UpdateIndex take the IndexConfig JSON the SDKs write
// (`line`, `keys`, `log_reduce`, `max_text_len`, ...); devstack checks its
// shape — key types text/long/double/json, tokens for text and json, a
// `line` with tokens — keeps it, and GetIndex returns it with the service's
// own fields (`ttl`, `lastModifyTime`, `index_mode`, `storage`). It does not
// index anything: devstack has no query engine. The error codes of a second
// create and of an update, get or delete without an index are SLS's
// (IndexAlreadyExist, IndexConfigNotExist).

const KEY_TYPES: &[&str] = &["text", "long", "double", "json"];

fn check_index(v: &Value) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::bad("ParameterInvalid", m);
    let obj = v
        .as_object()
        .ok_or_else(|| bad("the index config must be a JSON object".into()))?;
    let tokens = |where_: &str, c: &serde_json::Map<String, Value>| -> Result<(), ApiError> {
        match c.get("token") {
            Some(Value::Array(t)) if t.iter().all(Value::is_string) => Ok(()),
            _ => Err(bad(format!("{where_}: token must be a list of strings"))),
        }
    };
    if let Some(line) = obj.get("line") {
        let line = line
            .as_object()
            .ok_or_else(|| bad("line must be an object".into()))?;
        tokens("line", line)?;
    }
    match obj.get("keys") {
        None => {}
        Some(Value::Object(keys)) => {
            for (name, c) in keys {
                let c = c
                    .as_object()
                    .ok_or_else(|| bad(format!("keys.{name} must be an object")))?;
                let ty = c.get("type").and_then(Value::as_str).unwrap_or("text");
                if !KEY_TYPES.contains(&ty) {
                    return Err(bad(format!("keys.{name}: unknown type {ty:?}")));
                }
                if ty == "text" || ty == "json" {
                    tokens(&format!("keys.{name}"), c)?;
                }
            }
        }
        Some(_) => return Err(bad("keys must be an object".into())),
    }
    if obj.get("line").is_none() && obj.get("keys").is_none() {
        return Err(bad("an index needs line or keys".into()));
    }
    Ok(())
}

fn index_not_exist(ls: &str) -> ApiError {
    ApiError::new(
        404,
        "IndexConfigNotExist",
        format!("index config of logstore {ls} does not exist"),
    )
}

fn put_index(state: &SlsState, req: &ApiRequest, ls: &str, create: bool) -> ApiResult {
    let v: Value = req.json()?;
    check_index(&v)?;
    let mut store = state.store.write();
    let l = store.project_mut(req.project()?)?.logstore_mut(ls)?;
    match (create, l.index.is_some()) {
        (true, true) => {
            return Err(ApiError::bad(
                "IndexAlreadyExist",
                format!("index of logstore {ls} already exists"),
            ))
        }
        (false, false) => return Err(index_not_exist(ls)),
        _ => {}
    }
    l.index = Some(v);
    l.index_modify_time = now_unix();
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn create_index(state: &SlsState, req: &ApiRequest, ls: &str) -> ApiResult {
    put_index(state, req, ls, true)
}

fn update_index(state: &SlsState, req: &ApiRequest, ls: &str) -> ApiResult {
    put_index(state, req, ls, false)
}

fn get_index(state: &SlsState, req: &ApiRequest, ls: &str) -> ApiResult {
    let store = state.store.read();
    let l = store.project(req.project()?)?.logstore(ls)?;
    let mut v = l.index.clone().ok_or_else(|| index_not_exist(ls))?;
    let o = v.as_object_mut().expect("checked on the way in");
    o.insert("ttl".into(), json!(l.config.ttl));
    o.insert("lastModifyTime".into(), json!(l.index_modify_time));
    o.insert("index_mode".into(), json!("v2"));
    o.insert("storage".into(), json!("pg"));
    Ok(ApiReply::json(v))
}

fn delete_index(state: &SlsState, req: &ApiRequest, ls: &str) -> ApiResult {
    let mut store = state.store.write();
    let l = store.project_mut(req.project()?)?.logstore_mut(ls)?;
    l.index.take().ok_or_else(|| index_not_exist(ls))?;
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

// ---- saved searches ---------------------------------------------------------
//
// `{savedsearchName, searchQuery, logstore, topic, displayName}`, kept as
// given; the name and the query are required, the logstore must exist.

fn check_saved_search(state: &SlsState, req: &ApiRequest, v: &Value) -> Result<String, ApiError> {
    let bad = |m: &str| ApiError::bad("ParameterInvalid", m);
    let name = v
        .get("savedsearchName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("savedsearchName is missing"))?;
    v.get("searchQuery")
        .and_then(Value::as_str)
        .filter(|q| !q.is_empty())
        .ok_or_else(|| bad("searchQuery is missing"))?;
    let ls = v
        .get("logstore")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("logstore is missing"))?;
    state.store.read().project(req.project()?)?.logstore(ls)?;
    Ok(name.to_owned())
}

fn saved_search_not_exist(name: &str) -> ApiError {
    ApiError::new(
        404,
        "SavedSearchNotExist",
        format!("savedsearch {name} does not exist"),
    )
}

fn create_saved_search(state: &SlsState, req: &ApiRequest) -> ApiResult {
    let v: Value = req.json()?;
    let name = check_saved_search(state, req, &v)?;
    let mut store = state.store.write();
    let p = store.project_mut(req.project()?)?;
    if p.saved_searches.contains_key(&name) {
        return Err(ApiError::bad(
            "SavedSearchAlreadyExist",
            format!("savedsearch {name} already exists"),
        ));
    }
    p.saved_searches.insert(name, v);
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn update_saved_search(state: &SlsState, req: &ApiRequest, name: &str) -> ApiResult {
    let v: Value = req.json()?;
    let body_name = check_saved_search(state, req, &v)?;
    if body_name != name {
        return Err(ApiError::bad(
            "ParameterInvalid",
            format!("savedsearchName {body_name} does not match the path's {name}"),
        ));
    }
    let mut store = state.store.write();
    let p = store.project_mut(req.project()?)?;
    let slot = p
        .saved_searches
        .get_mut(name)
        .ok_or_else(|| saved_search_not_exist(name))?;
    *slot = v;
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn get_saved_search(state: &SlsState, req: &ApiRequest, name: &str) -> ApiResult {
    let store = state.store.read();
    let p = store.project(req.project()?)?;
    p.saved_searches
        .get(name)
        .cloned()
        .map(ApiReply::json)
        .ok_or_else(|| saved_search_not_exist(name))
}

fn delete_saved_search(state: &SlsState, req: &ApiRequest, name: &str) -> ApiResult {
    let mut store = state.store.write();
    let p = store.project_mut(req.project()?)?;
    p.saved_searches
        .remove(name)
        .ok_or_else(|| saved_search_not_exist(name))?;
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn list_saved_searches(state: &SlsState, req: &ApiRequest) -> ApiResult {
    let store = state.store.read();
    let p = store.project(req.project()?)?;
    let offset: usize = req
        .query("offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let size: usize = req
        .query("size")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let page: Vec<&Value> = p.saved_searches.values().skip(offset).take(size).collect();
    let names: Vec<&str> = page
        .iter()
        .filter_map(|v| v["savedsearchName"].as_str())
        .collect();
    let items: Vec<Value> = page
        .iter()
        .map(|v| json!({"savedsearchName": v["savedsearchName"], "displayName": v["displayName"]}))
        .collect();
    Ok(ApiReply::json(json!({
        "count": names.len(),
        "total": p.saved_searches.len(),
        "savedsearches": names,
        "savedsearchItems": items,
    })))
}

// ---- shards -----------------------------------------------------------------

fn list_shards(state: &SlsState, req: &ApiRequest, ls: &str) -> ApiResult {
    let store = state.store.read();
    let l = store.project(req.project()?)?.logstore(ls)?;
    Ok(ApiReply::json(Value::Array(
        l.shards.values().map(|s| s.json()).collect(),
    )))
}

fn split_or_merge(state: &SlsState, req: &ApiRequest, ls: &str, id: u32) -> ApiResult {
    let mut store = state.store.write();
    let l = store.project_mut(req.project()?)?.logstore_mut(ls)?;
    let ids = match req.query("action") {
        Some("split") => {
            let key = req
                .query("key")
                .ok_or_else(|| ApiError::bad("ParameterInvalid", "split needs a key"))?;
            l.split(id, key, now_unix())?
        }
        Some("merge") => l.merge(id, now_unix())?,
        other => {
            return Err(ApiError::bad(
                "ParameterInvalid",
                format!("unknown action {other:?}"),
            ))
        }
    };
    let out: Vec<Value> = ids.iter().map(|i| l.shards[i].json()).collect();
    drop(store);
    state.persist_meta();
    Ok(ApiReply::json(Value::Array(out)))
}

fn put_logs(state: &SlsState, req: &ApiRequest, ls: &str, hash_key: Option<&str>) -> ApiResult {
    let ct = req.header("content-type").unwrap_or("");
    if !ct.starts_with("application/x-protobuf") {
        return Err(ApiError::bad(
            "InvalidContentType",
            format!("PutLogs takes application/x-protobuf, not {ct:?}"),
        ));
    }
    // A LogGroup must decode; devstack keeps the bytes as sent.
    let group = trail_proto::sls::LogGroup::decode(req.body.clone())
        .map_err(|e| ApiError::bad("PostBodyInvalid", format!("body is not a LogGroup: {e}")))?;
    if group.logs.is_empty() {
        return Err(ApiError::bad("PostBodyInvalid", "the LogGroup has no logs"));
    }
    state.faults.before_put()?;
    let project = req.project()?;
    let mut store = state.store.write();
    let l = store.project_mut(project)?.logstore_mut(ls)?;
    let id = match hash_key {
        Some(k) => l.route(k)?,
        None => l.pick_lb()?,
    };
    let append_meta = l.config.append_meta;
    let shard = l.shards[&id].clone();
    drop(store);

    let mut data = shard.data.write();
    let receive_time = data
        .groups
        .last()
        .map_or(now_unix(), |g| g.receive_time.max(now_unix()));
    let bytes = if append_meta {
        store::append_meta_tags(req.body.clone(), receive_time, &req.client_ip)
    } else {
        req.body.clone()
    };
    state.persist_group(project, ls, id, receive_time, &bytes)?;
    data.groups.push(StoredGroup {
        receive_time,
        bytes,
    });
    Ok(ApiReply::empty())
}

fn get_cursor(state: &SlsState, req: &ApiRequest, ls: &str, id: u32) -> ApiResult {
    let store = state.store.read();
    let shard = store
        .project(req.project()?)?
        .logstore(ls)?
        .shard(id)?
        .clone();
    drop(store);
    let from = req.query("from").ok_or_else(|| {
        ApiError::bad(
            "ParameterInvalid",
            "GetCursor needs from=begin|end|{unix time}",
        )
    })?;
    let data = shard.data.read();
    let seq = match from {
        "begin" => 0,
        "end" => data.groups.len(),
        t => {
            let t: i64 = t.parse().map_err(|_| {
                ApiError::bad(
                    "ParameterInvalid",
                    format!("from={t:?} is not begin, end or a unix time"),
                )
            })?;
            // First group received at or after t (receive times never decrease).
            data.groups
                .partition_point(|g| i64::from(g.receive_time) < t)
        }
    };
    Ok(ApiReply::json(
        json!({"cursor": encode_cursor(shard.base + seq as i64)}),
    ))
}

/// Resolves a cursor to a sequence number in a shard of `len` groups.
fn cursor_seq(state: &SlsState, cursor: &str, base: i64, len: usize) -> Result<usize, ApiError> {
    let v = decode_cursor(cursor).ok_or_else(|| {
        ApiError::bad(
            "ParameterInvalid",
            format!("cursor {cursor:?} is not a valid cursor"),
        )
    })?;
    let seq = v - base;
    if seq < 0 {
        // Below begin: served from begin, as the docs say.
        return Ok(0);
    }
    let seq = seq as u64;
    if seq > len as u64 {
        if state.config.clamp_cursors {
            return Ok(len);
        }
        return Err(ApiError::bad(
            "InvalidCursor",
            format!("cursor {cursor} is beyond the end of the shard"),
        ));
    }
    Ok(seq as usize)
}

fn get_cursor_time(state: &SlsState, req: &ApiRequest, ls: &str, id: u32) -> ApiResult {
    let store = state.store.read();
    let shard = store
        .project(req.project()?)?
        .logstore(ls)?
        .shard(id)?
        .clone();
    drop(store);
    let cursor = req
        .query("cursor")
        .ok_or_else(|| ApiError::bad("ParameterInvalid", "GetCursorTime needs a cursor"))?;
    let data = shard.data.read();
    let v = decode_cursor(cursor).ok_or_else(|| {
        ApiError::bad(
            "ParameterInvalid",
            format!("cursor {cursor:?} is not a valid cursor"),
        )
    })?;
    let seq = v - shard.base;
    if seq < 0 || seq > data.groups.len() as i64 {
        return Err(ApiError::bad(
            "InvalidCursor",
            format!("cursor {cursor} is out of range"),
        ));
    }
    let t = match data.groups.get(seq as usize) {
        Some(g) => g.receive_time,
        // The end cursor: the time of the last group, or now for an empty shard.
        None => data.groups.last().map_or(now_unix(), |g| g.receive_time),
    };
    Ok(ApiReply::json(json!({"cursor_time": t})))
}

fn pull_logs(state: &SlsState, req: &ApiRequest, ls: &str, id: u32) -> ApiResult {
    let project = req.project()?;
    let store = state.store.read();
    let shard = store.project(project)?.logstore(ls)?.shard(id)?.clone();
    drop(store);
    let cursor = req
        .query("cursor")
        .ok_or_else(|| ApiError::bad("ParameterInvalid", "PullLogs needs a cursor"))?;
    let count: usize = match req.query("count") {
        None => 1000,
        Some(c) => c
            .parse()
            .ok()
            .filter(|c| (1..=1000).contains(c))
            .ok_or_else(|| {
                ApiError::bad("ParameterInvalid", format!("count {c:?} must be 1..=1000"))
            })?,
    };
    let shard_key = format!("{project}/{ls}/{id}");
    state.faults.before_pull(&shard_key)?;

    // Take the groups under the read lock (cheap clones of `Bytes`), encode outside it.
    let (groups, start, end_seq, shard_len) = {
        let data = shard.data.read();
        let len = data.groups.len();
        let start = cursor_seq(state, cursor, shard.base, len)?;
        let end_seq = match req.query("end_cursor").or_else(|| req.query("endCursor")) {
            Some(e) => cursor_seq(state, e, shard.base, len)?,
            None => len,
        };
        let stop = end_seq.min(start.saturating_add(count)).max(start);
        (data.groups[start..stop].to_vec(), start, end_seq, len)
    };

    let n = groups.len();
    let next = shard.base + (start + n) as i64;
    let mut headers: Vec<(&'static str, String)> = Vec::with_capacity(8);
    // Nothing new: the next cursor is byte-identical to the request's.
    headers.push((
        "x-log-cursor",
        if n == 0 {
            cursor.to_owned()
        } else {
            encode_cursor(next)
        },
    ));
    headers.push(("x-log-count", n.to_string()));
    headers.push(("x-log-read-last-cursor", (next - 1).to_string()));
    let caught_up = start + n >= shard_len.min(end_seq.max(start));
    headers.push((
        "x-log-end-of-cursor",
        if caught_up { "1" } else { "0" }.to_owned(),
    ));
    headers.push((
        "x-log-cursor-time",
        groups.last().map_or(0, |g| g.receive_time).to_string(),
    ));

    if n == 0 {
        headers.push(("x-log-bodyrawsize", "0".into()));
        return Ok(ApiReply {
            content_type: "application/x-protobuf",
            body: Bytes::new(),
            headers,
        });
    }
    // LogGroupList field 1, repeated: tag 0x0a, length, stored group bytes.
    let raw_len: usize = groups.iter().map(|g| g.bytes.len() + 11).sum();
    let mut raw = BytesMut::with_capacity(raw_len);
    for g in &groups {
        raw.put_u8(0x0a);
        prost::encoding::encode_varint(g.bytes.len() as u64, &mut raw);
        raw.extend_from_slice(&g.bytes);
    }
    let raw = raw.freeze();
    state.faults.charge_read(&shard_key, raw.len() as u64);
    headers.push(("x-log-bodyrawsize", raw.len().to_string()));
    let compression =
        BodyCompression::from_accept_encoding(req.header("accept-encoding").unwrap_or(""));
    let body = body::compress(compression, &raw);
    if let Some(token) = compression.token() {
        headers.push(("x-log-compresstype", token.to_owned()));
    }
    Ok(ApiReply {
        content_type: "application/x-protobuf",
        body,
        headers,
    })
}

// ---- consumer groups --------------------------------------------------------

fn list_groups(state: &SlsState, req: &ApiRequest, ls: &str) -> ApiResult {
    let store = state.store.read();
    let l = store.project(req.project()?)?.logstore(ls)?;
    Ok(ApiReply::json(Value::Array(
        l.consumer_groups.values().map(|g| g.json()).collect(),
    )))
}

fn create_group(state: &SlsState, req: &ApiRequest, ls: &str) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        #[serde(rename = "consumerGroup")]
        name: String,
        timeout: u32,
        #[serde(default)]
        order: bool,
    }
    let b: Body = req.json()?;
    store::check_name("consumer group", &b.name, 2, 128)?;
    let mut store = state.store.write();
    let l = store.project_mut(req.project()?)?.logstore_mut(ls)?;
    if l.consumer_groups.contains_key(&b.name) {
        return Err(ApiError::bad(
            "ConsumerGroupAlreadyExist",
            format!("consumer group {} already exists", b.name),
        ));
    }
    if l.consumer_groups.len() >= MAX_CONSUMER_GROUPS {
        return Err(ApiError::bad(
            "ConsumerGroupQuotaExceed",
            format!("a logstore holds at most {MAX_CONSUMER_GROUPS} consumer groups"),
        ));
    }
    l.consumer_groups.insert(
        b.name.clone(),
        ConsumerGroup::new(&b.name, b.timeout, b.order),
    );
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn update_group(state: &SlsState, req: &ApiRequest, ls: &str, cg: &str) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        timeout: Option<u32>,
        order: Option<bool>,
    }
    let b: Body = req.json()?;
    let mut store = state.store.write();
    let g = store
        .project_mut(req.project()?)?
        .logstore_mut(ls)?
        .consumer_groups
        .get_mut(cg)
        .ok_or_else(|| ApiError::group_not_exist(cg))?;
    if let Some(t) = b.timeout {
        g.timeout_secs = t;
    }
    if let Some(o) = b.order {
        g.order = o;
    }
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn delete_group(state: &SlsState, req: &ApiRequest, ls: &str, cg: &str) -> ApiResult {
    let mut store = state.store.write();
    let l = store.project_mut(req.project()?)?.logstore_mut(ls)?;
    l.consumer_groups
        .remove(cg)
        .ok_or_else(|| ApiError::group_not_exist(cg))?;
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn heartbeat(state: &SlsState, req: &ApiRequest, ls: &str, cg: &str) -> ApiResult {
    let consumer = req
        .query("consumer")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad("ParameterInvalid", "heartbeat needs a consumer"))?;
    let held: Vec<u32> = if req.body.is_empty() {
        Vec::new()
    } else {
        req.json()?
    };
    let mut store = state.store.write();
    let l = store.project_mut(req.project()?)?.logstore_mut(ls)?;
    let shards: Vec<ShardView> = l
        .shards
        .values()
        .map(|s| ShardView {
            id: s.id,
            parents: s.parents.clone(),
        })
        .collect();
    let g = l
        .consumer_groups
        .get_mut(cg)
        .ok_or_else(|| ApiError::group_not_exist(cg))?;
    let reply = g.heartbeat(consumer, &held, &shards, Instant::now());
    Ok(ApiReply::json(json!(reply)))
}

fn update_checkpoint(state: &SlsState, req: &ApiRequest, ls: &str, cg: &str) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        shard: u32,
        checkpoint: String,
    }
    let b: Body = req.json()?;
    let consumer = req.query("consumer").unwrap_or("");
    let force = match req.query("forceSuccess") {
        None => false,
        Some(v) => parse_bool(v).ok_or_else(|| {
            ApiError::bad(
                "ParameterInvalid",
                format!("forceSuccess={v:?} is not a boolean"),
            )
        })?,
    };
    if decode_cursor(&b.checkpoint).is_none() {
        return Err(ApiError::bad(
            "InvalidShardCheckPoint",
            format!("checkpoint {:?} is not a cursor", b.checkpoint),
        ));
    }
    let mut store = state.store.write();
    let l = store.project_mut(req.project()?)?.logstore_mut(ls)?;
    let shard = l.shards.get(&b.shard).ok_or_else(|| {
        ApiError::bad("ShardNotExsit", format!("shard {} does not exist", b.shard))
    })?;
    let readonly_end =
        (shard.status == ShardStatus::ReadOnly).then(|| encode_cursor(shard.end_cursor()));
    let g = l
        .consumer_groups
        .get_mut(cg)
        .ok_or_else(|| ApiError::group_not_exist(cg))?;
    // Compare as positions, not strings: padded and unpadded cursors are equal.
    let at_end = readonly_end
        .as_deref()
        .filter(|end| decode_cursor(end) == decode_cursor(&b.checkpoint));
    g.update_checkpoint(
        b.shard,
        &b.checkpoint,
        consumer,
        force,
        at_end.map(|_| b.checkpoint.as_str()),
        now_unix(),
    )?;
    drop(store);
    state.persist_meta();
    Ok(ApiReply::empty())
}

fn get_checkpoints(state: &SlsState, req: &ApiRequest, ls: &str, cg: &str) -> ApiResult {
    let store = state.store.read();
    let l = store.project(req.project()?)?.logstore(ls)?;
    let g = l
        .consumer_groups
        .get(cg)
        .ok_or_else(|| ApiError::group_not_exist(cg))?;
    let wanted: Vec<u32> = match req.query("shard").map(str::parse::<i64>) {
        None | Some(Ok(-1)) => l.shards.keys().copied().collect(),
        Some(Ok(id)) if id >= 0 && l.shards.contains_key(&(id as u32)) => vec![id as u32],
        Some(Ok(id)) => {
            return Err(ApiError::bad(
                "ShardNotExist",
                format!("shard {id} does not exist"),
            ))
        }
        Some(Err(_)) => return Err(ApiError::bad("ParameterInvalid", "shard is not a number")),
    };
    // Every requested shard gets an entry, committed or not.
    let out: Vec<Value> = wanted
        .into_iter()
        .map(|id| match g.checkpoints.get(&id) {
            Some(c) => json!({"shard": id, "checkpoint": c.cursor, "updateTime": c.update_time, "consumer": c.consumer}),
            None => json!({"shard": id, "checkpoint": "", "updateTime": 0, "consumer": ""}),
        })
        .collect();
    Ok(ApiReply::json(Value::Array(out)))
}
