"""The Snowflake warehouse (issue 5): mirror tables behind the :class:`Warehouse` contract.

Built on the blocks of :mod:`warehouse.snowflake` and checked on fakesnow's server with the real
connector (``tests/conformance/test_warehouse_contract.py``, the same tests as DuckDB's).

One apply:

1. plan every batch in Python exactly as the DuckDB adapter does (``carry_key_changes``,
   ``plan_mirror``, ``mirror_stage``); a key change whose unchanged TOAST value must come from
   the stored row reads it first (one query, before the transaction);
2. outside the transaction (DDL commits an open transaction on Snowflake, and fakesnow fails
   VARCHAR ALTERs inside one): create or sync every target table (add columns, widen types),
   its delete-marker table, and a plain staging table per stage shape;
3. ONE transaction: ``PUT`` + ``COPY`` each stage (:func:`warehouse.snowflake.stage_arrow`),
   count what passes the position guard, UPDATE ... FROM + INSERT ... WHERE NOT EXISTS
   (no MERGE: fakesnow can't run it in a transaction), deletes with markers or soft deletes,
   the registry rows, offsets forward only, COMMIT. Any exception: ROLLBACK, the error mapped by
   :func:`warehouse.snowflake.map_error`; the consumer retries the whole batch.

Values never reach SQL text: rows are staged as Parquet, scalars are qmark-bound. ``scd2``
tables and quarantine holds are not supported yet (:class:`TerminalWarehouseError`).

The bookkeeping tables (offsets, registry, quarantine, ``<table>__deleted`` markers, staging
tables and the named stage) live in ``bookkeeping_schema``, by default ``_CDC_<schema>``: one
per target schema, so two deployments in one database never share offsets or markers.
Staging tables are plain (fakesnow can't COPY into TEMPORARY ones, nor create them in a
transaction), named by a hash of their column shape and created once, outside transactions.

fetch_table reads through the connector and converts to the ``cdc.model`` representation with
the column types recorded in the registry (UUID text -> ``uuid.UUID``, TIME as TIMETZ in UTC,
VARIANT intervals -> :class:`~cdc.model.Interval`, ARRAY JSON -> typed lists). JSON comes back
as compact text of the value Snowflake normalised (compare parsed). NULL timestamps are taken
from ``IS NULL`` evaluated on the engine, because fakesnow fetches them as 1970-01-01.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import hashlib
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import snowflake.connector
import snowflake.connector.errors as sf_errors
from sqlglot import exp

from cdc.model import ColumnType, Interval, Kind
from warehouse import sql
from warehouse.arrow import column_array, mirror_stage
from warehouse.base import (
    ApplyResult,
    Capabilities,
    HistoryReport,
    IncompatibleSchemaChangeError,
    OffsetRow,
    QuarantinedChange,
    QuarantineRow,
    RegisteredTable,
    TableApplyStats,
    TableBatch,
    TableTarget,
    TerminalWarehouseError,
    Warehouse,
    registry_json,
)
from warehouse.key_change import KeyChangeCarry, StoredRow, carry_key_changes
from warehouse.mirror import Key, MirrorPlan, plan_mirror
from warehouse.snowflake import (
    DIALECT,
    SnowflakeSettings,
    create_stage,
    create_staging_table,
    map_error,
    number,
    snowflake_type,
    stage_arrow,
    staged_value,
    staging_columns,
    timestamp_tz6,
)
from warehouse.sql import TableRef, TargetTable, render
from warehouse.types import DT, MAX_DECIMAL_PRECISION, widen

STAGE_NAME = "CDC_STAGE"
SCD2_UNSUPPORTED = (
    "scd2 tables are not supported on Snowflake yet (issue 5 covers mirror tables first); "
    "use mode: mirror for this table or the DuckDB warehouse"
)


def _varchar() -> exp.DataType:
    return exp.DataType(this=DT.VARCHAR)


def _metadata(target: TableTarget) -> list[tuple[str, exp.DataType]]:
    meta = target.metadata
    cols = [
        (meta.lsn, number(19, 0)),
        (meta.txid, number(19, 0)),
        (meta.op, _varchar()),
        (meta.source_ts, timestamp_tz6()),
        (meta.loaded_at, timestamp_tz6()),
    ]
    if target.soft_delete:
        cols.append((meta.deleted, exp.DataType(this=DT.BOOLEAN)))
    return cols


def _column_type(doc: dict[str, Any]) -> ColumnType:
    """A ColumnType back from the registry's JSON (``dataclasses.asdict`` of it)."""
    element = doc.get("element")
    return ColumnType(
        kind=Kind(doc["kind"]),
        precision=doc.get("precision"),
        scale=doc.get("scale"),
        length=doc.get("length"),
        element=_column_type(element) if element else None,
    )


