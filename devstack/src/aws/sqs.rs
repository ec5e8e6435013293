//! SQS standard queues in the JSON 1.0 protocol (`X-Amz-Target:
//! AmazonSQS.{Operation}`), with the query-compatible error codes current
//! SDKs read from `x-amzn-query-error`.
//!
//! What a consumer depends on is kept exact: a received message is
//! invisible for its visibility timeout and comes back after it with a new
//! receipt handle and a higher `ApproximateReceiveCount`; only the latest
//! receipt handle deletes or extends it (an older one is accepted and does
//! nothing, as SQS does not promise it works); long polls return as soon as
//! a message is visible.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::{now_ms, AwsState, Call, Reply};

#[derive(Default)]
pub(crate) struct Queues {
    queues: Mutex<BTreeMap<String, Queue>>,
    /// Woken on every send and every visibility change.
    changed: Notify,
}

struct Queue {
    visibility: Duration,
    wait: Duration,
    created: u64,
    messages: Vec<Message>,
    next_id: u64,
}

struct Message {
    id: String,
    body: String,
    md5: String,
    sent_ms: u64,
    first_receive_ms: Option<u64>,
    receive_count: u32,
    visible_at: Instant,
    /// The latest receipt handle; only it deletes or extends.
    receipt: Option<String>,
}

pub(crate) struct Totals {
    pub visible: u64,
    pub in_flight: u64,
}

impl Queues {
    pub fn create(&self, name: &str, visibility_secs: u32) {
        self.queues.lock().entry(name.to_owned()).or_insert(Queue {
            visibility: Duration::from_secs(visibility_secs.into()),
            wait: Duration::ZERO,
            created: now_ms() / 1000,
            messages: Vec::new(),
            next_id: 1,
        });
    }

    pub fn exists(&self, name: &str) -> bool {
        self.queues.lock().contains_key(name)
    }

    /// Enqueues a message; its id, or `None` without such a queue.
    pub fn send(&self, queue: &str, body: String) -> Option<String> {
        let id = {
            let mut qs = self.queues.lock();
            let q = qs.get_mut(queue)?;
            let n = q.next_id;
            q.next_id += 1;
            let id = format!(
                "{:08x}-{:04x}-4000-8000-{:012x}",
                fastrand::u32(..),
                n & 0xffff,
                n
            );
            q.messages.push(Message {
                id: id.clone(),
                md5: hex::encode(Md5::digest(body.as_bytes())),
                body,
                sent_ms: now_ms(),
                first_receive_ms: None,
                receive_count: 0,
                visible_at: Instant::now(),
                receipt: None,
            });
            id
        };
        self.changed.notify_waiters();
        Some(id)
    }

    pub fn totals(&self) -> Totals {
        let now = Instant::now();
        let qs = self.queues.lock();
        let mut t = Totals {
            visible: 0,
            in_flight: 0,
        };
        for m in qs.values().flat_map(|q| &q.messages) {
            if m.visible_at <= now {
                t.visible += 1;
            } else {
                t.in_flight += 1;
            }
        }
        t
    }
}

/// A JSON-protocol error with its query-compatible code.
pub(crate) fn error(status: u16, shape: &str, query_code: &str, message: &str) -> Reply {
    let fault = if status >= 500 { "Receiver" } else { "Sender" };
    let body = json!({"__type": format!("com.amazonaws.sqs#{shape}"), "message": message});
    let mut r = Reply::new(status, body.to_string())
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-query-error", format!("{query_code};{fault}"));
    r.code = shape.to_owned();
    r
}

fn ok(v: Value) -> Reply {
    Reply::new(200, v.to_string()).header("content-type", "application/x-amz-json-1.0")
}

fn no_queue() -> Reply {
    error(
        400,
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "The specified queue does not exist.",
    )
}

fn invalid(message: &str) -> Reply {
    error(
        400,
        "InvalidParameterValue",
        "InvalidParameterValue",
        message,
    )
}

/// The queue a `QueueUrl` names (its last path segment).
fn queue_of(v: &Value) -> Option<String> {
    v["QueueUrl"]
        .as_str()
        .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
        .map(str::to_owned)
}

fn url(state: &AwsState, call: &Call, name: &str) -> String {
    let host = call.header("host").unwrap_or("localhost");
    format!("http://{host}/{}/{name}", state.config.account)
}

