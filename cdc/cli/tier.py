"""``cdc tier``: one lifecycle tiering pass, and ``cdc tier restore``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cdc.cli.console import Console
from cdc.cli.options import ConfigOpt

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    help="Lifecycle tiering of history: move closed versions (and soft-deleted rows) out of "
    "the warehouse into Parquet files, warm then cold, and bring them back.",
    invoke_without_command=True,
    no_args_is_help=False,
)

TablesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Tables to tier (source `schema.table` or `table`); default: every table with "
        "a `tiering` policy.",
        show_default=False,
    ),
]


def _date(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or ISO timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _fail(message: str) -> typer.Exit:
    err.print("[red]cannot tier:[/] " + escape(message), highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _pass(config: Path, tables: list[str] | None, as_json: bool) -> None:
    from cdc.cli import _load
    from cdc.cli.failures import expected_failures
    from cdc.logs import configure_logging
    from cdc.runtime import open_warehouse
    from cdc.tiering.run import TierError, tier
    from cdc.tiering.storage import TierStorageError

    configure_logging("WARNING")  # logs on stderr: under --json stdout is the JSON alone
    cfg = _load(config)
    warehouse = open_warehouse(cfg)
    try:
        with expected_failures(cfg, as_json=as_json), err.status("tiering...") as status:
            results = tier(cfg, warehouse, tables, progress=lambda m: status.update(escape(m)))
    except (TierError, TierStorageError) as exc:
        raise _fail(str(exc)) from None
    finally:
        warehouse.close()
    if as_json:
        print(json.dumps([r.row() for r in results]), flush=True)
        return
    table = Table(title="tiering pass")
    for name in results[0].row() if results else ["table"]:
        table.add_column(name)
    for r in results:
        table.add_row(*(str(v) for v in r.row().values()))
    console.print(table)


@app.callback()
def main(
    ctx: typer.Context,
    config: ConfigOpt = Path("cdc.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run one tiering pass over every tiered table (or `cdc tier run TABLE...`).

    Per table: rows that closed more than `hot` ago go to warm Parquet files (one per month),
    warm months older than `warm` go to the cold tier (stronger compression; on S3 the cold
    storage class), cold months older than `retention` are deleted. Every move writes and
    verifies its files (rows and checksum read back) before one warehouse transaction deletes
    the hot rows, records the move in `_cdc.tier_moves` and redefines the `<table>_history`
    view over all tiers. Safe to interrupt and rerun. Exit code 2 on bad input (no policy,
    unreachable storage, a table without history), 3 when the warehouse can't be used
    (read-only, full, held by another process).
    """
    if ctx.invoked_subcommand is None:
        _pass(config, None, as_json)


@app.command("run")
def run_command(
    tables: TablesArg = None,
    config: ConfigOpt = Path("cdc.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One tiering pass over the named tables (default: every tiered table)."""
    _pass(config, tables, as_json)


@app.command("restore")
def restore_command(
    table: Annotated[str, typer.Argument(help="The table whose history comes back.")],
    start: Annotated[
        str, typer.Option("--from", help="First day (or ISO timestamp) of the closing times.")
    ],
    end: Annotated[str, typer.Option("--to", help="Day (or timestamp) the range ends, excluded.")],
    config: ConfigOpt = Path("cdc.yaml"),
) -> None:
    """Bring back to the warehouse table the rows that closed in [--from, --to).

    They are held hot for one `hot` window from now (a tiering pass leaves them), and the
    files keep the rest of their months' rows.
    """
    from cdc.cli import _load
    from cdc.cli.failures import expected_failures
    from cdc.logs import configure_logging
    from cdc.runtime import open_warehouse
    from cdc.tiering.run import TierError, restore
    from cdc.tiering.storage import TierStorageError

    configure_logging("WARNING")
    cfg = _load(config)
    warehouse = open_warehouse(cfg)
    try:
        with expected_failures(cfg):
            count = restore(cfg, warehouse, table, _date(start), _date(end))
    except (TierError, TierStorageError) as exc:
        raise _fail(str(exc)) from None
    finally:
        warehouse.close()
    console.print(f"restored {count} rows of {escape(table)} to the warehouse table")
