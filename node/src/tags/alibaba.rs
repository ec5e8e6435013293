//! Alibaba Cloud tags: the Tag service's `ListTagResources` by ARN (2018-08-28,
//! up to 50 ARNs per call, `NextToken` paging), signed ACS3-HMAC-SHA256 as
//! current SDKs sign, with member accounts reached through STS `AssumeRole`
//! into a trusting role (the management account uses its own key).
//!
//! Credentials are cached per account and refreshed at 80 % of their
//! lifetime, one refresh at a time per account; an account whose AssumeRole
//! fails backs off (30 s doubling to 5 min) without holding the others up.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_json::Value;

use super::remote::{FetchError, FetchFuture, Fetched, Scope, TagFetcher};
use crate::net::sign;
use crate::secret::Secret;

/// Where and as whom to call.
#[derive(Clone)]
pub struct AlibabaConfig {
    /// `https://tag.{region}.aliyuncs.com` (`{region}` replaced).
    pub tag_endpoint: String,
    /// `https://sts.aliyuncs.com`.
    pub sts_endpoint: String,
    /// Dial this `host:port` for every call instead (devstack, proxies); the
    /// Host header keeps the endpoint's host.
    pub address: Option<String>,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    /// The account the key belongs to; others are assumed into.
    pub management_account: String,
    /// `ResourceDirectoryAccountAccessRole`.
    pub role_name: String,
    pub session_secs: u64,
    /// For global resources (RAM), which have no region in their ARN.
    pub default_region: String,
    /// List every tagged resource of an (account, region) at once — pages of
    /// 1000 — instead of asking by ARN; afterwards a resource not listed has
    /// no tags, until `sweep_ttl` passes or the trail changes its tags.
    pub sweep: bool,
    pub sweep_ttl: Duration,
    /// Ask ECS and SLB's own ListTagResources instead of the Tag service
    /// (accounts without it, as the seed did); other products get no tags.
    pub per_product: bool,
    /// `https://ecs.{region}.aliyuncs.com`.
    pub ecs_endpoint: String,
    /// `https://slb.{region}.aliyuncs.com`.
    pub slb_endpoint: String,
}

impl std::fmt::Debug for AlibabaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlibabaConfig")
            .field("tag_endpoint", &self.tag_endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("management_account", &self.management_account)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Creds {
    key: String,
    secret: Secret,
    token: Option<Secret>,
    /// Refresh after this.
    refresh_at: Instant,
}

enum AccountState {
    Ready(Creds),
    /// AssumeRole failed; retry after this.
    Failing {
        until: Instant,
        pause: Duration,
        why: FetchError,
    },
}

pub struct AlibabaTags {
    cfg: AlibabaConfig,
    http: reqwest::Client,
    accounts: parking_lot::Mutex<HashMap<String, AccountState>>,
    /// One AssumeRole at a time per account.
    refreshing: KeyedLocks<String>,
    pub sts_calls: std::sync::atomic::AtomicU64,
    /// Sweep mode: each scope's last listing, and when it was made.
    swept: parking_lot::Mutex<HashMap<Scope, (Instant, Arc<Fetched>)>>,
    /// Resources whose tags changed since their scope was listed.
    dirty: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// One listing at a time per scope.
    sweeping: KeyedLocks<Scope>,
}

/// A lock per key (account, scope), so one slow key holds up no other.
struct KeyedLocks<K>(parking_lot::Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>);

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        KeyedLocks(parking_lot::Mutex::default())
    }
}

impl<K: std::hash::Hash + Eq + Clone> KeyedLocks<K> {
    async fn lock(&self, key: &K) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self.0.lock().entry(key.clone()).or_default().clone();
        m.lock_owned().await
    }
}

impl AlibabaTags {
    pub fn new(cfg: AlibabaConfig) -> Result<AlibabaTags, reqwest::Error> {
        let http =
            crate::net::http::client_builder(Duration::from_secs(5), Duration::from_secs(20))
                .build()?;
        Ok(AlibabaTags {
            cfg,
            http,
            accounts: Default::default(),
            refreshing: Default::default(),
            sts_calls: Default::default(),
            swept: Default::default(),
            dirty: Default::default(),
            sweeping: Default::default(),
        })
    }

