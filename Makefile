# Two commands on a fresh machine (Python 3.11+ and make): `make demo` and `make test`.
# Both create .venv from the hashed lock file on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements/dev.lock
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit integration faults soak bench lock clean help

help:
	@echo "make demo   - run the demo on the embedded stack (DuckDB)"
	@echo "make test   - lint, type-check and run every test (real stack included)"
	@echo "make faults - the fault suite alone (tests/faults: kills, outages, poison, schema drift...)"
	@echo "make soak   - the 10-minute soak alone (CDC_SOAK_SECONDS to change its length)"
	@echo "make bench  - benchmarks: consume/decode ceiling vs apply, end-to-end latency, bulk snapshot, tiering"
	@echo "make lock   - regenerate requirements/*.lock from pyproject.toml"

$(STAMP): $(LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cdc demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The soak (tests/faults/test_soak.py, marker `soak`, ~10 min) runs in its own pytest process,
# with its own stack, beside the rest of the suite; its output is shown at the end and both
# must pass. SOAK=0 leaves it out (e.g. `make test SOAK=0 PYTEST_ARGS=tests/unit`).
SOAK ?= 1
SOAK_LOG := $(VENV)/soak.log
SOAK_REPORT := $(CURDIR)/$(VENV)/soak-report.txt

test: lint
	@if [ "$(SOAK)" = "1" ]; then \
	  rm -f $(SOAK_REPORT); \
	  CDC_SOAK_REPORT=$(SOAK_REPORT) $(BIN)/pytest -m soak -p no:cacheprovider $(SOAK_ARGS) > $(SOAK_LOG) 2>&1 & soak=$$!; \
	  trap 'kill $$soak 2>/dev/null' INT TERM; \
	  echo "the soak runs beside the suite (pid $$soak, log $(SOAK_LOG))"; \
	fi; \
	$(BIN)/pytest -m "not soak" $(PYTEST_ARGS); main=$$?; \
	soak_rc=0; \
	if [ "$(SOAK)" = "1" ]; then \
	  echo "--- waiting for the soak (pid $$soak) ---"; \
	  wait $$soak; soak_rc=$$?; \
	  tail -n 60 $(SOAK_LOG); cat $(SOAK_REPORT) 2>/dev/null || echo "no soak report"; \
	  echo "soak exit code: $$soak_rc"; \
	fi; \
	test $$main -eq 0 && test $$soak_rc -eq 0

soak: $(STAMP)
	$(BIN)/pytest -m soak $(SOAK_ARGS)

faults: $(STAMP)
	$(BIN)/pytest -m faults $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python tests/bench/run.py $(ARGS)
	$(BIN)/python tests/bench/snapshot.py $(SNAPSHOT_ARGS)
	$(BIN)/python tests/bench/tier_bench.py $(TIER_ARGS)

lock:
	$(BIN)/uv pip compile pyproject.toml --extra local --extra dev --generate-hashes --universal --python-version 3.11 --no-header -o requirements/dev.lock
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 --no-header -o requirements/prod.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
