# modeldeploy — the two commands a newcomer needs:
#   make up     local control plane + operator + an example model, Ready  (make down to stop)
#   make test   the whole test suite: lint, unit tests and the e2e suite on the real control plane
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: up down test lint unit e2e controlplane crd bench bench-drift clean venv kserve-client browser

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[server,operator,test,dev]"
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# The kserve SDK pins its own dependencies: it gets a venv of its own, used as a V2 client in tests.
KSERVE_VENV := .local/venv-kserve
KSERVE_VERSION := 0.21.0
$(KSERVE_VENV)/.installed-$(KSERVE_VERSION):
	@mkdir -p .local
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/pip install --quiet "kserve==$(KSERVE_VERSION)"
	@touch $@

kserve-client: $(KSERVE_VENV)/.installed-$(KSERVE_VERSION)

# The drift page is tested in a real headless Chromium (Debian's package; needs root or sudo).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

controlplane: ## build (once; cached by version) the pinned Kubernetes, etcd and kwok binaries
	bash e2e/controlplane/build.sh

up: $(STAMP) controlplane
	$(PY) e2e/demo.py up

down:
	$(PY) e2e/demo.py down

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy api/modeldeploy_api api/modeldeploy_drift operator/modeldeploy_operator server/modeldeploy_server cli/modeldeploy_cli
	$(VENV)/bin/lint-imports
	$(VENV)/bin/modeldeploy crd --check -o crds -o charts/modeldeploy/crds

unit: $(STAMP) kserve-client browser
	$(PY) -m pytest tests

e2e: $(STAMP) controlplane
	$(PY) -m pytest e2e

test: lint controlplane kserve-client browser
	$(PY) -m pytest tests e2e

crd: $(STAMP) ## regenerate the CRD YAML from the pydantic models
	$(VENV)/bin/modeldeploy crd -o crds -o charts/modeldeploy/crds

bench: $(STAMP) ## ours vs MLServer, KServe and a naive FastAPI app (docs/benchmark.md); QUICK=1 for a short run
	$(PY) e2e/bench/run.py $(if $(QUICK),--quick,)

bench-drift: $(STAMP) ## drift calibration, monitoring cost, throughput on vs off (docs/drift-benchmark.md); QUICK=1
	$(PY) tests/bench/drift_calibration.py $(if $(QUICK),--reps-scale 0.1,)
	$(PY) e2e/bench/drift_overhead.py $(if $(QUICK),--quick,)

clean: down
	rm -rf .local
