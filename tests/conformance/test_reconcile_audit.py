"""The ``reconcile_runs`` audit table on every adapter: rows are appended, and the newest row
of each table is read back as it was written."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from warehouse.base import ReconcileRun, Warehouse

pytestmark = pytest.mark.conformance

T0 = dt.datetime(2026, 12, 2, 6, 0, 0, 123456, tzinfo=dt.UTC)


def test_runs_are_appended_and_the_newest_per_table_is_read_back(wh: Warehouse) -> None:
    assert wh.last_reconciles() == {}
    first = ReconcileRun(
        run_id="r1", started_at=T0, finished_at=T0 + dt.timedelta(seconds=2), table="a",
        source_rows=10, warehouse_rows=9, missing=1, extra=0, different=2,
        history_problems=0, repaired=0, status="diffs", detail='{"examples": "missing 5"}',
    )  # fmt: skip
    later = dataclasses.replace(
        first, run_id="r2", started_at=T0 + dt.timedelta(hours=1),
        finished_at=T0 + dt.timedelta(hours=1, seconds=1), missing=0, different=0,
        repaired=3, status="repaired", detail="",
    )  # fmt: skip
    other = dataclasses.replace(first, table="b", history_problems=4)
    wh.record_reconcile([first, other])
    wh.record_reconcile([later])
    last = wh.last_reconciles()
    assert set(last) == {"a", "b"}
    assert last["a"] == later
    assert last["b"] == other
