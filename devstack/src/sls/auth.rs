//! Request authentication: signature v1 (HMAC-SHA1), STS tokens, clock skew.
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

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::sls::error::ApiError;

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

/// Checks a request's signature, STS token and Date. Returns the access key id.
pub fn verify(
    creds: &Credentials,
    req: &SignedRequest<'_>,
    now: SystemTime,
) -> Result<String, ApiError> {
    let auth = req
        .header("authorization")
        .ok_or_else(|| ApiError::new(401, "Unauthorized", "Authorization header is missing"))?;
    if auth.starts_with("SLS4-HMAC-SHA256") {
        return Err(ApiError::new(
            401,
            "Unauthorized",
            "devstack verifies signature v1 (LOG ...) only; configure the client with auth version 1",
        ));
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
    let cred = creds.keys.get(ak).ok_or_else(|| {
        ApiError::new(
            401,
            "Unauthorized",
            format!("AccessKeyId {ak} is not found"),
        )
    })?;
    let token = req.header("x-acs-security-token");
    match (&cred.security_token, token) {
        (Some(expected), Some(got)) if expected == got => {}
        (Some(_), _) => {
            return Err(ApiError::new(
                401,
                "Unauthorized",
                "The security token you provided is invalid or expired",
            ))
        }
        (None, Some(_)) => {
            return Err(ApiError::new(
                401,
                "Unauthorized",
                "The security token you provided is invalid",
            ))
        }
        (None, None) => {}
    }

    let date = req
        .header("date")
        .ok_or_else(|| ApiError::bad("InvalidRequestTime", "Date header is missing"))?;
    let sent = httpdate::parse_http_date(date).map_err(|_| {
        ApiError::bad(
            "InvalidRequestTime",
            format!("Date {date:?} is not an RFC 1123 date"),
        )
    })?;
    let skew = now
        .duration_since(sent)
        .or_else(|_| sent.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_CLOCK_SKEW {
        return Err(ApiError::bad(
            "RequestTimeExpired",
            format!(
                "Request time {date} has been expired, the server time differs by {}s",
                skew.as_secs()
            ),
        ));
    }

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
}
