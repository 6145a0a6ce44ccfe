//! Unit tests of the Redis controller's pure parts: builders from small YAML fixtures and the
//! decisions (status, purges, App notification, primary).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::build::{self, Names};
use super::decide::{self, Observed, SetState};
use crate::api::App;
use crate::api::common::ResourcePhase;
use crate::api::redis::{PurgeRecord, Redis};
use crate::providers::redis::{Endpoint, Password, ProbeError, ProbeResult};

fn redis(spec: &str) -> Redis {
    let yaml = format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: Redis\nmetadata: {{name: cache, namespace: prod, uid: u1, creationTimestamp: '2026-01-01T00:00:00Z', generation: 3}}\nspec:\n{spec}"
    );
    serde_yaml_ng::from_str(&yaml).expect("fixture parses")
}

fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(1_767_225_600 + secs).expect("valid time"))
}

fn app(name: &str, redis: Option<&str>, history: &str) -> App {
    let connections = redis.map(|r| format!("  connections: {{redis: {r}}}\n")).unwrap_or_default();
    let yaml = format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: {name}, namespace: prod}}\nspec:\n  image: api:1\n  port: 3000\n{connections}status:\n  history:\n{history}"
    );
    serde_yaml_ng::from_str(&yaml).expect("app fixture parses")
}

fn promoted(revision: &str, finished: &str) -> String {
    format!(
        "  - {{revision: {revision}, image: api:2, startedAt: '2026-01-01T00:00:00Z', finishedAt: '{finished}', outcome: Promoted}}\n"
    )
}

#[test]
fn images_are_pinned_to_a_patch_release() {
    let (image, version) = build::image(&redis("  version: '7.2'\n")).expect("known");
    assert_eq!((image.as_str(), version.as_str()), ("docker.io/library/redis:7.2.7", "7.2.7"));
    assert_eq!(
        build::image(&redis("  version: '7.2.4'\n")).expect("exact").0,
        "docker.io/library/redis:7.2.4"
    );
    let err = build::image(&redis("  version: '5.0'\n")).expect_err("unknown");
    assert!(err.contains("spec.version 5.0") && err.contains("7.2") && err.contains("spec.image"), "{err}");
    let own = build::image(&redis("  version: '7.2'\n  image: registry.example.com/redis:7.2.7\n"))
        .expect("override");
    assert_eq!(own.0, "registry.example.com/redis:7.2.7");
}

#[test]
fn redis_conf_follows_memory_and_persistence() {
    let conf = build::redis_conf(&redis(
        "  memory: {maxMemory: 256mb, evictionPolicy: volatile-ttl}\n  persistence: {rdb: false, aof: true}\n",
    ));
    for line in [
        "maxmemory 256mb",
        "maxmemory-policy volatile-ttl",
        "save \"\"",
        "appendonly yes",
        "appendfsync everysec",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} missing in\n{conf}");
    }
    let default = build::redis_conf(&redis("  {}\n"));
    assert!(default.contains("maxmemory-policy allkeys-lru") && default.contains("appendonly no"));
    assert!(!default.contains("maxmemory "), "no limit unless asked");
    assert!(!default.contains("requirepass"), "the password is never in the config");
}

