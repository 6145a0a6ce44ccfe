//! Talking to a Redis server: the connection URL Apps get, a health probe (PING, the replication
//! role and the server version) and the bounded purge of key patterns (SCAN + UNLINK).
//!
//! This module decides how the operator talks to Redis (timeouts, TLS, which commands). It never
//! decides what to purge or when, and it never lets the password reach a log, an error message or
//! a `Debug` string: [`Password`] redacts itself and every error is rebuilt from its kind, never
//! from the server's or the driver's text.

use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, ServerErrorKind,
};

/// How long connecting (TCP, TLS, AUTH) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one command may take.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys asked for per SCAN call, and deleted per UNLINK call.
pub const SCAN_BATCH: usize = 1000;

/// A Redis password. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The password itself, for the connection Secret and the AUTH handshake only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A fresh random password of 32 letters and digits (about 190 bits), safe in URLs.
    pub fn generate() -> Self {
        use rand::RngExt as _;
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let value = (0..32).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect();
        Self(value)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a Redis answers and how to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Connect with TLS (`rediss://`).
    pub tls: bool,
    /// ACL user; the `default` user when absent.
    pub username: Option<String>,
    /// Password; none for an unprotected Redis.
    pub password: Option<Password>,
}

impl Endpoint {
    /// `host:port`, for status and messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL Apps connect with: `redis://` or `rediss://`, user and password percent-encoded,
    /// database 0. It holds the password: it goes into the connection Secret and nowhere else.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self.username.as_deref().map(percent_encode).unwrap_or_default();
        let auth = match &self.password {
            Some(p) => format!("{user}:{}@", percent_encode(p.expose())),
            None if !user.is_empty() => format!("{user}@"),
            None => String::new(),
        };
        format!("{scheme}://{auth}{}/0", self.address())
    }

    fn connection_info(&self) -> Result<ConnectionInfo, ProbeError> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        let mut settings =
            RedisConnectionInfo::default().set_lib_name("authentify-operator", env!("CARGO_PKG_VERSION"));
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password.expose());
        }
        let info = addr.into_connection_info().map_err(|e| classify(&e))?;
        Ok(info.set_redis_settings(settings))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What a probe learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// `master` or `slave` (Redis' words), from `INFO replication`.
    pub role: String,
    /// `redis_version` from `INFO server`.
    pub version: String,
}

/// Why Redis could not be used. Messages never quote the server or the driver, so they cannot
/// carry a credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Nothing listens on the port, or a firewall rejects the connection.
    #[error("the connection was refused")]
    Refused,
    /// No answer in time.
    #[error("it did not answer within {0:?}")]
    Timeout(Duration),
    /// The host name does not resolve.
    #[error("the host name does not resolve")]
    Dns,
    /// The password (or user) was refused.
    #[error("it refused the credentials")]
    Auth,
    /// A password is required and none was given.
    #[error("it requires a password and none is configured")]
    NoAuth,
    /// The TLS handshake failed.
    #[error("the TLS handshake failed")]
    Tls,
    /// The user lacks permission for a command.
    #[error("the user lacks permission for {0}")]
    NoPermission(&'static str),
    /// Anything else, by the driver's bounded category.
    #[error("it failed ({0})")]
    Other(String),
}

impl ProbeError {
    /// A short fixed reason for conditions and events (CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::Refused => "ConnectionRefused",
            ProbeError::Timeout(_) => "Timeout",
            ProbeError::Dns => "HostNotFound",
            ProbeError::Auth | ProbeError::NoAuth => "AuthenticationFailed",
            ProbeError::Tls => "TLSFailed",
            ProbeError::NoPermission(_) => "PermissionDenied",
            ProbeError::Other(_) => "Unreachable",
        }
    }

    /// What an SRE should check next.
    pub fn advice(&self) -> &'static str {
        match self {
            ProbeError::Refused => {
                "check the host and port, and that the Redis accepts connections from the operator"
            }
            ProbeError::Timeout(_) => {
                "check the network path (firewalls, trusted sources of the managed Redis)"
            }
            ProbeError::Dns => "check spec.external.host",
            ProbeError::Auth | ProbeError::NoAuth => {
                "check the password Secret named in spec.external.passwordSecret and spec.external.username"
            }
            ProbeError::Tls => "check spec.external.tls and that the server's certificate is trusted",
            ProbeError::NoPermission(_) => "grant the ACL user the commands PING, INFO, SCAN and UNLINK",
            ProbeError::Other(_) => "check the Redis server's logs",
        }
    }
}

