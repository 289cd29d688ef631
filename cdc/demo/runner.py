"""``cdc demo``: start the local stack, create the shop, run a random workload while
replicating into DuckDB, wait until caught up, compare every table (the current versions of
the SCD2 tables), check the SCD2 history invariants, print a summary, and stop everything it
started."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cdc.compare import TableDiff
from cdc.config import Config
from cdc.demo.shop import SHOP_DDL, SHOP_TABLE_CONFIG
from cdc.demo.workload import ShopWorkload
from cdc.local.pipeline import (
    ReplicatorThread,
    compare_all,
    history_reports,
    start_debezium,
    wait_until_published,
    write_stack_config,
)
from cdc.local.stack import LocalStack
from cdc.runtime import open_warehouse
from warehouse.base import HistoryReport
from warehouse.sql import HISTORY_CHECKS


def history_failures(report: HistoryReport) -> dict[str, int]:
    """The invariants a history breaks, with how many keys or versions break each."""
    counts = {name: int(getattr(report, name)) for name in HISTORY_CHECKS}
    return {name: n for name, n in counts.items() if n}


@dataclass
class DemoResult:
    ok: bool
    events: int
    tables: list[TableDiff]
    warehouse: Path
    seconds: float
    workload_changes: int
    workload_transactions: int
    latencies_s: list[float] = field(default_factory=list)
    dead_letters: int = 0
    replicate_seconds: float = 0.0
    modes: dict[str, str] = field(default_factory=dict)  # warehouse table -> mirror | scd2
    histories: dict[str, HistoryReport] = field(default_factory=dict)  # scd2 tables
    config: Path | None = None  # the cdc.yaml the demo wrote
    history_example: tuple[str, str, int] | None = None  # (table, key, versions): most versions

    def _table_json(self, t: TableDiff) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": t.name,
            "mode": self.modes.get(t.name, "mirror"),
            "source_rows": t.source_rows,
            "warehouse_rows": t.warehouse_rows,
            "diffs": t.diffs,
        }
        report = self.histories.get(t.name)
        if report is not None:
            doc["versions"] = report.versions
            doc["current_versions"] = report.current
            doc["history_ok"] = report.ok
            if not report.ok:
                doc["history_failures"] = history_failures(report)
                doc["history_examples"] = list(report.examples)
        return doc

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "tables": [self._table_json(t) for t in self.tables],
            "warehouse": str(self.warehouse),
        }


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_demo(
    *,
    seconds: float,
    state_dir: Path,
    warehouse: Path,
    console: Console,
    seed: int = 7,
    rate: float | None = 200,
) -> DemoResult:
    started = time.monotonic()
    stack = LocalStack(state_dir, pg_port=None, kafka_port=None, database="shop")
    say = console.print
    say(f"[bold]Starting the local stack[/] in {stack.state_dir}")
    stack.up()
    try:
        say(f"  PostgreSQL  {stack.pg_url()}")
        say(f"  Kafka       {stack.bootstrap_servers}")
        url = stack.pg_url()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SHOP_DDL)
        workload = ShopWorkload(url, seed=seed)
        workload.seed()
        if warehouse.exists():
            warehouse.unlink()
        config = write_stack_config(
            stack.state_dir / "cdc.yaml",
            stack,
            [dict(t) for t in SHOP_TABLE_CONFIG],
            warehouse_path=warehouse,
        )
        say("[bold]Starting Debezium[/] (initial snapshot, then streaming)")
        start_debezium(stack, config)
        replicator = ReplicatorThread(config).start()
        wait_until_published(url, config.source.slot_name)
        replicator.wait_caught_up()
        say("Initial snapshot replicated; starting the workload")
        with Progress(
            TextColumn("[bold]workload[/]"),
            BarColumn(),
            TextColumn("{task.fields[changes]} changes, {task.fields[tx]} transactions"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("workload", total=seconds, changes=0, tx=0)
            t0 = time.monotonic()

            def tick(stats: Any) -> None:
                progress.update(
                    task,
                    completed=time.monotonic() - t0,
                    changes=stats.changes,
                    tx=stats.transactions,
                )

            stats = workload.run(seconds=seconds, rate=rate, on_progress=tick)
        say(
            f"Workload: {stats.changes} row changes in {stats.transactions} transactions "
            f"({', '.join(f'{k} {v}' for k, v in sorted(stats.by_kind.items()))})"
        )
        say("[bold]Waiting until caught up[/]")
        wait_until_published(url, config.source.slot_name)
        run_stats = replicator.finish()
        diffs = compare_all(config, url)
    finally:
        stack.down()
    histories = history_reports(config)
    first, last = run_stats.first_batch_at, run_stats.last_batch_at
    replicate_seconds = (last - first) if first is not None and last is not None else 0.0
    return DemoResult(
        ok=all(d.diffs == 0 for d in diffs) and all(h.ok for h in histories.values()),
        events=run_stats.events,
        tables=diffs,
        warehouse=warehouse,
        seconds=time.monotonic() - started,
        workload_changes=stats.changes,
        workload_transactions=stats.transactions,
        latencies_s=run_stats.latencies_s,
        dead_letters=run_stats.dead_letters,
        replicate_seconds=replicate_seconds,
        modes={t.target_name: t.mode for t in config.tables},
        histories=histories,
        config=stack.state_dir / "cdc.yaml",
        history_example=_longest_history(config),
    )


def _longest_history(
    config: Config, table: str = "customers", key_column: str = "id"
) -> tuple[str, str, int] | None:
    """The demo table's key with the most versions: (table, key as text, versions)."""
    target = config.table_target(config.table(table))
    warehouse = open_warehouse(config)
    try:
        rows = warehouse.fetch_history(target)
    finally:
        warehouse.close()
    counts = Counter(str(row[key_column]) for row in rows)
    if not counts:
        return None
    [(key, versions)] = counts.most_common(1)
    return target.name, key, versions


