//! The Redis controller: observe (the live children, the password, the server itself) -> decide
//! (pure, in [`decide`] and [`build`]) -> apply (server-side apply, only what differs) -> status
//! (written once, only when it changed) and Events.
//!
//! It also keeps the promise the connection Secret makes to Apps: when the Secret's data changes
//! it marks every App wired to this Redis (annotation [`decide::CONNECTION_CHANGED`]) so they
//! reconcile and roll, and it purges `purgeOnPromote.patterns` once per promotion of those Apps.
//!
//! It must never write the password anywhere but into Secret data: not in logs, Events, status,
//! ConfigMaps, pod specs or error messages.

pub mod build;
pub mod decide;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use self::build::Names;
use self::decide::{Note, Observed, SetState};
use super::app::build::{MANAGED_BY, MANAGER, hash_secret_data};
use super::{Error, FIELD_MANAGER, apply_params, delete_owned, ensure};
use crate::api::App;
use crate::api::redis::{PurgeRecord, Redis, RedisMode, Storage};
use crate::providers::redis::{self as provider, Endpoint, Password};

/// How often a healthy Redis is checked again.
const RECHECK: Duration = Duration::from_secs(60);
/// How often an unreachable or not yet ready Redis is checked again.
const RETRY: Duration = Duration::from_secs(10);

/// What every Redis reconcile gets.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// The clock.
    pub clock: fn() -> Timestamp,
}

fn managed() -> watcher::Config {
    watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER},{}", build::REDIS_LABEL))
}

/// Runs the Redis controller until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: None });
    let ctx = Arc::new(Context { client: client.clone(), recorder, clock: Timestamp::now });
    Controller::new(Api::<Redis>::all(client.clone()), watcher::Config::default().any_semantic())
        .owns(Api::<StatefulSet>::all(client.clone()), managed())
        .owns(Api::<Secret>::all(client.clone()), managed())
        .watches_stream(
            // Apps only map to their Redis here: keep nothing of them but what the mapper reads.
            watcher(Api::<App>::all(client.clone()), watcher::Config::default())
                .modify(|app: &mut App| {
                    app.managed_fields_mut().clear();
                    app.status = None;
                })
                .default_backoff()
                .touched_objects(),
            |app: App| {
                let name = app.spec.connections.as_ref()?.redis.clone()?;
                Some(ObjectRef::<Redis>::new(&name).within(app.namespace().as_deref()?))
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| super::log_result("Redis", result))
        .await;
    info!("Redis controller stopped");
}

/// How long to wait before retrying a failed reconcile.
pub fn error_policy(redis: Arc<Redis>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(redis = %redis.name_any(), namespace = ?redis.namespace(), category = error.category(), %error, "Redis reconcile failed; retrying");
    Action::requeue(super::RETRY_AFTER)
}

/// Reconciles one Redis.
pub async fn reconcile(redis: Arc<Redis>, ctx: Arc<Context>) -> Result<Action, Error> {
    if redis.metadata.deletion_timestamp.is_some() {
        // Children carry owner references and go with the garbage collector; the volumes follow
        // the StatefulSet's persistentVolumeClaimRetentionPolicy (spec.storage.whenDeleted).
        return Ok(Action::await_change());
    }
    let ns = redis.namespace().ok_or_else(|| Error::Invalid("Redis has no namespace".into()))?;
    let names = Names::of(&redis);
    let now = Time((ctx.clock)());

    // Observe and apply the children.
    let mut observed = Observed::default();
    let endpoint = match redis.spec.mode {
        RedisMode::External => external_endpoint(&redis, &ctx, &ns, &mut observed).await?,
        _ => in_cluster(&redis, &ctx, &ns, &names, &mut observed).await?,
    };

    let mut notes = vec![];
    let mut purges = vec![];
    if let Some(endpoint) = &endpoint {
        observed.endpoint = Some(endpoint.address());
        let secret = build::connection_secret(&redis, &names, endpoint);
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        if ensure(&secrets, &secret).await? {
            info!(redis = %redis.name_any(), namespace = %ns, secret = %names.connection_secret(), "connection Secret published");
        }
        observed.secret_name = Some(names.connection_secret());
        let data: BTreeMap<String, Vec<u8>> =
            secret.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        let hash = hash_secret_data([(names.connection_secret().as_str(), &data)]);
        let apps: Vec<App> =
            Api::<App>::namespaced(ctx.client.clone(), &ns).list(&ListParams::default()).await?.items;
        notify_apps(&redis, &ctx, &ns, &apps, &hash, &mut notes).await?;

        let skip_probe =
            redis.spec.mode != RedisMode::External && observed.redis.as_ref().is_none_or(|s| s.ready == 0);
        if !skip_probe {
            observed.probe = Some(provider::probe(endpoint).await);
        }
        if matches!(observed.probe, Some(Ok(_))) {
            purges = purge_due(&redis, endpoint, &apps, &now, &mut notes).await;
        } else if !decide::purges_due(&redis, &apps).is_empty() {
            notes.push(Note {
                warning: true,
                reason: "PurgeDelayed",
                message: "an App promoted but the Redis is not reachable, so its purge waits; it runs once the Redis answers".into(),
            });
        }
    }

    // Decide the status, write it once when it changed.
    let (mut status, mut status_notes) = decide::status(&redis, &observed, &now);
    for record in purges {
        decide::record_purge(&mut status.purges, record);
    }
    notes.append(&mut status_notes);
    if redis.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({
            "apiVersion": Redis::api_version(&()),
            "kind": Redis::kind(&()),
            "status": status,
        });
        Api::<Redis>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&redis.name_any(), &apply_params(), &Patch::Apply(&patch))
            .await?;
    }
    for note in &notes {
        publish(&ctx, &redis, note).await;
    }
    debug!(redis = %redis.name_any(), namespace = %ns, phase = ?status.phase, "reconciled");
    let healthy = status.conditions.iter().all(|c| c.status == "True")
        || (redis.spec.mode != RedisMode::External
            && crate::api::conditions::is_true(&status.conditions, crate::api::conditions::READY));
    Ok(Action::requeue(if healthy { RECHECK } else { RETRY }))
}

