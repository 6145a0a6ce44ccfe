//! Builds the Kubernetes objects of an in-cluster Redis from its spec: the configuration
//! (redis.conf, sentinel.conf and start scripts in a ConfigMap), the StatefulSets of Redis and
//! Sentinel, the headless and client Services, the PodDisruptionBudgets, the password Secret and
//! the connection Secret Apps read. Pure: no client, no clock, no randomness (the password is
//! passed in). Never puts the password into anything but a Secret's data.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    ExecAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSpec,
    PodTemplateSpec, Probe, Secret, SecretKeySelector, Service, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::Redis;
use crate::api::redis::{EvictionPolicy, RedisMode, Storage, VolumeRetention};
use crate::controllers::app::build::{MANAGED_BY, MANAGER};
use crate::providers::redis::{Endpoint, Password};

/// Label naming the Redis an object belongs to.
pub const REDIS_LABEL: &str = "platform.authentify.it/redis";
/// Label on Redis pods in `replicated` mode: `primary` on the one the client Service selects.
pub const ROLE_LABEL: &str = "platform.authentify.it/redis-role";
/// Label the App controller and people find connection Secrets by.
pub const CONNECTION_LABEL: &str = "platform.authentify.it/connection";
/// Pod annotation with the hash of the configuration, so a changed redis.conf rolls the pods.
pub const CONFIG_HASH: &str = "platform.authentify.it/config-hash";
/// Key of the generated password in the password Secret.
pub const PASSWORD_KEY: &str = "password";
/// Redis port.
pub const REDIS_PORT: i32 = 6379;
/// Sentinel port.
pub const SENTINEL_PORT: i32 = 26379;
/// Exporter metrics port.
pub const EXPORTER_PORT: i32 = 9121;
/// The exporter image, pinned.
pub const EXPORTER_IMAGE: &str = "docker.io/oliver006/redis_exporter:v1.67.0";
/// UID and GID of the `redis` user in the official image.
const REDIS_UID: i64 = 999;

/// The patch release the operator runs for each supported `major.minor`.
pub const PINNED_VERSIONS: &[(&str, &str)] =
    &[("6.2", "6.2.17"), ("7.0", "7.0.15"), ("7.2", "7.2.7"), ("7.4", "7.4.2"), ("8.0", "8.0.2")];

/// Names of everything a Redis owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The Redis resource.
    pub redis: String,
    /// Namespace.
    pub namespace: String,
}

impl Names {
    /// Names for one Redis.
    pub fn of(redis: &Redis) -> Self {
        Self { redis: redis.name_any(), namespace: redis.namespace().unwrap_or_default() }
    }
    /// The connection Secret Apps read (`App.spec.connections.redis`).
    pub fn connection_secret(&self) -> String {
        connection_secret_name(&self.redis)
    }
    /// The Secret holding the generated password (in-cluster modes).
    pub fn password_secret(&self) -> String {
        format!("{}-redis-auth", self.redis)
    }
    /// Redis StatefulSet, client Service and PDB.
    pub fn statefulset(&self) -> String {
        format!("{}-redis", self.redis)
    }
    /// Headless Service giving each Redis pod a stable DNS name.
    pub fn headless(&self) -> String {
        format!("{}-redis-headless", self.redis)
    }
    /// ConfigMap with redis.conf, sentinel.conf and the start scripts.
    pub fn config(&self) -> String {
        format!("{}-redis-config", self.redis)
    }
    /// Sentinel StatefulSet, headless Service and PDB.
    pub fn sentinel(&self) -> String {
        format!("{}-sentinel", self.redis)
    }
    /// DNS name of the client Service.
    pub fn client_host(&self) -> String {
        format!("{}.{}.svc", self.statefulset(), self.namespace)
    }
    /// DNS name of the Sentinel Service.
    pub fn sentinel_host(&self) -> String {
        format!("{}.{}.svc", self.sentinel(), self.namespace)
    }
    /// DNS name of Redis pod `i`.
    pub fn pod_host(&self, i: i32) -> String {
        format!("{}-{i}.{}.{}.svc", self.statefulset(), self.headless(), self.namespace)
    }
    /// DNS name of Sentinel pod `i`.
    pub fn sentinel_pod_host(&self, i: i32) -> String {
        format!("{}-{i}.{}.{}.svc", self.sentinel(), self.sentinel(), self.namespace)
    }
}

