//! The App custom resource: one deployable HTTP service (the NestJS monolith, or a Next.js frontend),
//! rolled out by canary or blue-green.
//!
//! This module holds the data shape, its schema and its CEL rules. It decides nothing about
//! rollouts; that is the rollout engine's job.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Timestamp;

/// Desired state of an App: what to run, how many, how it is reached, and how a new version is
/// rolled out.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "platform.authentify.it",
    version = "v1alpha1",
    kind = "App",
    namespaced,
    status = "AppStatus",
    shortname = "ap",
    category = "authentify",
    doc = "An HTTP service deployed by the Authentify operator with canary or blue-green rollouts.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "Ready pods of the desired count"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Strategy", type_ = "string", json_path = ".status.strategy"),
    printcolumn(
        name = "Step",
        type_ = "string",
        json_path = ".status.step",
        description = "Current canary step of all steps"
    ),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.canaryWeight",
        description = "Share of traffic on the new revision, in percent"
    ),
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("!has(self.strategy) || !has(self.strategy.blueGreen) || !has(self.strategy.blueGreen.previewHost) || has(self.route)")
        .message("spec.strategy.blueGreen.previewHost needs spec.route: the preview host is served by the same ingress as the App")
)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Container image to run, with a tag or digest, e.g. `registry.example.com/authentify/api:1.42.0`.
    /// Changing it starts a rollout.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,

    /// Number of pods. The `/scale` subresource reads and writes this field, so with `autoscaling`
    /// the HorizontalPodAutoscaler owns it: leave it alone then (the operator keeps the running
    /// count within minReplicas..maxReplicas).
    #[schemars(range(min = 0, max = 1000))]
    #[serde(default = "default_replicas")]
    pub replicas: Option<i32>,

    /// Horizontal autoscaling on CPU and/or memory, through a HorizontalPodAutoscaler that targets
    /// the App's `/scale` subresource. During a canary both revisions keep their share of its count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// The port the container listens on for HTTP traffic (App Platform's `http_port`).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Environment variables for the container, as in a Pod spec. Use `valueFrom.secretKeyRef` for
    /// secrets: plain values are visible to anyone who can read the App.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub env: Vec<EnvVar>,

    /// Wiring to data-plane resources in the same namespace. Their connection Secrets become
    /// environment variables, and a change to them rolls the App.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Connections>,

    /// HTTP health check used as the readiness and liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,

    /// CPU and memory requests and limits for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// How the App is reached from outside: an Ingress (default) or a Gateway API HTTPRoute.
    /// Without a route the App is only reachable inside the cluster (a worker, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,

    /// Jobs that run around a rollout, like App Platform's PRE_DEPLOY and POST_DEPLOY jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<DeployJobs>,

    /// Seconds a rollout may go without progress before it is aborted and the stable revision is
    /// restored. Pauses waiting for a person do not count.
    #[serde(default = "default_progress_deadline")]
    #[schemars(range(min = 30, max = 86400))]
    pub progress_deadline_seconds: i32,

    /// How many old revisions are kept (as ReplicaSets at zero replicas) for fast rollback.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0, max = 50))]
    pub revision_history_limit: i32,

    /// How a new revision replaces the running one. Absent means a canary with no steps: the new
    /// revision replaces the old one as fast as maxSurge and maxUnavailable allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,

    /// Automatic rollback of a failing rollout. On by default, as on App Platform.
    #[serde(default)]
    pub auto_rollback: AutoRollback,

    /// Stops every rollout activity of the App where it stands (pods keep running) until set
    /// back to false. `kubectl authentify pause` and `resume` write it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,

    /// A timestamp; setting it to a newer time restarts the stable pods one batch at a time
    /// (`kubectl authentify restart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Timestamp>,

    /// The Cloudflare EdgeCache in front of this App's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_cache: Option<EdgeCacheRef>,

    /// Extra labels for the App's pods (e.g. for cost allocation). Keys the operator sets win.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
}

