"""`cdc demo`, the README's first command, end to end in its own process: on DuckDB (the
default) and on Snowflake's SQL via fakesnow's server with the real connector
(``--warehouse snowflake-local``). Each starts and stops its own local stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("warehouse", ["duckdb", "snowflake-local"])
def test_the_demo_ends_equal_to_the_source(tmp_path: Path, warehouse: str) -> None:
    target = str(tmp_path / "demo.duckdb") if warehouse == "duckdb" else warehouse
    proc = subprocess.run(
        [sys.executable, "-m", "cdc", "demo", "--seconds", "6", "--rate", "100", "--json",
         "--state-dir", str(tmp_path / "state"), "--warehouse", target],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] is True
    assert result["events"] > 500
    tables = {t["name"]: t for t in result["tables"]}
    assert set(tables) == {"customers", "products", "orders", "order_items"}
    assert all(t["diffs"] == 0 and t["source_rows"] > 0 for t in tables.values()), tables
    assert all(tables[n]["history_ok"] for n in ("customers", "products"))
    assert result["contracts"]["still_quarantined"] == 0
    if warehouse == "snowflake-local":
        assert result["warehouse"].startswith("Snowflake (fakesnow's server 127.0.0.1:")
    else:
        assert result["warehouse"] == target and Path(target).exists()
    # everything the demo started is stopped again: nothing left to stop
    down = subprocess.run(
        [sys.executable, "-m", "cdc", "local", "down", "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "nothing was running" in down.stdout, down.stdout
