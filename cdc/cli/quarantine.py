"""``cdc quarantine list | replay``: rows that failed their table's checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cdc.cli.console import Console
from cdc.cli.options import ConfigOpt

app = typer.Typer(help="Quarantined changes: rows that failed their table's data contract.")
console = Console()
err = Console(stderr=True)

TablesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Source tables (schema.table or table); default: every table."),
]


@app.command("list")
def list_(
    tables: TablesArg = None,
    config: ConfigOpt = Path("cdc.yaml"),
    include_replayed: Annotated[
        bool, typer.Option("--all", help="Include changes already replayed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List quarantined changes with their failed checks.

    Each row shows the table, key, origin (topic[partition]@offset), the failed checks (or
    "held" behind an earlier quarantined change of the same key) and when it was quarantined.
    """
    from cdc.cli import _load
    from cdc.cli.failures import expected_failures
    from cdc.runtime import open_warehouse

    cfg = _load(config)
    names = _targets(cfg, tables)
    with expected_failures(cfg):
        warehouse = open_warehouse(cfg)
        try:
            changes = [
                c
                for name in names
                for c in warehouse.list_quarantine(name, include_replayed=include_replayed)
            ]
        finally:
            warehouse.close()
    if as_json:
        for c in changes:
            r = c.row
            print(json.dumps({
                "table": r.table, "key": json.loads(r.key), "topic": r.topic,
                "partition": r.partition, "offset": r.offset, "lsn": r.lsn, "op": r.op,
                "reason": r.reason, "checks": list(r.checks),
                "quarantined_at": str(c.quarantined_at),
                "replayed_at": None if c.replayed_at is None else str(c.replayed_at),
            }))  # fmt: skip
        return
    view = Table(title=f"{len(changes)} quarantined changes")
    for column in ("table", "key", "origin", "op", "failed checks", "quarantined at"):
        view.add_column(column)
    if include_replayed:
        view.add_column("replayed at")
    for c in changes:
        r = c.row
        cells = [
            r.table,
            r.key,
            f"{r.topic}[{r.partition}]@{r.offset}",
            r.op,
            "; ".join(r.checks) if r.reason == "violation" else "held behind an earlier change",
            str(c.quarantined_at)[:19],
        ]
        if include_replayed:
            cells.append("" if c.replayed_at is None else str(c.replayed_at)[:19])
        view.add_row(*cells)
    console.print(view)


@app.command()
def replay(tables: TablesArg = None, config: ConfigOpt = Path("cdc.yaml")) -> None:
    """Apply quarantined changes that now pass their checks.

    Run it after fixing the check in cdc.yaml or the data. Changes go through the normal
    apply path and its position guard. Per key, changes are applied in their original order
    up to the first one that still fails; it and the key's later changes stay quarantined.
    Exit code 0 when nothing is left, 1 when some changes still wait (reasons printed).
    """
    from cdc.cli import _load
    from cdc.cli.failures import expected_failures
    from cdc.consumer.quarantine_replay import replay_quarantine
    from cdc.runtime import open_warehouse

    cfg = _load(config)
    with expected_failures(cfg):
        warehouse = open_warehouse(cfg)
        try:
            results = replay_quarantine(cfg, warehouse, tables or ())
        finally:
            warehouse.close()
    left = 0
    for r in results:
        if not (r.replayed or r.still_open):
            continue
        console.print(f"{r.table}: replayed {r.replayed}, still quarantined {r.still_open}")
        for reason in r.reasons:
            console.print(f"  {reason}", markup=False, highlight=False)
        left += r.still_open
    if not any(r.replayed or r.still_open for r in results):
        console.print("nothing quarantined")
    raise typer.Exit(1 if left else 0)


def _targets(cfg: object, tables: list[str] | None) -> list[str]:
    from cdc.config import Config

    assert isinstance(cfg, Config)
    try:
        chosen = [cfg.table(t) for t in tables] if tables else list(cfg.tables)
    except KeyError as exc:
        err.print(f"[red]{escape(str(exc.args[0]))}[/]")
        raise typer.Exit(2) from None
    return [t.target_name for t in chosen]
