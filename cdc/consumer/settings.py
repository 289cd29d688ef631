"""What the replication loop is told (:class:`ReplicatorSettings`), what it counts
(:class:`RunStats`), and how it ends on a terminal error (:class:`ReplicationStoppedError`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cdc.contracts import TableContract
from cdc.model import ColumnType, TableId
from warehouse.base import TableTarget

# Both consumers' group timeouts, before the user's kafka.client settings (which win)
GROUP_TIMEOUTS: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "max.poll.interval.ms": 300000,
}


class ReplicationStoppedError(Exception):
    """The loop stopped on a terminal error; the message says what to do."""


@dataclass(frozen=True)
class ReplicatorSettings:
    bootstrap_servers: str
    group_id: str
    # source table (the envelope's source.schema/source.table) -> where it lands
    targets: dict[TableId, TableTarget]
    # topic -> the warehouse names of its tables (Debezium sanitises topic names: tables may
    # share one, so a message's table comes from its envelope, never from its topic)
    topics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    batch_size: int = 5000
    linger_ms: int = 500
    dlq_suffix: str = ".dlq"
    kafka: dict[str, Any] = field(default_factory=dict)  # extra librdkafka settings
    retry_initial_seconds: float = 0.2
    retry_max_seconds: float = 10.0
    retry_give_up_seconds: float | None = None  # None: retry transient errors forever
    # --until-caught-up: after this long without a sign of the broker (an assignment,
    # messages), one metadata request decides: no answer ends the run (BrokerUnreachableError)
    broker_wait_seconds: float = 60.0
    contracts: dict[str, TableContract] = field(default_factory=dict)  # table name -> checks
    # table name -> column -> the type it is stored as (cdc.yaml `columns` overrides)
    overrides: dict[str, dict[str, ColumnType]] = field(default_factory=dict)
    # topic -> why its table is refused before any row is read (cdc.source.type_support)
    refused: dict[str, str] = field(default_factory=dict)


@dataclass
class RunStats:
    batches: int = 0
    events: int = 0
    skipped: int = 0
    dead_letters: int = 0
    retries: int = 0
    per_table: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)  # source commit -> warehouse commit
    apply_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    first_batch_at: float | None = None
    last_batch_at: float | None = None
    parked: dict[str, str] = field(default_factory=dict)  # topic -> reason
    failed_checks: dict[str, int] = field(default_factory=dict)  # "table: check" -> rows
    quarantined: int = 0  # rows that failed checks, kept in the quarantine table
    held: int = 0  # later changes of quarantined keys, kept there behind them
