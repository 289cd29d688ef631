"""`cdc status` on the real chain: pending events and seconds behind per table, the last
applied position, and the slot's lag, while the consumer is stopped and after it caught up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration


def _status(pipeline: Pipeline) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "cdc", "status", "-c", str(pipeline.workdir / "cdc.yaml"), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return doc


def test_status_shows_what_is_pending_and_what_was_applied(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE a (id int PRIMARY KEY, v int)")
    pipeline.sql("CREATE TABLE b (id int PRIMARY KEY, v int)")
    pipeline.sql("INSERT INTO a SELECT g, g FROM generate_series(1, 40) g")
    pipeline.sql("INSERT INTO b SELECT g, g FROM generate_series(1, 25) g")
    config = pipeline.configure(["public.a", {"name": "public.b", "mode": "scd2"}])
    pipeline.start_debezium()
    pipeline.wait_published()

    before = _status(pipeline)
    tables = {t["table"]: t for t in before["tables"]}  # type: ignore[union-attr]
    assert (tables["a"]["pending_events"], tables["b"]["pending_events"]) == (40, 25)
    assert tables["a"]["last_lsn"] is None and tables["a"]["seconds_behind"] is None
    assert tables["b"]["mode"] == "scd2"
    slot = before["slot"]
    assert slot["exists"] and slot["lag_bytes"] is not None  # type: ignore[index]

    ReplicatorThread(config).start().finish()
    pipeline.sql("UPDATE a SET v = -v WHERE id <= 5")
    pipeline.wait_published()
    after = {t["table"]: t for t in _status(pipeline)["tables"]}  # type: ignore[union-attr]
    assert (after["a"]["pending_events"], after["b"]["pending_events"]) == (5, 0)
    assert after["b"]["seconds_behind"] == 0.0
    assert after["a"]["seconds_behind"] is not None and after["a"]["seconds_behind"] >= 0
    assert after["a"]["last_lsn"] is not None and after["a"]["last_loaded"] is not None

    ReplicatorThread(config).start().finish()
    done = {t["table"]: t for t in _status(pipeline)["tables"]}  # type: ignore[union-attr]
    assert done["a"]["pending_events"] == 0 and done["a"]["seconds_behind"] == 0.0
    assert done["a"]["last_lsn"] > after["a"]["last_lsn"]  # type: ignore[operator]
    assert done["a"]["last_reconcile"] == "never"

    # the human table names every column
    out = subprocess.run(
        [sys.executable, "-m", "cdc", "status", "-c", str(pipeline.workdir / "cdc.yaml")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert out.returncode == 0 and "pending events" in out.stdout and "slot" in out.stdout
