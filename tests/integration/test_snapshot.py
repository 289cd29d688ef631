"""Bulk snapshots on the real chain: PostgreSQL (rows that never streamed: the connector
starts with ``snapshot_mode: no_data``) -> COPY chunks -> warehouse, while Debezium streams
concurrent writes through the broker and the consumer applies them."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import yaml

from cdc.config import Config, load_config
from cdc.local.pipeline import ReplicatorThread
from cdc.runtime import open_warehouse
from cdc.snapshot.bulk import BulkOptions, SnapshotError, bulk_snapshot, check_request

if TYPE_CHECKING:
    from conftest import Pipeline

pytestmark = pytest.mark.integration

ROWS = 12_000


def _no_data_config(pipeline: Pipeline, tables: list[Any], **kwargs: Any) -> Config:
    """The pipeline's config with ``snapshot_mode: no_data``: existing rows never stream."""
    pipeline.configure(tables, **kwargs)
    path = pipeline.workdir / "cdc.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["source"]["snapshot_mode"] = "no_data"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    pipeline.config = load_config(path)
    return pipeline.config


def _items(pipeline: Pipeline, rows: int = ROWS) -> None:
    pipeline.sql(
        "CREATE TABLE items (id int PRIMARY KEY, v text, n numeric(12,2), "
        "at timestamptz NOT NULL DEFAULT now(), tags text[])"
    )
    pipeline.sql(
        "INSERT INTO items SELECT g, 'v' || g, g / 7.0, now(), ARRAY['a', g::text] "
        "FROM generate_series(1, %s) g",
        (rows,),
    )


class Writer(threading.Thread):
    """Steady random inserts, updates and deletes over the whole key range (and beyond)."""

    def __init__(self, url: str, top: int) -> None:
        super().__init__(daemon=True)
        self.url, self.top = url, top
        self.stop = threading.Event()
        self.commits = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rnd = random.Random(7)
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stop.is_set():
                    with conn.transaction():
                        for _ in range(5):
                            k = rnd.randint(1, self.top + 2000)
                            op = rnd.random()
                            if op < 0.5:
                                conn.execute(
                                    "INSERT INTO items (id, v) VALUES (%s, %s) ON CONFLICT (id) "
                                    "DO UPDATE SET v = excluded.v, n = items.n + 1",
                                    (k, f"w{self.commits}"),
                                )
                            elif op < 0.8:
                                conn.execute(
                                    "UPDATE items SET v = %s, tags = tags || 'x'::text "
                                    "WHERE id = %s",
                                    (f"u{self.commits}", k),
                                )
                            else:
                                conn.execute("DELETE FROM items WHERE id = %s", (k,))
                    self.commits += 1
                    time.sleep(0.002)
        except BaseException as exc:
            self.error = exc


def test_bulk_snapshot_under_concurrent_writes_and_an_open_transaction_equals_the_source(
    pipeline: Pipeline,
) -> None:
    _items(pipeline)
    config = _no_data_config(pipeline, ["public.items"], batch_size=2000, linger_ms=50)
    pipeline.start_debezium()
    pipeline.wait_published()
    consumer = ReplicatorThread(config).start()
    writer = Writer(pipeline.url, ROWS)
    # a transaction open across the snapshot: its changes have LSNs below any position read
    # at the snapshot, are not in it, and must win
    long_tx = psycopg.connect(pipeline.url)
    long_tx.execute("UPDATE items SET v = 'long transaction' WHERE id BETWEEN 100 AND 120")
    writer.start()
    time.sleep(1)
    warehouse = open_warehouse(config)
    try:
        loaded: list[int] = []
        results = bulk_snapshot(
            config,
            warehouse,
            ["items"],
            BulkOptions(rows_per_chunk=1500, workers=2, on_chunk=lambda c: loaded.append(c.index)),
        )
    finally:
        warehouse.close()
    long_tx.commit()
    long_tx.close()
    time.sleep(1)
    writer.stop.set()
    writer.join(10)
    assert writer.error is None, writer.error
    assert writer.commits > 50, writer.commits
    pipeline.wait_published()
    consumer.finish()

    (result,) = results
    assert result.chunks == len(loaded) >= 8 and sorted(loaded) == list(range(result.chunks))
    assert result.rows >= ROWS * 0.8 and result.chunks_skipped == 0
    assert not (pipeline.workdir / ".cdc" / "snapshots" / "items.json").exists()
    pipeline.assert_equal_to_source()
    held = pipeline.sql("SELECT count(*) FROM items WHERE v = 'long transaction'")
    assert held[0][0] > 0  # the long transaction's rows survived in the source ...
    warehouse = open_warehouse(config)
    try:
        rows = warehouse.fetch_table(config.table_target(config.tables[0]))
    finally:
        warehouse.close()
    # ... and won over the snapshot's older values in the warehouse
    assert sum(r["v"] == "long transaction" for r in rows) == held[0][0]


