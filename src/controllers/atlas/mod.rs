//! The AtlasConnection controller: observe (the Atlas API credentials, the cluster, the project's
//! IP access list, the consuming Apps and their pods) -> decide (pure, in [`decide`] and
//! [`build`]) -> act (Atlas calls, server-side apply of the Secrets) -> status (written once, only
//! when it changed) and Events.
//!
//! Rotation without downtime: a new user generation is created and published while the old
//! user stays; Apps wired to the connection are marked (annotation
//! [`decide::CONNECTION_CHANGED`]) so they roll through their own strategy; the old user is
//! deleted only when every such App is Healthy on the revision built from the new Secret and
//! none of its pods started before it is left. Progress lives in status (`users`,
//! `currentUser`, `credentialGeneration`, `rotateToken`), each password in the operator's own
//! Secret from the moment it is generated, so a restarted operator carries on where it stopped.
//!
//! It must never write a password anywhere but into Secret data: not in logs, Events, status or
//! error messages.

pub mod build;
pub mod decide;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use self::decide::{Blocker, Note, Observed};
use super::app::build::{APP_LABEL, MANAGED_BY, MANAGER, hash_secret_data};
use super::{Error, FIELD_MANAGER, apply_params, ensure};
use crate::api::App;
use crate::api::atlas::{AtlasConnection, AtlasConnectionStatus, AtlasCredentialType};
use crate::api::common::{DeletionPolicy, ResourcePhase};
use crate::providers::atlas::{AtlasApi, AtlasClient, AtlasConfig, AtlasCredentials, AtlasError};
use crate::providers::http::{ErrorKind, Secret as Credential};
use crate::providers::mongodb;

/// Pauses of the controller, shortened by tests.
#[derive(Clone, Debug)]
pub struct Timing {
    /// How often a settled connection is checked again (at most; a due rotation comes first).
    pub recheck: Duration,
    /// While a rotation waits for Apps, or a ping failed.
    pub short: Duration,
    /// While the cluster is not IDLE, or Atlas failed.
    pub retry: Duration,
    /// How long a ping may wait for a server.
    pub ping_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            recheck: Duration::from_secs(300),
            short: Duration::from_secs(10),
            retry: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(5),
        }
    }
}

/// What every AtlasConnection reconcile gets.
pub struct Context {
    /// API client.
    pub client: Client,
    /// The clock.
    pub clock: fn() -> Timestamp,
    /// Pauses.
    pub timing: Timing,
    /// Event recorder (folds repeated warnings).
    pub recorder: Recorder,
    /// Atlas clients by `namespace/name`, with a fingerprint of what built them, so a service
    /// account token or a Digest nonce is reused across reconciles.
    clients: Mutex<HashMap<String, (String, Arc<AtlasClient>)>>,
}

impl Context {
    /// A context with the system clock and the default pauses.
    pub fn new(client: Client) -> Self {
        let recorder =
            Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: None });
        Self { client, clock: Timestamp::now, timing: Timing::default(), recorder, clients: Mutex::default() }
    }

    fn atlas(
        &self,
        conn: &AtlasConnection,
        credentials: AtlasCredentials,
    ) -> Result<Arc<AtlasClient>, AtlasError> {
        let key = build::connection_id(conn);
        let mut h = Sha256::new();
        h.update(conn.spec.base_url.as_bytes());
        match &credentials {
            AtlasCredentials::ApiKey { public_key, private_key } => {
                h.update([0]);
                h.update(public_key.as_bytes());
                h.update([0]);
                h.update(private_key.expose().as_bytes());
            }
            AtlasCredentials::ServiceAccount { client_id, client_secret } => {
                h.update([1]);
                h.update(client_id.as_bytes());
                h.update([0]);
                h.update(client_secret.expose().as_bytes());
            }
        }
        let fingerprint: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((f, c)) = clients.get(&key)
            && *f == fingerprint
        {
            return Ok(c.clone());
        }
        let client =
            Arc::new(AtlasClient::new(AtlasConfig::new(credentials).with_base_url(&conn.spec.base_url))?);
        clients.insert(key, (fingerprint, client.clone()));
        Ok(client)
    }
}

fn owned_secrets() -> watcher::Config {
    watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER},{}", build::ATLAS_LABEL))
}

