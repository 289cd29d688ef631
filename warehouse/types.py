"""Logical column types -> SQL types (sqlglot ``DataType``), and the widening rules.

Types are sqlglot expressions so every dialect renders its own spelling
(``exp.DataType.sql(dialect=...)``). The mapping follows DuckDB, whose type system is the
richest of our targets; an engine that lacks a type (e.g. Snowflake's INTERVAL) overrides
:func:`sql_type` for that kind.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.expressions.datatypes import DType

from cdc.model import ColumnType, Kind
from warehouse.base import IncompatibleSchemaChangeError, MetadataColumns

DT = DType

MAX_DECIMAL_PRECISION = 38
VARDECIMAL_PRECISION = 38  # unconstrained NUMERIC lands as DECIMAL(38, 10) by default
VARDECIMAL_SCALE = 10

_SIMPLE: dict[Kind, DType] = {
    Kind.INT16: DT.SMALLINT,
    Kind.INT32: DT.INT,
    Kind.INT64: DT.BIGINT,
    Kind.FLOAT32: DT.FLOAT,
    Kind.FLOAT64: DT.DOUBLE,
    Kind.BOOLEAN: DT.BOOLEAN,
    Kind.TEXT: DT.VARCHAR,
    Kind.ENUM: DT.VARCHAR,
    Kind.BYTES: DT.VARBINARY,
    Kind.DATE: DT.DATE,
    Kind.TIME: DT.TIME,
    Kind.TIMETZ: DT.TIMETZ,
    Kind.TIMESTAMP: DT.TIMESTAMP,
    Kind.TIMESTAMPTZ: DT.TIMESTAMPTZ,
    Kind.INTERVAL: DT.INTERVAL,
    Kind.UUID: DT.UUID,
    Kind.JSON: DT.JSON,
}

# Spellings of one type that parse to different sqlglot enums.
_SYNONYMS: dict[DType, DType] = {
    DT.TEXT: DT.VARCHAR,
    DT.CHAR: DT.VARCHAR,
    DT.NCHAR: DT.VARCHAR,
    DT.NVARCHAR: DT.VARCHAR,
    DT.TIMESTAMPNTZ: DT.TIMESTAMP,
    DT.DATETIME: DT.TIMESTAMP,
    DT.BLOB: DT.VARBINARY,
    DT.BINARY: DT.VARBINARY,
}
_INT_DIGITS: dict[DType, int] = {DT.SMALLINT: 5, DT.INT: 10, DT.BIGINT: 19}
_INT_ORDER = (DT.SMALLINT, DT.INT, DT.BIGINT)


def decimal_type(precision: int, scale: int) -> exp.DataType:
    """``DECIMAL(precision, scale)``."""
    return exp.DataType(
        this=DT.DECIMAL,
        expressions=[
            exp.DataTypeParam(this=exp.Literal.number(precision)),
            exp.DataTypeParam(this=exp.Literal.number(scale)),
        ],
    )


def array_of(element: exp.DataType) -> exp.DataType:
    """``element[]``."""
    return exp.DataType(this=DT.ARRAY, expressions=[element], nested=True)


def sql_type(ct: ColumnType) -> exp.DataType:
    """The SQL type of a logical column type. DECIMAL precision above 38 is refused."""
    if ct.kind is Kind.DECIMAL:
        precision, scale = ct.precision, ct.scale or 0
        if precision is None:
            return decimal_type(VARDECIMAL_PRECISION, VARDECIMAL_SCALE)
        if precision > MAX_DECIMAL_PRECISION:
            raise IncompatibleSchemaChangeError(
                f"decimal({precision},{scale}) exceeds the warehouse maximum precision "
                f"{MAX_DECIMAL_PRECISION}; declare the source column with a smaller precision "
                "or as unconstrained numeric"
            )
        return decimal_type(precision, scale)
    if ct.kind is Kind.VARDECIMAL:
        return decimal_type(VARDECIMAL_PRECISION, VARDECIMAL_SCALE)
    if ct.kind is Kind.ARRAY:
        if ct.element is None:
            raise IncompatibleSchemaChangeError("array type without an element type")
        return array_of(sql_type(ct.element))
    return exp.DataType(this=_SIMPLE[ct.kind])


def metadata_types(meta: MetadataColumns, soft_delete: bool) -> list[tuple[str, exp.DataType]]:
    """The metadata columns every mirror table carries (architecture.md §3)."""
    cols = [
        (meta.lsn, exp.DataType(this=DT.BIGINT)),
        (meta.txid, exp.DataType(this=DT.BIGINT)),
        (meta.op, exp.DataType(this=DT.VARCHAR)),
        (meta.source_ts, exp.DataType(this=DT.TIMESTAMPTZ)),
        (meta.loaded_at, exp.DataType(this=DT.TIMESTAMPTZ)),
        (meta.commit_lsn, exp.DataType(this=DT.BIGINT)),
    ]
    if soft_delete:
        cols.append((meta.deleted, exp.DataType(this=DT.BOOLEAN)))
    return cols


def base_type(dtype: exp.DataType) -> DType:
    """The type enum with synonyms folded (TEXT -> VARCHAR, TIMESTAMPNTZ -> TIMESTAMP...)."""
    t = dtype.this
    return _SYNONYMS.get(t, t) if isinstance(t, DType) else DT.UNKNOWN


def _params(dtype: exp.DataType) -> list[int]:
    return [int(p.name) for p in dtype.expressions if isinstance(p, exp.DataTypeParam)]


def _decimal_shape(dtype: exp.DataType) -> tuple[int, int] | None:
    """(integer digits, scale) of a DECIMAL or integer type, else None."""
    t = base_type(dtype)
    if t in _INT_DIGITS:
        return _INT_DIGITS[t], 0
    if t is DT.DECIMAL:
        params = _params(dtype) or [18, 3]  # DuckDB's default DECIMAL
        precision, scale = params[0], params[1] if len(params) > 1 else 0
        return precision - scale, scale
    return None


def same_type(a: exp.DataType, b: exp.DataType) -> bool:
    """Whether two SQL types are the same type (synonyms and spellings folded)."""
    if base_type(a) is not base_type(b):
        return False
    if base_type(a) is DT.ARRAY:
        return same_type(a.expressions[0], b.expressions[0])
    if base_type(a) is DT.VARCHAR:
        return _params(a) == _params(b)
    return _decimal_shape(a) == _decimal_shape(b)


def widen(table: str, column: str, old: exp.DataType, new: exp.DataType) -> exp.DataType | None:
    """The type to alter ``column`` to so it holds both ``old`` and ``new`` values.

    ``None`` when ``old`` already holds every ``new`` value (same type, or ``new`` narrower).
    Raises :class:`IncompatibleSchemaChangeError` when no lossless common type exists.
    """
    if same_type(old, new):
        return None
    bo, bn = base_type(old), base_type(new)
    if bo in _INT_DIGITS and bn in _INT_DIGITS:
        return new if _INT_ORDER.index(bn) > _INT_ORDER.index(bo) else None
    shape_old, shape_new = _decimal_shape(old), _decimal_shape(new)
    if shape_old is not None and shape_new is not None:
        digits = max(shape_old[0], shape_new[0])
        scale = max(shape_old[1], shape_new[1])
        if digits + scale <= MAX_DECIMAL_PRECISION:
            return None if (digits, scale) == shape_old else decimal_type(digits + scale, scale)
    elif bo is DT.FLOAT and bn is DT.DOUBLE:
        return new
    elif bo is DT.DOUBLE and bn is DT.FLOAT:
        return None
    elif bo is DT.VARCHAR and bn is DT.VARCHAR:
        lo, ln = _params(old), _params(new)
        if not lo:
            return None
        return new if not ln or ln[0] > lo[0] else None
    elif bo is DT.ARRAY and bn is DT.ARRAY:
        element = widen(table, column, old.expressions[0], new.expressions[0])
        return None if element is None else array_of(element)
    raise IncompatibleSchemaChangeError(
        f"table {table!r} column {column!r}: cannot change type {old.sql('duckdb')} to "
        f"{new.sql('duckdb')} without losing data; the table is parked. Add a new column at "
        "the source, or recreate the target table and re-snapshot it"
    )


def fetch_type(dtype: exp.DataType) -> exp.DataType | None:
    """The type to CAST a stored column to when reading it back as Arrow, or None if as is.

    UUID and JSON are read as text, TIMETZ as TIME in UTC (we always store offset +00).
    """
    t = base_type(dtype)
    if t in (DT.UUID, DT.JSON):
        return exp.DataType(this=DT.VARCHAR)
    if t is DT.TIMETZ:
        return exp.DataType(this=DT.TIME)
    if t is DT.ARRAY and dtype.expressions:  # (Snowflake's ARRAY is untyped)
        element = fetch_type(dtype.expressions[0])
        return None if element is None else array_of(element)
    return None
