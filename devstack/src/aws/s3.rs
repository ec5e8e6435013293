//! S3's REST API for buckets and objects (XML answers, as S3 gives them).

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use md5::{Digest as _, Md5};
use serde_json::json;

use super::{now_ms, request_id, AwsState, Call, Reply};

#[derive(Default)]
pub(crate) struct Buckets {
    buckets: BTreeMap<String, Bucket>,
}

struct Bucket {
    created: SystemTime,
    objects: BTreeMap<String, Object>,
    notifications: Vec<QueueNotification>,
}

struct Object {
    body: Bytes,
    etag: String,
    modified: SystemTime,
    content_type: String,
}

#[derive(Clone)]
struct QueueNotification {
    id: String,
    queue_arn: String,
    /// `s3:ObjectCreated:*`, `s3:ObjectCreated:Put`, …
    events: Vec<String>,
    prefix: String,
    suffix: String,
}

impl Buckets {
    pub fn create(&mut self, name: &str) -> bool {
        if self.buckets.contains_key(name) {
            return false;
        }
        self.buckets.insert(
            name.to_owned(),
            Bucket {
                created: SystemTime::now(),
                objects: BTreeMap::new(),
                notifications: Vec::new(),
            },
        );
        true
    }

    pub fn notify(&mut self, bucket: &str, id: &str, queue_arn: &str, prefix: &str, suffix: &str) {
        if let Some(b) = self.buckets.get_mut(bucket) {
            b.notifications.push(QueueNotification {
                id: id.to_owned(),
                queue_arn: queue_arn.to_owned(),
                events: vec!["s3:ObjectCreated:*".to_owned()],
                prefix: prefix.to_owned(),
                suffix: suffix.to_owned(),
            });
        }
    }

    /// Objects and their bytes, over every bucket.
    pub fn totals(&self) -> (u64, u64) {
        self.buckets.values().fold((0, 0), |(n, b), bucket| {
            (
                n + bucket.objects.len() as u64,
                b + bucket
                    .objects
                    .values()
                    .map(|o| o.body.len() as u64)
                    .sum::<u64>(),
            )
        })
    }
}

/// An S3 error document.
pub(crate) fn error(status: u16, code: &str, message: &str, resource: &str) -> Reply {
    let rid = request_id();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{rid}</RequestId></Error>",
        xml(message),
        xml(resource)
    );
    let mut r = Reply::new(status, body).header("content-type", "application/xml");
    r.code = code.to_owned();
    r
}

/// A HEAD answer carries no body, only the status.
fn head_error(status: u16, code: &str) -> Reply {
    let mut r = Reply::new(status, Bytes::new());
    r.code = code.to_owned();
    r
}

pub(crate) fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// S3's `encoding-type=url`: every byte but unreserved ones and `/`.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn iso_ms(t: SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let s = crate::gen::iso(ms / 1000);
    // `…Z` → `….mmmZ`
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ms % 1000)
}

