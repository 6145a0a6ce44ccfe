//! Metric providers: a Prometheus instant query, a web call answering JSON, and a Kubernetes Job.
//! Each turns into a [`Measurement`]; a provider that cannot answer gives
//! [`Measurement::Error`] with a sentence that names the provider and the cause, never a header
//! value or a URL's query string (either may hold a token).
//!
//! The parsing and the Job's shape are pure and unit-tested; the HTTP calls are thin.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Measurement;
use crate::api::analysis::{AnalysisRun, JobProvider, Metric, PrometheusProvider, WebProvider};

/// How long a Prometheus query may take.
pub const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(15);
/// Label on a Job measurement's Job: the metric it measures.
pub const METRIC_LABEL: &str = "platform.authentify.it/analysis-metric";
/// Largest answer read from a provider.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// A URL for messages: scheme, host, port and path only (a query string may carry a token).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

/// A reqwest error as a sentence with its cause (connection refused, timed out), without the URL.
fn describe(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if timeout { format!("timed out ({text})") } else { text }
}

/// The value of a Prometheus `/api/v1/query` answer as `result`: a scalar or a one-series vector
/// is a number, several series a list of numbers, none an empty list. NaN (a quantile of no
/// data, a division by zero) is an error, since no condition can judge it.
pub fn parse_prometheus(body: &[u8]) -> Measurement {
    let doc: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Measurement::Error(format!("Prometheus answered something that is not JSON: {e}")),
    };
    if doc["status"] != "success" {
        let kind = doc["errorType"].as_str().unwrap_or("error");
        let error = doc["error"].as_str().unwrap_or("no reason given");
        return Measurement::Error(format!("Prometheus refused the query ({kind}): {error}"));
    }
    let sample = |v: &Value| -> Result<f64, String> {
        let text = v.get(1).and_then(Value::as_str).ok_or("a sample without a value")?;
        let n: f64 = text.parse().map_err(|_| format!("a sample value {text:?} that is not a number"))?;
        if n.is_nan() {
            return Err("NaN (no data in the window, or a division by zero)".into());
        }
        Ok(n)
    };
    let number = |n: f64| serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number);
    let data = &doc["data"];
    let result = match data["resultType"].as_str() {
        Some("scalar") => sample(&data["result"]).map(number),
        Some("vector") => {
            let series = data["result"].as_array().cloned().unwrap_or_default();
            let values: Result<Vec<f64>, String> = series.iter().map(|s| sample(&s["value"])).collect();
            values.map(|v| match v.as_slice() {
                [one] => number(*one),
                many => Value::Array(many.iter().map(|n| number(*n)).collect()),
            })
        }
        Some(other) => Err(format!("a {other} result; use an instant query that gives a scalar or a vector")),
        None => Err("an answer without data.resultType".into()),
    };
    match result {
        Ok(Value::Array(a)) if a.is_empty() => {
            Measurement::Error("the query returned no data (no series matched: no traffic yet?)".into())
        }
        Ok(v) => Measurement::Value(v),
        Err(e) => Measurement::Error(format!("Prometheus answered {e}")),
    }
}

/// Runs an instant query.
pub async fn prometheus(http: &reqwest::Client, p: &PrometheusProvider) -> Measurement {
    let base = format!("{}/api/v1/query", p.address.trim_end_matches('/'));
    let shown = redact_url(&base);
    let url = match reqwest::Url::parse_with_params(&base, [("query", p.query.as_str())]) {
        Ok(u) => u,
        Err(e) => return Measurement::Error(format!("Prometheus address {shown} is not a URL: {e}")),
    };
    let answer = http.get(url).timeout(PROMETHEUS_TIMEOUT).send().await;
    let response = match answer {
        Ok(r) => r,
        Err(e) => {
            return Measurement::Error(format!("Prometheus at {shown} did not answer: {}", describe(e)));
        }
    };
    let status = response.status();
    match read(response).await {
        Ok(body) if status.is_success() || status.as_u16() == 400 || status.as_u16() == 422 => {
            parse_prometheus(&body)
        }
        Ok(_) => Measurement::Error(format!("Prometheus at {shown} answered HTTP {status}")),
        Err(e) => Measurement::Error(format!("Prometheus at {shown}: {e}")),
    }
}

