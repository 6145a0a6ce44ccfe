//! Pure decisions of the Redis controller: the status (phase, conditions, message) from what was
//! observed, which promotions still need a purge, which Apps must be told that the connection
//! Secret changed, and which pod is the primary the client Service selects. No client, no clock
//! (the time is passed in), and never a password: inputs carry only addresses and outcomes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::app::App;
use crate::api::common::ResourcePhase;
use crate::api::conditions::{self, REACHABLE, READY};
use crate::api::redis::{PurgeRecord, Redis, RedisMode, RedisStatus};
use crate::controllers::promotion;
use crate::providers::redis::{ProbeError, ProbeResult};

/// App annotation the Redis controller sets to the connection Secret's hash: a change of it
/// makes the App reconcile, read the new Secret and roll.
pub const CONNECTION_CHANGED: &str = "platform.authentify.it/connection-changed";
/// At most this many purge records are kept in status (one per App).
pub const MAX_PURGE_RECORDS: usize = 50;

/// Readiness of one StatefulSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetState {
    /// Pods wanted.
    pub wanted: i32,
    /// Pods ready.
    pub ready: i32,
    /// True when every pod runs the newest template.
    pub rolled_out: bool,
    /// Why the first pod that is not ready waits (from its conditions), if known.
    pub waiting: Option<String>,
}

impl SetState {
    fn complete(&self) -> bool {
        self.wanted > 0 && self.ready >= self.wanted
    }
}

/// Everything a status decision needs.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The spec cannot be carried out (a missing Secret, an unknown version): the sentence says why.
    pub invalid: Option<String>,
    /// `host:port` Apps connect to.
    pub endpoint: Option<String>,
    /// The connection Secret exists with the current data.
    pub secret_name: Option<String>,
    /// The version of the pinned image (in-cluster modes).
    pub image_version: Option<String>,
    /// Redis pods (in-cluster modes).
    pub redis: Option<SetState>,
    /// Sentinel pods (`replicated` mode).
    pub sentinel: Option<SetState>,
    /// The operator's own connection attempt; `None` when it did not try.
    pub probe: Option<Result<ProbeResult, ProbeError>>,
    /// The pod the client Service selects (`replicated` mode).
    pub primary: Option<String>,
    /// A remark to add to the message (e.g. storage changes that cannot apply).
    pub note: Option<String>,
}

/// A status change worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// The sentence.
    pub message: String,
}

fn probe_sentence(address: &str, e: &ProbeError) -> String {
    format!("Redis at {address} is not reachable: {e}; {}", e.advice())
}

/// The new status, and the Events its changes deserve. `purges` are kept from the old status.
pub fn status(redis: &Redis, observed: &Observed, now: &Time) -> (RedisStatus, Vec<Note>) {
    let old = redis.status.clone().unwrap_or_default();
    let generation = redis.metadata.generation;
    let mut s = RedisStatus {
        conditions: old.conditions.clone(),
        purges: old.purges.clone(),
        observed_generation: generation,
        endpoint: observed.endpoint.clone(),
        secret_name: observed.secret_name.clone(),
        primary: observed.primary.clone(),
        ..RedisStatus::default()
    };
    let address = observed.endpoint.clone().unwrap_or_else(|| "its address".into());
    let external = redis.spec.mode == RedisMode::External;

    // Reachable: the operator's own connection.
    match &observed.probe {
        Some(Ok(p)) => {
            let msg = format!("PING answered by Redis {} at {address} (role {})", p.version, p.role);
            conditions::set(&mut s.conditions, REACHABLE, true, "Answered", msg, generation, now);
            s.role = Some(p.role.clone());
        }
        Some(Err(e)) => {
            let mut msg = probe_sentence(&address, e);
            if !external {
                msg.push_str(
                    " (the operator connects through the client Service; Ready follows the pods' own redis-cli ping probes)",
                );
            }
            conditions::set(&mut s.conditions, REACHABLE, false, e.reason(), msg, generation, now);
        }
        None => {
            let msg = "the operator has not connected yet: it waits for a ready Redis pod".to_string();
            conditions::set(&mut s.conditions, REACHABLE, false, "NotChecked", msg, generation, now);
        }
    }

    // Ready, phase and message.
    let (phase, ready, reason, message) = if let Some(why) = &observed.invalid {
        (ResourcePhase::Failed, false, "InvalidSpec", why.clone())
    } else if external {
        match &observed.probe {
            Some(Ok(p)) => (
                ResourcePhase::Ready,
                true,
                "Reachable",
                format!(
                    "external Redis {} at {address} answers (role {}); Apps read Secret {}",
                    p.version,
                    p.role,
                    s.secret_name.clone().unwrap_or_default()
                ),
            ),
            Some(Err(e)) => (ResourcePhase::Degraded, false, e.reason(), probe_sentence(&address, e)),
            None => (ResourcePhase::Pending, false, "NotChecked", format!("checking Redis at {address}")),
        }
    } else {
        let redis_set = observed.redis.clone().unwrap_or_default();
        let sentinel_ok = observed.sentinel.as_ref().is_none_or(SetState::complete);
        let mut parts = vec![format!("{}/{} Redis pods ready", redis_set.ready, redis_set.wanted)];
        if let Some(sentinel) = &observed.sentinel {
            parts.push(format!("{}/{} Sentinels ready", sentinel.ready, sentinel.wanted));
        }
        if let Some(primary) = &observed.primary {
            parts.push(format!("primary {primary}"));
        }
        let counts = parts.join(", ");
        if redis_set.complete() && sentinel_ok {
            (
                ResourcePhase::Ready,
                true,
                "PodsReady",
                format!("{counts}; Apps read Secret {}", s.secret_name.clone().unwrap_or_default()),
            )
        } else {
            let waiting = redis_set
                .waiting
                .clone()
                .or_else(|| observed.sentinel.as_ref().and_then(|x| x.waiting.clone()))
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            let phase = if redis_set.ready == 0 { ResourcePhase::Pending } else { ResourcePhase::Degraded };
            (phase, false, "PodsNotReady", format!("waiting for pods, {counts}{waiting}"))
        }
    };
    conditions::set(&mut s.conditions, READY, ready, reason, message.clone(), generation, now);
    s.phase = Some(phase);
    s.message = Some(match &observed.note {
        Some(note) => format!("{message}. {note}"),
        None => message,
    });
    if let Some(set) = &observed.redis {
        s.ready = Some(format!("{}/{}", set.ready, set.wanted));
    }
    s.observed_version = match &observed.probe {
        Some(Ok(p)) => Some(p.version.clone()),
        _ => match (&observed.redis, &observed.image_version) {
            (Some(set), Some(v)) if set.complete() && set.rolled_out => Some(v.clone()),
            _ => old.observed_version.clone(),
        },
    };

    // Events for flips of the conditions.
    let mut notes = vec![];
    let was = |kind: &str| old.conditions.iter().find(|c| c.type_ == kind).map(|c| c.status == "True");
    let reachable_now = conditions::is_true(&s.conditions, REACHABLE);
    if was(REACHABLE) != Some(reachable_now)
        && (external || reachable_now || was(REACHABLE).is_some())
        && let Some(c) = s.conditions.iter().find(|c| c.type_ == REACHABLE)
    {
        notes.push(Note {
            warning: !reachable_now && observed.probe.is_some(),
            reason: if reachable_now { "Reachable" } else { "Unreachable" },
            message: c.message.clone(),
        });
    }
    let ready_now = conditions::is_true(&s.conditions, READY);
    if was(READY) != Some(ready_now) {
        notes.push(Note {
            warning: !ready_now && observed.invalid.is_some(),
            reason: if ready_now {
                "Ready"
            } else if observed.invalid.is_some() {
                "InvalidSpec"
            } else {
                "NotReady"
            },
            message: s.message.clone().unwrap_or_default(),
        });
    }
    (s, notes)
}