/// Bucket and key of a request: virtual-host style when the Host's first
/// label names a bucket (and the Host is a name, not an address), else
/// path style.
fn address(state: &AwsState, call: &Call) -> (String, String) {
    let host = call.host();
    let is_ip = host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[');
    if !is_ip {
        if let Some((first, _)) = host.split_once('.') {
            if state.s3.lock().buckets.contains_key(first) {
                let key = percent_decode(call.raw_path.trim_start_matches('/'));
                return (first.to_owned(), key);
            }
        }
    }
    let path = call.raw_path.trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    (percent_decode(bucket), percent_decode(key))
}

/// The operation's name, for stats and faults.
pub(crate) fn operation(state: &AwsState, call: &Call) -> String {
    let (bucket, key) = address(state, call);
    let op = match (call.method.as_str(), bucket.is_empty(), key.is_empty()) {
        (_, true, _) => "ListBuckets",
        ("PUT", false, true) if call.has_query("notification") => {
            "PutBucketNotificationConfiguration"
        }
        ("GET", false, true) if call.has_query("notification") => {
            "GetBucketNotificationConfiguration"
        }
        ("PUT", false, true) => "CreateBucket",
        ("HEAD", false, true) => "HeadBucket",
        ("GET", false, true) if call.query("list-type") == Some("2") => "ListObjectsV2",
        ("GET", false, true) => "ListObjects",
        ("PUT", false, false) => "PutObject",
        ("GET", false, false) => "GetObject",
        ("HEAD", false, false) => "HeadObject",
        ("DELETE", false, false) => "DeleteObject",
        _ => "Unsupported",
    };
    op.to_owned()
}

pub(crate) fn dispatch(state: &AwsState, call: &Call) -> Reply {
    // What the client signed as the payload: S3 always says.
    let Some(payload) = call.header("x-amz-content-sha256").map(str::to_owned) else {
        if call.header("authorization").is_none() {
            return error(403, "AccessDenied", "Access Denied", &call.raw_path);
        }
        return error(
            400,
            "InvalidRequest",
            "Missing required header for this request: x-amz-content-sha256",
            &call.raw_path,
        );
    };
    let hex_payload = payload.len() == 64 && payload.bytes().all(|b| b.is_ascii_hexdigit());
    if hex_payload {
        let got = hex::encode(sha2::Sha256::digest(&call.body));
        if !got.eq_ignore_ascii_case(&payload) {
            return error(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                &call.raw_path,
            );
        }
    } else if !matches!(
        payload.as_str(),
        "UNSIGNED-PAYLOAD"
            | "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
            | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
            | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    ) {
        return error(
            400,
            "InvalidArgument",
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-… or a SHA-256 hex digest",
            &call.raw_path,
        );
    }
    let op = operation(state, call);
    let allowed = state
        .authenticate(call, &payload, "s3")
        .and_then(|who| state.permit(&who, &op));
    if let Err((status, code, message)) = allowed {
        return if call.method == "HEAD" {
            head_error(status, code)
        } else {
            error(status, code, &message, &call.raw_path)
        };
    }
    let (bucket, key) = address(state, call);
    let resource = format!("/{bucket}/{key}");
    match op.as_str() {
        "ListBuckets" => list_buckets(state),
        "CreateBucket" => {
            if state.s3.lock().create(&bucket) {
                Reply::new(200, Bytes::new()).header("location", format!("/{bucket}"))
            } else {
                error(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.", &bucket)
            }
        }
        "HeadBucket" => {
            if state.s3.lock().buckets.contains_key(&bucket) {
                Reply::new(200, Bytes::new())
            } else {
                head_error(404, "NoSuchBucket")
            }
        }
        "PutBucketNotificationConfiguration" => put_notification(state, call, &bucket),
        "GetBucketNotificationConfiguration" => get_notification(state, &bucket),
        "ListObjectsV2" => list_v2(state, call, &bucket),
        "PutObject" => put_object(state, call, &bucket, &key, &payload),
        "GetObject" | "HeadObject" => {
            let head = call.method == "HEAD";
            let s3 = state.s3.lock();
            let Some(b) = s3.buckets.get(&bucket) else {
                return if head {
                    head_error(404, "NoSuchBucket")
                } else {
                    error(
                        404,
                        "NoSuchBucket",
                        "The specified bucket does not exist",
                        &bucket,
                    )
                };
            };
            let Some(o) = b.objects.get(&key) else {
                return if head {
                    head_error(404, "NoSuchKey")
                } else {
                    error(
                        404,
                        "NoSuchKey",
                        "The specified key does not exist.",
                        &resource,
                    )
                };
            };
            let body = if head { Bytes::new() } else { o.body.clone() };
            let mut r = Reply::new(200, body)
                .header("etag", format!("\"{}\"", o.etag))
                .header("last-modified", httpdate::fmt_http_date(o.modified))
                .header("content-type", o.content_type.clone())
                .header("accept-ranges", "bytes");
            if head {
                r = r.header("content-length", o.body.len().to_string());
            }
            r
        }
        "DeleteObject" => {
            if let Some(b) = state.s3.lock().buckets.get_mut(&bucket) {
                b.objects.remove(&key);
                Reply::new(204, Bytes::new())
            } else {
                error(
                    404,
                    "NoSuchBucket",
                    "The specified bucket does not exist",
                    &bucket,
                )
            }
        }
        _ => error(
            501,
            "NotImplemented",
            "A header or query you provided implies functionality that is not implemented.",
            &resource,
        ),
    }
}

fn list_buckets(state: &AwsState) -> Reply {
    let s3 = state.s3.lock();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Owner><ID>devstack</ID><DisplayName>devstack</DisplayName></Owner><Buckets>");
    for (name, b) in &s3.buckets {
        x.push_str(&format!(
            "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
            xml(name),
            iso_ms(b.created)
        ));
    }
    x.push_str("</Buckets></ListAllMyBucketsResult>");
    Reply::new(200, x).header("content-type", "application/xml")
}

/// An `aws-chunked` body: `hex-size[;chunk-signature=…]\r\n data \r\n` …
/// then a zero chunk and optional trailers.
fn dechunk(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk header without CRLF")?;
        let header =
            std::str::from_utf8(&rest[..line_end]).map_err(|_| "a chunk header is not UTF-8")?;
        let size_hex = header.split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_hex.trim(), 16)
            .map_err(|_| format!("chunk size {size_hex:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out); // trailers follow; devstack does not check them
        }
        let end = size
            .checked_add(2)
            .filter(|e| *e <= rest.len())
            .ok_or_else(|| format!("a chunk of {size} bytes is cut short"))?;
        if &rest[size..end] != b"\r\n" {
            return Err(format!("a chunk of {size} bytes does not end in CRLF"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn put_object(state: &AwsState, call: &Call, bucket: &str, key: &str, payload: &str) -> Reply {
    let resource = format!("/{bucket}/{key}");
    let chunked = payload.starts_with("STREAMING-")
        || call
            .header("content-encoding")
            .is_some_and(|e| e.split(',').any(|p| p.trim() == "aws-chunked"));
    let body = if chunked {
        match dechunk(&call.body) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                return error(
                    400,
                    "IncompleteBody",
                    &format!("aws-chunked body: {e}"),
                    &resource,
                )
            }
        }
    } else {
        call.body.clone()
    };
    if let Some(want) = call.header("x-amz-decoded-content-length") {
        if want.trim() != body.len().to_string() {
            return error(400, "IncompleteBody", "You did not provide the number of bytes specified by the x-amz-decoded-content-length header.", &resource);
        }
    }
    let md5 = Md5::digest(&body);
    if let Some(given) = call.header("content-md5") {
        if base64::engine::general_purpose::STANDARD.encode(md5) != given.trim() {
            return error(
                400,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.",
                &resource,
            );
        }
    }
    let etag = hex::encode(md5);
    let size = body.len();
    let notes = {
        let mut s3 = state.s3.lock();
        let Some(b) = s3.buckets.get_mut(bucket) else {
            return error(
                404,
                "NoSuchBucket",
                "The specified bucket does not exist",
                bucket,
            );
        };
        b.objects.insert(
            key.to_owned(),
            Object {
                body,
                etag: etag.clone(),
                modified: SystemTime::now(),
                content_type: call
                    .header("content-type")
                    .unwrap_or("binary/octet-stream")
                    .to_owned(),
            },
        );
        b.notifications
            .iter()
            .filter(|n| {
                n.events
                    .iter()
                    .any(|e| e == "s3:ObjectCreated:*" || e == "s3:ObjectCreated:Put")
                    && key.starts_with(&n.prefix)
                    && key.ends_with(&n.suffix)
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    for n in notes {
        let event = json!({"Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": state.config.region,
            "eventTime": iso_ms(SystemTime::now()),
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": format!("AWS:{}", state.config.access_key_id)},
            "requestParameters": {"sourceIPAddress": call.peer.ip().to_string()},
            "responseElements": {"x-amz-request-id": request_id(), "x-amz-id-2": request_id()},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": n.id,
                "bucket": {"name": bucket, "ownerIdentity": {"principalId": "DEVSTACK"}, "arn": format!("arn:aws:s3:::{bucket}")},
                "object": {"key": form_encode(key), "size": size, "eTag": etag, "sequencer": format!("{:016X}", now_ms())},
            },
        }]});
        if let Some(queue) = n.queue_arn.rsplit(':').next() {
            if state.sqs.send(queue, event.to_string()).is_some() {
                state.stats.lock().notifications += 1;
            }
        }
    }
    let mut r = Reply::new(200, Bytes::new()).header("etag", format!("\"{etag}\""));
    for (k, v) in &call.headers {
        if k.starts_with("x-amz-checksum-") && !v.is_empty() {
            r = r.header(k, v.clone());
        }
    }
    r
}

/// Keys in event notifications are URL-encoded as HTML forms are (space → `+`).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace("%2F", "/")
}

fn list_v2(state: &AwsState, call: &Call, bucket: &str) -> Reply {
    let s3 = state.s3.lock();
    let Some(b) = s3.buckets.get(bucket) else {
        return error(
            404,
            "NoSuchBucket",
            "The specified bucket does not exist",
            bucket,
        );
    };
    let prefix = call.query("prefix").unwrap_or("");
    let delimiter = call.query("delimiter").filter(|d| !d.is_empty());
    let max_keys: usize = match call.query("max-keys").map(str::parse::<usize>) {
        None => 1000,
        Some(Ok(n)) => n.min(1000),
        Some(Err(_)) => {
            return error(
                400,
                "InvalidArgument",
                "Provided max-keys not an integer or within integer range",
                bucket,
            )
        }
    };
    let token = match call.query("continuation-token") {
        Some(t) => match base64::engine::general_purpose::STANDARD
            .decode(t)
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
        {
            Some(k) => Some(k),
            None => {
                return error(
                    400,
                    "InvalidArgument",
                    "The continuation token provided is incorrect",
                    bucket,
                )
            }
        },
        None => None,
    };
    let start_after = call.query("start-after").unwrap_or("");
    let url = call.query("encoding-type") == Some("url");
    let enc = |s: &str| if url { url_encode(s) } else { s.to_owned() };
    // Resume after the token (a key, or a common prefix whose keys were all
    // rolled up), else after start-after.
    let after = token.clone().unwrap_or_else(|| start_after.to_owned());
    let mut contents = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut last = None;
    let mut truncated = false;
    let range = b.objects.range::<str, _>((
        std::ops::Bound::Excluded(after.as_str()),
        std::ops::Bound::Unbounded,
    ));
    for (k, o) in range {
        if !k.starts_with(prefix) {
            // Keys under the prefix are one run of the sorted map.
            if k.as_str() > prefix {
                break;
            }
            continue;
        }
        if delimiter.is_some()
            && after.ends_with(delimiter.unwrap_or(""))
            && !after.is_empty()
            && k.starts_with(&after)
        {
            continue; // inside a common prefix already returned
        }
        let rolled = delimiter.and_then(|d| {
            k[prefix.len()..]
                .find(d)
                .map(|i| k[..prefix.len() + i + d.len()].to_owned())
        });
        if let Some(p) = &rolled {
            if prefixes.last() == Some(p) {
                continue;
            }
        }
        if contents.len() + prefixes.len() >= max_keys {
            truncated = true;
            break;
        }
        match rolled {
            Some(p) => {
                last = Some(p.clone());
                prefixes.push(p);
            }
            None => {
                last = Some(k.clone());
                contents.push((k.clone(), o));
            }
        }
    }
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    x.push_str(&format!(
        "<Name>{}</Name><Prefix>{}</Prefix>",
        xml(bucket),
        xml(&enc(prefix))
    ));
    if let Some(d) = delimiter {
        x.push_str(&format!("<Delimiter>{}</Delimiter>", xml(&enc(d))));
    }
    if let Some(t) = call.query("continuation-token") {
        x.push_str(&format!(
            "<ContinuationToken>{}</ContinuationToken>",
            xml(t)
        ));
    }
    if !start_after.is_empty() {
        x.push_str(&format!(
            "<StartAfter>{}</StartAfter>",
            xml(&enc(start_after))
        ));
    }
    x.push_str(&format!(
        "<KeyCount>{}</KeyCount><MaxKeys>{max_keys}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        contents.len() + prefixes.len()
    ));
    if url {
        x.push_str("<EncodingType>url</EncodingType>");
    }
    if truncated {
        if let Some(l) = last {
            let t = base64::engine::general_purpose::STANDARD.encode(l.as_bytes());
            x.push_str(&format!(
                "<NextContinuationToken>{t}</NextContinuationToken>"
            ));
        }
    }
    for (k, o) in contents {
        x.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            xml(&enc(&k)),
            iso_ms(o.modified),
            o.etag,
            o.body.len()
        ));
    }
    for p in prefixes {
        x.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            xml(&enc(&p))
        ));
    }
    x.push_str("</ListBucketResult>");
    Reply::new(200, x).header("content-type", "application/xml")
}

