//! AWS STS as a reader of another account's bucket and queue uses it, in
//! the Query protocol (form-encoded POST, XML answers) botocore speaks:
//!
//! - `AssumeRole`: SigV4-signed (service `sts`) by the access key or a
//!   live session; the role must be configured (`--role ARN[:EXTERNAL_ID]`),
//!   and a role with an external id requires exactly it. Anything else is
//!   `AccessDenied`, as real STS answers it (it does not say whether the role
//!   exists).
//! - `AssumeRoleWithWebIdentity`: unsigned; the token must be the one
//!   configured (`--web-identity-token`).
//! - `GetCallerIdentity`: who signed.
//!
//! Sessions hand out `ASIA…` keys with a secret and a session token; S3,
//! SQS and STS accept them while they last, and only with their token in
//! `X-Amz-Security-Token`. The container credentials endpoint
//! (`GET /_devstack/container-credentials`, `Authorization` = the
//! configured token) hands out sessions in ECS's JSON shape.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use parking_lot::Mutex;
use serde_json::json;
use sha2::Digest;

use super::s3::xml;
use super::{AwsState, Call, Reply};
use crate::http::json_response;

const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
const VERSION: &str = "2011-06-15";

/// A role sessions may be had of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Role {
    pub arn: String,
    pub account: String,
    pub name: String,
    /// What the role's trust policy requires as `sts:ExternalId`.
    pub external_id: Option<String>,
}

/// `ARN[:EXTERNAL_ID]`; the ARN is `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`.
pub(crate) fn parse_role(s: &str) -> Result<Role, String> {
    let bad = || format!("--role {s:?}: expected arn:aws:iam::ACCOUNT:role/NAME[:EXTERNAL_ID]");
    let i = s.find(":role/").ok_or_else(bad)?;
    let (arn, external_id) = match s[i + 6..].find(':') {
        Some(j) => (&s[..i + 6 + j], Some(s[i + 7 + j..].to_owned())),
        None => (s, None),
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, "iam", "", account, resource] = parts[..] else {
        return Err(bad());
    };
    let name = resource
        .strip_prefix("role/")
        .and_then(|r| r.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .ok_or_else(bad)?;
    if !arn.starts_with("arn:")
        || !partition.starts_with("aws")
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || external_id
            .as_deref()
            .is_some_and(|x| !valid_external_id(x))
    {
        return Err(bad());
    }
    Ok(Role {
        arn: arn.to_owned(),
        account: account.to_owned(),
        name: name.to_owned(),
        external_id,
    })
}

fn valid_external_id(x: &str) -> bool {
    (2..=1224).contains(&x.len())
        && x.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b))
}

fn valid_session_name(x: &str) -> bool {
    (2..=64).contains(&x.len())
        && x.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// A session handed out by AssumeRole, AssumeRoleWithWebIdentity or the
/// container endpoint.
struct Session {
    secret: String,
    token: String,
    role_arn: String,
    session_name: String,
    expires: SystemTime,
    /// Made with another session's credentials (AWS caps those at an hour).
    chained: bool,
}

/// Live sessions by access key id.
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    issued: AtomicU64,
}

impl Sessions {
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    pub fn live(&self) -> usize {
        let now = SystemTime::now();
        self.live
            .lock()
            .values()
            .filter(|s| s.expires > now)
            .count()
    }
}

/// Who signed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// The configured access key.
    Key,
    /// A role session.
    Session {
        role_arn: String,
        session_name: String,
        chained: bool,
    },
}

