//! Shared HTTP machinery of the outside-service clients: when to retry (429 with `Retry-After`,
//! 5xx, timeouts and connection failures, with bounded attempts and exponential backoff with
//! jitter), how long one request may take, a client-side rate limiter, an injectable clock, and
//! the error type whose `Display` is a sentence an on-call SRE can act on.
//!
//! It decides *whether and when* to send a request again; it never decides what a response means
//! for a vendor (the Atlas and Cloudflare modules map bodies and codes to [`ErrorKind`]).
//! It must never log or format a secret: credentials live in [`Secret`], whose `Debug` is redacted
//! and which has no `Display`; logs carry method, path, status and attempt only, never headers or
//! bodies.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::RngExt as _;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};

/// A credential (private key, client secret, API token, password). `Debug` prints `Secret(***)`;
/// there is no `Display`, so it cannot slip into an error message or a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for building a request. Never pass it to a log or error.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

/// A future returned by [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Time as the clients see it: token lifetimes, rate-limit windows and retry delays. Injected so
/// that tests can advance time instead of waiting for it.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The real clock: `Instant::now` and `tokio::time::sleep`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock for tests: time moves only when [`ManualClock::advance`] is called or when a client
/// sleeps, in which case the sleep returns at once, advances the clock and is recorded.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    state: Mutex<ManualState>,
}

#[derive(Debug, Default)]
struct ManualState {
    elapsed: Duration,
    sleeps: Vec<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> Self {
        Self { start: Instant::now(), state: Mutex::new(ManualState::default()) }
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).elapsed += by;
    }

    /// Every sleep a client asked for, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).sleeps.clone()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.state.lock().unwrap_or_else(PoisonError::into_inner).elapsed
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.elapsed += duration;
        state.sleeps.push(duration);
        Box::pin(std::future::ready(()))
    }
}

/// How often and how patiently a request is sent again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Upper bound of one backoff delay.
    pub max_delay: Duration,
    /// Upper bound of a wait the server asks for with `Retry-After`; a longer ask gives up instead.
    pub max_retry_after: Duration,
    /// Time limit of one attempt (connect, send, and read the whole response).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Backoff before retry number `retry` (1 for the first retry): "equal jitter", a delay drawn
    /// uniformly from the upper half of `base * 2^(retry-1)`, capped at `max_delay`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let ceiling = exp.min(self.max_delay);
        let half = ceiling / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 { 0 } else { rand::rng().random_range(0..=jitter_ms) };
        half + Duration::from_millis(extra)
    }
}

/// The wait a `Retry-After` header asks for, in its delay-seconds form.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// A sliding-window limiter on the client side: at most `limit` requests in any `window`.
#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    /// At most `limit` (at least 1) requests in any `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        Self { limit, window, sent: Mutex::new(VecDeque::new()) }
    }

    /// Takes a slot at `now`, or tells how long to wait before asking again.
    pub fn try_acquire(&self, now: Instant) -> Result<(), Duration> {
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        while sent.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            sent.pop_front();
        }
        if sent.len() < self.limit {
            sent.push_back(now);
            return Ok(());
        }
        let oldest = sent.front().copied().unwrap_or(now);
        Err(self.window.saturating_sub(now.duration_since(oldest)).max(Duration::from_millis(1)))
    }

    /// Waits, on `clock`, until a slot is free and takes it.
    pub async fn acquire(&self, clock: &dyn Clock) {
        loop {
            match self.try_acquire(clock.now()) {
                Ok(()) => return,
                Err(wait) => {
                    tracing::debug!(wait_ms = wait.as_millis() as u64, "client-side rate limit reached");
                    clock.sleep(wait).await;
                }
            }
        }
    }
}

/// The outside service an error comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// MongoDB Atlas Administration API v2.
    Atlas,
    /// Cloudflare API v4.
    Cloudflare,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Atlas => "Atlas",
            Service::Cloudflare => "Cloudflare",
        })
    }
}

/// What went wrong, in a bounded set usable as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The credentials were refused (wrong, revoked or expired).
    Unauthorized,
    /// The credentials are valid but lack a permission.
    Forbidden,
    /// The object (or its project/zone) does not exist.
    NotFound,
    /// The object exists already or is being changed.
    Conflict,
    /// The service refused the request as invalid.
    Invalid,
    /// Still rate limited after every attempt.
    RateLimited,
    /// The service kept failing (5xx) after every attempt.
    Server,
    /// No answer in time after every attempt.
    Timeout,
    /// The service could not be reached.
    Connect,
    /// The answer could not be understood.
    InvalidResponse,
    /// The client was configured wrongly (base URL, credentials format).
    Config,
}

