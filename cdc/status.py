"""``cdc status``: how far behind each table is, and the replication slot's lag.

Per table: events not applied yet (the topic's high watermarks minus the offsets stored in the
warehouse, which is where the consumer's positions live), seconds behind (now minus the source
commit time of the newest applied change, 0 when nothing is pending), the last applied position
and load time, and the columns dropped at the source that the warehouse table still holds
(``tables[].on_column_drop`` ``keep`` or ``null``). For the source: the slot's WAL not yet
confirmed by Debezium, and the WAL the server retains for it, in bytes, with warnings
(:func:`slot_warnings`) when the slot is missing or retains more than
``source.max_retained_wal_mb``. The arithmetic is pure
(:func:`pending_events`, :func:`seconds_behind`, :func:`slot_warnings`); :func:`gather` does the
reads: the warehouse, the logs' ends (:func:`cdc.consumer.partitions.log_ends`) and
``pg_replication_slots`` (:func:`cdc.source.slot.read_slot`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cdc.config import Config
from cdc.consumer.partitions import log_ends
from cdc.reconcile.report import last_result_text
from cdc.source.slot import SlotStatus, read_slot
from cdc.warehouses import open_warehouse

__all__ = [
    "SlotStatus",
    "StatusReport",
    "TableStatus",
    "gather",
    "pending_events",
    "seconds_behind",
    "slot_warnings",
]


@dataclass(frozen=True, slots=True)
class TableStatus:
    table: str
    topic: str
    mode: str
    pending_events: int | None  # None: the topic doesn't exist yet
    seconds_behind: float | None  # None: nothing applied yet while events are pending
    last_lsn: int | None
    last_commit: dt.datetime | None
    last_loaded: dt.datetime | None
    last_reconcile: str = "never"  # the newest reconcile_runs row (cdc.reconcile.report)
    # warehouse columns the registered source schema no longer has (dropped at the source)
    dropped_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusReport:
    tables: list[TableStatus]
    slot: SlotStatus
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, tuple):
                return list(value)
            return value.isoformat() if isinstance(value, dt.datetime) else value

        return {
            "tables": [{k: plain(v) for k, v in asdict(t).items()} for t in self.tables],
            "slot": asdict(self.slot),
            "warnings": list(self.warnings),
        }


def pending_events(watermarks: Mapping[int, tuple[int, int]], stored: Mapping[int, int]) -> int:
    """Messages not applied yet over a topic's partitions: ``(low, high)`` watermarks per
    partition, against the stored next offset (the low watermark when none is stored)."""
    return sum(max(0, high - max(low, stored.get(p, low))) for p, (low, high) in watermarks.items())


def seconds_behind(
    pending: int | None, last_commit: dt.datetime | None, now: dt.datetime
) -> float | None:
    """0 when nothing is pending, else how old the newest applied change is."""
    if pending == 0:
        return 0.0
    if last_commit is None:
        return None
    return max(0.0, (now - last_commit).total_seconds())


def slot_warnings(slot: SlotStatus, max_retained_wal_mb: int) -> list[str]:
    """What the operator should look at: a missing slot, or one retaining more WAL than
    ``max_retained_wal_mb`` (the server can't recycle it; the disk fills up)."""
    if not slot.exists:
        return [
            f"replication slot {slot.name} does not exist: Debezium creates it when it starts. "
            "If it ran before, the slot was dropped and the changes made since can't be "
            "streamed: reset the connector's offsets (cdc connector reset-offsets), start it "
            "again (a new initial snapshot), then cdc run and cdc reconcile --repair (removes "
            "rows deleted meanwhile). See docs/recovery.md, 'Recovering from a dropped "
            "replication slot'."
        ]
    if slot.retained_bytes is None or slot.retained_bytes <= max_retained_wal_mb * 1024 * 1024:
        return []
    retained_mb = slot.retained_bytes / (1024 * 1024)
    return [
        f"replication slot {slot.name} retains {retained_mb:.0f} MB of WAL (threshold "
        f"{max_retained_wal_mb} MB; {'active' if slot.active else 'inactive'}): check that "
        "Debezium is running and confirming (its log, `cdc connector status`), that heartbeats "
        "are on (source.heartbeat_interval_ms > 0) and that their `heartbeat.action.query` "
        "(a logical message by default; a source.debezium entry replaces it) runs, as the slot "
        "of an idle database moves only with it. If the slot is abandoned, drop it "
        "(SELECT pg_drop_replication_slot('" + slot.name + "')) and follow docs/recovery.md, "
        "'Recovering from a dropped replication slot'."
    ]


def _slot(config: Config) -> SlotStatus:
    import psycopg

    with psycopg.connect(**config.source.conninfo(), autocommit=True) as conn:
        return read_slot(conn, config.source.slot_name)


def gather(
    config: Config, now: dt.datetime | None = None, *, max_retained_wal_mb: int | None = None
) -> StatusReport:
    """Read everything; ``max_retained_wal_mb`` overrides ``source.max_retained_wal_mb``."""
    now = now or dt.datetime.now(dt.UTC)
    topics = {t.target_name: config.topic_for(t) for t in config.tables}
    marks = log_ends(config, sorted(set(topics.values())))
    warehouse = open_warehouse(config)
    try:
        offsets = warehouse.load_offsets(config.kafka.group_id)
        reconciled = warehouse.last_reconciles()
        tables = []
        for table in config.tables:
            topic = topics[table.target_name]
            stored = {p: n for (t, p), n in offsets.items() if t == topic}
            pending = pending_events(marks[topic], stored) if topic in marks else None
            target = config.table_target(table)
            applied = warehouse.last_applied(target)
            last_commit = applied.source_ts if applied else None
            behind = seconds_behind(pending, last_commit, now)
            tables.append(
                TableStatus(
                    table=table.target_name, topic=topic, mode=table.mode,
                    pending_events=pending, seconds_behind=behind,
                    last_lsn=applied.lsn if applied else None, last_commit=last_commit,
                    last_loaded=applied.loaded_at if applied else None,
                    last_reconcile=last_result_text(reconciled.get(table.target_name)),
                    dropped_columns=tuple(warehouse.dropped_columns(target)),
                )
            )  # fmt: skip
    finally:
        warehouse.close()
    slot = _slot(config)
    threshold = max_retained_wal_mb or config.source.max_retained_wal_mb
    return StatusReport(tables, slot, slot_warnings(slot, threshold))
