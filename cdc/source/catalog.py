"""The source's catalog, read directly (not through Debezium): a table's columns and key as a
:class:`~cdc.model.TableSchema`, and the replication slot's position.

Snapshots and reconciliation read rows outside the log; their schema must be the one Debezium
would describe, so the warehouse sees the same columns whichever path a row took. The mapping
below follows the connector settings of :mod:`cdc.source.connector` (precise decimals,
microsecond times, intervals as strings, source types propagated): ``source_type`` is the
upper-case type name Debezium sends (``INT4``, ``_TEXT``, an enum's own name), ``length`` the
declared length of ``varchar(n)``/``char(n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

import psycopg
from psycopg.conninfo import make_conninfo

from cdc.compare import source_connection
from cdc.config import SourceConfig
from cdc.decoding.refusals import REFUSED
from cdc.decoding.values import MONEY_PRECISION, MONEY_SCALE
from cdc.model import Column, ColumnType, Kind, TableId, TableSchema

__all__ = [
    "SourceTableError",
    "column_refusals",
    "column_type",
    "keyless_refusal",
    "plan_filter",
    "primary_key",
    "qualified",
    "reflect_table",
    "slot_position",
    "source_connection",
    "source_dsn",
]

_KINDS: Final[dict[str, Kind]] = {
    "int2": Kind.INT16,
    "int4": Kind.INT32,
    "int8": Kind.INT64,
    "oid": Kind.INT64,
    "float4": Kind.FLOAT32,
    "float8": Kind.FLOAT64,
    "bool": Kind.BOOLEAN,
    "bytea": Kind.BYTES,
    "date": Kind.DATE,
    "time": Kind.TIME,
    "timetz": Kind.TIMETZ,
    "timestamp": Kind.TIMESTAMP,
    "timestamptz": Kind.TIMESTAMPTZ,
    "interval": Kind.INTERVAL,
    "uuid": Kind.UUID,
    "json": Kind.JSON,
    "jsonb": Kind.JSON,
    "hstore": Kind.JSON,  # hstore.handling.mode=json
}
"""Types with a kind of their own; every other type (text, inet, bit(n), ranges, composites,
geometric types, extension types...) lands as TEXT: its PostgreSQL text form."""
_LENGTH_TYPES: Final = frozenset({"varchar", "bpchar"})

# Per column: name, type, its kind (b base, d domain, e enum, c composite, r range...), typmod,
# nullability, the domain's base type (domains resolved, as Debezium resolves them), the array
# element type, the enum labels, and the declared array dimensions.
_COLUMNS: Final = """
SELECT a.attname, t.typname, t.typtype, a.atttypmod, NOT a.attnotnull,
       e.typname, e.typtype,
       CASE WHEN t.typtype = 'e' THEN (SELECT array_agg(enumlabel ORDER BY enumsortorder)
                                       FROM pg_enum WHERE enumtypid = t.oid) END,
       b.typname, a.attndims
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_KEY: Final = """
SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s::regclass AND i.indisprimary
ORDER BY array_position(i.indkey, a.attnum)
"""


ARRAY_ELEMENTS: Final = frozenset(
    {
        "int2", "int4", "int8", "oid", "float4", "float8", "bool", "text", "varchar", "bpchar",
        "bytea", "date", "timetz", "timestamp", "timestamptz", "uuid", "json", "jsonb", "inet",
        "cidr", "macaddr", "citext", "hstore", "int4range", "int8range", "numrange",
        "daterange", "tsrange", "tstzrange",
    }
)  # fmt: skip
"""Array element types Debezium 3.6 converts, NULL elements included: others are refused."""
TOAST_NULLED: Final = frozenset({"_float4", "_float8", "vector", "halfvec", "sparsevec"})
"""Types whose unchanged TOASTed value Debezium 3.6 sends as NULL (it fails to build its
placeholder: "Invalid Java object for schema ARRAY"), unless the table has REPLICA IDENTITY
FULL (then every change carries the whole row, with no placeholder)."""


