"""The warehouse contract: what the consumer may ask of any engine.

The consumer only talks to :class:`Warehouse`; engine modules (``warehouse.duckdb``, later
``warehouse.snowflake``) fill it in. Common code asks :class:`Capabilities` instead of branching
on engine names. Errors are classified by the engine module (by exception class / SQLSTATE /
error code, never by message text) into the three classes below, which decide what the consumer
does: retry, dead-letter the offending events, or stop.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from cdc.model import ChangeEvent, KafkaOrigin, Op, SourcePosition, TableSchema

TableMode = Literal["mirror", "scd2"]
Granularity = Literal["transaction", "every_change"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an engine can do; common code reads these instead of engine names."""

    transactional_ddl: bool
    max_decimal_precision: int
    # True when other processes can read while `cdc run` is replicating (between batches).
    concurrent_readers: bool
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


@dataclass(frozen=True, slots=True)
class MetadataColumns:
    """Names of the bookkeeping columns on every replicated table (architecture.md §3)."""

    lsn: str = "_cdc_lsn"
    txid: str = "_cdc_txid"
    op: str = "_cdc_op"
    source_ts: str = "_cdc_source_ts"
    loaded_at: str = "_cdc_loaded_at"
    deleted: str = "_cdc_deleted"


@dataclass(frozen=True, slots=True)
class Scd2Options:
    """How an ``scd2`` table keeps history (architecture.md §3; semantics in warehouse.scd2).

    ``track``: only changes to these columns open a new version (None: every data column);
    other columns are updated in place on the current version. ``granularity``: one version per
    committed source transaction (``transaction``) or per change event (``every_change``).
    """

    valid_from: str = "valid_from"
    valid_to: str = "valid_to"
    is_current: str = "is_current"
    granularity: Granularity = "transaction"
    track: tuple[str, ...] | None = None

    @property
    def names(self) -> tuple[str, str, str]:
        return (self.valid_from, self.valid_to, self.is_current)


@dataclass(frozen=True, slots=True)
class TableTarget:
    """Where and how one source table lands in the warehouse."""

    name: str  # the warehouse table name (unqualified; the adapter adds its schema)
    mode: TableMode = "mirror"
    soft_delete: bool = False
    metadata: MetadataColumns = field(default_factory=MetadataColumns)
    scd2: Scd2Options = field(default_factory=Scd2Options)
    # Data contract with on_violation=quarantine: later changes of a key that has an open
    # quarantined change wait in quarantine behind it (see warehouse.quarantine).
    quarantine: bool = False
    # Lifecycle tiering moves rows out of the table: a soft-delete mirror table then keeps
    # delete markers for the moved deleted rows, so the position guard still sees them.
    tiered: bool = False


@dataclass(frozen=True, slots=True)
class TableBatch:
    """All events of one batch for one table, in log order (Kafka offset order)."""

    target: TableTarget
    schema: TableSchema  # the newest schema seen in the batch for this table
    events: Sequence[ChangeEvent]


@dataclass(frozen=True, slots=True)
class SourceRows:
    """Rows read from the source outside the log (a snapshot chunk, a repair), all at one
    position: each row a sequence of values in ``schema.columns`` order, in the
    :mod:`cdc.model` representation, with distinct keys. ``origin`` names where they came
    from (the offsets of :meth:`events` count from its offset)."""

    target: TableTarget
    schema: TableSchema
    rows: Sequence[Sequence[Any]]
    position: SourcePosition
    origin: KafkaOrigin
    # the same rows already as Arrow columns of the stage types (``warehouse.arrow.csv_columns``),
    # for an engine that :meth:`Warehouse.takes_columns`; then ``rows`` is empty
    columns: Any = None

    def __len__(self) -> int:
        return len(self.rows) if self.columns is None else int(self.columns.num_rows)

    def events(self) -> list[ChangeEvent]:
        """The rows as snapshot reads (op ``r``): what the stream would carry for them."""
        if self.columns is not None:
            raise ValueError("rows given as Arrow columns go to an engine that takes them")
        names = self.schema.names
        key_at = [(k, names.index(k)) for k in self.schema.key]
        o = self.origin
        return [
            ChangeEvent(
                op=Op.READ,
                schema=self.schema,
                key={k: row[j] for k, j in key_at},
                before=None,
                after=dict(zip(names, row, strict=True)),
                position=self.position,
                origin=KafkaOrigin(o.topic, o.partition, o.offset + i),
            )
            for i, row in enumerate(self.rows)
        ]


