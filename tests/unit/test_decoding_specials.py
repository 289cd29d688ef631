"""Issue 17: special values arrive exactly, or the decoder says why it can't.

The encodings below are what Debezium 3.6 sent on the real chain (PostgreSQL 18, pgoutput,
``decimal.handling.mode=string``, ``include.unknown.datatypes=true``), captured while building
the type matrix (tests/integration/test_type_matrix.py).
"""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from test_decoding_values import col, decode_one, src, type_of

from cdc.decoding.values import DecodeError
from cdc.model import (
    DATE_INFINITY,
    END_OF_DAY,
    TIMESTAMP_INFINITY,
    ColumnType,
    FarDate,
    FarTimestamp,
    Kind,
    days_from_civil,
)

DAY_US = 86_400_000_000


def numeric(params: dict[str, str]) -> dict[str, Any]:
    return col("v", "string", params=params)


def test_numeric_specials_arrive_as_decimal_specials_never_null() -> None:
    """Point 2: with decimal.handling.mode=precise, Debezium sends NaN and ±Infinity as NULL.
    In string mode they arrive as NAN / POSITIVE_INFINITY / NEGATIVE_INFINITY."""
    column = numeric({**src("NUMERIC", "0")})
    assert type_of(column) == ColumnType(Kind.VARDECIMAL, source_type="NUMERIC")
    assert decode_one(column, "NAN").is_nan()
    assert decode_one(column, "POSITIVE_INFINITY") == Decimal("Infinity")
    assert decode_one(column, "NEGATIVE_INFINITY") == Decimal("-Infinity")
    assert decode_one(column, "1.50") == Decimal("1.50")
    tiny = "0." + "0" * 199 + "1"
    assert decode_one(column, tiny) == Decimal("1E-200")
    huge = "1" * 50 + ".000000000000000000001"
    assert decode_one(column, huge) == Decimal(huge)


def test_constrained_numeric_text_is_checked_against_its_declaration() -> None:
    column = numeric({**src("NUMERIC", "5"), "__debezium.source.column.scale": "2"})
    assert type_of(column) == ColumnType(Kind.DECIMAL, precision=5, scale=2, source_type="NUMERIC")
    assert decode_one(column, "-999.99") == Decimal("-999.99")
    with pytest.raises(DecodeError, match=r"does not fit numeric\(5,2\)"):
        decode_one(column, "1000.00")
    with pytest.raises(DecodeError, match="numeric text"):
        decode_one(column, "12,5")


def test_money_as_text_is_a_19_digit_decimal() -> None:
    """Point 1 (string mode): money has no usable precision in its schema."""
    column = numeric({**src("MONEY", "2147483647"), "__debezium.source.column.scale": "0"})
    assert type_of(column) == ColumnType(Kind.DECIMAL, precision=19, scale=2, source_type="MONEY")
    assert decode_one(column, "-92233720368547758.08") == Decimal("-92233720368547758.08")


def test_timestamp_infinities_and_bc() -> None:
    """Point 3: infinity and BC timestamps decode (they used to dead-letter the row)."""
    micro = col("v", "int64", "io.debezium.time.MicroTimestamp")
    assert decode_one(micro, 9223372036825200000) == FarTimestamp(TIMESTAMP_INFINITY, False)
    assert decode_one(micro, -9223372036832400000) == FarTimestamp(-TIMESTAMP_INFINITY, False)
    bc = decode_one(micro, -62167219200000000)  # '0001-01-01 00:00:00 BC'
    assert bc == FarTimestamp(days_from_civil(0, 1, 1) * DAY_US, False)
    assert str(bc) == "0001-01-01 00:00:00 BC"
    assert decode_one(micro, 0) == dt.datetime(1970, 1, 1)
    millis = col("v", "int64", "io.debezium.time.Timestamp")
    assert decode_one(millis, -9223372036832400) == FarTimestamp(-TIMESTAMP_INFINITY, False)
    assert str(decode_one(millis, -210863520000000)) == "4713-01-01 00:00:00 BC"


def test_zoned_timestamp_infinities_bc_and_far_years() -> None:
    zoned = col("v", "string", "io.debezium.time.ZonedTimestamp")
    assert decode_one(zoned, "infinity") == FarTimestamp(TIMESTAMP_INFINITY, True)
    assert decode_one(zoned, "-infinity") == FarTimestamp(-TIMESTAMP_INFINITY, True)
    ides = decode_one(zoned, "-0043-03-15T12:00:00.000000Z")
    assert str(ides) == "0044-03-15 12:00:00+00 BC"
    far = decode_one(zoned, "+12345-01-01T00:00:00.5Z")
    assert far == FarTimestamp(days_from_civil(12345, 1, 1) * DAY_US + 500_000, True)
    assert decode_one(zoned, "2020-01-01T00:00:00.000001Z") == dt.datetime(
        2020, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC
    )


