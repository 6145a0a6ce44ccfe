SHELL := /bin/bash
# Entry points. `make up` brings up the local platform and runs the operator on it; `make test`
# runs the whole test suite (what CI runs).
.PHONY: up test down setup crds manifests bench

up: setup
	scripts/up.sh

test:
	scripts/test.sh

down:
	scripts/platform.sh down

setup:
	scripts/setup.sh

# Regenerates the CRDs from the Rust types: manifests/crds and the Helm chart's copy.
crds:
	cargo run --quiet -p authentify-operator -- crds --write manifests/crds
	cargo run --quiet -p authentify-operator -- crds --write charts/authentify-operator/crds

# Regenerates the plain install (manifests/install/operator.yaml) from the Helm chart.
manifests: crds
	scripts/render-install.sh --write

# Benchmarks on the local control plane; each prints one JSON object as its last line.
bench:
	cargo build --release -p authentify-operator
	mkdir -p target docs/benchmarks
	set -o pipefail; cargo bench --bench rollout 2>&1 | tee target/bench-rollout.log
	tail -n 1 target/bench-rollout.log > docs/benchmarks/rollout.json
