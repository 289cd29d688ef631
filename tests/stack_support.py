"""The real local stack as pytest fixtures, built on the same code as `cdc local`.

Registered for every test directory by ``tests/conftest.py`` (the integration and fault tests
share one stack per session); test modules import :class:`Pipeline`, :func:`read_topic` and
:func:`snowflake_warehouse_section` from here.

One stack (PostgreSQL with logical decoding + the Tansu broker) serves the whole session; each
test gets its own database, replication slot, topic prefix, consumer group and DuckDB file, and
its own Debezium process, stopped by pid at the end. If the stack can't start, the tests fail
(they never skip).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import snowflake.connector
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from cdc.config import Config
from cdc.local.fakesnow_server import warehouse_section
from cdc.local.pipeline import (
    ReplicatorThread,
    compare_all,
    start_debezium,
    wait_until_published,
    write_stack_config,
)
from cdc.local.processes import free_port
from cdc.local.stack import LocalStack
from cdc.source.signals import request_configured_snapshot, wait_configured_snapshot
from warehouse.duckdb.settings import DuckDBSettings
from warehouse.snowflake.settings import SnowflakeSettings


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    base = Path(tempfile.mkdtemp(prefix="cdc-it-", dir="/tmp"))
    os.chmod(base, 0o755)  # PostgreSQL runs as an unprivileged user when we are root
    # free ports, not the defaults: the soak runs beside the suite with a stack of its own
    s = LocalStack(base / "stack", pg_port=free_port(), kafka_port=free_port())
    try:
        s.up()
        yield s
    finally:
        s.down()
        shutil.rmtree(base, ignore_errors=True)


_counter = itertools.count(1)


@dataclass
class Pipeline:
    """One test's slice of the stack: its database, slot, topics, group and warehouse."""

    stack: LocalStack
    name: str
    database: str
    workdir: Path
    config: Config | None = None

    @property
    def url(self) -> str:
        return self.stack.pg_url(self.database)

    def sql(self, statement: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def configure(
        self, tables: Sequence[str | dict[str, Any]], file: str = "cdc.yaml", **kwargs: Any
    ) -> Config:
        """Write ``file`` in the work dir for this slice of the stack and load it; the first
        (``cdc.yaml``) becomes the pipeline's config, another file is only returned (the same
        pipeline with, e.g., another contract)."""
        config = write_stack_config(
            self.workdir / file,
            self.stack,
            tables,
            warehouse_path=self.workdir / "warehouse.duckdb",
            group_id=f"{self.name}-group",
            topic_prefix=self.name,
            slot_name=f"{self.name}_slot",
            database=self.database,
            **kwargs,
        )
        if file == "cdc.yaml":
            self.config = config
        return config

    def start_debezium(self, partitions: int = 1) -> None:
        assert self.config is not None
        start_debezium(self.stack, self.config, partitions=partitions)

    def wait_published(self, timeout: float = 120) -> None:
        """:func:`wait_until_published`; on a timeout the message ends with the tail of the
        Debezium log (the stack's folder is gone once the session ends)."""
        assert self.config is not None
        try:
            wait_until_published(self.url, self.config.source.slot_name, timeout=timeout)
        except TimeoutError as exc:
            raise TimeoutError(
                f"{exc}\n--- debezium.log (tail) ---\n{self.debezium_tail()}"
            ) from None

    def debezium_tail(self, lines: int = 80) -> str:
        path = self.stack.debezium_log
        if not path.exists():
            return f"(no log at {path})"
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 256 * 1024))
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def replicate_until_caught_up(self, config: Config | None = None) -> Any:
        """Wait until Debezium published everything, then run a consumer to the end."""
        self.wait_published()
        return ReplicatorThread(config or self.config_).start().finish()

    @property
    def config_(self) -> Config:
        assert self.config is not None
        return self.config

    def assert_equal_to_source(self, context: str = "") -> None:
        """Every table equal to the source; ``context`` (e.g. a run's log) joins the message."""
        diffs = compare_all(self.config_, self.url)
        bad = {d.name: d.describe() for d in diffs if d.diffs}
        assert not bad, f"warehouse differs from source: {bad}{context}"
        assert all(d.source_rows > 0 for d in diffs), [(d.name, d.source_rows) for d in diffs]


