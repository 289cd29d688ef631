"""(d) reconcile: ``cdc reconcile`` over >= 1M equal rows, PostgreSQL vs DuckDB.

``bench_recon`` (bigint key, text, numeric(12,2), timestamptz, boolean, date) gets ``rows``
rows in PostgreSQL. The DuckDB side is built through the warehouse itself: one repair batch
creates the target table and registers it, then the rest is bulk-loaded from a PostgreSQL
``COPY ... TO STDOUT`` (CSV) with the same values, so both sides hold equal rows. The figure is
``rows / seconds`` of one ``reconcile()`` of the table (reflect, counts + checksums on both
engines concurrently, nothing fetched since the table agrees, the audit row), with the ratio to
the target of 1M rows/s. A benchmark: it prints figures and never fails on timing.

Run alone: ``.venv/bin/python tests/bench/reconcile_bench.py --rows 1000000`` (starts its own
local stack), or as part of ``make bench``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import psycopg

from cdc.compare import source_connection
from cdc.local.pipeline import write_stack_config
from cdc.local.stack import LocalStack
from cdc.model import TableId
from cdc.reconcile.repair import repair_batch
from cdc.reconcile.run import ReconcileSettings, reconcile
from cdc.source.catalog import reflect_table
from warehouse.duckdb.adapter import DuckDBWarehouse

TARGET_ROWS_PER_S = 1_000_000
TABLE = "bench_recon"
COLUMNS = "id, name, amount, happened, flag, day"


def fill_source(url: str, rows: int) -> float:
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, name text, amount numeric(12,2), "
            "happened timestamptz, flag boolean, day date)"
        )
        conn.execute(
            f"INSERT INTO {TABLE} SELECT g, 'name-' || g, (g %% 100000) / 100.0, "
            "timestamptz '2026-01-01 00:00:00+00' + g * interval '1.000001 second', g %% 3 = 0, "
            "date '2020-01-01' + (g %% 2000)::int FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute(f"VACUUM ANALYZE {TABLE}")
    return time.monotonic() - started


def fill_warehouse(url: str, path: Path, workdir: Path) -> float:
    """The same rows in DuckDB: the table made by one repair batch, the rest bulk-loaded."""
    started = time.monotonic()
    with source_connection(url) as conn:
        schema = reflect_table(conn, TableId("public", TABLE))
        first = conn.execute(f"SELECT {COLUMNS} FROM {TABLE} WHERE id = 1").fetchone()
        assert first is not None
        row = dict(zip(schema.names, first, strict=True))
    wh = DuckDBWarehouse(path)
    from cdc.config import load_config

    target = load_config(workdir / "cdc.yaml").table_target(
        load_config(workdir / "cdc.yaml").tables[0]
    )
    wh.apply([repair_batch(target, schema, [row], [], 1)], [])
    csv = workdir / "bench_recon.csv"
    with psycopg.connect(url) as conn, csv.open("wb") as out, conn.cursor() as cur:
        copy_sql = f"COPY (SELECT {COLUMNS} FROM {TABLE} WHERE id > 1) TO STDOUT WITH CSV"
        with cur.copy(copy_sql) as copy:
            for chunk in copy:
                out.write(chunk)
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            f"INSERT INTO main.\"{TABLE}\" ({COLUMNS}, _cdc_lsn, _cdc_op) SELECT *, 1, 'r' FROM "
            "read_csv(?, header = false, columns = {'id': 'BIGINT', 'name': 'VARCHAR', "
            "'amount': 'DECIMAL(12,2)', 'happened': 'TIMESTAMPTZ', 'flag': 'BOOLEAN', "
            "'day': 'DATE'})",
            [str(csv)],
        )
    finally:
        con.close()
    csv.unlink()
    return time.monotonic() - started


def run_reconcile_bench(
    stack: LocalStack, workdir: Path, rows: int, say: Callable[[str], Any]
) -> dict[str, Any]:
    """Fill both sides, reconcile once; the figures (``reconcile_*`` keys)."""
    url = stack.pg_url()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "reconcile.duckdb"
    path.unlink(missing_ok=True)
    config = write_stack_config(workdir / "cdc.yaml", stack, [f"public.{TABLE}"],
                                warehouse_path=path, slot_name="bench_recon_slot")  # fmt: skip
    source_s = fill_source(url, rows)
    warehouse_s = fill_warehouse(url, path, workdir)
    say(f"  filled {rows:,} rows: PostgreSQL {source_s:.1f} s, DuckDB {warehouse_s:.1f} s")
    started = time.perf_counter()
    report = reconcile(config, settings=ReconcileSettings())
    seconds = time.perf_counter() - started
    result = report.tables[0]
    rate = rows / seconds if seconds else 0.0
    say(
        f"  reconcile: {result.status}, {result.source_rows:,} vs {result.warehouse_rows:,} "
        f"rows, {result.ranges_checked} range(s), {result.rows_fetched} rows fetched, "
        f"{seconds:.2f} s = [bold]{rate:,.0f} rows/s[/] "
        f"({rate / TARGET_ROWS_PER_S:.2f} x the target {TARGET_ROWS_PER_S:,} rows/s)"
    )
    return {
        "reconcile_rows": rows,
        "reconcile_status": result.status,
        "reconcile_seconds": round(seconds, 3),
        "reconcile_rows_per_s": round(rate),
        "reconcile_ratio_to_target": round(rate / TARGET_ROWS_PER_S, 3),
        "reconcile_target_rows_per_s": TARGET_ROWS_PER_S,
        "reconcile_met": rate >= TARGET_ROWS_PER_S and result.status == "ok",
    }


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="equal rows (1000000)")
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    base = Path(tempfile.mkdtemp(prefix="cdc-bench-recon-", dir="/tmp"))
    base.chmod(0o755)
    stack = LocalStack(base / "stack", pg_port=None, kafka_port=None, database="bench")
    try:
        stack.up()
        console.print("[bold](d) reconcile[/]: equal tables, PostgreSQL vs DuckDB")
        figures = run_reconcile_bench(stack, base / "work", args.rows, console.print)
    finally:
        stack.down(purge=True)
    console.print(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
