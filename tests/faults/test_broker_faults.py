"""Fault scenario 4: the broker paused (SIGSTOP) for 30 s, then resumed (SIGCONT), under a
running workload, Debezium and a consumer; both recover by themselves."""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

import duckdb
import pytest
from fault_support import Workload, create_load_table, verify

from cdc.config import Config
from cdc.local.pipeline import ReplicatorThread
from warehouse.duckdb.settings import DuckDBSettings

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults


def _duckdb_path(config: Config) -> str:
    assert isinstance(config.warehouse, DuckDBSettings)
    return str(config.warehouse.path)


PAUSE_SECONDS = 30


def _slot_confirmed(pipeline: Pipeline) -> int:
    rows = pipeline.sql(
        "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        [pipeline.config_.source.slot_name],
    )
    return int(rows[0][0])


def test_broker_paused_30_s_debezium_and_consumer_recover_by_themselves(
    pipeline: Pipeline,
) -> None:
    """Scenario 4: Tansu is frozen with SIGSTOP for 30 s while the workload writes, Debezium
    publishes and a consumer applies, then thawed with SIGCONT. Nothing is restarted: the same
    Debezium process and the same consumer carry on, and every committed change arrives
    exactly once (verify, no duplicate keys). While the broker is frozen, Debezium can't have
    its records acknowledged, so it must not confirm the slot past them: the slot's confirmed
    LSN stands (nearly) still."""
    create_load_table(pipeline, "items", rows=200)
    config = pipeline.configure(["public.items"], batch_size=200, linger_ms=50)
    pipeline.start_debezium()
    pipeline.wait_published()
    stack = pipeline.stack
    debezium = stack.state.processes["debezium"]
    broker = stack.state.processes["broker"]
    replicator = ReplicatorThread(config).start()
    replicator.wait_caught_up()
    with Workload(pipeline.url, "items", rate=60) as load:
        time.sleep(2)
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            time.sleep(3)  # what was in flight settles
            frozen_at, commits_at = _slot_confirmed(pipeline), load.commits
            time.sleep(PAUSE_SECONDS - 3)
            held_at, commits_held = _slot_confirmed(pipeline), load.commits
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        time.sleep(5)
    # the source kept committing during the pause, the slot did not move past the broker
    assert commits_held - commits_at > 500, (commits_at, commits_held)
    assert held_at == frozen_at, (frozen_at, held_at)
    pipeline.wait_published(timeout=120)
    stats = replicator.finish()
    assert debezium.alive() and broker.alive(), "nothing may die of a paused broker"
    assert stats.dead_letters == 0
    verify(pipeline)
    with duckdb.connect(_duckdb_path(config), read_only=True) as con:
        row = con.execute("SELECT count(*), count(DISTINCT id) FROM items").fetchone()
    assert row is not None and row[0] == row[1], row
    print(f"commits={load.commits} during_pause={commits_held - commits_at} events={stats.events}")
