//! AtlasConnection on the real control plane, with the Atlas fake served in-process (every
//! exchange checked against the Atlas schema) and `spec.baseUrl` pointed at it: the Secret
//! published and wired into an App, rotation end to end with a consuming App (the old user lives
//! until the App is Healthy on the new revision, through a rollback and an operator restart),
//! deletion through the finalizer, and the ping against a real FerretDB. No password reaches a
//! status, an Event or a log line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use authentify::api::App;
use authentify::api::app::AppPhase;
use authentify::api::atlas::AtlasConnection;
use authentify::api::common::ResourcePhase;
use authentify_fakes::AtlasFake;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

use crate::support::logs::{capture_logs, logs};
use crate::support::{TestCtx, env_from, events_for, free_port, operator, poll_until, secret_data};

const LONG: Duration = Duration::from_secs(90);
const GROUP: &str = "5f1a2b3c4d5e6f7a8b9c0d1e";
const PUBLIC: &str = "atlas-public-key";
const PRIVATE: &str = "atlas-private-Kq9w8e7r6t";
const CLIENT_ID: &str = "mdb_sa_id_cluster_test";
const CLIENT_SECRET: &str = "mdb_sa_sk_cluster-Secret-77";

async fn fake() -> anyhow::Result<AtlasFake> {
    AtlasFake::start_seeded(GROUP, (PUBLIC, PRIVATE), (CLIENT_ID, CLIENT_SECRET)).await
}

async fn credentials_secret(ctx: &TestCtx, name: &str, data: &[(&str, &str)]) -> anyhow::Result<()> {
    let data: BTreeMap<&str, &str> = data.iter().copied().collect();
    let secret: Secret =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "stringData": data}))?;
    ctx.api::<Secret>().create(&PostParams::default(), &secret).await?;
    Ok(())
}

async fn api_key_secret(ctx: &TestCtx) -> anyhow::Result<()> {
    credentials_secret(ctx, "atlas-key", &[("publicKey", PUBLIC), ("privateKey", PRIVATE)]).await
}

fn connection_yaml(name: &str, fake: &AtlasFake, extra: &str) -> String {
    format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: AtlasConnection\nmetadata: {{name: {name}}}\nspec:\n  credentials: {{secretName: atlas-key}}\n  projectId: {GROUP}\n  clusterName: main\n  database: orders\n  baseUrl: {}\n{extra}",
        fake.base_url()
    )
}

fn phase(c: &AtlasConnection) -> Option<ResourcePhase> {
    c.status.as_ref().and_then(|s| s.phase.clone())
}

fn condition(c: &AtlasConnection, kind: &str) -> Option<(String, String, String)> {
    let c = c.status.as_ref()?.conditions.iter().find(|c| c.type_ == kind)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Everything a person can read in the namespace: the AtlasConnections (status included), the
/// Apps and the Events.
async fn visible_text(ctx: &TestCtx) -> anyhow::Result<String> {
    let conns = ctx.kubectl_ok(&["get", "atlasconnections.platform.authentify.it", "-o", "yaml"])?;
    let apps = ctx.kubectl_ok(&["get", "apps.platform.authentify.it", "-o", "yaml"])?;
    let events = ctx.kubectl_ok(&["get", "events", "-o", "yaml"])?;
    Ok(format!("{conns}\n{apps}\n{events}"))
}

/// No password of any user, nor the Atlas credentials, in status, Events or the operator's logs.
async fn assert_no_secret_visible(ctx: &TestCtx, passwords: &[String]) -> anyhow::Result<()> {
    let text = visible_text(ctx).await?;
    let log = logs();
    ensure!(log.contains("connection Secret published"), "the log capture works");
    for secret in passwords.iter().map(String::as_str).chain([PRIVATE, CLIENT_SECRET]) {
        ensure!(!text.contains(secret), "a secret leaked into status or events");
        ensure!(!log.contains(secret), "a secret leaked into the operator's logs");
    }
    Ok(())
}

fn app_yaml(name: &str, mongo: &str, extra: &str) -> String {
    format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: {name}}}\nspec:\n  image: registry.example.com/orders:1\n  replicas: 2\n  port: 3000\n  connections: {{mongodb: {mongo}}}\n{extra}"
    )
}

