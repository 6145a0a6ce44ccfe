//! The AtlasConnection controller's Atlas steps (access list, database user) against the Atlas
//! fake, with both authentication methods, injected 429 and 500 answers, and wrong keys turned
//! into the condition an SRE reads. Every exchange is checked against the Atlas schema.

use std::sync::Arc;
use std::time::Duration;

use authentify::api::atlas::AtlasConnection;
use authentify::api::common::ResourcePhase;
use authentify::controllers::atlas::{atlas_blocker, build, decide, ensure_user, sync_access_list};
use authentify::providers::atlas::{AtlasApi, AtlasClient, AtlasConfig, AtlasCredentials};
use authentify::providers::http::{ManualClock, Secret};
use authentify_fakes::{AtlasFake, Fault};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const GROUP: &str = "5f1a2b3c4d5e6f7a8b9c0d1e";
const PUBLIC: &str = "pubkey-controller";
const PRIVATE: &str = "private-controller-9f8e7d";
const CLIENT_ID: &str = "mdb_sa_id_controller";
const CLIENT_SECRET: &str = "mdb_sa_sk_controller-secret";

async fn fake() -> AtlasFake {
    AtlasFake::start_seeded(GROUP, (PUBLIC, PRIVATE), (CLIENT_ID, CLIENT_SECRET)).await.unwrap()
}

fn client(fake: &AtlasFake, credentials: AtlasCredentials, clock: &Arc<ManualClock>) -> AtlasClient {
    let mut config = AtlasConfig::new(credentials).with_base_url(fake.base_url());
    config.clock = clock.clone();
    AtlasClient::new(config).unwrap()
}

fn api_key(private: &str) -> AtlasCredentials {
    AtlasCredentials::ApiKey { public_key: PUBLIC.into(), private_key: Secret::new(private) }
}

fn service_account(secret: &str) -> AtlasCredentials {
    AtlasCredentials::ServiceAccount { client_id: CLIENT_ID.into(), client_secret: Secret::new(secret) }
}

fn conn(extra: &str) -> AtlasConnection {
    let yaml = format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: AtlasConnection\nmetadata: {{name: orders, namespace: prod, uid: u-1, generation: 1}}\nspec:\n  credentials: {{secretName: atlas-key}}\n  projectId: {GROUP}\n  clusterName: main\n  database: orders\n{extra}"
    );
    serde_yaml_ng::from_str(&yaml).unwrap()
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[tokio::test]
async fn digest_flow_creates_the_user_and_owns_only_the_entries_it_added() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let atlas = client(&fake, api_key(PRIVATE), &clock);
    // Someone else's entry, also listed in the spec.
    atlas
        .add_access_list_entries(
            GROUP,
            &[authentify::providers::atlas::AccessListEntry::cidr("192.0.2.0/24", None)],
        )
        .await
        .unwrap();
    let c = conn(
        "  ipAccessList:\n  - {cidrBlock: 10.1.0.0/16}\n  - {ipAddress: 203.0.113.9}\n  - {cidrBlock: 192.0.2.0/24}\n",
    );
    let mut notes = vec![];
    let owned = sync_access_list(&atlas, &c, &[], &mut notes).await.unwrap();
    assert_eq!(owned, vec!["10.1.0.0/16".to_string(), "203.0.113.9".to_string()]);
    assert_eq!(fake.access_list(GROUP).len(), 3);
    assert_eq!(notes.len(), 1);
    // Nothing changes the second time.
    let adds = fake.requests("createAccessListEntry");
    let again = sync_access_list(&atlas, &c, &owned, &mut notes).await.unwrap();
    assert_eq!(again, owned);
    assert_eq!(fake.requests("createAccessListEntry"), adds, "nothing added again");
    assert_eq!(notes.len(), 1, "no Event either");

    // Dropping everything from the spec removes only the operator's entries.
    let left = sync_access_list(&atlas, &conn(""), &owned, &mut notes).await.unwrap();
    assert!(left.is_empty());
    let remaining: Vec<String> =
        fake.access_list(GROUP).iter().filter_map(|e| e["cidrBlock"].as_str().map(String::from)).collect();
    assert_eq!(remaining, vec!["192.0.2.0/24".to_string()]);

    // The user: created once with its password, labelled, then updated when the roles change.
    let desired = build::database_user(&c, "orders-1");
    assert!(ensure_user(&atlas, GROUP, &desired, &Secret::new("pw-one-Abc123")).await.unwrap());
    assert!(!ensure_user(&atlas, GROUP, &desired, &Secret::new("ignored")).await.unwrap());
    assert_eq!(fake.user_password(GROUP, "admin", "orders-1").as_deref(), Some("pw-one-Abc123"));
    assert_eq!(fake.requests("createDatabaseUser"), 1);
    assert_eq!(fake.requests("updateDatabaseUser"), 0);
    let stored = fake.user(GROUP, "admin", "orders-1").unwrap();
    assert_eq!(stored["labels"][1]["value"], "prod/orders");
    let read_only =
        build::database_user(&conn("  roles: [{roleName: read, databaseName: orders}]\n"), "orders-1");
    assert!(!ensure_user(&atlas, GROUP, &read_only, &Secret::new("ignored")).await.unwrap());
    assert_eq!(fake.user(GROUP, "admin", "orders-1").unwrap()["roles"][0]["roleName"], "read");
    assert_eq!(
        fake.user_password(GROUP, "admin", "orders-1").as_deref(),
        Some("pw-one-Abc123"),
        "password kept"
    );
    fake.assert_no_violations();
}

