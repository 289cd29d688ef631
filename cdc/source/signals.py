"""Debezium signals through the signal table: incremental snapshots, and seeing them finish.

An incremental snapshot re-reads chosen tables (all rows, or those matching a filter) through
the running connector: Debezium reads them in primary-key chunks between two watermark rows it
writes into the signal table, drops from each chunk the keys that changed meanwhile, and emits
the rest as ``op = r`` events (``source.snapshot = "incremental"``) on the tables' usual
topics, so they reach the warehouse through the normal path and the position guard.

- :func:`ensure_signal_table` creates the signal table (``source.signal_table``) if missing. It
  must exist before the connector starts: Debezium adds it to its filtered publication then.
- :func:`request_incremental_snapshot` checks everything first (the table names, that the
  connector captures them, that they exist with a primary key, that the filter parses and
  names real columns: PostgreSQL plans ``SELECT 1 FROM table WHERE (filter)`` in a read-only
  transaction), then inserts one ``execute-snapshot`` row and returns its id.
- :func:`wait_for_incremental_snapshot` reads the connector's notification topic
  (``notification.enabled.channels=sink``, see :func:`cdc.source.connector.notification_topic`)
  until the snapshot with that id is ``COMPLETED`` (or ``ABORTED``). Debezium sends its
  notifications through the same queue as the rows, after the last chunk, so once the
  completion is in Kafka every row of the snapshot is too; the consumer applies them when it
  has caught up.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from psycopg import sql

from cdc import names
from cdc.config import Config
from cdc.consumer.broker_watch import quiet_client
from cdc.model import TableId
from cdc.source.catalog import plan_filter, source_dsn
from cdc.source.connector import notification_topic

__all__ = [
    "IncrementalSnapshotAbortedError",
    "IncrementalSnapshotProgress",
    "IncrementalSnapshotResult",
    "InvalidFilterError",
    "NoPrimaryKeyError",
    "SignalError",
    "SignalTableNotPublishedError",
    "SnapshotTracker",
    "TableNotCapturedError",
    "UnknownTableError",
    "ensure_configured_signal_table",
    "ensure_signal_table",
    "parse_table",
    "request_configured_snapshot",
    "request_incremental_snapshot",
    "signal_payload",
    "wait_configured_snapshot",
    "wait_for_incremental_snapshot",
]

SIGNAL_TABLE_COLUMNS: Final = (
    "id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048)"
)
_AGGREGATE: Final = "Incremental Snapshot"


class SignalError(Exception):
    """A signal that was not sent because its request is wrong; nothing was written."""


class UnknownTableError(SignalError):
    """A table named in the request does not exist in the source database."""


class TableNotCapturedError(SignalError):
    """A table named in the request is not one the connector captures (not in ``tables``)."""


class NoPrimaryKeyError(SignalError):
    """A table has no primary key, which Debezium's incremental snapshot chunks by."""


class InvalidFilterError(SignalError):
    """The ``where`` filter does not parse, or names a column the table doesn't have."""


class SignalTableNotPublishedError(SignalError):
    """The signal table is in no publication, so Debezium would never see the signal."""


class IncrementalSnapshotAbortedError(RuntimeError):
    """Debezium reported the incremental snapshot as aborted (``stop-snapshot``, or a
    failure)."""


@dataclass(frozen=True, slots=True)
class IncrementalSnapshotProgress:
    """One ``IN_PROGRESS`` notification: a chunk of ``table`` was emitted up to ``last_key``
    (of ``maximum_key``; both as Debezium prints them, e.g. ``"250"`` or ``"[3, 7]"``)."""

    table: str
    last_key: str | None
    maximum_key: str | None


@dataclass(frozen=True, slots=True)
class IncrementalSnapshotResult:
    """A finished incremental snapshot: per table Debezium's scan status (``SUCCEEDED``,
    ``EMPTY``, ``NO_PRIMARY_KEY``, ``SKIPPED``, ``SQL_EXCEPTION``, ``UNKNOWN_SCHEMA``) and rows
    scanned; ``chunks`` counts the chunks seen."""

    signal_id: str
    tables: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return all(status in ("SUCCEEDED", "EMPTY") for status in self.tables.values())


