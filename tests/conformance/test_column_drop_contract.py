"""A column dropped at the source (``tables[].on_column_drop``), on every adapter (DuckDB and
Snowflake on fakesnow's server).

The source's ``items`` (id, name, doc) loses ``doc``: rows exist, then a batch arrives whose
schema no longer has it. ``keep`` leaves the column (rows updated afterwards keep their value,
new rows get NULL) and ``Warehouse.dropped_columns`` lists it; ``null`` sets it to NULL in the
live rows (mirror rows not soft-deleted, current versions) and a restart writes nothing more;
``drop`` drops it from the table (and the scd2 ``<table>_current`` view still reads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sample_data import ITEMS_SCHEMA, batch, ev, rows
from structlog.testing import capture_logs

from cdc.model import Op, TableSchema
from warehouse.base import ColumnDropPolicy, TableMode, TableTarget, Warehouse
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.snowflake.adapter import SnowflakeWarehouse

pytestmark = pytest.mark.conformance

# the source's table after ALTER TABLE items DROP COLUMN doc
NARROW = TableSchema(ITEMS_SCHEMA.table, ITEMS_SCHEMA.columns[:2], ITEMS_SCHEMA.key)
NULLED = "columns dropped at the source: NULL in the live rows"


def target(policy: ColumnDropPolicy, mode: TableMode = "mirror", soft: bool = False) -> TableTarget:
    return TableTarget("items", mode=mode, soft_delete=soft, on_column_drop=policy)


def run_sql(wh: Warehouse, text: str) -> tuple[list[tuple[Any, ...]], list[str]]:
    """SQL text on the adapter's engine (``{schema}``: the target schema, quoted): the rows and
    the names of the result's columns."""
    text = text.replace("{schema}", f'"{wh.schema}"')  # type: ignore[attr-defined]
    if isinstance(wh, DuckDBWarehouse):
        with wh.connection() as con:
            found = con.execute(text).fetchall()
            return found, [d[0] for d in con.description or ()]
    assert isinstance(wh, SnowflakeWarehouse)
    cur = wh._connection().cursor()
    cur.execute(text)
    return list(cur.fetchall()), [d[0] for d in cur.description]


def restarted(wh: Warehouse, tmp_path: Path) -> Warehouse:
    """A new adapter on the same warehouse, as after a restart (nothing ensured yet)."""
    if isinstance(wh, DuckDBWarehouse):
        wh.close()
        return DuckDBWarehouse(wh.path, keep_open=True)
    assert isinstance(wh, SnowflakeWarehouse)
    return SnowflakeWarehouse(wh.settings, tmpdir=tmp_path)


def docs(wh: Warehouse) -> dict[int, Any]:
    """``doc`` of every stored row (soft-deleted rows, closed versions: the newest one)."""
    found, _ = run_sql(wh, 'SELECT "id", "doc" FROM {schema}."items" ORDER BY "id", "_cdc_lsn"')
    return {int(i): d for i, d in found}


def columns(wh: Warehouse, relation: str = "items") -> list[str]:
    return run_sql(wh, f'SELECT * FROM {{schema}}."{relation}" LIMIT 0')[1]


def seed(wh: Warehouse, t: TableTarget) -> None:
    """Rows 1 to 3 with a doc; key 3 deleted (a soft-deleted row, a closed scd2 version)."""
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a", doc="d1"),
                    ev(Op.CREATE, 2, 11, name="b", doc="d2"),
                    ev(Op.CREATE, 3, 12, name="c", doc="d3"),
                    target=t)], [])  # fmt: skip
    wh.apply([batch(ev(Op.DELETE, 3, 13), target=t)], [])
    assert wh.dropped_columns(t) == []  # nothing dropped yet


def after_the_drop(wh: Warehouse, t: TableTarget) -> None:
    """The first batch without ``doc``: key 1 updated, key 4 inserted."""
    wh.apply([batch(ev(Op.UPDATE, 1, 20, NARROW, name="a2"),
                    ev(Op.CREATE, 4, 21, NARROW, name="e"), target=t)], [])  # fmt: skip


# ---- keep --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["mirror", "scd2"])
def test_keep_leaves_the_column_and_lists_it_as_dropped(wh: Warehouse, mode: TableMode) -> None:
    t = target("keep", mode)
    seed(wh, t)
    after_the_drop(wh, t)
    assert "doc" in columns(wh)
    live = {r["id"]: r["doc"] for r in rows(wh, t)}
    if mode == "mirror":  # updated row keeps its value, the new one has none
        assert live == {1: "d1", 2: "d2", 4: None}
    else:  # the new version of key 1 has none; key 2's current version keeps it
        assert live == {1: None, 2: "d2", 4: None}
        history = [(r["id"], r["doc"], r["is_current"]) for r in wh.fetch_history(t)]
        assert history == [(1, "d1", False), (1, None, True), (2, "d2", True),
                           (3, "d3", False), (4, None, True)]  # fmt: skip
    assert wh.dropped_columns(t) == ["doc"]
    assert wh.dropped_columns(TableTarget("absent")) == []