def _stored_type(data_type: str, precision: Any, scale: Any, length: Any) -> exp.DataType:
    """The sqlglot type of an information_schema column (Snowflake's reported spelling)."""
    name = data_type.upper()
    if name in ("NUMBER", "DECIMAL", "NUMERIC"):
        return number(int(precision or 38), int(scale or 0))
    if name in ("TEXT", "VARCHAR", "STRING"):
        # Snowflake stores by content: every VARCHAR this adapter creates is unbounded
        return _varchar()
    if name in ("FLOAT", "DOUBLE", "REAL", "FLOAT8"):
        return exp.DataType(this=DT.DOUBLE)
    try:
        return exp.DataType.build(name, dialect=DIALECT)
    except Exception as exc:  # sqlglot raises several types for an unknown type name
        raise IncompatibleSchemaChangeError(
            f"column type {data_type} is not understood by this adapter; fix the table by hand"
        ) from exc


_LOOSE = {DT.ARRAY: DT.VARIANT}  # fakesnow reports ARRAY columns as VARIANT


def _widen(table: str, name: str, old: exp.DataType, new: exp.DataType) -> exp.DataType | None:
    """The type to ALTER a stored column to, or None (``types.widen`` for numbers/text)."""
    bo, bn = old.this, new.this
    if bo is DT.DECIMAL and bn is DT.DECIMAL:
        wider = widen(table, name, old, new)
        if wider is None:
            return None
        p, s = (int(x.this.name) for x in wider.expressions)
        old_scale = int(old.expressions[1].this.name) if len(old.expressions) > 1 else 0
        if s != old_scale:
            # Snowflake's ALTER COLUMN can raise a NUMBER's precision but never change its
            # scale (fakesnow accepts it; don't let it decide)
            raise IncompatibleSchemaChangeError(
                f"table {table!r} column {name!r}: the source changed {old.sql(DIALECT)} to "
                f"{new.sql(DIALECT)}; Snowflake can't change the scale of a NUMBER column, so "
                "the table is parked. Recreate the target table with the new type and "
                "re-snapshot it, or add a new column at the source",
                table=table,
            )
        return number(min(p, MAX_DECIMAL_PRECISION), s)
    if bo == bn or _LOOSE.get(bn) == bo:
        return None
    if {bo, bn} <= {DT.TIMESTAMPNTZ, DT.TIMESTAMP}:
        return None
    raise IncompatibleSchemaChangeError(
        f"table {table!r} column {name!r}: cannot change type {old.sql(DIALECT)} to "
        f"{new.sql(DIALECT)} without losing data; the table is parked. Add a new column at "
        "the source, or recreate the target table and re-snapshot it",
        table=table,
    )


# ---- reading back -------------------------------------------------------------------------


