//! AWS tags for CloudTrail events: the Resource Groups Tagging API's
//! `GetResources` by ARN list (up to 100 per call; unknown ARNs are omitted),
//! JSON 1.1, signed SigV4 (service `tagging`), once per region.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::json;

use super::alibaba::KeyValue;
use super::remote::{FetchError, FetchFuture, Fetched, Scope, TagFetcher};
use crate::net::sign;
use crate::secret::Secret;

#[derive(Clone)]
pub struct AwsConfig {
    /// `https://tagging.{region}.amazonaws.com`.
    pub endpoint: String,
    pub address: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl std::fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsConfig")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

pub struct AwsTags {
    cfg: AwsConfig,
    http: reqwest::Client,
}

impl AwsTags {
    pub fn new(cfg: AwsConfig) -> Result<AwsTags, reqwest::Error> {
        Ok(AwsTags {
            cfg,
            http: crate::net::http::client_builder(Duration::from_secs(5), Duration::from_secs(20))
                .build()?,
        })
    }

    async fn get_resources(&self, scope: &Scope, arns: &[Arc<str>]) -> Result<Fetched, FetchError> {
        let endpoint = self.cfg.endpoint.replace("{region}", &scope.region);
        let url = url::Url::parse(&endpoint)
            .map_err(|e| FetchError::Failed(format!("endpoint {endpoint}: {e}")))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let body = serde_json::to_vec(&json!({
            "ResourceARNList": arns.iter().map(|a| &**a).collect::<Vec<&str>>()
        }))
        .expect("serializes");
        let mut headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
            ("host".to_owned(), host.clone()),
            ("x-amz-date".to_owned(), sign::amz_date(SystemTime::now())),
            (
                "x-amz-target".to_owned(),
                "ResourceGroupsTaggingAPI_20170126.GetResources".to_owned(),
            ),
        ];
        if let Some(t) = &self.cfg.session_token {
            headers.push(("x-amz-security-token".to_owned(), t.expose().to_owned()));
        }
        let auth = sign::sigv4_authorization(
            &self.cfg.access_key_id,
            self.cfg.secret_access_key.expose(),
            &scope.region,
            "tagging",
            "POST",
            "/",
            &[],
            &headers,
            &sign::sha256_hex(&body),
        );
        let target = match &self.cfg.address {
            Some(a) => format!("{}://{a}/", url.scheme()),
            None => format!("{}://{host}/", url.scheme()),
        };
        let mut req = self
            .http
            .post(target)
            .header("authorization", auth)
            .body(body);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let (status, v) = super::remote::send_json(req, "GetResources").await?;
        if status != 200 {
            let kind = v["__type"]
                .as_str()
                .unwrap_or("")
                .rsplit('#')
                .next()
                .unwrap_or("")
                .to_owned();
            let msg = format!(
                "GetResources: HTTP {status} {kind}: {}",
                v["Message"]
                    .as_str()
                    .or(v["message"].as_str())
                    .unwrap_or("")
            );
            return Err(if kind.contains("Throttl") {
                FetchError::Throttled(msg)
            } else if status >= 500 || kind == "InternalServiceException" {
                FetchError::Failed(msg)
            } else {
                FetchError::Denied(msg)
            });
        }
        let page: Page = serde_json::from_value(v)
            .map_err(|e| FetchError::Failed(format!("GetResources: {e}")))?;
        Ok(page
            .list
            .into_iter()
            .map(|m| {
                (
                    m.arn,
                    m.tags.into_iter().map(|t| (t.key, t.value)).collect(),
                )
            })
            .collect())
    }
}

impl TagFetcher for AwsTags {
    fn max_batch(&self, _scope: &Scope) -> usize {
        100
    }

    fn fetch<'a>(&'a self, scope: &'a Scope, arns: &'a [Arc<str>]) -> FetchFuture<'a> {
        Box::pin(self.get_resources(scope, arns))
    }
}

/// GetResources' answer decoders, over bytes from a fuzzer (`crate::fuzz`).
pub(crate) fn decode_answers(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = v["__type"].as_str().unwrap_or("").rsplit('#').next();
    let _ = serde_json::from_value::<Page>(v);
}

#[derive(Deserialize)]
struct Page {
    #[serde(rename = "ResourceTagMappingList", default)]
    list: Vec<Mapping>,
}

#[derive(Deserialize)]
struct Mapping {
    #[serde(rename = "ResourceARN")]
    arn: String,
    #[serde(rename = "Tags", default)]
    tags: Vec<KeyValue>,
}

/// Routes each scope to its cloud's fetcher.
pub struct CloudTags {
    pub alibaba: Option<Arc<super::alibaba::AlibabaTags>>,
    pub aws: Option<Arc<AwsTags>>,
}

impl TagFetcher for CloudTags {
    fn max_batch(&self, scope: &Scope) -> usize {
        match scope.cloud {
            super::Cloud::Alibaba => 50,
            super::Cloud::Aws => 100,
        }
    }

    fn fetch<'a>(&'a self, scope: &'a Scope, arns: &'a [Arc<str>]) -> FetchFuture<'a> {
        match (scope.cloud, &self.alibaba, &self.aws) {
            (super::Cloud::Alibaba, Some(a), _) => a.fetch(scope, arns),
            (super::Cloud::Aws, _, Some(a)) => a.fetch(scope, arns),
            _ => Box::pin(async { Ok(Fetched::new()) }),
        }
    }
}