    /// One signed RPC call (ACS3): action, version, parameters in the query.
    async fn call(
        &self,
        endpoint: &str,
        action: &str,
        version: &str,
        params: &[(String, String)],
        creds: &Creds,
    ) -> Result<Value, FetchError> {
        let url = url::Url::parse(endpoint)
            .map_err(|e| FetchError::Failed(format!("endpoint {endpoint}: {e}")))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let now = SystemTime::now();
        let mut headers = vec![
            ("host".to_owned(), host.clone()),
            ("x-acs-action".to_owned(), action.to_owned()),
            ("x-acs-version".to_owned(), version.to_owned()),
            ("x-acs-date".to_owned(), sign::iso8601(now)),
            (
                "x-acs-signature-nonce".to_owned(),
                format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            ),
            (
                "x-acs-content-sha256".to_owned(),
                sign::EMPTY_SHA256.to_owned(),
            ),
        ];
        if let Some(t) = &creds.token {
            headers.push(("x-acs-security-token".to_owned(), t.expose().to_owned()));
        }
        let (signed, signature) = sign::acs3_signature(
            creds.secret.expose(),
            "POST",
            "/",
            params,
            &headers,
            sign::EMPTY_SHA256,
        );
        let base = match &self.cfg.address {
            Some(a) => format!("{}://{a}/", url.scheme()),
            None => format!("{}://{host}/", url.scheme()),
        };
        let mut req = self
            .http
            .post(format!("{base}?{}", sign::canonical_query(params)))
            .header(
                "authorization",
                format!(
                    "ACS3-HMAC-SHA256 Credential={},SignedHeaders={signed},Signature={signature}",
                    creds.key
                ),
            );
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let (status, body) = super::remote::send_json(req, action).await?;
        if status == 200 {
            return Ok(body);
        }
        let code = body["Code"].as_str().unwrap_or("").to_owned();
        let msg = format!(
            "{action}: HTTP {status} {code}: {}",
            body["Message"].as_str().unwrap_or("")
        );
        Err(if code.starts_with("Throttling") {
            FetchError::Throttled(msg)
        } else if status >= 500 || code == "ServiceUnavailable" || code == "InternalError" {
            FetchError::Failed(msg)
        } else {
            FetchError::Denied(msg)
        })
    }

    fn main_creds(&self) -> Creds {
        Creds {
            key: self.cfg.access_key_id.clone(),
            secret: self.cfg.access_key_secret.clone(),
            token: None,
            refresh_at: Instant::now() + Duration::from_secs(u64::MAX / 4),
        }
    }

    /// The credentials for `account`: the main key, or a (cached) STS session.
    async fn creds_for(&self, account: &str) -> Result<Creds, FetchError> {
        if account == self.cfg.management_account {
            return Ok(self.main_creds());
        }
        if let Some(c) = self.cached(account)? {
            return Ok(c);
        }
        let _one = self.refreshing.lock(&account.to_owned()).await;
        if let Some(c) = self.cached(account)? {
            return Ok(c);
        }
        self.sts_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let params = vec![
            (
                "RoleArn".to_owned(),
                format!(
                    "acs:ram::{account}:role/{}",
                    self.cfg.role_name.to_ascii_lowercase()
                ),
            ),
            ("RoleSessionName".to_owned(), "trail-tags".to_owned()),
            (
                "DurationSeconds".to_owned(),
                self.cfg.session_secs.to_string(),
            ),
        ];
        let answer = self
            .call(
                &self.cfg.sts_endpoint,
                "AssumeRole",
                "2015-04-01",
                &params,
                &self.main_creds(),
            )
            .await
            .and_then(|v| {
                serde_json::from_value::<AssumeRoleAnswer>(v)
                    .map_err(|e| FetchError::Failed(format!("AssumeRole: {e}")))
            });
        let mut accounts = self.accounts.lock();
        match answer {
            Ok(a) => {
                let c = a.credentials;
                let lifetime = sign::parse_iso8601(&c.expiration)
                    .and_then(|t| t.duration_since(SystemTime::now()).ok())
                    .unwrap_or(Duration::from_secs(self.cfg.session_secs));
                let creds = Creds {
                    key: c.access_key_id,
                    secret: Secret::new(c.access_key_secret),
                    token: Some(Secret::new(c.security_token)),
                    refresh_at: Instant::now() + lifetime.mul_f64(0.8),
                };
                accounts.insert(account.to_owned(), AccountState::Ready(creds.clone()));
                tracing::info!(account, ?lifetime, "assumed role for tag lookups");
                Ok(creds)
            }
            Err(why) => {
                let pause = match accounts.get(account) {
                    Some(AccountState::Failing { pause, .. }) => {
                        (*pause * 2).min(Duration::from_secs(300))
                    }
                    _ => Duration::from_secs(30),
                };
                tracing::warn!(account, error = %why, ?pause, "AssumeRole failed; the account backs off");
                accounts.insert(
                    account.to_owned(),
                    AccountState::Failing {
                        until: Instant::now() + pause,
                        pause,
                        why: why.clone(),
                    },
                );
                Err(why)
            }
        }
    }