#[allow(clippy::unnecessary_wraps)] // serde's default for an optional field
fn default_replicas() -> Option<i32> {
    Some(1)
}
fn default_port() -> i32 {
    8080
}
fn default_progress_deadline() -> i32 {
    600
}
fn default_history_limit() -> i32 {
    5
}

/// Horizontal autoscaling of the App. The HorizontalPodAutoscaler targets the App's `/scale`
/// subresource, so a rollout sees the same replica count as the autoscaler.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas")
        .message("autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas"),
    validation = Rule::new("has(self.cpuPercent) || has(self.memoryPercent)")
        .message("autoscaling needs a target: set cpuPercent, memoryPercent or both")
)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest pods the autoscaler keeps.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most pods the autoscaler may run.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Target average CPU use, in percent of the CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub cpu_percent: Option<i32>,
    /// Target average memory use, in percent of the memory request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub memory_percent: Option<i32>,
}

fn default_min_replicas() -> i32 {
    1
}

/// Names of data-plane resources in the App's namespace whose connection Secrets are wired in.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Connections {
    /// Name of a Redis resource: its Secret provides `REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`,
    /// `REDIS_PASSWORD` and `REDIS_TLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub redis: Option<String>,
    /// Name of an AtlasConnection resource: its Secret provides `MONGODB_URI`, `MONGODB_USERNAME`,
    /// `MONGODB_PASSWORD` and the standard and SRV connection strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub mongodb: Option<String>,
}

/// HTTP health check, used for readiness and liveness.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.httpPath.startsWith('/')").message("healthCheck.httpPath must start with '/', e.g. /health"))]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Path answered with 2xx or 3xx when the container is healthy.
    #[serde(default = "default_health_path")]
    #[schemars(length(min = 1, max = 1024))]
    pub http_path: String,
    /// Port to probe; defaults to `spec.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Seconds after the container starts before the first probe.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub initial_delay_seconds: i32,
    /// Seconds between probes.
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 300))]
    pub period_seconds: i32,
    /// Seconds a probe may take.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 120))]
    pub timeout_seconds: i32,
    /// Consecutive failed probes before the pod is taken out of the Service (and restarted).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
}

fn default_health_path() -> String {
    "/".to_string()
}
fn default_period() -> i32 {
    10
}
fn default_timeout() -> i32 {
    1
}
fn default_failure_threshold() -> i32 {
    3
}

/// How traffic reaches the App from outside the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("!(has(self.ingressClassName) && has(self.gateway))")
        .message("route.ingressClassName and route.gateway exclude each other: an App is routed by an Ingress or by a Gateway API HTTPRoute"),
    validation = Rule::new("self.path.startsWith('/')").message("route.path must start with '/'")
)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Public host name, e.g. `api.authentify.it`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub host: String,
    /// Path prefix served by this App.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
    /// IngressClass for the generated Ingress (e.g. `nginx`); the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ingress_class_name: Option<String>,
    /// Route through a Gateway API Gateway with an HTTPRoute instead of an Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayParentRef>,
    /// Name of a TLS Secret for the host (Ingress only); absent means plain HTTP at the ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_name: Option<String>,
}

fn default_path() -> String {
    "/".to_string()
}

/// The Gateway an HTTPRoute attaches to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Gateway; the App's namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Listener of the Gateway to attach to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

/// Jobs run with the new image around a rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeployJobs {
    /// Runs before the new revision takes any traffic (database migrations, say). If it fails the
    /// rollout stops and the stable revision keeps serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_deploy: Option<DeployJob>,
    /// Runs after the new revision is promoted to stable. Its failure is reported, not rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_deploy: Option<DeployJob>,
}

/// One Job run with the App's new image, environment and connections.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeployJob {
    /// Command to run, e.g. `[npm, run, migrate]`.
    #[schemars(length(min = 1, max = 64))]
    pub command: Vec<String>,
    /// Extra environment for the job, on top of the App's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,
    /// Seconds the job may run before it counts as failed.
    #[serde(default = "default_job_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: i32,
    /// Retries before the job counts as failed.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: i32,
}

fn default_job_timeout() -> i32 {
    600
}