def parse_table(name: TableId | str) -> TableId:
    """``schema.table`` or ``table`` (in ``public``) as a TableId; PostgreSQL's quoted form
    for other names (``"Sales Data"."Order""Items"``, :func:`cdc.names.parse_table`)."""
    if isinstance(name, TableId):
        return name
    try:
        return names.parse_table(name)
    except names.BadNameError as exc:
        raise UnknownTableError(f"{name!r} is not a table name: {exc}") from None


def _ident(table: TableId) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))


def signal_payload(tables: Sequence[TableId], where: str | None = None) -> dict[str, Any]:
    """The ``data`` of an ``execute-snapshot`` signal: an incremental snapshot of exactly
    ``tables``, each restricted to ``where`` when given (``additional-conditions``, in
    parentheses so it stays one condition inside Debezium's chunk query).

    Debezium reads each entry as a regex over the raw ``schema.table`` of the tables it
    captures: :func:`cdc.names.signal_collection` writes one matching that table and no other.
    Raises :class:`SignalError` for a table Debezium's incremental snapshot can't name (a dot,
    a space or a quote in a name: use the bulk method)."""
    entries: list[str] = []
    for table in tables:
        try:
            entries.append(names.signal_collection(table))
        except names.BadNameError as exc:
            raise SignalError(str(exc)) from None
    payload: dict[str, Any] = {"type": "incremental", "data-collections": entries}
    if where is not None:
        payload["additional-conditions"] = [
            {"data-collection": entry, "filter": f"({where})"} for entry in entries
        ]
    return payload


def ensure_signal_table(url: str, signal_table: TableId | str) -> bool:
    """Create the signal table if it doesn't exist; True when it was created.

    Call it before the connector starts: Debezium puts the signal table into its publication
    (``publication.autocreate.mode=filtered``) when it starts, not later.
    """
    table = parse_table(signal_table)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        if _exists(conn, table):
            return False
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                _ident(table), sql.SQL(SIGNAL_TABLE_COLUMNS)
            )
        )
        return True


def _exists(conn: psycopg.Connection[Any], table: TableId) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (table.schema, table.name),
    ).fetchone()
    return row is not None


def _has_primary_key(conn: psycopg.Connection[Any], table: TableId) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary",
        (table.schema, table.name),
    ).fetchone()
    return row is not None