fn app_phase(a: &App) -> Option<AppPhase> {
    a.status.as_ref().and_then(|s| s.phase.clone())
}

fn stable(a: &App) -> Option<String> {
    a.status.as_ref().and_then(|s| s.stable_revision.clone())
}

async fn annotate<K>(ctx: &TestCtx, name: &str, key: &str) -> anyhow::Result<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let token = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos());
    let patch = serde_json::json!({"metadata": {"annotations": {key: token}}});
    ctx.api::<K>().patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(token)
}

pub async fn secret_published_and_wired_into_an_app(ctx: TestCtx) -> anyhow::Result<()> {
    capture_logs();
    let fake = fake().await?;
    fake.set_cluster_state(GROUP, "main", "CREATING");
    fake.add_project(GROUP);
    api_key_secret(&ctx).await?;
    // Someone else's entry, listed in the spec too: left alone, never the operator's.
    let foreign = authentify::providers::atlas::AccessListEntry::cidr("192.0.2.0/24", Some("vpn".into()));
    {
        use authentify::providers::atlas::{AtlasApi, AtlasClient, AtlasConfig, AtlasCredentials};
        let admin = AtlasClient::new(
            AtlasConfig::new(AtlasCredentials::ApiKey {
                public_key: PUBLIC.into(),
                private_key: authentify::providers::http::Secret::new(PRIVATE),
            })
            .with_base_url(fake.base_url()),
        )?;
        admin.add_access_list_entries(GROUP, std::slice::from_ref(&foreign)).await?;
    }
    let extra = "  secretName: orders-db\n  checkConnection: false\n  ipAccessList:\n  - {cidrBlock: 10.20.0.0/16}\n  - {ipAddress: 203.0.113.9, comment: egress}\n  - {cidrBlock: 192.0.2.0/24}\n";
    ctx.create_yaml::<AtlasConnection>(&connection_yaml("orders", &fake, extra)).await?;

    // Waits while the cluster is not IDLE.
    let pending = ctx
        .wait_for::<AtlasConnection>("orders", "waiting for the cluster", LONG, |c| {
            condition(c, "Ready").is_some_and(|r| r.1 == "ClusterNotIdle")
        })
        .await?;
    ensure!(phase(&pending) == Some(ResourcePhase::Pending), "{:?}", pending.status);
    ensure!(condition(&pending, "Ready").is_some_and(|r| r.2.contains("CREATING")));
    ensure!(fake.usernames(GROUP).is_empty(), "no user before the cluster is IDLE");
    fake.set_cluster_state(GROUP, "main", "IDLE");

    let ready = ctx
        .wait_for::<AtlasConnection>("orders", "Ready", LONG, |c| phase(c) == Some(ResourcePhase::Ready))
        .await?;
    let status = ready.status.clone().unwrap_or_default();
    ensure!(status.current_user.as_deref() == Some("orders-1"), "{status:?}");
    ensure!(status.secret_name.as_deref() == Some("orders-db"));
    ensure!(status.users == ["orders-1"]);
    ensure!(status.owned_access_list_entries == ["10.20.0.0/16", "203.0.113.9"], "{status:?}");
    ensure!(ready.finalizers().iter().any(|f| f == "platform.authentify.it/atlas-cleanup"));

    let data = secret_data(&ctx, "orders-db").await?;
    let password = data.get("MONGODB_PASSWORD").cloned().context("password")?;
    ensure!(password.len() == 32 && password.chars().all(|c| c.is_ascii_alphanumeric()));
    ensure!(
        fake.user_password(GROUP, "admin", "orders-1") == Some(password.clone()),
        "Atlas has the published password"
    );
    ensure!(
        data.get("MONGODB_URI")
            == Some(&format!("mongodb+srv://orders-1:{password}@main.abcde.mongodb.net/orders")),
        "{:?}",
        data.get("MONGODB_URI").map(|u| u.replace(&password, "***"))
    );
    ensure!(data.get("MONGODB_USERNAME").map(String::as_str) == Some("orders-1"));
    ensure!(data.get("MONGODB_DATABASE").map(String::as_str) == Some("orders"));
    ensure!(data.get("MONGODB_SRV").map(String::as_str) == Some("mongodb+srv://main.abcde.mongodb.net"));
    ensure!(data.get("MONGODB_STANDARD").is_some_and(|s| s.starts_with("mongodb://main-shard-00-00")));
    let user = fake.user(GROUP, "admin", "orders-1").context("user in Atlas")?;
    ensure!(
        user["roles"] == serde_json::json!([{"roleName": "readWrite", "databaseName": "orders"}]),
        "{user}"
    );
    ensure!(user["scopes"] == serde_json::json!([{"name": "main", "type": "CLUSTER"}]), "{user}");
    let cidrs: Vec<String> =
        fake.access_list(GROUP).iter().filter_map(|e| e["cidrBlock"].as_str().map(String::from)).collect();
    ensure!(cidrs.len() == 3 && cidrs.contains(&"203.0.113.9/32".to_string()), "{cidrs:?}");

    // The App reads the Secret the AtlasConnection names, and rolls out with it.
    ctx.create_yaml::<App>(&app_yaml("orders-api", "orders", "")).await?;
    let app = ctx
        .wait_for::<App>("orders-api", "Healthy", LONG, |a| app_phase(a) == Some(AppPhase::Healthy))
        .await?;
    let rev = stable(&app).context("stable revision")?;
    ensure!(env_from(&ctx, "orders-api", &rev).await? == ["orders-db"]);
    poll_until("the App to be marked with the Secret's hash", LONG, || async {
        let app = ctx.api::<App>().get("orders-api").await?;
        Ok(app.annotations().contains_key("platform.authentify.it/mongodb-connection-changed"))
    })
    .await?;

    // The spec drops an entry the operator added: only that one goes.
    ctx.api::<AtlasConnection>()
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"ipAccessList": [{"cidrBlock": "10.20.0.0/16"}, {"cidrBlock": "192.0.2.0/24"}]}})),
        )
        .await?;
    ctx.wait_for::<AtlasConnection>("orders", "owning one entry", LONG, |c| {
        c.status.as_ref().is_some_and(|s| s.owned_access_list_entries == ["10.20.0.0/16"])
    })
    .await?;
    let cidrs: Vec<String> =
        fake.access_list(GROUP).iter().filter_map(|e| e["cidrBlock"].as_str().map(String::from)).collect();
    ensure!(cidrs.len() == 2 && cidrs.contains(&"192.0.2.0/24".to_string()), "{cidrs:?}");
    let reasons = events_for(&ctx, "orders").await?;
    ensure!(reasons.iter().any(|e| e.0 == "UserCreated"), "{reasons:?}");
    ensure!(reasons.iter().any(|e| e.0 == "AccessListUpdated"), "{reasons:?}");
    assert_no_secret_visible(&ctx, &[password]).await?;
    fake.assert_no_violations();
    Ok(())
}

