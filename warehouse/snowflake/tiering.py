"""Snowflake's side of lifecycle tiering (mixed into
:class:`warehouse.snowflake.adapter.SnowflakeWarehouse`); the same methods and semantics as
:class:`warehouse.duckdb.tiering.DuckDBTiering`.

One move (:meth:`SnowflakeTiering.apply_tier_change`):

1. before the transaction (DDL commits an open transaction on Snowflake; staging loads
   autocommit, as the adapter's reads do): the bookkeeping tables, the delete-marker table of a
   tiered mirror table, the rows to delete (key + lsn) and the rows to restore staged as
   Parquet into plain staging tables (PUT + COPY), the external table created and refreshed
   (only with a stage, see below) and the ``<table>_history`` view (re)defined;
2. ONE transaction, only statements fakesnow accepts inside one (no MERGE, no DDL): ``DELETE
   ... USING`` of the moved hot rows by key + lsn re-checking they are still due (the count
   must equal the rows written, else :class:`~warehouse.tiering.TierConflictError` and
   ROLLBACK), ``INSERT ... SELECT`` of restored rows, ``DELETE ... USING`` + ``INSERT ...
   SELECT`` of delete markers for moved mirror rows, the live file set (``tier_files``), the
   holds (``tier_holds``), the audit row (``tier_moves``), COMMIT.

The history view never lists files: it joins the live file set, so it changes with the
transaction's commit, not with a view redefinition (which would be DDL outside it).

Types in the tier files: every column keeps its Arrow type, except the VARIANT columns
(INTERVAL, JSON) and ARRAY columns, written as their JSON text (as the apply stages them,
:func:`warehouse.snowflake.parquet_ready`) and parsed back (``PARSE_JSON``) in the view and on
restore. Rows are read through the adapter's ``_read`` (NULL timestamps by ``IS NULL`` on the
engine: fakesnow fetches them as 1970-01-01) and built into Arrow with the registry's types.

The view over the tiers (only when ``tier_stage`` is set, from ``tiering.snowflake_stage``):
the hot table ``UNION ALL`` the rows of an external table ``<bookkeeping>.<table>__tiers`` on
that external stage (whose URL is ``tiering.target``), ``AUTO_REFRESH = FALSE`` and refreshed
before every move and by :meth:`ensure_history_view`, kept to the rows of files in the live set
(``ENDSWITH(tier_files.path, '/' || METADATA$FILENAME)``: true whether Snowflake reports the
name relative to the stage or as the object's full key). The external table has only its
``VALUE`` column; the typed columns are cast in the view (``CAST(x.VALUE['c'] AS <type>)``),
so a column added to the hot table later needs only the view redefined (older files give
NULL there, like DuckDB's ``union_by_name``).

What fakesnow can't test (it has no external stages, external tables or ``METADATA$``
columns): every statement of the tier side of the view (:func:`create_external_table`,
:func:`refresh_external_table`, :func:`history_view_sql` with a stage, all in
:mod:`warehouse.sql.tier_views`) is built by pure functions whose text is unit-tested
(``tests/unit/test_snowflake_tiering_sql.py``), and run only when ``tier_stage`` is set; on
fakesnow the view is the hot table only, and :meth:`history_rows` returns the hot rows.
Unverified on a real account: the Parquet file format options (``BINARY_AS_TEXT = FALSE`` so
BINARY columns aren't read as UTF-8, ``USE_LOGICAL_TYPE = TRUE`` so timestamps and decimals
keep their logical types), the casts of ``VALUE`` fields to each column type, and what a query
of the external table does between a move's deletion of replaced files and the next refresh.

Every statement is a sqlglot expression (:mod:`warehouse.sql.tiering`), except the two about
the external table, which sqlglot can't express (:mod:`warehouse.sql.tier_views`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import snowflake.connector.errors as sf_errors
from sqlglot import exp

from cdc.model import ColumnType, Kind
from warehouse.arrow import column_array
from warehouse.base import TableTarget, TerminalWarehouseError, WarehouseError
from warehouse.engine.core import meta_kinds
from warehouse.snowflake.staging import parquet_ready, staged_value
from warehouse.snowflake.types import DIALECT, number, timestamp_tz6
from warehouse.sql import TableRef, col, create_table
from warehouse.sql import tiering as tier
from warehouse.sql.tier_views import (
    create_external_table,
    history_view_sql,
    refresh_external_table,
)
from warehouse.sql.tiering import (
    FILE_COLUMNS,
    FILES,
    GONE,
    HOLD_COLUMNS,
    HOLDS,
    HOT,
    MOVE_COLUMNS,
    MOVES,
)
from warehouse.tier_files import TierFile
from warehouse.tiering import TierChange, TierConflictError, history_view
from warehouse.types import DT

_TS = timestamp_tz6()  # bound times: ISO text cast on the engine
_TYPES = tier.TierTypes(
    exp.DataType.build("VARCHAR"), number(19, 0), number(10, 0), timestamp_tz6()
)
_STAGED_LSN, _STAGED_ROW = "m_lsn", "m_row"

_INT64, _TEXT, _TSTZ, _BOOL = (ColumnType(k) for k in (Kind.INT64, Kind.TEXT, Kind.TIMESTAMPTZ,
                                                        Kind.BOOLEAN))  # fmt: skip
_JSON_TYPES = (DT.VARIANT, DT.ARRAY, DT.OBJECT)


def _type(dtype: exp.DataType) -> str:
    return dtype.sql(dialect=DIALECT)  # type: ignore[no-any-return]


def _iso(value: dt.datetime | None) -> str | None:
    """A time bound as ISO text (cast on the engine: fakesnow can't bind a NULL TIMESTAMP_TZ)."""
    return None if value is None else value.isoformat()


# ---- types -----------------------------------------------------------------------------------


_BY_STORED = {
    DT.VARCHAR: Kind.TEXT, DT.TEXT: Kind.TEXT, DT.DOUBLE: Kind.FLOAT64, DT.FLOAT: Kind.FLOAT64,
    DT.BOOLEAN: Kind.BOOLEAN, DT.BINARY: Kind.BYTES, DT.VARBINARY: Kind.BYTES,
    DT.DATE: Kind.DATE, DT.TIME: Kind.TIME, DT.TIMESTAMPNTZ: Kind.TIMESTAMP,
    DT.TIMESTAMP: Kind.TIMESTAMP, DT.TIMESTAMPTZ: Kind.TIMESTAMPTZ,
    DT.TIMESTAMPLTZ: Kind.TIMESTAMPTZ, DT.VARIANT: Kind.JSON, DT.ARRAY: Kind.JSON,
    DT.OBJECT: Kind.JSON,
}  # fmt: skip


def _stored_kind(name: str, dtype: exp.DataType) -> ColumnType:
    """The type of a stored column the registry doesn't describe (one the source dropped)."""
    if dtype.this is DT.DECIMAL:
        p, s = ([int(x.this.name) for x in dtype.expressions] + [38, 0])[:2]
        return ColumnType(Kind.DECIMAL, precision=p, scale=s)
    kind = _BY_STORED.get(dtype.this)
    if kind is None:
        raise TerminalWarehouseError(f"column {name!r} of type {_type(dtype)} can't be tiered")
    return ColumnType(kind)


def _positional(data: pa.Table, extra: str | None = None) -> pa.Table:
    """``data`` with its columns named ``c0``, ``c1``... (staged names must be plain and
    differ by more than case); ``extra`` keeps the last column's name."""
    names = [f"c{i}" for i in range(data.num_columns)]
    if extra is not None:
        names[-1] = extra
    return data.rename_columns(names)


class SnowflakeTiering:
    """Tiering statements on the adapter's connection (one transaction per move)."""

    schema: str
    bookkeeping_schema: str
    tier_stage: str | None
    _bookkept: bool
    _tagged: str | None
    _tier_ready: bool = False

    if TYPE_CHECKING:  # provided by SnowflakeWarehouse

        def _connection(self) -> Any: ...
        def _failed(self, exc: BaseException, table: str | None) -> WarehouseError: ...
        def _run(self, work: Any, table: str | None) -> Any: ...
        def _exec(self, cur: Any, stmt: exp.Expr | str, params: Sequence[Any] = ()) -> Any: ...
        def _ref(self, name: str) -> TableRef: ...
        def _bookkeeping_ddl(self, cur: Any) -> None: ...
        def _columns_of(self, cur: Any, ref: TableRef) -> dict[str, exp.DataType]: ...
        def _kinds(self, cur: Any, name: str) -> dict[str, ColumnType]: ...
        def _stage(self, cur: Any, purpose: str, data: pa.Table, table: str) -> TableRef: ...
        def _read(
            self,
            cur: Any,
            query: exp.Select,
            columns: Sequence[tuple[str, ColumnType | None]],
            params: Sequence[Any] = (),
            order: Sequence[str] = (),
        ) -> list[dict[str, Any]]: ...

    # ---- bookkeeping ------------------------------------------------------------------------

    def _tier_ddl(self, cur: Any) -> None:
        """The tier bookkeeping tables (once per adapter; outside transactions)."""
        if self._tier_ready:
            return
        if not self._bookkept:
            self._bookkeeping_ddl(cur)  # the schemas and the named stage staging uses
            self._bookkept = True
        for name, columns in tier.tier_tables(_TYPES).items():
            self._exec(cur, create_table(self._ref(name), columns))
        self._tier_ready = True

    def _hot(self, target: TableTarget) -> TableRef:
        return TableRef(self.schema, target.name)

    def _stored(self, cur: Any, target: TableTarget) -> dict[str, exp.DataType]:
        stored = self._columns_of(cur, self._hot(target))
        if not stored:
            raise TerminalWarehouseError(
                f"table {target.name!r} has no history to tier yet (nothing replicated to it)"
            )
        return stored

    def _typed_columns(
        self, cur: Any, target: TableTarget, stored: dict[str, exp.DataType]
    ) -> list[tuple[str, ColumnType]]:
        """Every stored column with its logical type (registry, metadata, else stored)."""
        kinds = self._kinds(cur, target.name) | meta_kinds(target)
        return [(n, kinds.get(n) or _stored_kind(n, t)) for n, t in stored.items()]

    def _arrow(
        self, rows: list[dict[str, Any]], columns: Sequence[tuple[str, ColumnType]], table: str
    ) -> pa.Table:
        arrays = [
            column_array(ct, [r[n] for r in rows], table=table, column=n) for n, ct in columns
        ]
        return pa.Table.from_arrays(arrays, names=[n for n, _ in columns])

    # ---- reads ------------------------------------------------------------------------------

    def tier_candidates(self, target: TableTarget, cutoff: dt.datetime) -> pa.Table:
        """Every stored column of the rows due before ``cutoff`` (not held by a restore), as
        Arrow ready for Parquet (VARIANT and ARRAY columns as their JSON text)."""

        def work(cur: Any) -> pa.Table:
            self._tier_ddl(cur)
            columns = self._typed_columns(cur, target, self._stored(cur, target))
            projections = [col(n, HOT) for n, _ in columns]
            query = tier.candidates(self._hot(target), self._ref(HOLDS), target, projections, _TS)
            params = [_iso(cutoff), target.name, _iso(dt.datetime.now(dt.UTC))]
            rows = self._read(cur, query, columns, params)
            return parquet_ready(self._arrow(rows, columns, target.name), table_name=target.name)

        result: pa.Table = self._run(work, table=target.name)
        return result

    def _live(self, cur: Any, table: str) -> list[TierFile]:
        kinds = [(c, _INT64 if c in ("rows", "bytes") else _TEXT) for c in FILE_COLUMNS]
        query = tier.of_table(self._ref(FILES), FILE_COLUMNS)
        rows = self._read(cur, query, kinds, [table], order=("tier", "month", "path"))
        return [TierFile(*(r[c] for c in FILE_COLUMNS)) for r in rows]

    def tier_files(self, table: str) -> list[TierFile]:
        """The live file set of a table (what its history view reads)."""

        def work(cur: Any) -> list[TierFile]:
            self._tier_ddl(cur)
            return self._live(cur, table)

        result: list[TierFile] = self._run(work, table=table)
        return result

    def tier_moves(self, table: str) -> list[dict[str, Any]]:
        """The audit of a table's moves, oldest first."""
        ints = {"rows", "files_added", "files_removed", "bytes_added"}
        kinds = [
            (c, _TSTZ if c in ("cutoff", "moved_at") else _INT64 if c in ints else _TEXT)
            for c in MOVE_COLUMNS
        ]
        query = tier.of_table(self._ref(MOVES), MOVE_COLUMNS)

        def work(cur: Any) -> list[dict[str, Any]]:
            self._tier_ddl(cur)
            return self._read(cur, query, kinds, [table], order=("moved_at", "move_id"))

        result: list[dict[str, Any]] = self._run(work, table=table)
        return result

    def history_rows(self, target: TableTarget, as_of: dt.datetime | None = None) -> pa.Table:
        """The history view's rows (the hot table and, with a stage, the live tier files), or
        the versions valid at ``as_of`` (scd2). Typed Arrow (intervals, lists as such)."""
        if as_of is not None and target.mode != "scd2":
            raise TerminalWarehouseError(f"table {target.name!r}: as-of needs an scd2 table")
        view = TableRef(self.schema, history_view(target))

        def work(cur: Any) -> pa.Table:
            self._tier_ddl(cur)
            stored = self._stored(cur, target)
            if not self._columns_of(cur, view):
                self._define_view(cur, target, stored)
            columns = self._typed_columns(cur, target, stored)
            query = tier.select_from(view, [n for n, _ in columns])
            params: list[Any] = []
            if as_of is not None:
                query = query.where(tier.valid_at(target, _TS))
                params = [_iso(as_of), _iso(as_of)]
            rows = self._read(cur, query, columns, params)
            return self._arrow(rows, columns, target.name)

        result: pa.Table = self._run(work, table=target.name)
        return result

    # ---- the view ---------------------------------------------------------------------------

    def _tiers(self, target: TableTarget) -> TableRef:
        return self._ref(f"{target.name}__tiers")

    def _define_view(self, cur: Any, target: TableTarget, stored: dict[str, exp.DataType]) -> None:
        """DDL (outside transactions): with a stage, the external table (created, refreshed:
        the files written before this move are registered) and the view over both."""
        view = TableRef(self.schema, history_view(target))
        columns = list(stored.items())
        if self.tier_stage:
            tiers = self._tiers(target)
            self._exec(cur, create_external_table(tiers, self.tier_stage, target.name))
            self._exec(cur, refresh_external_table(tiers))
            text = history_view_sql(view, self._hot(target), columns, table=target.name,
                                    tiers=tiers, files=self._ref(FILES))  # fmt: skip
        else:
            text = history_view_sql(view, self._hot(target), columns, table=target.name)
        self._exec(cur, text)

    def ensure_history_view(self, target: TableTarget) -> None:
        """(Re)define ``<table>_history`` (and refresh the external table) if the table exists."""

        def work(cur: Any) -> None:
            self._tier_ddl(cur)
            stored = self._columns_of(cur, self._hot(target))
            if stored:
                self._define_view(cur, target, stored)

        self._run(work, table=target.name)

    def present_keys(self, target: TableTarget, keys: pa.Table) -> pa.Table:
        """Which of ``keys`` (key columns) the hot table holds (staged as data and joined)."""
        if keys.num_rows == 0:
            return keys

        def work(cur: Any) -> pa.Table:
            stored = self._stored(cur, target)
            rows = pa.array(range(keys.num_rows), pa.int64())
            data = _positional(keys.append_column(_STAGED_ROW, rows), extra=_STAGED_ROW)
            staged = self._stage(cur, "tier_keys", data, target.name)
            match = tier.match(
                [(col(k, HOT), self._staged("k", i, stored[k]))
                 for i, k in enumerate(keys.column_names)]
            )  # fmt: skip
            query = tier.present(staged, self._hot(target), [col(_STAGED_ROW, "k")], match)
            found = self._read(cur, query, [(_STAGED_ROW, _INT64)], order=(_STAGED_ROW,))
            return keys.take(pa.array([r[_STAGED_ROW] for r in found], pa.int64()))

        result: pa.Table = self._run(work, table=target.name)
        return result

    @staticmethod
    def _staged(alias: str, index: int, dtype: exp.DataType) -> exp.Expr:
        """Staged column ``c<index>`` as a value of the stored type (JSON text parsed for
        VARIANT and ARRAY)."""
        return staged_value(col(f"c{index}", alias), dtype)

    # ---- the move ---------------------------------------------------------------------------

    def _markers_ddl(
        self, cur: Any, target: TableTarget, key: Sequence[str], stored: dict[str, exp.DataType]
    ) -> TableRef:
        """The delete-marker table of a tiered mirror table (key columns + lsn)."""
        markers = self._ref(f"{target.name}__deleted")
        cols = [(k, stored[k]) for k in key] + [(target.metadata.lsn, number(19, 0))]
        self._exec(cur, create_table(markers, cols))
        return markers

    def _restore_types(
        self, cur: Any, target: TableTarget, stored: dict[str, exp.DataType]
    ) -> dict[str, exp.DataType]:
        """Stored types, ARRAY where the registry says so (fakesnow reports ARRAY as VARIANT)."""
        kinds = self._kinds(cur, target.name)
        out = dict(stored)
        for name, ct in kinds.items():
            if name in out and ct.kind is Kind.ARRAY:
                out[name] = exp.DataType(this=DT.ARRAY)
        return out

    def apply_tier_change(
        self, target: TableTarget, change: TierChange, key: Sequence[str]
    ) -> None:
        """One move, all or nothing (see the module docstring and :mod:`warehouse.tiering`)."""
        hot = self._hot(target)
        lsn = target.metadata.lsn
        gone = change.remove_rows if change.remove_rows is not None else None
        back = change.insert_rows if change.insert_rows is not None else None
        if gone is not None and gone.num_rows == 0:
            gone = None
        if back is not None and back.num_rows == 0:
            back = None

        def prepare(cur: Any) -> tuple[dict[str, exp.DataType], Any, Any, Any]:
            self._tier_ddl(cur)
            stored = self._restore_types(cur, target, self._stored(cur, target))
            gone_ref = back_ref = markers = None
            if gone is not None:
                ids = _positional(gone.select([*key, lsn]), extra=_STAGED_LSN)
                gone_ref = self._stage(cur, "tier_gone", ids, target.name)
                if target.mode == "mirror":
                    markers = self._markers_ddl(cur, target, key, stored)
            if back is not None:
                extra = sorted(set(back.column_names) - set(stored))
                if extra:
                    raise TerminalWarehouseError(
                        f"table {target.name!r}: restored rows have columns {extra} the table "
                        "doesn't have; nothing restored"
                    )
                back_ref = self._stage(cur, "tier_back", _positional(back), target.name)
            self._define_view(cur, target, self._columns_of(cur, hot))
            return stored, gone_ref, back_ref, markers

        stored, gone_ref, back_ref, markers = self._run(prepare, table=target.name)
        cur = self._connection().cursor()
        self._tagged = target.name
        try:
            self._exec(cur, exp.Transaction())
            if gone is not None:
                names = [*key, lsn]
                pairs = [(col(c, HOT), self._staged(GONE, i, stored[c])) for i, c in enumerate(key)]
                pairs.append((col(lsn, HOT), col(_STAGED_LSN, GONE)))
                delete = tier.delete_moved(hot, gone_ref, target, tier.match(pairs), _TS)
                row = self._exec(cur, delete, [_iso(change.cutoff)]).fetchone()
                deleted = int(row[0]) if row else 0
                if markers is not None:
                    on = tier.match(
                        [(col(k, "d"), self._staged(GONE, i, stored[k])) for i, k in enumerate(key)]
                    )
                    self._exec(cur, tier.delete_using(markers, "d", gone_ref, on))
                    values = [col(f"c{i}", GONE) for i in range(len(key))]
                    values.append(col(_STAGED_LSN, GONE))
                    self._exec(cur, tier.insert_from(markers, names, values, gone_ref, GONE))
                if deleted != gone.num_rows:
                    raise TierConflictError(
                        f"table {target.name!r}: {gone.num_rows} rows were written to the "
                        f"warm tier but {deleted} are still due in the table (changed "
                        "meanwhile); nothing moved, the next run retries"
                    )
            if back is not None:
                cols = back.column_names
                restored = [self._staged("s", i, stored[c]) for i, c in enumerate(cols)]
                self._exec(cur, tier.insert_from(hot, cols, restored, back_ref, "s"))
            files = self._ref(FILES)
            for f in change.remove_files:
                self._exec(cur, tier.delete_file(files), [f.path])
            if change.add_files:
                columns = (*FILE_COLUMNS, "added_at")
                self._exec(
                    cur,
                    tier.insert_rows(files, columns, ("added_at",), len(change.add_files), _TS),
                    [v for f in change.add_files
                     for v in (f.table, f.tier, f.month, f.path, f.rows, f.checksum, f.bytes,
                               f.move_id, _iso(change.at))],
                )  # fmt: skip
            if change.hold is not None:
                h = change.hold
                self._exec(
                    cur,
                    tier.insert_rows(self._ref(HOLDS), HOLD_COLUMNS, HOLD_COLUMNS[1:], ts=_TS),
                    [target.name, _iso(h.closed_from), _iso(h.closed_to), _iso(h.until)],
                )
            self._exec(
                cur,
                tier.insert_rows(self._ref(MOVES), MOVE_COLUMNS, ("cutoff", "moved_at"), ts=_TS),
                [change.move_id, target.name, change.kind, _iso(change.cutoff), change.rows,
                 len(change.add_files), len(change.remove_files),
                 sum(f.bytes for f in change.add_files), _iso(change.at)],
            )  # fmt: skip
            self._exec(cur, exp.Commit())
        except BaseException as exc:
            with contextlib.suppress(sf_errors.Error, OSError):
                self._exec(cur, exp.Rollback())
            if isinstance(exc, sf_errors.Error | OSError):
                raise self._failed(exc, target.name) from exc
            raise
        finally:
            self._tagged = None