impl ErrorKind {
    /// A short stable name, for metrics and events.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Server => "server",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Config => "config",
        }
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Server
                | ErrorKind::Timeout
                | ErrorKind::Connect
                | ErrorKind::Conflict
        )
    }
}

/// A failed call to Atlas or Cloudflare. `Display` is one sentence: what failed, what the service
/// said, and what to do next. It never contains a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderError {
    /// The service that failed.
    pub service: Service,
    /// What was being done, e.g. `create database user app-7 in project 5f..`.
    pub operation: String,
    /// The kind of failure.
    pub kind: ErrorKind,
    /// HTTP status of the last answer, if there was one.
    pub status: Option<u16>,
    /// The vendor's error code(s): Atlas `errorCode`, Cloudflare `errors[].code`.
    pub code: Option<String>,
    /// The vendor's explanation: Atlas `detail`/`reason`, Cloudflare `errors[].message`.
    pub detail: Option<String>,
    /// Attempts made.
    pub attempts: u32,
}

impl ProviderError {
    /// An error without an HTTP answer.
    pub fn new(service: Service, operation: impl Into<String>, kind: ErrorKind) -> Self {
        Self {
            service,
            operation: operation.into(),
            kind,
            status: None,
            code: None,
            detail: None,
            attempts: 0,
        }
    }

    /// An error without an HTTP answer, with an explanation.
    pub(crate) fn detailed(
        service: Service,
        operation: impl Into<String>,
        kind: ErrorKind,
        detail: impl Into<String>,
    ) -> Self {
        Self { detail: Some(detail.into()), ..Self::new(service, operation, kind) }
    }

    /// Adds the status and attempt count of the answer the error is about.
    pub(crate) fn about(mut self, resp: &RawResponse) -> Self {
        self.status = Some(resp.status.as_u16());
        self.attempts = resp.attempts;
        self
    }

    /// Whether the object was not there.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Removes every occurrence of the given secrets from the vendor's text.
    pub(crate) fn scrub(mut self, secrets: &[&str]) -> Self {
        for field in [&mut self.detail, &mut self.code] {
            if let Some(text) = field.as_mut() {
                for secret in secrets.iter().filter(|s| !s.is_empty()) {
                    if text.contains(secret) {
                        *text = text.replace(secret, "[redacted]");
                    }
                }
            }
        }
        self
    }

    fn hint(&self) -> &'static str {
        match (self.service, self.kind) {
            (Service::Atlas, ErrorKind::Unauthorized) => {
                "check the credentials Secret (API key pair or service account id and secret), that the key is not revoked, and that the operator's egress IP is on the key's access list"
            }
            (Service::Cloudflare, ErrorKind::Unauthorized) => {
                "check the API token Secret: the token may be wrong, expired or revoked"
            }
            (Service::Atlas, ErrorKind::Forbidden) => {
                "give the API key or service account the needed project role (Project Owner, or Project Database Access Admin and Project Network Access Manager)"
            }
            (Service::Cloudflare, ErrorKind::Forbidden) => {
                "give the token the needed permission on this zone (Zone DNS, Cache Rules, Zone Settings, Cache Purge)"
            }
            (_, ErrorKind::NotFound) => {
                "check the project/zone id and the object's name in the resource's spec"
            }
            (_, ErrorKind::Conflict) => {
                "another change is in progress or the object exists already; the operator will try again"
            }
            (_, ErrorKind::Invalid) => "fix the resource's spec; retrying the same request will fail again",
            (_, ErrorKind::RateLimited) => {
                "the operator will try again later; if this persists, lower how often resources change"
            }
            (_, ErrorKind::Server) => {
                "the service is failing; the operator will try again later, check the vendor's status page if this persists"
            }
            (_, ErrorKind::Timeout) | (_, ErrorKind::Connect) => {
                "check the operator's network egress and the base URL; the operator will try again"
            }
            (_, ErrorKind::InvalidResponse) => "check that the base URL points at the real API",
            (_, ErrorKind::Config) => "fix the client configuration (base URL, credentials Secret)",
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Unauthorized => match self.service {
                Service::Atlas => "rejected the API credentials",
                Service::Cloudflare => "rejected the API token",
            },
            ErrorKind::Forbidden => "denied permission",
            ErrorKind::NotFound => "found nothing",
            ErrorKind::Conflict => "reported a conflict",
            ErrorKind::Invalid => "refused the request as invalid",
            ErrorKind::RateLimited => "kept rate limiting the operator",
            ErrorKind::Server => "kept failing with a server error",
            ErrorKind::Timeout => "did not answer in time",
            ErrorKind::Connect => "could not be reached",
            ErrorKind::InvalidResponse => "sent an answer the operator cannot read",
            ErrorKind::Config => "client is misconfigured",
        };
        write!(f, "{} {} ", self.service, what)?;
        let mut facts = Vec::new();
        if let Some(status) = self.status {
            facts.push(status.to_string());
        }
        if let Some(code) = &self.code {
            facts.push(code.clone());
        }
        let mut paren = facts.join(" ");
        if let Some(detail) = &self.detail {
            if !paren.is_empty() {
                paren.push_str(": ");
            }
            paren.push_str(detail);
        }
        if self.attempts > 1 {
            if !paren.is_empty() {
                paren.push_str(", ");
            }
            paren.push_str(&format!("after {} attempts", self.attempts));
        }
        if !paren.is_empty() {
            write!(f, "({paren}) ")?;
        }
        write!(f, "while trying to {}: {}", self.operation, self.hint())
    }
}

