#!/usr/bin/env bash
# Builds the local platform's binaries from the Go module proxy, once, into a cache outside the work
# tree keyed by version: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok.
# `$CACHE/path` gets unversioned links (kubectl) to put first on PATH.
# Re-running is cheap: a binary that exists in the cache is not rebuilt.
#
#   scripts/build-platform.sh            # build what is missing, print the bin directory
#
# Environment: AUTHENTIFY_CACHE (default ~/.cache/authentify) holds the results.
set -euo pipefail

source "$(dirname "$0")/versions.env"
CACHE="${AUTHENTIFY_CACHE:-$HOME/.cache/authentify}"
BIN="$CACHE/bin"
mkdir -p "$BIN" "$CACHE/src"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export GOTOOLCHAIN=local
# Two cores: let one Go build use both; the builds themselves run one after another.
export GOMAXPROCS="${GOMAXPROCS:-2}"

log() { printf '[build-platform] %s\n' "$*" >&2; }

# build_etcd: etcd's server module carries replace directives, so `go install` refuses it; a
# wrapper module that requires it (and its sibling modules at the same version) builds it.
build_etcd() {
  local out="$BIN/etcd-$ETCD_VERSION"
  [[ -x "$out" ]] && return 0
  log "building etcd $ETCD_VERSION"
  local dir="$CACHE/src/etcd-$ETCD_VERSION"
  rm -rf "$dir" && mkdir -p "$dir"
  cat >"$dir/go.mod" <<MOD
module authentify.local/etcdwrapper

go 1.26
MOD
  cat >"$dir/main.go" <<'GO'
// Command etcd runs the etcd server from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$dir" &&
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
    go mod tidy &&
    go build -trimpath -o "$out.tmp" . && mv "$out.tmp" "$out")
}

# build_kubernetes: k8s.io/kubernetes replaces its staging modules with ./staging paths, which a
# module download does not carry; the wrapper replaces each with its published v0.x release.
build_kubernetes() {
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local missing=0
  for c in "${cmds[@]}"; do [[ -x "$BIN/$c-$KUBERNETES_VERSION" ]] || missing=1; done
  [[ $missing == 0 ]] && return 0
  log "building kubernetes $KUBERNETES_VERSION (this takes a while on 2 cores)"
  local dir="$CACHE/src/kubernetes-$KUBERNETES_VERSION"
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  rm -rf "$dir" && mkdir -p "$dir"
  local kmod
  kmod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module authentify.local/kubewrapper"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$kmod"
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local ld=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean"
    ld+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$dir" && go mod tidy)
  for c in "${cmds[@]}"; do
    [[ -x "$BIN/$c-$KUBERNETES_VERSION" ]] && continue
    log "  go build $c"
    (cd "$dir" && go build -trimpath -tags tools -ldflags "-s -w $ld" -o "$BIN/$c-$KUBERNETES_VERSION.tmp" "k8s.io/kubernetes/cmd/$c" &&
      mv "$BIN/$c-$KUBERNETES_VERSION.tmp" "$BIN/$c-$KUBERNETES_VERSION")
  done
}

build_kwok() {
  local out="$BIN/kwok-$KWOK_VERSION"
  [[ -x "$out" ]] && return 0
  log "building kwok $KWOK_VERSION"
  GOBIN="$CACHE/src/kwok-$KWOK_VERSION" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$CACHE/src/kwok-$KWOK_VERSION/kwok" "$out"
}

# fetch_gateway_api: the Gateway API CRDs (standard channel) shipped in the sigs.k8s.io/gateway-api
# Go module, for the local platform.
fetch_gateway_api() {
  local out="$CACHE/gateway-api-$GATEWAY_API_VERSION"
  [[ -f "$out/gateway.networking.k8s.io_httproutes.yaml" ]] && return 0
  log "fetching Gateway API $GATEWAY_API_VERSION CRDs"
  local dir
  dir="$(cd "$CACHE/src" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  mkdir -p "$out.tmp" && cp "$dir"/config/crd/standard/*.yaml "$out.tmp/" && rm -rf "$out" && mv "$out.tmp" "$out"
}

