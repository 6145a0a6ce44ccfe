//! `kubectl authentify` end to end: every verb against the real control plane with the operator
//! running in-process, rollouts driven to each end state, and the exit codes CI relies on. The
//! plugin runs as the built binary, and through kubectl's plugin discovery.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use authentify::api::App;
use authentify::api::app::AppPhase;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::support::{TestCtx, kubectl_bin, poll_until};

const LONG: Duration = Duration::from_secs(90);

fn plugin_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-authentify"))
}

/// What one run of the plugin gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs the plugin binary with the test's kubeconfig (through KUBECONFIG) and namespace.
async fn plugin(ctx: &TestCtx, args: &[&str]) -> anyhow::Result<Run> {
    let out = tokio::process::Command::new(plugin_bin())
        .env("KUBECONFIG", &ctx.kubeconfig)
        .args(["-n", &ctx.namespace])
        .args(args)
        .output()
        .await
        .context("running kubectl-authentify")?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs the plugin and requires exit code `want`.
async fn expect(ctx: &TestCtx, want: i32, args: &[&str]) -> anyhow::Result<Run> {
    let run = plugin(ctx, args).await?;
    ensure!(run.code == want, "kubectl authentify {} should exit {want}:\n{run}", args.join(" "));
    Ok(run)
}

/// Runs `kubectl authentify ...` through kubectl, which finds the plugin on PATH.
async fn through_kubectl(ctx: &TestCtx, args: &[&str]) -> anyhow::Result<Run> {
    let dir = plugin_bin().parent().context("binary directory")?.to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let out = tokio::process::Command::new(kubectl_bin())
        .env("KUBECONFIG", &ctx.kubeconfig)
        .env("PATH", path)
        .arg("authentify")
        .args(args)
        .args(["-n", &ctx.namespace])
        .output()
        .await
        .context("running kubectl authentify")?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn app_yaml(name: &str, image: &str, replicas: i32, extra: &str) -> String {
    format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n  replicas: {replicas}\n  port: 3000\n{extra}"
    )
}

const CANARY: &str = "  strategy:\n    canary:\n      steps:\n        - setWeight: 50\n        - pause: {duration: 1s}\n        - pause: {}\n";

fn status_of(app: &App) -> authentify::api::AppStatus {
    app.status.clone().unwrap_or_default()
}

async fn revisions(ctx: &TestCtx, name: &str) -> anyhow::Result<Vec<String>> {
    let list = ctx
        .api::<ReplicaSet>()
        .list(&ListParams::default().labels(&format!("platform.authentify.it/app={name}")))
        .await?;
    let mut revs: Vec<String> = list.items.iter().map(|rs| rs.name_any()).collect();
    revs.sort();
    Ok(revs)
}

/// Ship with `set image`, wait with `status` (0 when Healthy or Paused with --success-on-pause,
/// 2 on timeout), watch with `get app --watch`, promote, and read `get`, `history` and `list`.
pub async fn ship_watch_promote_with_status_exit_codes(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", 2, CANARY)).await?;
    let healthy = expect(&ctx, 0, &["status", "api", "--timeout", "90s"]).await?;
    ensure!(healthy.stdout.contains("App api is Healthy"), "{healthy}");

    let set = expect(&ctx, 0, &["set", "image", "api", "app=registry.example.com/api:2"]).await?;
    ensure!(set.stdout.contains("image set to registry.example.com/api:2"), "{set}");
    let app = ctx.api::<App>().get("api").await?;
    ensure!(app.spec.image == "registry.example.com/api:2");
    let managers: Vec<String> =
        app.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    ensure!(managers.iter().any(|m| m == "kubectl-authentify"), "field managers: {managers:?}");

    // The rollout stops at the manual pause (step 3/3).
    let paused = expect(&ctx, 0, &["status", "api", "--success-on-pause", "--timeout", "90s"]).await?;
    ensure!(paused.stdout.contains("is Paused"), "{paused}");
    let app = ctx.api::<App>().get("api").await?;
    ensure!(status_of(&app).current_step_index == Some(2), "{:?}", app.status);
    // Without --success-on-pause, a rollout waiting for a person is not done: timeout, exit 2.
    let timed_out = expect(&ctx, 2, &["status", "api", "--timeout", "2s"]).await?;
    ensure!(timed_out.stdout.contains("Timed out after 2s"), "{timed_out}");

    let view = expect(&ctx, 0, &["get", "app", "api"]).await?;
    for want in [
        "Phase:      Paused",
        "Weight:     50% on the new revision",
        "Step:       3/3",
        "→  3. pause until promoted",
        "(until promoted or resumed)",
        "stable",
        "canary",
        "registry.example.com/api:1",
        "Events:",
        "RolloutStarted",
    ] {
        ensure!(view.stdout.contains(want), "missing {want:?} in the view:\n{view}");
    }
    ensure!(!view.stdout.contains("\x1b["), "no colour when stdout is not a terminal:\n{view}");
    let json = expect(&ctx, 0, &["get", "app", "api", "-o", "json"]).await?;
    let as_app: App = serde_json::from_str(&json.stdout).context("get -o json prints the App")?;
    ensure!(as_app.status.and_then(|s| s.canary_weight) == Some(50));
    let yaml = expect(&ctx, 0, &["get", "app", "api", "-o", "yaml"]).await?;
    ensure!(serde_yaml_ng::from_str::<App>(&yaml.stdout).is_ok(), "{yaml}");

    // A live view, then promote: the view follows the rollout to Healthy by itself.
    let mut watch = tokio::process::Command::new(plugin_bin())
        .env("KUBECONFIG", &ctx.kubeconfig)
        .args(["-n", &ctx.namespace, "get", "app", "api", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(watch.stdout.take().context("stdout")?).lines();
    let seen_paused = tokio::time::timeout(LONG, async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("Phase:      Paused") {
                return anyhow::Ok(true);
            }
        }
        anyhow::Ok(false)
    })
    .await??;
    ensure!(seen_paused, "the watch printed the paused rollout");

    let promoted = through_kubectl(&ctx, &["promote", "api"]).await?;
    ensure!(promoted.code == 0 && promoted.stdout.contains("promotion requested"), "{promoted}");
    let done = expect(&ctx, 0, &["status", "api", "--timeout", "90s"]).await?;
    ensure!(done.stdout.contains("is Healthy"), "{done}");
    let seen_healthy = tokio::time::timeout(LONG, async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("Phase:      Healthy") {
                return anyhow::Ok(true);
            }
        }
        anyhow::Ok(false)
    })
    .await??;
    ensure!(seen_healthy, "the watch followed the rollout to Healthy");
    watch.kill().await?;

    let history = expect(&ctx, 0, &["history", "api"]).await?;
    let rows: Vec<&str> = history.stdout.lines().skip(1).collect();
    ensure!(rows.len() == 2, "two revisions:\n{history}");
    ensure!(
        rows[0].starts_with('1') && rows[0].contains("registry.example.com/api:1"),
        "revision 1 is the first image:\n{history}"
    );
    ensure!(
        rows[1].starts_with('2') && rows[1].contains("Promoted") && rows[1].contains("(stable)"),
        "revision 2 is the promoted one:\n{history}"
    );

    let list = expect(&ctx, 0, &["list"]).await?;
    ensure!(list.stdout.lines().any(|l| l.starts_with("api ") && l.contains("Healthy")), "{list}");
    let all = through_kubectl(&ctx, &["list", "-A"]).await?;
    ensure!(
        all.code == 0 && all.stdout.lines().any(|l| l.starts_with(&ctx.namespace) && l.contains("api")),
        "list -A through kubectl:\n{all}"
    );
    Ok(())
}