/// The image to run and the Redis version it holds.
pub fn image(redis: &Redis) -> Result<(String, String), String> {
    let version = &redis.spec.version;
    if let Some(image) = &redis.spec.image {
        return Ok((image.clone(), version.clone()));
    }
    let full = if version.matches('.').count() == 2 {
        version.clone()
    } else {
        match PINNED_VERSIONS.iter().find(|(minor, _)| minor == version) {
            Some((_, full)) => (*full).to_string(),
            None => {
                let known: Vec<&str> = PINNED_VERSIONS.iter().map(|(m, _)| *m).collect();
                return Err(format!(
                    "spec.version {version} is not a version the operator pins an image for; use one of {} (or an exact x.y.z), or set spec.image",
                    known.join(", ")
                ));
            }
        }
    };
    Ok((format!("docker.io/library/redis:{full}"), full))
}

/// Labels shared by everything a Redis owns.
pub fn labels(names: &Names, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (REDIS_LABEL.to_string(), names.redis.clone()),
        ("app.kubernetes.io/name".to_string(), "redis".to_string()),
        ("app.kubernetes.io/instance".to_string(), names.redis.clone()),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

/// The selector of a component's pods.
pub fn selector(names: &Names, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (REDIS_LABEL.to_string(), names.redis.clone()),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
    ])
}

fn owner(redis: &Redis) -> Vec<OwnerReference> {
    redis.controller_owner_ref(&()).into_iter().collect()
}

fn meta(redis: &Redis, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: redis.namespace(),
        labels: Some(labels),
        owner_references: Some(owner(redis)),
        ..ObjectMeta::default()
    }
}

fn eviction(p: &EvictionPolicy) -> &'static str {
    match p {
        EvictionPolicy::AllkeysLru => "allkeys-lru",
        EvictionPolicy::AllkeysLfu => "allkeys-lfu",
        EvictionPolicy::AllkeysRandom => "allkeys-random",
        EvictionPolicy::VolatileLru => "volatile-lru",
        EvictionPolicy::VolatileLfu => "volatile-lfu",
        EvictionPolicy::VolatileRandom => "volatile-random",
        EvictionPolicy::VolatileTtl => "volatile-ttl",
        EvictionPolicy::Noeviction => "noeviction",
    }
}

/// redis.conf from the spec. Holds no secret: the password is passed on the command line from
/// the password Secret.
pub fn redis_conf(redis: &Redis) -> String {
    let spec = &redis.spec;
    let mut lines = vec![
        "# Generated by authentify-operator from the Redis resource; edits are overwritten.".to_string(),
        format!("port {REDIS_PORT}"),
        "bind * -::*".to_string(),
        "protected-mode no".to_string(),
        "dir /data".to_string(),
        "tcp-keepalive 60".to_string(),
    ];
    if let Some(max) = &spec.memory.max_memory {
        lines.push(format!("maxmemory {max}"));
    }
    lines.push(format!("maxmemory-policy {}", eviction(&spec.memory.eviction_policy)));
    if spec.persistence.rdb {
        lines.push("save 3600 1 300 100 60 10000".to_string());
    } else {
        lines.push("save \"\"".to_string());
    }
    if spec.persistence.aof {
        lines.push("appendonly yes".to_string());
        lines.push("appendfsync everysec".to_string());
    } else {
        lines.push("appendonly no".to_string());
    }
    if spec.mode == RedisMode::Replicated {
        lines.push("replica-read-only yes".to_string());
        lines.push("replica-serve-stale-data yes".to_string());
        lines.push("min-replicas-to-write 0".to_string());
    }
    lines.join("\n") + "\n"
}

