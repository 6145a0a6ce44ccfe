//! The local platform behaves like a cluster: kwok pods become Ready, the crash label plays a bad
//! release, and RBAC is enforced.

use std::time::Duration;

use anyhow::ensure;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;

use crate::support::{TestCtx, poll_until};

fn deployment(name: &str, replicas: i32, crash: bool) -> String {
    let crash_label = if crash { ", sim.authentify.it/crash: \"true\"" } else { "" };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  \
         selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}{crash_label}}}}}\n    \
         spec: {{containers: [{{name: main, image: registry.example.com/{name}:1}}]}}\n"
    )
}

pub async fn deployment_pods_become_ready_and_crash_labelled_pods_do_not(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<Deployment>(&deployment("good", 3, false)).await?;
    ctx.create_yaml::<Deployment>(&deployment("bad", 2, true)).await?;
    ctx.wait_for::<Deployment>("good", "3/3 ready", Duration::from_secs(60), |d| {
        d.status.as_ref().and_then(|s| s.ready_replicas) == Some(3)
    })
    .await?;

    // The bad release: its pods run, crash-loop with climbing restarts, and never become Ready.
    let pods = ctx.api::<Pod>();
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |c| c.iter().map(|c| c.restart_count).sum())
    };
    poll_until("bad pods to restart at least 3 times each", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default().labels("app=bad")).await?;
            Ok(list.items.len() == 2 && list.items.iter().all(|p| restarts(p) >= 3))
        }
    })
    .await?;
    for pod in pods.list(&ListParams::default().labels("app=bad")).await?.items {
        let status = pod.status.clone().unwrap_or_default();
        ensure!(status.phase.as_deref() == Some("Running"), "bad pod phase: {:?}", status.phase);
        let ready =
            status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ensure!(!ready, "a crash-labelled pod became Ready");
        let waiting = status.container_statuses.unwrap_or_default()[0]
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone());
        ensure!(waiting.as_deref() == Some("CrashLoopBackOff"), "waiting reason: {waiting:?}");
    }
    let bad = ctx.api::<Deployment>().get("bad").await?;
    ensure!(bad.status.and_then(|s| s.ready_replicas).unwrap_or(0) == 0, "bad deployment reports ready pods");
    Ok(())
}

pub async fn rbac_refuses_what_it_does_not_grant(ctx: TestCtx) -> anyhow::Result<()> {
    let admin = ctx.kubectl_ok(&["auth", "can-i", "create", "deployments"])?;
    ensure!(admin.trim() == "yes", "admin should be allowed: {admin}");
    let out = ctx.kubectl(&["auth", "can-i", "create", "deployments", "--as", "jane"])?;
    ensure!(String::from_utf8_lossy(&out.stdout).trim() == "no", "jane must be refused");
    ensure!(!out.status.success(), "kubectl auth can-i exits non-zero on 'no'");
    // Granting a Role makes it yes: RBAC is really evaluated, not a blanket deny.
    ctx.kubectl_ok(&["create", "role", "deployer", "--verb=create", "--resource=deployments"])?;
    ctx.kubectl_ok(&["create", "rolebinding", "jane-deployer", "--role=deployer", "--user=jane"])?;
    poll_until("jane to be allowed after the RoleBinding", Duration::from_secs(30), || async {
        let out = ctx.kubectl(&["auth", "can-i", "create", "deployments", "--as", "jane"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "yes")
    })
    .await?;
    let other = ctx.kubectl(&["auth", "can-i", "delete", "deployments", "--as", "jane"])?;
    ensure!(String::from_utf8_lossy(&other.stdout).trim() == "no", "jane was granted more than create");
    Ok(())
}
