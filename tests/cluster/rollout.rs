//! Rollouts end to end on the real control plane, with kwok playing the pods and the operator
//! running in-process.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use authentify::api::App;
use authentify::api::app::AppPhase;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Event, Service};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};

use crate::support::{TestCtx, operator, poll_until};

const LONG: Duration = Duration::from_secs(90);

pub(crate) fn app_yaml(name: &str, image: &str, replicas: i32, extra: &str) -> String {
    format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n  replicas: {replicas}\n  port: 3000\n{extra}"
    )
}

pub(crate) async fn patch_spec(ctx: &TestCtx, name: &str, spec: serde_json::Value) -> anyhow::Result<()> {
    ctx.api::<App>()
        .patch(name, &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": spec})))
        .await?;
    Ok(())
}

async fn control(ctx: &TestCtx, name: &str, key: &str) -> anyhow::Result<()> {
    let token = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos());
    let patch = serde_json::json!({"metadata": {"annotations": {key: token}}});
    ctx.api::<App>().patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

fn phase(app: &App) -> Option<AppPhase> {
    app.status.as_ref().and_then(|s| s.phase.clone())
}

pub(crate) async fn wait_phase(
    ctx: &TestCtx,
    name: &str,
    want: AppPhase,
    extra: impl Fn(&App) -> bool,
) -> anyhow::Result<App> {
    let what = format!("{want:?}");
    ctx.wait_for::<App>(name, &what, LONG, |a| phase(a) == Some(want.clone()) && extra(a)).await
}

/// `revision -> (replicas asked, ready)` of the App's ReplicaSets.
pub(crate) async fn replica_sets(ctx: &TestCtx, name: &str) -> anyhow::Result<BTreeMap<String, (i32, i32)>> {
    let list = ctx
        .api::<ReplicaSet>()
        .list(&ListParams::default().labels(&format!("platform.authentify.it/app={name}")))
        .await?;
    Ok(list
        .items
        .iter()
        .map(|rs| {
            let rev = rs.labels().get("platform.authentify.it/revision").cloned().unwrap_or_default();
            (
                rev,
                (
                    rs.spec.replicas.unwrap_or(0),
                    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
                ),
            )
        })
        .collect())
}

async fn service_revision(ctx: &TestCtx, name: &str) -> anyhow::Result<Option<String>> {
    let svc = ctx.api::<Service>().get(name).await?;
    Ok(svc.spec.and_then(|s| s.selector).and_then(|s| s.get("platform.authentify.it/revision").cloned()))
}

pub(crate) async fn event_reasons(ctx: &TestCtx, name: &str) -> anyhow::Result<Vec<String>> {
    let events = ctx.api::<Event>().list(&ListParams::default()).await?;
    Ok(events
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.reason)
        .collect())
}

const CANARY_STEPS: &str = "  strategy:\n    canary:\n      steps:\n        - setWeight: 25\n        - pause: {duration: 3s}\n        - setWeight: 50\n        - pause: {}\n";

pub async fn canary_good_release_steps_pauses_and_promotes(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", 4, CANARY_STEPS)).await?;
    let v1 = wait_phase(&ctx, "api", AppPhase::Healthy, |_| true).await?;
    let stable = v1.status.as_ref().and_then(|s| s.stable_revision.clone()).context("stable revision")?;
    ensure!(v1.status.as_ref().and_then(|s| s.ready.clone()).as_deref() == Some("4/4"));

    patch_spec(&ctx, "api", serde_json::json!({"image": "registry.example.com/api:2"})).await?;
    // The timed pause passes by itself; the rollout stops at the manual pause (step 4/4).
    let paused = wait_phase(&ctx, "api", AppPhase::Paused, |a| {
        a.status.as_ref().and_then(|s| s.current_step_index) == Some(3)
    })
    .await?;
    let status = paused.status.clone().unwrap_or_default();
    ensure!(status.canary_weight == Some(50), "weight {:?}", status.canary_weight);
    ensure!(status.step.as_deref() == Some("4/4"));
    ensure!(
        status.message.as_deref().unwrap_or_default().contains("paused until promoted"),
        "{:?}",
        status.message
    );
    let canary = status.current_revision.clone().context("current revision")?;
    let sets = replica_sets(&ctx, "api").await?;
    ensure!(sets.get(&canary) == Some(&(2, 2)) && sets.get(&stable) == Some(&(2, 2)), "50% of 4: {sets:?}");
    ensure!(
        service_revision(&ctx, "api").await?.is_none(),
        "without a router the main Service selects every revision"
    );
    ensure!(service_revision(&ctx, "api-canary").await?.as_deref() == Some(canary.as_str()));

    control(&ctx, "api", authentify::rollout::PROMOTE).await?;
    let done = wait_phase(&ctx, "api", AppPhase::Healthy, |a| {
        a.status.as_ref().and_then(|s| s.stable_revision.clone()).as_deref() == Some(canary.as_str())
    })
    .await?;
    let history = done.status.clone().unwrap_or_default().history;
    ensure!(
        history.first().map(|h| (h.outcome.as_str(), h.image.as_str()))
            == Some(("Promoted", "registry.example.com/api:2")),
        "{history:?}"
    );
    poll_until("the old revision to scale to zero", LONG, || async {
        Ok(replica_sets(&ctx, "api").await?.get(&stable).map(|r| r.0) == Some(0))
    })
    .await?;
    let reasons = event_reasons(&ctx, "api").await?;
    for reason in ["RolloutStarted", "StepCompleted", "StepPromoted", "Promoted", "Healthy"] {
        ensure!(reasons.iter().any(|r| r == reason), "no {reason} event among {reasons:?}");
    }
    let table = ctx.kubectl_ok(&["get", "apps.platform.authentify.it", "api"])?;
    ensure!(table.contains("Healthy") && table.contains("4/4") && table.contains("Canary"), "{table}");
    Ok(())
}

