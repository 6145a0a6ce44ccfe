//! Scenario tests of the engine: a tiny simulated cluster applies each plan (pods of a revision
//! become ready one reconcile after they are asked for, unless the revision crashes) while an
//! injected clock moves. Invariants are checked on every reconcile.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;
use crate::api::analysis::AnalysisPhase;
use crate::api::app::{AppPhase, AppSpec, AppStatus};

mod gates;

struct World {
    spec: AppSpec,
    status: AppStatus,
    annotations: BTreeMap<String, String>,
    revisions: Vec<Revision>,
    now: Timestamp,
    /// Revisions whose pods never become ready and restart on every reconcile.
    crashing: BTreeSet<String>,
    /// Revisions whose pods never become ready (but do not crash).
    stuck: BTreeSet<String>,
    pre_deploy: JobState,
    post_deploy: JobState,
    pods_to_restart: Vec<String>,
    /// AnalysisRuns in the simulated cluster, by name.
    runs: BTreeMap<String, ObservedRun>,
    /// Purpose of each run, by name.
    run_purposes: BTreeMap<String, String>,
    /// What the runs of a purpose decide (applied to running runs on every reconcile).
    verdicts: BTreeMap<String, ObservedRun>,
    /// Runs created, in order.
    runs_created: Vec<String>,
    /// Runs terminated (running but no longer asked for), in order.
    runs_terminated: Vec<String>,
    invalid: Option<String>,
    last: Option<Plan>,
    jobs_created: Vec<(String, JobKind)>,
    deleted_pods: Vec<String>,
    token: u32,
    /// What each webhook gate answers when asked (a webhook missing here answers no).
    gate_answers: BTreeMap<String, bool>,
    /// Every gate asked, in order.
    gates_asked: Vec<String>,
}

fn spec(yaml: &str) -> AppSpec {
    serde_yaml_ng::from_str(yaml).expect("test spec parses")
}

/// The revision id the test world uses for an image.
fn rev(image: &str) -> String {
    format!("r-{}", image.rsplit(':').next().unwrap_or(image))
}

impl World {
    fn new(yaml: &str) -> Self {
        Self {
            spec: spec(yaml),
            status: AppStatus::default(),
            annotations: BTreeMap::new(),
            revisions: vec![],
            now: Timestamp::from_second(1_800_000_000).expect("valid"),
            crashing: BTreeSet::new(),
            stuck: BTreeSet::new(),
            pre_deploy: JobState::NotConfigured,
            post_deploy: JobState::NotConfigured,
            pods_to_restart: vec![],
            runs: BTreeMap::new(),
            run_purposes: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            runs_created: vec![],
            runs_terminated: vec![],
            invalid: None,
            last: None,
            jobs_created: vec![],
            deleted_pods: vec![],
            token: 0,
            gate_answers: BTreeMap::new(),
            gates_asked: vec![],
        }
    }

    fn desired(&self) -> String {
        rev(&self.spec.image)
    }

    fn total(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }

    fn tick(&mut self) -> Plan {
        let mut observed = Observed {
            desired_revision: self.desired(),
            revisions: self.revisions.clone(),
            pre_deploy: self.pre_deploy.clone(),
            post_deploy: self.post_deploy.clone(),
            pods_to_restart: self.pods_to_restart.clone(),
            name: "api".into(),
            analysis_runs: self.runs.clone(),
            invalid: self.invalid.clone(),
            selector: "platform.authentify.it/app=api".into(),
            gates: BTreeMap::new(),
        };
        let decide_with = |observed: &Observed| {
            decide(Input {
                spec: &self.spec,
                generation: Some(1),
                annotations: &self.annotations,
                status: &self.status,
                observed,
                now: self.now,
            })
        };
        let mut plan = decide_with(&observed);
        if !plan.ask_gates.is_empty() {
            // As the controller does: ask the gates, then decide again with their answers.
            for name in &plan.ask_gates {
                let passed = self.gate_answers.get(name).copied().unwrap_or(false);
                let message = if passed { "200 OK" } else { "403 Forbidden: not yet" }.to_string();
                observed.gates.insert(name.clone(), GateAnswer { passed, message });
            }
            self.gates_asked.extend(plan.ask_gates.iter().cloned());
            plan = decide_with(&observed);
            assert!(plan.ask_gates.is_empty(), "answered gates are not asked twice in a reconcile");
        }
        // Apply: sizes, readiness one reconcile later, restarts for crashing revisions.
        for (hash, n) in &plan.scale {
            let image = format!("img:{}", hash.trim_start_matches("r-"));
            match self.revisions.iter_mut().find(|r| &r.hash == hash) {
                Some(r) => r.replicas = *n,
                None => self.revisions.push(Revision {
                    hash: hash.clone(),
                    image,
                    replicas: *n,
                    ready: 0,
                    max_restarts: 0,
                    created: self.now,
                }),
            }
        }
        self.revisions.retain(|r| !plan.delete_revisions.contains(&r.hash));
        for r in &mut self.revisions {
            if self.crashing.contains(&r.hash) {
                r.ready = 0;
                if r.replicas > 0 {
                    r.max_restarts += 1;
                }
            } else if self.stuck.contains(&r.hash) {
                r.ready = 0;
            } else {
                r.ready = r.replicas;
            }
        }
        if let Some(kind) = plan.create_job {
            self.jobs_created.push((self.desired(), kind));
        }
        self.deleted_pods.extend(plan.delete_pods.iter().cloned());
        // AnalysisRuns: create the ones asked for, terminate the running ones that are not
        // (they finish Successful, as in Argo Rollouts), then let each running run decide.
        for request in &plan.analysis_runs {
            if !self.runs.contains_key(&request.name) {
                self.runs.insert(request.name.clone(), ObservedRun::default());
                self.run_purposes.insert(request.name.clone(), request.purpose.clone());
                self.runs_created.push(request.name.clone());
            }
        }
        for (name, run) in &mut self.runs {
            if run.phase == AnalysisPhase::Running && !plan.keep_analysis_runs.contains(name) {
                run.phase = AnalysisPhase::Successful;
                run.message = "terminated".into();
                self.runs_terminated.push(name.clone());
            }
        }
        for (name, run) in &mut self.runs {
            let purpose = &self.run_purposes[name];
            if run.phase == AnalysisPhase::Running
                && let Some(verdict) = self.verdicts.get(purpose)
            {
                *run = verdict.clone();
            }
        }
        self.status = plan.status.clone();
        self.last = Some(plan.clone());
        plan
    }