def test_dates_bc_far_and_debeziums_infinity_day_numbers() -> None:
    date = col("v", "int32", "io.debezium.time.Date")
    assert decode_one(date, -719162) == dt.date(1, 1, 1)
    assert str(decode_one(date, -719163)) == "0001-12-31 BC"
    assert decode_one(date, 2145042905) == FarDate(days_from_civil(5874897, 12, 31))
    # Debezium 3.6's day numbers for 'infinity' / '-infinity' (snapshot, then streaming)
    assert decode_one(date, -622191234) == FarDate(DATE_INFINITY)
    assert decode_one(date, -625821272) == FarDate(-DATE_INFINITY)
    assert decode_one(date, -2147472692) == FarDate(DATE_INFINITY)
    assert decode_one(date, -2147472691) == FarDate(-DATE_INFINITY)
    with pytest.raises(DecodeError, match="outside PostgreSQL's range"):
        decode_one(date, -622191235)


def test_time_of_day_24_00() -> None:
    assert decode_one(col("v", "int64", "io.debezium.time.MicroTime"), DAY_US) is END_OF_DAY


def test_unknown_types_arrive_as_their_text() -> None:
    """include.unknown.datatypes=true: composites, multiranges, geometric types, tsquery,
    pg_lsn... arrive as their PostgreSQL text in bytes; without it the column is left out."""
    box = col("v", "bytes", params=src("BOX"))
    assert type_of(box) == ColumnType(Kind.TEXT, source_type="BOX")
    # a snapshot read renders a box through the JDBC driver's objects: its numbers are
    # printed as PostgreSQL prints them, the same text a streamed change carries
    assert decode_one(box, base64.b64encode(b"(1.0,1.0),(0.0,0.0)").decode()) == "(1,1),(0,0)"
    tsquery = col("v", "bytes", params=src("TSQUERY"))
    assert decode_one(tsquery, base64.b64encode(b"'fat' & 'rat'").decode()) == "'fat' & 'rat'"
    boxes = col("v", "array", params=src("_BOX"), items={"type": "bytes", "optional": False})
    assert str(type_of(boxes)) == "text[]"
    assert decode_one(boxes, [base64.b64encode(b"(1,2),(0,0)").decode()]) == ["(1,2),(0,0)"]
    raw = col("v", "bytes", params=src("BYTEA"))
    assert decode_one(raw, base64.b64encode(b"\x00\xff").decode()) == b"\x00\xff"


def test_points_and_vectors_as_postgresql_text() -> None:
    point = col("v", "struct", "io.debezium.data.geometry.Point", params=src("POINT"))
    value = {"x": 1.0, "y": -2.5, "wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "srid": None}
    assert decode_one(point, value) == "(1,-2.5)"
    vector = col(
        "v",
        "array",
        "io.debezium.data.DoubleVector",
        params=src("VECTOR"),
        items={"type": "double", "optional": False},
    )
    assert decode_one(vector, [1.0, 2.5, -0.5]) == "[1,2.5,-0.5]"


@pytest.mark.parametrize("source_type", ["INT2VECTOR", "_INTERVAL", "_TIME", "_BIT", "_MONEY"])
def test_types_debezium_loses_are_refused_with_the_reason(source_type: str) -> None:
    column = col("v", "array", params=src(source_type), items={"type": "int16", "optional": True})
    with pytest.raises(DecodeError, match="can't be replicated exactly"):
        type_of(column)


def test_negative_scale_numerics_are_integers_of_p_plus_s_digits() -> None:
    """numeric(5,-2) (PostgreSQL 15+): the JDBC driver reports the scale as 2046 (11-bit two's
    complement) and Debezium sends the value with that many zeros after the point."""
    column = numeric({**src("NUMERIC", "5"), "__debezium.source.column.scale": "2046"})
    assert type_of(column) == ColumnType(Kind.DECIMAL, precision=7, scale=0, source_type="NUMERIC")
    assert decode_one(column, "9999900." + "0" * 2046) == Decimal(9999900)
    with pytest.raises(DecodeError, match="does not fit"):
        decode_one(column, "10000000")


def test_bit1_arrives_as_a_boolean_and_lands_as_its_bit_string() -> None:
    column = col("v", "boolean", params=src("BIT", "1"))
    assert type_of(column) == ColumnType(Kind.TEXT, source_type="BIT")
    assert [decode_one(column, b) for b in (True, False)] == ["1", "0"]


def test_sparse_vectors_as_pgvector_text() -> None:
    column = col("v", "struct", "io.debezium.data.SparseDoubleVector", params=src("SPARSEVEC"))
    value = {"dimensions": 5, "vector": {"3": -2.0, "1": 1.5}}
    assert decode_one(column, value) == "{1:1.5,3:-2}/5"
    # what Debezium 3.6 sends: the map as [index, value] pairs
    pairs = {"dimensions": 5, "vector": [[1, 1.5], [3, -2.0]]}
    assert decode_one(column, pairs) == "{1:1.5,3:-2}/5"
