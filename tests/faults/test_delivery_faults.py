"""Faults of delivery between the broker and the consumer: old messages delivered again, out
of order and interleaved with new ones (scenario 9), and a consumer-group rebalance with a
member killed mid-stream (scenario 10). Each ends with :func:`verify`."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
import yaml
from confluent_kafka import Message, Producer
from fault_support import Workload, create_load_table, log_events, verify
from stack_support import read_topic

from cdc.config import Config, load_config
from cdc.local.pipeline import ReplicatorThread
from warehouse.duckdb.settings import DuckDBSettings

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults


def _duckdb_path(config: Config) -> str:
    assert isinstance(config.warehouse, DuckDBSettings)
    return str(config.warehouse.path)


def _rows(config: Config, table: str) -> list[tuple[Any, ...]]:
    """Every stored column of every row, metadata and history versions included."""
    with duckdb.connect(_duckdb_path(config), read_only=True) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def _produce(bootstrap: str, messages: list[Message]) -> None:
    """The same key and value bytes again, to the same topic and partition, in this order."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for m in messages:
        topic, partition = m.topic(), m.partition()
        assert topic is not None and partition is not None
        producer.produce(topic, key=m.key(), value=m.value(), partition=partition)
    assert producer.flush(30) == 0


def test_old_messages_replayed_out_of_order_change_nothing(pipeline: Pipeline) -> None:
    """Scenario 9: after the consumer has applied everything, the middle half of each topic
    (a mirror table and an scd2 table, streamed changes and tombstones) is produced again,
    shuffled. Run again, the consumer reads them all and the warehouse does not change by one
    value, and the scd2 history gains no version (the position guard skips stale changes).
    Then another shuffled old slice is produced interleaved with new changes of a running
    workload: the new ones apply, the old ones don't, and the warehouse equals the source."""
    create_load_table(pipeline, "items", rows=150)
    create_load_table(pipeline, "dim", rows=100)
    config = pipeline.configure(
        ["public.items", {"name": "public.dim", "mode": "scd2"}], batch_size=200, linger_ms=50
    )
    bootstrap = config.kafka.bootstrap_servers
    topics = [config.topic_for(config.table(t)) for t in ("items", "dim")]
    pipeline.start_debezium()
    # the workload starts once Debezium's snapshot is done: a change committed while the
    # snapshot runs, yet not in it, closes the snapshot's version at a commit time before the
    # snapshot's time stamp (an empty validity: README, Limitations). This scenario is about
    # replays; snapshots under writes have their own tests (test_data_shapes, test_snapshot)
    pipeline.wait_published()
    with (
        Workload(pipeline.url, "items", rate=40, seed=2),
        Workload(pipeline.url, "dim", rate=40, seed=3, top=150),
    ):
        time.sleep(4)
    pipeline.replicate_until_caught_up()
    verify(pipeline)  # well formed before the replays
    before = {t: _rows(config, t) for t in ("items", "dim")}
    rng = random.Random(9)

    old: list[Message] = []
    for topic in topics:
        msgs = read_topic(bootstrap, topic)
        old.extend(msgs[len(msgs) // 4 : 3 * len(msgs) // 4])
    rng.shuffle(old)
    _produce(bootstrap, old)
    stats = ReplicatorThread(config).start().finish()
    replayed = sum(1 for m in old if m.value() is not None)
    assert stats.events + stats.skipped >= replayed, (stats.events, stats.skipped, replayed)
    assert stats.dead_letters == 0
    assert {t: _rows(config, t) for t in ("items", "dim")} == before, "a replay changed rows"

    # old messages interleaved with new changes
    again: list[Message] = []
    for topic in topics:
        msgs = read_topic(bootstrap, topic)
        again.extend(msgs[: len(msgs) // 2])
    rng.shuffle(again)
    with (
        Workload(pipeline.url, "items", rate=40, seed=4),
        Workload(pipeline.url, "dim", rate=40, seed=5, top=150) as load,
    ):
        for chunk in range(0, len(again), 100):
            _produce(bootstrap, again[chunk : chunk + 100])
            time.sleep(0.2)
        time.sleep(1)
    assert load.commits > 0
    pipeline.replicate_until_caught_up()
    verify(pipeline)
    after = _rows(config, "items")
    assert len(after) == len({r[0] for r in after}), "duplicate keys in the mirror table"
    assert after != before["items"], "the new changes must have applied"
    print(f"replayed={len(old)} then {len(again)}; events={stats.events} skipped={stats.skipped}")


def _cdc_run(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cdc", "run", "--config", str(config_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CDC_LOG_FORMAT": "json"},
        )


def _events(log: Path, name: str) -> list[dict[str, Any]]:
    """The log records of ``cdc run`` (JSON lines) whose event is ``name``, in order."""
    return log_events(log.read_text(errors="replace"), name)


def _wait_event(
    log: Path,
    name: str,
    proc: subprocess.Popen[bytes],
    after: int = 0,
    timeout: float = 60,
    ok: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> dict[str, Any]:
    """The first ``name`` record past the first ``after`` ones that satisfies ``ok``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in _events(log, name)[after:] if ok(r)]
        if found:
            return found[0]
        if proc.poll() is not None:
            raise AssertionError(f"cdc run exited ({proc.returncode}): {log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {name!r} in {log.name} within {timeout} s: {log.read_text()[-3000:]}")


def _stored_offsets(config: Config) -> dict[int, int]:
    with duckdb.connect(_duckdb_path(config), read_only=True) as con:
        rows = con.execute(
            "SELECT partition, next_offset FROM _cdc.offsets WHERE consumer_group = ?",
            [config.kafka.group_id],
        ).fetchall()
    return {int(p): int(o) for p, o in rows}


def test_rebalance_mid_stream_then_a_member_killed(pipeline: Pipeline) -> None:
    """Scenario 10: a 2-partition topic, consumer A (``cdc run``) applying while the workload
    writes; consumer B joins the group (a rebalance splits the partitions), both apply; then
    A is killed with SIGKILL mid-stream and B, the survivor, is assigned both partitions and
    applies everything to the end of the log by itself. No change is lost or doubled."""
    create_load_table(pipeline, "items", rows=200)
    pipeline.configure(["public.items"], batch_size=100, linger_ms=50)
    # a small rebalance timeout: the broker's JoinGroup waits for it (docs/local-stack.md);
    # the session timeout given too, as every client of `cdc run` gets these settings
    path = pipeline.workdir / "cdc.yaml"
    document = yaml.safe_load(path.read_text())
    document["kafka"]["client"] = {"max.poll.interval.ms": 15000, "session.timeout.ms": 6000}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    config = pipeline.config = load_config(path)
    topic = config.topic_for(config.table("items"))
    pipeline.start_debezium(partitions=2)
    pipeline.wait_published()

    log_a, log_b = pipeline.workdir / "a.log", pipeline.workdir / "b.log"
    a = _cdc_run(path, log_a)
    b: subprocess.Popen[bytes] | None = None
    try:
        with Workload(pipeline.url, "items", rate=60) as load:
            _wait_event(log_a, "batch applied", a)
            b = _cdc_run(path, log_b)
            _wait_event(log_b, "batch applied", b)
            # the rebalance split the partitions: A was left one of them, and applied again
            revoked = len(_events(log_a, "partitions revoked"))
            assert revoked >= 1, log_a.read_text()[-3000:]
            split = _wait_event(log_a, "partitions assigned", a, after=1)
            assert len(split["partitions"]) == 1, split
            applied_a = len(_events(log_a, "batch applied"))
            _wait_event(log_a, "batch applied", a, after=applied_a)
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            # B, the survivor, is assigned both partitions (after the session timeout)
            _wait_event(
                log_b,
                "partitions assigned",
                b,
                after=len(_events(log_b, "partitions assigned")),
                ok=lambda r: len(r["partitions"]) == 2,
            )
            time.sleep(3)
        assert load.commits > 100
        pipeline.wait_published()
        ends = {0: 0, 1: 0}
        for m in read_topic(config.kafka.bootstrap_servers, topic):
            p = m.partition() or 0
            ends[p] = max(ends[p], (m.offset() or 0) + 1)
        deadline = time.monotonic() + 90
        while _stored_offsets(config) != ends and time.monotonic() < deadline:
            time.sleep(1)
        assert _stored_offsets(config) == ends, (_stored_offsets(config), ends)
        b.send_signal(signal.SIGTERM)
        assert b.wait(60) == 0, log_b.read_text()[-3000:]
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text_a, text_b = log_a.read_text(), log_b.read_text()
    assert text_a.count("batch applied") > 0 and text_b.count("batch applied") > 0
    verify(pipeline, context=f"\nA:\n{text_a[-3000:]}\nB:\n{text_b[-3000:]}")
    with duckdb.connect(_duckdb_path(config), read_only=True) as con:
        row = con.execute("SELECT count(*), count(DISTINCT id) FROM items").fetchone()
    assert row is not None and row[0] == row[1], row
    print(
        f"A batches={text_a.count('batch applied')} B batches={text_b.count('batch applied')} "
        f"commits={load.commits} ends={ends}"
    )
