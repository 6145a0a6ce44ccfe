//! Pure decisions of the AtlasConnection controller: which user generation the Secret should
//! carry (and whether a rotation is due), which IP access list entries to add and remove (only
//! the operator's own), when an old user may be deleted (every consuming App runs the new
//! credentials and no pod started before them is left), and the status (phase, conditions,
//! message) with the Events its changes deserve.
//!
//! No client, no clock (the time is passed in), and never a password: inputs carry user names,
//! outcomes and sentences only.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::build;
use crate::api::app::{App, AppPhase};
use crate::api::atlas::{AccessListEntry, AtlasConnection, AtlasConnectionStatus};
use crate::api::common::ResourcePhase;
use crate::api::conditions::{self, READY};
use crate::controllers::app::build::CONNECTION_HASH;
use crate::providers::atlas::AccessListEntry as LiveEntry;

/// Annotation whose new value asks for a rotation now (acted on once per value).
pub const ROTATE: &str = "platform.authentify.it/rotate";
/// App annotation set to the hash of the AtlasConnection's Secret: a change of it makes the App
/// reconcile, read the new Secret and roll (the Redis controller has its own key).
pub const CONNECTION_CHANGED: &str = "platform.authentify.it/mongodb-connection-changed";
/// Finalizer that removes the users and access list entries the operator created.
pub const FINALIZER: &str = "platform.authentify.it/atlas-cleanup";
/// Condition: the published URI answered a ping.
pub const CONNECTED: &str = "Connected";
/// Condition: an old user waits for the consuming Apps before it is deleted.
pub const ROTATING: &str = "Rotating";

/// Why a new user generation is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationReason {
    /// The first user.
    Initial,
    /// The rotate annotation has a new token.
    Requested,
    /// `rotateEvery` has passed since the last rotation.
    Scheduled,
    /// The current user's password is no longer in the operator's Secret.
    PasswordLost,
    /// `usernamePrefix` changed.
    Renamed,
}

impl RotationReason {
    /// A few words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            RotationReason::Initial => "first user",
            RotationReason::Requested => {
                "rotation asked for with the platform.authentify.it/rotate annotation"
            }
            RotationReason::Scheduled => "scheduled rotation (spec.rotateEvery)",
            RotationReason::PasswordLost => {
                "the current user's password was missing from the operator's Secret"
            }
            RotationReason::Renamed => "spec.usernamePrefix changed",
        }
    }
}

/// The user generation the Secret should carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Generation number (the user name's suffix).
    pub generation: i64,
    /// User name.
    pub username: String,
    /// Set when this is a new generation.
    pub rotation: Option<RotationReason>,
    /// The rotate token to record as handled.
    pub rotate_token: Option<String>,
}

fn rotate_every(conn: &AtlasConnection) -> Option<Duration> {
    conn.spec.rotate_every.as_deref().and_then(crate::rollout::duration::parse).filter(|d| !d.is_zero())
}

fn rotate_token(conn: &AtlasConnection) -> Option<String> {
    conn.annotations().get(ROTATE).filter(|t| !t.is_empty()).cloned()
}

/// Decides the target generation. `has_password` says whether the operator's Secret holds the
/// password of a user name.
pub fn target(conn: &AtlasConnection, has_password: impl Fn(&str) -> bool, now: &Time) -> Target {
    let status = conn.status.clone().unwrap_or_default();
    let generation = status.credential_generation.unwrap_or(0);
    let token = rotate_token(conn);
    let handled = status.rotate_token.clone();
    let next = |reason| Target {
        generation: generation + 1,
        username: build::username(conn, generation + 1),
        rotation: Some(reason),
        rotate_token: token.clone().or(handled.clone()),
    };
    let Some(current) = status.current_user.clone() else { return next(RotationReason::Initial) };
    if token.is_some() && token != handled {
        return next(RotationReason::Requested);
    }
    if let (Some(every), Some(last)) = (rotate_every(conn), status.last_rotation_time.as_ref())
        && since(now, last) >= every
    {
        return next(RotationReason::Scheduled);
    }
    if current != build::username(conn, generation) {
        return next(RotationReason::Renamed);
    }
    if !has_password(&current) {
        return next(RotationReason::PasswordLost);
    }
    Target { generation, username: current, rotation: None, rotate_token: handled }
}

