//! Client of the Cloudflare API v4 for one EdgeCache: zone lookup, DNS records, the zone's
//! `http_request_cache_settings` entry-point ruleset, zone settings, tiered caching and cache
//! purges, behind the [`CloudflareApi`] trait so that controllers can be tested against a fake.
//!
//! It decides how to talk to Cloudflare: the bearer token, the v4 envelope (`success`, `errors`,
//! `result`, `result_info`), pagination, a client-side limit of 1,200 requests per 5 minutes,
//! retries on 429 (honouring `Retry-After`) and 5xx, chunks of at most 100 purge items, and a
//! [`ProviderError`] an SRE can act on. The pure [`merge_owned_rules`] decides how the operator's
//! cache rules sit among everyone else's.
//! It never touches a rule it does not own (ours carry a `ref` starting with [`OWNED_REF_PREFIX`]),
//! and it never lets the API token reach an error, a `Debug` string or a log.

mod rules;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use rules::{MergeOutcome, OWNED_REF_PREFIX, Rule, merge_owned_rules, merge_rules_owned_by, owned_ref};

use super::http::{
    self, Clock, ErrorKind, ProviderError, RateLimiter, RawResponse, RetryPolicy, Secret, Service,
};

/// The production base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";
/// The phase of the cache rules entry-point ruleset.
pub const CACHE_SETTINGS_PHASE: &str = "http_request_cache_settings";
/// At most this many hosts, prefixes or tags in one purge request.
pub const PURGE_CHUNK: usize = 100;

/// The error type of this client.
pub type CloudflareError = ProviderError;

/// Everything a [`CloudflareClient`] needs.
#[derive(Clone)]
pub struct CloudflareConfig {
    /// Base URL, `https://api.cloudflare.com/client/v4` unless testing.
    pub base_url: String,
    /// API token.
    pub token: Secret,
    /// Retries and timeouts.
    pub retry: RetryPolicy,
    /// Client-side limit: at most `rate_limit.0` requests per `rate_limit.1`.
    pub rate_limit: (u32, Duration),
    /// DNS records per page when listing.
    pub page_size: u32,
    /// Clock for the rate limiter and retry delays.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for CloudflareConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareConfig")
            .field("base_url", &self.base_url)
            .field("token", &self.token)
            .field("retry", &self.retry)
            .field("rate_limit", &self.rate_limit)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl CloudflareConfig {
    /// Defaults for production: the public base URL, the default retry policy, 1,200 requests
    /// per 5 minutes, 100 records per page, the system clock.
    pub fn new(token: Secret) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            token,
            retry: RetryPolicy::default(),
            rate_limit: (1200, Duration::from_secs(300)),
            page_size: 100,
            clock: http::system_clock(),
        }
    }

    /// Sets the base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }
}

/// A zone.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Zone {
    /// 32 hexadecimal characters.
    pub id: String,
    /// e.g. `authentify.it`.
    pub name: String,
    /// `active`, `pending`, ...
    #[serde(default)]
    pub status: Option<String>,
}

/// A DNS record as Cloudflare returns it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DnsRecord {
    /// Record id.
    pub id: String,
    /// `A`, `AAAA`, `CNAME`, ...
    #[serde(rename = "type")]
    pub record_type: String,
    /// Full host name.
    pub name: String,
    /// Address or target host.
    pub content: String,
    /// Whether traffic goes through Cloudflare's proxy.
    #[serde(default)]
    pub proxied: Option<bool>,
    /// TTL in seconds; 1 means automatic.
    #[serde(default)]
    pub ttl: Option<f64>,
    /// Free text; the operator marks its records here.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A DNS record to create or replace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsRecordInput {
    /// `A`, `AAAA` or `CNAME`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// Full host name.
    pub name: String,
    /// Address or target host.
    pub content: String,
    /// Through Cloudflare's proxy (needed for caching).
    pub proxied: bool,
    /// TTL in seconds; 1 means automatic.
    pub ttl: u32,
    /// Free text, e.g. who manages the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl DnsRecordInput {
    /// Whether `record` already says what this input says.
    pub fn matches(&self, record: &DnsRecord) -> bool {
        record.record_type == self.record_type
            && record.name == self.name
            && record.content == self.content
            && record.proxied.unwrap_or(false) == self.proxied
            && record.ttl.is_none_or(|t| (t - f64::from(self.ttl)).abs() < f64::EPSILON)
            && record.comment == self.comment
    }
}

