"""The Snowflake warehouse behind the :class:`Warehouse` contract: mirror and scd2 tables.

Built on the blocks of :mod:`warehouse.snowflake` and checked on fakesnow's server with the real
connector (``tests/conformance/``: the same tests as DuckDB's, and a real account when
``SNOWFLAKE_*`` is set).

One apply:

1. before the transaction (DDL commits an open transaction on Snowflake, and fakesnow fails
   VARCHAR ALTERs and MERGE inside one): create or sync every target table (add columns, widen
   types), its delete-marker table, the ``<table>_current`` view of a history table, a plain
   staging table per stage shape; refuse a mode switch of a table with rows;
2. still before it, the reads the plans need, each one set-based with its inputs staged as data
   (PUT + COPY) and joined: key changes' stored rows (``carry_key_changes``), the open
   quarantine rows of the batch's table (minus the origins this apply resolves), and for scd2
   tables the last two versions and the delete markers of the batch's keys; then the same pure
   plans as DuckDB (``plan_mirror`` / ``plan_scd2``, ``hold``);
3. ONE transaction: ``PUT`` + ``COPY`` each stage (:func:`warehouse.snowflake.stage_arrow`),
   then per mirror table the guard counts, UPDATE ... FROM + INSERT ... WHERE NOT EXISTS
   (no MERGE), deletes with markers or soft deletes; per scd2 table DELETE ... USING, UPDATE
   ... FROM, INSERT ... SELECT and the delete markers; the quarantine rows (once per origin),
   the registry rows, offsets forward only, COMMIT. Any exception: ROLLBACK, the error mapped
   by :func:`warehouse.snowflake.map_error`; the consumer retries the whole batch (after a
   transient error the connection is dropped and the next apply logs in again).

Values never reach SQL text: rows are staged as Parquet, scalars are qmark-bound.

The bookkeeping tables (offsets, registry, quarantine, ``<table>__deleted`` markers, staging
tables and the named stage) live in ``bookkeeping_schema``, by default ``_CDC_<schema>``: one
per target schema, so two deployments in one database never share offsets or markers.
Staging tables are plain TRANSIENT tables (fakesnow can't COPY into TEMPORARY ones, nor create
them in a transaction), created once per instance, outside transactions, and named by a hash of
their column shape and the instance's own token (``CDC_STG_<shape>_<token>``): each process
(the consumer, a snapshot, a reconciliation, every member of a consumer group) stages into its
own tables, so that one's ``DELETE`` + ``COPY`` never empties or fills another's stage between
its statements. :meth:`SnowflakeWarehouse.close` drops them; a process killed outright leaves
them behind (a few tables holding at most one batch each; see the README).

Reads go through the connector and convert to the ``cdc.model`` representation with the column
types recorded in the registry (UUID text -> ``uuid.UUID``, TIME as TIMETZ in UTC, VARIANT
intervals -> :class:`~cdc.model.Interval`, ARRAY JSON -> typed lists). JSON comes back as
compact text of the value Snowflake normalised (compare parsed). NULL timestamps are taken
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
import snowflake.connector
import snowflake.connector.errors as sf_errors
from sqlglot import exp

from cdc import failpoints
from cdc.model import ColumnType, Interval, Kind, TableSchema
from warehouse import checksum, cost_sql, sql
from warehouse.arrow import column_array, key_stage, mirror_stage, quarantine_stage, scd2_stage
from warehouse.base import (
    COST_REPORT_COLUMNS,
    RECONCILE_COLUMNS,
    RECONCILE_COUNTS,
    AppliedPosition,
    ApplyResult,
    Capabilities,
    ComputeRow,
    CostReportRow,
    HistoryReport,
    IncompatibleSchemaChangeError,
    KeyRange,
    OffsetRow,
    QuarantinedChange,
    QuarantineRow,
    RangeChecksum,
    ReconcileRun,
    RegisteredTable,
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
from warehouse.key_change import KeyChangeCarry, StoredRow, carry_key_changes
from warehouse.mirror import Key, MirrorPlan, event_key, plan_mirror
from warehouse.quarantine import first_open, hold, open_keys
from warehouse.scd2 import Scd2Plan, StoredVersion, plan_scd2, stored_tails
from warehouse.snowflake.connection import (
    DIALECT,
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
from warehouse.snowflake.settings import SnowflakeSettings
from warehouse.snowflake.tiering import SnowflakeTiering
from warehouse.sql import TableRef, TargetTable, render
from warehouse.types import DT, MAX_DECIMAL_PRECISION, widen

STAGE_NAME = "CDC_STAGE"
_CHECKSUM_DIALECT: checksum.Dialect = "snowflake"


@dataclass(slots=True)
class _Work:
    """One table's share of an apply, prepared before the transaction."""

    batch: TableBatch
    m: TargetTable
    plan: MirrorPlan | Scd2Plan | None
    stage: pa.Table
    stats: TableApplyStats
    into: TableRef | None  # its staging table; None: nothing to write
    toast: frozenset[int] = frozenset()


def _varchar() -> exp.DataType:
    return exp.DataType(this=DT.VARCHAR)


