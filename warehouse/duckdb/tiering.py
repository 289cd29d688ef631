"""DuckDB's side of lifecycle tiering (mixed into :class:`warehouse.duckdb.DuckDBWarehouse`).

The ``<table>_history`` view reads the hot table and the live Parquet files with
``read_parquet([...], union_by_name = true)``: local files directly; files on S3 through the
fsspec filesystem the warehouse registers on each of its connections (another DuckDB client
needs the httpfs extension and credentials to read that view).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from cdc.tiering.policy import TierFile
from warehouse.base import TableTarget, TerminalWarehouseError
from warehouse.sql import TableRef, render, table_columns
from warehouse.tiering import (
    TierChange,
    TierConflictError,
    closing_column,
    failpoint,
    history_view,
)

DIALECT = "duckdb"

_FILES = "tier_files"
_MOVES = "tier_moves"
_HOLDS = "tier_holds"
# DuckDB types whose Arrow form Parquet can't store (month-day-nano intervals, TIMETZ)
_TEXT_TYPES = frozenset({"INTERVAL", "TIME WITH TIME ZONE", "TIMETZ"})


def _q(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(DIALECT)  # type: ignore[no-any-return]


def _t(ref: TableRef) -> str:
    return f"{_q(ref.schema)}.{_q(ref.name)}"


def _lit(value: str) -> str:
    return exp.Literal.string(value).sql(DIALECT)  # type: ignore[no-any-return]


class DuckDBTiering:
    """Tiering statements on the adapter's connections (one transaction per move)."""

    schema: str
    bookkeeping_schema: str
    path: str

    if TYPE_CHECKING:  # provided by DuckDBWarehouse

        def connection(self) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]: ...
        def _ref(self, name: str) -> TableRef: ...

    def _tier_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        b = _q(self.bookkeeping_schema)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {b}")
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {b}.{_q(_FILES)} (table_name VARCHAR, tier VARCHAR, "
            "month VARCHAR, path VARCHAR PRIMARY KEY, rows BIGINT, checksum VARCHAR, "
            "bytes BIGINT, move_id VARCHAR, added_at TIMESTAMPTZ)"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {b}.{_q(_MOVES)} (move_id VARCHAR, table_name VARCHAR, "
            "kind VARCHAR, cutoff TIMESTAMPTZ, rows BIGINT, files_added INTEGER, "
            "files_removed INTEGER, bytes_added BIGINT, moved_at TIMESTAMPTZ)"
        )
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {b}.{_q(_HOLDS)} (table_name VARCHAR, "
            "closed_from TIMESTAMPTZ, closed_to TIMESTAMPTZ, until TIMESTAMPTZ)"
        )

    def _hot(self, target: TableTarget) -> TableRef:
        return TableRef(self.schema, target.name)

    def _exists(self, con: duckdb.DuckDBPyConnection, ref: TableRef) -> bool:
        row = con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [ref.schema, ref.name],
        ).fetchall()
        return bool(row and row[0][0])

    def _as_text(self, con: duckdb.DuckDBPyConnection, ref: TableRef) -> list[tuple[str, str]]:
        """(name, type) of the columns Parquet can't hold as they are: written as DuckDB's
        text of the value and cast back when read (the view, a restore), which DuckDB parses
        exactly."""
        rows = con.execute(render(table_columns(), DIALECT), [ref.schema, ref.name]).fetchall()
        return [(name, str(kind)) for name, kind in rows if str(kind).upper() in _TEXT_TYPES]

    def _typed(self, con: duckdb.DuckDBPyConnection, ref: TableRef) -> str:
        """``* REPLACE (CAST(c AS <type>) AS c, ...)`` for the columns kept as text."""
        casts = [
            f"CAST({_q(name)} AS {kind}) AS {_q(name)}" for name, kind in self._as_text(con, ref)
        ]
        return f"* REPLACE ({', '.join(casts)})" if casts else "*"

    def _due(self, target: TableTarget) -> str:
        """Rows of the hot table that tiering may move (as a WHERE condition on alias t)."""
        closing = f"t.{_q(closing_column(target))}"
        if target.mode == "scd2":
            return f"{closing} IS NOT NULL"
        return f"coalesce(t.{_q(target.metadata.deleted)}, false)"

    # ---- reads ------------------------------------------------------------------------------

    def tier_candidates(self, target: TableTarget, cutoff: dt.datetime) -> pa.Table:
        """Every stored column of the rows due before ``cutoff`` (not held by a restore)."""
        ref = self._hot(target)
        closing = f"t.{_q(closing_column(target))}"
        holds = self._ref(_HOLDS)
        query = (
            f"SELECT {{columns}} FROM {_t(ref)} t WHERE {self._due(target)} AND {closing} < ? "
            f"AND NOT EXISTS (SELECT 1 FROM {_t(holds)} h WHERE h.table_name = ? "
            f"AND h.until > ? AND {closing} >= h.closed_from AND {closing} < h.closed_to)"
        )
        with self.connection() as con:
            self._tier_tables(con)
            if not self._exists(con, ref):
                raise TerminalWarehouseError(
                    f"table {target.name!r} has no history to tier yet (nothing replicated to it)"
                )
            now = dt.datetime.now(dt.UTC)
            text = [name for name, _ in self._as_text(con, ref)]
            columns = "t.*" + (
                f" REPLACE ({', '.join(f'CAST(t.{_q(c)} AS VARCHAR) AS {_q(c)}' for c in text)})"
                if text
                else ""
            )
            return con.sql(
                query.format(columns=columns), params=[cutoff, target.name, now]
            ).to_arrow_table()

    def tier_files(self, table: str) -> list[TierFile]:
        """The live file set of a table (what its history view reads)."""
        with self.connection() as con:
            self._tier_tables(con)
            return list(self._live(con, table))

    def tier_moves(self, table: str) -> list[dict[str, Any]]:
        """The audit of a table's moves, oldest first."""
        with self.connection() as con:
            self._tier_tables(con)
            cur = con.execute(
                f"SELECT * FROM {_t(self._ref(_MOVES))} WHERE table_name = ? ORDER BY moved_at",
                [table],
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def history_rows(self, target: TableTarget, as_of: dt.datetime | None = None) -> pa.Table:
        """The history view's rows (every tier), or the versions valid at ``as_of`` (scd2)."""
        view = TableRef(self.schema, history_view(target))
        query = f"SELECT * FROM {_t(view)}"
        params: list[Any] = []
        if as_of is not None:
            if target.mode != "scd2":
                raise TerminalWarehouseError(f"table {target.name!r}: as-of needs an scd2 table")
            vf, vt = _q(target.scd2.valid_from), _q(target.scd2.valid_to)
            query += f" WHERE {vf} <= ? AND ({vt} IS NULL OR {vt} > ?)"
            params = [as_of, as_of]
        with self.connection() as con:
            self._tier_tables(con)
            if not self._exists(con, view):
                if not self._exists(con, self._hot(target)):
                    raise TerminalWarehouseError(
                        f"table {target.name!r} has no history yet (nothing replicated to it)"
                    )
                self._define_view(con, target, [])
            return con.sql(query, params=params or None).to_arrow_table()

    # ---- the move ---------------------------------------------------------------------------

    def _define_view(
        self, con: duckdb.DuckDBPyConnection, target: TableTarget, paths: Sequence[str]
    ) -> None:
        view = TableRef(self.schema, history_view(target))
        body = f"SELECT * FROM {_t(self._hot(target))}"
        if paths:
            files = ", ".join(_lit(p) for p in paths)
            body += (
                f" UNION ALL BY NAME SELECT {self._typed(con, self._hot(target))} FROM "
                f"read_parquet([{files}], union_by_name = true, hive_partitioning = false)"
            )
        con.execute(f"CREATE OR REPLACE VIEW {_t(view)} AS {body}")

    def ensure_history_view(self, target: TableTarget) -> None:
        with self.connection() as con:
            self._tier_tables(con)
            if self._exists(con, self._hot(target)):
                self._define_view(con, target, [f.path for f in self._live(con, target.name)])

    def _live(self, con: duckdb.DuckDBPyConnection, table: str) -> Iterator[TierFile]:
        rows = con.execute(
            f"SELECT table_name, tier, month, path, rows, checksum, bytes, move_id "
            f"FROM {_t(self._ref(_FILES))} WHERE table_name = ? ORDER BY tier, month, path",
            [table],
        ).fetchall()
        return (TierFile(*r) for r in rows)

    def _record_markers(
        self, con: duckdb.DuckDBPyConnection, target: TableTarget, key: Sequence[str]
    ) -> None:
        """Delete markers for the soft-deleted rows moved out (``tier_gone_``): the position
        guard of a tiered mirror table reads them (see warehouse.sql.target_table)."""
        markers = self._ref(f"{target.name}__deleted")
        cols = ", ".join(_q(c) for c in [*key, target.metadata.lsn])
        match = " AND ".join(f"m.{_q(c)} = g.{_q(c)}" for c in key)
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_t(markers)} AS SELECT {cols} "
            f"FROM {_t(self._hot(target))} WHERE false"
        )
        con.execute(f"DELETE FROM {_t(markers)} m USING tier_gone_ g WHERE {match}")
        con.execute(f"INSERT INTO {_t(markers)} ({cols}) SELECT {cols} FROM tier_gone_")

    def present_keys(self, target: TableTarget, keys: pa.Table) -> pa.Table:
        """Which of ``keys`` (key columns) the hot table holds."""
        match = " AND ".join(f"t.{_q(c)} = k.{_q(c)}" for c in keys.column_names)
        cols = ", ".join(f"k.{_q(c)}" for c in keys.column_names)
        with self.connection() as con:
            con.register("tier_keys_", keys)
            try:
                return con.sql(
                    f"SELECT {cols} FROM tier_keys_ k WHERE EXISTS (SELECT 1 FROM "
                    f"{_t(self._hot(target))} t WHERE {match})"
                ).to_arrow_table()
            finally:
                con.unregister("tier_keys_")

    def apply_tier_change(
        self, target: TableTarget, change: TierChange, key: Sequence[str]
    ) -> None:
        """One move, all or nothing (see :mod:`warehouse.tiering`)."""
        hot = self._hot(target)
        files, moves, holds = (self._ref(n) for n in (_FILES, _MOVES, _HOLDS))
        with self.connection() as con:
            self._tier_tables(con)
            con.begin()
            try:
                if change.remove_rows is not None and change.remove_rows.num_rows:
                    ids = change.remove_rows.select([*key, target.metadata.lsn])
                    con.register("tier_gone_", ids)
                    match = " AND ".join(
                        f"t.{_q(c)} IS NOT DISTINCT FROM g.{_q(c)}"
                        for c in [*key, target.metadata.lsn]
                    )
                    closing = f"t.{_q(closing_column(target))}"
                    row = con.execute(
                        f"DELETE FROM {_t(hot)} t USING tier_gone_ g WHERE {match} "
                        f"AND {self._due(target)} AND {closing} < ?",
                        [change.cutoff],
                    ).fetchall()
                    deleted = int(row[0][0]) if row else 0
                    if target.mode == "mirror":
                        self._record_markers(con, target, key)
                    con.unregister("tier_gone_")
                    if deleted != ids.num_rows:
                        raise TierConflictError(
                            f"table {target.name!r}: {ids.num_rows} rows were written to the "
                            f"warm tier but {deleted} are still due in the table (changed "
                            "meanwhile); nothing moved, the next run retries"
                        )
                failpoint(f"{change.kind}_after_delete")  # inside the transaction
                if change.insert_rows is not None and change.insert_rows.num_rows:
                    con.register("tier_back_", change.insert_rows)
                    con.execute(
                        f"INSERT INTO {_t(hot)} BY NAME SELECT {self._typed(con, hot)} "
                        "FROM tier_back_"
                    )
                    con.unregister("tier_back_")
                for f in change.remove_files:
                    con.execute(f"DELETE FROM {_t(files)} WHERE path = ?", [f.path])
                for f in change.add_files:
                    con.execute(
                        f"INSERT INTO {_t(files)} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [f.table, f.tier, f.month, f.path, f.rows, f.checksum, f.bytes,
                         f.move_id, change.at],
                    )  # fmt: skip
                if change.hold is not None:
                    h = change.hold
                    con.execute(
                        f"INSERT INTO {_t(holds)} VALUES (?, ?, ?, ?)",
                        [target.name, h.closed_from, h.closed_to, h.until],
                    )
                con.execute(
                    f"INSERT INTO {_t(moves)} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [change.move_id, target.name, change.kind, change.cutoff, change.rows,
                     len(change.add_files), len(change.remove_files),
                     sum(f.bytes for f in change.add_files), change.at],
                )  # fmt: skip
                self._define_view(con, target, [f.path for f in self._live(con, target.name)])
                con.commit()
            except BaseException:
                con.rollback()
                raise
