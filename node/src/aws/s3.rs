//! S3 GetObject, read within a cap.

use std::time::Duration;

use bytes::Bytes;

use super::{AwsCredentials, AwsEndpoint, AwsError, Signed};
use crate::net::sign::percent_encode;

/// Reads a trail's objects.
#[derive(Clone)]
pub struct S3Client {
    signed: Signed,
    /// `/{bucket}/{key}` on the endpoint's host (devstack, S3-compatible
    /// stores) rather than `{bucket}.{host}/{key}` (AWS's default).
    path_style: bool,
}

impl S3Client {
    pub fn new(
        endpoint: AwsEndpoint,
        credentials: AwsCredentials,
        region: &str,
        path_style: bool,
    ) -> Result<S3Client, reqwest::Error> {
        Ok(S3Client {
            signed: Signed::new(
                endpoint,
                credentials,
                region,
                "s3",
                Duration::from_secs(120),
            )?,
            path_style,
        })
    }

    /// The object's bytes; refused past `cap` bytes as soon as the answer
    /// says or shows so.
    pub async fn get_object(&self, bucket: &str, key: &str, cap: usize) -> Result<Bytes, AwsError> {
        const OP: &str = "GetObject";
        let encoded: Vec<String> = key.split('/').map(percent_encode).collect();
        // A dotted bucket cannot be a TLS name under `*.s3…`: path style,
        // as AWS's SDKs do.
        let (host, path) = if self.path_style || bucket.contains('.') {
            (
                self.signed.host().to_owned(),
                format!("/{}/{}", percent_encode(bucket), encoded.join("/")),
            )
        } else {
            (
                format!("{bucket}.{}", self.signed.host()),
                format!("/{}", encoded.join("/")),
            )
        };
        let resp = self
            .signed
            .send(
                OP,
                reqwest::Method::GET,
                &host,
                &path,
                &[],
                vec![],
                Bytes::new(),
                None,
            )
            .await?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = crate::net::http::read_body(resp, 64 << 10)
                .await
                .unwrap_or_default();
            return Err(s3_error(OP, status, &body));
        }
        crate::net::http::read_body(resp, cap)
            .await
            .map_err(|e| match e {
                crate::net::http::BodyError::TooLarge { cap } => AwsError::TooLarge { op: OP, cap },
                crate::net::http::BodyError::Read(source) => AwsError::Http { op: OP, source },
            })
    }
}

/// An S3 error document's `Code` and `Message`.
fn s3_error(op: &'static str, status: u16, body: &[u8]) -> AwsError {
    let text = String::from_utf8_lossy(body);
    let element = |tag: &str| {
        let open = format!("<{tag}>");
        text.find(&open)
            .and_then(|i| {
                let rest = &text[i + open.len()..];
                rest.find(&format!("</{tag}>"))
                    .map(|j| rest[..j].to_owned())
            })
            .unwrap_or_default()
    };
    let code = match element("Code") {
        c if c.is_empty() => status.to_string(),
        c => c,
    };
    AwsError::Status {
        op,
        status,
        code,
        message: element("Message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_give_their_code() {
        let e = s3_error("GetObject", 404, b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>");
        assert_eq!(e.code(), "NoSuchKey");
        assert!(!e.transient());
        let e = s3_error("GetObject", 503, b"");
        assert_eq!(e.code(), "503");
        assert!(e.transient());
    }
}
