//! Request authentication: signatures v1 (HMAC-SHA1) and v4 (SLS4-HMAC-SHA256),
//! STS tokens, clock skew.
//!
//! Written from the protocol notes (§1.3), independently of Alibaba's signing
//! crate that Trail's client uses, so the two check each other:
//!
//! ```text
//! VERB \n CONTENT-MD5 \n CONTENT-TYPE \n DATE \n
//! x-acs-* and x-log-* headers, lowercased, trimmed, sorted: name:value \n
//! decoded path [ ? sorted k=v pairs, decoded, joined by & ]
//! ```
//!
//! `x-log-date` is left out (Python adds it after signing); if that fails, the
//! check is tried once more with it in. `x-log-meta-*` is left out too.
//!
//! v4 (Python, Go and Java clients; §1.4): a canonical request of method, path,
//! sorted RFC 3986-encoded query, the `content-type`, `host`, `x-log-*` and
//! `x-acs-*` headers and their names, and the body's SHA-256, signed with a key
//! from an HMAC-SHA256 chain over date, region, `sls`, `aliyun_v4_request`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::sls::error::ApiError;

/// SHA-256 of the empty body.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Largest clock difference accepted between the client's Date and ours.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// A key pair devstack accepts; with a token, it is an STS credential and every
/// request must carry exactly that `x-acs-security-token`.
#[derive(Clone)]
pub struct Credential {
    pub secret: String,
    pub security_token: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("secret", &"***")
            .field("sts", &self.security_token.is_some())
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Credentials {
    keys: HashMap<String, Credential>,
}

impl Credentials {
    pub fn add(&mut self, access_key_id: &str, secret: &str, security_token: Option<&str>) {
        self.keys.insert(
            access_key_id.to_owned(),
            Credential {
                secret: secret.to_owned(),
                security_token: security_token.map(str::to_owned),
            },
        );
    }
}

/// The parts of a request the signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// Percent-decoded path.
    pub path: &'a str,
    /// Percent-decoded query pairs.
    pub query: &'a [(String, String)],
    /// Header names lowercased.
    pub headers: &'a [(String, String)],
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The v4 canonical request: method, path, sorted RFC 3986 query, the signed
    /// headers, their names, and the body hash, one per line.
    pub fn canonical_request_v4(&self) -> String {
        let mut s = String::with_capacity(512);
        s.push_str(self.method);
        s.push('\n');
        s.push_str(self.path);
        s.push('\n');
        let mut q: Vec<(&str, String)> = self
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), rfc3986(v)))
            .collect();
        q.sort();
        for (i, (k, v)) in q.iter().enumerate() {
            if i > 0 {
                s.push('&');
            }
            s.push_str(k);
            if !v.is_empty() {
                s.push('=');
                s.push_str(v);
            }
        }
        s.push('\n');
        let mut signed: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter(|(k, _)| {
                k == "content-type"
                    || k == "host"
                    || k.starts_with("x-acs-")
                    || (k.starts_with("x-log-") && !k.starts_with("x-log-meta-"))
            })
            .map(|(k, v)| (k.as_str(), v.trim()))
            .collect();
        signed.sort();
        for (k, v) in &signed {
            s.push_str(k);
            s.push(':');
            s.push_str(v);
            s.push('\n');
        }
        s.push('\n');
        let names: Vec<&str> = signed.iter().map(|(k, _)| *k).collect();
        s.push_str(&names.join(";"));
        s.push('\n');
        s.push_str(self.header("x-log-content-sha256").unwrap_or(EMPTY_SHA256));
        s
    }

    /// The v1 string to sign.
    pub fn string_to_sign(&self, include_x_log_date: bool) -> String {
        let mut s = String::with_capacity(256);
        s.push_str(self.method);
        s.push('\n');
        s.push_str(self.header("content-md5").unwrap_or("").trim());
        s.push('\n');
        s.push_str(self.header("content-type").unwrap_or("").trim());
        s.push('\n');
        s.push_str(self.header("date").unwrap_or("").trim());
        s.push('\n');
        let mut canonical: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-log-") || k.starts_with("x-acs-"))
            .filter(|(k, _)| !k.starts_with("x-log-meta-"))
            .filter(|(k, _)| include_x_log_date || k != "x-log-date")
            .map(|(k, v)| (k.as_str(), v.trim()))
            .collect();
        canonical.sort();
        for (k, v) in canonical {
            s.push_str(k);
            s.push(':');
            s.push_str(v);
            s.push('\n');
        }
        s.push_str(self.path);
        if !self.query.is_empty() {
            let mut q: Vec<&(String, String)> = self.query.iter().collect();
            q.sort();
            s.push('?');
            for (i, (k, v)) in q.into_iter().enumerate() {
                if i > 0 {
                    s.push('&');
                }
                s.push_str(k);
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }
}

pub fn sign(secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a request's signature (v1 or v4), STS token and time. Returns the
/// access key id.
pub fn verify(
    creds: &Credentials,
    req: &SignedRequest<'_>,
    now: SystemTime,
) -> Result<String, ApiError> {
    let auth = req
        .header("authorization")
        .ok_or_else(|| ApiError::new(401, "Unauthorized", "Authorization header is missing"))?;
    if let Some(v4) = auth.strip_prefix("SLS4-HMAC-SHA256 ") {
        return verify_v4(creds, req, v4, now);
    }
    let (ak, signature) = auth
        .strip_prefix("LOG ")
        .and_then(|rest| rest.rsplit_once(':'))
        .ok_or_else(|| {
            ApiError::new(
                401,
                "Unauthorized",
                "Authorization is not 'LOG {AccessKeyId}:{Signature}'",
            )
        })?;
    let cred = check_key_and_token(creds, req, ak)?;

    let date = req
        .header("date")
        .ok_or_else(|| ApiError::bad("InvalidRequestTime", "Date header is missing"))?;
    let sent = httpdate::parse_http_date(date).map_err(|_| {
        ApiError::bad(
            "InvalidRequestTime",
            format!("Date {date:?} is not an RFC 1123 date"),
        )
    })?;
    check_skew(sent, now, date)?;

    let matches =
        |include_date: bool| sign(&cred.secret, &req.string_to_sign(include_date)) == signature;
    if matches(false) || (req.header("x-log-date").is_some() && matches(true)) {
        Ok(ak.to_owned())
    } else {
        tracing::debug!(string_to_sign = %req.string_to_sign(false), "signature mismatch");
        Err(ApiError::new(
            401,
            "SignatureNotMatch",
            format!("Signature {signature} not matched"),
        ))
    }
}

/// The key must be known; an STS key must carry exactly its token, and a
/// long-term key none.
fn check_key_and_token<'c>(
    creds: &'c Credentials,
    req: &SignedRequest<'_>,
    ak: &str,
) -> Result<&'c Credential, ApiError> {
    let cred = creds.keys.get(ak).ok_or_else(|| {
        ApiError::new(
            401,
            "Unauthorized",
            format!("AccessKeyId {ak} is not found"),
        )
    })?;
    match (&cred.security_token, req.header("x-acs-security-token")) {
        (Some(expected), Some(got)) if expected == got => Ok(cred),
        (None, None) => Ok(cred),
        (Some(_), _) => Err(ApiError::new(
            401,
            "Unauthorized",
            "The security token you provided is invalid or expired",
        )),
        (None, Some(_)) => Err(ApiError::new(
            401,
            "Unauthorized",
            "The security token you provided is invalid",
        )),
    }
}

