"""Incremental snapshots through the signal table, on the real chain: the signal row goes into
PostgreSQL, the real Debezium reads the table in chunks and emits `op = r` events on the
table's topic, and the consumer applies them through the position guard."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import psycopg
import pytest
from stack_support import commit_across_a_snapshot, engine_warehouse, read_topic

from cdc.local.pipeline import ReplicatorThread, compare_all, history_reports
from cdc.runtime import open_warehouse
from cdc.source.connector import notification_topic
from cdc.source.signals import (
    IncrementalSnapshotProgress,
    InvalidFilterError,
    NoPrimaryKeyError,
    SignalTableNotPublishedError,
    TableNotCapturedError,
    UnknownTableError,
    request_configured_snapshot,
    request_incremental_snapshot,
    wait_configured_snapshot,
)

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

ITEMS_DDL = """
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL,
                    price numeric(10,2), note text);
INSERT INTO items SELECT g, 'item-' || g, g % 17, g * 1.25, CASE WHEN g % 5 = 0 THEN NULL
                         ELSE repeat('n', g % 40) END
FROM generate_series(1, 3000) g;
"""
CHUNK = {"debezium": {"incremental.snapshot.chunk.size": "250"}}


def warehouse_sql(path: Path, statement: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path)) as con:
        return con.execute(statement).fetchall()


class Writer:
    """Small autocommit transactions on ``items`` in a thread while the snapshot runs:
    updates and deletes of keys the snapshot reads, inserts above them."""

    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.changes = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                next_id = 100_000
                while not self.stop.is_set():
                    kind = self.random.random()
                    key = self.random.randint(1, 3000)
                    if kind < 0.6:
                        conn.execute(
                            "UPDATE items SET qty = qty + 1, name = name || '+' WHERE id = %s",
                            (key,),
                        )
                    elif kind < 0.8:
                        conn.execute("DELETE FROM items WHERE id = %s", (key,))
                    else:
                        next_id += 1
                        conn.execute(
                            "INSERT INTO items VALUES (%s, 'new', 1, 9.99, NULL)", (next_id,)
                        )
                    self.changes += 1
                    time.sleep(0.004)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def start(self) -> Writer:
        self._thread.start()
        return self

    def finish(self) -> int:
        self.stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise self.error
        return self.changes


def test_incremental_snapshot_repairs_a_damaged_table_under_concurrent_writes(
    pipeline: Pipeline,
) -> None:
    """The warehouse table loses 400 rows and 300 get wrong values (their stored positions
    left as they were); an incremental snapshot in 250-row chunks, with updates, deletes and
    inserts streaming meanwhile, brings it back equal to the source in every column. The
    reads' positions beat the damaged rows' and lose to the changes streamed after them."""
    pipeline.sql(ITEMS_DDL)
    config = pipeline.configure(["public.items"], source_options=CHUNK)
    pipeline.start_debezium()
    pipeline.replicate_until_caught_up()
    pipeline.assert_equal_to_source()

    path = config.warehouse.path  # type: ignore[union-attr]
    warehouse_sql(path, "DELETE FROM items WHERE id % 7 = 0 OR id BETWEEN 2001 AND 2050")
    warehouse_sql(path, "UPDATE items SET qty = -1, note = 'damaged' WHERE id % 10 = 1")
    damaged = {d.name: d for d in compare_all(config, pipeline.url)}["items"]
    deleted = [i for i in range(1, 3001) if i % 7 == 0 or 2001 <= i <= 2050]
    altered = {i for i in range(1, 3001) if i % 10 == 1} - set(deleted)
    assert sorted(k for (k,) in damaged.missing) == deleted
    assert {k for (k,), *_ in damaged.different} == altered

    replicator = ReplicatorThread(config).start()
    writer = Writer(pipeline.url, seed=6).start()
    time.sleep(0.5)  # writes are streaming before the snapshot starts
    progress: list[IncrementalSnapshotProgress] = []
    started = time.monotonic()
    signal_id = request_configured_snapshot(config, ["items"], url=pipeline.url)
    result = wait_configured_snapshot(config, signal_id, timeout=180, on_progress=progress.append)
    elapsed = time.monotonic() - started
    changes = writer.finish()
    pipeline.wait_published()
    run = replicator.finish()

    assert result.succeeded and result.tables == {"public.items": "SUCCEEDED"}
    assert result.chunks >= 10 and len(progress) == result.chunks  # ~3,000 keys / 250
    assert progress[-1].table == "public.items"
    assert changes > 50
    assert run.dead_letters == 0 and not run.parked
    pipeline.assert_equal_to_source()
    # the repaired rows came from the snapshot (op r), positioned at their window's close
    ops = dict(warehouse_sql(path, "SELECT _cdc_op, count(*) FROM items GROUP BY 1"))
    assert ops.get("r", 0) > 1000
    print(
        f"incremental snapshot of 3,000 rows: {elapsed:.1f} s to complete in Kafka, "
        f"{result.chunks} chunks, {changes} concurrent changes"
    )


def test_incremental_snapshot_with_a_filter_sends_only_matching_rows(pipeline: Pipeline) -> None:
    """A table added with `snapshot_mode: no_data` has old rows that never streamed; an
    incremental snapshot with `where` sends exactly the matching ones, as `op = r` events."""
    pipeline.sql(ITEMS_DDL)
    config = pipeline.configure(
        ["public.items"], source_options={**CHUNK, "snapshot_mode": "no_data"}
    )
    pipeline.start_debezium()
    pipeline.wait_published()
    pipeline.sql("UPDATE items SET qty = 500 WHERE id = 3")  # streamed: a row in the warehouse
    signal_id = request_configured_snapshot(
        config, ["public.items"], "id % 3 = 0 AND note IS NOT NULL", url=pipeline.url
    )
    result = wait_configured_snapshot(config, signal_id, timeout=180)
    pipeline.replicate_until_caught_up()

    expected = {
        r[0] for r in pipeline.sql("SELECT id FROM items WHERE id % 3 = 0 AND note IS NOT NULL")
    }
    assert result.rows == {"public.items": len(expected)}
    path = config.warehouse.path  # type: ignore[union-attr]
    got = dict(warehouse_sql(path, "SELECT id, _cdc_op FROM items"))
    assert set(got) == expected
    assert got[3] == "r"  # the read of key 3 came after its streamed update, and won
    source = {r[0]: r[1:] for r in pipeline.sql("SELECT id, name, qty, note FROM items")}
    stored = warehouse_sql(path, "SELECT id, name, qty, note FROM items")
    assert {r[0]: r[1:] for r in stored} == {k: source[k] for k in expected}
    # the reads carry Debezium's incremental marker and no lsn of their own
    topic = config.topic_for(config.table("items"))
    values = [m.value() or b"" for m in read_topic(pipeline.stack.bootstrap_servers, topic)]
    reads = [v for v in values if b'"op":"r"' in v]
    assert len(reads) == len(expected)
    assert all(b'"snapshot":"incremental"' in v for v in reads)


def test_bad_requests_are_refused_before_anything_is_written(pipeline: Pipeline) -> None:
    """Unknown tables, tables the connector doesn't capture, tables without a primary key,
    filters that don't parse or name unknown columns, a signal table outside the publication:
    each a precise error, and no signal row."""
    pipeline.sql(ITEMS_DDL)
    pipeline.sql("CREATE TABLE logs (at timestamptz, line text)")
    pipeline.sql("CREATE TABLE other (id int PRIMARY KEY)")
    config = pipeline.configure(["public.items", "public.logs"])
    pipeline.start_debezium()
    pipeline.wait_published()
    url, signals = pipeline.url, "public.debezium_signal"
    captured = [t.source for t in config.tables] + ["public.ghost"]

    def refused(error: type[Exception], match: str, *args: Any) -> None:
        with pytest.raises(error, match=match):
            request_incremental_snapshot(url, signals, *args, captured=captured)

    refused(TableNotCapturedError, r"doesn't capture public\.other", ["items", "other"])
    refused(UnknownTableError, r"public\.ghost does not exist", ["ghost"])
    refused(NoPrimaryKeyError, r"public\.logs has no primary key", ["logs"])
    refused(InvalidFilterError, r"syntax error", ["items"], "qty >")
    refused(InvalidFilterError, r'column "colour" does not exist', ["items"], "colour = 'red'")
    refused(InvalidFilterError, r"argument of WHERE must be type boolean", ["items"], "qty + 1")
    refused(InvalidFilterError, r"SQLSTATE 42601", ["items"], "true); DROP TABLE items; --")
    with pytest.raises(SignalTableNotPublishedError, match="just been created"):
        request_incremental_snapshot(url, "public.late_signal", ["items"])
    assert pipeline.sql("SELECT count(*) FROM debezium_signal") == [(0,)]
    assert pipeline.sql("SELECT count(*) FROM items") == [(3000,)]
    # the signal table is in Debezium's publication without being a replicated table
    published = pipeline.sql(
        "SELECT tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1",
        (config.source.publication_name,),
    )
    assert published == [("debezium_signal",), ("items",), ("logs",)]
    assert notification_topic(config) == f"__debezium-notification.{pipeline.name}"


OPEN_TX_TABLES: list[str | dict[str, Any]] = [
    {"name": "public.items"},
    {"name": "public.soft_items", "soft_delete": True},
    {"name": "public.hist_items", "mode": "scd2"},
]


@pytest.mark.parametrize("engine", ["duckdb", "snowflake"])
def test_a_transaction_open_across_the_window_close_wins_over_the_read(
    pipeline: Pipeline, engine: str, request: pytest.FixtureRequest
) -> None:
    """A transaction updates key 7 and deletes key 8 of three tables (mirror, soft-delete,
    scd2) and stays open while an incremental snapshot reads them (MVCC: the reads see the old
    rows) and completes; then it commits. Debezium sends the reads first and the changes
    after them, with lower change LSNs (written before the window closed) but a later commit:
    the two-part position (commit LSN, change LSN) orders them after the reads, so key 7 ends
    with the update and key 8 deleted, in every table, on both warehouses. (With the change
    LSN alone, the guard refused them: the strict xfail this test was until issue 19.)"""
    p = pipeline
    section = engine_warehouse(p, engine, request)
    for table in ("items", "soft_items", "hist_items"):
        p.sql(ITEMS_DDL.replace("items", table))
    config = p.configure(OPEN_TX_TABLES, warehouse=section)
    p.start_debezium()
    p.replicate_until_caught_up()
    commit_across_a_snapshot(p, config, ["items", "soft_items", "hist_items"])
    p.assert_equal_to_source(f" ({engine})")
    warehouse = open_warehouse(config)
    try:
        versions = warehouse.fetch_history(config.table_target(config.table("hist_items")))
    finally:
        warehouse.close()
    seven = [(r["qty"], r["is_current"]) for r in versions if r["id"] == 7]
    eight = [(r["qty"], r["is_current"], r["_cdc_deleted"]) for r in versions if r["id"] == 8]
    assert seven == [(7, False), (4242, True)], seven  # the snapshot's read opened nothing
    assert eight == [(8, False, True)], eight
    # the commit part is stored: the streamed update carries it, the read before it too
    commits = {r["id"]: r["_cdc_commit_lsn"] for r in versions if r["is_current"]}
    assert commits[7] is not None, commits


def test_an_incremental_snapshot_resumes_after_the_connector_is_killed(pipeline: Pipeline) -> None:
    """Debezium is killed (SIGKILL) after the fifth chunk and started again: the snapshot goes
    on from the offsets Debezium stored, completes under the same id, and the warehouse table,
    emptied before, ends equal to the source."""
    pipeline.sql(
        "CREATE TABLE big (id bigint PRIMARY KEY, body text NOT NULL);"
        "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 20000) g"
    )
    config = pipeline.configure(
        ["public.big"], source_options={"debezium": {"incremental.snapshot.chunk.size": "500"}}
    )
    pipeline.start_debezium()
    pipeline.replicate_until_caught_up()
    path = config.warehouse.path  # type: ignore[union-attr]
    warehouse_sql(path, "DELETE FROM big")

    seen: list[IncrementalSnapshotProgress] = []
    restarts: list[str] = []

    def kill_once(progress: IncrementalSnapshotProgress) -> None:
        seen.append(progress)
        if len(seen) == 5 and not restarts:
            pipeline.stack.stop_debezium(kill=True)
            restarts.append(str(progress.last_key))
            pipeline.start_debezium()

    signal_id = request_configured_snapshot(config, ["big"], url=pipeline.url)
    result = wait_configured_snapshot(config, signal_id, timeout=300, on_progress=kill_once)
    pipeline.replicate_until_caught_up()

    assert restarts, "the connector was not killed mid-snapshot"
    assert result.tables == {"public.big": "SUCCEEDED"}
    keys = [int(p.last_key or 0) for p in seen]
    assert keys[-1] == 20000
    # resumed from Debezium's stored offsets, not from the first chunk (seen: ... 2500, 3000,
    # 2880, 3380 ...: a chunk or so again, as the kill lost the last offsets)
    after_kill = keys[keys.index(int(restarts[0])) + 1 :]
    assert min(after_kill) > 1000 and len(keys) < 50
    pipeline.assert_equal_to_source()


def test_an_incremental_snapshot_of_a_history_table_opens_versions_only_for_missed_changes(
    pipeline: Pipeline,
) -> None:
    """An scd2 table: reads equal to the current versions open nothing; a key whose current
    version was damaged in the warehouse gets one new version from the read (op r); the
    history stays well formed and its current versions equal the source."""
    pipeline.sql(ITEMS_DDL)
    config = pipeline.configure([{"name": "public.items", "mode": "scd2"}], source_options=CHUNK)
    pipeline.start_debezium()
    pipeline.wait_published()  # the initial snapshot is done
    pipeline.sql("UPDATE items SET qty = qty + 100 WHERE id <= 20")  # a second version each
    pipeline.replicate_until_caught_up()
    path = config.warehouse.path  # type: ignore[union-attr]
    assert warehouse_sql(path, "SELECT count(*) FROM items") == [(3020,)]
    warehouse_sql(path, "UPDATE items SET name = 'damaged' WHERE id IN (5, 500) AND is_current")

    signal_id = request_configured_snapshot(config, ["items"], url=pipeline.url)
    assert wait_configured_snapshot(config, signal_id, timeout=180).succeeded
    pipeline.replicate_until_caught_up()

    assert warehouse_sql(path, "SELECT count(*) FROM items") == [(3022,)]
    versions = warehouse_sql(
        path,
        "SELECT id, _cdc_op, name, qty, is_current FROM items WHERE id IN (5, 500) "
        "ORDER BY id, valid_from",
    )
    assert versions == [
        (5, "r", "item-5", 5, False),  # the initial snapshot
        (5, "u", "damaged", 105, False),  # streamed, then damaged in the warehouse
        (5, "r", "item-5", 105, True),  # the incremental read: the missed change
        (500, "r", "damaged", 7, False),
        (500, "r", "item-500", 7, True),
    ]
    report = history_reports(config)["items"]
    assert report.ok, report
    pipeline.assert_equal_to_source()