def _published(conn: psycopg.Connection[Any], table: TableId) -> list[str]:
    rows = conn.execute(
        "SELECT pubname FROM pg_publication_tables WHERE schemaname = %s AND tablename = %s",
        (table.schema, table.name),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _check_filter(conn: psycopg.Connection[Any], table: TableId, where: str) -> None:
    """:func:`cdc.source.catalog.plan_filter`, its failure as an InvalidFilterError."""
    try:
        plan_filter(conn, table, where)
    except psycopg.Error as exc:
        detail = exc.diag.message_primary or str(exc).strip()
        raise InvalidFilterError(
            f"the filter {where!r} is not a valid condition on {names.display(table)}: {detail} "
            f"(SQLSTATE {exc.sqlstate}); it must be an SQL boolean expression over the "
            "table's columns, e.g. \"id > 100 AND status = 'open'\""
        ) from None


def request_incremental_snapshot(
    url: str,
    signal_table: TableId | str,
    tables: Sequence[TableId | str],
    where: str | None = None,
    *,
    captured: Collection[TableId | str] | None = None,
) -> str:
    """Ask the connector for an incremental snapshot of ``tables``; returns the signal id.

    ``url`` is a PostgreSQL URL or conninfo of the source database; ``signal_table`` the
    connector's ``signal.data.collection``; ``where`` an optional SQL condition applied to every
    table; ``captured`` the tables the connector captures (``config.tables``), checked when
    given. Everything is checked before anything is written, each failure a
    :class:`SignalError` subclass: :class:`TableNotCapturedError`,
    :class:`UnknownTableError`, :class:`NoPrimaryKeyError`, :class:`InvalidFilterError`,
    :class:`SignalTableNotPublishedError`. The signal table is created if missing (and then
    :class:`SignalTableNotPublishedError` says to restart the connector).

    Wait for the end with :func:`wait_for_incremental_snapshot` and the returned id.
    """
    if not tables:
        raise SignalError("name at least one table to snapshot")
    if where is not None and not where.strip():
        raise InvalidFilterError("the filter is empty: leave it out to snapshot every row")
    wanted = list(dict.fromkeys(parse_table(t) for t in tables))
    signals = parse_table(signal_table)
    if captured is not None:
        known = {parse_table(t) for t in captured}
        missing = [t for t in wanted if t not in known]
        if missing:
            absent = ", ".join(names.display(t) for t in missing)
            listed = ", ".join(sorted(names.display(t) for t in known)) or "none"
            raise TableNotCapturedError(
                f"the connector doesn't capture {absent} (it captures: {listed}); add the "
                "table to `tables` in cdc.yaml and restart the connector first"
            )
    payload = signal_payload(wanted, where)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        for table in wanted:
            if not _exists(conn, table):
                raise UnknownTableError(
                    f"table {names.display(table)} does not exist in the source database "
                    f"{conn.info.dbname!r}"
                )
            if not _has_primary_key(conn, table):
                raise NoPrimaryKeyError(
                    f"table {names.display(table)} has no primary key: Debezium's incremental "
                    "snapshot reads it in key-ordered chunks; add a primary key or use the bulk "
                    "method"
                )
            if where is not None:
                _check_filter(conn, table, where)
        created = not _exists(conn, signals)
        if created:
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                    _ident(signals), sql.SQL(SIGNAL_TABLE_COLUMNS)
                )
            )
        if not _published(conn, signals):
            state = "was missing and has just been created" if created else "exists"
            raise SignalTableNotPublishedError(
                f"the signal table {names.display(signals)} {state} but is in no publication, "
                "so the connector can't see signals: restart the connector (Debezium adds the "
                "signal table to its publication when it starts), then request the snapshot again"
            )
        signal_id = str(uuid.uuid4())
        data = json.dumps(payload)
        try:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (id, type, data) VALUES (%s, 'execute-snapshot', %s)"
                ).format(_ident(signals)),
                (signal_id, data),
            )
        except psycopg.errors.StringDataRightTruncation:
            raise SignalError(
                f"the signal ({len(data)} characters) is too long for the data column of "
                f"{names.display(signals)}: request fewer tables at a time"
            ) from None
    return signal_id


def _payload(raw: bytes | None) -> Mapping[str, Any] | None:
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if isinstance(doc, dict) and "payload" in doc and "schema" in doc:
        doc = doc["payload"]
    return doc if isinstance(doc, dict) else None


def wait_for_incremental_snapshot(
    bootstrap_servers: str,
    notification_topic: str,
    signal_id: str,
    timeout: float = 600.0,
    *,
    client: Mapping[str, Any] | None = None,
    on_progress: Callable[[IncrementalSnapshotProgress], None] | None = None,
) -> IncrementalSnapshotResult:
    """Block until Debezium reports the incremental snapshot ``signal_id`` as completed.

    Reads ``notification_topic`` from its beginning (a notification sent before the call is
    found too) and follows the snapshot's ``Incremental Snapshot`` notifications: each
    ``IN_PROGRESS`` (one per chunk) goes to ``on_progress``, ``TABLE_SCAN_COMPLETED`` records
    the table's status and rows, ``COMPLETED`` returns. Raises
    :class:`IncrementalSnapshotAbortedError` on ``ABORTED`` and :class:`TimeoutError` after
    ``timeout`` seconds. ``client`` adds librdkafka settings (``config.kafka.client_config()``).

    Completion means every row of the snapshot is in Kafka; the warehouse has them once the
    consumer has caught up.
    """
    started = time.monotonic()
    deadline = started + timeout
    settings: dict[str, Any] = {
        **(client or {}),
        "bootstrap.servers": bootstrap_servers,
        "group.id": f"cdc-snapshot-watch-{signal_id}",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    }
    consumer = Consumer(settings)
    tracker = SnapshotTracker(signal_id, on_progress)
    assigned = False
    try:
        while time.monotonic() < deadline:
            if not assigned:
                assigned = _assign(consumer, notification_topic)
                if not assigned:
                    time.sleep(0.5)  # the connector creates the topic with its first notice
                    continue
            for message in consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        continue
                    raise RuntimeError(f"reading {notification_topic}: {error}")
                if tracker.feed(_payload(message.value())):
                    return tracker.result(time.monotonic() - started)
    finally:
        consumer.close()
    raise TimeoutError(
        f"the incremental snapshot {signal_id} did not complete within {timeout:.0f} s "
        f"({tracker.chunks} chunks seen, tables finished: {sorted(tracker.tables) or 'none'}); "
        f"is the connector running, and does it send notifications to {notification_topic}?"
    )