/// A crash-looping release rolls back by itself: `status` exits 1 with the reason; `undo` goes
/// back to the stable revision by reusing its ReplicaSet; `undo --to-revision` to a numbered one.
pub async fn bad_release_exits_1_then_undo_reuses_the_old_replica_set(ctx: TestCtx) -> anyhow::Result<()> {
    let extra = format!("  autoRollback: {{restartThreshold: 2}}\n{CANARY}");
    ctx.create_yaml::<App>(&app_yaml("web", "registry.example.com/web:1", 2, &extra)).await?;
    expect(&ctx, 0, &["status", "web", "--timeout", "90s"]).await?;
    let v1 = ctx.api::<App>().get("web").await?;
    let good = status_of(&v1).stable_revision.context("stable revision")?;

    // The bad release: its pods crash-loop (kwok's crash label).
    ctx.api::<App>()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"image": "registry.example.com/web:2",
                "podLabels": {"sim.authentify.it/crash": "true"}}})),
        )
        .await?;
    let failed = expect(&ctx, 1, &["status", "web", "--timeout", "90s"]).await?;
    ensure!(
        failed.stdout.contains("is Degraded") && failed.stdout.contains("rolled back automatically"),
        "the reason is printed:\n{failed}"
    );
    let degraded = ctx.api::<App>().get("web").await?;
    let bad = status_of(&degraded).current_revision.context("current revision")?;
    ensure!(bad != good);

    let before = revisions(&ctx, "web").await?;
    let undo = expect(&ctx, 0, &["undo", "web"]).await?;
    ensure!(undo.stdout.contains(&good) && undo.stdout.contains("still exists"), "{undo}");
    let back = expect(&ctx, 0, &["status", "web", "--timeout", "90s"]).await?;
    ensure!(back.stdout.contains("is Healthy"), "{back}");
    let app = ctx.api::<App>().get("web").await?;
    ensure!(status_of(&app).stable_revision.as_deref() == Some(good.as_str()), "{:?}", app.status);
    ensure!(status_of(&app).current_revision.as_deref() == Some(good.as_str()), "{:?}", app.status);
    ensure!(
        app.spec.pod_labels.is_empty(),
        "the crash label went with the bad revision: {:?}",
        app.spec.pod_labels
    );
    ensure!(revisions(&ctx, "web").await? == before, "the rollback reused the old ReplicaSet: {before:?}");

    // Revisions: 1 = the bad one (its rollout is older than the rollback), 2 = the good one.
    let history = expect(&ctx, 0, &["history", "web"]).await?;
    ensure!(
        history.stdout.lines().nth(1).is_some_and(|l| l.starts_with('1') && l.contains(&bad)),
        "{history}"
    );
    let same = expect(&ctx, 3, &["undo", "web", "--to-revision", "2"]).await?;
    ensure!(same.stderr.contains("already the one"), "{same}");
    let missing = expect(&ctx, 3, &["undo", "web", "--to-revision", "9"]).await?;
    ensure!(missing.stderr.contains("has no revision 9"), "{missing}");
    let to_bad = expect(&ctx, 0, &["undo", "web", "--to-revision", "1"]).await?;
    ensure!(to_bad.stdout.contains(&bad), "{to_bad}");
    let app = ctx
        .wait_for::<App>("web", "rolling out the old bad revision", LONG, |a| {
            status_of(a).current_revision.as_deref() == Some(bad.as_str())
        })
        .await?;
    ensure!(
        app.spec.pod_labels.contains_key("sim.authentify.it/crash"),
        "undo restored the old pod template"
    );
    Ok(())
}

