//! Client of the MongoDB Atlas Administration API v2: database users scoped to a cluster, a
//! cluster's state and connection strings, and the project's IP access list, behind the
//! [`AtlasApi`] trait so that controllers can be tested against a fake.
//!
//! It decides how to talk to Atlas: authentication (HTTP Digest with an API key pair, or a
//! service account's OAuth2 client-credentials token, cached and refreshed before it expires),
//! the versioned `Accept` media type of each operation, pagination, retries, and turning Atlas'
//! error JSON into a [`ProviderError`] an SRE can act on.
//! It never decides what users or entries should exist (controllers do), and it never lets a
//! private key, client secret, token or user password reach an error, a `Debug` string or a log.

mod digest;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::http::{
    self, Clock, ErrorKind, ProviderError, RawResponse, RetryPolicy, Secret, Service, TransportFailure,
};

/// The production base URL.
pub const DEFAULT_BASE_URL: &str = "https://cloud.mongodb.com";

/// Media type of the database user and access list operations.
const V2023_01_01: &str = "application/vnd.atlas.2023-01-01+json";
/// Media type of "get one cluster".
const V2024_08_05: &str = "application/vnd.atlas.2024-08-05+json";

/// The error type of this client.
pub type AtlasError = ProviderError;

/// How the operator proves who it is to Atlas.
#[derive(Clone, Debug)]
pub enum AtlasCredentials {
    /// A programmatic API key pair, used with HTTP Digest.
    ApiKey {
        /// The public key (the Digest user name).
        public_key: String,
        /// The private key.
        private_key: Secret,
    },
    /// A service account, used with OAuth2 client credentials.
    ServiceAccount {
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: Secret,
    },
}

/// Everything an [`AtlasClient`] needs.
#[derive(Clone)]
pub struct AtlasConfig {
    /// Base URL, `https://cloud.mongodb.com` unless testing.
    pub base_url: String,
    /// Credentials.
    pub credentials: AtlasCredentials,
    /// Retries and timeouts.
    pub retry: RetryPolicy,
    /// Items per page when listing (1 to 500).
    pub page_size: u32,
    /// A service account token is renewed when less than this is left of its lifetime.
    pub token_refresh_margin: Duration,
    /// Clock for token lifetimes and retry delays.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AtlasConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtlasConfig")
            .field("base_url", &self.base_url)
            .field("credentials", &self.credentials)
            .field("retry", &self.retry)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl AtlasConfig {
    /// Defaults for production: the public base URL, the default retry policy, 100 items per
    /// page, tokens renewed 5 minutes before they expire, the system clock.
    pub fn new(credentials: AtlasCredentials) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            credentials,
            retry: RetryPolicy::default(),
            page_size: 100,
            token_refresh_margin: Duration::from_secs(300),
            clock: http::system_clock(),
        }
    }

    /// Sets the base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }
}

/// A role of a database user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseUserRole {
    /// e.g. `readWrite`.
    pub role_name: String,
    /// The database the role applies to.
    pub database_name: String,
    /// Limits the role to one collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_name: Option<String>,
}

/// A cluster (or Atlas Data Lake) a user is limited to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserScope {
    /// Cluster name.
    pub name: String,
    /// `CLUSTER` or `DATA_LAKE`.
    #[serde(rename = "type")]
    pub scope_type: String,
}

impl UserScope {
    /// Limits a user to one cluster.
    pub fn cluster(name: impl Into<String>) -> Self {
        Self { name: name.into(), scope_type: "CLUSTER".to_string() }
    }
}

/// A key/value label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// A SCRAM database user, as the operator manages it (the password is never read back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseUser {
    /// Authentication database: `admin` for SCRAM users.
    pub database_name: String,
    /// User name.
    pub username: String,
    /// Roles.
    pub roles: Vec<DatabaseUserRole>,
    /// Clusters the user may reach; empty means every cluster of the project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<UserScope>,
    /// Labels, e.g. who manages the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
    /// When Atlas deletes the user by itself (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after_date: Option<String>,
}

