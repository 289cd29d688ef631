"""DuckDB round-trips every logical type exactly, quotes every identifier, splices no value."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sample_data import FULL_ROW, KINDS_SCHEMA, NULL_ROW, row_event

from cdc.model import (
    Column,
    ColumnType,
    Interval,
    Kind,
    Op,
    TableId,
    TableSchema,
)
from warehouse.base import (
    DataError,
    IncompatibleSchemaChangeError,
    TableBatch,
    TableTarget,
)
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.sql import TableRef, render, upsert_offsets

SCHEMA = KINDS_SCHEMA
_event = row_event


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    w = DuckDBWarehouse(tmp_path / "types.duckdb", keep_open=True)
    w.ensure_bookkeeping()
    yield w  # type: ignore[misc]
    w.close()


def test_every_kind_and_nulls_round_trip_exactly(wh: DuckDBWarehouse) -> None:
    target = TableTarget("all_kinds")
    events = [_event(SCHEMA, FULL_ROW, 10), _event(SCHEMA, NULL_ROW, 11)]
    result = wh.apply([TableBatch(target, SCHEMA, events)], [])
    assert result.tables[0].upserted == 2
    rows = sorted(wh.fetch_table(target), key=lambda r: r["id"])
    assert rows == [FULL_ROW, NULL_ROW]
    # Exact representation, not just equality: types, tz and interval parts.
    got = rows[0]
    assert got["ttz"].tzinfo == dt.UTC and got["tstz"].tzinfo == dt.UTC
    assert got["tstz"].microsecond == 999999
    assert isinstance(got["span"], Interval) and got["span"] == FULL_ROW["span"]
    assert isinstance(got["uid"], uuid.UUID)
    assert got["doc"] == FULL_ROW["doc"]  # JSON text kept as sent
    assert str(got["money"]) == "-9999999999.99"


def test_target_column_types(wh: DuckDBWarehouse) -> None:
    wh.apply([TableBatch(TableTarget("all_kinds"), SCHEMA, [_event(SCHEMA, NULL_ROW, 1)])], [])
    with wh.connection() as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'all_kinds'"
            ).fetchall()
        )
    assert types["dec"] == "DECIMAL(38,10)" and types["vardec"] == "DECIMAL(38,10)"
    assert types["money"] == "DECIMAL(12,2)" and types["f32"] == "FLOAT"
    assert types["ttz"] == "TIME WITH TIME ZONE" and types["tstz"] == "TIMESTAMP WITH TIME ZONE"
    assert types["uid"] == "UUID" and types["doc"] == "JSON" and types["span"] == "INTERVAL"
    assert types["ints"] == "INTEGER[]" and types["tags"] == "VARCHAR[]"
    assert types["raw"] == "BLOB" and types["mood"] == "VARCHAR"
    assert types["_cdc_lsn"] == "BIGINT" and types["_cdc_source_ts"] == "TIMESTAMP WITH TIME ZONE"
    assert "_cdc_deleted" not in types  # only with soft delete


def test_timetz_with_offset_is_stored_in_utc(wh: DuckDBWarehouse) -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    row = NULL_ROW | {"id": 3, "ttz": dt.time(1, 30, tzinfo=plus2)}
    target = TableTarget("all_kinds")
    wh.apply([TableBatch(target, SCHEMA, [_event(SCHEMA, row, 5)])], [])
    (got,) = wh.fetch_table(target)
    assert got["ttz"] == dt.time(23, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("vardec", Decimal("0.12345678901")),  # 11 decimals: would be rounded
        ("money", Decimal("12345678901.00")),  # 11 integer digits in decimal(12,2)
        ("money", Decimal("1.005")),
        ("vardec", Decimal("NaN")),
    ],
)
def test_decimal_that_would_lose_digits_is_a_data_error(
    wh: DuckDBWarehouse, column: str, value: Decimal
) -> None:
    row = NULL_ROW | {column: value}
    with pytest.raises(DataError, match=rf"'all_kinds'.*'{column}'.*{value}") as info:
        wh.apply([TableBatch(TableTarget("all_kinds"), SCHEMA, [_event(SCHEMA, row, 1)])], [])
    assert info.value.table == "all_kinds"


def test_decimal_precision_above_38_is_refused(wh: DuckDBWarehouse) -> None:
    schema = TableSchema(
        TableId("public", "big"),
        (Column("id", ColumnType(Kind.INT64)), Column("n", ColumnType(Kind.DECIMAL, 50, 2))),
        ("id",),
    )
    with pytest.raises(IncompatibleSchemaChangeError, match=r"decimal\(50,2\)"):
        wh.apply(
            [TableBatch(TableTarget("big"), schema, [_event(schema, {"id": 1, "n": None}, 1)])], []
        )


NASTY = [
    "it's",
    'say "hi"',
    "a; b; c;",
    "$$ dollar $$ quoted $tag$",
    "'); DROP TABLE x; --",
    "\\ backslash \\' ",
    "null\x00byte?",
]


def test_weird_identifiers_and_hostile_strings_round_trip(wh: DuckDBWarehouse) -> None:
    schema = TableSchema(
        TableId("public", 'Order "Items"'),
        (
            Column("Key Col", ColumnType(Kind.TEXT)),
            Column("Weird Col", ColumnType(Kind.TEXT)),
            Column('"quoted"', ColumnType(Kind.TEXT)),
            Column("MixedCase", ColumnType(Kind.INT32)),
        ),
        ("Key Col",),
    )
    target = TableTarget('Order "Items"')
    rows = [
        {"Key Col": s, "Weird Col": s + "!", '"quoted"': s[::-1], "MixedCase": i}
        for i, s in enumerate(NASTY)
    ]
    wh.apply(
        [TableBatch(target, schema, [_event(schema, r, 10 + i) for i, r in enumerate(rows)])], []
    )
    got = sorted(wh.fetch_table(target), key=lambda r: r["MixedCase"])
    assert got == rows
    # Deletes on the same weird key survive quoting too.
    wh.apply([TableBatch(target, schema, [_event(schema, rows[4], 100, Op.DELETE)])], [])
    assert len(wh.fetch_table(target)) == len(NASTY) - 1
    assert wh.row_counts() == {'Order "Items"': len(NASTY) - 1}


def test_statements_quote_identifiers_and_render_for_other_dialects() -> None:
    stmt = upsert_offsets(TableRef("_cdc", 'off "sets"'), "stage")
    duck = render(stmt, "duckdb")
    assert 'MERGE INTO "_cdc"."off ""sets""" AS "t"' in duck
    assert 'GREATEST("t"."next_offset", "s"."next_offset")' in duck
    assert render(stmt, "snowflake").startswith('MERGE INTO "_cdc"."off ""sets"""')
