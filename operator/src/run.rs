//! Wiring of the controllers: client, telemetry, the metrics and health endpoints, and shutdown.

use std::fmt::Debug;
use std::io::IsTerminal;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use clap::Args;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{info, warn};

use authentify::api::AtlasConnection;
use authentify::controllers::{self, metrics::Metrics};

/// Options of `authentify-operator run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "AUTHENTIFY_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, env = "AUTHENTIFY_METRICS_ADDRESS", default_value = "127.0.0.1:8080", global = true)]
    pub metrics_address: SocketAddr,
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).init();
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing(&args.log_format);
    let client = Client::try_default().await?;
    let version = client.apiserver_version().await?;
    info!(server = %version.git_version, "connected to the Kubernetes API server");

    let metrics = Metrics::new();
    let (ready_tx, ready_rx) = watch::channel(false);
    let server = serve(args.metrics_address, metrics.clone(), ready_rx).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let shutdown = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let apps = tokio::spawn(controllers::run(client.clone(), metrics, shutdown));
    let others = tokio::spawn(async move {
        log_kind::<AtlasConnection>(client.clone()).await;
    });
    let _ = ready_tx.send(true);
    shutdown_signal().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = apps.await;
    others.abort();
    server.abort();
    Ok(())
}

async fn serve(
    address: SocketAddr,
    metrics: Metrics,
    ready: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.encode() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = *ready.borrow();
                async move {
                    if ready {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(address).await?;
    info!(%address, "serving /metrics, /healthz and /readyz");
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            warn!(%error, "metrics server stopped");
        }
    }))
}

/// Logs the objects of a kind whose controller has not landed yet.
async fn log_kind<K>(client: Client)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let kind = K::kind(&()).to_string();
    info!(%kind, "watching");
    let api: Api<K> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default()).default_backoff().applied_objects().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(obj) => {
                info!(%kind, namespace = obj.namespace().unwrap_or_default(), name = obj.name_any(), "observed")
            }
            Err(error) => warn!(%kind, %error, "watch failed; retrying with backoff"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