const CANARY: &str = "  strategy:\n    canary:\n      steps:\n        - setWeight: 50\n        - pause: {}\n";

pub async fn rotation_deletes_the_old_user_only_after_the_app_is_healthy_on_the_new_revision(
    ctx: TestCtx,
) -> anyhow::Result<()> {
    capture_logs();
    let fake = fake().await?;
    credentials_secret(&ctx, "atlas-key", &[("clientId", CLIENT_ID), ("clientSecret", CLIENT_SECRET)])
        .await?;
    let extra = "  credentials: {secretName: atlas-key, type: serviceAccount}\n  checkConnection: false\n";
    let yaml =
        connection_yaml("orders", &fake, extra).replace("  credentials: {secretName: atlas-key}\n", "");
    ctx.create_yaml::<AtlasConnection>(&yaml).await?;
    ctx.create_yaml::<App>(&app_yaml("orders-api", "orders", CANARY)).await?;
    let v1 = ctx
        .wait_for::<App>("orders-api", "Healthy on the first user", LONG, |a| {
            app_phase(a) == Some(AppPhase::Healthy)
        })
        .await?;
    let rev1 = stable(&v1).context("stable")?;
    let first_password =
        secret_data(&ctx, "orders-mongodb").await?.get("MONGODB_PASSWORD").cloned().context("pw")?;

    // Rotation on demand: a second user is published; the App rolls through its canary and stops
    // at the manual pause, mid-rollout.
    let token = annotate::<AtlasConnection>(&ctx, "orders", "platform.authentify.it/rotate").await?;
    let rotated = ctx
        .wait_for::<AtlasConnection>("orders", "rotated to orders-2", LONG, |c| {
            c.status.as_ref().is_some_and(|s| s.current_user.as_deref() == Some("orders-2"))
        })
        .await?;
    let st = rotated.status.clone().unwrap_or_default();
    ensure!(
        st.rotate_token.as_deref() == Some(token.as_str()) && st.credential_generation == Some(2),
        "{st:?}"
    );
    let data = secret_data(&ctx, "orders-mongodb").await?;
    let second_password = data.get("MONGODB_PASSWORD").cloned().context("pw")?;
    ensure!(data.get("MONGODB_USERNAME").map(String::as_str) == Some("orders-2"));
    ensure!(second_password != first_password);
    ensure!(fake.user_password(GROUP, "admin", "orders-2") == Some(second_password.clone()));

    let paused = ctx
        .wait_for::<App>("orders-api", "Paused mid-rollout on the new credentials", LONG, |a| {
            app_phase(a) == Some(AppPhase::Paused)
                && a.status.as_ref().and_then(|s| s.current_revision.clone()) != Some(rev1.clone())
        })
        .await?;
    let rev2 = paused.status.as_ref().and_then(|s| s.current_revision.clone()).context("current")?;
    let waiting = ctx
        .wait_for::<AtlasConnection>("orders", "waiting for the App", LONG, |c| {
            condition(c, "Rotating").is_some_and(|r| r.0 == "True" && r.2.contains("orders-api"))
        })
        .await?;
    ensure!(
        waiting.status.as_ref().is_some_and(|s| s.users == ["orders-1", "orders-2"]),
        "{:?}",
        waiting.status
    );
    ensure!(
        fake.user(GROUP, "admin", "orders-1").is_some(),
        "the old user lives while the App is mid-rollout"
    );
    ensure!(
        fake.user_password(GROUP, "admin", "orders-1") == Some(first_password.clone()),
        "with its password"
    );

    // An operator restart mid-rotation loses nothing and starts no new rotation.
    operator::kill_and_restart();
    annotate::<AtlasConnection>(&ctx, "orders", "test.authentify.it/poke").await?;
    poll_until("the restarted operator to reconcile", LONG, || async {
        let c = ctx.api::<AtlasConnection>().get("orders").await?;
        let st = c.status.clone().unwrap_or_default();
        Ok(c.metadata.generation == st.observed_generation
            && condition(&c, "Rotating").is_some_and(|r| r.0 == "True"))
    })
    .await?;
    ensure!(fake.usernames(GROUP) == ["orders-1", "orders-2"], "{:?}", fake.usernames(GROUP));

    // Rolled back meanwhile: the stable pods still run the first user's credentials; it stays.
    annotate::<App>(&ctx, "orders-api", authentify::rollout::ABORT).await?;
    ctx.wait_for::<App>("orders-api", "Degraded (aborted)", LONG, |a| {
        app_phase(a) == Some(AppPhase::Degraded)
    })
    .await?;
    ctx.wait_for::<AtlasConnection>("orders", "still waiting after the rollback", LONG, |c| {
        condition(c, "Rotating").is_some_and(|r| r.0 == "True" && r.2.contains("Degraded"))
    })
    .await?;
    ensure!(fake.user(GROUP, "admin", "orders-1").is_some(), "the rolled-back App keeps working credentials");

    // Retried and promoted: Healthy on the new revision, then (and only then) the old user goes.
    annotate::<App>(&ctx, "orders-api", authentify::rollout::RETRY).await?;
    ctx.wait_for::<App>("orders-api", "Paused again", LONG, |a| {
        app_phase(a) == Some(AppPhase::Paused) && a.status.as_ref().is_some_and(|s| !s.abort)
    })
    .await?;
    ensure!(fake.user(GROUP, "admin", "orders-1").is_some());
    annotate::<App>(&ctx, "orders-api", authentify::rollout::PROMOTE_FULL).await?;
    ctx.wait_for::<App>("orders-api", "Healthy on the new revision", LONG, |a| {
        app_phase(a) == Some(AppPhase::Healthy) && stable(a).as_deref() == Some(rev2.as_str())
    })
    .await?;
    ensure!(env_from(&ctx, "orders-api", &rev2).await? == ["orders-mongodb"]);
    let done = ctx
        .wait_for::<AtlasConnection>("orders", "the old user deleted", LONG, |c| {
            c.status.as_ref().is_some_and(|s| s.users == ["orders-2"])
        })
        .await?;
    ensure!(fake.usernames(GROUP) == ["orders-2"], "{:?}", fake.usernames(GROUP));
    ensure!(condition(&done, "Rotating").is_some_and(|r| r.0 == "False"));
    let deleted = events_for(&ctx, "orders").await?;
    ensure!(deleted.iter().any(|e| e.0 == "UserDeleted" && e.1.contains("orders-1")), "{deleted:?}");
    ensure!(deleted.iter().any(|e| e.0 == "Rotated"), "{deleted:?}");
    let passwords = secret_data(&ctx, "orders-atlas-users").await?;
    ensure!(passwords.keys().collect::<Vec<_>>() == ["orders-2"], "the old password is forgotten too");
    assert_no_secret_visible(&ctx, &[first_password, second_password]).await?;
    fake.assert_no_violations();
    Ok(())
}