@dataclass(frozen=True, slots=True)
class OffsetRow:
    """The next Kafka offset to consume for one partition, stored with the data it covers."""

    consumer_group: str
    topic: str
    partition: int
    next_offset: int


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    """A change kept out of its table: it failed checks, or waits behind one that did.

    ``key`` is the key as text (:func:`warehouse.quarantine.key_text`); the raw key and value
    are the original Kafka message, so a replay decodes it again. Identified by its origin.
    """

    table: str
    key: str
    topic: str
    partition: int
    offset: int
    lsn: int
    op: str
    checks: tuple[str, ...]
    reason: Literal["violation", "held"]
    raw_key: bytes | None
    raw_value: bytes | None


@dataclass(frozen=True, slots=True)
class QuarantinedChange:
    """A row of the quarantine table, as listed and replayed."""

    row: QuarantineRow
    quarantined_at: Any
    replayed_at: Any


@dataclass(slots=True)
class TableApplyStats:
    table: str
    events: int = 0
    upserted: int = 0
    deleted: int = 0
    stale: int = 0  # changes the position guard refused (older than what is stored)
    versions_opened: int = 0  # scd2: new versions inserted
    versions_closed: int = 0  # scd2: current versions closed (by a newer version or a delete)
    held: int = 0  # changes that went to quarantine behind an earlier quarantined change
    # unchanged TOAST values of a primary-key change whose old key's value was nowhere (not in
    # the batch, no stored row): written as NULL, logged as a warning
    toast_unresolved: int = 0


@dataclass(slots=True)
class ApplyResult:
    tables: list[TableApplyStats]
    seconds: float


@dataclass(frozen=True, slots=True)
class RegisteredTable:
    """A replicated table as the warehouse's registry records it."""

    name: str
    source_table: str
    mode: str
    key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppliedPosition:
    """The newest change a table holds: its position, source commit time and load time (all
    None for an empty table). Deleted rows count: a soft-deleted row, a closed version."""

    lsn: int | None
    source_ts: datetime | None
    loaded_at: datetime | None


@dataclass(frozen=True, slots=True)
class HistoryReport:
    """The SCD2 history invariants of one table, checked on the engine.

    Each count is the number of keys (``current``) or versions breaking one invariant; the
    examples name a few offending keys. All zero: the history is well formed.
    """

    table: str
    keys: int
    versions: int
    current: int  # live keys: keys whose last version is current
    several_current: int  # keys with more than one current version
    current_not_last: int  # a current version followed by a later version
    current_deleted: int  # a current version flagged as deleted
    open_closed: int  # is_current disagrees with valid_to IS NULL
    empty_validity: int  # valid_from >= valid_to (> for every_change: equal is a same-tx change)
    overlaps: int  # a version starting before the previous one of its key ended
    gaps: int  # a version starting after the previous one ended, with no delete between
    examples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (
            self.several_current
            or self.current_not_last
            or self.current_deleted
            or self.open_closed
            or self.empty_validity
            or self.overlaps
            or self.gaps
        )


@dataclass(frozen=True, slots=True)
class KeyRange:
    """A half-open range ``[lo, hi)`` of key tuples in lexicographic order (None: unbounded)."""

    lo: tuple[Any, ...] | None = None
    hi: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class RangeChecksum:
    """Rows of one key range and the sum of their row hashes (``warehouse.checksum``)."""

    rows: int
    checksum: int


@dataclass(frozen=True, slots=True)
class ReconcileRun:
    """One table's result in one reconciliation run (a row of ``reconcile_runs``)."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    table: str
    source_rows: int
    warehouse_rows: int
    missing: int
    extra: int
    different: int
    history_problems: int
    repaired: int
    status: str  # ok, repaired, diffs, unsettled (consumer not caught up), error
    detail: str = ""


RECONCILE_COLUMNS = (
    "run_id", "started_at", "finished_at", "table_name", "source_rows", "warehouse_rows",
    "missing", "extra", "different", "history_problems", "repaired", "status", "detail",
)  # fmt: skip


def history_report(
    table: str, counts: Sequence[Any], examples: Sequence[Sequence[Any]], checks: Sequence[str]
) -> HistoryReport:
    """A HistoryReport from the ``history_counts`` row (keys, versions, live, then one count
    per check) and the ``history_examples`` rows (check name, key values)."""
    values = [int(v or 0) for v in counts]
    keys, versions, live = values[:3]
    broken = dict(zip(checks, values[3:], strict=True))
    shown = tuple(f"{row[0]}: key {', '.join(map(str, row[1:]))}" for row in examples)
    return HistoryReport(
        table=table, keys=keys, versions=versions, current=live, examples=shown, **broken
    )


RECONCILE_COUNTS = frozenset(
    {"source_rows", "warehouse_rows", "missing", "extra", "different", "history_problems",
     "repaired"}
)  # fmt: skip


def reconcile_values(run: ReconcileRun) -> list[Any]:
    """A run's values in :data:`RECONCILE_COLUMNS` order (times as ISO text)."""
    doc = asdict(run)
    doc["table_name"] = doc.pop("table")
    for name in ("started_at", "finished_at"):
        doc[name] = doc[name].isoformat()
    return [doc[c] for c in RECONCILE_COLUMNS]


