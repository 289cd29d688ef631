"""Test data shared by the suites (importable as ``sample_data``: pytest puts ``tests/`` on the
path for ``tests/conftest.py``).

- the ``items`` table (id, name, doc) with :func:`batch` and :func:`rows`;
- :func:`ev`, the change-event builder of the suites: a change of ``items`` (or of any table
  given as ``schema``) at an LSN, in its own transaction unless told otherwise (a module with
  its own conventions wraps it, never copies it); :func:`dated` for a change committed at a
  given time;
- a table with a column of every logical type (:data:`ALL_KINDS`), a row holding a value in
  every column (:data:`FULL_ROW`) and one of NULLs (:data:`NULL_ROW`), with :func:`row_event`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal
from typing import Any

from cdc.model import (
    ChangeEvent,
    Column,
    ColumnType,
    Interval,
    KafkaOrigin,
    Kind,
    Op,
    SourcePosition,
    TableId,
    TableSchema,
)
from warehouse.base import TableBatch, TableTarget, Warehouse

INT64 = ColumnType(Kind.INT64)
ITEMS_SCHEMA = TableSchema(
    TableId("public", "items"),
    (
        Column("id", INT64, nullable=False),
        Column("name", ColumnType(Kind.TEXT)),
        Column("doc", ColumnType(Kind.TEXT)),
    ),
    ("id",),
)
ITEMS = TableTarget("items")
T0_US = 1_700_000_000_000_000  # the commit time of transaction 0, µs since the epoch
_offset = itertools.count()
_dated_lsn = itertools.count(1000)


def ev(
    op: Op,
    key: int | dict[str, Any],
    lsn: int,
    schema: TableSchema = ITEMS_SCHEMA,
    *,
    tx: int | None = None,
    commit_us: int | None = None,
    snapshot: bool | None = None,
    topic: str = "pg.public.items",
    partition: int = 0,
    offset: int | None = None,
    before: dict[str, Any] | None = None,
    raw_key: bytes | None = None,
    raw_value: bytes | None = None,
    **after: Any,
) -> ChangeEvent:
    """A change of key ``key`` (the ``id``, or every key column by name) at ``lsn``: the row is
    the key plus ``after`` (none for a delete).

    By default it is its own transaction (``tx`` = ``lsn``) committed at ``T0_US + tx``, a
    snapshot read only if ``op`` is a read, at the next offset of partition 0 of ``topic``.
    """
    key = {"id": key} if isinstance(key, int) else key
    tx = lsn if tx is None else tx
    return ChangeEvent(
        op=op,
        schema=schema,
        key=key,
        before=before,
        after=None if op is Op.DELETE else {**key, **after},
        position=SourcePosition(
            lsn,
            tx,
            T0_US + tx if commit_us is None else commit_us,
            op is Op.READ if snapshot is None else snapshot,
        ),
        origin=KafkaOrigin(topic, partition, next(_offset) if offset is None else offset),
        raw_value=raw_value,
        raw_key=raw_key,
    )


def dated(
    op: Op, key: int, at: dt.datetime, schema: TableSchema = ITEMS_SCHEMA, **after: Any
) -> ChangeEvent:
    """A change committed at ``at`` (not a snapshot read), at the next LSN of one counter shared
    by every dated change (from 1000, so changes made in order are applied in order)."""
    topic = f"pg.{schema.table.schema}.{schema.table.name}"
    commit_us = int(at.timestamp() * 1_000_000)
    lsn = next(_dated_lsn)
    return ev(op, key, lsn, schema, commit_us=commit_us, snapshot=False, topic=topic, **after)


def batch(*events: ChangeEvent, target: TableTarget = ITEMS) -> TableBatch:
    return TableBatch(target, events[0].schema if events else ITEMS_SCHEMA, events)


def rows(wh: Warehouse, target: TableTarget = ITEMS, key: str = "id") -> list[dict[str, Any]]:
    return sorted(wh.fetch_table(target), key=lambda r: r[key])


ALL_KINDS = (
    Column("id", INT64, nullable=False),
    Column("i16", ColumnType(Kind.INT16)),
    Column("i32", ColumnType(Kind.INT32)),
    Column("dec", ColumnType(Kind.DECIMAL, precision=38, scale=10)),
    Column("money", ColumnType(Kind.DECIMAL, precision=12, scale=2)),
    Column("vardec", ColumnType(Kind.VARDECIMAL)),
    Column("f32", ColumnType(Kind.FLOAT32)),
    Column("f64", ColumnType(Kind.FLOAT64)),
    Column("flag", ColumnType(Kind.BOOLEAN)),
    Column("txt", ColumnType(Kind.TEXT, length=200)),
    Column("mood", ColumnType(Kind.ENUM, enum_values=("happy", "sad"))),
    Column("raw", ColumnType(Kind.BYTES)),
    Column("day", ColumnType(Kind.DATE)),
    Column("t", ColumnType(Kind.TIME)),
    Column("ttz", ColumnType(Kind.TIMETZ)),
    Column("ts", ColumnType(Kind.TIMESTAMP)),
    Column("tstz", ColumnType(Kind.TIMESTAMPTZ)),
    Column("span", ColumnType(Kind.INTERVAL)),
    Column("uid", ColumnType(Kind.UUID)),
    Column("doc", ColumnType(Kind.JSON)),
    Column("ints", ColumnType(Kind.ARRAY, element=ColumnType(Kind.INT32))),
    Column("tags", ColumnType(Kind.ARRAY, element=ColumnType(Kind.TEXT))),
)
KINDS_SCHEMA = TableSchema(TableId("public", "all_kinds"), ALL_KINDS, ("id",))
FULL_ROW: dict[str, Any] = {
    "id": 1,
    "i16": -32768,
    "i32": 2147483647,
    "dec": Decimal("1234567890123456789012345678.0123456789"),
    "money": Decimal("-9999999999.99"),
    "vardec": Decimal("3.1415926535"),
    "f32": 1.5,
    "f64": 2.718281828459045,
    "flag": True,
    "txt": "héllo\nwörld ✓",
    "mood": "happy",
    "raw": b"\x00\xff\x10binary",
    "day": dt.date(1999, 12, 31),
    "t": dt.time(23, 59, 59, 999999),
    "ttz": dt.time(10, 11, 12, 123456, tzinfo=dt.UTC),
    "ts": dt.datetime(2024, 2, 29, 12, 0, 0, 1),
    "tstz": dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
    "span": Interval(months=14, days=40, microseconds=3_600_000_001),
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "doc": '{"b": [1, 2, {"c": null}],   "a": "x"}',
    "ints": [1, None, -3],
    "tags": ["a", "", None, "d'quote"],
}
NULL_ROW = {c.name: None for c in ALL_KINDS} | {"id": 2}


def row_event(
    schema: TableSchema, row: dict[str, Any], lsn: int, op: Op = Op.CREATE
) -> ChangeEvent:
    """A change of ``row`` at ``lsn`` in transaction 7 (origin offset = lsn)."""
    return ChangeEvent(
        op=op,
        schema=schema,
        key={k: row[k] for k in schema.key},
        before=None,
        after=None if op is Op.DELETE else row,
        position=SourcePosition(
            lsn=lsn, tx_id=7, commit_ts_us=1_700_000_000_123_456, snapshot=False
        ),
        origin=KafkaOrigin("topic", 0, lsn),
    )


def split(events: list[ChangeEvent], cuts: list[int]) -> list[list[ChangeEvent]]:
    """``events`` cut into consecutive batches at ``cuts`` (each taken modulo the length)."""
    bounds = sorted({c % (len(events) + 1) for c in cuts} | {0, len(events)})
    return [events[a:b] for a, b in itertools.pairwise(bounds) if b > a]
