# Two entry points: `make demo` (an example DAG that generates images) and `make test` (the whole suite).
# Both build .venv first with uv, which is installed into the venv itself: only Python 3.11+ and make are needed.
# `make docs` builds the documentation site; `make bench` runs the polling-at-scale benchmark (about 14 minutes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Airflow CLI start-up is dominated by imports: ship compiled bytecode.
export UV_COMPILE_BYTECODE := 1

# Debian packages that some tests start (a real redis-server, headless chromium, a PostgreSQL cluster),
# each as PACKAGE:PROGRAM it provides: installed when run as root, else those tests skip and say why.
SYSTEM_PACKAGES := redis-server:redis-server chromium:chromium postgresql:pg_ctlcluster

# The older Airflow 3 minors users run, each the latest patch, with its dependencies as of a date
# after its release (Airflow's constraints files are out of reach here): VERSION@DATE.
OLDER_AIRFLOWS := 3.2.2@2026-07-01 3.1.8@2026-05-15 3.0.6@2025-10-01
# The newest, pinned too: left free, the resolver may trade it for a provider's newest release (the
# Google provider's pulled it back to 3.2.2 with a FastAPI that 3.2.2's task runner cannot load).
NEWEST_AIRFLOW := 3.3.2
OLDER_VERSIONS := $(foreach pinned,$(OLDER_AIRFLOWS),$(firstword $(subst @, ,$(pinned))))
OLDEST_AIRFLOW := 3.0.6
# What Airflow 3.0.6's constraints file pins and its requirements allow wider: universal-pathlib 0.3
# recurses forever in its ObjectStoragePath as soon as a URI names a connection (s3://conn_id@bucket).
OLDEST_AIRFLOW_PINS := universal-pathlib<0.3
HOOK_FORM_AIRFLOW := 3.1.8
# Tests that reach no Airflow API (the emulator, the pacer, reading APIXO's answers, retries and
# resends over plain HTTP) run once, on the newest Airflow; the older ones run everything else.
AIRFLOW_FREE_TESTS := tests/emulator tests/test_pacing.py tests/hooks/test_responses.py \
	tests/hooks/test_retries.py tests/hooks/test_submission_safety.py tests/test_shared_rate.py
OLDER_AIRFLOW_SUITE := -m "not e2e and not topology" --deselect tests/test_first_run.py \
	$(addprefix --ignore=,$(AIRFLOW_FREE_TESTS))

.PHONY: install system-deps demo test older-airflows release-check docs bench lint clean

install: $(STAMP)

# The extras the tests use, and pyproject's dependency groups for what only this repository uses (tests,
# the Celery topology, the docs). The newest Airflow's venv also gets the Google provider (about 120
# packages) for the gs:// signing test; the older ones skip that test.
TEST_EXTRAS := redis,emulator,openlineage,amazon

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/python -m uv pip install --quiet --python $(BIN)/python "apache-airflow==$(NEWEST_AIRFLOW)" \
		-e '.[$(TEST_EXTRAS),google]' --group test --group topology --group docs
	touch $@

system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		command -v $${pair#*:} >/dev/null || missing="$$missing $${pair%%:*}"; done; \
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

# The whole suite, arranged for a 2-core machine. The unit and DAG tests mostly wait on loopback
# HTTP, so each Airflow's run at once, each logging to its venv's pytest.log (printed when all end).
# Then the tests that start Airflow's services (airflow standalone, the Celery topology) run on the
# newest Airflow with the machine to themselves, and the older Airflows' checks under standalone: the
# fault drills on the oldest (a worker SIGKILLed after submitting is paid for once), the connection
# form in headless Chromium on the newest version that builds it from the hook's form methods (3.0's
# UI lays the form out differently; the form's fields are checked there without a browser).
test: lint system-deps older-airflows
	@echo "== At once: the unit and DAG tests on the newest Airflow and on $(OLDER_VERSIONS)"
	@$(BIN)/pytest -m "unit or dag" >$(VENV)/pytest.log 2>&1 & pids="$$!:$(VENV)"; \
	for version in $(OLDER_VERSIONS); do venv=.venv-airflow-$$version; \
		$$venv/bin/pytest $(OLDER_AIRFLOW_SUITE) >$$venv/pytest.log 2>&1 & pids="$$pids $$!:$$venv"; done; \
	failed=""; for job in $$pids; do wait $${job%%:*} || failed="$$failed $${job#*:}"; done; \
	for job in $$pids; do echo "== $${job#*:}/pytest.log"; cat $${job#*:}/pytest.log; done; \
	if [ -n "$$failed" ]; then echo "== failed in$$failed"; exit 1; fi
	@echo "== The newest Airflow: the standalone and topology tests"
	$(BIN)/pytest -m "e2e or topology"
	@echo "== Airflow $(OLDEST_AIRFLOW): the fault drills under airflow standalone"
	.venv-airflow-$(OLDEST_AIRFLOW)/bin/pytest tests/e2e/test_fault_drills.py
	@echo "== Airflow $(HOOK_FORM_AIRFLOW): the connection form from the hook's methods in Chromium"
	.venv-airflow-$(HOOK_FORM_AIRFLOW)/bin/pytest tests/e2e/test_connection_form.py
	@$(MAKE) --no-print-directory release-check

# What users download, checked as they use it: the sdist and wheel built and their metadata checked,
# the wheel installed into a fresh venv, listed by Airflow, its examples imported and one run against
# the emulator (scripts/release_check.py). The docs site is built by the unit tests (tests/test_docs.py).
release-check: install
	$(BIN)/python scripts/release_check.py

# The documentation site, warnings as errors: docs/_build/html/index.html.
docs: install
	AIRFLOW_HOME=$(CURDIR)/docs/_build/airflow-home $(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "The site: docs/_build/html/index.html"

# Each older Airflow in a venv of its own (.venv-airflow-VERSION), built once (all at once); installing
# the provider into it leaves its Airflow alone.
older-airflows: install
	@pids=""; for pinned in $(OLDER_AIRFLOWS); do \
		version=$${pinned%@*}; venv=.venv-airflow-$$version; \
		[ $$venv/.installed -nt pyproject.toml ] && [ $$venv/.installed -nt Makefile ] || { \
			$(BIN)/uv venv --clear --quiet --python $(BIN)/python $$venv && \
			$(BIN)/uv pip install --quiet --python $$venv/bin/python --exclude-newer $${pinned#*@} \
				"apache-airflow==$$version" $$([ $$version = $(OLDEST_AIRFLOW) ] && echo '$(OLDEST_AIRFLOW_PINS)') \
				-e '.[$(TEST_EXTRAS)]' --group test && \
			touch $$venv/.installed; } & pids="$$pids $$!"; done; \
	for pid in $$pids; do wait $$pid || exit 1; done
	set -e; for version in $(OLDER_VERSIONS); do venv=.venv-airflow-$$version; \
		echo "== Airflow $$version: installing the provider into it leaves its Airflow alone"; \
		if $(BIN)/uv pip install --dry-run --python $$venv/bin/python . 2>&1 \
			| grep -E '^ [-+] apache-airflow(-core|-task-sdk)?=='; then exit 1; fi; \
	done

bench: install system-deps
	$(BIN)/python benchmarks/polling_at_scale.py

clean:
	rm -rf $(VENV) .venv-airflow-* output .airflow-demo .pytest_cache .mypy_cache .ruff_cache docs/_build dist