/// Abort (exit 1 with the reason), retry, pause, resume, promote --full and restart, each through
/// the plugin, with the App's state checked after each.
pub async fn abort_retry_pause_resume_promote_full_restart(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(&app_yaml("api", "registry.example.com/api:1", 2, CANARY)).await?;
    expect(&ctx, 0, &["status", "api", "--timeout", "90s"]).await?;
    expect(&ctx, 0, &["set", "image", "api", "registry.example.com/api:2"]).await?;
    expect(&ctx, 0, &["status", "api", "--success-on-pause", "--timeout", "90s"]).await?;

    let abort = expect(&ctx, 0, &["abort", "api"]).await?;
    ensure!(abort.stdout.contains("abort requested"), "{abort}");
    let aborted = expect(&ctx, 1, &["status", "api", "--timeout", "90s"]).await?;
    ensure!(aborted.stdout.contains("aborted on request"), "{aborted}");

    expect(&ctx, 0, &["retry", "api"]).await?;
    let retried = expect(&ctx, 0, &["status", "api", "--success-on-pause", "--timeout", "90s"]).await?;
    ensure!(retried.stdout.contains("is Paused"), "{retried}");
    ensure!(!status_of(&ctx.api::<App>().get("api").await?).abort);

    expect(&ctx, 0, &["pause", "api"]).await?;
    let app = ctx.api::<App>().get("api").await?;
    ensure!(app.spec.paused, "pause sets spec.paused");
    let held = ctx
        .wait_for::<App>("api", "paused by spec", LONG, |a| {
            status_of(a).pause_conditions.iter().any(|p| p.reason == "AppPaused")
        })
        .await?;
    let view = expect(&ctx, 0, &["get", "app", "api"]).await?;
    ensure!(view.stdout.contains("Paused:     yes, by spec.paused"), "{view}");
    ensure!(status_of(&held).phase == Some(AppPhase::Paused));
    expect(&ctx, 0, &["resume", "api"]).await?;
    ensure!(!ctx.api::<App>().get("api").await?.spec.paused, "resume clears spec.paused");

    expect(&ctx, 0, &["promote", "api", "--full"]).await?;
    let done = expect(&ctx, 0, &["status", "api", "--timeout", "90s"]).await?;
    ensure!(done.stdout.contains("is Healthy"), "{done}");
    let app = ctx.api::<App>().get("api").await?;
    let stable = status_of(&app).stable_revision.context("stable")?;
    ensure!(status_of(&app).current_revision.as_deref() == Some(stable.as_str()));

    let pods_before: Vec<String> = app_pods(&ctx, "api").await?.into_iter().map(|p| p.name_any()).collect();
    ensure!(pods_before.len() == 2, "{pods_before:?}");
    expect(&ctx, 0, &["restart", "api"]).await?;
    let app = ctx.api::<App>().get("api").await?;
    let at = app.spec.restart_at.clone().context("restartAt set")?;
    poll_until("every pod replaced after restartAt", LONG, || async {
        let pods = app_pods(&ctx, "api").await?;
        Ok(pods.len() == 2
            && pods.iter().all(|p| {
                p.metadata.creation_timestamp.as_ref().is_some_and(|c| c.0 >= at.0)
                    && !pods_before.contains(&p.name_any())
            }))
    })
    .await?;
    expect(&ctx, 0, &["status", "api", "--timeout", "90s"]).await?;
    Ok(())
}

