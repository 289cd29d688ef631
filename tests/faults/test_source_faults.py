"""Faults at the source end of the chain: the Debezium process killed (scenario 3), PostgreSQL
restarted and the walsender terminated (scenario 5), each under a running workload and a
running consumer, each ending with :func:`verify`."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import TYPE_CHECKING

import duckdb
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from fault_support import Workload, create_load_table, verify
from stack_support import read_topic

from cdc.config import Config
from cdc.local.pipeline import ReplicatorThread
from warehouse.duckdb.settings import DuckDBSettings

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults


def _duckdb_path(config: Config) -> str:
    assert isinstance(config.warehouse, DuckDBSettings)
    return str(config.warehouse.path)


def _start(pipeline: Pipeline) -> tuple[Config, ReplicatorThread]:
    create_load_table(pipeline, "items", rows=200)
    config = pipeline.configure(["public.items"], batch_size=200, linger_ms=50)
    pipeline.start_debezium()
    pipeline.wait_published()
    replicator = ReplicatorThread(config).start()
    replicator.wait_caught_up()
    return config, replicator


def change_deliveries(config: Config) -> Counter[tuple[bytes, str, str]]:
    """How often each change (key, LSN, op) of the items topic is in Kafka (streamed changes
    only: snapshot reads carry the snapshot's LSN)."""
    topic = config.topic_for(config.table("items"))
    seen: Counter[tuple[bytes, str, str]] = Counter()
    for m in read_topic(config.kafka.bootstrap_servers, topic):
        value = m.value()
        if value is None:
            continue  # a tombstone follows its delete
        payload = json.loads(value)["payload"]
        if payload["op"] != "r":
            seen[(m.key() or b"", str(payload["source"]["lsn"]), payload["op"])] += 1
    return seen


def _log_size(config: Config, topic: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": config.kafka.bootstrap_servers, "group.id": "test-log-size"}
    )
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        consumer.close()


def _no_duplicate_rows(config: Config) -> None:
    with duckdb.connect(_duckdb_path(config), read_only=True) as con:
        row = con.execute("SELECT count(*), count(DISTINCT id) FROM items").fetchone()
    assert row is not None and row[0] == row[1], row


def test_debezium_killed_mid_stream_resumes_from_its_offsets(pipeline: Pipeline) -> None:
    """Scenario 3: the Debezium process is killed with SIGKILL while the workload writes and
    the consumer applies; restarted, it resumes from its offsets file (no new snapshot) and
    what it publishes again is absorbed by the consumer's position guard: the warehouse
    converges to the source with no row lost or doubled."""
    config, replicator = _start(pipeline)
    stack = pipeline.stack
    kills = 0
    topic = config.topic_for(config.table("items"))
    with Workload(pipeline.url, "items", rate=60) as load:
        for _ in range(2):  # kills at random points of the stream
            time.sleep(2.5)
            stack.stop_debezium(kill=True)
            kills += 1
            time.sleep(1)
            pipeline.start_debezium()
        # and one inside a big transaction's publishing (Debezium hands it over in batches
        # of 2048 and stores its offset after each): what of the batch in flight is already
        # in Kafka is sent again after the restart
        time.sleep(2.5)
        start = _log_size(config, topic)
        pipeline.sql(
            # keys the workload never touches (it writes 1..600): no lock waits, no deadlock
            "DO $$ BEGIN INSERT INTO items (id, v, note) "
            "SELECT g, 0, 'bulk' FROM generate_series(1001, 1200) g; "
            "FOR i IN 1..40 LOOP UPDATE items SET v = v + 1 WHERE id > 1000; END LOOP; END $$"
        )
        deadline = time.monotonic() + 60
        while _log_size(config, topic) < start + 2500 and time.monotonic() < deadline:
            time.sleep(0.02)
        stack.stop_debezium(kill=True)
        kills += 1
        time.sleep(1)
        pipeline.start_debezium()
        time.sleep(3)
    assert load.commits > 100
    pipeline.wait_published()
    stats = replicator.finish()
    deliveries = change_deliveries(config)
    redelivered = sum(n - 1 for n in deliveries.values())
    snapshot_reads = sum(
        1
        for m in read_topic(config.kafka.bootstrap_servers, config.topic_for(config.table("items")))
        if m.value() is not None and json.loads(m.value() or b"{}")["payload"]["op"] == "r"
    )
    print(
        f"kills={kills} commits={load.commits} changes={len(deliveries)} "
        f"redelivered={redelivered} snapshot_reads={snapshot_reads} events={stats.events}"
    )
    assert snapshot_reads == 200, "a restart must resume from the offsets, not snapshot again"
    assert redelivered > 0, "the kill inside the big transaction re-delivered nothing"
    verify(pipeline)
    _no_duplicate_rows(config)


def _walsender_pid(pipeline: Pipeline, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = pipeline.sql(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s AND active",
            [pipeline.config_.source.slot_name],
        )
        if rows and rows[0][0] is not None:
            return int(rows[0][0])
        time.sleep(0.2)
    raise AssertionError("no walsender streams the slot")


def test_walsender_killed_and_postgres_restarted_debezium_reconnects(pipeline: Pipeline) -> None:
    """Scenario 5: the slot's walsender is terminated (``pg_terminate_backend``), later
    PostgreSQL itself is restarted (fast shutdown, same port), both under the workload; the
    same Debezium process reconnects by itself each time (no restart of it by us) and every
    committed change arrives exactly once."""
    config, replicator = _start(pipeline)
    stack = pipeline.stack
    debezium = stack.state.processes["debezium"]
    try:
        with Workload(pipeline.url, "items", rate=60) as load:
            time.sleep(2)
            first = _walsender_pid(pipeline)
            pipeline.sql("SELECT pg_terminate_backend(%s)", [first])
            second = _walsender_pid(pipeline)  # Debezium streams again, on a new walsender
            assert second != first
            time.sleep(2)
            stack.restart_postgres()
            _walsender_pid(pipeline)  # and again after the restart
            time.sleep(2)
        assert load.commits > 100 and load.failures >= 1, (load.commits, load.failures)
    finally:
        if not stack.running("postgres"):  # the stack is shared by the tests that follow
            stack.restart_postgres()
    assert debezium.alive(), "Debezium must reconnect, not die"
    assert stack.state.processes["debezium"] == debezium
    pipeline.wait_published()
    replicator.finish()
    verify(pipeline)
    _no_duplicate_rows(config)
    with psycopg.connect(stack.pg_url("postgres")) as conn:  # healthy for the next tests
        assert conn.execute("SELECT 1").fetchone() == (1,)
