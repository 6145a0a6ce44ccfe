#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, unit tests and the integration tests on a real
# control plane (which the test binary starts and stops itself). Prints how long each part took.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="${AUTHENTIFY_CACHE:-$HOME/.cache/authentify}/path:$PATH"
t0=$SECONDS
step() { printf '\n== %s (t+%ss)\n' "$*" $((SECONDS - t0)) >&2; }

step "setup"
scripts/setup.sh
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
step "cargo test"
cargo test --workspace
step "all passed in $((SECONDS - t0))s"
