//! Condition types and a pure helper that sets one condition in a list without churning
//! `lastTransitionTime` when the status does not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The App is serving: enough stable pods are ready behind its Service.
pub const AVAILABLE: &str = "Available";
/// A rollout is moving (or has just finished moving) the App to a new revision.
pub const PROGRESSING: &str = "Progressing";
/// The rollout waits: for a timed pause, for a person, or because the App is paused.
pub const PAUSED: &str = "Paused";
/// The App runs its desired revision with every pod ready.
pub const HEALTHY: &str = "Healthy";
/// Pods of the new revision cannot be created or keep failing.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// The spec passed the API server's checks but cannot be carried out (a missing Secret, say).
pub const INVALID_SPEC: &str = "InvalidSpec";
/// A data-plane resource (Redis, AtlasConnection, EdgeCache) is usable.
pub const READY: &str = "Ready";
/// The outside service the resource points at answers.
pub const REACHABLE: &str = "Reachable";

/// `"True"` or `"False"` as Kubernetes spells condition statuses.
pub fn status_str(ok: bool) -> &'static str {
    if ok { "True" } else { "False" }
}

/// Sets `kind` in `conditions` to the given status, reason and message.
///
/// `lastTransitionTime` moves to `now` only when the status flips (as Kubernetes expects), so a
/// reconcile that observes the same state writes an identical list and the status write is skipped.
pub fn set(
    conditions: &mut Vec<Condition>,
    kind: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: &Time,
) {
    let status = status_str(ok).to_string();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status;
            existing.reason = reason.to_string();
            existing.message = message;
            existing.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: kind.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// Whether `kind` is present and `"True"`.
pub fn is_true(conditions: &[Condition], kind: &str) -> bool {
    conditions.iter().any(|c| c.type_ == kind && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("valid timestamp"))
    }

    #[test]
    fn adds_a_missing_condition() {
        let mut list = vec![];
        set(&mut list, READY, true, "Reconciled", "all good", Some(3), &at(10));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status, "True");
        assert_eq!(list[0].observed_generation, Some(3));
        assert_eq!(list[0].last_transition_time, at(10));
        assert!(is_true(&list, READY));
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let mut list = vec![];
        set(&mut list, READY, true, "A", "first", None, &at(10));
        set(&mut list, READY, true, "B", "second", None, &at(20));
        assert_eq!(list[0].last_transition_time, at(10));
        assert_eq!(list[0].reason, "B");
        assert_eq!(list[0].message, "second");
    }

    #[test]
    fn moves_transition_time_when_status_flips() {
        let mut list = vec![];
        set(&mut list, READY, true, "A", "", None, &at(10));
        set(&mut list, READY, false, "Down", "gone", None, &at(30));
        assert_eq!(list[0].last_transition_time, at(30));
        assert!(!is_true(&list, READY));
        assert_eq!(list.len(), 1);
    }
}
