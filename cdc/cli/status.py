"""``cdc status``: per table how far behind it is, and the replication slot's lag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cdc.cli.console import Console
from cdc.cli.options import ConfigOpt

console = Console()


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def status_command(
    config: ConfigOpt = Path("cdc.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    wal_warn_mb: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Warn when the slot retains more WAL than this many MB "
            "(default: source.max_retained_wal_mb, 1024).",
        ),
    ] = None,
) -> None:
    """Per table: events not applied yet, seconds behind, the last applied position and load
    time, the last reconcile, the columns dropped at the source that the warehouse still holds;
    and the replication slot's lag and retained WAL in bytes, with a warning when the slot is
    missing or retains too much WAL.

    Exit codes: 0 shown; 2 bad configuration; 3 the warehouse can't be read; 4 the source
    database can't be reached; 5 no Kafka broker answered."""
    from cdc.cli import _load
    from cdc.cli.failures import expected_failures
    from cdc.logs import configure_logging
    from cdc.status import gather

    configure_logging("WARNING")  # logs on stderr: under --json stdout is the JSON alone
    cfg = _load(config)
    with expected_failures(cfg, as_json=as_json):
        report = gather(cfg, max_retained_wal_mb=wal_warn_mb)
    if as_json:
        print(json.dumps(report.to_json()), flush=True)
        return
    table = Table(title=f"Replication status ({config})")
    for name in ("table", "mode", "pending events", "seconds behind", "last lsn",
                 "last source commit", "last loaded", "last reconcile",
                 "dropped columns"):  # fmt: skip
        right = name in ("pending events", "seconds behind", "last lsn")
        table.add_column(name, justify="right" if right else "left")
    for t in report.tables:
        pending = "topic missing" if t.pending_events is None else str(t.pending_events)
        table.add_row(t.table, t.mode, pending, _shown(t.seconds_behind), _shown(t.last_lsn),
                      _shown(t.last_commit), _shown(t.last_loaded), t.last_reconcile,
                      escape(", ".join(t.dropped_columns)) or "-")  # fmt: skip
    console.print(table)
    slot = report.slot
    if not slot.exists:
        console.print(f"slot {slot.name}: [red]missing[/] (Debezium creates it when it starts)")
    else:
        state = "active" if slot.active else "[yellow]inactive[/]"
        console.print(
            f"slot {slot.name}: {state}, lag {_shown(slot.lag_bytes)} bytes, "
            f"retains {_shown(slot.retained_bytes)} bytes of WAL"
        )
    for warning in report.warnings:
        console.print("[yellow]warning:[/] " + escape(warning), highlight=False, soft_wrap=True)
