//! `kubectl authentify`: the kubectl plugin CI ships, promotes and aborts with, and SREs watch
//! rollouts with; plus offline `lint` and App Platform `import`.
//!
//! Decisions are pure and live in their own modules (what a status means, how a view looks, which
//! revision `undo` picks, what a spec imports to); [`run`] only reads and writes the API server.
//! The plugin writes user-facing requests as merge patches under its own field manager: it never
//! writes an App's `status` and never server-side applies anything.

pub mod args;
pub mod history;
pub mod import;
pub mod lint;
pub mod patch;
mod run;
pub mod schema;
pub mod status;
pub mod view;

use std::process::ExitCode;

use clap::Parser as _;

/// The plugin's exit codes, as documented in the README and `--help`.
pub mod exit {
    /// Success; for `status`, the App is Healthy (or Paused with `--success-on-pause`).
    pub const OK: u8 = 0;
    /// The rollout is Degraded or was aborted; for `lint`, a manifest is invalid.
    pub const FAILED: u8 = 1;
    /// `status` timed out.
    pub const TIMEOUT: u8 = 2;
    /// Bad usage, an unknown App, or the API server cannot be reached.
    pub const USAGE: u8 = 3;
}

/// An error that ends the plugin with a code and a sentence.
#[derive(Debug)]
pub struct Failure {
    /// One of [`exit`]'s codes.
    pub code: u8,
    /// What went wrong and what to do.
    pub message: String,
}

impl Failure {
    /// A usage, connection or not-found error (exit 3).
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: exit::USAGE, message: message.into() }
    }
}

/// Parses the command line and runs the verb. Usage errors exit 3 (clap's own code would be 2,
/// which `status` uses for a timeout).
pub fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let asked = matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            );
            return ExitCode::from(if asked { exit::OK } else { exit::USAGE });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    match runtime.block_on(run::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