/// Which DNS records to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsRecordFilter {
    /// Exact host name.
    pub name: Option<String>,
    /// Record type.
    pub record_type: Option<String>,
}

/// A zone's ruleset for one phase.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Ruleset {
    /// Ruleset id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// `zone` for entry points.
    #[serde(default)]
    pub kind: Option<String>,
    /// Phase.
    #[serde(default)]
    pub phase: Option<String>,
    /// Version, increased by every change.
    #[serde(default)]
    pub version: Option<String>,
    /// Rules in evaluation order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// The zone settings the operator manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneSettingId {
    /// Browser cache TTL in seconds (`value` a number from Cloudflare's list, e.g. 14400).
    BrowserCacheTtl,
    /// `aggressive`, `basic` or `simplified`.
    CacheLevel,
    /// `on` or `off`.
    AlwaysOnline,
    /// `on` or `off`.
    DevelopmentMode,
}

impl ZoneSettingId {
    /// The setting's id in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneSettingId::BrowserCacheTtl => "browser_cache_ttl",
            ZoneSettingId::CacheLevel => "cache_level",
            ZoneSettingId::AlwaysOnline => "always_online",
            ZoneSettingId::DevelopmentMode => "development_mode",
        }
    }
}

/// A zone setting's current value.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ZoneSetting {
    /// Setting id.
    pub id: String,
    /// Value: a number or a string, depending on the setting.
    pub value: Value,
    /// Whether the plan allows changing it.
    #[serde(default)]
    pub editable: Option<bool>,
    /// Last change.
    #[serde(default)]
    pub modified_on: Option<String>,
}

/// What to purge from the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purge {
    /// Every cached object of these host names.
    Hosts(Vec<String>),
    /// Every cached object under these URL prefixes (`host/path`, no scheme).
    Prefixes(Vec<String>),
    /// Every cached object with these `Cache-Tag`s.
    Tags(Vec<String>),
}

impl Purge {
    fn items(&self) -> (&'static str, &[String]) {
        match self {
            Purge::Hosts(v) => ("hosts", v),
            Purge::Prefixes(v) => ("prefixes", v),
            Purge::Tags(v) => ("tags", v),
        }
    }
}

/// What the operator does with Cloudflare. Every method retries transient failures by itself;
/// an error means the attempts ran out or retrying cannot help.
pub trait CloudflareApi: Send + Sync {
    /// Looks a zone up by name; `None` when the token sees no such zone.
    fn find_zone<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Zone>, CloudflareError>>;

