//! Signature checks for the cloud APIs, written from the vendors' specs and
//! independent of Trail's signers (`node/src/tags/sign.rs`): Alibaba RPC V2
//! (`Signature` parameter, HMAC-SHA1 with `secret&`), Alibaba
//! `ACS3-HMAC-SHA256` (V3), and AWS SigV4.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// How a request was signed, and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub access_key_id: String,
    /// `SecurityToken` / `x-acs-security-token` / `x-amz-security-token`.
    pub security_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No signature at all.
    Missing,
    /// Malformed Authorization header or parameters.
    Malformed(String),
    /// A signature that does not match; the server's string to sign.
    Mismatch(String),
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn sorted_query(params: &[(String, String)]) -> String {
    // Sorted by key (then value), not by the joined text: `A.1` before `A.10`.
    let mut p: Vec<(String, String)> = params.iter().map(|(k, v)| (enc(k), enc(v))).collect();
    p.sort();
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac256(key: &[u8], msg: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(msg.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Which scheme signed the request (by its Authorization header or
/// `Signature` parameter), and the claimed key.
pub fn claimed(auth: Option<&str>, params: &[(String, String)]) -> Result<Signed, AuthError> {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match auth {
        Some(a) if a.starts_with("ACS3-HMAC-SHA256 ") || a.starts_with("AWS4-HMAC-SHA256 ") => {
            let cred = field(a, "Credential")?;
            let ak = cred.split('/').next().unwrap_or("").to_owned();
            Ok(Signed {
                access_key_id: ak,
                security_token: None,
            })
        }
        Some(a) => Err(AuthError::Malformed(format!(
            "unsupported Authorization scheme {:?}",
            a.split(' ').next().unwrap_or("")
        ))),
        None => match (param("AccessKeyId"), param("Signature")) {
            (Some(ak), Some(_)) => Ok(Signed {
                access_key_id: ak,
                security_token: param("SecurityToken"),
            }),
            _ => Err(AuthError::Missing),
        },
    }
}

fn field<'a>(auth: &'a str, name: &str) -> Result<&'a str, AuthError> {
    auth.split_once(' ')
        .map(|x| x.1)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .ok_or_else(|| AuthError::Malformed(format!("Authorization lacks {name}")))
}

/// RPC V2: every parameter but `Signature`, sorted, encoded twice.
pub fn verify_v2(method: &str, params: &[(String, String)], secret: &str) -> Result<(), AuthError> {
    let given = params
        .iter()
        .find(|(k, _)| k == "Signature")
        .map(|(_, v)| v.as_str())
        .ok_or(AuthError::Missing)?;
    let rest: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .cloned()
        .collect();
    let to_sign = format!("{method}&%2F&{}", enc(&sorted_query(&rest)));
    let mut m = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).expect("any key");
    m.update(to_sign.as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
    if constant_eq(&want, given) {
        Ok(())
    } else {
        Err(AuthError::Mismatch(to_sign))
    }
}

/// The canonical request over the header names the client said it signed.
fn canonical(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    signed: &str,
    payload: &str,
) -> String {
    let mut s = format!("{method}\n{path}\n{}\n", sorted_query(query));
    for name in signed.split(';') {
        let v = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect::<Vec<_>>()
            .join(",");
        s.push_str(&format!("{name}:{v}\n"));
    }
    format!("{s}\n{signed}\n{payload}")
}

/// ACS3-HMAC-SHA256; `body_sha256` is the hex hash of the body received.
pub fn verify_v3(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    auth: &str,
    body_sha256: &str,
    secret: &str,
) -> Result<(), AuthError> {
    let signed = field(auth, "SignedHeaders")?;
    let given = field(auth, "Signature")?;
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let payload = header("x-acs-content-sha256").unwrap_or(body_sha256);
    if payload != body_sha256 {
        return Err(AuthError::Malformed(
            "x-acs-content-sha256 is not the body's hash".into(),
        ));
    }
    let creq = canonical(method, path, query, headers, signed, payload);
    let to_sign = format!(
        "ACS3-HMAC-SHA256\n{}",
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let want = hex::encode(hmac256(secret.as_bytes(), &to_sign));
    if constant_eq(&want, given) {
        Ok(())
    } else {
        Err(AuthError::Mismatch(to_sign))
    }
}

/// AWS SigV4 with the credential scope the client named.
pub fn verify_sigv4(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    auth: &str,
    body_sha256: &str,
    secret: &str,
) -> Result<(), AuthError> {
    let cred = field(auth, "Credential")?;
    let signed = field(auth, "SignedHeaders")?;
    let given = field(auth, "Signature")?;
    let scope: Vec<&str> = cred
        .split_once('/')
        .map(|x| x.1)
        .unwrap_or("")
        .split('/')
        .collect();
    let [day, region, service, "aws4_request"] = scope[..] else {
        return Err(AuthError::Malformed(format!("credential scope {cred:?}")));
    };
    let date = headers
        .iter()
        .find(|(k, _)| k == "x-amz-date")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| AuthError::Malformed("no x-amz-date".into()))?;
    let creq = canonical(method, path, query, headers, signed, body_sha256);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{day}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let mut key = hmac256(format!("AWS4{secret}").as_bytes(), day);
    for p in [region, service, "aws4_request"] {
        key = hmac256(&key, p);
    }
    let want = hex::encode(hmac256(&key, &to_sign));
    if constant_eq(&want, given) {
        Ok(())
    } else {
        Err(AuthError::Mismatch(to_sign))
    }
}

/// Signs a request with SigV4 (devstack's own clients: the generator's
/// uploads). `headers` must hold `host` and `x-amz-date`; every header
/// given is signed. The `Authorization` value.
#[allow(clippy::too_many_arguments)]
pub fn sign_sigv4(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    payload: &str,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
) -> String {
    let mut names: Vec<String> = headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let signed = names.join(";");
    let date = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-date"))
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let day = &date[..date.len().min(8)];
    let creq = canonical(method, path, query, headers, &signed, payload);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{day}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let mut key = hmac256(format!("AWS4{secret}").as_bytes(), day);
    for p in [region, service, "aws4_request"] {
        key = hmac256(&key, p);
    }
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{day}/{region}/{service}/aws4_request, SignedHeaders={signed}, Signature={}",
        hex::encode(hmac256(&key, &to_sign))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
    const ARN: &str = "arn:acs:ecs:cn-hangzhou:1234567890123456:instance/i-bp1example0001";
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn v2_vector() {
        let p = pairs(&[
            ("AccessKeyId", "testid"),
            ("Action", "ListTagResources"),
            ("Format", "JSON"),
            ("PageSize", "50"),
            ("RegionId", "cn-hangzhou"),
            ("ResourceARN.1", ARN),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2018-08-28"),
            ("Signature", "yuG9Y94ZvNSb3YHfMNhisOQ2/IU="),
        ]);
        verify_v2("POST", &p, "testsecret").unwrap();
        assert!(matches!(
            verify_v2("POST", &p, "other"),
            Err(AuthError::Mismatch(_))
        ));
    }

    #[test]
    fn v3_vector() {
        let h = pairs(&[
            ("host", "tag.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "ListTagResources"),
            ("x-acs-version", "2018-08-28"),
            ("x-acs-date", "2024-05-01T08:00:00Z"),
            ("x-acs-signature-nonce", "d410180a5abf7fe235dd9b74aca91fc0"),
            ("x-acs-content-sha256", EMPTY),
        ]);
        let q = pairs(&[("RegionId", "cn-hangzhou"), ("ResourceARN.1", ARN)]);
        let auth = "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=10d5234385f6592387320a2f873d29c57813673cabbd64316fa87bdc9587008c";
        verify_v3("POST", "/", &q, &h, auth, EMPTY, "testsecret").unwrap();
        assert_eq!(claimed(Some(auth), &[]).unwrap().access_key_id, "testid");
        assert!(verify_v3("POST", "/", &q[..1], &h, auth, EMPTY, "testsecret").is_err());
    }

    #[test]
    fn sigv4_vector() {
        let h = pairs(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ]);
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        verify_sigv4(
            "GET",
            "/",
            &[],
            &h,
            auth,
            EMPTY,
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
        .unwrap();
        // The signer and the check agree.
        let a = sign_sigv4(
            "GET",
            "/",
            &[],
            &h,
            EMPTY,
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            "service",
        );
        assert_eq!(a, auth);
    }
}