/// Runs the AtlasConnection controller until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    run_with(Context::new(client), shutdown).await;
}

/// Runs the controller with a given context (tests shorten its pauses).
pub async fn run_with(ctx: Context, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    Controller::new(Api::<AtlasConnection>::all(client.clone()), watcher::Config::default().any_semantic())
        .owns(Api::<Secret>::all(client.clone()), owned_secrets())
        .watches_stream(
            // Apps map to their AtlasConnection; their status matters (a rotation waits for it).
            watcher(Api::<App>::all(client.clone()), watcher::Config::default())
                .modify(|app: &mut App| app.managed_fields_mut().clear())
                .default_backoff()
                .touched_objects(),
            |app: App| {
                let name = app.spec.connections.as_ref()?.mongodb.clone()?;
                Some(ObjectRef::<AtlasConnection>::new(&name).within(app.namespace().as_deref()?))
            },
        )
        // A rollout changes an App's status many times; every reconcile reads Atlas, so changes
        // that come together are taken together.
        .with_config(kube::runtime::controller::Config::default().debounce(Duration::from_secs(1)))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|result| super::log_result("AtlasConnection", result))
        .await;
    info!("AtlasConnection controller stopped");
}

/// How long to wait before retrying a failed reconcile.
pub fn error_policy(conn: Arc<AtlasConnection>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(atlas = %conn.name_any(), namespace = ?conn.namespace(), category = error.category(), %error, "AtlasConnection reconcile failed; retrying");
    Action::requeue(super::RETRY_AFTER)
}

/// Reconciles one AtlasConnection.
pub async fn reconcile(conn: Arc<AtlasConnection>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = conn.namespace().ok_or_else(|| Error::Invalid("AtlasConnection has no namespace".into()))?;
    let api: Api<AtlasConnection> = Api::namespaced(ctx.client.clone(), &ns);
    let has_finalizer = conn.finalizers().iter().any(|f| f == decide::FINALIZER);
    if conn.metadata.deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        return cleanup(&conn, &ctx, &api).await;
    }
    if !has_finalizer {
        let patch =
            serde_json::json!({"metadata": {"name": conn.name_any(), "finalizers": [decide::FINALIZER]}});
        api.patch(&conn.name_any(), &apply_params(), &Patch::Apply(&with_kind(patch))).await?;
        return Ok(Action::await_change());
    }

    let now = Time((ctx.clock)());
    let mut st = conn.status.clone().unwrap_or_default();
    let mut observed = Observed { ping_disabled: !conn.spec.check_connection, ..Observed::default() };
    let mut notes = vec![];
    let requeue = serve(&conn, &ctx, &ns, &now, &mut st, &mut observed, &mut notes).await?;

    let (status, mut status_notes) = decide::finish(&conn, st, &observed, &now);
    notes.append(&mut status_notes);
    write_status(&api, &conn, &status).await?;
    for note in &notes {
        publish(&ctx, &conn, note).await;
    }
    debug!(atlas = %conn.name_any(), namespace = %ns, phase = ?status.phase, "reconciled");
    Ok(Action::requeue(requeue))
}

fn with_kind(mut patch: serde_json::Value) -> serde_json::Value {
    patch["apiVersion"] = AtlasConnection::api_version(&()).into();
    patch["kind"] = AtlasConnection::kind(&()).into();
    patch
}

async fn write_status(
    api: &Api<AtlasConnection>,
    conn: &AtlasConnection,
    status: &AtlasConnectionStatus,
) -> Result<(), Error> {
    if conn.status.as_ref() != Some(status) {
        let patch = with_kind(serde_json::json!({"status": status}));
        api.patch_status(&conn.name_any(), &apply_params(), &Patch::Apply(&patch)).await?;
    }
    Ok(())
}