type Refusal = (u16, &'static str, String);

/// The secret that verifies `access_key_id`'s signature, and who that is.
/// A session key needs its own token; the configured key takes none. The
/// codes are each service's own.
pub(crate) fn credential(
    state: &AwsState,
    access_key_id: &str,
    token: Option<&str>,
    service: &str,
) -> Result<(String, Principal), Refusal> {
    let bad_token = || match service {
        "s3" => (
            400,
            "InvalidToken",
            "The provided token is malformed or otherwise invalid.".to_owned(),
        ),
        _ => (
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.".to_owned(),
        ),
    };
    if access_key_id == state.config.access_key_id {
        if token.is_some() {
            return Err(bad_token());
        }
        return Ok((state.config.secret_access_key.clone(), Principal::Key));
    }
    let sessions = state.sts.live.lock();
    let Some(s) = sessions.get(access_key_id) else {
        return Err(match service {
            "sts" => (
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.".to_owned(),
            ),
            _ => (
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.".to_owned(),
            ),
        });
    };
    if token != Some(s.token.as_str()) {
        return Err(bad_token());
    }
    if SystemTime::now() >= s.expires {
        return Err(match service {
            "s3" => (
                400,
                "ExpiredToken",
                "The provided token has expired.".to_owned(),
            ),
            "sqs" => (
                403,
                "ExpiredToken",
                "The security token included in the request is expired".to_owned(),
            ),
            _ => (
                400,
                "ExpiredToken",
                "The security token included in the request is expired".to_owned(),
            ),
        });
    }
    Ok((
        s.secret.clone(),
        Principal::Session {
            role_arn: s.role_arn.clone(),
            session_name: s.session_name.clone(),
            chained: s.chained,
        },
    ))
}

/// The Query protocol's parameters: the query string and a form body.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(call: &Call) -> Params {
        let mut p = call.query.clone();
        let form = call
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if form {
            p.extend(url::form_urlencoded::parse(&call.body).into_owned());
        }
        Params(p)
    }

    /// A parameter given and not empty.
    fn get(&self, k: &str) -> Option<&str> {
        self.given(k).filter(|v| !v.is_empty())
    }

    /// A parameter as given, empty or not.
    fn given(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// The STS action a request asks for, if it is an STS request: `Action`
/// in a form-encoded POST (or the query) to `/`.
pub(crate) fn action(call: &Call) -> Option<String> {
    if call.raw_path != "/" || !matches!(call.method.as_str(), "POST" | "GET") {
        return None;
    }
    Params::of(call).get("Action").map(str::to_owned)
}

pub(crate) fn dispatch(state: &AwsState, action: &str, call: &Call) -> Reply {
    let p = Params::of(call);
    match p.get("Version") {
        Some(VERSION) => {}
        v => {
            return error(
                400,
                "InvalidAction",
                &format!(
                    "Could not find operation {action} for version {}",
                    v.unwrap_or("NO_VERSION_SPECIFIED")
                ),
            )
        }
    }
    let signed = |state: &AwsState| {
        let hash = hex::encode(sha2::Sha256::digest(&call.body));
        state
            .authenticate(call, &hash, "sts")
            .map_err(|(status, code, message)| error(status, code, &message))
    };
    match action {
        "AssumeRole" => match signed(state) {
            Ok(principal) => assume_role(state, &principal, &p),
            Err(r) => r,
        },
        "GetCallerIdentity" => match signed(state) {
            Ok(principal) => caller_identity(state, &principal),
            Err(r) => r,
        },
        "AssumeRoleWithWebIdentity" => web_identity(state, &p),
        _ => error(
            400,
            "InvalidAction",
            &format!("Could not find operation {action} for version {VERSION}"),
        ),
    }
}

/// An STS error document.
pub(crate) fn error(status: u16, code: &str, message: &str) -> Reply {
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    let body = format!(
        "<ErrorResponse xmlns=\"{NS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        xml(code),
        xml(message),
        request_id()
    );
    let mut r = Reply::new(status, body).header("content-type", "text/xml");
    r.code = code.to_owned();
    r
}

fn answer(action: &str, result: &str) -> Reply {
    let body = format!(
        "<{action}Response xmlns=\"{NS}\">\n  <{action}Result>\n{result}  </{action}Result>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n",
        request_id()
    );
    Reply::new(200, body).header("content-type", "text/xml")
}

fn validation(message: &str) -> Reply {
    error(400, "ValidationError", message)
}

/// `DurationSeconds`: 900 up to `max` (3600 when absent).
fn duration(p: &Params, max: u64) -> Result<u64, Reply> {
    match p.get("DurationSeconds").map(str::parse::<u64>) {
        None => Ok(3600.min(max)),
        Some(Ok(d)) if d < 900 => Err(validation(&format!(
            "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
        ))),
        Some(Ok(d)) if d > max => Err(validation(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )),
        Some(Ok(d)) => Ok(d),
        Some(Err(_)) => Err(validation("DurationSeconds must be a number")),
    }
}

fn session_name(p: &Params) -> Result<String, Reply> {
    match p.get("RoleSessionName") {
        None => Err(validation(
            "1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null",
        )),
        Some(n) if !valid_session_name(n) => Err(validation(&format!(
            "1 validation error detected: Value '{}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            n
        ))),
        Some(n) => Ok(n.to_owned()),
    }
}

fn assume_role(state: &AwsState, principal: &Principal, p: &Params) -> Reply {
    let Some(role_arn) = p.get("RoleArn") else {
        return validation(
            "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null",
        );
    };
    let name = match session_name(p) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let chained = matches!(principal, Principal::Session { .. });
    let secs = match duration(p, state.config.max_session_secs) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if chained && secs > 3600 {
        return validation(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        );
    }
    // Given empty is not absent: STS holds it to its minimum length.
    let external_id = p.given("ExternalId");
    if let Some(x) = external_id.filter(|x| x.len() < 2) {
        return validation(&format!(
            "1 validation error detected: Value '{x}' at 'externalId' failed to satisfy constraint: Member must have length greater than or equal to 2"
        ));
    }
    if external_id.is_some_and(|x| !valid_external_id(x)) {
        return validation(
            "1 validation error detected: Value at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:/-]*",
        );
    }
    let caller = caller_arn(state, principal);
    // Unknown role or unmet trust: the same answer, as STS gives it.
    let role = state.roles.iter().find(|r| r.arn == role_arn);
    let trusted = role.filter(|r| match &r.external_id {
        Some(want) => external_id == Some(want.as_str()),
        None => true,
    });
    let Some(role) = trusted else {
        return error(
            403,
            "AccessDenied",
            &format!("User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"),
        );
    };
    let s = issue(state, role, &name, secs, chained);
    answer(
        "AssumeRole",
        &format!(
            "    <AssumedRoleUser>\n      <Arn>{}</Arn>\n      <AssumedRoleId>{}:{}</AssumedRoleId>\n    </AssumedRoleUser>\n{}",
            xml(&assumed_arn(role, &name)),
            role_id(&role.arn),
            xml(&name),
            s.xml()
        ),
    )
}

fn web_identity(state: &AwsState, p: &Params) -> Reply {
    let Some(role_arn) = p.get("RoleArn") else {
        return validation(
            "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null",
        );
    };
    let name = match session_name(p) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let secs = match duration(p, state.config.max_session_secs) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let token = p.get("WebIdentityToken").unwrap_or("");
    if state.config.web_identity_token.as_deref() != Some(token) || token.is_empty() {
        return error(
            400,
            "InvalidIdentityToken",
            "The web identity token that was passed could not be validated by AWS. Get a new identity token from the identity provider and then retry the request.",
        );
    }
    let Some(role) = state.roles.iter().find(|r| r.arn == role_arn) else {
        return error(
            403,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        );
    };
    let s = issue(state, role, &name, secs, false);
    answer(
        "AssumeRoleWithWebIdentity",
        &format!(
            "    <SubjectFromWebIdentityToken>system:serviceaccount:trail:trail</SubjectFromWebIdentityToken>\n    <Audience>sts.amazonaws.com</Audience>\n    <Provider>oidc.devstack.local</Provider>\n    <AssumedRoleUser>\n      <Arn>{}</Arn>\n      <AssumedRoleId>{}:{}</AssumedRoleId>\n    </AssumedRoleUser>\n{}",
            xml(&assumed_arn(role, &name)),
            role_id(&role.arn),
            xml(&name),
            s.xml()
        ),
    )
}

fn caller_identity(state: &AwsState, principal: &Principal) -> Reply {
    let (user_id, account) = match principal {
        Principal::Key => (
            format!("AIDA{}", &role_id(&state.config.access_key_id)[4..]),
            state.config.account.clone(),
        ),
        Principal::Session {
            role_arn,
            session_name,
            ..
        } => (
            format!("{}:{session_name}", role_id(role_arn)),
            role_arn.split(':').nth(4).unwrap_or_default().to_owned(),
        ),
    };
    answer(
        "GetCallerIdentity",
        &format!(
            "    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{account}</Account>\n",
            xml(&caller_arn(state, principal)),
            xml(&user_id)
        ),
    )
}

fn caller_arn(state: &AwsState, principal: &Principal) -> String {
    match principal {
        Principal::Key => format!("arn:aws:iam::{}:user/devstack", state.config.account),
        Principal::Session {
            role_arn,
            session_name,
            ..
        } => {
            let account = role_arn.split(':').nth(4).unwrap_or_default();
            let name = role_arn.rsplit('/').next().unwrap_or_default();
            format!("arn:aws:sts::{account}:assumed-role/{name}/{session_name}")
        }
    }
}

fn assumed_arn(role: &Role, session: &str) -> String {
    format!(
        "arn:aws:sts::{}:assumed-role/{}/{session}",
        role.account, role.name
    )
}

/// A stable `AROA…` id for a role (from its ARN).
fn role_id(arn: &str) -> String {
    let h = sha2::Sha256::digest(arn.as_bytes());
    let id: String = h
        .iter()
        .take(17)
        .map(|b| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[(*b % 32) as usize]))
        .collect();
    format!("AROA{id}")
}

