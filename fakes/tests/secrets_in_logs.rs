//! No credential reaches a log line, an error message or a `Debug` string, with everything logged
//! at TRACE while both clients authenticate, retry and fail. One test in its own binary, with a
//! global subscriber: tracing caches per-callsite interest process-wide, so a subscriber set for
//! one thread while other tests run could miss events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use authentify::providers::atlas::{
    AtlasApi, AtlasClient, AtlasConfig, AtlasCredentials, DatabaseUser, DatabaseUserRole, UserScope,
};
use authentify::providers::cloudflare::{
    CloudflareApi, CloudflareClient, CloudflareConfig, Purge, ZoneSettingId,
};
use authentify::providers::http::{ManualClock, ProviderError, Secret};
use authentify_fakes::{AtlasFake, CloudflareFake, Fault};

const GROUP: &str = "5f1a2b3c4d5e6f7a8b9c0d1e";
const PUBLIC: &str = "pubkey-abc";
const PRIVATE: &str = "private-4f9d8e7c-6b5a";
const CLIENT_ID: &str = "mdb_sa_id_1234";
const CLIENT_SECRET: &str = "mdb_sa_sk_super-secret";
const PASSWORD: &str = "user-password-Zq8r7t6y";
const CF_TOKEN: &str = "cf-token-Xy7Pq2Rs9Tu4";

/// Collects everything logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn user() -> DatabaseUser {
    DatabaseUser {
        database_name: "admin".into(),
        username: "app-9".into(),
        roles: vec![DatabaseUserRole {
            role_name: "readWrite".into(),
            database_name: "app".into(),
            collection_name: None,
        }],
        scopes: vec![UserScope::cluster("main")],
        labels: vec![],
        delete_after_date: None,
    }
}

fn atlas(fake: &AtlasFake, credentials: AtlasCredentials, clock: &Arc<ManualClock>) -> AtlasClient {
    let mut config = AtlasConfig::new(credentials).with_base_url(fake.base_url());
    config.clock = clock.clone();
    AtlasClient::new(config).unwrap()
}

#[tokio::test]
async fn secrets_never_reach_logs_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut shown: Vec<String> = Vec::new();
    let show = |shown: &mut Vec<String>, e: &ProviderError| shown.extend([e.to_string(), format!("{e:?}")]);
    let clock = Arc::new(ManualClock::new());

    let fake = AtlasFake::start().await.unwrap();
    fake.add_api_key(PUBLIC, PRIVATE);
    fake.add_service_account(CLIENT_ID, CLIENT_SECRET);
    fake.put_cluster(GROUP, "main", "IDLE");
    for credentials in [
        AtlasCredentials::ApiKey { public_key: PUBLIC.into(), private_key: Secret::new(PRIVATE) },
        AtlasCredentials::ServiceAccount {
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(CLIENT_SECRET),
        },
    ] {
        let client = atlas(&fake, credentials, &clock);
        client.create_database_user(GROUP, &user(), &Secret::new(PASSWORD)).await.unwrap();
        fake.inject(Fault::TooManyRequests { retry_after_secs: 1 }, 1);
        client.delete_database_user(GROUP, "admin", "app-9").await.unwrap();
        fake.inject(Fault::ServerError, 5);
        show(&mut shown, &client.get_cluster(GROUP, "main").await.unwrap_err());
        shown.push(format!("{client:?}"));
    }
    let wrong =
        AtlasCredentials::ServiceAccount { client_id: CLIENT_ID.into(), client_secret: Secret::new("bad") };
    show(&mut shown, &atlas(&fake, wrong, &clock).get_cluster(GROUP, "main").await.unwrap_err());
    let wrong = AtlasCredentials::ApiKey { public_key: PUBLIC.into(), private_key: Secret::new("bad") };
    show(&mut shown, &atlas(&fake, wrong, &clock).get_cluster(GROUP, "main").await.unwrap_err());
    fake.assert_no_violations();

    let cf = CloudflareFake::start().await.unwrap();
    cf.add_token(CF_TOKEN);
    let zone = cf.add_zone("authentify.it");
    let mut config = CloudflareConfig::new(Secret::new(CF_TOKEN)).with_base_url(cf.base_url());
    config.clock = clock.clone();
    config.retry.timeout = Duration::from_secs(10);
    let client = CloudflareClient::new(config.clone()).unwrap();
    cf.inject(Fault::TooManyRequests { retry_after_secs: 1 }, 1);
    client.purge_cache(&zone, &Purge::Hosts(vec!["app.authentify.it".into()])).await.unwrap();
    cf.inject(Fault::ServerError, 5);
    show(&mut shown, &client.get_zone_setting(&zone, ZoneSettingId::CacheLevel).await.unwrap_err());
    config.token = Secret::new("wrong-cf-token");
    show(&mut shown, &CloudflareClient::new(config).unwrap().get_tiered_caching(&zone).await.unwrap_err());
    shown.push(format!("{client:?}"));
    cf.assert_no_violations();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "the clients log their retries: {logs}");
    let tokens = fake.issued_tokens();
    assert!(!tokens.is_empty());
    let secrets = [PRIVATE, CLIENT_SECRET, PASSWORD, CF_TOKEN, "wrong-cf-token"]
        .into_iter()
        .map(String::from)
        .chain(tokens);
    for secret in secrets {
        assert!(!logs.contains(&secret), "{secret} logged: {logs}");
        for s in &shown {
            assert!(!s.contains(&secret), "{secret} in {s}");
        }
    }
}