def column_refusals(conn: psycopg.Connection[Any], table: TableId) -> list[str]:
    """Why columns of ``table`` can't be replicated exactly (empty: every column can), one
    message per column naming it, its type and what to do; nothing when it doesn't exist."""
    name = qualified(table)
    exists = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    if exists is None or exists[0] is None:
        return []
    identity = conn.execute(
        "SELECT relreplident FROM pg_class WHERE oid = %s::regclass", (name,)
    ).fetchone()
    full = identity is not None and identity[0] == "f"
    out = []
    if not full and not primary_key(conn, table):
        out.append(keyless_refusal(name))
    for row in conn.execute(_COLUMNS, (name,)):
        try:
            column_type(row)
        except SourceTableError as exc:
            out.append(f"column {row[0]!r}: {exc}")
            continue
        if row[1] in TOAST_NULLED and not full:
            out.append(
                f"column {row[0]!r}: type {row[1]} can't be replicated exactly under the "
                "default REPLICA IDENTITY: Debezium 3.6 sends an unchanged TOASTed value of "
                "this type (an update that leaves a large value untouched) as NULL. Run "
                f"ALTER TABLE {name} REPLICA IDENTITY FULL"
            )
    return out


def keyless_refusal(name: str) -> str:
    """Why a table without a primary key and without REPLICA IDENTITY FULL is refused, with
    the statement that fixes it (``name``: the quoted table name)."""
    return (
        f"the table has no primary key and its REPLICA IDENTITY is not FULL: rows of a table "
        "without a primary key are matched on all their columns, and only with REPLICA "
        "IDENTITY FULL does PostgreSQL log (and Debezium send) every column of an updated or "
        "deleted row (without it, PostgreSQL refuses the table's UPDATEs and DELETEs once it "
        f"is published). Run ALTER TABLE {name} REPLICA IDENTITY FULL; at the source (or add a "
        "primary key), then restart `cdc run`; the topic of such a table must have ONE "
        "partition"
    )


def primary_key(conn: psycopg.Connection[Any], table: TableId) -> tuple[str, ...]:
    """The table's primary key columns, in key order (empty: it has none)."""
    return tuple(row[0] for row in conn.execute(_KEY, (qualified(table),)))


def source_dsn(source: SourceConfig) -> str:
    """The source's libpq connection string (holds the password: never log it)."""
    return make_conninfo(**source.conninfo())


class SourceTableError(Exception):
    """A source table can't be read as asked: it doesn't exist, has no primary key, or a
    type has no lossless mapping. The message says what to do."""


def qualified(table: TableId) -> str:
    """``"schema"."name"``, quoted for PostgreSQL (for regclass lookups and SQL text)."""
    return psycopg.sql.Identifier(table.schema, table.name).as_string(None)


def _scalar(typname: str, typtype: str, typmod: int, labels: Any, base: str | None) -> ColumnType:
    source_type = typname.upper()
    refusal = REFUSED.get(base or typname)
    if refusal is not None:
        raise SourceTableError(refusal.message(typname))
    if typtype == "e":
        return ColumnType(Kind.ENUM, enum_values=tuple(labels or ()), source_type=source_type)
    if typtype == "d" and base is not None:
        if base in ("numeric", "money"):  # numerics arrive as text: a domain's name hides them
            return ColumnType(Kind.TEXT, source_type=source_type)
        return replace(_scalar(base, "b", typmod, None, None), source_type=source_type)
    if typname == "numeric":
        if typmod < 0:
            return ColumnType(Kind.VARDECIMAL, source_type=source_type)
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0x7FF
        scale = scale - 0x800 if scale & 0x400 else scale  # 11 bits, signed (PostgreSQL 15+)
        if scale < 0:  # numeric(p,-s): integers of p+s digits
            precision, scale = precision - scale, 0
        return ColumnType(Kind.DECIMAL, precision=precision, scale=scale, source_type=source_type)
    if typname == "money":
        return ColumnType(
            Kind.DECIMAL, precision=MONEY_PRECISION, scale=MONEY_SCALE, source_type=source_type
        )
    kind = _KINDS.get(typname, Kind.TEXT)
    if typname in _LENGTH_TYPES and typmod > 4:
        return ColumnType(kind, length=typmod - 4, source_type=source_type)
    return ColumnType(kind, source_type=source_type)


