//! Built-in analysis templates: the golden signals of the new revision as ingress-nginx measures
//! them, so an App can gate a rollout on its success rate and p99 latency without writing PromQL.
//! Referenced as `builtin/<name>` in `templates`, with arguments:
//!
//! | argument | default | meaning |
//! | --- | --- | --- |
//! | `prometheus` | (required) | Prometheus base URL |
//! | `service` | `{{app.service}}` (`<app>-canary` / `<app>-preview`) | the `service` label to select |
//! | `namespace` | the App's namespace | the `namespace` label to select |
//! | `window` | `1m` | the rate window |
//! | `interval` | `30s` | time between measurements |
//! | `count` | `5` | measurements to take |
//! | `initialDelay` | none | wait before the first measurement |
//! | `failureLimit` | `0` | failed measurements tolerated |
//! | `minSuccessRate` | `0.99` | lowest share of non-5xx answers |
//! | `maxP99Seconds` | `0.5` | highest 99th-percentile request duration |

use std::collections::BTreeMap;

use super::resolve::AppVars;
use crate::api::analysis::{AnalysisTemplateSpec, Metric, MetricProvider, PrometheusProvider};

/// Prefix of built-in template names.
pub const PREFIX: &str = "builtin/";

/// The built-in templates, without the prefix.
pub const NAMES: [&str; 3] = ["nginx-success-rate", "nginx-latency-p99", "nginx-golden-signals"];

/// Share of the new revision's requests that did not answer 5xx. No request in the window gives
/// no data (an Error measurement), never a pass.
pub fn success_rate_query(namespace: &str, service: &str, window: &str) -> String {
    let sel = format!("namespace=\"{namespace}\",service=\"{service}\"");
    format!(
        "(sum(rate(nginx_ingress_controller_requests{{{sel},status!~\"5..\"}}[{window}])) or vector(0)) / sum(rate(nginx_ingress_controller_requests{{{sel}}}[{window}]))"
    )
}

/// The 99th percentile of the new revision's request durations, in seconds.
pub fn latency_p99_query(namespace: &str, service: &str, window: &str) -> String {
    format!(
        "histogram_quantile(0.99, sum by (le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{{namespace=\"{namespace}\",service=\"{service}\"}}[{window}])))"
    )
}

/// The built-in template `name` (without the prefix), with `given` arguments and the App's
/// variables. Numbers are checked here, so a typo is refused before any run starts.
pub fn template(
    name: &str,
    given: &BTreeMap<&str, &str>,
    vars: &AppVars,
) -> Result<AnalysisTemplateSpec, String> {
    let wanted: &[&str] = match name {
        "nginx-success-rate" => &["success-rate"],
        "nginx-latency-p99" => &["latency-p99"],
        "nginx-golden-signals" => &["success-rate", "latency-p99"],
        _ => {
            return Err(format!(
                "there is no built-in template {PREFIX}{name}; the built-ins are {}",
                NAMES.map(|n| format!("{PREFIX}{n}")).join(", ")
            ));
        }
    };
    let get =
        |key: &str, default: &str| given.get(key).map_or_else(|| default.to_string(), |v| (*v).to_string());
    let number = |key: &str, default: &str| -> Result<String, String> {
        let v = get(key, default);
        v.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|_| v.clone())
            .ok_or_else(|| format!("argument {key} of {PREFIX}{name} must be a number, not {v:?}"))
    };
    let int = |key: &str, default: i32| -> Result<i32, String> {
        given.get(key).map_or(Ok(default), |v| {
            v.parse::<i32>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("argument {key} of {PREFIX}{name} must be a whole number, not {v:?}"))
        })
    };
    let Some(address) = given.get("prometheus") else {
        return Err(format!(
            "argument prometheus of {PREFIX}{name} has no value: pass the Prometheus URL in the App's analysis args"
        ));
    };
    let (namespace, service, window) =
        (get("namespace", &vars.namespace), get("service", &vars.service), get("window", "1m"));
    let min_rate = number("minSuccessRate", "0.99")?;
    let max_p99 = number("maxP99Seconds", "0.5")?;
    let count = int("count", 5)?.max(1);
    let failure_limit = int("failureLimit", 0)?;
    let metric = |metric_name: &str, query: String, condition: String| Metric {
        name: metric_name.to_string(),
        interval: get("interval", "30s"),
        count: Some(count),
        initial_delay: given.get("initialDelay").map(|v| (*v).to_string()),
        success_condition: Some(condition),
        failure_condition: None,
        failure_limit,
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
        dry_run: false,
        provider: MetricProvider {
            prometheus: Some(PrometheusProvider { address: (*address).to_string(), query }),
            web: None,
            job: None,
        },
    };
    let metrics = wanted
        .iter()
        .map(|w| match *w {
            "success-rate" => metric(
                "success-rate",
                success_rate_query(&namespace, &service, &window),
                format!("result >= {min_rate}"),
            ),
            _ => metric(
                "latency-p99",
                latency_p99_query(&namespace, &service, &window),
                format!("result <= {max_p99}"),
            ),
        })
        .collect();
    // The argument values are already in the metrics.
    Ok(AnalysisTemplateSpec { args: vec![], metrics })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> AppVars {
        AppVars { namespace: "prod".into(), service: "api-canary".into(), ..AppVars::default() }
    }

    #[test]
    fn golden_signals_select_the_new_revision_with_ingress_nginx_names() {
        let given = BTreeMap::from([("prometheus", "http://prom:9090"), ("minSuccessRate", "0.95")]);
        let t = template("nginx-golden-signals", &given, &vars()).expect("built-in");
        let names: Vec<&str> = t.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["success-rate", "latency-p99"]);
        let q = |i: usize| t.metrics[i].provider.prometheus.clone().expect("prometheus").query;
        assert_eq!(
            q(0),
            "(sum(rate(nginx_ingress_controller_requests{namespace=\"prod\",service=\"api-canary\",status!~\"5..\"}[1m])) or vector(0)) / sum(rate(nginx_ingress_controller_requests{namespace=\"prod\",service=\"api-canary\"}[1m]))"
        );
        assert!(q(1).starts_with("histogram_quantile(0.99, sum by (le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{namespace=\"prod\",service=\"api-canary\"}[1m])))"));
        assert_eq!(t.metrics[0].success_condition.as_deref(), Some("result >= 0.95"));
        assert_eq!(t.metrics[1].success_condition.as_deref(), Some("result <= 0.5"));
        assert_eq!((t.metrics[0].count, t.metrics[0].interval.as_str()), (Some(5), "30s"));
    }

    #[test]
    fn arguments_are_checked() {
        let e = |given: &[(&str, &str)]| {
            template("nginx-success-rate", &given.iter().copied().collect(), &vars()).expect_err("refused")
        };
        assert!(e(&[]).contains("argument prometheus"));
        assert!(e(&[("prometheus", "http://p"), ("minSuccessRate", "high")]).contains("must be a number"));
        assert!(e(&[("prometheus", "http://p"), ("count", "-1")]).contains("whole number"));
        let given = BTreeMap::from([
            ("prometheus", "http://p"),
            ("service", "other"),
            ("count", "2"),
            ("interval", "5s"),
        ]);
        let t = template("nginx-latency-p99", &given, &vars()).expect("built-in");
        assert_eq!((t.metrics.len(), t.metrics[0].count, t.metrics[0].interval.as_str()), (1, Some(2), "5s"));
        assert!(t.metrics[0].provider.prometheus.clone().expect("p").query.contains("service=\"other\""));
        assert!(
            template("nope", &given, &vars()).expect_err("refused").contains("builtin/nginx-golden-signals")
        );
    }
}