#[tokio::test]
async fn service_account_flow_rides_out_injected_429_and_500() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let atlas = client(&fake, service_account(CLIENT_SECRET), &clock);
    fake.inject(Fault::TooManyRequests { retry_after_secs: 2 }, 1);
    fake.inject(Fault::ServerError, 1);
    let c = conn("");
    let desired = build::database_user(&c, "orders-1");
    assert!(ensure_user(&atlas, GROUP, &desired, &Secret::new("pw-sa-Xyz789")).await.unwrap());
    let cluster = atlas.get_cluster(GROUP, "main").await.unwrap().unwrap();
    assert!(cluster.is_idle());
    assert_eq!(fake.requests("oauthToken"), 1, "one token for every call");
    assert_eq!(fake.requests("getDatabaseUser"), 3, "429, then 500, then the answer");
    assert!(clock.sleeps().contains(&Duration::from_secs(2)), "Retry-After honoured: {:?}", clock.sleeps());
    assert_eq!(fake.user_password(GROUP, "admin", "orders-1").as_deref(), Some("pw-sa-Xyz789"));

    // Server errors that do not stop become a transient (Degraded) condition, said plainly.
    fake.inject(Fault::ServerError, 20);
    let err = atlas.get_cluster(GROUP, "main").await.unwrap_err();
    let (st, notes) = decide::finish(
        &c,
        Default::default(),
        &decide::Observed { blocker: Some(atlas_blocker(&err)), ..Default::default() },
        &now(),
    );
    assert_eq!(st.phase, Some(ResourcePhase::Degraded));
    let ready = st.conditions.iter().find(|x| x.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "AtlasServerError");
    assert!(ready.message.contains("server error"), "{}", ready.message);
    assert_eq!(notes[0].reason, "AtlasServerError");
    fake.assert_no_violations();
}

#[tokio::test]
async fn wrong_keys_are_a_failed_condition_that_names_the_fix_without_the_key() {
    let fake = fake().await;
    let clock = Arc::new(ManualClock::new());
    let c = conn("");
    let desired = build::database_user(&c, "orders-1");
    for (credentials, secret) in [
        (api_key("wrong-private-key-Q1"), "wrong-private-key-Q1"),
        (service_account("wrong-client-secret-Q2"), "wrong-client-secret-Q2"),
    ] {
        let atlas = client(&fake, credentials, &clock);
        let err = ensure_user(&atlas, GROUP, &desired, &Secret::new("pw")).await.unwrap_err();
        let blocker = atlas_blocker(&err);
        let (st, notes) = decide::finish(
            &c,
            Default::default(),
            &decide::Observed { blocker: Some(blocker), ..Default::default() },
            &now(),
        );
        assert_eq!(st.phase, Some(ResourcePhase::Failed));
        let ready = st.conditions.iter().find(|x| x.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "AtlasCredentialsRejected"));
        assert!(ready.message.contains("rejected the API credentials"), "{}", ready.message);
        assert!(!ready.message.contains(secret) && !format!("{st:?}{notes:?}").contains(secret));
        assert!(notes[0].warning);
    }
    assert!(fake.usernames(GROUP).is_empty());
    fake.assert_no_violations();
}
