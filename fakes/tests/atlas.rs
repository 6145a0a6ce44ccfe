//! The Atlas client against the Atlas fake: every operation, both authentication methods,
//! pagination, retries and error messages, with every exchange checked against the schema.

use std::sync::Arc;
use std::time::Duration;

use authentify::providers::atlas::{
    AccessListEntry, AtlasApi, AtlasClient, AtlasConfig, AtlasCredentials, DatabaseUser, DatabaseUserRole,
    Label, UserScope,
};
use authentify::providers::http::{ErrorKind, ManualClock, Secret};
use authentify_fakes::{AtlasFake, Fault};

const GROUP: &str = "5f1a2b3c4d5e6f7a8b9c0d1e";
const PUBLIC: &str = "pubkey-abc";
const PRIVATE: &str = "private-4f9d8e7c-6b5a";
const CLIENT_ID: &str = "mdb_sa_id_1234";
const CLIENT_SECRET: &str = "mdb_sa_sk_super-secret";
const PASSWORD: &str = "user-password-Zq8r7t6y";

async fn fake() -> AtlasFake {
    AtlasFake::start_seeded(GROUP, (PUBLIC, PRIVATE), (CLIENT_ID, CLIENT_SECRET)).await.unwrap()
}

fn client_with(fake: &AtlasFake, credentials: AtlasCredentials, clock: &Arc<ManualClock>) -> AtlasClient {
    let mut config = AtlasConfig::new(credentials).with_base_url(fake.base_url());
    config.clock = clock.clone();
    config.retry.timeout = Duration::from_secs(10);
    AtlasClient::new(config).unwrap()
}

fn api_key() -> AtlasCredentials {
    AtlasCredentials::ApiKey { public_key: PUBLIC.into(), private_key: Secret::new(PRIVATE) }
}

fn service_account() -> AtlasCredentials {
    AtlasCredentials::ServiceAccount {
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
    }
}

fn user(name: &str) -> DatabaseUser {
    DatabaseUser {
        database_name: "admin".into(),
        username: name.into(),
        roles: vec![DatabaseUserRole {
            role_name: "readWrite".into(),
            database_name: "app".into(),
            collection_name: None,
        }],
        scopes: vec![UserScope::cluster("main")],
        labels: vec![Label { key: "managed-by".into(), value: "authentify".into() }],
        delete_after_date: None,
    }
}

#[tokio::test]
async fn database_user_lifecycle_with_digest_auth() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, api_key(), &clock);

    assert_eq!(client.get_database_user(GROUP, "admin", "app-1").await.unwrap(), None);
    let created = client.create_database_user(GROUP, &user("app-1"), &Secret::new(PASSWORD)).await.unwrap();
    assert_eq!(created, user("app-1"));
    assert_eq!(fake.user_password(GROUP, "admin", "app-1").as_deref(), Some(PASSWORD));
    assert_eq!(client.get_database_user(GROUP, "admin", "app-1").await.unwrap(), Some(user("app-1")));

    let mut changed = user("app-1");
    changed.roles[0].role_name = "read".into();
    let updated =
        client.update_database_user(GROUP, &changed, Some(&Secret::new("new-password-123"))).await.unwrap();
    assert_eq!(updated.roles[0].role_name, "read");
    assert_eq!(fake.user_password(GROUP, "admin", "app-1").as_deref(), Some("new-password-123"));

    let err = client.create_database_user(GROUP, &user("app-1"), &Secret::new(PASSWORD)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(err.code.as_deref(), Some("USER_ALREADY_EXISTS"));

    assert_eq!(client.list_database_users(GROUP).await.unwrap(), vec![changed]);
    assert!(client.delete_database_user(GROUP, "admin", "app-1").await.unwrap());
    assert!(!client.delete_database_user(GROUP, "admin", "app-1").await.unwrap());
    assert_eq!(fake.user(GROUP, "admin", "app-1"), None);

    // The first request met a Digest challenge; the nonce was then reused with a growing count.
    let total: usize = fake.request_counts().values().sum();
    assert_eq!(total, 9, "{:?}", fake.request_counts());
    assert!(clock.sleeps().is_empty(), "no retry expected: {:?}", clock.sleeps());
    fake.assert_no_violations();
}

