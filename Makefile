# The three verbs: `make demo`, `make test`, `make lint`. Each sets the project up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SCALE ?= 1

.PHONY: setup demo test lint bench clean

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

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint models macros tests/dbt
	$(BIN)/python scripts/athena_lint.py

# Every scale of docs/benchmarks.md, each with its levers (make bench SCALES=10 for one).
SCALES ?= 1 10 30 100
RUNS ?= 3
bench: setup
	for scale in $(SCALES); do \
		$(BIN)/python -m bench --scale $$scale --runs $(RUNS) --levers || exit 1; \
	done

clean:
	rm -rf $(VENV) .mips target logs demo-output
