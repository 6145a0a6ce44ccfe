//! The chart, the plain install, the environments, and the operator with only the chart's RBAC.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use authentify::api::app::AppPhase;
use authentify::api::common::ResourcePhase;
use authentify::api::{AnalysisRun, AnalysisTemplate, App, AtlasConnection, EdgeCache};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::support::{TestCtx, cached_bin, client_for, kubectl_bin, poll_until};

const CHART: &str = "charts/authentify-operator";
/// The Atlas project of the AtlasConnection in the rollout test (the Atlas fake's).
const ATLAS_GROUP: &str = "5f1a2b3c4d5e6f7a8b9c0d1e";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` (with `stdin` piped in when given); returns (success, stdout, stderr).
fn exec(cmd: &mut Command, stdin: Option<&str>) -> anyhow::Result<(bool, String, String)> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .current_dir(root())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    if let Some(input) = stdin {
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn exec_ok(cmd: &mut Command, stdin: Option<&str>) -> anyhow::Result<String> {
    let what = format!("{cmd:?}");
    let (ok, out, err) = exec(cmd, stdin)?;
    ensure!(ok, "{what} failed:\n{err}{out}");
    Ok(out)
}

fn helm(args: &[&str]) -> Command {
    let mut cmd = Command::new(cached_bin("helm"));
    cmd.args(args);
    cmd
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(kubectl_bin());
    cmd.env("KUBECONFIG", kubeconfig).args(args);
    cmd
}

/// `helm template RELEASE CHART -n NAMESPACE --set ...`, as parsed documents.
fn template(release: &str, namespace: &str, sets: &[&str]) -> anyhow::Result<(String, Vec<Value>)> {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    for s in sets {
        args.extend(["--set", s]);
    }
    let text = exec_ok(&mut helm(&args), None)?;
    Ok((text.clone(), documents(&text)?))
}

fn documents(text: &str) -> anyhow::Result<Vec<Value>> {
    use serde::Deserialize;
    let mut docs = vec![];
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_json::to_value(serde_yaml_ng::Value::deserialize(doc)?)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter().map(|d| d["kind"].as_str().unwrap_or_default().to_string()).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> anyhow::Result<&'a Value> {
    docs.iter()
        .find(|d| {
            d["kind"] == kind && d["metadata"]["name"].as_str().is_some_and(|n| n.ends_with(name_suffix))
        })
        .with_context(|| format!("no {kind} *{name_suffix} in the rendered chart: {:?}", kinds(docs)))
}

/// Deletes the cluster-scoped objects a test release created (namespaced ones go with the
/// test's namespace).
fn delete_cluster_scoped(kubeconfig: &Path, release: &str) {
    let selector = format!("app.kubernetes.io/instance={release}");
    let _ = exec(
        &mut kubectl(
            kubeconfig,
            &["delete", "clusterroles,clusterrolebindings", "-l", &selector, "--wait=false"],
        ),
        None,
    );
}

fn release_name(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id() % 100_000)
}

/// `helm lint`, `helm template` with each option, the values schema, and the default render applied
/// to the control plane, where the Deployment's two replicas become available.
pub async fn chart_lints_renders_and_applies(ctx: TestCtx) -> anyhow::Result<()> {
    let lint = exec_ok(&mut helm(&["lint", "--strict", CHART]), None)?;
    ensure!(lint.contains("0 chart(s) failed"), "helm lint: {lint}");

    // Defaults: what a plain `helm install` creates.
    let (_, docs) = template("authentify-operator", "authentify-system", &[])?;
    let got: BTreeSet<String> = kinds(&docs).into_iter().collect();
    let want: BTreeSet<String> = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    ensure!(got == want, "default render has kinds {got:?}, expected {want:?}");
    let deploy = find(&docs, "Deployment", "authentify-operator")?;
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    ensure!(deploy["spec"]["replicas"] == 2, "two replicas by default");
    ensure!(pod["securityContext"]["runAsNonRoot"] == true, "runAsNonRoot: {pod}");
    ensure!(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", "seccomp: {pod}");
    let sc = &container["securityContext"];
    ensure!(sc["readOnlyRootFilesystem"] == true && sc["allowPrivilegeEscalation"] == false, "{sc}");
    ensure!(sc["capabilities"]["drop"] == json!(["ALL"]), "drop ALL: {sc}");
    ensure!(container["livenessProbe"]["httpGet"]["path"] == "/healthz", "{container}");
    ensure!(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "{container}");
    ensure!(container["resources"]["requests"]["memory"].is_string(), "resources: {container}");
    ensure!(container["resources"]["limits"]["memory"].is_string(), "resources: {container}");
    ensure!(find(&docs, "PodDisruptionBudget", "authentify-operator")?["spec"]["minAvailable"] == 1);

    // CRDs ship with the chart, the same as the Rust types.
    let with_crds = documents(&exec_ok(&mut helm(&["template", "x", CHART, "--include-crds"]), None)?)?;
    let crds = with_crds.iter().filter(|d| d["kind"] == "CustomResourceDefinition").count();
    ensure!(crds == authentify::api::crds().len(), "the chart ships {crds} CRDs");

    // Writes confined to listed namespaces: RoleBindings there, no cluster-wide write binding.
    let (_, scoped) = template("op", "ops", &["rbac.namespaces={team-a,team-b}"])?;
    let write_bindings: Vec<(String, String)> = scoped
        .iter()
        .filter(|d| d["metadata"]["name"].as_str().is_some_and(|n| n.ends_with("-write")))
        .filter(|d| d["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().into(),
                d["metadata"]["namespace"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    ensure!(
        write_bindings == [("RoleBinding".into(), "team-a".into()), ("RoleBinding".into(), "team-b".into())],
        "write bindings with rbac.namespaces: {write_bindings:?}"
    );

    // Optional objects.
    let (_, optional) =
        template("op", "ops", &["serviceMonitor.enabled=true", "networkPolicy.enabled=true"])?;
    let monitor = find(&optional, "ServiceMonitor", "op-authentify-operator")?;
    ensure!(monitor["spec"]["endpoints"][0]["port"] == "metrics", "{monitor}");
    let policy = find(&optional, "NetworkPolicy", "op-authentify-operator")?;
    ensure!(policy["spec"]["ingress"][0]["ports"][0]["port"] == "metrics", "{policy}");

    // Values the schema or the templates refuse, each with a message that says why.
    for (set, message) in [
        ("replicaCount=0", "replicaCount"),
        ("logFormat=xml", "logFormat"),
        ("bogus=1", "bogus"),
        ("leaderElection.renewDeadlineSeconds=20", "renewDeadlineSeconds must be below"),
        ("leaderElection.enabled=false", "needs leaderElection.enabled"),
    ] {
        let (ok, _, err) = exec(&mut helm(&["template", "op", CHART, "--set", set]), None)?;
        ensure!(!ok && err.contains(message), "--set {set} should be refused mentioning {message:?}: {err}");
    }
    let (ok, _, err) = exec(
        &mut helm(&["template", "op", CHART, "--set", "leaderElection.enabled=false,replicaCount=1"]),
        None,
    )?;
    ensure!(ok, "one replica without leader election is allowed: {err}");

    // The render applies to the control plane, and its Deployment becomes available (kwok pods).
    let release = release_name("chart");
    let (text, _) = template(&release, &ctx.namespace, &["networkPolicy.enabled=true"])?;
    let applied = exec_ok(&mut kubectl(&ctx.kubeconfig, &["apply", "--server-side", "-f", "-"]), Some(&text));
    let result = async {
        applied?;
        let name = format!("{release}-authentify-operator");
        ctx.wait_for::<Deployment>(&name, "available with 2 replicas", Duration::from_secs(90), |d| {
            d.status.as_ref().and_then(|s| s.available_replicas) == Some(2)
        })
        .await?;
        ctx.wait_for::<PodDisruptionBudget>(&name, "covering both replicas", Duration::from_secs(60), |p| {
            p.status.as_ref().and_then(|s| s.expected_pods) == Some(2)
        })
        .await?;
        ctx.api::<Service>().get(&format!("{name}-metrics")).await?;
        anyhow::Ok(())
    }
    .await;
    delete_cluster_scoped(&ctx.kubeconfig, &release);
    result
}

/// manifests/install/operator.yaml is the chart's default render, the kustomization lists every
/// CRD, and `kubectl apply -k manifests/` passes a server dry-run.
pub async fn plain_manifests_are_rendered_from_the_chart(ctx: TestCtx) -> anyhow::Result<()> {
    let rendered = exec_ok(&mut Command::new(root().join("scripts/render-install.sh")), None)?;
    let committed = std::fs::read_to_string(root().join("manifests/install/operator.yaml"))?;
    ensure!(rendered == committed, "manifests/install/operator.yaml is stale: run `make manifests`");

    let kustomization: Value =
        documents(&std::fs::read_to_string(root().join("manifests/kustomization.yaml"))?)?
            .into_iter()
            .next()
            .context("manifests/kustomization.yaml is empty")?;
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .context("resources")?
        .iter()
        .filter_map(|r| r.as_str().map(String::from))
        .collect();
    for entry in std::fs::read_dir(root().join("manifests/crds"))? {
        let file = format!("crds/{}", entry?.file_name().to_string_lossy());
        ensure!(listed.contains(&file), "manifests/kustomization.yaml does not list {file}");
    }

    ensure_namespace(&ctx.client, "authentify-system").await?;
    let out = exec_ok(
        &mut kubectl(
            &ctx.kubeconfig,
            &["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", "manifests/"],
        ),
        None,
    )?;
    ensure!(out.contains("deployment.apps/authentify-operator serverside-applied (server dry run)"), "{out}");
    Ok(())
}

async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Each environment's kustomize build passes `kubectl apply --dry-run=server`.
pub async fn environments_pass_server_dry_run(ctx: TestCtx) -> anyhow::Result<()> {
    for env in ["local", "staging", "production"] {
        ensure_namespace(&ctx.client, &format!("authentify-{env}")).await?;
        let dir = format!("environments/{env}");
        let out = exec_ok(
            &mut kubectl(&ctx.kubeconfig, &["apply", "--server-side", "--dry-run=server", "-k", &dir]),
            None,
        )
        .with_context(|| format!("server dry-run of {dir}"))?;
        for object in [
            "app.platform.authentify.it/api",
            "app.platform.authentify.it/app-web",
            "app.platform.authentify.it/studio-web",
            "redis.platform.authentify.it/cache",
            "atlasconnection.platform.authentify.it/main",
            "edgecache.platform.authentify.it/authentify",
        ] {
            ensure!(
                out.contains(&format!("{object} serverside-applied (server dry run)")),
                "{dir}: no {object} in\n{out}"
            );
        }
    }
    Ok(())
}

/// A kubeconfig for the chart's ServiceAccount (a TokenRequest token), on the admin's server.
fn service_account_kubeconfig(
    admin: &Path,
    namespace: &str,
    sa: &str,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let token = exec_ok(
        &mut kubectl(admin, &["create", "token", sa, "--namespace", namespace, "--duration", "2h"]),
        None,
    )?;
    let kc = Kubeconfig::read_from(admin)?;
    let cluster =
        kc.clusters.first().and_then(|c| c.cluster.clone()).context("the admin kubeconfig has no cluster")?;
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster.server,
            "certificate-authority": cluster.certificate_authority,
        }}],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": sa, "context": {"cluster": "local", "user": sa, "namespace": namespace}}],
        "current-context": sa,
    });
    let path = dir.join("operator-sa.kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&config)?)?;
    Ok(path)
}

/// Builds the operator binary (a no-op when fresh) and returns its path.
fn operator_binary() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    exec_ok(
        Command::new(cargo).args([
            "build",
            "--quiet",
            "-p",
            "authentify-operator",
            "--bin",
            "authentify-operator",
        ]),
        None,
    )?;
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().context("target directory")?;
    let bin = target.join("debug/authentify-operator");
    ensure!(bin.is_file(), "{} is missing after cargo build", bin.display());
    Ok(bin)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `authentify-operator run` process.
struct Replica {
    identity: String,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn start(
        bin: &Path,
        kubeconfig: &Path,
        namespace: &str,
        identity: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = dir.join(format!("{identity}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", namespace)
            .env("AUTHENTIFY_LOG_FORMAT", "json")
            .env("AUTHENTIFY_METRICS_ADDRESS", format!("127.0.0.1:{port}"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting authentify-operator")?;
        Ok(Self { identity: identity.into(), port, log, child: Some(child) })
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = reqwest_get(&url).await?;
        Ok(response)
    }

    async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (_, text) = self.get("/metrics").await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(str::trim))
            .with_context(|| format!("{name} is not in the metrics of {}", self.identity))?
            .parse()
            .context("a metric value")
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A tiny HTTP GET on loopback (status, body), without pulling a client into the tests.
async fn reqwest_get(url: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("http URL")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).context("URL path")?;
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.split_whitespace().nth(1).context("status line")?.parse()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

async fn lease_holder(api: &Api<Lease>) -> anyhow::Result<Option<String>> {
    Ok(api.get_opt("authentify-operator").await?.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

fn forbidden<T>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(s)) if s.code == 403)
}

/// The operator runs as two processes with only the chart's RBAC (its ServiceAccount's token,
/// writes bound to this namespace): one leads, the standby does not reconcile; they roll out a
/// canary (ReplicaSets, Services, NGINX Ingresses, a pre-deploy Job, an AnalysisRun measured by
/// a Job, Events), provision an
/// in-cluster Redis (StatefulSets, ConfigMap, Secrets, PDBs), an EdgeCache (finalizer, status,
/// against the Cloudflare fake) and an AtlasConnection the App takes its MongoDB Secret from
/// (users, access list, Secrets, finalizer, against the Atlas fake) without one forbidden request; the
/// leader is SIGKILLed mid-rollout, the standby takes the Lease over and finishes the rollout; a
/// SIGTERM releases the Lease, which a third replica takes at its next poll. What the chart does
/// not grant is refused.
pub async fn chart_rbac_suffices_for_a_canary_and_a_standby_takes_over(ctx: TestCtx) -> anyhow::Result<()> {
    let release = release_name("rbac");
    let ns = ctx.namespace.clone();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("install-{ns}"));
    std::fs::create_dir_all(&dir)?;
    let (text, _) = template(&release, &ns, &[&format!("rbac.namespaces={{{ns}}}")])?;
    exec_ok(&mut kubectl(&ctx.kubeconfig, &["apply", "--server-side", "-f", "-"]), Some(&text))?;
    let result = with_chart_rbac(&ctx, &release, &dir).await;
    delete_cluster_scoped(&ctx.kubeconfig, &release);
    result
}

async fn with_chart_rbac(ctx: &TestCtx, release: &str, dir: &Path) -> anyhow::Result<()> {
    let ns = ctx.namespace.as_str();
    let sa = format!("{release}-authentify-operator");
    let kubeconfig = service_account_kubeconfig(&ctx.kubeconfig, ns, &sa, dir)?;
    let as_operator = client_for(&kubeconfig).await?;

    // What the chart does not grant is refused.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "not-ours"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                 "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))?;
    ensure!(
        forbidden(
            Api::<Deployment>::namespaced(as_operator.clone(), ns)
                .create(&PostParams::default(), &deployment)
                .await
        ),
        "creating a Deployment must be refused"
    );
    let service: Service =
        serde_json::from_value(json!({"metadata": {"name": "not-ours"}, "spec": {"ports": [{"port": 80}]}}))?;
    ensure!(
        forbidden(
            Api::<Service>::namespaced(as_operator.clone(), "default")
                .create(&PostParams::default(), &service)
                .await
        ),
        "writing outside rbac.namespaces must be refused"
    );
    ensure!(
        forbidden(Api::<Secret>::namespaced(as_operator.clone(), "default").get("anything").await),
        "reading a Secret outside rbac.namespaces must be refused"
    );
    ensure!(
        forbidden(Api::<Node>::all(as_operator.clone()).list(&ListParams::default()).await),
        "nodes are not granted"
    );
    ensure!(
        forbidden(Api::<Lease>::namespaced(as_operator.clone(), ns).get("someone-elses-lease").await),
        "only the operator's own Lease is granted"
    );

    // Two replicas, as the chart's Deployment runs them.
    let bin = operator_binary()?;
    let start = |identity: &str| Replica::start(&bin, &kubeconfig, ns, identity, dir);
    let mut replicas = vec![start("replica-a")?, start("replica-b")?];
    let result = rollout_with_failover(ctx, &mut replicas, start).await;
    if result.is_err() {
        for r in &replicas {
            eprintln!("--- log of {} (exited: {})\n{}", r.identity, r.child.is_none(), r.logs());
        }
    }
    result
}

async fn rollout_with_failover(
    ctx: &TestCtx,
    replicas: &mut Vec<Replica>,
    start: impl Fn(&str) -> anyhow::Result<Replica>,
) -> anyhow::Result<()> {
    let leases: Api<Lease> = ctx.api();
    let identities: Vec<String> = replicas.iter().map(|r| r.identity.clone()).collect();
    poll_until("one replica to hold the Lease", Duration::from_secs(60), || async {
        Ok(lease_holder(&leases).await?.is_some_and(|h| identities.contains(&h)))
    })
    .await?;
    for r in replicas.iter() {
        poll_until(&format!("{} to be ready", r.identity), Duration::from_secs(30), || async {
            Ok(r.get("/readyz").await?.0 == 200)
        })
        .await?;
    }
    let holder = lease_holder(&leases).await?.context("a holder")?;
    let leader = replicas.iter().position(|r| r.identity == holder).context("the leader is one of ours")?;
    let standby = 1 - leader;
    ensure!(replicas[leader].get("/readyz").await?.1.contains("leader"), "/readyz of the leader says so");
    ensure!(replicas[standby].get("/readyz").await?.1.contains("standby"), "/readyz of the standby says so");

    // The Cloudflare fake, for an EdgeCache in front of the App.
    let cloudflare = authentify_fakes::CloudflareFake::start().await?;
    cloudflare.add_token("cf-install-token");
    cloudflare.add_zone("authentify.it");
    let token: Secret = serde_json::from_value(
        json!({"metadata": {"name": "cf"}, "stringData": {"token": "cf-install-token"}}),
    )?;
    ctx.api::<Secret>().create(&PostParams::default(), &token).await?;
    ctx.create_yaml::<EdgeCache>(&format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: EdgeCache\nmetadata: {{name: edge}}\nspec:\n  apiTokenSecret: {{name: cf, key: token}}\n  zoneName: authentify.it\n  baseUrl: {}\n  dns: {{target: ingress.authentify.it}}\n",
        cloudflare.base_url()
    ))
    .await?;

    // The Atlas fake, for an AtlasConnection the App takes its MongoDB Secret from (its users,
    // access list entries, Secrets, the App annotation and the finalizer under the chart's RBAC).
    let atlas = authentify_fakes::AtlasFake::start().await?;
    atlas.add_api_key("install-public", "install-private-key");
    atlas.put_cluster(ATLAS_GROUP, "main", "IDLE");
    let key: Secret = serde_json::from_value(json!({"metadata": {"name": "atlas-key"},
        "stringData": {"publicKey": "install-public", "privateKey": "install-private-key"}}))?;
    ctx.api::<Secret>().create(&PostParams::default(), &key).await?;
    ctx.create_yaml::<AtlasConnection>(&format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: AtlasConnection\nmetadata: {{name: main}}\nspec:\n  credentials: {{secretName: atlas-key}}\n  projectId: {ATLAS_GROUP}\n  clusterName: main\n  database: orders\n  baseUrl: {}\n  checkConnection: false\n  ipAccessList:\n    - {{cidrBlock: 10.20.0.0/16}}\n",
        atlas.base_url()
    ))
    .await?;

    // A canary through NGINX Ingresses with a pre-deploy Job, and an in-cluster Redis.
    // A step analysis measured by a Job (kwok's Job pods succeed): AnalysisRuns and their Jobs.
    ctx.create_yaml::<AnalysisTemplate>(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: smoke}\nspec:\n  metrics:\n    - name: smoke\n      count: 1\n      successCondition: result\n      provider:\n        job: {image: registry.example.com/smoke:1, command: [npm, test]}\n",
    )
    .await?;
    let steps = "      steps:\n        - setWeight: 50\n        - pause: {duration: 5s}\n        - analysis: {templates: [smoke]}\n        - setWeight: 75\n        - pause: {duration: 3s}\n";
    let app = format!(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: api}}\nspec:\n  image: registry.example.com/api:1\n  replicas: 2\n  port: 3000\n  route: {{host: api.authentify.it, ingressClassName: nginx}}\n  edgeCache: {{name: edge}}\n  connections: {{mongodb: main}}\n  jobs:\n    preDeploy: {{command: [npm, run, migrate]}}\n  strategy:\n    canary:\n      trafficRouting: {{nginx: {{}}}}\n{steps}"
    );
    ctx.create_yaml::<App>(&app).await?;
    ctx.create_yaml::<authentify::api::Redis>(
        "apiVersion: platform.authentify.it/v1alpha1\nkind: Redis\nmetadata: {name: cache}\nspec: {mode: replicated, replicas: 2}\n",
    )
    .await?;
    let long = Duration::from_secs(120);
    ctx.wait_for::<App>("api", "Healthy at image 1", long, |a| healthy_at(a, "registry.example.com/api:1"))
        .await?;
    ctx.wait_for::<StatefulSet>("cache-redis", "created by the operator", long, |_| true).await?;
    ctx.wait_for::<StatefulSet>("cache-sentinel", "created by the operator", long, |_| true).await?;
    ctx.wait_for::<ConfigMap>("cache-redis-config", "created by the operator", long, |_| true).await?;
    ctx.wait_for::<Secret>("cache-redis-auth", "created by the operator", long, |_| true).await?;
    ctx.wait_for::<EdgeCache>("edge", "Ready", long, |e| {
        e.status.as_ref().and_then(|s| s.phase.clone()) == Some(ResourcePhase::Ready)
    })
    .await?;
    ctx.wait_for::<AtlasConnection>("main", "Ready", long, |c| {
        c.status.as_ref().and_then(|s| s.phase.clone()) == Some(ResourcePhase::Ready)
    })
    .await?;
    ensure!(atlas.usernames(ATLAS_GROUP).len() == 1, "one database user in Atlas");
    ensure!(atlas.access_list(ATLAS_GROUP).len() == 1, "the access list entry in Atlas");
    poll_until("the Redis PodDisruptionBudgets", long, || async {
        Ok(ctx.api::<PodDisruptionBudget>().list(&ListParams::default()).await?.items.len() >= 2)
    })
    .await?;

    // Only the leader reconciles.
    ensure!(replicas[leader].metric("authentify_leader").await? == 1.0, "the leader's gauge");
    ensure!(replicas[standby].metric("authentify_leader").await? == 0.0, "the standby's gauge");
    ensure!(
        replicas[standby].metric("authentify_reconcile_duration_seconds_count").await? == 0.0,
        "the standby must not reconcile"
    );
    ensure!(replicas[leader].metric("authentify_reconcile_duration_seconds_count").await? > 0.0);

    // A new release; the leader dies (SIGKILL) while the canary pauses at 50 %.
    ctx.api::<App>()
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": "registry.example.com/api:2"}})),
        )
        .await?;
    ctx.wait_for::<App>("api", "paused at 50 % of the canary", long, |a| {
        let s = a.status.clone().unwrap_or_default();
        s.current_step_index == Some(1) && s.canary_weight == Some(50) && s.phase == Some(AppPhase::Paused)
    })
    .await?;
    let killed = Instant::now();
    if let Some(mut child) = replicas[leader].child.take() {
        child.kill()?; // SIGKILL: no release of the Lease, no graceful stop
        child.wait()?;
    }
    let survivor = replicas[standby].identity.clone();
    poll_until("the standby to take the Lease over", Duration::from_secs(60), || async {
        Ok(lease_holder(&leases).await?.as_deref() == Some(survivor.as_str()))
    })
    .await?;
    let failover = killed.elapsed();
    ctx.wait_for::<App>("api", "Healthy at image 2 (rolled out by the new leader)", long, |a| {
        healthy_at(a, "registry.example.com/api:2")
    })
    .await?;
    let finished = killed.elapsed();
    let runs = ctx.api::<AnalysisRun>().list(&ListParams::default()).await?.items;
    ensure!(!runs.is_empty(), "the step analysis ran as an AnalysisRun");
    // The new leader also runs the EdgeCache's finalizer when it is deleted.
    ctx.api::<EdgeCache>().delete("edge", &Default::default()).await?;
    poll_until("the EdgeCache's finalizer to let it go", long, || async {
        Ok(ctx.api::<EdgeCache>().get_opt("edge").await?.is_none())
    })
    .await?;
    // And the AtlasConnection's: its user and access list entry leave Atlas.
    ctx.api::<AtlasConnection>().delete("main", &Default::default()).await?;
    poll_until("the AtlasConnection's finalizer to let it go", long, || async {
        Ok(ctx.api::<AtlasConnection>().get_opt("main").await?.is_none())
    })
    .await?;
    ensure!(atlas.usernames(ATLAS_GROUP).is_empty(), "the operator's users are deleted from Atlas");
    ensure!(atlas.access_list(ATLAS_GROUP).is_empty(), "the operator's access list entry is deleted");
    atlas.assert_no_violations();
    eprintln!(
        "[install] failover: the standby took the Lease {:.1} s after the leader was killed (lease 15 s, retry 2 s); \
         the rollout finished {:.1} s after the kill",
        failover.as_secs_f64(),
        finished.as_secs_f64()
    );
    // How long it took is a figure (printed above, recorded in docs/benchmarks.md), not an
    // assertion: the poll above already bounds it by its deadline.
    ensure!(replicas[standby].metric("authentify_leader").await? == 1.0, "the new leader's gauge");

    // Not one request in this namespace (or at cluster scope) was refused: the chart's RBAC covers
    // everything the controllers did. (Objects of other namespaces, outside rbac.namespaces, are
    // refused as they should be.)
    for r in replicas.iter() {
        let logs = r.logs();
        for line in logs.lines() {
            let entry: Value = serde_json::from_str(line)
                .with_context(|| format!("{} logs JSON lines only, not {line:?}", r.identity))?;
            let text: String = entry["fields"]
                .as_object()
                .map(|f| f.values().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            let ours = format!("in the namespace \"{}\"", ctx.namespace);
            let elsewhere = text.contains("in the namespace \"") && !text.contains(&ours);
            ensure!(
                !text.to_lowercase().contains("forbidden") || elsewhere,
                "{} was refused a request: {line}",
                r.identity
            );
        }
    }

    // A graceful stop (SIGTERM) releases the Lease: a new standby takes over at its next poll
    // instead of waiting out the lease duration.
    replicas.push(start("replica-c")?);
    let third = replicas.len() - 1;
    poll_until("replica-c to stand by", Duration::from_secs(30), || async {
        Ok(replicas[third].get("/readyz").await?.1.contains("standby"))
    })
    .await?;
    let pid = replicas[standby].pid().context("the survivor runs")?;
    let stopped = Instant::now();
    exec_ok(Command::new("kill").args(["-TERM", &pid.to_string()]), None)?;
    let mut child = replicas[standby].child.take().context("the survivor")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the operator did not stop within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(status.success(), "the operator exits 0 on SIGTERM, got {status}");
    let released = replicas[standby].logs();
    ensure!(
        released.contains("released the leader lease"),
        "the stopping leader released the Lease:\n{released}"
    );
    // Within less than the lease duration (15 s): only a released Lease can be taken that soon.
    poll_until("replica-c to take the released Lease", Duration::from_secs(10), || async {
        Ok(lease_holder(&leases).await?.as_deref() == Some("replica-c"))
    })
    .await?;
    let handover = stopped.elapsed();
    eprintln!(
        "[install] graceful handover: replica-c took the released Lease {:.1} s after SIGTERM",
        handover.as_secs_f64()
    );
    Ok(())
}

/// Healthy, with `image` (the spec's) as the stable revision.
fn healthy_at(app: &App, image: &str) -> bool {
    let s = app.status.clone().unwrap_or_default();
    app.spec.image == image
        && s.observed_generation == app.metadata.generation
        && s.phase == Some(AppPhase::Healthy)
        && s.stable_revision.is_some()
        && s.stable_revision == s.current_revision
}