    /// Ticks until the phase is one of `phases` (at most 30 reconciles), checking invariants.
    fn run_until(&mut self, phases: &[AppPhase]) -> Plan {
        for _ in 0..30 {
            let before_ready = self.ready_total();
            let plan = self.tick();
            self.check_invariants(before_ready);
            if plan.status.phase.as_ref().is_some_and(|p| phases.contains(p)) {
                return plan;
            }
            self.now += SignedDuration::from_secs(1);
        }
        panic!("never reached {phases:?}; last status: {:#?}", self.status);
    }

    fn ready_total(&self) -> i32 {
        self.revisions.iter().map(|r| r.ready).sum()
    }

    /// The App never has fewer ready pods than before a reconcile, once it was fully up (maxUnavailable 0).
    fn check_invariants(&self, before: i32) {
        let total = self.total();
        if before >= total {
            let stable = self.status.stable_revision.clone().unwrap_or_default();
            let asked_stable = self.revisions.iter().find(|r| r.hash == stable).map_or(0, |r| r.replicas);
            let ready_others: i32 =
                self.revisions.iter().filter(|r| r.hash != stable).map(|r| r.ready.min(r.replicas)).sum();
            assert!(
                asked_stable + ready_others >= total.min(before),
                "availability dropped: stable asked {asked_stable}, other ready {ready_others}, N={total}; {:?}",
                self.revisions
            );
        }
    }

    fn set_image(&mut self, image: &str) {
        self.spec.image = image.to_string();
    }

    fn control(&mut self, key: &str) {
        self.token += 1;
        self.annotations.insert(key.to_string(), format!("t{}", self.token));
    }

    fn advance(&mut self, secs: i64) {
        self.now += SignedDuration::from_secs(secs);
    }

    fn replicas(&self, hash: &str) -> i32 {
        self.revisions.iter().find(|r| r.hash == hash).map_or(0, |r| r.replicas)
    }

    /// Runs of `purpose` from now on decide `phase`.
    fn decide_runs(&mut self, purpose: &str, phase: AnalysisPhase, message: &str) {
        self.verdicts.insert(purpose.to_string(), ObservedRun { phase, message: message.to_string() });
    }

    fn reasons(&self) -> Vec<&'static str> {
        self.last.as_ref().map_or(vec![], |p| p.notes.iter().map(|n| n.reason).collect())
    }
}

const CANARY: &str = r#"
image: img:1
replicas: 4
strategy:
  canary:
    steps:
      - setWeight: 25
      - pause: {duration: 1m}
      - setWeight: 50
      - pause: {}
"#;

fn deployed(yaml: &str) -> World {
    let mut w = World::new(yaml);
    let plan = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(plan.status.stable_revision.as_deref(), Some("r-1"));
    w
}

#[test]
fn first_deploy_goes_straight_to_healthy_without_steps() {
    let mut w = World::new(CANARY);
    let first = w.tick();
    assert_eq!(first.status.stable_revision.as_deref(), Some("r-1"), "first revision is stable at once");
    assert_eq!(first.scale.get("r-1"), Some(&4));
    assert_eq!(first.status.current_step_index, None);
    assert!(first.notes.iter().any(|n| n.reason == "Deployed"));
    let healthy = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(healthy.status.ready.as_deref(), Some("4/4"));
    assert_eq!(healthy.active, Selector::AllRevisions);
    assert_eq!(healthy.status.strategy.as_deref(), Some("Canary"));
    assert_eq!(healthy.requeue_after, None, "a healthy App needs no timer");
}

#[test]
fn canary_good_release_walks_steps_pauses_and_promotes() {
    let mut w = deployed(CANARY);
    w.set_image("img:2");
    let paused = w.run_until(&[AppPhase::Paused]);
    assert_eq!(paused.status.current_step_index, Some(1));
    assert_eq!(paused.status.canary_weight, Some(25));
    assert_eq!(paused.status.step.as_deref(), Some("2/4"));
    assert_eq!((w.replicas("r-2"), w.replicas("r-1")), (1, 3), "25% of 4 pods");
    let msg = paused.status.message.clone().unwrap_or_default();
    assert!(msg.starts_with("canary at 25%, step 2/4: pause 1m ("), "{msg}");
    let requeue = paused.requeue_after.expect("a timed pause requeues when it ends");
    assert!(requeue <= Duration::from_secs(60) && requeue > Duration::from_secs(55), "{requeue:?}");

    // Nothing changes before the pause ends.
    w.advance(30);
    let still = w.tick();
    assert_eq!(still.status.current_step_index, Some(1));
    assert!(still.status.message.unwrap_or_default().contains("30s left"));

    w.advance(31);
    let waiting = w.run_until(&[AppPhase::Paused]);
    assert_eq!(waiting.status.current_step_index, Some(3));
    assert_eq!(waiting.status.canary_weight, Some(50));
    assert!(waiting.status.message.unwrap_or_default().contains("paused until promoted"));
    assert_eq!(
        waiting.requeue_after.filter(|d| *d < Duration::from_secs(500)),
        None,
        "an indefinite pause sets no short timer"
    );
    assert_eq!((w.replicas("r-2"), w.replicas("r-1")), (2, 2));

    w.control(PROMOTE);
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
    assert_eq!((w.replicas("r-2"), w.replicas("r-1")), (4, 0));
    assert_eq!(done.status.history[0].outcome, "Promoted");
    assert_eq!(done.status.history[0].revision, "r-2");
    assert_eq!(done.status.canary_weight, None);
    assert!(w.reasons().contains(&"Promoted") || done.status.phase == Some(AppPhase::Healthy));
}