def _element(ct: ColumnType, value: Any) -> Any:
    """An ARRAY element from its JSON form (``warehouse.snowflake.json_text``) to the model."""
    if value is None:
        return None
    kind = ct.kind
    if kind in (Kind.DECIMAL, Kind.VARDECIMAL):
        return decimal.Decimal(str(value))
    if kind is Kind.BYTES:
        return bytes.fromhex(value)
    if kind is Kind.UUID:
        return uuid.UUID(value)
    if kind is Kind.DATE:
        return dt.date.fromisoformat(value)
    if kind in (Kind.TIME, Kind.TIMETZ):
        t = dt.time.fromisoformat(value)
        return t.replace(tzinfo=dt.UTC) if kind is Kind.TIMETZ else t
    if kind is Kind.TIMESTAMP:
        return dt.datetime.fromisoformat(value)
    if kind is Kind.TIMESTAMPTZ:
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    if kind is Kind.INTERVAL:
        return Interval(value["months"], value["days"], value["micros"])
    if kind in (Kind.FLOAT32, Kind.FLOAT64):
        return float(value)
    if kind is Kind.ARRAY and ct.element is not None:
        return [_element(ct.element, x) for x in value]
    return value


def model_value(ct: ColumnType | None, value: Any) -> Any:
    """A value fetched by the connector in the ``cdc.model`` representation."""
    if value is None or ct is None:
        return value
    kind = ct.kind
    if kind is Kind.UUID:
        return uuid.UUID(value)
    if kind is Kind.BYTES:
        return bytes(value)
    if kind is Kind.TIMETZ:
        return value.replace(tzinfo=dt.UTC)
    if kind is Kind.TIMESTAMPTZ:
        return value.astimezone(dt.UTC)
    if kind is Kind.TIMESTAMP:
        return value.replace(tzinfo=None) if value.tzinfo is not None else value
    if kind is Kind.INTERVAL:
        doc = json.loads(value)
        return Interval(doc["months"], doc["days"], doc["micros"])
    if kind is Kind.JSON:
        return json.dumps(json.loads(value), separators=(",", ":"))
    if kind is Kind.ARRAY and ct.element is not None:
        return [_element(ct.element, x) for x in json.loads(value)]
    if kind in (Kind.FLOAT32, Kind.FLOAT64):
        return float(value)
    if kind in (Kind.INT16, Kind.INT32, Kind.INT64):
        return int(value)
    if kind in (Kind.DECIMAL, Kind.VARDECIMAL) and not isinstance(value, decimal.Decimal):
        return decimal.Decimal(str(value))
    return value


def _bindable(value: Any) -> Any:
    """A key value as a qmark bind: Decimal and UUID as text (fakesnow's server can't bind a
    Decimal; Snowflake has no UUID type), other values as they are."""
    return str(value) if isinstance(value, decimal.Decimal | uuid.UUID) else value


def _is_timestamp(dtype: exp.DataType) -> bool:
    return dtype.this in (DT.TIMESTAMPTZ, DT.TIMESTAMPNTZ, DT.TIMESTAMP, DT.TIMESTAMPLTZ)


