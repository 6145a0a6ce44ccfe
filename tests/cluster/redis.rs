//! Redis on the real control plane: external Redis against real `redis-server` processes
//! (reachable, wrong password, closed port, never leaking the password), the purge on
//! promotion, Apps wired to a Redis (env and a roll when the Secret changes), and the in-cluster
//! objects (StatefulSets, Services, Secrets, PDBs, config, volumes) and how they follow the spec.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use authentify::api::App;
use authentify::api::app::AppPhase;
use authentify::api::common::ResourcePhase;
use authentify::api::redis::Redis;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use crate::support::logs::{capture_logs, logs};
use crate::support::{TestCtx, env_from, events_for, free_port, operator, poll_until, secret_data};

const LONG: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// A real redis-server per test, on a free loopback port, with a password and no persistence.

struct RedisServer {
    child: Child,
    port: u16,
    password: String,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    async fn start(password: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--requirepass", password])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (Debian package redis-server; scripts/setup.sh installs it)")?;
        let server = Self { child, port, password: password.to_string(), _dir: dir };
        poll_until("redis-server to answer PING", Duration::from_secs(20), || async {
            let mut c = server.conn().await?;
            let pong: String = redis::cmd("PING").query_async(&mut c).await?;
            Ok(pong == "PONG")
        })
        .await?;
        Ok(server)
    }

    async fn conn(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let url = format!("redis://:{}@127.0.0.1:{}/0", self.password, self.port);
        Ok(redis::Client::open(url)?.get_multiplexed_async_connection().await?)
    }

    /// Writes `count` keys named `prefix{i}`.
    async fn seed(&self, prefix: &str, count: usize) -> anyhow::Result<()> {
        let mut c = self.conn().await?;
        for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
            let mut cmd = redis::cmd("MSET");
            for i in chunk {
                cmd.arg(format!("{prefix}{i}")).arg("v");
            }
            let _: () = cmd.query_async(&mut c).await?;
        }
        Ok(())
    }

    /// Keys matching `pattern`, counted with SCAN.
    async fn count(&self, pattern: &str) -> anyhow::Result<usize> {
        let mut c = self.conn().await?;
        let mut cursor: u64 = 0;
        let mut keys = std::collections::BTreeSet::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys.len());
            }
            cursor = next;
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn phase(r: &Redis) -> Option<ResourcePhase> {
    r.status.as_ref().and_then(|s| s.phase.clone())
}

fn condition(r: &Redis, kind: &str) -> Option<(String, String, String)> {
    let c = r.status.as_ref()?.conditions.iter().find(|c| c.type_ == kind)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn password_secret(ctx: &TestCtx, name: &str, password: &str) -> anyhow::Result<()> {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "stringData": {"password": password},
    }))?;
    ctx.api::<Secret>().create(&PostParams::default(), &secret).await?;
    Ok(())
}

fn external_yaml(name: &str, port: u16, secret: &str, extra: &str) -> String {
    format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: Redis\nmetadata: {{name: {name}}}\nspec:\n  mode: external\n  external: {{host: 127.0.0.1, port: {port}, passwordSecret: {{name: {secret}, key: password}}}}\n{extra}"
    )
}

/// Everything a person could read about the Redis: its YAML (status included) and its events.
async fn visible_text(ctx: &TestCtx, name: &str) -> anyhow::Result<String> {
    let yaml = ctx.kubectl_ok(&["get", "redises.platform.authentify.it", name, "-o", "yaml"])?;
    let events = ctx.kubectl_ok(&["get", "events", "-o", "yaml"])?;
    Ok(format!("{yaml}\n{events}"))
}

