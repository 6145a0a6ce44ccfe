//! Test support for integration tests on the real control plane: one control plane per run, the
//! CRDs installed once, a namespace per test, and waits with deadlines that explain themselves on
//! timeout (the object, its events and its children).

pub mod logs;
pub mod operator;
pub mod platform;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A test body: takes its context, returns when done.
pub type TestFn = fn(TestCtx) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Builds the list of `(name, function)` pairs from `module::function` paths.
#[macro_export]
macro_rules! cluster_tests {
    ($($module:ident :: $test:ident),* $(,)?) => {
        vec![$(
            (
                concat!(stringify!($module), "::", stringify!($test)),
                (|ctx| Box::pin($module::$test(ctx))) as $crate::support::TestFn,
            )
        ),*]
    };
}

/// What every test gets: a client, its own namespace, and the kubeconfig for `kubectl`.
#[derive(Clone)]
pub struct TestCtx {
    pub client: Client,
    pub namespace: String,
    pub kubeconfig: PathBuf,
}

/// Builds a client for a kubeconfig file.
pub async fn client_for(kubeconfig: &std::path::Path) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Installs (server-side apply) the platform's CRDs and waits until they are served.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("authentify-tests").force();
    for crd in authentify::api::crds() {
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        poll_until(&format!("CRD {name} to be Established"), Duration::from_secs(60), || async {
            let crd = api.get(&name).await?;
            Ok(crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .await?;
    }
    Ok(())
}

/// Polls `check` every 200 ms until it returns true or `timeout` passes. Errors from `check`
/// count as "not yet" but the last one is reported on timeout.
pub async fn poll_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}"),
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A free TCP port on 127.0.0.1 (for a server a test starts).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The kubectl built with the platform (same version as the API server) when present, else PATH's.
pub fn kubectl_bin() -> PathBuf {
    cached_bin("kubectl")
}

/// A binary `scripts/build-platform.sh` built (`~/.cache/authentify/path/NAME`), else PATH's.
pub fn cached_bin(name: &str) -> PathBuf {
    let cache = std::env::var_os("AUTHENTIFY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/authentify")));
    match cache.map(|c| c.join("path").join(name)) {
        Some(path) if path.exists() => path,
        _ => PathBuf::from(name),
    }
}

