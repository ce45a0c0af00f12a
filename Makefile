# Two entry points for a fresh machine (Python 3.11, make): `make plan STACK=prod` and `make test`.
# Each creates ./venv on first use (the virtualenv Pulumi.yaml names) and installs what it needs, including
# the `synapse-workers` command (an editable install of this checkout).
VENV ?= venv
PY := $(VENV)/bin/python
STACK ?= prod
OUT ?= out/$(STACK)

.PHONY: plan test lint engine cluster-tools cluster cluster-down node-tools node node-down

$(VENV)/.run-deps: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.dev-deps: $(VENV)/.run-deps requirements-dev.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

plan: $(VENV)/.run-deps
	$(VENV)/bin/synapse-workers plan --stack $(STACK)
	$(VENV)/bin/synapse-workers render --stack $(STACK) --out $(OUT)

lint: $(VENV)/.dev-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The real engine and a local Kubernetes API, built from Go modules into .tools/bin (ignored), cached per
# version in ~/.cache/synapse-workers-tools: cold, about 18 minutes on two cores; warm, seconds.
engine:
	bash scripts/engine/build-engine.sh

cluster-tools:
	bash scripts/cluster/build-cluster.sh

cluster: cluster-tools
	bash scripts/cluster/cluster-up.sh

cluster-down:
	bash scripts/cluster/cluster-down.sh

# A real single-node cluster (kubelet, containerd, CoreDNS, PostgreSQL, Redis) beside the kwok one, running
# images built here: see README, "A real node". Root only (elsewhere, outside CI, it says so and builds
# nothing; the node tier then skips). Cold tools and images about 11 minutes; warm, seconds.
node-tools: cluster-tools
	bash scripts/node/node-tools.sh

node: node-tools
	bash scripts/node/node-up.sh

node-down:
	bash scripts/node/node-down.sh

# The unit and mock tests (CPU only, no shared service) on every core with pytest-xdist, then the tiers
# (e2e, engine, node) one after the other in one process: side by side they compete for two cores and a
# load-measuring test fails (README, "Tests"). Both parts always run; either failing fails the target.
TIERS := tests/e2e tests/engine tests/node
test: lint engine cluster-tools node-tools
	bash scripts/system-deps.sh
	status=0; \
	$(VENV)/bin/pytest --numprocesses=auto --maxprocesses=4 --durations=15 $(TIERS:%=--ignore=%) || status=$$?; \
	$(VENV)/bin/pytest --durations=15 $(TIERS) || status=$$?; \
	exit $$status
