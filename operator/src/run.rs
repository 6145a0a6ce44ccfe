//! Wiring of the controllers: client, telemetry, the metrics and health endpoints, and shutdown.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use clap::Args;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

use authentify::controllers::{self, metrics::Metrics};

use crate::leader;

/// Options of `authentify-operator run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "AUTHENTIFY_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
    /// Log level, as a tracing filter (`info`, `debug`, `info,authentify=debug`, ...). `RUST_LOG`,
    /// when set, wins.
    #[arg(long, env = "AUTHENTIFY_LOG_LEVEL", default_value = "info,kube=warn", global = true)]
    pub log_level: String,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, env = "AUTHENTIFY_METRICS_ADDRESS", default_value = "127.0.0.1:8080", global = true)]
    pub metrics_address: SocketAddr,
    /// Elect a leader among replicas on a coordination.k8s.io Lease; only the leader reconciles.
    #[arg(long, env = "AUTHENTIFY_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "AUTHENTIFY_LEADER_ELECTION_LEASE",
        default_value = "authentify-operator",
        global = true
    )]
    pub leader_election_lease: String,
    /// Namespace of the Lease (default: the pod's namespace, or the kubeconfig context's).
    #[arg(long, env = "POD_NAMESPACE", global = true)]
    pub leader_election_namespace: Option<String>,
    /// This replica's identity in the Lease (default: the pod name, else host name and process id).
    #[arg(long, env = "POD_NAME", global = true)]
    pub leader_election_identity: Option<String>,
    /// Seconds a standby waits for a silent leader before taking the Lease.
    #[arg(long, env = "AUTHENTIFY_LEADER_ELECTION_LEASE_DURATION", default_value_t = 15, global = true)]
    pub leader_election_lease_duration: u64,
    /// Seconds a leader keeps trying to renew before it steps down.
    #[arg(long, env = "AUTHENTIFY_LEADER_ELECTION_RENEW_DEADLINE", default_value_t = 10, global = true)]
    pub leader_election_renew_deadline: u64,
    /// Seconds between two reads (and renewals) of the Lease.
    #[arg(long, env = "AUTHENTIFY_LEADER_ELECTION_RETRY_PERIOD", default_value_t = 2, global = true)]
    pub leader_election_retry_period: u64,
}

impl RunArgs {
    fn timing(&self) -> leader::Timing {
        leader::Timing {
            lease_duration: Duration::from_secs(self.leader_election_lease_duration),
            renew_deadline: Duration::from_secs(self.leader_election_renew_deadline),
            retry_period: Duration::from_secs(self.leader_election_retry_period),
        }
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "authentify-operator".into());
    format!("{host}-{}", std::process::id())
}

fn init_tracing(format: &str, level: &str) -> anyhow::Result<()> {
    let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) => tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
            anyhow::anyhow!("--log-level / AUTHENTIFY_LOG_LEVEL {level:?} is not a valid filter: {e}")
        })?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).init();
    }
    Ok(())
}

/// What /readyz answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readiness {
    /// Not connected to the API server yet: 503.
    Starting,
    /// Holds the Lease and reconciles: 200.
    Leader,
    /// Connected, waiting for the Lease: 200 (a standby is a healthy replica).
    Standby,
    /// Shutting down: 503.
    Stopping,
}

