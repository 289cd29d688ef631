"""Checksum and range statements for reconciliation, one builder per statement, per dialect.

Reconciliation (``cdc.reconcile``) compares a source table with its warehouse copy without
fetching either: both engines compute, over a key range, ``COUNT(*)`` and the ``SUM`` of a
per-row hash, and only ranges whose figures differ are narrowed down. For the sums to agree,
every engine must render each value as the same **canonical text**. The hash of a row is the
first 60 bits of ``MD5`` of its columns' canonical texts, separated by ``,`` (NULL is ``~``;
text-like values carry a ``<length>:`` prefix so no separator can be faked). ``SUM`` over
60-bit integers is exact on every engine (NUMERIC, HUGEINT, NUMBER(38)).

Canonical text per :class:`~cdc.model.Kind` (the same on PostgreSQL, DuckDB and Snowflake):

=============  ==========================================  ======================================
Kind           canonical text                              note
=============  ==========================================  ======================================
INT16/32/64    the decimal number
DECIMAL(p,s)   the number cast to DECIMAL(38, s)           ``1.50`` for numeric(12,2), exact;
                                                           PostgreSQL: a value that doesn't fit
                                                           it (NaN, ±Infinity, more digits) is
                                                           ``!<text>``, never rounded
VARDECIMAL     the number cast to DECIMAL(38, 10)          the warehouse's type for it (same)
FLOAT64        the shortest round-trip text                as PostgreSQL ≥ 12 prints it (no
                                                           ``.0`` on an integral value)
FLOAT32        the value as a double, shortest text        Snowflake stores it as a double
BOOLEAN        ``t`` / ``f``
TEXT, ENUM     ``<length>:<text>``                         enum as its label, char(n) padded
BYTES          lower-case hex
DATE           days since 1970-01-01 (negative BC)         ``infinity`` / ``-infinity``
TIME           µs since midnight                           24:00:00 is 86400000000
TIMETZ         µs since midnight in UTC                    the warehouse keeps it in UTC
TIMESTAMP(TZ)  µs since 1970-01-01 (UTC for TZ)            ``infinity`` / ``-infinity``
INTERVAL       ``<months>:<days>:<µs>``                    the three parts, none folded
UUID           the canonical lower-case text
JSON           ``<length>:<text>`` as PostgreSQL prints     **Snowflake: NULL-ness only** (its
                                                           VARIANT normalises the text)
ARRAY          int/text/boolean elements: ``<length>:``    other elements: **the element count
               + the JSON array text                       only** (their JSON forms differ)
=============  ==========================================  ======================================

The two weaker renderings (marked bold) are documented limits: a difference there is not seen by
the checksum. Rows that are fetched anyway (differing ranges) are compared in full in Python
(``cdc.compare``), so such a difference is found whenever its range differs for another reason.

The PostgreSQL side reads each column in the form the warehouse stores it (``cdc.reconcile.source``:
a column override's type, PostgreSQL's printed text of types stored as TEXT, money as numeric),
so the renderings above apply to both sides alike. Infinite dates and timestamps exist on
PostgreSQL and DuckDB only (Snowflake can't hold them: such values are quarantined).

Key ranges are half-open ``[lo, hi)`` over the key columns in lexicographic order; text keys
compare by code point on every engine (``COLLATE "C"`` on PostgreSQL), so a range holds the
same keys on both sides. Values are bound parameters, never SQL text.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal

from sqlglot import exp, parse_one

from cdc.model import Column, ColumnType, Kind
from warehouse.base import KeyRange, TableTarget
from warehouse.sql import TableRef, col, ident
from warehouse.sql.clauses import is_null

Dialect = Literal["postgres", "duckdb", "snowflake"]
HASH_BITS = 60
NULL_TEXT = "~"
_X = "__x__"

# value -> canonical text, per dialect ("__x__" stands for the column)
_DAYS = "CAST(__x__ - CAST('1970-01-01' AS DATE) AS VARCHAR)"
_COMMON: dict[Kind, str] = {
    Kind.INT16: "CAST(__x__ AS VARCHAR)",
    Kind.INT32: "CAST(__x__ AS VARCHAR)",
    Kind.INT64: "CAST(__x__ AS VARCHAR)",
    Kind.FLOAT64: "CAST(__x__ AS VARCHAR)",
    Kind.FLOAT32: "CAST(CAST(__x__ AS DOUBLE) AS VARCHAR)",
    Kind.BOOLEAN: "CASE WHEN __x__ THEN 't' WHEN NOT __x__ THEN 'f' END",
    Kind.TEXT: "CAST(__x__ AS VARCHAR)",
    Kind.ENUM: "CAST(__x__ AS VARCHAR)",
    Kind.UUID: "CAST(__x__ AS VARCHAR)",
    Kind.JSON: "CAST(__x__ AS VARCHAR)",
    Kind.DATE: _DAYS,
}
# DuckDB prints an integral double as "1.0", PostgreSQL as "1"
_NO_POINT_ZERO = "REGEXP_REPLACE({}, '[.]0$', '')"
_PG_EPOCH_US = "CAST(CAST(EXTRACT(EPOCH FROM {}) * 1000000 AS BIGINT) AS VARCHAR)"
# 'infinity' / '-infinity' as the engine prints them (days and epochs overflow or fail on them)
_FINITE = "CASE WHEN ISFINITE(__x__) THEN {} ELSE CAST(__x__ AS VARCHAR) END"
_BY_DIALECT: dict[str, dict[Kind, str]] = {
    "postgres": {
        Kind.BYTES: "ENCODE(__x__, 'hex')",
        Kind.TIME: _PG_EPOCH_US.format("__x__"),
        Kind.TIMETZ: _PG_EPOCH_US.format("CAST(__x__ AT TIME ZONE 'UTC' AS TIME)"),
        Kind.DATE: _FINITE.format(_DAYS),
        Kind.TIMESTAMP: _FINITE.format(_PG_EPOCH_US.format("__x__")),
        Kind.TIMESTAMPTZ: _FINITE.format(_PG_EPOCH_US.format("__x__")),
        Kind.INTERVAL: "CAST(CAST(EXTRACT(YEAR FROM __x__) * 12 + EXTRACT(MONTH FROM __x__) AS "
        "BIGINT) AS VARCHAR) || ':' || CAST(CAST(EXTRACT(DAY FROM __x__) AS BIGINT) AS VARCHAR)"
        " || ':' || CAST(CAST(EXTRACT(HOUR FROM __x__) * 3600000000 + EXTRACT(MINUTE FROM __x__)"
        " * 60000000 + EXTRACT(MICROSECONDS FROM __x__) AS BIGINT) AS VARCHAR)",
    },
    "duckdb": {
        Kind.FLOAT64: _NO_POINT_ZERO.format("CAST(__x__ AS VARCHAR)"),
        Kind.FLOAT32: _NO_POINT_ZERO.format("CAST(CAST(__x__ AS DOUBLE) AS VARCHAR)"),
        Kind.BYTES: "LOWER(HEX(__x__))",
        Kind.TIME: "CAST(EPOCH_US(__x__) AS VARCHAR)",
        Kind.TIMETZ: "CAST(EPOCH_US(CAST(__x__ AS TIME)) AS VARCHAR)",
        Kind.DATE: _FINITE.format(_DAYS),
        Kind.TIMESTAMP: _FINITE.format("CAST(EPOCH_US(__x__) AS VARCHAR)"),
        Kind.TIMESTAMPTZ: _FINITE.format("CAST(EPOCH_US(__x__) AS VARCHAR)"),
        Kind.INTERVAL: "CAST(DATE_PART('year', __x__) * 12 + DATE_PART('month', __x__) AS VARCHAR)"
        " || ':' || CAST(DATE_PART('day', __x__) AS VARCHAR) || ':' || CAST(CAST(DATE_PART('hour',"
        " __x__) AS BIGINT) * 3600000000 + CAST(DATE_PART('minute', __x__) AS BIGINT) * 60000000"
        " + DATE_PART('microseconds', __x__) AS VARCHAR)",
    },
    "snowflake": {
        Kind.FLOAT64: _NO_POINT_ZERO.format("CAST(__x__ AS VARCHAR)"),
        Kind.FLOAT32: _NO_POINT_ZERO.format("CAST(CAST(__x__ AS DOUBLE) AS VARCHAR)"),
        Kind.TIME: "CAST(DATEDIFF(MICROSECOND, CAST('00:00:00' AS TIME), __x__) AS VARCHAR)",
        Kind.TIMETZ: "CAST(DATEDIFF(MICROSECOND, CAST('00:00:00' AS TIME), __x__) AS VARCHAR)",
        Kind.TIMESTAMP: "CAST(DATE_PART(epoch_microsecond, __x__) AS VARCHAR)",
        Kind.TIMESTAMPTZ: "CAST(DATE_PART(epoch_microsecond, __x__) AS VARCHAR)",
        Kind.INTERVAL: "CAST(CAST(GET(__x__, 'months') AS BIGINT) AS VARCHAR) || ':' || "
        "CAST(CAST(GET(__x__, 'days') AS BIGINT) AS VARCHAR) || ':' || "
        "CAST(CAST(GET(__x__, 'micros') AS BIGINT) AS VARCHAR)",
    },
}
_JSON_ARRAY = {
    "postgres": "CAST(ARRAY_TO_JSON(__x__) AS VARCHAR)",
    "duckdb": "CAST(TO_JSON(__x__) AS VARCHAR)",
    "snowflake": "CAST(TO_JSON(__x__) AS VARCHAR)",
}
_ARRAY_SIZE = {
    "postgres": "CAST(CARDINALITY(__x__) AS VARCHAR)",
    "duckdb": "CAST(LENGTH(__x__) AS VARCHAR)",
    "snowflake": "CAST(ARRAY_SIZE(__x__) AS VARCHAR)",
}
# PostgreSQL: a numeric DECIMAL(38, s) can't hold exactly (NaN, ±Infinity, more digits) is
# '!' and its text (a CAST would round it or fail with "numeric field overflow"); a warehouse
# DECIMAL always holds its value, so its side needs no guard
_PG_DECIMAL = (
    "CASE WHEN CAST(__x__ AS NUMERIC) = ROUND(CAST(__x__ AS NUMERIC), {scale}) AND "
    "ABS(CAST(__x__ AS NUMERIC)) < {limit} THEN CAST(CAST(__x__ AS DECIMAL(38, {scale})) AS "
    "VARCHAR) ELSE '!' || CAST(CAST(__x__ AS NUMERIC) AS VARCHAR) END"
)
_JSON_ELEMENTS = frozenset({Kind.INT16, Kind.INT32, Kind.INT64, Kind.TEXT, Kind.BOOLEAN})
_PREFIXED = frozenset({Kind.TEXT, Kind.ENUM, Kind.JSON, Kind.ARRAY})


@functools.cache
def _template(text: str, dialect: str) -> exp.Expr:
    return parse_one(text, read=dialect)


def _fill(text: str, dialect: str, value: exp.Expr) -> exp.Expr:
    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.name == _X and not node.table:
            return value.copy()
        return node

    return _template(text, dialect).copy().transform(swap)


def weak(ct: ColumnType, dialect: Dialect) -> bool:
    """Whether the checksum sees less than the whole value of a column of this type, when one
    side is ``dialect`` (the other side renders the same weaker text)."""
    if ct.kind is Kind.JSON:
        return dialect == "snowflake"
    if ct.kind is Kind.ARRAY:
        return ct.element is None or ct.element.kind not in _JSON_ELEMENTS
    return False


def _hex_bytes(value: exp.Expr, dialect: Dialect) -> exp.Expr:
    # HEX_ENCODE(x, 0): lower case; built as a plain call (sqlglot would rewrite LOWER(HEX))
    return exp.Anonymous(this="HEX_ENCODE", expressions=[value, exp.Literal.number(0)])


def canonical(
    ct: ColumnType, value: exp.Expr, dialect: Dialect, peer: Dialect | None = None
) -> exp.Expr:
    """The canonical text of a value of type ``ct`` (NULL for NULL), see the module table.
    ``peer``: the engine compared with, whose weaker renderings this side must use too."""
    kind = ct.kind
    if kind is Kind.JSON and "snowflake" in (dialect, peer):
        text: exp.Expr = exp.Case(
            ifs=[exp.If(this=exp.Not(this=is_null(value)), true=exp.Literal.string("j"))]
        )
    elif kind is Kind.ARRAY:
        json_elements = ct.element is not None and ct.element.kind in _JSON_ELEMENTS
        text = _fill((_JSON_ARRAY if json_elements else _ARRAY_SIZE)[dialect], dialect, value)
    elif kind is Kind.BYTES and dialect == "snowflake":
        text = _hex_bytes(value, dialect)
    elif kind in (Kind.DECIMAL, Kind.VARDECIMAL):
        scale = (ct.scale or 0) if kind is Kind.DECIMAL and ct.precision is not None else 10
        if dialect == "postgres":
            limit = "1" + "0" * (38 - scale)
            text = _fill(_PG_DECIMAL.format(scale=scale, limit=limit), dialect, value)
        else:
            as_decimal = exp.DataType.build(f"DECIMAL(38, {scale})")
            text = exp.Cast(
                this=exp.Cast(this=value, to=as_decimal), to=exp.DataType.build("VARCHAR")
            )
    else:
        template = _BY_DIALECT[dialect].get(kind) or _COMMON[kind]
        text = _fill(template, dialect, value)
    if kind in _PREFIXED:
        length = exp.Cast(this=exp.Length(this=text.copy()), to=exp.DataType.build("VARCHAR"))
        text = exp.DPipe(
            this=exp.DPipe(this=length, expression=exp.Literal.string(":")), expression=text
        )
    return text


def row_text(
    columns: Sequence[Column],
    dialect: Dialect,
    present: set[str] | None,
    peer: Dialect | None = None,
) -> exp.Expr:
    """Every column's canonical text (``~`` for NULL), joined by ``,``. A column the table
    doesn't have (``present`` given and without it) counts as NULL."""
    parts: list[exp.Expr] = []
    for c in columns:
        if present is not None and c.name not in present:
            parts.append(exp.Literal.string(NULL_TEXT))
            continue
        value = canonical(c.type, col(c.name), dialect, peer)
        parts.append(exp.Coalesce(this=value, expressions=[exp.Literal.string(NULL_TEXT)]))
    text = parts[0]
    for part in parts[1:]:
        text = exp.DPipe(
            this=exp.DPipe(this=text, expression=exp.Literal.string(",")), expression=part
        )
    return text