#[test]
fn a_control_token_acts_once() {
    let mut w = deployed(CANARY);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.control(PROMOTE); // promotes the 1m pause
    w.run_until(&[AppPhase::Paused]);
    assert_eq!(w.status.current_step_index, Some(3), "now at the manual pause");
    // The same token seen again does nothing.
    for _ in 0..3 {
        w.tick();
    }
    assert_eq!(w.status.current_step_index, Some(3));
    assert_eq!(w.status.phase, Some(AppPhase::Paused));
}

#[test]
fn promote_full_skips_remaining_steps() {
    let mut w = deployed(CANARY);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.control(PROMOTE_FULL);
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
    assert_eq!(w.replicas("r-1"), 0);
}

#[test]
fn abort_restores_stable_and_retry_starts_over() {
    let mut w = deployed(CANARY);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.control(ABORT);
    let aborted = w.run_until(&[AppPhase::Degraded]);
    assert!(aborted.status.abort);
    assert_eq!(aborted.scale.get("r-2"), Some(&0));
    assert_eq!(aborted.scale.get("r-1"), Some(&4));
    assert_eq!(aborted.status.canary_weight, Some(0));
    assert!(aborted.status.message.unwrap_or_default().contains("aborted on request"));
    assert!(w.reasons().contains(&"RolloutAborted"));
    assert_eq!(aborted.status.history[0].outcome, "Aborted");
    // It stays aborted, and keeps saying why.
    w.advance(3600);
    let later = w.tick();
    assert_eq!(later.status.phase, Some(AppPhase::Degraded));
    assert!(later.status.message.unwrap_or_default().contains("aborted on request"));

    w.control(RETRY);
    let again = w.run_until(&[AppPhase::Paused]);
    assert!(!again.status.abort);
    assert_eq!(again.status.current_step_index, Some(1));
    assert_eq!(w.replicas("r-2"), 1);
    w.control(PROMOTE_FULL);
    let done = w.run_until(&[AppPhase::Healthy]);
    let outcomes: Vec<&str> = done.status.history.iter().map(|h| h.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        vec!["Promoted", "Aborted", "Promoted"],
        "the retry is its own attempt in the history"
    );
}

#[test]
fn crash_looping_release_rolls_back_by_itself() {
    let mut w = deployed(CANARY);
    w.crashing.insert("r-2".into());
    w.set_image("img:2");
    let degraded = w.run_until(&[AppPhase::Degraded]);
    let msg = degraded.status.message.unwrap_or_default();
    assert!(msg.contains("crash-looping"), "{msg}");
    assert!(msg.contains("revision r-1 serves"), "{msg}");
    let again = w.tick();
    assert!(
        again.status.message.unwrap_or_default().contains("crash-looping"),
        "the reason survives later reconciles"
    );
    w.crashing.clear();
    w.revisions.iter_mut().for_each(|r| r.max_restarts = 0); // the crashed pods are gone
    let later = w.tick();
    assert!(
        later.status.conditions.iter().any(|c| c.type_ == "ReplicaFailure" && c.status == "True"),
        "still failed"
    );
    assert_eq!(degraded.scale.get("r-2"), Some(&0));
    assert_eq!(w.replicas("r-1"), 4, "the stable never shrank");
    assert!(degraded.status.conditions.iter().any(|c| c.type_ == "ReplicaFailure" && c.status == "True"));
}

#[test]
fn no_progress_within_the_deadline_rolls_back() {
    let mut w = deployed(&CANARY.replace("replicas: 4", "replicas: 4\nprogressDeadlineSeconds: 120"));
    w.stuck.insert("r-2".into());
    w.set_image("img:2");
    let plan = w.tick();
    assert_eq!(plan.status.phase, Some(AppPhase::Progressing));
    let requeue = plan.requeue_after.expect("the deadline sets a timer");
    assert!(requeue <= Duration::from_secs(120));
    w.advance(119);
    assert_eq!(w.tick().status.phase, Some(AppPhase::Progressing));
    w.advance(2);
    let degraded = w.tick();
    assert_eq!(degraded.status.phase, Some(AppPhase::Degraded));
    assert!(degraded.status.message.unwrap_or_default().contains("no progress within 2m"));
    assert_eq!(w.replicas("r-1"), 4);
}

#[test]
fn automatic_rollback_can_be_turned_off() {
    let mut w = deployed(&CANARY.replace("replicas: 4", "replicas: 4\nautoRollback: {enabled: false}"));
    w.crashing.insert("r-2".into());
    w.set_image("img:2");
    for _ in 0..10 {
        w.tick();
        w.advance(1);
    }
    assert_ne!(w.status.phase, Some(AppPhase::Degraded));
}

#[test]
fn indefinite_pause_does_not_hit_the_progress_deadline() {
    let mut w = deployed(&CANARY.replace("replicas: 4", "replicas: 4\nprogressDeadlineSeconds: 60"));
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.advance(61);
    w.run_until(&[AppPhase::Paused]);
    assert_eq!(w.status.current_step_index, Some(3));
    w.advance(3600);
    assert_eq!(w.tick().status.phase, Some(AppPhase::Paused), "a person is waited for without a deadline");
}

#[test]
fn rolling_update_without_steps() {
    let mut w = deployed("image: img:1\nreplicas: 3\n");
    w.set_image("img:2");
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
    assert_eq!(done.status.strategy.as_deref(), Some("Rolling"));
    assert_eq!((w.replicas("r-2"), w.replicas("r-1")), (3, 0));
}

