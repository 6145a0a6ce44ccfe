//! `authentify-operator`: parses arguments, sets up telemetry and runs the controllers.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod leader;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The Authentify platform operator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: run::RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers against the cluster of the current kubeconfig (the default).
    Run,
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD into a directory.
    Crds {
        /// Directory to write `<plural>.<group>.yaml` files into instead of printing.
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command.unwrap_or(Command::Run) {
        Command::Run => run::run(args.run).await,
        Command::Crds { write: None } => {
            print!("{}", authentify::api::crds_yaml()?);
            Ok(())
        }
        Command::Crds { write: Some(dir) } => {
            std::fs::create_dir_all(&dir)?;
            for crd in authentify::api::crds() {
                let path = dir.join(authentify::api::crd_file_name(&crd));
                std::fs::write(&path, authentify::api::crd_yaml(&crd)?)?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}