def hash_int(md5_hex: exp.Expr, dialect: Dialect) -> exp.Expr:
    """The first 60 bits of an MD5 hex text as a non-negative integer."""
    digits = HASH_BITS // 4
    head = exp.Substring(
        this=md5_hex, start=exp.Literal.number(1), length=exp.Literal.number(digits)
    )
    if dialect == "postgres":
        bits = exp.Cast(
            this=exp.DPipe(this=exp.Literal.string("x"), expression=head),
            to=exp.DataType.build(f"BIT({HASH_BITS})", dialect="postgres"),
        )
        return exp.Cast(this=bits, to=exp.DataType.build("BIGINT"))
    if dialect == "duckdb":
        return exp.Cast(
            this=exp.DPipe(this=exp.Literal.string("0x"), expression=head),
            to=exp.DataType.build("BIGINT"),
        )
    # Snowflake: TO_NUMBER(.., 'XXX') is not on fakesnow and CAST('0x..') is not on
    # Snowflake, so the digits are summed (portable, and the engine is parallel anyway)
    total: exp.Expr | None = None
    for i in range(digits):
        digit = exp.Sub(
            this=exp.Anonymous(
                this="CHARINDEX",
                expressions=[
                    exp.Substring(
                        this=md5_hex.copy(),
                        start=exp.Literal.number(i + 1),
                        length=exp.Literal.number(1),
                    ),
                    exp.Literal.string("0123456789abcdef"),
                ],
            ),
            expression=exp.Literal.number(1),
        )
        term = exp.Mul(this=exp.paren(digit), expression=exp.Literal.number(16 ** (digits - 1 - i)))
        total = term if total is None else exp.Add(this=total, expression=term)
    assert total is not None
    return exp.Cast(this=total, to=exp.DataType.build("BIGINT"))


