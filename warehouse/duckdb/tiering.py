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

from warehouse.base import TableTarget, TerminalWarehouseError
from warehouse.sql import TableRef, col, create_schema, create_table, render, table_columns
from warehouse.sql import tier_views as views
from warehouse.sql import tiering as tier
from warehouse.sql.ddl import tables_named
from warehouse.sql.tiering import FILE_COLUMNS, FILES, GONE, HOLDS, HOT, MOVES
from warehouse.tier_files import TierFile
from warehouse.tiering import TierChange, TierConflictError, failpoint, history_view

DIALECT = "duckdb"

# DuckDB types whose Arrow form Parquet can't store (month-day-nano intervals, TIMETZ)
_TEXT_TYPES = frozenset({"INTERVAL", "TIME WITH TIME ZONE", "TIMETZ"})
_TYPES = tier.TierTypes(
    *(exp.DataType.build(t) for t in ("VARCHAR", "BIGINT", "INTEGER", "TIMESTAMPTZ"))
)


def _sql(statement: exp.Expr) -> str:
    return render(statement, DIALECT)


class DuckDBTiering:
    """Tiering statements on the adapter's connections (one transaction per move)."""

    schema: str
    bookkeeping_schema: str
    path: str

    if TYPE_CHECKING:  # provided by DuckDBWarehouse

        def connection(self) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]: ...
        def _ref(self, name: str) -> TableRef: ...

    def _tier_tables(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(_sql(create_schema(self.bookkeeping_schema)))
        for name, columns in tier.tier_tables(_TYPES).items():
            key = ["path"] if name == FILES else []
            con.execute(_sql(create_table(self._ref(name), columns, key)))

    def _hot(self, target: TableTarget) -> TableRef:
        return TableRef(self.schema, target.name)

    def _exists(self, con: duckdb.DuckDBPyConnection, ref: TableRef) -> bool:
        row = con.execute(_sql(tables_named()), [ref.schema, ref.name]).fetchall()
        return bool(row and row[0][0])

    def _as_text(self, con: duckdb.DuckDBPyConnection, ref: TableRef) -> list[tuple[str, str]]:
        """(name, type) of the columns Parquet can't hold as they are: written as DuckDB's
        text of the value and cast back when read (the view, a restore), which DuckDB parses
        exactly."""
        rows = con.execute(render(table_columns(), DIALECT), [ref.schema, ref.name]).fetchall()
        return [(name, str(kind)) for name, kind in rows if str(kind).upper() in _TEXT_TYPES]

    def _typed(self, con: duckdb.DuckDBPyConnection, ref: TableRef) -> exp.Expr:
        """``* REPLACE (CAST(c AS <type>) AS c, ...)`` for the columns kept as text."""
        return views.typed_star(self._as_text(con, ref), DIALECT)

    # ---- reads ------------------------------------------------------------------------------

    def tier_candidates(self, target: TableTarget, cutoff: dt.datetime) -> pa.Table:
        """Every stored column of the rows due before ``cutoff`` (not held by a restore)."""
        ref = self._hot(target)
        with self.connection() as con:
            self._tier_tables(con)
            if not self._exists(con, ref):
                raise TerminalWarehouseError(
                    f"table {target.name!r} has no history to tier yet (nothing replicated to it)"
                )
            now = dt.datetime.now(dt.UTC)
            text = [name for name, _ in self._as_text(con, ref)]
            query = tier.candidates(ref, self._ref(HOLDS), target, [views.text_star(text, HOT)])
            return con.sql(_sql(query), params=[cutoff, target.name, now]).to_arrow_table()

    def tier_files(self, table: str) -> list[TierFile]:
        """The live file set of a table (what its history view reads)."""
        with self.connection() as con:
            self._tier_tables(con)
            return list(self._live(con, table))

    def tier_moves(self, table: str) -> list[dict[str, Any]]:
        """The audit of a table's moves, oldest first."""
        with self.connection() as con:
            self._tier_tables(con)
            query = tier.of_table(self._ref(MOVES)).order_by(col("moved_at"))
            cur = con.execute(_sql(query), [table])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def history_rows(self, target: TableTarget, as_of: dt.datetime | None = None) -> pa.Table:
        """The history view's rows (every tier), or the versions valid at ``as_of`` (scd2)."""
        view = TableRef(self.schema, history_view(target))
        query = tier.select_from(view)
        params: list[Any] = []
        if as_of is not None:
            if target.mode != "scd2":
                raise TerminalWarehouseError(f"table {target.name!r}: as-of needs an scd2 table")
            query = query.where(tier.valid_at(target))
            params = [as_of, as_of]
        with self.connection() as con:
            self._tier_tables(con)
            if not self._exists(con, view):
                if not self._exists(con, self._hot(target)):
                    raise TerminalWarehouseError(
                        f"table {target.name!r} has no history yet (nothing replicated to it)"
                    )
                self._define_view(con, target, [])
            return con.sql(_sql(query), params=params or None).to_arrow_table()

    # ---- the move ---------------------------------------------------------------------------

    def _define_view(
        self, con: duckdb.DuckDBPyConnection, target: TableTarget, paths: Sequence[str]
    ) -> None:
        view = TableRef(self.schema, history_view(target))
        hot = self._hot(target)
        typed = self._typed(con, hot) if paths else exp.Star()
        con.execute(_sql(views.duckdb_history_view(view, hot, paths, typed)))

    def ensure_history_view(self, target: TableTarget) -> None:
        with self.connection() as con:
            self._tier_tables(con)
            if self._exists(con, self._hot(target)):
                self._define_view(con, target, [f.path for f in self._live(con, target.name)])

    def _live(self, con: duckdb.DuckDBPyConnection, table: str) -> Iterator[TierFile]:
        query = tier.of_table(self._ref(FILES), FILE_COLUMNS)
        query = query.order_by(*map(col, ("tier", "month", "path")))
        rows = con.execute(_sql(query), [table]).fetchall()
        return (TierFile(*r) for r in rows)

    def _record_markers(
        self, con: duckdb.DuckDBPyConnection, target: TableTarget, key: Sequence[str]
    ) -> None:
        """Delete markers for the soft-deleted rows moved out (``tier_gone_``): the position
        guard of a tiered mirror table reads them (see warehouse.sql.target_table)."""
        markers = self._ref(f"{target.name}__deleted")
        cols = [*key, target.metadata.lsn]
        match = tier.match([(col(c, "m"), col(c, GONE)) for c in key])
        con.execute(_sql(tier.markers_like(markers, self._hot(target), cols)))
        con.execute(_sql(tier.delete_using(markers, "m", "tier_gone_", match)))
        values = [col(c, GONE) for c in cols]
        con.execute(_sql(tier.insert_from(markers, cols, values, "tier_gone_", GONE)))

    def present_keys(self, target: TableTarget, keys: pa.Table) -> pa.Table:
        """Which of ``keys`` (key columns) the hot table holds."""
        match = tier.match([(col(c, HOT), col(c, "k")) for c in keys.column_names])
        cols = [col(c, "k") for c in keys.column_names]
        query = tier.present("tier_keys_", self._hot(target), cols, match)
        with self.connection() as con:
            con.register("tier_keys_", keys)
            try:
                return con.sql(_sql(query)).to_arrow_table()
            finally:
                con.unregister("tier_keys_")

    def apply_tier_change(
        self, target: TableTarget, change: TierChange, key: Sequence[str]
    ) -> None:
        """One move, all or nothing (see :mod:`warehouse.tiering`)."""
        hot = self._hot(target)
        files, moves, holds = (self._ref(n) for n in (FILES, MOVES, HOLDS))
        with self.connection() as con:
            self._tier_tables(con)
            con.begin()
            try:
                if change.remove_rows is not None and change.remove_rows.num_rows:
                    ids = change.remove_rows.select([*key, target.metadata.lsn])
                    con.register("tier_gone_", ids)
                    match = tier.match(
                        [(col(c, HOT), col(c, GONE)) for c in [*key, target.metadata.lsn]],
                        null_safe=True,
                    )
                    delete = tier.delete_moved(hot, "tier_gone_", target, match)
                    row = con.execute(_sql(delete), [change.cutoff]).fetchall()
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
                    back = tier.restore_by_name(hot, "tier_back_", self._typed(con, hot))
                    con.execute(_sql(back))
                    con.unregister("tier_back_")
                for f in change.remove_files:
                    con.execute(_sql(tier.delete_file(files)), [f.path])
                add_file = _sql(
                    tier.insert_rows(files, (*FILE_COLUMNS, "added_at"), (), named=False)
                )
                for f in change.add_files:
                    con.execute(
                        add_file,
                        [f.table, f.tier, f.month, f.path, f.rows, f.checksum, f.bytes,
                         f.move_id, change.at],
                    )  # fmt: skip
                if change.hold is not None:
                    h = change.hold
                    con.execute(
                        _sql(tier.insert_rows(holds, tier.HOLD_COLUMNS, (), named=False)),
                        [target.name, h.closed_from, h.closed_to, h.until],
                    )
                con.execute(
                    _sql(tier.insert_rows(moves, tier.MOVE_COLUMNS, (), named=False)),
                    [change.move_id, target.name, change.kind, change.cutoff, change.rows,
                     len(change.add_files), len(change.remove_files),
                     sum(f.bytes for f in change.add_files), change.at],
                )  # fmt: skip
                self._define_view(con, target, [f.path for f in self._live(con, target.name)])
                con.commit()
            except BaseException:
                con.rollback()
                raise
