# Two commands on a fresh machine (Python 3.11+ and make): `make demo` and `make test`.
# Both create .venv from the hashed lock file on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements/dev.lock
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit integration faults soak bench lock clean help prefect-demo browser docs

help:
	@echo "make demo   - run the demo on the embedded stack (DuckDB)"
	@echo "make test   - lint, type-check and run every test (real stack included)"
	@echo "make unit   - the unit tests alone (tests/unit: no server, no stack; under two minutes)"
	@echo "make faults - the fault suite alone (tests/faults: kills, outages, poison, schema drift...)"
	@echo "make soak   - the 10-minute soak alone (CDC_SOAK_SECONDS to change its length)"
	@echo "make bench  - benchmarks: consume/decode ceiling vs apply, end-to-end latency, bulk snapshot, tiering, DuckDB apply"
	@echo "make lock   - regenerate requirements/*.lock from pyproject.toml"
	@echo "make docs   - build the manual (docs/, mkdocs.yml) strict into site/: a broken link or a page missing from nav fails"
	@echo "make prefect-demo - the demo run by a local Prefect server and worker; open the printed UI URL (Ctrl-C stops it)"
	@echo "make browser - install Debian's chromium (apt-get) for the Prefect UI test, if missing"

$(STAMP): $(LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cdc demo $(ARGS)

# The demo's shop run by Prefect: a local server (SQLite in .cdc/demo/prefect), the cdc-process
# pool, the blocks, every deployment of prefect.yaml and a worker; runs snapshot, replicate,
# reconcile (with a repair), tier and cost-report, prints the UI's URL, runs until Ctrl-C.
prefect-demo: $(STAMP)
	$(BIN)/cdc demo --prefect $(ARGS)

# Debian's chromium for tests/integration/test_prefect_ui.py (the Prefect UI in a real browser),
# installed with apt-get when missing and apt-get exists; under CI=true a browser still missing
# fails the run here, elsewhere the test fails and says how to install it.
browser:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "installing Debian's chromium (apt-get) for the Prefect UI test"; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y chromium \
	  || { DEBIAN_FRONTEND=noninteractive $$sudo apt-get update \
	       && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y chromium; } || true; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium is missing: install Debian's chromium (apt-get install chromium) for tests/integration/test_prefect_ui.py" >&2; \
	  [ "$$CI" != true ]; }

# The manual: MkDocs (Material) in strict mode, offline, into site/ (git-ignored). A broken link
# or anchor, or a page of docs/ missing from mkdocs.yml's nav, fails it; `make test` runs it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The fault suite (tests/faults, marker `faults`, the ~10-min soak included) runs in its own
# pytest process, with its own stack, beside the rest of the suite (the two mostly wait on the
# stack, so on 2 cores they overlap well); its log is shown at the end and both must pass.
# SPLIT=0 runs everything in one process.
SPLIT ?= 1
FAULTS_LOG := $(VENV)/faults.log
SOAK_REPORT := $(CURDIR)/$(VENV)/soak-report.txt

test: lint docs browser
	@rm -f $(SOAK_REPORT); export CDC_SOAK_REPORT=$(SOAK_REPORT); \
	if [ "$(SPLIT)" = "1" ]; then \
	  $(BIN)/pytest -m faults -p no:cacheprovider --durations=20 $(FAULTS_ARGS) > $(FAULTS_LOG) 2>&1 & faults=$$!; \
	  trap 'kill $$faults 2>/dev/null' INT TERM; \
	  echo "the fault suite runs beside the rest (pid $$faults, log $(FAULTS_LOG))"; \
	  $(BIN)/pytest -m "not faults" --durations=20 $(PYTEST_ARGS); main=$$?; \
	  echo "--- waiting for the fault suite (pid $$faults) ---"; \
	  wait $$faults; faults_rc=$$?; \
	  grep -v '^%[0-9]|' $(FAULTS_LOG) | tail -n 150; \
	  echo "fault suite exit code: $$faults_rc"; \
	else \
	  $(BIN)/pytest --durations=20 $(PYTEST_ARGS); main=$$?; faults_rc=0; \
	fi; \
	cat $(SOAK_REPORT) 2>/dev/null || true; \
	test $$main -eq 0 && test $$faults_rc -eq 0

soak: $(STAMP)
	$(BIN)/pytest -m soak $(SOAK_ARGS)

faults: $(STAMP)
	$(BIN)/pytest -m faults $(PYTEST_ARGS)

# tests/unit starts no server (tests/unit/conftest.py refuses one): fakesnow's server is
# tests/conformance's, Prefect's harness and the local stack tests/integration's.
unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python tests/bench/run.py $(ARGS)
	$(BIN)/python tests/bench/snapshot.py $(SNAPSHOT_ARGS)
	$(BIN)/python tests/bench/tier_bench.py $(TIER_ARGS)
	$(BIN)/python tests/bench/apply_bench.py $(APPLY_ARGS)

lock:
	$(BIN)/uv pip compile pyproject.toml --extra local --extra dev --generate-hashes --universal --python-version 3.11 --no-header -o requirements/dev.lock
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 --no-header -o requirements/prod.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
