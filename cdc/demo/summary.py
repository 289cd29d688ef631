"""What ``cdc demo`` reports: its result (:class:`DemoResult`: the comparisons, the data
contracts' catches and the quarantine replay, the SCD2 history checks, the tiering pass, the cost
report), printed as tables (:func:`print_summary`) or as JSON (:func:`result_json`)."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cdc.compare import TableDiff
from cdc.consumer.quarantine_replay import TableReplay
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