/// Exactly one of `canary` or `blueGreen`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.canary) != has(self.blueGreen)")
    .message("strategy needs exactly one of canary or blueGreen"))]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// Shift traffic to the new revision step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Bring the new revision up in full beside the old one, then switch all traffic at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
    /// HTTP gates, in the manner of Flagger's confirm-rollout and confirm-promotion: each must
    /// answer 2xx before the rollout starts (`ConfirmRollout`) or before the new revision takes
    /// all traffic (`ConfirmPromotion`). Any other answer holds the rollout and is asked again
    /// every `interval`. Rollbacks are never held; `promote-full` overrides a closed gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub webhooks: Vec<Webhook>,
}

/// An HTTP gate. The operator POSTs a JSON body
/// (`{name, namespace, app, phase, revision, image, metadata}`) and continues on a 2xx answer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Name of the gate, unique in the App; it appears in status, events and messages.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// When the gate is asked: `ConfirmRollout` (before the new revision gets pods or runs its
    /// pre-deploy job) or `ConfirmPromotion` (before it takes all traffic).
    #[serde(rename = "type")]
    pub kind: WebhookType,
    /// The endpoint, `http://` or `https://`. Its query string never appears in messages, so a
    /// token may be passed there; prefer a cluster-internal Service URL.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#]+')")
        .message("webhooks[].url must be an http:// or https:// URL with a host, such as http://qa-gate.tools.svc/confirm"))]
    pub url: String,
    /// How long one attempt may take, e.g. `10s`.
    #[serde(default = "default_webhook_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')")
        .message("webhooks[].timeout must be a duration made of a number and a unit (ms, s, m, h), such as 10s"))]
    pub timeout: String,
    /// Further attempts when the endpoint cannot be reached, times out or answers 5xx
    /// (a 4xx is an answer: no).
    #[serde(default = "default_webhook_retries")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: i32,
    /// How long to wait before asking again after a no, e.g. `30s`.
    #[serde(default = "default_webhook_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')")
        .message("webhooks[].interval must be a duration made of a number and a unit (ms, s, m, h), such as 30s"))]
    pub interval: String,
    /// Extra fields sent in the request body's `metadata`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

fn default_webhook_timeout() -> String {
    "10s".to_string()
}
fn default_webhook_retries() -> i32 {
    2
}
fn default_webhook_interval() -> String {
    "30s".to_string()
}

/// When a webhook gate is asked.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WebhookType {
    /// Before a new revision gets pods (and before its pre-deploy job).
    ConfirmRollout,
    /// Before the new revision takes all traffic (canary's end, blue-green's switch).
    ConfirmPromotion,
}

impl WebhookType {
    /// The phase name sent to the endpoint (Flagger's spelling).
    pub fn phase(self) -> &'static str {
        match self {
            Self::ConfirmRollout => "confirm-rollout",
            Self::ConfirmPromotion => "confirm-promotion",
        }
    }
}

/// Canary rollout: the new revision takes a growing share of traffic through its steps.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Steps run in order. After the last step the new revision is promoted to stable.
    /// No steps: the new revision replaces the old as fast as maxSurge and maxUnavailable allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub steps: Vec<CanaryStep>,
    /// How traffic is split. Absent: by the ratio of canary to stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
    /// Pods allowed above the desired count while moving (a number, or a percentage such as `25%`).
    #[serde(default = "default_max_surge")]
    pub max_surge: IntOrString,
    /// Pods allowed below the desired count while moving (a number, or a percentage).
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: IntOrString,
    /// Analysis that runs in the background for the whole rollout; a failure aborts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRef>,
}

fn default_max_surge() -> IntOrString {
    IntOrString::String("25%".to_string())
}
fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(0)
}

/// One canary step. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.setWeight), has(self.pause), has(self.analysis), has(self.setCanaryScale)].exists_one(x, x)")
    .message("each canary step sets exactly one of setWeight, pause, analysis or setCanaryScale"))]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percentage of traffic (0-100) the new revision receives from this step on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub set_weight: Option<i32>,
    /// Wait: for `duration`, or without one until promoted (`kubectl authentify promote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// Run analysis templates; continue when they pass, pause when inconclusive, abort on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRef>,
    /// Size the canary independently of its traffic weight (with a traffic router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
}

