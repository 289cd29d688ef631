"""The embedded DuckDB warehouse.

DuckDB allows one read-write process per file, and while a process holds the file no other
process can open it at all. So by default every :meth:`DuckDBWarehouse.apply` opens the file,
does its one transaction and closes it again: between batches ``cdc status``, reconciliation or
an ad-hoc query in another process can open the file (architecture.md §5). Opening a file that
someone else holds is retried with exponential backoff for a bounded time, then reported as a
:class:`~warehouse.base.TransientWarehouseError`. ``keep_open=True`` holds one connection
instead (benchmarks, tests and tools that own the file).

Target tables have no PRIMARY KEY constraint: uniqueness per key comes from the plan (one row
per key per stage) and the MERGE on the key columns, as on Snowflake where keys are not
enforced either. A DuckDB index would also block ``ALTER COLUMN ... TYPE`` on indexed columns
and cost index maintenance on every update, for no extra safety here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import duckdb
import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import ParseError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_any,
    wait_exponential,
)
from tenacity.stop import stop_base

from cdc import failpoints
from cdc.model import Column, TableSchema
from warehouse import checksum, cost_sql, sql
from warehouse.arrow import (
    column_array,
    fetched_rows,
    key_stage,
    mirror_stage,
    python_values,
    quarantine_stage,
    scd2_stage,
    source_rows_stage,
    stored_rows,
    stored_tails,
)
from warehouse.base import (
    RECONCILE_COLUMNS,
    RECONCILE_COUNTS,
    AppliedPosition,
    ApplyResult,
    Capabilities,
    ComputeRow,
    CostReportRow,
    DataError,
    HistoryReport,
    IncompatibleSchemaChangeError,
    KeyRange,
    OffsetRow,
    QuarantinedChange,
    QuarantineRow,
    RangeChecksum,
    ReconcileRun,
    RegisteredTable,
    SourceRows,
    TableApplyStats,
    TableBatch,
    TableStorage,
    TableTarget,
    TerminalWarehouseError,
    TransientWarehouseError,
    Warehouse,
    WarehouseError,
    compute_values,
    cost_report_row,
    cost_report_values,
    history_report,
    reconcile_run,
    reconcile_values,
    registry_json,
)
from warehouse.duckdb.tiering import DuckDBTiering
from warehouse.key_change import KeyChangeCarry, StoredRow, carry_key_changes
from warehouse.mirror import Key, MirrorPlan, event_key, plan_mirror
from warehouse.quarantine import first_open, hold
from warehouse.scd2 import Scd2Plan, plan_scd2
from warehouse.sql import TableRef, TargetTable, render
from warehouse.types import DT, metadata_types, sql_type, widen

DIALECT: Final = "duckdb"

_DATA_ERRORS = (
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
    duckdb.ConstraintException,
    duckdb.TypeMismatchException,
)


def map_error(exc: duckdb.Error, *, table: str | None, path: str) -> WarehouseError:
    """Classify a DuckDB error by its class (never its message) into the contract's errors."""
    if isinstance(exc, duckdb.IOException):
        return TransientWarehouseError(f"DuckDB file {path}: I/O error, retry later: {exc}")
    if isinstance(exc, duckdb.TransactionException):
        return TransientWarehouseError(f"DuckDB file {path}: transaction conflict: {exc}")
    if isinstance(exc, _DATA_ERRORS):
        return DataError(
            f"table {table!r}: the batch holds a value the target can't take: {exc}", table=table
        )
    return TerminalWarehouseError(
        f"DuckDB file {path} (table {table!r}): {type(exc).__name__}: {exc}. "
        "Not retryable: check the file, the table definitions and the configuration"
    )