def print_summary(result: DemoResult, console: Console) -> None:
    table = Table(title="Source vs warehouse, row by row (scd2 tables: their current versions)")
    for col in ("table", "mode", "source rows", "warehouse rows", "diffs", "detail"):
        table.add_column(col, justify="right" if "rows" in col or col == "diffs" else "left")
    for t in result.tables:
        table.add_row(
            t.name,
            result.modes.get(t.name, "mirror"),
            str(t.source_rows),
            str(t.warehouse_rows),
            f"[green]{t.diffs}[/]" if t.diffs == 0 else f"[red]{t.diffs}[/]",
            "" if t.diffs == 0 else t.describe(),
        )
    console.print(table)
    if result.histories:
        history = Table(title="SCD2 history invariants")
        for col in ("table", "versions", "current", "invariants", "detail"):
            history.add_column(col, justify="right" if col in ("versions", "current") else "left")
        for name, report in result.histories.items():
            failures = ", ".join(f"{k} {n}" for k, n in history_failures(report).items())
            history.add_row(
                name,
                str(report.versions),
                str(report.current),
                "[green]ok[/]" if report.ok else f"[red]broken: {failures}[/]",
                "; ".join(report.examples),
            )
        console.print(history)
    lat = result.latencies_s
    rate = result.events / result.replicate_seconds if result.replicate_seconds else 0.0
    console.print(
        f"Events applied: {result.events} ({rate:,.0f} events/s from first to last batch), "
        f"dead letters: {result.dead_letters}"
    )
    if lat:
        console.print(
            f"Lag, source commit -> warehouse commit: p50 {_percentile(lat, 0.5):.3f} s, "
            f"p99 {_percentile(lat, 0.99):.3f} s, mean {statistics.fmean(lat):.3f} s"
        )
    console.print(f"Warehouse: {result.warehouse}")
    if result.history_example is not None and result.config is not None:
        name, key, versions = result.history_example
        console.print(
            f"History of the {name} key with the most versions ({versions}): "
            f"cdc history {name} {key} --config {result.config}",
            highlight=False,
            soft_wrap=True,
        )
    verdict = "[bold green]ok: true[/]" if result.ok else "[bold red]ok: false[/]"
    console.print(f"{verdict}  (demo took {result.seconds:.0f} s)")


def result_json(result: DemoResult) -> str:
    return json.dumps(result.to_json())
