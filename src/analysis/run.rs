//! Decisions of an AnalysisRun, pure and clock-injected: which metrics are due for a measurement
//! now, how a measurement changes the run's status, and when the run finishes, is deleted or must
//! be looked at again. The AnalysisRun controller only calls providers and writes what these
//! functions return.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::{Measurement, Tally, judge, metric_phase, overall};
use crate::api::analysis::{
    AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, MeasurementResult, Metric, MetricResult,
};
use crate::rollout::duration;

/// Measurements kept per metric in the status (the counts keep the whole history).
pub const MEASUREMENTS_KEPT: usize = 10;
/// Longest value text kept per measurement.
const VALUE_CHARS: usize = 200;
/// How often a Job measurement is looked at when no watch event came (a safety net).
pub const JOB_RECHECK: Duration = Duration::from_secs(30);

/// What the controller must do for one metric now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Take a new measurement of metric `index`; its ordinal is `number` (1-based), which names
    /// a Job measurement's Job so a repeated attempt finds the same Job.
    Measure {
        /// Index into `spec.metrics`.
        index: usize,
        /// 1-based number of this measurement.
        number: i32,
    },
    /// Look at the running Job of metric `index`.
    CheckJob {
        /// Index into `spec.metrics`.
        index: usize,
        /// The Job's name.
        job: String,
    },
}

/// The outcome of a provider call, for [`record`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A measurement started and goes on (a Job was created or is still running).
    Started {
        /// The Job's name.
        job: String,
    },
    /// A measurement finished; the note (a Job's failure reason, say) goes into its message.
    Done(Measurement, Option<String>),
}

/// What happens to a run after [`settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Look again after this long (the next measurement is due, or the TTL ends).
    After(Duration),
    /// Nothing is due; a watch event (a Job finishing) brings it back.
    Wait,
    /// The TTL after it finished is over: delete it.
    Delete,
}

fn secs(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn result_of<'a>(status: &'a AnalysisRunStatus, metric: &Metric) -> Option<&'a MetricResult> {
    status.metric_results.iter().find(|r| r.name == metric.name)
}

fn interval(metric: &Metric) -> Duration {
    duration::parse(&metric.interval).unwrap_or(Duration::from_secs(60))
}

/// When metric's next measurement is due: `initialDelay` after the run started for the first,
/// `interval` after the last one finished for the others.
pub fn next_due(metric: &Metric, result: Option<&MetricResult>, started: Timestamp) -> Timestamp {
    let last = result.and_then(|r| r.measurements.last()).and_then(|m| m.finished_at.as_ref());
    match last {
        Some(t) => t.0.saturating_add(signed(interval(metric))).unwrap_or(t.0),
        None => {
            let delay = metric.initial_delay.as_deref().and_then(duration::parse).unwrap_or_default();
            started.saturating_add(signed(delay)).unwrap_or(started)
        }
    }
}

/// The metrics to measure (or Jobs to look at) now. Nothing once the run finished or was told to
/// terminate.
pub fn due(spec: &AnalysisRunSpec, status: &AnalysisRunStatus, now: Timestamp) -> Vec<Work> {
    if status.phase.is_some_and(AnalysisPhase::is_finished) || spec.terminate {
        return vec![];
    }
    let started = status.started_at.as_ref().map_or(now, |t| t.0);
    let mut work = vec![];
    for (index, metric) in spec.metrics.iter().enumerate() {
        let result = result_of(status, metric);
        if result.is_some_and(|r| r.phase.is_finished()) {
            continue;
        }
        if let Some(m) = result.and_then(|r| r.measurements.last()).filter(|m| m.finished_at.is_none()) {
            work.push(Work::CheckJob { index, job: m.job.clone().unwrap_or_default() });
        } else if next_due(metric, result, started) <= now {
            work.push(Work::Measure { index, number: result.map_or(0, |r| r.count) + 1 });
        }
    }
    work
}

fn tally(r: &MetricResult) -> Tally {
    Tally {
        count: r.count,
        successful: r.successful,
        failed: r.failed,
        inconclusive: r.inconclusive,
        consecutive_errors: r.consecutive_error,
    }
}

fn shorten(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut short: String = text.chars().take(max).collect();
    short.push('…');
    short
}

