//! Webhook gates end to end: an HTTP endpoint in the test process says no, then yes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use authentify::api::App;
use authentify::api::app::AppPhase;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;

use crate::rollout::{app_yaml, event_reasons, patch_spec, replica_sets, wait_phase};
use crate::support::{TestCtx, poll_until};

/// One gate endpoint: answers 403 until opened, counts and keeps the requests.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<AtomicBool>,
    asked: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Gate {
    fn route(&self) -> axum::routing::MethodRouter {
        let gate = self.clone();
        post(move |body: String| {
            let gate = gate.clone();
            async move {
                gate.asked.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut b) = gate.bodies.lock() {
                    b.push(serde_json::from_str(&body).unwrap_or_default());
                }
                if gate.open.load(Ordering::SeqCst) {
                    (StatusCode::OK, "go")
                } else {
                    (StatusCode::FORBIDDEN, "QA has not signed off")
                }
            }
        })
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    fn last_body(&self) -> serde_json::Value {
        self.bodies.lock().ok().and_then(|b| b.last().cloned()).unwrap_or_default()
    }
}

fn message(app: &App) -> String {
    app.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default()
}

pub async fn webhook_gates_hold_the_rollout_until_they_answer_2xx(ctx: TestCtx) -> anyhow::Result<()> {
    let (rollout, promotion) = (Gate::default(), Gate::default());
    let router = Router::new().route("/rollout", rollout.route()).route("/promotion", promotion.route());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let strategy = format!(
        "  strategy:\n    canary:\n      steps:\n        - setWeight: 50\n        - pause: {{duration: 1s}}\n    webhooks:\n      - {{name: qa, type: ConfirmRollout, url: 'http://{addr}/rollout?token=hush', interval: 1s, timeout: 2s}}\n      - {{name: release, type: ConfirmPromotion, url: 'http://{addr}/promotion', interval: 1s, metadata: {{ticket: REL-7}}}}\n"
    );
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", 2, &strategy)).await?;
    let v1 = wait_phase(&ctx, "api", AppPhase::Healthy, |_| true).await?;
    let stable = v1.status.as_ref().and_then(|s| s.stable_revision.clone()).context("stable")?;
    ensure!(rollout.asked() + promotion.asked() == 0, "the first deploy is not gated");

    // A new image: the confirm-rollout gate says no, so the new revision gets no pod.
    patch_spec(&ctx, "api", serde_json::json!({"image": "registry.example.com/api:2"})).await?;
    let held =
        wait_phase(&ctx, "api", AppPhase::Paused, |a| message(a).contains("QA has not signed off")).await?;
    ensure!(message(&held).contains("waits for webhook gates to start"), "{}", message(&held));
    let new = held.status.as_ref().and_then(|s| s.current_revision.clone()).context("current")?;
    ensure!(new != stable);
    poll_until("the gate asked again after its interval", Duration::from_secs(30), || async {
        Ok(rollout.asked() >= 3)
    })
    .await?;
    let sets = replica_sets(&ctx, "api").await?;
    ensure!(sets.get(&new).is_none_or(|(asked, _)| *asked == 0), "no pod before the gate opens: {sets:?}");
    ensure!(sets.get(&stable) == Some(&(2, 2)), "{sets:?}");
    let body = rollout.last_body();
    ensure!(body["phase"] == "confirm-rollout" && body["revision"] == new.as_str(), "{body}");
    ensure!(body["app"] == format!("{}/api", ctx.namespace).as_str(), "{body}");

    // Yes: the canary runs its steps, then waits for the promotion gate at 50%.
    rollout.open.store(true, Ordering::SeqCst);
    let at_end = wait_phase(&ctx, "api", AppPhase::Paused, |a| message(a).contains("to be promoted")).await?;
    ensure!(at_end.status.as_ref().and_then(|s| s.stable_revision.clone()) == Some(stable.clone()));
    let sets = replica_sets(&ctx, "api").await?;
    ensure!(sets.get(&new) == Some(&(1, 1)) && sets.get(&stable) == Some(&(1, 1)), "held at 50%: {sets:?}");
    let body = promotion.last_body();
    ensure!(body["phase"] == "confirm-promotion" && body["metadata"]["ticket"] == "REL-7", "{body}");

    promotion.open.store(true, Ordering::SeqCst);
    let done = wait_phase(&ctx, "api", AppPhase::Healthy, |a| {
        a.status.as_ref().and_then(|s| s.stable_revision.as_deref()) == Some(new.as_str())
    })
    .await?;
    let gates = done.status.clone().unwrap_or_default().gates;
    ensure!(gates.len() == 2 && gates.iter().all(|g| g.passed && g.revision == new), "{gates:?}");

    let reasons = event_reasons(&ctx, "api").await?;
    ensure!(
        reasons.iter().any(|r| r == "GateClosed") && reasons.iter().any(|r| r == "GateOpened"),
        "{reasons:?}"
    );
    // The query string (a token) appears nowhere.
    let events = ctx.api::<Event>().list(&ListParams::default()).await?;
    let text = format!("{:?} {:?}", serde_json::to_string(&done.status)?, events.items);
    ensure!(!text.contains("hush"), "the webhook URL's query string leaked");
    server.abort();
    Ok(())
}