    /// DNS records of a zone matching `filter` (all pages).
    fn list_dns_records<'a>(
        &'a self,
        zone_id: &'a str,
        filter: &'a DnsRecordFilter,
    ) -> BoxFuture<'a, Result<Vec<DnsRecord>, CloudflareError>>;

    /// Creates a DNS record.
    fn create_dns_record<'a>(
        &'a self,
        zone_id: &'a str,
        record: &'a DnsRecordInput,
    ) -> BoxFuture<'a, Result<DnsRecord, CloudflareError>>;

    /// Replaces a DNS record.
    fn update_dns_record<'a>(
        &'a self,
        zone_id: &'a str,
        record_id: &'a str,
        record: &'a DnsRecordInput,
    ) -> BoxFuture<'a, Result<DnsRecord, CloudflareError>>;

    /// Deletes a DNS record; `false` when it did not exist.
    fn delete_dns_record<'a>(
        &'a self,
        zone_id: &'a str,
        record_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, CloudflareError>>;

    /// The zone's entry-point ruleset of `phase`; `None` when the zone has none yet.
    fn get_entrypoint_ruleset<'a>(
        &'a self,
        zone_id: &'a str,
        phase: &'a str,
    ) -> BoxFuture<'a, Result<Option<Ruleset>, CloudflareError>>;

    /// Replaces the rules of the zone's entry-point ruleset of `phase` (creating it if needed).
    /// Pass every rule, others' included: see [`merge_owned_rules`].
    fn put_entrypoint_ruleset<'a>(
        &'a self,
        zone_id: &'a str,
        phase: &'a str,
        rules: &'a [Rule],
    ) -> BoxFuture<'a, Result<Ruleset, CloudflareError>>;

    /// Reads one zone setting.
    fn get_zone_setting<'a>(
        &'a self,
        zone_id: &'a str,
        setting: ZoneSettingId,
    ) -> BoxFuture<'a, Result<ZoneSetting, CloudflareError>>;

    /// Changes one zone setting.
    fn patch_zone_setting<'a>(
        &'a self,
        zone_id: &'a str,
        setting: ZoneSettingId,
        value: Value,
    ) -> BoxFuture<'a, Result<ZoneSetting, CloudflareError>>;

    /// Whether tiered caching is on.
    fn get_tiered_caching<'a>(&'a self, zone_id: &'a str) -> BoxFuture<'a, Result<bool, CloudflareError>>;

    /// Turns tiered caching on or off; returns the new state.
    fn set_tiered_caching<'a>(
        &'a self,
        zone_id: &'a str,
        on: bool,
    ) -> BoxFuture<'a, Result<bool, CloudflareError>>;

    /// Purges the cache, in requests of at most [`PURGE_CHUNK`] items; returns how many requests
    /// were sent.
    fn purge_cache<'a>(
        &'a self,
        zone_id: &'a str,
        purge: &'a Purge,
    ) -> BoxFuture<'a, Result<usize, CloudflareError>>;
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    errors: Vec<CfMessage>,
    #[serde(default = "Option::default")]
    result: Option<T>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Deserialize)]
struct CfMessage {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct ResultInfo {
    #[serde(default)]
    total_count: Option<f64>,
}

/// The Cloudflare client. Cheap to share behind an `Arc`; the rate limiter is per client, so use
/// one client per token.
pub struct CloudflareClient {
    http: reqwest::Client,
    base: Url,
    config: CloudflareConfig,
    limiter: RateLimiter,
}

impl std::fmt::Debug for CloudflareClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareClient").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Cloudflare codes that mean the token itself was refused.
const TOKEN_REFUSED_CODES: &[i64] = &[9103, 9106, 9109, 10000, 10001, 6003, 6111];
/// Cloudflare codes that mean the record exists already.
const ALREADY_EXISTS_CODES: &[i64] = &[81053, 81057, 81058];

impl CloudflareClient {
    /// A client for `config`; fails when the base URL is not an http(s) URL.
    pub fn new(config: CloudflareConfig) -> Result<Self, CloudflareError> {
        let base = http::parse_base_url(Service::Cloudflare, &config.base_url)?;
        let http = http::build_client(&config.retry).map_err(|e| {
            let operation = "set up the Cloudflare client";
            ProviderError::detailed(Service::Cloudflare, operation, ErrorKind::Config, e.to_string())
        })?;
        let limiter = RateLimiter::new(config.rate_limit.0, config.rate_limit.1);
        Ok(Self { http, base, config, limiter })
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        http::endpoint(&self.base, segments, query)
    }

    /// Sends one request with the token, the rate limiter and retries; returns the final answer.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        idempotent: bool,
        operation: &str,
    ) -> Result<RawResponse, CloudflareError> {
        let path = url.path().to_string();
        let result = http::send_with_retry(
            &self.config.retry,
            self.config.clock.as_ref(),
            &method,
            &path,
            idempotent,
            || async {
                self.limiter.acquire(self.config.clock.as_ref()).await;
                let mut req = self
                    .http
                    .request(method.clone(), url.clone())
                    .bearer_auth(self.config.token.expose())
                    .header(ACCEPT, HeaderValue::from_static("application/json"));
                if let Some(body) = &body {
                    req = req
                        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                        .body(body.clone());
                }
                http::read(req.send().await.map_err(http::TransportFailure::from_reqwest)?).await
            },
        )
        .await;
        result.map_err(|f| {
            f.into_error(Service::Cloudflare, operation.to_string()).scrub(&[self.config.token.expose()])
        })
    }