/// The Atlas API credentials from the Secret the spec names; `Err` is a sentence saying what to fix.
async fn credentials(
    conn: &AtlasConnection,
    client: &Client,
    ns: &str,
) -> Result<Result<AtlasCredentials, String>, Error> {
    let name = &conn.spec.credentials.secret_name;
    let (id_key, secret_key, what) = match conn.spec.credentials.kind {
        AtlasCredentialType::ApiKey => ("publicKey", "privateKey", "an Atlas programmatic API key pair"),
        AtlasCredentialType::ServiceAccount => ("clientId", "clientSecret", "an Atlas service account"),
    };
    let Some(secret) = Api::<Secret>::namespaced(client.clone(), ns).get_opt(name).await? else {
        return Ok(Err(format!(
            "Secret {name} (spec.credentials.secretName) does not exist in namespace {ns}; create it with keys {id_key} and {secret_key} ({what})"
        )));
    };
    let data = secret.data.unwrap_or_default();
    let read = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (Some(id), Some(secret_value)) = (read(id_key), read(secret_key)) else {
        let missing: Vec<&str> = [id_key, secret_key].into_iter().filter(|k| read(k).is_none()).collect();
        return Ok(Err(format!(
            "Secret {name} (spec.credentials.secretName) has no usable key {} (text, not empty); it must hold {id_key} and {secret_key} ({what}, credentials.type {})",
            missing.join(" or "),
            match conn.spec.credentials.kind {
                AtlasCredentialType::ApiKey => "apiKey",
                AtlasCredentialType::ServiceAccount => "serviceAccount",
            }
        )));
    };
    Ok(Ok(match conn.spec.credentials.kind {
        AtlasCredentialType::ApiKey => {
            AtlasCredentials::ApiKey { public_key: id, private_key: Credential::new(secret_value) }
        }
        AtlasCredentialType::ServiceAccount => {
            AtlasCredentials::ServiceAccount { client_id: id, client_secret: Credential::new(secret_value) }
        }
    }))
}

/// An Atlas failure as a blocker: refusals that only a person can fix make the resource Failed.
pub fn atlas_blocker(error: &AtlasError) -> Blocker {
    let reason = match error.kind {
        ErrorKind::Unauthorized => "AtlasCredentialsRejected",
        ErrorKind::Forbidden => "AtlasForbidden",
        ErrorKind::NotFound => "AtlasNotFound",
        ErrorKind::Invalid => "AtlasRefused",
        ErrorKind::RateLimited => "AtlasRateLimited",
        ErrorKind::Server => "AtlasServerError",
        ErrorKind::Timeout | ErrorKind::Connect => "AtlasUnreachable",
        ErrorKind::Conflict => "AtlasConflict",
        ErrorKind::InvalidResponse | ErrorKind::Config => "AtlasError",
    };
    let message = error.to_string();
    if error.kind.is_transient() {
        Blocker::Atlas { reason, message }
    } else {
        Blocker::Invalid { reason, message }
    }
}

/// Adds the spec's access list entries and removes the operator's entries the spec dropped.
/// Returns the entries the operator owns afterwards.
pub async fn sync_access_list(
    atlas: &dyn AtlasApi,
    conn: &AtlasConnection,
    owned_before: &[String],
    notes: &mut Vec<Note>,
) -> Result<Vec<String>, AtlasError> {
    let group = &conn.spec.project_id;
    if conn.spec.ip_access_list.is_empty() && owned_before.is_empty() {
        return Ok(vec![]);
    }
    let live = atlas.list_access_list(group).await?;
    let plan = decide::access_list_plan(conn, &live, owned_before);
    if !plan.add.is_empty() {
        atlas.add_access_list_entries(group, &plan.add).await?;
        let values: Vec<&str> = plan.add.iter().filter_map(|e| e.value()).collect();
        info!(atlas = %conn.name_any(), entries = ?values, "added IP access list entries");
        notes.push(Note {
            warning: false,
            reason: "AccessListUpdated",
            message: format!("added {} to the IP access list of project {group}", values.join(", ")),
        });
    }
    for value in &plan.remove {
        atlas.delete_access_list_entry(group, value).await?;
        info!(atlas = %conn.name_any(), entry = %value, "removed an IP access list entry the operator had added");
        notes.push(Note {
            warning: false,
            reason: "AccessListUpdated",
            message: format!("removed {value} (added by the operator, no longer in spec.ipAccessList) from the IP access list of project {group}"),
        });
    }
    Ok(plan.owned)
}

