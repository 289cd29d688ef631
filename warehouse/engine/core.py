"""The engine hooks, one unit of work, bookkeeping DDL and table DDL of the template.

An engine (:class:`EngineCore` subclass) supplies only the hooks below; everything built on
them is engine-neutral and lives here, in :mod:`warehouse.engine.apply` and in
:mod:`warehouse.engine.template`. The template reads :class:`~warehouse.base.Capabilities`
where engines differ (DDL in a transaction, MERGE in a transaction), never engine names.

Hooks (``c`` is the engine's handle for one unit of work: a connection, a cursor):

- ``_connect()``: a context manager giving ``c`` (opens, or reuses a held connection);
- ``_exec(c, stmt, params)``: run one statement (sqlglot expression, bound parameters); the
  result has ``fetchone`` / ``fetchall``;
- ``_fetch(c, query, fields, params, order)``: the rows of a query in the ``cdc.model``
  representation (typed fetch; ``fields``: name, stored type, model type of each column);
- ``_reserve(c, purpose, data)`` / ``_load(c, stage, data, table)``: a stage for an Arrow
  table (a name the statements read it by) and loading the table into it;
- ``_begin(c)`` / ``_commit(c)`` / ``_rollback(c)``;
- ``_map_error(exc, table)``: the contract's error for a driver exception (None: not the
  driver's); ``_missing(exc)``: whether it says a table does not exist;
- ``_columns_of(c, ref)``: a table's stored columns and types (empty: no such table);
- ``_type(ct)``: the engine's column type of a model type; ``_widen(...)``: the type to widen
  a stored column to; ``_stage_value``: how a staged column becomes a value of its target
  type (None: as it is); ``_engine_ddl(c)``: the engine's own bookkeeping objects.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import pyarrow as pa
import structlog
from sqlglot import exp

from cdc.model import Column, ColumnType, Kind
from warehouse import sql
from warehouse.arrow import column_array
from warehouse.base import (
    RECONCILE_COLUMNS,
    RECONCILE_COUNTS,
    IncompatibleSchemaChangeError,
    TableBatch,
    TableTarget,
    Warehouse,
    WarehouseError,
    registry_json,
)
from warehouse.sql import TableRef, TargetTable

I32, I64, TEXT, TSTZ, BOOL, BYTES, F64 = (
    ColumnType(k)
    for k in (Kind.INT32, Kind.INT64, Kind.TEXT, Kind.TIMESTAMPTZ, Kind.BOOLEAN, Kind.BYTES,
              Kind.FLOAT64)
)  # fmt: skip
Stage = Any  # an engine's stage: a registered Arrow table's name, a staging table
RECONCILE_KINDS = [
    (n, TSTZ if n in ("started_at", "finished_at") else I64 if n in RECONCILE_COUNTS else TEXT)
    for n in RECONCILE_COLUMNS
]
log = structlog.get_logger("cdc.warehouse")
QUARANTINE_KINDS = {"partition": I64, "offset": I64, "lsn": I64, "raw_key": BYTES,
                    "raw_value": BYTES, "quarantined_at": TSTZ, "replayed_at": TSTZ}  # fmt: skip


class Field(NamedTuple):
    """One fetched column: its name, stored (engine) type and model type (None: unknown)."""

    name: str
    dtype: exp.DataType
    kind: ColumnType | None


def column_type(doc: dict[str, Any]) -> ColumnType:
    """A ColumnType back from the registry's JSON (``dataclasses.asdict`` of it)."""
    element = doc.get("element")
    return ColumnType(
        kind=Kind(doc["kind"]),
        precision=doc.get("precision"),
        scale=doc.get("scale"),
        length=doc.get("length"),
        element=column_type(element) if element else None,
    )


def meta_kinds(target: TableTarget) -> dict[str, ColumnType]:
    """The model types of a target table's metadata (and validity) columns."""
    meta, v = target.metadata, target.scd2
    kinds = {meta.lsn: I64, meta.txid: I64, meta.op: TEXT, meta.source_ts: TSTZ,
             meta.loaded_at: TSTZ, meta.deleted: BOOL, meta.commit_lsn: I64}  # fmt: skip
    if target.mode == "scd2":
        kinds |= {v.valid_from: TSTZ, v.valid_to: TSTZ, v.is_current: BOOL}
    return kinds


