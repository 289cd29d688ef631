"""Fault scenarios 12, 13 and 14: the changes that are hard to apply, under a running workload.

* 12 + 13: TOAST-heavy updates (most updates leave a 24 kB out-of-line value alone, so Debezium
  sends its unavailable-value placeholder) mixed with primary-key changes, inserts and deletes,
  on a mirror table and an ``scd2`` table at once, while the consumer applies small batches
  (a key change's two halves and the placeholders' carries cross batch boundaries).
* 14: Debezium's initial snapshot taken while the source keeps writing to the table.

Each ends with :func:`fault_support.verify`: reconciliation clean, every row and column equal
to the source, the history well formed.
"""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING

import psycopg
import pytest
from fault_support import Workload, create_load_table, verify
from stack_support import read_topic

from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults

PLACEHOLDER = b"__debezium_unavailable_value"
DOCS = ("docs", "docs_hist")
DDL = "CREATE TABLE {t} (id int PRIMARY KEY, status text NOT NULL, counter int NOT NULL, body text)"


def _large(rng: random.Random) -> str:
    """24,000 characters of random hex: pglz can't shrink it, so it is stored out of line."""
    return rng.randbytes(12_000).hex()


class ShapeWorkload(threading.Thread):
    """The same random transaction on both tables: mostly updates that leave the large body
    alone, some that replace it, key changes (alone or with another change of the new key in
    the transaction), inserts and deletes."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(daemon=True, name="shape-workload")
        self.url, self.seconds = url, seconds
        self.rng = random.Random(12)
        self.keys = list(range(1, 41))
        self.next_key = 1000
        self.counts = {"status": 0, "body": 0, "key": 0, "insert": 0, "delete": 0}
        self.error: BaseException | None = None

    def _statements(self) -> list[tuple[str, tuple[object, ...]]]:
        rng, op = self.rng, self.rng.random()
        k = rng.choice(self.keys)
        if op < 0.5:
            self.counts["status"] += 1
            return [
                (
                    "UPDATE {t} SET status = %s, counter = counter + 1 WHERE id = %s",
                    (f"s{op:.3f}", k),
                )
            ]
        if op < 0.6:
            self.counts["body"] += 1
            return [("UPDATE {t} SET body = %s WHERE id = %s", (_large(rng), k))]
        if op < 0.8:
            self.counts["key"] += 1
            new = self.next_key = self.next_key + 1
            self.keys[self.keys.index(k)] = new
            out: list[tuple[str, tuple[object, ...]]] = [
                ("UPDATE {t} SET id = %s WHERE id = %s", (new, k))
            ]
            if rng.random() < 0.5:
                out.append(("UPDATE {t} SET counter = counter + 100 WHERE id = %s", (new,)))
            return out
        if op < 0.9:
            self.counts["insert"] += 1
            new = self.next_key = self.next_key + 1
            self.keys.append(new)
            return [("INSERT INTO {t} VALUES (%s, 'new', 0, %s)", (new, _large(rng)))]
        if len(self.keys) > 10:
            self.counts["delete"] += 1
            self.keys.remove(k)
            return [("DELETE FROM {t} WHERE id = %s", (k,))]
        return []

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.seconds
            with psycopg.connect(self.url, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    statements = self._statements()
                    with conn.transaction():
                        for statement, params in statements:
                            for t in DOCS:
                                conn.execute(statement.format(t=t), params)
                    time.sleep(0.02)
        except BaseException as exc:
            self.error = exc


def test_toast_heavy_updates_and_key_changes_under_load_stay_exact(pipeline: Pipeline) -> None:
    rng = random.Random(3)
    for t in DOCS:
        pipeline.sql(DDL.format(t=t))
    with psycopg.connect(pipeline.url, autocommit=True) as conn:
        for k in range(1, 41):
            body = _large(rng)
            for t in DOCS:
                conn.execute(f"INSERT INTO {t} VALUES (%s, 'seed', 0, %s)", (k, body))
    config = pipeline.configure(
        ["public.docs", {"name": "public.docs_hist", "mode": "scd2"}], batch_size=25, linger_ms=50
    )
    pipeline.start_debezium()
    pipeline.wait_published()
    replicator = ReplicatorThread(config).start()
    replicator.wait_caught_up()

    load = ShapeWorkload(pipeline.url, seconds=20)
    load.start()
    load.join(60)
    assert load.error is None, load.error
    assert all(n > 10 for n in load.counts.values()), load.counts
    pipeline.wait_published()
    stats = replicator.finish()
    assert stats.dead_letters == 0 and not stats.parked

    # the hard cases really happened: placeholders for the untouched bodies, key changes
    messages = read_topic(config.kafka.bootstrap_servers, config.topic_for(config.table("docs")))
    placeholders = sum(1 for m in messages if m.value() and PLACEHOLDER in (m.value() or b""))
    assert placeholders >= load.counts["status"], (placeholders, load.counts)
    assert stats.batches > 10
    verify(pipeline, context=f"\nworkload: {load.counts}")


def test_connector_snapshot_taken_while_the_table_is_written_is_exact(pipeline: Pipeline) -> None:
    """Scenario 14: Debezium's initial snapshot of 20,000 rows runs while the workload keeps
    inserting, updating and deleting in the same table (and commits land during the snapshot's
    read); the changes after the snapshot's position are streamed on top of it."""
    create_load_table(pipeline, "items", rows=20_000)
    config = pipeline.configure(["public.items"], batch_size=2000, linger_ms=50)
    with Workload(pipeline.url, "items", rate=60, top=25_000) as load:
        time.sleep(1)
        pipeline.start_debezium()
        pipeline.wait_published()  # the snapshot is done and streaming has begun...
        time.sleep(2)
        during = load.commits
    assert during > 100  # ...all the while the workload wrote
    pipeline.wait_published()
    stats = ReplicatorThread(config).start().finish()
    snapshot_reads = stats.events - len(stats.latencies_s)  # latencies: streamed changes only
    assert snapshot_reads > 15_000 and len(stats.latencies_s) > 100, stats
    verify(pipeline)