async fn read(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = vec![];
    while let Some(chunk) =
        response.chunk().await.map_err(|e| format!("the answer broke off: {}", describe(e)))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("the answer is larger than {MAX_BODY} bytes"));
        }
    }
    Ok(body)
}

/// The part of a JSON answer a web metric looks at: the nodes its JSONPath (RFC 9535) selects —
/// one node is the value, several a list — or the whole answer without a path.
pub fn select(answer: &Value, json_path: Option<&str>) -> Measurement {
    let Some(path) = json_path else { return Measurement::Value(answer.clone()) };
    let parsed = match serde_json_path::JsonPath::parse(path) {
        Ok(p) => p,
        Err(e) => return Measurement::Error(format!("jsonPath {path:?} is not a JSONPath: {e}")),
    };
    let nodes = parsed.query(answer).all();
    match nodes.as_slice() {
        [] => Measurement::Error(format!("jsonPath {path} selected nothing in the answer")),
        [one] => Measurement::Value((*one).clone()),
        many => Measurement::Value(Value::Array(many.iter().map(|v| (*v).clone()).collect())),
    }
}

/// Calls a web metric's URL. `headers` are the resolved header values (Secret values included);
/// they go into the request only, never into a message.
pub async fn web(http: &reqwest::Client, w: &WebProvider, headers: &[(String, String)]) -> Measurement {
    let shown = format!("{} {}", w.method, redact_url(&w.url));
    let method = match reqwest::Method::from_bytes(w.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return Measurement::Error(format!("{:?} is not an HTTP method", w.method)),
    };
    let timeout = Duration::from_secs(u64::try_from(w.timeout_seconds.max(1)).unwrap_or(10));
    let mut request = http.request(method, &w.url).timeout(timeout);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(body) = &w.body {
        request = request.body(body.clone());
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_builder() => {
            return Measurement::Error(format!(
                "{shown}: the request cannot be built (a header name or value is not valid HTTP)"
            ));
        }
        Err(e) => return Measurement::Error(format!("{shown} did not answer: {}", describe(e))),
    };
    let status = response.status();
    if !status.is_success() {
        return Measurement::Error(format!("{shown} answered HTTP {status}"));
    }
    let body = match read(response).await {
        Ok(b) => b,
        Err(e) => return Measurement::Error(format!("{shown}: {e}")),
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(answer) => match select(&answer, w.json_path.as_deref()) {
            Measurement::Error(e) => Measurement::Error(format!("{shown}: {e}")),
            value => value,
        },
        Err(e) => Measurement::Error(format!("{shown} answered something that is not JSON: {e}")),
    }
}

/// The Job of measurement `number` of `metric`: a name at most 63 characters long that is the
/// same for the same run, metric and number (so a repeated attempt finds the Job it created).
pub fn job_name(run: &str, metric: &str, number: i32) -> String {
    let mut h = Sha256::new();
    h.update(run.as_bytes());
    h.update([0]);
    h.update(metric.as_bytes());
    let hash: String = h.finalize()[..3].iter().map(|b| format!("{b:02x}")).collect();
    let suffix = format!("-{hash}-{number}");
    let prefix: String = run.chars().take(63 - suffix.len()).collect();
    format!("{}{suffix}", prefix.trim_end_matches(['-', '.']))
}

