//! Decides, from one observed App, whether `kubectl authentify status` is done and with which exit
//! code. Pure: it never waits, never talks to the API server and never reads the clock.
//!
//! A status is trusted only when the operator has seen the latest spec (`observedGeneration`) and
//! has handled every control annotation written so far (`status.controls`), so a `status` run
//! right after `set image` or `promote` never reports the state from before the request.

use crate::api::App;
use crate::api::app::AppPhase;
use crate::cli::exit;

/// Where a rollout stands for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Finished: print the message, exit with the code.
    Done {
        /// One of [`exit`]'s codes.
        code: u8,
        /// A sentence for the person or CI job that waits.
        message: String,
    },
    /// Not finished; the message says what it waits for.
    Waiting(String),
}

/// Evaluates one observation of the App.
pub fn evaluate(app: &App, success_on_pause: bool) -> Verdict {
    let name = app.metadata.name.as_deref().unwrap_or("the App");
    let Some(status) = app.status.as_ref() else {
        return Verdict::Waiting(format!("App {name} has no status yet: is the operator running?"));
    };
    let generation = app.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0);
    if observed < generation {
        return Verdict::Waiting(format!(
            "the operator has not yet seen generation {generation} of App {name} (it last saw {observed})"
        ));
    }
    if let Some(pending) = pending_control(app) {
        return Verdict::Waiting(format!("the operator has not yet handled the {pending} request"));
    }
    let message = status.message.clone().unwrap_or_default();
    match status.phase.clone().unwrap_or_default() {
        AppPhase::Healthy => {
            Verdict::Done { code: exit::OK, message: format!("App {name} is Healthy: {message}") }
        }
        AppPhase::Degraded => {
            Verdict::Done { code: exit::FAILED, message: format!("App {name} is Degraded: {message}") }
        }
        AppPhase::Paused if success_on_pause && waits_for_a_person(app) => {
            Verdict::Done { code: exit::OK, message: format!("App {name} is Paused: {message}") }
        }
        AppPhase::Paused => Verdict::Waiting(format!("Paused: {message}")),
        AppPhase::Progressing => Verdict::Waiting(format!("Progressing: {message}")),
    }
}

/// True when the pause ends only by a person's request (`promote`, `resume`, an inconclusive
/// analysis), not by itself (a timed pause step or a blue-green automatic promotion).
fn waits_for_a_person(app: &App) -> bool {
    let held = app.status.as_ref().is_some_and(|s| {
        s.pause_conditions.iter().any(|p| p.reason == "AppPaused" || p.reason == "InconclusiveAnalysis")
    });
    held || crate::cli::view::timed_pause(app).is_none()
}

/// The first control annotation whose token the operator has not handled yet.
fn pending_control(app: &App) -> Option<&'static str> {
    let annotations = app.metadata.annotations.as_ref()?;
    let controls = app.status.as_ref().map(|s| s.controls.clone()).unwrap_or_default();
    let checks = [
        (crate::rollout::PROMOTE, controls.promote, "promote"),
        (crate::rollout::PROMOTE_FULL, controls.promote_full, "promote --full"),
        (crate::rollout::ABORT, controls.abort, "abort"),
        (crate::rollout::RETRY, controls.retry, "retry"),
    ];
    checks
        .into_iter()
        .find(|(key, handled, _)| annotations.get(*key).is_some_and(|v| Some(v) != handled.as_ref()))
        .map(|(_, _, what)| what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(generation: i64, status: &str, annotations: &str) -> App {
        let yaml = format!(
            "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: api, generation: {generation}, annotations: {{{annotations}}}}}\nspec: {{image: a:1}}\nstatus: {status}\n"
        );
        serde_yaml_ng::from_str(&yaml).expect("fixture")
    }

    fn timed(status: &str) -> App {
        let yaml = format!(
            "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: api, generation: 1}}\nspec: {{image: a:1, strategy: {{canary: {{steps: [{{pause: {{duration: 5m}}}}, {{pause: {{}}}}]}}}}}}\nstatus: {status}\n"
        );
        serde_yaml_ng::from_str(&yaml).expect("fixture")
    }

    fn code(v: &Verdict) -> Option<u8> {
        match v {
            Verdict::Done { code, .. } => Some(*code),
            Verdict::Waiting(_) => None,
        }
    }

    #[test]
    fn verdicts() {
        let cases = [
            ("healthy", app(2, "{phase: Healthy, observedGeneration: 2, message: ok}", ""), false, Some(0)),
            ("stale generation", app(3, "{phase: Healthy, observedGeneration: 2}", ""), false, None),
            (
                "degraded",
                app(2, "{phase: Degraded, observedGeneration: 2, message: 'rolled back'}", ""),
                false,
                Some(1),
            ),
            ("paused waits", app(2, "{phase: Paused, observedGeneration: 2}", ""), false, None),
            ("paused succeeds", app(2, "{phase: Paused, observedGeneration: 2}", ""), true, Some(0)),
            ("progressing", app(2, "{phase: Progressing, observedGeneration: 2}", ""), true, None),
            (
                "a timed pause ends by itself",
                timed(
                    "{phase: Paused, observedGeneration: 1, currentStepIndex: 0, pauseConditions: [{reason: CanaryPauseStep, startTime: '2026-01-01T00:00:00Z'}]}",
                ),
                true,
                None,
            ),
            (
                "a manual pause step waits for a person",
                timed(
                    "{phase: Paused, observedGeneration: 1, currentStepIndex: 1, pauseConditions: [{reason: CanaryPauseStep, startTime: '2026-01-01T00:00:00Z'}]}",
                ),
                true,
                Some(0),
            ),
            (
                "paused by spec during a timed pause",
                timed(
                    "{phase: Paused, observedGeneration: 1, currentStepIndex: 0, pauseConditions: [{reason: CanaryPauseStep, startTime: '2026-01-01T00:00:00Z'}, {reason: AppPaused, startTime: '2026-01-01T00:00:00Z'}]}",
                ),
                true,
                Some(0),
            ),
            (
                "promote not handled yet",
                app(
                    2,
                    "{phase: Paused, observedGeneration: 2, controls: {promote: t1}}",
                    "platform.authentify.it/promote: t2",
                ),
                true,
                None,
            ),
            (
                "promote handled",
                app(
                    2,
                    "{phase: Healthy, observedGeneration: 2, controls: {promote: t2}}",
                    "platform.authentify.it/promote: t2",
                ),
                false,
                Some(0),
            ),
            (
                "abort not handled yet",
                app(2, "{phase: Paused, observedGeneration: 2}", "platform.authentify.it/abort: t"),
                true,
                None,
            ),
            ("no status", app(1, "null", ""), true, None),
        ];
        for (what, app, on_pause, want) in cases {
            assert_eq!(code(&evaluate(&app, on_pause)), want, "{what}");
        }
    }

    #[test]
    fn degraded_prints_the_reason() {
        let a = app(1, "{phase: Degraded, observedGeneration: 1, message: 'pods crash-looping'}", "");
        let Verdict::Done { message, .. } = evaluate(&a, false) else { panic!("done") };
        assert!(message.contains("Degraded") && message.contains("crash-looping"), "{message}");
    }
}
