# Two commands on a fresh machine (Python 3.11+ and make): `make demo` and `make test`.
# Both create .venv from the hashed lock file on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements/dev.lock
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit integration bench lock clean help

help:
	@echo "make demo   - run the demo on the embedded stack (DuckDB)"
	@echo "make test   - lint, type-check and run every test (real stack included)"
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

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

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
