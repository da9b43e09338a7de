# Two entry points: `make demo` (an example DAG that generates images) and `make test` (the whole suite).
# Both build .venv first with uv, which is installed into the venv itself: only Python 3.11+ and make are needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Airflow CLI start-up is dominated by imports: ship compiled bytecode.
export UV_COMPILE_BYTECODE := 1

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python -e '.[test]'
	touch $@

demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) output .airflow-demo .pytest_cache .mypy_cache .ruff_cache