# ---- null --------------------------------------------------------------------------------------


def test_null_clears_the_live_mirror_rows_once(wh: Warehouse, tmp_path: Path) -> None:
    t = target("null")
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a", doc="d1"),
                    ev(Op.CREATE, 2, 11, name="b", doc="d2"), target=t)], [])  # fmt: skip
    with capture_logs() as logs:
        after_the_drop(wh, t)
    assert rows(wh, t) == [{"id": 1, "name": "a2", "doc": None},
                           {"id": 2, "name": "b", "doc": None},
                           {"id": 4, "name": "e", "doc": None}]  # fmt: skip
    [entry] = [e for e in logs if e["event"] == NULLED]
    assert (entry["log_level"], entry["rows"], entry["columns"]) == ("warning", 2, ["doc"])
    assert wh.dropped_columns(t) == ["doc"]  # nulled, still there

    # a restart ensures the table again: nothing left to write
    again = restarted(wh, tmp_path)
    try:
        with capture_logs() as logs:
            again.apply([batch(ev(Op.UPDATE, 2, 30, NARROW, name="b2"), target=t)], [])
        [entry] = [e for e in logs if e["event"] == NULLED]
        assert (entry["log_level"], entry["rows"]) == ("info", 0)
        assert docs(again) == {1: None, 2: None, 4: None}
    finally:
        again.close()


def test_null_spares_soft_deleted_rows(wh: Warehouse, tmp_path: Path) -> None:
    t = target("null", soft=True)
    seed(wh, t)
    after_the_drop(wh, t)
    assert docs(wh) == {1: None, 2: None, 3: "d3", 4: None}  # 3: deleted before the drop
    assert [r["id"] for r in rows(wh, t)] == [1, 2, 4]
    again = restarted(wh, tmp_path)
    try:
        again.apply([batch(ev(Op.UPDATE, 2, 30, NARROW, name="b2"), target=t)], [])
        assert docs(again) == {1: None, 2: None, 3: "d3", 4: None}
    finally:
        again.close()


def test_null_clears_current_versions_and_keeps_closed_ones(wh: Warehouse, tmp_path: Path) -> None:
    t = target("null", "scd2")
    seed(wh, t)
    wh.apply([batch(ev(Op.UPDATE, 2, 14, name="b", doc="d2'"), target=t)], [])
    after_the_drop(wh, t)
    history = [(r["id"], r["doc"], r["is_current"]) for r in wh.fetch_history(t)]
    assert history == [
        (1, None, False), (1, None, True),  # current at the drop: nulled, then closed by 20
        (2, "d2", False), (2, None, True),  # closed before the drop: kept; current: nulled
        (3, "d3", False),  # deleted before the drop: kept
        (4, None, True),
    ]  # fmt: skip
    assert wh.history_report(t).ok
    again = restarted(wh, tmp_path)
    try:
        with capture_logs() as logs:
            again.apply([batch(ev(Op.UPDATE, 4, 30, NARROW, name="e2"), target=t)], [])
        [entry] = [e for e in logs if e["event"] == NULLED]
        assert entry["rows"] == 0
        docs_now = [r["doc"] for r in again.fetch_history(t)]
        assert docs_now == [None, None, "d2", None, "d3", None, None]
    finally:
        again.close()


# ---- drop --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["mirror", "scd2"])
def test_drop_removes_the_column(wh: Warehouse, tmp_path: Path, mode: TableMode) -> None:
    t = target("drop", mode)
    seed(wh, t)
    after_the_drop(wh, t)
    assert "doc" not in columns(wh)
    assert rows(wh, t) == [{"id": 1, "name": "a2"}, {"id": 2, "name": "b"},
                           {"id": 4, "name": "e"}]  # fmt: skip
    assert wh.dropped_columns(t) == []
    if mode == "scd2":
        assert all("doc" not in r for r in wh.fetch_history(t))
        current, names = run_sql(wh, 'SELECT * FROM {schema}."items_current"')
        assert len(current) == 3 and "doc" not in names  # the view was recreated
    again = restarted(wh, tmp_path)  # idempotent: nothing left to drop
    try:
        again.apply([batch(ev(Op.UPDATE, 2, 30, NARROW, name="b2"), target=t)], [])
        assert [r["name"] for r in rows(again, t)] == ["a2", "b2", "e"]
    finally:
        again.close()


def test_metadata_and_validity_columns_are_never_dropped(wh: Warehouse) -> None:
    t = target("drop", "scd2")
    seed(wh, t)
    after_the_drop(wh, t)
    history = wh.fetch_history(t)
    assert {"_cdc_lsn", "_cdc_deleted", "valid_from", "valid_to", "is_current"} <= set(history[0])
