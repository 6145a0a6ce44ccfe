//! The AnalysisRun controller: measures each metric of a run when it is due (Prometheus, web,
//! Job), records the measurements, decides (pure, in [`crate::analysis::run`]) and writes the
//! status once per reconcile, only when it changed. It requeues exactly when the next
//! measurement is due, and deletes a finished run when its TTL is over.
//!
//! Header values from Secrets go into requests only: never into the status, Events, logs or
//! error messages.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::app::build::{MANAGED_BY, MANAGER};
use super::{Error, FIELD_MANAGER, apply_params, delete_if_exists};
use crate::analysis::Measurement;
use crate::analysis::providers::{self, METRIC_LABEL};
use crate::analysis::run::{self, Next, Outcome, Work};
use crate::api::analysis::{AnalysisPhase, AnalysisRun, AnalysisRunStatus, Metric, WebProvider};

/// What every AnalysisRun reconcile gets.
pub struct Context {
    /// API client.
    pub client: Client,
    /// HTTP client for Prometheus and web metrics.
    pub http: reqwest::Client,
    /// Jobs of job measurements.
    pub jobs: Store<Job>,
    /// The clock (injected so tests can move time).
    pub clock: fn() -> Timestamp,
}

/// Runs the AnalysisRun controller until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    crate::providers::http::ensure_crypto_provider();
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("authentify-operator/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "cannot build the HTTP client; the AnalysisRun controller does not run");
            return;
        }
    };
    let (job_store, job_writer) = reflector::store::<Job>();
    let jobs = reflector::reflector(
        job_writer,
        watcher(
            Api::<Job>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER},{METRIC_LABEL}")),
        )
        .modify(|j: &mut Job| {
            j.managed_fields_mut().clear();
            j.spec = None;
        }),
    )
    .default_backoff()
    .touched_objects();
    let ctx = Arc::new(Context { client: client.clone(), http, jobs: job_store, clock: Timestamp::now });
    Controller::new(Api::<AnalysisRun>::all(client), watcher::Config::default().any_semantic())
        .owns_stream(jobs)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| super::log_result("AnalysisRun", result))
        .await;
    info!("AnalysisRun controller stopped");
}

/// How long to wait before retrying a failed reconcile.
pub fn error_policy(run: Arc<AnalysisRun>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(run = %run.name_any(), namespace = ?run.namespace(), category = error.category(), %error, "AnalysisRun reconcile failed; retrying");
    Action::requeue(super::RETRY_AFTER)
}

/// Reconciles one AnalysisRun.
pub async fn reconcile(ar: Arc<AnalysisRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ar.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ar.namespace().ok_or_else(|| Error::Invalid("AnalysisRun has no namespace".into()))?;
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &ns);
    let old = ar.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let now = (ctx.clock)();
    if status.started_at.is_none() {
        // The first reconcile only starts the clock, so initialDelay counts from a recorded time.
        run::settle(&ar.spec, &mut status, now);
    }
    for work in run::due(&ar.spec, &status, now) {
        let index = match &work {
            Work::Measure { index, .. } | Work::CheckJob { index, .. } => *index,
        };
        let Some(metric) = ar.spec.metrics.get(index) else { continue };
        let outcome = match work {
            Work::Measure { number, .. } => measure(&ar, metric, number, &ctx, &ns).await?,
            Work::CheckJob { job, .. } => check_job(&job, &ctx, &ns).await?,
        };
        if let Some(outcome) = outcome {
            debug!(run = %ar.name_any(), metric = %metric.name, ?outcome, "measured");
            run::record(&mut status, metric, outcome, (ctx.clock)());
        }
    }
    let now = (ctx.clock)();
    let next = run::settle(&ar.spec, &mut status, now);
    if next == Next::Delete {
        info!(run = %ar.name_any(), namespace = %ns, "AnalysisRun finished longer ago than its TTL; deleting it");
        delete_if_exists(&api, &ar.name_any()).await?;
        return Ok(Action::await_change());
    }
    if status.phase.is_some_and(AnalysisPhase::is_finished) {
        stop_jobs(&ar, &status, &ctx, &ns).await?;
    }
    if status != old {
        let patch = serde_json::json!({
            "apiVersion": AnalysisRun::api_version(&()),
            "kind": AnalysisRun::kind(&()),
            "status": status,
        });
        api.patch_status(&ar.name_any(), &apply_params(), &Patch::Apply(&patch)).await?;
        if old.phase != status.phase && status.phase.is_some_and(AnalysisPhase::is_finished) {
            publish(&ctx, &ar, &status).await;
        }
    }
    Ok(match next {
        Next::After(d) => Action::requeue(d),
        Next::Wait | Next::Delete => Action::await_change(),
    })
}