def _metadata(target: TableTarget) -> list[tuple[str, exp.DataType]]:
    """The metadata (and, for history tables, validity) columns of a target table."""
    meta = target.metadata
    boolean = exp.DataType(this=DT.BOOLEAN)
    cols = [
        (meta.lsn, number(19, 0)),
        (meta.txid, number(19, 0)),
        (meta.op, _varchar()),
        (meta.source_ts, timestamp_tz6()),
        (meta.loaded_at, timestamp_tz6()),
    ]
    if target.soft_delete or target.mode == "scd2":
        cols.append((meta.deleted, boolean))
    if target.mode == "scd2":
        v = target.scd2
        cols += [(v.valid_from, timestamp_tz6()), (v.valid_to, timestamp_tz6()),
                 (v.is_current, boolean.copy())]  # fmt: skip
    return cols


_TS_KINDS = (Kind.TIMESTAMP, Kind.TIMESTAMPTZ)
_INT64, _TEXT, _TSTZ, _BOOL = (ColumnType(k) for k in (Kind.INT64, Kind.TEXT, Kind.TIMESTAMPTZ,
                                                        Kind.BOOLEAN))  # fmt: skip


_QUARANTINE_KINDS = {"partition": _INT64, "offset": _INT64, "lsn": _INT64,
                     "raw_key": ColumnType(Kind.BYTES), "raw_value": ColumnType(Kind.BYTES),
                     "quarantined_at": _TSTZ, "replayed_at": _TSTZ}  # fmt: skip


def _meta_kinds(target: TableTarget) -> dict[str, ColumnType]:
    """The model types metadata and validity columns are read back as."""
    meta, v = target.metadata, target.scd2
    kinds = {meta.lsn: _INT64, meta.txid: _INT64, meta.op: _TEXT, meta.source_ts: _TSTZ,
             meta.loaded_at: _TSTZ, meta.deleted: _BOOL}  # fmt: skip
    if target.mode == "scd2":
        kinds |= {v.valid_from: _TSTZ, v.valid_to: _TSTZ, v.is_current: _BOOL}
    return kinds


def _micros(value: dt.datetime) -> int:
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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


