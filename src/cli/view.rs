//! Renders what `get app` and `list` show: an App's rollout at a glance (phase, the current step
//! among all steps, weight, time left on a pause, analysis results, revisions with their pods, the
//! latest events) and the table of Apps. Pure: a function of the objects and the time it is given;
//! colour only when asked for (a terminal). It never fetches anything.

use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;

use crate::api::App;
use crate::api::app::{AppPhase, CanaryStep};
use crate::cli::history;
use crate::rollout::duration;

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Emit ANSI colour codes.
    pub colour: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }
    fn phase(self, phase: &AppPhase) -> String {
        let (code, text) = match phase {
            AppPhase::Healthy => ("32", "Healthy"),
            AppPhase::Progressing => ("36", "Progressing"),
            AppPhase::Paused => ("33", "Paused"),
            AppPhase::Degraded => ("31;1", "Degraded"),
        };
        self.paint(code, text)
    }
    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
    fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// A human age: `45s`, `3m`, `2h`, `5d`.
pub fn age(from: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(from.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn describe_step(step: &CanaryStep) -> String {
    if let Some(w) = step.set_weight {
        return format!("setWeight {w}%");
    }
    if let Some(p) = &step.pause {
        return match &p.duration {
            Some(d) => format!("pause {d}"),
            None => "pause until promoted".to_string(),
        };
    }
    if let Some(a) = &step.analysis {
        return format!("analysis {}", a.templates.join(", "));
    }
    if let Some(s) = &step.set_canary_scale {
        if let Some(r) = s.replicas {
            return format!("setCanaryScale {r} pods");
        }
        if let Some(w) = s.weight {
            return format!("setCanaryScale {w}%");
        }
        return "setCanaryScale matchTrafficWeight".to_string();
    }
    "empty step".to_string()
}

/// Time left on the current pause, when it has an end: a timed canary pause, or a blue-green
/// automatic promotion.
pub fn pause_left(app: &App, now: Timestamp) -> Option<Duration> {
    let (reason, length) = timed_pause(app)?;
    let status = app.status.as_ref()?;
    let start = status.pause_conditions.iter().find(|p| p.reason == reason)?.start_time.0;
    let elapsed = Duration::from_secs(u64::try_from(now.as_second() - start.as_second()).unwrap_or(0));
    Some(length.saturating_sub(elapsed))
}

/// The pause condition reason and length of the current pause when it ends by itself (a timed
/// canary pause step, or a blue-green automatic promotion); `None` when a person must act.
pub fn timed_pause(app: &App) -> Option<(&'static str, Duration)> {
    let status = app.status.as_ref()?;
    let strategy = app.spec.strategy.as_ref()?;
    let (reason, length) = if let Some(canary) = &strategy.canary {
        let index = usize::try_from(status.current_step_index?).ok()?;
        let d = canary.steps.get(index)?.pause.as_ref()?.duration.as_deref()?;
        ("CanaryPauseStep", duration::parse(d)?)
    } else {
        let secs = strategy.blue_green.as_ref()?.auto_promotion_seconds?;
        ("BlueGreenPause", Duration::from_secs(u64::try_from(secs).ok()?))
    };
    status.pause_conditions.iter().any(|p| p.reason == reason).then_some((reason, length))
}

/// Analysis results the status carries (any `analysis…` field or condition), as lines.
fn analysis_lines(app: &App) -> Vec<String> {
    let Some(status) = app.status.as_ref() else { return vec![] };
    let mut lines = vec![];
    for c in &status.conditions {
        if c.type_.to_ascii_lowercase().contains("analysis") {
            lines.push(format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message));
        }
    }
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(status) {
        for (k, v) in map {
            if k.to_ascii_lowercase().contains("analysis") {
                lines.push(format!("{k}: {v}"));
            }
        }
    }
    lines
}

/// When an event last happened.
pub fn event_time(e: &Event) -> Option<Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.series.as_ref().and_then(|s| s.last_observed_time.as_ref()).map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// How many events the view shows.
pub const EVENTS_SHOWN: usize = 8;

/// The `get app` view.
pub fn render_app(app: &App, sets: &[ReplicaSet], events: &[Event], now: Timestamp, style: Style) -> String {
    let status = app.status.clone().unwrap_or_default();
    let name = app.metadata.name.clone().unwrap_or_default();
    let namespace = app.metadata.namespace.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", style.bold("App:"), style.bold(&format!("{namespace}/{name}")));
    let _ = writeln!(out, "Image:      {}", app.spec.image);
    let strategy = status.strategy.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "Strategy:   {strategy}");
    match &status.phase {
        Some(phase) => {
            let _ = writeln!(
                out,
                "Phase:      {} — {}",
                style.phase(phase),
                status.message.clone().unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(out, "Phase:      unknown — the operator has not written a status yet");
        }
    }
    if app.spec.paused {
        let _ =
            writeln!(out, "Paused:     yes, by spec.paused (`kubectl authentify resume {name}` continues)");
    }
    let _ = writeln!(out, "Ready:      {}", status.ready.clone().unwrap_or_else(|| "-".into()));
    if let Some(w) = status.canary_weight {
        let _ = writeln!(out, "Weight:     {w}% on the new revision");
    }
    if !status.pause_conditions.is_empty() {
        let reasons: Vec<String> = status
            .pause_conditions
            .iter()
            .map(|p| format!("{} for {}", p.reason, age(p.start_time.0, now)))
            .collect();
        let left = match pause_left(app, now) {
            Some(d) => format!(" ({} left)", duration::format(d)),
            None => " (until promoted or resumed)".to_string(),
        };
        let _ = writeln!(out, "Pause:      {}{left}", reasons.join(", "));
    }
    if status.abort {
        let _ = writeln!(
            out,
            "Aborted:    yes (`kubectl authentify retry {name}` starts it again, `undo` goes back)"
        );
    }

    let steps = app
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .map(|c| c.steps.clone())
        .unwrap_or_default();
    if !steps.is_empty() {
        let current = status.current_step_index.and_then(|i| usize::try_from(i).ok());
        let rolling = status.current_revision.is_some() && status.current_revision != status.stable_revision;
        let _ = writeln!(
            out,
            "Step:       {}",
            status.step.clone().unwrap_or_else(|| format!("-/{}", steps.len()))
        );
        for (i, step) in steps.iter().enumerate() {
            let text = format!("{:>2}. {}", i + 1, describe_step(step));
            let line = match current {
                Some(c) if rolling && i < c => format!("    {} {}", style.paint("32", "✓"), style.dim(&text)),
                Some(c) if rolling && i == c => {
                    format!("  {} {}", style.paint("33;1", "→"), style.bold(&text))
                }
                _ => format!("      {text}"),
            };
            let _ = writeln!(out, "{line}");
        }
    }
    let analysis = analysis_lines(app);
    if !analysis.is_empty() {
        let _ = writeln!(out, "Analysis:");
        for line in analysis {
            let _ = writeln!(out, "  {line}");
        }
    }

    let _ = writeln!(out, "\n{}", style.bold("Revisions:"));
    let _ = writeln!(out, "  {:<4} {:<12} {:<9} {:<7} {:<5} IMAGE", "#", "HASH", "ROLE", "READY", "AGE");
    let by_rev = history::replica_sets_by_revision(app, sets);
    let list = history::entries(app, sets);
    for e in list.iter().rev() {
        let Some(rs) = by_rev.get(&e.hash) else { continue };
        let role = if status.stable_revision.as_ref() == Some(&e.hash) {
            "stable"
        } else if status.current_revision.as_ref() == Some(&e.hash) {
            if app.spec.strategy.as_ref().is_some_and(|s| s.blue_green.is_some()) {
                "preview"
            } else {
                "canary"
            }
        } else if status.previous_revision.as_ref() == Some(&e.hash) {
            "previous"
        } else {
            "old"
        };
        let (asked, ready) = e.pods.unwrap_or((0, 0));
        let age = rs.metadata.creation_timestamp.as_ref().map_or_else(|| "-".into(), |t| age(t.0, now));
        let ready_text = format!("{ready}/{asked}");
        let ready_text = if ready < asked { style.paint("33", &ready_text) } else { ready_text };
        let _ = writeln!(
            out,
            "  {:<4} {:<12} {:<9} {:<7} {:<5} {}",
            e.number,
            e.hash,
            role,
            ready_text,
            age,
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(history::IMAGE_ANNOTATION))
                .unwrap_or(&e.image)
        );
    }

    let mut events: Vec<&Event> = events.iter().collect();
    events.sort_by_key(|e| event_time(e));
    let latest: Vec<&&Event> = events.iter().rev().take(EVENTS_SHOWN).collect();
    if !latest.is_empty() {
        let _ = writeln!(out, "\n{}", style.bold("Events:"));
        for e in latest.into_iter().rev() {
            let when = event_time(e).map_or_else(|| "-".into(), |t| age(t, now));
            let kind = e.type_.clone().unwrap_or_default();
            let kind = if kind == "Warning" { style.paint("31", &kind) } else { kind };
            let _ = writeln!(
                out,
                "  {:<5} {:<8} {:<16} {}",
                when,
                kind,
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default()
            );
        }
    }
    out
}