class SnapshotTracker:
    """Folds Debezium notifications into the state of one incremental snapshot (pure: the
    caller reads them from wherever they are)."""

    def __init__(
        self,
        signal_id: str,
        on_progress: Callable[[IncrementalSnapshotProgress], None] | None = None,
    ) -> None:
        self.signal_id = signal_id
        self.on_progress = on_progress
        self.tables: dict[str, str] = {}
        self.rows: dict[str, int] = {}
        self.chunks = 0
        self.started = False

    def feed(self, note: Mapping[str, Any] | None) -> bool:
        """Take one notification payload; True once the snapshot has completed. Others'
        notifications (another id, the initial snapshot) are ignored. Raises
        :class:`IncrementalSnapshotAbortedError` on ``ABORTED``."""
        if note is None or note.get("id") != self.signal_id:
            return False
        if note.get("aggregate_type") != _AGGREGATE:
            return False
        kind = note.get("type")
        data = note.get("additional_data") or {}
        if kind == "STARTED":
            self.started = True
        elif kind == "IN_PROGRESS":
            self.chunks += 1
            if self.on_progress is not None:
                self.on_progress(
                    IncrementalSnapshotProgress(
                        str(data.get("current_collection_in_progress", "")),
                        data.get("last_processed_key"),
                        data.get("maximum_key"),
                    )
                )
        elif kind == "TABLE_SCAN_COMPLETED":
            name = str(data.get("scanned_collection", ""))
            self.tables[name] = str(data.get("status", "UNKNOWN"))
            self.rows[name] = int(data.get("total_rows_scanned", 0) or 0)
        elif kind == "ABORTED":
            raise IncrementalSnapshotAbortedError(
                f"Debezium aborted the incremental snapshot {self.signal_id} "
                f"(tables: {data.get('data_collections', '?')}); see the connector's log"
            )
        elif kind == "COMPLETED":
            return True
        return False

    def result(self, seconds: float = 0.0) -> IncrementalSnapshotResult:
        return IncrementalSnapshotResult(
            self.signal_id, dict(self.tables), dict(self.rows), self.chunks, seconds
        )


def _assign(consumer: Consumer, topic: str) -> bool:
    metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        return False
    partitions: Iterable[int] = sorted(metadata.partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return True


# ------------------------------------------------------------------------------ from cdc.yaml


def _signal_table_of(config: Config) -> TableId:
    table = config.source.signal_table_id
    if table is None:
        raise SignalError(
            "signals are disabled (source.signal_table is null): set it, restart the "
            "connector, then request the incremental snapshot again"
        )
    return table


def ensure_configured_signal_table(config: Config, url: str | None = None) -> bool:
    """:func:`ensure_signal_table` for ``source.signal_table`` (False when signals are off);
    ``url`` defaults to the configured source."""
    table = config.source.signal_table_id
    if table is None:
        return False
    return ensure_signal_table(url or source_dsn(config.source), table)


def request_configured_snapshot(
    config: Config,
    tables: Sequence[TableId | str],
    where: str | None = None,
    *,
    url: str | None = None,
) -> str:
    """:func:`request_incremental_snapshot` with the signal table and the captured tables of
    ``config``; ``url`` defaults to the configured source."""
    return request_incremental_snapshot(
        url or source_dsn(config.source),
        _signal_table_of(config),
        tables,
        where,
        captured=[t.source for t in config.tables],
    )


def wait_configured_snapshot(
    config: Config,
    signal_id: str,
    timeout: float = 600.0,
    *,
    on_progress: Callable[[IncrementalSnapshotProgress], None] | None = None,
) -> IncrementalSnapshotResult:
    """:func:`wait_for_incremental_snapshot` on the configured Kafka and notification topic."""
    return wait_for_incremental_snapshot(
        config.kafka.bootstrap_servers,
        notification_topic(config),
        signal_id,
        timeout,
        client=quiet_client(config.kafka.bootstrap_servers, config.kafka.client_config()),
        on_progress=on_progress,
    )