# ---- ranges -------------------------------------------------------------------------------


def key_expr(c: Column, dialect: Dialect) -> exp.Expr:
    """A key column as compared in ranges: text by code point on every engine."""
    if dialect == "postgres" and c.type.kind in (Kind.TEXT, Kind.ENUM):
        as_text = exp.Cast(this=col(c.name), to=exp.DataType.build("TEXT"))
        return exp.Collate(this=as_text, expression=ident("C"))
    return col(c.name)


def _bound(
    keys: Sequence[exp.Expr], values: Sequence[Any], upper: bool
) -> tuple[exp.Expr, list[Any]]:
    """``keys >= values`` (``upper``: ``keys < values``) in lexicographic order, and its
    binds in text order."""
    last = len(keys) - 1

    def at(i: int) -> tuple[exp.Expr, list[Any]]:
        k = keys[i].copy()
        if i == last:
            cmp: exp.Expr = exp.LT if upper else exp.GTE  # type: ignore[assignment]
            return cmp(this=k, expression=exp.Placeholder()), [values[i]]  # type: ignore[operator]
        strict = (
            exp.LT(this=k, expression=exp.Placeholder())
            if upper
            else exp.GT(this=k, expression=exp.Placeholder())
        )
        rest, rest_params = at(i + 1)
        same = exp.and_(exp.EQ(this=keys[i].copy(), expression=exp.Placeholder()), rest)
        return exp.or_(strict, exp.paren(same)), [values[i], values[i], *rest_params]

    return at(0)


