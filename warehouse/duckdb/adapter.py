"""The embedded DuckDB warehouse: the hooks of the engine template (:mod:`warehouse.engine`).

DuckDB allows one read-write process per file, and while a process holds the file no other
process can open it at all. So by default every unit of work (an apply, a read) opens the
file, does its work and closes it again: between batches ``cdc status``, reconciliation or an
ad-hoc query in another process can open the file (architecture.md §5). Opening a file that
someone else holds is retried with exponential backoff for a bounded time, then reported as a
:class:`~warehouse.base.TransientWarehouseError` (:mod:`warehouse.duckdb.connection`).
``keep_open=True`` holds one connection instead (benchmarks, tests and tools that own the file).

DDL and MERGE run inside the apply transaction; stages are Arrow tables registered on the
connection (no copy). Target tables have no PRIMARY KEY constraint: uniqueness per key comes
from the plan (one row per key per stage) and the MERGE on the key columns, as on Snowflake
where keys are not enforced either. A DuckDB index would also block ``ALTER COLUMN ... TYPE``
on indexed columns and cost index maintenance on every update, for no extra safety here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

import duckdb
import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import ParseError

from cdc.model import ColumnType
from warehouse import sql
from warehouse.base import (
    Capabilities,
    ChecksumDialect,
    IncompatibleSchemaChangeError,
    TableStorage,
    TableTarget,
    WarehouseError,
)
from warehouse.duckdb.connection import BLOCK_SIZE, BLOCKS, TABLE_EXISTS, disconnect, open_file
from warehouse.duckdb.errors import map_error
from warehouse.duckdb.tiering import DuckDBTiering
from warehouse.engine import Field, SqlWarehouse
from warehouse.fetched import fetched_rows
from warehouse.sql import TableRef, render
from warehouse.types import sql_type, widen

DIALECT: Final = "duckdb"
__all__ = ["DIALECT", "DuckDBWarehouse", "map_error"]


def exact_value(value: exp.Expr, dtype: exp.DataType) -> exp.Expr:
    """A value as compared when rows are matched on all columns: DuckDB's INTERVAL equality
    normalises (``'1 month' = '30 days'``) and a list's compares floats by IEEE (``[-0.0] =
    [0.0]``); their text forms don't (floats print round-trip exact)."""
    floats = (exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE)
    element = dtype.expressions[0] if dtype.expressions else None
    listed = dtype.is_type(exp.DataType.Type.ARRAY, exp.DataType.Type.LIST)
    if dtype.is_type(exp.DataType.Type.INTERVAL) or (
        listed and isinstance(element, exp.DataType) and element.is_type(*floats)
    ):
        return exp.Cast(this=value, to=exp.DataType.build("VARCHAR"))
    return value