/// Makes the Atlas user match `desired`, creating it with `password` when it is missing. True
/// when it created the user.
pub async fn ensure_user(
    atlas: &dyn AtlasApi,
    group: &str,
    desired: &crate::providers::atlas::DatabaseUser,
    password: &Credential,
) -> Result<bool, AtlasError> {
    match atlas.get_database_user(group, &desired.database_name, &desired.username).await? {
        None => match atlas.create_database_user(group, desired, password).await {
            Ok(_) => Ok(true),
            // Created meanwhile (a retried request): make sure it has our password.
            Err(e) if e.kind == ErrorKind::Conflict => {
                atlas.update_database_user(group, desired, Some(password)).await?;
                Ok(true)
            }
            Err(e) => Err(e),
        },
        Some(live) if build::user_differs(&live, desired) => {
            atlas.update_database_user(group, desired, None).await?;
            Ok(false)
        }
        Some(_) => Ok(false),
    }
}

/// Everything but the status write: returns when to look again.
#[allow(clippy::too_many_arguments)]
async fn serve(
    conn: &AtlasConnection,
    ctx: &Context,
    ns: &str,
    now: &Time,
    st: &mut AtlasConnectionStatus,
    observed: &mut Observed,
    notes: &mut Vec<Note>,
) -> Result<Duration, Error> {
    let timing = &ctx.timing;
    let group = conn.spec.project_id.as_str();
    let credentials = match credentials(conn, &ctx.client, ns).await? {
        Ok(c) => c,
        Err(message) => {
            observed.blocker = Some(Blocker::Invalid { reason: "CredentialsInvalid", message });
            return Ok(timing.retry);
        }
    };
    let atlas = match ctx.atlas(conn, credentials) {
        Ok(a) => a,
        Err(e) => {
            observed.blocker = Some(atlas_blocker(&e));
            return Ok(timing.retry);
        }
    };
    macro_rules! atlas_try {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    observed.blocker = Some(atlas_blocker(&e));
                    return Ok(timing.retry);
                }
            }
        };
    }

    st.owned_access_list_entries =
        atlas_try!(sync_access_list(&*atlas, conn, &st.owned_access_list_entries, notes).await);

    let cluster_name = &conn.spec.cluster_name;
    let Some(cluster) = atlas_try!(atlas.get_cluster(group, cluster_name).await) else {
        observed.blocker = Some(Blocker::Invalid {
            reason: "ClusterNotFound",
            message: format!(
                "Atlas project {group} has no cluster named {cluster_name}; check spec.clusterName and spec.projectId"
            ),
        });
        return Ok(timing.retry);
    };
    if !cluster.is_idle() {
        observed.blocker = Some(Blocker::ClusterBusy(format!(
            "waiting for cluster {cluster_name} to be IDLE (it is {}); the Secret and users are left as they are meanwhile",
            cluster.state_name.as_deref().unwrap_or("in an unknown state")
        )));
        return Ok(timing.retry);
    }

    // The password of the target generation is stored before the user exists.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut passwords =
        build::read_passwords(secrets.get_opt(&build::passwords_secret_name(conn)).await?.as_ref());
    let target = decide::target(conn, |u| passwords.contains_key(u), now);
    if !passwords.contains_key(&target.username) {
        passwords.insert(
            target.username.clone(),
            Credential::new(crate::providers::redis::Password::generate().expose()),
        );
        ensure(&secrets, &build::passwords_secret(conn, &passwords)).await?;
        info!(atlas = %conn.name_any(), namespace = %ns, user = %target.username, "generated the password of a new database user");
    }
    let Some(password) = passwords.get(&target.username).cloned() else {
        return Err(Error::Invalid("the password just stored is missing".into()));
    };
    let desired = build::database_user(conn, &target.username);
    if atlas_try!(ensure_user(&*atlas, group, &desired, &password).await) {
        info!(atlas = %conn.name_any(), namespace = %ns, user = %target.username, "created the Atlas database user");
    }

    let secret = match build::connection_secret(conn, &target.username, &password, &cluster) {
        Ok(s) => s,
        Err(message) => {
            observed.blocker = Some(Blocker::ClusterBusy(message));
            return Ok(timing.retry);
        }
    };
    let secret_name = build::secret_name(conn);
    if ensure(&secrets, &secret).await? {
        info!(atlas = %conn.name_any(), namespace = %ns, secret = %secret_name, user = %target.username, "connection Secret published");
    }
    st.secret_name = Some(secret_name.clone());
    if let Some(reason) = target.rotation {
        let previous = st.current_user.clone();
        st.current_user = Some(target.username.clone());
        st.credential_generation = Some(target.generation);
        st.last_rotation_time = Some(now.clone());
        notes.push(Note {
            warning: reason == decide::RotationReason::PasswordLost,
            reason: if previous.is_some() { "Rotated" } else { "UserCreated" },
            message: match previous {
                Some(p) => format!(
                    "published user {} in Secret {secret_name} ({}); user {p} is deleted once every App using it runs the new credentials",
                    target.username,
                    reason.describe()
                ),
                None => format!("created database user {} and published Secret {secret_name}", target.username),
            },
        });
    }
    st.rotate_token = target.rotate_token.clone();
    if !st.users.contains(&target.username) {
        st.users.push(target.username.clone());
    }

    // Apps wired to this connection pick up the Secret and roll.
    let apps: Vec<App> =
        Api::<App>::namespaced(ctx.client.clone(), ns).list(&ListParams::default()).await?.items;
    let data = build::plain_data(&secret);
    let hash = hash_secret_data([(secret_name.as_str(), &data)]);
    notify_apps(conn, ctx, ns, &apps, &hash, notes).await?;

    // Old users go once every consuming App runs the current credentials.
    if st.users.iter().any(|u| *u != target.username) {
        let mut settled = vec![];
        for app in apps.iter().filter(|a| decide::references(a, conn)) {
            settled.push(app_settled(app, ctx, ns).await?);
        }
        let retirement = decide::retire(&st.users, &target.username, &settled);
        for user in &retirement.delete {
            atlas_try!(atlas.delete_database_user(group, build::AUTH_DATABASE, user).await);
            info!(atlas = %conn.name_any(), namespace = %ns, %user, "deleted the old database user");
            notes.push(Note {
                warning: false,
                reason: "UserDeleted",
                message: format!(
                    "deleted old database user {user}: every App using this connection runs {}",
                    target.username
                ),
            });
        }
        if !retirement.delete.is_empty() {
            st.users.retain(|u| !retirement.delete.contains(u));
            passwords.retain(|u, _| st.users.contains(u));
            // Applied, not `ensure`d: a live Secret with extra keys holds every wanted one, and
            // only an apply without them removes them.
            let kept = build::passwords_secret(conn, &passwords);
            secrets.patch(&kept.name_any(), &apply_params(), &Patch::Apply(&kept)).await?;
        }
        observed.retiring = retirement.waiting;
    }

    if conn.spec.check_connection {
        let uri = Credential::new(String::from_utf8_lossy(&data[build::URI_KEY]).into_owned());
        observed.ping = Some(
            match mongodb::ping(&uri, &password, &conn.spec.database, timing.ping_timeout).await {
                Ok(()) => Ok(format!(
                    "user {} reached database {} of cluster {cluster_name} with the published MONGODB_URI (ping answered)",
                    target.username, conn.spec.database
                )),
                Err(e) => Err((
                    e.kind.reason(),
                    format!(
                        "the ping with the published MONGODB_URI as user {} failed: {e}; {}",
                        target.username,
                        e.kind.advice()
                    ),
                )),
            },
        );
    }

    let mut after = timing.recheck;
    if let Some(due) = decide::next_rotation_in(conn, st, now) {
        after = after.min(due.max(Duration::from_secs(1)));
    }
    if observed.retiring.is_some() || matches!(observed.ping, Some(Err(_))) {
        after = after.min(timing.short);
    }
    Ok(after)
}

