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
from stack_support import snowflake_warehouse_section

from cdc.config import Config, load_config
from cdc.local.pipeline import ReplicatorThread
from cdc.model import TableId
from cdc.runtime import open_warehouse
from cdc.snapshot.bulk import BulkOptions, SnapshotError, bulk_snapshot, check_request

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults

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


def _items(pipeline: Pipeline, rows: int = ROWS, *, array: bool = True) -> None:
    """``items``; with ``array`` it has a text[] column, which the CSV read doesn't take, so
    the snapshot reads rows (without: Arrow columns from CSV, the fast path)."""
    tags = ", tags text[]" if array else ", tags text"
    pipeline.sql(
        "CREATE TABLE items (id int PRIMARY KEY, v text, n numeric(12,2), "
        f"at timestamptz NOT NULL DEFAULT now(){tags})"
    )
    value = "ARRAY['a', g::text]" if array else "'a,' || g"
    pipeline.sql(
        f"INSERT INTO items SELECT g, 'v' || g, g / 7.0, now(), {value} "
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
    _items(pipeline, array=False)
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
    assert result.rows >= ROWS * 0.8 and result.chunks_skipped == 0 and result.columnar
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
    assert result.resumed and result.chunks == 201 and not result.columnar
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
    cdc = Path(sys.executable).with_name("cdc")
    out = subprocess.run(
        [str(cdc), "snapshot", "nokey", "items", "-c", str(pipeline.workdir / "cdc.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out
    assert "snapshot refused" in out.stderr and "public.nokey has no primary key" in out.stderr
    assert not (pipeline.workdir / "warehouse.duckdb").exists()  # nothing was touched


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


def test_the_csv_read_stages_exactly_what_the_row_read_stages(pipeline: Pipeline) -> None:
    """Both reads of one chunk, on every kind the CSV path takes and values that are hard in
    CSV (quotes, commas, newlines, empty vs NULL, NaN/infinities, µs, wide numbers)."""
    pipeline.sql("CREATE TYPE mood AS ENUM ('sad', 'ok')")
    pipeline.sql(
        "CREATE TABLE every (id bigint PRIMARY KEY, s smallint, i int, f4 real, f8 float8, "
        "b bool, t text, vc varchar(10), ch char(3), e mood, j jsonb, js json, u uuid, "
        "n numeric(20,6), d date, ts timestamp, tz timestamptz)"
    )
    pipeline.sql(
        "INSERT INTO every VALUES "
        "(1, -32768, 2147483647, 'NaN', 'Infinity', true, 'a,\"b\"\nc', '', 'x', 'sad', "
        '\'{"k": [1, "two"]}\', \'{ "sp" : 1 }\', gen_random_uuid(), 12345678901234.123456, '
        "'2026-02-28', '2026-02-28 23:59:59.999999', '2026-02-28 23:59:59.000001+05:30'), "
        "(2, NULL, NULL, '-Infinity', 1e-300, false, '', NULL, NULL, NULL, NULL, NULL, NULL, "
        "-0.000001, '0001-01-01', '1970-01-01', '1999-12-31 23:00:00-01'), "
        "(3, 0, 0, 1.5, -0.0, NULL, 'NULL', '\\N', '\"', 'ok', 'null', '[]', NULL, 0, NULL, "
        "NULL, NULL)"
    )
    import pyarrow as pa

    from cdc.snapshot.bulk import _Readers
    from cdc.snapshot.plan import Chunk, schema_with_key_not_null
    from cdc.source.catalog import reflect_table, source_connection
    from warehouse.arrow import column_array, csv_columns, csv_readable
    from warehouse.base import TableTarget

    with source_connection(pipeline.url) as conn:
        schema = schema_with_key_not_null(reflect_table(conn, TableId("public", "every")))
        snap = conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ").close()
        name = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert name is not None and snap is None
        assert csv_readable(schema)
        whole = Chunk(0, None, None)
        by_csv = _Readers(pipeline.url, name[0], 1, columns=True)
        by_rows = _Readers(pipeline.url, name[0], 1, columns=False)
        try:
            arrow = by_csv.read(schema, whole, None)
            rows = by_rows.read(schema, whole, None)
        finally:
            by_csv.close()
            by_rows.close()
    assert isinstance(arrow, pa.Table) and isinstance(rows, list) and len(rows) == 3
    target = TableTarget("every")
    columns = list(zip(*rows, strict=True))
    for i, column in enumerate(schema.columns):
        expected = column_array(column.type, columns[i], table=target.name, column=column.name)
        got = arrow.column(i).combine_chunks()
        assert got.type == expected.type, column.name
        assert got.to_pylist() == expected.to_pylist() or (
            column.name == "f4" and str(got.to_pylist()) == str(expected.to_pylist())
        ), (column.name, got.to_pylist(), expected.to_pylist())
    with pytest.raises(pa.ArrowInvalid):  # a value Arrow can't take exactly: the row read
        csv_columns(schema, b"1,,,,,,,,,,,,,12345678901234567.1,,,\n")


def test_bulk_snapshot_into_snowflake_under_concurrent_writes(
    pipeline: Pipeline, fakesnow_server: dict[str, Any]
) -> None:
    """Snowflake (fakesnow's server, the real connector): chunks go through the snapshot-read
    event path, with a stream running; the end equals the source."""
    _items(pipeline, 3000)
    section = snowflake_warehouse_section(fakesnow_server, f"CDC_{pipeline.name.upper()}")
    # Two sessions apply to one table here (the consumer and the snapshot). Snowflake makes the
    # second wait for the first's table lock; fakesnow (DuckDB) fails it with a write-write
    # conflict, answered as HTTP 500, which the connector retries forever on the aborted
    # session unless a network timeout ends it; then the batch is rolled back and retried
    section["network_timeout_seconds"] = 20
    config = _no_data_config(pipeline, ["public.items"], batch_size=1000, warehouse=section)
    pipeline.start_debezium()
    pipeline.wait_published()
    consumer = ReplicatorThread(config).start()
    writer = Writer(pipeline.url, 3000)
    writer.start()
    warehouse = open_warehouse(config)
    try:
        (result,) = bulk_snapshot(config, warehouse, ["items"], BulkOptions(rows_per_chunk=1000))
    finally:
        warehouse.close()
    writer.stop.set()
    writer.join(10)
    assert writer.error is None and writer.commits > 10
    pipeline.wait_published()
    consumer.finish()
    assert result.chunks in (3, 4) and not result.columnar and result.rows >= 2500
    pipeline.assert_equal_to_source()
