//! The rollout engine: given an App's spec, what the controller observed, the previous status and
//! the time, it decides what the App's ReplicaSets, Services and Jobs should look like and what the
//! new status is. It never talks to the API server and never reads the clock itself, so every
//! decision can be replayed in a unit test.
//!
//! A rollout's whole progress lives in the status it returns (step index, pause start, abort,
//! revisions), so a restarted operator continues exactly where the last one stopped.

pub mod duration;
mod engine;
pub mod replicas;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

pub use engine::decide;
use k8s_openapi::jiff::Timestamp;

use crate::api::analysis::AnalysisPhase;
use crate::api::app::{AnalysisRef, AppSpec, AppStatus};

/// Annotation whose new value promotes the current step (or the blue-green preview).
pub const PROMOTE: &str = "platform.authentify.it/promote";
/// Annotation whose new value skips every remaining step and promotes.
pub const PROMOTE_FULL: &str = "platform.authentify.it/promote-full";
/// Annotation whose new value aborts the running rollout.
pub const ABORT: &str = "platform.authentify.it/abort";
/// Annotation whose new value restarts an aborted rollout from its first step.
pub const RETRY: &str = "platform.authentify.it/retry";

/// One ReplicaSet of the App, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// Pod-template hash (the ReplicaSet is named `<app>-<hash>`).
    pub hash: String,
    /// Image of its main container.
    pub image: String,
    /// Replicas asked of it.
    pub replicas: i32,
    /// Ready pods.
    pub ready: i32,
    /// Highest container restart count among its pods.
    pub max_restarts: i32,
    /// When it was created.
    pub created: Timestamp,
}

/// State of a pre- or post-deploy Job for the desired revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum JobState {
    /// The App has no such job.
    #[default]
    NotConfigured,
    /// Configured, not created yet.
    Missing,
    /// Created, not finished.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed; the message holds the reason and the last log lines.
    Failed(String),
}

/// Outcome of an analysis run, as the engine acts on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Still measuring.
    #[default]
    Running,
    /// Passed.
    Successful,
    /// Neither passed nor failed: a person decides (promote or abort).
    Inconclusive(String),
    /// Failed: the rollout aborts.
    Failed(String),
}

/// Everything the controller observed for one reconcile.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Hash of the pod template the spec asks for now.
    pub desired_revision: String,
    /// The App's ReplicaSets.
    pub revisions: Vec<Revision>,
    /// Pre-deploy job of the desired revision.
    pub pre_deploy: JobState,
    /// Post-deploy job of the desired revision.
    pub post_deploy: JobState,
    /// Pods of the stable revision created before `spec.restartAt`, oldest first.
    pub pods_to_restart: Vec<String>,
    /// The App's name; it prefixes the names of its AnalysisRuns.
    pub name: String,
    /// The App's AnalysisRuns in the cluster, by name.
    pub analysis_runs: BTreeMap<String, ObservedRun>,
    /// Why the spec cannot be carried out right now (a missing Secret, say); nothing changes then.
    pub invalid: Option<String>,
    /// Label selector of all the App's pods, for the `/scale` subresource.
    pub selector: String,
    /// Answers of the webhook gates asked during this reconcile (those a first [`decide`] listed in
    /// [`Plan::ask_gates`]), by webhook name.
    pub gates: BTreeMap<String, GateAnswer>,
}

/// What a webhook gate answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateAnswer {
    /// True on a 2xx answer.
    pub passed: bool,
    /// The answer for people (never the URL's query string).
    pub message: String,
}

/// An AnalysisRun as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedRun {
    /// Its phase (Running until it decided).
    pub phase: AnalysisPhase,
    /// Its message.
    pub message: String,
}

/// An AnalysisRun the rollout needs: the controller creates it when it does not exist, and
/// terminates every running AnalysisRun of the App that is not asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// Name of the AnalysisRun (stable across reconciles and restarts).
    pub name: String,
    /// `step 3`, `background`, `pre-promotion` or `post-promotion`.
    pub purpose: String,
    /// The templates and arguments to run.
    pub analysis: AnalysisRef,
}

/// Which pods a Service selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every revision's pods (canary by replica ratio).
    AllRevisions,
    /// One revision's pods.
    Revision(String),
}

/// A Kubernetes Event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason, e.g. `StepCompleted`.
    pub reason: &'static str,
    /// A sentence for people.
    pub message: String,
}

/// Which job to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Before the new revision takes traffic.
    PreDeploy,
    /// After the new revision is promoted.
    PostDeploy,
}

/// Traffic split for a canary with a traffic router (NGINX Ingress or Gateway API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Percent of requests sent to the new revision's Service; the rest go to the stable one.
    pub canary_weight: i32,
    /// Whether the header route (e.g. `X-Canary: always` to the canary) exists: only while a
    /// canary runs.
    pub header_route: bool,
}

/// What the controller should make true.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The new status (written only when it differs from the old one).
    pub status: AppStatus,
    /// Replicas per revision hash. The desired revision is always present; its ReplicaSet is
    /// created when missing.
    pub scale: BTreeMap<String, i32>,
    /// Pods behind the App's main Service (what the route sends users to).
    pub active: Selector,
    /// Pods behind the `-canary`/`-preview` Service: the new revision.
    pub preview: Selector,
    /// The router's split, when the canary uses a traffic router; `None` for replica weighting
    /// and blue-green.
    pub traffic: Option<Traffic>,
    /// Job to create for the desired revision.
    pub create_job: Option<JobKind>,
    /// Old revisions to delete (beyond `revisionHistoryLimit`).
    pub delete_revisions: Vec<String>,
    /// Pods to delete now (a restart, one at a time).
    pub delete_pods: Vec<String>,
    /// Events for the transitions this reconcile made.
    pub notes: Vec<Note>,
    /// Reconcile again after this long even if nothing changes (a timed pause ends, say).
    pub requeue_after: Option<Duration>,
    /// AnalysisRuns that must exist: the controller creates the missing ones.
    pub analysis_runs: Vec<RunRequest>,
    /// Names of the AnalysisRuns the rollout still needs (those above, and the ones of the
    /// running rollout it did not look at in this reconcile); the controller terminates every
    /// other running AnalysisRun of the App.
    pub keep_analysis_runs: Vec<String>,
    /// Webhook gates to ask now, by name. The controller asks them, puts the answers in
    /// [`Observed::gates`] and decides again; nothing of this plan is applied.
    pub ask_gates: Vec<String>,
}

/// Inputs of [`decide`].
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The App's spec.
    pub spec: &'a AppSpec,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.annotations` (control requests).
    pub annotations: &'a BTreeMap<String, String>,
    /// The status as last written.
    pub status: &'a AppStatus,
    /// What the controller observed.
    pub observed: &'a Observed,
    /// The time of this decision.
    pub now: Timestamp,
}