/// Maps a driver error to a [`ProbeError`] without keeping any of its text.
fn classify(e: &redis::RedisError) -> ProbeError {
    if e.is_timeout() {
        return ProbeError::Timeout(RESPONSE_TIMEOUT);
    }
    if e.is_connection_refusal() {
        return ProbeError::Refused;
    }
    let code = e.code().unwrap_or_default();
    let detail = e.detail().unwrap_or_default().to_ascii_lowercase();
    match (e.kind(), code) {
        (ErrorKind::AuthenticationFailed, _) | (_, "WRONGPASS") => ProbeError::Auth,
        (_, "NOAUTH") => ProbeError::NoAuth,
        (_, "NOPERM") => ProbeError::NoPermission("a command it needs"),
        (ErrorKind::Server(ServerErrorKind::ResponseError), _) if detail.contains("without any password") => {
            ProbeError::Auth
        }
        (ErrorKind::Io, _) => {
            // Only the kind of I/O failure is kept: the driver's text is matched, never copied.
            let text = e.to_string().to_ascii_lowercase();
            if text.contains("tls") || text.contains("certificate") || text.contains("handshake") {
                ProbeError::Tls
            } else if text.contains("lookup") || text.contains("resolve") || text.contains("name or service")
            {
                ProbeError::Dns
            } else if text.contains("timed out") {
                ProbeError::Timeout(CONNECT_TIMEOUT)
            } else {
                ProbeError::Other("I/O error".into())
            }
        }
        (kind, _) => ProbeError::Other(
            format!("{kind:?}").chars().filter(|c| c.is_ascii_alphanumeric()).take(40).collect(),
        ),
    }
}

async fn connect(endpoint: &Endpoint) -> Result<MultiplexedConnection, ProbeError> {
    let client = redis::Client::open(endpoint.connection_info()?).map_err(|e| classify(&e))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    // The driver's own timeout covers the handshake; this one covers anything it does not.
    match tokio::time::timeout(
        CONNECT_TIMEOUT + RESPONSE_TIMEOUT,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(ProbeError::Timeout(CONNECT_TIMEOUT)),
    }
}

/// The value of `field` in the text of an `INFO` reply (`field:value` lines).
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == field).then(|| v.trim().to_string())
    })
}

/// PING, then the replication role and the server version.
pub async fn probe(endpoint: &Endpoint) -> Result<ProbeResult, ProbeError> {
    let mut conn = connect(endpoint).await?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| classify(&e))?;
    if pong != "PONG" {
        return Err(ProbeError::Other("unexpected reply to PING".into()));
    }
    let replication: String =
        redis::cmd("INFO").arg("replication").query_async(&mut conn).await.map_err(|e| classify(&e))?;
    let server: String =
        redis::cmd("INFO").arg("server").query_async(&mut conn).await.map_err(|e| classify(&e))?;
    Ok(ProbeResult {
        role: info_field(&replication, "role").unwrap_or_else(|| "unknown".into()),
        version: info_field(&server, "redis_version").unwrap_or_else(|| "unknown".into()),
    })
}