static NAMESPACE_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestCtx {
    /// Creates a fresh namespace named after the test.
    pub async fn new(client: Client, kubeconfig: PathBuf, test_name: &str) -> anyhow::Result<Self> {
        let slug: String = test_name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .collect::<String>()
            .split('-')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let n = NAMESPACE_COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id() % 10000;
        let mut namespace = format!("t{pid}-{n}-{slug}");
        namespace.truncate(63);
        let namespace = namespace.trim_end_matches('-').to_string();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": namespace, "labels": {"authentify.it/test": "true"}}
        }))?;
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
        Ok(Self { client, namespace, kubeconfig })
    }

    /// Deletes the test's namespace (without waiting for it to go).
    pub async fn cleanup(&self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.namespace, &DeleteParams::background())
            .await;
    }

    /// A namespaced API in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates an object from YAML in the test's namespace.
    pub async fn create_yaml<K>(&self, yaml: &str) -> Result<K, kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        let object: K = serde_yaml_ng::from_str(yaml).map_err(|e| {
            kube::Error::Service(format!("test fixture is not valid YAML for its kind: {e}").into())
        })?;
        self.api::<K>().create(&PostParams::default(), &object).await
    }

    /// Runs `kubectl` with this test's kubeconfig and namespace.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(kubectl_bin())
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args)
            .output()
            .context("running kubectl")
    }

    /// Runs `kubectl`, requires success, and returns its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.kubectl(args)?;
        if !out.status.success() {
            bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Waits until the named object satisfies `condition`. On timeout the error holds the object,
    /// its events and its children, so a failing test explains itself.
    pub async fn wait_for<K>(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&K) -> bool,
    ) -> anyhow::Result<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        let api = self.api::<K>();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(obj) = api.get_opt(name).await?
                && condition(&obj)
            {
                return Ok(obj);
            }
            if Instant::now() >= deadline {
                let kind = K::kind(&());
                let report = self.describe(&kind, name).await;
                bail!(
                    "timed out after {timeout:?} waiting for {kind} {}/{name} to be {what}\n{report}",
                    self.namespace
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The object as YAML, its events, and the objects it owns, for failure reports.
    pub async fn describe(&self, kind: &str, name: &str) -> String {
        let mut report = String::new();
        let object = self.kubectl(&["get", kind, name, "-o", "yaml"]);
        report.push_str(&format!("--- {kind} {name}\n"));
        match object {
            Ok(out) => report.push_str(&String::from_utf8_lossy(&out.stdout)),
            Err(e) => report.push_str(&format!("(could not get it: {e})\n")),
        }
        let events: Api<Event> = self.api();
        if let Ok(list) = events.list(&ListParams::default()).await {
            report.push_str("--- events in the namespace\n");
            for e in list.items {
                report.push_str(&format!(
                    "{} {}/{}: {} {}\n",
                    e.type_.unwrap_or_default(),
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                ));
            }
        }
        for child_kind in ["deployments", "replicasets", "pods", "services", "jobs", "ingresses", "secrets"] {
            if let Ok(out) = self.kubectl(&["get", child_kind, "-o", "wide", "--show-labels"]) {
                let text = String::from_utf8_lossy(&out.stdout);
                if !text.trim().is_empty() {
                    report.push_str(&format!("--- {child_kind}\n{text}"));
                }
            }
        }
        report
    }
}

/// Sets up the run: starts (or reuses) the control plane, installs the CRDs, and runs each test in
/// its own namespace on a shared runtime, with the operator running in-process.
#[allow(dead_code)] // tests/install runs its operators as processes
pub fn run(tests: Vec<(&'static str, TestFn)>) -> std::process::ExitCode {
    run_with(tests, "platform", true)
}

/// [`run`] on a control plane of its own (state `state_name`), with or without the in-process
/// operator (tests/install runs `authentify-operator` processes with the chart's RBAC instead).
pub fn run_with(
    tests: Vec<(&'static str, TestFn)>,
    state_name: &str,
    in_process_operator: bool,
) -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    if args.list {
        let trials = tests.into_iter().map(|(name, _)| libtest_mimic::Trial::test(name, || Ok(()))).collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("[cluster tests] cannot build a tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut platform = match platform::Platform::start(state_name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[cluster tests] cannot start the control plane: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let kubeconfig = platform.kubeconfig.clone();
    let setup = runtime.block_on(async {
        let client = client_for(&kubeconfig).await?;
        install_crds(&client).await?;
        anyhow::Ok(client)
    });
    let client = match setup {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[cluster tests] setup failed: {e:#}");
            platform.stop();
            return std::process::ExitCode::FAILURE;
        }
    };
    let handle = runtime.handle().clone();
    if in_process_operator {
        let _guard = runtime.enter();
        operator::start(client.clone());
    }
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let client = client.clone();
            let kubeconfig = kubeconfig.clone();
            let handle = handle.clone();
            libtest_mimic::Trial::test(name, move || {
                handle.block_on(async move {
                    let ctx = TestCtx::new(client, kubeconfig, name).await.map_err(|e| format!("{e:#}"))?;
                    let result = test(ctx.clone()).await;
                    ctx.cleanup().await;
                    result.map_err(|e| format!("{e:#}").into())
                })
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    runtime.block_on(operator::stop());
    platform.stop();
    conclusion.exit_code()
}

/// A Secret's data as text.
pub async fn secret_data(ctx: &TestCtx, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let s = ctx.api::<Secret>().get(name).await?;
    Ok(s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect())
}

/// `(reason, message)` of the Events about the object named `name`.
pub async fn events_for(ctx: &TestCtx, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let list = ctx.api::<Event>().list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect())
}

/// The Secrets an App's revision reads with `envFrom`.
pub async fn env_from(ctx: &TestCtx, app: &str, revision: &str) -> anyhow::Result<Vec<String>> {
    let rs = ctx.api::<ReplicaSet>().get(&format!("{app}-{revision}")).await?;
    let template = rs.spec.template.and_then(|t| t.spec).context("pod template")?;
    Ok(template
        .containers
        .iter()
        .flat_map(|c| c.env_from.clone().unwrap_or_default())
        .filter_map(|e| e.secret_ref.map(|s| s.name))
        .collect())
}