pub async fn deletion_removes_what_the_operator_created_unless_kept(ctx: TestCtx) -> anyhow::Result<()> {
    let fake = fake().await?;
    api_key_secret(&ctx).await?;
    let extra = "  checkConnection: false\n  ipAccessList: [{cidrBlock: 10.30.0.0/16}]\n";
    ctx.create_yaml::<AtlasConnection>(&connection_yaml("gone", &fake, extra)).await?;
    let keep =
        "  checkConnection: false\n  deletionPolicy: Keep\n  ipAccessList: [{cidrBlock: 10.40.0.0/16}]\n";
    ctx.create_yaml::<AtlasConnection>(&connection_yaml("kept", &fake, keep)).await?;
    for name in ["gone", "kept"] {
        ctx.wait_for::<AtlasConnection>(name, "Ready", LONG, |c| phase(c) == Some(ResourcePhase::Ready))
            .await?;
    }
    ensure!(fake.usernames(GROUP) == ["gone-1", "kept-1"], "{:?}", fake.usernames(GROUP));
    ensure!(fake.access_list(GROUP).len() == 2);

    for name in ["gone", "kept"] {
        ctx.api::<AtlasConnection>().delete(name, &DeleteParams::default()).await?;
    }
    poll_until("both AtlasConnections to be gone", LONG, || async {
        let api = ctx.api::<AtlasConnection>();
        Ok(api.get_opt("gone").await?.is_none() && api.get_opt("kept").await?.is_none())
    })
    .await?;
    ensure!(fake.usernames(GROUP) == ["kept-1"], "{:?}", fake.usernames(GROUP));
    let cidrs: Vec<String> =
        fake.access_list(GROUP).iter().filter_map(|e| e["cidrBlock"].as_str().map(String::from)).collect();
    ensure!(cidrs == ["10.40.0.0/16"], "{cidrs:?}");
    fake.assert_no_violations();
    Ok(())
}

