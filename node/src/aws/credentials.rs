//! Where an AWS source's credentials come from, found the way AWS's own
//! tools find them, cached, and refreshed before they expire.
//!
//! Without keys in Trail's config, the default chain is walked in the
//! order AWS documents; the first link that has credentials answers, and
//! every refresh walks it again:
//!
//! 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!    `AWS_SESSION_TOKEN` (skipped when the config names a `profile`, as
//!    botocore skips it for a profile given explicitly);
//! 2. the shared files: profile `profile` (config), else `AWS_PROFILE`,
//!    else `default`, in `AWS_SHARED_CREDENTIALS_FILE` (`~/.aws/credentials`),
//!    then `AWS_CONFIG_FILE` (`~/.aws/config`, `[profile NAME]`): static
//!    keys only; a profile (the default one too) that names `role_arn` or
//!    `sso_*`, or `credential_process` / `credential_source` without keys,
//!    stops the walk pointing to `role_arn` in Trail's config, rather than
//!    sign as anyone else than AWS's tools would;
//! 3. web identity (EKS IAM roles for service accounts):
//!    `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` → STS
//!    AssumeRoleWithWebIdentity, unsigned (the token file without a role
//!    is skipped, as the SDKs skip it);
//! 4. container credentials (ECS task roles, EKS Pod Identity):
//!    `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (on `http://169.254.170.2`) or
//!    `AWS_CONTAINER_CREDENTIALS_FULL_URI` (https, or http to a loopback
//!    address or the ECS/EKS agents, as the SDKs allow), with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` / `_TOKEN`;
//! 5. EC2 instance metadata, IMDSv2 (a session token first; IMDSv1 only when
//!    the token is refused as the SDKs do, and never with
//!    `AWS_EC2_METADATA_V1_DISABLED=true`), 1 s to connect;
//!    `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it,
//!    `AWS_EC2_METADATA_DISABLED=true` skips it.
//!
//! A link that is there but set up wrongly (half a key pair, a profile
//! named but missing, a container URI the SDKs refuse) stops the walk with
//! its error, as AWS's SDKs do, rather than falling through to another
//! identity. On top of whatever the chain (or the config) gives, a source
//! may assume a role: STS `AssumeRole` (SigV4, service `sts`) with an
//! external id, for buckets and queues in another account.
//!
//! Credentials that expire are refreshed when less than [`REFRESH_BEFORE`]
//! is left (or half their lifetime, when they came with less), one load
//! at a time, in the background while the current ones still serve; keys
//! that do not expire (the environment's, a profile's) are loaded again
//! every [`STATIC_REFRESH`], so that rotated ones are picked up. Nothing is
//! handed out within [`EXPIRY_MARGIN`] of its expiry. A failed load keeps
//! the current credentials while they are valid; with none valid, its
//! error answers every caller for [`RETRY_AFTER`] before the next try.
//! When AWS refuses credentials (an expired or unknown token) the client
//! drops them (`CredentialsProvider::invalidate`) and the next request
//! loads new ones. No error, log line or `Debug` output carries a secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt as _, Shared};
use serde::Deserialize;

use super::xml::{element, unescape};
use super::{AwsEndpoint, AwsError, Signed};
use crate::net::http::{read_body, BodyError};
use crate::net::sign;
use crate::secret::Secret;

/// Credentials are refreshed when less than this is left.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// Credentials this close to their expiry are not handed out (a request
/// signed with them may reach AWS after it), as the SDKs' caches buffer.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Keys without an expiry (the environment's, a profile's) are loaded
/// again this often, as AWS's SDK for Rust does.
pub const STATIC_REFRESH: Duration = Duration::from_secs(15 * 60);
/// After a failed load, no new attempt before this; while nothing valid
/// is cached, its error is the answer until then.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// A load that takes longer than this (every link's own timeouts
/// included) is given up.
const LOAD_TIMEOUT: Duration = Duration::from_secs(90);
/// The STS API version of AssumeRole and AssumeRoleWithWebIdentity.
const STS_VERSION: &str = "2011-06-15";
/// ECS's container credentials agent (`…_RELATIVE_URI` is a path on it).
const ECS_AGENT: &str = "http://169.254.170.2";
/// The hosts `http://` container credentials may come from besides
/// loopback: ECS's agent and EKS Pod Identity's (IPv4, IPv6).
const CONTAINER_HOSTS: &[&str] = &["169.254.170.2", "169.254.170.23", "[fd00:ec2::23]"];
const IMDS_IPV4: &str = "http://169.254.169.254";
const IMDS_IPV6: &str = "http://[fd00:ec2::254]";
/// The largest credentials answer (STS XML, container or instance JSON).
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// The largest shared credentials/config file or token file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// AWS credentials: an access key (with an STS session token when it is
/// temporary).
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What a source's credentials are made of (from its config).
#[derive(Debug, Clone)]
pub struct CredentialsSettings {
    /// Static keys; when given, no chain is walked.
    pub keys: Option<AwsCredentials>,
    /// The shared files' profile; `None`: `AWS_PROFILE`, else `default`.
    pub profile: Option<String>,
    /// The region STS is asked in (the source's).
    pub region: String,
    /// STS: `https://sts.{region}.amazonaws.com` unless told otherwise.
    pub sts_endpoint: AwsEndpoint,
    /// A role to assume with whatever credentials the above give.
    pub assume_role: Option<AssumeRole>,
}

/// STS `AssumeRole`'s parameters.
#[derive(Debug, Clone)]
pub struct AssumeRole {
    /// `arn:aws:iam::123456789012:role/trail-reader`.
    pub role_arn: String,
    /// What the role's trust policy requires (`sts:ExternalId`), if anything.
    pub external_id: Option<Secret>,
    pub role_session_name: String,
    /// `DurationSeconds`: 900 s up to the role's maximum session.
    pub duration: Duration,
}

/// Why there are no credentials. Never holds a secret: answers that carry
/// credentials are reported by their shape, not their text. Cloned to
/// every caller that waited for the same load.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialsError {
    /// No link of the default chain had credentials.
    #[error("no AWS credentials found; tried {}", .tried.join("; "))]
    NotFound { tried: Vec<String> },
    /// A link is there but set up wrongly; the chain stops at it.
    #[error("{provider}: {message}")]
    Invalid {
        provider: &'static str,
        message: String,
    },
    /// A credentials endpoint (container, instance metadata) failed, or
    /// answered something that is not credentials.
    #[error("{provider}: {message}")]
    Fetch {
        provider: &'static str,
        message: String,
        transient: bool,
    },
    /// STS refused or failed.
    #[error("{provider}: {source}")]
    Sts {
        provider: &'static str,
        #[source]
        source: Arc<AwsError>,
    },
}

impl CredentialsError {
    /// Worth trying again: connection trouble, throttling, 5xx.
    pub fn transient(&self) -> bool {
        match self {
            CredentialsError::Fetch { transient, .. } => *transient,
            CredentialsError::Sts { source, .. } => source.transient(),
            CredentialsError::NotFound { .. } | CredentialsError::Invalid { .. } => false,
        }
    }
}

/// Credentials as a source hands them out.
struct Loaded {
    credentials: AwsCredentials,
    /// `None`: keys that do not expire (the environment's, a profile's);
    /// loaded again every [`STATIC_REFRESH`] all the same.
    expires: Option<SystemTime>,
    /// Which link or service gave them (for logs and errors).
    provider: &'static str,
}

/// Something that fetches credentials: the chain, a role, a test's fake.
trait Load: Send + Sync {
    fn load(&self) -> BoxFuture<'_, Result<Loaded, CredentialsError>>;
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// One load under way, its answer shared by everyone who waits for it.
type Loading = Shared<BoxFuture<'static, Result<Arc<AwsCredentials>, CredentialsError>>>;

/// A source's credentials: fixed, or loaded from the chain or STS and
/// refreshed before they expire. Cheap to clone and to ask: a request
/// takes the cached credentials while they are valid; a refresh runs in
/// the background while they still serve, and when none are valid every
/// caller waits for the same single load.
#[derive(Clone)]
pub struct CredentialsProvider {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: fixed credentials, always in `state.cached`.
    source: Option<Arc<dyn Load>>,
    state: parking_lot::Mutex<State>,
    now: Clock,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    /// The last load failed: no new attempt before `retry_at`, and until
    /// then its error is every caller's answer while nothing valid is
    /// cached (callers do not queue up for loads that each time out).
    failed: Option<Failed>,
    /// The load under way (numbered, so that only it clears itself).
    loading: Option<(u64, Loading)>,
    loads: u64,
}

struct Cached {
    credentials: Arc<AwsCredentials>,
    expires: Option<SystemTime>,
    refresh_at: Option<SystemTime>,
    provider: &'static str,
}

impl Cached {
    /// Still good to sign with: not within [`EXPIRY_MARGIN`] of expiring.
    fn valid(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|e| now + EXPIRY_MARGIN < e)
    }

    fn due(&self, now: SystemTime) -> bool {
        self.refresh_at.is_some_and(|t| now >= t)
    }
}

struct Failed {
    error: CredentialsError,
    retry_at: SystemTime,
}

impl std::fmt::Debug for CredentialsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.state.lock();
        let cached = state.cached.as_ref();
        f.debug_struct("CredentialsProvider")
            .field("provider", &cached.map(|c| c.provider))
            .field("expires", &cached.and_then(|c| c.expires))
            .finish_non_exhaustive()
    }
}

impl From<AwsCredentials> for CredentialsProvider {
    fn from(c: AwsCredentials) -> Self {
        CredentialsProvider::fixed(c)
    }
}

impl CredentialsProvider {
    /// Fixed credentials: static keys, never refreshed.
    pub fn fixed(credentials: AwsCredentials) -> CredentialsProvider {
        CredentialsProvider {
            inner: Arc::new(Inner {
                source: None,
                state: parking_lot::Mutex::new(State {
                    cached: Some(Cached {
                        credentials: Arc::new(credentials),
                        expires: None,
                        refresh_at: None,
                        provider: "config",
                    }),
                    ..State::default()
                }),
                now: Arc::new(SystemTime::now),
            }),
        }
    }

    /// The config's keys, else the default chain over the process's
    /// environment; with `assume_role`, a role assumed with them. Nothing
    /// is fetched until [`credentials`](Self::credentials) is asked.
    pub fn new(settings: CredentialsSettings) -> Result<CredentialsProvider, CredentialsError> {
        Self::with_env(settings, Env::Process)
    }

    fn with_env(
        settings: CredentialsSettings,
        env: Env,
    ) -> Result<CredentialsProvider, CredentialsError> {
        let base = match settings.keys {
            Some(keys) => CredentialsProvider::fixed(keys),
            None => Self::from_load(Chain::new(
                env,
                settings.profile,
                &settings.sts_endpoint,
                &settings.region,
            )?),
        };
        Ok(match settings.assume_role {
            Some(role) => Self::from_load(RoleSession::new(
                base,
                role,
                &settings.sts_endpoint,
                &settings.region,
            )?),
            None => base,
        })
    }

    fn from_load(source: impl Load + 'static) -> CredentialsProvider {
        CredentialsProvider {
            inner: Arc::new(Inner {
                source: Some(Arc::new(source)),
                state: parking_lot::Mutex::new(State::default()),
                now: Arc::new(SystemTime::now),
            }),
        }
    }

