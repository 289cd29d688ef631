"""The source side of a reconciliation: the same checksum and row statements as the warehouse's
(``warehouse.checksum``), rendered for PostgreSQL and run through psycopg, on a connection
whose loaders produce the ``cdc.model`` representation (``cdc.compare.source_connection``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlglot import exp

from cdc.model import TableSchema
from warehouse import checksum
from warehouse.base import KeyRange, RangeChecksum
from warehouse.sql import TableRef, col, render

Key = tuple[Any, ...]
DIALECT: checksum.Dialect = "postgres"
_CHUNK = 500


def pg_text(statement: exp.Expr) -> str:
    """SQL text for psycopg: ``%s`` placeholders, a literal ``%`` (modulo) doubled."""
    return render(statement, DIALECT).replace("%", "%%").replace("%%s", "%s")


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
    ) -> None:
        """``peer``: the warehouse's dialect (its weaker renderings are used here too)."""
        self.conn = conn
        self.peer = peer
        self.schema = schema
        self.ref = TableRef(schema.table.schema, schema.table.name)
        self.key_columns = [schema.column(k) for k in schema.key]

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