/// Credentials just issued.
struct Issued {
    access_key_id: String,
    secret: String,
    token: String,
    expires: SystemTime,
}

impl Issued {
    fn expiration(&self) -> String {
        let secs = self
            .expires
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        crate::gen::iso(secs)
    }

    fn xml(&self) -> String {
        format!(
            "    <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n",
            self.access_key_id,
            xml(&self.secret),
            xml(&self.token),
            self.expiration()
        )
    }
}

fn issue(state: &AwsState, role: &Role, session_name: &str, secs: u64, chained: bool) -> Issued {
    let mut rng = fastrand::Rng::new();
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pick = |rng: &mut fastrand::Rng, set: &[u8], n: usize| -> String {
        (0..n)
            .map(|_| char::from(set[rng.usize(..set.len())]))
            .collect()
    };
    let issued = Issued {
        access_key_id: format!("ASIA{}", pick(&mut rng, UPPER, 16)),
        secret: pick(&mut rng, B64, 40),
        token: format!("IQoJb3JpZ2luX2Vj{}=", pick(&mut rng, B64, 300)),
        expires: SystemTime::now() + Duration::from_secs(secs),
    };
    let mut live = state.sts.live.lock();
    let now = SystemTime::now();
    live.retain(|_, s| s.expires > now);
    live.insert(
        issued.access_key_id.clone(),
        Session {
            secret: issued.secret.clone(),
            token: issued.token.clone(),
            role_arn: role.arn.clone(),
            session_name: session_name.to_owned(),
            expires: issued.expires,
            chained,
        },
    );
    state.sts.issued.fetch_add(1, Ordering::Relaxed);
    issued
}