# build_ferretdb: FerretDB (MongoDB wire protocol on SQLite) for the Atlas connection check. Its
# version package panics without build/version/version.txt, which `bin/task gen-version` writes
# and the module download lacks (so plain `go install` crashes); the wrapper module replaces
# FerretDB with a copy of the downloaded module that has the file.
build_ferretdb() {
  local out="$BIN/ferretdb-$FERRETDB_VERSION"
  [[ -x "$out" ]] && return 0
  log "building FerretDB $FERRETDB_VERSION"
  local dir="$CACHE/src/ferretdb-$FERRETDB_VERSION"
  rm -rf "$dir" && mkdir -p "$dir"
  local src
  src="$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  cp -r "$src" "$dir/ferretdb" && chmod -R u+w "$dir/ferretdb"
  echo "$FERRETDB_VERSION" >"$dir/ferretdb/build/version/version.txt"
  # FerretDB 1.24 ignores saslStart's skipEmptyExchange and answers the SCRAM client-final with
  # done=false; MongoDB 4.4+ (so Atlas) honours it, and the Rust driver requires it. Answer as
  # MongoDB does: done as soon as the conversation is valid.
  local sasl="$dir/ferretdb/internal/handler/msg_saslcontinue.go"
  sed -i 's|"done", valid, // for compatibility.*|"done", conv.Valid(), // authentify: skipEmptyExchange, as MongoDB answers|' "$sasl"
  sed -i 's|^\th.L.DebugContext(connCtx, "saslContinue: step succeed", attrs...)|\tif conv.Valid() {\n\t\tconninfo.Get(connCtx).SetBypassBackendAuth()\n\t}\n\n&|' "$sasl"
  grep -q 'authentify: skipEmptyExchange' "$sasl" && [[ "$(grep -c SetBypassBackendAuth "$sasl")" == 2 ]] ||
    { log "could not patch $sasl"; return 1; }
  cat >"$dir/go.mod" <<MOD
module authentify.local/ferretdbwrapper

go 1.26

require github.com/FerretDB/FerretDB $FERRETDB_VERSION

replace github.com/FerretDB/FerretDB => ./ferretdb
MOD
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/FerretDB/FerretDB/cmd/ferretdb"
GO
  (cd "$dir" &&
    go mod tidy &&
    go build -trimpath -tags tools,ferretdb_no_postgresql -ldflags "-s -w" -o "$out.tmp" github.com/FerretDB/FerretDB/cmd/ferretdb &&
    mv "$out.tmp" "$out")
}

# build_helm: the Helm 3 CLI (`helm lint` / `helm template` of charts/authentify-operator in the tests).
build_helm() {
  local out="$BIN/helm-$HELM_VERSION"
  [[ -x "$out" ]] && return 0
  log "building helm $HELM_VERSION"
  # As helm's Makefile does: the version, and the Kubernetes version `helm template` and `helm
  # lint` assume (that of the client-go helm requires; without it, v1.20).
  local client_go minor ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  client_go="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' |
    xargs sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p')"
  minor="${client_go:?cannot read the client-go version of helm}"
  ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ld+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  GOBIN="$CACHE/src/helm-$HELM_VERSION" go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$CACHE/src/helm-$HELM_VERSION/helm" "$out"
}

# link_current: $CACHE/path holds unversioned names (kubectl, ...) for PATH, pointing at this
# checkout's versions.
link_current() {
  mkdir -p "$CACHE/path"
  ln -sfn "$BIN/kubectl-$KUBERNETES_VERSION" "$CACHE/path/kubectl"
  if [[ -x "$BIN/helm-$HELM_VERSION" ]]; then ln -sfn "$BIN/helm-$HELM_VERSION" "$CACHE/path/helm"; fi
}

case "${1:-all}" in
  etcd) build_etcd ;;
  kubernetes) build_kubernetes ;;
  kwok) build_kwok ;;
  all) build_etcd; build_kwok; build_kubernetes; fetch_gateway_api; build_ferretdb; build_helm; link_current ;;
  ferretdb) build_ferretdb ;;
  helm) build_helm; link_current ;;
  gateway-api) fetch_gateway_api ;;
  *) echo "usage: $0 [all|etcd|kubernetes|kwok|gateway-api|ferretdb|helm]" >&2; exit 3 ;;
esac
echo "$BIN"