#[test]
fn pre_deploy_job_runs_first_and_its_failure_stops_the_rollout() {
    let mut w = deployed(CANARY);
    w.pre_deploy = JobState::Missing;
    w.set_image("img:2");
    let plan = w.tick();
    assert_eq!(plan.create_job, Some(JobKind::PreDeploy));
    assert_eq!(plan.scale.get("r-2"), Some(&0), "no pods of the new revision before the job");
    assert!(plan.status.message.unwrap_or_default().contains("pre-deploy"));
    w.pre_deploy = JobState::Running;
    assert_eq!(w.tick().create_job, None);
    w.pre_deploy = JobState::Failed("exit 1: migration 0042 failed: relation \"users\" exists".into());
    let failed = w.tick();
    assert_eq!(failed.status.phase, Some(AppPhase::Degraded));
    let msg = failed.status.message.unwrap_or_default();
    assert!(msg.contains("pre-deploy job of revision r-2 failed"), "{msg}");
    assert!(msg.contains("migration 0042 failed"), "{msg}");
    assert_eq!(w.replicas("r-1"), 4);
}

#[test]
fn pre_deploy_success_lets_the_canary_start() {
    let mut w = deployed(CANARY);
    w.pre_deploy = JobState::Succeeded;
    w.set_image("img:2");
    let paused = w.run_until(&[AppPhase::Paused]);
    assert_eq!(paused.status.canary_weight, Some(25));
}

#[test]
fn post_deploy_job_runs_after_promotion() {
    let mut w = deployed("image: img:1\nreplicas: 2\n");
    w.post_deploy = JobState::Missing;
    w.set_image("img:2");
    w.run_until(&[AppPhase::Healthy]);
    assert!(w.jobs_created.contains(&("r-2".to_string(), JobKind::PostDeploy)), "{:?}", w.jobs_created);
}

#[test]
fn app_pause_freezes_the_rollout() {
    let mut w = deployed(CANARY);
    w.set_image("img:2");
    w.tick();
    let before: Vec<(String, i32)> = w.revisions.iter().map(|r| (r.hash.clone(), r.replicas)).collect();
    w.spec.paused = true;
    let plan = w.tick();
    assert_eq!(plan.status.phase, Some(AppPhase::Paused));
    assert!(plan.status.message.unwrap_or_default().contains("paused on request"));
    for (hash, n) in before {
        assert_eq!(plan.scale.get(&hash), Some(&n), "{hash} changed while paused");
    }
    w.spec.paused = false;
    w.run_until(&[AppPhase::Paused]);
    assert_eq!(w.status.current_step_index, Some(1));
}

const BLUE_GREEN: &str = r#"
image: img:1
replicas: 3
route: {host: api.example.com}
strategy:
  blueGreen:
    scaleDownDelaySeconds: 30
"#;

#[test]
fn blue_green_switches_only_when_preview_is_ready_and_promoted() {
    let mut w = deployed(BLUE_GREEN);
    w.set_image("img:2");
    let plan = w.tick();
    assert_eq!(plan.active, Selector::Revision("r-1".into()), "active stays on the old revision");
    assert_eq!(plan.preview, Selector::Revision("r-2".into()));
    assert_eq!(plan.scale.get("r-2"), Some(&3));
    let waiting = w.run_until(&[AppPhase::Paused]);
    assert!(waiting.status.message.unwrap_or_default().contains("waiting for promotion"));
    assert_eq!(waiting.active, Selector::Revision("r-1".into()));

    w.control(PROMOTE);
    let switched = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(switched.active, Selector::Revision("r-2".into()));
    assert_eq!(switched.status.stable_revision.as_deref(), Some("r-2"));
    assert_eq!(switched.status.previous_revision.as_deref(), Some("r-1"));
    assert_eq!(w.replicas("r-1"), 3, "old revision stays up during the scale-down delay");
    let requeue = switched.requeue_after.expect("scale-down timer");
    assert!(requeue <= Duration::from_secs(30));

    // Rollback inside the window: instant, no new pods.
    w.advance(10);
    w.set_image("img:1");
    let back = w.tick();
    assert_eq!(back.active, Selector::Revision("r-1".into()));
    assert_eq!(back.status.stable_revision.as_deref(), Some("r-1"));
    assert_eq!(back.status.phase, Some(AppPhase::Healthy));
    assert!(back.notes.iter().any(|n| n.reason == "RolledBack"));
    assert_eq!(w.replicas("r-2"), 3, "the revision switched away from stays up for its own delay");
    w.advance(31);
    w.tick();
    assert_eq!(w.replicas("r-2"), 0, "scaled down after the delay");
}

#[test]
fn blue_green_auto_promotion_and_preview_count() {
    let yaml = BLUE_GREEN.replace(
        "scaleDownDelaySeconds: 30",
        "scaleDownDelaySeconds: 0\n    autoPromotionSeconds: 60\n    previewReplicaCount: 1",
    );
    let mut w = deployed(&yaml);
    w.set_image("img:2");
    let paused = w.run_until(&[AppPhase::Paused]);
    assert_eq!(w.replicas("r-2"), 1, "preview runs previewReplicaCount pods");
    assert!(paused.status.message.unwrap_or_default().contains("promotes in 1m"));
    assert!(paused.requeue_after.is_some_and(|d| d <= Duration::from_secs(60)));
    w.advance(61);
    let plan = w.tick();
    assert_eq!(plan.scale.get("r-2"), Some(&3), "scaled to full size before the switch");
    assert_eq!(plan.active, Selector::Revision("r-1".into()), "no switch before all 3 are ready");
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.active, Selector::Revision("r-2".into()));
}

#[test]
fn undo_to_an_older_revision_skips_steps() {
    let mut w = deployed(CANARY);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.control(PROMOTE_FULL);
    w.run_until(&[AppPhase::Healthy]);
    w.set_image("img:1");
    let first = w.tick();
    assert!(first.notes.iter().any(|n| n.reason == "RollbackStarted"), "{:?}", first.notes);
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-1"));
    assert!(w.reasons().iter().all(|r| *r != "StepCompleted"));
}