/// The body Atlas expects when writing a user: the user plus the project id and the password.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserBody<'a> {
    group_id: &'a str,
    #[serde(flatten)]
    user: &'a DatabaseUser,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
}

/// A cluster's connection strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStrings {
    /// `mongodb://host1,host2/?...`
    #[serde(default)]
    pub standard: Option<String>,
    /// `mongodb+srv://cluster.xxxx.mongodb.net`
    #[serde(default)]
    pub standard_srv: Option<String>,
}

/// What the operator reads of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// Cluster name.
    pub name: String,
    /// `IDLE`, `CREATING`, `UPDATING`, `DELETING` or `REPAIRING`.
    #[serde(default)]
    pub state_name: Option<String>,
    /// Connection strings, once the cluster has hosts.
    #[serde(default)]
    pub connection_strings: ConnectionStrings,
    /// e.g. `8.0.4`.
    #[serde(default, rename = "mongoDBVersion")]
    pub mongo_db_version: Option<String>,
    /// Whether the cluster is paused.
    #[serde(default)]
    pub paused: Option<bool>,
}

impl Cluster {
    /// Whether the cluster is ready (state `IDLE`).
    pub fn is_idle(&self) -> bool {
        self.state_name.as_deref() == Some("IDLE")
    }
}

/// One entry of a project's IP access list: exactly one of `cidr_block` or `ip_address` (or an
/// AWS security group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessListEntry {
    /// e.g. `203.0.113.0/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_block: Option<String>,
    /// e.g. `203.0.113.7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// e.g. `sg-0123abcd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_security_group: Option<String>,
    /// Free text (at most 80 characters); the operator marks its entries here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When Atlas removes the entry by itself (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after_date: Option<String>,
}

impl AccessListEntry {
    /// A CIDR block entry.
    pub fn cidr(block: impl Into<String>, comment: Option<String>) -> Self {
        Self { cidr_block: Some(block.into()), comment, ..Self::default() }
    }

    /// The value that names the entry in the API path (the CIDR block, address or group).
    pub fn value(&self) -> Option<&str> {
        self.cidr_block.as_deref().or(self.ip_address.as_deref()).or(self.aws_security_group.as_deref())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    results: Vec<T>,
    #[serde(default)]
    total_count: Option<u64>,
}

/// Atlas' error JSON.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ApiErrorBody {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// What the operator does with Atlas. Every method retries transient failures by itself; an
/// error means the attempts ran out or retrying cannot help.
pub trait AtlasApi: Send + Sync {
    /// Creates a database user with `password` in project `group_id`.
    fn create_database_user<'a>(
        &'a self,
        group_id: &'a str,
        user: &'a DatabaseUser,
        password: &'a Secret,
    ) -> BoxFuture<'a, Result<DatabaseUser, AtlasError>>;

    /// Reads a database user; `None` when it does not exist.
    fn get_database_user<'a>(
        &'a self,
        group_id: &'a str,
        database_name: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<DatabaseUser>, AtlasError>>;

    /// Replaces a user's roles, scopes and labels, and its password when one is given.
    fn update_database_user<'a>(
        &'a self,
        group_id: &'a str,
        user: &'a DatabaseUser,
        password: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<DatabaseUser, AtlasError>>;

    /// Deletes a database user; `false` when it did not exist.
    fn delete_database_user<'a>(
        &'a self,
        group_id: &'a str,
        database_name: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<bool, AtlasError>>;

    /// Every database user of the project (all pages).
    fn list_database_users<'a>(
        &'a self,
        group_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DatabaseUser>, AtlasError>>;

    /// Reads a cluster; `None` when it does not exist.
    fn get_cluster<'a>(
        &'a self,
        group_id: &'a str,
        cluster_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Cluster>, AtlasError>>;

    /// Every entry of the project's IP access list (all pages).
    fn list_access_list<'a>(
        &'a self,
        group_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AccessListEntry>, AtlasError>>;

