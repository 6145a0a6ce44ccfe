//! Wiring of the controllers: client, telemetry, and one watch per kind.

use std::fmt::Debug;

use clap::Args;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use authentify::api::{App, AtlasConnection, EdgeCache, Redis};

/// Options of `authentify-operator run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "AUTHENTIFY_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing(&args.log_format);
    let client = Client::try_default().await?;
    let version = client.apiserver_version().await?;
    info!(server = %version.git_version, "connected to the Kubernetes API server");
    let watches = futures::future::join4(
        watch_kind::<App>(client.clone()),
        watch_kind::<Redis>(client.clone()),
        watch_kind::<AtlasConnection>(client.clone()),
        watch_kind::<EdgeCache>(client.clone()),
    );
    tokio::select! {
        _ = watches => {}
        _ = shutdown_signal() => info!("shutting down"),
    }
    Ok(())
}

/// Logs every object of kind `K` the operator sees, in all namespaces.
async fn watch_kind<K>(client: Client)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let kind = K::kind(&()).to_string();
    info!(%kind, "watching");
    let api: Api<K> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default()).default_backoff().applied_objects().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(obj) => info!(
                %kind,
                namespace = obj.namespace().unwrap_or_default(),
                name = obj.name_any(),
                generation = obj.meta().generation.unwrap_or_default(),
                "observed"
            ),
            Err(error) => warn!(%kind, %error, "watch failed; retrying with backoff"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