fn receipt(id: &str) -> String {
    format!("{id}#{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn secs(v: &Value, name: &str, max: u64) -> Result<Option<Duration>, Reply> {
    match &v[name] {
        Value::Null => Ok(None),
        x => match x
            .as_u64()
            .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        {
            Some(n) if n <= max => Ok(Some(Duration::from_secs(n))),
            _ => Err(invalid(&format!(
                "Value {x} for parameter {name} is invalid. Reason: must be between 0 and {max}."
            ))),
        },
    }
}

pub(crate) async fn dispatch(state: &AwsState, op: &str, call: &Call) -> Reply {
    let v: Value = if call.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&call.body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return error(
                    400,
                    "SerializationException",
                    "InvalidParameterValue",
                    "the body is not a JSON object",
                )
            }
        }
    };
    let qs = &state.sqs;
    match op {
        "CreateQueue" => {
            let Some(name) = v["QueueName"].as_str().filter(|n| {
                !n.is_empty()
                    && n.len() <= 80
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }) else {
                return invalid("Value for parameter QueueName is invalid.");
            };
            let vis = match v["Attributes"]["VisibilityTimeout"]
                .as_str()
                .map(str::parse::<u32>)
            {
                None => state.config.visibility_timeout,
                Some(Ok(n)) if n <= 43_200 => n,
                _ => return invalid("Invalid value for the parameter VisibilityTimeout."),
            };
            qs.create(name, vis);
            if let Some(w) = v["Attributes"]["ReceiveMessageWaitTimeSeconds"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
            {
                if let Some(q) = qs.queues.lock().get_mut(name) {
                    q.wait = Duration::from_secs(w.min(20));
                }
            }
            ok(json!({"QueueUrl": url(state, call, name)}))
        }
        "GetQueueUrl" => match v["QueueName"].as_str() {
            Some(n) if qs.exists(n) => ok(json!({"QueueUrl": url(state, call, n)})),
            _ => no_queue(),
        },
        "ListQueues" => {
            let prefix = v["QueueNamePrefix"].as_str().unwrap_or("");
            let urls: Vec<String> = qs
                .queues
                .lock()
                .keys()
                .filter(|n| n.starts_with(prefix))
                .map(|n| url(state, call, n))
                .collect();
            ok(json!({"QueueUrls": urls}))
        }
        "SendMessage" => {
            let Some(q) = queue_of(&v) else {
                return no_queue();
            };
            let Some(body) = v["MessageBody"].as_str().filter(|b| !b.is_empty()) else {
                return error(
                    400,
                    "MissingRequiredParameter",
                    "MissingParameter",
                    "The request must contain the parameter MessageBody.",
                );
            };
            if body.len() > 262_144 {
                return invalid("One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.");
            }
            let md5 = hex::encode(Md5::digest(body.as_bytes()));
            match qs.send(&q, body.to_owned()) {
                Some(id) => {
                    state.stats.lock().sent += 1;
                    ok(json!({"MessageId": id, "MD5OfMessageBody": md5}))
                }
                None => no_queue(),
            }
        }
        "ReceiveMessage" => receive(state, &v).await,
        "DeleteMessage" => {
            let Some(q) = queue_of(&v) else {
                return no_queue();
            };
            match delete(state, &q, v["ReceiptHandle"].as_str().unwrap_or("")) {
                Ok(()) => ok(json!({})),
                Err(r) => r,
            }
        }
        "DeleteMessageBatch" => {
            let Some(q) = queue_of(&v) else {
                return no_queue();
            };
            let Some(entries) = v["Entries"]
                .as_array()
                .filter(|e| !e.is_empty() && e.len() <= 10)
            else {
                return error(
                    400,
                    "EmptyBatchRequest",
                    "AWS.SimpleQueueService.EmptyBatchRequest",
                    "There should be at least one DeleteMessageBatchRequestEntry in the request.",
                );
            };
            let (mut done, mut failed) = (Vec::new(), Vec::new());
            for e in entries {
                let id = e["Id"].as_str().unwrap_or("");
                match delete(state, &q, e["ReceiptHandle"].as_str().unwrap_or("")) {
                    Ok(()) => done.push(json!({"Id": id})),
                    Err(_) => failed.push(json!({"Id": id, "SenderFault": true, "Code": "ReceiptHandleIsInvalid", "Message": "The input receipt handle is invalid."})),
                }
            }
            ok(json!({"Successful": done, "Failed": failed}))
        }
        "ChangeMessageVisibility" => {
            let Some(q) = queue_of(&v) else {
                return no_queue();
            };
            let t = match secs(&v, "VisibilityTimeout", 43_200) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    return error(
                        400,
                        "MissingRequiredParameter",
                        "MissingParameter",
                        "The request must contain the parameter VisibilityTimeout.",
                    )
                }
                Err(r) => return r,
            };
            let handle = v["ReceiptHandle"].as_str().unwrap_or("");
            let now = Instant::now();
            let mut guard = qs.queues.lock();
            let Some(queue) = guard.get_mut(&q) else {
                return no_queue();
            };
            let Some(id) = handle.split_once('#').map(|x| x.0) else {
                return error(
                    400,
                    "ReceiptHandleIsInvalid",
                    "ReceiptHandleIsInvalid",
                    "The input receipt handle is invalid.",
                );
            };
            match queue.messages.iter_mut().find(|m| m.id == id) {
                Some(m) if m.receipt.as_deref() == Some(handle) && m.visible_at > now => {
                    m.visible_at = now + t;
                    drop(guard);
                    qs.changed.notify_waiters();
                    ok(json!({}))
                }
                _ => error(
                    400,
                    "MessageNotInflight",
                    "AWS.SimpleQueueService.MessageNotInflight",
                    "The message referred to isn't in flight.",
                ),
            }
        }
        "GetQueueAttributes" => {
            let Some(q) = queue_of(&v) else {
                return no_queue();
            };
            let now = Instant::now();
            let guard = qs.queues.lock();
            let Some(queue) = guard.get(&q) else {
                return no_queue();
            };
            let visible = queue
                .messages
                .iter()
                .filter(|m| m.visible_at <= now)
                .count();
            ok(json!({"Attributes": {
                "ApproximateNumberOfMessages": visible.to_string(),
                "ApproximateNumberOfMessagesNotVisible": (queue.messages.len() - visible).to_string(),
                "ApproximateNumberOfMessagesDelayed": "0",
                "VisibilityTimeout": queue.visibility.as_secs().to_string(),
                "ReceiveMessageWaitTimeSeconds": queue.wait.as_secs().to_string(),
                "CreatedTimestamp": queue.created.to_string(),
                "QueueArn": format!("arn:aws:sqs:{}:{}:{q}", state.config.region, state.config.account),
            }}))
        }
        "PurgeQueue" => {
            let Some(q) = queue_of(&v) else {
                return no_queue();
            };
            match qs.queues.lock().get_mut(&q) {
                Some(queue) => {
                    queue.messages.clear();
                    ok(json!({}))
                }
                None => no_queue(),
            }
        }
        _ => error(
            400,
            "InvalidAction",
            "InvalidAction",
            &format!("The action {op} is not valid for this endpoint."),
        ),
    }
}