impl std::error::Error for ProviderError {}

/// One answer read completely.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// Why an attempt produced no answer.
#[derive(Debug)]
pub(crate) struct TransportFailure {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub detail: String,
    pub attempts: u32,
}

impl TransportFailure {
    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        let kind = if err.is_timeout() {
            ErrorKind::Timeout
        } else if err.is_connect() {
            ErrorKind::Connect
        } else if err.is_builder() {
            ErrorKind::Config
        } else {
            ErrorKind::Connect
        };
        // The URL carries no secret, but keep errors short and uniform.
        let detail = err.without_url().to_string();
        Self { kind, status: None, detail, attempts: 0 }
    }

    pub(crate) fn into_error(self, service: Service, operation: String) -> ProviderError {
        ProviderError {
            service,
            operation,
            kind: self.kind,
            status: self.status,
            code: None,
            detail: Some(self.detail),
            attempts: self.attempts,
        }
    }
}

/// Reads a whole response, within the per-attempt timeout already set on the request.
pub(crate) async fn read(resp: reqwest::Response) -> Result<RawResponse, TransportFailure> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(TransportFailure::from_reqwest)?.to_vec();
    Ok(RawResponse { status, headers, body, attempts: 1 })
}

/// Sends with retries: `attempt` performs one exchange (including any authentication handshake)
/// and is called again after a 429 (waiting what `Retry-After` asks, else backoff), a 5xx, a
/// timeout or a connection failure, up to `policy.max_attempts`. Timeouts are retried only for
/// idempotent requests, since the first one may have been carried out. The last answer is
/// returned as is when attempts run out, so that the caller can report what the service said.
pub(crate) async fn send_with_retry<F, Fut>(
    policy: &RetryPolicy,
    clock: &dyn Clock,
    method: &Method,
    path: &str,
    idempotent: bool,
    mut attempt: F,
) -> Result<RawResponse, TransportFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<RawResponse, TransportFailure>>,
{
    let max = policy.max_attempts.max(1);
    let mut n = 0;
    loop {
        n += 1;
        let result = attempt().await;
        let wait = match &result {
            Ok(resp) if resp.status == StatusCode::TOO_MANY_REQUESTS => match retry_after(&resp.headers) {
                Some(asked) if asked > policy.max_retry_after => {
                    tracing::warn!(%method, path, asked_s = asked.as_secs(), "Retry-After longer than allowed; giving up");
                    None
                }
                Some(asked) => Some(asked),
                None => Some(policy.backoff(n)),
            },
            Ok(resp) if resp.status.is_server_error() => Some(policy.backoff(n)),
            Ok(_) => None,
            Err(failure)
                if matches!(
                    failure.kind,
                    ErrorKind::Connect | ErrorKind::Server | ErrorKind::RateLimited
                ) =>
            {
                Some(policy.backoff(n))
            }
            Err(failure) if failure.kind == ErrorKind::Timeout && idempotent => Some(policy.backoff(n)),
            Err(_) => None,
        };
        match (&result, wait) {
            (Ok(resp), Some(wait)) if n < max => {
                tracing::debug!(%method, path, status = resp.status.as_u16(), attempt = n, wait_ms = wait.as_millis() as u64, "retrying");
                clock.sleep(wait).await;
            }
            (Err(failure), Some(wait)) if n < max => {
                tracing::debug!(%method, path, kind = failure.kind.as_str(), attempt = n, wait_ms = wait.as_millis() as u64, "retrying");
                clock.sleep(wait).await;
            }
            _ => {
                return match result {
                    Ok(mut resp) => {
                        tracing::debug!(%method, path, status = resp.status.as_u16(), attempts = n, "answered");
                        resp.attempts = n;
                        Ok(resp)
                    }
                    Err(mut failure) => {
                        tracing::debug!(%method, path, kind = failure.kind.as_str(), attempts = n, "failed");
                        failure.attempts = n;
                        Err(failure)
                    }
                };
            }
        }
    }
}