def range_condition(keys: Sequence[exp.Expr], rng: KeyRange) -> tuple[exp.Expr | None, list[Any]]:
    """The filter of a key range (None: the whole table) and its binds."""
    conds: list[exp.Expr] = []
    params: list[Any] = []
    if rng.lo is not None:
        cond, p = _bound(keys, rng.lo, upper=False)
        conds.append(exp.paren(cond))
        params += p
    if rng.hi is not None:
        cond, p = _bound(keys, rng.hi, upper=True)
        conds.append(exp.paren(cond))
        params += p
    return (exp.and_(*conds) if conds else None), params


def live_condition(target: TableTarget, present: set[str]) -> exp.Expr | None:
    """Rows that count as the table's content: current versions of a history table, rows not
    soft-deleted of a mirror table."""
    if target.mode == "scd2":
        return exp.EQ(
            this=exp.Coalesce(this=col(target.scd2.is_current), expressions=[exp.false()]),
            expression=exp.true(),
        )
    if target.metadata.deleted in present:
        return exp.Not(
            this=exp.Coalesce(this=col(target.metadata.deleted), expressions=[exp.false()])
        )
    return None


Relation = TableRef | exp.Subquery
"""What the statements read: a table, or an aliased subquery standing for one (the source side
reads its table shaped as the warehouse stores it)."""