async fn measure(
    ar: &AnalysisRun,
    metric: &Metric,
    number: i32,
    ctx: &Context,
    ns: &str,
) -> Result<Option<Outcome>, Error> {
    let p = &metric.provider;
    if let Some(prom) = &p.prometheus {
        return Ok(Some(Outcome::Done(providers::prometheus(&ctx.http, prom).await, None)));
    }
    if let Some(web) = &p.web {
        let measurement = match headers(web, ctx, ns).await? {
            Ok(headers) => providers::web(&ctx.http, web, &headers).await,
            Err(why) => Measurement::Error(why),
        };
        return Ok(Some(Outcome::Done(measurement, None)));
    }
    if let Some(job) = &p.job {
        let job = providers::job(ar, metric, job, number);
        let name = job.name_any();
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
        match jobs
            .create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() }, &job)
            .await
        {
            Ok(_) => info!(run = %ar.name_any(), job = %name, "started a job measurement"),
            // Created by an earlier attempt that did not get to record it.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Some(Outcome::Started { job: name }));
    }
    Ok(Some(Outcome::Done(Measurement::Error("the metric sets no provider".into()), None)))
}

/// The header values of a web metric, Secrets read. A missing Secret or key is a measurement
/// error naming the Secret and key, never a value.
async fn headers(
    web: &WebProvider,
    ctx: &Context,
    ns: &str,
) -> Result<Result<Vec<(String, String)>, String>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut out = vec![];
    for h in &web.headers {
        let value = match (&h.value, &h.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let r = &from.secret_key_ref;
                let secret = secrets.get_opt(&r.name).await?;
                let bytes = secret.and_then(|s| s.data).and_then(|d| d.get(&r.key).map(|b| b.0.clone()));
                match bytes.map(String::from_utf8) {
                    Some(Ok(v)) => v,
                    Some(Err(_)) => {
                        return Ok(Err(format!(
                            "header {}: key {} of Secret {} is not text",
                            h.name, r.key, r.name
                        )));
                    }
                    None => {
                        return Ok(Err(format!(
                            "header {}: Secret {} has no key {} in namespace {ns}",
                            h.name, r.name, r.key
                        )));
                    }
                }
            }
            (None, None) => String::new(),
        };
        out.push((h.name.clone(), value));
    }
    Ok(Ok(out))
}

async fn check_job(name: &str, ctx: &Context, ns: &str) -> Result<Option<Outcome>, Error> {
    let cached = ctx.jobs.get(&ObjectRef::new(name).within(ns));
    let job = match cached {
        Some(j) => (*j).clone(),
        None => match Api::<Job>::namespaced(ctx.client.clone(), ns).get_opt(name).await? {
            Some(j) => j,
            None => {
                return Ok(Some(Outcome::Done(
                    Measurement::Error(format!("job {name} disappeared before it finished")),
                    None,
                )));
            }
        },
    };
    Ok(providers::job_result(&job)
        .map(|(ok, note)| Outcome::Done(Measurement::Value(serde_json::json!(ok)), note)))
}

/// Deletes the Jobs of measurements still running when the run finished (terminated, or decided
/// by another metric).
async fn stop_jobs(
    ar: &AnalysisRun,
    status: &AnalysisRunStatus,
    ctx: &Context,
    ns: &str,
) -> Result<(), Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    for r in &status.metric_results {
        if let Some(job) =
            r.measurements.last().filter(|m| m.finished_at.is_none()).and_then(|m| m.job.as_ref())
            && ctx.jobs.get(&ObjectRef::new(job).within(ns)).is_some()
        {
            info!(run = %ar.name_any(), %job, "run finished; stopping its job");
            delete_if_exists(&jobs, job).await?;
        }
    }
    Ok(())
}

async fn publish(ctx: &Context, ar: &AnalysisRun, status: &AnalysisRunStatus) {
    let phase = status.phase.unwrap_or_default();
    let event = Event {
        type_: if phase == AnalysisPhase::Successful { EventType::Normal } else { EventType::Warning },
        reason: format!("Analysis{phase:?}"),
        note: status.message.clone(),
        action: "Analyze".into(),
        secondary: None,
    };
    let recorder =
        Recorder::new(ctx.client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: None });
    if let Err(error) = recorder.publish(&event, &ar.object_ref(&())).await {
        warn!(run = %ar.name_any(), %error, "could not record an event");
    }
}
