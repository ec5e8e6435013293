//! Request signing for the cloud tag APIs, each checked against a published
//! test vector (tests below):
//!
//! * Alibaba RPC signature V2 (`HMAC-SHA1`): the legacy SDK core's scheme.
//! * Alibaba `ACS3-HMAC-SHA256` (V3): what current Alibaba SDKs send.
//! * AWS Signature Version 4: the Resource Groups Tagging API.
//!
//! Only the arithmetic lives here; the clients choose headers and parameters.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// SHA-256 of the empty body, hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// RFC 3986 percent-encoding with upper-case hex: only `A-Z a-z 0-9 - _ . ~`
/// stay literal (a space is `%20`, `*` is `%2A`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `k=v&…` of the pairs sorted by key, each side percent-encoded once.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut p: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    p.sort();
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Alibaba RPC V2: the string to sign for `method` and every parameter
/// (query and form alike, `Signature` excluded).
pub fn rpc_v2_string_to_sign(method: &str, params: &[(String, String)]) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// Alibaba RPC V2: Base64(HMAC-SHA1(secret + "&", string to sign)).
pub fn rpc_v2_signature(secret: &str, method: &str, params: &[(String, String)]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes())
        .expect("HMAC takes any key length");
    mac.update(rpc_v2_string_to_sign(method, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The canonical request shared by ACS3 and SigV4: method, path, sorted
/// query, the signed headers (names lower-cased, values trimmed, sorted),
/// their `;`-joined names, the payload hash. Returns (request, signed names).
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    payload_sha256: &str,
) -> (String, String) {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    h.sort();
    let signed = h
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut s = format!("{method}\n{path}\n{}\n", canonical_query(query));
    for (k, v) in &h {
        s.push_str(k);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&signed);
    s.push('\n');
    s.push_str(payload_sha256);
    (s, signed)
}

/// Alibaba ACS3-HMAC-SHA256: hex(HMAC-SHA256(secret, "ACS3-HMAC-SHA256\n" +
/// hex(SHA256(canonical request)))). Returns (signed header names, signature).
pub fn acs3_signature(
    secret: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    payload_sha256: &str,
) -> (String, String) {
    let (creq, signed) = canonical_request(method, path, query, headers, payload_sha256);
    let to_sign = format!("ACS3-HMAC-SHA256\n{}", sha256_hex(creq.as_bytes()));
    (
        signed,
        hex::encode(hmac_sha256(secret.as_bytes(), to_sign.as_bytes())),
    )
}

/// The `x-acs-date` / `Timestamp` form: `2024-05-01T08:00:00Z`.
pub fn iso8601(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// The `x-amz-date` form: `20150830T123600Z`.
pub fn amz_date(t: std::time::SystemTime) -> String {
    iso8601(t).replace(['-', ':'], "")
}

fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Inverse of [`iso8601`] (fractions ignored).
pub fn parse_iso8601(s: &str) -> Option<std::time::SystemTime> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).ok()?))
}

/// AWS SigV4 over the given headers (which must include `host` and
/// `x-amz-date`). Returns the `Authorization` header value.
#[allow(clippy::too_many_arguments)]
pub fn sigv4_authorization(
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    payload_sha256: &str,
) -> String {
    let amz_date = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-date"))
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let day = amz_date.get(..8).unwrap_or("");
    let (creq, signed) = canonical_request(method, path, query, headers, payload_sha256);
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(creq.as_bytes())
    );
    let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac_sha256(&key, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
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

    /// events-and-tags.md §2.3 (aliyun-python-sdk-core 2.16.1 output).
    #[test]
    fn rpc_v2_matches_the_sdk_vector() {
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
        ]);
        assert_eq!(
            rpc_v2_signature("testsecret", "POST", &p),
            "yuG9Y94ZvNSb3YHfMNhisOQ2/IU="
        );
    }

    /// events-and-tags.md §2.4.
    #[test]
    fn acs3_matches_the_vector() {
        let q = pairs(&[("RegionId", "cn-hangzhou"), ("ResourceARN.1", ARN)]);
        let h = pairs(&[
            ("host", "tag.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "ListTagResources"),
            ("x-acs-version", "2018-08-28"),
            ("x-acs-date", "2024-05-01T08:00:00Z"),
            ("x-acs-signature-nonce", "d410180a5abf7fe235dd9b74aca91fc0"),
            ("x-acs-content-sha256", EMPTY_SHA256),
        ]);
        let (signed, sig) = acs3_signature("testsecret", "POST", "/", &q, &h, EMPTY_SHA256);
        assert_eq!(
            sig,
            "10d5234385f6592387320a2f873d29c57813673cabbd64316fa87bdc9587008c"
        );
        assert_eq!(
            signed,
            "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        );
    }

    /// The AWS SigV4 test suite (get-vanilla, get-header-key-duplicate).
    #[test]
    fn sigv4_matches_the_aws_test_suite() {
        let sign = |headers: &[(&str, &str)]| {
            sigv4_authorization(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "us-east-1",
                "service",
                "GET",
                "/",
                &[],
                &pairs(headers),
                EMPTY_SHA256,
            )
        };
        assert_eq!(
            sign(&[
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z")
            ]),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert!(sign(&[
            ("host", "example.amazonaws.com"),
            ("my-header1", "value2,value2,value1"),
            ("x-amz-date", "20150830T123600Z"),
        ])
        .ends_with("Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"));
    }

    #[test]
    fn encoding_and_dates() {
        assert_eq!(percent_encode("a b*~/"), "a%20b%2A~%2F");
        assert_eq!(percent_encode("ü"), "%C3%BC");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(iso8601(t), "2015-08-30T12:36:00Z");
        assert_eq!(amz_date(t), "20150830T123600Z");
        assert_eq!(parse_iso8601("2015-08-30T12:36:00Z"), Some(t));
    }
}