/// External mode: the address from the spec and the password from the referenced Secret.
async fn external_endpoint(
    redis: &Redis,
    ctx: &Context,
    ns: &str,
    observed: &mut Observed,
) -> Result<Option<Endpoint>, Error> {
    let Some(ext) = &redis.spec.external else {
        observed.invalid = Some("spec.external is required when mode is external".into());
        return Ok(None);
    };
    let password = match &ext.password_secret {
        None => None,
        Some(r) => {
            let secret = Api::<Secret>::namespaced(ctx.client.clone(), ns).get_opt(&r.name).await?;
            let value = secret.and_then(|s| s.data).and_then(|d| d.get(&r.key).cloned());
            match value.map(|v| String::from_utf8(v.0)) {
                Some(Ok(p)) => Some(Password::new(p.trim_end_matches(['\n', '\r']).to_string())),
                Some(Err(_)) => {
                    observed.invalid = Some(format!(
                        "key {} of Secret {} (spec.external.passwordSecret) is not UTF-8 text; store the password as plain text",
                        r.key, r.name
                    ));
                    return Ok(None);
                }
                None => {
                    observed.invalid = Some(format!(
                        "Secret {} with key {} (spec.external.passwordSecret) does not exist in namespace {ns}; create it with the Redis password",
                        r.name, r.key
                    ));
                    return Ok(None);
                }
            }
        }
    };
    let port = u16::try_from(ext.port)
        .map_err(|_| Error::Invalid(format!("spec.external.port {} is not a TCP port", ext.port)))?;
    Ok(Some(Endpoint {
        host: ext.host.clone(),
        port,
        tls: ext.tls,
        username: ext.username.clone(),
        password,
    }))
}