async fn app_pods(ctx: &TestCtx, name: &str) -> anyhow::Result<Vec<Pod>> {
    let pods = ctx
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("platform.authentify.it/app={name}")))
        .await?;
    Ok(pods.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect())
}

/// Exit 3 for bad usage, an unknown App and an unreachable server; help, completion, lint and the
/// kubectl conventions (`--kubeconfig`, `--context`, the context's namespace).
pub async fn usage_connection_errors_help_completion_and_lint(ctx: TestCtx) -> anyhow::Result<()> {
    let unknown = expect(&ctx, 3, &["frobnicate"]).await?;
    ensure!(unknown.stderr.contains("frobnicate"), "{unknown}");
    expect(&ctx, 3, &["status"]).await?;
    let bad_timeout = expect(&ctx, 3, &["status", "api", "--timeout", "soon"]).await?;
    ensure!(bad_timeout.stderr.contains("not a duration"), "{bad_timeout}");
    let not_found = expect(&ctx, 3, &["status", "nope"]).await?;
    ensure!(not_found.stderr.contains("App nope not found in namespace"), "{not_found}");
    expect(&ctx, 3, &["promote", "nope"]).await?;
    let container = expect(&ctx, 3, &["set", "image", "nope", "sidecar=r/x:1"]).await?;
    ensure!(container.stderr.contains("named `app`"), "{container}");

    // A kubeconfig whose server does not answer.
    let mut kc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&ctx.kubeconfig)?)?;
    let context = kc["current-context"].as_str().context("current-context")?.to_string();
    if let Some(clusters) = kc["clusters"].as_sequence_mut() {
        for c in clusters {
            c["cluster"]["server"] = serde_yaml_ng::Value::from("https://127.0.0.1:9");
        }
    }
    let dir = tempfile::tempdir()?;
    let dead = dir.path().join("dead-kubeconfig");
    std::fs::write(&dead, serde_yaml_ng::to_string(&kc)?)?;
    let dead_path = dead.to_string_lossy().into_owned();
    let unreachable =
        expect(&ctx, 3, &["--kubeconfig", &dead_path, "status", "api", "--timeout", "5s"]).await?;
    ensure!(unreachable.stderr.contains("cannot reach the API server"), "{unreachable}");

    // --context and the context's default namespace.
    ctx.create_yaml::<App>(&app_yaml("ctx", "registry.example.com/ctx:1", 1, "")).await?;
    let mut with_ns: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&ctx.kubeconfig)?)?;
    if let Some(contexts) = with_ns["contexts"].as_sequence_mut() {
        for c in contexts {
            c["context"]["namespace"] = serde_yaml_ng::Value::from(ctx.namespace.clone());
        }
    }
    let ns_config = dir.path().join("ns-kubeconfig");
    std::fs::write(&ns_config, serde_yaml_ng::to_string(&with_ns)?)?;
    let out = tokio::process::Command::new(plugin_bin())
        .env("KUBECONFIG", &ns_config)
        .args(["--context", &context, "status", "ctx", "--timeout", "90s"])
        .output()
        .await?;
    ensure!(
        out.status.code() == Some(0),
        "status through --context and the context's namespace: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let help = through_kubectl(&ctx, &["--help"]).await?;
    ensure!(help.code == 0 && help.stdout.contains("Exit codes"), "{help}");
    for verb in [
        "get",
        "status",
        "set",
        "promote",
        "abort",
        "retry",
        "pause",
        "resume",
        "restart",
        "undo",
        "history",
        "list",
        "lint",
        "import",
        "completion",
    ] {
        let h = expect(&ctx, 0, &[verb, "--help"]).await?;
        ensure!(h.stdout.contains("Example"), "{verb} --help has an example:\n{h}");
    }
    let completion = expect(&ctx, 0, &["completion", "bash"]).await?;
    ensure!(
        completion.stdout.contains("kubectl-authentify") && completion.stdout.contains("promote"),
        "{completion}"
    );

    let manifests = dir.path().join("apps.yaml");
    std::fs::write(
        &manifests,
        app_yaml("ok", "r/ok:1", 1, "")
            + "---\n"
            + &app_yaml(
                "bad",
                "r/bad:1",
                1,
                "  autoscaling: {minReplicas: 4, maxReplicas: 2, cpuPercent: 50}\n",
            ),
    )?;
    let manifests_path = manifests.to_string_lossy().into_owned();
    let lint = expect(&ctx, 1, &["lint", &manifests_path]).await?;
    ensure!(
        lint.stdout.contains("document 2 (App bad): spec.autoscaling")
            && lint.stdout.contains("minReplicas must be less than or equal"),
        "{lint}"
    );
    // The API server refuses it with the same message.
    let refused = ctx.kubectl(&["apply", "-f", &manifests_path])?;
    ensure!(
        String::from_utf8_lossy(&refused.stderr).contains("minReplicas must be less than or equal"),
        "the API server agrees with lint: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Every CEL rule: lint's offline verdict is the API server's (a server-side dry run).
    let cases: Vec<serde_yaml_ng::Value> =
        serde_yaml_ng::from_str(include_str!("../../src/cli/cel_cases.yaml")).context("cel_cases.yaml")?;
    ensure!(cases.len() >= 20, "one case per CRD rule");
    for (i, case) in cases.iter().enumerate() {
        let yaml = serde_yaml_ng::to_string(&case["manifest"])?;
        let findings = authentify::cli::lint::lint_text(&yaml);
        ensure!(!findings.is_empty(), "lint accepts case {i}:\n{yaml}");
        let file = dir.path().join(format!("cel-{i}.yaml"));
        std::fs::write(&file, &yaml)?;
        let out = ctx.kubectl(&["apply", "--dry-run=server", "-f", &file.to_string_lossy()])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "the API server accepts case {i} that lint refuses:\n{yaml}");
        ensure!(
            findings.iter().any(|f| stderr.contains(&f.message)),
            "case {i}: lint says {findings:?}, the API server says {stderr}"
        );
    }

    let env = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("environments/local");
    let files: Vec<String> = std::fs::read_dir(&env)?
        .filter_map(|e| e.ok().map(|e| e.path().to_string_lossy().into_owned()))
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    let mut args = vec!["lint"];
    args.extend(files.iter().map(String::as_str));
    expect(&ctx, 0, &args).await?;

    let spec = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/import/nestjs-api.app.yaml");
    let imported = expect(&ctx, 0, &["import", "app-spec", &spec.to_string_lossy()]).await?;
    ensure!(
        imported.stdout.contains("kind: App") && imported.stderr.contains("Fields not mapped"),
        "{imported}"
    );
    ensure!(!imported.stdout.contains("EV[1:"), "no secret value in the output");
    Ok(())
}

