"""The whole chain on the local stack, as reusable steps for the demo, the tests and the
benchmarks: write a cdc.yaml for the stack, start Debezium, run the consumer in a thread, wait
until everything committed at the source has reached the warehouse, compare, check the
history of ``scd2`` tables."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from cdc.compare import TableDiff, compare_rows, source_connection, source_rows
from cdc.config import Config, TableConfig, load_config
from cdc.consumer.fitting import UnfitValueError, convert, override_type
from cdc.consumer.loop import Replicator
from cdc.consumer.settings import RunStats
from cdc.local.processes import ProcessRecord
from cdc.local.source_tables import require_source_tables
from cdc.local.stack import LocalStack
from cdc.model import ColumnType, Kind
from cdc.runtime import open_warehouse, replicator_settings
from cdc.source.connector import debezium_properties
from cdc.source.signals import ensure_configured_signal_table
from warehouse.base import HistoryReport


def write_stack_config(
    path: Path,
    stack: LocalStack,
    tables: Sequence[str | dict[str, Any]],
    *,
    warehouse_path: Path | None = None,
    group_id: str = "cdc-warehouse",
    topic_prefix: str = "cdc",
    slot_name: str = "cdc_slot",
    batch_size: int = 5000,
    linger_ms: int = 200,
    heartbeat_interval_ms: int = 1000,
    database: str | None = None,
    warehouse: dict[str, Any] | None = None,
    source_options: dict[str, Any] | None = None,
) -> Config:
    """A cdc.yaml pointing at the local stack's PostgreSQL and broker; returns it loaded.
    The warehouse is the DuckDB file ``warehouse_path``, or the ``warehouse`` section (e.g. a
    Snowflake one), which wins when both are given. ``source_options`` adds or overrides keys
    of the ``source`` section (e.g. ``snapshot_mode``, ``signal_table``, ``debezium``)."""
    if warehouse is None:
        if warehouse_path is None:
            raise ValueError("give warehouse_path or a warehouse section")
        warehouse = {"type": "duckdb", "path": str(warehouse_path)}
    document = {
        "source": {
            "host": "127.0.0.1",
            "port": stack.state.pg_port,
            "database": database or stack.state.database,
            "user": "postgres",
            "slot_name": slot_name,
            "publication_name": f"{slot_name}_pub",
            "topic_prefix": topic_prefix,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            **(source_options or {}),
        },
        "kafka": {"bootstrap_servers": stack.bootstrap_servers, "group_id": group_id},
        "warehouse": warehouse,
        "consumer": {"batch_size": batch_size, "linger_ms": linger_ms},
        "tables": [t if isinstance(t, dict) else {"name": t} for t in tables],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_config(path)


def ensure_topics(bootstrap_servers: str, topics: Sequence[str], partitions: int) -> None:
    """Create the topics that don't exist yet (so consumers are assigned them at once,
    instead of rebalancing whenever Debezium publishes a table's first change)."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [NewTopic(t, num_partitions=partitions) for t in topics if t not in existing]
    if missing:
        for future in admin.create_topics(missing).values():
            future.result(timeout=10)


def start_debezium(
    stack: LocalStack, config: Config, *, partitions: int = 1, config_path: Path | None = None
) -> None:
    """Create the tables' topics and the signal table (it must exist when the connector
    starts, to be in its publication), then start the embedded connector on the stack.
    ``config_path`` (the file of ``config``) is recorded for ``cdc local status`` and
    ``restart``. The tables are not checked here: see :func:`require_source_tables`."""
    topics = sorted({config.topic_for(t) for t in config.tables})  # tables may share one
    ensure_topics(stack.bootstrap_servers, topics, partitions)
    ensure_configured_signal_table(config, stack.pg_url(config.source.database))
    props = debezium_properties(config, runtime="embedded", offsets_file=stack.debezium_offsets)
    stack.start_debezium(props, partitions=partitions, config_path=config_path)


def restart_debezium(
    stack: LocalStack, config: Config, *, partitions: int = 1, config_path: Path | None = None
) -> ProcessRecord | None:
    """Stop the stack's Debezium by pid, gracefully (its offsets are stored: it goes on where
    it stopped), wait until PostgreSQL has let go of the replication slot, and start it again
    with ``config``; PostgreSQL and the broker keep running. The tables are checked first
    (:class:`MissingTablesError`), so a bad config leaves the running Debezium alone.
    Returns the record of the process that was stopped (None: none ran)."""
    url = stack.pg_url(config.source.database)
    require_source_tables(config, url)
    previous = stack.state.processes.get("debezium") if stack.running("debezium") else None
    stack.stop_debezium()
    wait_slot_released(url, config.source.slot_name)
    start_debezium(stack, config, partitions=partitions, config_path=config_path)
    return previous