/// Whether one consuming App has moved to the current credentials (see [`decide::app_settled`]).
async fn app_settled(app: &App, ctx: &Context, ns: &str) -> Result<Result<(), String>, Error> {
    let (connections, invalid) = super::app::connections(app, &ctx.client, ns).await?;
    if let Some(why) = invalid {
        return Ok(decide::app_settled(app, Err(&why), &[]));
    }
    let (_, desired) = super::app::build::pod_template(app, &connections);
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{APP_LABEL}={}", app.name_any())))
        .await?
        .items;
    let old = decide::pods_with_old_credentials(&pods, &connections.hash);
    Ok(decide::app_settled(app, Ok(&desired), &old))
}

/// Marks the Apps wired to this connection with the Secret's hash, so they reconcile, read the
/// new Secret and roll through their own strategy.
async fn notify_apps(
    conn: &AtlasConnection,
    ctx: &Context,
    ns: &str,
    apps: &[App],
    hash: &str,
    notes: &mut Vec<Note>,
) -> Result<(), Error> {
    let names = decide::apps_to_notify(conn, apps, hash);
    super::mark_apps(&ctx.client, ns, &names, decide::CONNECTION_CHANGED, hash).await?;
    if !names.is_empty() {
        notes.push(Note {
            warning: false,
            reason: "AppsNotified",
            message: format!(
                "connection Secret {} is current in App(s) {}; they pick it up and roll if it changed",
                build::secret_name(conn),
                names.join(", ")
            ),
        });
    }
    Ok(())
}