#[test]
fn standalone_objects() {
    let r = redis(
        "  storage: {size: 2Gi, storageClassName: fast, whenDeleted: Delete}\n  resources: {limits: {memory: 512Mi}}\n",
    );
    let names = Names::of(&r);
    let (cm, hash) = build::config_map(&r, &names);
    assert_eq!(cm.metadata.name.as_deref(), Some("cache-redis-config"));
    assert!(!cm.data.as_ref().expect("data").contains_key("sentinel.conf"));
    let storage = r.spec.storage.clone().expect("storage");
    let sts = build::redis_statefulset(&r, &names, "redis:7.2.7", &storage, &hash);
    assert_eq!(sts.spec.replicas, Some(1));
    assert_eq!(sts.spec.service_name.as_deref(), Some("cache-redis-headless"));
    let policy = sts.spec.persistent_volume_claim_retention_policy.clone().expect("policy");
    assert_eq!(policy.when_deleted.as_deref(), Some("Delete"));
    assert_eq!(policy.when_scaled.as_deref(), Some("Retain"));
    let vct = &sts.spec.volume_claim_templates.as_ref().expect("vct")[0];
    let pvc = vct.spec.as_ref().expect("pvc spec");
    assert_eq!(pvc.storage_class_name.as_deref(), Some("fast"));
    let template = sts.spec.template.clone();
    let annotations = template.metadata.and_then(|m| m.annotations).expect("annotations");
    assert_eq!(annotations.get(build::CONFIG_HASH), Some(&hash));
    let pod = template.spec.expect("pod");
    let names_of: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names_of, ["redis", "exporter"]);
    assert_eq!(pod.containers[1].image.as_deref(), Some(build::EXPORTER_IMAGE));
    assert!(pod.containers[0].resources.is_some());

    let services = build::services(&r, &names);
    let svc_names: Vec<String> = services.iter().filter_map(|s| s.metadata.name.clone()).collect();
    assert_eq!(svc_names, ["cache-redis-headless", "cache-redis"]);
    assert!(
        !services[1]
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .expect("sel")
            .contains_key(build::ROLE_LABEL)
    );
    assert_eq!(build::pdbs(&r, &names).len(), 1);

    let no_exporter = redis("  exporter: {enabled: false}\n");
    let sts = build::redis_statefulset(&no_exporter, &names, "redis:7.2.7", &Default::default(), "h");
    assert_eq!(sts.spec.template.spec.expect("pod").containers.len(), 1);
    let policy = sts.spec.persistent_volume_claim_retention_policy.expect("policy");
    assert_eq!(policy.when_deleted.as_deref(), Some("Retain"), "volumes are kept by default");
}

#[test]
fn a_config_change_changes_the_hash_that_rolls_the_pods() {
    let a = redis("  memory: {maxMemory: 256mb}\n");
    let b = redis("  memory: {maxMemory: 512mb}\n");
    let names = Names::of(&a);
    assert_ne!(build::config_map(&a, &names).1, build::config_map(&b, &names).1);
    assert_eq!(build::config_map(&a, &names).1, build::config_map(&a, &names).1);
}

#[test]
fn replicated_objects_with_sentinel() {
    let r = redis("  mode: replicated\n  replicas: 2\n  sentinel: {replicas: 3, quorum: 2}\n");
    let names = Names::of(&r);
    let (cm, hash) = build::config_map(&r, &names);
    let data = cm.data.expect("data");
    let sentinel_conf = &data["sentinel.conf"];
    assert!(
        sentinel_conf.contains("sentinel monitor cache cache-redis-0.cache-redis-headless.prod.svc 6379 2"),
        "{sentinel_conf}"
    );
    assert!(data["start-redis.sh"].contains("get-master-addr-by-name cache"));
    assert!(data["start-redis.sh"].contains("--replicaof"));
    assert!(!data.values().any(|v| v.contains("auth-pass cache s")), "no literal password");
    assert_eq!(build::redis_statefulset(&r, &names, "i", &Default::default(), &hash).spec.replicas, Some(3));
    let sentinel = build::sentinel_statefulset(&r, &names, "i", &hash);
    assert_eq!(sentinel.spec.replicas, Some(3));
    let services = build::services(&r, &names);
    assert_eq!(services.len(), 3);
    let client_sel = services[1].spec.as_ref().and_then(|s| s.selector.clone()).expect("selector");
    assert_eq!(client_sel.get(build::ROLE_LABEL).map(String::as_str), Some("primary"));
    assert_eq!(build::pdbs(&r, &names).len(), 2);
}

#[test]
fn connection_secret_has_the_keys_apps_read() {
    let r = redis("  mode: replicated\n");
    let names = Names::of(&r);
    let ep = build::in_cluster_endpoint(&names, Password::new("pw"));
    let secret = build::connection_secret(&r, &names, &ep);
    assert_eq!(secret.metadata.name.as_deref(), Some("cache-redis"));
    let labels = secret.metadata.labels.clone().expect("labels");
    assert_eq!(labels.get(build::CONNECTION_LABEL).map(String::as_str), Some("true"));
    assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("authentify-operator"));
    let data: BTreeMap<String, String> = secret
        .data
        .expect("data")
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf8")))
        .collect();
    assert_eq!(data["REDIS_URL"], "redis://:pw@cache-redis.prod.svc:6379/0");
    assert_eq!(data["REDIS_HOST"], "cache-redis.prod.svc");
    assert_eq!(data["REDIS_PORT"], "6379");
    assert_eq!(data["REDIS_PASSWORD"], "pw");
    assert_eq!(data["REDIS_TLS"], "false");
    assert_eq!(data["REDIS_SENTINEL_MASTER"], "cache");
    assert!(data["REDIS_SENTINELS"].starts_with("cache-sentinel-0.cache-sentinel.prod.svc:26379,"));
}

