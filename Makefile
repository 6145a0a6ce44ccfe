# Entry points. `make up` brings up the local platform and runs the operator on it; `make test`
# runs the whole test suite (what CI runs).
.PHONY: up test down setup crds

up: setup
	scripts/up.sh

test:
	scripts/test.sh

down:
	scripts/platform.sh down

setup:
	scripts/setup.sh

# Regenerates manifests/crds from the Rust types.
crds:
	cargo run --quiet -p authentify-operator -- crds --write manifests/crds