    /// A cached session still good, or the failure an account backs off with.
    fn cached(&self, account: &str) -> Result<Option<Creds>, FetchError> {
        match self.accounts.lock().get(account) {
            Some(AccountState::Ready(c)) if Instant::now() < c.refresh_at => Ok(Some(c.clone())),
            Some(AccountState::Failing { until, why, .. }) if Instant::now() < *until => {
                Err(why.clone())
            }
            _ => Ok(None),
        }
    }

    async fn list_tag_resources(
        &self,
        scope: &Scope,
        arns: &[Arc<str>],
    ) -> Result<Fetched, FetchError> {
        let creds = self.creds_for(&scope.account).await?;
        let region = if scope.region.is_empty() || scope.region == "*" {
            self.cfg.default_region.as_str()
        } else {
            scope.region.as_str()
        };
        let endpoint = self.cfg.tag_endpoint.replace("{region}", region);
        let mut found: Fetched = HashMap::new();
        let mut next = String::new();
        loop {
            let mut params: Vec<(String, String)> = vec![
                ("RegionId".into(), region.into()),
                ("PageSize".into(), "1000".into()),
            ];
            // No ARNs: every tagged resource of the scope (sweep mode).
            for (i, a) in arns.iter().enumerate() {
                params.push((format!("ResourceARN.{}", i + 1), a.to_string()));
            }
            if !next.is_empty() {
                params.push(("NextToken".into(), next.clone()));
            }
            let v = self
                .call(&endpoint, "ListTagResources", "2018-08-28", &params, &creds)
                .await?;
            let page: TagPage = serde_json::from_value(v)
                .map_err(|e| FetchError::Failed(format!("ListTagResources: {e}")))?;
            for r in page.tag_resources {
                let tags: BTreeMap<String, String> =
                    r.tags.into_iter().map(|t| (t.key, t.value)).collect();
                found.entry(r.resource_arn).or_default().extend(tags);
            }
            match page.next_token {
                Some(t) if !t.is_empty() => next = t,
                _ => return Ok(found),
            }
        }
    }
}

impl AlibabaTags {
    /// The scope's listing, if made within `sweep_ttl`.
    fn listing(&self, scope: &Scope) -> Option<Arc<Fetched>> {
        self.swept
            .lock()
            .get(scope)
            .filter(|(t, _)| t.elapsed() < self.cfg.sweep_ttl)
            .map(|(_, l)| l.clone())
    }

    /// Sweep mode: list the scope once per `sweep_ttl` and answer from the
    /// listing (absent = untagged); resources the trail changed since are
    /// asked by ARN.
    async fn fetch_swept(&self, scope: &Scope, arns: &[Arc<str>]) -> Result<Fetched, FetchError> {
        let listing = match self.listing(scope) {
            Some(l) => l,
            None => {
                let _one = self.sweeping.lock(scope).await;
                match self.listing(scope) {
                    Some(l) => l,
                    None => {
                        let all = Arc::new(self.list_tag_resources(scope, &[]).await?);
                        tracing::debug!(account = %scope.account, region = %scope.region, resources = all.len(), "scope listed");
                        self.swept
                            .lock()
                            .insert(scope.clone(), (Instant::now(), all.clone()));
                        // The listing is newer than any change seen before it.
                        self.dirty
                            .lock()
                            .retain(|a| Scope::of(a).as_ref() != Some(scope));
                        // The whole listing goes to the cache.
                        return Ok((*all).clone());
                    }
                }
            }
        };
        let changed: Vec<Arc<str>> = {
            let mut dirty = self.dirty.lock();
            arns.iter()
                .filter(|a| dirty.remove(&***a))
                .cloned()
                .collect()
        };
        let mut out: Fetched = arns
            .iter()
            .filter(|a| !changed.contains(a))
            .filter_map(|a| listing.get(&**a).map(|t| (a.to_string(), t.clone())))
            .collect();
        if !changed.is_empty() {
            out.extend(self.list_tag_resources(scope, &changed).await?);
        }
        Ok(out)
    }
}