    /// Credentials to sign a request with. Valid cached ones at once (and
    /// when they are due, a refresh starts in the background while they
    /// keep serving); otherwise the one load under way, shared with every
    /// other caller; within [`RETRY_AFTER`] of a failed load with nothing
    /// valid cached, that load's error at once.
    pub async fn credentials(&self) -> Result<Arc<AwsCredentials>, CredentialsError> {
        let wait = {
            let now = (self.inner.now)();
            let mut state = self.inner.state.lock();
            let resting = state.failed.as_ref().is_some_and(|f| now < f.retry_at);
            if let Some(c) = state.cached.as_ref().filter(|c| c.valid(now)) {
                let credentials = c.credentials.clone();
                if c.due(now) && !resting && state.loading.is_none() {
                    // It runs as a task of its own: nobody needs to wait.
                    let _background = Inner::start(&self.inner, &mut state);
                }
                return Ok(credentials);
            }
            if let Some(f) = state.failed.as_ref().filter(|_| resting) {
                return Err(f.error.clone());
            }
            match &state.loading {
                Some((_, l)) => l.clone(),
                None => Inner::start(&self.inner, &mut state),
            }
        };
        wait.await
    }

    /// Drops `credentials` if they are the cached ones (AWS refused them),
    /// so that the next request loads new ones. True when they were;
    /// fixed credentials are never dropped.
    pub(crate) fn invalidate(&self, credentials: &Arc<AwsCredentials>) -> bool {
        if self.inner.source.is_none() {
            return false;
        }
        let mut state = self.inner.state.lock();
        let current = state
            .cached
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.credentials, credentials));
        if current {
            state.cached = None;
        }
        current
    }

    /// Whether these credentials are loaded again (false: fixed keys).
    pub(crate) fn refreshable(&self) -> bool {
        self.inner.source.is_some()
    }

    /// Which link or service the current credentials came from
    /// (`config`, `environment`, `profile`, `web identity`, `container`,
    /// `instance metadata`, `assume role`), once loaded.
    pub fn provider(&self) -> Option<&'static str> {
        self.inner.state.lock().cached.as_ref().map(|c| c.provider)
    }
}

impl Inner {
    /// Starts a load as a task of its own (it finishes, and settles the
    /// cache, whoever waits for it or stops waiting).
    fn start(inner: &Arc<Inner>, state: &mut State) -> Loading {
        state.loads += 1;
        let id = state.loads;
        let task = tokio::spawn({
            let inner = inner.clone();
            async move {
                let source = inner.source.clone().expect("only loaded credentials load");
                let loaded = match tokio::time::timeout(LOAD_TIMEOUT, source.load()).await {
                    Ok(l) => l,
                    Err(_) => Err(CredentialsError::Fetch {
                        provider: "credentials",
                        message: format!("no answer within {} s", LOAD_TIMEOUT.as_secs()),
                        transient: true,
                    }),
                };
                inner.settle(id, loaded)
            }
        });
        let weak = Arc::downgrade(inner);
        let loading = async move {
            match task.await {
                Ok(r) => r,
                // The runtime that ran it stopped: not settled, so clear it.
                Err(e) => {
                    if let Some(inner) = weak.upgrade() {
                        let mut state = inner.state.lock();
                        if state.loading.as_ref().is_some_and(|(i, _)| *i == id) {
                            state.loading = None;
                        }
                    }
                    Err(CredentialsError::Fetch {
                        provider: "credentials",
                        message: format!("the load stopped: {e}"),
                        transient: true,
                    })
                }
            }
        }
        .boxed()
        .shared();
        state.loading = Some((id, loading.clone()));
        loading
    }

    /// Takes a load's outcome into the cache.
    fn settle(
        &self,
        id: u64,
        loaded: Result<Loaded, CredentialsError>,
    ) -> Result<Arc<AwsCredentials>, CredentialsError> {
        let now = (self.now)();
        let mut state = self.state.lock();
        if state.loading.as_ref().is_some_and(|(i, _)| *i == id) {
            state.loading = None;
        }
        // Credentials that are expired, or about to, by this node's clock
        // are never handed out: AWS would refuse them, or the clock is off.
        let loaded = loaded.and_then(|l| match l.expires {
            Some(e) if now + EXPIRY_MARGIN >= e => Err(CredentialsError::Fetch {
                provider: l.provider,
                message: format!(
                    "the credentials it gave expire at {}, and this node's clock reads {} (is it right?)",
                    sign::iso8601(e),
                    sign::iso8601(now)
                ),
                transient: true,
            }),
            _ => Ok(l),
        });
        match loaded {
            Ok(l) => {
                let refresh_at = match l.expires {
                    Some(e) => {
                        let left = e.duration_since(now).unwrap_or_default();
                        e - REFRESH_BEFORE.min(left / 2)
                    }
                    None => now + STATIC_REFRESH,
                };
                match state.cached.as_ref() {
                    // The chain answered from another link than before.
                    Some(c) if c.provider != l.provider => {
                        tracing::info!(from = c.provider, to = l.provider, expires = ?l.expires.map(sign::iso8601), "AWS credentials now come from elsewhere");
                    }
                    _ => {
                        tracing::debug!(provider = l.provider, expires = ?l.expires.map(sign::iso8601), "AWS credentials loaded");
                    }
                }
                let credentials = Arc::new(l.credentials);
                state.cached = Some(Cached {
                    credentials: credentials.clone(),
                    expires: l.expires,
                    refresh_at: Some(refresh_at),
                    provider: l.provider,
                });
                state.failed = None;
                Ok(credentials)
            }
            Err(e) => {
                match state.cached.as_ref().filter(|c| c.valid(now)) {
                    Some(c) => {
                        tracing::warn!(error = %e, provider = c.provider, "refreshing AWS credentials failed; the current ones serve until they expire");
                    }
                    None => {
                        tracing::warn!(error = %e, "loading AWS credentials failed");
                    }
                }
                state.failed = Some(Failed {
                    error: e.clone(),
                    retry_at: now + RETRY_AFTER,
                });
                Err(e)
            }
        }
    }
}

/// Where the chain reads its variables: the process, or a test's map.
#[derive(Clone)]
enum Env {
    Process,
    #[cfg_attr(not(test), allow(dead_code))]
    Fixed(Arc<HashMap<String, String>>),
}

