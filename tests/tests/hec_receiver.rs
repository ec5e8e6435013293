//! devstack's HEC receiver against the HEC notes' checklist (§7), over real
//! HTTP to a real `trail-devstack hec` process.

use std::io::Write;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use trail_tests::{Devstack, HEC_TOKEN};

fn url(d: &Devstack, path: &str) -> String {
    format!("http://{}{path}", d.addr)
}

async fn post(
    c: &Client,
    d: &Devstack,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = c.post(url(d, path)).body(body.to_owned());
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn splunk() -> String {
    format!("Splunk {HEC_TOKEN}")
}

async fn stats(c: &Client, d: &Devstack) -> Value {
    c.get(url(d, "/_devstack/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn routes_and_auth_matrix() {
    let d = Devstack::hec(&["--disabled-token", "off-token"]);
    let c = Client::new();
    let ok = json!({"text": "Success", "code": 0});
    for path in [
        "/services/collector/event",
        "/services/collector",
        "/services/collector/event/1.0",
    ] {
        assert_eq!(
            post(&c, &d, path, Some(&splunk()), r#"{"event":"x"}"#).await,
            (StatusCode::OK, ok.clone()),
            "{path}"
        );
    }
    let raw = c
        .post(url(&d, "/services/collector/raw?sourcetype=plain&host=h1"))
        .header("Authorization", splunk())
        .body("line one\nline two\n")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::OK);

    let e = "/services/collector/event";
    let body = r#"{"event":"x"}"#;
    assert_eq!(
        post(&c, &d, e, None, body).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({"text": "Token is required", "code": 2})
        )
    );
    assert_eq!(post(&c, &d, e, Some("Bearer x"), body).await.1["code"], 3);
    assert_eq!(
        post(&c, &d, e, Some("Splunk nope"), body).await,
        (
            StatusCode::FORBIDDEN,
            json!({"text": "Invalid token", "code": 4})
        )
    );
    assert_eq!(
        post(&c, &d, e, Some("Splunk off-token"), body).await.1["code"],
        1
    );
    let basic = c
        .post(url(&d, e))
        .basic_auth("anyone", Some(HEC_TOKEN))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
    assert_eq!(
        post(&c, &d, &format!("{e}?token={HEC_TOKEN}"), None, body)
            .await
            .1["code"],
        16
    );
    assert_eq!(
        post(&c, &d, &format!("{e}?token=bad"), Some(&splunk()), body)
            .await
            .1["code"],
        4,
        "token checked first"
    );

    // OPTIONS, 404, 405, health without a token.
    let opt = c
        .request(reqwest::Method::OPTIONS, url(&d, e))
        .send()
        .await
        .unwrap();
    assert_eq!(opt.status(), StatusCode::OK);
    assert_eq!(opt.headers()["allow"], "POST,OPTIONS");
    assert_eq!(
        c.get(url(&d, "/services/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.get(url(&d, e)).send().await.unwrap().status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    let health: Value = c
        .get(url(&d, "/services/collector/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"text": "HEC is healthy", "code": 17}));
}

#[tokio::test]
async fn batches_partial_errors_and_compression() {
    let d = Devstack::hec(&["--index", "main,audit"]);
    let c = Client::new();
    let e = "/services/collector/event";
    // Concatenated, with and without whitespace.
    let (s, _) = post(&c, &d, e, Some(&splunk()), r#"{"event":{"eventId":"a"}}{"event":{"eventId":"b"}} {"event":{"eventId":"c"},"time":1715653867.5}"#).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stats(&c, &d).await["indexed"], 3);
    // Object 1 of 3 has no event: 400 code 12 naming it; object 0 indexed.
    let (s, b) = post(
        &c,
        &d,
        e,
        Some(&splunk()),
        r#"{"event":"d"}{"time":1}{"event":"f"}"#,
    )
    .await;
    assert_eq!(
        (s, b["code"].clone(), b["invalid-event-number"].clone()),
        (StatusCode::BAD_REQUEST, json!(12), json!(1))
    );
    assert_eq!(stats(&c, &d).await["indexed"], 4);
    assert_eq!(post(&c, &d, e, Some(&splunk()), "").await.1["code"], 5);
    assert_eq!(
        post(&c, &d, e, Some(&splunk()), r#"[{"event":"x"}]"#)
            .await
            .1["code"],
        6
    );
    assert_eq!(
        post(
            &c,
            &d,
            e,
            Some(&splunk()),
            r#"{"event":"x","index":"secret"}"#
        )
        .await
        .1["code"],
        7
    );

    // gzip accepted, deflate refused with 415.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(br#"{"event":{"eventId":"gz"}}"#).unwrap();
    let resp = c
        .post(url(&d, e))
        .header("Authorization", splunk())
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = c
        .post(url(&d, e))
        .header("Authorization", splunk())
        .header("Content-Encoding", "deflate")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let events = c
        .get(url(&d, "/_devstack/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(events.lines().count(), 5);
    assert!(events.contains(r#""time":1715653867.5"#));
}

#[tokio::test]
async fn indexer_acks_per_channel() {
    let d = Devstack::hec(&["--ack"]);
    let c = Client::new();
    let e = url(&d, "/services/collector/event");
    let ch = "0b5d4a28-4f6e-4e3c-9a3f-0123456789ab";
    let send = |channel: Option<&str>| {
        let mut r = c
            .post(&e)
            .header("Authorization", splunk())
            .body(r#"{"event":"x"}"#);
        if let Some(ch) = channel {
            r = r.header("X-Splunk-Request-Channel", ch);
        }
        r.send()
    };
    let missing: Value = send(None).await.unwrap().json().await.unwrap();
    assert_eq!(missing["code"], 10);
    let bad: Value = send(Some("nope")).await.unwrap().json().await.unwrap();
    assert_eq!(bad["code"], 11);
    for want in 0..3 {
        let ok: Value = send(Some(ch)).await.unwrap().json().await.unwrap();
        assert_eq!(ok, json!({"text": "Success", "code": 0, "ackId": want}));
    }
    let poll = |channel: &'static str, ids: Value| {
        c.post(url(&d, "/services/collector/ack"))
            .header("Authorization", splunk())
            .header("X-Splunk-Request-Channel", channel)
            .json(&json!({"acks": ids}))
            .send()
    };
    let first: Value = poll(ch, json!([0, 1, 7]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first, json!({"acks": {"0": true, "1": true, "7": false}}));
    let again: Value = poll(ch, json!([0, 2])).await.unwrap().json().await.unwrap();
    assert_eq!(
        again,
        json!({"acks": {"0": false, "2": true}}),
        "true once, then forgotten"
    );
    let other: Value = poll("11111111-2222-3333-4444-555555555555", json!([2]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other, json!({"acks": {"2": false}}));

    let plain = Devstack::hec(&[]);
    let r: Value = c
        .post(url(&plain, "/services/collector/ack"))
        .header("Authorization", splunk())
        .json(&json!({"acks": [0]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["code"], 14);
}

#[tokio::test]
async fn faults_busy_and_dropped_connections() {
    let d = Devstack::hec(&["--busy-every", "2", "--drop-conn-every", "3"]);
    let c = Client::new();
    let e = "/services/collector/event";
    let (s1, _) = post(&c, &d, e, Some(&splunk()), r#"{"event":"1"}"#).await;
    let (s2, b2) = post(&c, &d, e, Some(&splunk()), r#"{"event":"2"}"#).await;
    assert_eq!(
        (s1, s2, b2["code"].clone()),
        (StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE, json!(9))
    );
    let third = c
        .post(url(&d, e))
        .header("Authorization", splunk())
        .body(r#"{"event":"3"}"#)
        .send()
        .await;
    assert!(
        third.is_err(),
        "the connection is dropped without an answer"
    );
    assert_eq!(
        stats(&c, &d).await["indexed"],
        1,
        "busy and dropped requests take nothing"
    );
}