def _relation(ref: Relation) -> exp.Expr:
    return ref.expr() if isinstance(ref, TableRef) else ref.copy()


def _where(query: exp.Select, *conds: exp.Expr | None) -> exp.Select:
    real = [c for c in conds if c is not None]
    return query.where(exp.and_(*real)) if real else query


def checksum_query(
    ref: Relation,
    columns: Sequence[Column],
    key: Sequence[str],
    ranges: Sequence[KeyRange],
    dialect: Dialect,
    *,
    live: exp.Expr | None = None,
    present: set[str] | None = None,
    peer: Dialect | None = None,
) -> tuple[exp.Expression, list[Any]]:
    """``(i, COUNT(*), SUM(hash))`` of every range ``i`` (one UNION ALL), and the binds."""
    by_name = {c.name: c for c in columns}
    keys = [key_expr(by_name[k], dialect) for k in key]
    md5 = exp.MD5(this=row_text(columns, dialect, present, peer))
    parts: list[exp.Select] = []
    params: list[Any] = []
    for i, rng in enumerate(ranges):
        cond, p = range_condition(keys, rng)
        inner = _where(
            exp.select(exp.alias_(md5.copy(), ident("h"))).from_(_relation(ref)), live, cond
        )
        params += p
        parts.append(
            exp.select(
                exp.alias_(exp.Literal.number(i), ident("i")),
                exp.alias_(exp.Count(this=exp.Star()), ident("n")),
                exp.alias_(exp.Sum(this=hash_int(col("h", "q"), dialect)), ident("s")),
            ).from_(inner.subquery("q"))
        )
    union: exp.Expression = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    return union, params


