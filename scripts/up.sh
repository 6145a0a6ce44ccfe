#!/usr/bin/env bash
# Brings up the local platform (control plane + kwok nodes), installs the CRDs, starts the Atlas and
# Cloudflare fakes on 127.0.0.1 (seeded with the test credentials of environments/local), applies
# Authentify's local environment (environments/local) and runs the operator in the foreground
# against it. Ctrl-C stops the operator and the fakes; `make down` stops the platform.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="${AUTHENTIFY_CACHE:-$HOME/.cache/authentify}/path:$PATH"
KUBECONFIG="$(scripts/platform.sh up | tail -n 1)"
export KUBECONFIG
STATE="$(dirname "$KUBECONFIG")"
kubectl apply --server-side --field-manager authentify-operator -f manifests/crds/ >/dev/null
kubectl wait --for condition=Established --timeout 60s -f manifests/crds/ >/dev/null

cargo build --quiet -p authentify-fakes -p authentify-operator
# The fakes' seeds match environments/local (project 0123456789abcdef01234567, cluster
# authentify, zone authentify.local, and the credentials in its secretGenerator).
target/debug/authentify-fakes --atlas-addr 127.0.0.1:18181 --cloudflare-addr 127.0.0.1:18182 \
  --atlas-api-key local-public:local-private --atlas-cluster 0123456789abcdef01234567/authentify \
  --cloudflare-token local-token --cloudflare-zone authentify.local >"$STATE/logs/fakes.log" 2>&1 &
FAKES=$!
trap 'kill "$FAKES" 2>/dev/null || true' EXIT
# A default StorageClass and a few volumes, so the in-cluster Redis's claim binds.
kubectl apply --server-side -f scripts/local-storage.yaml >/dev/null
kubectl apply --server-side -k environments/local >/dev/null
echo "[up] platform ready, environments/local applied (namespace authentify-local); fakes log: $STATE/logs/fakes.log" >&2
echo "[up] in another shell: export KUBECONFIG=$KUBECONFIG" >&2
KUBECONFIG="$STATE/operator.kubeconfig" target/debug/authentify-operator run --leader-election-namespace default