    fn error_from(&self, operation: &str, resp: &RawResponse, errors: &[CfMessage]) -> CloudflareError {
        let codes: Vec<i64> = errors.iter().filter_map(|e| e.code).collect();
        let kind = match resp.status {
            StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
            StatusCode::FORBIDDEN if codes.iter().any(|c| TOKEN_REFUSED_CODES.contains(c)) => {
                ErrorKind::Unauthorized
            }
            StatusCode::FORBIDDEN => ErrorKind::Forbidden,
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::CONFLICT => ErrorKind::Conflict,
            StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
            _ if codes.iter().any(|c| ALREADY_EXISTS_CODES.contains(c)) => ErrorKind::Conflict,
            s if s.is_server_error() => ErrorKind::Server,
            s if s.is_client_error() => ErrorKind::Invalid,
            // A 2xx with `success: false`.
            _ => ErrorKind::Invalid,
        };
        let code =
            (!codes.is_empty()).then(|| codes.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
        let messages: Vec<&str> = errors.iter().filter_map(|e| e.message.as_deref()).collect();
        ProviderError {
            service: Service::Cloudflare,
            operation: operation.to_string(),
            kind,
            status: Some(resp.status.as_u16()),
            code,
            detail: (!messages.is_empty()).then(|| messages.join("; ")),
            attempts: resp.attempts,
        }
        .scrub(&[self.config.token.expose()])
    }

    /// Reads the envelope: the result on success, else an error built from `errors[]`.
    fn envelope<T: DeserializeOwned>(
        &self,
        operation: &str,
        resp: &RawResponse,
    ) -> Result<Envelope<T>, CloudflareError> {
        let parsed: Result<Envelope<T>, _> = serde_json::from_slice(&resp.body);
        match parsed {
            Ok(env) if resp.status.is_success() && env.success != Some(false) => Ok(env),
            Ok(env) => Err(self.error_from(operation, resp, &env.errors)),
            Err(e) if resp.status.is_success() => {
                let detail = format!("the body is not the expected v4 envelope: {e}");
                Err(ProviderError::detailed(
                    Service::Cloudflare,
                    operation,
                    ErrorKind::InvalidResponse,
                    detail,
                )
                .about(resp))
            }
            Err(_) => {
                // An error answer whose result does not fit T: read only its errors.
                let errors = serde_json::from_slice::<Envelope<Value>>(&resp.body)
                    .map(|e| e.errors)
                    .unwrap_or_default();
                Err(self.error_from(operation, resp, &errors))
            }
        }
    }

    fn result<T: DeserializeOwned>(&self, operation: &str, resp: &RawResponse) -> Result<T, CloudflareError> {
        self.envelope::<T>(operation, resp)?.result.ok_or_else(|| {
            let detail = "the answer has no result";
            ProviderError::detailed(Service::Cloudflare, operation, ErrorKind::InvalidResponse, detail)
                .about(resp)
        })
    }
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct TieredCaching {
    value: String,
}

impl CloudflareApi for CloudflareClient {
    fn find_zone<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Zone>, CloudflareError>> {
        Box::pin(async move {
            let operation = format!("look up zone {name}");
            let url = self.url(&["zones"], &[("name", name.to_string())]);
            let resp = self.send(Method::GET, url, None, true, &operation).await?;
            let zones: Vec<Zone> = self.result(&operation, &resp)?;
            Ok(zones.into_iter().find(|z| z.name.eq_ignore_ascii_case(name)))
        })
    }

    fn list_dns_records<'a>(
        &'a self,
        zone_id: &'a str,
        filter: &'a DnsRecordFilter,
    ) -> BoxFuture<'a, Result<Vec<DnsRecord>, CloudflareError>> {
        Box::pin(async move {
            let operation = format!("list DNS records of zone {zone_id}");
            let per_page = self.config.page_size.max(1);
            let mut all = Vec::new();
            for page in 1u32.. {
                let mut query = vec![("page", page.to_string()), ("per_page", per_page.to_string())];
                if let Some(name) = &filter.name {
                    query.push(("name", name.clone()));
                }
                if let Some(t) = &filter.record_type {
                    query.push(("type", t.clone()));
                }
                let url = self.url(&["zones", zone_id, "dns_records"], &query);
                let resp = self.send(Method::GET, url, None, true, &operation).await?;
                let env: Envelope<Vec<DnsRecord>> = self.envelope(&operation, &resp)?;
                let records = env.result.unwrap_or_default();
                let got = records.len();
                all.extend(records);
                let total = env.result_info.and_then(|i| i.total_count);
                let done = match total {
                    Some(total) => all.len() as f64 >= total || got == 0,
                    None => got < per_page as usize,
                };
                if done {
                    break;
                }
            }
            Ok(all)
        })
    }