impl Env {
    /// The variable, if set and not empty (an empty one is unset, as the
    /// SDKs read it).
    fn var(&self, name: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var(name).ok(),
            Env::Fixed(m) => m.get(name).cloned(),
        }
        .filter(|v| !v.trim().is_empty())
    }

    fn is_true(&self, name: &str) -> bool {
        self.var(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    fn home(&self) -> Option<PathBuf> {
        self.var("HOME")
            .or_else(|| self.var("USERPROFILE"))
            .map(PathBuf::from)
    }

    /// A path from a variable (`~/` expanded), else `~/{default}`.
    fn path(&self, var: &str, default: &str) -> Option<PathBuf> {
        match self.var(var) {
            Some(p) => match (p.strip_prefix("~/"), self.home()) {
                (Some(rest), Some(home)) => Some(home.join(rest)),
                _ => Some(PathBuf::from(p)),
            },
            None => self.home().map(|h| h.join(default)),
        }
    }
}

/// One link's answer: credentials, or why it has none.
enum Found {
    Yes(Loaded),
    No(String),
}

/// AWS's default credential provider chain (after the config's keys).
struct Chain {
    env: Env,
    /// The config's `profile`: explicit, so the environment's keys are skipped.
    profile: Option<String>,
    /// Container and instance metadata: no proxy, short timeouts.
    http: reqwest::Client,
    /// STS for AssumeRoleWithWebIdentity, unsigned.
    sts: Signed,
}

impl Chain {
    fn new(
        env: Env,
        profile: Option<String>,
        sts_endpoint: &AwsEndpoint,
        region: &str,
    ) -> Result<Chain, CredentialsError> {
        let http = crate::net::http::client_builder(Duration::from_secs(1), Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| CredentialsError::Invalid {
                provider: "container",
                message: format!("HTTP client: {e}"),
            })?;
        let sts = Signed::new(
            sts_endpoint.clone(),
            None,
            region,
            "sts",
            Duration::from_secs(30),
        )
        .map_err(|e| CredentialsError::Invalid {
            provider: "web identity",
            message: format!("HTTP client: {e}"),
        })?;
        Ok(Chain {
            env,
            profile,
            http,
            sts,
        })
    }

    async fn walk(&self) -> Result<Loaded, CredentialsError> {
        let mut tried = vec!["config: no access_key_id".to_owned()];
        let mut note = |name: &str, found: Found| match found {
            Found::Yes(l) => Some(l),
            Found::No(why) => {
                tried.push(format!("{name}: {why}"));
                None
            }
        };
        if let Some(l) = note("environment", self.environment()?) {
            return Ok(l);
        }
        if let Some(l) = note("shared files", self.shared_files().await?) {
            return Ok(l);
        }
        if let Some(l) = note("web identity", self.web_identity().await?) {
            return Ok(l);
        }
        if let Some(l) = note("container", self.container().await?) {
            return Ok(l);
        }
        if let Some(l) = note("instance metadata", self.instance_metadata().await?) {
            return Ok(l);
        }
        Err(CredentialsError::NotFound { tried })
    }

    fn environment(&self) -> Result<Found, CredentialsError> {
        const P: &str = "environment";
        if let Some(p) = &self.profile {
            return Ok(Found::No(format!(
                "skipped (the config names profile {p:?})"
            )));
        }
        let id = self.env.var("AWS_ACCESS_KEY_ID");
        let secret = self.env.var("AWS_SECRET_ACCESS_KEY");
        let (id, secret) = match (id, secret) {
            (None, None) => return Ok(Found::No("AWS_ACCESS_KEY_ID not set".into())),
            (Some(_), None) => {
                return Err(CredentialsError::Invalid {
                    provider: P,
                    message: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
                })
            }
            (None, Some(_)) => {
                return Err(CredentialsError::Invalid {
                    provider: P,
                    message: "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into(),
                })
            }
            (Some(id), Some(secret)) => (id, secret),
        };
        Ok(Found::Yes(Loaded {
            credentials: AwsCredentials {
                access_key_id: id.trim().to_owned(),
                secret_access_key: Secret::new(secret.trim()),
                session_token: self
                    .env
                    .var("AWS_SESSION_TOKEN")
                    .or_else(|| self.env.var("AWS_SECURITY_TOKEN"))
                    .map(|t| Secret::new(t.trim())),
            },
            expires: None,
            provider: P,
        }))
    }

    async fn shared_files(&self) -> Result<Found, CredentialsError> {
        const P: &str = "profile";
        let explicit = self
            .profile
            .clone()
            .or_else(|| self.env.var("AWS_PROFILE"))
            .or_else(|| self.env.var("AWS_DEFAULT_PROFILE"));
        let name = explicit.clone().unwrap_or_else(|| "default".to_owned());
        let credentials_file = self
            .env
            .path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
        let config_file = self.env.path("AWS_CONFIG_FILE", ".aws/config");
        let invalid = |message: String| CredentialsError::Invalid {
            provider: P,
            message,
        };
        // The credentials file names profiles bare; the config file as
        // `[profile NAME]`, except `[default]`.
        let mut looked = Vec::new();
        let mut found = Vec::new();
        for (file, section) in [
            (&credentials_file, name.clone()),
            (&config_file, format!("profile {name}")),
        ] {
            let Some(file) = file else { continue };
            let Some(mut profiles) = read_profiles(file).await? else {
                looked.push(format!("{} (no such file)", file.display()));
                continue;
            };
            let props = profiles.remove(&section).or_else(|| {
                (name == "default")
                    .then(|| profiles.remove("default"))
                    .flatten()
            });
            match props {
                Some(props) => found.push((file.display().to_string(), props)),
                None => looked.push(file.display().to_string()),
            }
        }
        // A role or SSO in the profile is what AWS's tools would sign
        // with, keys or not: never those keys, nor another link, in its place.
        for (file, props) in &found {
            let indirect = props
                .keys()
                .filter(|k| k.as_str() == "role_arn" || k.starts_with("sso_"))
                .min();
            if let Some(k) = indirect {
                return Err(invalid(format!(
                    "profile {name:?} in {file} sets {k}: AWS's tools would sign as that role or SSO session, which Trail does not take from a profile; set role_arn (and external_id) in Trail's config instead, with static keys (or another credential source) to assume it with"
                )));
            }
        }
        for (file, props) in &found {
            match profile_keys(props) {
                Ok(Some(c)) => {
                    return Ok(Found::Yes(Loaded {
                        credentials: c,
                        expires: None,
                        provider: P,
                    }))
                }
                Ok(None) => looked.push(format!("{file} (no keys in it)")),
                Err(m) => return Err(invalid(format!("profile {name:?} in {file}: {m}"))),
            }
        }
        for (file, props) in &found {
            let other = ["credential_process", "credential_source"]
                .into_iter()
                .find(|k| props.contains_key(*k));
            if let Some(k) = other {
                return Err(invalid(format!(
                    "profile {name:?} in {file} has {k} and no aws_access_key_id and aws_secret_access_key: Trail reads static keys from profiles; for a role, set role_arn in Trail's config"
                )));
            }
        }
        if explicit.is_some() {
            let message = match found.first() {
                Some((file, _)) => format!(
                    "profile {name:?} in {file} has no aws_access_key_id and aws_secret_access_key (Trail reads static keys from profiles; for a role, set role_arn in Trail's config)"
                ),
                None if looked.is_empty() => {
                    format!("profile {name:?}: no home directory to find ~/.aws in")
                }
                None => format!("profile {name:?} is not in {}", looked.join(" or ")),
            };
            return Err(invalid(message));
        }
        Ok(Found::No(match looked.is_empty() {
            true => "no home directory to find ~/.aws in".into(),
            false => format!("profile default not in {}", looked.join(" or ")),
        }))
    }

    async fn web_identity(&self) -> Result<Found, CredentialsError> {
        const P: &str = "web identity";
        let Some(token_file) = self.env.var("AWS_WEB_IDENTITY_TOKEN_FILE") else {
            return Ok(Found::No("AWS_WEB_IDENTITY_TOKEN_FILE not set".into()));
        };
        // Without a role the token is of no use: the next link, as the
        // SDKs go on.
        let Some(role_arn) = self.env.var("AWS_ROLE_ARN") else {
            return Ok(Found::No(
                "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not".into(),
            ));
        };
        let session = self
            .env
            .var("AWS_ROLE_SESSION_NAME")
            .unwrap_or_else(|| format!("trail-{}", unix_millis()));
        // Read every time: the token file is rotated under the process.
        let token =
            read_token(Path::new(&token_file))
                .await
                .map_err(|m| CredentialsError::Fetch {
                    provider: P,
                    message: format!("AWS_WEB_IDENTITY_TOKEN_FILE {token_file}: {m}"),
                    transient: true,
                })?;
        let (credentials, expires) = sts_credentials(
            &self.sts,
            "AssumeRoleWithWebIdentity",
            &[
                ("RoleArn", role_arn.as_str()),
                ("RoleSessionName", session.as_str()),
                ("WebIdentityToken", token.as_str()),
            ],
        )
        .await
        .map_err(|e| CredentialsError::Sts {
            provider: P,
            source: Arc::new(e),
        })?;
        Ok(Found::Yes(Loaded {
            credentials,
            expires: Some(expires),
            provider: P,
        }))
    }

    async fn container(&self) -> Result<Found, CredentialsError> {
        const P: &str = "container";
        let invalid = |message: String| CredentialsError::Invalid {
            provider: P,
            message,
        };
        let url = if let Some(rel) = self.env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            if !rel.starts_with('/') {
                return Err(invalid(format!(
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI {rel:?} is not a path"
                )));
            }
            format!("{ECS_AGENT}{rel}")
        } else if let Some(full) = self.env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            check_container_uri(&full).map_err(invalid)?;
            full
        } else {
            return Ok(Found::No(
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI not set"
                    .into(),
            ));
        };
        // The token file first (EKS rotates it), read on every fetch.
        let token =
            match (
                self.env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
                self.env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            ) {
                (Some(file), _) => Some(read_token(Path::new(&file)).await.map_err(|m| {
                    CredentialsError::Fetch {
                        provider: P,
                        message: format!("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {file}: {m}"),
                        transient: true,
                    }
                })?),
                (None, token) => token,
            };
        if token.as_deref().is_some_and(|t| t.contains(['\r', '\n'])) {
            return Err(invalid(
                "the authorization token holds a line break (refused, as the SDKs do)".into(),
            ));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.get(&url).header("accept", "application/json");
            if let Some(t) = &token {
                req = req.header("authorization", t);
            }
            match fetch_json::<ContainerAnswer>(P, &url, req).await {
                Ok(a) => {
                    return Ok(Found::Yes(Loaded {
                        expires: Some(expiration(P, &a.expiration)?),
                        credentials: a.credentials(),
                        provider: P,
                    }))
                }
                Err(e) if e.transient() && attempt < 3 => {
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn instance_metadata(&self) -> Result<Found, CredentialsError> {
        const P: &str = "instance metadata";
        if self.env.is_true("AWS_EC2_METADATA_DISABLED") {
            return Ok(Found::No("AWS_EC2_METADATA_DISABLED=true".into()));
        }
        let base = match self.env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
            Some(e) => e.trim().trim_end_matches('/').to_owned(),
            None if self
                .env
                .var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
                .is_some_and(|m| m.eq_ignore_ascii_case("ipv6")) =>
            {
                IMDS_IPV6.to_owned()
            }
            None => IMDS_IPV4.to_owned(),
        };
        let timeout = Duration::from_secs(2);
        // IMDSv2: a session token first.
        let token_url = format!("{base}/latest/api/token");
        let answer = self
            .http
            .put(&token_url)
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .timeout(timeout)
            .send()
            .await;
        let token = match answer {
            // Nothing answers: not on EC2.
            Err(e) => return Ok(Found::No(format!("{base}: {}", short_error(&e)))),
            Ok(r) if r.status() == 200 => Some(
                read_text(P, &token_url, r, 4 << 10)
                    .await?
                    .trim()
                    .to_owned(),
            ),
            // An IMDS that predates tokens, or refuses them: IMDSv1, as the
            // SDKs fall back, unless the operator forbade it.
            Ok(r)
                if (403..=405).contains(&r.status().as_u16())
                    && !self.env.is_true("AWS_EC2_METADATA_V1_DISABLED") =>
            {
                None
            }
            Ok(r) => {
                return Ok(Found::No(format!(
                    "{token_url}: HTTP {} for a session token",
                    r.status().as_u16()
                )))
            }
        };
        let get = |url: &str| {
            let mut req = self.http.get(url).timeout(timeout);
            if let Some(t) = &token {
                req = req.header("x-aws-ec2-metadata-token", t);
            }
            req
        };
        let roles_url = format!("{base}/latest/meta-data/iam/security-credentials/");
        let resp = get(&roles_url)
            .send()
            .await
            .map_err(|e| CredentialsError::Fetch {
                provider: P,
                message: format!("{roles_url}: {}", short_error(&e)),
                transient: true,
            })?;
        if resp.status() == 404 {
            return Ok(Found::No("the instance has no IAM role".into()));
        }
        let roles = read_text(P, &roles_url, resp, 4 << 10).await?;
        let Some(role) = roles.lines().map(str::trim).find(|r| !r.is_empty()) else {
            return Ok(Found::No("the instance has no IAM role".into()));
        };
        let role_url = format!("{roles_url}{}", sign::percent_encode(role));
        let a: InstanceAnswer = fetch_json(P, &role_url, get(&role_url)).await?;
        if a.code.as_deref().is_some_and(|c| c != "Success") {
            return Err(CredentialsError::Fetch {
                provider: P,
                message: format!("{role_url}: Code {:?}", a.code.unwrap_or_default()),
                transient: true,
            });
        }
        Ok(Found::Yes(Loaded {
            expires: Some(expiration(P, &a.expiration)?),
            credentials: AwsCredentials {
                access_key_id: a.access_key_id,
                secret_access_key: Secret::new(a.secret_access_key),
                session_token: Some(Secret::new(a.token)),
            },
            provider: P,
        }))
    }
}

impl Load for Chain {
    fn load(&self) -> BoxFuture<'_, Result<Loaded, CredentialsError>> {
        Box::pin(self.walk())
    }
}

/// STS `AssumeRole` with the base provider's credentials.
struct RoleSession {
    /// Signs with the base credentials.
    sts: Signed,
    role: AssumeRole,
}

impl RoleSession {
    fn new(
        base: CredentialsProvider,
        role: AssumeRole,
        sts_endpoint: &AwsEndpoint,
        region: &str,
    ) -> Result<RoleSession, CredentialsError> {
        let sts = Signed::new(
            sts_endpoint.clone(),
            Some(base),
            region,
            "sts",
            Duration::from_secs(30),
        )
        .map_err(|e| CredentialsError::Invalid {
            provider: "assume role",
            message: format!("HTTP client: {e}"),
        })?;
        Ok(RoleSession { sts, role })
    }

    async fn assume(&self) -> Result<Loaded, CredentialsError> {
        let secs = self.role.duration.as_secs().to_string();
        let mut params = vec![
            ("RoleArn", self.role.role_arn.as_str()),
            ("RoleSessionName", self.role.role_session_name.as_str()),
            ("DurationSeconds", secs.as_str()),
        ];
        if let Some(x) = &self.role.external_id {
            params.push(("ExternalId", x.expose()));
        }
        let (credentials, expires) = sts_credentials(&self.sts, "AssumeRole", &params)
            .await
            .map_err(|e| match e {
                // The base credentials' own trouble, as it is.
                AwsError::Credentials { source, .. } => *source,
                e => CredentialsError::Sts {
                    provider: "assume role",
                    source: Arc::new(e),
                },
            })?;
        Ok(Loaded {
            credentials,
            expires: Some(expires),
            provider: "assume role",
        })
    }
}

impl Load for RoleSession {
    fn load(&self) -> BoxFuture<'_, Result<Loaded, CredentialsError>> {
        Box::pin(self.assume())
    }
}

