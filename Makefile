# make up | down | logs | test | unit | integration | e2e | bench | lint | image | base
SHELL := /bin/bash
IMAGE ?= mailserver:latest
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
export MAIL_IMAGE := $(IMAGE)

.PHONY: up down logs test unit integration e2e bench lint image base wheels venv

up: image
	$(COMPOSE) up -d
	@echo "waiting for the appliance to be ready (http://127.0.0.1:$${API_PORT:-8080}/readyz)"
	@for i in $$(seq 1 60); do \
	  curl -fsS "http://127.0.0.1:$${API_PORT:-8080}/readyz" >/dev/null 2>&1 && { echo ready; exit 0; }; sleep 1; \
	done; $(COMPOSE) logs --tail=50; exit 1

down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f

# debian:bookworm-slim from a registry, or built with debootstrap when none is reachable.
base:
	@docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
	  || docker pull -q debian:bookworm-slim 2>/dev/null \
	  || bash images/base/build.sh debian:bookworm-slim

# Python wheels for an offline image build (images/wheels/fetch.sh); optional.
wheels: venv
	@ls images/wheels/*.whl >/dev/null 2>&1 || PYTHON=$(PY) bash images/wheels/fetch.sh \
	  || echo "no wheels: the image build will use PyPI itself"

image: base wheels
	docker build -q -t $(IMAGE) . >/dev/null
	@docker image inspect $(IMAGE) --format '{{.RepoTags}} {{.Size}} bytes'

venv: $(VENV)/.done
$(VENV)/.done: controller/pyproject.toml tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e controller -r tests/requirements.txt
	touch $@

unit: venv
	$(PY) -m pytest tests/unit -q

# The controller's apply code against the daemons' tools, inside one container of the image
# (tests/integration/test_in_image.py starts it); MAILTEST_INTEGRATION_ARGS="-k tls -x".
integration: venv image
	MAILTEST_IMAGE=$(IMAGE) $(PY) -m pytest tests/integration -q

e2e: venv image
	MAILTEST_IMAGE=$(IMAGE) $(PY) -m pytest tests/e2e -q

# Everything, the fast tiers first (a failure there stops before the slow ones): unit tests
# and the apply code against the daemons' tools in one container of the image; then every
# other tier (whole appliances) in the built image.
test: venv image
	MAILTEST_IMAGE=$(IMAGE) $(PY) -m pytest -q tests/unit tests/integration
	MAILTEST_IMAGE=$(IMAGE) $(PY) -m pytest -q tests --ignore=tests/unit --ignore=tests/integration

bench: venv image
	MAILTEST_IMAGE=$(IMAGE) $(PY) tests/bench/bench.py

lint: venv
	$(VENV)/bin/ruff check controller tests
	$(VENV)/bin/ruff format --check controller tests
	$(VENV)/bin/mypy controller/mailctl
	MYPYPATH=controller $(VENV)/bin/mypy --config-file controller/pyproject.toml tests
	cd controller && ../$(VENV)/bin/lint-imports
