"""`make bench` (snapshot part): bulk snapshot rows/s PostgreSQL -> DuckDB, beside the raw
COPY-out rate of the same rows measured in the same run.

A benchmark, not a test: it exits 0 whatever the figures and says whether the target was met.
One local stack (PostgreSQL with logical decoding; the broker starts too but carries nothing),
on loopback, stopped by pid at the end.

``bench_snap`` (bigint key, text, numeric(12,2), timestamptz, int, boolean, jsonb) gets
``--rows`` rows in one INSERT ... SELECT. A logical slot stands in for the connector's (the
snapshot reads its ``restart_lsn``).

(a) COPY out, rows/s: ``COPY (SELECT ...) TO STDOUT`` of the whole table through psycopg, bytes
    only (no parsing): what the server and the socket give.
(b) COPY + parse, rows/s: the same with ``Copy.rows()`` and the snapshot's loaders (the
    :mod:`cdc.model` values), one connection.
(c) bulk snapshot, rows/s: ``cdc.snapshot.bulk.snapshot_table`` into a fresh DuckDB file
    (key-range chunks, ``--workers`` readers, applied through the warehouse's guarded apply).
    Target: >= 200k rows/s. Ratios (c)/(a) and (c)/(b) show what the apply costs.

Usage: ``.venv/bin/python tests/bench/snapshot.py --rows 1000000 [--workers 2] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console

from cdc.local.pipeline import write_stack_config
from cdc.local.stack import LocalStack
from cdc.runtime import open_warehouse
from cdc.snapshot.bulk import BulkOptions, check_request, snapshot_table
from cdc.snapshot.plan import copy_types
from cdc.source.catalog import source_connection

TARGET = 200_000


def fill(url: str, rows: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_snap")
        conn.execute(
            "CREATE TABLE bench_snap (id bigint PRIMARY KEY, name text, amount numeric(12,2), "
            "at timestamptz, qty int, ok boolean, doc jsonb)"
        )
        conn.execute(
            "INSERT INTO bench_snap SELECT g, 'customer ' || g, (g %% 100000) / 100.0, "
            "timestamptz '2026-01-01' + g * interval '1 second', g %% 1000, g %% 2 = 0, "
            "jsonb_build_object('g', g) FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE bench_snap")
    return time.perf_counter() - started


def copy_out(url: str, parse: bool, types: list[str]) -> tuple[int, float]:
    query = sql.SQL("COPY (SELECT * FROM bench_snap) TO STDOUT")
    with source_connection(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        n = 0
        with cur.copy(query) as copy:
            if parse:
                copy.set_types(types)
                for _ in copy.rows():
                    n += 1
            else:
                for block in copy:
                    n += bytes(block).count(b"\n")
        return n, time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows (default 1000000)")
    p.add_argument("--workers", type=int, default=2, help="snapshot readers (default 2)")
    p.add_argument("--rows-per-chunk", type=int, default=100_000)
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = p.parse_args()
    say = Console(highlight=False).print
    base = Path(tempfile.mkdtemp(prefix="cdc-bench-snap-", dir="/tmp"))
    os.chmod(base, 0o755)
    stack = LocalStack(base / "stack", pg_port=None, kafka_port=None)
    figures: dict[str, float] = {}
    try:
        stack.up()
        url = stack.pg_url()
        say(f"filling bench_snap with {args.rows:,} rows ...")
        figures["fill_s"] = fill(url, args.rows)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot('bench_snap_slot', 'pgoutput')")
        config = write_stack_config(
            base / "cdc.yaml",
            stack,
            ["public.bench_snap"],
            warehouse_path=base / "snap.duckdb",
            slot_name="bench_snap_slot",
        )
        (request,) = check_request(config, ["bench_snap"])
        types = copy_types(request.schema)
        n, secs = copy_out(url, False, types)
        figures["copy_out_rows_s"] = n / secs
        say(f"(a) COPY out (bytes):      {n / secs:12,.0f} rows/s  ({n:,} rows, {secs:.2f} s)")
        n, secs = copy_out(url, True, types)
        figures["copy_parse_rows_s"] = n / secs
        say(f"(b) COPY out + parse:      {n / secs:12,.0f} rows/s  ({secs:.2f} s)")
        warehouse = open_warehouse(config)
        try:
            result = snapshot_table(
                config,
                warehouse,
                request,
                BulkOptions(
                    rows_per_chunk=args.rows_per_chunk,
                    workers=args.workers,
                    state_dir=base / "snapshots",
                ),
            )
            counts = warehouse.row_counts() if hasattr(warehouse, "row_counts") else {}
        finally:
            warehouse.close()
        rate = result.rows_per_second
        figures["snapshot_rows_s"] = rate
        figures["snapshot_s"] = result.seconds
        say(
            f"(c) bulk snapshot -> DuckDB:{rate:11,.0f} rows/s  ({result.rows:,} rows in "
            f"{result.chunks} chunks, {result.seconds:.2f} s, {args.workers} readers)"
        )
        say(
            f"    plan {result.plan_seconds:.2f} s, waiting for readers "
            f"{result.wait_seconds:.2f} s, warehouse load {result.load_seconds:.2f} s; "
            f"warehouse rows: {counts}"
        )
        say(
            f"    ratio (c)/(a) = {rate / figures['copy_out_rows_s']:.2f}, "
            f"(c)/(b) = {rate / figures['copy_parse_rows_s']:.2f}"
        )
        verdict = "met" if rate >= TARGET else "NOT met"
        say(f"    target >= {TARGET:,} rows/s: {verdict} ({rate / TARGET:.2f}x)")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot('bench_snap_slot')")
    finally:
        stack.down()
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