def snowflake_warehouse_section(server: Mapping[str, Any], database: str) -> dict[str, Any]:
    """A cdc.yaml `warehouse` section for the fakesnow server, its database and schema made."""
    return warehouse_section(dict(server), database, "RAW")


def engine_warehouse(
    pipeline: Pipeline, engine: str, request: pytest.FixtureRequest
) -> dict[str, Any] | None:
    """The `warehouse` section a real-chain test parametrised by ``engine`` runs on: None
    (the pipeline's DuckDB file) or the fakesnow server's, in a database of the pipeline's."""
    if engine != "snowflake":
        return None
    server = request.getfixturevalue("fakesnow_server")
    return snowflake_warehouse_section(server, f"CDC_{pipeline.name.upper()}")


@pytest.fixture
def pipeline(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    name = f"t{next(_counter)}"
    with psycopg.connect(stack.pg_url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    p = Pipeline(stack=stack, name=name, database=name, workdir=tmp_path_factory.mktemp(name))
    try:
        yield p
    finally:
        # SIGKILL: the test is over, and the engine's graceful stop takes ~30 s (its close()
        # waits out the engine thread); the kernel closes the replication connection at once
        stack.stop_debezium(kill=True)
        # the slot would keep WAL forever: drop it (once its walsender is gone)
        with psycopg.connect(stack.pg_url("postgres"), autocommit=True) as conn:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                    (f"{name}_slot",),
                ).fetchone()
                if row is None:
                    break
                if not row[0]:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (f"{name}_slot",))
                    break
                time.sleep(0.2)
        if stack.debezium_offsets.exists():
            stack.debezium_offsets.unlink()


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    """Every message of every partition, read to the end of the log (not to the high
    watermark: Tansu's lags, it reports the last record batch's base offset + 1)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-topic-reader"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[Message] = []
    empty = 0
    try:
        while empty < 2:
            msgs = consumer.consume(1000, timeout=1)
            empty = 0 if msgs else empty + 1
            out.extend(m for m in msgs if m.error() is None)
    finally:
        consumer.close()
    return out


def stored(config: Config, relation: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The column names and every row of a warehouse table or view, read with plain SQL on the
    engine (the adapter's reads leave deleted rows out)."""
    section = config.warehouse
    text = f'SELECT * FROM "{section.schema_name}"."{relation}" ORDER BY "id", "_cdc_lsn"'
    if isinstance(section, SnowflakeSettings):
        with snowflake.connector.connect(**section.connect_kwargs("test", None)) as conn:
            cur = conn.cursor()
            cur.execute(text)
            names = [d[0] for d in cur.description]
            raw = cur.fetchall()
    else:
        assert isinstance(section, DuckDBSettings)
        con = duckdb.connect(str(section.path), read_only=True)
        try:
            cur = con.execute(text)
            names = [d[0] for d in cur.description]
            raw = cur.fetchall()
        finally:
            con.close()
    return names, [dict(zip(names, r, strict=True)) for r in raw]


def commit_across_a_snapshot(p: Pipeline, config: Config, tables: Sequence[str]) -> None:
    """A transaction updates key 7 (``qty`` 4242) and deletes key 8 of each table and stays
    open while an incremental snapshot of the tables runs to its end; then it commits, and a
    consumer runs until caught up. Debezium sends the reads first, then the transaction's
    changes with lower change LSNs (written before the windows closed) but a later commit."""
    with psycopg.connect(p.url) as open_tx:
        for table in tables:
            open_tx.execute(f"UPDATE {table} SET qty = 4242 WHERE id = 7")
            open_tx.execute(f"DELETE FROM {table} WHERE id = 8")
        signal_id = request_configured_snapshot(config, list(tables), url=p.url)
        wait_configured_snapshot(config, signal_id, timeout=180)
        open_tx.commit()
    stats = p.replicate_until_caught_up()
    assert stats.dead_letters == 0 and not stats.parked, stats
