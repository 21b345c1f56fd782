# Saga sandbox: `make demo` to see it, `make test` to prove it. `make help` lists the rest.
PYTHON ?= python3
# The MiniStack engine image's base: any Debian bookworm (CI imports one from debootstrap).
BASE_IMAGE ?= debian:bookworm-slim
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo up down test test-example test-unit test-integration test-containers engine-image lint format bench screenshots clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP) ## Create .venv and install the sandbox with its dev tools

demo: install ## Start the engine, deploy, place a happy order and a --fail payment order
	$(BIN)/sandbox up
	$(BIN)/sandbox order
	$(BIN)/sandbox order --fail payment

up: install ## Start the engine and deploy the stack
	$(BIN)/sandbox up

down: install ## Stop the engine
	$(BIN)/sandbox down

# The tests spend much of their time waiting on the engine (a Task's timeout, a Retry's interval),
# so they run on three pytest-xdist workers even on two cores, each with its own engine: a module
# (or the browser or container folder) whole on one worker, the engine's tests first
# (tests/conftest.py). The example project's two long fault tests start at once on its two workers.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 3
EXAMPLE_WORKERS ?= 2
XDIST = $(if $(filter 0,$(1)),,-n $(1) $(2))

EXAMPLE_TESTS = cd examples/trip-booking && $(abspath $(BIN))/pytest $(call XDIST,$(EXAMPLE_WORKERS),--dist load --maxschedchunk 1)

# The example project's suite, which mostly waits on its Tasks' timeouts, runs beside the main
# one (its own engine, its own ports); its output follows the main suite's.
test: install ## Run every test (unit, integration, the example project; container tests run where Docker does)
	@log=$$(mktemp); ($(EXAMPLE_TESTS)) > $$log 2>&1 & example=$$!; \
	$(BIN)/pytest $(call XDIST,$(TEST_WORKERS),--dist loadscope --no-loadscope-reorder); status=$$?; \
	wait $$example || status=1; \
	echo "== the example project's tests (examples/trip-booking, run beside the above)"; \
	cat $$log; rm -f $$log; exit $$status

test-example: install ## The example project's tests only (examples/trip-booking, its own engine)
	$(EXAMPLE_TESTS)

test-unit: install ## Unit tests only (no network)
	$(BIN)/pytest tests/unit

test-integration: install ## Integration tests only (embedded engine)
	$(BIN)/pytest tests/integration

test-containers: install ## Container tests only (needs Docker and `make engine-image`)
	$(BIN)/pytest tests/containers

engine-image: install ## Build the MiniStack engine image (--engine ministack-docker, container tests)
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) --file docker/ministack/Dockerfile \
		--tag "$$($(BIN)/python -m sandbox.images)" .

lint: install ## ruff (lint + format check), mypy, cfn-lint on the template and its packaged form
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sandbox synth --output .sandbox/packaged.json
	$(BIN)/cfn-lint .sandbox/packaged.json

format: install ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install ## Measure up, warm order latency, --fail payment, hot reload, `sandbox bench` under load, make test
	$(BIN)/python -m benchmarks.run

screenshots: install ## The console's order page (happy, failed, flaky) into docs/images, by the browser tests
	SANDBOX_SCREENSHOTS_DIR=docs/images SANDBOX_REQUIRE_BROWSER=1 $(BIN)/pytest tests/browser

clean: ## Stop the engine and remove .venv and .sandbox
	-$(BIN)/sandbox down
	rm -rf $(VENV) .sandbox .pytest_cache .mypy_cache .ruff_cache