pub async fn external_reachable_and_unreachable_without_leaking_the_password(
    ctx: TestCtx,
) -> anyhow::Result<()> {
    capture_logs();
    let good = "Corr3ct-Horse-Battery-Staple";
    let wrong = "Wr0ng-Password-For-Test";
    let server = RedisServer::start(good).await?;
    password_secret(&ctx, "do-redis", good).await?;
    password_secret(&ctx, "do-redis-wrong", wrong).await?;
    let closed = free_port()?;

    ctx.create_yaml::<Redis>(&external_yaml("cache", server.port, "do-redis", "")).await?;
    ctx.create_yaml::<Redis>(&external_yaml("badpass", server.port, "do-redis-wrong", "")).await?;
    ctx.create_yaml::<Redis>(&external_yaml("closed", closed, "do-redis", "")).await?;

    let ok =
        ctx.wait_for::<Redis>("cache", "Ready", LONG, |r| phase(r) == Some(ResourcePhase::Ready)).await?;
    let status = ok.status.clone().unwrap_or_default();
    ensure!(status.endpoint.as_deref() == Some(format!("127.0.0.1:{}", server.port).as_str()), "{status:?}");
    ensure!(status.secret_name.as_deref() == Some("cache-redis"));
    ensure!(
        status.observed_version.as_deref().is_some_and(|v| v.starts_with(char::is_numeric)),
        "{status:?}"
    );
    ensure!(status.role.as_deref() == Some("master"), "{status:?}");
    ensure!(condition(&ok, "Reachable").map(|c| c.0).as_deref() == Some("True"));
    ensure!(condition(&ok, "Ready").map(|c| c.0).as_deref() == Some("True"));

    let data = secret_data(&ctx, "cache-redis").await?;
    ensure!(data.get("REDIS_URL") == Some(&format!("redis://:{good}@127.0.0.1:{}/0", server.port)));
    ensure!(data.get("REDIS_HOST").map(String::as_str) == Some("127.0.0.1"));
    ensure!(data.get("REDIS_PORT") == Some(&server.port.to_string()));
    ensure!(data.get("REDIS_PASSWORD").map(String::as_str) == Some(good));
    ensure!(data.get("REDIS_TLS").map(String::as_str) == Some("false"));
    let secret = ctx.api::<Secret>().get("cache-redis").await?;
    ensure!(secret.labels().get("platform.authentify.it/connection").map(String::as_str) == Some("true"));
    ensure!(
        secret.labels().get("app.kubernetes.io/managed-by").map(String::as_str)
            == Some("authentify-operator")
    );

    let bad = ctx
        .wait_for::<Redis>("badpass", "Degraded (wrong password)", LONG, |r| {
            phase(r) == Some(ResourcePhase::Degraded)
        })
        .await?;
    let (st, reason, message) = condition(&bad, "Reachable").context("Reachable condition")?;
    ensure!(st == "False" && reason == "AuthenticationFailed", "{st} {reason} {message}");
    ensure!(message.contains("refused the credentials") && message.contains("passwordSecret"), "{message}");

    let down = ctx
        .wait_for::<Redis>("closed", "Degraded (closed port)", LONG, |r| {
            phase(r) == Some(ResourcePhase::Degraded)
        })
        .await?;
    let (st, reason, message) = condition(&down, "Reachable").context("Reachable condition")?;
    ensure!(st == "False" && reason == "ConnectionRefused", "{st} {reason} {message}");
    ensure!(message.contains(&format!("127.0.0.1:{closed}")) && message.contains("refused"), "{message}");

    poll_until("Unreachable events for both", LONG, || async {
        let a = events_for(&ctx, "badpass").await?;
        let b = events_for(&ctx, "closed").await?;
        Ok(a.iter().any(|e| e.0 == "Unreachable") && b.iter().any(|e| e.0 == "Unreachable"))
    })
    .await?;

    // The password reaches no status, no event and no log line.
    for name in ["cache", "badpass", "closed"] {
        let text = visible_text(&ctx, name).await?;
        ensure!(
            !text.contains(good) && !text.contains(wrong),
            "a password leaked into {name}'s status or events"
        );
    }
    let log = logs();
    ensure!(log.contains("connection Secret published"), "the log capture works: {log}");
    ensure!(!log.contains(good) && !log.contains(wrong), "a password leaked into the operator's logs");
    Ok(())
}

fn app_yaml(name: &str, image: &str, redis: &str) -> String {
    format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n  replicas: 2\n  port: 3000\n  connections: {{redis: {redis}}}\n"
    )
}

fn stable(app: &App) -> Option<String> {
    app.status.as_ref().and_then(|s| s.stable_revision.clone())
}