/// The Job for a job measurement, owned by the run, labelled as the operator's.
pub fn job(run: &AnalysisRun, metric: &Metric, p: &JobProvider, number: i32) -> Job {
    use crate::controllers::app::build::{APP_LABEL, MANAGED_BY, MANAGER};
    let name = job_name(&run.name_any(), &metric.name, number);
    let labels = BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (APP_LABEL.to_string(), run.spec.app.clone()),
        (METRIC_LABEL.to_string(), metric.name.chars().take(63).collect()),
    ]);
    let mut pod_labels = p.labels.clone();
    pod_labels.extend(labels.clone());
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: run.namespace(),
            labels: Some(labels),
            owner_references: run.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(p.backoff_limit),
            active_deadline_seconds: Some(i64::from(p.timeout_seconds)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "measure".into(),
                        image: Some(p.image.clone()),
                        command: Some(p.command.clone()),
                        termination_message_policy: Some("FallbackToLogsOnError".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// What a Job says about its measurement: `Some(true)` succeeded, `Some(false)` failed (with the
/// reason), `None` still running.
pub fn job_result(job: &Job) -> Option<(bool, Option<String>)> {
    let status = job.status.as_ref()?;
    let conditions = status.conditions.clone().unwrap_or_default();
    let is = |t: &str| conditions.iter().any(|c| c.type_ == t && c.status == "True");
    if is("Complete") || (status.succeeded.unwrap_or(0) > 0 && !is("Failed")) {
        return Some((true, None));
    }
    if is("Failed") {
        let c = conditions.iter().find(|c| c.type_ == "Failed");
        let reason = c.and_then(|c| c.reason.clone()).unwrap_or_else(|| "Failed".into());
        let message = c.and_then(|c| c.message.clone()).unwrap_or_default();
        let name = job.name_any();
        return Some((false, Some(format!("job {name} failed: {reason} {message}").trim_end().to_string())));
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prometheus_answers_become_result() {
        let vector = |values: &[&str]| {
            let series: Vec<Value> =
                values.iter().map(|v| json!({"metric": {"service": "api"}, "value": [1.7e9, v]})).collect();
            json!({"status": "success", "data": {"resultType": "vector", "result": series}}).to_string()
        };
        assert_eq!(parse_prometheus(vector(&["0.02"]).as_bytes()), Measurement::Value(json!(0.02)));
        assert_eq!(parse_prometheus(vector(&["1", "2.5"]).as_bytes()), Measurement::Value(json!([1.0, 2.5])));
        let scalar = json!({"status": "success", "data": {"resultType": "scalar", "result": [1.7e9, "3"]}});
        assert_eq!(parse_prometheus(scalar.to_string().as_bytes()), Measurement::Value(json!(3.0)));
        let err = |body: String| match parse_prometheus(body.as_bytes()) {
            Measurement::Error(e) => e,
            v => panic!("expected an error, got {v:?}"),
        };
        assert!(err(vector(&[])).contains("no data"));
        assert!(err(vector(&["NaN"])).contains("NaN"));
        assert!(err("<html>".into()).contains("not JSON"));
        let refused = json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 5"});
        assert_eq!(
            err(refused.to_string()),
            "Prometheus refused the query (bad_data): parse error at char 5"
        );
        let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert!(err(matrix.to_string()).contains("instant query"));
    }

    #[test]
    fn json_path_selects_the_field() {
        let answer = json!({"data": {"errorRate": 0.01, "pods": [{"ok": true}, {"ok": false}]}});
        assert_eq!(select(&answer, Some("$.data.errorRate")), Measurement::Value(json!(0.01)));
        assert_eq!(select(&answer, Some("$.data.pods[*].ok")), Measurement::Value(json!([true, false])));
        assert_eq!(select(&answer, None), Measurement::Value(answer.clone()));
        assert!(
            matches!(select(&answer, Some("$.nope")), Measurement::Error(e) if e.contains("selected nothing"))
        );
        assert!(
            matches!(select(&answer, Some("data[")), Measurement::Error(e) if e.contains("not a JSONPath"))
        );
    }

    #[test]
    fn urls_in_messages_lose_query_and_credentials() {
        assert_eq!(redact_url("https://u:p@stats.example/v1/x?token=s3cret#f"), "https://stats.example/v1/x");
        assert_eq!(redact_url("::"), "(not a URL)");
    }

    #[test]
    fn job_names_are_short_stable_and_distinct() {
        let long = "a".repeat(200);
        let n = job_name(&long, "smoke", 3);
        assert!(n.len() <= 63 && n.ends_with("-3"), "{n}");
        assert_eq!(n, job_name(&long, "smoke", 3));
        assert_ne!(job_name("run", "a", 1), job_name("run", "b", 1));
    }

    #[test]
    fn job_status_gives_the_measurement() {
        let job = |status: Value| -> Job {
            serde_json::from_value(json!({"metadata": {"name": "j"}, "status": status})).expect("job")
        };
        assert_eq!(job_result(&job(json!({"active": 1}))), None);
        assert_eq!(
            job_result(&job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}))),
            Some((true, None))
        );
        let failed = job(
            json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
        );
        assert_eq!(
            job_result(&failed),
            Some((
                false,
                Some("job j failed: BackoffLimitExceeded Job has reached the specified backoff limit".into())
            ))
        );
    }
}