class SnowflakeWarehouse(SnowflakeTiering, Warehouse):
    """A Snowflake schema as the warehouse (mirror tables; see the module docstring)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        transactional_ddl=False,
        max_decimal_precision=38,
        concurrent_readers=True,
        # Snowflake has no infinite dates or timestamps, no TIME 24:00:00, and documents years
        # 1 to 9999 (recommending 1582 and later: the Gregorian calendar's start)
        infinite_dates=False,
        date_years=(1, 9999),
        timestamp_years=(1, 9999),
        end_of_day_time=False,
        json_number_digits=38,
        special_floats_in_arrays=False,
    )
    checksum_dialect: ClassVar[Literal["duckdb", "snowflake"]] = "snowflake"

    def __init__(
        self,
        settings: SnowflakeSettings,
        bookkeeping_schema: str | None = None,
        *,
        job: str = "apply",
        tmpdir: Path | None = None,
        tier_stage: str | None = None,
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
        # this instance's staging tables are its own: another process (or a second instance
        # here) applying the same table shape at the same time never touches them
        self.staging_token = uuid.uuid4().hex[:12].upper()
        self._tagged: str | None = None  # the table the statements now work on (QUERY_TAG)
        # lifecycle tiering: the external stage the <table>_history views read tier files from
        self.tier_stage = tier_stage

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

    def _failed(self, exc: BaseException, table: str | None) -> WarehouseError:
        """The contract's error for a connector error. After a transient one the connection
        is dropped: the next call logs in again (a session may have expired meanwhile)."""
        error = map_error(exc, table=table)
        if isinstance(error, TransientWarehouseError) and self._conn is not None:
            with contextlib.suppress(sf_errors.Error, OSError):
                self._conn.close()
            self._conn = None
        return error

    def close(self) -> None:
        if self._conn is not None and self._staging:
            with contextlib.suppress(sf_errors.Error, OSError):
                cur = self._conn.cursor()
                for name in sorted(self._staging):
                    self._exec(cur, sql.drop(self._ref(name), "TABLE"))
        self._staging.clear()
        if self._conn is not None:
            with contextlib.suppress(sf_errors.Error, OSError):
                self._conn.close()
            self._conn = None
        if self._own_tmp:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _tag(self) -> dict[str, str]:
        """Every statement's ``QUERY_TAG``: the job and the table it works on (cost per table)."""
        return {"QUERY_TAG": self.settings.query_tag(self.job, self._tagged)}

    def _exec(self, cur: Any, stmt: exp.Expr | str, params: Sequence[Any] = ()) -> Any:
        text = stmt if isinstance(stmt, str) else render(stmt, DIALECT)
        cur.execute(text, list(params) if params else None, _statement_params=self._tag())
        return cur

    def _stage_arrow(self, cur: Any, data: pa.Table, into: TableRef, table: str | None) -> None:
        stage_arrow(cur, data, into, STAGE_NAME, self.tmpdir, table_name=table,
                    statement_params=self._tag())  # fmt: skip

    def _run(self, work: Any, table: str | None) -> Any:
        """Run ``work(cursor)`` outside a transaction, errors mapped."""
        cur = self._connection().cursor()
        self._tagged = table
        try:
            return work(cur)
        except (sf_errors.Error, OSError) as exc:
            raise self._failed(exc, table) from exc
        finally:
            self._tagged = None

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
        reconcile_runs = [
            (c, ts() if c in ("started_at", "finished_at")
             else number(19, 0) if c in RECONCILE_COUNTS else v())
            for c in RECONCILE_COLUMNS
        ]  # fmt: skip
        self._exec(cur, sql.create_table(self._ref("reconcile_runs"), reconcile_runs))
        self._cost_ddl(cur)
        self._exec(cur, create_stage(self._ref(STAGE_NAME)))

    def ensure_bookkeeping(self) -> None:
        self._run(self._bookkeeping_ddl, table=None)
        self._bookkept = True

    # ---- schema (outside the transaction) ---------------------------------------------------

    def _target_table(self, batch: TableBatch) -> TargetTable:
        return sql.target_table(
            batch, self.schema, self.bookkeeping_schema, snowflake_type, staged_value
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
        self._stage_arrow(cur, data, staging, ref.name)
        source = exp.select(staged_value(sql.col("v"), dtype)).from_(staging.expr()).subquery()
        self._exec(
            cur,
            exp.Update(
                this=ref.expr(), expressions=[exp.EQ(this=sql.col(name), expression=source)]
            ),
        )

    def _staging_table(self, cur: Any, purpose: str, data: pa.Table) -> TableRef:
        """This instance's staging table for one stage shape, created once (outside
        transactions)."""
        columns = staging_columns(data.schema)
        shape = json.dumps([purpose, [(n, t.sql(DIALECT)) for n, t in columns]])
        digest = hashlib.sha256(shape.encode()).hexdigest()[:16].upper()
        ref = self._ref(f"CDC_STG_{digest}_{self.staging_token}")
        if ref.name not in self._staging:
            self._exec(cur, create_staging_table(ref, columns))
            self._staging.add(ref.name)
        return ref

    def _check_mode(self, cur: Any, m: TargetTable, mode: str) -> None:
        """Refuse a table that holds rows of the other mode; recreate it if it is empty."""
        doc = self._registry_doc(cur, m.target.name)
        if doc is None or doc[1] == mode:
            return
        row = self._exec(cur, sql.count_rows(m.target, None)).fetchone()
        rows = int(row[0]) if row else 0
        if rows:
            raise sql.mode_switch_refused(m, rows, doc[1], mode)
        self._exec(cur, sql.drop(self._current_view(m.target.name), "VIEW"))
        for ref in (m.target, self._ref(f"{m.target.name}__deleted")):
            self._exec(cur, sql.drop(ref, "TABLE"))

    def _current_view(self, name: str) -> TableRef:
        return TableRef(self.schema, f"{name}_current")

    def _ensure_table(self, cur: Any, batch: TableBatch, m: TargetTable) -> None:
        wanted = (batch.target, batch.schema)
        if self._ensured.get(batch.target.name) == wanted:
            return
        self._check_mode(cur, m, batch.target.mode)
        self._sync_table(cur, m.target, [*m.columns, *_metadata(batch.target)], batch)
        if m.markers is not None:
            keys = [(k, m.columns[m.index(k)][1]) for k in m.key]
            self._sync_table(cur, m.markers, [*keys, (m.meta.lsn, number(19, 0))])
        if m.scd2 is not None:
            self._exec(cur, sql.create_current_view(self._current_view(m.target.name), m))
        self._ensured[batch.target.name] = wanted

    def _stage(self, cur: Any, purpose: str, data: pa.Table, table: str) -> TableRef:
        """Load ``data`` into its staging table now (autocommit; reads before the apply)."""
        ref = self._staging_table(cur, purpose, data)
        self._stage_arrow(cur, data, ref, table)
        return ref

    # ---- apply ------------------------------------------------------------------------------

    def apply(
        self,
        batches: Sequence[TableBatch],
        offsets: Sequence[OffsetRow],
        quarantine: Sequence[QuarantineRow] = (),
        resolve: Sequence[QuarantineRow] = (),
    ) -> ApplyResult:
        """Plan and stage outside the transaction, then write everything in one (see the
        module docstring)."""
        started = time.perf_counter()
        planned = [
            (batch, self._target_table(batch), carry_key_changes(batch)) for batch in batches
        ]
        if not self._bookkept:
            self.ensure_bookkeeping()
        work: list[_Work] = []
        stored = list(quarantine)
        current: str | None = None
        cur = self._connection().cursor()
        try:
            for batch, m, carry in planned:
                current = self._tagged = batch.target.name
                self._ensure_table(cur, batch, m)
                unresolved = 0
                if carry.asks:
                    batch, unresolved = self._carry_key_changes(cur, carry, m)
                else:
                    batch = carry.batch
                held: list[QuarantineRow] = []
                if batch.target.quarantine:
                    batch, held = self._hold(cur, batch, quarantine, resolve)
                    stored += held
                work.append(self._plan(cur, batch, m, unresolved, len(held)))
            current = self._tagged = None
            queued = self._queue_quarantine(cur, stored, resolve)
        except (sf_errors.Error, OSError) as exc:
            raise self._failed(exc, current) from exc
        except IncompatibleSchemaChangeError as exc:
            exc.table = exc.table or current
            raise
        stats: list[TableApplyStats] = []
        try:
            self._exec(cur, "BEGIN")
            current = None
            self._write_quarantine(cur, queued)
            for w in work:
                current = self._tagged = w.batch.target.name
                if w.into is not None:
                    self._stage_arrow(cur, w.stage, w.into, current)
                    self._write(cur, w)
                    self._register(cur, w.batch)
                stats.append(w.stats)
            current = self._tagged = None
            self._store_offsets(cur, offsets)
            failpoints.reach("before_warehouse_commit")
            self._exec(cur, "COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sf_errors.Error, OSError):
                self._exec(cur, "ROLLBACK")
            if isinstance(exc, sf_errors.Error | OSError):
                raise self._failed(exc, current) from exc
            raise
        return ApplyResult(tables=stats, seconds=time.perf_counter() - started)

    def _plan(
        self, cur: Any, batch: TableBatch, m: TargetTable, unresolved: int, held: int
    ) -> _Work:
        """One table's plan, its stage (Arrow) and its staging table, before the transaction."""
        name = batch.target.name
        if not batch.events:
            return _Work(batch, m, None, pa.table({}), TableApplyStats(name, held=held), None)
        if m.scd2 is not None:
            plan = self._plan_scd2(cur, batch, m)
            stats = TableApplyStats(
                table=name, events=plan.events, upserted=plan.upserted, deleted=plan.deleted,
                stale=plan.stale, versions_opened=plan.opened, versions_closed=plan.closed,
            )  # fmt: skip
            stage = scd2_stage(plan)
            into = None if plan.empty else self._staging_table(cur, "scd2", stage)
            work = _Work(batch, m, plan, stage, stats, into)
        else:
            mirror = plan_mirror(batch)
            stage, toast = mirror_stage(mirror)
            into = self._staging_table(cur, "mirror", stage)
            work = _Work(batch, m, mirror, stage, TableApplyStats(name), into, toast)
        work.stats.held, work.stats.toast_unresolved = held, unresolved
        return work

    def _write(self, cur: Any, w: _Work) -> None:
        """The set-based statements of one table, in the transaction."""
        assert w.into is not None
        m, into = w.m, w.into
        if isinstance(w.plan, Scd2Plan):
            if w.plan.removes:
                self._exec(cur, sql.scd2_remove(m, into))
            if w.plan.updates:
                self._exec(cur, sql.scd2_update(m, into))
            if w.plan.inserts:
                self._exec(cur, sql.scd2_insert(m, into))
            if w.plan.deletes:
                self._exec(cur, sql.sf_markers_update(m, into))
                self._exec(cur, sql.sf_markers_insert(m, into))
            return
        plan = w.plan
        assert isinstance(plan, MirrorPlan)
        row = self._exec(cur, sql.sf_guard_counts(m, into)).fetchone()
        upserts, deletes = (int(row[0]), int(row[1])) if row else (0, 0)
        if plan.upserts:
            self._exec(cur, sql.sf_mirror_update(m, into, w.toast, staged_value))
            self._exec(cur, sql.sf_mirror_insert(m, into, staged_value))
        if plan.deletes and m.soft_delete:
            self._exec(cur, sql.sf_soft_delete_update(m, into))
            self._exec(cur, sql.sf_soft_delete_insert(m, into))
        elif plan.deletes:
            self._exec(cur, sql.sf_markers_update(m, into))
            self._exec(cur, sql.sf_markers_insert(m, into))
            self._exec(cur, sql.sf_hard_delete(m, into))
        if plan.upserts and m.markers is not None:
            self._exec(cur, sql.sf_prune_delete_markers(m, into))
        staged = len(plan.upserts) + len(plan.deletes)
        w.stats.events, w.stats.upserted, w.stats.deleted = plan.events, upserts, deletes
        w.stats.stale = staged - upserts - deletes

    def _plan_scd2(self, cur: Any, batch: TableBatch, m: TargetTable) -> Scd2Plan:
        """Read the stored tails of the batch's keys (two set-based queries), then plan."""
        name, schema = batch.target.name, batch.schema
        keys = list(dict.fromkeys(event_key(e, schema, name) for e in batch.events))
        staged = self._stage(cur, "keys", key_stage(schema, keys, name), name)
        kinds = {c.name: c.type for c in schema.columns} | _meta_kinds(batch.target)
        meta = sql.scd2_meta_columns(m)
        columns = [(n, kinds[n]) for n in [*schema.names, *meta]]
        versions: list[StoredVersion] = []
        for r in self._read(cur, sql.scd2_tail(m, staged), columns):
            values = {n: r[n] for n in schema.names}
            lsn, txid, op, source_ts, valid_from, valid_to, deleted = (r[n] for n in meta)
            end = None if valid_to is None else _micros(valid_to)
            versions.append((values, lsn, txid, op, _micros(source_ts), _micros(valid_from), end,
                             bool(deleted)))  # fmt: skip
        key_columns = [(k, kinds[k]) for k in m.key] + [(m.meta.lsn, _INT64)]
        markers = [
            (tuple(r[k] for k in m.key), int(r[m.meta.lsn]))
            for r in self._read(cur, sql.scd2_hwm(m, staged), key_columns)
        ]
        return plan_scd2(batch, stored_tails(m.key, versions, markers))

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

    # ---- quarantine ---------------------------------------------------------------------------

    def _hold(
        self,
        cur: Any,
        batch: TableBatch,
        new: Sequence[QuarantineRow],
        resolve: Sequence[QuarantineRow],
    ) -> tuple[TableBatch, list[QuarantineRow]]:
        """Hold the batch's changes of keys with an earlier open quarantined change (read
        before the transaction; the origins being resolved by this apply don't count)."""
        query = sql.quarantine_open_rows(self._ref("quarantine"))
        rows = self._exec(cur, query, [batch.target.name]).fetchall()
        mine = [r for r in new if r.table == batch.target.name]
        return hold(batch, first_open(mine, open_keys(rows, resolve)))

    def _queue_quarantine(
        self, cur: Any, stored: Sequence[QuarantineRow], resolve: Sequence[QuarantineRow]
    ) -> list[tuple[str, pa.Table, TableRef]]:
        """Staging tables for the quarantine rows to store and the origins to resolve."""
        out = []
        for purpose, rows in (("resolve", resolve), ("quarantine", stored)):
            if rows:
                data = quarantine_stage(rows)
                out.append((purpose, data, self._staging_table(cur, purpose, data)))
        return out

    def _write_quarantine(self, cur: Any, queued: list[tuple[str, pa.Table, TableRef]]) -> None:
        ref = self._ref("quarantine")
        for purpose, data, into in queued:
            self._stage_arrow(cur, data, into, "quarantine")
            if purpose == "resolve":
                self._exec(cur, sql.quarantine_resolve(ref, into))
            else:
                self._exec(cur, sql.sf_quarantine_insert(ref, into))

    # ---- key changes ----------------------------------------------------------------------------

    def _carry_key_changes(
        self, cur: Any, carry: KeyChangeCarry, m: TargetTable
    ) -> tuple[TableBatch, int]:
        """Fill key changes' placeholders from stored rows (before the transaction): which key
        was deleted at each orphan create's LSN, then those old keys' stored rows; the LSNs
        and keys are staged as data and joined (one query each)."""
        schema = carry.batch.schema
        name = carry.batch.target.name
        kinds = {c.name: c.type for c in schema.columns}
        lsn = m.meta.lsn
        if carry.orphans:
            lsns = pa.table({"lsn": pa.array(list(carry.orphans), pa.int64())})
            staged = self._stage(cur, "lsns", lsns, name)
            columns = [(k, kinds[k]) for k in m.key] + [(lsn, _INT64)]
            found = self._read(cur, sql.deleted_at(m, staged), columns)
            carry = carry.link({int(r[lsn]): tuple(r[k] for k in m.key) for r in found})
        stored: dict[Key, StoredRow] = {}
        if carry.needs:
            keys = key_stage(schema, list(carry.needs), name)
            staged = self._stage(cur, "keys", keys, name)
            columns = [(n, kinds[n]) for n in schema.names] + [(lsn, _INT64)]
            for r in self._read(cur, sql.latest_rows(m, staged), columns):
                values = {n: r[n] for n in schema.names}
                stored[tuple(values[k] for k in m.key)] = StoredRow(int(r[lsn]), values)
        return carry.fill(stored)

    # ---- reads ------------------------------------------------------------------------------

    def load_offsets(self, consumer_group: str) -> dict[tuple[str, int], int]:
        def work(cur: Any) -> dict[tuple[str, int], int]:
            try:
                rows = self._exec(cur, sql.select_offsets(self._ref("offsets")), [consumer_group])
            except sf_errors.ProgrammingError as exc:
                if getattr(exc, "errno", None) == 2003:  # no bookkeeping yet: nothing applied
                    return {}
                raise
            return {(topic, int(p)): int(n) for topic, p, n in rows.fetchall()}

        return dict(self._run(work, table=None))

    def _registry_doc(self, cur: Any, name: str) -> tuple[str, str, dict[str, Any]] | None:
        query = exp.select(sql.col("source_table"), sql.col("mode"), sql.col("schema_json"))
        query = query.from_(self._ref("tables").expr())
        query = query.where(sql.col("table_name").eq(exp.Placeholder()))
        row = self._exec(cur, query, [name]).fetchone()
        return None if row is None else (row[0], row[1], json.loads(row[2]))

    def _read(
        self,
        cur: Any,
        query: exp.Select,
        columns: Sequence[tuple[str, ColumnType | None]],
        params: Sequence[Any] = (),
        order: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Rows of ``query`` (whose projections are named ``columns``) in the model
        representation. fakesnow fetches a NULL timestamp as 1970-01-01, so timestamps come
        with ``IS NULL`` evaluated on the engine."""
        q = "q"
        nulls = [n for n, ct in columns if ct is not None and ct.kind in _TS_KINDS]
        outer = exp.select(
            *[sql.col(n, q) for n, _ in columns],
            *[exp.Is(this=sql.col(n, q), expression=exp.Null()) for n in nulls],
        ).from_(query.subquery(q))
        if order:
            outer = outer.order_by(*[sql.col(n, q) for n in order])
        out = []
        for row in self._exec(cur, outer, params).fetchall():
            values = {n: model_value(ct, v) for (n, ct), v in zip(columns, row, strict=False)}
            for n, is_null in zip(nulls, row[len(columns) :], strict=True):
                if is_null:
                    values[n] = None
            out.append(values)
        return out

    def _kinds(self, cur: Any, name: str) -> dict[str, ColumnType]:
        doc = self._registry_doc(cur, name)
        if doc is None:
            return {}
        return {c["name"]: _column_type(c["type"]) for c in doc[2]["schema"]["columns"]}

    def fetch_table(self, target: TableTarget) -> list[dict[str, Any]]:
        ref = TableRef(self.schema, target.name)

        def work(cur: Any) -> list[dict[str, Any]]:
            stored = self._columns_of(cur, ref)
            if not stored:
                raise TerminalWarehouseError(f"table {ref.schema}.{ref.name} does not exist")
            kinds = self._kinds(cur, target.name)
            hidden = sql.reserved_columns(target)
            columns = [(n, kinds.get(n)) for n in stored if n not in hidden]
            query = exp.select(*[sql.col(n) for n, _ in columns]).from_(ref.expr())
            if target.mode == "scd2":
                query = query.where(sql.col(target.scd2.is_current))
            elif target.metadata.deleted in stored:
                deleted = exp.Coalesce(this=sql.col(target.metadata.deleted),
                                       expressions=[exp.false()])  # fmt: skip
                query = query.where(exp.Not(this=deleted))
            return self._read(cur, query, columns)

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
        query = sql.quarantine_list(self._ref("quarantine"), table is not None, include_replayed)
        columns = [(c, _QUARANTINE_KINDS.get(c, _TEXT))
                   for c in (*sql.QUARANTINE_COLUMNS, "quarantined_at", "replayed_at")]  # fmt: skip

        def work(cur: Any) -> list[dict[str, Any]]:
            if not self._bookkept:
                self._bookkeeping_ddl(cur)
                self._bookkept = True
            params = [table] if table is not None else []
            inner = query.copy()
            inner.set("order", None)  # ordered outside (_read wraps the query)
            return self._read(cur, inner, columns, params, order=sql.QUARANTINE_ORIGIN)

        out = []
        for r in self._run(work, table=table):
            row = QuarantineRow(
                table=r["table_name"], key=r["key_json"], topic=r["topic"],
                partition=r["partition"], offset=r["offset"], lsn=r["lsn"], op=r["op"],
                checks=tuple(json.loads(r["checks"])), reason=r["reason"],
                raw_key=r["raw_key"], raw_value=r["raw_value"],
            )  # fmt: skip
            out.append(QuarantinedChange(row, r["quarantined_at"], r["replayed_at"]))
        return out

    def _history_table(self, cur: Any, target: TableTarget) -> TargetTable:
        """The statements' view of a registered scd2 table (key from the registry)."""
        if target.mode != "scd2":
            raise TerminalWarehouseError(f"table {target.name!r} is not an scd2 table")
        doc = self._registry_doc(cur, target.name)
        if doc is None:
            raise TerminalWarehouseError(
                f"table {target.name!r} has no history yet (nothing replicated to it)"
            )
        ref = TableRef(self.schema, target.name)
        return sql.history_table(ref, doc[2]["schema"]["key"], target.metadata, target.scd2)

    def fetch_history(
        self, target: TableTarget, key: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every version (or those of one key, given as the key columns' values in text)."""

        def work(cur: Any) -> list[dict[str, Any]]:
            m = self._history_table(cur, target)
            kinds = self._kinds(cur, target.name) | _meta_kinds(target)
            columns = [(n, kinds.get(n)) for n in self._columns_of(cur, m.target)]
            query = exp.select(*[sql.col(n) for n, _ in columns]).from_(m.target.expr())
            query, params = sql.of_key(query, m, key)
            return self._read(cur, query, columns, params, order=[*m.key, m.meta.lsn])

        result: list[dict[str, Any]] = self._run(work, table=target.name)
        return result

    def close_history_gaps(self, target: TableTarget) -> HistoryReport:
        def work(cur: Any) -> None:
            self._exec(cur, sql.scd2_close_gaps(self._history_table(cur, target)))

        self._run(work, table=target.name)
        return self.history_report(target)

    def history_report(self, target: TableTarget) -> HistoryReport:
        strict = target.scd2.granularity == "transaction"

        def work(cur: Any) -> HistoryReport:
            m = self._history_table(cur, target)
            counts = self._exec(cur, sql.history_counts(m, strict)).fetchone()
            examples = self._exec(cur, sql.history_examples(m, strict)).fetchall()
            return history_report(target.name, counts, examples, sql.HISTORY_CHECKS)

        result: HistoryReport = self._run(work, table=target.name)
        return result

    def last_applied(self, target: TableTarget) -> AppliedPosition | None:
        meta = target.metadata
        query = sql.newest_applied(TableRef(self.schema, target.name), meta)
        columns = [(meta.lsn, _INT64), (meta.source_ts, _TSTZ), (meta.loaded_at, _TSTZ)]

        def work(cur: Any) -> AppliedPosition | None:
            if not self._columns_of(cur, TableRef(self.schema, target.name)):
                return None  # not created yet: nothing applied
            [row] = self._read(cur, query, columns)
            return AppliedPosition(row[meta.lsn], row[meta.source_ts], row[meta.loaded_at])

        result: AppliedPosition | None = self._run(work, table=target.name)
        return result

    def row_counts(self) -> dict[str, int]:
        """Live rows per registered table (soft-deleted rows excluded; current versions)."""

        def work(cur: Any) -> dict[str, int]:
            registry = exp.select(sql.col("table_name"), sql.col("schema_json"))
            counts: dict[str, int] = {}
            for name, doc in self._exec(cur, registry.from_(self._ref("tables").expr())).fetchall():
                row = self._exec(cur, sql.live_rows_count(self.schema, name, doc)).fetchone()
                counts[name] = int(row[0]) if row else 0
            return counts

        result: dict[str, int] = self._run(work, table=None)
        return result

    # ---- reconciliation ----------------------------------------------------------------------

    def _reconcile_view(
        self, cur: Any, target: TableTarget
    ) -> tuple[TableRef, set[str], exp.Expr | None] | None:
        """The table, its stored column names and its live-row filter (None: no table)."""
        ref = TableRef(self.schema, target.name)
        stored = set(self._columns_of(cur, ref))
        if not stored:
            return None
        return ref, stored, checksum.live_condition(target, stored)

    def checksums(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[KeyRange]
    ) -> list[RangeChecksum]:
        def work(cur: Any) -> list[RangeChecksum]:
            view = self._reconcile_view(cur, target)
            if view is None:
                return [RangeChecksum(0, 0) for _ in ranges]
            ref, stored, live = view
            query, params = checksum.checksum_query(
                ref,
                schema.columns,
                schema.key,
                ranges,
                _CHECKSUM_DIALECT,
                live=live,
                present=stored,
            )
            found = self._exec(cur, query, [_bindable(p) for p in params]).fetchall()
            sums = {int(i): RangeChecksum(int(n), int(s or 0)) for i, n, s in found}
            return [sums[i] for i in range(len(ranges))]

        result: list[RangeChecksum] = self._run(work, table=target.name)
        return result

    def _rows(
        self, cur: Any, target: TableTarget, schema: TableSchema, build: Any
    ) -> list[tuple[dict[str, Any], int]]:
        view = self._reconcile_view(cur, target)
        if view is None:
            return []
        ref, stored, live = view
        lsn = target.metadata.lsn
        names = [n for n in schema.names if n in stored]
        projections = [exp.alias_(sql.col(n), sql.ident(n)) for n in [*names, lsn]]
        query, params = build(ref, projections, live)
        kinds = [(n, schema.column(n).type) for n in names] + [(lsn, _INT64)]
        out = []
        for row in self._read(cur, query, kinds, [_bindable(p) for p in params]):
            position = int(row.pop(lsn) or 0)
            out.append(({n: row.get(n) for n in schema.names}, position))
        return out

    def range_rows(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[KeyRange]
    ) -> list[tuple[dict[str, Any], int]]:
        key_columns = [schema.column(k) for k in schema.key]

        def work(cur: Any) -> list[tuple[dict[str, Any], int]]:
            out: list[tuple[dict[str, Any], int]] = []
            for rng in ranges:

                def build(ref: TableRef, projections: list[exp.Expr], live: Any,
                          rng: KeyRange = rng) -> Any:  # fmt: skip
                    return checksum.range_rows_query(
                        ref, projections, key_columns, rng, _CHECKSUM_DIALECT, live=live
                    )

                out += self._rows(cur, target, schema, build)
            return out

        result: list[tuple[dict[str, Any], int]] = self._run(work, table=target.name)
        return result

    def key_rows(
        self, target: TableTarget, schema: TableSchema, keys: Sequence[tuple[Any, ...]]
    ) -> list[tuple[dict[str, Any], int]]:
        def work(cur: Any) -> list[tuple[dict[str, Any], int]]:
            out: list[tuple[dict[str, Any], int]] = []
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]

                def build(ref: TableRef, projections: list[exp.Expr], live: Any,
                          chunk: Sequence[tuple[Any, ...]] = chunk) -> Any:  # fmt: skip
                    query = checksum.keys_rows_query(ref, projections, schema.key, len(chunk),
                                                     live=live)  # fmt: skip
                    return query, [v for k in chunk for v in k]

                out += self._rows(cur, target, schema, build)
            return out

        result: list[tuple[dict[str, Any], int]] = self._run(work, table=target.name)
        return result

    def split_keys(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[tuple[KeyRange, int]]
    ) -> list[list[tuple[Any, ...]]]:
        key_columns = [schema.column(k) for k in schema.key]
        kinds = [(c.name, c.type) for c in key_columns]

        def work(cur: Any) -> list[list[tuple[Any, ...]]]:
            view = self._reconcile_view(cur, target)
            if view is None:
                return [[] for _ in ranges]
            ref, _, live = view
            out = []
            for rng, step in ranges:
                query, params = checksum.split_query(
                    ref, key_columns, rng, step, _CHECKSUM_DIALECT, live=live
                )
                query.set("order", None)  # ordered outside (_read wraps the query)
                rows = self._read(cur, query, kinds, [_bindable(p) for p in params],
                                  order=schema.key)  # fmt: skip
                out.append([tuple(r[k] for k in schema.key) for r in rows])
            return out

        result: list[list[tuple[Any, ...]]] = self._run(work, table=target.name)
        return result

    def record_reconcile(self, runs: Sequence[ReconcileRun]) -> None:
        insert = sql.reconcile_insert(self._ref("reconcile_runs"), timestamp_tz6())

        def work(cur: Any) -> None:
            if not self._bookkept:
                self._bookkeeping_ddl(cur)
                self._bookkept = True
            for run in runs:
                self._exec(cur, insert, reconcile_values(run))

        self._run(work, table=None)

    def last_reconciles(self) -> dict[str, ReconcileRun]:
        kinds = [
            (c, _TSTZ if c in ("started_at", "finished_at")
             else _INT64 if c in RECONCILE_COUNTS else _TEXT)
            for c in RECONCILE_COLUMNS
        ]  # fmt: skip

        def work(cur: Any) -> list[dict[str, Any]]:
            try:
                return self._read(cur, sql.reconcile_latest(self._ref("reconcile_runs")), kinds)
            except sf_errors.ProgrammingError as exc:
                if getattr(exc, "errno", None) == 2003:  # no bookkeeping or never reconciled
                    return []
                raise

        rows: list[dict[str, Any]] = self._run(work, table=None)
        return {r["table_name"]: reconcile_run([r[c] for c in RECONCILE_COLUMNS]) for r in rows}

    # ---- measured compute and cost reports (cdc.costs) ----------------------------------------

    def _cost_ddl(self, cur: Any) -> None:
        v, ts, double = _varchar, timestamp_tz6, exp.DataType(this=DT.DOUBLE)
        compute = [("job", v()), ("table_name", v()), ("seconds", double.copy()),
                   ("statements", number(19, 0)), ("at", ts())]  # fmt: skip
        self._exec(cur, sql.create_table(self._ref("compute_log"), compute))
        reports = [("report_id", v()), ("at", ts()), ("table_name", v()), ("tier", v()),
                   ("rows", number(19, 0)), ("bytes", number(19, 0)),
                   ("storage_cost", double.copy()), ("compute_cost", double.copy())]  # fmt: skip
        self._exec(cur, sql.create_table(self._ref("cost_reports"), reports))

    def _append_cost(self, stmt: exp.Insert, values: list[Any]) -> None:
        def work(cur: Any) -> None:
            if not self._bookkept:
                self._bookkeeping_ddl(cur)
                self._bookkept = True
            self._exec(cur, stmt, values)

        self._run(work, table=None)

    def record_compute(self, rows: Sequence[ComputeRow]) -> None:
        if rows:
            insert = cost_sql.compute_insert(self._ref("compute_log"), len(rows), timestamp_tz6())
            self._append_cost(insert, [v for r in rows for v in compute_values(r)])

    def compute_totals(self, since: dt.datetime | None) -> dict[tuple[str, str], float]:
        query = cost_sql.compute_totals(self._ref("compute_log"), since is not None,
                                        timestamp_tz6())  # fmt: skip

        def work(cur: Any) -> list[tuple[Any, ...]]:
            try:
                found: list[tuple[Any, ...]] = self._exec(
                    cur, query, [since.isoformat()] if since else []
                ).fetchall()
                return found
            except sf_errors.ProgrammingError as exc:
                if getattr(exc, "errno", None) == 2003:  # no bookkeeping yet
                    return []
                raise

        rows: list[tuple[Any, ...]] = self._run(work, table=None)
        return {(str(job), str(table)): float(s or 0) for job, table, s in rows}

    def table_storage(self, target: TableTarget) -> TableStorage:
        """``ROW_COUNT`` and ``BYTES`` of ``INFORMATION_SCHEMA.TABLES``: Snowflake's own
        figures (active bytes, compressed; Time Travel and Fail-safe bytes are not in them),
        refreshed by Snowflake with a short delay. fakesnow returns DuckDB's row estimate as
        ROW_COUNT and always 0 as BYTES, so bytes can only be checked on a real account."""

        def work(cur: Any) -> tuple[Any, ...] | None:
            found: tuple[Any, ...] | None = self._exec(
                cur, cost_sql.information_schema_storage(), [self.schema, target.name]
            ).fetchone()
            return found

        row = self._run(work, table=target.name)
        if row is None:
            return TableStorage(0, 0)
        return TableStorage(int(row[0] or 0), int(row[1] or 0))

    def record_cost_report(self, rows: Sequence[CostReportRow]) -> None:
        if rows:
            ref = self._ref("cost_reports")
            insert = cost_sql.cost_report_insert(ref, len(rows), timestamp_tz6())
            self._append_cost(insert, [v for r in rows for v in cost_report_values(r)])

    def cost_history(self) -> list[CostReportRow]:
        f64 = ColumnType(Kind.FLOAT64)
        kinds = [(c, _TSTZ if c == "at" else _INT64 if c in ("rows", "bytes")
                  else f64 if c in ("storage_cost", "compute_cost") else _TEXT)
                 for c in COST_REPORT_COLUMNS]  # fmt: skip

        def work(cur: Any) -> list[dict[str, Any]]:
            query = cost_sql.cost_history(self._ref("cost_reports"))
            try:
                return self._read(cur, query, kinds, order=("at", "report_id", "table_name",
                                                            "tier"))  # fmt: skip
            except sf_errors.ProgrammingError as exc:
                if getattr(exc, "errno", None) == 2003:  # no bookkeeping yet
                    return []
                raise

        rows: list[dict[str, Any]] = self._run(work, table=None)
        return [cost_report_row([r[c] for c in COST_REPORT_COLUMNS]) for r in rows]
