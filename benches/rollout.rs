//! Rollout benchmark on the local control plane (a command that prints figures, not a test).
//!
//! `make bench` (or `cargo build --release -p authentify-operator && cargo bench --bench rollout`).
//! With N Apps (`BENCH_APPS`, default 300; 2 replicas each; canary `setWeight: 50`, `pause: {}`):
//! 1. create all N at once: seconds until all are Healthy;
//! 2. set a new image on all N: seconds until all reach their first pause;
//! 3. promote latency: from the promote write returning to the resulting ReplicaSet change seen
//!    by a watch, p50 and p99 over `BENCH_PROMOTES` (default 200) promotes;
//! 4. idle: writes by the operator (from the API server's audit log) over `BENCH_IDLE_SECS`
//!    (default 300) with nothing changing, by resource; the leader's Lease renewals apart.
//!
//! The operator runs as its own process (release build) with its own identity; its peak RSS and
//! CPU seconds come from /proc. The last line printed is one JSON object with every figure.

#[path = "../tests/cluster/support/platform.rs"]
mod platform;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use authentify::api::App;
use authentify::api::app::AppPhase;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, ResourceExt};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Operator {
    child: Child,
}

impl Operator {
    fn start(kubeconfig: &std::path::Path) -> anyhow::Result<Self> {
        // Beside this benchmark's own executable (target/release/deps/..) unless told otherwise.
        let beside = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent()?.parent().map(|d| d.join("authentify-operator")));
        let bin =
            std::env::var_os("AUTHENTIFY_OPERATOR_BIN").map(PathBuf::from).or(beside).unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/authentify-operator")
            });
        if !bin.is_file() {
            bail!(
                "{} is missing: build it with `cargo build --release -p authentify-operator`",
                bin.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin)
            .args(["run", "--metrics-address", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Self { child })
    }

    /// Peak resident set size (VmHWM) in MiB.
    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// User + system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of /proc/pid/stat (12 and 13 after the ')').
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client_for(path: &std::path::Path) -> anyhow::Result<Client> {
    let config =
        Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn app(name: &str, image: &str) -> anyhow::Result<App> {
    Ok(serde_yaml_ng::from_str(&format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n  replicas: 2\n  strategy:\n    canary:\n      steps:\n        - setWeight: 50\n        - pause: {{}}\n"
    ))?)
}

/// Polls until every App satisfies `done`; returns the seconds it took.
async fn wait_all(
    api: &Api<App>,
    n: usize,
    what: &str,
    timeout: Duration,
    done: impl Fn(&App) -> bool,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await?;
        let count = list.items.iter().filter(|a| done(a)).count();
        if count >= n {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?}: {count}/{n} Apps {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn phase(a: &App) -> Option<AppPhase> {
    a.status.as_ref().and_then(|s| s.phase.clone())
}

/// The operator's writes in the audit log (one JSON event per line), from line `skip` on, counted
/// by `verb resource[/subresource]`.
fn audit_writes(path: &std::path::Path, skip: usize) -> (usize, std::collections::BTreeMap<String, usize>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut by = std::collections::BTreeMap::new();
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        if lines <= skip {
            continue;
        }
        let event: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let object = &event["objectRef"];
        let mut key = format!(
            "{} {}",
            event["verb"].as_str().unwrap_or("?"),
            object["resource"].as_str().unwrap_or("?")
        );
        if let Some(sub) = object["subresource"].as_str() {
            key = format!("{key}/{sub}");
        }
        *by.entry(key).or_insert(0) += 1;
    }
    (lines, by)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo test --benches` lists benches; this one only runs on purpose
    }
    let n = env_num("BENCH_APPS", 300) as usize;
    let promotes = (env_num("BENCH_PROMOTES", 200) as usize).min(n);
    let idle_secs = env_num("BENCH_IDLE_SECS", 300);

    // 110 pods fit on a kwok node: room for every App's pods plus the canaries.
    let nodes = u32::try_from((n * 3).div_ceil(100)).unwrap_or(u32::MAX).max(3);
    let mut platform = platform::Platform::start_with_nodes("bench-platform", nodes)?;
    let state = platform
        .state()
        .map(PathBuf::from)
        .context("the benchmark needs its own platform (unset AUTHENTIFY_TEST_KUBECONFIG)")?;
    let admin = client_for(&platform.kubeconfig).await?;
    let crds = Api::<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    >::all(admin.clone());
    for crd in authentify::api::crds() {
        crds.patch(&crd.name_any(), &PatchParams::apply("bench").force(), &Patch::Apply(&crd)).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // CRDs become served (Established) within this
    let operator = Operator::start(&state.join("operator.kubeconfig"))?;
    let ns = "bench";
    let ns_obj: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?;
    Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &ns_obj).await?;
    let apps: Api<App> = Api::namespaced(admin.clone(), ns);
    let names: Vec<String> = (0..n).map(|i| format!("app-{i:04}")).collect();

    // 1. Create all at once.
    eprintln!("[bench] creating {n} Apps");
    let start = Instant::now();
    futures::stream::iter(names.iter().map(|name| {
        let apps = apps.clone();
        async move {
            apps.create(&PostParams::default(), &app(name, "registry.example.com/bench:1")?)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await?;
    wait_all(&apps, n, "Healthy", Duration::from_secs(1200), |a| phase(a) == Some(AppPhase::Healthy)).await?;
    let create_s = start.elapsed().as_secs_f64();
    eprintln!("[bench] all Healthy after {create_s:.1}s");

    // 2. New image on all.
    let start = Instant::now();
    futures::stream::iter(names.iter().map(|name| {
        let apps = apps.clone();
        async move {
            let patch = serde_json::json!({"spec": {"image": "registry.example.com/bench:2"}});
            apps.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await?;
    wait_all(&apps, n, "at their first pause", Duration::from_secs(1200), |a| {
        phase(a) == Some(AppPhase::Paused) && a.status.as_ref().and_then(|s| s.current_step_index) == Some(1)
    })
    .await?;
    let first_pause_s = start.elapsed().as_secs_f64();
    eprintln!("[bench] all at their first pause after {first_pause_s:.1}s");

    // 3. Promote latency, seen by a ReplicaSet watch.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String, i32, Instant)>();
    let rs_api: Api<ReplicaSet> = Api::namespaced(admin.clone(), ns);
    let watch = tokio::spawn(async move {
        let mut stream =
            watcher(rs_api, watcher::Config::default()).default_backoff().applied_objects().boxed();
        while let Some(Ok(rs)) = stream.next().await {
            let labels = rs.labels();
            let (Some(app), Some(rev)) =
                (labels.get("platform.authentify.it/app"), labels.get("platform.authentify.it/revision"))
            else {
                continue;
            };
            let _ = tx.send((app.clone(), rev.clone(), rs.spec.replicas.unwrap_or(0), Instant::now()));
        }
    });
    // Let the watch list everything first.
    let mut known: HashMap<(String, String), i32> = HashMap::new();
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle {
        if let Ok(Some((a, r, reps, _))) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            known.insert((a, r), reps);
        }
    }
    let mut latencies = vec![];
    for name in names.iter().take(promotes) {
        let token =
            format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos());
        let patch = serde_json::json!({"metadata": {"annotations": {authentify::rollout::PROMOTE: token}}});
        apps.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        let written = Instant::now();
        let deadline = written + Duration::from_secs(30);
        loop {
            let Ok(Some((a, r, reps, at))) = tokio::time::timeout_at(deadline.into(), rx.recv()).await else {
                bail!("no ReplicaSet change within 30s of promoting {name}");
            };
            let previous = known.insert((a.clone(), r), reps);
            if &a == name && previous != Some(reps) {
                latencies.push(at.saturating_duration_since(written).as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    watch.abort();
    latencies.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    eprintln!("[bench] promote latency p50 {p50:.1} ms, p99 {p99:.1} ms over {}", latencies.len());
    let promoted: std::collections::HashSet<&String> = names.iter().take(promotes).collect();
    wait_all(&apps, n, "settled", Duration::from_secs(600), |a| {
        // Settled: Healthy with the old revision's pods gone (they end after the promotion).
        if promoted.contains(&a.name_any()) {
            phase(a) == Some(AppPhase::Healthy)
                && a.status.as_ref().and_then(|s| s.ready.clone()).as_deref() == Some("2/2")
        } else {
            phase(a) == Some(AppPhase::Paused)
        }
    })
    .await?;

    // 4. Idle writes.
    let audit = state.join("logs/audit.log");
    tokio::time::sleep(Duration::from_secs(5)).await; // let the last writes of step 3 land in the log
    let (before, _) = audit_writes(&audit, 0);
    eprintln!("[bench] idle for {idle_secs}s");
    tokio::time::sleep(Duration::from_secs(idle_secs)).await; // the measured idle window itself
    // The leader's Lease renewals (one per retry period) are the one write an idle operator must
    // make; they are counted apart from the writes that idle should not cause.
    let (_, mut idle_by) = audit_writes(&audit, before);
    let lease_renewals =
        idle_by.remove("patch leases").unwrap_or(0) + idle_by.remove("update leases").unwrap_or(0);
    let idle_writes: usize = idle_by.values().sum();
    eprintln!("[bench] idle: {idle_writes} write(s) {idle_by:?}, {lease_renewals} Lease renewal(s)");

    let figures = serde_json::json!({
        "benchmark": "rollout",
        "apps": n,
        "replicas_per_app": 2,
        "create_all_healthy_s": (create_s * 10.0).round() / 10.0,
        "set_image_all_first_pause_s": (first_pause_s * 10.0).round() / 10.0,
        "promote_latency_ms": {"p50": (p50 * 10.0).round() / 10.0, "p99": (p99 * 10.0).round() / 10.0, "samples": latencies.len()},
        "idle_writes": idle_writes,
        "idle_writes_by": idle_by,
        "idle_lease_renewals": lease_renewals,
        "idle_window_s": idle_secs,
        "operator_peak_rss_mb": (operator.peak_rss_mb() * 10.0).round() / 10.0,
        "operator_cpu_s": (operator.cpu_seconds() * 10.0).round() / 10.0,
        "machine": format!("{} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)),
    });
    drop(operator);
    platform.stop();
    println!("{figures}");
    Ok(())
}
