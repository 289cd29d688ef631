"""WAL retained by the replication slot of an idle database while another database of the same
PostgreSQL writes heavily (issue 8, scenario 16)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
import pytest
from fault_support import verify

from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults

MB = 1024 * 1024
BUSY_SECONDS = 75
# The background writer logs a running-transactions record every 15 s. PostgreSQL takes a new
# restart_lsn candidate from one only once the previous candidate was confirmed
# (LogicalIncreaseRestartDecodingForSlot: "only increase if the previous values have been
# applied"), so when the connector confirms late (a loaded machine) one record is skipped and
# that tooth spans two intervals: 29 samples, 252 MB, in a CI run on 2 cores.
RUNNING_XACTS_SECONDS = 15


@dataclass
class Retention:
    written: int = 0  # bytes of WAL written while measuring
    retained: list[int] = field(default_factory=list)  # current - restart_lsn, every second
    flush_lag: list[int] = field(default_factory=list)  # current - confirmed_flush_lsn

    def describe(self) -> str:
        return (
            f"WAL written {self.written / MB:.0f} MB; retained by the slot: max "
            f"{max(self.retained) / MB:.1f} MB, final {self.retained[-1] / MB:.1f} MB; "
            f"confirmed_flush lag: max {max(self.flush_lag) / MB:.1f} MB, final "
            f"{self.flush_lag[-1] / MB:.1f} MB ({len(self.retained)} samples; retained MB: "
            f"{[round(r / MB) for r in self.retained]})"
        )


@contextmanager
def _busy_neighbour(pipeline: Pipeline) -> Iterator[threading.Event]:
    """Another database on the same server, writing several MB of WAL a second."""
    busy = f"{pipeline.name}_busy"
    admin = pipeline.stack.pg_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {busy}")
        conn.execute(f"CREATE DATABASE {busy}")
    halt = threading.Event()

    def write() -> None:
        with psycopg.connect(pipeline.stack.pg_url(busy), autocommit=True) as conn:
            conn.execute("CREATE TABLE churn (id int, payload text)")
            while not halt.is_set():
                conn.execute(
                    "INSERT INTO churn SELECT g, repeat(md5(random()::text), 16) "
                    "FROM generate_series(1, 4000) g"
                )
                conn.execute("TRUNCATE churn")
                time.sleep(0.25)

    writer = threading.Thread(target=write, name="busy-neighbour", daemon=True)
    writer.start()
    try:
        yield halt
    finally:
        halt.set()
        writer.join(30)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {busy} WITH (FORCE)")


def _measure(pipeline: Pipeline, seconds: float) -> Retention:
    slot = pipeline.config_.source.slot_name
    out = Retention()
    with psycopg.connect(pipeline.url, autocommit=True) as conn:

        def lsn() -> int:
            row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
            assert row is not None
            return int(row[0])

        start = lsn()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(1)
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) "
                "FROM pg_replication_slots WHERE slot_name = %s",
                (slot,),
            ).fetchone()
            assert row is not None, f"slot {slot} is gone"
            out.retained.append(int(row[0]))
            out.flush_lag.append(int(row[1]))
        out.written = lsn() - start
    return out


def _fell(samples: list[int], i: int) -> bool:
    return samples[i] < samples[i - 1] - 8 * MB


def test_idle_slot_retains_bounded_wal_while_a_neighbour_writes(pipeline: Pipeline) -> None:
    """Scenario 16: the test database is idle (one replicated table, no writes) while another
    database on the same server writes ~8 MB of WAL a second. First with heartbeats whose
    action query writes nothing (``SELECT 1``, as good as none): the slot's retained WAL
    (current LSN - restart_lsn) grows with everything written, because Debezium confirms only
    LSNs it receives and the neighbour's WAL decodes to nothing for this slot. Then with the
    product's default (a logical message in this database on every heartbeat; the test
    config's interval is 1 s): the retained WAL stays bounded (a sawtooth of ~15 s of writes,
    30 s when PostgreSQL skips one running-transactions record), far below what was written.
    Finally a change to the idle table still replicates (verify)."""
    pipeline.sql("CREATE TABLE quiet (id int PRIMARY KEY, v int)")
    pipeline.sql("INSERT INTO quiet SELECT g, g FROM generate_series(1, 10) g")
    pipeline.configure(
        ["public.quiet"],
        linger_ms=50,
        source_options={"debezium": {"heartbeat.action.query": "SELECT 1"}},
    )
    pipeline.start_debezium()
    pipeline.wait_published()

    with _busy_neighbour(pipeline):
        without = _measure(pipeline, 10)
        pipeline.stack.stop_debezium(kill=True)
        config = pipeline.configure(["public.quiet"], linger_ms=50)  # the default heartbeats
        pipeline.start_debezium()
        with_query = _measure(pipeline, BUSY_SECONDS)
    print(f"\nscenario 16, heartbeats every {config.source.heartbeat_interval_ms} ms")
    print(f"  without an action query: {without.describe()}")
    print(f"  with the default action query: {with_query.describe()}")

    assert without.written > 30 * MB, without.describe()
    assert without.retained[-1] > 0.8 * without.written, without.describe()  # unbounded
    assert with_query.written > 100 * MB, with_query.describe()
    # restart_lsn moves when the walsender decodes a running-xacts record after Debezium
    # confirmed past it: a sawtooth whose teeth span one or two RUNNING_XACTS_SECONDS. Once
    # Debezium is back (first low sample), it must keep dropping (at least twice in the 75 s)
    # and every peak stay below two intervals of writes plus slack, where without the action
    # query the retained WAL only grows (it would reach 75 s of writes here).
    samples = with_query.retained
    caught_up = next((i for i, r in enumerate(samples) if r < 32 * MB), None)
    assert caught_up is not None, with_query.describe()  # the slot moved to the present
    drops = [i for i in range(caught_up + 1, len(samples)) if _fell(samples, i)]
    assert len(drops) >= 2, with_query.describe()  # and kept moving
    teeth = [b - a for a, b in zip([caught_up, *drops], drops, strict=False)]
    assert max(teeth) <= 2 * RUNNING_XACTS_SECONDS + 5, (teeth, with_query.describe())
    rate = with_query.written / len(samples)  # bytes a second
    bound = (2 * RUNNING_XACTS_SECONDS + 5) * rate + 16 * MB
    assert max(samples[caught_up:]) < bound, with_query.describe()
    assert max(samples[caught_up:]) < 0.6 * with_query.written, with_query.describe()

    pipeline.sql("UPDATE quiet SET v = v + 100 WHERE id <= 3")
    pipeline.sql("INSERT INTO quiet VALUES (11, 11)")
    pipeline.sql("DELETE FROM quiet WHERE id = 10")
    pipeline.wait_published()
    ReplicatorThread(config).start().finish()
    verify(pipeline)
    pipeline.stack.stop_debezium(kill=True)  # its graceful stop costs ~30 s
