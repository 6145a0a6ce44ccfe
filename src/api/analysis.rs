//! The AnalysisTemplate custom resource: metrics that decide whether a rollout goes on. Canary
//! steps, background analysis and blue-green pre/post-promotion analysis reference templates by
//! name. Each analysis a rollout starts is recorded in an AnalysisRun: the templates' metrics with
//! their arguments filled in, and every measurement taken.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{SecretKeyRef, Timestamp};

/// Metrics measured while a rollout runs, each with the conditions that pass or fail it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "platform.authentify.it",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    shortname = "at",
    category = "authentify",
    doc = "Metrics (Prometheus, web, Job) and conditions that decide whether a rollout continues."
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// Arguments the metrics use as `{{args.NAME}}`; a value here is the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub args: Vec<TemplateArg>,
    /// The metrics; all must pass.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub metrics: Vec<Metric>,
}

/// One argument of a template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateArg {
    /// Name, used as `{{args.NAME}}`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Default value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One metric: how to measure it, how often, and when it passes or fails.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.successCondition) || has(self.failureCondition)")
        .message("a metric needs a successCondition, a failureCondition or both"),
    validation = Rule::new("self.interval.matches('^([0-9]+(ms|s|m|h))+$')")
        .message("interval must be a duration such as 30s or 1m")
)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Name, unique in the template.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Time between measurements.
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32))]
    pub interval: String,
    /// Measurements to take; the metric passes after this many (absent: measure until the
    /// step ends, which only background analysis does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub count: Option<i32>,
    /// Wait this long before the first measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub initial_delay: Option<String>,
    /// A condition on `result` that passes a measurement, e.g. `result < 0.05` (see
    /// docs/analysis.md for the language).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub success_condition: Option<String>,
    /// A condition on `result` that fails a measurement, e.g. `result >= 0.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated; one more fails the metric.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub failure_limit: i32,
    /// Inconclusive measurements tolerated; one more makes the metric inconclusive.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub inconclusive_limit: i32,
    /// Consecutive measurement errors (the provider could not answer) tolerated.
    #[serde(default = "default_error_limit")]
    #[schemars(range(min = 0, max = 1000))]
    pub consecutive_error_limit: i32,
    /// Measure and report, but never fail the rollout.
    #[serde(default)]
    pub dry_run: bool,
    /// Where the value comes from.
    pub provider: MetricProvider,
}

fn default_interval() -> String {
    "1m".to_string()
}
fn default_error_limit() -> i32 {
    4
}

/// Exactly one provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.prometheus), has(self.web), has(self.job)].exists_one(x, x)")
    .message("a metric's provider sets exactly one of prometheus, web or job"))]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    /// A PromQL query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusProvider>,
    /// An HTTP call answering JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebProvider>,
    /// A Kubernetes Job: success passes, failure fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobProvider>,
}

/// Prometheus instant query.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusProvider {
    /// Prometheus base URL, e.g. `http://prometheus.monitoring:9090`, or an argument such as
    /// `{{args.prometheus}}`.
    #[schemars(regex(pattern = r"^(https?://|\{\{)"))]
    pub address: String,
    /// PromQL; `{{args.NAME}}` is replaced by the argument. `result` is the first sample's value
    /// (a number), or a list of numbers when the query returns several series.
    #[schemars(length(min = 1, max = 8192))]
    pub query: String,
}

/// HTTP call answering JSON.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WebProvider {
    /// URL (http or https); `{{args.NAME}}` is replaced, and may start it.
    #[schemars(regex(pattern = r"^(https?://|\{\{)"))]
    pub url: String,
    /// HTTP method.
    #[serde(default = "default_method")]
    #[schemars(regex(pattern = r"^(GET|POST|PUT|PATCH|DELETE|HEAD)$"))]
    pub method: String,
    /// Request headers. A value from a Secret (a token, say) never appears in the status, Events
    /// or logs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub headers: Vec<WebHeader>,
    /// Request body (sent as is; set a `Content-Type` header for JSON). `{{args.NAME}}` is
    /// replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
    /// A field selected from the JSON answer with a JSONPath such as `$.data.errorRate`; the
    /// whole answer when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Seconds the call may take.
    #[serde(default = "default_web_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: i32,
}

/// One request header of a web metric: a plain value or one from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)")
    .message("a header sets exactly one of value or valueFrom"))]
#[serde(rename_all = "camelCase")]
pub struct WebHeader {
    /// Header name, e.g. `Authorization`.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"))]
    pub name: String,
    /// A plain value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub value: Option<String>,
    /// The value from a key of a Secret in the App's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<HeaderSource>,
}

