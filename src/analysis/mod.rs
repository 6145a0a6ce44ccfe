//! Analysis verdicts: how measurements become a metric's phase, and metrics an analysis's. Pure:
//! providers (Prometheus, web, Job) produce [`Measurement`]s elsewhere; this module only judges
//! them, and never reads the clock.
//!
//! Conditions are CEL expressions (the language Kubernetes uses for CRD validation rules; the
//! `cel` crate, already in the tree through kube) over one variable, `result`: a number, a list of
//! numbers, or JSON. CEL cannot loop or call out, so a condition is always cheap and safe.
//! Examples: `result < 0.05`, `result[0] >= 0.99`, `result.status == "ok"`,
//! `result.all(r, r < 0.5)`. See docs/analysis.md.

pub mod builtin;
pub mod providers;
pub mod resolve;
pub mod run;

use kube::core::cel::cel::{Context, Program};

use crate::api::analysis::{AnalysisPhase, Metric};

/// One measurement of a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    /// The provider answered with a value.
    Value(serde_json::Value),
    /// The provider could not answer (connection refused, timeout, bad query).
    Error(String),
}

/// Evaluates a CEL condition with `result` bound to `value`. Numbers are doubles, so `result < 1`
/// and `result < 1.0` mean the same.
pub fn evaluate(condition: &str, value: &serde_json::Value) -> Result<bool, String> {
    let program =
        Program::compile(condition).map_err(|e| format!("condition {condition:?} does not parse: {e}"))?;
    let mut ctx = Context::default();
    ctx.add_variable("result", as_doubles(value))
        .map_err(|e| format!("result cannot be used in a condition: {e}"))?;
    match program.execute(&ctx) {
        Ok(kube::core::cel::cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("condition {condition:?} gave {other:?}, not true or false")),
        Err(e) => Err(format!("condition {condition:?} failed: {e}")),
    }
}

/// JSON with every number as a float, so comparisons never mix int and double.
fn as_doubles(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => n.as_f64().map_or(Value::Null, |f| serde_json::json!(f)),
        Value::Array(a) => Value::Array(a.iter().map(as_doubles).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), as_doubles(v))).collect()),
        other => other.clone(),
    }
}

/// The phase of one measurement under a metric's conditions (Argo Rollouts' semantics):
/// a true failureCondition fails; else a true successCondition passes; with both conditions and
/// neither true it is inconclusive; with only one, the other outcome.
pub fn judge(metric: &Metric, measurement: &Measurement) -> (AnalysisPhase, Option<String>) {
    let value = match measurement {
        Measurement::Error(e) => return (AnalysisPhase::Error, Some(e.clone())),
        Measurement::Value(v) => v,
    };
    let check = |c: &Option<String>| c.as_deref().map(|c| evaluate(c, value)).transpose();
    let failed = match check(&metric.failure_condition) {
        Ok(f) => f,
        Err(e) => return (AnalysisPhase::Error, Some(e)),
    };
    let passed = match check(&metric.success_condition) {
        Ok(p) => p,
        Err(e) => return (AnalysisPhase::Error, Some(e)),
    };
    let phase = match (passed, failed) {
        (_, Some(true)) => AnalysisPhase::Failed,
        (Some(true), _) => AnalysisPhase::Successful,
        (Some(false), Some(false)) => AnalysisPhase::Inconclusive,
        (Some(false), None) => AnalysisPhase::Failed,
        (None, Some(false)) => AnalysisPhase::Successful,
        (None, None) => AnalysisPhase::Inconclusive,
    };
    (phase, None)
}

/// Counts of a metric's measurements so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// All measurements.
    pub count: i32,
    /// Successful ones.
    pub successful: i32,
    /// Failed ones.
    pub failed: i32,
    /// Inconclusive ones.
    pub inconclusive: i32,
    /// Errors in a row at the end.
    pub consecutive_errors: i32,
}

impl Tally {
    /// Adds one judged measurement.
    pub fn add(&mut self, phase: AnalysisPhase) {
        self.count += 1;
        match phase {
            AnalysisPhase::Successful => self.successful += 1,
            AnalysisPhase::Failed => self.failed += 1,
            AnalysisPhase::Inconclusive => self.inconclusive += 1,
            AnalysisPhase::Error | AnalysisPhase::Running => {}
        }
        self.consecutive_errors = if phase == AnalysisPhase::Error { self.consecutive_errors + 1 } else { 0 };
    }
}

/// A metric's phase from its tally: failed beyond failureLimit, inconclusive beyond
/// inconclusiveLimit, errors beyond consecutiveErrorLimit, successful after `count` measurements.
pub fn metric_phase(metric: &Metric, tally: &Tally) -> AnalysisPhase {
    if tally.failed > metric.failure_limit {
        AnalysisPhase::Failed
    } else if tally.consecutive_errors > metric.consecutive_error_limit {
        AnalysisPhase::Error
    } else if tally.inconclusive > metric.inconclusive_limit {
        AnalysisPhase::Inconclusive
    } else if metric.count.is_some_and(|c| tally.count >= c) {
        AnalysisPhase::Successful
    } else {
        AnalysisPhase::Running
    }
}

