//! Turns what the operator's caches hold (ReplicaSets, pods, jobs) into the engine's [`Observed`].
//! Reads only; decides nothing.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::build::{APP_LABEL, CONTAINER, JOB_LABEL, REVISION_LABEL};
use crate::api::App;
use crate::rollout::{JobState, Revision};

fn belongs(
    app: &App,
    labels: &std::collections::BTreeMap<String, String>,
    namespace: Option<String>,
) -> bool {
    labels.get(APP_LABEL) == Some(&app.name_any()) && namespace == app.namespace()
}

/// The App's ReplicaSets, as engine revisions, with restart counts from their pods.
pub fn revisions(
    app: &App,
    replica_sets: &[std::sync::Arc<ReplicaSet>],
    pods: &[std::sync::Arc<Pod>],
) -> Vec<Revision> {
    replica_sets
        .iter()
        .filter(|rs| belongs(app, rs.labels(), rs.namespace()) && rs.metadata.deletion_timestamp.is_none())
        .filter_map(|rs| {
            let hash = rs.labels().get(REVISION_LABEL)?.clone();
            let max_restarts = pods
                .iter()
                .filter(|p| belongs(app, p.labels(), p.namespace()))
                .filter(|p| {
                    p.labels().get(REVISION_LABEL) == Some(&hash) && !p.labels().contains_key(JOB_LABEL)
                })
                .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
                .flat_map(|cs| cs.iter().map(|c| c.restart_count))
                .max()
                .unwrap_or(0);
            let image = rs
                .spec
                .template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER))
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            Some(Revision {
                hash,
                image,
                replicas: rs.spec.replicas.unwrap_or(1),
                ready: rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
                max_restarts,
                created: rs.metadata.creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            })
        })
        .collect()
}

/// State of the job named `name`, or `Missing`. A failed job's message carries its pod's
/// termination message (the last log lines, with `FallbackToLogsOnError`).
pub fn job_state(
    name: &str,
    app: &App,
    jobs: &[std::sync::Arc<Job>],
    pods: &[std::sync::Arc<Pod>],
) -> JobState {
    let Some(job) = jobs.iter().find(|j| j.name_any() == name && j.namespace() == app.namespace()) else {
        return JobState::Missing;
    };
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let is = |kind: &str| conditions.iter().any(|c| c.type_ == kind && c.status == "True");
    if is("Complete") || status.succeeded.unwrap_or(0) > 0 {
        return JobState::Succeeded;
    }
    if is("Failed") {
        let reason = conditions
            .iter()
            .find(|c| c.type_ == "Failed")
            .map(|c| {
                format!(
                    "{} ({})",
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                )
            })
            .unwrap_or_default();
        let logs: Vec<String> = pods
            .iter()
            .filter(|p| p.namespace() == app.namespace())
            .filter(|p| p.labels().get("job-name").map(String::as_str) == Some(name))
            .filter_map(|p| p.status.as_ref()?.container_statuses.clone())
            .flatten()
            .filter_map(|c| {
                let t = c.state?.terminated?;
                Some(format!(
                    "exit {}: {}",
                    t.exit_code,
                    t.message.unwrap_or_else(|| t.reason.unwrap_or_default())
                ))
            })
            .collect();
        let mut message = reason;
        if let Some(last) = logs.last() {
            message = format!("{message}; last output: {}", last.trim());
        }
        return JobState::Failed(message);
    }
    JobState::Running
}

/// Pods of the stable revision created before `restart_at`, oldest first.
pub fn pods_to_restart(app: &App, stable: Option<&str>, pods: &[std::sync::Arc<Pod>]) -> Vec<String> {
    let (Some(at), Some(stable)) = (app.spec.restart_at.as_ref(), stable) else { return vec![] };
    let mut old: Vec<(Timestamp, String)> = pods
        .iter()
        .filter(|p| belongs(app, p.labels(), p.namespace()) && !p.labels().contains_key(JOB_LABEL))
        .filter(|p| p.labels().get(REVISION_LABEL).map(String::as_str) == Some(stable))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let created = p.metadata.creation_timestamp.as_ref()?.0;
            (created < at.0).then(|| (created, p.name_any()))
        })
        .collect();
    old.sort();
    old.into_iter().map(|(_, name)| name).collect()
}