async fn healthy_with(ctx: &TestCtx, name: &str, check: impl Fn(&App) -> bool) -> anyhow::Result<App> {
    ctx.wait_for::<App>(name, "Healthy", LONG, |a| {
        a.status.as_ref().and_then(|s| s.phase.clone()) == Some(AppPhase::Healthy) && check(a)
    })
    .await
}

pub async fn app_gets_the_connection_and_rolls_when_the_secret_changes(ctx: TestCtx) -> anyhow::Result<()> {
    let first = RedisServer::start("pw-one-for-app-test").await?;
    let second = RedisServer::start("pw-one-for-app-test").await?;
    password_secret(&ctx, "do-redis", "pw-one-for-app-test").await?;
    ctx.create_yaml::<Redis>(&external_yaml("cache", first.port, "do-redis", "")).await?;
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", "cache")).await?;
    let v1 = healthy_with(&ctx, "api", |_| true).await?;
    let rev1 = stable(&v1).context("stable revision")?;
    ensure!(env_from(&ctx, "api", &rev1).await? == ["cache-redis"], "envFrom the connection Secret");

    // The managed Redis moves: the Secret changes and the App rolls to a new revision by itself.
    ctx.api::<Redis>()
        .patch(
            "cache",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"external": {"port": second.port}}})),
        )
        .await?;
    let v2 = healthy_with(&ctx, "api", |a| stable(a).is_some_and(|s| s != rev1)).await?;
    let rev2 = stable(&v2).context("stable revision")?;
    let data = secret_data(&ctx, "cache-redis").await?;
    ensure!(data.get("REDIS_PORT") == Some(&second.port.to_string()), "{data:?}");
    ensure!(env_from(&ctx, "api", &rev2).await? == ["cache-redis"]);
    let history = v2.status.clone().unwrap_or_default().history;
    ensure!(
        history.first().map(|h| (h.outcome.as_str(), h.image.as_str()))
            == Some(("Promoted", "registry.example.com/api:1")),
        "the same image rolled because the connection changed: {history:?}"
    );
    let annotated = ctx.api::<App>().get("api").await?;
    ensure!(annotated.annotations().contains_key("platform.authentify.it/connection-changed"));
    ensure!(
        events_for(&ctx, "cache").await?.iter().any(|e| e.0 == "AppsNotified"),
        "the Redis says which Apps it notified"
    );
    Ok(())
}