/// sentinel.conf (without credentials; the start script appends them from the environment).
pub fn sentinel_conf(redis: &Redis, names: &Names) -> String {
    let quorum = redis.spec.sentinel.as_ref().map_or(2, |s| s.quorum);
    let master = &names.redis;
    [
        "# Generated by authentify-operator; Sentinel rewrites its copy of this file at run time."
            .to_string(),
        format!("port {SENTINEL_PORT}"),
        "sentinel resolve-hostnames yes".to_string(),
        "sentinel announce-hostnames yes".to_string(),
        format!("sentinel monitor {master} {} {REDIS_PORT} {quorum}", names.pod_host(0)),
        format!("sentinel down-after-milliseconds {master} 5000"),
        format!("sentinel failover-timeout {master} 60000"),
        format!("sentinel parallel-syncs {master} 1"),
    ]
    .join("\n")
        + "\n"
}

/// The script that starts Redis. In `replicated` mode it asks Sentinel for the current primary
/// and starts as its replica; without an answer, pod 0 is the primary.
pub fn start_redis_script(redis: &Redis, names: &Names) -> String {
    let mut s = String::from("#!/bin/sh\n# Generated by authentify-operator.\nset -eu\n");
    s.push_str(&format!("SELF=\"${{HOSTNAME}}.{}.{}.svc\"\n", names.headless(), names.namespace));
    if redis.spec.mode == RedisMode::Replicated {
        s.push_str(&format!(
            "PRIMARY=\"\"\nfor attempt in 1 2 3; do\n  PRIMARY=\"$(redis-cli -h {sentinel} -p {SENTINEL_PORT} -a \"$REDIS_PASSWORD\" --no-auth-warning sentinel get-master-addr-by-name {master} 2>/dev/null | head -n 1 || true)\"\n  if [ -n \"$PRIMARY\" ]; then break; fi\n  sleep 1\ndone\nif [ -z \"$PRIMARY\" ]; then PRIMARY=\"{pod0}\"; fi\nif [ \"$PRIMARY\" != \"$SELF\" ]; then set -- --replicaof \"$PRIMARY\" {REDIS_PORT}; fi\n",
            sentinel = names.sentinel_host(),
            master = names.redis,
            pod0 = names.pod_host(0),
        ));
    }
    s.push_str("exec redis-server /etc/redis/redis.conf --requirepass \"$REDIS_PASSWORD\" --masterauth \"$REDIS_PASSWORD\" --replica-announce-ip \"$SELF\" \"$@\"\n");
    s
}

/// The script that starts Sentinel from a writable copy of sentinel.conf.
pub fn start_sentinel_script(names: &Names) -> String {
    format!(
        "#!/bin/sh\n# Generated by authentify-operator.\nset -eu\ncp /etc/redis/sentinel.conf /sentinel/sentinel.conf\n{{\n  echo \"sentinel auth-pass {master} $REDIS_PASSWORD\"\n  echo \"requirepass $REDIS_PASSWORD\"\n  echo \"sentinel announce-ip ${{HOSTNAME}}.{svc}.{ns}.svc\"\n}} >> /sentinel/sentinel.conf\nexec redis-server /sentinel/sentinel.conf --sentinel\n",
        master = names.redis,
        svc = names.sentinel(),
        ns = names.namespace,
    )
}

/// The ConfigMap with every configuration file, and the hash of its data.
pub fn config_map(redis: &Redis, names: &Names) -> (ConfigMap, String) {
    let mut data = BTreeMap::from([
        ("redis.conf".to_string(), redis_conf(redis)),
        ("start-redis.sh".to_string(), start_redis_script(redis, names)),
    ]);
    if redis.spec.mode == RedisMode::Replicated {
        data.insert("sentinel.conf".to_string(), sentinel_conf(redis, names));
        data.insert("start-sentinel.sh".to_string(), start_sentinel_script(names));
    }
    let mut h = Sha256::new();
    for (k, v) in &data {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let hash: String = h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
    let cm = ConfigMap {
        metadata: meta(redis, names.config(), labels(names, "redis")),
        data: Some(data),
        ..ConfigMap::default()
    };
    (cm, hash)
}

fn password_env(names: &Names, var: &str) -> EnvVar {
    EnvVar {
        name: var.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names.password_secret(),
                key: PASSWORD_KEY.to_string(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn exec_probe(command: &str, period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(vec!["sh".into(), "-c".into(), command.into()]) }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), ..VolumeMount::default() }
}

fn config_volume(names: &Names) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource { name: names.config(), ..ConfigMapVolumeSource::default() }),
        ..Volume::default()
    }
}