const BLUE_GREEN: &str = "  route: {host: shop.authentify.test, ingressClassName: nginx}\n  strategy:\n    blueGreen:\n      previewHost: preview.shop.authentify.test\n      scaleDownDelaySeconds: 120\n";

/// Blue-green through the plugin: `status --success-on-pause` returns when the preview waits for
/// promotion, `get` shows the preview, `promote` switches, and `undo` inside the scale-down
/// window switches back at once without new pods.
pub async fn blue_green_promote_and_instant_undo(ctx: TestCtx) -> anyhow::Result<()> {
    ctx.create_yaml::<App>(&app_yaml("shop", "registry.example.com/shop:1", 2, BLUE_GREEN)).await?;
    expect(&ctx, 0, &["status", "shop", "--timeout", "90s"]).await?;
    let blue = status_of(&ctx.api::<App>().get("shop").await?).stable_revision.context("stable")?;

    expect(&ctx, 0, &["set", "image", "shop", "registry.example.com/shop:2"]).await?;
    let waiting = expect(&ctx, 0, &["status", "shop", "--success-on-pause", "--timeout", "90s"]).await?;
    ensure!(waiting.stdout.contains("waiting for promotion"), "{waiting}");
    let view = expect(&ctx, 0, &["get", "app", "shop"]).await?;
    ensure!(
        view.stdout.contains("Strategy:   BlueGreen")
            && view.stdout.contains("preview")
            && view.stdout.contains("(until promoted or resumed)"),
        "{view}"
    );
    expect(&ctx, 0, &["promote", "shop"]).await?;
    expect(&ctx, 0, &["status", "shop", "--timeout", "90s"]).await?;
    let green = status_of(&ctx.api::<App>().get("shop").await?).stable_revision.context("stable")?;
    ensure!(green != blue, "promoted to the new revision");

    let before = revisions(&ctx, "shop").await?;
    let undo = expect(&ctx, 0, &["undo", "shop"]).await?;
    ensure!(undo.stdout.contains(&blue), "{undo}");
    let back = expect(&ctx, 0, &["status", "shop", "--timeout", "30s"]).await?;
    ensure!(back.stdout.contains("is Healthy"), "{back}");
    let app = ctx.api::<App>().get("shop").await?;
    ensure!(status_of(&app).stable_revision.as_deref() == Some(blue.as_str()), "{:?}", app.status);
    ensure!(revisions(&ctx, "shop").await? == before, "the switch back made no ReplicaSet");
    Ok(())
}
