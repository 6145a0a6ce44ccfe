//! The decision function. Reads like a rollout runbook: settle controls, note progress, check for
//! automatic rollback, run the pre-deploy job, then walk the canary steps or the blue-green
//! switch, and finally describe the outcome in status, conditions and events.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::replicas::{Pair, step_towards, surge_and_unavailable, targets_for_weight};
use super::{
    ABORT, Input, JobKind, JobState, Note, Observed, PROMOTE, PROMOTE_FULL, Plan, RETRY, Revision,
    RunRequest, Selector, Traffic, Verdict, duration,
};
use crate::api::analysis::AnalysisPhase;
use crate::api::app::{
    AnalysisRef, AnalysisRunSummary, AppPhase, AppSpec, AppStatus, BlueGreenStrategy, CanaryStep, GateStatus,
    PauseCondition, RolloutRecord, Webhook, WebhookType,
};
use crate::api::conditions;

/// Rollout records kept in `status.history`.
const HISTORY_KEPT: usize = 10;

/// Decides the next state of an App. See the module docs of [`super`].
pub fn decide(input: Input<'_>) -> Plan {
    let mut d = Decider::new(input);
    d.run();
    d.finish()
}

/// Pending control requests: each annotation whose token differs from the last handled one.
#[derive(Debug, Default)]
struct Requests {
    promote: bool,
    promote_full: bool,
    abort: bool,
    retry: bool,
}

struct Decider<'a> {
    spec: &'a AppSpec,
    observed: &'a Observed,
    old: &'a AppStatus,
    now: Timestamp,
    generation: Option<i64>,
    st: AppStatus,
    requests: Requests,
    total: i32,
    scale: BTreeMap<String, i32>,
    active: Selector,
    preview: Selector,
    create_job: Option<JobKind>,
    delete_pods: Vec<String>,
    notes: Vec<Note>,
    requeue: Option<Duration>,
    phase: AppPhase,
    message: String,
    /// Weight the traffic router sends to the new revision (router mode only).
    router_weight: i32,
    /// Whether a canary is running (header routes exist only then).
    canary_running: bool,
    /// AnalysisRuns the rollout needs now.
    runs: Vec<RunRequest>,
    /// Webhook gates to ask before deciding again.
    ask_gates: Vec<String>,
}

fn ts(t: Timestamp) -> Time {
    Time(t)
}