pub async fn wrong_or_missing_atlas_credentials_are_clear_conditions(ctx: TestCtx) -> anyhow::Result<()> {
    capture_logs();
    let fake = fake().await?;
    credentials_secret(&ctx, "atlas-key", &[("publicKey", PUBLIC), ("privateKey", "wrong-private-key-Zz1")])
        .await?;
    ctx.create_yaml::<AtlasConnection>(&connection_yaml("wrongkey", &fake, "  checkConnection: false\n"))
        .await?;
    let failed = ctx
        .wait_for::<AtlasConnection>("wrongkey", "Failed", LONG, |c| phase(c) == Some(ResourcePhase::Failed))
        .await?;
    let (st, reason, message) = condition(&failed, "Ready").context("Ready")?;
    ensure!(st == "False" && reason == "AtlasCredentialsRejected", "{reason}: {message}");
    ensure!(message.contains("rejected the API credentials"), "{message}");

    let missing = connection_yaml("nokey", &fake, "  checkConnection: false\n")
        .replace("secretName: atlas-key", "secretName: absent");
    ctx.create_yaml::<AtlasConnection>(&missing).await?;
    let failed = ctx
        .wait_for::<AtlasConnection>("nokey", "Failed", LONG, |c| phase(c) == Some(ResourcePhase::Failed))
        .await?;
    let (_, reason, message) = condition(&failed, "Ready").context("Ready")?;
    ensure!(reason == "CredentialsInvalid", "{reason}");
    ensure!(message.contains("Secret absent") && message.contains("publicKey and privateKey"), "{message}");
    let text = visible_text(&ctx).await?;
    ensure!(!text.contains("wrong-private-key-Zz1") && !logs().contains("wrong-private-key-Zz1"));
    ensure!(fake.usernames(GROUP).is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// FerretDB (MongoDB wire protocol on SQLite), built by scripts/build-platform.sh.

struct FerretDb {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for FerretDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const FERRET_ADMIN: &str = "ferret-admin";
const FERRET_ADMIN_PASSWORD: &str = "ferret-admin-pw-83";

fn ferretdb_bin() -> anyhow::Result<PathBuf> {
    let versions = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/versions.env"))?;
    let version = versions
        .lines()
        .find_map(|l| l.strip_prefix("FERRETDB_VERSION="))
        .context("FERRETDB_VERSION in scripts/versions.env")?;
    let cache = std::env::var_os("AUTHENTIFY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/authentify")))
        .context("HOME")?;
    Ok(cache.join("bin").join(format!("ferretdb-{version}")))
}

impl FerretDb {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let bin = ferretdb_bin()?;
        let child = Command::new(&bin)
            .arg("--handler=sqlite")
            .arg(format!("--sqlite-url=file:{}/", dir.path().display()))
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .arg(format!("--state-dir={}", dir.path().display()))
            .args(["--debug-addr=-", "--telemetry=disable", "--log-level=warn", "--test-enable-new-auth"])
            .arg(format!("--setup-username={FERRET_ADMIN}"))
            .arg(format!("--setup-password={FERRET_ADMIN_PASSWORD}"))
            .arg("--setup-database=admin")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} (scripts/build-platform.sh builds it)", bin.display()))?;
        let server = Self { child, port, _dir: dir };
        poll_until("FerretDB to answer a ping as its admin", Duration::from_secs(30), || async {
            server.admin().await?.database("admin").run_command(mongodb::bson::doc! {"ping": 1}).await?;
            Ok(true)
        })
        .await?;
        Ok(server)
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?authSource=admin", self.port)
    }

    async fn admin(&self) -> anyhow::Result<mongodb::Client> {
        let uri = format!(
            "mongodb://{FERRET_ADMIN}:{FERRET_ADMIN_PASSWORD}@127.0.0.1:{}/?authSource=admin&serverSelectionTimeoutMS=2000",
            self.port
        );
        Ok(mongodb::Client::with_uri_str(uri).await?)
    }

    /// Creates a user, as Atlas does on its clusters for the users made through its API.
    async fn create_user(&self, username: &str, password: &str) -> anyhow::Result<()> {
        self.admin()
            .await?
            .database("admin")
            .run_command(mongodb::bson::doc! {"createUser": username, "pwd": password, "roles": []})
            .await?;
        Ok(())
    }
}