/// Records a provider's outcome for `metric` at `now`.
pub fn record(status: &mut AnalysisRunStatus, metric: &Metric, outcome: Outcome, now: Timestamp) {
    let now = Time(secs(now));
    let index = match status.metric_results.iter().position(|r| r.name == metric.name) {
        Some(i) => i,
        None => {
            status.metric_results.push(MetricResult {
                name: metric.name.clone(),
                dry_run: metric.dry_run,
                ..MetricResult::default()
            });
            status.metric_results.len() - 1
        }
    };
    let r = &mut status.metric_results[index];
    let in_flight = r.measurements.last().is_some_and(|m| m.finished_at.is_none());
    match outcome {
        Outcome::Started { job } => {
            if !in_flight {
                r.measurements.push(MeasurementResult {
                    phase: AnalysisPhase::Running,
                    started_at: now,
                    finished_at: None,
                    value: None,
                    message: None,
                    job: Some(job),
                });
            }
        }
        Outcome::Done(measurement, note) => {
            let (phase, why) = judge(metric, &measurement);
            let value = match &measurement {
                Measurement::Value(v) => Some(shorten(v.to_string(), VALUE_CHARS)),
                Measurement::Error(_) => None,
            };
            let message = match (why, note) {
                (Some(w), Some(n)) => Some(format!("{w}; {n}")),
                (w, n) => w.or(n),
            };
            if !in_flight {
                r.measurements.push(MeasurementResult {
                    phase,
                    started_at: now.clone(),
                    finished_at: None,
                    value: None,
                    message: None,
                    job: None,
                });
            }
            if let Some(m) = r.measurements.last_mut() {
                m.phase = phase;
                m.finished_at = Some(now);
                m.value = value;
                m.message = message.clone();
            }
            let mut t = tally(r);
            t.add(phase);
            r.count = t.count;
            r.successful = t.successful;
            r.failed = t.failed;
            r.inconclusive = t.inconclusive;
            r.consecutive_error = t.consecutive_errors;
            if phase == AnalysisPhase::Error {
                r.error += 1;
                r.message = message;
            }
        }
    }
    let excess = r.measurements.len().saturating_sub(MEASUREMENTS_KEPT);
    r.measurements.drain(..excess);
}

/// A sentence about one metric: its counts and its last value or error.
fn describe(metric: &Metric, r: &MetricResult) -> String {
    let last = r.measurements.iter().rev().find(|m| m.finished_at.is_some());
    let tail = match last {
        Some(m) if m.phase == AnalysisPhase::Error => {
            format!("; last error: {}", m.message.clone().unwrap_or_default())
        }
        Some(m) => {
            let mut s = format!("; last value {}", m.value.clone().unwrap_or_default());
            if let Some(msg) = &m.message {
                s.push_str(&format!(" ({msg})"));
            }
            s
        }
        None => String::new(),
    };
    let what = match r.phase {
        AnalysisPhase::Failed => {
            format!("failed {} of {} measurements (failureLimit {})", r.failed, r.count, metric.failure_limit)
        }
        AnalysisPhase::Error => format!(
            "{} errors in a row (consecutiveErrorLimit {})",
            r.consecutive_error, metric.consecutive_error_limit
        ),
        AnalysisPhase::Inconclusive => format!(
            "{} of {} measurements inconclusive (inconclusiveLimit {})",
            r.inconclusive, r.count, metric.inconclusive_limit
        ),
        AnalysisPhase::Successful => format!("passed {} of {} measurements", r.successful, r.count),
        AnalysisPhase::Running => format!("{} measurements so far", r.count),
    };
    let dry = if metric.dry_run { " [dry run]" } else { "" };
    format!("{}{dry}: {what}{tail}", metric.name)
}

