"""Issue 17: a value the warehouse column can't hold is quarantined with the reason, never
rounded or replaced; column overrides store it as text or as another decimal."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sample_data import ev as sample_ev

from cdc.consumer.fitting import (
    check_value,
    convert,
    fit_batch,
    override_problem,
    override_type,
    pg_text,
)
from cdc.consumer.screening import screen
from cdc.model import (
    DATE_INFINITY,
    END_OF_DAY,
    TIMESTAMP_INFINITY,
    ChangeEvent,
    Column,
    ColumnType,
    FarDate,
    FarTimestamp,
    Kind,
    Op,
    TableId,
    TableSchema,
    days_from_civil,
)
from warehouse.base import Capabilities, TableBatch, TableTarget
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.snowflake.adapter import SnowflakeWarehouse

DUCK = DuckDBWarehouse.capabilities
SNOW = SnowflakeWarehouse.capabilities
SCHEMA = TableSchema(
    TableId("public", "prices"),
    (
        Column("id", ColumnType(Kind.INT32), False),
        Column("amount", ColumnType(Kind.VARDECIMAL)),
        Column("fixed", ColumnType(Kind.DECIMAL, precision=5, scale=2)),
        Column("at", ColumnType(Kind.TIMESTAMP)),
    ),
    ("id",),
)


def ev(key: int, offset: int, **values: Any) -> ChangeEvent:
    """A create at LSN 100 + offset in transaction 1 (committed at 0), with raw key and value."""
    row = {"amount": None, "fixed": None, "at": None, **values}
    raw = b"{}"
    lsn = 100 + offset
    return sample_ev(
        Op.CREATE,
        key,
        lsn,
        SCHEMA,
        tx=1,
        commit_us=0,
        topic="t",
        offset=offset,
        raw_key=raw,
        raw_value=raw,
        **row,
    )


def batch(*events: ChangeEvent) -> TableBatch:
    return TableBatch(TableTarget("prices"), SCHEMA, list(events))


@pytest.mark.parametrize(
    ("value", "ct"),
    [
        (Decimal("NaN"), ColumnType(Kind.VARDECIMAL)),
        (Decimal("Infinity"), ColumnType(Kind.DECIMAL, precision=5, scale=2)),
        (Decimal("1E+30"), ColumnType(Kind.VARDECIMAL)),  # 31 digits > decimal(38,10)'s 28
        (Decimal("0.00000000001"), ColumnType(Kind.VARDECIMAL)),  # 11 decimals > 10
        (Decimal("1000.00"), ColumnType(Kind.DECIMAL, precision=5, scale=2)),
    ],
)
def test_numbers_that_dont_fit_are_refused_never_rounded(value: Decimal, ct: ColumnType) -> None:
    with pytest.raises(ValueError):
        check_value(value, ct, DUCK)


def test_numbers_that_fit() -> None:
    for value in ("0", "-0.0000000001", "1.5", "9" * 28 + ".9999999999", "1E+27"):
        check_value(Decimal(value), ColumnType(Kind.VARDECIMAL), DUCK)
    check_value(Decimal("-999.99"), ColumnType(Kind.DECIMAL, precision=5, scale=2), DUCK)


def test_far_dates_and_timestamps_fit_duckdb_but_not_snowflake() -> None:
    bc = FarTimestamp(days_from_civil(-43, 3, 15) * 86_400_000_000, False)
    inf = FarTimestamp(TIMESTAMP_INFINITY, True)
    for value, kind in (
        (bc, Kind.TIMESTAMP),
        (inf, Kind.TIMESTAMPTZ),
        (FarDate(-DATE_INFINITY), Kind.DATE),
        (FarDate(days_from_civil(5874897, 12, 31)), Kind.DATE),
        (END_OF_DAY, Kind.TIME),
    ):
        check_value(value, ColumnType(kind), DUCK)
        with pytest.raises(ValueError):
            check_value(value, ColumnType(kind), SNOW)
    # µs since the epoch end in 294247 (int64; DuckDB's range); PostgreSQL's in 294276
    late = FarTimestamp(days_from_civil(294270, 1, 1) * 86_400_000_000, False)
    with pytest.raises(ValueError, match="beyond every warehouse's timestamp range"):
        check_value(late, ColumnType(Kind.TIMESTAMP), DUCK)
    arrays = ColumnType(Kind.ARRAY, element=ColumnType(Kind.DATE))
    with pytest.raises(ValueError):
        check_value([dt.date(2020, 1, 1), FarDate(DATE_INFINITY)], arrays, SNOW)


def test_text_override_is_postgresqls_text() -> None:
    text = override_type("text")
    assert convert(Decimal("NaN"), text) == "NaN"
    assert convert(Decimal("-Infinity"), text) == "-Infinity"
    assert convert(Decimal("1E-7"), text) == "0.0000001"
    assert convert(Decimal("1.50"), text) == "1.50"
    assert convert(FarDate(DATE_INFINITY), text) == "infinity"
    assert convert(FarDate(days_from_civil(-43, 3, 15)), text) == "0044-03-15 BC"
    assert convert(dt.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), text) == (
        "2020-01-02 03:04:05.000006+00"
    )
    assert pg_text(END_OF_DAY) == "24:00:00"
    assert pg_text(1.0) == "1" and pg_text(float("nan")) == "NaN"


def test_decimal_override_holds_what_fits_and_refuses_the_rest() -> None:
    wide = override_type("decimal(38,20)")
    assert wide == ColumnType(Kind.DECIMAL, precision=38, scale=20)
    assert convert(Decimal("0.00000000000000000001"), wide) == Decimal("1E-20")
    with pytest.raises(ValueError, match="does not fit"):
        convert(Decimal("1E-21"), wide)
    with pytest.raises(ValueError, match="can't be held"):
        convert(Decimal("NaN"), wide)
    assert override_problem(ColumnType(Kind.BYTES), wide) is not None
    assert override_problem(ColumnType(Kind.VARDECIMAL), wide) is None


def test_unfit_events_are_quarantined_with_the_reason_and_the_key_held_after() -> None:
    events = [
        ev(1, 0, amount=Decimal("1.5")),
        ev(2, 1, amount=Decimal("NaN")),
        ev(2, 2, amount=Decimal("2")),  # the same key: must wait behind the NaN
        ev(3, 3, amount=Decimal("3")),
    ]
    holding: set[str] = set()
    out = screen([batch(*events)], {}, caps=DUCK, holding=holding)
    assert [q.offset for q in out.quarantine] == [1]
    (check,) = out.quarantine[0].checks
    assert "column 'amount'" in check and "NaN" in check and "type: text" in check
    (kept,) = out.batches
    assert [e.origin.offset for e in kept.events] == [0, 2, 3]
    assert kept.target.quarantine  # the adapter holds key 2's later change behind it
    assert holding == {"prices"}
    later = screen([batch(ev(9, 9, amount=Decimal("9")))], {}, caps=DUCK, holding=holding)
    assert later.batches[0].target.quarantine  # and keeps holding in later batches


def test_override_applies_to_schema_and_values() -> None:
    overrides = {"amount": override_type("text")}
    fitted, unfit = fit_batch(
        batch(ev(1, 0, amount=Decimal("NaN")), ev(2, 1, amount=Decimal("1.50"))),
        overrides,
        SNOW,
    )
    assert not unfit
    assert fitted.schema.column("amount").type == ColumnType(Kind.TEXT)
    assert [e.after["amount"] for e in fitted.events if e.after] == ["NaN", "1.50"]
    assert all(e.schema.column("amount").type.kind is Kind.TEXT for e in fitted.events)


def test_capabilities_defaults_cover_postgresql() -> None:
    caps = Capabilities(transactional_ddl=True, max_decimal_precision=38, concurrent_readers=True)
    check_value(FarDate(days_from_civil(-4712, 1, 1)), ColumnType(Kind.DATE), caps)


def test_decimals_with_many_trailing_zeros_stage_exactly() -> None:
    """pyarrow 26 stages Decimal('5.000...0') with ~200 fractional zeros as 0 in a
    decimal128(38,10) column: such values are quantized exactly first."""
    from warehouse.arrow import column_array

    value = Decimal("5." + "0" * 200)
    staged = column_array(ColumnType(Kind.VARDECIMAL), [value, None], table="t", column="c")
    assert staged.to_pylist() == [Decimal("5.0000000000"), None]
    wide = column_array(
        ColumnType(Kind.DECIMAL, precision=7, scale=0),
        [Decimal("9999900." + "0" * 2046)],
        table="t",
        column="c",
    )
    assert wide.to_pylist() == [Decimal(9999900)]
