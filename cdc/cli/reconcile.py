"""``cdc reconcile``: compare (and repair) tables source vs warehouse, print the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cdc.cli.console import Console
from cdc.cli.options import ConfigOpt
from cdc.reconcile.report import RunReport

console = Console()
err = Console(stderr=True)


def report_table(report: RunReport) -> Table:
    """The report as a rich table, one row per table, with a few example keys."""
    table = Table(title=f"reconcile {report.run_id} (LSN {report.start_lsn})")
    for name in ("table", "status", "source rows", "warehouse rows", "missing", "extra",
                 "different", "history", "unsettled", "repaired", "examples"):  # fmt: skip
        table.add_column(name, overflow="fold")
    colours = {"ok": "green", "repaired": "green", "diffs": "red", "unsettled": "yellow"}
    for t in report.tables:
        colour = colours.get(t.status, "red")
        table.add_row(
            t.table, f"[{colour}]{t.status}[/]", str(t.source_rows), str(t.warehouse_rows),
            str(len(t.missing)), str(len(t.extra)), str(len(t.different)),
            str(t.history_problems), str(len(t.unsettled)), str(t.repaired),
            escape(t.examples(3)),
        )  # fmt: skip
    return table


def reconcile_command(
    tables: Annotated[
        list[str] | None,
        typer.Argument(
            help="Tables to compare (source `schema.table`, `table`, or the warehouse name); "
            "default: every configured table.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = Path("cdc.yaml"),
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Fix what differs: re-write missing and different keys from the source and "
            "delete extra keys, at a fresh position (the stream's later changes still win), "
            "then re-check them. History tables get a new version, and broken validity (a gap "
            "left by a lost version, overlaps) is closed: each version ends where the next "
            "begins.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    lag_timeout: Annotated[
        float, typer.Option(help="Seconds one re-check round waits for the consumer.")
    ] = 30.0,
    log_level: Annotated[
        str, typer.Option(help="DEBUG, INFO, WARNING or ERROR (logs go to stderr).")
    ] = "WARNING",
) -> None:
    """Compare each table's source rows with the warehouse and report what differs.

    Counts, then checksums over key ranges computed on both engines, narrowed down to small
    ranges whose rows are diffed: tables that agree are never fetched. Rows changed after the
    comparison started, or not applied by the consumer yet, are re-checked after it caught up
    instead of being reported. History (scd2) tables: the current versions, plus the history
    invariants. Every run is recorded in the warehouse's `reconcile_runs` table (see `cdc
    status`). Exit code 0 when everything agrees (or was repaired), 1 when differences remain,
    2 for bad input (unknown table, no primary key, invalid configuration), 3 when the
    warehouse can't be used, 4 when the source database can't be reached, 5 when the broker
    can't (README "Exit codes"). Logs go to stderr; with --json stdout holds only the JSON.
    """
    from cdc.cli import _load
    from cdc.cli.failures import expected_failures
    from cdc.logs import configure_logging
    from cdc.reconcile.run import ReconcileError, ReconcileSettings, reconcile

    configure_logging(log_level)
    cfg = _load(config)
    try:
        with expected_failures(cfg, as_json=as_json):
            report = reconcile(
                cfg, tables or None, repair=repair,
                settings=ReconcileSettings(lag_timeout=lag_timeout),
            )  # fmt: skip
    except ReconcileError as exc:
        err.print("[red]cannot reconcile:[/] " + escape(str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(report.to_json()), flush=True)
    else:
        console.print(report_table(report))
        console.print("[green]everything agrees[/]" if report.ok else "[red]differences remain[/]")
    if not report.ok:
        raise typer.Exit(1)