/// A promotion whose purge has not run yet.
pub type Due = crate::controllers::promotion::Promotion;

/// True when `app` names this Redis in `spec.connections.redis` (same namespace).
pub fn references(app: &App, redis: &Redis) -> bool {
    app.namespace() == redis.namespace()
        && app.spec.connections.as_ref().and_then(|c| c.redis.as_deref()) == Some(redis.name_any().as_str())
}

/// Promotions of wired Apps that still need a purge: the App's newest history record is
/// `Promoted`, finished after this Redis was created, and has no purge record yet.
pub fn purges_due(redis: &Redis, apps: &[App]) -> Vec<Due> {
    if redis.spec.purge_on_promote.is_none() {
        return vec![];
    }
    let records = redis.status.as_ref().map(|s| s.purges.as_slice()).unwrap_or_default();
    promotion::pending(
        apps.iter().filter(|app| references(app, redis)),
        redis.metadata.creation_timestamp.as_ref(),
        |p| {
            records
                .iter()
                .any(|r| r.app == p.app && r.revision == p.revision && r.promoted_at == p.promoted_at)
        },
    )
}

/// Records a purge in the list: one entry per App (the newest), at most [`MAX_PURGE_RECORDS`].
pub fn record_purge(records: &mut Vec<PurgeRecord>, record: PurgeRecord) {
    promotion::record(records, record, |r| r.app.as_str(), MAX_PURGE_RECORDS);
}

/// Apps wired to this Redis whose [`CONNECTION_CHANGED`] annotation is not `hash` yet.
pub fn apps_to_notify(redis: &Redis, apps: &[App], hash: &str) -> Vec<String> {
    apps.iter()
        .filter(|app| references(app, redis))
        .filter(|app| app.annotations().get(CONNECTION_CHANGED).map(String::as_str) != Some(hash))
        .map(ResourceExt::name_any)
        .collect()
}

/// The pod that should carry the primary label: the one Sentinel names (`sentinel` is the host
/// it returned, `<pod>.<service>...`), else the one labelled now, else pod 0. `pods` maps pod
/// names to their current role label.
pub fn primary_pod(
    statefulset: &str,
    pods: &BTreeMap<String, Option<String>>,
    sentinel: Option<&str>,
) -> Option<String> {
    if let Some(host) = sentinel {
        let pod = host.split('.').next().unwrap_or_default();
        if pods.contains_key(pod) {
            return Some(pod.to_string());
        }
    }
    if let Some((name, _)) = pods.iter().find(|(_, role)| role.as_deref() == Some("primary")) {
        return Some(name.clone());
    }
    let first = format!("{statefulset}-0");
    pods.contains_key(&first).then_some(first)
}

/// Role labels to set: `(pod, role)` for every pod whose label differs.
pub fn role_changes(
    pods: &BTreeMap<String, Option<String>>,
    primary: Option<&str>,
) -> Vec<(String, &'static str)> {
    let Some(primary) = primary else { return vec![] };
    pods.iter()
        .filter_map(|(name, role)| {
            let want = if name == primary { "primary" } else { "replica" };
            (role.as_deref() != Some(want)).then(|| (name.clone(), want))
        })
        .collect()
}