fn since(now: Timestamp, then: &Time) -> Duration {
    let secs = now.as_second() - then.0.as_second();
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

impl<'a> Decider<'a> {
    fn new(input: Input<'a>) -> Self {
        let spec = input.spec;
        let mut total = spec.replicas.unwrap_or(1).max(0);
        if let Some(a) = &spec.autoscaling {
            total = total.clamp(a.min_replicas, a.max_replicas.max(a.min_replicas));
        }
        let mut st = input.status.clone();
        let token = |key: &str| input.annotations.get(key).filter(|v| !v.is_empty()).cloned();
        let mut requests = Requests::default();
        let take = |key: &str, seen: &mut Option<String>| -> bool {
            match token(key) {
                Some(t) if seen.as_ref() != Some(&t) => {
                    *seen = Some(t);
                    true
                }
                _ => false,
            }
        };
        requests.promote = take(PROMOTE, &mut st.controls.promote);
        requests.promote_full = take(PROMOTE_FULL, &mut st.controls.promote_full);
        requests.abort = take(ABORT, &mut st.controls.abort);
        requests.retry = take(RETRY, &mut st.controls.retry);
        let desired = input.observed.desired_revision.clone();
        Self {
            spec,
            observed: input.observed,
            old: input.status,
            now: input.now,
            generation: input.generation,
            st,
            requests,
            total,
            scale: BTreeMap::new(),
            active: Selector::Revision(desired.clone()),
            preview: Selector::Revision(desired),
            create_job: None,
            delete_pods: vec![],
            notes: vec![],
            requeue: None,
            phase: AppPhase::Progressing,
            message: String::new(),
            router_weight: 0,
            canary_running: false,
            runs: vec![],
            ask_gates: vec![],
        }
    }

    fn note(&mut self, warning: bool, reason: &'static str, message: impl Into<String>) {
        self.notes.push(Note { warning, reason, message: message.into() });
    }

    fn requeue_in(&mut self, after: Duration) {
        let after = after.max(Duration::from_millis(100));
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    fn revision(&self, hash: &str) -> Option<&'a Revision> {
        self.observed.revisions.iter().find(|r| r.hash == hash)
    }

    fn ready(&self, hash: &str) -> i32 {
        self.revision(hash).map_or(0, |r| r.ready)
    }

    fn asked(&self, hash: &str) -> i32 {
        self.revision(hash).map_or(0, |r| r.replicas)
    }

    fn image_of(&self, hash: &str) -> String {
        self.revision(hash).map_or_else(|| self.spec.image.clone(), |r| r.image.clone())
    }

    fn steps(&self) -> &'a [CanaryStep] {
        self.spec.strategy.as_ref().and_then(|s| s.canary.as_ref()).map_or(&[], |c| c.steps.as_slice())
    }

    fn blue_green(&self) -> Option<&'a BlueGreenStrategy> {
        self.spec.strategy.as_ref().and_then(|s| s.blue_green.as_ref())
    }

    fn strategy_name(&self) -> &'static str {
        match (self.blue_green(), self.steps().is_empty()) {
            (Some(_), _) => "BlueGreen",
            (None, false) => "Canary",
            (None, true) => "Rolling",
        }
    }

    fn run(&mut self) {
        let desired = self.observed.desired_revision.clone();
        self.st.strategy = Some(self.strategy_name().to_string());
        self.sync_analysis_runs();

        if let Some(problem) = self.observed.invalid.clone() {
            // Nothing moves while the spec cannot be carried out; what runs keeps running.
            for r in &self.observed.revisions {
                self.scale.insert(r.hash.clone(), r.replicas);
            }
            let serving = self.st.stable_revision.clone().unwrap_or_else(|| desired.clone());
            self.active = self.default_active(&serving);
            self.preview = Selector::Revision(serving);
            self.phase = AppPhase::Degraded;
            self.message = problem;
            return;
        }

        let Some(stable) = self.st.stable_revision.clone() else {
            self.first_deploy(&desired);
            return;
        };

        if self.st.current_revision.as_deref() != Some(desired.as_str()) {
            self.start_rollout(&stable, &desired);
        }
        let stable = self.st.stable_revision.clone().unwrap_or(stable);

        if stable == desired {
            self.steady(&stable);
        } else {
            self.rollout(&stable, &desired);
        }
    }

    /// True when a traffic router (NGINX Ingress, Gateway API) splits the canary's traffic.
    fn router(&self) -> bool {
        self.spec
            .strategy
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .and_then(|c| c.traffic_routing.as_ref())
            .is_some_and(|t| t.nginx.is_some() || t.gateway_api.is_some())
    }

    fn default_active(&self, stable: &str) -> Selector {
        if self.blue_green().is_some() || self.router() {
            Selector::Revision(stable.to_string())
        } else {
            Selector::AllRevisions
        }
    }

    fn first_deploy(&mut self, desired: &str) {
        self.st.stable_revision = Some(desired.to_string());
        self.st.current_revision = Some(desired.to_string());
        self.push_history(desired, "Promoted", true);
        self.note(false, "Deployed", format!("first deploy of {} (revision {desired})", self.spec.image));
        if self.observed.pre_deploy != JobState::NotConfigured {
            // App Platform runs PRE_DEPLOY before every deploy, the first one included.
            if !self.pre_deploy_done(desired, desired) {
                self.st.stable_revision = None;
                self.st.current_revision = None;
                self.st.history.remove(0);
                self.notes.clear();
                return;
            }
        }
        self.steady(desired);
    }

    /// A new desired revision: reset the rollout state, or roll back fast to a revision that is
    /// still running (blue-green window) or was stable before.
    fn start_rollout(&mut self, stable: &str, desired: &str) {
        if let Some(current) = self.st.current_revision.clone()
            && current != *stable
            && let Some(record) =
                self.st.history.iter_mut().find(|r| r.revision == current && r.finished_at.is_none())
        {
            record.finished_at = Some(ts(self.now));
            record.outcome = "Superseded".into();
        }
        if desired == stable {
            // Back to the stable revision (an undo after an abort, say): nothing rolls out; the
            // history records the return, finished at once.
            self.push_history(desired, "RolledBack", true);
            self.note(false, "RolledBack", format!("back on the stable revision {desired}"));
            return;
        }
        self.st.current_revision = Some(desired.to_string());
        self.st.current_step_index = Some(0);
        self.st.gates.retain(|g| g.revision == *desired);
        self.st.canary_weight = None;
        self.st.abort = false;
        self.st.pause_conditions.clear();
        self.st.analysis_runs.clear();
        self.st.last_progress_time = Some(ts(self.now));
        self.st.current_ready_replicas = Some(self.ready(desired));

        let was_stable = self.st.history.iter().any(|r| r.revision == *desired && r.outcome == "Promoted");
        let in_window = self.st.previous_revision.as_deref() == Some(desired)
            && self.ready(desired) >= self.total.min(self.asked(desired)).max(1);
        if in_window {
            // Blue-green rollback inside the scale-down window: switch back now, no new pods.
            self.push_history(desired, "RolledBack", true);
            self.st.previous_revision = Some(stable.to_string());
            self.st.stable_revision = Some(desired.to_string());
            self.set_scale_down(stable);
            self.note(
                false,
                "RolledBack",
                format!("switched back to revision {desired} at once; {stable} scales down later"),
            );
            return;
        }
        if was_stable && self.revision(desired).is_some() {
            // An older revision whose ReplicaSet still exists: skip steps and jobs (`undo`).
            self.push_history(desired, "Running", false);
            self.st.current_step_index = Some(self.steps().len() as i32);
            self.note(false, "RollbackStarted", format!("rolling back to revision {desired}; steps skipped"));
            return;
        }
        self.push_history(desired, "Running", false);
        self.note(
            false,
            "RolloutStarted",
            format!(
                "rolling out {} (revision {desired}) with the {} strategy",
                self.spec.image,
                self.strategy_name()
            ),
        );
    }

    /// True when `desired` was promoted before: going back to it (an undo) is never held by
    /// webhook gates and skips the pre-deploy job.
    fn is_rollback(&self, desired: &str) -> bool {
        self.st.history.first().is_some_and(|h| h.revision == desired)
            && self.st.history.iter().skip(1).any(|h| h.revision == desired && h.outcome == "Promoted")
    }

    /// True while the new revision has neither pods nor a pre-deploy job, nor passed a step: the
    /// moment a `ConfirmRollout` gate guards. A gate added in the middle of a rollout does not
    /// take the running canary down.
    fn not_started(&self, desired: &str) -> bool {
        self.st.current_step_index.unwrap_or(0) == 0
            && self.asked(desired) == 0
            && matches!(self.observed.pre_deploy, JobState::NotConfigured | JobState::Missing)
    }

    fn webhooks(&self) -> &'a [Webhook] {
        self.spec.strategy.as_ref().map_or(&[], |s| s.webhooks.as_slice())
    }

    /// Whether every webhook gate of `kind` is open for `desired`. Gates never asked, or whose
    /// last "no" is older than their interval, are listed in the plan to be asked; answers the
    /// controller brings are recorded in `status.gates`. A `promote-full` request opens them all.
    fn gates_open(&mut self, kind: WebhookType, desired: &str) -> bool {
        let mut waiting: Vec<String> = vec![];
        for hook in self.webhooks().iter().filter(|w| w.kind == kind) {
            let at = self
                .st
                .gates
                .iter()
                .position(|g| g.name == hook.name && g.kind == kind && g.revision == desired);
            if at.is_some_and(|i| self.st.gates[i].passed) {
                continue;
            }
            let answer = if self.requests.promote_full {
                Some((true, "skipped on request (promote-full)".to_string()))
            } else {
                self.observed.gates.get(&hook.name).map(|a| (a.passed, a.message.clone()))
            };
            let interval = duration::parse(&hook.interval).unwrap_or(Duration::from_secs(30));
            if let Some((passed, message)) = answer {
                let record = GateStatus {
                    name: hook.name.clone(),
                    kind,
                    revision: desired.to_string(),
                    passed,
                    message: message.clone(),
                    checked_at: ts(self.now),
                };
                let changed = at.is_none_or(|i| self.st.gates[i].message != message);
                match at {
                    Some(i) => self.st.gates[i] = record,
                    None => self.st.gates.push(record),
                }
                if passed {
                    let what =
                        format!("webhook {} ({kind:?}) opened for revision {desired}: {message}", hook.name);
                    self.note(false, "GateOpened", what);
                    continue;
                }
                if changed {
                    let what =
                        format!("webhook {} ({kind:?}) holds revision {desired}: {message}", hook.name);
                    self.note(true, "GateClosed", what);
                }
                self.requeue_in(interval);
                waiting.push(format!("{}: {message}; asked every {}", hook.name, duration::format(interval)));
                continue;
            }
            let elapsed = at.map(|i| since(self.now, &self.st.gates[i].checked_at));
            match elapsed {
                Some(e) if e < interval => {
                    self.requeue_in(interval - e);
                    let last = at.map(|i| self.st.gates[i].message.clone()).unwrap_or_default();
                    waiting.push(format!(
                        "{}: {last}; asked every {}",
                        hook.name,
                        duration::format(interval)
                    ));
                }
                _ => {
                    self.ask_gates.push(hook.name.clone());
                    waiting.push(format!("{}: asking", hook.name));
                }
            }
        }
        if waiting.is_empty() {
            if self.st.pause_conditions.iter().any(|p| p.reason == "WebhookGate") {
                self.st.pause_conditions.retain(|p| p.reason != "WebhookGate");
                self.st.last_progress_time = Some(ts(self.now));
            }
            return true;
        }
        self.set_pause("WebhookGate");
        let what = match kind {
            WebhookType::ConfirmRollout => "to start",
            WebhookType::ConfirmPromotion => "to be promoted",
        };
        self.message = format!("revision {desired} waits for webhook gates {what} ({})", waiting.join("; "));
        false
    }

    fn set_scale_down(&mut self, revision: &str) {
        let delay = self.blue_green().map_or(0, |b| b.scale_down_delay_seconds.max(0));
        self.st.previous_revision = Some(revision.to_string());
        let at = self.now.checked_add(jiff_secs(i64::from(delay))).unwrap_or(self.now);
        self.st.scale_down_at = Some(ts(at));
    }

    fn push_history(&mut self, revision: &str, outcome: &str, finished: bool) {
        let record = RolloutRecord {
            revision: revision.to_string(),
            image: self.image_of(revision),
            started_at: ts(self.now),
            finished_at: finished.then(|| ts(self.now)),
            outcome: outcome.to_string(),
        };
        self.st.history.insert(0, record);
        self.st.history.truncate(HISTORY_KEPT);
    }

    fn finish_history(&mut self, revision: &str, outcome: &str) {
        if let Some(r) =
            self.st.history.iter_mut().find(|r| r.revision == revision && r.finished_at.is_none())
        {
            r.finished_at = Some(ts(self.now));
            r.outcome = outcome.to_string();
        }
    }

    /// Keeps the previous blue-green revision up until its scale-down time.
    fn hold_previous(&mut self) {
        let Some(prev) = self.st.previous_revision.clone() else { return };
        let due = self.st.scale_down_at.as_ref().is_none_or(|at| self.now >= at.0);
        if due || Some(&prev) == self.st.stable_revision.as_ref() {
            self.st.previous_revision = None;
            self.st.scale_down_at = None;
            return;
        }
        self.scale.insert(prev.clone(), self.asked(&prev));
        if let Some(at) = &self.st.scale_down_at {
            let left =
                Duration::from_secs(u64::try_from(at.0.as_second() - self.now.as_second()).unwrap_or(0));
            self.requeue_in(left);
        }
    }

    fn steady(&mut self, stable: &str) {
        self.canary_running = false;
        self.router_weight = 0;
        self.st.current_revision = Some(stable.to_string());
        self.st.current_step_index = None;
        self.st.step = None;
        self.st.canary_weight = None;
        self.st.abort = false;
        self.st.pause_conditions.clear();
        self.st.last_progress_time = None;
        self.st.current_ready_replicas = None;
        self.st.gates.retain(|g| g.revision == stable);
        self.scale.insert(stable.to_string(), self.total);
        self.hold_previous();
        self.active = self.default_active(stable);
        self.preview = Selector::Revision(stable.to_string());

        let ready = self.ready(stable);
        if self.observed.post_deploy == JobState::Missing
            && self.st.history.first().is_some_and(|h| h.revision == stable)
        {
            self.create_job = Some(JobKind::PostDeploy);
        }
        if let JobState::Failed(msg) = &self.observed.post_deploy
            && self.old.conditions.iter().all(|c| !c.message.contains("post-deploy"))
        {
            self.note(
                true,
                "PostDeployFailed",
                format!("post-deploy job of revision {stable} failed: {msg}"),
            );
        }

        // A restart replaces the stable pods one at a time, only while all of them are ready.
        if !self.observed.pods_to_restart.is_empty() && ready >= self.total && !self.spec.paused {
            let pod = self.observed.pods_to_restart[0].clone();
            self.note(
                false,
                "Restarting",
                format!("restarting pod {pod} ({} left)", self.observed.pods_to_restart.len()),
            );
            self.delete_pods.push(pod);
        }

        if self.asked(stable) == self.total && ready >= self.total && self.observed.pods_to_restart.is_empty()
        {
            self.phase = AppPhase::Healthy;
            self.message = format!("revision {stable} serves with {ready}/{} pods ready", self.total);
            if self.spec.paused {
                self.message.push_str("; the App is paused: a new revision will wait until it is resumed");
            }
        } else if !self.observed.pods_to_restart.is_empty() {
            self.phase = AppPhase::Progressing;
            self.message =
                format!("restarting: {} pods left to replace", self.observed.pods_to_restart.len());
        } else {
            self.phase = AppPhase::Progressing;
            self.message = format!("scaling revision {stable}: {ready}/{} pods ready", self.total);
        }
    }

    fn abort(&mut self, reason: String) {
        if !self.st.abort {
            self.note(true, "RolloutAborted", reason.clone());
        }
        self.st.abort = true;
        self.message = reason;
    }

    fn rollout(&mut self, stable: &str, desired: &str) {
        if self.requests.retry && self.st.abort {
            self.st.abort = false;
            self.st.current_step_index = Some(0);
            self.st.canary_weight = None;
            self.st.pause_conditions.clear();
            self.st.analysis_runs.clear();
            self.st.last_progress_time = Some(ts(self.now));
            self.push_history(desired, "Running", false);
            self.note(false, "RolloutRetried", format!("retrying the rollout of revision {desired}"));
        }
        if self.requests.abort && !self.st.abort {
            self.abort(format!("rollout of revision {desired} aborted on request"));
        }
        self.hold_previous();
        self.active = self.default_active(stable);
        self.preview = Selector::Revision(desired.to_string());

        if self.st.abort {
            return self.aborted(stable, desired);
        }
        if self.blue_green().is_none() {
            // The router keeps its last weight whatever happens next in this reconcile.
            self.canary_running = true;
            self.router_weight = self.st.canary_weight.unwrap_or(0);
        }
        if self.spec.paused {
            for r in &self.observed.revisions {
                self.scale.insert(r.hash.clone(), r.replicas);
            }
            self.scale.entry(desired.to_string()).or_insert(0);
            self.set_pause("AppPaused");
            self.st.last_progress_time = Some(ts(self.now));
            self.phase = AppPhase::Paused;
            self.message = format!("rollout of revision {desired} paused on request; resume to continue");
            return;
        }
        self.st.pause_conditions.retain(|p| p.reason != "AppPaused");

        // Progress: more ready pods of the new revision, or a step done, resets the deadline.
        let ready_now = self.ready(desired);
        if ready_now > self.st.current_ready_replicas.unwrap_or(0) {
            self.st.last_progress_time = Some(ts(self.now));
        }
        self.st.current_ready_replicas = Some(ready_now);

        if self.spec.auto_rollback.enabled {
            let restarts = self.revision(desired).map_or(0, |r| r.max_restarts);
            if restarts >= self.spec.auto_rollback.restart_threshold {
                self.abort(format!(
                    "rolled back automatically: pods of revision {desired} are crash-looping ({restarts} restarts); revision {stable} serves"
                ));
                return self.aborted(stable, desired);
            }
            // Pauses (timed or waiting for a person) do not count against the deadline; finishing
            // one counts as progress.
            let pausing = !self.st.pause_conditions.is_empty() || self.gated_by_analysis();
            if !pausing
                && let Some(since_progress) = self.st.last_progress_time.as_ref().map(|t| since(self.now, t))
            {
                let deadline =
                    Duration::from_secs(u64::try_from(self.spec.progress_deadline_seconds).unwrap_or(600));
                if since_progress >= deadline {
                    self.abort(format!(
                        "rolled back automatically: no progress within {} (progressDeadlineSeconds); revision {stable} serves",
                        duration::format(deadline)
                    ));
                    return self.aborted(stable, desired);
                }
                self.requeue_in(deadline - since_progress);
            }
        }

        let fast_rollback = self.is_rollback(desired);
        if !fast_rollback
            && self.not_started(desired)
            && !self.gates_open(WebhookType::ConfirmRollout, desired)
        {
            self.hold(stable, desired);
            self.phase = AppPhase::Paused;
            return;
        }
        if !fast_rollback && !self.pre_deploy_done(stable, desired) {
            return;
        }

        if self.blue_green().is_some() {
            self.blue_green_rollout(stable, desired);
        } else {
            self.canary_rollout(stable, desired);
        }
    }

    /// Runs the pre-deploy job before the new revision gets pods. Returns true once it succeeded.
    fn pre_deploy_done(&mut self, stable: &str, desired: &str) -> bool {
        match self.observed.pre_deploy.clone() {
            JobState::NotConfigured | JobState::Succeeded => true,
            JobState::Missing | JobState::Running => {
                if self.observed.pre_deploy == JobState::Missing {
                    self.create_job = Some(JobKind::PreDeploy);
                }
                self.hold(stable, desired);
                self.message = format!("running the pre-deploy job for revision {desired}");
                false
            }
            JobState::Failed(msg) => {
                if stable == desired {
                    // First deploy: nothing else can serve.
                    self.scale.insert(desired.to_string(), 0);
                    self.phase = AppPhase::Degraded;
                    self.message = format!("pre-deploy job of revision {desired} failed: {msg}");
                    if !self.old.message.as_deref().unwrap_or_default().contains("pre-deploy job") {
                        self.note(true, "PreDeployFailed", self.message.clone());
                    }
                    return false;
                }
                self.abort(format!("pre-deploy job of revision {desired} failed, rollout stopped: {msg}"));
                self.aborted(stable, desired);
                false
            }
        }
    }

    /// Keeps the stable at full size and the new revision at zero.
    fn hold(&mut self, stable: &str, desired: &str) {
        self.scale.insert(stable.to_string(), self.total.max(self.asked(stable)));
        self.scale.insert(desired.to_string(), 0);
        self.phase = AppPhase::Progressing;
    }

    fn aborted(&mut self, stable: &str, desired: &str) {
        self.canary_running = false;
        self.router_weight = 0;
        self.scale.insert(desired.to_string(), 0);
        self.scale.insert(stable.to_string(), self.total);
        self.st.canary_weight = Some(0);
        self.st.pause_conditions.clear();
        self.active = self.default_active(stable);
        self.phase = AppPhase::Degraded;
        if self.message.is_empty() {
            // The reason given when it was aborted stays the message until a retry or a new revision.
            self.message = match (&self.old.message, self.old.abort) {
                (Some(reason), true) => reason.clone(),
                _ => format!("rollout of revision {desired} aborted; revision {stable} serves"),
            };
        }
        if let Some(r) = self.st.history.iter_mut().find(|r| r.revision == desired && r.finished_at.is_none())
        {
            r.finished_at = Some(ts(self.now));
            r.outcome = "Aborted".into();
        }
    }

    fn set_pause(&mut self, reason: &str) -> Time {
        if let Some(p) = self.st.pause_conditions.iter().find(|p| p.reason == reason) {
            return p.start_time.clone();
        }
        let start = ts(self.now);
        self.st
            .pause_conditions
            .push(PauseCondition { reason: reason.to_string(), start_time: start.clone() });
        start
    }

    /// The weight in force at step `i` (the last setWeight before it).
    fn weight_before(&self, i: usize) -> i32 {
        self.steps()[..i.min(self.steps().len())].iter().rev().find_map(|s| s.set_weight).unwrap_or(0)
    }

    /// The canary pod override in force at step `i` (the last setCanaryScale before it).
    fn canary_override(&self, i: usize) -> Option<i32> {
        let scale = self.steps()[..i.min(self.steps().len())]
            .iter()
            .rev()
            .find_map(|s| s.set_canary_scale.as_ref())?;
        if scale.match_traffic_weight == Some(true) {
            return None;
        }
        scale.replicas.or_else(|| scale.weight.map(|w| targets_for_weight(self.total, w).0))
    }

    fn surge(&self) -> (i32, i32) {
        let canary = self.spec.strategy.as_ref().and_then(|s| s.canary.as_ref());
        let default_surge = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("25%".into());
        let default_unavailable = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0);
        surge_and_unavailable(
            canary.map_or(&default_surge, |c| &c.max_surge),
            canary.map_or(&default_unavailable, |c| &c.max_unavailable),
            self.total,
        )
    }

    /// Moves the two ReplicaSets one step towards a weight. Returns true when it is reached.
    ///
    /// With a traffic router the stable keeps its full size, the canary gets the pods its weight
    /// needs, and the router's weight moves only once those pods are ready.
    fn move_to_weight(&mut self, stable: &str, desired: &str, weight: i32, canary_pods: Option<i32>) -> bool {
        let (mut ct, st) = targets_for_weight(self.total, weight);
        if let Some(n) = canary_pods {
            ct = n;
        }
        if self.router() {
            self.scale.insert(desired.to_string(), ct);
            self.scale.insert(stable.to_string(), self.total.max(self.asked(stable)));
            let ready = self.asked(desired) == ct
                && self.ready(desired) >= ct
                && self.ready(stable) >= self.total.min(1);
            if ready {
                self.router_weight = weight;
            }
            return ready;
        }
        let (surge, unavailable) = self.surge();
        let now = Pair {
            stable: self.asked(stable),
            stable_ready: self.ready(stable),
            canary: self.asked(desired),
            canary_ready: self.ready(desired),
        };
        let (c, s) = step_towards(now, ct, st, self.total, surge, unavailable);
        self.scale.insert(desired.to_string(), c);
        self.scale.insert(stable.to_string(), s);
        c == ct
            && s == st
            && now.canary == ct
            && now.stable == st
            && now.canary_ready >= ct
            && now.stable_ready >= st.min(now.stable_ready)
    }

    fn canary_rollout(&mut self, stable: &str, desired: &str) {
        let steps = self.steps();
        let len = steps.len();
        self.canary_running = true;
        self.router_weight = self.st.canary_weight.unwrap_or(0);
        let mut i = (self.st.current_step_index.unwrap_or(0).max(0) as usize).min(len);
        if self.requests.promote_full {
            if i < len {
                self.note(
                    false,
                    "PromotedFull",
                    format!("all remaining steps skipped for revision {desired}"),
                );
            }
            i = len;
        }
        let mut promote = self.requests.promote;
        if i < len
            && let Some(background) = self.canary_background()
        {
            // A person's promote accepts an inconclusive background analysis: a new one starts.
            let accepted = promote && self.last_run_phase("background") == Some(AnalysisPhase::Inconclusive);
            if accepted {
                promote = false;
                self.st.pause_conditions.retain(|p| p.reason != "InconclusiveAnalysis");
                self.note(false, "AnalysisAccepted", "inconclusive background analysis accepted on request");
            }
            match self.analysis("background", background, accepted) {
                Verdict::Failed(why) => {
                    self.abort(format!("background analysis failed: {why}; revision {stable} serves"));
                    return self.aborted(stable, desired);
                }
                Verdict::Inconclusive(why) => {
                    let w = self.weight_before(i);
                    self.move_to_weight(stable, desired, w, self.canary_override(i));
                    self.set_pause("InconclusiveAnalysis");
                    self.phase = AppPhase::Paused;
                    self.message = format!(
                        "canary at {w}%, step {}/{len}: background analysis inconclusive ({why}); promote or abort",
                        i + 1
                    );
                    self.st.current_step_index = Some(i as i32);
                    self.st.step = Some(format!("{}/{len}", i + 1));
                    return;
                }
                Verdict::Running | Verdict::Successful => {}
            }
        }
        // Instant steps (a weight already reached, a finished pause) complete in one reconcile.
        for _ in 0..=len {
            if i >= len {
                break;
            }
            let step = &steps[i];
            let done = if promote {
                promote = false;
                self.note(false, "StepPromoted", format!("step {}/{len} promoted on request", i + 1));
                true
            } else if let Some(w) = step.set_weight {
                let reached = self.move_to_weight(stable, desired, w, self.canary_override(i));
                if reached {
                    self.st.canary_weight = Some(w);
                }
                self.message = format!(
                    "canary at {}%, step {}/{len}: setting weight {w}%",
                    self.weight_before(i),
                    i + 1
                );
                reached
            } else if let Some(pause) = &step.pause {
                let start = self.set_pause("CanaryPauseStep");
                let w = self.weight_before(i);
                self.move_to_weight(stable, desired, w, self.canary_override(i));
                match pause.duration.as_deref().and_then(duration::parse) {
                    Some(d) => {
                        let elapsed = since(self.now, &start);
                        if elapsed >= d {
                            true
                        } else {
                            self.requeue_in(d - elapsed);
                            self.phase = AppPhase::Paused;
                            self.message = format!(
                                "canary at {w}%, step {}/{len}: pause {} ({} left)",
                                i + 1,
                                duration::format(d),
                                duration::format(d - elapsed)
                            );
                            false
                        }
                    }
                    None => {
                        self.phase = AppPhase::Paused;
                        self.message = format!("canary at {w}%, step {}/{len}: paused until promoted", i + 1);
                        false
                    }
                }
            } else if let Some(analysis) = &step.analysis {
                let w = self.weight_before(i);
                let reached = self.move_to_weight(stable, desired, w, self.canary_override(i));
                // The run starts once the canary is at its weight; once started it is followed
                // even if a pod blips.
                let purpose = format!("step {}", i + 1);
                let verdict = if reached || self.last_run_phase(&purpose).is_some() {
                    self.analysis(&purpose, analysis, false)
                } else {
                    Verdict::Running
                };
                match verdict {
                    Verdict::Successful => true,
                    Verdict::Failed(why) => {
                        self.abort(format!(
                            "analysis failed at step {}/{len}: {why}; revision {stable} serves",
                            i + 1
                        ));
                        return self.aborted(stable, desired);
                    }
                    Verdict::Inconclusive(why) => {
                        self.set_pause("InconclusiveAnalysis");
                        self.phase = AppPhase::Paused;
                        self.message = format!(
                            "canary at {w}%, step {}/{len}: analysis inconclusive ({why}); promote or abort",
                            i + 1
                        );
                        false
                    }
                    Verdict::Running if !reached => {
                        self.message = format!(
                            "canary at {w}%, step {}/{len}: waiting for the canary's pods before analysis",
                            i + 1
                        );
                        false
                    }
                    Verdict::Running => {
                        self.message = format!("canary at {w}%, step {}/{len}: analysis running", i + 1);
                        false
                    }
                }
            } else {
                // setCanaryScale takes effect from the next step on.
                true
            };
            if !done {
                break;
            }
            self.st.pause_conditions.retain(|p| p.reason == "AppPaused");
            i += 1;
            self.st.last_progress_time = Some(ts(self.now));
            if i < len {
                self.note(
                    false,
                    "StepCompleted",
                    format!("step {i}/{len} done; starting step {}/{len}", i + 1),
                );
            }
        }
        self.st.current_step_index = Some(i as i32);
        self.st.step = (len > 0).then(|| format!("{}/{len}", (i + 1).min(len)));
        if i < len {
            if self.phase != AppPhase::Paused {
                self.phase = AppPhase::Progressing;
            }
            return;
        }
        // All steps done: the gates confirm, the new revision takes everything, then becomes stable.
        if !self.is_rollback(desired) && !self.gates_open(WebhookType::ConfirmPromotion, desired) {
            let w = self.weight_before(len);
            self.move_to_weight(stable, desired, w, self.canary_override(len));
            self.phase = AppPhase::Paused;
            return;
        }
        let reached = self.move_to_weight(stable, desired, 100, None);
        self.st.canary_weight = Some(if self.router() { self.router_weight } else { 100 });
        if reached {
            self.promote(stable, desired);
        } else {
            self.phase = AppPhase::Progressing;
            self.message =
                format!("promoting revision {desired}: {}/{} pods ready", self.ready(desired), self.total);
        }
    }

    fn promote(&mut self, old_stable: &str, desired: &str) {
        self.finish_history(desired, "Promoted");
        self.st.stable_revision = Some(desired.to_string());
        self.note(false, "Promoted", format!("revision {desired} ({}) is now stable", self.spec.image));
        if self.blue_green().is_some() {
            self.set_scale_down(old_stable);
        }
        self.scale.clear();
        self.steady(desired);
    }

    fn blue_green_rollout(&mut self, stable: &str, desired: &str) {
        let Some(bg) = self.blue_green() else { return };
        let preview_count = bg.preview_replica_count.unwrap_or(self.total).clamp(0, self.total);
        let mut promoting = self.st.current_step_index.unwrap_or(0) >= 1;
        self.st.step = None;
        self.st.canary_weight = Some(0);
        self.scale.insert(stable.to_string(), self.total.max(self.asked(stable)));
        let want = if promoting { self.total } else { preview_count };
        self.scale.insert(desired.to_string(), want);
        let preview_ready = self.ready(desired) >= want && self.asked(desired) >= want;

        if !promoting {
            if !preview_ready {
                self.phase = AppPhase::Progressing;
                self.message =
                    format!("preview of revision {desired}: {}/{want} pods ready", self.ready(desired));
                return;
            }
            if let Some(pre) = &bg.pre_promotion_analysis {
                match self.analysis("pre-promotion", pre, false) {
                    Verdict::Failed(why) => {
                        self.abort(format!("pre-promotion analysis failed: {why}; revision {stable} serves"));
                        return self.aborted(stable, desired);
                    }
                    Verdict::Running => {
                        self.message =
                            format!("preview of revision {desired} ready; pre-promotion analysis running");
                        return;
                    }
                    Verdict::Inconclusive(why) if !(self.requests.promote || self.requests.promote_full) => {
                        self.set_pause("InconclusiveAnalysis");
                        self.phase = AppPhase::Paused;
                        self.message = format!(
                            "preview of revision {desired} ready; pre-promotion analysis inconclusive ({why}); promote or abort"
                        );
                        return;
                    }
                    Verdict::Inconclusive(_) | Verdict::Successful => {
                        self.st.pause_conditions.retain(|p| p.reason != "InconclusiveAnalysis");
                    }
                }
            }
            let start = self.set_pause("BlueGreenPause");
            let auto = bg.auto_promotion_seconds.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
            let elapsed = since(self.now, &start);
            if self.requests.promote || self.requests.promote_full || auto.is_some_and(|a| elapsed >= a) {
                promoting = true;
                self.requests.promote = false;
                self.requests.promote_full = false;
                self.st.current_step_index = Some(1);
                self.st.pause_conditions.retain(|p| p.reason != "BlueGreenPause");
                self.st.last_progress_time = Some(ts(self.now));
                self.scale.insert(desired.to_string(), self.total);
            } else {
                self.phase = AppPhase::Paused;
                self.message = match auto {
                    Some(a) => format!(
                        "preview of revision {desired} ready; promotes in {}",
                        duration::format(a.saturating_sub(elapsed))
                    ),
                    None => format!("preview of revision {desired} ready; waiting for promotion"),
                };
                if let Some(a) = auto {
                    self.requeue_in(a.saturating_sub(elapsed));
                }
                return;
            }
        }
        if promoting {
            if !self.is_rollback(desired) && !self.gates_open(WebhookType::ConfirmPromotion, desired) {
                // The promotion stands; the switch waits for the gates (the full-size preview
                // keeps starting meanwhile).
                self.phase = AppPhase::Paused;
                return;
            }
            if self.ready(desired) >= self.total && self.asked(desired) >= self.total {
                match &bg.post_promotion_analysis {
                    Some(post) => self.post_promotion(stable, desired, post),
                    None => self.promote(stable, desired),
                }
            } else {
                self.phase = AppPhase::Progressing;
                self.message = format!(
                    "promoting revision {desired}: {}/{} pods ready before the switch",
                    self.ready(desired),
                    self.total
                );
            }
        }
    }

    /// After the switch, before the new revision counts as stable: the active Service selects
    /// the new revision while the old one stays at full size, so a failed post-promotion analysis
    /// switches back at once.
    fn post_promotion(&mut self, stable: &str, desired: &str, post: &AnalysisRef) {
        self.active = Selector::Revision(desired.to_string());
        if self.st.current_step_index != Some(2) {
            self.st.current_step_index = Some(2);
            self.st.last_progress_time = Some(ts(self.now));
            self.note(
                false,
                "Switched",
                format!("traffic switched to revision {desired}; post-promotion analysis runs"),
            );
        }
        let promote = self.requests.promote || self.requests.promote_full;
        match self.analysis("post-promotion", post, false) {
            Verdict::Successful => self.promote(stable, desired),
            Verdict::Inconclusive(_) if promote => {
                self.st.pause_conditions.retain(|p| p.reason != "InconclusiveAnalysis");
                self.promote(stable, desired);
            }
            Verdict::Failed(why) => {
                self.abort(format!(
                    "post-promotion analysis failed: {why}; switched back to revision {stable}"
                ));
                self.aborted(stable, desired);
            }
            Verdict::Inconclusive(why) => {
                self.set_pause("InconclusiveAnalysis");
                self.phase = AppPhase::Paused;
                self.message = format!(
                    "revision {desired} serves; post-promotion analysis inconclusive ({why}); promote or abort"
                );
            }
            Verdict::Running => {
                self.phase = AppPhase::Progressing;
                self.message = format!(
                    "revision {desired} serves; post-promotion analysis running (revision {stable} stays up)"
                );
            }
        }
    }

    fn canary_background(&self) -> Option<&'a AnalysisRef> {
        self.spec.strategy.as_ref()?.canary.as_ref()?.analysis.as_ref()
    }

    /// True while a step, pre- or post-promotion analysis decides: that time does not count
    /// against the progress deadline.
    fn gated_by_analysis(&self) -> bool {
        self.st.analysis_runs.iter().any(|r| r.purpose != "background" && r.phase == AnalysisPhase::Running)
    }

    fn last_run_phase(&self, purpose: &str) -> Option<AnalysisPhase> {
        self.st.analysis_runs.iter().rev().find(|r| r.purpose == purpose).map(|r| r.phase)
    }

    /// Brings the status's run summaries up to date with the runs observed, with an Event for
    /// each verdict.
    fn sync_analysis_runs(&mut self) {
        let mut notes = vec![];
        for summary in &mut self.st.analysis_runs {
            let Some(run) = self.observed.analysis_runs.get(&summary.name) else { continue };
            let message = (!run.message.is_empty()).then(|| run.message.clone());
            if summary.phase == run.phase && summary.message == message {
                continue;
            }
            if !summary.phase.is_finished() && run.phase.is_finished() {
                let (warning, reason, verb) = match run.phase {
                    AnalysisPhase::Successful => (false, "AnalysisSuccessful", "passed"),
                    AnalysisPhase::Inconclusive => (true, "AnalysisInconclusive", "was inconclusive"),
                    AnalysisPhase::Error => (true, "AnalysisFailed", "erred"),
                    _ => (true, "AnalysisFailed", "failed"),
                };
                notes.push(Note {
                    warning,
                    reason,
                    message: format!("{} analysis {} {verb}: {}", summary.purpose, summary.name, run.message),
                });
            }
            summary.phase = run.phase;
            summary.message = message;
        }
        self.notes.extend(notes);
    }

    /// The verdict of the analysis for `purpose`, asking for its run while it runs. `fresh`
    /// starts a new run even though one exists (a person accepted the last one).
    fn analysis(&mut self, purpose: &str, reference: &AnalysisRef, fresh: bool) -> Verdict {
        let existing = self.st.analysis_runs.iter().rposition(|r| r.purpose == purpose);
        let index = match existing {
            Some(i) if !fresh => i,
            _ => {
                let k = self.st.analysis_runs.iter().filter(|r| r.purpose == purpose).count();
                let name = self.run_name(purpose, k);
                self.note(
                    false,
                    "AnalysisStarted",
                    format!("{purpose} analysis {name} started ({})", reference.templates.join(", ")),
                );
                self.st.analysis_runs.push(AnalysisRunSummary {
                    name,
                    purpose: purpose.to_string(),
                    phase: AnalysisPhase::Running,
                    message: None,
                });
                self.st.analysis_runs.len() - 1
            }
        };
        let summary = &self.st.analysis_runs[index];
        let why = format!("{}: {}", summary.name, summary.message.clone().unwrap_or_default());
        match summary.phase {
            AnalysisPhase::Running => {
                self.runs.push(RunRequest {
                    name: summary.name.clone(),
                    purpose: purpose.to_string(),
                    analysis: reference.clone(),
                });
                Verdict::Running
            }
            AnalysisPhase::Successful => Verdict::Successful,
            AnalysisPhase::Inconclusive => Verdict::Inconclusive(why),
            AnalysisPhase::Failed | AnalysisPhase::Error => Verdict::Failed(why),
        }
    }

    /// `<app>-<revision>-<attempt>-<purpose>[-k]`: the same in every reconcile of one attempt of
    /// a rollout, so a restarted operator finds its runs. The attempt is when it started (whole
    /// seconds, as status keeps it) and how many attempts of this revision the history holds: a
    /// retry within the second its rollout started is a new attempt too.
    fn run_name(&self, purpose: &str, k: usize) -> String {
        let desired = &self.observed.desired_revision;
        let started = self
            .st
            .history
            .iter()
            .find(|r| &r.revision == desired && r.finished_at.is_none())
            .map_or(0, |r| r.started_at.0.as_second());
        let slug = match purpose.strip_prefix("step ") {
            Some(n) => format!("s{n}"),
            None => match purpose {
                "background" => "bg".to_string(),
                "pre-promotion" => "pre".to_string(),
                _ => "post".to_string(),
            },
        };
        let again = if k > 0 { format!("-{k}") } else { String::new() };
        let app: String = self.observed.name.chars().take(180).collect();
        let attempts = self.st.history.iter().filter(|r| &r.revision == desired).count();
        let attempt = base36(u64::try_from(started).unwrap_or(0));
        format!("{app}-{desired}-{attempt}{attempts}-{slug}{again}")
    }

    fn finish(mut self) -> Plan {
        let desired = self.observed.desired_revision.clone();
        // Every revision not given a size is scaled to zero.
        for r in &self.observed.revisions {
            self.scale.entry(r.hash.clone()).or_insert(0);
        }
        self.scale.entry(desired.clone()).or_insert(0);

        // Old revisions beyond the history limit go (never the stable, desired or previous one).
        let keep: Vec<String> =
            [self.st.stable_revision.clone(), Some(desired.clone()), self.st.previous_revision.clone()]
                .into_iter()
                .flatten()
                .collect();
        let mut old: Vec<&Revision> = self
            .observed
            .revisions
            .iter()
            .filter(|r| !keep.contains(&r.hash) && r.replicas == 0 && r.ready == 0)
            .collect();
        old.sort_by_key(|r| std::cmp::Reverse(r.created));
        let limit = usize::try_from(self.spec.revision_history_limit.max(0)).unwrap_or(0);
        let delete_revisions: Vec<String> = old.iter().skip(limit).map(|r| r.hash.clone()).collect();
        for r in &delete_revisions {
            self.scale.remove(r);
        }

        let total_pods: i32 = self.observed.revisions.iter().map(|r| r.replicas).sum();
        let ready_pods: i32 = self.observed.revisions.iter().map(|r| r.ready).sum();
        let st = &mut self.st;
        st.observed_generation = self.generation;
        st.replicas = Some(total_pods);
        st.ready_replicas = Some(ready_pods);
        st.available_replicas = Some(ready_pods);
        st.updated_replicas =
            Some(self.observed.revisions.iter().find(|r| r.hash == desired).map_or(0, |r| r.replicas));
        st.ready = Some(format!("{ready_pods}/{}", self.total));
        st.selector = Some(self.observed.selector.clone());
        st.phase = Some(self.phase.clone());
        st.message = Some(self.message.clone());

        let now = ts(self.now);
        let g = self.generation;
        let healthy = self.phase == AppPhase::Healthy;
        let stable_ready = st
            .stable_revision
            .as_ref()
            .map_or(0, |s| self.observed.revisions.iter().find(|r| &r.hash == s).map_or(0, |r| r.ready));
        let (_, unavailable) = surge_and_unavailable(
            &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0),
            &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0),
            self.total,
        );
        let available =
            ready_pods >= (self.total - unavailable).max(0) && (stable_ready > 0 || self.total == 0);
        let c = &mut st.conditions;
        conditions::set(
            c,
            conditions::AVAILABLE,
            available,
            if available { "EnoughPodsReady" } else { "NotEnoughPodsReady" },
            format!("{ready_pods} of {} pods ready", self.total),
            g,
            &now,
        );
        let progressing = self.phase == AppPhase::Progressing;
        conditions::set(
            c,
            conditions::PROGRESSING,
            progressing,
            if progressing { "RolloutProgressing" } else { "RolloutSettled" },
            self.message.clone(),
            g,
            &now,
        );
        let paused = self.phase == AppPhase::Paused;
        conditions::set(
            c,
            conditions::PAUSED,
            paused,
            if paused { "RolloutPaused" } else { "NotPaused" },
            if paused { self.message.clone() } else { String::new() },
            g,
            &now,
        );
        conditions::set(
            c,
            conditions::HEALTHY,
            healthy,
            if healthy { "AllPodsReady" } else { "NotHealthy" },
            if healthy { String::new() } else { self.message.clone() },
            g,
            &now,
        );
        let crash = self.observed.revisions.iter().find(|r| r.hash == desired).map_or(0, |r| r.max_restarts);
        // After an automatic rollback the failing pods are gone; the condition stays until a retry
        // or a new revision.
        let was_failing = st.abort && conditions::is_true(&self.old.conditions, conditions::REPLICA_FAILURE);
        let failing = (crash > 0 && !healthy) || was_failing;
        conditions::set(
            c,
            conditions::REPLICA_FAILURE,
            failing,
            if failing { "PodsRestarting" } else { "NoFailures" },
            if failing {
                format!("pods of revision {desired} restarted {crash} times")
            } else {
                String::new()
            },
            g,
            &now,
        );
        let invalid = self.observed.invalid.is_some();
        conditions::set(
            c,
            conditions::INVALID_SPEC,
            invalid,
            if invalid { "CannotCarryOut" } else { "Valid" },
            self.observed.invalid.clone().unwrap_or_default(),
            g,
            &now,
        );

        if self.old.phase != st.phase {
            let warning = self.phase == AppPhase::Degraded;
            let message = format!("{:?}: {}", self.phase, self.message);
            let reason = match self.phase {
                AppPhase::Healthy => "Healthy",
                AppPhase::Degraded => "Degraded",
                AppPhase::Paused => "Paused",
                AppPhase::Progressing => "Progressing",
            };
            self.notes.push(Note { warning, reason, message });
        }

        let header_configured = self
            .spec
            .strategy
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .and_then(|c| c.traffic_routing.as_ref())
            .is_some_and(|t| t.header_route.is_some());
        let canary_live = self.canary_running && !self.st.abort;
        let traffic = self.router().then(|| Traffic {
            canary_weight: if canary_live { self.router_weight } else { 0 },
            header_route: canary_live
                && header_configured
                && self.observed.revisions.iter().any(|r| r.hash == desired && r.ready > 0),
        });
        // Runs of a rollout that goes on are kept even when this reconcile did not look at them
        // (the App is paused, the spec cannot be carried out now, a step was promoted past);
        // a promoted, aborted or superseded rollout keeps none.
        let rolling = self.st.stable_revision.as_deref() != Some(desired.as_str()) && !self.st.abort;
        let mut keep_analysis_runs: Vec<String> = self.runs.iter().map(|r| r.name.clone()).collect();
        if rolling {
            for r in &self.st.analysis_runs {
                if r.phase == AnalysisPhase::Running && !keep_analysis_runs.contains(&r.name) {
                    keep_analysis_runs.push(r.name.clone());
                }
            }
        }
        Plan {
            traffic,
            status: self.st,
            scale: self.scale,
            active: self.active,
            preview: self.preview,
            create_job: self.create_job,
            delete_revisions,
            delete_pods: self.delete_pods,
            notes: self.notes,
            requeue_after: self.requeue,
            analysis_runs: self.runs,
            keep_analysis_runs,
            ask_gates: self.ask_gates,
        }
    }
}

fn jiff_secs(secs: i64) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::from_secs(secs)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![];
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}
