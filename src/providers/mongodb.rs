//! The MongoDB connection check: connects with a connection string exactly as an App would (the
//! official `mongodb` driver, SRV resolution included) and runs `ping` on the App's database.
//!
//! It decides only what an answer means ([`PingErrorKind`]) and how to say it; it never keeps a
//! connection, and never lets the password (which the URI carries) reach an error, a log or a
//! `Debug` string: every message is scrubbed of it.

use std::fmt;
use std::time::Duration;

use mongodb::bson::doc;
use mongodb::error::ErrorKind as DriverErrorKind;
use mongodb::options::ClientOptions;

use super::http::Secret;

/// What a ping failure means for the person reading the condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingErrorKind {
    /// The server refused the user name or password.
    AuthenticationFailed,
    /// No server answered in time (closed port, firewall, IP access list, paused cluster).
    Unreachable,
    /// The SRV or host name could not be resolved.
    DnsFailed,
    /// The connection string is not one the driver accepts.
    InvalidUri,
    /// The server answered the ping with an error.
    CommandFailed,
}

impl PingErrorKind {
    /// CamelCase reason for conditions and Events.
    pub fn reason(self) -> &'static str {
        match self {
            PingErrorKind::AuthenticationFailed => "AuthenticationFailed",
            PingErrorKind::Unreachable => "Unreachable",
            PingErrorKind::DnsFailed => "DnsFailed",
            PingErrorKind::InvalidUri => "InvalidUri",
            PingErrorKind::CommandFailed => "PingFailed",
        }
    }

    /// What to do about it, as a sentence.
    pub fn advice(self) -> &'static str {
        match self {
            PingErrorKind::AuthenticationFailed => {
                "the user may not have reached the cluster yet (Atlas applies new users within a minute), or it was changed outside the operator; the check is repeated"
            }
            PingErrorKind::Unreachable => {
                "check that the cluster runs and that the operator's egress address is in the project's IP access list (spec.ipAccessList); set checkConnection: false where the cluster is not reachable from the operator"
            }
            PingErrorKind::DnsFailed => {
                "check the cluster's SRV record and the operator's DNS; set checkConnection: false where the cluster is not reachable from the operator"
            }
            PingErrorKind::InvalidUri => {
                "the cluster's connection string cannot be used as published; report it"
            }
            PingErrorKind::CommandFailed => "the server is up but refused the ping; check the user's roles",
        }
    }
}

/// A failed ping. `Display` never contains the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingError {
    /// What it means.
    pub kind: PingErrorKind,
    /// What the driver said, scrubbed of the password.
    pub detail: String,
}

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.detail)
    }
}

impl std::error::Error for PingError {}

/// Replaces every occurrence of the password (raw and URL-escaped) with `***`.
pub fn scrub(text: &str, password: &str) -> String {
    if password.is_empty() {
        return text.to_string();
    }
    let escaped =
        percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC).to_string();
    text.replace(password, "***").replace(&escaped, "***")
}

/// Classifies a driver error.
fn kind_of(error: &mongodb::error::Error) -> PingErrorKind {
    match error.kind.as_ref() {
        DriverErrorKind::Authentication { .. } => PingErrorKind::AuthenticationFailed,
        DriverErrorKind::Command(c) if c.code == 18 => PingErrorKind::AuthenticationFailed,
        DriverErrorKind::Command(_) => PingErrorKind::CommandFailed,
        DriverErrorKind::DnsResolve { .. } => PingErrorKind::DnsFailed,
        DriverErrorKind::InvalidArgument { .. } => PingErrorKind::InvalidUri,
        _ => {
            // A handshake refused for its credentials may surface through server selection.
            let text = error.to_string();
            if text.contains("Authentication failed") || text.contains("AuthenticationFailed") {
                PingErrorKind::AuthenticationFailed
            } else {
                PingErrorKind::Unreachable
            }
        }
    }
}

/// Connects with `uri` and runs `{ping: 1}` against `database`, waiting at most `timeout` for a
/// server. Returns the names of the hosts the driver was given.
pub async fn ping(
    uri: &Secret,
    password: &Secret,
    database: &str,
    timeout: Duration,
) -> Result<(), PingError> {
    let fail = |error: mongodb::error::Error| PingError {
        kind: kind_of(&error),
        detail: scrub(&error.to_string(), password.expose()),
    };
    let mut options = ClientOptions::parse(uri.expose()).await.map_err(fail)?;
    options.server_selection_timeout = Some(timeout);
    options.connect_timeout = Some(timeout);
    options.app_name = Some("authentify-operator".into());
    options.max_pool_size = Some(1);
    let client = mongodb::Client::with_options(options).map_err(fail)?;
    let result = tokio::time::timeout(timeout * 2, client.database(database).run_command(doc! {"ping": 1}))
        .await
        .map_err(|_| PingError {
            kind: PingErrorKind::Unreachable,
            detail: format!("no answer to ping within {}s", (timeout * 2).as_secs()),
        })?
        .map(|_| ())
        .map_err(fail);
    client.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_raw_and_escaped_passwords() {
        assert_eq!(scrub("bad p@ss:w and p%40ss%3Aw", "p@ss:w"), "bad *** and ***");
        assert_eq!(scrub("nothing here", ""), "nothing here");
    }

    #[test]
    fn reasons_are_camel_case_and_advice_is_a_sentence() {
        for k in [
            PingErrorKind::AuthenticationFailed,
            PingErrorKind::Unreachable,
            PingErrorKind::DnsFailed,
            PingErrorKind::InvalidUri,
            PingErrorKind::CommandFailed,
        ] {
            assert!(k.reason().chars().next().is_some_and(char::is_uppercase));
            assert!(!k.reason().contains(' '));
            assert!(k.advice().len() > 20);
        }
    }

    #[tokio::test]
    async fn closed_port_is_unreachable_without_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let password = Secret::new("S3cretPassw0rd");
        let uri =
            Secret::new(format!("mongodb://u:{}@127.0.0.1:{port}/app?authSource=admin", password.expose()));
        let err = ping(&uri, &password, "app", Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(err.kind, PingErrorKind::Unreachable, "{err}");
        assert!(!err.to_string().contains(password.expose()));
    }

    #[tokio::test]
    async fn unparsable_uri_is_invalid() {
        let password = Secret::new("pw");
        let err = ping(&Secret::new("http://nope"), &password, "app", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(err.kind, PingErrorKind::InvalidUri, "{err}");
    }
}