class DuckDBWarehouse(DuckDBTiering, SqlWarehouse):
    """A DuckDB file as the warehouse (see the module docstring for the connection policy)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        transactional_ddl=True,
        max_decimal_precision=38,
        concurrent_readers=True,
        merge_in_transaction=True,
        json_as_values=False,
        checksum_dialect="duckdb",
        concurrent_writers=False,
    )
    checksum_dialect: ClassVar[ChecksumDialect] = "duckdb"
    _bookkeeping_keys: ClassVar[bool] = True
    _exact_value: ClassVar[sql.keyless.Exact] = exact_value

    def __init__(
        self,
        path: str | Path,
        schema: str = "main",
        bookkeeping_schema: str = "_cdc",
        *,
        keep_open: bool = False,
        lock_timeout_s: float = 30.0,
        tier_filesystems: Sequence[Any] = (),
    ) -> None:
        self.path = str(path)
        self.schema = schema
        self.bookkeeping_schema = bookkeeping_schema
        self.keep_open = keep_open
        self.lock_timeout_s = lock_timeout_s
        self._held: duckdb.DuckDBPyConnection | None = None
        # fsspec filesystems the connections register (history views reading remote tier files)
        self.tier_filesystems: list[Any] = list(tier_filesystems)
        self._registered: list[str] = []  # Arrow tables registered as stages, by name
        self._init_template()

    @property
    def reads_tiered_history(self) -> bool:
        return True

    # ---- connections ------------------------------------------------------------------------

    def _open(self) -> duckdb.DuckDBPyConnection:
        return open_file(self.path, self.lock_timeout_s, self.interrupted, self.tier_filesystems)

    @contextlib.contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one unit of work: the held one, or a short-lived one."""
        if self.keep_open:
            if self._held is None:
                self._held = self._open()
            yield self._held
            return
        con = self._open()
        try:
            yield con
        finally:
            disconnect(con)

    def close(self) -> None:
        if self._held is not None:
            disconnect(self._held)
            self._held = None

    # ---- the template's hooks ---------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.connection() as con:
            mark = len(self._registered)
            try:
                yield con
            finally:
                for name in self._registered[mark:]:
                    con.unregister(name)
                del self._registered[mark:]

    def _exec(
        self, con: duckdb.DuckDBPyConnection, stmt: exp.Expr | str, params: Sequence[Any] = ()
    ) -> duckdb.DuckDBPyConnection:
        text = stmt if isinstance(stmt, str) else render(stmt, DIALECT)
        return con.execute(text, list(params) if params else None)

    def _arrow(
        self, con: duckdb.DuckDBPyConnection, stmt: exp.Expr, params: Sequence[Any] = ()
    ) -> pa.Table:
        """A query's result as Arrow (no row-by-row Python objects)."""
        return con.sql(render(stmt, DIALECT), params=list(params) or None).to_arrow_table()

    def _fetch(
        self, con: duckdb.DuckDBPyConnection, query: exp.Select, fields: Sequence[Field],
        params: Sequence[Any] = (), order: Sequence[str] = (),
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Rows through Arrow, converted by the stored types (``warehouse.arrow``)."""
        if order:
            query = (
                exp.select(*[sql.col(f.name, "q") for f in fields])
                .from_(query.subquery("q"))
                .order_by(*[sql.col(n, "q") for n in order])
            )
        return fetched_rows(self._arrow(con, query, params), [(f.name, f.dtype) for f in fields])

    def _reserve(self, con: duckdb.DuckDBPyConnection, purpose: str, data: pa.Table) -> str:
        return f"_cdc_stage_{next(self._stage_seq)}"

    def _load(
        self, con: duckdb.DuckDBPyConnection, stage: str, data: pa.Table, table: str | None
    ) -> None:
        con.register(stage, data)
        self._registered.append(stage)

    def _begin(self, con: duckdb.DuckDBPyConnection) -> None:
        con.begin()

    def _commit(self, con: duckdb.DuckDBPyConnection) -> None:
        con.commit()

    def _rollback(self, con: duckdb.DuckDBPyConnection) -> None:
        with contextlib.suppress(duckdb.Error):
            con.rollback()

    def _map_error(self, exc: Exception, table: str | None) -> WarehouseError | None:
        if isinstance(exc, duckdb.Error):
            return map_error(exc, table=table, path=self.path)
        return None

    def _missing(self, exc: Exception) -> bool:
        return isinstance(exc, duckdb.CatalogException)

    def _columns_of(self, con: duckdb.DuckDBPyConnection, ref: TableRef) -> dict[str, exp.DataType]:
        rows = self._exec(con, sql.table_columns(), [ref.schema, ref.name]).fetchall()
        out: dict[str, exp.DataType] = {}
        for name, type_text in rows:
            try:
                out[name] = exp.DataType.build(type_text, dialect=DIALECT)
            except (ParseError, ValueError) as exc:
                raise IncompatibleSchemaChangeError(
                    f"table {ref.name!r} column {name!r} has type {type_text} this adapter "
                    "does not understand; fix the table by hand"
                ) from exc
        return out

    def _type(self, ct: ColumnType) -> exp.DataType:
        return sql_type(ct)

    def _widen(
        self, table: str, name: str, old: exp.DataType, new: exp.DataType
    ) -> exp.DataType | None:
        return widen(table, name, old, new)

    # ---- what only DuckDB does --------------------------------------------------------------

    def takes_columns(self, target: TableTarget) -> bool:
        return target.mode == "mirror" and not target.quarantine

    def fetch_table_arrow(self, target: TableTarget) -> pa.Table:
        """Live rows as Arrow, in the staging representation (UUID/JSON text, TIMETZ as UTC)."""
        with self._session(target.name) as con:
            return self._arrow(con, self._live_query(con, target)[0])

    def table_storage(self, target: TableTarget) -> TableStorage:
        """``rows``: count(*) of the table (every stored row: closed versions and soft-deleted
        rows included). ``bytes``: the distinct blocks its checkpointed segments occupy
        (``pragma_storage_info``: ``block_id`` and ``additional_block_ids`` of persistent
        segments) times the file's block size (``pragma_database_size``, 256 KiB by
        default), after a ``CHECKPOINT`` that writes committed rows still in the WAL to their
        blocks. A block DuckDB shares between tables (partial blocks) counts for each of them.
        The delete-marker table and the views are not counted."""
        ref = TableRef(self.schema, target.name)
        with self._session(target.name) as con:
            exists = con.execute(TABLE_EXISTS, [ref.schema, ref.name]).fetchone()
            if not exists or not exists[0]:
                return TableStorage(0, 0)
            with contextlib.suppress(duckdb.TransactionException):
                con.execute("CHECKPOINT")  # rows of the WAL into blocks; busy: as it is
            count = con.execute(render(sql.count_rows(ref, None), DIALECT)).fetchone()
            blocks = con.execute(BLOCKS, [render(ref.expr(), DIALECT)]).fetchone()
            size = con.execute(BLOCK_SIZE).fetchone()
        rows = int(count[0]) if count else 0
        return TableStorage(rows, int(blocks[0] if blocks else 0) * int(size[0] if size else 0))