/// A pause step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// How long to wait, e.g. `2m`. Absent: wait until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')")
        .message("pause.duration must be a duration made of a number and a unit (ms, s, m, h), such as 30s, 5m or 1h30m"))]
    pub duration: Option<String>,
}

/// Sizes the canary ReplicaSet independently of traffic. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("[has(self.replicas), has(self.weight), has(self.matchTrafficWeight) && self.matchTrafficWeight].exists_one(x, x)")
    .message("setCanaryScale sets exactly one of replicas, weight or matchTrafficWeight: true"))]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    /// An absolute number of canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// Canary pods as a percentage (0-100) of the desired count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: Option<i32>,
    /// Go back to sizing the canary by its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
}

/// References AnalysisTemplates in the App's namespace, with arguments.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRef {
    /// Names of AnalysisTemplates to run together; all must pass.
    #[schemars(length(min = 1, max = 16))]
    pub templates: Vec<String>,
    /// Values for the templates' arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub args: Vec<AnalysisArg>,
    /// Seconds a finished AnalysisRun is kept before it is deleted (default a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub ttl_seconds_after_finished: Option<i32>,
}

/// One named argument passed to an analysis template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisArg {
    /// Argument name, as the template declares it.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Argument value.
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// How canary traffic is split. At most one router.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!(has(self.nginx) && has(self.gatewayAPI))")
    .message("trafficRouting takes one router: nginx or gatewayAPI"))]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// NGINX Ingress: a generated canary Ingress carries the weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxRouting>,
    /// Gateway API: the HTTPRoute's backend weights carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "gatewayAPI")]
    pub gateway_api: Option<GatewayApiRouting>,
    /// A request header that sends a request to the canary whatever the weight (for QA), e.g.
    /// `X-Canary: always`. Exists only while a canary runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_route: Option<HeaderRoute>,
}

/// NGINX Ingress traffic routing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NginxRouting {
    /// Extra annotations for the generated canary Ingress.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_ingress_annotations: BTreeMap<String, String>,
}

/// Gateway API traffic routing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRouting {
    /// Name of an HTTPRoute to manage; the operator's own HTTPRoute for the App when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub http_route: Option<String>,
}

/// A header match that routes to the canary.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoute {
    /// Header name, e.g. `X-Canary`.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"))]
    pub name: String,
    /// Exact header value, e.g. `always`.
    #[schemars(length(min = 1, max = 4096))]
    pub value: String,
}

/// Blue-green rollout: the preview revision comes up in full, then the active Service switches.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// Host on which the preview revision is reachable before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub preview_host: Option<String>,
    /// Pods of the preview revision before promotion; the full count when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub preview_replica_count: Option<i32>,
    /// Promote automatically this many seconds after the preview is fully ready. Absent: wait for
    /// `kubectl authentify promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604800))]
    pub auto_promotion_seconds: Option<i32>,
    /// Analysis that must pass before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<AnalysisRef>,
    /// Analysis after the switch; a failure switches back to the previous revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<AnalysisRef>,
    /// Seconds the previous revision stays up after the switch, so a rollback is instant.
    #[serde(default = "default_scale_down_delay")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_delay_seconds: i32,
}

fn default_scale_down_delay() -> i32 {
    30
}

/// Automatic rollback settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoRollback {
    /// Abort a rollout that misses its progress deadline or whose pods crash-loop.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Container restarts of a new pod after which the rollout counts as failed.
    #[serde(default = "default_crash_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub restart_threshold: i32,
}

impl Default for AutoRollback {
    fn default() -> Self {
        Self { enabled: true, restart_threshold: default_crash_threshold() }
    }
}

fn default_true() -> bool {
    true
}
fn default_crash_threshold() -> i32 {
    3
}

/// The EdgeCache in front of the App.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeCacheRef {
    /// Name of an EdgeCache resource in the App's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Purge the App's cached content when a new revision is promoted.
    #[serde(default = "default_true")]
    pub purge_on_promote: bool,
}