#[test]
fn restart_replaces_stable_pods_one_at_a_time() {
    let mut w = deployed("image: img:1\nreplicas: 2\n");
    w.pods_to_restart = vec!["api-r-1-a".into(), "api-r-1-b".into()];
    let plan = w.tick();
    assert_eq!(plan.delete_pods, vec!["api-r-1-a".to_string()]);
    assert_eq!(plan.status.phase, Some(AppPhase::Progressing));
    w.pods_to_restart = vec![];
    assert_eq!(w.tick().status.phase, Some(AppPhase::Healthy));
}

#[test]
fn old_revisions_beyond_the_history_limit_are_deleted() {
    let mut w = deployed("image: img:1\nreplicas: 1\nrevisionHistoryLimit: 2\n");
    for i in 2..=6 {
        w.set_image(&format!("img:{i}"));
        w.advance(10);
        w.run_until(&[AppPhase::Healthy]);
    }
    w.tick();
    let hashes: Vec<&str> = w.revisions.iter().map(|r| r.hash.as_str()).collect();
    assert_eq!(hashes.len(), 3, "stable + 2 kept: {hashes:?}");
    assert!(hashes.contains(&"r-6") && hashes.contains(&"r-5") && hashes.contains(&"r-4"), "{hashes:?}");
}

#[test]
fn autoscaled_count_is_kept_within_bounds() {
    let mut w = World::new(
        "image: img:1\nreplicas: 1\nautoscaling: {minReplicas: 3, maxReplicas: 6, cpuPercent: 70}\n",
    );
    let plan = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(plan.scale.get("r-1"), Some(&3));
    assert_eq!(plan.status.ready.as_deref(), Some("3/3"));
}

#[test]
fn canary_shares_an_autoscaled_count() {
    let mut w = World::new(
        &format!("{CANARY}autoscaling: {{minReplicas: 2, maxReplicas: 10, cpuPercent: 70}}\n")
            .replace("replicas: 4", "replicas: 8"),
    );
    w.run_until(&[AppPhase::Healthy]);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    assert_eq!((w.replicas("r-2"), w.replicas("r-1")), (2, 6), "25% of the HPA's 8");
    w.spec.replicas = Some(4); // the HPA scales in during the pause
    w.tick();
    w.tick();
    assert_eq!((w.replicas("r-2"), w.replicas("r-1")), (1, 3), "both keep their share");
}

#[test]
fn an_unusable_spec_changes_nothing_and_says_why() {
    let mut w = deployed(CANARY);
    w.set_image("img:2");
    w.invalid = Some("Secret cache-redis of Redis cache does not exist yet".into());
    let plan = w.tick();
    assert_eq!(plan.status.phase, Some(AppPhase::Degraded));
    assert_eq!(plan.scale.get("r-1"), Some(&4));
    assert_eq!(plan.scale.get("r-2"), Some(&0));
    assert!(plan.status.conditions.iter().any(|c| c.type_ == "InvalidSpec" && c.status == "True"));
    w.invalid = None;
    assert_eq!(w.run_until(&[AppPhase::Paused]).status.current_step_index, Some(1));
}

const ANALYSED: &str = r#"
image: img:1
replicas: 2
strategy:
  canary:
    steps:
      - setWeight: 50
      - analysis: {templates: [error-rate]}
      - setWeight: 100
"#;

const BACKGROUND: &str = r#"
image: img:1
replicas: 2
strategy:
  canary:
    analysis: {templates: [golden]}
    steps:
      - setWeight: 50
      - pause: {}
"#;

impl World {
    /// Ticks `n` times, one second apart.
    fn ticks(&mut self, n: usize) -> Plan {
        let mut plan = self.tick();
        for _ in 1..n {
            self.advance(1);
            plan = self.tick();
        }
        plan
    }

    fn summary(&self, purpose: &str) -> Vec<(String, AnalysisPhase)> {
        self.status
            .analysis_runs
            .iter()
            .filter(|r| r.purpose == purpose)
            .map(|r| (r.name.clone(), r.phase))
            .collect()
    }

    fn all_reasons(&mut self, n: usize) -> Vec<&'static str> {
        let mut reasons = vec![];
        for _ in 0..n {
            self.advance(1);
            reasons.extend(self.tick().notes.iter().map(|n| n.reason));
        }
        reasons
    }
}

#[test]
fn a_passing_step_analysis_lets_the_canary_go_on() {
    let mut w = deployed(ANALYSED);
    w.set_image("img:2");
    let plan = w.ticks(6);
    assert_eq!(w.status.current_step_index, Some(1));
    assert!(plan.status.message.unwrap_or_default().contains("step 2/3: analysis running"));
    assert_eq!(w.runs_created.len(), 1, "one run however many reconciles");
    let name = w.runs_created[0].clone();
    assert!(name.starts_with("api-r-2-") && name.ends_with("-s2"), "{name}");
    assert_eq!(plan.analysis_runs.len(), 1);
    assert_eq!(plan.analysis_runs[0].analysis.templates, ["error-rate"]);
    w.decide_runs("step 2", AnalysisPhase::Successful, "error-rate: passed 3 of 3 measurements");
    let reasons = w.all_reasons(2);
    assert!(reasons.contains(&"AnalysisSuccessful") && reasons.contains(&"StepCompleted"), "{reasons:?}");
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
    assert_eq!(w.summary("step 2"), [(name, AnalysisPhase::Successful)], "the App's status sums it up");
    assert!(done.analysis_runs.is_empty() && w.runs_terminated.is_empty());
}

#[test]
fn the_step_run_starts_only_once_the_canary_is_at_its_weight() {
    let mut w = deployed(ANALYSED);
    w.set_image("img:2");
    w.stuck.insert("r-2".into());
    w.ticks(5);
    assert!(w.runs_created.is_empty(), "no analysis of pods that are not ready");
    w.stuck.clear();
    w.ticks(3);
    assert_eq!(w.runs_created.len(), 1, "it starts once they are");
}

