"""The warehouse contract: what the consumer may ask of any engine.

The consumer only talks to :class:`Warehouse`; engine packages (``warehouse.duckdb``,
``warehouse.snowflake``) fill it in, on the engine-neutral template of :mod:`warehouse.engine`.
Common code asks :class:`Capabilities` instead of branching on engine names. Errors are
classified by the engine (by exception class / SQLSTATE / error code, never by message text)
into the classes of :mod:`warehouse.errors`, which decide what the consumer does: retry,
dead-letter the offending events, or stop.

The contract's dataclasses live in :mod:`warehouse.contract` and the errors in
:mod:`warehouse.errors`; every name is importable from here as well.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from cdc.model import TableSchema
from warehouse.contract import (
    COMPUTE_COLUMNS,
    COST_REPORT_COLUMNS,
    RECONCILE_COLUMNS,
    RECONCILE_COUNTS,
    AppliedPosition,
    ApplyResult,
    ColumnDropPolicy,
    ComputeJob,
    ComputeRow,
    CostReportRow,
    CreditUsage,
    Granularity,
    HistoryReport,
    KeyRange,
    MetadataColumns,
    OffsetRow,
    QuarantinedChange,
    QuarantineRow,
    RangeChecksum,
    ReconcileRun,
    RegisteredTable,
    Scd2Options,
    SourceRows,
    TableApplyStats,
    TableBatch,
    TableMode,
    TableStorage,
    TableTarget,
    compute_values,
    cost_report_row,
    cost_report_values,
    history_report,
    reconcile_run,
    reconcile_values,
    registry_json,
)
from warehouse.errors import (
    DataError,
    IncompatibleSchemaChangeError,
    TerminalWarehouseError,
    TransientWarehouseError,
    WarehouseError,
    WatermarkMovedError,
)

__all__ = [
    "COMPUTE_COLUMNS", "COST_REPORT_COLUMNS", "RECONCILE_COLUMNS", "RECONCILE_COUNTS",
    "AppliedPosition", "ApplyResult", "Capabilities", "ChecksumDialect", "ColumnDropPolicy",
    "ComputeJob", "ComputeRow", "CostReportRow", "CreditUsage", "DataError", "Granularity",
    "HistoryReport",
    "IncompatibleSchemaChangeError", "KeyRange", "MetadataColumns", "OffsetRow",
    "QuarantineRow", "QuarantinedChange", "RangeChecksum", "ReconcileRun", "RegisteredTable",
    "Scd2Options", "SourceRows", "TableApplyStats", "TableBatch", "TableMode", "TableStorage",
    "TableTarget", "TerminalWarehouseError", "TransientWarehouseError", "Warehouse",
    "WarehouseError", "WatermarkMovedError", "compute_values", "cost_report_row",
    "cost_report_values", "history_report", "reconcile_run", "reconcile_values", "registry_json",
]  # fmt: skip

ChecksumDialect = Literal["duckdb", "snowflake"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an engine can do; common code reads these instead of engine names."""

    # DDL inside a transaction (else DDL commits an open one: the template runs it, and the
    # reads the plans need, before the apply transaction)
    transactional_ddl: bool
    max_decimal_precision: int
    # True when other processes can read while `cdc run` is replicating (between batches).
    concurrent_readers: bool
    # MERGE inside a transaction with other writes; when False the template writes the
    # logical merge instead (UPDATE ... FROM + INSERT ... WHERE NOT EXISTS)
    merge_in_transaction: bool = True
    # JSON compared as values (the engine normalises JSON text: whitespace, key order), not
    # as text
    json_as_values: bool = False
    # the SQL dialect of warehouse.checksum's renderings for this engine (reconciliation)
    checksum_dialect: ChecksumDialect = "duckdb"
    # several processes may write at once (a consumer group's members, a snapshot)
    concurrent_writers: bool = False
    # What dates, timestamps and times the engine holds exactly (cdc.consumer.fitting
    # quarantines other values): 'infinity' / '-infinity', the years of DATE and of TIMESTAMP
    # (astronomical numbering: 0 = 1 BC), and TIME '24:00:00'. The defaults cover every
    # PostgreSQL value but timestamps of 294247 AD and later (DuckDB's range).
    infinite_dates: bool = True
    date_years: tuple[int, int] = (-4713, 5874897)
    timestamp_years: tuple[int, int] = (-4713, 294246)
    end_of_day_time: bool = True
    # JSON: None when the engine keeps a JSON value's text; else the most digits a number in
    # it keeps exactly (Snowflake's VARIANT: NUMBER(38,s), larger ones become doubles)
    json_number_digits: int | None = None
    # Arrays holding NaN or ±Infinity floats (Snowflake stages arrays as JSON, which has none)
    special_floats_in_arrays: bool = True


