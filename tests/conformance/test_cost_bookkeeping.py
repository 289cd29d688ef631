"""The cost bookkeeping on every adapter: measured compute time is appended to ``compute_log``
and summed per (job, table) from a time on; ``table_storage`` counts a table's rows (and on
DuckDB its blocks); cost report rows are appended and read back in order."""

from __future__ import annotations

import datetime as dt

import pytest
from sample_data import ITEMS, batch, ev

from cdc.model import Op
from warehouse.base import ComputeRow, CostReportRow, TableStorage, TableTarget, Warehouse
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.snowflake.adapter import SnowflakeWarehouse

pytestmark = pytest.mark.conformance

T0 = dt.datetime(2026, 12, 2, 6, 0, 0, 123456, tzinfo=dt.UTC)


def test_compute_time_is_summed_per_job_and_table_from_a_time_on(wh: Warehouse) -> None:
    assert wh.compute_totals(None) == {}
    wh.record_compute([
        ComputeRow("apply", "items", 1.25, 3, T0),
        ComputeRow("apply", "orders", 0.5, 1, T0),
        ComputeRow("snapshot", "items", 2.0, 4, T0 + dt.timedelta(minutes=1)),
    ])  # fmt: skip
    wh.record_compute([ComputeRow("apply", "items", 0.75, 2, T0 + dt.timedelta(hours=1))])
    wh.record_compute([])
    assert wh.compute_totals(None) == pytest.approx(
        {("apply", "items"): 2.0, ("apply", "orders"): 0.5, ("snapshot", "items"): 2.0}
    )
    assert wh.compute_totals(T0 + dt.timedelta(minutes=1)) == pytest.approx(
        {("apply", "items"): 0.75, ("snapshot", "items"): 2.0}
    )
    assert wh.compute_totals(T0 + dt.timedelta(days=1)) == {}


def test_table_storage_counts_every_stored_row(wh: Warehouse) -> None:
    assert wh.table_storage(TableTarget("never_created")) == TableStorage(0, 0)
    wh.apply([batch(*(ev(Op.CREATE, k, 10 + k, name=f"n{k}") for k in range(1, 6)))], [])
    storage = wh.table_storage(ITEMS)
    assert storage.rows == 5
    if isinstance(wh, DuckDBWarehouse):
        # one 256 KiB block at least: the table's checkpointed column segments
        assert storage.bytes >= 262144 and storage.bytes % 262144 == 0
    elif isinstance(wh, SnowflakeWarehouse) and wh.settings.host is not None:
        assert storage.bytes == 0  # fakesnow: INFORMATION_SCHEMA.TABLES.BYTES is always 0
    else:
        assert storage.bytes > 0  # a real account


def test_cost_reports_are_appended_and_read_back_oldest_first(wh: Warehouse) -> None:
    assert wh.cost_history() == []
    later = T0 + dt.timedelta(days=7)
    first = [
        CostReportRow("r1", T0, "items", "hot", 10, 262144, 0.006, 0.25),
        CostReportRow("r1", T0, "items", "warm", 4, 1200, 0.000015, 0.0),
    ]
    second = [CostReportRow("r2", later, "items", "hot", 12, 524288, 0.012, 0.5)]
    wh.record_cost_report(second)
    wh.record_cost_report(first)
    got = wh.cost_history()
    assert [(r.report_id, r.tier) for r in got] == [("r1", "hot"), ("r1", "warm"), ("r2", "hot")]
    for want, have in zip([*first, *second], got, strict=True):
        assert have.at == want.at
        assert (have.table, have.rows, have.bytes) == (want.table, want.rows, want.bytes)
        assert have.storage_cost == pytest.approx(want.storage_cost)
        assert have.compute_cost == pytest.approx(want.compute_cost)