def column_type(row: Sequence[Any]) -> ColumnType:
    """The column type of one ``_COLUMNS`` row, as the decoder types the column's values;
    SourceTableError (the refusal's reason and what to do) for a type that can't replicate."""
    _, typname, typtype, typmod, _, elem, elem_type, labels, base, ndims = row
    if elem is None:
        return _scalar(typname, typtype, typmod, labels, base)
    refusal = REFUSED.get(typname)
    if refusal is not None:
        raise SourceTableError(refusal.message(typname))
    if (ndims or 0) > 1:
        raise SourceTableError(
            f"type {typname} is declared with {ndims} dimensions: Debezium 3.6 sends the "
            "elements of a multi-dimensional array as NULLs. Store it as text or jsonb at the "
            "source, or leave the column out (source.debezium: column.exclude.list)"
        )
    if elem_type == "e":
        raise SourceTableError(
            f"type {typname} can't be replicated exactly: Debezium 3.6 sends an array of enum "
            "labels holding a NULL element as NULL. Store it as text[] at the source, or leave "
            "the column out (source.debezium: column.exclude.list)"
        )
    if elem not in ARRAY_ELEMENTS:
        raise SourceTableError(
            f"type {typname} can't be replicated exactly: Debezium 3.6 has no converter for "
            f"arrays of {elem}: it sends them as text elements that may not be NULL, and an "
            "array holding a NULL element as NULL. Store it as text[] or jsonb at the source, "
            "or leave the column out (source.debezium: column.exclude.list)"
        )
    element = _scalar(elem, elem_type, -1, None, None)
    if element.kind is Kind.ENUM:
        element = ColumnType(Kind.TEXT)
    return ColumnType(
        Kind.ARRAY,
        element=ColumnType(element.kind, element.precision, element.scale),
        source_type=typname.upper(),
    )


def reflect_table(
    conn: psycopg.Connection[Any], table: TableId, *, keyless: bool = False
) -> TableSchema:
    """The table's columns (in order) and primary key as Debezium would describe them.

    Raises :class:`SourceTableError` for a table that doesn't exist, one without a primary
    key (with ``keyless``: one without a primary key and without REPLICA IDENTITY FULL; one
    with it has an empty key), or a column whose type has no lossless mapping.
    """
    name = qualified(table)
    exists = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    if exists is None or exists[0] is None:
        raise SourceTableError(
            f"source table {table} does not exist in database "
            f"{conn.info.dbname!r}: check the name (schema.table) and the source settings"
        )
    columns: list[Column] = []
    for row in conn.execute(_COLUMNS, (name,)):
        try:
            ctype = column_type(row)
        except SourceTableError as exc:
            raise SourceTableError(f"{table} column {row[0]!r}: {exc}") from None
        columns.append(Column(row[0], ctype, row[4]))
    key = primary_key(conn, table)
    if not key and keyless:
        identity = conn.execute(
            "SELECT relreplident FROM pg_class WHERE oid = %s::regclass", (name,)
        ).fetchone()
        if identity is not None and identity[0] == "f":
            return TableSchema(table, tuple(columns), ())
        raise SourceTableError(f"source table {table}: {keyless_refusal(name)}")
    if not key:
        raise SourceTableError(
            f"source table {table} has no primary key: snapshots match rows by key; add one "
            "(ALTER TABLE ... ADD PRIMARY KEY). The stream, Debezium's initial snapshot, "
            "`cdc reconcile` and a bulk `cdc snapshot` (a whole, exact re-load) take it "
            "without one with REPLICA IDENTITY FULL"
        )
    return TableSchema(table, tuple(columns), key)


FILTER_CHECK_TIMEOUT_MS: Final = 10_000


def plan_filter(conn: psycopg.Connection[Any], table: TableId, where: str) -> None:
    """Let PostgreSQL plan ``SELECT 1 FROM table WHERE (where)`` without running it (syntax,
    columns, types), raising its ``psycopg.Error``: a read-only transaction, one statement
    (binary results force the extended protocol, which refuses a second statement smuggled in
    the filter), a timeout. Snapshots and signals check a user's filter with it."""
    statement = psycopg.sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE ({})").format(
        psycopg.sql.Identifier(table.schema, table.name),
        psycopg.sql.SQL(where),  # type: ignore[arg-type]
    )
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(f"SET LOCAL statement_timeout = {FILTER_CHECK_TIMEOUT_MS}")
        conn.execute(statement, prepare=False, binary=True)


def slot_position(conn: psycopg.Connection[Any], slot: str) -> tuple[int, int]:
    """``(restart_lsn, confirmed_flush_lsn)`` of a logical replication slot, as integers.

    Every transaction that is not yet confirmed has all its changes at or after
    ``restart_lsn`` (the slot must be able to decode them). Raises :class:`SourceTableError`
    when the slot doesn't exist (the connector never ran).
    """
    row = conn.execute(
        "SELECT restart_lsn - '0/0'::pg_lsn, confirmed_flush_lsn - '0/0'::pg_lsn "
        "FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None or row[0] is None:
        raise SourceTableError(
            f"replication slot {slot!r} does not exist: start the connector first "
            "(`cdc local up` / `cdc connector register`), so that changes made while the "
            "snapshot runs are captured"
        )
    return int(row[0]), int(row[1] if row[1] is not None else row[0])