fn since(now: &Time, then: &Time) -> Duration {
    Duration::from_secs(u64::try_from(now.0.as_second() - then.0.as_second()).unwrap_or(0))
}

/// Time left until the next scheduled rotation, if `rotateEvery` is set.
pub fn next_rotation_in(
    conn: &AtlasConnection,
    status: &AtlasConnectionStatus,
    now: &Time,
) -> Option<Duration> {
    let every = rotate_every(conn)?;
    let last = status.last_rotation_time.as_ref()?;
    Some(every.saturating_sub(since(now, last)))
}

/// The value that names an entry (its CIDR block or address).
pub fn entry_value(entry: &AccessListEntry) -> Option<String> {
    entry.cidr_block.clone().or(entry.ip_address.clone())
}

/// True when the live list holds `value` (an address matches its own /32 or /128 block).
pub fn live_has(live: &[LiveEntry], value: &str) -> bool {
    let host_block = |v: &str| {
        if v.contains('/') { None } else { Some(format!("{v}/{}", if v.contains(':') { 128 } else { 32 })) }
    };
    let block = host_block(value);
    live.iter().any(|e| {
        e.cidr_block.as_deref() == Some(value)
            || e.ip_address.as_deref() == Some(value)
            || (block.is_some() && e.cidr_block == block)
    })
}

/// What to do with the project's IP access list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPlan {
    /// Entries to add.
    pub add: Vec<LiveEntry>,
    /// Values of the operator's entries to remove (no longer in the spec).
    pub remove: Vec<String>,
    /// Entries the operator owns once the plan is carried out.
    pub owned: Vec<String>,
}

/// Adds the spec's entries that are missing, removes only entries the operator added that the
/// spec no longer lists; an entry that was there before the operator (someone else's) is left
/// alone and never becomes the operator's.
pub fn access_list_plan(conn: &AtlasConnection, live: &[LiveEntry], owned_before: &[String]) -> AccessPlan {
    let mut plan = AccessPlan::default();
    let mut wanted = BTreeSet::new();
    let default_comment = format!("authentify-operator {}", build::connection_id(conn));
    for entry in &conn.spec.ip_access_list {
        let Some(value) = entry_value(entry) else { continue };
        if !wanted.insert(value.clone()) {
            continue;
        }
        let ours = owned_before.contains(&value);
        let present = live_has(live, &value);
        if !present {
            let comment: String =
                entry.comment.clone().unwrap_or_else(|| default_comment.clone()).chars().take(80).collect();
            plan.add.push(LiveEntry {
                cidr_block: entry.cidr_block.clone(),
                ip_address: entry.ip_address.clone(),
                comment: Some(comment),
                ..LiveEntry::default()
            });
        }
        if ours || !present {
            plan.owned.push(value);
        }
    }
    plan.remove = owned_before.iter().filter(|v| !wanted.contains(*v)).cloned().collect();
    plan
}

/// True when `app` names this AtlasConnection in `spec.connections.mongodb` (same namespace).
pub fn references(app: &App, conn: &AtlasConnection) -> bool {
    app.namespace() == conn.namespace()
        && app.spec.connections.as_ref().and_then(|c| c.mongodb.as_deref()) == Some(conn.name_any().as_str())
}

