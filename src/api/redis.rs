//! The Redis custom resource: a cache for one environment, run in the cluster (standalone, or
//! replicated with Sentinel) or an existing managed Redis the operator only checks and publishes.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ResourcePhase, SecretKeyRef};

/// Desired state of a Redis.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "platform.authentify.it",
    version = "v1alpha1",
    kind = "Redis",
    plural = "redises",
    namespaced,
    status = "RedisStatus",
    shortname = "rds",
    category = "authentify",
    doc = "A Redis for one environment: in the cluster, or an existing managed Redis.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.ready"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.observedVersion"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("(self.mode == 'external') == has(self.external)")
        .message("spec.external is required when mode is external, and only then"),
    validation = Rule::new("self.mode == 'replicated' || !has(self.sentinel)")
        .message("spec.sentinel applies only to mode: replicated"),
    validation = Rule::new("self.mode != 'external' || (!has(self.storage) && !has(self.resources))")
        .message("storage and resources do not apply to mode: external; the managed Redis owns them")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// `standalone` (one pod), `replicated` (a primary, replicas and Sentinel) or `external`.
    #[serde(default)]
    pub mode: RedisMode,
    /// Redis version to run in the cluster; the operator pins the matching image.
    #[serde(default = "default_version")]
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+(\.[0-9]+)?$"))]
    pub version: String,
    /// Override the Redis image (it must match `version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,
    /// Replicas besides the primary, in `replicated` mode.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,
    /// Sentinel settings, in `replicated` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<Sentinel>,
    /// Memory limit and what Redis evicts when it is reached.
    #[serde(default)]
    pub memory: MemoryPolicy,
    /// How data survives a restart.
    #[serde(default)]
    pub persistence: Persistence,
    /// Persistent volumes for in-cluster modes; absent: 1Gi of the cluster's default StorageClass,
    /// kept when the Redis is deleted. Size and class apply to new volumes only (StatefulSet
    /// volume templates cannot change in place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// CPU and memory for the Redis container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Prometheus exporter sidecar.
    #[serde(default)]
    pub exporter: Exporter,
    /// An existing Redis to use instead of running one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedis>,
    /// Keys to delete when an App wired to this Redis promotes a new revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_on_promote: Option<PurgeOnPromote>,
}

fn default_version() -> String {
    "7.2".to_string()
}
fn default_replicas() -> i32 {
    2
}

/// How Redis runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum RedisMode {
    /// One Redis pod with a persistent volume.
    #[default]
    Standalone,
    /// A primary, replicas and three Sentinels; survives the loss of the primary.
    Replicated,
    /// An existing Redis outside the cluster (e.g. DigitalOcean Managed Redis).
    External,
}

/// Sentinel settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.quorum <= self.replicas")
    .message("sentinel.quorum cannot exceed sentinel.replicas"))]
#[serde(rename_all = "camelCase")]
pub struct Sentinel {
    /// Sentinel processes; an odd number of at least 3 survives one loss.
    #[serde(default = "default_sentinels")]
    #[schemars(range(min = 1, max = 7))]
    pub replicas: i32,
    /// Sentinels that must agree the primary is down.
    #[serde(default = "default_quorum")]
    #[schemars(range(min = 1, max = 7))]
    pub quorum: i32,
}

fn default_sentinels() -> i32 {
    3
}
fn default_quorum() -> i32 {
    2
}

/// Memory limit and eviction.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemoryPolicy {
    /// `maxmemory`, e.g. `256mb` or `1gb`; absent: no limit besides the container's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(b|kb|mb|gb)?$"))]
    pub max_memory: Option<String>,
    /// `maxmemory-policy`.
    #[serde(default)]
    pub eviction_policy: EvictionPolicy,
}

/// Redis `maxmemory-policy` values.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum EvictionPolicy {
    #[default]
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
    Noeviction,
}

/// Persistence.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Persistence {
    /// Periodic RDB snapshots.
    #[serde(default = "default_true")]
    pub rdb: bool,
    /// Append-only file (every write, fsync once a second).
    #[serde(default)]
    pub aof: bool,
}

fn default_true() -> bool {
    true
}

/// Persistent volumes of in-cluster Redis pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Size of each volume.
    #[serde(default = "default_size")]
    pub size: Quantity,
    /// StorageClass; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to the volumes when the Redis is deleted.
    #[serde(default)]
    pub when_deleted: VolumeRetention,
}

impl Default for Storage {
    fn default() -> Self {
        Self { size: default_size(), storage_class_name: None, when_deleted: VolumeRetention::default() }
    }
}

fn default_size() -> Quantity {
    Quantity("1Gi".to_string())
}

/// Volume retention on deletion.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub enum VolumeRetention {
    /// Keep the PersistentVolumeClaims (the data) after the Redis is deleted.
    #[default]
    Retain,
    /// Delete the PersistentVolumeClaims with the Redis.
    Delete,
}

/// The redis_exporter sidecar.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Exporter {
    /// Run the exporter sidecar on each Redis pod.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Override the exporter image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Default for Exporter {
    fn default() -> Self {
        Self { enabled: true, image: None }
    }
}

/// An existing Redis outside the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedis {
    /// Host name or address.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Port.
    #[serde(default = "default_redis_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Connect with TLS (`rediss://`), as managed Redis services require.
    #[serde(default)]
    pub tls: bool,
    /// Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyRef>,
    /// User name for Redis ACLs; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub username: Option<String>,
}

fn default_redis_port() -> i32 {
    6379
}

/// Purge of cached keys when an App promotes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PurgeOnPromote {
    /// Glob patterns (Redis MATCH syntax) of keys to delete, e.g. `api:cache:*`. A bare `*` is
    /// refused: the operator never empties a whole database.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(p, p != '*' && size(p) > 0)")
        .message("purgeOnPromote.patterns may not contain '*' alone: name a key prefix such as 'api:cache:*'"))]
    pub patterns: Vec<String>,
    /// Stop after deleting this many keys, so a purge stays bounded.
    #[serde(default = "default_max_keys")]
    #[schemars(range(min = 1, max = 10000000))]
    pub max_keys: i64,
}

fn default_max_keys() -> i64 {
    1_000_000
}

/// Observed state of a Redis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RedisStatus {
    /// Pending, Ready, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ResourcePhase>,
    /// A sentence for people about the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `host:port` Apps connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Name of the connection Secret (`REDIS_URL` and friends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Redis version reported by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_version: Option<String>,
    /// Ready and Reachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready Redis pods out of those wanted (`2/3`), in cluster modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Replication role the server reported (`master` or `slave`), when the operator reached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// In `replicated` mode, the pod the client Service sends traffic to (the primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// The last purge made for each App wired to this Redis (one entry per App), so a promotion
    /// is purged once even across operator restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purges: Vec<PurgeRecord>,
}

/// One purge of `purgeOnPromote.patterns` after an App promoted a revision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PurgeRecord {
    /// The App that promoted.
    pub app: String,
    /// The revision it promoted.
    pub revision: String,
    /// When the promotion finished (the App's `status.history[0].finishedAt`).
    pub promoted_at: Time,
    /// Keys deleted.
    pub deleted_keys: i64,
    /// True when the purge stopped at `purgeOnPromote.maxKeys`.
    #[serde(default)]
    pub truncated: bool,
    /// When the purge ran.
    pub time: Time,
}
