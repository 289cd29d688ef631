"""Large changes on the real chain: a long transaction touching many rows (issue 8, scenario 15)
and huge values of 10 MB in jsonb and text columns, TOASTed and left unchanged by later updates
(scenario 18)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import psycopg
import pytest
from fault_support import Workload, create_load_table, verify

from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults

BIG_UPDATED = 50_000
BIG_INSERTED = 20_000
MB = 1024 * 1024


def test_one_long_transaction_of_70k_rows_under_a_workload(pipeline: Pipeline) -> None:
    """Scenario 15: one transaction updates 50k rows and inserts 20k (70k change events, far
    more than a consumer batch of 5,000) while a workload writes another table and the
    consumer runs. The batches cut that transaction into many warehouse commits; verify()
    proves none of its changes was lost, applied twice or applied out of order (every row of
    both tables equals the source, reconciliation finds 0 differences)."""
    create_load_table(pipeline, "items")
    pipeline.sql("CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, note text)")
    pipeline.sql(f"INSERT INTO big SELECT g, g, 'seed' FROM generate_series(1, {BIG_UPDATED}) g")
    config = pipeline.configure(["public.items", "public.big"], linger_ms=50)
    pipeline.start_debezium()
    replicator = ReplicatorThread(config).start()
    pipeline.wait_published()
    replicator.wait_caught_up()

    with Workload(pipeline.url, "items", rate=40) as load:
        started = time.monotonic()
        with psycopg.connect(pipeline.url) as conn:  # one transaction, committed at the end
            conn.execute("UPDATE big SET v = v * 2 + 1, note = 'long tx'")
            conn.execute(
                "INSERT INTO big SELECT g, -g, 'inserted' FROM generate_series("
                f"{BIG_UPDATED + 1}, {BIG_UPDATED + BIG_INSERTED}) g"
            )
            conn.execute("DELETE FROM big WHERE id % 1000 = 0")  # deletes in it too
        committed_in = time.monotonic() - started
        time.sleep(1)
    pipeline.wait_published(timeout=180)
    stats = replicator.finish(timeout=240)
    print(
        f"long transaction committed in {committed_in:.1f} s; {load.commits} workload "
        f"transactions; consumer: {stats.batches} batches, {stats.events} events"
    )

    assert stats.dead_letters == 0 and not stats.parked
    assert stats.batches > (BIG_UPDATED + BIG_INSERTED) // 5000  # the transaction was split
    assert pipeline.sql("SELECT count(*) FROM big") == [(BIG_UPDATED + BIG_INSERTED - 70,)]
    verify(pipeline)
    pipeline.stack.stop_debezium(kill=True)  # its graceful stop costs ~30 s


def _value(tag: str, size: int) -> str:
    """About ``size`` characters of text that compresses badly (stays TOASTed out of line)."""
    import hashlib

    chunk = []
    total = 0
    i = 0
    while total < size:
        piece = hashlib.sha256(f"{tag}{i}".encode()).hexdigest()
        chunk.append(piece)
        total += len(piece)
        i += 1
    return "".join(chunk)[:size]


def test_values_of_10_mb_in_jsonb_and_text(pipeline: Pipeline) -> None:
    """Scenario 18: rows with a 10 MB jsonb and a 10 MB text value are inserted, updated in
    another column (the TOASTed values are unchanged, Debezium sends its unavailable-value
    placeholder and the warehouse must carry the 10 MB values forward), and updated in the
    big columns themselves, while a workload writes another table. Messages of ~10-20 MB must
    pass the Debezium producer, the broker and the consumer's fetch: verify() proves every
    value arrived whole."""
    create_load_table(pipeline, "items")
    pipeline.sql("CREATE TABLE huge (id int PRIMARY KEY, n int NOT NULL, doc jsonb, body text)")
    config = pipeline.configure(["public.items", "public.huge"], linger_ms=50)
    pipeline.start_debezium()
    replicator = ReplicatorThread(config).start()
    pipeline.wait_published()

    with Workload(pipeline.url, "items", rate=30):
        with psycopg.connect(pipeline.url, autocommit=True) as conn:
            for i in (1, 2, 3):
                doc = json.dumps({"id": i, "blob": _value(f"doc{i}", 10 * MB)})
                conn.execute(
                    "INSERT INTO huge VALUES (%s, 0, %s::jsonb, %s)",
                    (i, doc if i != 2 else None, _value(f"body{i}", 10 * MB) if i != 1 else None),
                )
            # unchanged TOAST: only n changes, the 10 MB values must be carried forward
            conn.execute("UPDATE huge SET n = n + 1")
            conn.execute("UPDATE huge SET n = n + 1 WHERE id = 3")
            # the big values themselves change
            conn.execute("UPDATE huge SET body = %s WHERE id = 2", (_value("body2-new", 10 * MB),))
            conn.execute(
                "UPDATE huge SET doc = %s::jsonb, n = 9 WHERE id = 1",
                (json.dumps({"id": 1, "new": _value("doc1-new", 10 * MB)}),),
            )
            conn.execute("INSERT INTO huge VALUES (4, 0, '{}', 'small')")
            conn.execute("UPDATE huge SET n = 5 WHERE id = 4")
        time.sleep(1)
    pipeline.wait_published(timeout=180)
    stats = replicator.finish(timeout=240)

    assert stats.dead_letters == 0 and not stats.parked
    sizes = pipeline.sql(
        "SELECT id, coalesce(length(doc::text), 0), coalesce(length(body), 0) FROM huge ORDER BY id"
    )
    assert all(d >= 10 * MB or b >= 10 * MB for _, d, b in sizes[:3]), sizes
    verify(pipeline)
    pipeline.stack.stop_debezium(kill=True)  # its graceful stop costs ~30 s
