# pneumo-ops developer commands. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist workers for `make test`, each running one test file at a time (its module
# fixtures then train once); 0 runs everything in one process.
TEST_WORKERS ?= 2

.PHONY: help install demo demo-drift ui docs test test-unit test-integration test-e2e lint format lock clean

help: ## Show this help
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-17s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with pinned versions

demo: $(STAMP) ## Run the pipeline on the bundled real sample (state in PNEUMO_HOME, default .pneumo/)
	$(BIN)/pneumo demo

demo-drift: $(STAMP) ## After `make demo`: no drift, image drift (waits for labels), labels arrive (retrain)
	$(BIN)/pneumo demo-drift

ui: $(STAMP) ## MLflow and Prefect UIs on the local state (Ctrl-C stops both)
	$(BIN)/pneumo ui

docs: $(STAMP) ## Serve the documentation site on http://127.0.0.1:8000/ (rebuilt on every change)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

test: $(STAMP) ## Run every test (unit, integration, end-to-end) on TEST_WORKERS; prints the 40 slowest
	$(BIN)/pytest --durations=40 -n $(TEST_WORKERS) --dist loadfile

test-unit: $(STAMP) ## Run the fast offline unit tests only
	$(BIN)/pytest tests/unit -m "not slow"

test-integration: $(STAMP) ## Run the tests against real local services (S3, MLflow, Prefect, PostgreSQL)
	$(BIN)/pytest tests/integration -n $(TEST_WORKERS) --dist loadfile

test-e2e: $(STAMP) ## Run the end-to-end tests of whole flows on tiny real data
	$(BIN)/pytest tests/e2e -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP) ## Lint, check formatting (ruff), the layering contracts, the docs site and that git keeps every source file
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	@# The documentation site: a broken link, a missing page or a bad reference fails.
	@site=$$(mktemp -d); NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict \
		--site-dir "$$site"; status=$$?; rm -rf "$$site"; exit $$status
	@# A file git ignores is missing from a clean checkout (CI, users) while every local run passes.
	@ignored=$$(git ls-files --others --ignored --exclude-standard pipeline flows infra tests benchmarks docs \
		2>/dev/null | grep -v -e __pycache__ -e '\.pyc$$' || true); \
	if [ -n "$$ignored" ]; then echo "git ignores these project files:"; echo "$$ignored"; exit 1; fi

format: $(STAMP) ## Fix lint and format with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: ## Re-resolve requirements/constraints.txt from the ranges in pyproject.toml
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q -e ".[dev]"
	{ echo "# Exact versions resolved together (Python 3.11, Linux x86-64)."; \
	  echo "# Regenerate: make lock"; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable; } > requirements/constraints.txt
	rm -rf .lock-venv

clean: ## Remove the virtual environment and the local state directory
	rm -rf $(VENV) .pneumo .pytest_cache .ruff_cache