    /// Adds entries to the project's IP access list (entries already there are updated).
    fn add_access_list_entries<'a>(
        &'a self,
        group_id: &'a str,
        entries: &'a [AccessListEntry],
    ) -> BoxFuture<'a, Result<(), AtlasError>>;

    /// Removes one entry (by CIDR block, address or security group); `false` when it was absent.
    fn delete_access_list_entry<'a>(
        &'a self,
        group_id: &'a str,
        entry_value: &'a str,
    ) -> BoxFuture<'a, Result<bool, AtlasError>>;
}

#[derive(Debug)]
struct DigestState {
    challenge: digest::Challenge,
    nc: u32,
}

struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

/// The Atlas client. Cheap to share behind an `Arc`; it caches the Digest nonce or the service
/// account token.
pub struct AtlasClient {
    http: reqwest::Client,
    base: Url,
    config: AtlasConfig,
    digest: Mutex<Option<DigestState>>,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for AtlasClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtlasClient").field("config", &self.config).finish_non_exhaustive()
    }
}

/// One request, kept whole so that it can be sent again.
struct Call<'a> {
    method: Method,
    url: Url,
    accept: &'static str,
    body: Option<Vec<u8>>,
    operation: &'a str,
}

impl AtlasClient {
    /// A client for `config`; fails when the base URL is not an http(s) URL.
    pub fn new(config: AtlasConfig) -> Result<Self, AtlasError> {
        let base = http::parse_base_url(Service::Atlas, &config.base_url)?;
        let http = http::build_client(&config.retry).map_err(|e| {
            ProviderError::detailed(
                Service::Atlas,
                "set up the Atlas client",
                ErrorKind::Config,
                e.to_string(),
            )
        })?;
        Ok(Self { http, base, config, digest: Mutex::new(None), token: tokio::sync::Mutex::new(None) })
    }