/// The text of every `<tag>…</tag>` in `x` (no nesting of the same tag).
pub(crate) fn elements<'a>(x: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = x;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

fn put_notification(state: &AwsState, call: &Call, bucket: &str) -> Reply {
    let Ok(body) = std::str::from_utf8(&call.body) else {
        return error(
            400,
            "MalformedXML",
            "The XML you provided was not well-formed",
            bucket,
        );
    };
    if !body.contains("NotificationConfiguration") {
        return error(
            400,
            "MalformedXML",
            "The XML you provided was not well-formed",
            bucket,
        );
    }
    let mut configs = Vec::new();
    for q in elements(body, "QueueConfiguration") {
        let Some(arn) = elements(q, "Queue").first().map(|s| s.trim().to_owned()) else {
            return error(
                400,
                "MalformedXML",
                "A QueueConfiguration lacks its Queue",
                bucket,
            );
        };
        let queue = arn.rsplit(':').next().unwrap_or("").to_owned();
        if !state.sqs.exists(&queue) {
            return error(
                400,
                "InvalidArgument",
                &format!("Unable to validate the following destination configurations: {arn}"),
                bucket,
            );
        }
        let (mut prefix, mut suffix) = (String::new(), String::new());
        for rule in elements(q, "FilterRule") {
            let name = elements(rule, "Name")
                .first()
                .copied()
                .unwrap_or("")
                .to_ascii_lowercase();
            let value = elements(rule, "Value")
                .first()
                .copied()
                .unwrap_or("")
                .to_owned();
            match name.as_str() {
                "prefix" => prefix = value,
                "suffix" => suffix = value,
                _ => {}
            }
        }
        configs.push(QueueNotification {
            id: elements(q, "Id")
                .first()
                .map(|s| s.to_string())
                .unwrap_or_else(request_id),
            queue_arn: arn,
            events: elements(q, "Event")
                .iter()
                .map(|s| s.trim().to_owned())
                .collect(),
            prefix,
            suffix,
        });
    }
    {
        let mut s3 = state.s3.lock();
        let Some(b) = s3.buckets.get_mut(bucket) else {
            return error(
                404,
                "NoSuchBucket",
                "The specified bucket does not exist",
                bucket,
            );
        };
        b.notifications = configs.clone();
    }
    // S3 proves the destination with a test event.
    for c in &configs {
        let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": iso_ms(SystemTime::now()), "Bucket": bucket, "RequestId": request_id(), "HostId": request_id()});
        if let Some(queue) = c.queue_arn.rsplit(':').next() {
            state.sqs.send(queue, test.to_string());
        }
    }
    Reply::new(200, Bytes::new())
}