/// Apps wired to this AtlasConnection whose [`CONNECTION_CHANGED`] annotation is not `hash` yet.
pub fn apps_to_notify(conn: &AtlasConnection, apps: &[App], hash: &str) -> Vec<String> {
    apps.iter()
        .filter(|app| references(app, conn))
        .filter(|app| app.annotations().get(CONNECTION_CHANGED).map(String::as_str) != Some(hash))
        .map(ResourceExt::name_any)
        .collect()
}

/// Running pods of an App whose template predates the current connection Secrets: their
/// `connection-hash` annotation differs from `hash`. Environment variables from a Secret are read
/// when a container starts, so only these can still hold an old password. Finished pods do not
/// count; terminating ones do (they still run until they stop).
pub fn pods_with_old_credentials(pods: &[Pod], hash: &str) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter(|p| p.annotations().get(CONNECTION_HASH).map(String::as_str) != Some(hash))
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

/// Whether an App has moved to the current credentials: it is Healthy, serves the revision built
/// from the current Secrets (`desired_revision`), and no pod started with older ones remains.
/// `Err` is the sentence that says what it waits for.
pub fn app_settled(
    app: &App,
    desired_revision: Result<&str, &str>,
    old_pods: &[String],
) -> Result<(), String> {
    let name = app.name_any();
    let desired = desired_revision.map_err(|why| format!("App {name}: {why}"))?;
    let status = app.status.clone().unwrap_or_default();
    if status.stable_revision.as_deref() != Some(desired) || status.phase != Some(AppPhase::Healthy) {
        let phase = status.phase.map_or_else(|| "not started".to_string(), |p| format!("{p:?}"));
        return Err(format!(
            "App {name} is not yet Healthy on revision {desired} with the new credentials (it is {phase})"
        ));
    }
    if !old_pods.is_empty() {
        let shown: Vec<&str> = old_pods.iter().take(3).map(String::as_str).collect();
        return Err(format!(
            "App {name} still runs {} pod(s) started with the old credentials ({}{})",
            old_pods.len(),
            shown.join(", "),
            if old_pods.len() > 3 { ", ..." } else { "" }
        ));
    }
    Ok(())
}

/// Which old users may go now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retirement {
    /// Users to delete in Atlas.
    pub delete: Vec<String>,
    /// Why the others wait (one sentence), when some wait.
    pub waiting: Option<String>,
}

/// Every user but the current one is deleted once every consuming App has settled on the current
/// credentials; until then all of them are kept, so an App rolled back meanwhile (its old pods
/// still running) keeps working credentials.
pub fn retire(users: &[String], current: &str, apps: &[Result<(), String>]) -> Retirement {
    let old: Vec<String> = users.iter().filter(|u| u.as_str() != current).cloned().collect();
    if old.is_empty() {
        return Retirement::default();
    }
    let waits: Vec<&str> = apps.iter().filter_map(|r| r.as_ref().err()).map(String::as_str).collect();
    if waits.is_empty() {
        return Retirement { delete: old, waiting: None };
    }
    Retirement {
        delete: vec![],
        waiting: Some(format!(
            "keeping old user(s) {} until every App uses {current}: {}",
            old.join(", "),
            waits.join("; ")
        )),
    }
}

/// Why the resource cannot be served right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// The spec (or its credentials Secret) cannot be carried out: fix it.
    Invalid {
        /// CamelCase reason.
        reason: &'static str,
        /// Sentence.
        message: String,
    },
    /// Atlas refused or failed a call.
    Atlas {
        /// CamelCase reason.
        reason: &'static str,
        /// Sentence.
        message: String,
    },
    /// The cluster is not IDLE: the operator waits.
    ClusterBusy(String),
}