/// One STS Query API call (`Action=…&Version=2011-06-15&…`, form-encoded
/// POST) whose answer holds `Credentials`.
async fn sts_credentials(
    sts: &Signed,
    op: &'static str,
    params: &[(&str, &str)],
) -> Result<(AwsCredentials, SystemTime), AwsError> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", op)
        .append_pair("Version", STS_VERSION)
        .extend_pairs(params)
        .finish();
    let headers = vec![(
        "content-type".to_owned(),
        "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
    )];
    let host = sts.host().to_owned();
    let sent = sts
        .send(
            op,
            reqwest::Method::POST,
            &host,
            "/",
            &[],
            headers,
            Bytes::from(body),
            None,
        )
        .await?;
    let status = sent.response.status().as_u16();
    let body = read_body(sent.response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { cap } => AwsError::TooLarge { op, cap },
            BodyError::Read(source) => AwsError::Http { op, source },
        })?;
    if status != 200 {
        // An expired base session (AssumeRole signed with temporary
        // credentials) drops it from its provider.
        return Err(sts.judge(
            sent.signer.as_ref(),
            super::xml::error_document(op, status, &body),
        ));
    }
    parse_sts_credentials(op, &body).map_err(|message| AwsError::Invalid { op, message })
}

/// `{op}Response/{op}Result/Credentials/{AccessKeyId, SecretAccessKey,
/// SessionToken, Expiration}`. Errors name what is missing, never a value.
fn parse_sts_credentials(op: &str, body: &[u8]) -> Result<(AwsCredentials, SystemTime), String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_owned())?;
    let result = element(text, &format!("{op}Result"))
        .ok_or_else(|| format!("the answer has no {op}Result element"))?;
    let creds = element(result, "Credentials")
        .ok_or_else(|| format!("{op}Result has no Credentials element"))?;
    let field = |tag: &str| {
        element(creds, tag)
            .map(|v| {
                unescape(v.trim()).map_err(|_| format!("Credentials/{tag} is not well-formed"))
            })
            .transpose()?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("Credentials has no {tag}"))
    };
    let expiration = field("Expiration")?;
    let expires = parse_rfc3339(&expiration)
        .ok_or_else(|| format!("Credentials/Expiration {expiration:?} is not a time"))?;
    Ok((
        AwsCredentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: Secret::new(field("SecretAccessKey")?),
            session_token: Some(Secret::new(field("SessionToken")?)),
        },
        expires,
    ))
}

/// ECS's and EKS Pod Identity's answer.
#[derive(Deserialize)]
struct ContainerAnswer {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: String,
    #[serde(rename = "Token")]
    token: String,
    #[serde(rename = "Expiration")]
    expiration: String,
}

impl ContainerAnswer {
    fn credentials(self) -> AwsCredentials {
        AwsCredentials {
            access_key_id: self.access_key_id,
            secret_access_key: Secret::new(self.secret_access_key),
            session_token: Some(Secret::new(self.token)),
        }
    }
}

/// The instance metadata service's answer for a role.
#[derive(Deserialize)]
struct InstanceAnswer {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: String,
    #[serde(rename = "Token")]
    token: String,
    #[serde(rename = "Expiration")]
    expiration: String,
}

/// A JSON answer that holds credentials: on an error only the status and
/// the error's own code and message are reported; a body that does not
/// parse is described by where it broke, never by its text.
async fn fetch_json<T: for<'de> Deserialize<'de>>(
    provider: &'static str,
    url: &str,
    req: reqwest::RequestBuilder,
) -> Result<T, CredentialsError> {
    let resp = req.send().await.map_err(|e| CredentialsError::Fetch {
        provider,
        message: format!("{url}: {}", short_error(&e)),
        transient: true,
    })?;
    let status = resp.status().as_u16();
    let body = read_body(resp, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| CredentialsError::Fetch {
            provider,
            message: format!("{url}: {e}"),
            transient: matches!(e, BodyError::Read(_)),
        })?;
    if status != 200 {
        // ECS: {"code": …, "message": …}; EKS: a line of text.
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let said = [&v["code"], &v["Code"], &v["message"], &v["Message"]]
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(": ");
        return Err(CredentialsError::Fetch {
            provider,
            message: format!(
                "{url}: HTTP {status}{}{said}",
                if said.is_empty() { "" } else { " " }
            ),
            transient: status >= 500 || status == 429,
        });
    }
    serde_json::from_slice(&body).map_err(|e| CredentialsError::Fetch {
        provider,
        message: format!(
            "{url}: the answer is not credentials JSON ({:?} at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
        transient: false,
    })
}

/// A short text answer (a token, a role name).
async fn read_text(
    provider: &'static str,
    url: &str,
    resp: reqwest::Response,
    cap: usize,
) -> Result<String, CredentialsError> {
    let status = resp.status().as_u16();
    let body = read_body(resp, cap)
        .await
        .map_err(|e| CredentialsError::Fetch {
            provider,
            message: format!("{url}: {e}"),
            transient: matches!(e, BodyError::Read(_)),
        })?;
    if status != 200 {
        return Err(CredentialsError::Fetch {
            provider,
            message: format!("{url}: HTTP {status}"),
            transient: status >= 500 || status == 429,
        });
    }
    String::from_utf8(body.to_vec()).map_err(|_| CredentialsError::Fetch {
        provider,
        message: format!("{url}: the answer is not UTF-8"),
        transient: false,
    })
}

fn expiration(provider: &'static str, s: &str) -> Result<SystemTime, CredentialsError> {
    parse_rfc3339(s.trim()).ok_or_else(|| CredentialsError::Fetch {
        provider,
        message: format!("Expiration {s:?} is not a time"),
        transient: false,
    })
}

/// An `Expiration` as STS, ECS, EKS and EC2 write it: an RFC 3339
/// date-time, strictly (`2026-12-08T02:20:33Z`, fractions of a second
/// allowed, `Z` or a `±hh:mm` offset, which is applied); anything else,
/// month 13 or a `/` for a `-`, is not a time.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let d = b.get(from..from + len)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0, |n, c| n * 10 + i64::from(c - b'0')))
    };
    let at = |i: usize, want: &[u8]| b.get(i).is_some_and(|c| want.contains(c));
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, se) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let separators = at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":");
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !separators || !(1..=month_days).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    if at(i, b".") {
        i += 1;
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        i += digits;
    }
    let offset = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && at(i + 3, b":") => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // Local time minus its offset is UTC.
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` as the SDKs accept it: https to
/// anywhere, http only to loopback or the ECS/EKS agents' addresses.
fn check_container_uri(uri: &str) -> Result<(), String> {
    let u = url::Url::parse(uri)
        .map_err(|e| format!("AWS_CONTAINER_CREDENTIALS_FULL_URI {uri:?}: {e}"))?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    let agent = u
        .host_str()
        .is_some_and(|h| CONTAINER_HOSTS.iter().any(|a| a.eq_ignore_ascii_case(h)));
    match u.scheme() {
        "https" if u.host().is_some() => Ok(()),
        "http" if loopback || agent => Ok(()),
        _ => Err(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI {uri:?}: must be https, or http to a loopback address or {}",
            CONTAINER_HOSTS.join(", ")
        )),
    }
}

/// A small file (a token, a credentials file): its text, `None` when it
/// does not exist, or why not. Read through a cap whatever the file is
/// (`/proc`, a device: their length says nothing), and never a FIFO or a
/// socket, whose open or read would block.
fn read_small(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read as _;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
        Ok(m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileTypeExt as _;
                let t = m.file_type();
                if t.is_fifo() || t.is_socket() {
                    return Err("not a regular file".into());
                }
            }
            if m.is_dir() {
                return Err("a directory, not a file".into());
            }
        }
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "not UTF-8".into())
}

/// [`read_small`] on a blocking thread, off the runtime's workers.
async fn read_small_async(path: &Path) -> Result<Option<String>, String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || read_small(&path))
        .await
        .map_err(|e| format!("reading: {e}"))?
}

/// A token file's text, trimmed.
async fn read_token(path: &Path) -> Result<String, String> {
    match read_small_async(path).await? {
        Some(t) => Ok(t.trim().to_owned()),
        None => Err("no such file".into()),
    }
}

/// Section → property → value; `None` when the file does not exist.
type Profiles = HashMap<String, HashMap<String, String>>;

async fn read_profiles(path: &Path) -> Result<Option<Profiles>, CredentialsError> {
    let text = read_small_async(path)
        .await
        .map_err(|m| CredentialsError::Invalid {
            provider: "profile",
            message: format!("{}: {m}", path.display()),
        })?;
    Ok(text.map(|t| parse_profiles(&t)))
}

/// The shared credentials / config file format, as AWS's SDKs read it
/// (botocore's configparser): `[section]` lines (a comment may follow the
/// `]`), `name = value` properties (names case-insensitive; a `#` or `;`
/// after whitespace starts a comment), whole-line `#` and `;` comments. A
/// line indented deeper than the property before it continues that
/// property: the lines of a nested block after `name =` with nothing on
/// it (`s3 =` then `  max_concurrent_requests = 20`, which no credential
/// uses: skipped), else more lines of its value. An indented property with
/// no property before it in its section (right after the header) is a
/// property like any other. A section given twice is merged, later values
/// winning.
fn parse_profiles(text: &str) -> Profiles {
    let mut out: Profiles = HashMap::new();
    let mut section: Option<String> = None;
    // The property a deeper-indented line continues: its name, its line's
    // indent, and whether it opened a nested block.
    let mut property: Option<(String, usize, bool)> = None;
    for raw in text.trim_start_matches('\u{feff}').lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let (Some(s), Some((name, at, nested))) = (&section, &property) {
            if indent > *at {
                if !nested {
                    if let Some(v) = out.get_mut(s).and_then(|p| p.get_mut(name)) {
                        v.push('\n');
                        v.push_str(strip_comment(trimmed).trim());
                    }
                }
                continue;
            }
        }
        property = None;
        if let Some(rest) = trimmed.strip_prefix('[') {
            section = rest.split_once(']').map(|(name, _)| {
                // `[ profile  dev ]` is `profile dev`.
                let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
                out.entry(name.clone()).or_default();
                name
            });
            continue;
        }
        let (Some(s), Some((name, value))) = (&section, trimmed.split_once('=')) else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = strip_comment(value).trim();
        property = Some((name.clone(), indent, value.is_empty()));
        out.entry(s.clone())
            .or_default()
            .insert(name, value.to_owned());
    }
    out
}

/// A value without its trailing comment (`#` or `;` after whitespace).
fn strip_comment(value: &str) -> &str {
    let b = value.as_bytes();
    for i in 1..b.len() {
        if matches!(b[i], b'#' | b';') && b[i - 1].is_ascii_whitespace() {
            return &value[..i];
        }
    }
    value
}

/// A profile's static keys; `Ok(None)` when it has none; an error for
/// half a pair.
fn profile_keys(props: &HashMap<String, String>) -> Result<Option<AwsCredentials>, String> {
    let get = |k: &str| props.get(k).filter(|v| !v.is_empty());
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (None, None) => Ok(None),
        (Some(_), None) => Err("aws_access_key_id without aws_secret_access_key".into()),
        (None, Some(_)) => Err("aws_secret_access_key without aws_access_key_id".into()),
        (Some(id), Some(secret)) => Ok(Some(AwsCredentials {
            access_key_id: id.clone(),
            secret_access_key: Secret::new(secret.clone()),
            session_token: get("aws_session_token")
                .or_else(|| get("aws_security_token"))
                .map(|t| Secret::new(t.clone())),
        })),
    }
}