#[test]
fn an_inconclusive_step_pauses_for_a_person_and_promote_goes_on() {
    let mut w = deployed(ANALYSED);
    w.set_image("img:2");
    w.decide_runs("step 2", AnalysisPhase::Inconclusive, "error-rate: 2 of 3 inconclusive");
    let plan = w.run_until(&[AppPhase::Paused]);
    assert!(plan.status.pause_conditions.iter().any(|p| p.reason == "InconclusiveAnalysis"));
    let message = plan.status.message.unwrap_or_default();
    assert!(
        message.contains("analysis inconclusive") && message.contains("2 of 3 inconclusive"),
        "{message}"
    );
    assert!(plan.notes.iter().any(|n| n.reason == "AnalysisInconclusive" && n.warning));
    let held = w.ticks(3);
    assert_eq!(held.status.phase, Some(AppPhase::Paused), "stays paused until a person decides");
    w.control(PROMOTE);
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
    assert_eq!(w.runs_created.len(), 1);
}

#[test]
fn a_failed_step_analysis_aborts() {
    let mut w = deployed(ANALYSED);
    w.set_image("img:2");
    w.decide_runs("step 2", AnalysisPhase::Failed, "error-rate: failed 2 of 3 measurements");
    let plan = w.run_until(&[AppPhase::Degraded]);
    assert!(plan.status.abort);
    let message = plan.status.message.unwrap_or_default();
    assert!(
        message.contains("analysis failed at step 2/3") && message.contains("failed 2 of 3"),
        "{message}"
    );
    assert_eq!(w.replicas("r-2"), 0);
    assert_eq!(w.replicas("r-1"), 2);
    assert!(w.reasons().contains(&"RolloutAborted") || w.status.history[0].outcome == "Aborted");
}

#[test]
fn promoting_a_running_analysis_terminates_its_run() {
    let mut w = deployed(ANALYSED);
    w.set_image("img:2");
    w.ticks(5);
    assert_eq!(w.runs_created.len(), 1);
    w.control(PROMOTE);
    w.run_until(&[AppPhase::Healthy]);
    assert_eq!(w.runs_terminated, w.runs_created, "the run nobody waits for stops");
}

#[test]
fn a_running_analysis_survives_pod_blips_pauses_and_unusable_specs() {
    let mut w = deployed(ANALYSED);
    w.set_image("img:2");
    w.ticks(5);
    assert_eq!(w.runs_created.len(), 1);
    w.stuck.insert("r-2".into());
    w.ticks(2);
    w.stuck.clear();
    w.spec.paused = true;
    w.ticks(3);
    w.spec.paused = false;
    w.invalid = Some("waiting for Secret x".into());
    w.ticks(2);
    w.invalid = None;
    assert!(w.runs_terminated.is_empty(), "terminated: {:?}", w.runs_terminated);
    w.decide_runs("step 2", AnalysisPhase::Successful, "passed");
    w.run_until(&[AppPhase::Healthy]);
    assert_eq!(w.runs_created.len(), 1);
}

#[test]
fn a_lost_status_write_does_not_duplicate_runs() {
    let mut w = deployed(ANALYSED);
    w.set_image("img:2");
    w.ticks(3);
    let before = w.status.clone();
    w.ticks(3);
    assert_eq!(w.runs_created.len(), 1);
    // The operator restarts before it recorded the run: the status it finds is the older one.
    w.status = before;
    w.ticks(3);
    assert_eq!(w.runs_created.len(), 1, "the same name is asked for again: {:?}", w.runs_created);
}

#[test]
fn a_long_analysis_does_not_trip_the_progress_deadline() {
    let mut w = deployed(&ANALYSED.replace("replicas: 2", "replicas: 2\nprogressDeadlineSeconds: 60"));
    w.set_image("img:2");
    w.ticks(5);
    for _ in 0..10 {
        w.advance(30);
        w.tick();
    }
    assert_eq!(w.status.phase, Some(AppPhase::Progressing), "{:?}", w.status.message);
    assert!(!w.status.abort);
}

#[test]
fn background_analysis_runs_for_the_whole_rollout() {
    let mut w = deployed(BACKGROUND);
    w.set_image("img:2");
    let plan = w.run_until(&[AppPhase::Paused]);
    let bg = w.summary("background");
    assert_eq!(bg.len(), 1);
    assert!(plan.analysis_runs.iter().any(|r| r.name == bg[0].0), "still asked for during the pause");
    w.control(PROMOTE);
    w.run_until(&[AppPhase::Healthy]);
    assert_eq!(w.runs_terminated, [bg[0].0.clone()], "terminated once the rollout is promoted");
}

#[test]
fn failed_background_analysis_aborts_at_any_step() {
    let mut w = deployed(BACKGROUND);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.decide_runs("background", AnalysisPhase::Error, "success-rate: 5 errors in a row");
    let plan = w.run_until(&[AppPhase::Degraded]);
    let message = plan.status.message.unwrap_or_default();
    assert!(
        message.starts_with("background analysis failed") && message.contains("5 errors in a row"),
        "{message}"
    );
    assert_eq!(w.replicas("r-2"), 0);
}

#[test]
fn inconclusive_background_analysis_pauses_and_promote_starts_a_new_one() {
    let mut w = deployed(BACKGROUND);
    w.set_image("img:2");
    w.decide_runs("background", AnalysisPhase::Inconclusive, "latency-p99: inconclusive");
    let plan = w.run_until(&[AppPhase::Paused]);
    assert!(plan.status.pause_conditions.iter().any(|p| p.reason == "InconclusiveAnalysis"));
    assert!(plan.status.message.unwrap_or_default().contains("background analysis inconclusive"));
    w.verdicts.clear();
    w.control(PROMOTE);
    w.ticks(2);
    let bg = w.summary("background");
    assert_eq!(bg.len(), 2, "a fresh background run after the person's promote: {bg:?}");
    assert!(bg[1].0.ends_with("-bg-1"), "{bg:?}");
    assert_eq!(bg[1].1, AnalysisPhase::Running);
    assert!(!w.status.pause_conditions.iter().any(|p| p.reason == "InconclusiveAnalysis"));
}