/// Brings the run's phases up to date after the measurements of this reconcile: metric phases
/// from their counts, the run's phase from its metrics (or from what it measured so far when it
/// is told to terminate), its message, and when to look at it next.
pub fn settle(spec: &AnalysisRunSpec, status: &mut AnalysisRunStatus, now: Timestamp) -> Next {
    if status.started_at.is_none() {
        status.started_at = Some(Time(secs(now)));
    }
    let started = status.started_at.as_ref().map_or(now, |t| t.0);
    if !status.phase.is_some_and(AnalysisPhase::is_finished) {
        // Results in the order of the metrics, one per metric.
        let mut results = vec![];
        for metric in &spec.metrics {
            let mut r = result_of(status, metric).cloned().unwrap_or_else(|| MetricResult {
                name: metric.name.clone(),
                dry_run: metric.dry_run,
                ..MetricResult::default()
            });
            if !r.phase.is_finished() {
                r.phase = metric_phase(metric, &tally(&r));
            }
            results.push(r);
        }
        status.metric_results = results;
        let phases: Vec<(&Metric, AnalysisPhase)> =
            spec.metrics.iter().zip(&status.metric_results).map(|(m, r)| (m, r.phase)).collect();
        let all_done = phases.iter().all(|(_, p)| p.is_finished());
        let phase = match overall(&phases) {
            AnalysisPhase::Failed => AnalysisPhase::Failed,
            p if all_done => p,
            // An error or a failure decides at once; everything else waits for all metrics.
            _ if spec.terminate => {
                if phases.iter().any(|(m, p)| !m.dry_run && *p == AnalysisPhase::Inconclusive) {
                    AnalysisPhase::Inconclusive
                } else {
                    AnalysisPhase::Successful
                }
            }
            _ => AnalysisPhase::Running,
        };
        // An erring metric makes the run Error rather than Failed, so people see the provider
        // is at fault, not the release; the rollout treats both alike.
        let phase = if phase == AnalysisPhase::Failed
            && phases.iter().any(|(m, p)| !m.dry_run && *p == AnalysisPhase::Error)
            && !phases.iter().any(|(m, p)| !m.dry_run && *p == AnalysisPhase::Failed)
        {
            AnalysisPhase::Error
        } else {
            phase
        };
        status.phase = Some(phase);
        let parts: Vec<String> = spec
            .metrics
            .iter()
            .zip(&status.metric_results)
            .filter(|(m, r)| match phase {
                AnalysisPhase::Successful | AnalysisPhase::Running => true,
                _ => r.phase.is_finished() && r.phase != AnalysisPhase::Successful || m.dry_run,
            })
            .map(|(m, r)| describe(m, r))
            .collect();
        let mut message = parts.join("; ");
        if spec.terminate && phase.is_finished() && !all_done && phase != AnalysisPhase::Failed {
            message = format!("terminated before all measurements: {message}");
        }
        status.message = Some(message);
        if phase.is_finished() {
            status.finished_at = Some(Time(secs(now)));
        }
    }
    if let Some(finished) =
        status.finished_at.as_ref().filter(|_| status.phase.is_some_and(AnalysisPhase::is_finished))
    {
        let ttl = Duration::from_secs(u64::try_from(spec.ttl_seconds_after_finished).unwrap_or(0));
        let expires = finished.0.saturating_add(signed(ttl)).unwrap_or(finished.0);
        return if expires <= now { Next::Delete } else { Next::After(until(now, expires)) };
    }
    // The earliest next measurement of a running metric; a Job in flight is looked at again.
    let mut next: Option<Duration> = None;
    for (metric, r) in spec.metrics.iter().zip(&status.metric_results) {
        if r.phase.is_finished() {
            continue;
        }
        let wait = if r.measurements.last().is_some_and(|m| m.finished_at.is_none()) {
            JOB_RECHECK
        } else {
            until(now, next_due(metric, Some(r), started))
        };
        next = Some(next.map_or(wait, |n| n.min(wait)));
    }
    match next {
        Some(d) => Next::After(d.max(Duration::from_millis(100))),
        None => Next::Wait,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(metrics: &str) -> AnalysisRunSpec {
        serde_yaml_ng::from_str(&format!("app: api\npurpose: step 2\nmetrics:\n{metrics}"))
            .expect("run fixture")
    }

    const RATE: &str = "- name: rate\n  interval: 10s\n  count: 3\n  successCondition: result < 0.05\n  failureCondition: result >= 0.1\n  provider: {prometheus: {address: 'http://p:9090', query: up}}\n";

    fn t0() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("valid")
    }

    fn at(secs: i64) -> Timestamp {
        t0() + SignedDuration::from_secs(secs)
    }

    /// Runs a run to its end: at each wake-up, every due metric gets the next value from
    /// `values` (by metric index). Returns the status and the wake-up times.
    fn drive(
        spec: &AnalysisRunSpec,
        mut values: impl FnMut(usize, i32) -> Measurement,
    ) -> (AnalysisRunStatus, Vec<i64>) {
        let mut status = AnalysisRunStatus::default();
        let mut now = t0();
        let mut wakeups = vec![];
        for _ in 0..100 {
            for w in due(spec, &status, now) {
                if let Work::Measure { index, number } = w {
                    record(
                        &mut status,
                        &spec.metrics[index],
                        Outcome::Done(values(index, number), None),
                        now,
                    );
                }
            }
            match settle(spec, &mut status, now) {
                Next::After(d) if status.phase == Some(AnalysisPhase::Running) => {
                    now += signed(d);
                    wakeups.push(now.as_second() - t0().as_second());
                }
                _ => return (status, wakeups),
            }
        }
        panic!("run never finished: {status:#?}");
    }

    #[test]
    fn measures_every_interval_count_times_then_passes() {
        let s = spec(RATE);
        let (status, wakeups) = drive(&s, |_, _| Measurement::Value(json!(0.01)));
        assert_eq!(status.phase, Some(AnalysisPhase::Successful));
        assert_eq!(wakeups, vec![10, 20], "requeued exactly at each next measurement");
        let r = &status.metric_results[0];
        assert_eq!((r.count, r.successful, r.measurements.len()), (3, 3, 3));
        assert_eq!(status.finished_at.as_ref().map(|t| t.0), Some(at(20)));
        assert!(status.message.unwrap_or_default().contains("rate: passed 3 of 3"));
    }

    #[test]
    fn initial_delay_holds_the_first_measurement() {
        let s = spec(&RATE.replace("count: 3\n", "count: 2\n  initialDelay: 30s\n"));
        let mut status = AnalysisRunStatus::default();
        assert!(due(&s, &status, t0()).is_empty(), "nothing before the delay");
        assert_eq!(settle(&s, &mut status, t0()), Next::After(Duration::from_secs(30)));
        assert!(due(&s, &status, at(29)).is_empty());
        assert_eq!(due(&s, &status, at(30)), vec![Work::Measure { index: 0, number: 1 }]);
    }

    #[test]
    fn failure_limit_decides_as_soon_as_it_is_exceeded() {
        let s = spec(&RATE.replace("count: 3\n", "count: 5\n  failureLimit: 1\n"));
        let (status, wakeups) = drive(&s, |_, n| Measurement::Value(json!(if n >= 2 { 0.2 } else { 0.01 })));
        assert_eq!(status.phase, Some(AnalysisPhase::Failed));
        assert_eq!(wakeups, vec![10, 20], "one failure tolerated, the second decides");
        let message = status.message.unwrap_or_default();
        assert!(message.contains("rate: failed 2 of 3 measurements (failureLimit 1)"), "{message}");
        assert!(message.contains("last value 0.2"), "{message}");
    }

    #[test]
    fn inconclusive_limit_and_consecutive_errors() {
        let s = spec(&RATE.replace("count: 3\n", "count: 5\n  inconclusiveLimit: 1\n"));
        let (status, _) = drive(&s, |_, _| Measurement::Value(json!(0.07)));
        assert_eq!(status.phase, Some(AnalysisPhase::Inconclusive));
        assert_eq!(status.metric_results[0].count, 2);

        let s = spec(&RATE.replace("count: 3\n", "count: 10\n  consecutiveErrorLimit: 2\n"));
        let (status, _) = drive(&s, |_, n| {
            if n == 3 {
                Measurement::Value(json!(0.01))
            } else {
                Measurement::Error("connection refused".into())
            }
        });
        assert_eq!(status.phase, Some(AnalysisPhase::Error));
        let r = &status.metric_results[0];
        assert_eq!(
            (r.count, r.error, r.consecutive_error, r.successful),
            (6, 5, 3, 1),
            "errors must be in a row"
        );
        assert!(status.message.unwrap_or_default().contains("last error: connection refused"));
    }

    #[test]
    fn a_dry_run_metric_is_reported_but_never_fails_the_run() {
        let dry =
            RATE.replace("name: rate", "name: latency").replace("count: 3\n", "count: 3\n  dryRun: true\n");
        let s = spec(&format!("{RATE}{dry}"));
        let (status, _) = drive(&s, |i, _| Measurement::Value(json!(if i == 1 { 0.5 } else { 0.01 })));
        assert_eq!(status.phase, Some(AnalysisPhase::Successful));
        assert_eq!(status.metric_results[1].phase, AnalysisPhase::Failed);
        assert!(status.metric_results[1].dry_run);
        assert!(status.message.unwrap_or_default().contains("latency [dry run]: failed"));
    }

    #[test]
    fn a_failing_metric_ends_the_run_while_others_still_measure() {
        let slow = RATE.replace("name: rate", "name: slow").replace("interval: 10s", "interval: 1m");
        let s = spec(&format!("{RATE}{slow}"));
        let (status, wakeups) = drive(&s, |i, _| Measurement::Value(json!(if i == 0 { 0.5 } else { 0.01 })));
        assert_eq!(status.phase, Some(AnalysisPhase::Failed));
        assert!(wakeups.is_empty(), "the first failure decides (failureLimit 0)");
        assert_eq!(status.metric_results[1].phase, AnalysisPhase::Running);
    }

    #[test]
    fn terminate_finishes_with_what_was_measured() {
        let s = spec(&RATE.replace("  count: 3\n", ""));
        let mut status = AnalysisRunStatus::default();
        for w in due(&s, &status, t0()) {
            if let Work::Measure { index, .. } = w {
                record(
                    &mut status,
                    &s.metrics[index],
                    Outcome::Done(Measurement::Value(json!(0.01)), None),
                    t0(),
                );
            }
        }
        assert_eq!(settle(&s, &mut status, t0()), Next::After(Duration::from_secs(10)));
        assert_eq!(status.phase, Some(AnalysisPhase::Running), "no count: measures until terminated");
        let mut stopped = s.clone();
        stopped.terminate = true;
        assert!(due(&stopped, &status, at(60)).is_empty());
        let next = settle(&stopped, &mut status, at(60));
        assert_eq!(status.phase, Some(AnalysisPhase::Successful));
        assert!(status.message.clone().unwrap_or_default().starts_with("terminated before all measurements"));
        assert_eq!(next, Next::After(Duration::from_secs(86_400)), "kept for the TTL");
    }

    #[test]
    fn finished_runs_are_deleted_after_their_ttl() {
        let mut s = spec(RATE);
        s.ttl_seconds_after_finished = 60;
        let (mut status, _) = drive(&s, |_, _| Measurement::Value(json!(0.01)));
        let finished = status.finished_at.clone().expect("finished").0;
        let later = |secs: i64| finished + SignedDuration::from_secs(secs);
        assert_eq!(settle(&s, &mut status, later(59)), Next::After(Duration::from_secs(1)));
        assert_eq!(settle(&s, &mut status, later(60)), Next::Delete);
        assert!(due(&s, &status, later(61)).is_empty(), "a finished run never measures again");
    }

    #[test]
    fn job_measurements_run_until_the_job_ends() {
        let s = spec(
            "- name: smoke\n  interval: 5s\n  count: 1\n  successCondition: result\n  provider: {job: {image: busybox, command: [sh, -c, 'exit 1']}}\n",
        );
        let mut status = AnalysisRunStatus::default();
        assert_eq!(due(&s, &status, t0()), vec![Work::Measure { index: 0, number: 1 }]);
        record(&mut status, &s.metrics[0], Outcome::Started { job: "j-1".into() }, t0());
        assert_eq!(settle(&s, &mut status, t0()), Next::After(JOB_RECHECK));
        assert_eq!(due(&s, &status, at(3)), vec![Work::CheckJob { index: 0, job: "j-1".into() }]);
        // A repeated start (the operator restarted before it recorded) adds nothing.
        record(&mut status, &s.metrics[0], Outcome::Started { job: "j-1".into() }, at(3));
        assert_eq!(status.metric_results[0].measurements.len(), 1);
        let note = Some("job j-1 failed: BackoffLimitExceeded".to_string());
        record(&mut status, &s.metrics[0], Outcome::Done(Measurement::Value(json!(false)), note), at(4));
        settle(&s, &mut status, at(4));
        assert_eq!(status.phase, Some(AnalysisPhase::Failed));
        let m = &status.metric_results[0].measurements[0];
        assert_eq!((m.started_at.0, m.finished_at.as_ref().map(|t| t.0)), (t0(), Some(at(4))));
        assert!(status.message.unwrap_or_default().contains("BackoffLimitExceeded"));
    }

    #[test]
    fn only_the_last_measurements_are_kept_but_all_are_counted() {
        let s = spec(&RATE.replace("count: 3", "count: 25"));
        let (status, wakeups) = drive(&s, |_, _| Measurement::Value(json!(0.01)));
        let r = &status.metric_results[0];
        assert_eq!((r.count, r.measurements.len()), (25, MEASUREMENTS_KEPT));
        assert_eq!(wakeups.len(), 24);
    }

    #[test]
    fn errors_in_conditions_are_error_measurements() {
        let s = spec(&RATE.replace("result < 0.05", "result.x < 0.05"));
        let mut status = AnalysisRunStatus::default();
        record(&mut status, &s.metrics[0], Outcome::Done(Measurement::Value(json!(0.01)), None), t0());
        settle(&s, &mut status, t0());
        let r = &status.metric_results[0];
        assert_eq!((r.error, r.consecutive_error), (1, 1));
        assert!(r.message.clone().unwrap_or_default().contains("condition"));
    }
}
