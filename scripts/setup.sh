#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine, idempotently:
#   - Debian packages listed in scripts/apt-packages.txt (only the missing ones);
#   - the local platform's binaries, built from the Go module proxy into ~/.cache/authentify;
#   - the Rust workspace (built once so later commands start fast).
# Needs Go (>= 1.26) and Rust (cargo, with rustfmt and clippy), which the machine image provides.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
log() { printf '[setup] %s\n' "$*" >&2; }

missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done <"$ROOT/scripts/apt-packages.txt"
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null || { log "Go is required (go1.26 or newer)"; exit 1; }
command -v cargo >/dev/null || { log "Rust (cargo) is required"; exit 1; }

log "building the local platform (cached after the first run)"
"$ROOT/scripts/build-platform.sh" all >/dev/null

log "building the Rust workspace"
(cd "$ROOT" && cargo build --workspace --all-targets --quiet)
log "done"