/// A reqwest error without its chain of causes' noise: what and where.
fn short_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(s) => format!("{kind} ({s})"),
        None => kind.to_owned(),
    }
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";

    fn keys(id: &str) -> AwsCredentials {
        AwsCredentials {
            access_key_id: id.into(),
            secret_access_key: Secret::new(SECRET),
            session_token: Some(Secret::new("session-token-value")),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        let mut m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Never the machine's own ~/.aws or instance metadata.
        m.entry("HOME".into())
            .or_insert_with(|| "/nonexistent-trail-home".into());
        m.entry("AWS_EC2_METADATA_DISABLED".into())
            .or_insert_with(|| "true".into());
        Env::Fixed(Arc::new(m))
    }

    fn settings(profile: Option<&str>) -> CredentialsSettings {
        CredentialsSettings {
            keys: None,
            profile: profile.map(str::to_owned),
            region: "us-east-1".into(),
            sts_endpoint: AwsEndpoint::parse("https://sts.{region}.amazonaws.com", None).unwrap(),
            assume_role: None,
        }
    }

    async fn chain(profile: Option<&str>, e: Env) -> Result<(String, &'static str), String> {
        let p = CredentialsProvider::with_env(settings(profile), e).unwrap();
        match p.credentials().await {
            Ok(c) => Ok((c.access_key_id.clone(), p.provider().unwrap())),
            Err(e) => Err(e.to_string()),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "trail-credentials-{name}-{}-{}",
            std::process::id(),
            unix_millis()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn profile_files_parse_as_the_sdks_read_them() {
        let text = "\u{feff}# a comment\n\
            ; another\n\
            [default]\n\
            aws_access_key_id = AKIADEFAULT\n\
            aws_secret_access_key=secret/with=equals ; trailing comment\n\
            \n\
            [ profile  dev ]   # comment after the header\n\
            AWS_Access_Key_ID =\tAKIADEV \n\
            aws_secret_access_key = dev#secret\n\
            aws_session_token = tok\n\
            s3 =\n\
            \x20 max_concurrent_requests = 20\n\
            region = eu-west-1\n\
            [default]\n\
            region = us-east-1\n\
            orphan\n";
        let p = parse_profiles(text);
        let d = &p["default"];
        assert_eq!(d["aws_access_key_id"], "AKIADEFAULT");
        assert_eq!(d["aws_secret_access_key"], "secret/with=equals");
        assert_eq!(d["region"], "us-east-1", "a repeated section merges");
        let dev = &p["profile dev"];
        assert_eq!(
            dev["aws_access_key_id"], "AKIADEV",
            "names are case-insensitive"
        );
        assert_eq!(
            dev["aws_secret_access_key"], "dev#secret",
            "a # not after whitespace is part of the value"
        );
        assert!(!dev.contains_key("max_concurrent_requests"));
        assert_eq!(dev["region"], "eu-west-1");
        // Indentation as configparser reads it: a property indented right
        // after its header is a property; a deeper line after `name =`
        // with nothing on it is a nested block's, after a value more of
        // that value.
        let p = parse_profiles(
            "[cont]\n  aws_access_key_id = AKIAINDENTED\n  aws_secret_access_key = abc\n    def\n  s3 =\n    addressing_style = path\n\n    # a comment\n      deeper = x\nregion = r\n",
        );
        let c = &p["cont"];
        assert_eq!(c["aws_access_key_id"], "AKIAINDENTED");
        assert_eq!(c["aws_secret_access_key"], "abc\ndef");
        assert_eq!(c["s3"], "");
        assert!(!c.contains_key("addressing_style") && !c.contains_key("deeper"));
        assert_eq!(c["region"], "r");
        let c = profile_keys(dev).unwrap().unwrap();
        assert_eq!(c.session_token.unwrap().expose(), "tok");
        assert!(
            profile_keys(&HashMap::from([("region".into(), "x".into())]))
                .unwrap()
                .is_none()
        );
        assert!(profile_keys(&HashMap::from([(
            "aws_access_key_id".into(),
            "AKIA".into()
        )]))
        .is_err());
    }

    #[tokio::test]
    async fn the_chain_answers_in_aws_order() {
        let dir = temp_dir("order");
        let creds = dir.join("credentials");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKIAFILEDEFAULT\naws_secret_access_key = s1\n\
             [dev]\naws_access_key_id = AKIAFILEDEV\naws_secret_access_key = s2\n\
             [empty]\nregion = us-east-1\n",
        )
        .unwrap();
        let config = dir.join("config");
        std::fs::write(
            &config,
            "[profile cfg]\naws_access_key_id = AKIACONFIG\naws_secret_access_key = s3\n",
        )
        .unwrap();
        let files = [
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ];
        let with = |more: &[(&'static str, &'static str)]| {
            let mut all: Vec<(&str, &str)> = files.to_vec();
            all.extend_from_slice(more);
            env(&all)
        };
        let env_keys = [
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ];
        // The environment before the files.
        assert_eq!(
            chain(None, with(&env_keys)).await.unwrap(),
            ("AKIAENV".into(), "environment")
        );
        // The default profile, AWS_PROFILE's, the config file's.
        assert_eq!(
            chain(None, with(&[])).await.unwrap(),
            ("AKIAFILEDEFAULT".into(), "profile")
        );
        assert_eq!(
            chain(None, with(&[("AWS_PROFILE", "dev")]))
                .await
                .unwrap()
                .0,
            "AKIAFILEDEV"
        );
        assert_eq!(chain(Some("cfg"), with(&[])).await.unwrap().0, "AKIACONFIG");
        // A profile named in the config wins over the environment's keys.
        assert_eq!(
            chain(Some("dev"), with(&env_keys)).await.unwrap().0,
            "AKIAFILEDEV"
        );
        // A named profile that is missing, or has no keys, stops the chain.
        let e = chain(Some("nope"), with(&[])).await.unwrap_err();
        assert!(e.contains("profile \"nope\" is not in"), "{e}");
        let e = chain(None, with(&[("AWS_PROFILE", "empty")]))
            .await
            .unwrap_err();
        assert!(e.contains("has no aws_access_key_id"), "{e}");
        // Half a key pair in the environment is an error, not a fall-through.
        let e = chain(None, with(&[("AWS_ACCESS_KEY_ID", "AKIAENV")]))
            .await
            .unwrap_err();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY is not"), "{e}");
        // `~/` in a file variable is the home directory.
        let home = dir.to_str().unwrap();
        let e = env(&[
            ("HOME", home),
            ("AWS_SHARED_CREDENTIALS_FILE", "~/credentials"),
        ]);
        assert_eq!(chain(None, e).await.unwrap().0, "AKIAFILEDEFAULT");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn with_nothing_anywhere_the_error_lists_every_link_tried() {
        let e = chain(None, env(&[])).await.unwrap_err();
        for link in [
            "config: no access_key_id",
            "environment: AWS_ACCESS_KEY_ID not set",
            "shared files: profile default not in /nonexistent-trail-home/.aws/credentials (no such file)",
            "web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set",
            "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI not set",
            "instance metadata: AWS_EC2_METADATA_DISABLED=true",
        ] {
            assert!(e.contains(link), "{link:?} missing from: {e}");
        }
        // A token file without a role: skipped, as the SDKs skip it, on
        // to the next link (here: none).
        let e = chain(
            None,
            env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")]),
        )
        .await
        .unwrap_err();
        assert!(
            e.starts_with("no AWS credentials found")
                && e.contains(
                    "web identity: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; container:"
                ),
            "{e}"
        );
    }

    /// A loopback HTTP server answering `route(method, path, headers)`,
    /// one request per connection.
    async fn serve(
        route: impl Fn(&str, &str, &str) -> (u16, String) + Send + Sync + 'static,
    ) -> (String, Arc<AtomicU64>) {
        serve_with(move |m, p, h| {
            let (status, body) = route(m, p, h);
            (status, String::new(), body)
        })
        .await
    }

    /// [`serve`] whose route adds header lines (`name: value\r\n`…).
    async fn serve_with(
        route: impl Fn(&str, &str, &str) -> (u16, String, String) + Send + Sync + 'static,
    ) -> (String, Arc<AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let counted = hits.clone();
        let route = Arc::new(route);
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, Ordering::Relaxed);
                let route = route.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    // The body too, so that closing leaves nothing unread.
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let length = head
                        .to_ascii_lowercase()
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let mut first = head.lines().next().unwrap_or("").split(' ');
                    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
                    let (status, headers, body) = route(method, path, &head.to_ascii_lowercase());
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        (format!("http://{addr}"), hits)
    }

    fn ecs_json(id: &str, expires: SystemTime) -> String {
        serde_json::json!({
            "AccessKeyId": id, "SecretAccessKey": SECRET, "Token": "tok",
            "Expiration": sign::iso8601(expires), "RoleArn": "arn:aws:iam::123456789012:role/task",
        })
        .to_string()
    }

    #[tokio::test]
    async fn container_credentials_come_with_their_token_and_only_from_allowed_uris() {
        let expires = SystemTime::now() + Duration::from_secs(3600);
        let (base, _) = serve(move |method, path, head| {
            if method != "GET" || path != "/creds" {
                return (404, String::new());
            }
            if !head.contains("\r\nauthorization: the-token\r\n") {
                return (
                    401,
                    r#"{"code":"AccessDenied","message":"bad token"}"#.into(),
                );
            }
            (200, ecs_json("ASIACONTAINER", expires))
        })
        .await;
        let uri = format!("{base}/creds");
        let got = chain(
            None,
            env(&[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "the-token"),
            ]),
        )
        .await
        .unwrap();
        assert_eq!(got, ("ASIACONTAINER".into(), "container"));
        // The token file wins over the variable.
        let dir = temp_dir("container");
        std::fs::write(dir.join("token"), "the-token\n").unwrap();
        let file = dir.join("token");
        let got = chain(
            None,
            env(&[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "stale"),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    file.to_str().unwrap(),
                ),
            ]),
        )
        .await
        .unwrap();
        assert_eq!(got.0, "ASIACONTAINER");
        let e = chain(
            None,
            env(&[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong"),
            ]),
        )
        .await
        .unwrap_err();
        assert!(e.contains("HTTP 401 AccessDenied: bad token"), "{e}");
        // Plain http elsewhere than loopback or the agents: refused.
        for bad in ["http://example.com/creds", "ftp://127.0.0.1/x"] {
            let e = chain(None, env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", bad)]))
                .await
                .unwrap_err();
            assert!(e.contains("must be https"), "{bad}: {e}");
        }
        for ok in [
            "https://creds.example.com/x",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/v1/credentials",
            "http://localhost:8080/x",
            "http://[::1]/x",
        ] {
            check_container_uri(ok).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn instance_metadata_is_asked_with_an_imdsv2_session_token() {
        let expires = SystemTime::now() + Duration::from_secs(6 * 3600);
        let (base, _) = serve(move |method, path, head| match (method, path) {
            ("PUT", "/latest/api/token")
                if head.contains("x-aws-ec2-metadata-token-ttl-seconds: 21600") =>
            {
                (200, "imds-token".into())
            }
            (_, _) if !head.contains("x-aws-ec2-metadata-token: imds-token") => {
                (401, String::new())
            }
            ("GET", "/latest/meta-data/iam/security-credentials/") => (200, "web-role\n".into()),
            ("GET", "/latest/meta-data/iam/security-credentials/web-role") => {
                let mut v: serde_json::Value =
                    serde_json::from_str(&ecs_json("ASIAINSTANCE", expires)).unwrap();
                v["Code"] = "Success".into();
                (200, v.to_string())
            }
            _ => (404, String::new()),
        })
        .await;
        let got = chain(
            None,
            env(&[
                ("AWS_EC2_METADATA_DISABLED", "false"),
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &base),
            ]),
        )
        .await
        .unwrap();
        assert_eq!(got, ("ASIAINSTANCE".into(), "instance metadata"));
        // Nothing listening: not on EC2, one line in the list.
        let e = chain(
            None,
            env(&[
                ("AWS_EC2_METADATA_DISABLED", "false"),
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9"),
            ]),
        )
        .await
        .unwrap_err();
        assert!(
            e.contains("instance metadata: http://127.0.0.1:9: cannot connect"),
            "{e}"
        );
    }

    /// Credentials from a counter, expiring `lifetime` after "now" (never,
    /// with `None`); every attempt counted, failed ones too.
    struct Fake {
        attempts: Arc<AtomicU64>,
        ok: AtomicU64,
        fail: Arc<std::sync::atomic::AtomicBool>,
        clock: Arc<AtomicU64>,
        lifetime: Option<Duration>,
        delay: Duration,
    }

    impl Load for Fake {
        fn load(&self) -> BoxFuture<'_, Result<Loaded, CredentialsError>> {
            Box::pin(async move {
                self.attempts.fetch_add(1, Ordering::SeqCst);
                // Slow enough for callers to pile up behind the load.
                tokio::time::sleep(self.delay).await;
                if self.fail.load(Ordering::SeqCst) {
                    return Err(CredentialsError::Fetch {
                        provider: "fake",
                        message: "down".into(),
                        transient: true,
                    });
                }
                let n = self.ok.fetch_add(1, Ordering::SeqCst) + 1;
                let now = UNIX_EPOCH + Duration::from_secs(self.clock.load(Ordering::SeqCst));
                Ok(Loaded {
                    credentials: keys(&format!("ASIA{n}")),
                    expires: self.lifetime.map(|l| now + l),
                    provider: "fake",
                })
            })
        }
    }

    const T0: u64 = 1_800_000_000;

    struct Faked {
        p: CredentialsProvider,
        attempts: Arc<AtomicU64>,
        clock: Arc<AtomicU64>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Faked {
        fn at(&self, secs: u64) {
            self.clock.store(T0 + secs, Ordering::SeqCst);
        }

        fn attempts(&self) -> u64 {
            self.attempts.load(Ordering::SeqCst)
        }

        /// The key handed out now (waiting for a load when one is due).
        async fn ask(&self) -> String {
            self.p.credentials().await.unwrap().access_key_id.clone()
        }

        /// `n` callers at once.
        async fn many(&self, n: usize) -> Vec<Result<String, String>> {
            futures_util::future::join_all((0..n).map(|_| async {
                self.p
                    .credentials()
                    .await
                    .map(|c| c.access_key_id.clone())
                    .map_err(|e| e.to_string())
            }))
            .await
        }

        /// Until no load is under way (a background refresh has settled).
        async fn settled(&self) {
            settled(&self.p).await;
        }
    }

    async fn settled(p: &CredentialsProvider) {
        for _ in 0..500 {
            if p.inner.state.lock().loading.is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("a load never settled");
    }

    fn fake_with(lifetime: Option<Duration>, delay: Duration) -> Faked {
        let attempts = Arc::new(AtomicU64::new(0));
        let clock = Arc::new(AtomicU64::new(T0));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut p = CredentialsProvider::from_load(Fake {
            attempts: attempts.clone(),
            ok: AtomicU64::new(0),
            fail: fail.clone(),
            clock: clock.clone(),
            lifetime,
            delay,
        });
        let c = clock.clone();
        Arc::get_mut(&mut p.inner).unwrap().now =
            Arc::new(move || UNIX_EPOCH + Duration::from_secs(c.load(Ordering::SeqCst)));
        Faked {
            p,
            attempts,
            clock,
            fail,
        }
    }

    fn fake(lifetime: Duration) -> Faked {
        fake_with(Some(lifetime), Duration::from_millis(20))
    }

    #[tokio::test]
    async fn credentials_are_cached_and_refreshed_in_the_background_one_load_at_a_time() {
        let f = fake(Duration::from_secs(3600));
        let all = |v: Vec<Result<String, String>>, want: &str| {
            assert!(v.iter().all(|k| k.as_deref() == Ok(want)), "{v:?}");
        };
        // Twenty at once: one load.
        all(f.many(20).await, "ASIA1");
        assert_eq!(f.attempts(), 1);
        // Cached until five minutes before expiry…
        f.at(3299);
        assert_eq!(f.ask().await, "ASIA1");
        f.settled().await;
        assert_eq!(f.attempts(), 1);
        // …then refreshed once, in the background, while the current ones
        // (still valid) keep serving everyone asking.
        f.at(3300);
        all(f.many(20).await, "ASIA1");
        f.settled().await;
        assert_eq!(f.attempts(), 2);
        assert_eq!(f.ask().await, "ASIA2");
        // A failed refresh keeps the current credentials while they are
        // valid, and is not tried again on every request: once per
        // RETRY_AFTER.
        f.fail.store(true, Ordering::SeqCst);
        f.at(3300 + 3300);
        assert_eq!(f.ask().await, "ASIA2");
        f.settled().await;
        assert_eq!(f.attempts(), 3);
        for _ in 0..10 {
            assert_eq!(f.ask().await, "ASIA2");
            f.settled().await;
        }
        assert_eq!(f.attempts(), 3, "tried again within RETRY_AFTER");
        f.at(6600 + RETRY_AFTER.as_secs());
        assert_eq!(f.ask().await, "ASIA2");
        f.settled().await;
        assert_eq!(f.attempts(), 4);
        // They expire at 6900: served until EXPIRY_MARGIN before…
        f.at(6900 - EXPIRY_MARGIN.as_secs() - 1);
        assert_eq!(f.ask().await, "ASIA2");
        f.settled().await;
        assert_eq!(f.attempts(), 5);
        // …never at the margin: the failed load's error, at once, to every
        // caller, without another attempt before RETRY_AFTER.
        f.at(6900 - EXPIRY_MARGIN.as_secs());
        let v = f.many(64).await;
        assert!(
            v.iter()
                .all(|r| r.as_ref().err().map(String::as_str) == Some("fake: down")),
            "{v:?}"
        );
        assert_eq!(f.attempts(), 5);
        let e = f.p.credentials().await.unwrap_err();
        assert!(e.transient(), "{e}");
        // Then one load for all who wait, its error shared.
        f.at(6889 + RETRY_AFTER.as_secs());
        let v = f.many(64).await;
        assert!(
            v.iter()
                .all(|r| r.as_ref().err().map(String::as_str) == Some("fake: down")),
            "{v:?}"
        );
        assert_eq!(f.attempts(), 6);
        f.fail.store(false, Ordering::SeqCst);
        f.at(6889 + 2 * RETRY_AFTER.as_secs());
        assert_eq!(f.ask().await, "ASIA3");
        assert_eq!(f.attempts(), 7);

        // Short-lived credentials are refreshed at half their life.
        let f = fake(Duration::from_secs(120));
        assert_eq!(f.ask().await, "ASIA1");
        f.at(59);
        assert_eq!(f.ask().await, "ASIA1");
        f.settled().await;
        f.at(60);
        assert_eq!(f.ask().await, "ASIA1");
        f.settled().await;
        assert_eq!(f.ask().await, "ASIA2");
        assert_eq!(f.attempts(), 2);
    }

    #[tokio::test]
    async fn credentials_at_their_expiry_margin_are_never_handed_out() {
        // Fifteen seconds of life: five of them to serve.
        let f = fake(Duration::from_secs(15));
        assert_eq!(f.ask().await, "ASIA1");
        f.at(4);
        assert_eq!(f.ask().await, "ASIA1");
        f.at(5);
        assert_eq!(f.ask().await, "ASIA2", "served at the expiry margin");
        // Credentials that come expired, or within the margin, by this
        // node's clock (a skewed clock): an error, never the credentials.
        for life in [EXPIRY_MARGIN, Duration::ZERO] {
            let f = fake(life);
            let e = f.p.credentials().await.unwrap_err();
            assert!(
                e.transient() && e.to_string().contains("is it right?"),
                "{e}"
            );
            assert!(!e.to_string().contains("ASIA"), "{e}");
        }
    }

    #[tokio::test]
    async fn a_failed_load_is_shared_by_every_waiter_not_run_again_by_each() {
        // A load that takes a while and fails (an STS timeout).
        let f = fake_with(Some(Duration::from_secs(3600)), Duration::from_millis(300));
        f.fail.store(true, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let v = f.many(64).await;
        assert!(v.iter().all(|r| r.is_err()), "{v:?}");
        assert_eq!(f.attempts(), 1);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn keys_without_expiry_are_loaded_again_every_fifteen_minutes() {
        let f = fake_with(None, Duration::from_millis(1));
        assert_eq!(f.ask().await, "ASIA1");
        f.at(STATIC_REFRESH.as_secs() - 1);
        assert_eq!(f.ask().await, "ASIA1");
        f.settled().await;
        assert_eq!(f.attempts(), 1);
        f.at(STATIC_REFRESH.as_secs());
        f.ask().await;
        f.settled().await;
        assert_eq!(f.ask().await, "ASIA2");
        // Keys that do not expire keep serving through failed reloads.
        f.fail.store(true, Ordering::SeqCst);
        f.at(10 * 86_400);
        assert_eq!(f.ask().await, "ASIA2");
        f.settled().await;
        assert_eq!(f.attempts(), 3);

        // A profile's keys rotated in its file are picked up.
        let dir = temp_dir("rotate");
        let file = dir.join("credentials");
        let write = |id: &str| {
            std::fs::write(
                &file,
                format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = s\n"),
            )
            .unwrap()
        };
        write("AKIAOLD");
        let mut p = CredentialsProvider::with_env(
            settings(None),
            env(&[("AWS_SHARED_CREDENTIALS_FILE", file.to_str().unwrap())]),
        )
        .unwrap();
        let clock = Arc::new(AtomicU64::new(T0));
        let c = clock.clone();
        Arc::get_mut(&mut p.inner).unwrap().now =
            Arc::new(move || UNIX_EPOCH + Duration::from_secs(c.load(Ordering::SeqCst)));
        assert_eq!(p.credentials().await.unwrap().access_key_id, "AKIAOLD");
        write("AKIANEW");
        assert_eq!(p.credentials().await.unwrap().access_key_id, "AKIAOLD");
        clock.store(T0 + STATIC_REFRESH.as_secs(), Ordering::SeqCst);
        p.credentials().await.unwrap();
        settled(&p).await;
        assert_eq!(p.credentials().await.unwrap().access_key_id, "AKIANEW");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A loopback server answering every request with `status`, `headers`
    /// and `body`; what each request's `x-amz-date` said, and when it came.
    async fn answering(
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (String, Arc<parking_lot::Mutex<Vec<(String, SystemTime)>>>) {
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let log = seen.clone();
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let body = body.to_owned();
        let (base, _) = serve_with(move |_, _, head| {
            let date = head
                .lines()
                .find_map(|l| l.strip_prefix("x-amz-date: "))
                .unwrap_or("")
                .trim()
                .to_owned();
            log.lock().push((date, SystemTime::now()));
            (status, extra.clone(), body.clone())
        })
        .await;
        (base, seen)
    }

    fn s3_client(base: &str, p: impl Into<CredentialsProvider>) -> crate::aws::s3::S3Client {
        crate::aws::s3::S3Client::new(
            AwsEndpoint::parse(base, None).unwrap(),
            p,
            "us-east-1",
            true,
        )
        .unwrap()
    }

    fn sqs_client(base: &str, p: impl Into<CredentialsProvider>) -> crate::aws::sqs::SqsClient {
        crate::aws::sqs::SqsClient::new(
            AwsEndpoint::parse(base, None).unwrap(),
            p,
            "us-east-1",
            &format!("{base}/123456789012/q"),
        )
        .unwrap()
    }

    const S3_EXPIRED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>";

    #[tokio::test]
    async fn credentials_aws_refuses_are_dropped_and_the_error_is_the_nodes_not_the_objects() {
        // S3: 400 ExpiredToken for loaded credentials: transient, and the
        // next request loads new ones.
        let f = fake(Duration::from_secs(3600));
        let (s3, _) = answering(400, &[], S3_EXPIRED).await;
        assert_eq!(f.ask().await, "ASIA1");
        let e = s3_client(&s3, f.p.clone())
            .get_object("b", "k", 100)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, AwsError::Refused { code, .. } if code == "ExpiredToken") && e.transient(),
            "{e:?}"
        );
        assert_eq!(f.ask().await, "ASIA2");
        assert_eq!(f.attempts(), 2);
        // A refusal of credentials already replaced drops nothing.
        let old = Arc::new(keys("ASIA1"));
        assert!(!f.p.invalidate(&old));
        assert_eq!(f.ask().await, "ASIA2");
        // ListObjectsV2 and S3's InvalidToken alike.
        let (s3, _) = answering(
            400,
            &[],
            "<Error><Code>InvalidToken</Code><Message>The provided token is malformed or otherwise invalid.</Message></Error>",
        )
        .await;
        let e = s3_client(&s3, f.p.clone())
            .list_objects("b", &crate::aws::s3::ListObjects::under(""))
            .await
            .unwrap_err();
        assert!(
            matches!(e, AwsError::Refused { .. }) && e.transient(),
            "{e:?}"
        );
        assert_eq!(f.ask().await, "ASIA3");

        // SQS, JSON protocol: the query-compatible code, else `__type`.
        let coral = |shape: &str| {
            format!(
                r#"{{"__type":"com.amazon.coral.service#{shape}","message":"The security token included in the request is expired"}}"#
            )
        };
        for (status, headers, body, code) in [
            (
                400,
                vec![],
                coral("ExpiredTokenException"),
                "ExpiredTokenException",
            ),
            (
                403,
                vec![("x-amzn-query-error", "InvalidClientTokenId;Sender")],
                coral("UnrecognizedClientException"),
                "InvalidClientTokenId",
            ),
            (
                403,
                vec![],
                coral("UnrecognizedClientException:http://internal.amazon.com/coral/"),
                "UnrecognizedClientException",
            ),
        ] {
            let before = f.attempts();
            let (sqs, _) = answering(status, &headers, &body).await;
            let e = sqs_client(&sqs, f.p.clone())
                .receive(1, Duration::ZERO, Duration::from_secs(30))
                .await
                .unwrap_err();
            assert!(
                matches!(&e, AwsError::Refused { code: c, .. } if c == code) && e.transient(),
                "{code}: {e:?}"
            );
            f.ask().await;
            assert_eq!(f.attempts(), before + 1, "{code}: loaded again");
        }
        // SQS's own errors stay what they were.
        let (sqs, _) = answering(
            400,
            &[("x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender")],
            r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}"#,
        )
        .await;
        let e = sqs_client(&sqs, f.p.clone()).delete("r").await.unwrap_err();
        assert!(
            matches!(&e, AwsError::Status { code, .. } if code == "AWS.SimpleQueueService.NonExistentQueue")
                && !e.transient(),
            "{e:?}"
        );

        // Fixed keys with a session token (temporary, from the config):
        // the node's trouble too, though nothing can be reloaded.
        let fixed = CredentialsProvider::fixed(keys("ASIAFIXED"));
        let (s3, _) = answering(400, &[], S3_EXPIRED).await;
        let e = s3_client(&s3, fixed.clone())
            .get_object("b", "k", 100)
            .await
            .unwrap_err();
        assert!(
            matches!(e, AwsError::Refused { .. }) && e.transient(),
            "{e:?}"
        );
        assert_eq!(
            fixed.credentials().await.unwrap().access_key_id,
            "ASIAFIXED"
        );
        // A long-term key that AWS does not know: the config's, as it was.
        let long_term = AwsCredentials {
            session_token: None,
            ..keys("AKIAFIXED")
        };
        let (s3, _) = answering(
            403,
            &[],
            "<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>",
        )
        .await;
        let e = s3_client(&s3, long_term)
            .get_object("b", "k", 100)
            .await
            .unwrap_err();
        assert!(
            matches!(e, AwsError::Status { .. }) && !e.transient(),
            "{e:?}"
        );
        // A request AWS finds dated wrongly: this node's clock, not the object.
        let (s3, _) = answering(
            403,
            &[],
            "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>",
        )
        .await;
        let e = s3_client(&s3, f.p.clone())
            .get_object("b", "k", 100)
            .await
            .unwrap_err();
        assert!(
            matches!(e, AwsError::Status { .. }) && e.transient(),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_request_is_dated_when_it_is_signed_not_before_waiting_for_credentials() {
        // Loading credentials takes three seconds.
        let f = fake_with(Some(Duration::from_secs(3600)), Duration::from_secs(3));
        // The fake's clock is for expiry only: make it the real one.
        f.clock.store(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            Ordering::SeqCst,
        );
        let (s3, seen) = answering(404, &[], "<Error><Code>NoSuchKey</Code></Error>").await;
        let e = s3_client(&s3, f.p.clone())
            .get_object("b", "k", 100)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "NoSuchKey");
        let (date, came) = seen.lock()[0].clone();
        let iso = format!(
            "{}-{}-{}T{}:{}:{}Z",
            &date[0..4],
            &date[4..6],
            &date[6..8],
            &date[9..11],
            &date[11..13],
            &date[13..15]
        );
        let dated = parse_rfc3339(&iso).unwrap();
        let late = came.duration_since(dated).unwrap_or_default();
        // Dated to the second: under two seconds late is dated after the
        // wait; before it would be three or more.
        assert!(
            late < Duration::from_secs(2),
            "dated {late:?} before it was sent"
        );
    }

    #[tokio::test]
    async fn credentials_answers_that_do_not_parse_are_described_never_quoted() {
        let bad = format!(
            r#"{{"AccessKeyId":"ASIAX","SecretAccessKey":"{SECRET}","Token":7,"Expiration":"x"}}"#
        );
        let busy =
            format!(r#"{{"code":"InternalError","message":"busy","SecretAccessKey":"{SECRET}"}}"#);
        let (base, _) = serve(move |_, path, _| match path {
            "/bad" => (200, bad.clone()),
            _ => (500, busy.clone()),
        })
        .await;
        for (path, want, transient) in [
            (
                "/bad",
                "the answer is not credentials JSON (Data at line 1 column",
                false,
            ),
            ("/busy", "HTTP 500 InternalError: busy", true),
        ] {
            let uri = format!("{base}{path}");
            let p = CredentialsProvider::with_env(
                settings(None),
                env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)]),
            )
            .unwrap();
            let e = p.credentials().await.unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(text.contains(want), "{text}");
            assert_eq!(e.transient(), transient, "{text}");
            assert!(!text.contains(SECRET) && !text.contains("ASIAX"), "{text}");
        }
    }

    #[tokio::test]
    async fn profiles_that_name_a_role_sso_or_a_process_stop_the_chain_with_a_pointer() {
        let dir = temp_dir("indirect");
        let config = dir.join("config");
        let creds = dir.join("credentials");
        let files = |c: &str, k: &str| {
            std::fs::write(&config, c).unwrap();
            std::fs::write(&creds, k).unwrap();
        };
        let token = dir.join("token");
        std::fs::write(&token, "jwt").unwrap();
        // Web identity would answer next: it must not get the chance.
        let e = || {
            env(&[
                ("AWS_CONFIG_FILE", config.to_str().unwrap()),
                ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
                ("AWS_ROLE_ARN", "arn:aws:iam::210987654321:role/web"),
            ])
        };
        // The default profile, a role from another profile's keys.
        files(
            "[default]\nrole_arn = arn:aws:iam::210987654321:role/r\nsource_profile = base\n",
            "[base]\naws_access_key_id = AKIABASE\naws_secret_access_key = s\n",
        );
        let m = chain(None, e()).await.unwrap_err();
        assert!(
            m.contains("profile \"default\"")
                && m.contains("sets role_arn")
                && m.contains("set role_arn (and external_id) in Trail's config"),
            "{m}"
        );
        // A role beside keys: AWS's tools take the role, so no keys either.
        files(
            "[profile dev]\nrole_arn = arn:aws:iam::210987654321:role/r\nsource_profile = dev\n",
            "[dev]\naws_access_key_id = AKIADEV\naws_secret_access_key = s\n",
        );
        let m = chain(Some("dev"), e()).await.unwrap_err();
        assert!(
            m.contains("profile \"dev\"") && m.contains("role_arn"),
            "{m}"
        );
        // SSO.
        files(
            "[default]\nsso_session = corp\nsso_account_id = 210987654321\nsso_role_name = r\n",
            "",
        );
        let m = chain(None, e()).await.unwrap_err();
        assert!(m.contains("sets sso_account_id"), "{m}");
        // A process, or a credential source, and no keys.
        for k in [
            "credential_process = /bin/creds",
            "credential_source = Ec2InstanceMetadata",
        ] {
            files(&format!("[default]\n{k}\n"), "");
            let m = chain(None, e()).await.unwrap_err();
            assert!(
                m.contains(k.split(' ').next().unwrap())
                    && m.contains("role_arn in Trail's config"),
                "{m}"
            );
        }
        // A process beside static keys: the keys, as botocore reads the
        // credentials file first.
        files(
            "[default]\ncredential_process = /bin/creds\n",
            "[default]\naws_access_key_id = AKIAKEYS\naws_secret_access_key = s\n",
        );
        assert_eq!(chain(None, e()).await.unwrap().0, "AKIAKEYS");
        // Keys indented right after their header are keys.
        files(
            "",
            "[default]\n  aws_access_key_id = AKIAINDENTED\n  aws_secret_access_key = s\n",
        );
        assert_eq!(chain(None, e()).await.unwrap().0, "AKIAINDENTED");
        // A default profile with nothing of the kind: on down the chain.
        files("[default]\nregion = eu-west-1\n", "");
        let bare = env(&[
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
        ]);
        let m = chain(None, bare).await.unwrap_err();
        assert!(
            m.starts_with("no AWS credentials found") && m.contains("(no keys in it)"),
            "{m}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn files_are_read_within_their_cap_whatever_they_are() {
        let dir = temp_dir("files");
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let big = dir.join("big");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        for (file, want) in [
            // A device whose length says 0 and that never ends.
            ("/dev/zero", "larger than"),
            (fifo.to_str().unwrap(), "not a regular file"),
            (big.to_str().unwrap(), "larger than"),
        ] {
            let got = tokio::time::timeout(
                Duration::from_secs(10),
                chain(None, env(&[("AWS_SHARED_CREDENTIALS_FILE", file)])),
            )
            .await
            .unwrap_or_else(|_| panic!("{file}: still reading"))
            .unwrap_err();
            assert!(got.contains(want), "{file}: {got}");
            let token = tokio::time::timeout(
                Duration::from_secs(10),
                chain(
                    None,
                    env(&[
                        ("AWS_WEB_IDENTITY_TOKEN_FILE", file),
                        ("AWS_ROLE_ARN", "arn:aws:iam::210987654321:role/web"),
                    ]),
                ),
            )
            .await
            .unwrap_or_else(|_| panic!("{file}: still reading"))
            .unwrap_err();
            assert!(token.contains(want), "{file}: {token}");
        }
        // Within the cap, /proc's zero-length files read whole.
        assert!(read_small(Path::new("/proc/self/status"))
            .unwrap()
            .unwrap()
            .contains("Pid:"));
        assert_eq!(read_small(&dir.join("none")).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn expirations_are_strict_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_secs(1_573_306_481);
        for ok in [
            "2019-11-09T13:34:41Z",
            "2019-11-09T13:34:41.359Z",
            "2019-11-09t13:34:41z",
            "2019-11-09T15:34:41+02:00",
            "2019-11-09T11:04:41.5-02:30",
            "2019-11-09T13:34:41+00:00",
        ] {
            assert_eq!(parse_rfc3339(ok), Some(t), "{ok}");
        }
        assert_eq!(
            parse_rfc3339("2020-02-29T00:00:00Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_582_934_400))
        );
        for bad in [
            "2019-13-09T13:34:41Z",
            "2019-00-09T13:34:41Z",
            "2019-11-31T13:34:41Z",
            "2019-02-29T13:34:41Z",
            "2019/11/09T13:34:41Z",
            "2019-11-09 13:34:41Z",
            "2019-11-09T13-34-41Z",
            "2019-11-09T24:00:00Z",
            "2019-11-09T13:60:00Z",
            "2019-11-09T13:34:41",
            "2019-11-09T13:34:41.Z",
            "2019-11-09T13:34:41+0200",
            "2019-11-09T13:34:41+24:00",
            "2019-11-09T13:34:41Zjunk",
            "+019-11-09T13:34:41Z",
            "2019-11-09T13:34:4Z",
            "soon",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        // What the signer's lenient reader (Alibaba's tags) would take.
        assert!(sign::parse_iso8601("2019-13-09T13:34:41Z").is_some());
    }

    #[test]
    fn sts_answers_and_errors_parse() {
        // AWS's documented AssumeRole answer (its example values).
        let ok = br#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <SourceIdentity>Alice</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764&amp;bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQW</SessionToken>
      <Expiration>2019-11-09T13:34:41Z</Expiration>
    </Credentials>
    <PackedPolicySize>6</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>"#;
        let (c, expires) = parse_sts_credentials("AssumeRole", ok).unwrap();
        assert_eq!(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(c.secret_access_key.expose(), SECRET);
        assert_eq!(
            c.session_token.unwrap().expose(),
            "AQoDYXdzEPT//////////wEXAMPLEtc764&bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQW"
        );
        assert_eq!(sign::iso8601(expires), "2019-11-09T13:34:41Z");
        // Fractions of a second, as STS sometimes writes them.
        let frac = String::from_utf8_lossy(ok).replace("41Z", "41.359Z");
        assert!(parse_sts_credentials("AssumeRole", frac.as_bytes()).is_ok());
        // The wrong operation's answer, a missing field: named, no values.
        let e = parse_sts_credentials("AssumeRoleWithWebIdentity", ok).unwrap_err();
        assert!(e.contains("no AssumeRoleWithWebIdentityResult"), "{e}");
        let cut = String::from_utf8_lossy(ok)
            .replace("<SessionToken>", "<X>")
            .replace("</SessionToken>", "</X>");
        let e = parse_sts_credentials("AssumeRole", cut.as_bytes()).unwrap_err();
        assert_eq!(e, "Credentials has no SessionToken");
        let bad = String::from_utf8_lossy(ok).replace("2019-11-09T13:34:41Z", "soon");
        assert!(parse_sts_credentials("AssumeRole", bad.as_bytes()).is_err());

        let err = br#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User: arn:aws:iam::123456789012:user/x is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::210987654321:role/r &amp; more</Message>
  </Error>
  <RequestId>4b3d3f2e-0000-0000-0000-000000000000</RequestId>
</ErrorResponse>"#;
        let e = crate::aws::xml::error_document("AssumeRole", 403, err);
        assert_eq!(e.code(), "AccessDenied");
        assert!(!e.transient());
        assert!(
            e.to_string()
                .ends_with("on resource: arn:aws:iam::210987654321:role/r & more"),
            "{e}"
        );
        let e = crate::aws::xml::error_document("AssumeRole", 503, b"<html>busy</html>");
        assert_eq!(e.code(), "503");
        assert!(e.transient());
    }

    #[test]
    fn debug_output_and_errors_hold_no_secret() {
        let s = CredentialsSettings {
            keys: Some(keys("AKIAVISIBLE")),
            assume_role: Some(AssumeRole {
                role_arn: "arn:aws:iam::210987654321:role/reader".into(),
                external_id: Some(Secret::new("external-id-value")),
                role_session_name: "trail".into(),
                duration: Duration::from_secs(3600),
            }),
            ..settings(Some("dev"))
        };
        let text = format!("{s:?} {:?}", keys("AKIAVISIBLE"));
        assert!(
            text.contains("AKIAVISIBLE") && text.contains("reader"),
            "{text}"
        );
        for secret in [SECRET, "session-token-value", "external-id-value"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let p = CredentialsProvider::fixed(keys("AKIAVISIBLE"));
        let text = format!("{p:?}");
        assert!(
            !text.contains(SECRET) && !text.contains("session-token"),
            "{text}"
        );
    }

    /// The devstack S3/SQS/STS server with a role that needs an external id.
    async fn devstack() -> (trail_devstack::aws::S3Server, String) {
        let mut c = trail_devstack::aws::S3Config::on("127.0.0.1:0".parse().unwrap());
        c.roles = vec!["arn:aws:iam::210987654321:role/reader:ext-1234".into()];
        c.require_role = true;
        c.web_identity_token = Some("the.jwt.token".into());
        c.buckets = vec!["cross-account".into()];
        let s = trail_devstack::aws::S3Server::start(c.clone())
            .await
            .unwrap();
        let base = format!("http://{}", s.local_addr());
        (s, base)
    }

    fn devstack_settings(base: &str, external_id: Option<&str>) -> CredentialsSettings {
        let c = trail_devstack::aws::S3Config::on("127.0.0.1:0".parse().unwrap());
        CredentialsSettings {
            keys: Some(AwsCredentials {
                access_key_id: c.access_key_id,
                secret_access_key: Secret::new(c.secret_access_key),
                session_token: None,
            }),
            profile: None,
            region: "us-east-1".into(),
            sts_endpoint: AwsEndpoint::parse(base, None).unwrap(),
            assume_role: Some(AssumeRole {
                role_arn: "arn:aws:iam::210987654321:role/reader".into(),
                external_id: external_id.map(Secret::new),
                role_session_name: "trail".into(),
                duration: Duration::from_secs(900),
            }),
        }
    }

    #[tokio::test]
    async fn assume_role_signs_with_the_base_keys_and_the_role_reads_the_bucket() {
        let (server, base) = devstack().await;
        let p = CredentialsProvider::new(devstack_settings(&base, Some("ext-1234"))).unwrap();
        let c = p.credentials().await.unwrap();
        assert!(c.access_key_id.starts_with("ASIA"), "{c:?}");
        assert_eq!(p.provider(), Some("assume role"));
        let s3 = crate::aws::s3::S3Client::new(
            AwsEndpoint::parse(&base, None).unwrap(),
            p.clone(),
            "us-east-1",
            true,
        )
        .unwrap();
        let page = s3
            .list_objects("cross-account", &crate::aws::s3::ListObjects::under(""))
            .await
            .unwrap();
        assert!(page.objects.is_empty());
        // The base key alone may not read (devstack --require-role).
        let direct = crate::aws::s3::S3Client::new(
            AwsEndpoint::parse(&base, None).unwrap(),
            devstack_settings(&base, None).keys.unwrap(),
            "us-east-1",
            true,
        )
        .unwrap();
        let e = direct
            .list_objects("cross-account", &crate::aws::s3::ListObjects::under(""))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "AccessDenied", "{e}");
        // Wrong or missing external id: STS's AccessDenied, and no secret
        // in the error.
        for x in [Some("ext-wrong"), None] {
            let p = CredentialsProvider::new(devstack_settings(&base, x)).unwrap();
            let e = p.credentials().await.unwrap_err();
            assert!(
                matches!(&e, CredentialsError::Sts { source, .. } if source.code() == "AccessDenied"),
                "{e}"
            );
            assert!(!e.to_string().contains("ext-"), "{e}");
            // Through a client: the node's trouble, tried again, never a
            // reason to give up on an object.
            let s3 = crate::aws::s3::S3Client::new(
                AwsEndpoint::parse(&base, None).unwrap(),
                p,
                "us-east-1",
                true,
            )
            .unwrap();
            let e = s3.get_object("cross-account", "k", 100).await.unwrap_err();
            assert!(
                matches!(e, AwsError::Credentials { .. }) && e.transient(),
                "{e}"
            );
            assert!(
                e.to_string()
                    .starts_with("GetObject: assume role: AssumeRole: HTTP 403 AccessDenied"),
                "{e}"
            );
        }
        server.shutdown().await;
    }

    #[tokio::test]
    async fn web_identity_trades_the_token_file_for_a_role_session() {
        let (server, base) = devstack().await;
        let dir = temp_dir("web");
        let token = dir.join("token");
        std::fs::write(&token, "the.jwt.token\n").unwrap();
        let mut s = settings(None);
        s.sts_endpoint = AwsEndpoint::parse(&base, None).unwrap();
        let e = env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::210987654321:role/reader"),
        ]);
        let p = CredentialsProvider::with_env(s.clone(), e.clone()).unwrap();
        assert!(p
            .credentials()
            .await
            .unwrap()
            .access_key_id
            .starts_with("ASIA"));
        assert_eq!(p.provider(), Some("web identity"));
        std::fs::write(&token, "another.jwt.token").unwrap();
        let p = CredentialsProvider::with_env(s, e).unwrap();
        let e = p.credentials().await.unwrap_err();
        assert!(e.to_string().contains("InvalidIdentityToken"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        server.shutdown().await;
    }
}