/// Where an App stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub enum AppPhase {
    /// A rollout is moving.
    #[default]
    Progressing,
    /// A rollout waits for a timer or a person, or the App is paused.
    Paused,
    /// The desired revision runs with every pod ready.
    Healthy,
    /// A rollout was aborted or failed; the stable revision serves. `message` says why.
    Degraded,
}

/// Observed state of an App, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// Progressing, Paused, Healthy or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AppPhase>,
    /// A sentence for people, e.g. `canary at 10%, step 2/5: pause 2m (1m12s left)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Canary`, `BlueGreen` or `Rolling` (a canary without steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Pod-template hash of the revision that serves all traffic when no rollout runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// Pod-template hash of the revision the spec asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// Index of the current canary step (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,
    /// `2/5`: the current step of all steps, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Share of traffic on the new revision, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    /// Why the rollout waits, and since when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    /// True when the rollout was aborted (by a person or automatically).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
    /// Standard conditions: Available, Progressing, Paused, Healthy, ReplicaFailure, InvalidSpec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of all revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Ready pods of all revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods of the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Pods ready for at least minReadySeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// `3/4`: ready pods of the desired count, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Label selector of the App's pods, for the `/scale` subresource (HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The last rollouts, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RolloutRecord>,
    /// Ready pods of the current revision when last observed (progress tracking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_ready_replicas: Option<i32>,
    /// When the rollout last made progress; the progress deadline counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_time: Option<Timestamp>,
    /// The revision that served before the last blue-green switch, kept up until `scaleDownAt`
    /// so that a rollback to it is instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_revision: Option<String>,
    /// When `previousRevision` is scaled down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_at: Option<Timestamp>,
    /// The control requests (annotations) already carried out, by name.
    #[serde(default, skip_serializing_if = "ControlTokens::is_empty")]
    pub controls: ControlTokens,
    /// The AnalysisRuns of the current (or last) rollout and their verdicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_runs: Vec<AnalysisRunSummary>,
    /// The last answer of each webhook gate asked for the current revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateStatus>,
}

/// One AnalysisRun of a rollout, as the App's status sums it up.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSummary {
    /// Name of the AnalysisRun.
    pub name: String,
    /// `step 3`, `background`, `pre-promotion` or `post-promotion`.
    pub purpose: String,
    /// Running, Successful, Failed, Inconclusive or Error.
    pub phase: crate::api::analysis::AnalysisPhase,
    /// The run's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The last answer of one webhook gate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GateStatus {
    /// Name of the webhook.
    pub name: String,
    /// `ConfirmRollout` or `ConfirmPromotion`.
    #[serde(rename = "type")]
    pub kind: WebhookType,
    /// Revision the answer is for.
    pub revision: String,
    /// True once the endpoint answered 2xx.
    pub passed: bool,
    /// The answer, for people (status code and the start of the body, or why it could not be asked).
    pub message: String,
    /// When it was last asked.
    pub checked_at: Timestamp,
}

/// Tokens of the control annotations the operator has carried out. A control annotation
/// (`platform.authentify.it/promote: <token>`) acts once per new token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ControlTokens {
    /// Last handled `platform.authentify.it/promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<String>,
    /// Last handled `platform.authentify.it/promote-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_full: Option<String>,
    /// Last handled `platform.authentify.it/abort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<String>,
    /// Last handled `platform.authentify.it/retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

impl ControlTokens {
    /// True when no control was ever handled.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Why a rollout waits.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// `CanaryPauseStep`, `BlueGreenPause`, `InconclusiveAnalysis`, `WebhookGate` or `AppPaused`.
    pub reason: String,
    /// When the pause began.
    pub start_time: Timestamp,
}

/// One finished or running rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// Pod-template hash of the revision rolled out.
    pub revision: String,
    /// Image of that revision.
    pub image: String,
    /// When the rollout began.
    pub started_at: Timestamp,
    /// When it ended; absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// `Running`, `Promoted`, `Aborted` or `RolledBack`.
    pub outcome: String,
}