/// The `list` table.
pub fn render_list(apps: &[App], all_namespaces: bool, now: Timestamp, style: Style) -> String {
    let mut out = String::new();
    if all_namespaces {
        let _ = write!(out, "{:<20} ", "NAMESPACE");
    }
    let _ = writeln!(
        out,
        "{:<24} {:<7} {:<12} {:<10} {:<5} {:<6} {:<5} IMAGE",
        "NAME", "READY", "PHASE", "STRATEGY", "STEP", "WEIGHT", "AGE"
    );
    for app in apps {
        let s = app.status.clone().unwrap_or_default();
        if all_namespaces {
            let _ = write!(out, "{:<20} ", app.metadata.namespace.clone().unwrap_or_default());
        }
        let phase = s.phase.as_ref().map_or_else(|| "-".to_string(), |p| format!("{p:?}"));
        let painted = s.phase.as_ref().map_or_else(|| phase.clone(), |p| style.phase(p));
        // Pad by the unpainted width so colour codes do not shift columns.
        let pad = " ".repeat(12usize.saturating_sub(phase.len()));
        let _ = writeln!(
            out,
            "{:<24} {:<7} {painted}{pad} {:<10} {:<5} {:<6} {:<5} {}",
            app.metadata.name.clone().unwrap_or_default(),
            s.ready.unwrap_or_else(|| "-".into()),
            s.strategy.unwrap_or_else(|| "-".into()),
            s.step.unwrap_or_else(|| "-".into()),
            s.canary_weight.map_or_else(|| "-".into(), |w| w.to_string()),
            app.metadata.creation_timestamp.as_ref().map_or_else(|| "-".into(), |t| age(t.0, now)),
            app.spec.image
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn canary_app() -> App {
        serde_yaml_ng::from_str(
            "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {name: api, namespace: prod}\n\
spec:\n  image: r/api:2\n  strategy:\n    canary:\n      steps: [{setWeight: 25}, {pause: {duration: 2m}}, {setWeight: 50}, {pause: {}}]\n\
status:\n  phase: Paused\n  message: 'canary at 25%, step 2/4: pause 2m'\n  strategy: Canary\n  stableRevision: s1\n  currentRevision: c2\n  \
currentStepIndex: 1\n  step: 2/4\n  canaryWeight: 25\n  ready: 4/4\n  \
pauseConditions: [{reason: CanaryPauseStep, startTime: '2026-01-01T00:00:00Z'}]\n  \
conditions: [{type: AnalysisSuccessful, status: 'True', reason: Passed, message: 'error-rate 0.1% < 1%', lastTransitionTime: '2026-01-01T00:00:00Z'}]\n",
        )
        .expect("fixture")
    }

    fn rs(hash: &str, image: &str, replicas: i32, ready: i32) -> ReplicaSet {
        serde_yaml_ng::from_str(&format!(
            "metadata: {{name: api-{hash}, creationTimestamp: '2025-12-31T23:50:00Z', labels: {{platform.authentify.it/app: api, platform.authentify.it/revision: {hash}}}, annotations: {{platform.authentify.it/image: '{image}'}}}}\nspec: {{replicas: {replicas}, selector: {{}}}}\nstatus: {{replicas: {replicas}, readyReplicas: {ready}}}\n"
        ))
        .expect("fixture")
    }

    fn event(reason: &str, at: &str, warning: bool) -> Event {
        serde_yaml_ng::from_str(&format!(
            "metadata: {{name: e-{reason}}}\ninvolvedObject: {{kind: App, name: api}}\nreason: {reason}\nmessage: '{reason} happened'\ntype: {}\nlastTimestamp: '{at}'\n",
            if warning { "Warning" } else { "Normal" }
        ))
        .expect("fixture")
    }

    #[test]
    fn canary_view_shows_steps_weight_pause_analysis_revisions_and_events() {
        let app = canary_app();
        let sets = vec![rs("s1", "r/api:1", 3, 3), rs("c2", "r/api:2", 1, 0)];
        let events = vec![
            event("RolloutStarted", "2025-12-31T23:59:00Z", false),
            event("StepCompleted", "2026-01-01T00:00:00Z", false),
        ];
        let now = ts("2026-01-01T00:00:48Z");
        let text = render_app(&app, &sets, &events, now, Style { colour: false });
        for want in [
            "App: prod/api",
            "Phase:      Paused — canary at 25%",
            "Weight:     25% on the new revision",
            "Pause:      CanaryPauseStep for 48s (1m12s left)",
            "Step:       2/4",
            "✓  1. setWeight 25%",
            "→  2. pause 2m",
            "4. pause until promoted",
            "AnalysisSuccessful=True Passed: error-rate 0.1% < 1%",
            "stable",
            "canary",
            "0/1",
            "RolloutStarted",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("\x1b["), "no colour when not asked:\n{text}");
        let events_at = text.find("StepCompleted").expect("event");
        assert!(text.find("RolloutStarted").expect("event") < events_at, "oldest first");
        let coloured = render_app(&app, &sets, &events, now, Style { colour: true });
        assert!(coloured.contains("\x1b[33mPaused\x1b[0m"), "{coloured}");
    }

    #[test]
    fn pause_left_counts_from_the_pause_start_and_stops_at_zero() {
        let app = canary_app();
        assert_eq!(pause_left(&app, ts("2026-01-01T00:01:00Z")), Some(Duration::from_secs(60)));
        assert_eq!(pause_left(&app, ts("2026-01-01T00:05:00Z")), Some(Duration::ZERO));
        let mut manual = app.clone();
        if let Some(s) = manual.status.as_mut() {
            s.current_step_index = Some(3);
        }
        assert_eq!(pause_left(&manual, ts("2026-01-01T00:01:00Z")), None);
    }

    #[test]
    fn list_shows_one_line_per_app() {
        let app = canary_app();
        let text = render_list(&[app], true, ts("2026-01-01T00:00:00Z"), Style { colour: false });
        let line = text.lines().nth(1).expect("row");
        assert!(line.starts_with("prod") && line.contains("api") && line.contains("Paused"), "{text}");
        assert!(line.contains("2/4") && line.contains("25") && line.contains("r/api:2"), "{text}");
    }
}