@contextlib.contextmanager
def naming_table(table: str | None) -> Iterator[None]:
    """Tag an IncompatibleSchemaChangeError raised inside with the table it concerns."""
    try:
        yield
    except IncompatibleSchemaChangeError as exc:
        exc.table = exc.table or table
        raise


def stage_expr(stage: Stage) -> exp.Table:
    """A stage in FROM: a registered name or a staging table."""
    return exp.Table(this=sql.ident(stage)) if isinstance(stage, str) else stage.expr()


class EngineCore(Warehouse):
    """The hooks an engine supplies and the engine-neutral DDL built on them."""

    # bookkeeping tables declare their keys (offsets, registry) where the engine enforces them
    _bookkeeping_keys: ClassVar[bool] = False
    _stage_value: ClassVar[sql.StagedValue | None] = None
    schema: str
    bookkeeping_schema: str

    def _init_template(self) -> None:
        """The template's own state; every engine constructor calls it."""
        self._bookkept = False
        # target name -> (target, schema) whose DDL is known committed; skips catalog reads
        self._ensured: dict[str, tuple[TableTarget, Any]] = {}
        self._tagged: str | None = None  # the table the statements now work on
        self._stage_seq = itertools.count()

    # ---- hooks ------------------------------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> contextlib.AbstractContextManager[Any]: ...

    @abc.abstractmethod
    def _exec(self, c: Any, stmt: exp.Expr | str, params: Sequence[Any] = ()) -> Any: ...

    @abc.abstractmethod
    def _fetch(
        self, c: Any, query: exp.Select, fields: Sequence[Field], params: Sequence[Any] = (),
        order: Sequence[str] = (),
    ) -> list[dict[str, Any]]: ...  # fmt: skip

    @abc.abstractmethod
    def _reserve(self, c: Any, purpose: str, data: pa.Table) -> Stage: ...

    @abc.abstractmethod
    def _load(self, c: Any, stage: Stage, data: pa.Table, table: str | None) -> None: ...

    @abc.abstractmethod
    def _begin(self, c: Any) -> None: ...

    @abc.abstractmethod
    def _commit(self, c: Any) -> None: ...

    @abc.abstractmethod
    def _rollback(self, c: Any) -> None:
        """Roll back; a failing rollback must not hide the original error."""

    @abc.abstractmethod
    def _map_error(self, exc: Exception, table: str | None) -> WarehouseError | None: ...

    @abc.abstractmethod
    def _missing(self, exc: Exception) -> bool: ...

    @abc.abstractmethod
    def _columns_of(self, c: Any, ref: TableRef) -> dict[str, exp.DataType]: ...

    @abc.abstractmethod
    def _type(self, ct: ColumnType) -> exp.DataType: ...

    @abc.abstractmethod
    def _widen(
        self, table: str, name: str, old: exp.DataType, new: exp.DataType
    ) -> exp.DataType | None: ...

    def _engine_ddl(self, c: Any) -> None:
        """The engine's own bookkeeping objects (a named stage...); none by default."""

    # ---- one unit of work -------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self, table: str | None) -> Iterator[Any]:
        """A handle for one unit of work on ``table``; driver errors mapped once, here."""
        self._tagged = table
        try:
            with self._connect() as c:
                yield c
        except IncompatibleSchemaChangeError as exc:
            exc.table = exc.table or self._tagged
            raise
        except WarehouseError:
            raise
        except Exception as exc:
            error = self._map_error(exc, self._tagged)
            if error is None:
                raise
            raise error from exc
        finally:
            self._tagged = None

    @contextlib.contextmanager
    def _atomic(self, c: Any) -> Iterator[None]:
        self._begin(c)
        try:
            yield
            self._commit(c)
        except BaseException:
            self._rollback(c)
            raise

    def _run(self, work: Any, table: str | None) -> Any:
        """``work(c)`` in one unit of work, errors mapped."""
        with self._session(table) as c:
            return work(c)

    def _or_missing(self, work: Any, default: Any, table: str | None = None) -> Any:
        """``work(c)``; ``default`` when a table it reads does not exist (no bookkeeping)."""
        with self._session(table) as c:
            try:
                return work(c)
            except Exception as exc:
                if self._missing(exc):
                    return default
                raise

    def _stage(self, c: Any, purpose: str, data: pa.Table, table: str | None) -> Stage:
        """Stage ``data`` now (reads before the writes; outside the transaction if DDL can't
        be in one)."""
        stage = self._reserve(c, purpose, data)
        self._load(c, stage, data, table)
        return stage

    def _ref(self, name: str) -> TableRef:
        return TableRef(self.bookkeeping_schema, name)

    def _value(self, column: exp.Expr, dtype: exp.DataType) -> exp.Expr:
        stage_value = type(self)._stage_value
        return column if stage_value is None else stage_value(column, dtype)

    # ---- bookkeeping ------------------------------------------------------------------------

    def _bookkeeping_ddl(self, c: Any) -> None:
        t, keys = self._type, self._bookkeeping_keys
        self._exec(c, sql.create_schema(self.bookkeeping_schema))
        self._exec(c, sql.create_schema(self.schema))
        offsets = [("consumer_group", t(TEXT)), ("topic", t(TEXT)), ("partition", t(I32)),
                   ("next_offset", t(I64)), ("updated_at", t(TSTZ))]  # fmt: skip
        self._exec(c, sql.create_table(self._ref("offsets"), offsets,
                                       sql.OFFSET_KEY if keys else ()))  # fmt: skip
        tables = [(n, t(TEXT)) for n in sql.REGISTRY_COLUMNS] + [("updated_at", t(TSTZ))]
        self._exec(c, sql.create_table(self._ref("tables"), tables,
                                       ("table_name",) if keys else ()))  # fmt: skip
        quarantine = [(n, t(QUARANTINE_KINDS.get(n, TEXT))) for n in
                      (*sql.QUARANTINE_COLUMNS, "quarantined_at", "replayed_at")]  # fmt: skip
        self._exec(c, sql.create_table(self._ref("quarantine"), quarantine))
        runs = [(n, t(k)) for n, k in RECONCILE_KINDS]
        self._exec(c, sql.create_table(self._ref("reconcile_runs"), runs))
        cuts = list(zip(sql.TRUNCATION_LOG, map(t, (TEXT, I64, I64, TSTZ, TSTZ)), strict=True))
        self._exec(c, sql.create_table(self._ref("truncations"), cuts))
        marks = [(n, t(TEXT if n == "table_name" else I64)) for n in sql.WATERMARK_COLUMNS]
        positions = self._ref("keyless_positions")
        self._exec(c, sql.create_table(positions, [*marks, ("updated_at", t(TSTZ))],
                                       ("table_name",) if keys else ()))  # fmt: skip
        if "txid" not in self._columns_of(c, positions):  # created before it held the txid
            self._exec(c, sql.add_column(positions, "txid", t(I64)))
        self._cost_ddl(c)
        self._engine_ddl(c)

    def _cost_ddl(self, c: Any) -> None:
        t = self._type
        compute = [("job", t(TEXT)), ("table_name", t(TEXT)), ("seconds", t(F64)),
                   ("statements", t(I64)), ("at", t(TSTZ))]  # fmt: skip
        self._exec(c, sql.create_table(self._ref("compute_log"), compute))
        reports = [("report_id", t(TEXT)), ("at", t(TSTZ)), ("table_name", t(TEXT)),
                   ("tier", t(TEXT)), ("rows", t(I64)), ("bytes", t(I64)),
                   ("storage_cost", t(F64)), ("compute_cost", t(F64))]  # fmt: skip
        self._exec(c, sql.create_table(self._ref("cost_reports"), reports))

    def ensure_bookkeeping(self) -> None:
        with self._session(None) as c:
            if self.capabilities.transactional_ddl:
                with self._atomic(c):
                    self._bookkeeping_ddl(c)
            else:
                self._bookkeeping_ddl(c)
        self._bookkept = True

    def _bookkeeping_write(self, work: Any, table: str | None = None) -> None:
        """``work(c)`` in one transaction on the bookkeeping tables (created if missing)."""
        if not self._bookkept:
            self.ensure_bookkeeping()
        with self._session(table) as c, self._atomic(c):
            work(c)

    def _append_cost(self, stmt: exp.Insert, values: list[Any]) -> None:
        self._bookkeeping_write(lambda c: self._exec(c, stmt, values))

    def _timestamp(self) -> exp.DataType:
        return self._type(TSTZ)

    # ---- the registry -----------------------------------------------------------------------

    def _registry_doc(self, c: Any, name: str) -> tuple[str, str, dict[str, Any]] | None:
        query = exp.select(sql.col("source_table"), sql.col("mode"), sql.col("schema_json"))
        query = query.from_(self._ref("tables").expr())
        query = query.where(sql.col("table_name").eq(exp.Placeholder()))
        rows = self._exec(c, query, [name]).fetchall()
        return (rows[0][0], rows[0][1], json.loads(rows[0][2])) if rows else None

    def _kinds(self, c: Any, name: str) -> dict[str, ColumnType]:
        """The model types of a registered table's source columns (empty: not registered)."""
        try:
            doc = self._registry_doc(c, name)
        except Exception as exc:
            if self._missing(exc):
                return {}
            raise
        if doc is None:
            return {}
        return {col["name"]: column_type(col["type"]) for col in doc[2]["schema"]["columns"]}

    def _register(self, c: Any, batch: TableBatch) -> None:
        """Upsert the batch's table's registry row."""
        name = batch.target.name
        values = [str(batch.schema.table), batch.target.mode, registry_json(batch)]
        registry = self._ref("tables")
        if self.capabilities.merge_in_transaction:
            self._exec(c, sql.register_table(registry), [name, *values])
            return
        self._exec(c, sql.logical_register_update(registry), [*values, name])
        insert = sql.logical_insert_if_missing(registry, sql.REGISTRY_COLUMNS, ["table_name"])
        self._exec(c, insert, [name, *values, name])

    # ---- target tables ----------------------------------------------------------------------

    def _target_table(self, batch: TableBatch) -> TargetTable:
        return sql.target_table(
            batch, self.schema, self.bookkeeping_schema, self._type, type(self)._stage_value
        )

    def _current_view(self, name: str) -> TableRef:
        return TableRef(self.schema, f"{name}_current")

    def _meta_columns(self, target: TableTarget) -> list[tuple[str, exp.DataType]]:
        """The metadata (and, for history tables, validity) columns of a target table."""
        meta, kinds = target.metadata, meta_kinds(target)
        names = [meta.lsn, meta.txid, meta.op, meta.source_ts, meta.loaded_at]
        if target.soft_delete or target.mode == "scd2":
            names.append(meta.deleted)
        if target.mode == "scd2":
            names += target.scd2.names
        names.append(meta.commit_lsn)  # last: where ADD COLUMN puts it in an older table
        return [(n, self._type(kinds[n])) for n in names]

    def _check_mode(self, c: Any, m: TargetTable, mode: str) -> dict[str, Any] | None:
        """Refuse a table that holds rows of the other mode; recreate it if it is empty.
        Returns the table's registry document (None: not registered, or recreated)."""
        doc = self._registry_doc(c, m.target.name)
        if doc is None or doc[1] == mode:
            return None if doc is None else doc[2]
        row = self._exec(c, sql.count_rows(m.target, None)).fetchone()
        rows = int(row[0]) if row else 0
        if rows:
            raise sql.mode_switch_refused(m, rows, doc[1], mode)
        self._exec(c, sql.drop(self._current_view(m.target.name), "VIEW"))
        for ref in (m.target, self._ref(f"{m.target.name}__deleted")):
            self._exec(c, sql.drop(ref, "TABLE"))
        return None

    def _sync_table(
        self, c: Any, ref: TableRef, columns: sql.Columns,
        defaults: Mapping[str, Column] | None = None,
    ) -> dict[str, exp.DataType]:  # fmt: skip
        """Create the table if missing, add missing columns, widen compatible types; returns
        the columns it had before (those of ``columns`` included).

        A column added to an existing table gets its source default in the rows already there
        (``defaults``: the columns that have one), as PostgreSQL gives it to its existing rows
        without logging a change; the value is staged as Arrow data, like every other value.
        """
        self._exec(c, sql.create_table(ref, columns))
        existing = self._columns_of(c, ref)
        for name, dtype in columns:
            old = existing.get(name)
            if old is None:
                self._exec(c, sql.add_column(ref, name, dtype))
                column = (defaults or {}).get(name)
                if column is not None:
                    self._fill_default(c, ref, name, dtype, column)
                continue
            wider = self._widen(ref.name, name, old, dtype)
            if wider is not None:
                self._exec(c, sql.alter_column_type(ref, name, wider))
        return existing

    def _fill_default(
        self, c: Any, ref: TableRef, name: str, dtype: exp.DataType, column: Column
    ) -> None:
        data = pa.table({"v": column_array(column.type, [column.default], table=ref.name,
                                           column=name)})  # fmt: skip
        stage = self._stage(c, f"default_{ref.name}_{name}", data, ref.name)
        value = exp.select(self._value(sql.col("v"), dtype)).from_(stage_expr(stage)).subquery()
        fill = exp.EQ(this=sql.col(name), expression=value)
        self._exec(c, exp.Update(this=ref.expr(), expressions=[fill]))

    def _ensure_table(
        self, c: Any, batch: TableBatch, m: TargetTable, pending: dict[str, tuple[TableTarget, Any]]
    ) -> None:
        """The target table (and its delete markers, its current view) as the batch needs
        it; registered here when DDL is transactional, else with the writes. Columns the
        source no longer has get the table's ``on_column_drop`` (:meth:`_column_drop`)."""
        name = batch.target.name
        wanted = (batch.target, batch.schema)
        if self._ensured.get(name) == wanted or pending.get(name) == wanted:
            return
        registered = self._check_mode(c, m, batch.target.mode)
        defaults = {col.name: col for col in batch.schema.columns if col.default is not None}
        columns = [*m.columns, *self._meta_columns(batch.target)]
        if not m.key:  # a keyless table's rows: told apart by a surrogate id
            columns.append((batch.target.metadata.row, self._type(TEXT)))
        stored = self._sync_table(c, m.target, columns, defaults)
        gone = sql.dropped_columns(stored, batch.schema.names, batch.target, registered)
        if gone:
            self._column_drop(c, batch.target, m.target, gone)
        if m.markers is not None:
            keys = [(k, m.columns[m.index(k)][1]) for k in m.key]
            pos = [(m.meta.lsn, self._type(I64)), (m.meta.commit_lsn, self._type(I64))]
            self._sync_table(c, m.markers, [*keys, *pos])
        if m.scd2 is not None:
            self._exec(c, sql.create_current_view(self._current_view(name), m))
        if self.capabilities.transactional_ddl:
            self._register(c, batch)
        pending[name] = wanted

    def _column_drop(self, c: Any, target: TableTarget, ref: TableRef, gone: list[str]) -> None:
        """Apply ``target.on_column_drop`` to the columns the source no longer has: ``keep``
        leaves them; ``null`` sets them NULL in the live rows (mirror rows not soft-deleted,
        current versions), writing nothing when that is done already; ``drop`` drops them
        (``IF EXISTS``: idempotent; the scd2 view is recreated after it)."""
        policy = target.on_column_drop
        bound = log.bind(table=target.name, columns=gone, on_column_drop=policy)
        if policy == "null":
            row = self._exec(c, sql.count_holding(ref, gone, target)).fetchone()
            rows = int(row[0] or 0) if row else 0
            if rows:
                self._exec(c, sql.null_columns(ref, gone, target))
            say = bound.warning if rows else bound.info  # a restart finds them NULL already
            say("columns dropped at the source: NULL in the live rows", rows=rows)
        elif policy == "drop":
            for name in gone:
                self._exec(c, sql.drop_column(ref, name))
            bound.warning("columns dropped at the source: dropped from the warehouse table")
        else:
            bound.info("columns dropped at the source: kept in the warehouse table (cdc status "
                       "lists them)")  # fmt: skip