pub async fn purge_on_promotion_deletes_exactly_the_matching_keys_once(ctx: TestCtx) -> anyhow::Result<()> {
    let server = RedisServer::start("purge-test-password").await?;
    password_secret(&ctx, "do-redis", "purge-test-password").await?;
    let purge = "  purgeOnPromote: {patterns: ['api:cache:*', 'api:views:*'], maxKeys: 100000}\n";
    ctx.create_yaml::<Redis>(&external_yaml("cache", server.port, "do-redis", purge)).await?;
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", "cache")).await?;
    let v1 = healthy_with(&ctx, "api", |_| true).await?;
    let rev1 = stable(&v1).context("stable")?;
    // The first deploy is a promotion too: its purge runs (on an empty cache) before seeding.
    ctx.wait_for::<Redis>("cache", "purge of the first deploy recorded", LONG, |r| {
        r.status.as_ref().is_some_and(|s| s.purges.iter().any(|p| p.revision == rev1))
    })
    .await?;

    server.seed("api:cache:", 3000).await?;
    server.seed("api:views:", 1500).await?;
    server.seed("api:session:", 2000).await?;
    server.seed("other:cache:", 1000).await?;
    server.seed("api:cachex", 10).await?; // near miss: no colon after "cache"
    ensure!(server.count("*").await? == 7510);

    ctx.api::<App>()
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"image": "registry.example.com/api:2"}})),
        )
        .await?;
    let v2 = healthy_with(&ctx, "api", |a| stable(a).is_some_and(|s| s != rev1)).await?;
    let rev2 = stable(&v2).context("stable")?;
    let done = ctx
        .wait_for::<Redis>("cache", "purge of the promotion recorded", LONG, |r| {
            r.status.as_ref().is_some_and(|s| s.purges.iter().any(|p| p.revision == rev2))
        })
        .await?;
    let record =
        done.status.unwrap_or_default().purges.into_iter().find(|p| p.revision == rev2).context("record")?;
    ensure!(record.deleted_keys == 4500 && !record.truncated && record.app == "api", "{record:?}");
    ensure!(server.count("api:cache:*").await? == 0 && server.count("api:views:*").await? == 0);
    ensure!(server.count("api:session:*").await? == 2000, "other keys untouched");
    ensure!(server.count("other:cache:*").await? == 1000, "other keys untouched");
    ensure!(server.count("api:cachex*").await? == 10, "near misses untouched");
    let purged = || async {
        let list: Vec<String> = events_for(&ctx, "cache")
            .await?
            .into_iter()
            .filter(|e| e.0 == "Purged" && e.1.contains(&rev2))
            .map(|e| e.1)
            .collect();
        anyhow::Ok(list)
    };
    poll_until("the Purged event", LONG, || async { Ok(!purged().await?.is_empty()) }).await?;
    let purged = purged().await?;
    ensure!(purged.len() == 1 && purged[0].contains("deleted 4500 keys"), "{purged:?}");

    // Once only, across an operator restart: new matching keys survive further reconciles.
    server.seed("api:cache:", 50).await?;
    operator::kill_and_restart();
    ctx.api::<Redis>()
        .patch(
            "cache",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"purgeOnPromote": {"maxKeys": 200000}}})),
        )
        .await?;
    let generation = ctx.api::<Redis>().get("cache").await?.metadata.generation;
    ctx.wait_for::<Redis>("cache", "reconciled after the restart", LONG, |r| {
        r.status.as_ref().and_then(|s| s.observed_generation) == generation
    })
    .await?;
    ensure!(server.count("api:cache:*").await? == 50, "the promotion was not purged twice");
    let purges = ctx.api::<Redis>().get("cache").await?.status.unwrap_or_default().purges;
    ensure!(purges.len() == 1 && purges[0].revision == rev2, "{purges:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// In cluster: objects only (kwok pods run no processes).

/// A StorageClass without a provisioner and `count` hostPath volumes of it, so the Redis pods'
/// claims bind and the scheduler places them (cluster-scoped: named after the test namespace).
async fn local_volumes(ctx: &TestCtx, count: usize) -> anyhow::Result<String> {
    let class = format!("local-{}", ctx.namespace);
    let sc: StorageClass = serde_json::from_value(serde_json::json!({
        "metadata": {"name": class},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    }))?;
    Api::<StorageClass>::all(ctx.client.clone()).create(&PostParams::default(), &sc).await?;
    for i in 0..count {
        let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{class}-{i}"), "labels": {"authentify.it/test": ctx.namespace}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": class,
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": format!("/tmp/{class}-{i}")},
            },
        }))?;
        Api::<PersistentVolume>::all(ctx.client.clone()).create(&PostParams::default(), &pv).await?;
    }
    Ok(class)
}

async fn drop_local_volumes(ctx: &TestCtx, class: &str) {
    let pvs = Api::<PersistentVolume>::all(ctx.client.clone());
    let _ = pvs
        .delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(&format!("authentify.it/test={}", ctx.namespace)),
        )
        .await;
    let _ = Api::<StorageClass>::all(ctx.client.clone()).delete(class, &DeleteParams::background()).await;
}

pub async fn in_cluster_objects_follow_the_spec(ctx: TestCtx) -> anyhow::Result<()> {
    let class = local_volumes(&ctx, 3).await?;
    let result = in_cluster_body(&ctx, &class).await;
    drop_local_volumes(&ctx, &class).await;
    result
}

async fn pvc_names(ctx: &TestCtx) -> anyhow::Result<Vec<String>> {
    Ok(ctx
        .api::<PersistentVolumeClaim>()
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|p| p.name_any())
        .collect())
}