impl AlibabaTags {
    /// ECS 2014-05-26 / SLB 2014-05-15 ListTagResources: by resource type
    /// and id (50 / 20 per call), one row per tag.
    async fn per_product(&self, scope: &Scope, arns: &[Arc<str>]) -> Result<Fetched, FetchError> {
        let creds = self.creds_for(&scope.account).await?;
        let region = scope.region.as_str();
        // (product, type) → ids
        let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for arn in arns {
            let mut f = arn.splitn(6, ':');
            let (Some(_), Some(_), Some(product), Some(_), Some(_), Some(res)) =
                (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            if let (Some((kind, id)), true) =
                (res.split_once('/'), matches!(product, "ecs" | "slb"))
            {
                groups
                    .entry((product.to_owned(), kind.to_owned()))
                    .or_default()
                    .push(id.to_owned());
            }
        }
        let mut found: Fetched = HashMap::new();
        for ((product, kind), ids) in groups {
            let (endpoint, version, max) = if product == "ecs" {
                (&self.cfg.ecs_endpoint, "2014-05-26", 50)
            } else {
                (&self.cfg.slb_endpoint, "2014-05-15", 20)
            };
            let endpoint = endpoint.replace("{region}", region);
            for chunk in ids.chunks(max) {
                let mut next = String::new();
                loop {
                    let mut params: Vec<(String, String)> = vec![
                        ("RegionId".into(), region.into()),
                        ("ResourceType".into(), kind.clone()),
                    ];
                    for (i, id) in chunk.iter().enumerate() {
                        params.push((format!("ResourceId.{}", i + 1), id.clone()));
                    }
                    if !next.is_empty() {
                        params.push(("NextToken".into(), next.clone()));
                    }
                    let v = self
                        .call(&endpoint, "ListTagResources", version, &params, &creds)
                        .await?;
                    for row in v["TagResources"]["TagResource"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let (Some(id), Some(k), Some(val)) = (
                            row["ResourceId"].as_str(),
                            row["TagKey"].as_str(),
                            row["TagValue"].as_str(),
                        ) else {
                            continue;
                        };
                        let arn =
                            format!("arn:acs:{product}:{region}:{}:{kind}/{id}", scope.account);
                        found
                            .entry(arn)
                            .or_default()
                            .insert(k.to_owned(), val.to_owned());
                    }
                    match v["NextToken"].as_str() {
                        Some(t) if !t.is_empty() => next = t.to_owned(),
                        _ => break,
                    }
                }
            }
        }
        Ok(found)
    }
}

impl TagFetcher for AlibabaTags {
    fn max_batch(&self, _scope: &Scope) -> usize {
        50
    }

    fn fetch<'a>(&'a self, scope: &'a Scope, arns: &'a [Arc<str>]) -> FetchFuture<'a> {
        if self.cfg.per_product {
            Box::pin(self.per_product(scope, arns))
        } else if self.cfg.sweep {
            Box::pin(self.fetch_swept(scope, arns))
        } else {
            Box::pin(self.list_tag_resources(scope, arns))
        }
    }

    fn invalidated(&self, arn: &str) {
        if self.cfg.sweep {
            self.dirty.lock().insert(arn.to_owned());
        }
    }
}

/// Every decoder of an Alibaba tag or STS answer, over bytes from a fuzzer
/// (`crate::fuzz`).
pub(crate) fn decode_answers(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = serde_json::from_value::<TagPage>(v.clone());
    let _ = serde_json::from_value::<AssumeRoleAnswer>(v);
}

#[derive(Deserialize)]
struct AssumeRoleAnswer {
    #[serde(rename = "Credentials")]
    credentials: StsCredentials,
}

#[derive(Deserialize)]
struct StsCredentials {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "AccessKeySecret")]
    access_key_secret: String,
    #[serde(rename = "SecurityToken")]
    security_token: String,
    #[serde(rename = "Expiration")]
    expiration: String,
}

#[derive(Deserialize)]
struct TagPage {
    #[serde(rename = "NextToken", default)]
    next_token: Option<String>,
    #[serde(rename = "TagResources", default)]
    tag_resources: Vec<TagResource>,
}

#[derive(Deserialize)]
struct TagResource {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    #[serde(rename = "Tags", default)]
    tags: Vec<KeyValue>,
}

#[derive(Deserialize)]
pub(super) struct KeyValue {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: String,
}
