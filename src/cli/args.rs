//! The command line of `kubectl authentify`: verbs, flags and their help, with an example for each
//! verb. Parsing only: this module decides what was asked, never how it is carried out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `kubectl authentify`: ship, watch, promote, abort and roll back Authentify Apps.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-authentify",
    bin_name = "kubectl authentify",
    version,
    about = "Ship, watch, promote, abort and roll back Authentify Apps; lint manifests; import App Platform specs.",
    after_help = "Exit codes: 0 success (status: Healthy), 1 rollout Degraded or aborted, 2 timed out, \
                  3 usage, connection or not-found error.\n\nExamples:\n  \
                  kubectl authentify set image api registry.example.com/api:1.43.0 -n production\n  \
                  kubectl authentify status api --timeout 15m -n production\n  \
                  kubectl authentify get app api --watch"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// kubectl's connection flags.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Path to the kubeconfig file; KUBECONFIG (or ~/.kube/config) when absent.
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use; the current context when absent.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of the App; the context's namespace when absent.
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// Output format of `get` and `list`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    /// A view for people.
    #[default]
    Text,
    /// The object as JSON.
    Json,
    /// The object as YAML.
    Yaml,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show an App's rollout: revisions, steps, weight, pause, analysis, events.
    #[command(after_help = "Example:\n  kubectl authentify get app api --watch -n production")]
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Wait for an App's rollout to end; the exit code tells how it ended.
    #[command(after_help = "Exit codes: 0 Healthy (or Paused with --success-on-pause), 1 Degraded or \
                            aborted (the reason is printed), 2 timed out, 3 usage or connection error.\n\n\
                            Example:\n  kubectl authentify status api --timeout 10m -n production")]
    Status(StatusArgs),
    /// Change an App: `set image` starts a rollout.
    #[command(after_help = "Example:\n  kubectl authentify set image api registry.example.com/api:1.43.0")]
    Set {
        #[command(subcommand)]
        what: SetWhat,
    },
    /// Promote the current step (or the blue-green preview); --full skips every remaining step.
    #[command(
        after_help = "Examples:\n  kubectl authentify promote api\n  kubectl authentify promote api --full"
    )]
    Promote {
        /// Name of the App.
        name: String,
        /// Skip every remaining step and promote the new revision to stable now.
        #[arg(long)]
        full: bool,
    },
    /// Abort the running rollout: the stable revision takes all traffic back.
    #[command(after_help = "Example:\n  kubectl authentify abort api")]
    Abort {
        /// Name of the App.
        name: String,
    },
    /// Start an aborted rollout again from its first step.
    #[command(after_help = "Example:\n  kubectl authentify retry api")]
    Retry {
        /// Name of the App.
        name: String,
    },
    /// Stop every rollout activity of the App where it stands (pods keep running).
    #[command(after_help = "Example:\n  kubectl authentify pause api")]
    Pause {
        /// Name of the App.
        name: String,
    },
    /// Let a paused App's rollout continue.
    #[command(after_help = "Example:\n  kubectl authentify resume api")]
    Resume {
        /// Name of the App.
        name: String,
    },
    /// Replace the stable pods one at a time (same image, fresh pods).
    #[command(after_help = "Example:\n  kubectl authentify restart api")]
    Restart {
        /// Name of the App.
        name: String,
    },
    /// Roll back to the previous revision, or to the one `history` numbers N.
    #[command(
        after_help = "Examples:\n  kubectl authentify undo api\n  kubectl authentify undo api --to-revision 3"
    )]
    Undo {
        /// Name of the App.
        name: String,
        /// The revision number shown by `kubectl authentify history`; the previous one when absent.
        #[arg(long, value_name = "N")]
        to_revision: Option<u32>,
    },
    /// List an App's revisions, numbered as `undo --to-revision` takes them.
    #[command(after_help = "Example:\n  kubectl authentify history api")]
    History {
        /// Name of the App.
        name: String,
    },
    /// List the Apps of a namespace (or of all with -A).
    #[command(
        after_help = "Examples:\n  kubectl authentify list -n production\n  kubectl authentify list -A"
    )]
    List {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Check App, Redis, AtlasConnection, EdgeCache and AnalysisTemplate manifests offline: schema and CEL rules.
    #[command(after_help = "Example:\n  kubectl authentify lint environments/production/*.yaml")]
    Lint {
        /// YAML files, each with one or more documents.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Convert a DigitalOcean App Platform spec into Authentify resources.
    #[command(
        after_help = "Example:\n  kubectl authentify import app-spec .do/app.yaml > environments/production/api.yaml"
    )]
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  kubectl authentify completion bash > /etc/bash_completion.d/kubectl-authentify"
    )]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// What `get` shows.
#[derive(Subcommand, Debug)]
pub enum GetWhat {
    /// One App's rollout.
    #[command(
        after_help = "Examples:\n  kubectl authentify get app api\n  kubectl authentify get app api -o yaml"
    )]
    App {
        /// Name of the App.
        name: String,
        /// Keep the view up to date until interrupted.
        #[arg(short = 'w', long)]
        watch: bool,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// `status` flags.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Name of the App.
    pub name: String,
    /// How long to wait, e.g. `10m`, `90s`, `1h`.
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub timeout: String,
    /// Exit 0 also when the rollout waits for a person: a pause step without a duration, a manual
    /// blue-green promotion, an inconclusive analysis, or `pause`. Timed pauses are waited out.
    #[arg(long)]
    pub success_on_pause: bool,
}

/// What `set` changes.
#[derive(Subcommand, Debug)]
pub enum SetWhat {
    /// Set the App's image; this starts a rollout.
    #[command(
        after_help = "Examples:\n  kubectl authentify set image api registry.example.com/api:1.43.0\n  \
                            kubectl authentify set image api app=registry.example.com/api:1.43.0"
    )]
    Image {
        /// Name of the App.
        name: String,
        /// `IMAGE` or `CONTAINER=IMAGE` (the App's container is named `app`).
        image: String,
    },
}

/// What `import` reads.
#[derive(Subcommand, Debug)]
pub enum ImportWhat {
    /// A DigitalOcean App Platform app spec (`.do/app.yaml`); prints YAML, the report goes to stderr.
    #[command(
        after_help = "Example:\n  kubectl authentify import app-spec .do/app.yaml -n production > api.yaml"
    )]
    AppSpec {
        /// The app spec file.
        file: PathBuf,
    },
}