fn external(password_bad: bool) -> (Redis, Observed) {
    let r = redis(
        "  mode: external\n  external: {host: 127.0.0.1, port: 6390, passwordSecret: {name: do-redis, key: password}}\n",
    );
    let probe = if password_bad {
        Err(ProbeError::Auth)
    } else {
        Ok(ProbeResult { role: "master".into(), version: "7.0.15".into() })
    };
    let observed = Observed {
        endpoint: Some("127.0.0.1:6390".into()),
        secret_name: Some("cache-redis".into()),
        probe: Some(probe),
        ..Observed::default()
    };
    (r, observed)
}

#[test]
fn external_status_reachable_then_unreachable() {
    let (mut r, ok) = external(false);
    let (status, notes) = decide::status(&r, &ok, &at(10));
    assert_eq!(status.phase, Some(ResourcePhase::Ready));
    assert_eq!(status.observed_version.as_deref(), Some("7.0.15"));
    assert_eq!(status.role.as_deref(), Some("master"));
    assert_eq!(status.endpoint.as_deref(), Some("127.0.0.1:6390"));
    assert!(notes.iter().any(|n| n.reason == "Reachable"));
    r.status = Some(status.clone());
    // Same observation: identical status, no events (no idle writes).
    let (again, notes) = decide::status(&r, &ok, &at(20));
    assert_eq!(again, status);
    assert!(notes.is_empty(), "{notes:?}");

    let (_, bad) = external(true);
    let (status, notes) = decide::status(&r, &bad, &at(30));
    assert_eq!(status.phase, Some(ResourcePhase::Degraded));
    let reachable = status.conditions.iter().find(|c| c.type_ == "Reachable").expect("condition");
    assert_eq!((reachable.status.as_str(), reachable.reason.as_str()), ("False", "AuthenticationFailed"));
    assert!(
        reachable.message.contains("refused the credentials") && reachable.message.contains("passwordSecret")
    );
    assert_eq!(status.observed_version.as_deref(), Some("7.0.15"), "the last seen version is kept");
    assert!(notes.iter().any(|n| n.reason == "Unreachable" && n.warning));
}

#[test]
fn in_cluster_status_is_pending_until_pods_are_ready() {
    let r = redis("  {}\n");
    let mut observed = Observed {
        endpoint: Some("cache-redis.prod.svc:6379".into()),
        image_version: Some("7.2.7".into()),
        redis: Some(SetState {
            wanted: 1,
            ready: 0,
            rolled_out: false,
            waiting: Some("pod cache-redis-0 is Pending: unbound PersistentVolumeClaims".into()),
        }),
        ..Observed::default()
    };
    let (status, _) = decide::status(&r, &observed, &at(0));
    assert_eq!(status.phase, Some(ResourcePhase::Pending));
    assert!(status.message.clone().unwrap_or_default().contains("unbound PersistentVolumeClaims"));
    assert_eq!(status.observed_version, None);
    observed.redis = Some(SetState { wanted: 1, ready: 1, rolled_out: true, waiting: None });
    observed.probe = Some(Err(ProbeError::Dns));
    let (status, _) = decide::status(&r, &observed, &at(0));
    assert_eq!(status.phase, Some(ResourcePhase::Ready));
    assert_eq!(status.ready.as_deref(), Some("1/1"));
    assert_eq!(status.observed_version.as_deref(), Some("7.2.7"));
    assert!(!crate::api::conditions::is_true(&status.conditions, "Reachable"));
}

#[test]
fn invalid_spec_fails_with_the_reason() {
    let r = redis("  {}\n");
    let observed = Observed { invalid: Some("Secret x does not exist".into()), ..Observed::default() };
    let (status, notes) = decide::status(&r, &observed, &at(0));
    assert_eq!(status.phase, Some(ResourcePhase::Failed));
    assert!(notes.iter().any(|n| n.reason == "InvalidSpec" && n.warning));
}

