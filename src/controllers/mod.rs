//! Controllers, one module per kind: observe -> decide (pure) -> apply (server-side apply with one
//! field manager) -> status. This module holds what they share: the context (client, caches,
//! metrics, events), errors with a bounded category, and the wiring that runs them.

pub mod analysis;
pub mod app;
pub mod atlas;
pub mod edge;
pub mod metrics;
pub mod promotion;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::PatchParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::api::{AnalysisRun, AnalysisTemplate, App};
use app::build::{APP_LABEL, MANAGED_BY, MANAGER};

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = MANAGER;

/// Server-side apply parameters: our field manager, forcing ownership of the fields we set.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Reconcile failures. [`Error::category`] is bounded, for metrics labels and event reasons.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be (de)serialized.
    #[error("could not serialize an object: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The resource cannot be handled as written.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// A small fixed set of values, safe as a metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 422 => "invalid_object",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(_) => "kube_api",
            Error::Serialization(_) => "serialization",
            Error::Invalid(_) => "invalid_spec",
        }
    }
}

/// Caches of the objects the operator owns, filled by its watches.
#[derive(Clone)]
pub struct Stores {
    /// ReplicaSets managed by the operator.
    pub replica_sets: Store<ReplicaSet>,
    /// Pods of those ReplicaSets and Jobs.
    pub pods: Store<Pod>,
    /// Pre- and post-deploy Jobs.
    pub jobs: Store<Job>,
    /// AnalysisRuns the operator created for Apps.
    pub analysis_runs: Store<AnalysisRun>,
    /// AnalysisTemplates, which Apps' analysis references name.
    pub analysis_templates: Store<AnalysisTemplate>,
}

/// What every reconcile gets.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Caches.
    pub stores: Stores,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// The clock (injected so tests can move time).
    pub clock: fn() -> Timestamp,
}

/// True when every field of `want` is present in `live` with the same value (objects compared
/// key by key, arrays element by element). Server defaults in `live` are ignored.
pub fn json_contains(live: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => w.iter().all(|(k, wv)| {
            if wv.is_null() {
                return true;
            }
            l.get(k).is_some_and(|lv| json_contains(lv, wv))
        }),
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(a, b)| json_contains(a, b))
        }
        (l, w) => l == w,
    }
}

fn managed() -> watcher::Config {
    watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"))
}

/// Maps a child object to the App named by its label.
fn to_app<K: Resource>(obj: &K) -> Option<ObjectRef<App>> {
    let name = obj.meta().labels.as_ref()?.get(APP_LABEL)?;
    Some(ObjectRef::new(name).within(obj.meta().namespace.as_deref()?))
}

/// Runs the App controller until the stream ends (on shutdown).
pub async fn run_app_controller(
    client: Client,
    metrics: metrics::Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (rs_store, rs_writer) = reflector::store::<ReplicaSet>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let (job_store, job_writer) = reflector::store::<Job>();
    let rs_stream = reflector::reflector(
        rs_writer,
        watcher(Api::<ReplicaSet>::all(client.clone()), managed())
            .modify(|o: &mut ReplicaSet| o.managed_fields_mut().clear()),
    )
    .default_backoff()
    .touched_objects();
    let pod_stream = reflector::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), managed()).modify(|o: &mut Pod| {
            o.managed_fields_mut().clear();
            if let Some(spec) = o.spec.as_mut() {
                // Only labels, status and timestamps are read; drop the bulk.
                spec.containers.iter_mut().for_each(|c| {
                    c.env = None;
                    c.env_from = None;
                });
            }
        }),
    )
    .default_backoff()
    .touched_objects();
    let job_stream = reflector::reflector(
        job_writer,
        watcher(Api::<Job>::all(client.clone()), managed())
            .modify(|o: &mut Job| o.managed_fields_mut().clear()),
    )
    .default_backoff()
    .touched_objects();

    let (run_store, run_writer) = reflector::store::<AnalysisRun>();
    let run_stream = reflector::reflector(
        run_writer,
        watcher(Api::<AnalysisRun>::all(client.clone()), managed())
            .modify(|o: &mut AnalysisRun| o.managed_fields_mut().clear()),
    )
    .default_backoff()
    .touched_objects();
    let (template_store, template_writer) = reflector::store::<AnalysisTemplate>();
    let template_stream = reflector::reflector(
        template_writer,
        watcher(Api::<AnalysisTemplate>::all(client.clone()), watcher::Config::default())
            .modify(|o: &mut AnalysisTemplate| o.managed_fields_mut().clear()),
    )
    .default_backoff()
    .touched_objects();

    let recorder =
        Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: None });
    let ctx = Arc::new(Context {
        client: client.clone(),
        stores: Stores {
            replica_sets: rs_store,
            pods: pod_store,
            jobs: job_store,
            analysis_runs: run_store,
            analysis_templates: template_store,
        },
        recorder,
        metrics,
        clock: app::system_clock,
    });
    // Apps come through a reflector of our own so their managedFields can be dropped from the cache.
    let (app_store, app_writer) = reflector::store::<App>();
    let app_stream = reflector::reflector(
        app_writer,
        watcher(Api::<App>::all(client.clone()), watcher::Config::default().any_semantic())
            .modify(|a: &mut App| a.managed_fields_mut().clear()),
    )
    .default_backoff()
    .touched_objects();
    let apps = app_store.clone();
    Controller::for_stream(app_stream, app_store)
        .owns_stream(rs_stream)
        .owns_stream(job_stream)
        .owns_stream(run_stream)
        .watches_stream(template_stream, {
            // A template that appears or changes wakes the Apps that name it.
            move |t: AnalysisTemplate| {
                let ns = t.namespace();
                apps.state()
                    .iter()
                    .filter(|a| a.namespace() == ns && app::references_template(a, &t.name_any()))
                    .map(|a| ObjectRef::from_obj(a.as_ref()))
                    .collect::<Vec<_>>()
            }
        })
        .watches_stream(pod_stream, |pod: Pod| to_app(&pod))
        .with_config(kube::runtime::controller::Config::default().concurrency(APP_RECONCILE_CONCURRENCY))
        .graceful_shutdown_on(shutdown)
        .run(app::reconcile, app::error_policy, ctx)
        .for_each(|result| log_result("App", result))
        .await;
    info!("App controller stopped");
}

