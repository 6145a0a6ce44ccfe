//! The App controller's side of analysis: what the engine needs to know about the App's
//! AnalysisRuns, and carrying out its requests (create the runs it needs, terminate the running
//! ones it no longer needs). The engine decides; this only observes and applies.

use std::collections::BTreeMap;

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use tracing::info;

use super::build;
use crate::analysis::resolve::{self, AppVars};
use crate::api::App;
use crate::api::analysis::{AnalysisRun, AnalysisRunSpec, AnalysisTemplateSpec, DEFAULT_RUN_TTL_SECONDS};
use crate::api::app::AnalysisRef;
use crate::controllers::{Context, Error, FIELD_MANAGER};
use crate::rollout::{ObservedRun, Plan, RunRequest};

/// Every analysis reference of the App's strategy.
fn references(app: &App) -> Vec<&AnalysisRef> {
    let Some(strategy) = app.spec.strategy.as_ref() else { return vec![] };
    let mut refs = vec![];
    if let Some(c) = &strategy.canary {
        refs.extend(c.steps.iter().filter_map(|s| s.analysis.as_ref()));
        refs.extend(c.analysis.as_ref());
    }
    if let Some(b) = &strategy.blue_green {
        refs.extend(b.pre_promotion_analysis.as_ref());
        refs.extend(b.post_promotion_analysis.as_ref());
    }
    refs
}

/// True when the App's strategy names the AnalysisTemplate `name`.
pub fn references_template(app: &App, name: &str) -> bool {
    references(app).iter().any(|r| r.templates.iter().any(|t| t == name))
}

fn owned_by(run: &AnalysisRun, app: &App) -> bool {
    run.namespace() == app.namespace()
        && run.owner_references().iter().any(|o| Some(&o.uid) == app.metadata.uid.as_ref())
}

/// The App's AnalysisRuns, as the engine reads them.
pub fn observed_runs(app: &App, ctx: &Context) -> BTreeMap<String, ObservedRun> {
    ctx.stores
        .analysis_runs
        .state()
        .iter()
        .filter(|r| owned_by(r, app))
        .map(|r| {
            let status = r.status.clone().unwrap_or_default();
            let run = ObservedRun {
                phase: status.phase.unwrap_or_default(),
                message: status.message.unwrap_or_default(),
            };
            (r.name_any(), run)
        })
        .collect()
}

fn vars(app: &App, desired: &str) -> AppVars {
    AppVars {
        name: app.name_any(),
        namespace: app.namespace().unwrap_or_default(),
        revision: desired.to_string(),
        service: build::preview_service_name(app),
        stable_service: app.name_any(),
    }
}

fn resolve(
    app: &App,
    ctx: &Context,
    desired: &str,
    reference: &AnalysisRef,
) -> Result<Vec<crate::api::analysis::Metric>, String> {
    let ns = app.namespace();
    let templates = ctx.stores.analysis_templates.state();
    let lookup = |name: &str| -> Option<AnalysisTemplateSpec> {
        templates.iter().find(|t| t.namespace() == ns && t.name_any() == name).map(|t| t.spec.clone())
    };
    resolve::resolve(reference, &lookup, &vars(app, desired))
}

/// Why the App's analysis cannot run (a template missing, an argument without a value), checked
/// while a rollout runs so that it stops before any run is needed, with what to fix.
pub fn problem(app: &App, ctx: &Context, desired: &str) -> Option<String> {
    let status = app.status.as_ref()?;
    let rolling = status.stable_revision.as_deref().is_some_and(|s| s != desired) && !status.abort;
    if !rolling {
        return None;
    }
    references(app)
        .into_iter()
        .find_map(|r| resolve(app, ctx, desired, r).err())
        .map(|e| format!("analysis cannot run: {e}"))
}

/// The AnalysisRun for a request of the engine, owned by the App.
fn analysis_run(
    app: &App,
    desired: &str,
    request: &RunRequest,
    metrics: Vec<crate::api::analysis::Metric>,
) -> AnalysisRun {
    let mut run = AnalysisRun::new(
        &request.name,
        AnalysisRunSpec {
            app: app.name_any(),
            revision: desired.to_string(),
            purpose: request.purpose.clone(),
            templates: request.analysis.templates.clone(),
            metrics,
            terminate: false,
            ttl_seconds_after_finished: request
                .analysis
                .ttl_seconds_after_finished
                .unwrap_or(DEFAULT_RUN_TTL_SECONDS),
        },
    );
    run.metadata.namespace = app.namespace();
    run.metadata.labels = Some(build::common_labels(app));
    run.metadata.owner_references = app.controller_owner_ref(&()).map(|o| vec![o]);
    run
}

/// Creates the runs the plan needs that do not exist yet, and terminates the App's running runs
/// it no longer needs (an aborted or superseded rollout, a step promoted on request).
pub async fn apply(app: &App, ctx: &Context, ns: &str, plan: &Plan, desired: &str) -> Result<(), Error> {
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), ns);
    let runs = ctx.stores.analysis_runs.state();
    let mine: Vec<_> = runs.iter().filter(|r| owned_by(r, app)).collect();
    for request in &plan.analysis_runs {
        if mine.iter().any(|r| r.name_any() == request.name) {
            continue;
        }
        let metrics = resolve(app, ctx, desired, &request.analysis).map_err(Error::Invalid)?;
        let run = analysis_run(app, desired, request, metrics);
        let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
        match api.create(&params, &run).await {
            Ok(_) => {
                info!(app = %app.name_any(), run = %request.name, purpose = %request.purpose, "created an AnalysisRun")
            }
            // Created by an earlier reconcile the cache has not caught up with.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for run in mine {
        let running = !run.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_finished());
        if running && !run.spec.terminate && !plan.keep_analysis_runs.contains(&run.name_any()) {
            info!(app = %app.name_any(), run = %run.name_any(), "terminating an AnalysisRun the rollout no longer needs");
            let patch = serde_json::json!({"spec": {"terminate": true}});
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
            match api.patch(&run.name_any(), &params, &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