#[test]
fn a_superseded_or_retried_rollout_gets_new_runs() {
    let mut w = deployed(BACKGROUND);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    let first = w.runs_created.clone();
    w.advance(5);
    w.set_image("img:3");
    w.run_until(&[AppPhase::Paused]);
    assert_eq!(w.runs_terminated, first, "the superseded rollout's run stops");
    assert_eq!(w.runs_created.len(), 2);
    assert!(w.runs_created[1].starts_with("api-r-3-"));

    w.control(ABORT);
    w.run_until(&[AppPhase::Degraded]);
    assert_eq!(w.runs_terminated.len(), 2, "an aborted rollout's run stops");
    w.advance(5);
    w.control(RETRY);
    w.run_until(&[AppPhase::Paused]);
    assert_eq!(w.runs_created.len(), 3);
    assert_ne!(w.runs_created[2], w.runs_created[1], "a retry is a new attempt with its own run");
}

#[test]
fn a_retry_within_the_second_its_rollout_started_gets_a_new_run() {
    // Status keeps times in whole seconds: the rollout starting, its analysis failing and a
    // person retrying can all fall within one. The retry must not find the failed run again.
    let mut w = deployed(ANALYSED);
    w.decide_runs("step 2", AnalysisPhase::Failed, "error-rate: failed 1 of 1 measurements");
    w.set_image("img:2");
    for _ in 0..10 {
        if w.tick().status.abort {
            break;
        }
    }
    assert!(w.status.abort, "the failed analysis aborts: {:#?}", w.status);
    assert_eq!(w.runs_created.len(), 1);
    w.control(RETRY);
    w.tick();
    assert!(!w.status.abort, "the retry is taken");
    for _ in 0..10 {
        if w.tick().status.abort {
            break;
        }
    }
    assert_eq!(w.runs_created.len(), 2, "the retry measures again: {:?}", w.runs_created);
    assert_ne!(w.runs_created[0], w.runs_created[1]);
}

const BLUE_GREEN_ANALYSED: &str = r#"
image: img:1
replicas: 2
strategy:
  blueGreen:
    autoPromotionSeconds: 0
    scaleDownDelaySeconds: 30
    prePromotionAnalysis: {templates: [smoke]}
    postPromotionAnalysis: {templates: [error-rate]}
"#;

#[test]
fn pre_promotion_analysis_gates_the_switch() {
    let mut w = deployed(BLUE_GREEN_ANALYSED);
    w.set_image("img:2");
    let plan = w.ticks(6);
    assert_eq!(plan.active, Selector::Revision("r-1".into()));
    assert!(plan.status.message.unwrap_or_default().contains("pre-promotion analysis running"));
    assert_eq!(w.summary("pre-promotion").len(), 1);
    w.decide_runs("pre-promotion", AnalysisPhase::Failed, "smoke: failed");
    let plan = w.run_until(&[AppPhase::Degraded]);
    assert!(plan.status.message.unwrap_or_default().starts_with("pre-promotion analysis failed"));
    assert_eq!(plan.active, Selector::Revision("r-1".into()));
    assert_eq!(w.replicas("r-2"), 0);
}

#[test]
fn inconclusive_pre_promotion_waits_for_a_person() {
    let mut w = deployed(BLUE_GREEN_ANALYSED);
    w.set_image("img:2");
    w.decide_runs("pre-promotion", AnalysisPhase::Inconclusive, "smoke: inconclusive");
    let plan = w.run_until(&[AppPhase::Paused]);
    assert!(plan.status.pause_conditions.iter().any(|p| p.reason == "InconclusiveAnalysis"));
    assert_eq!(w.ticks(3).active, Selector::Revision("r-1".into()), "no switch on its own");
    w.control(PROMOTE);
    w.decide_runs("post-promotion", AnalysisPhase::Successful, "error-rate: passed");
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
}

#[test]
fn post_promotion_analysis_can_switch_back() {
    let mut w = deployed(BLUE_GREEN_ANALYSED);
    w.set_image("img:2");
    w.decide_runs("pre-promotion", AnalysisPhase::Successful, "smoke: passed");
    let mut switched = None;
    for _ in 0..20 {
        w.advance(1);
        let plan = w.tick();
        if plan.active == Selector::Revision("r-2".into()) {
            switched = Some(plan);
            break;
        }
    }
    let switched = switched.expect("switched to the new revision");
    assert_eq!(
        switched.status.stable_revision.as_deref(),
        Some("r-1"),
        "not stable before post-promotion passes"
    );
    assert!(switched.notes.iter().any(|n| n.reason == "Switched"));
    let plan = w.ticks(3);
    assert_eq!(plan.active, Selector::Revision("r-2".into()));
    assert_eq!(w.replicas("r-1"), 2, "the old revision stays at full size meanwhile");
    assert!(plan.status.message.unwrap_or_default().contains("post-promotion analysis running"));
    w.decide_runs("post-promotion", AnalysisPhase::Failed, "error-rate: failed 1 of 1");
    let back = w.run_until(&[AppPhase::Degraded]);
    assert_eq!(back.active, Selector::Revision("r-1".into()), "switched back at once");
    assert!(back.status.message.unwrap_or_default().starts_with("post-promotion analysis failed"));
    assert_eq!(back.status.stable_revision.as_deref(), Some("r-1"));
}

