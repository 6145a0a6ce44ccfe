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
log="$(mktemp)"
set +e
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep '^test result:' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep '^test result:' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
rm -f "$log"
step "done in $((SECONDS - t0))s"
echo "all: $passed passed, $failed failed"
exit "$status"
