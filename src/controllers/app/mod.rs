//! The App controller: observe (caches) -> decide (the pure rollout engine) -> apply (server-side
//! apply, only what differs) -> status (written once, only when it changed) and events.

mod analysis;
pub mod build;
pub mod observe;

pub use analysis::references_template;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, warn};

use self::build::Connections;
use super::{Context, Error, apply_params, delete_if_exists, delete_owned, ensure, json_contains};
use crate::api::App;
use crate::rollout::{self, Input, JobKind, Observed, Plan};
use crate::traffic;

/// Reconciles one App.
pub async fn reconcile(app: Arc<App>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&app, &ctx).await;
    ctx.metrics.observe_reconcile(started.elapsed(), result.as_ref().err());
    result
}

async fn reconcile_inner(app: &App, ctx: &Context) -> Result<Action, Error> {
    if app.metadata.deletion_timestamp.is_some() {
        // Children carry owner references; the garbage collector removes them.
        return Ok(Action::await_change());
    }
    let ns = app.namespace().ok_or_else(|| Error::Invalid("App has no namespace".into()))?;
    let now = (ctx.clock)();

    // Observe.
    let (connections, invalid) = connections(app, ctx, &ns).await?;
    let (template, desired) = build::pod_template(app, &connections);
    let analysis_problem = analysis::problem(app, ctx, &desired);
    let invalid = invalid.or(analysis_problem);
    let replica_sets = ctx.stores.replica_sets.state();
    let pods = ctx.stores.pods.state();
    let jobs = ctx.stores.jobs.state();
    let revisions = observe::revisions(app, &replica_sets, &pods);
    let job_state = |kind: JobKind, configured: bool| {
        if configured {
            observe::job_state(&build::job_name(app, kind, &desired), app, &jobs, &pods)
        } else {
            rollout::JobState::NotConfigured
        }
    };
    let jobs_spec = app.spec.jobs.as_ref();
    let status = app.status.clone().unwrap_or_default();
    let mut observed = Observed {
        desired_revision: desired.clone(),
        revisions,
        pre_deploy: job_state(JobKind::PreDeploy, jobs_spec.is_some_and(|j| j.pre_deploy.is_some())),
        post_deploy: job_state(JobKind::PostDeploy, jobs_spec.is_some_and(|j| j.post_deploy.is_some())),
        pods_to_restart: observe::pods_to_restart(app, status.stable_revision.as_deref(), &pods),
        name: app.name_any(),
        analysis_runs: analysis::observed_runs(app, ctx),
        invalid,
        selector: build::selector_string(app),
        gates: BTreeMap::new(),
    };

    // Decide; when webhook gates are due, ask them and decide again with their answers.
    let annotations = app.annotations().clone();
    let decide = |observed: &Observed| {
        rollout::decide(Input {
            spec: &app.spec,
            generation: app.metadata.generation,
            annotations: &annotations,
            status: &status,
            observed,
            now,
        })
    };
    let mut plan = decide(&observed);
    if !plan.ask_gates.is_empty() {
        observed.gates = ask_gates(app, &ns, &desired, &plan.ask_gates).await;
        plan = decide(&observed);
    }

    // Apply.
    apply_plan(app, ctx, &ns, &plan, &desired, &template, &replica_sets).await?;
    analysis::apply(app, ctx, &ns, &plan, &desired).await?;
    if plan.status != status {
        let patch = serde_json::json!({
            "apiVersion": App::api_version(&()),
            "kind": App::kind(&()),
            "status": plan.status,
        });
        let api: Api<App> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(&app.name_any(), &apply_params(), &Patch::Apply(&patch)).await?;
        ctx.metrics.record_status(format!("{ns}/{}", app.name_any()), &status, &plan.status);
    }
    for note in &plan.notes {
        publish(ctx, app, note).await;
    }
    debug!(app = %app.name_any(), namespace = %ns, phase = ?plan.status.phase, "reconciled");
    Ok(match plan.requeue_after {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Asks the App's webhook gates named in `names`, all at once.
async fn ask_gates(
    app: &App,
    ns: &str,
    revision: &str,
    names: &[String],
) -> BTreeMap<String, rollout::GateAnswer> {
    let hooks = app.spec.strategy.as_ref().map_or(&[][..], |s| s.webhooks.as_slice());
    let asks = hooks.iter().filter(|h| names.contains(&h.name)).map(|hook| async move {
        let request = crate::providers::webhook::GateRequest {
            name: app.name_any(),
            namespace: ns.to_string(),
            app: format!("{ns}/{}", app.name_any()),
            phase: hook.kind.phase().to_string(),
            revision: revision.to_string(),
            image: app.spec.image.clone(),
            metadata: hook.metadata.clone(),
        };
        let answer = crate::providers::webhook::ask(hook, &request).await;
        info!(app = %app.name_any(), namespace = %ns, webhook = %hook.name, passed = answer.passed, "asked a webhook gate");
        (hook.name.clone(), answer)
    });
    futures::future::join_all(asks).await.into_iter().collect()
}

/// Names and hash of the connection Secrets. A missing Secret makes the spec unusable for now.
async fn connections(app: &App, ctx: &Context, ns: &str) -> Result<(Connections, Option<String>), Error> {
    let Some(c) = &app.spec.connections else { return Ok((Connections::default(), None)) };
    let mut wanted: Vec<(String, String)> = vec![];
    if let Some(redis) = &c.redis {
        wanted.push((
            crate::controllers::redis::build::connection_secret_name(redis),
            format!("Redis {redis}"),
        ));
    }
    if let Some(mongo) = &c.mongodb {
        wanted.push((format!("{mongo}-mongodb"), format!("AtlasConnection {mongo}")));
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut found = vec![];
    for (name, owner) in &wanted {
        match api.get_opt(name).await? {
            Some(secret) => found.push((name.clone(), secret.data.unwrap_or_default())),
            None => {
                return Ok((
                    Connections::default(),
                    Some(format!("waiting for Secret {name} of {owner}; the App rolls out once it exists")),
                ));
            }
        }
    }
    let data: Vec<(String, BTreeMap<String, Vec<u8>>)> =
        found.into_iter().map(|(n, d)| (n, d.into_iter().map(|(k, v)| (k, v.0)).collect())).collect();
    let hash = build::hash_secret_data(data.iter().map(|(n, d)| (n.as_str(), d)));
    Ok((Connections { secrets: data.into_iter().map(|(n, _)| n).collect(), hash }, None))
}

async fn apply_plan(
    app: &App,
    ctx: &Context,
    ns: &str,
    plan: &Plan,
    desired: &str,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    replica_sets: &[Arc<ReplicaSet>],
) -> Result<(), Error> {
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    for (hash, replicas) in &plan.scale {
        let observed = replica_sets.iter().find(|rs| {
            rs.namespace().as_deref() == Some(ns)
                && rs.labels().get(build::APP_LABEL) == Some(&app.name_any())
                && rs.labels().get(build::REVISION_LABEL) == Some(hash)
        });
        let wanted = match observed {
            Some(rs) if rs.spec.replicas == Some(*replicas) => continue,
            Some(rs) => build::resize(app, rs, *replicas),
            None if *replicas == 0 => continue,
            None if hash == desired => Some(build::replica_set(app, hash, template.clone(), *replicas)),
            None => None,
        };
        if let Some(rs) = wanted {
            rs_api.patch(&rs.name_any(), &apply_params(), &Patch::Apply(&rs)).await?;
        }
    }
    for hash in &plan.delete_revisions {
        delete_if_exists(&rs_api, &format!("{}-{hash}", app.name_any())).await?;
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
        for kind in [JobKind::PreDeploy, JobKind::PostDeploy] {
            delete_if_exists(&jobs, &build::job_name(app, kind, hash)).await?;
        }
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    for pod in &plan.delete_pods {
        delete_if_exists(&pods, pod).await?;
    }

    // Services: the main one and the one for the new revision; the other strategy's is removed.
    let svc_api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    ensure(&svc_api, &build::service(app, app.name_any(), &plan.active)).await?;
    let preview_name = build::preview_service_name(app);
    ensure(&svc_api, &build::service(app, preview_name.clone(), &plan.preview)).await?;
    for stale in [format!("{}-canary", app.name_any()), format!("{}-preview", app.name_any())] {
        if stale != preview_name {
            delete_owned(&svc_api, &stale).await?;
        }
    }

    // Routes: Ingresses (the NGINX canary Ingress only while a canary runs) or Gateway API
    // HTTPRoutes. The main Service is switched before the router moves weight back.
    let ing_api: Api<Ingress> = Api::namespaced(ctx.client.clone(), ns);
    let mut ingresses = build::ingresses(app);
    if let Some(t) = &plan.traffic
        && traffic::router_kind(app) == traffic::RouterKind::Nginx
        && let Some(canary) = traffic::nginx_canary_ingress(app, t)
    {
        ingresses.push(canary);
    }
    for ing in &ingresses {
        ensure(&ing_api, ing).await?;
    }
    for stale in [app.name_any(), format!("{}-preview", app.name_any()), traffic::canary_ingress_name(app)] {
        if !ingresses.iter().any(|i| i.name_any() == stale) {
            delete_owned(&ing_api, &stale).await?;
        }
    }
    let routes = traffic::http_routes(app, plan.traffic.as_ref());
    if !routes.is_empty() {
        let route_api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &traffic::http_route_resource());
        for route in &routes {
            ensure_dynamic(&route_api, route).await?;
        }
    }

    let hpa_api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), ns);
    match build::hpa(app) {
        Some(hpa) => {
            ensure(&hpa_api, &hpa).await?;
        }
        None => delete_owned(&hpa_api, &app.name_any()).await?,
    }

    if let Some(kind) = plan.create_job
        && let Some(job) = build::job(app, kind, desired, template)
    {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
        if jobs.get_opt(&job.name_any()).await?.is_none() {
            info!(app = %app.name_any(), job = %job.name_any(), "creating job");
            jobs.patch(&job.name_any(), &apply_params(), &Patch::Apply(&job)).await?;
        }
    }
    Ok(())
}

/// [`ensure`] for objects without a Rust type (Gateway API HTTPRoutes).
async fn ensure_dynamic(api: &Api<DynamicObject>, desired: &DynamicObject) -> Result<(), Error> {
    let name = desired.name_any();
    if let Some(live) = api.get_opt(&name).await? {
        let (live, want) = (serde_json::to_value(&live)?, serde_json::to_value(desired)?);
        if json_contains(&live, &want) {
            return Ok(());
        }
    }
    let mut body = serde_json::to_value(desired)?;
    body["apiVersion"] = serde_json::json!("gateway.networking.k8s.io/v1");
    body["kind"] = serde_json::json!("HTTPRoute");
    api.patch(&name, &apply_params(), &Patch::Apply(&body)).await?;
    Ok(())
}

async fn publish(ctx: &Context, app: &App, note: &rollout::Note) {
    let event = Event {
        type_: if note.warning { EventType::Warning } else { EventType::Normal },
        reason: note.reason.to_string(),
        note: Some(note.message.clone()),
        action: "Reconcile".into(),
        secondary: None,
    };
    // kube's Recorder folds Events of the same reason into one series that keeps the first note;
    // each rollout transition is its own sentence (a second RolloutStarted names a new image),
    // so every Event gets a fresh recorder. Transitions are few, so nothing floods.
    let recorder = kube::runtime::events::Recorder::new(
        ctx.client.clone(),
        kube::runtime::events::Reporter { controller: super::FIELD_MANAGER.into(), instance: None },
    );
    if let Err(error) = recorder.publish(&event, &app.object_ref(&())).await {
        warn!(app = %app.name_any(), %error, "could not record an event");
    }
}

/// How long to wait before retrying a failed reconcile.
pub fn error_policy(app: Arc<App>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(app = %app.name_any(), namespace = ?app.namespace(), category = error.category(), %error, "reconcile failed; retrying");
    Action::requeue(super::RETRY_AFTER)
}

/// The clock the controller uses (injected for tests).
pub fn system_clock() -> Timestamp {
    Timestamp::now()
}
