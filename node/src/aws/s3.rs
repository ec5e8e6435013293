//! S3 GetObject (read within a cap) and ListObjectsV2.

use std::io::Read as _;
use std::time::Duration;

use bytes::Bytes;

use super::xml::{element, elements, unescape};
use super::{AwsEndpoint, AwsError, CredentialsProvider, Signed};
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
    /// `credentials`: fixed keys (`AwsCredentials`) or a
    /// [`CredentialsProvider`], asked before every request.
    pub fn new(
        endpoint: AwsEndpoint,
        credentials: impl Into<CredentialsProvider>,
        region: &str,
        path_style: bool,
    ) -> Result<S3Client, reqwest::Error> {
        Ok(S3Client {
            signed: Signed::new(
                endpoint,
                Some(credentials.into()),
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
        let (host, path) = self.locate(bucket, key);
        let sent = self
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
        let resp = sent.response;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = crate::net::http::read_body(resp, 64 << 10)
                .await
                .unwrap_or_default();
            return Err(self.signed.judge(
                sent.signer.as_ref(),
                super::xml::error_document(OP, status, &body),
            ));
        }
        crate::net::http::read_body(resp, cap)
            .await
            .map_err(|e| match e {
                crate::net::http::BodyError::TooLarge { cap } => AwsError::TooLarge { op: OP, cap },
                crate::net::http::BodyError::Read(source) => AwsError::Http { op: OP, source },
            })
    }
}

impl S3Client {
    /// The host and path of `key` in `bucket` (`key` empty: the bucket).
    fn locate(&self, bucket: &str, key: &str) -> (String, String) {
        let encoded: Vec<String> = key.split('/').map(percent_encode).collect();
        // A dotted bucket cannot be a TLS name under `*.s3…`: path style,
        // as AWS's SDKs do.
        if self.path_style || bucket.contains('.') {
            let bucket = percent_encode(bucket);
            let path = match key {
                "" => format!("/{bucket}"),
                _ => format!("/{bucket}/{}", encoded.join("/")),
            };
            (self.signed.host().to_owned(), path)
        } else {
            (
                format!("{bucket}.{}", self.signed.host()),
                format!("/{}", encoded.join("/")),
            )
        }
    }

    /// One page of ListObjectsV2 under `prefix`, keys after `start_after`
    /// (or where `token`, the last page's continuation, left off); with a
    /// `delimiter`, what lies below it rolls up into common prefixes.
    pub async fn list_objects(
        &self,
        bucket: &str,
        list: &ListObjects<'_>,
    ) -> Result<ListPage, AwsError> {
        const OP: &str = "ListObjectsV2";
        let (host, path) = self.locate(bucket, "");
        let mut query: Vec<(String, String)> = vec![
            ("list-type".into(), "2".into()),
            ("prefix".into(), list.prefix.into()),
            ("max-keys".into(), list.max_keys.to_string()),
        ];
        if let Some(d) = list.delimiter {
            query.push(("delimiter".into(), d.into()));
        }
        if let Some(a) = list.start_after.filter(|a| !a.is_empty()) {
            query.push(("start-after".into(), a.into()));
        }
        if let Some(t) = list.token {
            query.push(("continuation-token".into(), t.into()));
        }
        let sent = self
            .signed
            .send(
                OP,
                reqwest::Method::GET,
                &host,
                &path,
                &query,
                vec![],
                Bytes::new(),
                None,
            )
            .await?;
        let resp = sent.response;
        let status = resp.status().as_u16();
        // A page of 1,000 keys is ~350 KB of XML.
        let body = crate::net::http::read_body(resp, 16 << 20)
            .await
            .map_err(|e| match e {
                crate::net::http::BodyError::TooLarge { cap } => AwsError::TooLarge { op: OP, cap },
                crate::net::http::BodyError::Read(source) => AwsError::Http { op: OP, source },
            })?;
        if status != 200 {
            return Err(self.signed.judge(
                sent.signer.as_ref(),
                super::xml::error_document(OP, status, &body),
            ));
        }
        ListPage::parse(&body).map_err(|reason| AwsError::Status {
            op: OP,
            status,
            code: "MalformedListing".into(),
            message: reason,
        })
    }
}

/// What a ListObjectsV2 asks for.
#[derive(Debug, Clone, Copy)]
pub struct ListObjects<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub start_after: Option<&'a str>,
    pub token: Option<&'a str>,
    pub max_keys: u32,
}

impl<'a> ListObjects<'a> {
    pub fn under(prefix: &'a str) -> Self {
        ListObjects {
            prefix,
            delimiter: None,
            start_after: None,
            token: None,
            max_keys: 1000,
        }
    }
}

/// An object a listing names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
}

/// One ListObjectsV2 page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// In key order.
    pub objects: Vec<ListedObject>,
    pub prefixes: Vec<String>,
    /// Set when the listing goes on.
    pub next_token: Option<String>,
}

impl ListPage {
    /// Reads the `ListBucketResult` document: the elements Trail needs,
    /// entities decoded, anything else ignored.
    fn parse(body: &[u8]) -> Result<ListPage, String> {
        let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
        if !text.contains("<ListBucketResult") {
            return Err("no ListBucketResult element".into());
        }
        let mut page = ListPage::default();
        for c in elements(text, "Contents") {
            let key = element(c, "Key").ok_or("a Contents without a Key")?;
            let size = element(c, "Size")
                .map(|s| s.parse().map_err(|_| format!("Size {s:?}")))
                .transpose()?
                .unwrap_or(0);
            page.objects.push(ListedObject {
                key: unescape(key)?,
                size,
            });
        }
        for p in elements(text, "CommonPrefixes") {
            let prefix = element(p, "Prefix").ok_or("CommonPrefixes without a Prefix")?;
            page.prefixes.push(unescape(prefix)?);
        }
        // `IsTruncated` outside the Contents: the last one in the document
        // is the result's own (keys are in Contents, never bare).
        let truncated = top_level(text, "IsTruncated") == Some("true");
        if truncated {
            let t = top_level(text, "NextContinuationToken")
                .ok_or("IsTruncated without a NextContinuationToken")?;
            page.next_token = Some(unescape(t)?);
        }
        Ok(page)
    }
}