async fn in_cluster_body(ctx: &TestCtx, class: &str) -> anyhow::Result<()> {
    let yaml = format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: Redis\nmetadata: {{name: cache}}\nspec:\n  version: '7.2'\n  memory: {{maxMemory: 256mb, evictionPolicy: allkeys-lfu}}\n  persistence: {{rdb: true, aof: true}}\n  storage: {{size: 1Gi, storageClassName: {class}}}\n  resources: {{requests: {{cpu: 50m, memory: 300Mi}}, limits: {{memory: 300Mi}}}}\n"
    );
    ctx.create_yaml::<Redis>(&yaml).await?;
    let ready =
        ctx.wait_for::<Redis>("cache", "Ready", LONG, |r| phase(r) == Some(ResourcePhase::Ready)).await?;
    let status = ready.status.clone().unwrap_or_default();
    ensure!(status.ready.as_deref() == Some("1/1"), "{status:?}");
    ensure!(status.observed_version.as_deref() == Some("7.2.7"), "{status:?}");
    ensure!(status.endpoint == Some(format!("cache-redis.{}.svc:6379", ctx.namespace)), "{status:?}");
    let (reach, _, reach_msg) = condition(&ready, "Reachable").context("Reachable")?;
    ensure!(reach == "False", "the operator runs outside the cluster and says so: {reach_msg}");

    let sts = ctx.api::<StatefulSet>().get("cache-redis").await?;
    ensure!(sts.spec.replicas == Some(1));
    let policy = sts.spec.persistent_volume_claim_retention_policy.clone().context("retention")?;
    ensure!(policy.when_deleted.as_deref() == Some("Retain"));
    let pod_spec = sts.spec.template.spec.clone().context("pod spec")?;
    let image = pod_spec.containers[0].image.clone().unwrap_or_default();
    ensure!(image == "docker.io/library/redis:7.2.7", "pinned image: {image}");
    ensure!(pod_spec.containers.iter().any(|c| c.name == "exporter"), "exporter sidecar");
    let hash1 = sts.spec.template.metadata.clone().and_then(|m| m.annotations).unwrap_or_default()
        ["platform.authentify.it/config-hash"]
        .clone();
    for svc in ["cache-redis", "cache-redis-headless"] {
        ctx.api::<Service>().get(svc).await.with_context(|| format!("Service {svc}"))?;
    }
    ensure!(
        ctx.api::<PodDisruptionBudget>()
            .get("cache-redis")
            .await?
            .spec
            .and_then(|s| s.max_unavailable)
            .is_some()
    );
    let conf = ctx.api::<ConfigMap>().get("cache-redis-config").await?.data.unwrap_or_default();
    let redis_conf = conf.get("redis.conf").cloned().unwrap_or_default();
    for line in ["maxmemory 256mb", "maxmemory-policy allkeys-lfu", "appendonly yes"] {
        ensure!(redis_conf.lines().any(|l| l == line), "{line} in {redis_conf}");
    }
    let password =
        secret_data(ctx, "cache-redis-auth").await?.get("password").cloned().context("password")?;
    ensure!(password.len() == 32);
    let conn = secret_data(ctx, "cache-redis").await?;
    ensure!(conn.get("REDIS_PASSWORD") == Some(&password));
    ensure!(conn.get("REDIS_HOST") == Some(&format!("cache-redis.{}.svc", ctx.namespace)));
    let objects = ctx.kubectl_ok(&[
        "get",
        "statefulsets,configmaps,services,pods,redises.platform.authentify.it",
        "-o",
        "yaml",
    ])?;
    ensure!(!objects.contains(&password), "the password is only in Secrets");
    ensure!(pvc_names(ctx).await? == ["data-cache-redis-0"]);

    // A config change rolls the pods (new hash); the password stays.
    ctx.api::<Redis>()
        .patch(
            "cache",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"memory": {"maxMemory": "128mb"}}})),
        )
        .await?;
    poll_until("the new redis.conf and config hash", LONG, || async {
        let conf = ctx.api::<ConfigMap>().get("cache-redis-config").await?.data.unwrap_or_default();
        let sts = ctx.api::<StatefulSet>().get("cache-redis").await?;
        let hash = sts
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .unwrap_or_default()
            .get("platform.authentify.it/config-hash")
            .cloned();
        Ok(conf.get("redis.conf").is_some_and(|c| c.contains("maxmemory 128mb"))
            && hash.is_some_and(|h| h != hash1))
    })
    .await?;

    // To replicated: Sentinel appears, three Redis pods, the client Service follows the primary.
    ctx.api::<Redis>()
        .patch(
            "cache",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"mode": "replicated", "replicas": 2, "sentinel": {"replicas": 3, "quorum": 2}}})),
        )
        .await?;
    let replicated = ctx
        .wait_for::<Redis>("cache", "Ready with Sentinel", LONG, |r| {
            phase(r) == Some(ResourcePhase::Ready)
                && r.status.as_ref().and_then(|s| s.ready.clone()).as_deref() == Some("3/3")
        })
        .await?;
    ensure!(replicated.status.as_ref().and_then(|s| s.primary.clone()).as_deref() == Some("cache-redis-0"));
    ensure!(ctx.api::<StatefulSet>().get("cache-sentinel").await?.spec.replicas == Some(3));
    let client = ctx.api::<Service>().get("cache-redis").await?;
    let selector = client.spec.and_then(|s| s.selector).unwrap_or_default();
    ensure!(selector.get("platform.authentify.it/redis-role").map(String::as_str) == Some("primary"));
    let pod0 = ctx.api::<Pod>().get("cache-redis-0").await?;
    ensure!(pod0.labels().get("platform.authentify.it/redis-role").map(String::as_str) == Some("primary"));
    ensure!(ctx.api::<PodDisruptionBudget>().get("cache-sentinel").await.is_ok());
    let conf = ctx.api::<ConfigMap>().get("cache-redis-config").await?.data.unwrap_or_default();
    ensure!(conf.get("sentinel.conf").is_some_and(|c| c.contains("sentinel monitor cache")));
    ensure!(
        secret_data(ctx, "cache-redis-auth").await?.get("password") == Some(&password),
        "password stable"
    );
    ensure!(secret_data(ctx, "cache-redis").await?.contains_key("REDIS_SENTINELS"));

    // Deleting the Redis keeps the volumes (whenDeleted: Retain, the default).
    ctx.api::<Redis>().delete("cache", &DeleteParams::foreground()).await?;
    poll_until("the Redis and its StatefulSets gone", LONG, || async {
        Ok(ctx.api::<Redis>().get_opt("cache").await?.is_none()
            && ctx.api::<StatefulSet>().list(&ListParams::default()).await?.items.is_empty())
    })
    .await?;
    let kept = pvc_names(ctx).await?;
    ensure!(kept.len() == 3 && kept.contains(&"data-cache-redis-0".to_string()), "volumes kept: {kept:?}");
    Ok(())
}