def range_rows_query(
    ref: Relation,
    projections: Sequence[exp.Expr],
    key_columns: Sequence[Column],
    rng: KeyRange,
    dialect: Dialect,
    *,
    live: exp.Expr | None = None,
) -> tuple[exp.Select, list[Any]]:
    """``projections`` of the rows in a key range, and the binds."""
    keys = [key_expr(c, dialect) for c in key_columns]
    cond, params = range_condition(keys, rng)
    return _where(exp.select(*projections).from_(_relation(ref)), live, cond), params


def keys_rows_query(
    ref: Relation,
    projections: Sequence[exp.Expr],
    key: Sequence[str],
    count: int,
    *,
    live: exp.Expr | None = None,
) -> exp.Select:
    """``projections`` of the rows of ``count`` keys (bound: each key's values in turn)."""
    one = exp.and_(*[exp.EQ(this=col(k), expression=exp.Placeholder()) for k in key])
    anyof = exp.or_(*[exp.paren(one.copy()) for _ in range(count)])
    return _where(exp.select(*projections).from_(_relation(ref)), live, exp.paren(anyof))


def split_query(
    ref: Relation,
    key_columns: Sequence[Column],
    rng: KeyRange,
    step: int,
    dialect: Dialect,
    *,
    live: exp.Expr | None = None,
) -> tuple[exp.Select, list[Any]]:
    """The key of every ``step``-th row of a range in key order (split points), and the
    binds: the boundaries of sub-ranges holding about ``step`` rows each."""
    keys = [key_expr(c, dialect) for c in key_columns]
    cond, params = range_condition(keys, rng)
    order = exp.Order(expressions=[exp.Ordered(this=k.copy()) for k in keys])
    number = exp.Window(this=exp.RowNumber(), order=order)
    inner = exp.select(
        *[exp.alias_(col(c.name), ident(c.name)) for c in key_columns],
        exp.alias_(number, ident("_rn")),
    ).from_(_relation(ref))
    inner = _where(inner, live, cond)
    rn = col("_rn", "q")
    picked = exp.EQ(
        this=exp.Mod(
            this=exp.paren(exp.Sub(this=rn, expression=exp.Literal.number(1))),
            expression=exp.Literal.number(step),
        ),
        expression=exp.Literal.number(0),
    )
    outer = exp.select(*[col(c.name, "q") for c in key_columns]).from_(inner.subquery("q"))
    outer = outer.where(exp.and_(picked, exp.GT(this=rn, expression=exp.Literal.number(1))))
    return outer.order_by(rn.copy()), params