def wait_slot_released(url: str, slot: str, timeout: float = 30) -> None:
    """Wait until no walsender holds ``slot`` (a stopped Debezium's connection may take a
    moment to go); a new connector on an active slot would fail."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        while True:
            row = conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s AND active",
                (slot,),
            ).fetchone()
            if row is None:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"replication slot {slot} is still in use by backend pid {row[0]} "
                    f"{timeout:.0f} s after Debezium stopped: is another connector using it?"
                )
            time.sleep(0.2)


def wait_until_published(url: str, slot: str, timeout: float = 120) -> None:
    """Wait until everything committed at the source so far is in Kafka.

    Once the slot exists, write a WAL marker (``pg_logical_emit_message``) and wait until
    Debezium confirms the slot past it. Debezium confirms only what its handler (the Kafka
    publisher) acknowledged, and only while streaming, i.e. after its snapshot is complete;
    the marker comes after every earlier commit, so all of them are in Kafka by then.
    """
    deadline = time.monotonic() + timeout
    query = (
        "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s"
    )
    marker: int | None = None
    confirmed = -1
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query, (slot,)).fetchone()
            if row is not None and marker is None:
                emitted = conn.execute(
                    "SELECT pg_logical_emit_message(false, 'cdc-sync', '') - '0/0'::pg_lsn"
                ).fetchone()
                assert emitted is not None
                marker = int(emitted[0])
            confirmed = int(row[0]) if row and row[0] is not None else -1
            if marker is not None and confirmed >= marker:
                return
            time.sleep(0.2)
    raise TimeoutError(
        f"Debezium did not confirm the slot {slot} past LSN {marker} within {timeout:.0f} s "
        f"(confirmed: {confirmed}); see its log"
    )


class ReplicatorThread:
    """`cdc run` in a background thread (no signal handlers), stoppable when caught up."""

    def __init__(self, config: Config) -> None:
        self.replicator = Replicator(
            replicator_settings(config, check_types=True), open_warehouse(config)
        )
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="replicator", daemon=True)

    def _run(self) -> None:
        try:
            self.replicator.run()
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def start(self) -> ReplicatorThread:
        self._thread.start()
        return self

    def wait_caught_up(self, timeout: float = 120) -> None:
        """Block until the consumer has applied everything in its partitions (keeps running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            if self.replicator.caught_up_event.wait(0.2):
                return
        raise TimeoutError(f"the consumer did not catch up within {timeout:.0f} s")

    def finish(self, timeout: float = 180) -> RunStats:
        """Stop once every partition is consumed to its end; re-raise a failure."""
        self.replicator.until_caught_up = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.replicator.request_stop()
            self._thread.join(30)
            raise TimeoutError(f"the consumer did not catch up within {timeout:.0f} s")
        if self.error is not None:
            raise self.error
        return self.replicator.stats

    def stop(self) -> RunStats:
        self.replicator.request_stop()
        self._thread.join(60)
        if self.error is not None:
            raise self.error
        return self.replicator.stats


def overridden_rows(
    rows: list[dict[str, Any]], table: TableConfig, types: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Source rows with the table's overridden columns in the form the warehouse stores them
    (PostgreSQL's text; a decimal that doesn't fit stays as it is, to show as different)."""
    if not table.columns:
        return rows
    targets = {name: override_type(o.type) for name, o in table.columns.items()}
    out = []
    for row in rows:
        changed = dict(row)
        for name, target in targets.items():
            with contextlib.suppress(UnfitValueError):
                real = types.get(name) == "real"
                source = ColumnType(Kind.FLOAT32) if real else None
                changed[name] = convert(row.get(name), target, source)
        out.append(changed)
    return out


def compare_all(config: Config, url: str, *, skip_quarantined: bool = False) -> list[TableDiff]:
    """Source vs warehouse, every configured table, every column. With ``skip_quarantined``,
    keys with open quarantined changes are left out (``TableDiff.excluded``): the warehouse
    keeps their state before the first of them until they are replayed."""
    warehouse = open_warehouse(config)
    diffs = []
    try:
        with source_connection(url) as conn:
            for table in config.tables:
                key, types, rows = source_rows(conn, table.source)
                rows = overridden_rows(rows, table, types)
                target = config.table_target(table)
                held = (
                    {c.row.key for c in warehouse.list_quarantine(target.name)}
                    if skip_quarantined
                    else set[str]()
                )
                diffs.append(
                    compare_rows(
                        table.target_name,
                        key,
                        types,
                        rows,
                        warehouse.fetch_table(target),
                        exclude=held,
                        json_values=warehouse.capabilities.json_as_values,
                    )
                )
    finally:
        warehouse.close()
    return diffs


def history_reports(config: Config) -> dict[str, HistoryReport]:
    """The history invariants of every configured ``scd2`` table, by warehouse table name."""
    warehouse = open_warehouse(config)
    try:
        return {
            t.target_name: warehouse.history_report(config.table_target(t))
            for t in config.tables
            if t.mode == "scd2"
        }
    finally:
        warehouse.close()
