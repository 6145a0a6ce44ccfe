//! The `kubectl-authentify` binary: `kubectl authentify ...` finds it on PATH. Everything lives in
//! `authentify::cli`; this only hands over.

fn main() -> std::process::ExitCode {
    authentify::cli::main()
}
