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

import json
import shutil
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cdc.compare import TableDiff
from cdc.config import Config
from cdc.consumer.loop import RunStats
from cdc.consumer.quarantine_replay import TableReplay, replay_quarantine
from cdc.demo.shop import SHOP_DDL, SHOP_RELAXED_TABLE_CONFIG, SHOP_TABLE_CONFIG
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
class ContractReport:
    """What the data contracts caught, and the replay after relaxing them."""

    failed_checks: dict[str, int] = field(default_factory=dict)  # "table: check" -> rows
    quarantined: int = 0  # rows that failed checks
    held: int = 0  # later changes of their keys, waiting behind them
    broken_on_purpose: dict[str, int] = field(default_factory=dict)  # by the workload
    replays: list[TableReplay] = field(default_factory=list)
    still_quarantined: int = 0  # open quarantine rows after the replay
    relaxed_config: Path | None = None

    @property
    def replayed(self) -> int:
        return sum(r.replayed for r in self.replays)

    def to_json(self) -> dict[str, Any]:
        return {
            "failed_checks": self.failed_checks,
            "quarantined": self.quarantined,
            "held": self.held,
            "replayed": self.replayed,
            "still_quarantined": self.still_quarantined,
            "broken_on_purpose": self.broken_on_purpose,
            "relaxed_config": str(self.relaxed_config) if self.relaxed_config else None,
        }


@dataclass
class TieringStep:
    """The demo's tiering pass: what moved, and the history views before and after it."""

    moved: dict[str, int]  # table -> rows out of the warehouse table
    files: dict[str, int]  # table -> live tier files
    unchanged: bool  # every <table>_history view returns the same rows as before
    skipped: str | None = None  # why there was no pass (e.g. Snowflake)

    def to_json(self) -> dict[str, Any]:
        return {"moved": self.moved, "files": self.files, "unchanged": self.unchanged,
                "skipped": self.skipped}  # fmt: skip


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

    if config.warehouse.type != "duckdb" and config.tiering.snowflake_stage is None:
        # fakesnow has no external stages: the history view would show the hot rows only
        return TieringStep({}, {}, True, skipped="Snowflake's history view needs an external stage")
    warehouse = open_warehouse(config)
    try:
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


@dataclass
class DemoResult:
    ok: bool
    events: int
    tables: list[TableDiff]
    warehouse: str  # the DuckDB file, or which Snowflake
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
    # the comparison before the replay, keys with open quarantined changes left out
    before_replay: dict[str, TableDiff] = field(default_factory=dict)
    contracts: ContractReport = field(default_factory=ContractReport)
    kept: bool = True  # the warehouse outlives the demo (not so fakesnow's in-memory one)
    tiering: TieringStep | None = None  # the tiering pass (DuckDB)
    cost: dict[str, Any] | None = None  # the cost report's totals and files

    def _table_json(self, t: TableDiff) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": t.name,
            "mode": self.modes.get(t.name, "mirror"),
            "source_rows": t.source_rows,
            "warehouse_rows": t.warehouse_rows,
            "diffs": t.diffs,
        }
        before = self.before_replay.get(t.name)
        if before is not None:
            doc["keys_in_quarantine"] = before.excluded
            doc["diffs_before_replay"] = before.diffs
        replay = next((r for r in self.contracts.replays if r.table == t.name), None)
        if replay is not None:
            doc["replayed"] = replay.replayed
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
            "contracts": self.contracts.to_json(),
            "warehouse": self.warehouse,
            "tiering": None if self.tiering is None else self.tiering.to_json(),
            "cost": self.cost,
        }


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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


def _diffs(n: int) -> str:
    return f"[green]{n}[/]" if n == 0 else f"[red]{n}[/]"


def print_contracts(report: ContractReport, console: Console) -> None:
    """The rows that failed each check, the quarantine and the replay."""
    table = Table(title="Data contracts: rows that failed their checks (on_violation: quarantine)")
    table.add_column("check")
    table.add_column("failed rows", justify="right")
    for check, rows in report.failed_checks.items():
        table.add_row(check, str(rows))
    if not report.failed_checks:
        table.add_row("(none)", "0")
    console.print(table)
    console.print(
        f"Quarantined: {report.quarantined} changes that failed checks, and {report.held} later "
        f"changes of their keys held behind them. After relaxing the checks "
        f"({report.relaxed_config}): replayed {report.replayed} in order, "
        f"still quarantined {report.still_quarantined}",
        highlight=False,
        soft_wrap=True,
    )
    for replay in report.replays:
        for reason in replay.reasons:
            console.print(f"  [red]{replay.table}[/]: {reason}", highlight=False)


def print_summary(result: DemoResult, console: Console) -> None:
    print_contracts(result.contracts, console)
    table = Table(
        title="Source vs warehouse, row by row (scd2 tables: their current versions). "
        "Before the replay, keys in quarantine are left out; after it, every key is compared"
    )
    columns = (
        "table",
        "mode",
        "source rows",
        "warehouse rows",
        "keys in quarantine",
        "diffs before replay",
        "replayed",
        "diffs",
        "detail",
    )
    for col in columns:
        table.add_column(col, justify="left" if col in ("table", "mode", "detail") else "right")
    for t in result.tables:
        before = result.before_replay.get(t.name)
        replay = next((r for r in result.contracts.replays if r.table == t.name), None)
        detail = "; ".join(
            f"{when}: {d.describe()}"
            for when, d in (("before replay", before), ("after", t))
            if d is not None and d.diffs
        )
        table.add_row(
            t.name,
            result.modes.get(t.name, "mirror"),
            str(t.source_rows),
            str(t.warehouse_rows),
            str(before.excluded) if before is not None else "",
            _diffs(before.diffs) if before is not None else "",
            str(replay.replayed) if replay is not None else "",
            _diffs(t.diffs),
            detail,
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
    if result.tiering is not None:
        step = result.tiering
        if step.skipped:
            console.print(f"Tiering: skipped ({step.skipped})")
        else:
            moved = ", ".join(
                f"{k} {v} rows in {step.files.get(k, 0)} files" for k, v in step.moved.items()
            )
            verdict = "the same rows as before" if step.unchanged else "[red]DIFFERENT rows[/]"
            console.print(f"Tiering: moved {moved}; every <table>_history view returns {verdict}")
    if result.cost is not None:
        c = result.cost
        console.print(
            f"Cost report: storage {c['storage_per_month']:.6f} per month, compute "
            f"{c['compute']:.6f}, tiering saves {c['tiering_saving_per_month']:.6f} per month; "
            f"files: {', '.join(str(v) for v in c['files'].values())}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"Warehouse: {result.warehouse}")
    if result.history_example is not None and result.config is not None and result.kept:
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