/// `GET /_devstack/container-credentials`: what ECS's agent (or EKS Pod
/// Identity's) answers a task, to a request carrying the configured
/// token in `Authorization`. The answer's stats code.
pub(crate) fn container_credentials(
    state: &AwsState,
    method: &http::Method,
    headers: &http::HeaderMap,
) -> (http::Response<Full<Bytes>>, &'static str) {
    let Some(want) = &state.config.container_token else {
        return (
            json_response(
                404,
                &json!({"code": "NotFound", "message": "container credentials are off (start with --container-token)"}),
            ),
            "NotFound",
        );
    };
    if method != http::Method::GET {
        return (
            json_response(
                405,
                &json!({"code": "MethodNotAllowed", "message": "GET only"}),
            ),
            "MethodNotAllowed",
        );
    }
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given != want {
        return (
            json_response(
                401,
                &json!({"code": "AccessDenied", "message": "the Authorization header is not the container's token"}),
            ),
            "AccessDenied",
        );
    }
    let role = match &state.config.container_role {
        Some(arn) => state
            .roles
            .iter()
            .find(|r| &r.arn == arn)
            .cloned()
            .or_else(|| parse_role(arn).ok()),
        None => state.roles.first().cloned(),
    }
    .unwrap_or_else(|| Role {
        arn: format!("arn:aws:iam::{}:role/devstack-task", state.config.account),
        account: state.config.account.clone(),
        name: "devstack-task".into(),
        external_id: None,
    });
    let session = format!("devstack-task-{}", fastrand::u32(..));
    let s = issue(
        state,
        &role,
        &session,
        state.config.container_session_secs,
        false,
    );
    (
        json_response(
            200,
            &json!({
                "AccessKeyId": s.access_key_id,
                "SecretAccessKey": s.secret,
                "Token": s.token,
                "Expiration": s.expiration(),
                "RoleArn": role.arn,
            }),
        ),
        "200",
    )
}

