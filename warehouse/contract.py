"""The data the warehouse contract speaks in: table targets, batches, apply results, reports.

Plain dataclasses, engine-neutral; :mod:`warehouse.base` re-exports every name (the adapter
ABC and the capabilities live there, the error classes in :mod:`warehouse.errors`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from cdc.model import ChangeEvent, KafkaOrigin, Op, SourcePosition, TableSchema

TableMode = Literal["mirror", "scd2"]
Granularity = Literal["transaction", "every_change"]
ColumnDropPolicy = Literal["keep", "null", "drop"]


@dataclass(frozen=True, slots=True)
class MetadataColumns:
    """Names of the bookkeeping columns on every replicated table (architecture.md §3)."""

    lsn: str = "_cdc_lsn"
    txid: str = "_cdc_txid"
    op: str = "_cdc_op"
    source_ts: str = "_cdc_source_ts"
    loaded_at: str = "_cdc_loaded_at"
    deleted: str = "_cdc_deleted"
    # the commit part of the two-part position (Debezium's ``source.sequence[0]``); NULL when
    # unknown (snapshot rows, rows written before this column existed): see cdc.model.newer
    commit_lsn: str = "_cdc_commit_lsn"
    row: str = "_cdc_row"  # tables without a primary key: each row's surrogate id


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
    # A column the source table no longer has (ALTER TABLE ... DROP COLUMN): kept as it is
    # (``keep``), NULL in the live rows / current versions (``null``), or dropped from the
    # warehouse table (``drop``); see warehouse.sql.dropped.
    on_column_drop: ColumnDropPolicy = "keep"


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


@dataclass(frozen=True, slots=True)
class CreditUsage:
    """An engine's own record of what its queries cost (:meth:`Warehouse.credit_usage`).

    ``queries``: one mapping a query (keys ``QUERY_TAG``, ``WAREHOUSE_SIZE``,
    ``EXECUTION_TIME`` in milliseconds), or None when nothing was read (the engine has no
    credits, or can't read them here: ``note`` says why). ``tag_prefix``: the ``app`` of this
    deployment's query tags, to tell its queries from others'."""

    queries: tuple[Mapping[str, Any], ...] | None = None
    tag_prefix: str = ""
    note: str | None = None


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