class SnowflakeWarehouse(Warehouse):
    """A Snowflake schema as the warehouse (mirror tables; see the module docstring)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        transactional_ddl=False, max_decimal_precision=38, concurrent_readers=True
    )

    def __init__(
        self,
        settings: SnowflakeSettings,
        bookkeeping_schema: str | None = None,
        *,
        job: str = "apply",
        tmpdir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.schema = settings.schema_
        # default: one bookkeeping schema per target schema, so that two deployments in one
        # database never share offsets, the registry or delete markers
        self.bookkeeping_schema = bookkeeping_schema or f"_CDC_{self.schema}"
        self.job = job
        self._own_tmp = tmpdir is None
        self.tmpdir = Path(tempfile.mkdtemp(prefix="cdc-sf-")) if tmpdir is None else tmpdir
        self._conn: Any = None
        self._bookkept = False
        self._ensured: dict[str, tuple[TableTarget, Any]] = {}
        self._staging: set[str] = set()

    # ---- connection -------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None:
            try:
                self._conn = snowflake.connector.connect(
                    **self.settings.connect_kwargs(self.job, None)
                )
            except (sf_errors.Error, OSError) as exc:
                raise map_error(exc, table=None) from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sf_errors.Error, OSError):
                self._conn.close()
            self._conn = None
        if self._own_tmp:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _exec(self, cur: Any, stmt: exp.Expr | str, params: Sequence[Any] = ()) -> Any:
        text = stmt if isinstance(stmt, str) else render(stmt, DIALECT)
        cur.execute(text, list(params) if params else None)
        return cur

    def _run(self, work: Any, table: str | None) -> Any:
        """Run ``work(cursor)`` outside a transaction, errors mapped."""
        cur = self._connection().cursor()
        try:
            return work(cur)
        except (sf_errors.Error, OSError) as exc:
            raise map_error(exc, table=table) from exc

    def _ref(self, name: str) -> TableRef:
        return TableRef(self.bookkeeping_schema, name)

    # ---- bookkeeping ------------------------------------------------------------------------

    def _bookkeeping_ddl(self, cur: Any) -> None:
        v, ts = _varchar, timestamp_tz6
        self._exec(cur, sql.create_schema(self.bookkeeping_schema))
        self._exec(cur, sql.create_schema(self.schema))
        offsets = [("consumer_group", v()), ("topic", v()), ("partition", number(10, 0)),
                   ("next_offset", number(19, 0)), ("updated_at", ts())]  # fmt: skip
        self._exec(cur, sql.create_table(self._ref("offsets"), offsets))
        tables = [(c, v()) for c in sql.REGISTRY_COLUMNS] + [("updated_at", ts())]
        self._exec(cur, sql.create_table(self._ref("tables"), tables))
        quarantine = [
            *((c, v()) for c in ("table_name", "key_json", "topic")),
            ("partition", number(10, 0)),
            ("offset", number(19, 0)),
            ("lsn", number(19, 0)),
            *((c, v()) for c in ("op", "checks", "reason")),
            ("raw_key", exp.DataType(this=DT.BINARY)),
            ("raw_value", exp.DataType(this=DT.BINARY)),
            ("quarantined_at", ts()),
            ("replayed_at", ts()),
        ]
        self._exec(cur, sql.create_table(self._ref("quarantine"), quarantine))
        self._exec(cur, create_stage(self._ref(STAGE_NAME)))

    def ensure_bookkeeping(self) -> None:
        self._run(self._bookkeeping_ddl, table=None)
        self._bookkept = True

    # ---- schema (outside the transaction) ---------------------------------------------------

    def _target_table(self, batch: TableBatch) -> TargetTable:
        target, schema = batch.target, batch.schema
        if target.mode == "scd2":
            raise TerminalWarehouseError(f"table {target.name!r}: {SCD2_UNSUPPORTED}")
        if target.mode != "mirror":
            raise TerminalWarehouseError(f"table {target.name!r}: mode {target.mode!r} unsupported")
        if not schema.key:
            raise IncompatibleSchemaChangeError(
                f"table {target.name!r}: the source table {schema.table} has no primary key, so "
                "its changes can't be matched to rows; the table is parked. Add a primary key "
                "at the source, then re-snapshot the table",
                table=target.name,
            )
        reserved = {n for n, _ in _metadata(TableTarget(target.name, soft_delete=True,
                                                        metadata=target.metadata))}  # fmt: skip
        clash = reserved.intersection(schema.names)
        if clash:
            raise IncompatibleSchemaChangeError(
                f"table {target.name!r}: source columns {sorted(clash)} collide with the "
                "metadata columns; rename them in the table's settings (consumer.metadata_prefix)",
                table=target.name,
            )
        try:
            columns = tuple((c.name, snowflake_type(c.type)) for c in schema.columns)
        except IncompatibleSchemaChangeError as exc:
            exc.table = exc.table or target.name
            raise
        return TargetTable(
            target=TableRef(self.schema, target.name),
            markers=None if target.soft_delete else self._ref(f"{target.name}__deleted"),
            columns=columns,
            key=schema.key,
            meta=target.metadata,
            soft_delete=target.soft_delete,
        )

    def _columns_of(self, cur: Any, ref: TableRef) -> dict[str, exp.DataType]:
        info = exp.Table(this=sql.ident("COLUMNS"), db=sql.ident("INFORMATION_SCHEMA"))
        query = (
            exp.select(
                *[
                    sql.col(c)
                    for c in (
                        "COLUMN_NAME",
                        "DATA_TYPE",
                        "NUMERIC_PRECISION",
                        "NUMERIC_SCALE",
                        "CHARACTER_MAXIMUM_LENGTH",
                    )
                ]
            )
            .from_(info)
            .where(
                exp.and_(
                    exp.EQ(this=sql.col("TABLE_SCHEMA"), expression=exp.Placeholder()),
                    exp.EQ(this=sql.col("TABLE_NAME"), expression=exp.Placeholder()),
                )
            )
            .order_by(sql.col("ORDINAL_POSITION"))
        )
        rows = self._exec(cur, query, [ref.schema, ref.name]).fetchall()
        return {r[0]: _stored_type(r[1], r[2], r[3], r[4]) for r in rows}

    def _sync_table(
        self, cur: Any, ref: TableRef, columns: Sequence[tuple[str, exp.DataType]],
        batch: TableBatch | None = None,
    ) -> None:  # fmt: skip
        self._exec(cur, sql.create_table(ref, columns))
        existing = self._columns_of(cur, ref)
        defaults = {c.name: c for c in batch.schema.columns} if batch is not None else {}
        for name, dtype in columns:
            old = existing.get(name)
            if old is None:
                self._exec(cur, sql.add_column(ref, name, dtype))
                column = defaults.get(name)
                if column is not None and column.default is not None:
                    self._fill_default(cur, ref, name, dtype, column.type, column.default)
                continue
            wider = _widen(ref.name, name, old, dtype)
            if wider is not None:
                self._exec(cur, sql.alter_column_type(ref, name, wider))

    def _fill_default(
        self, cur: Any, ref: TableRef, name: str, dtype: exp.DataType, ct: ColumnType, value: Any
    ) -> None:
        """Give the rows already there the source default of an added column (as data)."""
        data = pa.table({"v": column_array(ct, [value], table=ref.name, column=name)})
        staging = self._staging_table(cur, f"default_{ref.name}_{name}", data)
        stage_arrow(cur, data, staging, STAGE_NAME, self.tmpdir, table_name=ref.name)
        source = exp.select(staged_value(sql.col("v"), dtype)).from_(staging.expr()).subquery()
        self._exec(
            cur,
            exp.Update(
                this=ref.expr(), expressions=[exp.EQ(this=sql.col(name), expression=source)]
            ),
        )

    def _staging_table(self, cur: Any, purpose: str, data: pa.Table) -> TableRef:
        """A plain staging table for one stage shape, created once (outside transactions)."""
        columns = staging_columns(data.schema)
        shape = json.dumps([purpose, [(n, t.sql(DIALECT)) for n, t in columns]])
        ref = self._ref(f"CDC_STG_{hashlib.sha256(shape.encode()).hexdigest()[:16].upper()}")
        if ref.name not in self._staging:
            self._exec(cur, create_staging_table(ref, columns))
            self._staging.add(ref.name)
        return ref

    def _ensure_table(self, cur: Any, batch: TableBatch, m: TargetTable) -> None:
        wanted = (batch.target, batch.schema)
        if self._ensured.get(batch.target.name) == wanted:
            return
        self._sync_table(cur, m.target, [*m.columns, *_metadata(batch.target)], batch)
        if m.markers is not None:
            keys = [(k, m.columns[m.index(k)][1]) for k in m.key]
            self._sync_table(cur, m.markers, [*keys, (m.meta.lsn, number(19, 0))])
        self._ensured[batch.target.name] = wanted

    # ---- apply ------------------------------------------------------------------------------

    def apply(
        self,
        batches: Sequence[TableBatch],
        offsets: Sequence[OffsetRow],
        quarantine: Sequence[QuarantineRow] = (),
        resolve: Sequence[QuarantineRow] = (),
    ) -> ApplyResult:
        started = time.perf_counter()
        if quarantine or resolve or any(b.target.quarantine for b in batches):
            raise TerminalWarehouseError(
                "data-contract quarantine is not supported on Snowflake yet; set "
                "on_violation to dead_letter or use the DuckDB warehouse"
            )
        planned: list[tuple[TableBatch, TargetTable, KeyChangeCarry]] = []
        for batch in batches:
            m = self._target_table(batch)
            planned.append((batch, m, carry_key_changes(batch)))
        if not self._bookkept:
            self.ensure_bookkeeping()
        work: list[tuple[TableBatch, TargetTable, MirrorPlan, pa.Table, frozenset[int], int,
                         TableRef | None]] = []  # fmt: skip
        current: str | None = None
        cur = self._connection().cursor()
        try:
            for batch, m, carry in planned:
                current = batch.target.name
                self._ensure_table(cur, batch, m)
                unresolved = 0
                if carry.asks:
                    batch, unresolved = self._carry_key_changes(cur, carry, m)
                else:
                    batch = carry.batch
                if not batch.events:
                    work.append((batch, m, plan_mirror(batch), pa.table({}), frozenset(), 0, None))
                    continue
                plan = plan_mirror(batch)
                stage, toast = mirror_stage(plan)
                staging = self._staging_table(cur, "mirror", stage)
                work.append((batch, m, plan, stage, toast, unresolved, staging))
            current = None
        except (sf_errors.Error, OSError) as exc:
            raise map_error(exc, table=current) from exc
        stats: list[TableApplyStats] = []
        try:
            self._exec(cur, "BEGIN")
            for batch, m, plan, stage, toast, unresolved, into in work:
                current = batch.target.name
                if into is None:
                    stats.append(TableApplyStats(current))
                    continue
                stage_arrow(cur, stage, into, STAGE_NAME, self.tmpdir, table_name=current)
                table_stats = self._apply_plan(cur, m, plan, into, toast)
                table_stats.toast_unresolved = unresolved
                stats.append(table_stats)
                self._register(cur, batch)
            current = None
            self._store_offsets(cur, offsets)
            self._exec(cur, "COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sf_errors.Error, OSError):
                self._exec(cur, "ROLLBACK")
            if isinstance(exc, sf_errors.Error | OSError):
                raise map_error(exc, table=current) from exc
            raise
        return ApplyResult(tables=stats, seconds=time.perf_counter() - started)

    def _apply_plan(
        self, cur: Any, m: TargetTable, plan: MirrorPlan, stage: TableRef, toast: frozenset[int]
    ) -> TableApplyStats:
        row = self._exec(cur, sql.sf_guard_counts(m, stage)).fetchone()
        upserts, deletes = (int(row[0]), int(row[1])) if row else (0, 0)
        if plan.upserts:
            self._exec(cur, sql.sf_mirror_update(m, stage, toast, staged_value))
            self._exec(cur, sql.sf_mirror_insert(m, stage, staged_value))
        if plan.deletes and m.soft_delete:
            self._exec(cur, sql.sf_soft_delete_update(m, stage))
            self._exec(cur, sql.sf_soft_delete_insert(m, stage))
        elif plan.deletes:
            self._exec(cur, sql.sf_markers_update(m, stage))
            self._exec(cur, sql.sf_markers_insert(m, stage))
            self._exec(cur, sql.sf_hard_delete(m, stage))
        if plan.upserts and m.markers is not None:
            self._exec(cur, sql.sf_prune_delete_markers(m, stage))
        staged = len(plan.upserts) + len(plan.deletes)
        return TableApplyStats(
            table=plan.table,
            events=plan.events,
            upserted=upserts,
            deleted=deletes,
            stale=staged - upserts - deletes,
        )

    def _register(self, cur: Any, batch: TableBatch) -> None:
        name = batch.target.name
        values = [str(batch.schema.table), batch.target.mode, registry_json(batch)]
        registry = self._ref("tables")
        self._exec(cur, sql.sf_register_update(registry), [*values, name])
        insert = sql.sf_insert_if_missing(registry, sql.REGISTRY_COLUMNS, ["table_name"])
        self._exec(cur, insert, [name, *values, name])

    def _store_offsets(self, cur: Any, offsets: Sequence[OffsetRow]) -> None:
        newest: dict[tuple[str, str, int], int] = {}
        for o in offsets:
            k = (o.consumer_group, o.topic, o.partition)
            newest[k] = max(newest.get(k, o.next_offset), o.next_offset)
        ref = self._ref("offsets")
        insert = sql.sf_insert_if_missing(ref, [*sql.OFFSET_KEY, "next_offset"], sql.OFFSET_KEY)
        for (group, topic, partition), nxt in newest.items():
            self._exec(cur, sql.sf_offsets_update(ref), [nxt, group, topic, partition, nxt])
            self._exec(cur, insert, [group, topic, partition, nxt, group, topic, partition])

    def _carry_key_changes(
        self, cur: Any, carry: KeyChangeCarry, m: TargetTable
    ) -> tuple[TableBatch, int]:
        """Fill key changes' placeholders from stored rows (before the transaction).

        Which key was deleted at each orphan create's LSN comes from the delete markers (hard
        deletes) or the tombstones (soft deletes); then those old keys' stored rows. Keys are
        bound (qmark), one small query per key: key changes with an untouched TOAST value
        whose old row is not in the batch are rare.
        """
        schema = carry.batch.schema
        types = {c.name: c.type for c in schema.columns}
        if carry.orphans:
            found: dict[int, Key] = {}
            source = m.markers if m.markers is not None else m.target
            for lsn in carry.orphans:
                query = exp.select(*[sql.col(k) for k in m.key]).from_(source.expr())
                query = query.where(exp.EQ(this=sql.col(m.meta.lsn), expression=exp.Placeholder()))
                if m.soft_delete:
                    query = query.where(sql.col(m.meta.deleted))
                row = self._exec(cur, query, [lsn]).fetchone()
                if row is not None:
                    found[int(lsn)] = tuple(
                        model_value(types[k], v) for k, v in zip(m.key, row, strict=True)
                    )
            carry = carry.link(found)
        stored: dict[Key, StoredRow] = {}
        names = [n for n, _ in m.columns]
        for key in carry.needs:
            query = exp.select(*[sql.col(n) for n in [*names, m.meta.lsn]]).from_(m.target.expr())
            query = query.where(
                exp.and_(*[exp.EQ(this=sql.col(k), expression=exp.Placeholder()) for k in m.key])
            )
            row = self._exec(cur, query, [_bindable(v) for v in key]).fetchone()
            if row is None:
                continue
            values = {n: model_value(types[n], v) for n, v in zip(names, row, strict=False)}
            stored[tuple(key)] = StoredRow(int(row[-1]), values)
        return carry.fill(stored)

    # ---- reads ------------------------------------------------------------------------------

    def load_offsets(self, consumer_group: str) -> dict[tuple[str, int], int]:
        def work(cur: Any) -> dict[tuple[str, int], int]:
            rows = self._exec(cur, sql.select_offsets(self._ref("offsets")), [consumer_group])
            return {(topic, int(p)): int(n) for topic, p, n in rows.fetchall()}

        return dict(self._run(work, table=None))

    def _registry_doc(self, cur: Any, name: str) -> tuple[str, str, dict[str, Any]] | None:
        query = exp.select(sql.col("source_table"), sql.col("mode"), sql.col("schema_json"))
        query = query.from_(self._ref("tables").expr())
        query = query.where(sql.col("table_name").eq(exp.Placeholder()))
        row = self._exec(cur, query, [name]).fetchone()
        return None if row is None else (row[0], row[1], json.loads(row[2]))

    def fetch_table(self, target: TableTarget) -> list[dict[str, Any]]:
        if target.mode == "scd2":
            raise TerminalWarehouseError(f"table {target.name!r}: {SCD2_UNSUPPORTED}")
        ref = TableRef(self.schema, target.name)

        def work(cur: Any) -> list[dict[str, Any]]:
            stored = self._columns_of(cur, ref)
            if not stored:
                raise TerminalWarehouseError(f"table {ref.schema}.{ref.name} does not exist")
            doc = self._registry_doc(cur, target.name)
            kinds: dict[str, ColumnType] = {}
            if doc is not None:
                kinds = {c["name"]: _column_type(c["type"]) for c in doc[2]["schema"]["columns"]}
            hidden = {n for n, _ in _metadata(TableTarget(target.name, soft_delete=True,
                                                          metadata=target.metadata))}  # fmt: skip
            columns = [(n, t) for n, t in stored.items() if n not in hidden]
            projections: list[exp.Expr] = [sql.col(n) for n, _ in columns]
            # fakesnow fetches a NULL timestamp as 1970-01-01: ask IS NULL on the engine
            nulls = [n for n, t in columns if _is_timestamp(t)]
            projections += [exp.Is(this=sql.col(n), expression=exp.Null()) for n in nulls]
            query = exp.select(*projections).from_(ref.expr())
            if target.metadata.deleted in stored:
                query = query.where(
                    exp.Not(
                        this=exp.Coalesce(
                            this=sql.col(target.metadata.deleted), expressions=[exp.false()]
                        )
                    )
                )
            out = []
            for row in self._exec(cur, query).fetchall():
                values = dict(zip([n for n, _ in columns], row, strict=False))
                for n, is_null in zip(nulls, row[len(columns) :], strict=True):
                    if is_null:
                        values[n] = None
                out.append({n: model_value(kinds.get(n), v) for n, v in values.items()})
            return out

        result: list[dict[str, Any]] = self._run(work, table=target.name)
        return result

    def registered(self, name: str) -> RegisteredTable | None:
        def work(cur: Any) -> RegisteredTable | None:
            try:
                doc = self._registry_doc(cur, name)
            except sf_errors.ProgrammingError as exc:
                if getattr(exc, "errno", None) == 2003:  # no bookkeeping yet
                    return None
                raise
            if doc is None:
                return None
            return RegisteredTable(name=name, source_table=doc[0], mode=doc[1],
                                   key=tuple(doc[2]["schema"]["key"]))  # fmt: skip

        result: RegisteredTable | None = self._run(work, table=name)
        return result

    def list_quarantine(
        self, table: str | None = None, *, include_replayed: bool = False
    ) -> list[QuarantinedChange]:
        """Quarantined changes. Quarantine holds are not supported on Snowflake yet (apply
        refuses them), so the table stays empty; read for the contract's sake."""
        query = sql.quarantine_list(self._ref("quarantine"), table is not None, include_replayed)

        def work(cur: Any) -> list[tuple[Any, ...]]:
            if not self._bookkept:
                self._bookkeeping_ddl(cur)
                self._bookkept = True
            found: list[tuple[Any, ...]] = self._exec(
                cur, query, [table] if table is not None else []
            ).fetchall()
            return found

        out = []
        for r in self._run(work, table=table):
            row = QuarantineRow(
                table=r[0], key=r[1], topic=r[2], partition=int(r[3]), offset=int(r[4]),
                lsn=int(r[5]), op=r[6], checks=tuple(json.loads(r[7])), reason=r[8],
                raw_key=None if r[9] is None else bytes(r[9]),
                raw_value=None if r[10] is None else bytes(r[10]),
            )  # fmt: skip
            out.append(QuarantinedChange(row, quarantined_at=r[11], replayed_at=r[12]))
        return out

    def fetch_history(
        self, target: TableTarget, key: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        raise TerminalWarehouseError(f"table {target.name!r}: {SCD2_UNSUPPORTED}")

    def history_report(self, target: TableTarget) -> HistoryReport:
        raise TerminalWarehouseError(f"table {target.name!r}: {SCD2_UNSUPPORTED}")