/// `<tag>` of the result itself, outside `Contents` and `CommonPrefixes`.
fn top_level<'t>(text: &'t str, tag: &str) -> Option<&'t str> {
    let mut outer = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = ["<Contents>", "<CommonPrefixes>"]
            .iter()
            .filter_map(|o| rest.find(o).map(|i| (i, *o)))
            .min();
        match next {
            Some((i, o)) => {
                outer.push_str(&rest[..i]);
                let close = o.replacen('<', "</", 1);
                match rest[i..].find(&close) {
                    Some(j) => rest = &rest[i + j + close.len()..],
                    None => break,
                }
            }
            None => {
                outer.push_str(rest);
                break;
            }
        }
    }
    let found = element(&outer, tag)?;
    // Borrow from `text`: the same bytes are there.
    text.find(&format!("<{tag}>{found}</{tag}>"))
        .map(|i| &text[i + tag.len() + 2..i + tag.len() + 2 + found.len()])
}

/// An object's JSON: gunzip'd (one or more gzip members) when it starts
/// with gzip's magic, as is when it starts as JSON; never more than `cap`
/// bytes decompressed.
pub fn decode_object(body: &Bytes, cap: usize) -> Result<Bytes, (&'static str, String)> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity((body.len() * 8).min(cap));
        let mut d = flate2::read::MultiGzDecoder::new(&body[..]).take(cap as u64 + 1);
        d.read_to_end(&mut out)
            .map_err(|e| ("undecodable_object", format!("gzip: {e}")))?;
        if out.len() > cap {
            return Err((
                "oversize",
                format!("decompresses past max_envelope_bytes ({cap})"),
            ));
        }
        return Ok(Bytes::from(out));
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(b'[') if body.len() <= cap => Ok(body.clone()),
        Some(b'{') | Some(b'[') => Err((
            "oversize",
            format!("larger than max_envelope_bytes ({cap})"),
        )),
        _ => Err(("undecodable_object", "neither gzip nor JSON".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_pages_give_keys_prefixes_and_the_token() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>AWSLogs/</Prefix>
<KeyCount>3</KeyCount><MaxKeys>3</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>AWSLogs/a&amp;b.json.gz</Key><LastModified>2026-12-04T00:00:00.000Z</LastModified><Size>12</Size></Contents>
<Contents><Key>AWSLogs/&#x4e2d;.gz</Key><Size>3</Size></Contents>
<CommonPrefixes><Prefix>AWSLogs/111122223333/</Prefix></CommonPrefixes>
<NextContinuationToken>dG9r&amp;</NextContinuationToken></ListBucketResult>"#;
        let p = ListPage::parse(doc).unwrap();
        assert_eq!(
            p.objects,
            vec![
                ListedObject {
                    key: "AWSLogs/a&b.json.gz".into(),
                    size: 12
                },
                ListedObject {
                    key: "AWSLogs/中.gz".into(),
                    size: 3
                }
            ]
        );
        assert_eq!(p.prefixes, vec!["AWSLogs/111122223333/".to_owned()]);
        assert_eq!(p.next_token.as_deref(), Some("dG9r&"));
        let last = br#"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key></Contents></ListBucketResult>"#;
        assert_eq!(ListPage::parse(last).unwrap().next_token, None);
        assert!(ListPage::parse(b"<Error/>").is_err());
        assert!(ListPage::parse(
            b"<ListBucketResult><Contents><Key>a&bogus;</Key></Contents></ListBucketResult>"
        )
        .is_err());
        assert!(ListPage::parse(
            b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"
        )
        .is_err());
    }

    #[test]
    fn error_documents_give_their_code() {
        let e = crate::aws::xml::error_document("GetObject", 404, b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>");
        assert_eq!(e.code(), "NoSuchKey");
        assert!(!e.transient());
        let e = crate::aws::xml::error_document("GetObject", 503, b"");
        assert_eq!(e.code(), "503");
        assert!(e.transient());
    }

    fn gz(b: &[u8]) -> Bytes {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn objects_decode_within_the_cap_or_say_why_not() {
        let json = br#"{"Records":[]}"#;
        assert_eq!(&decode_object(&gz(json), 100).unwrap()[..], json);
        assert_eq!(
            &decode_object(&Bytes::from_static(json), 100).unwrap()[..],
            json
        );
        // Two gzip members concatenated are one stream.
        let mut two = gz(b"{\"Records\":").to_vec();
        two.extend_from_slice(&gz(b"[]}"));
        assert_eq!(&decode_object(&Bytes::from(two), 100).unwrap()[..], json);
        assert_eq!(
            decode_object(&gz(&[b' '; 1000]), 100).unwrap_err().0,
            "oversize"
        );
        let mut cut = gz(json).to_vec();
        cut.truncate(cut.len() - 6);
        assert_eq!(
            decode_object(&Bytes::from(cut), 100).unwrap_err().0,
            "undecodable_object"
        );
        assert_eq!(
            decode_object(&Bytes::from_static(b"PK\x03\x04zip"), 100)
                .unwrap_err()
                .0,
            "undecodable_object"
        );
        assert_eq!(
            decode_object(&Bytes::from_static(b"\x1f\x8bnot gzip"), 100)
                .unwrap_err()
                .0,
            "undecodable_object"
        );
    }
}