/// The answer of /readyz: a leader and a standby are both ready (a standby is a healthy replica,
/// able to take over); starting, and stopping from the signal on (while reconciles in flight
/// finish), are not.
fn readyz(state: Readiness, signalled: bool) -> (axum::http::StatusCode, &'static str) {
    use axum::http::StatusCode;
    match if signalled { Readiness::Stopping } else { state } {
        Readiness::Leader => (StatusCode::OK, "ready: leader"),
        Readiness::Standby => (StatusCode::OK, "ready: standby"),
        Readiness::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Readiness::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing(&args.log_format, &args.log_level)?;
    let timing = args.timing();
    timing.validate().map_err(anyhow::Error::msg)?;
    let client = Client::try_default().await?;
    let version = client.apiserver_version().await?;
    info!(server = %version.git_version, "connected to the Kubernetes API server");

    let metrics = Metrics::new();
    let (ready_tx, ready_rx) = watch::channel(Readiness::Starting);
    let (signal_tx, signal_rx) = watch::channel(false);
    let server = serve(args.metrics_address, metrics.clone(), ready_rx, signal_rx.clone()).await?;

    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = signal_tx.send(true);
    });
    if !args.leader_elect {
        let _ = ready_tx.send(Readiness::Leader);
        metrics.set_leader(true);
        controllers::run(client, metrics, until(signal_rx, |s| *s)).await;
    } else {
        let namespace =
            args.leader_election_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
        let identity = args.leader_election_identity.clone().unwrap_or_else(default_identity);
        info!(lease = %args.leader_election_lease, %namespace, %identity, "leader election");
        let elector = leader::Elector {
            api: Api::namespaced(client.clone(), &namespace),
            name: args.leader_election_lease.clone(),
            identity,
            timing,
            field_manager: controllers::FIELD_MANAGER.to_string(),
        };
        let (leading_tx, leading_rx) = watch::channel(false);
        let (release_tx, release_rx) = watch::channel(false);
        let election = tokio::spawn(elector.run(leading_tx, release_rx));
        let _ = ready_tx.send(Readiness::Standby);
        loop {
            let (mut signal, mut leading) = (signal_rx.clone(), leading_rx.clone());
            tokio::select! {
                _ = signal.wait_for(|s| *s) => break,
                led = leading.wait_for(|l| *l) => if led.is_err() { break },
            }
            let _ = ready_tx.send(Readiness::Leader);
            metrics.set_leader(true);
            // Reconcile until the signal, or until the Lease is lost.
            let stop = {
                let (signal, leading) =
                    (until(signal_rx.clone(), |s| *s), until(leading_rx.clone(), |l| !*l));
                async move {
                    futures::future::select(Box::pin(signal), Box::pin(leading)).await;
                }
            };
            controllers::run(client.clone(), metrics.clone(), stop).await;
            metrics.set_leader(false);
            if *signal_rx.borrow() {
                break;
            }
            let _ = ready_tx.send(Readiness::Standby);
        }
        let _ = ready_tx.send(Readiness::Stopping);
        // The controllers have stopped: only now may another replica start reconciling.
        let _ = release_tx.send(true);
        let _ = election.await;
    }
    let _ = ready_tx.send(Readiness::Stopping);
    server.abort();
    Ok(())
}

/// Completes once the channel's value satisfies `condition` (or its sender is gone).
async fn until<T: Send + Sync>(mut rx: watch::Receiver<T>, condition: impl FnMut(&T) -> bool + Send) {
    let _ = rx.wait_for(condition).await;
}

async fn serve(
    address: SocketAddr,
    metrics: Metrics,
    ready: watch::Receiver<Readiness>,
    signal: watch::Receiver<bool>,
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
                let answer = readyz(*ready.borrow(), *signal.borrow());
                async move { answer }
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn readyz_is_ok_for_leader_and_standby_only_until_the_signal() {
        assert_eq!(readyz(Readiness::Leader, false), (StatusCode::OK, "ready: leader"));
        assert_eq!(readyz(Readiness::Standby, false), (StatusCode::OK, "ready: standby"));
        assert_eq!(readyz(Readiness::Starting, false).0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(readyz(Readiness::Stopping, false).0, StatusCode::SERVICE_UNAVAILABLE);
        for state in [Readiness::Leader, Readiness::Standby, Readiness::Starting] {
            assert_eq!(readyz(state, true), (StatusCode::SERVICE_UNAVAILABLE, "stopping"));
        }
    }
}
