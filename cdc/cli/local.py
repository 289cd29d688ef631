"""``cdc local up | status | restart | down``: the embedded development stack (PostgreSQL, the
Kafka-protocol broker, Debezium), each process recorded by pid in ``<state-dir>/state.json``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cdc.cli.console import Console

if TYPE_CHECKING:
    from cdc.config import Config
    from cdc.local.stack import LocalStack

app = typer.Typer(help="The embedded dev stack: PostgreSQL, a Kafka broker, Debezium.")
console = Console()
err = Console(stderr=True)

StateDirOpt = Annotated[
    Path,
    typer.Option("--state-dir", help="Where the local stack keeps its data, logs and pids."),
]
DEFAULT_STATE_DIR = Path(".cdc/local")


class Restartable(StrEnum):
    DEBEZIUM = "debezium"


def _load_config(path: Path) -> Config:
    from cdc.cli import _load  # exit code 2, the problems printed

    return _load(path)


@app.command("up")
def up(
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Also start Debezium for this config's tables (they must exist in the source "
            "database); its source port and Kafka port are used for the stack.",
        ),
    ] = None,
) -> None:
    """Start PostgreSQL (wal_level=logical) and the Kafka broker; with --config, Debezium too.

    A second `up` reports what already runs instead of starting twins. Exit code 2 (Debezium
    not started) when a configured table is not a table of the source database.
    """
    from cdc.local.pipeline import start_debezium
    from cdc.local.source_tables import MissingTablesError, require_source_tables
    from cdc.local.stack import LocalStack

    cfg = _load_config(config) if config else None
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
    refusal: MissingTablesError | None = None
    if cfg is not None and config is not None:
        if stack.running("debezium"):
            console.print(
                "Debezium already runs (`cdc local restart debezium` restarts it with a "
                "changed config)"
            )
        else:
            try:
                require_source_tables(cfg, stack.pg_url(cfg.source.database))
            except MissingTablesError as exc:
                refusal = exc
            else:
                start_debezium(stack, cfg, config_path=config.resolve())
                started.append("debezium")
    console.print(
        f"started: {', '.join(started)}" if started else "already running: nothing started"
    )
    print_status(stack)
    if refusal is not None:
        raise _refuse(
            "Debezium not started", f"{refusal}; then run `cdc local up -c {config}` again."
        )


def _refuse(heading: str, message: str) -> typer.Exit:
    """Print ``heading: message`` on stderr; the caller raises the returned exit (code 2)."""
    err.print(f"[red]{escape(heading)}:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def print_status(stack: LocalStack) -> None:
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


@app.command("status")
def status(state_dir: StateDirOpt = DEFAULT_STATE_DIR) -> None:
    """Show what runs, with pids and how to connect; stale records are cleaned.

    Debezium's row names its log and the config it was started with.
    """
    from cdc.local.stack import LocalStack

    stack = LocalStack(state_dir)
    print_status(stack)
    if stack.stale_cleaned:
        console.print(f"cleaned stale state of: {', '.join(stack.stale_cleaned)}")


@app.command("restart")
def restart(
    component: Annotated[
        Restartable, typer.Argument(help="What to restart (debezium).", show_default=False)
    ],
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The config to start Debezium with (default: the one it was last started "
            "with, see `cdc local status`).",
        ),
    ] = None,
) -> None:
    """Restart Debezium alone (e.g. after adding tables to the config).

    PostgreSQL and the broker keep running. Debezium is stopped by pid, gracefully (its
    offsets are stored, so it goes on where it stopped), and started again with the config;
    started if it was not running. Exit code 2, and the running Debezium is left alone, when
    the stack does not run, no config is known, or a configured table is not a table of the
    source database.
    """
    from cdc.local.pipeline import restart_debezium
    from cdc.local.source_tables import MissingTablesError
    from cdc.local.stack import LocalStack

    assert component is Restartable.DEBEZIUM  # the only choice
    stack = LocalStack(state_dir)
    down = [name for name in ("postgres", "broker") if not stack.running(name)]
    if down:
        raise _refuse("not running", f"{', '.join(down)}: start the stack first "
                      f"(cdc local up --state-dir {state_dir} -c CONFIG)")  # fmt: skip
    recorded = stack.state.debezium_config
    path = config if config is not None else Path(recorded) if recorded else None
    if path is None:
        raise _refuse("no config", "Debezium was never started with one here; give -c cdc.yaml")
    cfg = _load_config(path)
    ports = _port_mismatch(stack, cfg)
    if ports:
        raise _refuse("wrong config", ports)
    try:
        previous = restart_debezium(stack, cfg, config_path=path.resolve())
    except MissingTablesError as exc:
        left = "keeps running as it was" if stack.running("debezium") else "was not started"
        raise _refuse(f"Debezium {left}", f"{exc}; then run this command again.") from None
    now = stack.state.processes["debezium"].pid
    if previous is None:
        console.print(f"started: debezium (pid {now}; it was not running)")
    else:
        console.print(f"restarted: debezium (pid {previous.pid} -> {now})")
    print_status(stack)


def _port_mismatch(stack: LocalStack, cfg: Config) -> str | None:
    """Why ``cfg`` does not point at this stack (None: it does)."""
    kafka_port = cfg.kafka.bootstrap_servers.rsplit(":", 1)[-1]
    if cfg.source.port != stack.state.pg_port or kafka_port != str(stack.state.kafka_port):
        return (
            f"the config points at PostgreSQL port {cfg.source.port} and Kafka "
            f"{cfg.kafka.bootstrap_servers}, but this stack listens on {stack.state.pg_port} "
            f"and {stack.bootstrap_servers}"
        )
    return None


@app.command("down")
def down(
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    purge: Annotated[bool, typer.Option(help="Also delete the data directory.")] = False,
) -> None:
    """Stop Debezium, the broker and PostgreSQL (by pid)."""
    from cdc.local.stack import LocalStack

    stopped = LocalStack(state_dir).down(purge=purge)
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