/// Where a header value comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderSource {
    /// A key of a Secret in the App's namespace.
    pub secret_key_ref: SecretKeyRef,
}

fn default_method() -> String {
    "GET".to_string()
}
fn default_web_timeout() -> i32 {
    10
}

/// A Job whose outcome is the measurement: `result` is true when it succeeded, false when it
/// failed (so `successCondition: result`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobProvider {
    /// Image to run.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,
    /// Command to run.
    #[schemars(length(min = 1, max = 64))]
    pub command: Vec<String>,
    /// Extra labels for the Job's pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Seconds the Job may run before it counts as failed.
    #[serde(default = "default_job_deadline")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: i32,
    /// Retries of a failed pod before the Job counts as failed.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: i32,
}

fn default_job_deadline() -> i32 {
    600
}

/// Outcome of a measurement, a metric or a whole analysis.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AnalysisPhase {
    /// Not measured yet, or more measurements to come.
    #[default]
    Running,
    /// Passed.
    Successful,
    /// Failed.
    Failed,
    /// Neither passed nor failed.
    Inconclusive,
    /// The provider could not answer.
    Error,
}

impl AnalysisPhase {
    /// True once nothing more will change it.
    pub fn is_finished(self) -> bool {
        self != AnalysisPhase::Running
    }
}

/// One analysis of one rollout: the metrics of its templates with the arguments filled in, and
/// every measurement taken. Created by the App controller, measured by the AnalysisRun controller,
/// owned by the App, deleted `ttlSecondsAfterFinished` after it finished.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "platform.authentify.it",
    version = "v1alpha1",
    kind = "AnalysisRun",
    namespaced,
    status = "AnalysisRunStatus",
    shortname = "ar",
    category = "authentify",
    doc = "One analysis of a rollout: resolved metrics and their measurements.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.app"),
    printcolumn(name = "Purpose", type_ = "string", json_path = ".spec.purpose"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSpec {
    /// The App whose rollout this analysis decides.
    #[schemars(length(min = 1, max = 253))]
    pub app: String,
    /// The revision being rolled out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 64))]
    pub revision: String,
    /// What the analysis is for: `step 3`, `background`, `pre-promotion` or `post-promotion`.
    #[schemars(length(min = 1, max = 64))]
    pub purpose: String,
    /// The AnalysisTemplates it was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub templates: Vec<String>,
    /// The metrics, arguments filled in.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub metrics: Vec<Metric>,
    /// Stop measuring (the rollout that wanted it ended or moved on). A running analysis then
    /// finishes with what it measured so far.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminate: bool,
    /// Seconds a finished run is kept before it is deleted.
    #[serde(default = "default_run_ttl")]
    #[schemars(range(min = 0, max = 31_536_000))]
    pub ttl_seconds_after_finished: i32,
}

/// Default [`AnalysisRunSpec::ttl_seconds_after_finished`]: a day.
pub const DEFAULT_RUN_TTL_SECONDS: i32 = 86_400;

fn default_run_ttl() -> i32 {
    DEFAULT_RUN_TTL_SECONDS
}

/// Measurements of an AnalysisRun so far, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// Running, Successful, Failed, Inconclusive or Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AnalysisPhase>,
    /// A sentence for people: which metric decided, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When measuring began; `initialDelay` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When the run finished; the TTL counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// One entry per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_results: Vec<MetricResult>,
}

/// Where one metric of a run stands.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// Running until a limit or `count` decides it.
    pub phase: AnalysisPhase,
    /// Measured and reported, never counted against the analysis.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Measurements taken.
    #[serde(default)]
    pub count: i32,
    /// Successful measurements.
    #[serde(default)]
    pub successful: i32,
    /// Failed measurements.
    #[serde(default)]
    pub failed: i32,
    /// Inconclusive measurements.
    #[serde(default)]
    pub inconclusive: i32,
    /// Measurements the provider could not answer.
    #[serde(default)]
    pub error: i32,
    /// Errors in a row, up to the last measurement.
    #[serde(default)]
    pub consecutive_error: i32,
    /// Why it stands where it does (the last error, or what decided it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last measurements, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<MeasurementResult>,
}

/// One measurement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementResult {
    /// Running while a Job measures; then as judged.
    pub phase: AnalysisPhase,
    /// When it began.
    pub started_at: Timestamp,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// The value, as JSON text (shortened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why it erred, or what the Job said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Job of a job measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}
