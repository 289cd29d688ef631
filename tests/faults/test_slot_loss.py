"""The replication slot dropped while the connector is down (issue 8, scenario 11): the
connector refuses to start with a clear error instead of silently skipping the gap, and the
documented recovery (docs/recovery.md, "Recovering from a dropped replication slot") converges."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

import psycopg
import pytest
from fault_support import Workload, create_load_table, verify

from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults


def _cdc(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "cdc", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"cdc {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done


def _drop_slot(pipeline: Pipeline, slot: str) -> None:
    deadline = time.monotonic() + 30
    with psycopg.connect(pipeline.url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            assert row is not None, f"slot {slot} missing before the drop"
            if not row[0]:  # the killed walsender has let go of it
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            time.sleep(0.2)
    raise TimeoutError(f"slot {slot} stayed active")


def _wait_for_log(pipeline: Pipeline, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = pipeline.stack.debezium_log.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not in the Debezium log:\n{log[-3000:]}")


def test_dropped_slot_is_refused_and_recovered_by_a_resnapshot(pipeline: Pipeline) -> None:
    """Scenario 11: Debezium is killed, its slot dropped, and the workload goes on writing
    (inserts, updates and deletes the dropped slot can no longer deliver). Started again with
    its old offsets, the connector must refuse with an error naming the slot, the LSN and the
    recovery commands (without the check, Debezium creates a new slot at the current LSN and
    the gap is lost silently). The README's recovery, run as commands: reset the offsets,
    start the connector (a new initial snapshot), `cdc run --until-caught-up`,
    `cdc reconcile --repair` (rows deleted during the gap); then verify() proves the warehouse
    equals the source."""
    create_load_table(pipeline, "items")
    config = pipeline.configure(["public.items"], linger_ms=50)
    cdc_yaml = str(pipeline.workdir / "cdc.yaml")
    slot = config.source.slot_name
    pipeline.start_debezium()
    replicator = ReplicatorThread(config).start()
    pipeline.wait_published()
    replicator.wait_caught_up()

    with Workload(pipeline.url, "items", rate=40) as load:
        time.sleep(2)
        pipeline.stack.stop_debezium(kill=True)
        _drop_slot(pipeline, slot)
        gap_start = load.commits
        pipeline.sql("DELETE FROM items WHERE id IN (1, 2, 3)")  # deletes only the gap holds
        pipeline.sql("UPDATE items SET note = 'in the gap' WHERE id BETWEEN 10 AND 20")
        time.sleep(3)
        log_start = pipeline.stack.debezium_log.stat().st_size
        pipeline.start_debezium()
        log = _wait_for_log(pipeline, "no longer exists")[log_start:]
        pipeline.stack.stop_debezium()
        gap_commits = load.commits - gap_start
    stats = replicator.finish()
    assert gap_commits > 0 and stats.dead_letters == 0

    error = next(line for line in log.splitlines() if "no longer exists" in line)
    assert f"replication slot {slot} no longer exists" in error
    assert "changes since LSN " in error and "may be lost" in error
    assert "cdc connector reset-offsets" in error and "cdc reconcile" in error
    rows = pipeline.sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    assert rows == [], "the refused connector must not have created a new slot"
    # the gap is real: the warehouse misses it (the deleted rows are still there)
    warehouse_ids = {
        r[0]
        for r in __import__("duckdb")
        .connect(str(config.warehouse.path), read_only=True)
        .execute("SELECT id FROM items WHERE id IN (1, 2, 3)")
        .fetchall()
    }
    assert warehouse_ids == {1, 2, 3}

    # the recovery, as README documents it
    _cdc(
        "connector",
        "reset-offsets",
        "-c",
        cdc_yaml,
        "--offsets-file",
        str(pipeline.stack.debezium_offsets),
    )
    assert not pipeline.stack.debezium_offsets.exists()
    pipeline.start_debezium()  # `cdc local up -c cdc.yaml` on a local stack
    pipeline.wait_published()
    _cdc("run", "--config", cdc_yaml, "--until-caught-up")
    repaired = _cdc("reconcile", "-c", cdc_yaml, "--repair")
    print(repaired.stdout)
    verify(pipeline)
    pipeline.stack.stop_debezium(kill=True)  # its graceful stop costs ~30 s
