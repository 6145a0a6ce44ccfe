//! Prometheus metrics of the controllers. Labels take values from small fixed sets only (phase,
//! error category, event reason), never names or messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Error;
use crate::api::app::{AppPhase, AppStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabel {
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

/// The operator's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconcile_duration: Histogram,
    reconcile_errors: Family<CategoryLabel, Counter>,
    apps_by_phase: Family<PhaseLabel, Gauge>,
    phase_transitions: Family<PhaseLabel, Counter>,
    step_transitions: Counter,
    leader: Gauge,
    phases: Arc<Mutex<HashMap<String, String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn phase_name(p: Option<&AppPhase>) -> String {
    p.map_or_else(|| "Unknown".to_string(), |p| format!("{p:?}"))
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("authentify");
        let reconcile_duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        registry.register(
            "reconcile_duration_seconds",
            "Time one App reconcile took",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<CategoryLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed App reconciles by error category",
            reconcile_errors.clone(),
        );
        let apps_by_phase = Family::<PhaseLabel, Gauge>::default();
        registry.register("apps", "Apps by phase", apps_by_phase.clone());
        let phase_transitions = Family::<PhaseLabel, Counter>::default();
        registry.register(
            "app_phase_transitions",
            "App phase changes, by the phase entered",
            phase_transitions.clone(),
        );
        let step_transitions = Counter::default();
        registry.register("rollout_step_transitions", "Canary steps completed", step_transitions.clone());
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and reconciles",
            leader.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconcile_duration,
            reconcile_errors,
            apps_by_phase,
            phase_transitions,
            step_transitions,
            leader,
            phases: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records one reconcile.
    pub fn observe_reconcile(&self, took: Duration, error: Option<&Error>) {
        self.reconcile_duration.observe(took.as_secs_f64());
        if let Some(e) = error {
            self.reconcile_errors.get_or_create(&CategoryLabel { category: e.category().into() }).inc();
        }
    }

    /// Records a status change of the App `key` (namespace/name).
    pub fn record_status(&self, key: String, old: &AppStatus, new: &AppStatus) {
        if new.current_step_index > old.current_step_index && old.current_revision == new.current_revision {
            self.step_transitions.inc();
        }
        if old.phase != new.phase {
            self.phase_transitions.get_or_create(&PhaseLabel { phase: phase_name(new.phase.as_ref()) }).inc();
        }
        let Ok(mut phases) = self.phases.lock() else { return };
        let new_phase = phase_name(new.phase.as_ref());
        if let Some(previous) = phases.insert(key, new_phase.clone()) {
            self.apps_by_phase.get_or_create(&PhaseLabel { phase: previous }).dec();
        }
        self.apps_by_phase.get_or_create(&PhaseLabel { phase: new_phase }).inc();
    }

    /// Records whether this replica leads (holds the Lease and reconciles).
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Forgets a deleted App.
    pub fn forget(&self, key: &str) {
        let Ok(mut phases) = self.phases.lock() else { return };
        if let Some(previous) = phases.remove(key) {
            self.apps_by_phase.get_or_create(&PhaseLabel { phase: previous }).dec();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/metrics.md documents every metric, and the Grafana dashboard uses only those.
    #[test]
    fn every_metric_is_documented_and_the_dashboard_uses_only_those() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/metrics.md")).expect("docs/metrics.md");
        // Families appear in the exposition once they have a child.
        let metrics = Metrics::new();
        metrics.observe_reconcile(Duration::from_millis(1), Some(&Error::Invalid("x".into())));
        let healthy = AppStatus { phase: Some(AppPhase::Healthy), ..AppStatus::default() };
        metrics.record_status("ns/a".into(), &AppStatus::default(), &healthy);
        let names: Vec<String> = metrics
            .encode()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| match l.split_once(' ') {
                Some((name, "counter")) => format!("{name}_total"),
                Some((name, _)) => name.to_string(),
                None => l.to_string(),
            })
            .collect();
        assert!(names.len() >= 6, "{names:?}");
        for name in &names {
            assert!(doc.contains(&format!("`{name}`")), "docs/metrics.md does not document {name}");
        }
        let dashboard = std::fs::read_to_string(root.join("docs/grafana/rollouts.json")).expect("dashboard");
        let used = regex::Regex::new(r"authentify_[a-z_]+").expect("regex");
        for m in used.find_iter(&dashboard) {
            let base =
                ["_bucket", "_count", "_sum"].iter().fold(m.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(
                names.iter().any(|n| n == base),
                "the dashboard uses {}, which the operator does not serve",
                m.as_str()
            );
        }
    }

    #[test]
    fn apps_by_phase_moves_between_phases() {
        let m = Metrics::new();
        let progressing = AppStatus { phase: Some(AppPhase::Progressing), ..AppStatus::default() };
        let healthy = AppStatus { phase: Some(AppPhase::Healthy), ..AppStatus::default() };
        m.record_status("ns/a".into(), &AppStatus::default(), &progressing);
        m.record_status("ns/a".into(), &progressing, &healthy);
        m.record_status("ns/b".into(), &AppStatus::default(), &healthy);
        let text = m.encode();
        assert!(text.contains("authentify_apps{phase=\"Healthy\"} 2"), "{text}");
        assert!(text.contains("authentify_apps{phase=\"Progressing\"} 0"), "{text}");
        m.forget("ns/b");
        assert!(m.encode().contains("authentify_apps{phase=\"Healthy\"} 1"));
        m.observe_reconcile(Duration::from_millis(3), Some(&Error::Invalid("x".into())));
        assert!(m.encode().contains("authentify_reconcile_errors_total{category=\"invalid_spec\"} 1"));
    }
}
