# The two commands: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
UV := python3 -m uv
VENV := .venv
PY := $(VENV)/bin/python
RENTAL := $(VENV)/bin/rental
PYTEST_ARGS ?=

.PHONY: help install python-deps system-deps services-up services-down services-status \
        demo test test-unit test-integration lint format bench-kafka bench-stream train bench-train bench-reproduce bench-loop bench-dask-fit \
        serve bench-serve proto bento bento-requirements clean \
        docker-deps docker-base container k8s-deps k8s-validate compose-deps compose-images compose-smoke

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: python-deps system-deps k8s-deps ## locked Python environment, Redis, the pinned Kafka jars and kustomize

python-deps: $(VENV)/.installed
$(VENV)/.installed: uv.lock pyproject.toml
	@$(UV) --version 2>/dev/null | grep -q "$(UV_VERSION)" || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --compile-bytecode  # compiled once here, not by every process's first import
	@touch $@

system-deps: python-deps
	$(RENTAL) services install
	@command -v kcat >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kcat; }  # a non-Python producer (tests)

services-up: install ## start Kafka (KRaft) and Redis unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL name others
	$(RENTAL) services up

services-down: python-deps ## stop the services this project started
	$(RENTAL) services down

services-status: python-deps ## what runs where
	$(RENTAL) services status

demo: services-up ## the whole system end to end on its defaults
	$(RENTAL) simulate history
	$(RENTAL) history summary
	$(RENTAL) catalogue publish
	$(RENTAL) features backfill
	$(RENTAL) features apply
	$(RENTAL) features materialize --full
	$(RENTAL) features show
	RENTAL_XGB_NUM_BOOST_ROUND=20 $(RENTAL) train  # a quick first champion: the loop's retrain, on the full budget, replaces it
	$(RENTAL) demo live --seconds 15 --rate 100
	$(RENTAL) demo quotes --seconds 20 --rate 50
	$(RENTAL) demo drift
	$(RENTAL) services status

test: install ## every test: unit, then integration against the real broker and Redis
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: python-deps ## fast tests of pure logic, no services
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install ## tests against the real Kafka broker and Redis
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

lint: python-deps ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: python-deps ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-kafka: services-up ## producer and consumer throughput against the local broker (one JSON line)
	$(PY) -m tests.benchmarks.kafka_bench

bench-stream: services-up ## feature consumer throughput, freshness and memory with 100,000 items (one JSON line)
	$(PY) -m tests.benchmarks.stream_bench

train: python-deps ## train a candidate on the history, log it to MLflow, promote it only through the gate
	$(RENTAL) train

bench-train: services-up ## training set + XGBoost on 1,000,000 skewed bookings: times, memory, MAE (one JSON line)
	$(PY) -m tests.benchmarks.train_bench

bench-monitor: services-up ## monitoring checks: a 10,000-quote window's time and memory, windows to catch each shift, false alarms (one JSON line)
	$(PY) -m tests.benchmarks.monitor_bench

serve: services-up ## the pricing service: HTTP on :3000 (OpenAPI at /docs), gRPC on :50051, the champion model
	$(RENTAL) serve

bench-serve: services-up ## quote latency over HTTP and gRPC vs feast serve, throughput, batch, memory (one JSON line)
	$(PY) -m tests.benchmarks.serve_bench

proto: python-deps ## regenerate the gRPC modules from bento_service/protos/pricing.proto (committed)
	$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. bento_service/protos/pricing.proto

bento-requirements: ## the Bento's pinned requirements, exported from uv.lock
	$(UV) export --frozen --no-dev --no-hashes --no-emit-project --no-header --no-annotate \
		--format requirements.txt -o bento_service/requirements.txt

bento: python-deps bento-requirements ## `bentoml build`; then `bentoml containerize rental_pricing:latest` with Docker
	$(VENV)/bin/bentoml build

clean: services-down ## stop services and remove generated data (fetched jars stay cached)
	rm -rf data .pytest_cache .ruff_cache

docker-deps: ## Debian's Docker Engine (docker.io) and debootstrap, when missing
	@{ docker info >/dev/null 2>&1 || command -v dockerd >/dev/null; } && command -v debootstrap >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io debootstrap; }

docker-base: docker-deps ## start a Docker Engine unless one answers; pull or build rental/debian:bookworm and python:3.11-slim
	deploy/docker/base_images.sh

container: python-deps bento-requirements docker-base ## images rental-pricing:latest (bentoml containerize) and rental-app:latest, rebuilt only when their inputs changed
	$(PY) deploy/docker/build_images.py

# kustomize renders deploy/k8s for its tests: built once from its Go module (Go 1.22 or newer),
# kept in the cache dir beside the Kafka jars.
KUSTOMIZE_VERSION := $(shell cat deploy/k8s/kustomize-version)
KUSTOMIZE := $(or $(RENTAL_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/rental-pricing)/kustomize-$(KUSTOMIZE_VERSION)/kustomize

k8s-deps: $(KUSTOMIZE) ## kustomize, built once with Go (renders deploy/k8s for the manifest tests)
$(KUSTOMIZE):
	@command -v go >/dev/null || { echo "Go 1.22 or newer is needed once to build kustomize $(KUSTOMIZE_VERSION)" >&2; exit 1; }
	GOBIN=$(@D) GOTOOLCHAIN=local go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

k8s-validate: python-deps k8s-deps ## render deploy/k8s's overlays, validate them offline against the Kubernetes and Strimzi schemas and the code
	$(PY) -m pytest tests/deploy/test_manifests.py $(PYTEST_ARGS)

compose-deps: docker-deps ## Debian's docker-compose (1.29, the v1 command) and prometheus (promtool), when missing
	@command -v docker-compose >/dev/null && command -v promtool >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose prometheus; }

compose-images: system-deps compose-deps container ## every image docker-compose.yml names: kept, pulled, or a local stand-in built (deploy/compose/images)
	$(PY) deploy/compose/build_images.py --skip-project

compose-smoke: compose-images ## the compose stack up, one booking followed to Redis, the next quote and the monitor, then down (one JSON line)
	$(PY) deploy/compose/smoke.py

bench-dask-fit: services-up ## the boosting step local and on a 2-worker Dask cluster on one set: times and MAE (one JSON line)
	$(PY) -m tests.benchmarks.dask_fit_bench

bench-loop: services-up ## the loop on the demo's data: shift to retrain request, request to new champion, champion to the service (one JSON line)
	$(PY) -m tests.benchmarks.loop_bench

bench-reproduce: services-up ## XGBoost's prices at 1, 2 and 4 threads, and a run rebuilt by rental train --reproduce (one JSON line)
	$(PY) -m tests.benchmarks.reproduce_bench

.PHONY: orchestrate
orchestrate: services-up ## the Prefect server (UI on 127.0.0.1:4200, offline) and the flows' schedules with the retrain requests' listener
	$(RENTAL) flows serve --server

.PHONY: bench-archive
bench-archive: services-up ## rental history archive: 300,000 live bookings into a 60,000-booking history, time and peak memory (one JSON line)
	$(PY) -m tests.benchmarks.archive_bench