fn get_notification(state: &AwsState, bucket: &str) -> Reply {
    let s3 = state.s3.lock();
    let Some(b) = s3.buckets.get(bucket) else {
        return error(
            404,
            "NoSuchBucket",
            "The specified bucket does not exist",
            bucket,
        );
    };
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<NotificationConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for n in &b.notifications {
        x.push_str(&format!(
            "<QueueConfiguration><Id>{}</Id><Queue>{}</Queue>",
            xml(&n.id),
            xml(&n.queue_arn)
        ));
        for e in &n.events {
            x.push_str(&format!("<Event>{}</Event>", xml(e)));
        }
        if !n.prefix.is_empty() || !n.suffix.is_empty() {
            x.push_str("<Filter><S3Key>");
            for (name, v) in [("prefix", &n.prefix), ("suffix", &n.suffix)] {
                if !v.is_empty() {
                    x.push_str(&format!(
                        "<FilterRule><Name>{name}</Name><Value>{}</Value></FilterRule>",
                        xml(v)
                    ));
                }
            }
            x.push_str("</S3Key></Filter>");
        }
        x.push_str("</QueueConfiguration>");
    }
    x.push_str("</NotificationConfiguration>");
    Reply::new(200, x).header("content-type", "application/xml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_bodies_decode() {
        let body = b"5;chunk-signature=abc\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n";
        assert_eq!(dechunk(body).unwrap(), b"hello world");
        assert!(dechunk(b"5\r\nhel").is_err());
        assert!(dechunk(b"zz\r\n").is_err());
        assert!(dechunk(b"ffffffffffffffff\r\nx").is_err());
    }

    #[test]
    fn keys_encode_as_s3_does() {
        assert_eq!(url_encode("a b/c+d"), "a%20b/c%2Bd");
        assert_eq!(form_encode("a b/c+d"), "a+b/c%2Bd");
        assert_eq!(percent_decode("a%20b/c%2Bd%"), "a b/c+d%");
    }
}