/// In-cluster modes: password, configuration, Services, PDBs, StatefulSets; observes readiness.
async fn in_cluster(
    redis: &Redis,
    ctx: &Context,
    ns: &str,
    names: &Names,
    observed: &mut Observed,
) -> Result<Option<Endpoint>, Error> {
    let (image, version) = match build::image(redis) {
        Ok(v) => v,
        Err(why) => {
            observed.invalid = Some(why);
            return Ok(None);
        }
    };
    observed.image_version = Some(version);
    let client = &ctx.client;
    let password = ensure_password(redis, ctx, ns, names).await?;

    let (config, config_hash) = build::config_map(redis, names);
    ensure(&Api::<ConfigMap>::namespaced(client.clone(), ns), &config).await?;
    let svc_api: Api<Service> = Api::namespaced(client.clone(), ns);
    for svc in build::services(redis, names) {
        ensure(&svc_api, &svc).await?;
    }
    let pdb_api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    for pdb in build::pdbs(redis, names) {
        ensure(&pdb_api, &pdb).await?;
    }

    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let wanted_storage = redis.spec.storage.clone().unwrap_or_default();
    let mut storage = wanted_storage.clone();
    let live = sts_api.get_opt(&names.statefulset()).await?;
    if let Some((size, class)) = live.as_ref().and_then(build::live_storage) {
        if size.as_ref() != Some(&wanted_storage.size) || class != wanted_storage.storage_class_name {
            observed.note = Some(format!(
                "spec.storage asks for {} of class {}, but existing volumes keep {} of class {}: StatefulSet volume templates cannot change; expand the PersistentVolumeClaims by hand",
                wanted_storage.size.0,
                wanted_storage.storage_class_name.as_deref().unwrap_or("(default)"),
                size.as_ref().map_or("?", |q| q.0.as_str()),
                class.as_deref().unwrap_or("(default)"),
            ));
        }
        storage = Storage {
            size: size.unwrap_or(wanted_storage.size.clone()),
            storage_class_name: class,
            ..wanted_storage
        };
    }
    let sts = build::redis_statefulset(redis, names, &image, &storage, &config_hash);
    ensure(&sts_api, &sts).await?;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let redis_pods = pods(&pod_api, names, "redis").await?;
    observed.redis = Some(set_state(sts_api.get_opt(&names.statefulset()).await?.as_ref(), &redis_pods));

    if redis.spec.mode == RedisMode::Replicated {
        let sentinel = build::sentinel_statefulset(redis, names, &image, &config_hash);
        ensure(&sts_api, &sentinel).await?;
        let sentinel_pods = pods(&pod_api, names, "sentinel").await?;
        observed.sentinel =
            Some(set_state(sts_api.get_opt(&names.sentinel()).await?.as_ref(), &sentinel_pods));
        observed.primary = label_primary(redis, names, &pod_api, &redis_pods, &password).await?;
    } else {
        // Back from replicated: Sentinel's objects go, and the client Service selects every pod.
        delete_owned(&sts_api, &names.sentinel()).await?;
        delete_owned(&svc_api, &names.sentinel()).await?;
        delete_owned(&pdb_api, &names.sentinel()).await?;
    }
    Ok(Some(build::in_cluster_endpoint(names, password)))
}

