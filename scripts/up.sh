#!/usr/bin/env bash
# Brings up the local platform (control plane + kwok nodes), installs the CRDs and runs the operator
# in the foreground against it. Ctrl-C stops the operator; `make down` stops the platform.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="${AUTHENTIFY_CACHE:-$HOME/.cache/authentify}/path:$PATH"
KUBECONFIG="$(scripts/platform.sh up | tail -n 1)"
export KUBECONFIG
kubectl apply --server-side --field-manager authentify-operator -f manifests/crds/ >/dev/null
kubectl wait --for condition=Established --timeout 60s -f manifests/crds/ >/dev/null
echo "[up] platform ready; in another shell: export KUBECONFIG=$KUBECONFIG" >&2
export KUBECONFIG="$(dirname "$KUBECONFIG")/operator.kubeconfig"
exec cargo run --quiet -p authentify-operator -- run
