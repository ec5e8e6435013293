//! What an SQS message announces: the S3 objects a trail just wrote.
//!
//! Shapes understood (any of them, also wrapped in an SNS `Notification`
//! whose `Message` holds it as a string):
//! * an S3 event notification: `{"Records":[{"eventSource":"aws:s3",
//!   "eventName":"ObjectCreated:…","s3":{"bucket":{"name"},"object":{"key"}}}]}`
//!   (keys URL-encoded as HTML forms are: `+` is a space);
//! * CloudTrail's own notification: `{"s3Bucket":"…","s3ObjectKey":["…"]}`;
//! * EventBridge's `Object Created`: `{"detail-type":"Object Created",
//!   "detail":{"bucket":{"name"},"object":{"key"}}}` (keys not encoded);
//! * S3's `s3:TestEvent`, which names nothing.
//!
//! Digest files (`CloudTrail-Digest/`) and events other than object
//! creation name nothing to read.

use serde_json::Value;

/// An object to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Objects to read (none: the message only announced things Trail
    /// does not read, such as a digest file or a deletion).
    Objects(Vec<ObjectRef>),
    /// S3 proving the destination.
    Test,
}

/// Parses a message body; the error says why it is not a notification.
pub fn parse(body: &str) -> Result<Notice, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    notice(&v, 0)
}

fn notice(v: &Value, depth: u8) -> Result<Notice, String> {
    if v["Type"] == "Notification" {
        let inner = v["Message"]
            .as_str()
            .ok_or("an SNS notification without a Message")?;
        if depth > 1 {
            return Err("SNS notifications nested too deep".into());
        }
        let inner: Value =
            serde_json::from_str(inner).map_err(|e| format!("the SNS Message is not JSON: {e}"))?;
        return notice(&inner, depth + 1);
    }
    if v["Event"] == "s3:TestEvent" {
        return Ok(Notice::Test);
    }
    if let Some(keys) = v["s3ObjectKey"].as_array() {
        let bucket = v["s3Bucket"]
            .as_str()
            .ok_or("s3ObjectKey without s3Bucket")?;
        let mut out = Vec::new();
        for k in keys {
            let key = k.as_str().ok_or("an s3ObjectKey that is not a string")?;
            push(&mut out, bucket, key.to_owned())?;
        }
        return Ok(Notice::Objects(out));
    }
    if let Some(records) = v["Records"].as_array() {
        let mut out = Vec::new();
        for r in records {
            if r["eventSource"] != "aws:s3" {
                return Err(format!("a record from {} (not aws:s3)", r["eventSource"]));
            }
            if !r["eventName"]
                .as_str()
                .unwrap_or("")
                .starts_with("ObjectCreated:")
            {
                continue;
            }
            let bucket = r["s3"]["bucket"]["name"]
                .as_str()
                .ok_or("an S3 record without s3.bucket.name")?;
            let key = r["s3"]["object"]["key"]
                .as_str()
                .ok_or("an S3 record without s3.object.key")?;
            push(&mut out, bucket, form_decode(key))?;
        }
        return Ok(Notice::Objects(out));
    }
    if v["detail-type"].is_string() && v["source"] == "aws.s3" {
        let mut out = Vec::new();
        if v["detail-type"] == "Object Created" {
            let d = &v["detail"];
            let bucket = d["bucket"]["name"]
                .as_str()
                .ok_or("an EventBridge event without detail.bucket.name")?;
            let key = d["object"]["key"]
                .as_str()
                .ok_or("an EventBridge event without detail.object.key")?;
            push(&mut out, bucket, key.to_owned())?;
        }
        return Ok(Notice::Objects(out));
    }
    Err(
        "neither an S3 event notification, a CloudTrail notification nor an EventBridge event"
            .into(),
    )
}

fn push(out: &mut Vec<ObjectRef>, bucket: &str, key: String) -> Result<(), String> {
    if !super::valid_bucket(bucket) {
        return Err(format!("{bucket:?} is not an S3 bucket name"));
    }
    if key.is_empty() || key.len() > 1024 {
        return Err(format!("an object key of {} bytes", key.len()));
    }
    if key.contains("/CloudTrail-Digest/") || key.ends_with('/') {
        return Ok(());
    }
    out.push(ObjectRef {
        bucket: bucket.to_owned(),
        key,
    });
    Ok(())
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(
        format!("k={}", s.replace('&', "%26").replace('=', "%3D")).as_bytes(),
    )
    .next()
    .map(|(_, v)| v.into_owned())
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(b: &str, k: &str) -> ObjectRef {
        ObjectRef {
            bucket: b.into(),
            key: k.into(),
        }
    }

    #[test]
    fn every_shape_names_its_objects() {
        let s3 = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"trail"},"object":{"key":"AWSLogs/1/CloudTrail/us-east-1/2026/12/03/a+b%2Bc.json.gz","size":3}}}]}"#;
        assert_eq!(
            parse(s3).unwrap(),
            Notice::Objects(vec![obj(
                "trail",
                "AWSLogs/1/CloudTrail/us-east-1/2026/12/03/a b+c.json.gz"
            )])
        );
        let ct = r#"{"s3Bucket":"org","s3ObjectKey":["AWSLogs/o-1/2/CloudTrail/eu-west-1/2026/12/03/x.json.gz","AWSLogs/o-1/2/CloudTrail-Digest/eu-west-1/2026/12/03/d.json.gz"]}"#;
        assert_eq!(
            parse(ct).unwrap(),
            Notice::Objects(vec![obj(
                "org",
                "AWSLogs/o-1/2/CloudTrail/eu-west-1/2026/12/03/x.json.gz"
            )])
        );
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": ct})
            .to_string();
        assert_eq!(parse(&sns).unwrap(), parse(ct).unwrap());
        let sns_s3 = serde_json::json!({"Type": "Notification", "Message": s3}).to_string();
        assert_eq!(parse(&sns_s3).unwrap(), parse(s3).unwrap());
        let eb = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"bkt"},"object":{"key":"a b.json.gz"}}}"#;
        assert_eq!(
            parse(eb).unwrap(),
            Notice::Objects(vec![obj("bkt", "a b.json.gz")])
        );
        assert_eq!(
            parse(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#).unwrap(),
            Notice::Test
        );
        let removed = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"bkt"},"object":{"key":"k"}}}]}"#;
        assert_eq!(parse(removed).unwrap(), Notice::Objects(vec![]));
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for bad in [
            "not json",
            "[]",
            r#"{"hello":1}"#,
            r#"{"Type":"Notification","Message":"{oops"}"#,
            r#"{"Type":"Notification"}"#,
            r#"{"Records":[{"eventSource":"aws:sns"}]}"#,
            r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{}}]}"#,
            r#"{"s3ObjectKey":["k"]}"#,
            r#"{"s3Bucket":"b","s3ObjectKey":[1]}"#,
            r#"{"s3Bucket":"evil.com/x#","s3ObjectKey":["k"]}"#,
            r#"{"s3Bucket":"Upper","s3ObjectKey":["k"]}"#,
            r#"{"s3Bucket":"bucket","s3ObjectKey":[""]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = serde_json::json!({"Type": "Notification", "Message": serde_json::json!({"Type": "Notification", "Message": serde_json::json!({"Type": "Notification", "Message": "{}"}).to_string()}).to_string()}).to_string();
        assert!(parse(&deep).is_err());
    }
}
