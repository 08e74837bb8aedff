# Entry points. `make test` and `make demo` install what they need themselves.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)

.PHONY: setup lock deps-upgrade test-lowest test test-unit test-integration test-e2e lint demo bench chaos cluster-up cluster-down clean

setup:
	@hack/setup.sh

# The lock (requirements/*.txt): `make lock` resolves only what pyproject.toml changed;
# `make deps-upgrade` moves every package to its newest release within pyproject's
# ranges, reinstalls, and runs lint and the unit tests on the result. Commit the diff.
lock:
	@hack/lock.sh

deps-upgrade:
	@hack/lock.sh --upgrade
	@$(MAKE) --no-print-directory lint test-unit

# The unit tests on the lowest releases pyproject.toml's ranges allow (.venv-lowest).
test-lowest: setup
	@hack/lowest.sh

# Test processes in parallel (pytest-xdist): each owns its Redis servers and worker
# processes, all share one control plane (a namespace per test). A test file stays on
# one process, so its module fixtures are made once. The 20 slowest are printed at the end.
TEST_PROCESSES ?= 4
PYTEST_PARALLEL := -n $(TEST_PROCESSES) --dist loadfile --durations=20

test: setup lint
	@hack/debian.sh all
	$(PY) -m pytest tests/unit tests/integration tests/e2e -p no:cacheprovider $(PYTEST_PARALLEL)

test-unit: setup
	$(PY) -m pytest tests/unit

test-integration: setup
	$(PY) -m pytest tests/integration $(PYTEST_PARALLEL)

test-e2e: setup
	$(PY) -m pytest tests/e2e $(PYTEST_PARALLEL)

lint: setup
	$(VENV)/bin/ruff check taskfleet operator testenv tests bench examples
	$(VENV)/bin/mypy

demo: setup
	$(PY) examples/video-site/demo.py

# Every bench/results/*.json the README and docs/ quote but chaos.json (`make chaos`); then
# what there no longer matches them (`python -m bench.report --write` updates the tables).
bench: setup
	$(PY) bench/throughput.py --json bench/results/throughput.json
	$(PY) bench/autoscale.py --json bench/results/autoscale.json
	$(PY) bench/pools.py --json bench/results/pools.json
	$(PY) bench/failover.py --json bench/results/failover.json
	$(PY) bench/cluster.py --json bench/results/cluster.json
	-@$(PY) -m bench.report --check

# Faults with figures: worker pods killed and scaled down, Redis crashed, paused and
# cut off (a network namespace: root and iproute2), the control plane restarted.
chaos: setup
	@hack/debian.sh iproute2
	$(PY) bench/chaos.py --json bench/results/chaos.json
	-@$(PY) -m bench.report --check

# The local control plane for trying things by hand: context kwok-taskfleet, and on its
# real node the project's images (built here, as `make images`).
cluster-up:
	@hack/testenv/cluster.sh up taskfleet --images

cluster-down:
	@hack/testenv/cluster.sh down taskfleet

.PHONY: example-up example-down example-web
# The video site on that cluster, by hand: the chart and examples/video-site/ with the
# local-only values (the real node, its host network, a redis-server on 127.0.0.1).
example-up: setup
	@$(PY) examples/video-site/local.py up

example-down:
	@$(PY) examples/video-site/local.py down

# The web tier's address (127.0.0.1:PORT), for curl.
example-web:
	@$(PY) examples/video-site/local.py web

clean:
	rm -rf $(VENV) .venv-lowest .mypy_cache .ruff_cache .hypothesis

# The worker, operator and video-site images from their Dockerfiles, without a
# Docker engine (podman's storage); SAVE=1 also writes OCI archives for containerd.
.PHONY: images
images:
	@hack/images.sh $(if $(SAVE),--save)