/// Makes sure rustls has a process-wide crypto provider (ring, which kube uses too). reqwest is
/// built without its own provider so that aws-lc does not enter the build. An application that
/// installed another provider first keeps it.
pub(crate) fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Err means another thread installed one meanwhile, which is just as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

/// A reqwest client with the per-attempt timeout and a user agent; no redirects (an API that
/// redirects is misconfigured, and a redirect could carry credentials elsewhere).
pub(crate) fn build_client(policy: &RetryPolicy) -> Result<reqwest::Client, reqwest::Error> {
    ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(policy.timeout)
        .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("authentify-operator/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Parses and checks a client's base URL (http or https), without a trailing slash.
pub(crate) fn parse_base_url(service: Service, raw: &str) -> Result<reqwest::Url, ProviderError> {
    let operation = format!("set up the {service} client");
    let mut base = reqwest::Url::parse(raw).map_err(|e| {
        ProviderError::detailed(
            service,
            &operation,
            ErrorKind::Config,
            format!("base URL {raw:?} is not a URL: {e}"),
        )
    })?;
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        let detail = format!("base URL {raw:?} must be an http(s) URL");
        return Err(ProviderError::detailed(service, operation, ErrorKind::Config, detail));
    }
    let trimmed = base.path().trim_end_matches('/').to_string();
    base.set_path(&trimmed);
    Ok(base)
}

/// The URL of `segments` under `base`, each segment percent-encoded (so a CIDR block's `/`
/// becomes `%2F`), with `query` appended.
pub(crate) fn endpoint(base: &reqwest::Url, segments: &[&str], query: &[(&str, String)]) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            pairs.append_pair(k, v);
        }
    }
    url
}

/// A request body as JSON.
pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    service: Service,
    operation: &str,
    value: &T,
) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(value).map_err(|e| {
        ProviderError::detailed(
            service,
            operation,
            ErrorKind::Config,
            format!("cannot encode the request: {e}"),
        )
    })
}

/// The clock clients use unless told otherwise.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let d1 = p.backoff(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100), "{d1:?}");
            let d3 = p.backoff(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400), "{d3:?}");
            let d10 = p.backoff(10);
            assert!(d10 >= Duration::from_millis(500) && d10 <= Duration::from_millis(1000), "{d10:?}");
        }
        let samples: std::collections::BTreeSet<_> = (0..50).map(|_| p.backoff(3)).collect();
        assert!(samples.len() > 1, "backoff has no jitter");
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn rate_limiter_holds_a_sliding_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(300));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(limiter.try_acquire(t0 + Duration::from_secs(i)), Ok(()));
        }
        // The 4th in the window waits until the first leaves it.
        assert_eq!(limiter.try_acquire(t0 + Duration::from_secs(10)), Err(Duration::from_secs(290)));
        assert_eq!(limiter.try_acquire(t0 + Duration::from_secs(300)), Ok(()));
        assert!(limiter.try_acquire(t0 + Duration::from_secs(300)).is_err());
        assert_eq!(limiter.try_acquire(t0 + Duration::from_secs(302)), Ok(()));
    }

    #[tokio::test]
    async fn rate_limiter_waits_on_the_clock() {
        let clock = ManualClock::new();
        let limiter = RateLimiter::new(2, Duration::from_secs(300));
        for _ in 0..5 {
            limiter.acquire(&clock).await;
        }
        let waited: Duration = clock.sleeps().iter().sum();
        assert_eq!(waited, Duration::from_secs(600));
    }

    #[test]
    fn display_is_an_actionable_sentence_without_secrets() {
        let e = ProviderError {
            service: Service::Atlas,
            operation: "get cluster main".into(),
            kind: ErrorKind::Unauthorized,
            status: Some(401),
            code: None,
            detail: Some("bad key s3cr3t".into()),
            attempts: 1,
        }
        .scrub(&["s3cr3t"]);
        let text = e.to_string();
        assert!(text.starts_with("Atlas rejected the API credentials (401: bad key [redacted])"), "{text}");
        assert!(text.contains("check the credentials Secret"), "{text}");
        assert!(!format!("{e:?}").contains("s3cr3t"));
    }
}
