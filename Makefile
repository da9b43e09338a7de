# Two entry points: `make demo` (an example DAG that generates images) and `make test` (the whole suite).
# Both build .venv first with uv, which is installed into the venv itself: only Python 3.11+ and make are needed.
# `make bench` runs the polling-at-scale benchmark (about 9 minutes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Airflow CLI start-up is dominated by imports: ship compiled bytecode.
export UV_COMPILE_BYTECODE := 1

# Debian packages that some tests start (a real redis-server, headless chromium): installed when run
# as root, else those tests skip and say why.
SYSTEM_PACKAGES := redis-server chromium

.PHONY: install system-deps demo test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python -e '.[test]'
	touch $@

system-deps:
	@missing=""; for package in $(SYSTEM_PACKAGES); do \
		command -v $$package >/dev/null || missing="$$missing $$package"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "not root:$$missing missing, the tests that need it will be skipped"; fi

demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint system-deps
	$(BIN)/pytest

bench: install system-deps
	$(BIN)/python benchmarks/polling_at_scale.py

clean:
	rm -rf $(VENV) output .airflow-demo .pytest_cache .mypy_cache .ruff_cache