/// Runs every controller until `shutdown` completes. Each controller is one future here; add new
/// kinds to the list.
pub async fn run(
    client: Client,
    metrics: metrics::Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let controllers: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> = vec![
        Box::pin(run_app_controller(client.clone(), metrics.clone(), shutdown.clone())),
        Box::pin(redis::run(client.clone(), shutdown.clone())),
        Box::pin(atlas::run(client.clone(), shutdown.clone())),
        Box::pin(analysis::run(client.clone(), shutdown.clone())),
        Box::pin(edge::run(client.clone(), shutdown.clone())),
    ];
    futures::future::join_all(controllers).await;
}

/// Applies `desired` (server-side apply) unless the live object already holds every field of it,
/// so an unchanged object costs a read, never a write. True when it wrote.
pub async fn ensure<K>(api: &Api<K>, desired: &K) -> Result<bool, Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    if let Some(live) = api.get_opt(&name).await? {
        let (live, want) = (serde_json::to_value(&live)?, serde_json::to_value(desired)?);
        if json_contains(&live, &want) {
            return Ok(false);
        }
    }
    api.patch(&name, &apply_params(), &kube::api::Patch::Apply(desired)).await?;
    Ok(true)
}

/// Deletes `name`; an object already gone is fine.
pub async fn delete_if_exists<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &kube::api::DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes `name` if it exists and the operator manages it (never someone else's object).
pub async fn delete_owned<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if let Some(obj) = api.get_opt(name).await?
        && obj.meta().labels.as_ref().and_then(|l| l.get(MANAGED_BY)).map(String::as_str) == Some(MANAGER)
    {
        delete_if_exists(api, name).await?;
    }
    Ok(())
}

/// Logs what a controller's stream yields that its error policy did not already log.
pub async fn log_result<K, E>(
    kind: &'static str,
    result: Result<
        (ObjectRef<K>, kube::runtime::controller::Action),
        kube::runtime::controller::Error<E, watcher::Error>,
    >,
) where
    K: Resource,
    E: std::error::Error + 'static,
{
    use kube::runtime::controller::Error as ControllerError;
    match result {
        // Logged by the error policy, or an object deleted meanwhile: nothing to add.
        Ok(_) | Err(ControllerError::ObjectNotFound(_) | ControllerError::ReconcilerFailed(..)) => {}
        Err(e) => warn!(%kind, error = %e, "controller error"),
    }
}

/// Sets the annotation `key: value` on each named App of `ns` (merge patch), so it reconciles and
/// reads its connection Secrets again; an App deleted meanwhile is skipped.
pub async fn mark_apps(
    client: &Client,
    ns: &str,
    names: &[String],
    key: &str,
    value: &str,
) -> Result<(), Error> {
    let api: Api<App> = Api::namespaced(client.clone(), ns);
    for app in names {
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        match api.patch(app, &PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Records an Event about `reference`. With `fold`, `recorder` is reused, so repeats of a reason
/// (retries) fold into one series that keeps its first note; otherwise a fresh recorder keeps
/// each one-off sentence (a purge's scope, a condition's flip) as its own Event.
pub async fn publish_event(
    client: &Client,
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    (warning, reason, message): (bool, &str, &str),
    fold: bool,
) {
    use kube::runtime::events::{Event, EventType};
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.to_string(),
        note: Some(message.to_string()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let fresh;
    let recorder = if fold {
        recorder
    } else {
        fresh = Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: None });
        &fresh
    };
    if let Err(error) = recorder.publish(&event, reference).await {
        warn!(object = ?reference.name, %error, "could not record an event");
    }
}

/// Default pause between retries of a failed reconcile.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How many Apps reconcile at once. A burst (hundreds of Apps changed together) otherwise runs
/// every reconcile at the same time, each holding its objects and request bodies; the rest wait in
/// the queue (deduplicated), so the bound costs latency only during bursts.
pub const APP_RECONCILE_CONCURRENCY: u16 = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_contains_ignores_server_defaults() {
        let live = json!({"spec": {"selector": {"a": "1"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": "http"}], "clusterIP": "10.0.0.5"}});
        assert!(json_contains(
            &live,
            &json!({"spec": {"selector": {"a": "1"}, "ports": [{"port": 80, "targetPort": "http"}]}})
        ));
        assert!(!json_contains(&live, &json!({"spec": {"selector": {"a": "2"}}})));
        assert!(!json_contains(&live, &json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}})));
        assert!(json_contains(&live, &json!({"status": null})));
        assert!(!json_contains(&live, &json!({"metadata": {"labels": {"x": "y"}}})));
    }

    #[test]
    fn error_categories_are_bounded() {
        let e = Error::Invalid("anything at all".into());
        assert_eq!(e.category(), "invalid_spec");
    }
}
