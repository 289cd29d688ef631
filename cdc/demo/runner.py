"""``cdc demo``: start the local stack, create the shop, run a random workload while
replicating into DuckDB (or Snowflake's SQL on fakesnow's local server), wait until caught
up, compare every table (the current versions of the SCD2 tables), check the SCD2 history
invariants, print a summary, and stop everything it started.

The shop declares data contracts that are stricter than its data, and the workload breaks them
now and then (``shop.SHOP_TABLE_CONFIG``). The failing changes, and the later changes of their
keys, wait in the quarantine, so those keys legitimately differ from the source: the first
comparison leaves them out and counts them. Then the demo does what a user would after reviewing
the quarantine: it relaxes the two checks (``shop.SHOP_RELAXED_TABLE_CONFIG``, written next to
cdc.yaml), replays the quarantine with that contract and compares every key again."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from cdc.config import Config
from cdc.consumer.quarantine_replay import replay_quarantine
from cdc.consumer.settings import RunStats
from cdc.demo.shop import SHOP_DDL, SHOP_RELAXED_TABLE_CONFIG, SHOP_TABLE_CONFIG
from cdc.demo.summary import ContractReport, DemoResult, TieringStep
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


def _history_rows(config: Config, warehouse: Any) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in config.tables:
        if table.tiering is None:
            continue
        rows = warehouse.history_rows(config.table_target(table)).to_pylist()
        out[table.target_name] = sorted(tuple(map(str, r.values())) for r in rows)
    return out


def _tiering_pass(config: Config) -> TieringStep:
    """One `cdc tier` pass over the tiered tables, the history views compared around it."""
    from cdc.tiering.run import tier

    warehouse = open_warehouse(config)
    try:
        if not warehouse.reads_tiered_history:
            # e.g. Snowflake without tiering.snowflake_stage (fakesnow has no external
            # stages): the history view would show the hot rows only
            return TieringStep(
                {}, {}, True, skipped="this warehouse's history view can't read the tier files"
            )
        before = _history_rows(config, warehouse)
        results = tier(config, warehouse)
        after = _history_rows(config, warehouse)
    finally:
        warehouse.close()
    return TieringStep(
        moved={r.table: r.to_warm + r.to_cold for r in results},
        files={r.table: sum(r.files.values()) for r in results},
        unchanged=before == after,
    )


def _cost_report(config: Config) -> dict[str, Any]:
    from cdc.costs.run import cost_report

    result = cost_report(config)
    report = result.report
    return {
        "storage_per_month": round(report.storage_total, 6),
        "compute": round(report.compute_total, 6),
        "tiering_saving_per_month": round(report.saving_total, 6),
        "tables": sorted({line.table for line in report.lines}),
        "files": {k: str(v) for k, v in asdict(result.files).items() if k != "folder"},
    }


SNOWFLAKE_LOCAL = "snowflake-local"


def run_demo(
    *,
    seconds: float,
    state_dir: Path,
    warehouse: Path | str,
    console: Console,
    seed: int = 7,
    rate: float | None = 200,
) -> DemoResult:
    """The demo into a DuckDB file, or into Snowflake's SQL on fakesnow's local server with
    the real connector (``warehouse="snowflake-local"``; its data is gone when the demo ends)."""
    if warehouse != SNOWFLAKE_LOCAL:
        return _run_demo(seconds=seconds, state_dir=state_dir, warehouse=Path(warehouse),
                         console=console, seed=seed, rate=rate)  # fmt: skip
    from cdc.local.fakesnow_server import fakesnow_server, warehouse_section

    console.print("[bold]Starting fakesnow's server[/] (Snowflake's SQL on DuckDB, real connector)")
    with fakesnow_server(quiet=True) as server:
        section = warehouse_section(server, "DEMO", "SHOP")
        console.print(f"  Snowflake   {server['host']}:{server['port']} database DEMO, schema SHOP")
        return _run_demo(seconds=seconds, state_dir=state_dir, warehouse=section,
                         console=console, seed=seed, rate=rate)  # fmt: skip


def _describe(warehouse: Path | dict[str, Any]) -> str:
    if isinstance(warehouse, Path):
        return str(warehouse)
    return (
        f"Snowflake (fakesnow's server {warehouse['host']}:{warehouse['port']}), "
        f"{warehouse['database']}.{warehouse['schema']}: gone when the demo ends"
    )


def _run_demo(
    *,
    seconds: float,
    state_dir: Path,
    warehouse: Path | dict[str, Any],
    console: Console,
    seed: int,
    rate: float | None,
) -> DemoResult:
    started = time.monotonic()
    section = (
        {"type": "duckdb", "path": str(warehouse)} if isinstance(warehouse, Path) else warehouse
    )
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
        workload = ShopWorkload(url, seed=seed, violations=True)
        workload.seed()
        if isinstance(warehouse, Path) and warehouse.exists():
            warehouse.unlink()
        # a fresh warehouse: history files of an earlier demo belong to no table any more
        shutil.rmtree(stack.state_dir / ".cdc" / "tiers", ignore_errors=True)
        config = write_stack_config(
            stack.state_dir / "cdc.yaml",
            stack,
            [dict(t) for t in SHOP_TABLE_CONFIG],
            warehouse=section,
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
            f"({', '.join(f'{k} {v}' for k, v in sorted(stats.by_kind.items()))}); "
            f"breaking the contract on purpose: "
            f"{', '.join(f'{k} {v}' for k, v in sorted(stats.violations.items())) or 'none'}"
        )
        say("[bold]Waiting until caught up[/]")
        wait_until_published(url, config.source.slot_name)
        run_stats = replicator.finish()
        before = compare_all(config, url, skip_quarantined=True)
        relaxed_path = stack.state_dir / "cdc.relaxed.yaml"
        relaxed = write_stack_config(
            relaxed_path,
            stack,
            [dict(t) for t in SHOP_RELAXED_TABLE_CONFIG],
            warehouse=section,
        )
        say(f"[bold]Replaying the quarantine[/] with the relaxed contract ({relaxed_path})")
        contracts = _replay(relaxed, run_stats)
        contracts.broken_on_purpose = dict(stats.violations)
        contracts.relaxed_config = relaxed_path
        diffs = compare_all(config, url)
    finally:
        stack.down()
    histories = history_reports(config)
    console.print("[bold]Tiering[/] the products history (policy: hot 5 s, warm 2 min)")
    tiering = _tiering_pass(config)
    console.print("[bold]Cost report[/]")
    cost = _cost_report(config)
    first, last = run_stats.first_batch_at, run_stats.last_batch_at
    replicate_seconds = (last - first) if first is not None and last is not None else 0.0
    return DemoResult(
        ok=all(d.diffs == 0 for d in [*before, *diffs])
        and contracts.still_quarantined == 0
        and all(h.ok for h in histories.values())
        and tiering.unchanged,
        events=run_stats.events,
        tables=diffs,
        warehouse=_describe(warehouse),
        kept=isinstance(warehouse, Path),
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
        before_replay={d.name: d for d in before},
        contracts=contracts,
        tiering=tiering,
        cost=cost,
    )


def _replay(relaxed: Config, run_stats: RunStats) -> ContractReport:
    """Replay every open quarantined change under the relaxed contract (what
    ``cdc quarantine replay -c cdc.relaxed.yaml`` does); report it with the run's counts."""
    warehouse = open_warehouse(relaxed)
    try:
        replays = replay_quarantine(relaxed, warehouse)
        still = len(warehouse.list_quarantine())
    finally:
        warehouse.close()
    return ContractReport(
        failed_checks=dict(sorted(run_stats.failed_checks.items())),
        quarantined=run_stats.quarantined,
        held=run_stats.held,
        replays=replays,
        still_quarantined=still,
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