    /// The URL of `segments` under the base URL (a CIDR block's `/` becomes `%2F`, as Atlas
    /// expects).
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        http::endpoint(&self.base, segments, query)
    }

    /// URL of one database user.
    fn user_url(&self, group_id: &str, database_name: &str, username: &str) -> Url {
        self.url(&["api", "atlas", "v2", "groups", group_id, "databaseUsers", database_name, username], &[])
    }

    fn secrets(&self) -> Vec<&str> {
        match &self.config.credentials {
            AtlasCredentials::ApiKey { private_key, .. } => vec![private_key.expose()],
            AtlasCredentials::ServiceAccount { client_secret, .. } => vec![client_secret.expose()],
        }
    }

    fn error_from(&self, operation: &str, resp: &RawResponse) -> AtlasError {
        let body: ApiErrorBody = serde_json::from_slice(&resp.body).unwrap_or_default();
        let status = resp.status.as_u16();
        let kind = match resp.status {
            StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
            StatusCode::FORBIDDEN => ErrorKind::Forbidden,
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::CONFLICT => ErrorKind::Conflict,
            StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
            s if s.is_server_error() => ErrorKind::Server,
            s if s.is_client_error() => ErrorKind::Invalid,
            _ => ErrorKind::InvalidResponse,
        };
        let detail = match (body.detail, body.reason) {
            (Some(d), _) if !d.is_empty() => Some(d),
            (_, Some(r)) if !r.is_empty() => Some(r),
            _ => None,
        };
        ProviderError {
            service: Service::Atlas,
            operation: operation.to_string(),
            kind,
            status: Some(status),
            code: body.error_code,
            detail,
            attempts: resp.attempts,
        }
        .scrub(&self.secrets())
    }

    fn decode<T: DeserializeOwned>(&self, operation: &str, resp: &RawResponse) -> Result<T, AtlasError> {
        serde_json::from_slice(&resp.body).map_err(|e| {
            let detail = format!("the body is not the expected JSON: {e}");
            ProviderError::detailed(Service::Atlas, operation, ErrorKind::InvalidResponse, detail).about(resp)
        })
    }

    /// Sends `call` with authentication and retries, and returns the final answer.
    async fn send(&self, call: &Call<'_>, idempotent: bool) -> Result<RawResponse, AtlasError> {
        let path = call.url.path().to_string();
        let result = http::send_with_retry(
            &self.config.retry,
            self.config.clock.as_ref(),
            &call.method,
            &path,
            idempotent,
            || self.attempt(call),
        )
        .await;
        result.map_err(|f| f.into_error(Service::Atlas, call.operation.to_string()).scrub(&self.secrets()))
    }

    fn request(&self, call: &Call<'_>) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(call.method.clone(), call.url.clone())
            .header(ACCEPT, HeaderValue::from_static(call.accept));
        if let Some(body) = &call.body {
            req = req.header(CONTENT_TYPE, HeaderValue::from_static(call.accept)).body(body.clone());
        }
        req
    }

    /// One authenticated exchange. With an API key, a 401 carrying a fresh Digest challenge is
    /// answered once more with the new nonce; with a service account, a 401 drops the cached
    /// token and the request is sent once more with a new one.
    async fn attempt(&self, call: &Call<'_>) -> Result<RawResponse, TransportFailure> {
        match &self.config.credentials {
            AtlasCredentials::ApiKey { public_key, private_key } => {
                let uri = match call.url.query() {
                    Some(q) => format!("{}?{q}", call.url.path()),
                    None => call.url.path().to_string(),
                };
                let header = self.digest_header(public_key, private_key, call.method.as_str(), &uri);
                let mut req = self.request(call);
                if let Some(h) = header.clone() {
                    req = req.header(AUTHORIZATION, h);
                }
                let resp = http::read(req.send().await.map_err(TransportFailure::from_reqwest)?).await?;
                if resp.status != StatusCode::UNAUTHORIZED {
                    return Ok(resp);
                }
                let Some(challenge) = resp
                    .headers
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(digest::Challenge::parse)
                else {
                    return Ok(resp);
                };
                // A 401 to a request that carried a fresh nonce (not stale) means wrong keys.
                if header.is_some() && !challenge.stale {
                    *self.digest.lock().unwrap_or_else(PoisonError::into_inner) = None;
                    return Ok(resp);
                }
                *self.digest.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(DigestState { challenge, nc: 0 });
                let header = self.digest_header(public_key, private_key, call.method.as_str(), &uri);
                let mut req = self.request(call);
                if let Some(h) = header {
                    req = req.header(AUTHORIZATION, h);
                }
                http::read(req.send().await.map_err(TransportFailure::from_reqwest)?).await
            }
            AtlasCredentials::ServiceAccount { .. } => {
                let token = self.token(false).await?;
                let resp = self.send_bearer(call, &token).await?;
                if resp.status != StatusCode::UNAUTHORIZED {
                    return Ok(resp);
                }
                // The token may have been revoked or expired early: one more try with a new one.
                let token = self.token(true).await?;
                self.send_bearer(call, &token).await
            }
        }
    }

    async fn send_bearer(&self, call: &Call<'_>, token: &Secret) -> Result<RawResponse, TransportFailure> {
        let req = self.request(call).bearer_auth(token.expose());
        http::read(req.send().await.map_err(TransportFailure::from_reqwest)?).await
    }

    fn digest_header(&self, user: &str, key: &Secret, method: &str, uri: &str) -> Option<HeaderValue> {
        let mut guard = self.digest.lock().unwrap_or_else(PoisonError::into_inner);
        let state = guard.as_mut()?;
        state.nc += 1;
        let value =
            state.challenge.authorization(user, key.expose(), method, uri, state.nc, &digest::cnonce());
        let mut value = HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// The cached service account token, or a new one when there is none, it is about to expire,
    /// or `renew` is set.
    async fn token(&self, renew: bool) -> Result<Secret, TransportFailure> {
        let AtlasCredentials::ServiceAccount { client_id, client_secret } = &self.config.credentials else {
            return Err(TransportFailure {
                kind: ErrorKind::Config,
                status: None,
                detail: "no service account".into(),
                attempts: 0,
            });
        };
        let mut cached = self.token.lock().await;
        let now = self.config.clock.now();
        if !renew && let Some(t) = cached.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(t.token.clone());
        }
        *cached = None;
        let url = self.url(&["api", "oauth", "token"], &[]);
        tracing::debug!(path = url.path(), "requesting an Atlas service account token");
        let resp = self
            .http
            .post(url)
            .basic_auth(client_id, Some(client_secret.expose()))
            .header(ACCEPT, "application/json")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(TransportFailure::from_reqwest)?;
        let resp = http::read(resp).await?;
        if !resp.status.is_success() {
            // Handed to the caller as the answer to its request, so that it is reported (and
            // retried when transient) like any other.
            return Err(TransportFailure {
                kind: match resp.status {
                    StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST => ErrorKind::Unauthorized,
                    StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
                    s if s.is_server_error() => ErrorKind::Server,
                    _ => ErrorKind::InvalidResponse,
                },
                status: Some(resp.status.as_u16()),
                detail: "the service account token endpoint refused to issue a token".into(),
                attempts: 0,
            });
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&resp.body).map_err(|_| TransportFailure {
            kind: ErrorKind::InvalidResponse,
            status: Some(resp.status.as_u16()),
            detail: "the token endpoint's answer has no access_token".into(),
            attempts: 0,
        })?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        let margin = self.config.token_refresh_margin.min(lifetime / 2);
        let token = Secret::new(parsed.access_token);
        *cached = Some(CachedToken { token: token.clone(), refresh_at: now + lifetime - margin });
        Ok(token)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        idempotent: bool,
        expect: StatusCode,
    ) -> Result<T, AtlasError> {
        let resp = self.send(&call, idempotent).await?;
        if resp.status != expect {
            return Err(self.error_from(call.operation, &resp));
        }
        self.decode(call.operation, &resp)
    }

    async fn optional<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<Option<T>, AtlasError> {
        let resp = self.send(&call, true).await?;
        match resp.status {
            StatusCode::OK => self.decode(call.operation, &resp).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.error_from(call.operation, &resp)),
        }
    }

    async fn delete(&self, call: Call<'_>) -> Result<bool, AtlasError> {
        let resp = self.send(&call, true).await?;
        match resp.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.error_from(call.operation, &resp)),
        }
    }

    async fn list_all<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        accept: &'static str,
        operation: &str,
    ) -> Result<Vec<T>, AtlasError> {
        let per_page = self.config.page_size.clamp(1, 500);
        let mut all = Vec::new();
        for page_num in 1u32.. {
            let query = [
                ("itemsPerPage", per_page.to_string()),
                ("pageNum", page_num.to_string()),
                ("includeCount", "true".to_string()),
            ];
            let call =
                Call { method: Method::GET, url: self.url(segments, &query), accept, body: None, operation };
            let page: Page<T> = self.json(call, true, StatusCode::OK).await?;
            let got = page.results.len();
            all.extend(page.results);
            let total = page.total_count.map(|t| usize::try_from(t).unwrap_or(usize::MAX));
            let done = match total {
                Some(total) => all.len() >= total || got == 0,
                None => got < per_page as usize,
            };
            if done {
                break;
            }
        }
        Ok(all)
    }
}