/// Reads the generated password, creating it once. It never changes afterwards.
async fn ensure_password(redis: &Redis, ctx: &Context, ns: &str, names: &Names) -> Result<Password, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let read = |s: Option<Secret>| {
        s.and_then(|s| s.data)
            .and_then(|d| d.get(build::PASSWORD_KEY).cloned())
            .and_then(|v| String::from_utf8(v.0).ok())
            .filter(|p| !p.is_empty())
            .map(Password::new)
    };
    if let Some(p) = read(api.get_opt(&names.password_secret()).await?) {
        return Ok(p);
    }
    let secret = build::password_secret(redis, names, &Password::generate());
    match api
        .create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() }, &secret)
        .await
    {
        Ok(_) => {
            info!(redis = %redis.name_any(), namespace = %ns, secret = %names.password_secret(), "generated the Redis password")
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    read(api.get_opt(&names.password_secret()).await?).ok_or_else(|| {
        Error::Invalid(format!(
            "Secret {} exists without a `{}` key; delete it so the operator generates a new password",
            names.password_secret(),
            build::PASSWORD_KEY
        ))
    })
}

async fn pods(api: &Api<Pod>, names: &Names, component: &str) -> Result<Vec<Pod>, Error> {
    let selector: Vec<String> =
        build::selector(names, component).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(api.list(&ListParams::default().labels(&selector.join(","))).await?.items)
}

/// Readiness of a StatefulSet, with why its first unready pod waits.
fn set_state(sts: Option<&StatefulSet>, pods: &[Pod]) -> SetState {
    let Some(sts) = sts else { return SetState::default() };
    let status = sts.status.clone().unwrap_or_default();
    let wanted = sts.spec.replicas.unwrap_or(1);
    let rolled_out = status.current_revision.is_some()
        && status.current_revision == status.update_revision
        && status.updated_replicas.unwrap_or(0) >= wanted;
    let waiting = pods
        .iter()
        .filter(|p| {
            !p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .min_by_key(|p| p.name_any())
        .map(|p| {
            let st = p.status.clone().unwrap_or_default();
            let why = st
                .conditions
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.status == "False" && c.message.is_some())
                .and_then(|c| c.message)
                .unwrap_or_else(|| "not ready yet".into());
            format!("pod {} is {}: {why}", p.name_any(), st.phase.unwrap_or_else(|| "Pending".into()))
        });
    SetState { wanted, ready: status.ready_replicas.unwrap_or(0), rolled_out, waiting }
}

/// `replicated` mode: labels the primary pod (as Sentinel names it, else as labelled, else pod 0)
/// so the client Service follows failovers.
async fn label_primary(
    redis: &Redis,
    names: &Names,
    api: &Api<Pod>,
    pods: &[Pod],
    password: &Password,
) -> Result<Option<String>, Error> {
    let roles: BTreeMap<String, Option<String>> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), p.labels().get(build::ROLE_LABEL).cloned()))
        .collect();
    let sentinel = Endpoint {
        host: names.sentinel_host(),
        port: build::SENTINEL_PORT as u16,
        tls: false,
        username: None,
        password: Some(password.clone()),
    };
    let answer = if roles.is_empty() {
        None
    } else {
        provider::sentinel_primary(&sentinel, &names.redis).await.ok().flatten()
    };
    let primary = decide::primary_pod(&names.statefulset(), &roles, answer.as_deref());
    for (pod, role) in decide::role_changes(&roles, primary.as_deref()) {
        info!(redis = %redis.name_any(), %pod, role, "labelling Redis pod");
        let patch = serde_json::json!({"metadata": {"labels": {build::ROLE_LABEL: role}}});
        match api.patch(&pod, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(primary)
}

/// Marks the Apps wired to this Redis with the connection Secret's hash, so they reconcile,
/// read the new Secret, and roll through their own strategy.
async fn notify_apps(
    redis: &Redis,
    ctx: &Context,
    ns: &str,
    apps: &[App],
    hash: &str,
    notes: &mut Vec<Note>,
) -> Result<(), Error> {
    let api: Api<App> = Api::namespaced(ctx.client.clone(), ns);
    let names = decide::apps_to_notify(redis, apps, hash);
    for app in &names {
        let patch = serde_json::json!({"metadata": {"annotations": {decide::CONNECTION_CHANGED: hash}}});
        match api.patch(app, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !names.is_empty() {
        notes.push(Note {
            warning: false,
            reason: "AppsNotified",
            message: format!(
                "connection Secret {}-redis is current in App(s) {}; they pick it up and roll if it changed",
                redis.name_any(),
                names.join(", ")
            ),
        });
    }
    Ok(())
}

/// Runs the purges that are due, each once, and returns their records.
async fn purge_due(
    redis: &Redis,
    endpoint: &Endpoint,
    apps: &[App],
    now: &Time,
    notes: &mut Vec<Note>,
) -> Vec<PurgeRecord> {
    let Some(purge) = &redis.spec.purge_on_promote else { return vec![] };
    let max = u64::try_from(purge.max_keys).unwrap_or(0);
    let mut records = vec![];
    for due in decide::purges_due(redis, apps) {
        match provider::purge(endpoint, &purge.patterns, max).await {
            Ok(deleted) => {
                let truncated = deleted >= max;
                let message = format!(
                    "deleted {deleted} keys matching {} after App {} promoted revision {}{}",
                    purge.patterns.join(", "),
                    due.app,
                    due.revision,
                    if truncated { format!(" (stopped at purgeOnPromote.maxKeys = {max})") } else { String::new() }
                );
                info!(redis = %redis.name_any(), app = %due.app, revision = %due.revision, deleted, "purged keys after a promotion");
                notes.push(Note { warning: truncated, reason: "Purged", message });
                records.push(PurgeRecord {
                    app: due.app,
                    revision: due.revision,
                    promoted_at: due.promoted_at,
                    deleted_keys: i64::try_from(deleted).unwrap_or(i64::MAX),
                    truncated,
                    time: now.clone(),
                });
            }
            Err(e) => notes.push(Note {
                warning: true,
                reason: "PurgeFailed",
                message: format!(
                    "could not purge keys after App {} promoted revision {}: Redis at {} {e}; {}. The purge is retried",
                    due.app,
                    due.revision,
                    endpoint.address(),
                    e.advice()
                ),
            }),
        }
    }
    records
}

async fn publish(ctx: &Context, redis: &Redis, note: &Note) {
    // Retries fold into one series; one-off Events (a purge's count, a flip of a condition)
    // keep their own sentence.
    let fold = matches!(note.reason, "PurgeDelayed" | "PurgeFailed");
    let note_parts = (note.warning, note.reason, note.message.as_str());
    super::publish_event(&ctx.client, &ctx.recorder, &redis.object_ref(&()), note_parts, fold).await;
}