pub async fn canary_bad_release_rolls_back_by_itself(ctx: TestCtx) -> anyhow::Result<()> {
    let extra = format!("  autoRollback: {{restartThreshold: 2}}\n{CANARY_STEPS}");
    ctx.create_yaml::<App>(&app_yaml("web", "registry.example.com/web:1", 3, &extra)).await?;
    let v1 = wait_phase(&ctx, "web", AppPhase::Healthy, |_| true).await?;
    let stable = v1.status.and_then(|s| s.stable_revision).context("stable")?;

    // The bad release: its pods crash-loop (kwok's crash label).
    patch_spec(&ctx, "web", serde_json::json!({"image": "registry.example.com/web:2", "podLabels": {"sim.authentify.it/crash": "true"}})).await?;
    let degraded = wait_phase(&ctx, "web", AppPhase::Degraded, |_| true).await?;
    let status = degraded.status.clone().unwrap_or_default();
    let message = status.message.clone().unwrap_or_default();
    ensure!(message.contains("rolled back automatically") && message.contains("crash-looping"), "{message}");
    ensure!(status.abort);
    ensure!(status.stable_revision.as_deref() == Some(stable.as_str()));
    ensure!(
        status.conditions.iter().any(|c| c.type_ == "ReplicaFailure" && c.status == "True"),
        "{:?}",
        status.conditions
    );
    poll_until("the bad revision at zero and the stable fully ready", LONG, || async {
        let sets = replica_sets(&ctx, "web").await?;
        let bad = sets.iter().filter(|(r, _)| **r != stable).map(|(_, v)| v.0).sum::<i32>();
        Ok(bad == 0 && sets.get(&stable) == Some(&(3, 3)))
    })
    .await?;
    ensure!(event_reasons(&ctx, "web").await?.iter().any(|r| r == "RolloutAborted"));
    Ok(())
}

const BLUE_GREEN: &str = "  route: {host: shop.authentify.test, ingressClassName: nginx}\n  strategy:\n    blueGreen:\n      previewHost: preview.shop.authentify.test\n      scaleDownDelaySeconds: 120\n";

