"""Issue 17 on every adapter: the values PostgreSQL has beyond Python's ``datetime`` (BC,
after 9999, ±infinity, 24:00:00), decimals with many trailing zeros, JSON numbers and special
floats in arrays. Each value either round-trips exactly through the adapter, or the engine's
:class:`~warehouse.base.Capabilities` say it can't hold it (then the consumer quarantines it
before staging: ``cdc.consumer.fitting``). The decision is the capabilities', never the
engine's name, and this test proves the capabilities tell the truth on each engine.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from sample_data import row_event

from cdc.consumer.fitting import UnfitValueError, check_value, convert
from cdc.model import (
    DATE_INFINITY,
    END_OF_DAY,
    TIMESTAMP_INFINITY,
    Column,
    ColumnType,
    FarDate,
    FarTimestamp,
    Kind,
    TableId,
    TableSchema,
    days_from_civil,
)
from warehouse.base import TableBatch, TableTarget, Warehouse

pytestmark = pytest.mark.conformance

DAY = 86_400_000_000
COLUMNS = {
    "d": ColumnType(Kind.DATE),
    "ts": ColumnType(Kind.TIMESTAMP),
    "tz": ColumnType(Kind.TIMESTAMPTZ),
    "t": ColumnType(Kind.TIME),
    "n": ColumnType(Kind.VARDECIMAL),
    "j": ColumnType(Kind.JSON),
    "fa": ColumnType(Kind.ARRAY, element=ColumnType(Kind.FLOAT64)),
    "da": ColumnType(Kind.ARRAY, element=ColumnType(Kind.DATE)),
}
SCHEMA = TableSchema(
    TableId("public", "specials"),
    (Column("id", ColumnType(Kind.INT64), False), *(Column(n, c) for n, c in COLUMNS.items())),
    ("id",),
)
TARGET = TableTarget("specials")

# (column, value): every value is a PostgreSQL value the decoder produces
CASES: list[tuple[str, Any]] = [
    ("d", dt.date(1, 1, 1)),
    ("d", dt.date(9999, 12, 31)),
    ("d", FarDate(days_from_civil(-43, 3, 15))),  # 0044-03-15 BC
    ("d", FarDate(days_from_civil(5874897, 12, 31))),
    ("d", FarDate(DATE_INFINITY)),
    ("d", FarDate(-DATE_INFINITY)),
    ("ts", dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    ("ts", FarTimestamp(days_from_civil(-4712, 1, 1) * DAY, False)),  # 4713-01-01 BC
    ("ts", FarTimestamp(days_from_civil(10000, 1, 1) * DAY + 1, False)),
    ("ts", FarTimestamp(TIMESTAMP_INFINITY, False)),
    ("ts", FarTimestamp(-TIMESTAMP_INFINITY, False)),
    ("tz", FarTimestamp(days_from_civil(-43, 3, 15) * DAY + 43_200_000_000, True)),
    ("tz", FarTimestamp(TIMESTAMP_INFINITY, True)),
    ("t", END_OF_DAY),
    ("t", dt.time(23, 59, 59, 999999)),
    ("n", Decimal("5." + "0" * 200)),  # pyarrow alone would stage it as 0
    ("n", Decimal("-0.0000000001")),
    ("j", '{"big": 123456789012345678901234567890.123456789}'),  # 39 digits
    ("j", '{"fits": 12345678901234567890123456789012345678}'),  # 38 digits
    ("fa", [float("nan"), 1.5]),
    ("fa", [float("-inf"), None]),
    ("fa", [1.5, -0.25]),
    ("da", [dt.date(2024, 2, 29), FarDate(DATE_INFINITY), None]),
]


def _fits(column: str, value: Any, wh: Warehouse) -> bool:
    try:
        check_value(value, COLUMNS[column], wh.capabilities)
        return True
    except UnfitValueError:
        return False


def _same(column: str, stored: Any, value: Any) -> bool:
    if column == "j":
        return json.loads(stored, parse_float=Decimal) == json.loads(value, parse_float=Decimal)
    if column == "fa":
        return convert(stored, ColumnType(Kind.TEXT)) == convert(value, ColumnType(Kind.TEXT))
    return bool(stored == value)


def test_special_values_round_trip_where_the_capabilities_say_they_fit(wh: Warehouse) -> None:
    events = []
    expected: dict[int, tuple[str, Any]] = {}
    refused = []
    for i, (column, value) in enumerate(CASES, 1):
        if not _fits(column, value, wh):
            refused.append((column, value))
            continue
        row: dict[str, Any] = {"id": i, **dict.fromkeys(COLUMNS)}
        row[column] = value
        events.append(row_event(SCHEMA, row, lsn=100 + i))
        expected[i] = (column, value)
    wh.apply([TableBatch(TARGET, SCHEMA, events)], [])
    stored = {r["id"]: r for r in wh.fetch_table(TARGET)}
    assert set(stored) == set(expected)
    wrong = [
        (column, value, stored[i][column])
        for i, (column, value) in expected.items()
        if not _same(column, stored[i][column], value)
    ]
    assert not wrong, wrong
    caps = wh.capabilities
    if caps.infinite_dates:  # DuckDB: every PostgreSQL value but JSON digits fits
        assert refused == []
    else:  # Snowflake: no infinity, years 1-9999, no 24:00:00, 38-digit JSON numbers, JSON arrays
        assert len(refused) == 15, refused
