//! What both fakes share: serving on a local port, checking each exchange against the vendor's
//! schema and recording violations, counting requests per operation, and injected faults.
//!
//! It decides the order of things for every request: match the operation, authenticate (the
//! vendor-specific part), apply an injected fault, answer, and check the answer. It never hides a
//! violation: each one is kept until the test reads it.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use rand::RngExt as _;
use tokio::task::JoinHandle;

use crate::openapi::{Operation, RequestParts, Spec, Violation};

/// A fault to answer instead of the real thing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: retry_after_secs` and the vendor's error body.
    TooManyRequests {
        /// Seconds the client is asked to wait.
        retry_after_secs: u64,
    },
    /// 500 with the vendor's error body.
    ServerError,
    /// Answer normally, but only after this long (to trip the client's timeout).
    Delay(Duration),
}

/// A request as the fakes see it.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: self.headers.clone(),
            body: &self.body,
        }
    }

    /// Path and query as sent (the request target).
    pub fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Outgoing {
    pub fn json(status: u16, media_type: &str, body: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), media_type.into())],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// Schema, records and faults of one fake.
#[derive(Debug)]
pub(crate) struct Core {
    pub spec: Spec,
    violations: Mutex<Vec<Violation>>,
    counts: Mutex<BTreeMap<String, usize>>,
    faults: Mutex<VecDeque<Fault>>,
}

impl Core {
    pub fn new(spec: Spec) -> Self {
        Self {
            spec,
            violations: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(VecDeque::new()),
        }
    }

    pub fn record(&self, violations: impl IntoIterator<Item = Violation>) {
        let mut all = self.violations.lock().unwrap_or_else(PoisonError::into_inner);
        for v in violations {
            tracing::warn!(violation = %v, "schema violation");
            all.push(v);
        }
    }

    pub fn violations(&self) -> Vec<Violation> {
        self.violations.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn count(&self, operation: &str) {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(operation.to_string())
            .or_default() += 1;
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn inject(&self, fault: Fault, times: usize) {
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        faults.extend(std::iter::repeat_n(fault, times));
    }

    pub fn next_fault(&self) -> Option<Fault> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner).pop_front()
    }

    /// Checks `out` as the answer to `op` and records what is wrong. `only_if_declared` skips
    /// answers whose status the operation does not declare (injected 5xx that vendors send from
    /// outside any schema).
    pub fn check_response(&self, op: &Operation, path: &str, out: &Outgoing, only_if_declared: bool) {
        let violations = self.spec.check_response(op, path, out.status, &out.headers, &out.body);
        if only_if_declared
            && violations.iter().any(|v| v.message.starts_with("the operation defines no response"))
        {
            return;
        }
        self.record(violations);
    }
}

/// Something that answers requests.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, req: Incoming) -> Pin<Box<dyn Future<Output = Outgoing> + Send>>;
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `handler` on `addr` (port 0 picks a free port).
pub(crate) async fn serve<H: Handler>(addr: SocketAddr, handler: Arc<H>) -> anyhow::Result<Server> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(move |req: Request| {
        let handler = handler.clone();
        async move { respond(handler, req).await }
    });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "fake server stopped");
        }
    });
    Ok(Server { addr, task })
}

async fn respond<H: Handler>(handler: Arc<H>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b.to_vec(),
        Err(_) => return plain(StatusCode::BAD_REQUEST, "unreadable body"),
    };
    let incoming = Incoming {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body,
    };
    let out = handler.handle(incoming).await;
    let mut response = Response::new(Body::from(out.body));
    *response.status_mut() = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in out.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            response.headers_mut().append(k, v);
        }
    }
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r
}

/// `n` random bytes as lower-case hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

/// The current time as RFC 3339 (UTC, seconds).
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Panics with every violation listed, if there is any.
pub(crate) fn assert_none(service: &str, violations: &[Violation]) {
    if !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(|v| format!("  - {v}")).collect();
        panic!("{} schema violation(s) at the {service} fake:\n{}", violations.len(), list.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_is_well_formed() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
