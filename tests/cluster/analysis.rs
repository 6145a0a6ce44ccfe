//! Analysis on the real control plane with a real Prometheus (Debian's `prometheus`, started per
//! test on a free port with a 1s scrape interval) scraping a test exporter inside this process
//! that serves ingress-nginx's metric names for the canary Service, with the error rate and
//! latency the test sets. Also the web provider against a local HTTP server, and the Job provider
//! with a Job whose pod fails (the kwok stage for `sim.authentify.it/fail=true`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use authentify::api::App;
use authentify::api::analysis::{AnalysisPhase, AnalysisRun};
use authentify::api::app::AppPhase;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};

use crate::support::{TestCtx, operator, poll_until};

const LONG: Duration = Duration::from_secs(120);

/// What the exporter reports for the canary Service; counters grow by `rps` per second.
#[derive(Clone, Copy)]
struct Traffic {
    error_rate: f64,
    latency_seconds: f64,
}

struct ExporterState {
    traffic: Traffic,
    last: Instant,
    ok: f64,
    errors: f64,
    /// Requests per histogram bucket (upper bounds in `BUCKETS`), cumulative at render time.
    buckets: Vec<f64>,
}

const BUCKETS: [f64; 6] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const RPS: f64 = 50.0;

/// The test exporter: an HTTP server serving `/metrics` in the Prometheus text format.
struct Exporter {
    addr: SocketAddr,
    state: Arc<Mutex<ExporterState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    async fn start(namespace: &str, traffic: Traffic) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(ExporterState {
            traffic,
            last: Instant::now(),
            ok: 0.0,
            errors: 0.0,
            buckets: vec![0.0; BUCKETS.len() + 1],
        }));
        let labels = format!("ingress=\"api-canary\",namespace=\"{namespace}\",service=\"api-canary\"");
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let state = shared.clone();
                let labels = labels.clone();
                async move { render(&state, &labels) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    fn set(&self, traffic: Traffic) {
        if let Ok(mut s) = self.state.lock() {
            advance(&mut s);
            s.traffic = traffic;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Adds the requests since the last call at the current error rate and latency.
fn advance(s: &mut ExporterState) {
    let n = s.last.elapsed().as_secs_f64() * RPS;
    s.last = Instant::now();
    s.errors += n * s.traffic.error_rate;
    s.ok += n * (1.0 - s.traffic.error_rate);
    let bucket = BUCKETS.iter().position(|b| s.traffic.latency_seconds <= *b).unwrap_or(BUCKETS.len());
    s.buckets[bucket] += n;
}

fn render(state: &Mutex<ExporterState>, labels: &str) -> String {
    let Ok(mut s) = state.lock() else { return String::new() };
    advance(&mut s);
    let mut out = String::from("# TYPE nginx_ingress_controller_requests counter\n");
    out.push_str(&format!("nginx_ingress_controller_requests{{{labels},status=\"200\"}} {}\n", s.ok));
    out.push_str(&format!("nginx_ingress_controller_requests{{{labels},status=\"500\"}} {}\n", s.errors));
    out.push_str("# TYPE nginx_ingress_controller_request_duration_seconds histogram\n");
    let mut cumulative = 0.0;
    for (i, le) in BUCKETS.iter().map(ToString::to_string).chain(["+Inf".to_string()]).enumerate() {
        cumulative += s.buckets[i];
        out.push_str(&format!(
            "nginx_ingress_controller_request_duration_seconds_bucket{{{labels},status=\"200\",le=\"{le}\"}} {cumulative}\n"
        ));
    }
    out.push_str(&format!(
        "nginx_ingress_controller_request_duration_seconds_count{{{labels},status=\"200\"}} {cumulative}\n"
    ));
    out
}

/// A Prometheus server of this test, stopped (killed) when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Debian's prometheus on a free port with a 1s scrape of `target`, and waits until
    /// it has scraped the target at least twice (so rates exist).
    async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let bin = ["/usr/bin/prometheus", "/usr/sbin/prometheus"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context(
                "Debian's prometheus is not installed (scripts/apt-packages.txt; run scripts/setup.sh)",
            )?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: ingress-nginx\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prometheus")?;
        let prometheus = Self { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        let http = reqwest::Client::new();
        let query = format!("{}/api/v1/query?query=count_over_time(up[1m])", prometheus.url);
        poll_until("Prometheus to have scraped the exporter twice", LONG, || {
            let http = http.clone();
            let query = query.clone();
            async move {
                let body: serde_json::Value = http.get(&query).send().await?.json().await?;
                let n = body["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
                Ok(n.is_some_and(|n| n >= 2.0))
            }
        })
        .await?;
        Ok(prometheus)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn set_image(ctx: &TestCtx, image: &str) -> anyhow::Result<()> {
    let patch = serde_json::json!({"spec": {"image": image}});
    ctx.api::<App>().patch("api", &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

fn app_yaml(strategy: &str) -> String {
    format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: api}}\nspec:\n  image: registry.example.com/api:1\n  replicas: 2\n  strategy:\n{strategy}"
    )
}

/// Deploys the App, waits for it to be Healthy, then starts a rollout to image 2.
async fn deploy_then_roll(ctx: &TestCtx, strategy: &str) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(&app_yaml(strategy)).await?;
    ctx.wait_for::<App>("api", "Healthy", LONG, |a| {
        a.status.as_ref().is_some_and(|s| s.phase == Some(AppPhase::Healthy))
    })
    .await?;
    set_image(ctx, "registry.example.com/api:2").await
}

async fn promoted(ctx: &TestCtx) -> anyhow::Result<App> {
    ctx.wait_for::<App>("api", "Healthy on the new revision", LONG, |a| {
        a.status.as_ref().is_some_and(|s| {
            s.phase == Some(AppPhase::Healthy)
                && s.history.iter().filter(|h| h.outcome == "Promoted").count() == 2
        })
    })
    .await
}

async fn degraded(ctx: &TestCtx) -> anyhow::Result<App> {
    ctx.wait_for::<App>("api", "Degraded (aborted)", LONG, |a| {
        a.status.as_ref().is_some_and(|s| s.phase == Some(AppPhase::Degraded) && s.abort)
    })
    .await
}

async fn runs(ctx: &TestCtx) -> anyhow::Result<Vec<AnalysisRun>> {
    Ok(ctx.api::<AnalysisRun>().list(&ListParams::default()).await?.items)
}

async fn event_text(ctx: &TestCtx) -> anyhow::Result<String> {
    let events = ctx.api::<Event>().list(&ListParams::default()).await?;
    Ok(events
        .items
        .iter()
        .map(|e| {
            format!("{} {}", e.reason.clone().unwrap_or_default(), e.message.clone().unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

fn golden(prometheus: &str, extra: &str) -> String {
    format!(
        "    canary:\n      steps:\n        - setWeight: 50\n        - analysis:\n            templates: [builtin/nginx-golden-signals]\n            args:\n              - {{name: prometheus, value: '{prometheus}'}}\n              - {{name: window, value: 10s}}\n              - {{name: interval, value: 2s}}\n              - {{name: count, value: '3'}}\n              - {{name: minSuccessRate, value: '0.95'}}\n              - {{name: maxP99Seconds, value: '0.5'}}\n{extra}"
    )
}

const GOOD: Traffic = Traffic { error_rate: 0.01, latency_seconds: 0.08 };

pub async fn builtin_golden_signals_pass_and_the_canary_is_promoted(ctx: TestCtx) -> anyhow::Result<()> {
    let exporter = Exporter::start(&ctx.namespace, GOOD).await?;
    let prometheus = Prometheus::start(exporter.addr).await?;
    deploy_then_roll(&ctx, &golden(&prometheus.url, "")).await?;
    let run = poll_run(&ctx, "step 2").await?;
    // An operator restart mid-analysis neither duplicates the run nor loses its measurements.
    operator::kill_and_restart();
    let app = promoted(&ctx).await?;
    let all = runs(&ctx).await?;
    ensure!(
        all.len() == 1,
        "one run for the one analysis step, got {:?}",
        all.iter().map(|r| r.name_any()).collect::<Vec<_>>()
    );
    let status = all[0].status.clone().unwrap_or_default();
    ensure!(status.phase == Some(AnalysisPhase::Successful), "run status: {status:?}");
    ensure!(all[0].name_any() == run, "the same run");
    for m in &status.metric_results {
        ensure!(
            m.count == 3 && m.successful == 3,
            "metric {} took {} measurements ({} successful)",
            m.name,
            m.count,
            m.successful
        );
    }
    let value: f64 = status.metric_results[0].measurements[0].value.clone().unwrap_or_default().parse()?;
    ensure!((0.97..=1.0).contains(&value), "success rate measured at a 1% error rate: {value}");
    let summary = &app.status.clone().unwrap_or_default().analysis_runs;
    ensure!(summary.len() == 1 && summary[0].phase == AnalysisPhase::Successful, "App status: {summary:?}");
    let events = event_text(&ctx).await?;
    ensure!(events.contains("AnalysisStarted") && events.contains("AnalysisSuccessful"), "events:\n{events}");
    let owner = all[0].owner_references().first().map(|o| o.kind.clone());
    ensure!(owner.as_deref() == Some("App"), "owned by its App: {owner:?}");
    Ok(())
}

/// Waits for the App's run for `purpose` and returns its name.
async fn poll_run(ctx: &TestCtx, purpose: &str) -> anyhow::Result<String> {
    let found = Arc::new(Mutex::new(String::new()));
    poll_until(&format!("an AnalysisRun for {purpose}"), LONG, || {
        let found = found.clone();
        async move {
            let run = runs(ctx).await?.into_iter().find(|r| r.spec.purpose == purpose);
            if let (Some(r), Ok(mut f)) = (run, found.lock()) {
                *f = r.name_any();
                return Ok(true);
            }
            Ok(false)
        }
    })
    .await?;
    let name = found.lock().map(|f| f.clone()).unwrap_or_default();
    Ok(name)
}

pub async fn a_raised_error_rate_aborts_the_canary(ctx: TestCtx) -> anyhow::Result<()> {
    let exporter = Exporter::start(&ctx.namespace, GOOD).await?;
    let prometheus = Prometheus::start(exporter.addr).await?;
    deploy_then_roll(&ctx, &golden(&prometheus.url, "")).await?;
    poll_run(&ctx, "step 2").await?;
    exporter.set(Traffic { error_rate: 0.5, latency_seconds: 0.08 });
    let app = degraded(&ctx).await?;
    let message = app.status.clone().unwrap_or_default().message.unwrap_or_default();
    ensure!(
        message.contains("analysis failed at step 2/2") && message.contains("success-rate"),
        "message: {message}"
    );
    let run = runs(&ctx).await?.into_iter().next().context("the run")?;
    ensure!(run.status.and_then(|s| s.phase) == Some(AnalysisPhase::Failed));
    ensure!(app.status.unwrap_or_default().canary_weight == Some(0));
    Ok(())
}

const TEMPLATE: &str = r#"
apiVersion: platform.authentify.it/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-rate}
spec:
  args: [{name: prometheus}]
  metrics:
    - name: error-rate
      interval: 2s
      count: 3
      successCondition: result < 0.05
      failureCondition: result > 0.4
      provider:
        prometheus:
          address: '{{args.prometheus}}'
          query: sum(rate(nginx_ingress_controller_requests{namespace="{{app.namespace}}",service="{{app.service}}",status=~"5.."}[10s])) / sum(rate(nginx_ingress_controller_requests{namespace="{{app.namespace}}",service="{{app.service}}"}[10s]))
    - name: latency
      dryRun: true
      interval: 2s
      count: 3
      successCondition: result < 0.01
      provider:
        prometheus:
          address: '{{args.prometheus}}'
          query: histogram_quantile(0.99, sum by (le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{service="{{app.service}}"}[10s])))
"#;

fn custom(prometheus: &str, ttl: &str) -> String {
    format!(
        "    canary:\n      steps:\n        - setWeight: 50\n        - analysis:\n            templates: [error-rate]\n            args: [{{name: prometheus, value: '{prometheus}'}}]\n{ttl}"
    )
}

pub async fn inconclusive_pauses_until_promoted(ctx: TestCtx) -> anyhow::Result<()> {
    let exporter =
        Exporter::start(&ctx.namespace, Traffic { error_rate: 0.2, latency_seconds: 0.08 }).await?;
    let prometheus = Prometheus::start(exporter.addr).await?;
    ctx.create_yaml::<authentify::api::AnalysisTemplate>(TEMPLATE).await?;
    deploy_then_roll(&ctx, &custom(&prometheus.url, "")).await?;
    let app = ctx
        .wait_for::<App>("api", "Paused on an inconclusive analysis", LONG, |a| {
            a.status.as_ref().is_some_and(|s| {
                s.phase == Some(AppPhase::Paused)
                    && s.pause_conditions.iter().any(|p| p.reason == "InconclusiveAnalysis")
            })
        })
        .await?;
    let message = app.status.unwrap_or_default().message.unwrap_or_default();
    ensure!(message.contains("analysis inconclusive") && message.contains("promote or abort"), "{message}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-authentify"))
        .env("KUBECONFIG", &ctx.kubeconfig)
        .args(["-n", &ctx.namespace, "promote", "api"])
        .output()
        .await?;
    ensure!(out.status.success(), "kubectl authentify promote: {}", String::from_utf8_lossy(&out.stderr));
    promoted(&ctx).await?;
    Ok(())
}

pub async fn a_dry_run_metric_never_aborts_and_finished_runs_expire(ctx: TestCtx) -> anyhow::Result<()> {
    // The dry-run latency metric fails every measurement (p99 ~0.1s, not below 0.01s).
    let exporter = Exporter::start(&ctx.namespace, GOOD).await?;
    let prometheus = Prometheus::start(exporter.addr).await?;
    ctx.create_yaml::<authentify::api::AnalysisTemplate>(TEMPLATE).await?;
    deploy_then_roll(&ctx, &custom(&prometheus.url, "            ttlSecondsAfterFinished: 5\n")).await?;
    let name = poll_run(&ctx, "step 2").await?;
    let run = ctx
        .wait_for::<AnalysisRun>(&name, "finished", LONG, |r| {
            r.status.as_ref().and_then(|s| s.phase).is_some_and(AnalysisPhase::is_finished)
        })
        .await?;
    let status = run.status.unwrap_or_default();
    ensure!(status.phase == Some(AnalysisPhase::Successful), "{status:?}");
    let latency = status.metric_results.iter().find(|m| m.name == "latency").context("latency result")?;
    ensure!(latency.dry_run && latency.phase == AnalysisPhase::Failed, "{latency:?}");
    promoted(&ctx).await?;
    poll_until("the finished run to be deleted after its 5s TTL", LONG, || async {
        Ok(ctx.api::<AnalysisRun>().get_opt(&name).await?.is_none())
    })
    .await?;
    Ok(())
}

/// A local stats endpoint for the web provider: answers JSON, and only with the right token.
async fn stats_server(
    token: &'static str,
    error_rate: f64,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/stats",
        axum::routing::post(move |headers: HeaderMap, body: String| async move {
            let authorised = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(token);
            if !authorised || !body.contains("api-canary") {
                return (StatusCode::FORBIDDEN, String::from("{}"));
            }
            (
                StatusCode::OK,
                serde_json::json!({"data": {"errorRate": error_rate, "service": "api-canary"}}).to_string(),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((
        addr,
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }),
    ))
}

pub async fn web_provider_reads_a_json_field_with_a_secret_header(ctx: TestCtx) -> anyhow::Result<()> {
    const TOKEN: &str = "Bearer s3cret-analysis-token";
    let (addr, server) = stats_server(TOKEN, 0.2).await?;
    ctx.create_yaml::<k8s_openapi::api::core::v1::Secret>(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: stats-token}}\nstringData: {{token: '{TOKEN}'}}\n"
    ))
    .await?;
    ctx.create_yaml::<authentify::api::AnalysisTemplate>(&format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: stats}}\nspec:\n  metrics:\n    - name: error-rate\n      interval: 1s\n      count: 2\n      successCondition: result < 0.05\n      provider:\n        web:\n          url: 'http://{addr}/stats?key=query-secret'\n          method: POST\n          body: '{{\"service\": \"{{{{app.service}}}}\"}}'\n          jsonPath: $.data.errorRate\n          timeoutSeconds: 5\n          headers:\n            - {{name: Authorization, valueFrom: {{secretKeyRef: {{name: stats-token, key: token}}}}}}\n"
    ))
    .await?;
    deploy_then_roll(
        &ctx,
        "    canary:\n      steps:\n        - setWeight: 50\n        - analysis: {templates: [stats]}\n",
    )
    .await?;
    // 0.2 is above the 5% the condition allows: the web provider answered and the rollout aborts.
    let app = degraded(&ctx).await?;
    let run = runs(&ctx).await?.into_iter().next().context("the run")?;
    let status = run.status.clone().unwrap_or_default();
    let m = &status.metric_results[0];
    ensure!(
        m.failed == 1 && m.error == 0,
        "the call succeeded with the Secret's header and the field was read: {m:?}"
    );
    ensure!(m.measurements[0].value.as_deref() == Some("0.2"), "{m:?}");
    let everything = format!(
        "{}\n{}\n{}",
        serde_json::to_string(&app)?,
        serde_json::to_string(&run)?,
        event_text(&ctx).await?
    );
    ensure!(!everything.contains("s3cret-analysis-token"), "the token leaked: {everything}");
    server.abort();

    // A provider that does not answer is an Error measurement with a clear message, without the
    // URL's query string.
    let patch = serde_json::json!({"spec": {"metrics": [{"name": "error-rate", "interval": "1s", "count": 2, "consecutiveErrorLimit": 0, "successCondition": "result < 0.05",
        "provider": {"web": {"url": format!("http://{addr}/stats?key=query-secret"), "timeoutSeconds": 2}}}]}});
    ctx.api::<authentify::api::AnalysisTemplate>()
        .patch("stats", &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let token = format!("{:?}", std::time::SystemTime::now());
    let retry = serde_json::json!({"metadata": {"annotations": {authentify::rollout::RETRY: token}}});
    ctx.api::<App>().patch("api", &PatchParams::default(), &Patch::Merge(retry)).await?;
    let app = ctx
        .wait_for::<App>("api", "aborted again, by a provider error", LONG, |a| {
            a.status.as_ref().is_some_and(|s| {
                s.abort && s.message.as_deref().is_some_and(|m| m.contains("did not answer"))
            })
        })
        .await?;
    let message = app.status.unwrap_or_default().message.unwrap_or_default();
    ensure!(message.contains(&format!("GET http://{addr}/stats")), "{message}");
    ensure!(!message.contains("query-secret"), "the query string leaked: {message}");
    Ok(())
}

pub async fn job_provider_failure_aborts_the_canary(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<authentify::api::AnalysisTemplate>(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: smoke}\nspec:\n  metrics:\n    - name: smoke\n      count: 1\n      successCondition: result\n      provider:\n        job:\n          image: registry.example.com/smoke:1\n          command: [sh, -c, 'exit 1']\n          labels: {sim.authentify.it/fail: 'true'}\n",
    )
    .await?;
    deploy_then_roll(
        &ctx,
        "    canary:\n      steps:\n        - setWeight: 50\n        - analysis: {templates: [smoke]}\n",
    )
    .await?;
    let app = degraded(&ctx).await?;
    let message = app.status.unwrap_or_default().message.unwrap_or_default();
    ensure!(message.contains("analysis failed at step 2/2") && message.contains("failed"), "{message}");
    let jobs = ctx.api::<Job>().list(&ListParams::default()).await?.items;
    let job = jobs.iter().find(|j| j.labels().contains_key("platform.authentify.it/analysis-metric"));
    let Some(job) = job else {
        bail!("no measurement Job among {:?}", jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>())
    };
    ensure!(
        job.labels().get("app.kubernetes.io/managed-by").map(String::as_str) == Some("authentify-operator"),
        "{:?}",
        job.labels()
    );
    ensure!(job.owner_references().iter().any(|o| o.kind == "AnalysisRun"), "owned by its run");
    Ok(())
}