def reconcile_run(row: Sequence[Any]) -> ReconcileRun:
    """A ReconcileRun from a ``reconcile_runs`` row (:data:`RECONCILE_COLUMNS` order)."""
    doc = dict(zip(RECONCILE_COLUMNS, row, strict=True))
    doc["table"] = doc.pop("table_name")
    for name in RECONCILE_COUNTS:
        doc[name] = int(doc[name] or 0)
    doc["detail"] = doc["detail"] or ""
    return ReconcileRun(**doc)


# ---- measured compute and cost reports (cdc.costs) ------------------------------------------

ComputeJob = Literal["apply", "snapshot", "reconcile", "tier", "cost_report"]


@dataclass(frozen=True, slots=True)
class ComputeRow:
    """Measured warehouse time of one job on one table (a row of ``compute_log``).

    ``seconds``: wall-clock time of the warehouse calls, measured around them by the job;
    ``statements``: how many such calls it covers (apply: batches; snapshot: chunks;
    reconcile: warehouse round trips; cost_report: storage reads)."""

    job: str  # one of ComputeJob
    table: str
    seconds: float
    statements: int
    at: datetime


@dataclass(frozen=True, slots=True)
class TableStorage:
    """What a warehouse table holds: every stored row and the bytes the engine reports."""

    rows: int
    bytes: int


@dataclass(frozen=True, slots=True)
class CostReportRow:
    """One table and tier of one cost report (a row of ``cost_reports``): storage cost per
    month, compute cost of the report's period."""

    report_id: str
    at: datetime
    table: str
    tier: str  # hot, warm, cold
    rows: int
    bytes: int
    storage_cost: float
    compute_cost: float


COMPUTE_COLUMNS = ("job", "table_name", "seconds", "statements", "at")
COST_REPORT_COLUMNS = (
    "report_id", "at", "table_name", "tier", "rows", "bytes", "storage_cost", "compute_cost",
)  # fmt: skip


def compute_values(row: ComputeRow) -> list[Any]:
    """A row's values in :data:`COMPUTE_COLUMNS` order (the time as ISO text)."""
    return [row.job, row.table, float(row.seconds), int(row.statements), row.at.isoformat()]


def cost_report_values(row: CostReportRow) -> list[Any]:
    """A row's values in :data:`COST_REPORT_COLUMNS` order (the time as ISO text)."""
    return [row.report_id, row.at.isoformat(), row.table, row.tier, int(row.rows),
            int(row.bytes), float(row.storage_cost), float(row.compute_cost)]  # fmt: skip


def cost_report_row(row: Sequence[Any]) -> CostReportRow:
    """A CostReportRow from a ``cost_reports`` row (:data:`COST_REPORT_COLUMNS` order)."""
    report_id, at, table, tier, rows, size, storage, compute = row
    return CostReportRow(str(report_id), at, str(table), str(tier), int(rows or 0),
                         int(size or 0), float(storage or 0), float(compute or 0))  # fmt: skip


class WarehouseError(Exception):
    """Base class of every error the warehouse layer raises."""


class TransientWarehouseError(WarehouseError):
    """The engine is unavailable or busy (locked file, network, timeout): retry later."""


class TerminalWarehouseError(WarehouseError):
    """Retrying will not help (permissions, corrupt file, bug): stop with this message."""


class DataError(WarehouseError):
    """The batch holds a value the target column can't hold (overflow, bad cast...).

    The consumer isolates the offending events and dead-letters them; ``table`` names the
    table whose statement failed.
    """

    def __init__(self, message: str, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class IncompatibleSchemaChangeError(WarehouseError):
    """The source changed a column in a way the target can't follow (e.g. text -> int).

    ``table`` names the target table (set by the adapter when the raiser didn't know it), so
    the consumer parks exactly that table and lets the others flow on.
    """

    def __init__(self, message: str, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class Warehouse(abc.ABC):
    """One warehouse engine. Not thread-safe; one instance per process."""

    capabilities: ClassVar[Capabilities]
    # the SQL dialect of warehouse.checksum's renderings for this engine (reconciliation)
    checksum_dialect: ClassVar[Literal["duckdb", "snowflake"]]
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


def registry_json(batch: TableBatch) -> str:
    """What the table registry records of a batch's table: mode, options, schema (JSON)."""
    target = batch.target
    doc = {
        "mode": target.mode,
        "soft_delete": target.soft_delete,
        "metadata": asdict(target.metadata),
        "schema": asdict(batch.schema),
    }
    if target.mode == "scd2":
        doc["scd2"] = asdict(target.scd2)
    return json.dumps(doc, default=str, sort_keys=True)