class Warehouse(abc.ABC):
    """One warehouse engine. Not thread-safe; one instance per process."""

    capabilities: ClassVar[Capabilities]
    # the SQL dialect of warehouse.checksum's renderings for this engine (reconciliation):
    # the same as ``capabilities.checksum_dialect``
    checksum_dialect: ClassVar[ChecksumDialect]
    # True once the caller wants to stop (SIGTERM): an engine's waits (a held file) end early
    interrupted: Callable[[], bool] = staticmethod(lambda: False)

    @abc.abstractmethod
    def ensure_bookkeeping(self) -> None:
        """Create the bookkeeping schema and tables (offsets, ...) if missing. Idempotent."""

    @abc.abstractmethod
    def apply(
        self,
        batches: Sequence[TableBatch],
        offsets: Sequence[OffsetRow],
        quarantine: Sequence[QuarantineRow] = (),
        resolve: Sequence[QuarantineRow] = (),
    ) -> ApplyResult:
        """Apply every batch and store the offsets in ONE transaction, set-based.

        Creates missing target tables and adds new columns first (idempotent DDL). Per table:
        collapse to the newest change per key, carry unchanged TOAST values forward, stage the
        rows as data, upsert with the position guard (older never wins), delete or soft-delete.
        ``quarantine`` rows are stored (once per origin); ``resolve`` rows are marked replayed
        first; then, for targets with ``quarantine``, changes of keys with an open quarantined
        change at an earlier offset are held (stored as ``held``) instead of applied.
        Offsets only move forward. Either everything commits or nothing does.
        """

    def load_rows(self, rows: SourceRows, offsets: Sequence[OffsetRow] = ()) -> ApplyResult:
        """Apply source rows read outside the log (as snapshot reads at their position, under
        the same guard as the stream) and store ``offsets``, in one transaction.

        This default goes through :meth:`apply`; an engine may stage the rows column-wise
        instead (same statements, no per-row planning)."""
        batches = [TableBatch(rows.target, rows.schema, rows.events())] if rows.rows else []
        return self.apply(batches, offsets)

    def keyless_watermark(self, target: TableTarget) -> Any:
        """A keyless table's stored watermark (:class:`warehouse.keyless.Watermark`; empty
        when nothing was applied)."""
        raise NotImplementedError(f"{type(self).__name__} does not mirror keyless tables")

    def replace_keyless(self, batch: TableBatch, expected: Any) -> int:
        """Re-load a keyless table in ONE transaction: delete its rows and insert the batch's
        snapshot reads (fresh surrogate ids), the watermark kept, if the watermark is still
        ``expected`` (else :class:`WatermarkMovedError`, nothing written). Returns the rows
        inserted."""
        raise NotImplementedError(f"{type(self).__name__} does not mirror keyless tables")

    def takes_columns(self, target: TableTarget) -> bool:
        """Whether :meth:`load_rows` takes rows of ``target`` as Arrow columns
        (:attr:`SourceRows.columns`): read without Python objects."""
        return False

    @abc.abstractmethod
    def list_quarantine(
        self, table: str | None = None, *, include_replayed: bool = False
    ) -> list[QuarantinedChange]:
        """Quarantined changes (open ones unless ``include_replayed``), in origin order."""

    @abc.abstractmethod
    def load_offsets(self, consumer_group: str) -> dict[tuple[str, int], int]:
        """Next offsets stored for the group: ``{(topic, partition): next_offset}`` (empty
        before anything was ever applied)."""

    @abc.abstractmethod
    def fetch_table(self, target: TableTarget) -> list[dict[str, Any]]:
        """Every live row of a target table (soft-deleted rows excluded), metadata omitted."""

    @abc.abstractmethod
    def registered(self, name: str) -> RegisteredTable | None:
        """What the warehouse's table registry knows of a target table (None: never
        replicated to)."""

    @abc.abstractmethod
    def fetch_history(
        self, target: TableTarget, key: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every version of an ``scd2`` table (or of one key, given as its key columns'
        values in text): data columns, validity and metadata columns, ordered by key and
        version (``_cdc_lsn``)."""

    @abc.abstractmethod
    def close_history_gaps(self, target: TableTarget) -> HistoryReport:
        """Repair an ``scd2`` table's validity (reconcile ``--repair``): a version followed by
        another that did not end with a delete ends where the next begins and is not current
        (gaps from a lost version, overlaps). Returns the invariant report afterwards."""

    @abc.abstractmethod
    def history_report(self, target: TableTarget) -> HistoryReport:
        """Check the history invariants of an ``scd2`` table, on the engine (set-based)."""

    @abc.abstractmethod
    def last_applied(self, target: TableTarget) -> AppliedPosition | None:
        """The newest change applied to a target table (None: the table doesn't exist)."""

    @abc.abstractmethod
    def dropped_columns(self, target: TableTarget) -> list[str]:
        """Data columns of a target table that its registered source schema no longer has
        (dropped at the source and kept by ``on_column_drop: keep`` or ``null``), in the
        table's column order; empty when the table doesn't exist or was never registered."""

    # ---- reconciliation (cdc.reconcile) -------------------------------------------------------

    @abc.abstractmethod
    def checksums(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[KeyRange]
    ) -> list[RangeChecksum]:
        """Live rows and the sum of their row hashes per key range, on the engine
        (``warehouse.checksum``: the same canonical rendering as the source's)."""

    @abc.abstractmethod
    def range_rows(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[KeyRange]
    ) -> list[tuple[dict[str, Any], int]]:
        """The live rows of some key ranges (the schema's columns, model representation), each
        with its ``_cdc_lsn`` (one connection for all of them)."""

    @abc.abstractmethod
    def key_rows(
        self, target: TableTarget, schema: TableSchema, keys: Sequence[tuple[Any, ...]]
    ) -> list[tuple[dict[str, Any], int]]:
        """The live rows of these keys, each with its ``_cdc_lsn`` (absent keys: no row)."""

    @abc.abstractmethod
    def split_keys(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[tuple[KeyRange, int]]
    ) -> list[list[tuple[Any, ...]]]:
        """Per ``(range, step)``: the keys of every ``step``-th live row of the range in key
        order (split points); one connection for all of them."""

    @abc.abstractmethod
    def record_reconcile(self, runs: Sequence[ReconcileRun]) -> None:
        """Append rows to the ``reconcile_runs`` audit table (bookkeeping schema)."""

    @abc.abstractmethod
    def last_reconciles(self) -> dict[str, ReconcileRun]:
        """The newest ``reconcile_runs`` row per table (empty before any run)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and locks."""

    # ---- measured compute and cost reports (cdc.costs) ----------------------------------------

    @abc.abstractmethod
    def record_compute(self, rows: Sequence[ComputeRow]) -> None:
        """Append measured compute time to ``compute_log`` (bookkeeping schema), one statement."""

    @abc.abstractmethod
    def compute_totals(self, since: datetime | None) -> dict[tuple[str, str], float]:
        """Seconds per ``(job, table)`` recorded at or after ``since`` (None: all of them)."""

    @abc.abstractmethod
    def table_storage(self, target: TableTarget) -> TableStorage:
        """Rows and bytes of a warehouse table (hot tier); 0 and 0 when it doesn't exist. What
        the bytes count is engine-specific (see each adapter)."""

    @abc.abstractmethod
    def record_cost_report(self, rows: Sequence[CostReportRow]) -> None:
        """Append one report's rows (per table and tier) to ``cost_reports``."""

    @abc.abstractmethod
    def cost_history(self) -> list[CostReportRow]:
        """Every stored report row, oldest report first (by time, table, tier)."""

    @property
    def reads_tiered_history(self) -> bool:
        """Whether the ``<table>_history`` views read the tier files too (warm and cold), so
        readers find moved versions through the warehouse."""
        return False

    def credit_usage(self, since: datetime) -> CreditUsage:
        """The engine's own record of its queries' cost since ``since`` (credits on
        Snowflake). This default: none (an engine without credits)."""
        return CreditUsage()
