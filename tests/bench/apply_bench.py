"""DuckDB apply: events/s of one big insert batch and one big update batch, and what opening and
closing the file per apply costs next to a held connection.

A DuckDB file gets a table ``bench`` (bigint key + 9 columns, text and numeric(12,2)
alternating); ``--events`` inserts (50,000 by default) are applied in one batch, then one update
of every row in one batch, on a held connection (``keep_open``). Then 1-event applies on the
same file (now holding ``--events`` rows): their mean time with the connection held, and with
the file opened and closed per apply (the library's default). No stack needed. A benchmark: it
prints figures and never fails on timing.

Run: ``.venv/bin/python tests/bench/apply_bench.py --events 50000`` (also part of make bench,
``APPLY_ARGS``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for sample_data

from sample_data import batch, ev

from cdc.model import Column, ColumnType, Kind, Op, TableId, TableSchema
from warehouse.base import OffsetRow, TableTarget
from warehouse.duckdb.adapter import DuckDBWarehouse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args(argv)
    n = args.events
    tmp_path = Path(tempfile.mkdtemp(prefix="cdc-apply-bench-"))
    cols = [Column("id", ColumnType(Kind.INT64))] + [
        Column(
            f"c{i}",
            ColumnType(
                Kind.TEXT if i % 2 else Kind.DECIMAL,
                12 if i % 2 == 0 else None,
                2 if i % 2 == 0 else None,
            ),
        )
        for i in range(9)
    ]
    schema = TableSchema(TableId("public", "bench"), tuple(cols), ("id",))
    target = TableTarget("bench")
    events = [
        ev(
            Op.CREATE,
            i,
            i + 1,
            schema=schema,
            **{f"c{j}": (f"v{i}-{j}" if j % 2 else Decimal(i) / 100) for j in range(9)},
        )
        for i in range(n)
    ]
    held = DuckDBWarehouse(tmp_path / "bench.duckdb", keep_open=True)
    held.apply([batch(*events[:10], target=target)], [])
    started = time.perf_counter()
    held.apply([batch(*events, target=target)], [OffsetRow("g", "t", 0, n)])
    insert_s = time.perf_counter() - started
    updates = [
        ev(
            Op.UPDATE,
            e.key["id"],
            2 * n + e.key["id"],
            schema=schema,
            **{k: v for k, v in (e.after or {}).items() if k != "id"},
        )
        for e in events
    ]
    started = time.perf_counter()
    held.apply([batch(*updates, target=target)], [])
    update_s = time.perf_counter() - started
    held.close()

    small = [
        batch(ev(Op.UPDATE, 1, 20 * n + i, schema=schema, c1="x"), target=target) for i in range(20)
    ]
    timings = {}
    for keep_open in (True, False):
        w = DuckDBWarehouse(tmp_path / "bench.duckdb", keep_open=keep_open)
        w.apply([small[0]], [])
        started = time.perf_counter()
        for b in small[1:10] if keep_open else small[10:]:
            w.apply([b], [])
        timings[keep_open] = (time.perf_counter() - started) / (9 if keep_open else 10)
        w.close()
    print(
        f"{n:,}-event insert batch (10 cols): {insert_s:.2f}s = {n / insert_s:,.0f} ev/s; "
        f"{n:,}-event update batch: {update_s:.2f}s = {n / update_s:,.0f} ev/s"
    )
    print(
        f"1-event apply, held connection: {timings[True] * 1000:.1f} ms; "
        f"open/close per apply: {timings[False] * 1000:.1f} ms "
        f"(overhead {(timings[False] - timings[True]) * 1000:.1f} ms, table of {n:,} rows)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
