"""The tiering contract of the warehouse adapters: the same test bodies on DuckDB (a tmp file)
and on Snowflake (fakesnow's server with the real connector; a real account when
``SNOWFLAKE_*`` is set), driving the warehouse's tier methods and a :class:`TierStore` on a
local tmp folder directly (the protocol of :class:`cdc.tiering.run.Tierer`).

fakesnow has no external stages, so there the ``<table>_history`` view covers the hot table
only (no ``tier_stage``): the tests assert exactly that. The statements of the tier side of
Snowflake's view are checked as text in ``tests/unit/test_snowflake_tiering_sql.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sample_data import ITEMS_SCHEMA, dated

from cdc.model import ChangeEvent, Op
from cdc.tiering.policy import TierFile, file_path, move_id
from cdc.tiering.storage import TierStore, checksum
from warehouse.base import TableBatch, TableTarget, Warehouse
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.tiering import Hold, TierChange, TierConflictError, closing_column

pytestmark = pytest.mark.conformance

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SCD2 = TableTarget("items", mode="scd2")
SOFT = TableTarget("items", soft_delete=True, tiered=True)
KEYS = 6
CUTOFF = NOW - dt.timedelta(days=30)


def _event(op: Op, key: int, at: dt.datetime, name: str | None = None) -> ChangeEvent:
    return dated(op, key, at, name=name, doc=f"doc {key}")


def _load_history(wh: Warehouse) -> None:
    """6 keys, a version every 25 days over the last 200 days (versions spread over months);
    key 3 deleted 100 days ago."""
    events = []
    start = NOW - dt.timedelta(days=200)
    for step in range(8):
        at = start + dt.timedelta(days=25 * step, minutes=step)
        for key in range(1, KEYS + 1):
            if key == 3 and at > NOW - dt.timedelta(days=110):
                continue
            op = Op.CREATE if step == 0 else Op.UPDATE
            events.append(_event(op, key, at + dt.timedelta(seconds=key), f"v{step}"))
    events.append(_event(Op.DELETE, 3, NOW - dt.timedelta(days=100)))
    events.sort(key=lambda e: e.position.lsn)
    wh.apply([TableBatch(SCD2, ITEMS_SCHEMA, tuple(events))], [])


def _sorted(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda r: (r["id"], r["_cdc_lsn"]))


def _history(wh: Any, target: TableTarget = SCD2) -> list[dict[str, Any]]:
    return _sorted(wh.history_rows(target))


def _ids(rows: list[dict[str, Any]]) -> set[tuple[int, int]]:
    return {(r["id"], r["_cdc_lsn"]) for r in rows}


def _reads_tiers(wh: Warehouse) -> bool:
    """DuckDB's view reads the files; Snowflake's only through an external stage."""
    return isinstance(wh, DuckDBWarehouse) or getattr(wh, "tier_stage", None) is not None


def _put(store: TierStore, rows: pa.Table, target: TableTarget, mid: str) -> tuple[TierFile, ...]:
    months = pc.strftime(rows[closing_column(target)], format="%Y-%m")
    out = []
    for month in sorted(set(months.to_pylist())):
        part = rows.filter(pc.equal(months, month))
        path = file_path(store.root, "warm", target.name, month, mid)
        out.append(store.put(part, path, "warm", name=target.name, month=month, move=mid))
    return tuple(out)


def _move(wh: Any, store: TierStore, target: TableTarget = SCD2) -> tuple[pa.Table, TierChange]:
    rows = wh.tier_candidates(target, CUTOFF)
    mid = move_id("hot_to_warm", target.name, CUTOFF.isoformat(), checksum(rows))
    change = TierChange(mid, "hot_to_warm", CUTOFF, remove_rows=rows,
                        add_files=_put(store, rows, target, mid))  # fmt: skip
    wh.apply_tier_change(target, change, ("id",))
    return rows, change


@pytest.fixture
def store(tmp_path: Path) -> TierStore:
    return TierStore(str(tmp_path / "tiers"))


def test_closed_versions_move_out_and_restore_back_exactly(wh: Any, store: TierStore) -> None:
    _load_history(wh)
    wh.ensure_history_view(SCD2)
    before = _history(wh)
    due = [r for r in before if r["valid_to"] is not None and r["valid_to"] < CUTOFF]
    rows = wh.tier_candidates(SCD2, CUTOFF)
    assert rows.num_rows == len(due) > 0
    assert set(rows.column_names) == set(before[0])
    assert _sorted(rows) == due  # every stored column, values unchanged
    assert rows.schema.field("valid_to").type == pa.timestamp("us", tz="UTC")

    moved, change = _move(wh, store)
    assert len(change.add_files) > 1  # one file per month
    files = wh.tier_files("items")
    assert sorted(f.path for f in files) == sorted(f.path for f in change.add_files)
    assert sum(f.rows for f in files) == moved.num_rows
    assert all(Path(f.path).exists() for f in files)
    [audit] = wh.tier_moves("items")
    assert (audit["move_id"], audit["kind"], audit["rows"]) == (change.move_id, "hot_to_warm",
                                                                  moved.num_rows)  # fmt: skip
    assert audit["files_added"] == len(files) and audit["files_removed"] == 0
    assert audit["cutoff"] == CUTOFF and audit["moved_at"] is not None
    assert audit["bytes_added"] == sum(f.bytes for f in files)

    after = _history(wh)
    if _reads_tiers(wh):
        assert after == before
    else:  # fakesnow: the view is the hot table only, which lost exactly the moved rows
        assert after == [r for r in before if (r["id"], r["_cdc_lsn"]) not in _ids(due)]
    # the current versions and every version closed since the cutoff stay hot
    assert wh.tier_candidates(SCD2, CUTOFF).num_rows == 0
    as_of = NOW - dt.timedelta(days=5)
    assert _sorted(wh.history_rows(SCD2, as_of)) == [
        r for r in before if r["valid_from"] <= as_of and (r["valid_to"] is None
                                                           or r["valid_to"] > as_of)
    ]  # fmt: skip

    # restore: the files' rows back to hot, the file set emptied, the range held hot
    back = store.read([f.path for f in files])
    hold = Hold(NOW - dt.timedelta(days=400), NOW, NOW + dt.timedelta(days=30))
    restore = TierChange(move_id("restore", "items", "all"), "restore", None, insert_rows=back,
                         remove_files=tuple(files), hold=hold)  # fmt: skip
    wh.apply_tier_change(SCD2, restore, ())
    assert _history(wh) == before
    assert wh.tier_files("items") == []
    assert wh.tier_candidates(SCD2, CUTOFF).num_rows == 0  # held
    moves = wh.tier_moves("items")
    assert [m["kind"] for m in moves] == ["hot_to_warm", "restore"]
    assert moves[1]["cutoff"] is None and moves[1]["rows"] == back.num_rows
    assert moves[1]["files_removed"] == len(files)


def test_a_conflict_moves_nothing(wh: Any, store: TierStore) -> None:
    _load_history(wh)
    before = _history(wh)
    rows = wh.tier_candidates(SCD2, CUTOFF)
    # one selected row changed meanwhile (its position is no longer the one written)
    lsn = rows["_cdc_lsn"].to_pylist()
    changed = rows.set_column(rows.schema.get_field_index("_cdc_lsn"), "_cdc_lsn",
                              pa.array([lsn[0] + 10**9, *lsn[1:]], pa.int64()))  # fmt: skip
    mid = move_id("hot_to_warm", "items", "conflict")
    change = TierChange(mid, "hot_to_warm", CUTOFF, remove_rows=changed,
                        add_files=_put(store, changed, SCD2, mid))  # fmt: skip
    with pytest.raises(TierConflictError, match="changed meanwhile"):
        wh.apply_tier_change(SCD2, change, ("id",))
    assert _history(wh) == before
    assert wh.tier_files("items") == []
    assert wh.tier_moves("items") == []
    assert _sorted(wh.tier_candidates(SCD2, CUTOFF)) == _sorted(rows)
    # a later cutoff than the rows': the re-check in the transaction refuses them too
    early = dataclasses.replace(change, remove_rows=rows, cutoff=CUTOFF - dt.timedelta(days=90))
    with pytest.raises(TierConflictError):
        wh.apply_tier_change(SCD2, early, ("id",))
    assert _history(wh) == before and wh.tier_files("items") == []
    # the same move, consistent, then goes through
    _move(wh, store)
    assert len(wh.tier_moves("items")) == 1


def test_present_keys(wh: Any) -> None:
    _load_history(wh)
    keys = pa.table({"id": pa.array([1, 999, 2, 3], pa.int64())})
    present = wh.present_keys(SCD2, keys)
    assert present.schema == keys.schema
    assert sorted(present["id"].to_pylist()) == [1, 2, 3]  # in no particular order
    assert wh.present_keys(SCD2, keys.slice(1, 1)).num_rows == 0


def test_soft_deleted_mirror_rows_move_with_delete_markers(wh: Any, store: TierStore) -> None:
    inserts = [_event(Op.CREATE, k, NOW - dt.timedelta(days=300), "new") for k in range(1, 9)]
    deletes = [_event(Op.DELETE, k, NOW - dt.timedelta(days=20 * k)) for k in range(1, 9) if k % 2]
    wh.apply([TableBatch(SOFT, ITEMS_SCHEMA, tuple(inserts + deletes))], [])
    wh.ensure_history_view(SOFT)
    before = sorted(wh.history_rows(SOFT).to_pylist(), key=lambda r: r["id"])
    moved, _ = _move(wh, store, SOFT)
    # deleted 30 days ago or more: keys 3, 5, 7 (key 1 was deleted 20 days ago)
    assert sorted(moved["id"].to_pylist()) == [3, 5, 7]
    after = sorted(wh.history_rows(SOFT).to_pylist(), key=lambda r: r["id"])
    if _reads_tiers(wh):
        assert after == before
    else:
        assert after == [r for r in before if r["id"] not in (3, 5, 7)]
    hot = wh.present_keys(SOFT, pa.table({"id": pa.array(range(1, 9), pa.int64())}))
    assert sorted(hot["id"].to_pylist()) == [1, 2, 4, 6, 8]
    # replaying the old changes: the delete markers keep the moved keys out
    result = wh.apply([TableBatch(SOFT, ITEMS_SCHEMA, tuple(inserts + deletes))], [])
    assert result.tables[0].stale == len(inserts + deletes) - 4  # all but key 1's: refused
    hot = wh.present_keys(SOFT, pa.table({"id": pa.array(range(1, 9), pa.int64())}))
    assert sorted(hot["id"].to_pylist()) == [1, 2, 4, 6, 8]
    assert sorted(wh.history_rows(SOFT).to_pylist(), key=lambda r: r["id"]) == after


KINDS = TableTarget("all_kinds", mode="scd2")


def test_every_type_goes_to_the_files_and_back_unchanged(wh: Any, store: TierStore) -> None:
    """A version holding a value in every column and one of NULLs, closed, moved out (Parquet
    written and verified) and restored: the table reads back exactly as before."""
    from sample_data import FULL_ROW, KINDS_SCHEMA, NULL_ROW

    old = NOW - dt.timedelta(days=400)

    def change(row: dict[str, Any], at: dt.datetime, op: Op) -> ChangeEvent:
        return dated(op, row["id"], at, KINDS_SCHEMA, **row)

    events = [change(FULL_ROW, old, Op.CREATE), change(NULL_ROW, old, Op.CREATE),
              change({**FULL_ROW, "txt": "next"}, old + dt.timedelta(days=1), Op.UPDATE),
              change({**NULL_ROW, "i16": 1}, old + dt.timedelta(days=1), Op.UPDATE)]  # fmt: skip
    wh.apply([TableBatch(KINDS, KINDS_SCHEMA, tuple(events))], [])
    before = _history(wh, KINDS)
    versions = wh.fetch_history(KINDS)  # the model's values, read by the adapter
    rows, moved = _move(wh, store, KINDS)
    assert rows.num_rows == 2
    assert _history(wh, KINDS) == (before if _reads_tiers(wh) else [
        r for r in before if r["valid_to"] is None])  # fmt: skip
    back = store.read([f.path for f in moved.add_files])
    restore = TierChange(move_id("restore", "all_kinds", "all"), "restore", None,
                         insert_rows=back, remove_files=moved.add_files)  # fmt: skip
    wh.apply_tier_change(KINDS, restore, ())
    assert _history(wh, KINDS) == before
    assert wh.fetch_history(KINDS) == versions