fn request_id() -> String {
    let mut r = fastrand::Rng::new();
    let hex = |r: &mut fastrand::Rng, n: usize| -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[r.usize(..16)]))
            .collect()
    };
    format!(
        "{}-{}-{}-{}-{}",
        hex(&mut r, 8),
        hex(&mut r, 4),
        hex(&mut r, 4),
        hex(&mut r, 4),
        hex(&mut r, 12)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_with_and_without_an_external_id() {
        let r = parse_role("arn:aws:iam::210987654321:role/path/reader:ext:with/colons").unwrap();
        assert_eq!(r.arn, "arn:aws:iam::210987654321:role/path/reader");
        assert_eq!(r.name, "reader");
        assert_eq!(r.account, "210987654321");
        assert_eq!(r.external_id.as_deref(), Some("ext:with/colons"));
        let r = parse_role("arn:aws-cn:iam::210987654321:role/reader").unwrap();
        assert_eq!(r.external_id, None);
        for bad in [
            "reader",
            "arn:aws:iam::2109876543:role/reader",
            "arn:aws:s3::210987654321:role/reader",
            "arn:aws:iam::210987654321:user/reader",
            "arn:aws:iam::210987654321:role/reader:x",
            "arn:aws:iam::210987654321:role/",
        ] {
            assert!(parse_role(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_empty_external_id_is_a_validation_error_not_none() {
        let mut c = super::super::S3Config::on("127.0.0.1:0".parse().unwrap());
        c.roles = vec![
            "arn:aws:iam::210987654321:role/reader:ext-1234".into(),
            "arn:aws:iam::210987654321:role/open".into(),
        ];
        let server = super::super::S3Server::start(c).await.unwrap();
        let ask = |role: &str, external_id: Option<&str>| {
            let mut p = vec![
                ("RoleArn".to_owned(), role.to_owned()),
                ("RoleSessionName".to_owned(), "t".repeat(2)),
            ];
            if let Some(x) = external_id {
                p.push(("ExternalId".to_owned(), x.to_owned()));
            }
            assume_role(&server.state, &Principal::Key, &Params(p))
        };
        for role in ["reader:ext-1234", "open"] {
            let arn = format!(
                "arn:aws:iam::210987654321:role/{}",
                role.split(':').next().unwrap()
            );
            for x in ["", "x"] {
                let r = ask(&arn, Some(x));
                assert_eq!(
                    (r.status, r.code.as_str()),
                    (400, "ValidationError"),
                    "{role} {x:?}"
                );
                let body = String::from_utf8_lossy(&r.body).into_owned();
                assert!(body.contains("length greater than or equal to 2"), "{body}");
            }
        }
        // Absent: no external id, which the open role takes.
        assert_eq!(ask("arn:aws:iam::210987654321:role/open", None).status, 200);
        assert_eq!(
            ask("arn:aws:iam::210987654321:role/reader", None).code,
            "AccessDenied"
        );
        assert_eq!(
            ask("arn:aws:iam::210987654321:role/reader", Some("ext-1234")).status,
            200
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn sessions_verify_with_their_token_and_end_when_they_expire() {
        let mut c = super::super::S3Config::on("127.0.0.1:0".parse().unwrap());
        c.roles = vec!["arn:aws:iam::210987654321:role/reader".into()];
        let server = super::super::S3Server::start(c).await.unwrap();
        let state = server.state.clone();
        let role = state.roles[0].clone();
        let s = issue(&state, &role, "t", 900, false);
        let (secret, who) = credential(&state, &s.access_key_id, Some(&s.token), "s3").unwrap();
        assert_eq!(secret, s.secret);
        assert!(matches!(who, Principal::Session { .. }));
        let tampered = format!("{}x", s.token);
        assert_eq!(
            credential(&state, &s.access_key_id, Some(&tampered), "s3")
                .unwrap_err()
                .1,
            "InvalidToken"
        );
        assert_eq!(
            credential(&state, &s.access_key_id, None, "sqs")
                .unwrap_err()
                .1,
            "InvalidClientTokenId"
        );
        // The configured key takes no token.
        let key = state.config.access_key_id.clone();
        assert_eq!(
            credential(&state, &key, None, "sts").unwrap().1,
            Principal::Key
        );
        assert!(credential(&state, &key, Some("t"), "sts").is_err());
        // Expired: refused with each service's code.
        state
            .sts
            .live
            .lock()
            .get_mut(&s.access_key_id)
            .unwrap()
            .expires = SystemTime::now() - Duration::from_secs(1);
        for (service, status) in [("s3", 400), ("sqs", 403), ("sts", 400)] {
            let e = credential(&state, &s.access_key_id, Some(&s.token), service).unwrap_err();
            assert_eq!((e.0, e.1), (status, "ExpiredToken"), "{service}");
        }
        assert_eq!(state.sts.live(), 0);
        server.shutdown().await;
    }
}
