"""Stopping and outages on the real chain: SIGTERM ends cleanly after the current batch; a
warehouse held by another process (DuckDB) or out of reach (Snowflake, its network down) is
retried without any offset moving past unapplied data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from fault_support import verify
from stack_support import snowflake_warehouse_section
from tcp_proxy import TcpProxy

from cdc.local.pipeline import ReplicatorThread
from cdc.runtime import open_warehouse
from warehouse.snowflake.settings import SnowflakeSettings

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults

ROWS = 30_000


def _wait_for(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"cdc run exited early ({proc.returncode}): {path.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not seen within {timeout} s: {path.read_text()[-2000:]}")


def test_sigterm_finishes_the_current_batch_and_exits_cleanly(pipeline: Pipeline) -> None:
    """SIGTERM while batches flow: exit code 0, "stopped cleanly", and the warehouse holds
    exactly the rows its stored offset covers (the batch in flight was finished, not cut)."""
    pipeline.sql("CREATE TABLE facts (id int PRIMARY KEY, payload text)")
    pipeline.sql(f"INSERT INTO facts SELECT g, repeat('x', 200) FROM generate_series(1, {ROWS}) g")
    config = pipeline.configure(["public.facts"], batch_size=1000, linger_ms=50)
    pipeline.start_debezium()
    pipeline.wait_published()  # the snapshot: one message per row, no tombstones

    log = pipeline.workdir / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc", "run", "-c", str(pipeline.workdir / "cdc.yaml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CDC_LOG_FORMAT": "json"},
        )
    try:
        _wait_for(log, "batch applied", proc, timeout=120)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "stop requested" in text and "stopped cleanly" in text, text[-3000:]

    topic = config.topic_for(config.table("facts"))
    with duckdb.connect(str(config.warehouse.path), read_only=True) as con:
        (rows,) = con.execute("SELECT count(*) FROM facts").fetchone() or (0,)
        (stored,) = con.execute(
            "SELECT next_offset FROM _cdc.offsets WHERE topic = ?", [topic]
        ).fetchone() or (0,)
    assert 0 < stored < ROWS, "stop before the end, so a batch really was in flight"
    assert rows == stored  # every applied row is covered by the stored offset, and vice versa

    # and a restart resumes from there to the exact source state
    ReplicatorThread(config).start().finish()
    verify(pipeline)


HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    def offsets():
        return con.execute("SELECT topic, next_offset FROM _cdc.offsets ORDER BY 1").fetchall()
    print("held", offsets(), flush=True)
    time.sleep(float(sys.argv[2]))
    print("released", offsets(), flush=True)
    con.close()
    """
)


def test_a_held_warehouse_file_is_retried_and_no_offset_moves_meanwhile(
    pipeline: Pipeline,
) -> None:
    """Another process holds the DuckDB file (one process at a time) while changes stream:
    `cdc run` retries with backoff, the stored offsets don't move while it can't write, and
    after the release everything arrives exactly once."""
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v int)")
    pipeline.sql("INSERT INTO items SELECT g, 0 FROM generate_series(1, 100) g")
    config = pipeline.configure(["public.items"], batch_size=500, linger_ms=50)
    config = config.model_copy(
        update={"warehouse": config.warehouse.model_copy(update={"lock_timeout_seconds": 0.5})}
    )
    pipeline.start_debezium()
    pipeline.wait_published()
    replicator = ReplicatorThread(config).start()
    replicator.wait_caught_up()

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(config.warehouse.path), "6"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        held = holder.stdout.readline()
        assert held.startswith("held"), held
        for i in range(1, 51):
            pipeline.sql("UPDATE items SET v = v + 1 WHERE id = %s", [i])
        pipeline.sql("DELETE FROM items WHERE id > 90")
        released = holder.stdout.readline()
        assert holder.wait(30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    # the consumer had the changes in hand but could not commit: offsets stood still
    assert held.removeprefix("held") == released.removeprefix("released")

    pipeline.wait_published()
    stats = replicator.finish()
    assert stats.retries >= 2
    assert stats.dead_letters == 0
    verify(pipeline)


def test_snowflake_going_away_is_retried_and_no_offset_moves_meanwhile(
    pipeline: Pipeline, fakesnow_server: dict[str, Any]
) -> None:
    """The network between the consumer and Snowflake (fakesnow's server behind a loopback
    proxy) fails while changes stream: each batch fails as a transient error, is rolled back
    and retried with backoff, the stored offsets stand still, and after the network is back
    everything arrives exactly once, with no dead letter."""
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v int)")
    pipeline.sql("INSERT INTO items SELECT g, 0 FROM generate_series(1, 100) g")
    section = snowflake_warehouse_section(fakesnow_server, f"CDC_{pipeline.name.upper()}")
    direct = dict(section)  # the server itself, for the test's own reads
    proxy = TcpProxy(fakesnow_server["port"]).up()
    section |= {"port": proxy.port, "network_timeout_seconds": 2, "login_timeout_seconds": 2}
    config = pipeline.configure(["public.items"], batch_size=500, linger_ms=50, warehouse=section)
    reader = open_warehouse(config.model_copy(update={"warehouse": _snowflake(direct)}))
    try:
        pipeline.start_debezium()
        pipeline.wait_published()
        replicator = ReplicatorThread(config).start()
        replicator.wait_caught_up()
        before = reader.load_offsets(config.kafka.group_id)
        assert before

        proxy.down()
        for i in range(1, 51):
            pipeline.sql("UPDATE items SET v = v + 1 WHERE id = %s", [i])
        pipeline.sql("DELETE FROM items WHERE id > 90")
        pipeline.wait_published()
        deadline = time.monotonic() + 90
        while replicator.replicator.stats.retries < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert replicator.replicator.stats.retries >= 2, "the outage was never noticed"
        # the consumer has the changes in hand but can't commit: the offsets stand still
        assert reader.load_offsets(config.kafka.group_id) == before
        assert pipeline.sql("SELECT count(*) FROM items")[0][0] == 90

        proxy.up()  # the network is back, on the same port
        stats = replicator.finish()
        assert stats.dead_letters == 0 and not stats.parked
        assert reader.load_offsets(config.kafka.group_id) != before
        verify(pipeline)
    finally:
        proxy.down()
        reader.close()


def _snowflake(section: dict[str, Any]) -> Any:
    return SnowflakeSettings.model_validate(section)
