//! The operator under test, run in-process on the test runtime so a test can kill it (drop it
//! mid-reconcile, as a crash would) and start a fresh one.

use std::sync::Mutex;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Running {
    client: Client,
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

static OPERATOR: Mutex<Option<Running>> = Mutex::new(None);

fn spawn(client: Client) -> Running {
    let (stop, rx) = watch::channel(false);
    let shutdown = async move {
        let mut rx = rx;
        let _ = rx.wait_for(|s| *s).await;
    };
    let metrics = authentify::controllers::metrics::Metrics::new();
    let task = tokio::spawn(authentify::controllers::run(client.clone(), metrics, shutdown));
    Running { client, task, stop }
}

/// Starts the operator (inside a tokio runtime context).
pub fn start(client: Client) {
    let running = spawn(client);
    if let Ok(mut slot) = OPERATOR.lock() {
        *slot = Some(running);
    }
}

/// Kills the running operator without a graceful shutdown and starts a new one, as a crash and
/// a restart by its Deployment would.
pub fn kill_and_restart() {
    let Ok(mut slot) = OPERATOR.lock() else { return };
    if let Some(old) = slot.take() {
        old.task.abort();
        *slot = Some(spawn(old.client));
    }
}

/// Kills the operator and leaves it down until [`restart`].
pub fn kill() -> Option<Client> {
    let mut slot = OPERATOR.lock().ok()?;
    let old = slot.take()?;
    old.task.abort();
    Some(old.client)
}

/// Starts an operator after [`kill`].
pub fn restart(client: Client) {
    start(client);
}

/// Stops the operator gracefully at the end of the run.
pub async fn stop() {
    let running = OPERATOR.lock().ok().and_then(|mut s| s.take());
    if let Some(r) = running {
        let _ = r.stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), r.task).await;
    }
}