#[tokio::test]
async fn cluster_state_and_connection_strings() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, api_key(), &clock);
    fake.set_cluster_state(GROUP, "main", "UPDATING");
    let cluster = client.get_cluster(GROUP, "main").await.unwrap().unwrap();
    assert_eq!(cluster.state_name.as_deref(), Some("UPDATING"));
    assert!(!cluster.is_idle());
    fake.set_cluster_state(GROUP, "main", "IDLE");
    let cluster = client.get_cluster(GROUP, "main").await.unwrap().unwrap();
    assert!(cluster.is_idle());
    assert_eq!(
        cluster.connection_strings.standard_srv.as_deref(),
        Some("mongodb+srv://main.abcde.mongodb.net")
    );
    assert!(cluster.connection_strings.standard.as_deref().is_some_and(|s| s.starts_with("mongodb://")));
    assert_eq!(client.get_cluster(GROUP, "other").await.unwrap(), None);

    // A user scoped to a cluster that does not exist is refused with a clear sentence.
    let mut stray = user("app-2");
    stray.scopes = vec![UserScope::cluster("missing")];
    let err = client.create_database_user(GROUP, &stray, &Secret::new(PASSWORD)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(err.to_string().contains("Cluster missing does not exist"), "{err}");
    fake.assert_no_violations();
}

#[tokio::test]
async fn access_list_add_list_delete_with_cidr_in_path() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, api_key(), &clock);
    let entries = vec![
        AccessListEntry::cidr("203.0.113.0/24", Some("authentify: egress".into())),
        AccessListEntry { ip_address: Some("198.51.100.7".into()), ..AccessListEntry::default() },
    ];
    client.add_access_list_entries(GROUP, &entries).await.unwrap();
    let listed = client.list_access_list(GROUP).await.unwrap();
    let blocks: Vec<_> = listed.iter().filter_map(|e| e.cidr_block.clone()).collect();
    assert_eq!(blocks, ["203.0.113.0/24", "198.51.100.7/32"]);
    assert!(client.delete_access_list_entry(GROUP, "203.0.113.0/24").await.unwrap());
    assert!(!client.delete_access_list_entry(GROUP, "203.0.113.0/24").await.unwrap());
    assert_eq!(fake.access_list(GROUP).len(), 1);
    fake.assert_no_violations();
}

#[tokio::test]
async fn lists_follow_pages_until_total_count() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let mut config = AtlasConfig::new(api_key()).with_base_url(fake.base_url());
    config.clock = clock.clone();
    config.page_size = 2;
    let client = AtlasClient::new(config).unwrap();
    for i in 0..5 {
        client.create_database_user(GROUP, &user(&format!("u{i}")), &Secret::new(PASSWORD)).await.unwrap();
    }
    let users = client.list_database_users(GROUP).await.unwrap();
    let names: Vec<_> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["u0", "u1", "u2", "u3", "u4"]);
    assert_eq!(fake.requests("listDatabaseUsers"), 3, "pages of 2, 2 and 1");
    fake.assert_no_violations();
}

#[tokio::test]
async fn service_account_token_is_reused_then_renewed_before_expiry() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, service_account(), &clock);
    client.get_cluster(GROUP, "main").await.unwrap().unwrap();
    client.list_database_users(GROUP).await.unwrap();
    assert_eq!(fake.requests("oauthToken"), 1, "the token is cached");

    // 3,500 s later the token (3,600 s) is within the 5-minute renewal margin.
    clock.advance(Duration::from_secs(3500));
    client.get_cluster(GROUP, "main").await.unwrap().unwrap();
    assert_eq!(fake.requests("oauthToken"), 2, "renewed before it expires");

    // A token the server no longer accepts (expired by its clock) is replaced once, transparently.
    fake.advance_clock(Duration::from_secs(3700));
    client.get_cluster(GROUP, "main").await.unwrap().unwrap();
    assert_eq!(fake.requests("oauthToken"), 3);
    fake.assert_no_violations();
}

