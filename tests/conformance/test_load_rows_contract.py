"""``Warehouse.load_rows``: source rows read outside the log (snapshot chunks) at one position,
on every adapter (DuckDB with rows and with Arrow columns, Snowflake through the event path).

The contract: the rows are written as snapshot reads under the same position guard as the
stream (a stored row or a delete at a newer position wins), the offsets given are stored in
the same transaction, and a table that doesn't exist yet is created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sample_data import (
    ALL_KINDS,
    FULL_ROW,
    ITEMS,
    ITEMS_SCHEMA,
    KINDS_SCHEMA,
    NULL_ROW,
    batch,
    ev,
    row_event,
    rows,
)

from cdc.model import KafkaOrigin, Op, SourcePosition
from warehouse.arrow import column_array
from warehouse.base import OffsetRow, SourceRows, TableTarget, Warehouse
from warehouse.duckdb.adapter import DuckDBWarehouse

pytestmark = pytest.mark.conformance


def at(lsn: int) -> SourcePosition:
    return SourcePosition(lsn, None, 1_700_000_000_000_000 + lsn, True)


def source_rows(
    values: list[tuple[Any, ...]], lsn: int, *, columnar: bool = False, target: TableTarget = ITEMS
) -> SourceRows:
    schema = ITEMS_SCHEMA if target is ITEMS else KINDS_SCHEMA
    origin = KafkaOrigin("snapshot:s1", 0, 0)
    if not columnar:
        return SourceRows(target, schema, values, at(lsn), origin)
    columns = list(zip(*values, strict=True))
    arrays = [
        column_array(c.type, columns[i], table=target.name, column=c.name)
        for i, c in enumerate(schema.columns)
    ]
    table = pa.table(arrays, names=[f"c{i}" for i in range(len(arrays))])
    return SourceRows(target, schema, (), at(lsn), origin, table)


def test_rows_load_under_the_position_guard_with_their_offsets(wh: Warehouse) -> None:
    guard_contract(wh, columnar=False)


def test_duckdb_takes_arrow_columns_under_the_same_contract(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "columns.duckdb")
    try:
        assert wh.takes_columns(ITEMS) and not wh.takes_columns(TableTarget("h", mode="scd2"))
        guard_contract(wh, columnar=True)
    finally:
        wh.close()


def guard_contract(wh: Warehouse, *, columnar: bool) -> None:
    # stored: key 1 older than the snapshot, key 2 newer, key 3 deleted after the snapshot
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="old"), ev(Op.CREATE, 2, 90, name="newer"),
                    ev(Op.CREATE, 3, 20, name="x"), ev(Op.DELETE, 3, 80))], [])  # fmt: skip
    loaded = [(1, "snap", None), (2, "snap", None), (3, "snap", None), (4, "snap", "d")]
    result = wh.load_rows(
        source_rows(loaded, 50, columnar=columnar), [OffsetRow("snapshot:s1", "items", 0, 1)]
    )
    assert rows(wh) == [
        {"id": 1, "name": "snap", "doc": None},
        {"id": 2, "name": "newer", "doc": None},
        {"id": 4, "name": "snap", "doc": "d"},
    ]
    (stats,) = result.tables
    assert (stats.events, stats.upserted, stats.stale) == (4, 2, 2)
    assert wh.load_offsets("snapshot:s1") == {("items", 0): 1}
    # the same chunk again changes nothing; a change after the snapshot still wins
    wh.load_rows(source_rows(loaded, 50, columnar=columnar), [])
    wh.apply([batch(ev(Op.UPDATE, 1, 60, name="streamed"))], [])
    assert [r["name"] for r in rows(wh)] == ["streamed", "newer", "snap"]


def test_rows_create_the_table_and_keep_every_kind(wh: Warehouse) -> None:
    """Every kind and NULLs land exactly as the stream path stores the same rows."""
    target = TableTarget("every_kind")
    values = [tuple(row[c.name] for c in ALL_KINDS) for row in (FULL_ROW, NULL_ROW)]
    wh.load_rows(source_rows(values, 5, target=target), [OffsetRow("snapshot:k", "k", 3, 1)])
    assert wh.load_offsets("snapshot:k") == {("k", 3): 1}
    streamed = TableTarget("every_kind_streamed")
    events = [row_event(KINDS_SCHEMA, FULL_ROW, 5), row_event(KINDS_SCHEMA, NULL_ROW, 6)]
    wh.apply([batch(*events, target=streamed)], [])
    loaded = sorted(wh.fetch_table(target), key=lambda r: r["id"])
    assert len(loaded) == 2
    assert loaded == sorted(wh.fetch_table(streamed), key=lambda r: r["id"])


def test_empty_chunks_store_their_offsets(wh: Warehouse) -> None:
    wh.load_rows(source_rows([], 5), [OffsetRow("snapshot:e", "items", 7, 1)])
    assert wh.load_offsets("snapshot:e") == {("items", 7): 1}
