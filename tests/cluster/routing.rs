//! Traffic routers on the real control plane: the NGINX canary Ingress annotations and the
//! Gateway API HTTPRoute weights follow each step, return to 100/0 after promotion and abort, and
//! header routes exist only while a canary runs.

use std::time::Duration;

use anyhow::ensure;
use authentify::api::App;
use authentify::api::app::AppPhase;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};

use crate::support::{TestCtx, poll_until};

const LONG: Duration = Duration::from_secs(90);

async fn set_image(ctx: &TestCtx, image: &str) -> anyhow::Result<()> {
    let patch = serde_json::json!({"spec": {"image": image}});
    ctx.api::<App>().patch("api", &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

async fn control(ctx: &TestCtx, key: &str) -> anyhow::Result<()> {
    let token = format!("{:?}", std::time::SystemTime::now());
    let patch = serde_json::json!({"metadata": {"annotations": {key: token}}});
    ctx.api::<App>().patch("api", &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

async fn at_step(ctx: &TestCtx, phase: AppPhase, step: i32) -> anyhow::Result<App> {
    ctx.wait_for::<App>("api", &format!("{phase:?} at step index {step}"), LONG, |a| {
        a.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(phase.clone()) && s.current_step_index == Some(step))
    })
    .await
}

async fn healthy_on_new_revision(ctx: &TestCtx, promotions: usize) -> anyhow::Result<App> {
    ctx.wait_for::<App>("api", "Healthy after promotion", LONG, |a| {
        a.status.as_ref().is_some_and(|s| {
            s.phase == Some(AppPhase::Healthy)
                && s.history.iter().filter(|h| h.outcome == "Promoted").count() == promotions
        })
    })
    .await
}

/// `(weight, header)` of the NGINX canary Ingress, or `None` when it does not exist.
async fn nginx_canary(ctx: &TestCtx) -> anyhow::Result<Option<(String, Option<String>)>> {
    let Some(ing) = ctx.api::<Ingress>().get_opt("api-canary").await? else { return Ok(None) };
    let ann = ing.metadata.annotations.unwrap_or_default();
    ensure!(ann.get("nginx.ingress.kubernetes.io/canary").map(String::as_str) == Some("true"));
    Ok(Some((
        ann.get("nginx.ingress.kubernetes.io/canary-weight").cloned().unwrap_or_default(),
        ann.get("nginx.ingress.kubernetes.io/canary-by-header").cloned(),
    )))
}

async fn main_service_revision(ctx: &TestCtx) -> anyhow::Result<Option<String>> {
    let svc = ctx.api::<k8s_openapi::api::core::v1::Service>().get("api").await?;
    Ok(svc.spec.and_then(|s| s.selector).and_then(|s| s.get("platform.authentify.it/revision").cloned()))
}

const NGINX_APP: &str = r#"
apiVersion: platform.authentify.it/v1alpha1
kind: App
metadata: {name: api}
spec:
  image: registry.example.com/api:1
  replicas: 4
  route: {host: api.authentify.test, ingressClassName: nginx}
  strategy:
    canary:
      trafficRouting:
        nginx: {}
        headerRoute: {name: X-Canary, value: always}
      steps:
        - setWeight: 25
        - pause: {}
        - setWeight: 50
        - pause: {}
"#;

pub async fn nginx_canary_ingress_follows_each_step(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(NGINX_APP).await?;
    let v1 = healthy_on_new_revision(&ctx, 1).await?;
    let stable = v1.status.and_then(|s| s.stable_revision);
    ensure!(nginx_canary(&ctx).await?.is_none(), "no canary Ingress without a canary");
    ensure!(
        main_service_revision(&ctx).await? == stable,
        "with a router the main Service selects the stable revision"
    );

    set_image(&ctx, "registry.example.com/api:2").await?;
    at_step(&ctx, AppPhase::Paused, 1).await?;
    ensure!(
        nginx_canary(&ctx).await? == Some(("25".into(), Some("X-Canary".into()))),
        "{:?}",
        nginx_canary(&ctx).await?
    );
    ensure!(main_service_revision(&ctx).await? == stable);
    let rs = ctx.kubectl_ok(&[
        "get",
        "rs",
        "-l",
        "platform.authentify.it/app=api",
        "-o",
        "jsonpath={range .items[*]}{.spec.replicas} {end}",
    ])?;
    let mut sizes: Vec<&str> = rs.split_whitespace().collect();
    sizes.sort_unstable();
    ensure!(sizes == ["1", "4"], "canary 1 pod for 25%, stable keeps 4: {rs}");

    control(&ctx, authentify::rollout::PROMOTE).await?;
    at_step(&ctx, AppPhase::Paused, 3).await?;
    ensure!(nginx_canary(&ctx).await?.map(|c| c.0).as_deref() == Some("50"));

    control(&ctx, authentify::rollout::PROMOTE).await?;
    let v2 = healthy_on_new_revision(&ctx, 2).await?;
    poll_until("the canary Ingress to go after promotion", LONG, || async {
        Ok(nginx_canary(&ctx).await?.is_none())
    })
    .await?;
    ensure!(
        main_service_revision(&ctx).await? == v2.status.and_then(|s| s.stable_revision),
        "main Service on the new stable"
    );

    // A third release, aborted: all traffic back to stable, canary Ingress and header route gone.
    set_image(&ctx, "registry.example.com/api:3").await?;
    at_step(&ctx, AppPhase::Paused, 1).await?;
    ensure!(nginx_canary(&ctx).await?.is_some());
    control(&ctx, authentify::rollout::ABORT).await?;
    ctx.wait_for::<App>("api", "Degraded", LONG, |a| {
        a.status.as_ref().and_then(|s| s.phase.clone()) == Some(AppPhase::Degraded)
    })
    .await?;
    poll_until("the canary Ingress to go after abort", LONG, || async {
        Ok(nginx_canary(&ctx).await?.is_none())
    })
    .await?;
    Ok(())
}

const GATEWAY_APP: &str = r#"
apiVersion: platform.authentify.it/v1alpha1
kind: App
metadata: {name: api}
spec:
  image: registry.example.com/api:1
  replicas: 2
  route: {host: api.authentify.test, gateway: {name: public}}
  strategy:
    canary:
      trafficRouting:
        gatewayAPI: {}
        headerRoute: {name: X-Canary, value: always}
      steps:
        - setWeight: 30
        - pause: {}
"#;

/// `(stable weight, canary weight, has header rule)` of the HTTPRoute's rules.
async fn route_weights(ctx: &TestCtx) -> anyhow::Result<(i64, i64, bool)> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &authentify::traffic::http_route_resource());
    let route = api.get("api").await?;
    let rules = route.data["spec"]["rules"].as_array().cloned().unwrap_or_default();
    let header = rules.iter().any(|r| r["matches"][0]["headers"].is_array());
    let split = rules.iter().find(|r| !r["matches"][0]["headers"].is_array()).cloned().unwrap_or_default();
    let weight = |name: &str| {
        split["backendRefs"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["name"] == name))
            .map_or(0, |b| b["weight"].as_i64().unwrap_or(1))
    };
    Ok((weight("api"), weight("api-canary"), header))
}

pub async fn gateway_http_route_weights_follow_each_step(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(GATEWAY_APP).await?;
    healthy_on_new_revision(&ctx, 1).await?;
    ensure!(
        route_weights(&ctx).await? == (100, 0, false),
        "100/0, no header rule: {:?}",
        route_weights(&ctx).await?
    );

    set_image(&ctx, "registry.example.com/api:2").await?;
    at_step(&ctx, AppPhase::Paused, 1).await?;
    ensure!(route_weights(&ctx).await? == (70, 30, true), "{:?}", route_weights(&ctx).await?);

    control(&ctx, authentify::rollout::PROMOTE).await?;
    healthy_on_new_revision(&ctx, 2).await?;
    poll_until("the HTTPRoute back to 100/0 without the header rule", LONG, || async {
        Ok(route_weights(&ctx).await? == (100, 0, false))
    })
    .await?;
    Ok(())
}
