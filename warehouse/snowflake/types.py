"""Snowflake column types of the model's logical types.

Types (:func:`snowflake_type`)
------------------------------
=============  =====================  =====================================================
Kind           Snowflake              note
=============  =====================  =====================================================
INT16/32/64    NUMBER(5/10/19, 0)     exact digit counts, so ``types.widen`` works unchanged
DECIMAL(p,s)   NUMBER(p, s)           p > 38 is refused (IncompatibleSchemaChangeError)
VARDECIMAL     NUMBER(38, 10)         like DuckDB; values checked by ``arrow.column_array``
FLOAT32/64     FLOAT (as DOUBLE)      Snowflake FLOAT is a 64-bit double; rendered DOUBLE,
                                      its synonym, because sqlglot parses the FLOAT that
                                      Snowflake reports back as DOUBLE (stable round trip)
BOOLEAN        BOOLEAN
TEXT, ENUM     VARCHAR                unbounded: Snowflake stores by content, widening free
UUID           VARCHAR                its canonical text (Snowflake has no UUID type)
BYTES          BINARY                 at most 8 MB a value on Snowflake
DATE           DATE
TIME           TIME(6)
TIMETZ         TIME(6), in UTC        Snowflake has no time with a zone. Debezium sends
                                      TIMETZ normalised to UTC, and the model holds it with
                                      tzinfo=UTC, so a UTC TIME is lossless and stays
                                      comparable and sortable (VARCHAR would be neither).
                                      Readers put tzinfo=UTC back.
TIMESTAMP      TIMESTAMP_NTZ(6)       rendered TIMESTAMPNTZ(6), a documented synonym
TIMESTAMPTZ    TIMESTAMP_TZ(6)        rendered TIMESTAMPTZ(6); instants are staged in UTC
INTERVAL       VARIANT                ``{"months": m, "days": d, "micros": us}``. Snowflake
                                      has no INTERVAL column type. PostgreSQL's three parts
                                      are independent (a month is not 30 days), so one
                                      number or an ISO-8601 string would lose or hide them;
                                      the object keeps them exact and each part queryable
                                      (``c:months::INT``).
JSON           VARIANT                Snowflake normalises the text (whitespace, key
                                      order): compare parsed values, not text.
ARRAY          ARRAY                  untyped. Elements become JSON values: numbers
                                      stay numbers, DECIMAL elements become strings (exact),
                                      dates/times/timestamps ISO strings, bytes hex, UUIDs
                                      text, intervals objects as above.
=============  =====================  =====================================================

"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlglot import exp

from cdc.model import ColumnType, Kind
from warehouse.base import IncompatibleSchemaChangeError
from warehouse.types import (
    DT,
    MAX_DECIMAL_PRECISION,
    VARDECIMAL_PRECISION,
    VARDECIMAL_SCALE,
    widen,
)

DIALECT = "snowflake"


def number(precision: int, scale: int) -> exp.DataType:
    """``NUMBER(precision, scale)`` (rendered by sqlglot as its synonym DECIMAL)."""
    return exp.DataType(
        this=DT.DECIMAL,
        expressions=[
            exp.DataTypeParam(this=exp.Literal.number(precision)),
            exp.DataTypeParam(this=exp.Literal.number(scale)),
        ],
    )


def _with_precision(t: DT, precision: int) -> exp.DataType:
    return exp.DataType(this=t, expressions=[exp.DataTypeParam(this=exp.Literal.number(precision))])


def time6() -> exp.DataType:
    return _with_precision(DT.TIME, 6)


def timestamp_ntz6() -> exp.DataType:
    return _with_precision(DT.TIMESTAMPNTZ, 6)


def timestamp_tz6() -> exp.DataType:
    return _with_precision(DT.TIMESTAMPTZ, 6)


def _simple(t: DT) -> Callable[[], exp.DataType]:
    return lambda: exp.DataType(this=t)


_TYPES: dict[Kind, Callable[[], exp.DataType]] = {
    Kind.INT16: lambda: number(5, 0),
    Kind.INT32: lambda: number(10, 0),
    Kind.INT64: lambda: number(19, 0),
    Kind.VARDECIMAL: lambda: number(VARDECIMAL_PRECISION, VARDECIMAL_SCALE),
    Kind.FLOAT32: _simple(DT.DOUBLE),
    Kind.FLOAT64: _simple(DT.DOUBLE),
    Kind.BOOLEAN: _simple(DT.BOOLEAN),
    Kind.TEXT: _simple(DT.VARCHAR),
    Kind.ENUM: _simple(DT.VARCHAR),
    Kind.UUID: _simple(DT.VARCHAR),
    Kind.BYTES: _simple(DT.BINARY),
    Kind.DATE: _simple(DT.DATE),
    Kind.TIME: time6,
    Kind.TIMETZ: time6,
    Kind.TIMESTAMP: timestamp_ntz6,
    Kind.TIMESTAMPTZ: timestamp_tz6,
    Kind.INTERVAL: _simple(DT.VARIANT),
    Kind.JSON: _simple(DT.VARIANT),
    Kind.ARRAY: _simple(DT.ARRAY),
}


def snowflake_type(ct: ColumnType) -> exp.DataType:
    """The Snowflake column type of a logical type (table in the module docstring)."""
    if ct.kind is Kind.DECIMAL and ct.precision is not None:
        precision, scale = ct.precision, ct.scale or 0
        if precision > MAX_DECIMAL_PRECISION:
            raise IncompatibleSchemaChangeError(
                f"decimal({precision},{scale}) exceeds Snowflake's maximum precision "
                f"{MAX_DECIMAL_PRECISION}; declare the source column with a smaller precision "
                "or as unconstrained numeric"
            )
        return number(precision, scale)
    if ct.kind is Kind.DECIMAL:
        return number(VARDECIMAL_PRECISION, VARDECIMAL_SCALE)
    if ct.kind is Kind.ARRAY and ct.element is None:
        raise IncompatibleSchemaChangeError("array type without an element type")
    return _TYPES[ct.kind]()


def render_type(dtype: exp.DataType) -> str:
    return dtype.sql(dialect=DIALECT)


def stored_type(data_type: str, precision: Any, scale: Any, length: Any) -> exp.DataType:
    """The sqlglot type of an information_schema column (Snowflake's reported spelling)."""
    name = data_type.upper()
    if name in ("NUMBER", "DECIMAL", "NUMERIC"):
        return number(int(precision or 38), int(scale or 0))
    if name in ("TEXT", "VARCHAR", "STRING"):
        # Snowflake stores by content: every VARCHAR this adapter creates is unbounded
        return exp.DataType(this=DT.VARCHAR)
    if name in ("FLOAT", "DOUBLE", "REAL", "FLOAT8"):
        return exp.DataType(this=DT.DOUBLE)
    try:
        return exp.DataType.build(name, dialect=DIALECT)
    except Exception as exc:  # sqlglot raises several types for an unknown type name
        raise IncompatibleSchemaChangeError(
            f"column type {data_type} is not understood by this adapter; fix the table by hand"
        ) from exc


_LOOSE = {DT.ARRAY: DT.VARIANT}  # fakesnow reports ARRAY columns as VARIANT


def widen_stored(
    table: str, name: str, old: exp.DataType, new: exp.DataType
) -> exp.DataType | None:
    """The type to ALTER a stored column to, or None (``types.widen`` for numbers/text)."""
    bo, bn = old.this, new.this
    if bo is DT.DECIMAL and bn is DT.DECIMAL:
        wider = widen(table, name, old, new)
        if wider is None:
            return None
        p, s = (int(x.this.name) for x in wider.expressions)
        old_scale = int(old.expressions[1].this.name) if len(old.expressions) > 1 else 0
        if s != old_scale:
            # Snowflake's ALTER COLUMN can raise a NUMBER's precision but never change its
            # scale (fakesnow accepts it; don't let it decide)
            raise IncompatibleSchemaChangeError(
                f"table {table!r} column {name!r}: the source changed {old.sql(DIALECT)} to "
                f"{new.sql(DIALECT)}; Snowflake can't change the scale of a NUMBER column, so "
                "the table is parked. Recreate the target table with the new type and "
                "re-snapshot it, or add a new column at the source",
                table=table,
            )
        return number(min(p, MAX_DECIMAL_PRECISION), s)
    if bo == bn or _LOOSE.get(bn) == bo:
        return None
    if {bo, bn} <= {DT.TIMESTAMPNTZ, DT.TIMESTAMP}:
        return None
    raise IncompatibleSchemaChangeError(
        f"table {table!r} column {name!r}: cannot change type {old.sql(DIALECT)} to "
        f"{new.sql(DIALECT)} without losing data; the table is parked. Add a new column at "
        "the source, or recreate the target table and re-snapshot it",
        table=table,
    )