/// The analysis's phase from its metrics' phases; dry-run metrics never count against it.
pub fn overall(metrics: &[(&Metric, AnalysisPhase)]) -> AnalysisPhase {
    let counted: Vec<AnalysisPhase> = metrics.iter().filter(|(m, _)| !m.dry_run).map(|(_, p)| *p).collect();
    if counted.iter().any(|p| matches!(p, AnalysisPhase::Failed | AnalysisPhase::Error)) {
        AnalysisPhase::Failed
    } else if counted.contains(&AnalysisPhase::Inconclusive) {
        AnalysisPhase::Inconclusive
    } else if metrics
        .iter()
        .all(|(m, p)| m.dry_run && *p != AnalysisPhase::Running || *p == AnalysisPhase::Successful)
    {
        AnalysisPhase::Successful
    } else {
        AnalysisPhase::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metric(yaml: &str) -> Metric {
        serde_yaml_ng::from_str(yaml).expect("metric fixture")
    }

    const ERROR_RATE: &str = "name: error-rate\ninterval: 30s\ncount: 3\nsuccessCondition: result < 0.05\nfailureCondition: result >= 0.1\nprovider: {prometheus: {address: 'http://p:9090', query: up}}\n";

    #[test]
    fn conditions_are_cel_over_result() {
        assert_eq!(evaluate("result < 0.05", &json!(0.01)), Ok(true));
        assert_eq!(evaluate("result < 1", &json!(0)), Ok(true), "ints and doubles compare");
        assert_eq!(evaluate("result[0] >= 0.99", &json!([0.995, 0.2])), Ok(true));
        assert_eq!(evaluate("result.status == 'ok'", &json!({"status": "ok"})), Ok(true));
        assert_eq!(evaluate("result.all(r, r < 0.5)", &json!([0.1, 0.7])), Ok(false));
        assert_eq!(evaluate("size(result) > 1", &json!([0.1, 0.2])), Ok(true), "as docs/analysis.md says");
        assert_eq!(evaluate("result", &json!(true)), Ok(true), "a Job's result is the condition itself");
        assert!(evaluate("result <", &json!(1)).unwrap_err().contains("does not parse"));
        assert!(evaluate("result + 1.0", &json!(1)).unwrap_err().contains("not true or false"));
        assert!(evaluate("result.missing > 1", &json!({})).is_err());
    }

    #[test]
    fn judging_follows_argo_semantics() {
        let m = metric(ERROR_RATE);
        assert_eq!(judge(&m, &Measurement::Value(json!(0.01))).0, AnalysisPhase::Successful);
        assert_eq!(judge(&m, &Measurement::Value(json!(0.2))).0, AnalysisPhase::Failed);
        assert_eq!(judge(&m, &Measurement::Value(json!(0.07))).0, AnalysisPhase::Inconclusive);
        assert_eq!(judge(&m, &Measurement::Error("connection refused".into())).0, AnalysisPhase::Error);
        let only_success = metric(&ERROR_RATE.replace("failureCondition: result >= 0.1\n", ""));
        assert_eq!(judge(&only_success, &Measurement::Value(json!(0.07))).0, AnalysisPhase::Failed);
        let only_failure = metric(&ERROR_RATE.replace("successCondition: result < 0.05\n", ""));
        assert_eq!(judge(&only_failure, &Measurement::Value(json!(0.07))).0, AnalysisPhase::Successful);
        let broken = metric(&ERROR_RATE.replace("result < 0.05", "result <"));
        let (phase, why) = judge(&broken, &Measurement::Value(json!(0.01)));
        assert_eq!(phase, AnalysisPhase::Error);
        assert!(why.unwrap_or_default().contains("does not parse"));
    }

    #[test]
    fn limits_decide_the_metric() {
        let m =
            metric(&format!("{ERROR_RATE}failureLimit: 1\ninconclusiveLimit: 1\nconsecutiveErrorLimit: 2\n"));
        let run = |phases: &[AnalysisPhase]| {
            let mut t = Tally::default();
            phases.iter().for_each(|p| t.add(*p));
            metric_phase(&m, &t)
        };
        use AnalysisPhase::*;
        assert_eq!(run(&[Successful]), Running);
        assert_eq!(run(&[Successful, Successful, Successful]), Successful);
        assert_eq!(run(&[Failed]), Running, "one failure is tolerated");
        assert_eq!(run(&[Failed, Failed]), Failed);
        assert_eq!(run(&[Inconclusive, Inconclusive]), Inconclusive);
        assert_eq!(run(&[Error, Error]), Running);
        assert_eq!(run(&[Error, Error, Error]), Error);
        let open_ended = metric(&format!(
            "{}failureLimit: 1\nconsecutiveErrorLimit: 2\n",
            ERROR_RATE.replace("count: 3\n", "")
        ));
        let mut t = Tally::default();
        [Error, Error, Successful, Error, Error].iter().for_each(|p| t.add(*p));
        assert_eq!(metric_phase(&open_ended, &t), Running, "errors must be consecutive");
        t.add(Error);
        assert_eq!(metric_phase(&open_ended, &t), Error);
    }

    #[test]
    fn dry_run_metrics_never_fail_the_analysis() {
        let real = metric(ERROR_RATE);
        let dry = metric(&format!("{}dryRun: true\n", ERROR_RATE.replace("error-rate", "latency")));
        use AnalysisPhase::*;
        assert_eq!(overall(&[(&real, Successful), (&dry, Failed)]), Successful);
        assert_eq!(overall(&[(&real, Running), (&dry, Failed)]), Running);
        assert_eq!(overall(&[(&real, Failed), (&dry, Successful)]), Failed);
        assert_eq!(overall(&[(&real, Error)]), Failed);
        assert_eq!(overall(&[(&real, Inconclusive)]), Inconclusive);
        assert_eq!(overall(&[(&real, Successful), (&dry, Running)]), Running);
    }
}
