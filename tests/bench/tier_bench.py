"""Lifecycle tiering: rows/s of one `cdc tier` pass moving closed scd2 versions out of DuckDB.

A DuckDB file gets an scd2 table ``bench_dim`` (bigint key, text, numeric(12,2), timestamptz)
registered through the warehouse (one small batch), then ``rows`` closed versions bulk-inserted
by SQL, their closing times spread over 24 months ending 40 days ago (all due: hot is 30
days). The figure is ``rows / seconds`` of one pass (select the due rows as Arrow, write one
zstd Parquet file per month, read each back and check rows + checksum, one transaction deleting
the hot rows and redefining the history view), next to the raw rate of DuckDB writing the same
rows to Parquet. Local folder; no stack needed. A benchmark: it prints figures and the targets
it missed, and exits 0 whenever it ran.

Run: ``.venv/bin/python tests/bench/tier_bench.py --rows 1000000`` (also part of make bench).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from cdc.config import load_config
from cdc.model import (
    ChangeEvent,
    Column,
    ColumnType,
    KafkaOrigin,
    Kind,
    Op,
    SourcePosition,
    TableId,
    TableSchema,
)
from cdc.runtime import open_warehouse
from cdc.tiering.run import tier
from warehouse.base import TableBatch

SCHEMA = TableSchema(
    TableId("public", "bench_dim"),
    (
        Column("id", ColumnType(Kind.INT64), nullable=False),
        Column("name", ColumnType(Kind.TEXT)),
        Column("price", ColumnType(Kind.DECIMAL, precision=12, scale=2)),
        Column("seen", ColumnType(Kind.TIMESTAMPTZ)),
    ),
    ("id",),
)

RATIO_TARGET = 0.25  # of DuckDB's own COPY TO parquet of the same rows (issue 22)

CONFIG = """\
source: {host: 127.0.0.1, port: 5432, database: bench, user: postgres, password: x}
kafka: {bootstrap_servers: 127.0.0.1:9092, group_id: bench}
warehouse: {type: duckdb, path: bench.duckdb}
tables:
  - name: public.bench_dim
    mode: scd2
    tiering: {hot: 30d, warm: 3650d, retention: 7300d}
tiering: {target: tiers}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cdc-tier-bench-"))
    (work / "cdc.yaml").write_text(CONFIG)
    config = load_config(work / "cdc.yaml")
    target = config.table_target(config.tables[0])
    now = dt.datetime.now(dt.UTC)
    seed = ChangeEvent(
        op=Op.CREATE, schema=SCHEMA, key={"id": 0}, before=None,
        after={"id": 0, "name": "seed", "price": None, "seen": None},
        position=SourcePosition(1, 1, int(now.timestamp() * 1e6), False),
        origin=KafkaOrigin("bench", 0, 0),
    )  # fmt: skip
    wh = open_warehouse(config)
    wh.apply([TableBatch(target, SCHEMA, (seed,))], [])
    wh.close()
    with duckdb.connect(str(config.warehouse.path)) as con:
        con.execute(
            """
            INSERT INTO main.bench_dim BY NAME
            SELECT g + 1 AS id, 'name ' || g AS name, (g % 100000) / 100.0 AS price,
                   now() AS seen, g + 10 AS _cdc_lsn, g AS _cdc_txid, 'u' AS _cdc_op,
                   now() AS _cdc_source_ts, now() AS _cdc_loaded_at, false AS _cdc_deleted,
                   now() - INTERVAL 780 DAY + g * (INTERVAL 730 DAY / ?) AS valid_from,
                   now() - INTERVAL 770 DAY + g * (INTERVAL 730 DAY / ?) AS valid_to,
                   false AS is_current
            FROM range(?) t(g)
            """,
            [args.rows, args.rows, args.rows],
        )
        started = time.perf_counter()
        con.execute(
            f"COPY (SELECT * FROM main.bench_dim WHERE valid_to IS NOT NULL) TO "
            f"'{work / 'raw.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
        )
        raw = time.perf_counter() - started
    wh = open_warehouse(config)
    started = time.perf_counter()
    [result] = tier(config, wh)
    seconds = time.perf_counter() - started
    wh.close()
    moved = result.to_warm + result.to_cold
    files = f"{result.files.get('warm', 0)} warm + {result.files.get('cold', 0)} cold files"
    print(f"tier pass: {moved:,} rows moved in {seconds:.2f} s = {moved / seconds:,.0f} rows/s "
          f"({files})")  # fmt: skip
    ratio = raw / seconds * (moved / args.rows)
    print(f"raw DuckDB COPY TO parquet of the same rows: {args.rows / raw:,.0f} rows/s "
          f"(the pass runs at {ratio:.0%} of it)")  # fmt: skip
    missed = []
    if moved != args.rows:  # every version closed 40+ days ago: all are due (hot: 30d)
        missed.append(f"rows moved {moved:,} of {args.rows:,}")
    if ratio < RATIO_TARGET:
        missed.append(f"ratio {ratio:.2f} < {RATIO_TARGET} x raw COPY")
    print(
        f"tiering targets: {'MISSED: ' + '; '.join(missed) if missed else 'met'} "
        "(a benchmark, not a test: exit 0 whenever it ran)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