#[test]
fn purges_are_due_once_per_promotion() {
    let mut r = redis("  purgeOnPromote: {patterns: ['api:cache:*']}\n");
    let apps = vec![
        app("api", Some("cache"), &promoted("abc", "2026-01-02T00:00:00Z")),
        app("web", Some("other"), &promoted("def", "2026-01-02T00:00:00Z")),
        app("old", Some("cache"), &promoted("ghi", "2025-12-01T00:00:00Z")),
    ];
    let due = decide::purges_due(&r, &apps);
    assert_eq!(due.len(), 1, "only the wired App, and only promotions after the Redis existed: {due:?}");
    assert_eq!((due[0].app.as_str(), due[0].revision.as_str()), ("api", "abc"));

    let mut records = vec![];
    decide::record_purge(
        &mut records,
        PurgeRecord {
            app: "api".into(),
            revision: "abc".into(),
            promoted_at: due[0].promoted_at.clone(),
            deleted_keys: 10,
            truncated: false,
            time: at(5),
        },
    );
    r.status = Some(crate::api::redis::RedisStatus { purges: records.clone(), ..Default::default() });
    assert!(decide::purges_due(&r, &apps).is_empty(), "done once");
    let next = vec![app("api", Some("cache"), &promoted("xyz", "2026-01-03T00:00:00Z"))];
    assert_eq!(decide::purges_due(&r, &next).len(), 1, "the next promotion purges again");
    let running = vec![app(
        "api",
        Some("cache"),
        "  - {revision: xyz, image: api:3, startedAt: '2026-01-03T00:00:00Z', outcome: Running}\n",
    )];
    assert!(decide::purges_due(&r, &running).is_empty());
    r.spec.purge_on_promote = None;
    assert!(decide::purges_due(&r, &next).is_empty(), "nothing without purgeOnPromote");
}

#[test]
fn apps_to_notify_only_when_the_hash_differs() {
    let r = redis("  {}\n");
    let mut a = app("api", Some("cache"), "    []\n");
    let b = app("web", None, "    []\n");
    assert_eq!(decide::apps_to_notify(&r, &[a.clone(), b.clone()], "h1"), ["api"]);
    a.metadata.annotations =
        Some(BTreeMap::from([(decide::CONNECTION_CHANGED.to_string(), "h1".to_string())]));
    assert!(decide::apps_to_notify(&r, &[a.clone(), b], "h1").is_empty());
    assert_eq!(decide::apps_to_notify(&r, &[a], "h2"), ["api"]);
}

#[test]
fn primary_follows_sentinel_else_the_label_else_pod_zero() {
    let pods = BTreeMap::from([
        ("cache-redis-0".to_string(), None),
        ("cache-redis-1".to_string(), Some("primary".to_string())),
        ("cache-redis-2".to_string(), None),
    ]);
    assert_eq!(
        decide::primary_pod("cache-redis", &pods, Some("cache-redis-2.cache-redis-headless.prod.svc"))
            .as_deref(),
        Some("cache-redis-2")
    );
    assert_eq!(decide::primary_pod("cache-redis", &pods, None).as_deref(), Some("cache-redis-1"));
    let fresh: BTreeMap<String, Option<String>> = pods.keys().map(|k| (k.clone(), None)).collect();
    assert_eq!(
        decide::primary_pod("cache-redis", &fresh, Some("10.0.0.9")).as_deref(),
        Some("cache-redis-0")
    );
    let changes = decide::role_changes(&pods, Some("cache-redis-2"));
    assert_eq!(
        changes,
        [
            ("cache-redis-0".to_string(), "replica"),
            ("cache-redis-1".to_string(), "replica"),
            ("cache-redis-2".to_string(), "primary")
        ]
    );
}

#[test]
fn endpoint_for_in_cluster_redis() {
    let names = Names { redis: "cache".into(), namespace: "prod".into() };
    let ep: Endpoint = build::in_cluster_endpoint(&names, Password::new("x"));
    assert_eq!(ep.address(), "cache-redis.prod.svc:6379");
}