/// Deletes keys matching `patterns` with SCAN and UNLINK, at most `max_keys` in all, and returns
/// how many were deleted. Never FLUSHALL, never KEYS: the server stays responsive while it runs.
pub async fn purge(endpoint: &Endpoint, patterns: &[String], max_keys: u64) -> Result<u64, ProbeError> {
    let mut conn = connect(endpoint).await?;
    let mut deleted: u64 = 0;
    for pattern in patterns {
        let mut cursor: u64 = 0;
        loop {
            if deleted >= max_keys {
                return Ok(deleted);
            }
            let (next, mut keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .cursor_arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(&e))?;
            let budget = usize::try_from(max_keys - deleted).unwrap_or(usize::MAX);
            keys.truncate(budget);
            for chunk in keys.chunks(SCAN_BATCH) {
                let n: u64 =
                    redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await.map_err(|e| classify(&e))?;
                deleted += n;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(deleted)
}

/// Asks a Sentinel for the current primary of `master`: the host it announces, if it knows one.
pub async fn sentinel_primary(sentinel: &Endpoint, master: &str) -> Result<Option<String>, ProbeError> {
    let mut conn = connect(sentinel).await?;
    let reply: Option<Vec<String>> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query_async(&mut conn)
        .await
        .map_err(|e| classify(&e))?;
    Ok(reply.and_then(|r| r.into_iter().next()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(tls: bool, user: Option<&str>, password: Option<&str>) -> Endpoint {
        Endpoint {
            host: "db-redis.example.com".into(),
            port: 25061,
            tls,
            username: user.map(Into::into),
            password: password.map(Password::new),
        }
    }

    #[test]
    fn urls_for_plain_tls_user_and_no_password() {
        assert_eq!(
            endpoint(false, None, Some("s3cret")).url(),
            "redis://:s3cret@db-redis.example.com:25061/0"
        );
        assert_eq!(
            endpoint(true, Some("default"), Some("p@ss:w/rd")).url(),
            "rediss://default:p%40ss%3Aw%2Frd@db-redis.example.com:25061/0"
        );
        assert_eq!(endpoint(false, None, None).url(), "redis://db-redis.example.com:25061/0");
        assert_eq!(endpoint(true, Some("app"), None).url(), "rediss://app@db-redis.example.com:25061/0");
        let v6 = Endpoint { host: "::1".into(), ..endpoint(false, None, None) };
        assert_eq!(v6.address(), "[::1]:25061");
    }

    #[test]
    fn the_tls_url_parses_back_to_a_tls_connection_with_the_same_credentials() {
        let ep = endpoint(true, Some("default"), Some("p@ss:w/rd"));
        let info = ep.url().into_connection_info().expect("the URL parses");
        assert!(
            matches!(info.addr(), ConnectionAddr::TcpTls { host, port: 25061, insecure: false, .. } if host == "db-redis.example.com")
        );
        assert_eq!(info.redis_settings().password(), Some("p@ss:w/rd"));
        assert_eq!(info.redis_settings().username(), Some("default"));
        assert!(matches!(ep.connection_info().expect("builds").addr(), ConnectionAddr::TcpTls { .. }));
    }

    #[test]
    fn password_never_shows_in_debug_or_display() {
        let ep = endpoint(true, None, Some("hunter2-very-secret"));
        let text = format!(
            "{ep:?} {} {:?}",
            ep.password.clone().map(|p| p.to_string()).unwrap_or_default(),
            ep.password
        );
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn generated_passwords_are_long_random_and_url_safe() {
        let (a, b) = (Password::generate(), Password::generate());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn info_fields() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n";
        assert_eq!(info_field(info, "role").as_deref(), Some("master"));
        assert_eq!(info_field(info, "missing"), None);
    }

    #[test]
    fn messages_never_quote_the_driver() {
        let e = redis::RedisError::from((
            ErrorKind::AuthenticationFailed,
            "auth",
            "password was hunter2".to_string(),
        ));
        let p = classify(&e);
        assert_eq!(p, ProbeError::Auth);
        assert!(!p.to_string().contains("hunter2"));
    }
}