/// Deletion: removes the users (those in status and any labelled for this connection) and the
/// access list entries the operator added, unless `deletionPolicy: Keep`; then the finalizer.
async fn cleanup(conn: &AtlasConnection, ctx: &Context, api: &Api<AtlasConnection>) -> Result<Action, Error> {
    let ns = conn.namespace().unwrap_or_default();
    if conn.spec.deletion_policy == DeletionPolicy::Delete {
        let removed = match remove_from_atlas(conn, ctx, &ns).await? {
            Ok(removed) => removed,
            Err(message) => {
                let now = Time((ctx.clock)());
                let mut st = conn.status.clone().unwrap_or_default();
                let message = format!(
                    "cannot remove the users and access list entries the operator created: {message}; fix it, or set deletionPolicy: Keep to leave them in Atlas"
                );
                crate::api::conditions::set(
                    &mut st.conditions,
                    crate::api::conditions::READY,
                    false,
                    "CleanupFailed",
                    message.clone(),
                    conn.metadata.generation,
                    &now,
                );
                st.phase = Some(ResourcePhase::Failed);
                st.message = Some(message.clone());
                write_status(api, conn, &st).await?;
                publish(ctx, conn, &Note { warning: true, reason: "CleanupFailed", message }).await;
                return Ok(Action::requeue(ctx.timing.retry));
            }
        };
        publish(
            ctx,
            conn,
            &Note {
                warning: false,
                reason: "CleanedUp",
                message: format!(
                    "removed from Atlas: {}",
                    if removed.is_empty() { "nothing".into() } else { removed.join(", ") }
                ),
            },
        )
        .await;
    }
    // The finalizer was applied under the operator's field manager: applying without it removes it.
    let patch = with_kind(serde_json::json!({"metadata": {"name": conn.name_any()}}));
    match api.patch(&conn.name_any(), &apply_params(), &Patch::Apply(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// Deletes the operator's users and entries; `Ok(Err(sentence))` when Atlas could not be used.
async fn remove_from_atlas(
    conn: &AtlasConnection,
    ctx: &Context,
    ns: &str,
) -> Result<Result<Vec<String>, String>, Error> {
    let credentials = match credentials(conn, &ctx.client, ns).await? {
        Ok(c) => c,
        Err(message) => return Ok(Err(message)),
    };
    let result = async {
        let atlas = ctx.atlas(conn, credentials)?;
        let group = conn.spec.project_id.as_str();
        let status = conn.status.clone().unwrap_or_default();
        let mut users: Vec<String> = status.users.clone();
        for user in atlas.list_database_users(group).await? {
            if build::created_for(&user, conn) && !users.contains(&user.username) {
                users.push(user.username);
            }
        }
        let mut removed = vec![];
        for user in &users {
            if atlas.delete_database_user(group, build::AUTH_DATABASE, user).await? {
                removed.push(format!("user {user}"));
            }
        }
        for entry in &status.owned_access_list_entries {
            if atlas.delete_access_list_entry(group, entry).await? {
                removed.push(format!("access list entry {entry}"));
            }
        }
        Ok::<_, AtlasError>(removed)
    }
    .await;
    Ok(result.map_err(|e| e.to_string()))
}

async fn publish(ctx: &Context, conn: &AtlasConnection, note: &Note) {
    // Notes are transitions: each keeps its own sentence (not folded into an earlier series).
    let parts = (note.warning, note.reason, note.message.as_str());
    super::publish_event(&ctx.client, &ctx.recorder, &conn.object_ref(&()), parts, false).await;
}