#[test]
fn post_promotion_success_makes_the_new_revision_stable() {
    let mut w = deployed(BLUE_GREEN_ANALYSED);
    w.set_image("img:2");
    w.decide_runs("pre-promotion", AnalysisPhase::Successful, "smoke: passed");
    w.decide_runs("post-promotion", AnalysisPhase::Successful, "error-rate: passed");
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
    let purposes: Vec<&str> = done.status.analysis_runs.iter().map(|r| r.purpose.as_str()).collect();
    assert_eq!(purposes, ["pre-promotion", "post-promotion"]);
    assert!(done.status.analysis_runs.iter().all(|r| r.phase == AnalysisPhase::Successful));
}

#[test]
fn status_is_identical_when_nothing_changes() {
    let mut w = deployed(CANARY);
    let a = w.tick();
    w.advance(120);
    let b = w.tick();
    assert_eq!(a.status, b.status, "a steady App must not churn its status (no idle writes)");
    assert!(b.notes.is_empty());
}

#[test]
fn a_new_image_mid_rollout_supersedes_the_running_one() {
    let mut w = deployed(CANARY);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.set_image("img:3");
    let plan = w.run_until(&[AppPhase::Paused]);
    assert_eq!(plan.scale.get("r-2"), Some(&0));
    assert_eq!(w.status.history[1].outcome, "Superseded");
    assert_eq!(w.status.current_revision.as_deref(), Some("r-3"));
}

const NGINX: &str = r#"
image: img:1
replicas: 4
route: {host: api.example.com, ingressClassName: nginx}
strategy:
  canary:
    trafficRouting:
      nginx: {}
      headerRoute: {name: X-Canary, value: always}
    steps:
      - setWeight: 25
      - pause: {}
      - setWeight: 50
      - pause: {}
"#;

fn traffic(plan: &Plan) -> (i32, bool) {
    plan.traffic.map(|t| (t.canary_weight, t.header_route)).expect("a router plan")
}

#[test]
fn router_moves_weight_only_once_canary_pods_are_ready_and_keeps_stable_full() {
    let mut w = deployed(NGINX);
    assert_eq!(traffic(w.last.as_ref().expect("plan")), (0, false), "no canary, no header route");
    assert_eq!(w.last.as_ref().map(|p| p.active.clone()), Some(Selector::Revision("r-1".into())));
    w.set_image("img:2");
    let first = w.tick();
    assert_eq!(first.scale.get("r-2"), Some(&1), "25% of 4 needs one canary pod");
    assert_eq!(first.scale.get("r-1"), Some(&4), "the stable keeps its full size");
    assert_eq!(traffic(&first).0, 0, "no traffic before the canary pod is ready");
    let paused = w.run_until(&[AppPhase::Paused]);
    assert_eq!(traffic(&paused), (25, true));
    assert_eq!(paused.status.canary_weight, Some(25));
    assert_eq!(paused.active, Selector::Revision("r-1".into()));
    assert_eq!(paused.preview, Selector::Revision("r-2".into()));

    w.control(PROMOTE);
    let moving = w.tick();
    assert_eq!(moving.scale.get("r-2"), Some(&2));
    assert_eq!(traffic(&moving).0, 25, "weight holds until the second canary pod is ready");
    let paused = w.run_until(&[AppPhase::Paused]);
    assert_eq!(traffic(&paused), (50, true));
    assert_eq!((w.replicas("r-2"), w.replicas("r-1")), (2, 4));

    w.control(PROMOTE);
    let done = w.run_until(&[AppPhase::Healthy]);
    assert_eq!(traffic(&done), (0, false), "weights back to 100/0 on the (new) stable, header route gone");
    assert_eq!(done.active, Selector::Revision("r-2".into()));
    assert_eq!(done.status.stable_revision.as_deref(), Some("r-2"));
    assert_eq!(w.replicas("r-2"), 4);
    w.tick();
    assert_eq!(w.replicas("r-1"), 0);
}

#[test]
fn router_abort_returns_all_traffic_to_stable() {
    let mut w = deployed(NGINX);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.control(ABORT);
    let aborted = w.run_until(&[AppPhase::Degraded]);
    assert_eq!(traffic(&aborted), (0, false));
    assert_eq!(aborted.scale.get("r-2"), Some(&0));
    assert_eq!(aborted.scale.get("r-1"), Some(&4));
    assert_eq!(aborted.active, Selector::Revision("r-1".into()));
}

#[test]
fn router_keeps_its_weight_while_the_app_is_paused() {
    let mut w = deployed(NGINX);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.spec.paused = true;
    let paused = w.tick();
    assert_eq!(traffic(&paused), (25, true));
}

#[test]
fn replica_weighting_has_no_router_plan() {
    let w = deployed(CANARY);
    assert_eq!(w.last.as_ref().and_then(|p| p.traffic), None);
}

#[test]
fn undo_to_the_stable_revision_after_an_abort_closes_the_rollout() {
    let mut w = deployed(CANARY);
    w.set_image("img:2");
    w.run_until(&[AppPhase::Paused]);
    w.control(ABORT);
    w.run_until(&[AppPhase::Degraded]);
    w.set_image("img:1");
    let back = w.run_until(&[AppPhase::Healthy]);
    assert!(
        back.status.history.iter().all(|h| h.finished_at.is_some()),
        "no dangling record: {:?}",
        back.status.history
    );
    let outcomes: Vec<(&str, &str)> =
        back.status.history.iter().map(|h| (h.revision.as_str(), h.outcome.as_str())).collect();
    assert_eq!(outcomes, vec![("r-1", "RolledBack"), ("r-2", "Aborted"), ("r-1", "Promoted")]);
    assert!(!back.status.abort);
    assert_eq!(w.replicas("r-2"), 0);
}

#[test]
fn a_paused_healthy_app_says_so() {
    let mut w = deployed(CANARY);
    w.spec.paused = true;
    let plan = w.tick();
    assert_eq!(plan.status.phase, Some(AppPhase::Healthy));
    assert!(plan.status.message.unwrap_or_default().contains("paused"));
}