fn check_skew(sent: SystemTime, now: SystemTime, shown: &str) -> Result<(), ApiError> {
    let skew = now
        .duration_since(sent)
        .or_else(|_| sent.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_CLOCK_SKEW {
        return Err(ApiError::bad(
            "RequestTimeExpired",
            format!(
                "Request time {shown} has been expired, the server time differs by {}s",
                skew.as_secs()
            ),
        ));
    }
    Ok(())
}

/// v4: `Credential={AK}/{yyyymmdd}/{region}/sls/aliyun_v4_request,Signature={hex}`.
fn verify_v4(
    creds: &Credentials,
    req: &SignedRequest<'_>,
    auth: &str,
    now: SystemTime,
) -> Result<String, ApiError> {
    let malformed = || {
        ApiError::new(
            401,
            "Unauthorized",
            "Authorization is not 'SLS4-HMAC-SHA256 Credential=...,Signature=...'",
        )
    };
    let mut credential = None;
    let mut signature = None;
    for part in auth.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (credential, signature) = credential.zip(signature).ok_or_else(malformed)?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [ak, date, region, "sls", "aliyun_v4_request"] = scope[..] else {
        return Err(malformed());
    };
    let cred = check_key_and_token(creds, req, ak)?;

    let x_log_date = req.header("x-log-date").ok_or_else(|| {
        ApiError::bad(
            "InvalidRequestTime",
            "x-log-date is required with signature v4",
        )
    })?;
    let sent = parse_v4_date(x_log_date).ok_or_else(|| {
        ApiError::bad(
            "InvalidRequestTime",
            format!("x-log-date {x_log_date:?} is not yyyymmddTHHMMSSZ"),
        )
    })?;
    check_skew(sent, now, x_log_date)?;

    let canonical = req.canonical_request_v4();
    if x_log_date.starts_with(date)
        && sign_v4(&cred.secret, region, x_log_date, &canonical) == signature
    {
        Ok(ak.to_owned())
    } else {
        tracing::debug!(canonical_request = %canonical, "v4 signature mismatch");
        Err(ApiError::new(
            401,
            "SignatureNotMatch",
            format!("Signature {signature} not matched"),
        ))
    }
}

/// `yyyymmddTHHMMSSZ` → time.
fn parse_v4_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(4..6)?, num(6..8)?);
    let secs = days * 86_400 + num(9..11)? * 3600 + num(11..13)? * 60 + num(13..15)?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The v4 signature (hex) of a canonical request.
