"""Exactly-once effect (architecture.md §4.1): offsets live in the warehouse transaction.
Fault scenarios 1 and 2 (a consumer killed around the warehouse commit) and replays."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from fault_support import Workload, create_load_table, log_events, verify
from stack_support import read_topic

from cdc.config import Config
from cdc.consumer.batching import Polled
from cdc.consumer.loop import Replicator
from cdc.local.pipeline import ReplicatorThread
from cdc.model import KafkaOrigin
from cdc.runtime import open_warehouse, replicator_settings

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults


def _setup(pipeline: Pipeline, *, batch_size: int = 150, extra: Sequence[str] = ()) -> Config:
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, note text)")
    pipeline.sql("INSERT INTO items SELECT g, g, 'seed' FROM generate_series(1, 200) g")
    config = pipeline.configure(["public.items", *extra], batch_size=batch_size, linger_ms=50)
    pipeline.start_debezium()
    pipeline.wait_published()
    rng = random.Random(5)
    next_id = 1000
    with psycopg.connect(pipeline.url, autocommit=True) as conn:
        for _ in range(400):
            with conn.transaction():
                kind = rng.random()
                if kind < 0.5:
                    conn.execute(
                        "UPDATE items SET v = v + 1, note = %s WHERE id = %s",
                        (f"u{rng.random()}", rng.randint(1, 200)),
                    )
                elif kind < 0.8:
                    next_id += 1
                    conn.execute("INSERT INTO items VALUES (%s, 0, 'new')", (next_id,))
                    conn.execute("UPDATE items SET v = 7 WHERE id = %s", (next_id,))
                else:
                    conn.execute(
                        "DELETE FROM items WHERE id = (SELECT id FROM items ORDER BY random() "
                        "LIMIT 1)"
                    )
    pipeline.wait_published()
    return config


def _cdc_run(
    config_path: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc", "run", "--config", config_path, "--until-caught-up"],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _table_snapshot(path: str) -> list[tuple[Any, ...]]:
    """Every stored column of every row, metadata included (a change would show)."""
    with duckdb.connect(path, read_only=True) as con:
        return con.execute("SELECT * FROM items ORDER BY id").fetchall()


def _logged_applied(log: str) -> dict[tuple[str, int], int]:
    """The next offset per partition after the batches a run logged as applied (JSON lines;
    "batch applied" is logged once the batch's warehouse transaction committed)."""
    applied: dict[tuple[str, int], int] = {}
    for entry in log_events(log, "batch applied"):
        for name, span in entry["offsets"].items():
            topic, _, partition = name.rstrip("]").rpartition("[")
            key = (topic, int(partition))
            applied[key] = max(applied.get(key, 0), int(span.removeprefix("..")) + 1)
    return applied


def _kafka_committed(config: Config, topic: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": config.kafka.bootstrap_servers, "group.id": config.kafka.group_id}
    )
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return tp.offset
    finally:
        consumer.close()


@pytest.mark.parametrize("failpoint", ["before_warehouse_commit:3", "after_warehouse_commit:3"])
def test_kill_9_around_the_warehouse_commit_loses_and_duplicates_nothing(
    pipeline: Pipeline, failpoint: str
) -> None:
    """Fault scenarios 1 and 2: ``cdc run`` killed (SIGKILL) inside the warehouse transaction
    of its 3rd batch, or after its commit but before the Kafka commit, while the source keeps
    writing; the next run resumes from the warehouse's offsets."""
    create_load_table(pipeline, "load")
    config = _setup(pipeline, extra=["public.load"])
    topic = config.topic_for(config.table("items"))
    cfg_path = str(pipeline.workdir / "cdc.yaml")

    with Workload(pipeline.url, "load", rate=40):
        crashed = _cdc_run(cfg_path, {"CDC_FAILPOINT": failpoint})
        assert crashed.returncode == -9, crashed.stderr[-2000:]
        assert "failpoint hit" in crashed.stdout + crashed.stderr

        warehouse = open_warehouse(config)
        offsets = warehouse.load_offsets(config.kafka.group_id)
        warehouse.close()
        if failpoint.startswith("after"):
            # the crash window is real: the warehouse holds a batch Kafka never heard of
            assert any(_kafka_committed(config, t) < n for (t, _p), n in offsets.items())
        else:  # the batch in flight was rolled back with its offsets: the stored offsets are
            # exactly those of the last batch the crashed run logged as applied (committed)
            assert offsets == _logged_applied(crashed.stderr), crashed.stderr[-3000:]

        # the next run resumes while the source keeps writing; it ends once caught up
        resuming = subprocess.Popen(
            [sys.executable, "-m", "cdc", "run", "--config", cfg_path, "--until-caught-up"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(5)
    _, err = resuming.communicate(timeout=300)
    assert resuming.returncode == 0, err[-2000:]
    pipeline.wait_published()
    resumed = _cdc_run(cfg_path)  # the workload's last writes
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    verify(pipeline, context=f"\nthe resumed run's log:\n{resumed.stderr[-6000:]}")
    with duckdb.connect(str(config.warehouse.path), read_only=True) as con:
        total, distinct = con.execute("SELECT count(*), count(DISTINCT id) FROM items").fetchone()
        (offset,) = con.execute(
            "SELECT next_offset FROM _cdc.offsets WHERE consumer_group = ? AND topic = ?",
            [config.kafka.group_id, topic],
        ).fetchone()
    assert total == distinct
    assert offset == 1 + max(
        m.offset() or 0 for m in read_topic(config.kafka.bootstrap_servers, topic)
    )


def test_second_group_replaying_everything_changes_nothing(pipeline: Pipeline) -> None:
    config = _setup(pipeline)
    ReplicatorThread(config).start().finish()
    verify(pipeline)
    before = _table_snapshot(str(config.warehouse.path))

    replay = config.model_copy(
        update={"kafka": config.kafka.model_copy(update={"group_id": "replay-from-start"})}
    )
    stats = ReplicatorThread(replay).start().finish()
    assert stats.events > 600  # it really re-applied the whole topic...
    assert _table_snapshot(str(config.warehouse.path)) == before  # ...and changed nothing


def test_zombie_with_older_offsets_cannot_move_offsets_or_rows_back(pipeline: Pipeline) -> None:
    config = _setup(pipeline)
    topic = config.topic_for(config.table("items"))
    ReplicatorThread(config).start().finish()
    warehouse = open_warehouse(config)
    offsets_before = warehouse.load_offsets(config.kafka.group_id)
    warehouse.close()
    rows_before = _table_snapshot(str(config.warehouse.path))

    # a zombie member of the same group still holding the first half of the partition
    old = [
        Polled(KafkaOrigin(topic, 0, m.offset() or 0), m.key(), m.value())
        for m in read_topic(config.kafka.bootstrap_servers, topic)
    ]
    zombie = Replicator(replicator_settings(config), open_warehouse(config))
    zombie._process(old[: offsets_before[(topic, 0)] // 2])
    zombie.close()

    warehouse = open_warehouse(config)
    assert warehouse.load_offsets(config.kafka.group_id) == offsets_before
    warehouse.close()
    assert _table_snapshot(str(config.warehouse.path)) == rows_before