def test_a_stopped_snapshot_resumes_without_reloading_finished_chunks(pipeline: Pipeline) -> None:
    _items(pipeline, 6000)
    config = _no_data_config(pipeline, ["public.items"])
    pipeline.start_debezium()
    pipeline.wait_published()
    warehouse = open_warehouse(config)
    try:
        first = bulk_snapshot(
            config, warehouse, ["items"], BulkOptions(rows_per_chunk=1000, stop_after_chunks=3)
        )[0]
        assert (first.chunks, first.chunks_loaded, first.rows) == (7, 3, 3000)
        assert (pipeline.workdir / ".cdc" / "snapshots" / "items.json").exists()
        seen: list[tuple[int, bool]] = []
        second = bulk_snapshot(
            config,
            warehouse,
            ["items"],
            BulkOptions(rows_per_chunk=1000, on_chunk=lambda c: seen.append((c.index, c.skipped))),
        )[0]
    finally:
        warehouse.close()
    assert second.resumed and second.snapshot_id == first.snapshot_id
    assert (second.chunks_skipped, second.chunks_loaded, second.rows) == (3, 4, 3000)
    assert sorted(i for i, skipped in seen if not skipped) == sorted(
        set(range(7)) - {i for i, skipped in seen if skipped}
    )
    pipeline.assert_equal_to_source()


def test_a_killed_snapshot_process_resumes(pipeline: Pipeline) -> None:
    """kill -9 of `cdc snapshot` halfway, then a rerun: finished chunks are not loaded again."""
    _items(pipeline, 40_000)
    config = _no_data_config(pipeline, ["public.items"])
    pipeline.start_debezium()
    pipeline.wait_published()
    cdc = Path(sys.executable).with_name("cdc")
    cmd = [str(cdc), "snapshot", "items", "-c", str(pipeline.workdir / "cdc.yaml"),
           "--rows-per-chunk", "200", "--workers", "1", "--log-level", "DEBUG"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output: list[str] = []
    for line in proc.stdout:
        output.append(line)
        if sum("chunk loaded" in seen for seen in output) >= 10:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    plan_file = pipeline.workdir / ".cdc" / "snapshots" / "items.json"
    assert plan_file.exists(), "".join(output)
    group = "snapshot:" + json.loads(plan_file.read_text())["id"]
    warehouse = open_warehouse(config)
    try:
        finished = len(warehouse.load_offsets(group))
        assert 10 <= finished < 150, finished
        result = bulk_snapshot(config, warehouse, ["items"], BulkOptions(rows_per_chunk=200))[0]
    finally:
        warehouse.close()
    assert result.resumed and result.chunks == 201
    assert result.chunks_skipped == finished and result.chunks_loaded == 201 - finished
    assert result.rows == 40_000 - 200 * finished
    pipeline.assert_equal_to_source()


def test_bad_requests_are_refused_before_any_work(pipeline: Pipeline) -> None:
    _items(pipeline, 10)
    pipeline.sql("CREATE TABLE nokey (a int, b text)")
    pipeline.sql("CREATE TABLE other (id int PRIMARY KEY)")
    config = _no_data_config(pipeline, ["public.items", "public.nokey", "public.ghost"])
    with pytest.raises(SnapshotError, match=r"'public\.other' is not configured"):
        check_request(config, ["other"])
    with pytest.raises(SnapshotError, match=r"public.ghost does not exist"):
        check_request(config, ["ghost"])
    with pytest.raises(SnapshotError, match=r"public.nokey has no primary key"):
        check_request(config, ["nokey"])
    with pytest.raises(SnapshotError, match=r"does not work on public.items: .*syntax error"):
        check_request(config, ["items"], where="id = = 3")
    with pytest.raises(SnapshotError, match=r'column "nope" does not exist'):
        check_request(config, ["items"], where="nope = 1")
    with pytest.raises(SnapshotError, match=r"replication slot .* does not exist"):
        check_request(config, ["items"], where="id < 5")


def test_a_filtered_snapshot_into_an_scd2_table_opens_one_version_per_row(
    pipeline: Pipeline,
) -> None:
    _items(pipeline, 50)
    config = _no_data_config(pipeline, [{"name": "public.items", "mode": "scd2"}])
    pipeline.start_debezium()
    pipeline.wait_published()
    warehouse = open_warehouse(config)
    target = config.table_target(config.tables[0])
    try:
        (result,) = bulk_snapshot(config, warehouse, ["items"], BulkOptions(where="id % 5 = 0"))
        assert result.rows == 10 and result.upserted == 10
        history = warehouse.fetch_history(target)
        assert sorted(r["id"] for r in history) == list(range(5, 51, 5))
        assert all(r["is_current"] and r["_cdc_op"] == "r" for r in history)
        # the same snapshot again opens no version: the values are the same
        (again,) = bulk_snapshot(config, warehouse, ["items"], BulkOptions(where="id % 5 = 0"))
        assert again.rows == 10 and len(warehouse.fetch_history(target)) == 10
        assert warehouse.history_report(target).ok
    finally:
        warehouse.close()