pub async fn blue_green_manual_promote_then_instant_rollback(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(&app_yaml("shop", "registry.example.com/shop:1", 3, BLUE_GREEN)).await?;
    let v1 = wait_phase(&ctx, "shop", AppPhase::Healthy, |_| true).await?;
    let blue = v1.status.and_then(|s| s.stable_revision).context("stable")?;
    ensure!(service_revision(&ctx, "shop").await?.as_deref() == Some(blue.as_str()));

    patch_spec(&ctx, "shop", serde_json::json!({"image": "registry.example.com/shop:2"})).await?;
    let waiting = wait_phase(&ctx, "shop", AppPhase::Paused, |_| true).await?;
    let green = waiting.status.clone().and_then(|s| s.current_revision).context("current")?;
    ensure!(waiting.status.and_then(|s| s.message).unwrap_or_default().contains("waiting for promotion"));
    ensure!(
        service_revision(&ctx, "shop").await?.as_deref() == Some(blue.as_str()),
        "active must not switch before promotion"
    );
    ensure!(service_revision(&ctx, "shop-preview").await?.as_deref() == Some(green.as_str()));
    ensure!(replica_sets(&ctx, "shop").await?.get(&green) == Some(&(3, 3)), "preview at full size");
    let preview_ingress =
        ctx.kubectl_ok(&["get", "ingress", "shop-preview", "-o", "jsonpath={.spec.rules[0].host}"])?;
    ensure!(preview_ingress == "preview.shop.authentify.test", "{preview_ingress}");

    control(&ctx, "shop", authentify::rollout::PROMOTE).await?;
    wait_phase(&ctx, "shop", AppPhase::Healthy, |a| {
        a.status.as_ref().and_then(|s| s.stable_revision.clone()).as_deref() == Some(green.as_str())
    })
    .await?;
    ensure!(service_revision(&ctx, "shop").await?.as_deref() == Some(green.as_str()), "switched");
    ensure!(
        replica_sets(&ctx, "shop").await?.get(&blue) == Some(&(3, 3)),
        "blue stays up during the scale-down delay"
    );

    // Rollback inside the window: the active Service switches back with no new pods.
    let before = replica_sets(&ctx, "shop").await?;
    patch_spec(&ctx, "shop", serde_json::json!({"image": "registry.example.com/shop:1"})).await?;
    poll_until("the active Service back on blue", Duration::from_secs(15), || async {
        Ok(service_revision(&ctx, "shop").await?.as_deref() == Some(blue.as_str()))
    })
    .await?;
    let after = replica_sets(&ctx, "shop").await?;
    ensure!(
        after.len() == before.len(),
        "a rollback inside the window creates no ReplicaSet: {before:?} -> {after:?}"
    );
    ensure!(after.get(&blue) == Some(&(3, 3)));
    let app = ctx.api::<App>().get("shop").await?;
    ensure!(phase(&app) == Some(AppPhase::Healthy), "{:?}", app.status);
    ensure!(event_reasons(&ctx, "shop").await?.iter().any(|r| r == "RolledBack"));
    Ok(())
}

pub async fn failing_pre_deploy_job_stops_the_rollout(ctx: TestCtx) -> anyhow::Result<()> {
    let extra = "  jobs: {preDeploy: {command: [npm, run, migrate]}}\n";
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", 2, extra)).await?;
    let v1 = wait_phase(&ctx, "api", AppPhase::Healthy, |_| true).await?;
    let stable = v1.status.and_then(|s| s.stable_revision).context("stable")?;
    let jobs = ctx.kubectl_ok(&["get", "jobs", "-o", "name"])?;
    ensure!(
        jobs.contains(&format!("job.batch/api-pre-{stable}")),
        "the first deploy ran its pre-deploy job: {jobs}"
    );

    // The next release's migration fails (kwok's fail label on the job's pod).
    patch_spec(&ctx, "api", serde_json::json!({"image": "registry.example.com/api:2", "podLabels": {"sim.authentify.it/fail": "true"}})).await?;
    let degraded = wait_phase(&ctx, "api", AppPhase::Degraded, |_| true).await?;
    let message = degraded.status.clone().and_then(|s| s.message).unwrap_or_default();
    ensure!(message.contains("pre-deploy job of revision"), "{message}");
    ensure!(message.contains("simulated job failure"), "the job's last output is in the message: {message}");
    let sets = replica_sets(&ctx, "api").await?;
    ensure!(sets.get(&stable) == Some(&(2, 2)), "stable keeps serving: {sets:?}");
    ensure!(sets.iter().filter(|(r, _)| **r != stable).all(|(_, v)| v.0 == 0), "no new pods: {sets:?}");
    Ok(())
}