/// Everything a status decision needs beyond the progress already recorded in the status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// What stops the reconcile, if anything.
    pub blocker: Option<Blocker>,
    /// The ping: `Ok` with what answered, `Err((reason, sentence))`; `None` when not checked.
    pub ping: Option<Result<String, (&'static str, String)>>,
    /// The operator did not check (checkConnection false).
    pub ping_disabled: bool,
    /// Why old users are kept (a rotation in progress).
    pub retiring: Option<String>,
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

/// Completes `st` (the progress fields already set by the reconcile) with phase, conditions and
/// message, and returns the Events its changes deserve (flips of Ready and Connected).
pub fn finish(
    conn: &AtlasConnection,
    mut st: AtlasConnectionStatus,
    observed: &Observed,
    now: &Time,
) -> (AtlasConnectionStatus, Vec<Note>) {
    let old = conn.status.clone().unwrap_or_default();
    let generation = conn.metadata.generation;
    st.observed_generation = generation;

    match &observed.ping {
        Some(Ok(what)) => conditions::set(
            &mut st.conditions,
            CONNECTED,
            true,
            "PingAnswered",
            what.clone(),
            generation,
            now,
        ),
        Some(Err((reason, message))) => {
            conditions::set(&mut st.conditions, CONNECTED, false, reason, message.clone(), generation, now)
        }
        None if observed.ping_disabled => conditions::set(
            &mut st.conditions,
            CONNECTED,
            true,
            "CheckDisabled",
            "checkConnection is false: the operator does not connect to the cluster",
            generation,
            now,
        ),
        None => {}
    }
    match &observed.retiring {
        Some(why) => conditions::set(
            &mut st.conditions,
            ROTATING,
            true,
            "WaitingForApps",
            why.clone(),
            generation,
            now,
        ),
        None => conditions::set(
            &mut st.conditions,
            ROTATING,
            false,
            "Settled",
            "no old user is waiting for deletion",
            generation,
            now,
        ),
    }

    let secret = st.secret_name.clone().unwrap_or_default();
    let user = st.current_user.clone().unwrap_or_default();
    let (phase, ready, reason, message) = match &observed.blocker {
        Some(Blocker::Invalid { reason, message }) => {
            (ResourcePhase::Failed, false, *reason, message.clone())
        }
        Some(Blocker::Atlas { reason, message }) => {
            (ResourcePhase::Degraded, false, *reason, message.clone())
        }
        Some(Blocker::ClusterBusy(message)) => {
            let phase =
                if st.current_user.is_some() { ResourcePhase::Degraded } else { ResourcePhase::Pending };
            (phase, false, "ClusterNotIdle", message.clone())
        }
        None => match &observed.ping {
            Some(Err((reason, message))) => (
                ResourcePhase::Degraded,
                false,
                *reason,
                format!("Secret {secret} holds user {user}, but {message}"),
            ),
            _ => {
                let mut m = format!("Secret {secret} holds user {user} for database {}", conn.spec.database);
                if let Some(why) = &observed.retiring {
                    m.push_str(&format!("; {why}"));
                }
                (ResourcePhase::Ready, true, "Published", m)
            }
        },
    };
    conditions::set(&mut st.conditions, READY, ready, reason, message.clone(), generation, now);
    st.phase = Some(phase);
    st.message = Some(message);

    let mut notes = vec![];
    let was = |kind: &str| old.conditions.iter().find(|c| c.type_ == kind).map(|c| c.status == "True");
    let connected = st.conditions.iter().find(|c| c.type_ == CONNECTED);
    if let Some(c) = connected
        && was(CONNECTED) != Some(c.status == "True")
        && c.reason != "CheckDisabled"
    {
        let ok = c.status == "True";
        notes.push(Note {
            warning: !ok,
            reason: if ok { "Connected" } else { "ConnectionFailed" },
            message: c.message.clone(),
        });
    }
    let ready_now = conditions::is_true(&st.conditions, READY);
    if was(READY) != Some(ready_now) {
        notes.push(Note {
            warning: !ready_now && !matches!(observed.blocker, Some(Blocker::ClusterBusy(_))),
            reason: if ready_now { "Ready" } else { reason },
            message: st.message.clone().unwrap_or_default(),
        });
    }
    (st, notes)
}