pub async fn ping_against_ferretdb_succeeds_and_fails_clearly(ctx: TestCtx) -> anyhow::Result<()> {
    capture_logs();
    let ferret = FerretDb::start().await?;
    let fake = fake().await?;
    fake.set_connection_strings(GROUP, "main", &ferret.uri(), None);
    fake.put_cluster(GROUP, "closed", "IDLE");
    let closed = free_port()?;
    fake.set_connection_strings(
        GROUP,
        "closed",
        &format!("mongodb://127.0.0.1:{closed}/?authSource=admin"),
        None,
    );
    api_key_secret(&ctx).await?;
    ctx.create_yaml::<AtlasConnection>(&connection_yaml("orders", &fake, "")).await?;
    let closed_yaml =
        connection_yaml("offline", &fake, "").replace("clusterName: main", "clusterName: closed");
    ctx.create_yaml::<AtlasConnection>(&closed_yaml).await?;

    // The user exists in Atlas, not yet on the server: the ping says so.
    let refused = ctx
        .wait_for::<AtlasConnection>("orders", "refused by the server", LONG, |c| {
            condition(c, "Connected").is_some_and(|r| r.0 == "False")
        })
        .await?;
    let (_, reason, message) = condition(&refused, "Connected").context("Connected")?;
    ensure!(reason == "AuthenticationFailed", "{reason}: {message}");
    ensure!(message.contains("as user orders-1") && message.contains("Atlas applies new users"), "{message}");
    ensure!(phase(&refused) == Some(ResourcePhase::Degraded));

    let offline = ctx
        .wait_for::<AtlasConnection>("offline", "unreachable", LONG, |c| {
            condition(c, "Connected").is_some_and(|r| r.0 == "False")
        })
        .await?;
    let (_, reason, message) = condition(&offline, "Connected").context("Connected")?;
    ensure!(reason == "Unreachable", "{reason}: {message}");
    ensure!(message.contains("IP access list"), "{message}");

    // The user reaches the server (as Atlas would make it): the ping answers.
    let data = secret_data(&ctx, "orders-mongodb").await?;
    let password = data.get("MONGODB_PASSWORD").cloned().context("password")?;
    ensure!(
        data.get("MONGODB_URI")
            == Some(&format!(
                "mongodb://orders-1:{password}@127.0.0.1:{}/orders?authSource=admin",
                ferret.port
            ))
    );
    ferret.create_user("orders-1", &password).await?;
    let connected = ctx
        .wait_for::<AtlasConnection>("orders", "Connected", LONG, |c| {
            condition(c, "Connected").is_some_and(|r| r.0 == "True")
        })
        .await?;
    ensure!(phase(&connected) == Some(ResourcePhase::Ready), "{:?}", connected.status);
    let reasons = events_for(&ctx, "orders").await?;
    ensure!(
        reasons.iter().any(|e| e.0 == "ConnectionFailed") && reasons.iter().any(|e| e.0 == "Connected"),
        "{reasons:?}"
    );
    let offline_password =
        secret_data(&ctx, "offline-mongodb").await?.get("MONGODB_PASSWORD").cloned().context("pw")?;
    assert_no_secret_visible(&ctx, &[password, offline_password]).await?;
    fake.assert_no_violations();
    Ok(())
}