    fn create_dns_record<'a>(
        &'a self,
        zone_id: &'a str,
        record: &'a DnsRecordInput,
    ) -> BoxFuture<'a, Result<DnsRecord, CloudflareError>> {
        Box::pin(async move {
            let operation = format!("create {} record {} in zone {zone_id}", record.record_type, record.name);
            let url = self.url(&["zones", zone_id, "dns_records"], &[]);
            // Not idempotent: a create that timed out may have happened; the controller lists again.
            let resp = self
                .send(
                    Method::POST,
                    url,
                    Some(http::encode(Service::Cloudflare, &operation, record)?),
                    false,
                    &operation,
                )
                .await?;
            self.result(&operation, &resp)
        })
    }

    fn update_dns_record<'a>(
        &'a self,
        zone_id: &'a str,
        record_id: &'a str,
        record: &'a DnsRecordInput,
    ) -> BoxFuture<'a, Result<DnsRecord, CloudflareError>> {
        Box::pin(async move {
            let operation = format!("update {} record {} in zone {zone_id}", record.record_type, record.name);
            let url = self.url(&["zones", zone_id, "dns_records", record_id], &[]);
            let resp = self
                .send(
                    Method::PUT,
                    url,
                    Some(http::encode(Service::Cloudflare, &operation, record)?),
                    true,
                    &operation,
                )
                .await?;
            self.result(&operation, &resp)
        })
    }

    fn delete_dns_record<'a>(
        &'a self,
        zone_id: &'a str,
        record_id: &'a str,
    ) -> BoxFuture<'a, Result<bool, CloudflareError>> {
        Box::pin(async move {
            let operation = format!("delete DNS record {record_id} in zone {zone_id}");
            let url = self.url(&["zones", zone_id, "dns_records", record_id], &[]);
            // The schema declares a required JSON body for this DELETE; an empty object satisfies it.
            let resp = self.send(Method::DELETE, url, Some(b"{}".to_vec()), true, &operation).await?;
            if resp.status == StatusCode::NOT_FOUND {
                return Ok(false);
            }
            let deleted: IdOnly = self.result(&operation, &resp)?;
            tracing::debug!(zone_id, record_id = %deleted.id, "deleted DNS record");
            Ok(true)
        })
    }

    fn get_entrypoint_ruleset<'a>(
        &'a self,
        zone_id: &'a str,
        phase: &'a str,
    ) -> BoxFuture<'a, Result<Option<Ruleset>, CloudflareError>> {
        Box::pin(async move {
            let operation = format!("read the {phase} ruleset of zone {zone_id}");
            let url = self.url(&["zones", zone_id, "rulesets", "phases", phase, "entrypoint"], &[]);
            let resp = self.send(Method::GET, url, None, true, &operation).await?;
            if resp.status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            self.result(&operation, &resp).map(Some)
        })
    }

    fn put_entrypoint_ruleset<'a>(
        &'a self,
        zone_id: &'a str,
        phase: &'a str,
        rules: &'a [Rule],
    ) -> BoxFuture<'a, Result<Ruleset, CloudflareError>> {
        Box::pin(async move {
            let operation = format!("write the {phase} ruleset of zone {zone_id}");
            let url = self.url(&["zones", zone_id, "rulesets", "phases", phase, "entrypoint"], &[]);
            let rules: Vec<Value> = rules.iter().map(Rule::to_request).collect();
            let body = http::encode(Service::Cloudflare, &operation, &serde_json::json!({ "rules": rules }))?;
            let resp = self.send(Method::PUT, url, Some(body), true, &operation).await?;
            self.result(&operation, &resp)
        })
    }

    fn get_zone_setting<'a>(
        &'a self,
        zone_id: &'a str,
        setting: ZoneSettingId,
    ) -> BoxFuture<'a, Result<ZoneSetting, CloudflareError>> {
        Box::pin(async move {
            let operation = format!("read setting {} of zone {zone_id}", setting.as_str());
            let url = self.url(&["zones", zone_id, "settings", setting.as_str()], &[]);
            let resp = self.send(Method::GET, url, None, true, &operation).await?;
            self.result(&operation, &resp)
        })
    }

    fn patch_zone_setting<'a>(
        &'a self,
        zone_id: &'a str,
        setting: ZoneSettingId,
        value: Value,
    ) -> BoxFuture<'a, Result<ZoneSetting, CloudflareError>> {
        Box::pin(async move {
            let operation = format!("set {} of zone {zone_id} to {value}", setting.as_str());
            let url = self.url(&["zones", zone_id, "settings", setting.as_str()], &[]);
            // The schema's body is the setting object itself: its id and its value.
            let body = http::encode(
                Service::Cloudflare,
                &operation,
                &serde_json::json!({ "id": setting.as_str(), "value": value }),
            )?;
            let resp = self.send(Method::PATCH, url, Some(body), true, &operation).await?;
            self.result(&operation, &resp)
        })
    }

    fn get_tiered_caching<'a>(&'a self, zone_id: &'a str) -> BoxFuture<'a, Result<bool, CloudflareError>> {
        Box::pin(async move {
            let operation = format!("read tiered caching of zone {zone_id}");
            let url = self.url(&["zones", zone_id, "argo", "tiered_caching"], &[]);
            let resp = self.send(Method::GET, url, None, true, &operation).await?;
            let t: TieredCaching = self.result(&operation, &resp)?;
            Ok(t.value == "on")
        })
    }

    fn set_tiered_caching<'a>(
        &'a self,
        zone_id: &'a str,
        on: bool,
    ) -> BoxFuture<'a, Result<bool, CloudflareError>> {
        Box::pin(async move {
            let value = if on { "on" } else { "off" };
            let operation = format!("turn tiered caching {value} in zone {zone_id}");
            let url = self.url(&["zones", zone_id, "argo", "tiered_caching"], &[]);
            let body = http::encode(Service::Cloudflare, &operation, &serde_json::json!({ "value": value }))?;
            let resp = self.send(Method::PATCH, url, Some(body), true, &operation).await?;
            let t: TieredCaching = self.result(&operation, &resp)?;
            Ok(t.value == "on")
        })
    }

    fn purge_cache<'a>(
        &'a self,
        zone_id: &'a str,
        purge: &'a Purge,
    ) -> BoxFuture<'a, Result<usize, CloudflareError>> {
        Box::pin(async move {
            let (field, items) = purge.items();
            let chunks = items.len().div_ceil(PURGE_CHUNK);
            for (i, chunk) in items.chunks(PURGE_CHUNK).enumerate() {
                let operation = format!(
                    "purge {} {field} from zone {zone_id} (request {} of {chunks})",
                    chunk.len(),
                    i + 1
                );
                let url = self.url(&["zones", zone_id, "purge_cache"], &[]);
                let mut body = serde_json::Map::new();
                body.insert(field.to_string(), Value::from(chunk.to_vec()));
                let body = http::encode(Service::Cloudflare, &operation, &body)?;
                let resp = self.send(Method::POST, url, Some(body), true, &operation).await?;
                let purge: IdOnly = self.result(&operation, &resp)?;
                tracing::debug!(zone_id, purge_id = %purge.id, items = chunk.len(), "purged");
            }
            Ok(chunks)
        })
    }
}