pub async fn when_deleted_delete_removes_the_volumes_and_pending_pods_are_reported(
    ctx: TestCtx,
) -> anyhow::Result<()> {
    // No volumes can bind here (no such class): the pod stays Pending and the status says why.
    let yaml = "apiVersion: platform.authentify.it/v1alpha1\nkind: Redis\nmetadata: {name: scratch}\nspec:\n  storage: {size: 1Gi, storageClassName: no-such-class, whenDeleted: Delete}\n  exporter: {enabled: false}\n";
    ctx.create_yaml::<Redis>(yaml).await?;
    let pending = ctx
        .wait_for::<Redis>("scratch", "Pending with a reason", LONG, |r| {
            phase(r) == Some(ResourcePhase::Pending)
                && r.status
                    .as_ref()
                    .and_then(|s| s.message.clone())
                    .is_some_and(|m| m.contains("scratch-redis-0"))
        })
        .await?;
    let message = pending.status.and_then(|s| s.message).unwrap_or_default();
    ensure!(message.contains("0/1 Redis pods ready"), "{message}");
    let sts = ctx.api::<StatefulSet>().get("scratch-redis").await?;
    ensure!(sts.spec.template.spec.map(|p| p.containers.len()) == Some(1), "exporter disabled");
    poll_until("the claim to exist", LONG, || async {
        Ok(pvc_names(&ctx).await? == ["data-scratch-redis-0"])
    })
    .await?;
    ctx.api::<Redis>().delete("scratch", &DeleteParams::background()).await?;
    poll_until("the claim to go with the Redis (whenDeleted: Delete)", LONG, || async {
        Ok(pvc_names(&ctx).await?.is_empty())
    })
    .await?;
    if ctx.api::<Secret>().get_opt("scratch-redis").await?.is_some() {
        poll_until("owned Secrets collected", LONG, || async {
            Ok(ctx.api::<Secret>().get_opt("scratch-redis").await?.is_none())
        })
        .await?;
    }
    Ok(())
}
