"""The pure parts of the keyless re-load (:mod:`cdc.reconcile.quiet`): Debezium's 32-bit
``txId`` widened to PostgreSQL's 64-bit ``xid8`` against a snapshot's ``xmax``, and source
floats kept as they are for the apply (NaN too)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cdc.model import Column, ColumnType, Kind, TableId, TableSchema
from cdc.reconcile import quiet
from cdc.reconcile.quiet import full_xid
from cdc.reconcile.repair import model_value
from warehouse.base import TableBatch, TableTarget, TransientWarehouseError, WatermarkMovedError
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.keyless import Watermark

EPOCH = 1 << 32


@pytest.mark.parametrize(
    ("txid", "xmax", "full"),
    [
        (700, 800, 700),  # before xmax, same epoch
        (800, 800, 800),
        (900, 800, 900),  # after xmax: not visible
        (EPOCH - 10, EPOCH + 5, EPOCH - 10),  # from the epoch before xmax's
        (3, EPOCH - 2, EPOCH + 3),  # from the epoch after xmax's
        (5, 3 * EPOCH + 10, 3 * EPOCH + 5),
        (EPOCH - 1, 3 * EPOCH + 10, 3 * EPOCH - 1),
        (3 * EPOCH + 7, 3 * EPOCH + 10, 3 * EPOCH + 7),  # a 64-bit id as it is
    ],
)
def test_a_32_bit_txid_is_widened_to_the_id_nearest_xmax(txid: int, xmax: int, full: int) -> None:
    assert full_xid(txid, xmax) == full
    assert full_xid(txid, xmax) % EPOCH == txid % EPOCH


def test_floats_reach_the_apply_as_they_are() -> None:
    f64 = ColumnType(Kind.FLOAT64)
    assert math.isnan(model_value(f64, float("nan")))
    assert math.copysign(1.0, model_value(f64, -0.0)) == -1.0
    array = model_value(ColumnType(Kind.ARRAY, element=f64), [float("nan"), 1.5])
    assert math.isnan(array[0]) and array[1] == 1.5


class _Warehouse:
    """The warehouse side of a re-load: a watermark, and a replace that may find it moved."""

    def __init__(self, moved: bool) -> None:
        self.moved, self.replaced, self.conflicts = moved, 0, 0
        self.capabilities = DuckDBWarehouse.capabilities

    def keyless_watermark(self, target: TableTarget) -> Watermark:
        return Watermark(commit_lsn=5, lsn=9, txid=700)

    def replace_keyless(self, batch: TableBatch, expected: Watermark) -> int:
        if self.conflicts:
            self.conflicts -= 1
            raise TransientWarehouseError("transaction conflict")
        if self.moved:
            raise WatermarkMovedError("moved", table=batch.target.name)
        self.replaced += 1
        return len(batch.events)


class _Source:
    schema = TableSchema(TableId("public", "logs"), (Column("msg", ColumnType(Kind.TEXT)),), ())


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The source reads made (each: the rows 'a', 'a' as of LSN 10), visibility from
    ``seen``."""
    made: list[int] = []

    def read(conn: Any, src: Any) -> quiet.SourceRead:
        made.append(1)
        return quiet.SourceRead([{"msg": "a"}, {"msg": "a"}], "700:800:", 10)

    monkeypatch.setattr(quiet, "read_source", read)
    return made


def _replace(wh: _Warehouse, *, caught_up: bool = True) -> int:
    src: Any = _Source()
    warehouse: Any = wh
    return quiet.quiet_replace(None, src, warehouse, TableTarget("logs"), lambda _: caught_up,  # type: ignore[arg-type]
                               attempts=3)  # fmt: skip


def test_a_reload_replaces_when_the_last_applied_change_was_seen(
    reads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quiet, "visible", lambda conn, txid, snapshot: True)
    wh = _Warehouse(moved=False)
    assert _replace(wh) == 2
    assert (len(reads), wh.replaced) == (1, 1)


@pytest.mark.parametrize(("seen", "moved"), [(False, False), (True, True)])
def test_a_table_that_keeps_changing_is_given_up_with_the_message(
    reads: list[int], monkeypatch: pytest.MonkeyPatch, seen: bool, moved: bool
) -> None:
    monkeypatch.setattr(quiet, "visible", lambda conn, txid, snapshot: seen)
    wh = _Warehouse(moved=moved)
    with pytest.raises(quiet.QuietReplaceError, match=r"kept changing.*quieter moment"):
        _replace(wh)
    assert (len(reads), wh.replaced) == (3, 0)


def test_a_consumer_that_does_not_catch_up_stops_the_reload(reads: list[int]) -> None:
    wh = _Warehouse(moved=False)
    with pytest.raises(quiet.QuietReplaceError, match="is `cdc run` running"):
        _replace(wh, caught_up=False)
    assert (len(reads), wh.replaced) == (1, 0)


def test_a_write_conflict_with_the_consumer_is_retried(
    reads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quiet, "visible", lambda conn, txid, snapshot: True)
    wh = _Warehouse(moved=False)
    wh.conflicts = 1
    assert _replace(wh) == 2
    assert (len(reads), wh.replaced) == (2, 1)
