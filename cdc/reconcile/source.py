"""The source side of a reconciliation: the same checksum and row statements as the warehouse's
(``warehouse.checksum``), rendered for PostgreSQL and run through psycopg, on a connection
whose loaders produce the ``cdc.model`` representation (``cdc.compare.source_connection``:
UTC, ISO dates, the C locale's money).

The statements read the table *shaped* as the warehouse stores it (:func:`shaped_values`), so
one canonical rendering serves both sides and the fetched rows compare (and repair) as they
are: a column overridden as ``text`` is PostgreSQL's text of its value (what the consumer
stores, ``cdc.consumer.fitting.pg_text``), one overridden as ``decimal(p,s)`` a numeric (text
that is no number: NaN, which no DECIMAL holds, so it shows as different); a column stored as
TEXT whose source type is not a string type (bit(n), ranges, geometric types, composites,
tsquery, pg_lsn...) its text as PostgreSQL prints it, char(n) with its padding; money a
numeric."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlglot import exp

from cdc.consumer.fitting import overridden_schema
from cdc.model import Column, ColumnType, Kind, TableSchema
from warehouse import checksum
from warehouse.base import KeyRange, RangeChecksum
from warehouse.sql import TableRef, col, ident, render

Key = tuple[Any, ...]
DIALECT: checksum.Dialect = "postgres"
_CHUNK = 500


def pg_text(statement: exp.Expr) -> str:
    """SQL text for psycopg: ``%s`` placeholders, a literal ``%`` (modulo) doubled."""
    return render(statement, DIALECT).replace("%", "%%").replace("%%s", "%s")


_STRING_TYPES = frozenset({"TEXT", "VARCHAR", "NAME", "CITEXT"})
# text that PostgreSQL and Python's Decimal both read as a finite number
_NUMBER = r"^\s*[-+]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?\s*$"


def _printed(value: exp.Expr) -> exp.Expr:
    """A value as PostgreSQL prints it (its type's output: char(n) keeps its padding, inet no
    netmask a cast to text would add), NULL for NULL (CONCAT alone makes it '')."""
    return exp.Case(
        ifs=[exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=exp.Null())],
        default=exp.Anonymous(this="CONCAT", expressions=[value.copy()]),
    )


def _cast(value: exp.Expr, to: str) -> exp.Expr:
    return exp.Cast(this=value, to=exp.DataType.build(to, dialect=DIALECT))


def shaped_value(column: Column, override: ColumnType | None = None) -> exp.Expr:
    """A source column (reflected) as the warehouse stores it (with the column's type
    ``override``, if any), see the module docstring."""
    value: exp.Expr = col(column.name)
    source = column.type
    money = source.source_type == "MONEY"
    if override is not None and override.kind is Kind.TEXT:
        return _cast(_cast(value, "NUMERIC"), "TEXT") if money else _printed(value)
    if override is not None:  # decimal(p,s)
        if source.kind not in (Kind.TEXT, Kind.ENUM):
            return _cast(value, "NUMERIC")
        as_text = _cast(value, "TEXT")
        number = exp.RegexpLike(this=as_text, expression=exp.Literal.string(_NUMBER))
        return exp.Case(
            ifs=[exp.If(this=number, true=_cast(as_text.copy(), "NUMERIC"))],
            default=_cast(exp.Literal.string("NaN"), "NUMERIC"),
        )
    if money:
        return _cast(value, "NUMERIC")
    if source.kind is Kind.TEXT and source.source_type not in _STRING_TYPES:
        return _printed(value)
    return value


def shaped_table(
    ref: TableRef, schema: TableSchema, overrides: Mapping[str, ColumnType]
) -> TableRef | exp.Subquery:
    """The table (``schema`` reflected) as the warehouse stores it (with ``overrides``),
    under its own name; the table itself when nothing changes shape."""
    values = [shaped_value(c, overrides.get(c.name)) for c in schema.columns]
    if all(isinstance(v, exp.Column) for v in values):
        return ref
    select = exp.select(
        *[exp.alias_(v, ident(c.name)) for v, c in zip(values, schema.columns, strict=True)]
    ).from_(ref.expr())
    return select.subquery(ident(ref.name))


def current_lsn(conn: psycopg.Connection[Any]) -> int:
    """The source's current WAL position as an integer."""
    row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


class SourceTable:
    """One source table, read for a reconciliation."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        schema: TableSchema,
        peer: checksum.Dialect | None = None,
        overrides: Mapping[str, ColumnType] | None = None,
    ) -> None:
        """``schema``: the table as reflected; ``peer``: the warehouse's dialect (its weaker
        renderings are used here too); ``overrides``: the table's column type overrides.
        ``self.schema`` is the schema compared (overrides applied), the rows read follow it."""
        self.conn = conn
        self.peer = peer
        self.source_schema = schema
        self.schema = overridden_schema(schema, overrides or {})
        self.ref = shaped_table(
            TableRef(schema.table.schema, schema.table.name), schema, overrides or {}
        )
        self.key_columns = [self.schema.column(k) for k in schema.key]

    def checksums(self, ranges: Sequence[KeyRange]) -> list[RangeChecksum]:
        query, params = checksum.checksum_query(
            self.ref, self.schema.columns, self.schema.key, ranges, DIALECT, peer=self.peer
        )
        found = self.conn.execute(pg_text(query), params).fetchall()
        sums = {int(i): RangeChecksum(int(n), int(s or 0)) for i, n, s in found}
        return [sums[i] for i in range(len(ranges))]

    def _projections(self) -> list[exp.Expr]:
        return [col(n) for n in self.schema.names]

    def _rows(self, text: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return list(cur.execute(text, params).fetchall())

    def all_rows(self) -> list[dict[str, Any]]:
        """Every row (a table without a primary key is compared whole)."""
        source = self.ref.expr() if isinstance(self.ref, TableRef) else self.ref
        return self._rows(pg_text(exp.select(*self._projections()).from_(source)), [])

    def range_rows(self, ranges: Sequence[KeyRange]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for rng in ranges:
            query, params = checksum.range_rows_query(
                self.ref, self._projections(), self.key_columns, rng, DIALECT
            )
            out += self._rows(pg_text(query), params)
        return out

    def key_rows(self, keys: Sequence[Key]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            query = checksum.keys_rows_query(
                self.ref, self._projections(), self.schema.key, len(chunk)
            )
            out += self._rows(pg_text(query), [v for k in chunk for v in k])
        return out

    def split_keys(self, ranges: Sequence[tuple[KeyRange, int]]) -> list[list[Key]]:
        out = []
        for rng, step in ranges:
            query, params = checksum.split_query(self.ref, self.key_columns, rng, step, DIALECT)
            out.append([tuple(r) for r in self.conn.execute(pg_text(query), params).fetchall()])
        return out
