//! Starts (or reuses) the local control plane for one test run, and stops what it started.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// A running control plane.
pub struct Platform {
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// State directory of a control plane this run started (and must stop); `None` when reused.
    owned_state: Option<PathBuf>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn platform_script() -> PathBuf {
    repo_root().join("scripts/platform.sh")
}

impl Platform {
    /// Reuses the control plane of `AUTHENTIFY_TEST_KUBECONFIG` when set, else starts a fresh one
    /// whose state lives under the cargo target directory in `state_name`.
    #[allow(dead_code)] // the benchmark uses start_with_nodes
    pub fn start(state_name: &str) -> anyhow::Result<Self> {
        Self::start_with_nodes(state_name, 3)
    }

    /// [`Platform::start`] with `nodes` fake nodes (110 pods each).
    #[allow(dead_code)] // the tests use start
    pub fn start_with_nodes(state_name: &str, nodes: u32) -> anyhow::Result<Self> {
        if let Ok(path) = std::env::var("AUTHENTIFY_TEST_KUBECONFIG") {
            let kubeconfig = PathBuf::from(path);
            if !kubeconfig.is_file() {
                bail!("AUTHENTIFY_TEST_KUBECONFIG={} is not a file", kubeconfig.display());
            }
            eprintln!("[cluster tests] reusing the control plane of {}", kubeconfig.display());
            return Ok(Self { kubeconfig, owned_state: None });
        }
        let state = Path::new(env!("CARGO_TARGET_TMPDIR")).join(state_name);
        eprintln!("[cluster tests] starting a control plane in {}", state.display());
        let out = Command::new(platform_script())
            .args(["up", "--nodes", &nodes.to_string(), "--state"])
            .arg(&state)
            .output()
            .context("running scripts/platform.sh up")?;
        if !out.status.success() {
            bail!(
                "scripts/platform.sh up failed (exit {:?}); run scripts/setup.sh first if binaries are missing:\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let kubeconfig = String::from_utf8(out.stdout)?
            .lines()
            .last()
            .map(PathBuf::from)
            .context("scripts/platform.sh up printed no kubeconfig path")?;
        Ok(Self { kubeconfig, owned_state: Some(state) })
    }

    /// The state directory of a control plane this run started.
    #[allow(dead_code)] // used by the benchmark
    pub fn state(&self) -> Option<&Path> {
        self.owned_state.as_deref()
    }

    /// Stops the control plane if this run started it.
    pub fn stop(&mut self) {
        if let Some(state) = self.owned_state.take() {
            let status = Command::new(platform_script()).args(["down", "--state"]).arg(&state).status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!("[cluster tests] stopping the control plane in {} failed", state.display());
            }
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.stop();
    }
}
