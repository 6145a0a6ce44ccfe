//! The AnalysisTemplate custom resource: metrics that decide whether a rollout goes on. Canary
//! steps, background analysis and blue-green pre/post-promotion analysis reference templates by
//! name.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// Prometheus base URL, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(regex(pattern = r"^https?://"))]
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
    /// URL; `{{args.NAME}}` is replaced.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// HTTP method.
    #[serde(default = "default_method")]
    pub method: String,
    /// A field selected from the JSON answer with a JSONPath such as `$.data.errorRate`; the
    /// whole answer when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Seconds the call may take.
    #[serde(default = "default_web_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: i32,
}

fn default_method() -> String {
    "GET".to_string()
}
fn default_web_timeout() -> i32 {
    10
}

/// A Job whose outcome is the measurement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobProvider {
    /// Image to run.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,
    /// Command to run.
    #[schemars(length(min = 1, max = 64))]
    pub command: Vec<String>,
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
