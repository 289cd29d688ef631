"""The Snowflake warehouse: the hooks of the engine template (:mod:`warehouse.engine`).

Built on the blocks of :mod:`warehouse.snowflake` (errors, types, staging, values) and checked
on fakesnow's server with the real connector (``tests/conformance/``: the same tests as
DuckDB's, and a real account when ``SNOWFLAKE_*`` is set).

What the capabilities say, and the template does with it: DDL commits an open transaction on
Snowflake (and fakesnow fails VARCHAR ALTERs and MERGE inside one), so the DDL of an apply
(tables, delete markers, current views, staging tables) and the reads its plans need (key
changes' stored rows, open quarantine rows, the stored tails of scd2 keys) run before the
transaction, their inputs staged as data and joined; the transaction then stages each batch
(``PUT`` + ``COPY``, :func:`warehouse.snowflake.staging.stage_arrow`) and writes the logical
merge (UPDATE ... FROM + INSERT ... WHERE NOT EXISTS, no MERGE), the quarantine and registry
rows and the offsets (forward only). Any exception: ROLLBACK, the error mapped by
:func:`warehouse.snowflake.errors.map_error`; after a transient error the connection is dropped
and the next call logs in again. Values never reach SQL text: rows are staged as Parquet,
scalars are qmark-bound.

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

Reads convert with the model types recorded in the registry (:mod:`warehouse.snowflake.values`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import snowflake.connector
import snowflake.connector.errors as sf_errors
from sqlglot import exp

from cdc.model import ColumnType
from warehouse import cost_sql, sql
from warehouse.base import (
    Capabilities,
    ChecksumDialect,
    CreditUsage,
    TableStorage,
    TableTarget,
    TransientWarehouseError,
    WarehouseError,
)
from warehouse.engine import Field, SqlWarehouse
from warehouse.snowflake.credits import query_history_sql
from warehouse.snowflake.errors import map_error
from warehouse.snowflake.settings import SnowflakeSettings
from warehouse.snowflake.staging import (
    create_stage,
    create_staging_table,
    stage_arrow,
    staged_value,
    staging_columns,
)
from warehouse.snowflake.tiering import SnowflakeTiering
from warehouse.snowflake.types import DIALECT, snowflake_type, stored_type, widen_stored
from warehouse.snowflake.values import bindable, read
from warehouse.sql import TableRef, render

STAGE_NAME = "CDC_STAGE"
_MISSING_OBJECT = 2003  # errno: the object does not exist (or is not authorised)
__all__ = ["STAGE_NAME", "SnowflakeWarehouse"]


class SnowflakeWarehouse(SnowflakeTiering, SqlWarehouse):
    """A Snowflake schema as the warehouse (see the module docstring)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        transactional_ddl=False,
        max_decimal_precision=38,
        concurrent_readers=True,
        merge_in_transaction=False,
        json_as_values=True,
        checksum_dialect="snowflake",
        concurrent_writers=True,
        # Snowflake has no infinite dates or timestamps, no TIME 24:00:00, and documents years
        # 1 to 9999 (recommending 1582 and later: the Gregorian calendar's start)
        infinite_dates=False,
        date_years=(1, 9999),
        timestamp_years=(1, 9999),
        end_of_day_time=False,
        json_number_digits=38,
        special_floats_in_arrays=False,
    )
    checksum_dialect: ClassVar[ChecksumDialect] = "snowflake"
    _stage_value: ClassVar[sql.StagedValue | None] = staged_value

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
        self._staging: set[str] = set()
        # this instance's staging tables are its own: another process (or a second instance
        # here) applying the same table shape at the same time never touches them
        self.staging_token = uuid.uuid4().hex[:12].upper()
        # lifecycle tiering: the external stage the <table>_history views read tier files from
        self.tier_stage = tier_stage
        self._init_template()

    @property
    def reads_tiered_history(self) -> bool:
        return self.tier_stage is not None

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

    # ---- the template's hooks ---------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Any]:
        yield self._connection().cursor()

    def _exec(self, cur: Any, stmt: exp.Expr | str, params: Sequence[Any] = ()) -> Any:
        """Run one statement, values qmark-bound (Decimal and UUID as text: fakesnow's server
        can't bind a Decimal; Snowflake has no UUID type)."""
        text = stmt if isinstance(stmt, str) else render(stmt, DIALECT)
        binds = [bindable(p) for p in params] if params else None
        cur.execute(text, binds, _statement_params=self._tag())
        return cur

    def _read(
        self,
        cur: Any,
        query: exp.Select,
        columns: Sequence[tuple[str, ColumnType | None]],
        params: Sequence[Any] = (),
        order: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Rows of ``query`` in the model representation (:func:`values.read`)."""
        return read(lambda stmt, p: self._exec(cur, stmt, p), query, columns, params, order)

    def _fetch(
        self, cur: Any, query: exp.Select, fields: Sequence[Field], params: Sequence[Any] = (),
        order: Sequence[str] = (),
    ) -> list[dict[str, Any]]:  # fmt: skip
        return self._read(cur, query, [(f.name, f.kind) for f in fields], params, order)

    def _reserve(self, cur: Any, purpose: str, data: pa.Table) -> TableRef:
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

    def _stage(self, cur: Any, purpose: str, data: pa.Table, table: str | None) -> TableRef:
        ref = self._reserve(cur, purpose, data)
        self._load(cur, ref, data, table)
        return ref

    def _load(self, cur: Any, stage: TableRef, data: pa.Table, table: str | None) -> None:
        stage_arrow(cur, data, stage, STAGE_NAME, self.tmpdir, table_name=table,
                    statement_params=self._tag())  # fmt: skip

    def _begin(self, cur: Any) -> None:
        self._exec(cur, "BEGIN")

    def _commit(self, cur: Any) -> None:
        self._exec(cur, "COMMIT")

    def _rollback(self, cur: Any) -> None:
        with contextlib.suppress(sf_errors.Error, OSError):
            self._exec(cur, "ROLLBACK")

    def _map_error(self, exc: Exception, table: str | None) -> WarehouseError | None:
        if isinstance(exc, sf_errors.Error | OSError):
            return self._failed(exc, table)
        return None

    def _missing(self, exc: Exception) -> bool:
        return (
            isinstance(exc, sf_errors.ProgrammingError)
            and getattr(exc, "errno", None) == _MISSING_OBJECT
        )

    def _columns_of(self, cur: Any, ref: TableRef) -> dict[str, exp.DataType]:
        info = exp.Table(this=sql.ident("COLUMNS"), db=sql.ident("INFORMATION_SCHEMA"))
        names = ("COLUMN_NAME", "DATA_TYPE", "NUMERIC_PRECISION", "NUMERIC_SCALE",
                 "CHARACTER_MAXIMUM_LENGTH")  # fmt: skip
        where = exp.and_(
            exp.EQ(this=sql.col("TABLE_SCHEMA"), expression=exp.Placeholder()),
            exp.EQ(this=sql.col("TABLE_NAME"), expression=exp.Placeholder()),
        )
        query = exp.select(*map(sql.col, names)).from_(info).where(where)
        rows = self._exec(cur, query.order_by(sql.col("ORDINAL_POSITION")),
                          [ref.schema, ref.name]).fetchall()  # fmt: skip
        return {r[0]: stored_type(r[1], r[2], r[3], r[4]) for r in rows}

    def _type(self, ct: ColumnType) -> exp.DataType:
        return snowflake_type(ct)

    def _widen(
        self, table: str, name: str, old: exp.DataType, new: exp.DataType
    ) -> exp.DataType | None:
        return widen_stored(table, name, old, new)

    def _engine_ddl(self, cur: Any) -> None:
        self._exec(cur, create_stage(self._ref(STAGE_NAME)))

    # ---- what only Snowflake does -----------------------------------------------------------

    def table_storage(self, target: TableTarget) -> TableStorage:
        """``ROW_COUNT`` and ``BYTES`` of ``INFORMATION_SCHEMA.TABLES``: Snowflake's own
        figures (active bytes, compressed; Time Travel and Fail-safe bytes are not in them),
        refreshed by Snowflake with a short delay. fakesnow returns DuckDB's row estimate as
        ROW_COUNT and always 0 as BYTES, so bytes can only be checked on a real account."""
        query = cost_sql.information_schema_storage()
        with self._session(target.name) as cur:
            row = self._exec(cur, query, [self.schema, target.name]).fetchone()
        if row is None:
            return TableStorage(0, 0)
        return TableStorage(int(row[0] or 0), int(row[1] or 0))

    def credit_usage(self, since: dt.datetime) -> CreditUsage:
        """The user's queries since ``since`` from ``ACCOUNT_USAGE.QUERY_HISTORY`` (a real
        account only: fakesnow's local server has none), on a connection of its own."""
        settings = self.settings
        if settings.host is not None:  # fakesnow's local server (a real account has no host)
            return CreditUsage(
                note="Snowflake credits: not read (fakesnow has no ACCOUNT_USAGE.QUERY_HISTORY)"
            )
        with snowflake.connector.connect(**settings.connect_kwargs("cost_report", None)) as conn:
            cur = conn.cursor()
            cur.execute(query_history_sql().sql(dialect=DIALECT), [since.isoformat()])
            names = [d[0] for d in cur.description]
            rows = tuple(dict(zip(names, r, strict=True)) for r in cur.fetchall())
        return CreditUsage(rows, settings.query_tag_prefix)
