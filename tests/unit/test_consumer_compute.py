"""The consumer's measured apply time (cost reports): each batch's seconds are split between
its tables by their share of the batch's events, and stored with one statement at most once
per ``compute_flush_seconds`` and at close, never once per batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.consumer.loop import Replicator, ReplicatorSettings
from warehouse.base import ApplyResult, TableApplyStats
from warehouse.duckdb.adapter import DuckDBWarehouse


def test_apply_time_is_split_by_events_and_flushed_at_most_once_a_minute(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    wh.ensure_bookkeeping()
    settings = ReplicatorSettings(bootstrap_servers="127.0.0.1:1", group_id="g", targets={})
    replicator = Replicator(settings, wh)
    stored: list[int] = []
    record = wh.record_compute
    wh.record_compute = lambda rows: (stored.append(len(rows)), record(rows))[1]  # type: ignore[method-assign]
    try:
        # three events of orders and one of items: 3/4 and 1/4 of the batch's 2 s
        replicator._measure(
            ApplyResult([TableApplyStats("orders", 3), TableApplyStats("items", 1)], 2.0)
        )
        replicator._measure(ApplyResult([TableApplyStats("orders", 5)], 1.0))
        replicator._measure(ApplyResult([], 0.5))  # offsets only: nobody's time
        assert stored == []  # less than a minute since the start: nothing written yet
        replicator._compute_flushed -= Replicator.compute_flush_seconds
        replicator._measure(ApplyResult([TableApplyStats("items", 2)], 0.25))
        assert stored == [2]  # one statement, both tables
        assert wh.compute_totals(None) == pytest.approx(
            {("apply", "orders"): 2.5, ("apply", "items"): 0.75}
        )
        replicator._measure(ApplyResult([TableApplyStats("items", 1)], 0.1))
    finally:
        replicator.close()
    assert stored == [2, 1]  # the rest at close
    assert wh.compute_totals(None) == pytest.approx(
        {("apply", "orders"): 2.5, ("apply", "items"): 0.85}
    )