class DuckDBWarehouse(DuckDBTiering, Warehouse):
    """A DuckDB file as the warehouse (see the module docstring for the connection policy)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        transactional_ddl=True, max_decimal_precision=38, concurrent_readers=True
    )
    checksum_dialect: ClassVar[Literal["duckdb", "snowflake"]] = "duckdb"

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
        self._bookkept = False
        # fsspec filesystems the connections register (history views reading remote tier files)
        self.tier_filesystems: list[Any] = list(tier_filesystems)
        # Target name -> (target, schema) whose DDL is known committed; skips catalog reads.
        self._ensured: dict[str, tuple[TableTarget, Any]] = {}

    # ---- connections ------------------------------------------------------------------------

    def _open(self) -> duckdb.DuckDBPyConnection:
        retrying = Retrying(
            retry=retry_if_exception_type(duckdb.IOException),
            stop=stop_any(stop_after_delay(self.lock_timeout_s), _StopWhen(self.interrupted)),
            wait=wait_exponential(multiplier=0.01, min=0.01, max=1.0),
            reraise=True,
        )
        try:
            con = retrying(_connect, self.path)
        except duckdb.IOException as exc:
            raise TransientWarehouseError(
                f"DuckDB file {self.path} could not be opened within {self.lock_timeout_s:g}s; "
                f"another process probably holds it (a `cdc run` or a long query): {exc}"
            ) from exc
        con.execute("SET TimeZone = 'UTC'")
        for fs in self.tier_filesystems:  # history views reading tier files on S3 etc.
            if not con.filesystem_is_registered(fs.protocol if isinstance(fs.protocol, str)
                                                else fs.protocol[0]):  # fmt: skip
                con.register_filesystem(fs)
        return con

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
            _disconnect(con)

    def close(self) -> None:
        if self._held is not None:
            _disconnect(self._held)
            self._held = None

    def _exec(
        self, con: duckdb.DuckDBPyConnection, stmt: exp.Expression, params: Sequence[Any] = ()
    ) -> duckdb.DuckDBPyConnection:
        return con.execute(render(stmt, DIALECT), list(params) if params else None)

    def _arrow(
        self, con: duckdb.DuckDBPyConnection, stmt: exp.Expression, params: Sequence[Any] = ()
    ) -> pa.Table:
        """A query's result as Arrow (no row-by-row Python objects)."""
        return con.sql(render(stmt, DIALECT), params=list(params) or None).to_arrow_table()

    # ---- bookkeeping ------------------------------------------------------------------------

    def _ref(self, name: str) -> TableRef:
        return TableRef(self.bookkeeping_schema, name)

    def _bookkeeping_ddl(self, con: duckdb.DuckDBPyConnection) -> None:
        def t(name: str) -> exp.DataType:
            return exp.DataType.build(name, dialect=DIALECT)

        self._exec(con, sql.create_schema(self.bookkeeping_schema))
        self._exec(con, sql.create_schema(self.schema))
        offsets = [
            ("consumer_group", t("VARCHAR")),
            ("topic", t("VARCHAR")),
            ("partition", t("INTEGER")),
            ("next_offset", t("BIGINT")),
            ("updated_at", t("TIMESTAMPTZ")),
        ]
        self._exec(con, sql.create_table(self._ref("offsets"), offsets, sql.OFFSET_KEY))
        tables = [
            ("table_name", t("VARCHAR")),
            ("source_table", t("VARCHAR")),
            ("mode", t("VARCHAR")),
            ("schema_json", t("VARCHAR")),
            ("updated_at", t("TIMESTAMPTZ")),
        ]
        self._exec(con, sql.create_table(self._ref("tables"), tables, ("table_name",)))
        quarantine = [
            *((c, t("VARCHAR")) for c in ("table_name", "key_json", "topic")),
            ("partition", t("INTEGER")),
            ("offset", t("BIGINT")),
            ("lsn", t("BIGINT")),
            *((c, t("VARCHAR")) for c in ("op", "checks", "reason")),
            ("raw_key", t("BLOB")),
            ("raw_value", t("BLOB")),
            ("quarantined_at", t("TIMESTAMPTZ")),
            ("replayed_at", t("TIMESTAMPTZ")),
        ]
        self._exec(con, sql.create_table(self._ref("quarantine"), quarantine))
        reconcile_runs = [
            (c, t("TIMESTAMPTZ") if c in ("started_at", "finished_at") else t("VARCHAR"))
            for c in RECONCILE_COLUMNS
        ]
        for i, (c, _) in enumerate(reconcile_runs):
            if c in RECONCILE_COUNTS:
                reconcile_runs[i] = (c, t("BIGINT"))
        self._exec(con, sql.create_table(self._ref("reconcile_runs"), reconcile_runs))
        self._cost_ddl(con)

    def ensure_bookkeeping(self) -> None:
        with self.connection() as con:
            self._in_transaction(con, lambda: self._bookkeeping_ddl(con), table=None)
        self._bookkept = True

    def _in_transaction(self, con: duckdb.DuckDBPyConnection, work: Any, table: str | None) -> Any:
        con.begin()
        try:
            result = work()
            con.commit()
            return result
        except duckdb.Error as exc:
            _rollback(con)
            raise map_error(exc, table=table, path=self.path) from exc
        except BaseException:
            _rollback(con)
            raise

    # ---- schema -----------------------------------------------------------------------------

    def _sync_table(
        self,
        con: duckdb.DuckDBPyConnection,
        ref: TableRef,
        columns: sql.Columns,
        defaults: Mapping[str, Column] | None = None,
    ) -> None:
        """Create the table if missing, add missing columns, widen compatible types.

        A column added to an existing table gets its source default in the rows already there
        (``defaults``: the columns that have one), as PostgreSQL gives it to its existing rows
        without logging a change; the value is staged as Arrow data, like every other value.
        """
        self._exec(con, sql.create_table(ref, columns))
        rows = self._exec(con, sql.table_columns(), [ref.schema, ref.name]).fetchall()
        existing: dict[str, exp.DataType] = {}
        for name, type_text in rows:
            try:
                existing[name] = exp.DataType.build(type_text, dialect=DIALECT)
            except (ParseError, ValueError) as exc:
                raise IncompatibleSchemaChangeError(
                    f"table {ref.name!r} column {name!r} has type {type_text} this adapter "
                    "does not understand; fix the table by hand"
                ) from exc
        for name, dtype in columns:
            old = existing.get(name)
            if old is None:
                self._exec(con, sql.add_column(ref, name, dtype))
                column = (defaults or {}).get(name)
                if column is not None:
                    value = column_array(column.type, [column.default], table=ref.name, column=name)
                    con.register("_cdc_default", pa.table({"v": value}))
                    try:
                        self._exec(con, sql.fill_column(ref, name, "_cdc_default"))
                    finally:
                        con.unregister("_cdc_default")
                continue
            wider = widen(ref.name, name, old, dtype)
            if wider is not None:
                self._exec(con, sql.alter_column_type(ref, name, wider))

    def _target_table(self, batch: TableBatch) -> TargetTable:
        return sql.target_table(batch, self.schema, self.bookkeeping_schema, sql_type)

    def _check_mode(self, con: duckdb.DuckDBPyConnection, m: TargetTable, mode: str) -> None:
        """Refuse a table that holds rows of the other mode; recreate it if it is empty."""
        registry = exp.select(sql.col("mode")).from_(self._ref("tables").expr())
        registry = registry.where(sql.col("table_name").eq(exp.Placeholder()))
        row = self._exec(con, registry, [m.target.name]).fetchone()
        if row is None or row[0] == mode:
            return
        count = self._exec(con, sql.count_rows(m.target, None)).fetchone()
        rows = int(count[0]) if count else 0
        if rows:
            raise sql.mode_switch_refused(m, rows, row[0], mode)
        self._exec(con, sql.drop(self._current_view(m), "VIEW"))
        for ref in (m.target, self._ref(f"{m.target.name}__deleted")):
            self._exec(con, sql.drop(ref, "TABLE"))

    def _current_view(self, m: TargetTable) -> TableRef:
        return TableRef(self.schema, f"{m.target.name}_current")

    def _ensure_table(
        self,
        con: duckdb.DuckDBPyConnection,
        batch: TableBatch,
        m: TargetTable,
        pending: dict[str, tuple[TableTarget, Any]],
    ) -> None:
        name = batch.target.name
        wanted = (batch.target, batch.schema)
        if self._ensured.get(name) == wanted or pending.get(name) == wanted:
            return
        self._check_mode(con, m, batch.target.mode)
        meta = metadata_types(m.meta, m.soft_delete or m.scd2 is not None)
        if m.scd2 is not None:
            ts, flag = exp.DataType(this=DT.TIMESTAMPTZ), exp.DataType(this=DT.BOOLEAN)
            v = m.scd2
            meta += [(v.valid_from, ts), (v.valid_to, ts.copy()), (v.is_current, flag)]
        defaults = {c.name: c for c in batch.schema.columns if c.default is not None}
        self._sync_table(con, m.target, [*m.columns, *meta], defaults)
        if m.markers is not None:
            keys = [(k, m.columns[m.index(k)][1]) for k in m.key]
            self._sync_table(con, m.markers, [*keys, (m.meta.lsn, exp.DataType(this=DT.BIGINT))])
        if m.scd2 is not None:
            self._exec(con, sql.create_current_view(self._current_view(m), m))
        params = [name, str(batch.schema.table), batch.target.mode, registry_json(batch)]
        self._exec(con, sql.register_table(self._ref("tables")), params)
        pending[name] = wanted

    # ---- apply ------------------------------------------------------------------------------

    def apply(
        self,
        batches: Sequence[TableBatch],
        offsets: Sequence[OffsetRow],
        quarantine: Sequence[QuarantineRow] = (),
        resolve: Sequence[QuarantineRow] = (),
    ) -> ApplyResult:
        started = time.perf_counter()
        work: list[
            tuple[TableBatch, TargetTable, tuple[MirrorPlan, pa.Table, Any] | None, KeyChangeCarry]
        ] = []
        for batch in batches:
            with _naming_table(batch.target.name):
                m = self._target_table(batch)
                carry = carry_key_changes(batch)
                batch = carry.batch
                # mirror tables plan before the transaction (unless a key change needs a
                # stored value); scd2 tables need the stored tails
                mirror = None
                if m.scd2 is None and not carry.asks:
                    plan = plan_mirror(batch)
                    mirror = (plan, *mirror_stage(plan))
            work.append((batch, m, mirror, carry))
        pending: dict[str, tuple[TableTarget, Any]] = {}
        stats: list[TableApplyStats] = []
        registered: list[str] = []
        current: str | None = None
        with self.connection() as con:
            con.begin()
            try:
                if not self._bookkept:
                    self._bookkeeping_ddl(con)
                if resolve:
                    self._stage_quarantine(con, resolve, "_cdc_stage_resolve", registered)
                    self._exec(con, sql.quarantine_resolve(self._ref("quarantine"), registered[-1]))
                stored = list(quarantine)
                for i, (batch, m, mirror, carry) in enumerate(work):
                    current = batch.target.name
                    unresolved = 0
                    if carry.asks:
                        with _naming_table(current):
                            self._ensure_table(con, batch, m, pending)
                            batch, unresolved = self._carry_key_changes(con, carry, m, registered)
                        if m.scd2 is None:
                            plan = plan_mirror(batch)
                            mirror = (plan, *mirror_stage(plan))
                    held: list[QuarantineRow] = []
                    if batch.target.quarantine:
                        batch, held = self._hold(con, batch, quarantine)
                        stored += held
                        if held and mirror is not None:
                            plan = plan_mirror(batch)
                            mirror = (plan, *mirror_stage(plan))
                    if not batch.events:
                        stats.append(TableApplyStats(current, held=len(held)))
                        continue
                    with _naming_table(current):
                        self._ensure_table(con, batch, m, pending)
                        name = f"_cdc_stage_{i}"
                        if mirror is None:
                            table_stats = self._apply_scd2(con, batch, m, name, registered)
                        else:
                            plan, stage, toast = mirror
                            con.register(name, stage)
                            registered.append(name)
                            table_stats = self._apply_plan(con, m, plan, name, toast)
                        table_stats.held = len(held)
                        table_stats.toast_unresolved = unresolved
                        stats.append(table_stats)
                current = None
                if stored:
                    self._stage_quarantine(con, stored, "_cdc_stage_quarantine", registered)
                    self._exec(con, sql.quarantine_insert(self._ref("quarantine"), registered[-1]))
                self._store_offsets(con, offsets, registered)
                failpoints.reach("before_warehouse_commit")
                con.commit()
            except duckdb.Error as exc:
                _rollback(con)
                raise map_error(exc, table=current, path=self.path) from exc
            except BaseException:
                _rollback(con)
                raise
            finally:
                for name in registered:
                    con.unregister(name)
        self._bookkept = True
        self._ensured.update(pending)
        return ApplyResult(tables=stats, seconds=time.perf_counter() - started)

    def takes_columns(self, target: TableTarget) -> bool:
        return target.mode == "mirror" and not target.quarantine

    def load_rows(self, rows: SourceRows, offsets: Sequence[OffsetRow] = ()) -> ApplyResult:
        """Mirror tables: the rows staged column-wise and upserted under the position guard
        (no per-row planning: source rows have distinct keys and no TOAST placeholders).
        Other tables (scd2, quarantine holds) take the event path of the base class."""
        target = rows.target
        if not self.takes_columns(target) or not len(rows):
            return super().load_rows(rows, offsets)
        started = time.perf_counter()
        batch = TableBatch(target, rows.schema, ())
        with _naming_table(target.name):
            m = self._target_table(batch)
            stage = source_rows_stage(rows)
        pending: dict[str, tuple[TableTarget, Any]] = {}
        registered: list[str] = []
        name = "_cdc_stage_rows"

        def work(con: duckdb.DuckDBPyConnection) -> TableApplyStats:
            if not self._bookkept:
                self._bookkeeping_ddl(con)
            with _naming_table(target.name):
                self._ensure_table(con, batch, m, pending)
            con.register(name, stage)
            registered.append(name)
            row = self._exec(con, sql.guard_counts(m, name)).fetchone()
            upserted = int(row[0]) if row else 0
            self._exec(con, sql.mirror_upsert(m, name, frozenset()))
            if m.markers is not None:
                self._exec(con, sql.prune_delete_markers(m, name))
            self._store_offsets(con, offsets, registered)
            n = len(rows)
            return TableApplyStats(target.name, events=n, upserted=upserted, stale=n - upserted)

        with self.connection() as con:
            try:
                stats = self._in_transaction(con, lambda: work(con), table=target.name)
            finally:
                for staged in registered:
                    con.unregister(staged)
        self._bookkept = True
        self._ensured.update(pending)
        return ApplyResult(tables=[stats], seconds=time.perf_counter() - started)

    def _carry_key_changes(
        self,
        con: duckdb.DuckDBPyConnection,
        carry: KeyChangeCarry,
        m: TargetTable,
        registered: list[str],
    ) -> tuple[TableBatch, int]:
        """Fill key changes' placeholders from stored rows: which key was deleted at each
        orphan create's LSN (one query), then those old keys' stored rows (one query)."""
        schema = carry.batch.schema

        def query(stage: str, data: pa.Table, statement: Any) -> pa.Table:
            name = f"_cdc_stage_{stage}_{len(registered)}"
            con.register(name, data)
            registered.append(name)
            return self._arrow(con, statement(m, name))

        if carry.orphans:
            lsns = pa.table({"lsn": pa.array(list(carry.orphans), pa.int64())})
            found = query("orphans", lsns, sql.deleted_at)
            types = dict(m.columns)
            key_values = [
                python_values(found.column(j), types[k]) for j, k in enumerate(schema.key)
            ]
            positions = found.column(len(schema.key)).to_pylist()
            keys = zip(*key_values, strict=True)
            carry = carry.link({int(p): tuple(k) for k, p in zip(keys, positions, strict=True)})
        stored: dict[Key, StoredRow] = {}
        if carry.needs:
            old = key_stage(schema, list(carry.needs), m.target.name)
            rows = query("old_keys", old, sql.latest_rows)
            lsns = rows.column(len(m.columns)).to_pylist()
            for (key, values), lsn in zip(
                stored_rows(schema, m.columns, rows).items(), lsns, strict=True
            ):
                stored[key] = StoredRow(int(lsn), values)
        return carry.fill(stored)

    def _hold(
        self, con: duckdb.DuckDBPyConnection, batch: TableBatch, new: Sequence[QuarantineRow]
    ) -> tuple[TableBatch, list[QuarantineRow]]:
        """Hold the batch's changes of keys with an earlier open quarantined change."""
        rows = self._exec(con, sql.quarantine_open(self._ref("quarantine")), [batch.target.name])
        stored = {key: (int(p), int(o)) for key, p, o in rows.fetchall()}
        mine = [r for r in new if r.table == batch.target.name]
        return hold(batch, first_open(mine, stored))

    def _stage_quarantine(
        self,
        con: duckdb.DuckDBPyConnection,
        rows: Sequence[QuarantineRow],
        name: str,
        registered: list[str],
    ) -> None:
        table = quarantine_stage(rows)
        con.register(name, table)
        registered.append(name)

    def list_quarantine(
        self, table: str | None = None, *, include_replayed: bool = False
    ) -> list[QuarantinedChange]:
        query = sql.quarantine_list(self._ref("quarantine"), table is not None, include_replayed)
        with self.connection() as con:
            try:
                if not self._bookkept:
                    self._in_transaction(con, lambda: self._bookkeeping_ddl(con), table=None)
                rows = self._exec(con, query, [table] if table is not None else []).fetchall()
            except duckdb.Error as exc:
                raise map_error(exc, table=table, path=self.path) from exc
        out = []
        for r in rows:
            row = QuarantineRow(
                table=r[0], key=r[1], topic=r[2], partition=int(r[3]), offset=int(r[4]),
                lsn=int(r[5]), op=r[6], checks=tuple(json.loads(r[7])), reason=r[8],
                raw_key=r[9], raw_value=r[10],
            )  # fmt: skip
            out.append(QuarantinedChange(row, quarantined_at=r[11], replayed_at=r[12]))
        return out

    def _apply_scd2(
        self,
        con: duckdb.DuckDBPyConnection,
        batch: TableBatch,
        m: TargetTable,
        name: str,
        registered: list[str],
    ) -> TableApplyStats:
        """Fetch the stored tails of the batch's keys, plan, then a handful of statements."""
        keys = list(dict.fromkeys(event_key(e, batch.schema, m.target.name) for e in batch.events))
        con.register(f"{name}_keys", key_stage(batch.schema, keys, m.target.name))
        registered.append(f"{name}_keys")
        versions = self._arrow(con, sql.scd2_tail(m, f"{name}_keys"))
        markers = self._arrow(con, sql.scd2_hwm(m, f"{name}_keys"))
        plan = plan_scd2(batch, stored_tails(batch.schema, m.columns, versions, markers))
        if not plan.empty:
            con.register(name, scd2_stage(plan))
            registered.append(name)
            self._run_scd2(con, m, plan, name)
        return TableApplyStats(
            table=plan.table,
            events=plan.events,
            upserted=plan.upserted,
            deleted=plan.deleted,
            stale=plan.stale,
            versions_opened=plan.opened,
            versions_closed=plan.closed,
        )

    def _run_scd2(
        self, con: duckdb.DuckDBPyConnection, m: TargetTable, plan: Scd2Plan, stage: str
    ) -> None:
        if plan.removes:
            self._exec(con, sql.scd2_remove(m, stage))
        if plan.updates:
            self._exec(con, sql.scd2_update(m, stage))
        if plan.inserts:
            self._exec(con, sql.scd2_insert(m, stage))
        if plan.deletes:
            self._exec(con, sql.record_delete_markers(m, stage))

    def _apply_plan(
        self,
        con: duckdb.DuckDBPyConnection,
        m: TargetTable,
        plan: MirrorPlan,
        stage: str,
        toast: frozenset[int],
    ) -> TableApplyStats:
        """The set-based statements of one table: constant in number, whatever the batch size."""
        row = self._exec(con, sql.guard_counts(m, stage)).fetchone()
        upserts, deletes = (int(row[0]), int(row[1])) if row else (0, 0)
        if plan.upserts:
            self._exec(con, sql.mirror_upsert(m, stage, toast))
        if plan.deletes and m.soft_delete:
            self._exec(con, sql.soft_delete(m, stage))
        elif plan.deletes:
            self._exec(con, sql.record_delete_markers(m, stage))
            self._exec(con, sql.hard_delete(m, stage))
        if plan.upserts and m.markers is not None:
            self._exec(con, sql.prune_delete_markers(m, stage))
        staged = len(plan.upserts) + len(plan.deletes)
        return TableApplyStats(
            table=plan.table,
            events=plan.events,
            upserted=upserts,
            deleted=deletes,
            stale=staged - upserts - deletes,
        )

    def _store_offsets(
        self, con: duckdb.DuckDBPyConnection, offsets: Sequence[OffsetRow], registered: list[str]
    ) -> None:
        newest: dict[tuple[str, str, int], int] = {}
        for o in offsets:
            k = (o.consumer_group, o.topic, o.partition)
            newest[k] = max(newest.get(k, o.next_offset), o.next_offset)
        if not newest:
            return
        table = pa.table(
            {
                "consumer_group": pa.array([k[0] for k in newest], pa.string()),
                "topic": pa.array([k[1] for k in newest], pa.string()),
                "partition": pa.array([k[2] for k in newest], pa.int32()),
                "next_offset": pa.array(list(newest.values()), pa.int64()),
            }
        )
        con.register("_cdc_stage_offsets", table)
        registered.append("_cdc_stage_offsets")
        self._exec(con, sql.upsert_offsets(self._ref("offsets"), "_cdc_stage_offsets"))

    # ---- reads ------------------------------------------------------------------------------

    def load_offsets(self, consumer_group: str) -> dict[tuple[str, int], int]:
        with self.connection() as con:
            try:
                rows = self._exec(con, sql.select_offsets(self._ref("offsets")), [consumer_group])
                return {(topic, int(p)): int(n) for topic, p, n in rows.fetchall()}
            except duckdb.CatalogException:
                return {}  # no bookkeeping yet: nothing was ever applied to this file
            except duckdb.Error as exc:
                raise map_error(exc, table=None, path=self.path) from exc

    def _stored_columns(
        self, con: duckdb.DuckDBPyConnection, ref: TableRef
    ) -> list[tuple[str, exp.DataType]]:
        rows = self._exec(con, sql.table_columns(), [ref.schema, ref.name]).fetchall()
        if not rows:
            raise TerminalWarehouseError(f"table {ref.schema}.{ref.name} does not exist")
        return [(name, exp.DataType.build(text, dialect=DIALECT)) for name, text in rows]

    def _live_query(
        self, con: duckdb.DuckDBPyConnection, target: TableTarget
    ) -> tuple[exp.Select, list[tuple[str, exp.DataType]]]:
        """Live rows: mirror rows not soft-deleted, or current scd2 versions; data columns."""
        ref = TableRef(self.schema, target.name)
        stored = self._stored_columns(con, ref)
        names = {name for name, _ in stored}
        hidden = sql.reserved_columns(target)
        columns = [(name, dtype) for name, dtype in stored if name not in hidden]
        if target.mode == "scd2":
            query = sql.select_live(ref, columns, None).where(sql.col(target.scd2.is_current))
            return query, columns
        deleted = target.metadata.deleted if target.metadata.deleted in names else None
        return sql.select_live(ref, columns, deleted), columns

    def fetch_table_arrow(self, target: TableTarget) -> pa.Table:
        """Live rows as Arrow, in the staging representation (UUID/JSON text, TIMETZ as UTC)."""
        with self.connection() as con:
            try:
                query, _ = self._live_query(con, target)
                return self._arrow(con, query)
            except duckdb.Error as exc:
                raise map_error(exc, table=target.name, path=self.path) from exc

    def fetch_table(self, target: TableTarget) -> list[dict[str, Any]]:
        with self.connection() as con:
            try:
                query, columns = self._live_query(con, target)
                table = self._arrow(con, query)
            except duckdb.Error as exc:
                raise map_error(exc, table=target.name, path=self.path) from exc
        return fetched_rows(table, columns)

    def registered(self, name: str) -> RegisteredTable | None:
        query = exp.select(sql.col("source_table"), sql.col("mode"), sql.col("schema_json"))
        query = query.from_(self._ref("tables").expr())
        query = query.where(sql.col("table_name").eq(exp.Placeholder()))
        with self.connection() as con:
            try:
                row = self._exec(con, query, [name]).fetchone()
            except duckdb.CatalogException:
                return None  # no bookkeeping yet: nothing was ever replicated to this file
            except duckdb.Error as exc:
                raise map_error(exc, table=name, path=self.path) from exc
        if row is None:
            return None
        key = tuple(json.loads(row[2])["schema"]["key"])
        return RegisteredTable(name=name, source_table=row[0], mode=row[1], key=key)

    def _history_table(self, con: duckdb.DuckDBPyConnection, target: TableTarget) -> TargetTable:
        """The statements' view of a registered scd2 table (key from the registry)."""
        if target.mode != "scd2":
            raise TerminalWarehouseError(f"table {target.name!r} is not an scd2 table")
        registry = exp.select(sql.col("schema_json")).from_(self._ref("tables").expr())
        registry = registry.where(sql.col("table_name").eq(exp.Placeholder()))
        row = self._exec(con, registry, [target.name]).fetchone()
        if row is None:
            raise TerminalWarehouseError(
                f"table {target.name!r} has no history yet (nothing replicated to it)"
            )
        key = json.loads(row[0])["schema"]["key"]
        ref = TableRef(self.schema, target.name)
        return sql.history_table(ref, key, target.metadata, target.scd2)

    def fetch_history(
        self, target: TableTarget, key: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every version (or those of one key, given as the key columns' values in text)."""
        with self.connection() as con:
            try:
                m = self._history_table(con, target)
                columns = self._stored_columns(con, m.target)
                query, params = sql.of_key(sql.select_history(m, columns), m, key)
                table = self._arrow(con, query, params)
            except duckdb.Error as exc:
                raise map_error(exc, table=target.name, path=self.path) from exc
        return fetched_rows(table, columns)

    def close_history_gaps(self, target: TableTarget) -> HistoryReport:
        def work(con: duckdb.DuckDBPyConnection) -> None:
            self._exec(con, sql.scd2_close_gaps(self._history_table(con, target)))

        with self.connection() as con:
            self._in_transaction(con, lambda: work(con), table=target.name)
        return self.history_report(target)

    def history_report(self, target: TableTarget) -> HistoryReport:
        strict = target.scd2.granularity == "transaction"
        with self.connection() as con:
            try:
                m = self._history_table(con, target)
                counts = self._exec(con, sql.history_counts(m, strict)).fetchone()
                examples = self._exec(con, sql.history_examples(m, strict)).fetchall()
            except duckdb.Error as exc:
                raise map_error(exc, table=target.name, path=self.path) from exc
        assert counts is not None
        return history_report(target.name, counts, examples, sql.HISTORY_CHECKS)

    def last_applied(self, target: TableTarget) -> AppliedPosition | None:
        query = sql.newest_applied(TableRef(self.schema, target.name), target.metadata)
        with self.connection() as con:
            try:
                row = self._exec(con, query).fetchone()
            except duckdb.CatalogException:
                return None  # not created yet: nothing applied
            except duckdb.Error as exc:
                raise map_error(exc, table=target.name, path=self.path) from exc
        assert row is not None
        return AppliedPosition(None if row[0] is None else int(row[0]), row[1], row[2])

    # ---- reconciliation ----------------------------------------------------------------------

    def _reconcile_view(
        self, con: duckdb.DuckDBPyConnection, target: TableTarget
    ) -> tuple[TableRef, dict[str, exp.DataType], exp.Expr | None] | None:
        """The table, its stored columns and its live-row filter (None: no such table)."""
        ref = TableRef(self.schema, target.name)
        rows = self._exec(con, sql.table_columns(), [ref.schema, ref.name]).fetchall()
        if not rows:
            return None
        stored = {name: exp.DataType.build(text, dialect=DIALECT) for name, text in rows}
        return ref, stored, checksum.live_condition(target, set(stored))

    def checksums(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[KeyRange]
    ) -> list[RangeChecksum]:
        with self.connection() as con:
            try:
                view = self._reconcile_view(con, target)
                if view is None:
                    return [RangeChecksum(0, 0) for _ in ranges]
                ref, stored, live = view
                query, params = checksum.checksum_query(
                    ref, schema.columns, schema.key, ranges, DIALECT, live=live,
                    present=set(stored),
                )  # fmt: skip
                found = self._exec(con, query, params).fetchall()
            except duckdb.Error as exc:
                raise map_error(exc, table=target.name, path=self.path) from exc
        sums = {int(i): RangeChecksum(int(n), int(s or 0)) for i, n, s in found}
        return [sums[i] for i in range(len(ranges))]

    def _rows(
        self, con: duckdb.DuckDBPyConnection, target: TableTarget, schema: TableSchema,
        build: Any,
    ) -> list[tuple[dict[str, Any], int]]:  # fmt: skip
        view = self._reconcile_view(con, target)
        if view is None:
            return []
        ref, stored, live = view
        columns = [(n, stored[n]) for n in schema.names if n in stored]
        lsn = target.metadata.lsn
        projections = [p for p in sql.select_live(ref, columns, None).expressions]
        projections.append(exp.alias_(sql.col(lsn), sql.ident(lsn)))
        query, params = build(ref, projections, live)
        table = self._arrow(con, query, params)
        fetched = fetched_rows(table, [*columns, (lsn, exp.DataType(this=DT.BIGINT))])
        missing = [n for n in schema.names if n not in stored]
        out = []
        for row in fetched:
            position = int(row.pop(lsn) or 0)
            out.append(({**row, **dict.fromkeys(missing)}, position))
        return out

    def range_rows(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[KeyRange]
    ) -> list[tuple[dict[str, Any], int]]:
        key_columns = [schema.column(k) for k in schema.key]
        out: list[tuple[dict[str, Any], int]] = []
        with self.connection() as con:
            try:
                for rng in ranges:

                    def build(ref: TableRef, projections: list[exp.Expr], live: Any,
                              rng: KeyRange = rng) -> Any:  # fmt: skip
                        return checksum.range_rows_query(
                            ref, projections, key_columns, rng, DIALECT, live=live
                        )

                    out += self._rows(con, target, schema, build)
            except duckdb.Error as exc:
                raise map_error(exc, table=target.name, path=self.path) from exc
        return out

    def key_rows(
        self, target: TableTarget, schema: TableSchema, keys: Sequence[tuple[Any, ...]]
    ) -> list[tuple[dict[str, Any], int]]:
        out: list[tuple[dict[str, Any], int]] = []
        with self.connection() as con:
            try:
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]

                    def build(ref: TableRef, projections: list[exp.Expr], live: Any,
                              chunk: Sequence[tuple[Any, ...]] = chunk) -> Any:  # fmt: skip
                        query = checksum.keys_rows_query(ref, projections, schema.key,
                                                         len(chunk), live=live)  # fmt: skip
                        return query, [v for k in chunk for v in k]

                    out += self._rows(con, target, schema, build)
            except duckdb.Error as exc:
                raise map_error(exc, table=target.name, path=self.path) from exc
        return out

    def split_keys(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[tuple[KeyRange, int]]
    ) -> list[list[tuple[Any, ...]]]:
        key_columns = [schema.column(k) for k in schema.key]
        out: list[list[tuple[Any, ...]]] = []
        with self.connection() as con:
            try:
                view = self._reconcile_view(con, target)
                if view is None:
                    return [[] for _ in ranges]
                ref, stored, live = view
                for rng, step in ranges:
                    query, params = checksum.split_query(
                        ref, key_columns, rng, step, DIALECT, live=live
                    )
                    table = self._arrow(con, query, params)
                    rows = fetched_rows(table, [(k, stored[k]) for k in schema.key])
                    out.append([tuple(r[k] for k in schema.key) for r in rows])
            except duckdb.Error as exc:
                raise map_error(exc, table=target.name, path=self.path) from exc
        return out

    def record_reconcile(self, runs: Sequence[ReconcileRun]) -> None:
        if not self._bookkept:
            self.ensure_bookkeeping()
        insert = sql.reconcile_insert(
            self._ref("reconcile_runs"), exp.DataType(this=DT.TIMESTAMPTZ)
        )
        with self.connection() as con:

            def work() -> None:
                for run in runs:
                    self._exec(con, insert, reconcile_values(run))

            self._in_transaction(con, work, table=None)

    def last_reconciles(self) -> dict[str, ReconcileRun]:
        with self.connection() as con:
            try:
                rows = self._exec(con, sql.reconcile_latest(self._ref("reconcile_runs")))
                found = rows.fetchall()
            except duckdb.CatalogException:
                return {}  # no bookkeeping yet, or never reconciled
            except duckdb.Error as exc:
                raise map_error(exc, table=None, path=self.path) from exc
        return {r[3]: reconcile_run(r) for r in found}

    def row_counts(self) -> dict[str, int]:
        """Live rows per registered table (soft-deleted rows excluded)."""
        counts: dict[str, int] = {}
        with self.connection() as con:
            try:
                registry = exp.select(sql.col("table_name"), sql.col("schema_json")).from_(
                    self._ref("tables").expr()
                )
                for name, doc in self._exec(con, registry).fetchall():
                    row = self._exec(con, sql.live_rows_count(self.schema, name, doc)).fetchone()
                    counts[name] = int(row[0]) if row else 0
            except duckdb.Error as exc:
                raise map_error(exc, table=None, path=self.path) from exc
        return counts

    # ---- measured compute and cost reports (cdc.costs) ----------------------------------------

    def _cost_ddl(self, con: duckdb.DuckDBPyConnection) -> None:
        def t(name: str) -> exp.DataType:
            return exp.DataType.build(name, dialect=DIALECT)

        compute = [("job", t("VARCHAR")), ("table_name", t("VARCHAR")), ("seconds", t("DOUBLE")),
                   ("statements", t("BIGINT")), ("at", t("TIMESTAMPTZ"))]  # fmt: skip
        self._exec(con, sql.create_table(self._ref("compute_log"), compute))
        reports = [
            *((c, t("VARCHAR")) for c in ("report_id",)),
            ("at", t("TIMESTAMPTZ")),
            *((c, t("VARCHAR")) for c in ("table_name", "tier")),
            *((c, t("BIGINT")) for c in ("rows", "bytes")),
            *((c, t("DOUBLE")) for c in ("storage_cost", "compute_cost")),
        ]
        self._exec(con, sql.create_table(self._ref("cost_reports"), reports))

    def _append_cost(self, stmt: exp.Insert, values: list[Any]) -> None:
        if not self._bookkept:
            self.ensure_bookkeeping()
        with self.connection() as con:
            self._in_transaction(con, lambda: self._exec(con, stmt, values), table=None)

    def record_compute(self, rows: Sequence[ComputeRow]) -> None:
        if rows:
            ts = exp.DataType(this=DT.TIMESTAMPTZ)
            insert = cost_sql.compute_insert(self._ref("compute_log"), len(rows), ts)
            self._append_cost(insert, [v for r in rows for v in compute_values(r)])

    def compute_totals(self, since: dt.datetime | None) -> dict[tuple[str, str], float]:
        query = cost_sql.compute_totals(
            self._ref("compute_log"), since is not None, exp.DataType(this=DT.TIMESTAMPTZ)
        )
        with self.connection() as con:
            try:
                found = self._exec(con, query, [since.isoformat()] if since else []).fetchall()
            except duckdb.CatalogException:
                return {}  # no bookkeeping yet
            except duckdb.Error as exc:
                raise map_error(exc, table=None, path=self.path) from exc
        return {(str(job), str(table)): float(s or 0) for job, table, s in found}

    def table_storage(self, target: TableTarget) -> TableStorage:
        """``rows``: count(*) of the table (every stored row: closed versions and soft-deleted
        rows included). ``bytes``: the distinct blocks its checkpointed segments occupy
        (``pragma_storage_info``: ``block_id`` and ``additional_block_ids`` of persistent
        segments) times the file's block size (``pragma_database_size``, 256 KiB by
        default), after a ``CHECKPOINT`` that writes committed rows still in the WAL to their
        blocks. A block DuckDB shares between tables (partial blocks) counts for each of them.
        The delete-marker table and the views are not counted."""
        ref = TableRef(self.schema, target.name)
        with self.connection() as con:
            try:
                exists = con.execute(_TABLE_EXISTS, [ref.schema, ref.name]).fetchone()
                if not exists or not exists[0]:
                    return TableStorage(0, 0)
                with contextlib.suppress(duckdb.TransactionException):
                    con.execute("CHECKPOINT")  # rows of the WAL into blocks; busy: as it is
                count = con.execute(render(sql.count_rows(ref, None), DIALECT)).fetchone()
                blocks = con.execute(_BLOCKS, [_qualified(ref)]).fetchone()
                size = con.execute(_BLOCK_SIZE).fetchone()
            except duckdb.Error as exc:
                raise map_error(exc, table=target.name, path=self.path) from exc
        rows = int(count[0]) if count else 0
        return TableStorage(rows, int(blocks[0] if blocks else 0) * int(size[0] if size else 0))

    def record_cost_report(self, rows: Sequence[CostReportRow]) -> None:
        if rows:
            ts = exp.DataType(this=DT.TIMESTAMPTZ)
            insert = cost_sql.cost_report_insert(self._ref("cost_reports"), len(rows), ts)
            self._append_cost(insert, [v for r in rows for v in cost_report_values(r)])

    def cost_history(self) -> list[CostReportRow]:
        with self.connection() as con:
            try:
                found = self._exec(con, cost_sql.cost_history(self._ref("cost_reports")))
                return [cost_report_row(r) for r in found.fetchall()]
            except duckdb.CatalogException:
                return []  # no bookkeeping yet
            except duckdb.Error as exc:
                raise map_error(exc, table=None, path=self.path) from exc


# DuckDB's storage introspection (table_storage); the only inputs are bound parameters
_TABLE_EXISTS = (
    "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2"
)
_BLOCKS = (
    "SELECT count(DISTINCT b) FROM ("
    "SELECT block_id AS b FROM pragma_storage_info($1) WHERE persistent AND block_id >= 0 "
    "UNION ALL SELECT unnest(additional_block_ids) FROM pragma_storage_info($1) "
    "WHERE persistent)"
)
_BLOCK_SIZE = (
    "SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()"
)


def _qualified(ref: TableRef) -> str:
    return render(ref.expr(), DIALECT)


# DuckDB shares one database instance between the connections of a process to one file and
# drops it with the last one. Opening a file while another thread's connection closes races
# with that (seen with duckdb 2.0.1: a thread's query then fails with "Table Function with name
# python_arrow_scan does not exist"), so connects and closes take turns within the process
# (a reconcile or a status read next to `cdc run`'s thread, as in the tests).
_INSTANCE_LOCK = threading.Lock()


class _StopWhen(stop_base):
    """Stop retrying once ``interrupted()`` says so (SIGTERM while a file is held)."""

    def __init__(self, interrupted: Callable[[], bool]) -> None:
        self.interrupted = interrupted

    def __call__(self, retry_state: RetryCallState) -> bool:
        return bool(self.interrupted())


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    with _INSTANCE_LOCK:
        return duckdb.connect(path)


def _disconnect(con: duckdb.DuckDBPyConnection) -> None:
    with _INSTANCE_LOCK:
        con.close()


@contextlib.contextmanager
def _naming_table(table: str) -> Iterator[None]:
    """Tag an IncompatibleSchemaChangeError raised inside with the table it concerns."""
    try:
        yield
    except IncompatibleSchemaChangeError as exc:
        exc.table = exc.table or table
        raise


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back after a failure; a failing rollback must not hide the original error."""
    with contextlib.suppress(duckdb.Error):
        con.rollback()