pub fn sign_v4(secret: &str, region: &str, x_log_date: &str, canonical_request: &str) -> String {
    let date = x_log_date.get(..8).unwrap_or(x_log_date);
    let string_to_sign = format!(
        "SLS4-HMAC-SHA256\n{x_log_date}\n{date}/{region}/sls/aliyun_v4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac256(format!("aliyun_v4{secret}").as_bytes(), date.as_bytes());
    for part in [region, "sls", "aliyun_v4_request"] {
        key = hmac256(&key, part.as_bytes());
    }
    hex::encode(hmac256(&key, string_to_sign.as_bytes()))
}

/// RFC 3986: everything but `A-Z a-z 0-9 - _ . ~` percent-encoded.
fn rfc3986(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn spec_vector_empty_secret() {
        let h = headers(&[
            ("date", "Thu, 01 Jan 1970 00:00:00 GMT"),
            ("x-log-apiversion", "0.6.0"),
            ("x-log-signaturemethod", "hmac-sha1"),
        ]);
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: &[],
            headers: &h,
        };
        assert_eq!(
            sign("", &req.string_to_sign(false)),
            "SApFTtfTFKHmzdEdaMe5TjNn+RQ="
        );
    }

    #[test]
    fn spec_vector_get_cursor_matches_python_sdk() {
        let h = headers(&[
            ("date", "Thu, 01 Jan 1970 00:00:00 GMT"),
            ("x-log-apiversion", "0.6.0"),
            ("x-log-bodyrawsize", "0"),
            ("x-log-signaturemethod", "hmac-sha1"),
            // Added by Python after signing: must be ignored.
            ("x-log-date", "Thu, 01 Jan 1970 00:00:00 GMT"),
            ("user-agent", "log-python-sdk-v-0.9.52"),
        ]);
        let q = vec![
            ("type".to_string(), "cursor".to_string()),
            ("from".to_string(), "begin".to_string()),
        ];
        let req = SignedRequest {
            method: "GET",
            path: "/logstores/ls1/shards/0",
            query: &q,
            headers: &h,
        };
        assert_eq!(
            sign("secret", &req.string_to_sign(false)),
            "bH+nfjUsTIisQqG2u0O3TpIN7/c="
        );
    }

    fn signed(secret: &str, date: &str, token: Option<&str>) -> Vec<(String, String)> {
        let mut h = headers(&[
            ("date", date),
            ("x-log-apiversion", "0.6.0"),
            ("x-log-signaturemethod", "hmac-sha1"),
        ]);
        if let Some(t) = token {
            h.push(("x-acs-security-token".into(), t.into()));
        }
        let sig = sign(
            secret,
            &SignedRequest {
                method: "GET",
                path: "/",
                query: &[],
                headers: &h,
            }
            .string_to_sign(false),
        );
        h.push(("authorization".into(), format!("LOG ak:{sig}")));
        h
    }

    #[test]
    fn verify_checks_key_token_signature_and_clock() {
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let mut creds = Credentials::default();
        creds.add("ak", "sk", None);
        let ok = signed("sk", &date, None);
        let req = |h: &Vec<(String, String)>| {
            verify(
                &creds,
                &SignedRequest {
                    method: "GET",
                    path: "/",
                    query: &[],
                    headers: h,
                },
                now,
            )
        };
        assert_eq!(req(&ok).unwrap(), "ak");
        assert_eq!(
            req(&signed("wrong", &date, None)).unwrap_err().code,
            "SignatureNotMatch"
        );
        let old = httpdate::fmt_http_date(now - Duration::from_secs(16 * 60));
        assert_eq!(
            req(&signed("sk", &old, None)).unwrap_err().code,
            "RequestTimeExpired"
        );
        assert_eq!(
            req(&signed("sk", &date, Some("t"))).unwrap_err().code,
            "Unauthorized"
        );

        creds.add("ak", "sk", Some("sts-token"));
        let req = |h: &Vec<(String, String)>| {
            verify(
                &creds,
                &SignedRequest {
                    method: "GET",
                    path: "/",
                    query: &[],
                    headers: h,
                },
                now,
            )
        };
        assert_eq!(req(&signed("sk", &date, Some("sts-token"))).unwrap(), "ak");
        assert_eq!(
            req(&signed("sk", &date, None)).unwrap_err().code,
            "Unauthorized"
        );
    }

    #[test]
    fn v4_dates_parse() {
        let t = parse_v4_date("20261123T074609Z").unwrap();
        assert_eq!(httpdate::fmt_http_date(t), "Mon, 23 Nov 2026 07:46:09 GMT");
        assert_eq!(
            parse_v4_date("19700101T000000Z"),
            Some(std::time::UNIX_EPOCH)
        );
        assert!(parse_v4_date("2026-11-23T07:46:09Z").is_none());
        assert!(parse_v4_date("20261123T0746").is_none());
    }

    #[test]
    fn v4_query_values_are_rfc3986_encoded_and_empty_values_bare() {
        let h = headers(&[
            ("host", "p.sls.test"),
            ("x-log-date", "20261123T074609Z"),
            ("user-agent", "x"),
        ]);
        let q = vec![
            ("cursor".to_string(), "MTQ0Nw==".to_string()),
            ("consumer".to_string(), String::new()),
        ];
        let req = SignedRequest {
            method: "GET",
            path: "/logstores/ls",
            query: &q,
            headers: &h,
        };
        assert_eq!(
            req.canonical_request_v4(),
            format!("GET\n/logstores/ls\nconsumer&cursor=MTQ0Nw%3D%3D\nhost:p.sls.test\nx-log-date:20261123T074609Z\n\nhost;x-log-date\n{EMPTY_SHA256}")
        );
    }
}