pub async fn operator_restart_resumes_during_step_and_pause(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", 4, CANARY_STEPS)).await?;
    wait_phase(&ctx, "api", AppPhase::Healthy, |_| true).await?;
    patch_spec(&ctx, "api", serde_json::json!({"image": "registry.example.com/api:2"})).await?;
    // Killed while moving to the first weight.
    ctx.wait_for::<App>("api", "rolling out", LONG, |a| {
        a.status.as_ref().and_then(|s| s.current_step_index).is_some()
    })
    .await?;
    operator::kill_and_restart();
    let paused = wait_phase(&ctx, "api", AppPhase::Paused, |a| {
        a.status.as_ref().and_then(|s| s.current_step_index) == Some(3)
    })
    .await?;
    let started =
        paused.status.as_ref().and_then(|s| s.pause_conditions.first().map(|p| p.start_time.clone()));

    // Killed during the manual pause, down for a while: the new operator keeps the same pause.
    let client = operator::kill().context("operator was running")?;
    tokio::time::sleep(Duration::from_millis(1500)).await; // the outage itself, not a wait for a condition
    operator::restart(client);
    let after = ctx.api::<App>().get("api").await?;
    ensure!(phase(&after) == Some(AppPhase::Paused));
    control(&ctx, "api", authentify::rollout::PROMOTE).await?;
    let done = wait_phase(&ctx, "api", AppPhase::Healthy, |a| {
        a.status.as_ref().and_then(|s| s.current_revision.clone())
            == a.status.as_ref().and_then(|s| s.stable_revision.clone())
            && a.status.as_ref().and_then(|s| s.history.first().map(|h| h.outcome.clone())).as_deref()
                == Some("Promoted")
    })
    .await?;
    ensure!(
        done.status.as_ref().map(|s| s.history.len()) == Some(2),
        "one rollout, not restarted: {:?}",
        done.status.map(|s| s.history)
    );
    ensure!(started.is_some());
    Ok(())
}

pub async fn autoscaled_app_through_a_canary(ctx: TestCtx) -> anyhow::Result<()> {
    let extra = "  autoscaling: {minReplicas: 3, maxReplicas: 6, cpuPercent: 70}\n  strategy:\n    canary:\n      steps:\n        - setWeight: 50\n        - pause: {}\n";
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", 1, extra)).await?;
    let hpa = ctx.wait_for::<HorizontalPodAutoscaler>("api", "created", LONG, |_| true).await?;
    ensure!(hpa.spec.scale_target_ref.kind == "App");
    // The HPA lifts spec.replicas to its minimum through the /scale subresource.
    let app = ctx.wait_for::<App>("api", "scaled by the HPA", LONG, |a| a.spec.replicas == Some(3)).await?;
    ensure!(app.spec.replicas == Some(3));
    let v1 = wait_phase(&ctx, "api", AppPhase::Healthy, |a| {
        a.status.as_ref().and_then(|s| s.ready.clone()).as_deref() == Some("3/3")
    })
    .await?;
    let stable = v1.status.and_then(|s| s.stable_revision).context("stable")?;

    patch_spec(&ctx, "api", serde_json::json!({"image": "registry.example.com/api:2"})).await?;
    let paused = wait_phase(&ctx, "api", AppPhase::Paused, |_| true).await?;
    let canary = paused.status.and_then(|s| s.current_revision).context("current")?;
    let sets = replica_sets(&ctx, "api").await?;
    ensure!(
        sets.get(&canary).map(|v| v.0) == Some(2) && sets.get(&stable).map(|v| v.0) == Some(1),
        "50% of the HPA's 3, rounded up: {sets:?}"
    );
    control(&ctx, "api", authentify::rollout::PROMOTE).await?;
    wait_phase(&ctx, "api", AppPhase::Healthy, |a| {
        a.status.as_ref().and_then(|s| s.stable_revision.clone()).as_deref() == Some(canary.as_str())
    })
    .await?;
    ensure!(replica_sets(&ctx, "api").await?.get(&canary) == Some(&(3, 3)));
    Ok(())
}

pub async fn abort_and_retry_by_annotation(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", 2, CANARY_STEPS)).await?;
    wait_phase(&ctx, "api", AppPhase::Healthy, |_| true).await?;
    patch_spec(&ctx, "api", serde_json::json!({"image": "registry.example.com/api:2"})).await?;
    wait_phase(&ctx, "api", AppPhase::Paused, |a| {
        a.status.as_ref().and_then(|s| s.current_step_index) == Some(3)
    })
    .await?;
    control(&ctx, "api", authentify::rollout::ABORT).await?;
    let aborted = wait_phase(&ctx, "api", AppPhase::Degraded, |_| true).await?;
    ensure!(
        aborted
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default()
            .contains("aborted on request")
    );
    control(&ctx, "api", authentify::rollout::RETRY).await?;
    wait_phase(&ctx, "api", AppPhase::Paused, |a| {
        a.status.as_ref().is_some_and(|s| !s.abort && s.current_step_index == Some(3))
    })
    .await?;
    control(&ctx, "api", authentify::rollout::PROMOTE_FULL).await?;
    wait_phase(&ctx, "api", AppPhase::Healthy, |a| {
        a.status.as_ref().and_then(|s| s.history.first().map(|h| h.outcome.clone())).as_deref()
            == Some("Promoted")
    })
    .await?;
    Ok(())
}