impl AtlasApi for AtlasClient {
    fn create_database_user<'a>(
        &'a self,
        group_id: &'a str,
        user: &'a DatabaseUser,
        password: &'a Secret,
    ) -> BoxFuture<'a, Result<DatabaseUser, AtlasError>> {
        Box::pin(async move {
            let operation = format!("create database user {} in project {group_id}", user.username);
            let body = UserBody { group_id, user, password: Some(password.expose()) };
            let call = Call {
                method: Method::POST,
                url: self.url(&["api", "atlas", "v2", "groups", group_id, "databaseUsers"], &[]),
                accept: V2023_01_01,
                body: Some(http::encode(Service::Atlas, &operation, &body)?),
                operation: &operation,
            };
            self.json(call, false, StatusCode::CREATED).await
        })
    }

    fn get_database_user<'a>(
        &'a self,
        group_id: &'a str,
        database_name: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<DatabaseUser>, AtlasError>> {
        Box::pin(async move {
            let operation = format!("read database user {username} in project {group_id}");
            let call = Call {
                method: Method::GET,
                url: self.user_url(group_id, database_name, username),
                accept: V2023_01_01,
                body: None,
                operation: &operation,
            };
            self.optional(call).await
        })
    }

    fn update_database_user<'a>(
        &'a self,
        group_id: &'a str,
        user: &'a DatabaseUser,
        password: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<DatabaseUser, AtlasError>> {
        Box::pin(async move {
            let operation = format!("update database user {} in project {group_id}", user.username);
            let body = UserBody { group_id, user, password: password.map(Secret::expose) };
            let call = Call {
                method: Method::PATCH,
                url: self.url(
                    &[
                        "api",
                        "atlas",
                        "v2",
                        "groups",
                        group_id,
                        "databaseUsers",
                        &user.database_name,
                        &user.username,
                    ],
                    &[],
                ),
                accept: V2023_01_01,
                body: Some(http::encode(Service::Atlas, &operation, &body)?),
                operation: &operation,
            };
            self.json(call, true, StatusCode::OK).await
        })
    }

    fn delete_database_user<'a>(
        &'a self,
        group_id: &'a str,
        database_name: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<bool, AtlasError>> {
        Box::pin(async move {
            let operation = format!("delete database user {username} in project {group_id}");
            let call = Call {
                method: Method::DELETE,
                url: self.user_url(group_id, database_name, username),
                accept: V2023_01_01,
                body: None,
                operation: &operation,
            };
            self.delete(call).await
        })
    }

    fn list_database_users<'a>(
        &'a self,
        group_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DatabaseUser>, AtlasError>> {
        Box::pin(async move {
            let operation = format!("list database users of project {group_id}");
            self.list_all(
                &["api", "atlas", "v2", "groups", group_id, "databaseUsers"],
                V2023_01_01,
                &operation,
            )
            .await
        })
    }

    fn get_cluster<'a>(
        &'a self,
        group_id: &'a str,
        cluster_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Cluster>, AtlasError>> {
        Box::pin(async move {
            let operation = format!("read cluster {cluster_name} in project {group_id}");
            let call = Call {
                method: Method::GET,
                url: self.url(&["api", "atlas", "v2", "groups", group_id, "clusters", cluster_name], &[]),
                accept: V2024_08_05,
                body: None,
                operation: &operation,
            };
            self.optional(call).await
        })
    }

    fn list_access_list<'a>(
        &'a self,
        group_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<AccessListEntry>, AtlasError>> {
        Box::pin(async move {
            let operation = format!("list the IP access list of project {group_id}");
            self.list_all(&["api", "atlas", "v2", "groups", group_id, "accessList"], V2023_01_01, &operation)
                .await
        })
    }

    fn add_access_list_entries<'a>(
        &'a self,
        group_id: &'a str,
        entries: &'a [AccessListEntry],
    ) -> BoxFuture<'a, Result<(), AtlasError>> {
        Box::pin(async move {
            let operation =
                format!("add {} entries to the IP access list of project {group_id}", entries.len());
            let call = Call {
                method: Method::POST,
                url: self.url(&["api", "atlas", "v2", "groups", group_id, "accessList"], &[]),
                accept: V2023_01_01,
                body: Some(http::encode(Service::Atlas, &operation, &entries)?),
                operation: &operation,
            };
            // Adding an entry that exists updates it: safe to send again.
            let resp = self.send(&call, true).await?;
            if resp.status.is_success() { Ok(()) } else { Err(self.error_from(&operation, &resp)) }
        })
    }

    fn delete_access_list_entry<'a>(
        &'a self,
        group_id: &'a str,
        entry_value: &'a str,
    ) -> BoxFuture<'a, Result<bool, AtlasError>> {
        Box::pin(async move {
            let operation = format!("remove {entry_value} from the IP access list of project {group_id}");
            let call = Call {
                method: Method::DELETE,
                url: self.url(&["api", "atlas", "v2", "groups", group_id, "accessList", entry_value], &[]),
                accept: V2023_01_01,
                body: None,
                operation: &operation,
            };
            self.delete(call).await
        })
    }
}
