# Everything a user or CI runs. Each target installs what it needs: Python tools into .venv and
# .venv-sam, the control plane into a build cache outside the repo (see localeks/build.sh).
SHELL := bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM := .venv-sam/bin/sam
CORE := layers/core/python/serverless_nth
export PYTHONPATH := $(CURDIR)
export SAM_CLI_TELEMETRY := 0

.PHONY: demo test test-serial lint typecheck validate build built-functions unit integration bench-smoke bench dashboard cluster-up cluster-down invoke venv go deploy-tests reliability fuzz

demo: venv go ## start the local EKS, build a small cluster, replay the sample events, show what happened
	$(PY) -m localeks.demo

# The tiers of `make test`, run at once by tests/tiers.py (each its own make target, log and local
# EKS; `name:after` waits for `after`); it prints each tier's output as it ends, then a table of
# wall times, and fails when any tier fails. `make test-serial` runs them one after the other.
TIERS := lint typecheck validate build built-functions:build deploy-tests unit integration reliability bench-smoke:build
# pytest-xdist workers of the tiers that wait on a local EKS (each worker starts a cluster of its own)
INTEGRATION_WORKERS ?= 4
RELIABILITY_WORKERS ?= 2
# loadgroup: one test at a time to the worker that is free, but the tests of an xdist_group mark
# (those that share a module fixture or module state) on one worker, in their order
XDIST = $(if $(filter-out 0 1,$(1)),-n $(1) --dist loadgroup)

test: venv go ## the whole suite, as CI runs it: the tiers at once, then a table of their wall times
	$(PY) -m tests.tiers $(TIERS)

test-serial: lint typecheck validate build built-functions deploy-tests unit integration reliability bench-smoke ## the same tiers one after the other

venv: $(VENV)/.installed .venv-sam/.installed

$(VENV)/.installed: requirements-dev.txt layers/deps/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

.venv-sam/.installed: requirements-sam.txt
	$(PYTHON) -m venv .venv-sam
	.venv-sam/bin/pip install -q --disable-pip-version-check -r requirements-sam.txt
	touch $@

go:
	@command -v go >/dev/null || { echo "Go 1.26 or newer is needed to build the local EKS (go.dev/dl)"; exit 1; }

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy --strict $(CORE)

validate: venv
	$(SAM) validate --lint --region us-east-1
	$(SAM) validate --lint --region us-east-1 --template member/template.yaml

build: venv ## sam build: the deployable artifacts (python3.13 / arm64), without Docker
	$(SAM) build

built-functions: venv go build ## each function of .aws-sam/build handles one event, layers laid out as Lambda does (deps layer built for this machine: tests/build)
	$(PY) -m pytest tests/build -q

deploy-tests: venv ## sam build, package and SAM transform of each kind of change: every deploy reaches what the rules invoke
	$(PY) -m pytest tests/deploy -q

unit: venv
	$(PY) -m pytest tests/unit -q

integration: venv go
	$(PY) -m pytest tests/integration -q --durations=15 $(call XDIST,$(INTEGRATION_WORKERS))

reliability: venv go ## faults injected into real drains (TLS proxy, stalled control plane, EC2 throttling) and a few thousand fuzzed events
	$(PY) -m pytest tests/reliability -q --durations=15 $(call XDIST,$(RELIABILITY_WORKERS))

fuzz: venv ## at least 10,000 fuzzed events per event parser; writes bench/results/fuzz.json
	PYTHONPATH=$(CURDIR):$(CURDIR)/layers/core/python $(PY) -m tests.reliability.fuzz

bench-smoke: venv go ## a tiny run of the benchmark code (no timing asserted)
	$(PY) -m pytest tests/bench -q

bench: venv go build ## every benchmark; writes bench/results/latest.{json,md,png}
	$(PY) -m bench.run

.PHONY: mutants
# not part of `make test` (17 min on 2 cores); tests/unit/test_mutation_runner.py keeps the runner working
mutants: venv go ## mutation testing: mutmut on the pure core against the unit tier, curated scenario mutations against the local EKS; writes bench/results/mutants.{json,md}
	$(PY) -m bench.mutants

dashboard: venv ## draw template.yaml's dashboard from the metrics `make demo` captured (.local/dashboard.png)
	$(PY) -m localeks.dashboard

cluster-up: venv go ## start the local EKS (idempotent); writes .local/cluster.env
	$(PY) -m localeks up

cluster-down: ## stop every process of the local EKS and remove its state
	@if [ -x $(PY) ]; then $(PY) -m localeks down; fi

# make invoke FUNCTION=SpotInterruptionFunction EVENT=events/spot-interruption.json [INSTANCE_ID=i-...] [NOW=1] [PARAMS="DryRun=true"]
invoke: venv
	@test -n "$(FUNCTION)" -a -n "$(EVENT)" || { echo "usage: make invoke FUNCTION=<logical id> EVENT=<file> [INSTANCE_ID=i-...] [NOW=1] [PARAMS=\"Name=Value ...\"]"; exit 2; }
	$(PY) -m localeks.invoke $(FUNCTION) $(EVENT) $(if $(INSTANCE_ID),--instance-id $(INSTANCE_ID)) $(if $(NOW),--now) $(foreach p,$(PARAMS),--param $(p))