fn spread(names: &Names, component: &str) -> k8s_openapi::api::core::v1::Affinity {
    k8s_openapi::api::core::v1::Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(selector(names, component)),
                        ..LabelSelector::default()
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..PodAffinityTerm::default()
                },
            }]),
            ..PodAntiAffinity::default()
        }),
        ..k8s_openapi::api::core::v1::Affinity::default()
    }
}

/// The volume claim template of the Redis pods.
pub fn volume_claim(storage: &Storage) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("data".into()), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), storage.size.clone())])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Size and class of an existing StatefulSet's volume template, to keep them: they cannot change.
pub fn live_storage(live: &StatefulSet) -> Option<(Option<Quantity>, Option<String>)> {
    let vct = live.spec.volume_claim_templates.as_ref()?.first()?;
    let spec = vct.spec.as_ref()?;
    let size =
        spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
    Some((size, spec.storage_class_name.clone()))
}

/// Pods the Redis StatefulSet runs: one, or a primary and `replicas` replicas.
pub fn redis_pods(redis: &Redis) -> i32 {
    match redis.spec.mode {
        RedisMode::Replicated => redis.spec.replicas + 1,
        _ => 1,
    }
}

/// The Redis StatefulSet. `storage` is the effective volume template (the live one when the
/// StatefulSet exists); `config_hash` rolls the pods, one at a time, when the configuration changes.
pub fn redis_statefulset(
    redis: &Redis,
    names: &Names,
    image: &str,
    storage: &Storage,
    config_hash: &str,
) -> StatefulSet {
    let mut pod_labels = labels(names, "redis");
    pod_labels.extend(selector(names, "redis"));
    let mut annotations = BTreeMap::from([(CONFIG_HASH.to_string(), config_hash.to_string())]);
    let mut containers = vec![Container {
        name: "redis".into(),
        image: Some(image.to_string()),
        command: Some(vec!["sh".into(), "/etc/redis/start-redis.sh".into()]),
        env: Some(vec![password_env(names, "REDIS_PASSWORD")]),
        ports: Some(vec![port("redis", REDIS_PORT)]),
        readiness_probe: Some(exec_probe(
            "redis-cli -a \"$REDIS_PASSWORD\" --no-auth-warning ping | grep -q PONG",
            5,
            3,
        )),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(REDIS_PORT),
                ..TCPSocketAction::default()
            }),
            initial_delay_seconds: Some(15),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        resources: redis.spec.resources.clone(),
        volume_mounts: Some(vec![mount("data", "/data"), mount("config", "/etc/redis")]),
        ..Container::default()
    }];
    if redis.spec.exporter.enabled {
        annotations.insert("prometheus.io/scrape".into(), "true".into());
        annotations.insert("prometheus.io/port".into(), EXPORTER_PORT.to_string());
        containers.push(Container {
            name: "exporter".into(),
            image: Some(redis.spec.exporter.image.clone().unwrap_or_else(|| EXPORTER_IMAGE.to_string())),
            env: Some(vec![
                EnvVar {
                    name: "REDIS_ADDR".into(),
                    value: Some(format!("redis://localhost:{REDIS_PORT}")),
                    ..EnvVar::default()
                },
                password_env(names, "REDIS_PASSWORD"),
            ]),
            ports: Some(vec![port("metrics", EXPORTER_PORT)]),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("10m".into())),
                    ("memory".to_string(), Quantity("32Mi".into())),
                ])),
                limits: Some(BTreeMap::from([("memory".to_string(), Quantity("64Mi".into()))])),
                ..Default::default()
            }),
            ..Container::default()
        });
    }
    let retention = match storage.when_deleted {
        VolumeRetention::Retain => "Retain",
        VolumeRetention::Delete => "Delete",
    };
    StatefulSet {
        metadata: meta(redis, names.statefulset(), labels(names, "redis")),
        spec: StatefulSetSpec {
            replicas: Some(redis_pods(redis)),
            service_name: Some(names.headless()),
            selector: LabelSelector {
                match_labels: Some(selector(names, "redis")),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("OrderedReady".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(retention.into()),
                when_scaled: Some("Retain".into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    volumes: Some(vec![config_volume(names)]),
                    affinity: (redis.spec.mode == RedisMode::Replicated).then(|| spread(names, "redis")),
                    security_context: Some(k8s_openapi::api::core::v1::PodSecurityContext {
                        run_as_user: Some(REDIS_UID),
                        run_as_group: Some(REDIS_UID),
                        fs_group: Some(REDIS_UID),
                        run_as_non_root: Some(true),
                        ..Default::default()
                    }),
                    termination_grace_period_seconds: Some(30),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![volume_claim(storage)]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

/// The Sentinel StatefulSet (`replicated` mode).
pub fn sentinel_statefulset(redis: &Redis, names: &Names, image: &str, config_hash: &str) -> StatefulSet {
    let replicas = redis.spec.sentinel.as_ref().map_or(3, |s| s.replicas);
    let mut pod_labels = labels(names, "sentinel");
    pod_labels.extend(selector(names, "sentinel"));
    StatefulSet {
        metadata: meta(redis, names.sentinel(), labels(names, "sentinel")),
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.sentinel()),
            selector: LabelSelector {
                match_labels: Some(selector(names, "sentinel")),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH.to_string(), config_hash.to_string())])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "sentinel".into(),
                        image: Some(image.to_string()),
                        command: Some(vec!["sh".into(), "/etc/redis/start-sentinel.sh".into()]),
                        env: Some(vec![password_env(names, "REDIS_PASSWORD")]),
                        ports: Some(vec![port("sentinel", SENTINEL_PORT)]),
                        readiness_probe: Some(exec_probe(
                            &format!(
                                "redis-cli -p {SENTINEL_PORT} -a \"$REDIS_PASSWORD\" --no-auth-warning ping | grep -q PONG"
                            ),
                            5,
                            3,
                        )),
                        resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                            requests: Some(BTreeMap::from([
                                ("cpu".to_string(), Quantity("10m".into())),
                                ("memory".to_string(), Quantity("32Mi".into())),
                            ])),
                            limits: Some(BTreeMap::from([("memory".to_string(), Quantity("64Mi".into()))])),
                            ..Default::default()
                        }),
                        volume_mounts: Some(vec![
                            mount("config", "/etc/redis"),
                            mount("sentinel", "/sentinel"),
                        ]),
                        ..Container::default()
                    }],
                    volumes: Some(vec![
                        config_volume(names),
                        Volume {
                            name: "sentinel".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                    ]),
                    affinity: Some(spread(names, "sentinel")),
                    security_context: Some(k8s_openapi::api::core::v1::PodSecurityContext {
                        run_as_user: Some(REDIS_UID),
                        run_as_group: Some(REDIS_UID),
                        fs_group: Some(REDIS_UID),
                        run_as_non_root: Some(true),
                        ..Default::default()
                    }),
                    termination_grace_period_seconds: Some(10),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

fn service(
    redis: &Redis,
    names: &Names,
    name: String,
    component: &str,
    headless: bool,
    selector: BTreeMap<String, String>,
    ports: Vec<(&str, i32)>,
) -> Service {
    Service {
        metadata: meta(redis, name, labels(names, component)),
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".to_string()),
            publish_not_ready_addresses: headless.then_some(true),
            selector: Some(selector),
            ports: Some(
                ports
                    .into_iter()
                    .map(|(n, p)| ServicePort {
                        name: Some(n.into()),
                        port: p,
                        target_port: Some(IntOrString::String(n.into())),
                        protocol: Some("TCP".into()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Services: the Redis headless Service, the client Service (in `replicated` mode it selects
/// only the pod labelled primary) and, in `replicated` mode, Sentinel's headless Service.
pub fn services(redis: &Redis, names: &Names) -> Vec<Service> {
    let mut ports = vec![("redis", REDIS_PORT)];
    if redis.spec.exporter.enabled {
        ports.push(("metrics", EXPORTER_PORT));
    }
    let mut client_selector = selector(names, "redis");
    if redis.spec.mode == RedisMode::Replicated {
        client_selector.insert(ROLE_LABEL.to_string(), "primary".to_string());
    }
    let mut out = vec![
        service(redis, names, names.headless(), "redis", true, selector(names, "redis"), ports.clone()),
        service(
            redis,
            names,
            names.statefulset(),
            "redis",
            false,
            client_selector,
            vec![("redis", REDIS_PORT)],
        ),
    ];
    if redis.spec.mode == RedisMode::Replicated {
        out.push(service(
            redis,
            names,
            names.sentinel(),
            "sentinel",
            true,
            selector(names, "sentinel"),
            vec![("sentinel", SENTINEL_PORT)],
        ));
    }
    out
}

/// PodDisruptionBudgets: at most one Redis pod (and one Sentinel) evicted at a time.
pub fn pdbs(redis: &Redis, names: &Names) -> Vec<PodDisruptionBudget> {
    let pdb = |name: String, component: &str| PodDisruptionBudget {
        metadata: meta(redis, name, labels(names, component)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(names, component)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };
    let mut out = vec![pdb(names.statefulset(), "redis")];
    if redis.spec.mode == RedisMode::Replicated {
        out.push(pdb(names.sentinel(), "sentinel"));
    }
    out
}

/// The password Secret (created once; its value never changes afterwards).
pub fn password_secret(redis: &Redis, names: &Names, password: &Password) -> Secret {
    Secret {
        metadata: meta(redis, names.password_secret(), labels(names, "redis")),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_string(),
            ByteString(password.expose().as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The endpoint Apps connect to for an in-cluster Redis: the client Service.
pub fn in_cluster_endpoint(names: &Names, password: Password) -> Endpoint {
    Endpoint {
        host: names.client_host(),
        port: REDIS_PORT as u16,
        tls: false,
        username: None,
        password: Some(password),
    }
}

/// The connection Secret Apps read: `REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`, `REDIS_PASSWORD`,
/// `REDIS_TLS` (and `REDIS_USERNAME`, and Sentinel's addresses in `replicated` mode).
pub fn connection_secret(redis: &Redis, names: &Names, endpoint: &Endpoint) -> Secret {
    let mut data = BTreeMap::from([
        ("REDIS_URL".to_string(), endpoint.url()),
        ("REDIS_HOST".to_string(), endpoint.host.clone()),
        ("REDIS_PORT".to_string(), endpoint.port.to_string()),
        (
            "REDIS_PASSWORD".to_string(),
            endpoint.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default(),
        ),
        ("REDIS_TLS".to_string(), endpoint.tls.to_string()),
    ]);
    if let Some(user) = &endpoint.username {
        data.insert("REDIS_USERNAME".to_string(), user.clone());
    }
    if redis.spec.mode == RedisMode::Replicated {
        let sentinels = redis.spec.sentinel.as_ref().map_or(3, |s| s.replicas);
        let hosts: Vec<String> =
            (0..sentinels).map(|i| format!("{}:{SENTINEL_PORT}", names.sentinel_pod_host(i))).collect();
        data.insert("REDIS_SENTINELS".to_string(), hosts.join(","));
        data.insert("REDIS_SENTINEL_MASTER".to_string(), names.redis.clone());
    }
    let mut labels = labels(names, "connection");
    labels.insert(CONNECTION_LABEL.to_string(), "true".to_string());
    Secret {
        metadata: meta(redis, names.connection_secret(), labels),
        type_: Some("Opaque".into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()),
        ..Secret::default()
    }
}

/// Name of the connection Secret a Redis publishes for Apps (`App.spec.connections.redis`).
pub fn connection_secret_name(redis: &str) -> String {
    format!("{redis}-redis")
}
