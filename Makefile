# The three verbs: `make demo`, `make test`, `make lint`. Each sets the project up first.
# `make dev` / `make dev-stop`: this clone's dev database for plain dbt (README, "Change a rule").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SCALE ?= 1

.PHONY: setup demo dev dev-stop test lint bench clean

$(INSTALLED): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

profiles.yml:
	cp profiles.example.yml $@

setup: $(INSTALLED) profiles.yml

demo: setup
	$(BIN)/mips-loader demo --scale $(SCALE)

# Starts this clone's embedded PostgreSQL and leaves it running (data in .mips/), fills the
# source schema when it is empty (SCALE, as for the demo), runs the daily build, prints how
# to connect. Plain `dbt` on the default target then works in any shell here.
dev: setup
	$(BIN)/mips-loader dev start --scale $(SCALE)

# Stops it (only this clone's; the data stays). Nothing to stop without a .venv.
dev-stop:
	@if [ -x $(BIN)/mips-loader ]; then $(BIN)/mips-loader dev stop; fi

test: setup
	$(BIN)/pytest

# dbt Labs' best-practice rules (dbt_project_evaluator) where the shared packages are, as in CI;
# elsewhere README ("Set-up and targets") says how to run them.
EVALUATOR := ../shared/tools/evaluate-dbt-project

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint models macros tests/dbt
	$(BIN)/python scripts/athena_lint.py
	@if [ -x $(EVALUATOR) ]; then echo $(EVALUATOR); $(EVALUATOR); \
	else echo "lint: $(EVALUATOR) not found: dbt_project_evaluator not run (README)"; fi

# Every scale of docs/benchmarks.md, each with its levers (make bench SCALES=10 for one).
SCALES ?= 1 10 30 100
RUNS ?= 3
bench: setup
	for scale in $(SCALES); do \
		$(BIN)/python -m bench --scale $$scale --runs $(RUNS) --levers || exit 1; \
	done

# The dev database first: its server runs from .venv on the data in .mips.
clean: dev-stop
	rm -rf $(VENV) .mips target logs demo-output dbt_packages