fn delete(state: &AwsState, q: &str, handle: &str) -> Result<(), Reply> {
    let mut guard = state.sqs.queues.lock();
    let Some(queue) = guard.get_mut(q) else {
        return Err(no_queue());
    };
    let Some(id) = handle.split_once('#').map(|x| x.0) else {
        return Err(error(
            400,
            "ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid",
            "The input receipt handle is invalid.",
        ));
    };
    if let Some(i) = queue
        .messages
        .iter()
        .position(|m| m.id == id && m.receipt.as_deref() == Some(handle))
    {
        queue.messages.remove(i);
        state.stats.lock().deleted += 1;
    }
    Ok(())
}

async fn receive(state: &AwsState, v: &Value) -> Reply {
    let Some(q) = queue_of(v) else {
        return no_queue();
    };
    let max = match &v["MaxNumberOfMessages"] {
        Value::Null => 1,
        x => match x.as_u64() {
            Some(n @ 1..=10) => n as usize,
            _ => return invalid("Value for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."),
        },
    };
    let (wait, vis) = match (
        secs(v, "WaitTimeSeconds", 20),
        secs(v, "VisibilityTimeout", 43_200),
    ) {
        (Ok(w), Ok(t)) => (w, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let (wait, vis) = {
        let guard = state.sqs.queues.lock();
        let Some(queue) = guard.get(&q) else {
            return no_queue();
        };
        (wait.unwrap_or(queue.wait), vis.unwrap_or(queue.visibility))
    };
    let deadline = Instant::now() + wait;
    loop {
        let changed = state.sqs.changed.notified();
        let (got, next_visible) = {
            let now = Instant::now();
            let mut guard = state.sqs.queues.lock();
            let Some(queue) = guard.get_mut(&q) else {
                return no_queue();
            };
            let mut got = Vec::new();
            let mut stats = state.stats.lock();
            for m in queue
                .messages
                .iter_mut()
                .filter(|m| m.visible_at <= now)
                .take(max)
            {
                m.receive_count += 1;
                if m.receive_count > 1 {
                    stats.redelivered += 1;
                }
                stats.received += 1;
                let first = *m.first_receive_ms.get_or_insert_with(now_ms);
                let handle = receipt(&m.id);
                m.receipt = Some(handle.clone());
                m.visible_at = now + vis;
                got.push(json!({
                    "MessageId": m.id,
                    "ReceiptHandle": handle,
                    "MD5OfBody": m.md5,
                    "Body": m.body,
                    "Attributes": {
                        "ApproximateReceiveCount": m.receive_count.to_string(),
                        "SentTimestamp": m.sent_ms.to_string(),
                        "ApproximateFirstReceiveTimestamp": first.to_string(),
                        "SenderId": state.config.access_key_id,
                    },
                }));
            }
            let next = queue.messages.iter().map(|m| m.visible_at).min();
            (got, next)
        };
        if !got.is_empty() {
            return ok(json!({"Messages": got}));
        }
        let now = Instant::now();
        if now >= deadline {
            return ok(json!({}));
        }
        let until = next_visible
            .filter(|t| *t > now)
            .map_or(deadline, |t| t.min(deadline));
        let _ = tokio::time::timeout(until - now, changed).await;
    }
}