#[tokio::test]
async fn wrong_service_account_secret_is_a_clear_error() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let wrong = AtlasCredentials::ServiceAccount {
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new("not-the-secret-xyz"),
    };
    let err = client_with(&fake, wrong, &clock).get_cluster(GROUP, "main").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    let text = err.to_string();
    assert!(text.starts_with("Atlas rejected the API credentials (401"), "{text}");
    assert!(text.contains("check the credentials Secret"), "{text}");
    assert!(!text.contains("not-the-secret-xyz") && !format!("{err:?}").contains("not-the-secret-xyz"));
}

#[tokio::test]
async fn wrong_private_key_is_a_clear_error_without_secrets() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let wrong = AtlasCredentials::ApiKey {
        public_key: PUBLIC.into(),
        private_key: Secret::new("wrong-private-key-777"),
    };
    let client = client_with(&fake, wrong, &clock);
    let err = client.get_database_user(GROUP, "admin", "app-1").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(err.status, Some(401));
    let text = err.to_string();
    assert!(text.starts_with("Atlas rejected the API credentials (401 USER_UNAUTHORIZED"), "{text}");
    assert!(text.contains("while trying to read database user app-1"), "{text}");
    assert!(text.contains("check the credentials Secret"), "{text}");
    for shown in [text, format!("{err:?}"), format!("{client:?}")] {
        assert!(!shown.contains("wrong-private-key-777"), "{shown}");
        assert!(!shown.contains(PRIVATE), "{shown}");
    }
    // Two exchanges: the challenge, then the refused answer; no retry of a refusal.
    assert_eq!(fake.requests("getDatabaseUser"), 2);
    fake.assert_no_violations();
}

#[tokio::test]
async fn rate_limit_waits_retry_after_then_succeeds() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, api_key(), &clock);
    client.get_cluster(GROUP, "main").await.unwrap(); // authenticate first
    fake.inject(Fault::TooManyRequests { retry_after_secs: 2 }, 2);
    client.get_cluster(GROUP, "main").await.unwrap().unwrap();
    assert_eq!(clock.sleeps(), [Duration::from_secs(2), Duration::from_secs(2)]);
    assert_eq!(fake.requests("getCluster"), 1 + 1 + 3);
    fake.assert_no_violations();
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_and_bounded() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let client = client_with(&fake, api_key(), &clock);
    client.list_access_list(GROUP).await.unwrap();
    fake.inject(Fault::ServerError, 2);
    client.list_access_list(GROUP).await.unwrap();
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 2);
    assert!(sleeps[0] >= Duration::from_millis(250) && sleeps[0] <= Duration::from_millis(500), "{sleeps:?}");
    assert!(
        sleeps[1] >= Duration::from_millis(500) && sleeps[1] <= Duration::from_millis(1000),
        "{sleeps:?}"
    );

    // Attempts are bounded: five 500s in a row are reported, not retried forever.
    fake.inject(Fault::ServerError, 5);
    let err = client.list_access_list(GROUP).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
    assert_eq!(err.attempts, 5);
    assert!(err.to_string().contains("after 5 attempts"), "{err}");
    fake.assert_no_violations();
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried_when_idempotent() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let mut config = AtlasConfig::new(api_key()).with_base_url(fake.base_url());
    config.clock = clock.clone();
    config.retry.timeout = Duration::from_millis(200);
    config.retry.max_attempts = 2;
    let client = AtlasClient::new(config).unwrap();
    client.get_cluster(GROUP, "main").await.unwrap();
    fake.inject(Fault::Delay(Duration::from_secs(5)), 2);
    let err = client.get_cluster(GROUP, "main").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(err.attempts, 2);
    assert!(err.to_string().starts_with("Atlas did not answer in time"), "{err}");
}
