"""``cdc connector``: register the Debezium connector on Kafka Connect and show its state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.markup import escape
from rich.table import Table

from cdc.cli.console import Console
from cdc.config import Config, ConfigError, load_config
from cdc.source.connect_client import ConnectClient, ConnectError
from cdc.source.connector import debezium_properties, redacted
from cdc.source.signals import SIGNAL_TABLE_COLUMNS, ensure_configured_signal_table

app = typer.Typer(
    help="Manage the Debezium connector on Kafka Connect (production deployments).",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Path of the cdc.yaml configuration file.")
]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Kafka Connect REST URL (default: connect.url from the config)."),
]

_err = Console(stderr=True)


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        _err.print(f"[red]invalid configuration[/red] ({len(exc.problems)} problem(s)):")
        _err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(2) from None


def _connect_url(config: Config, url: str | None) -> str:
    if url:
        return url
    if config.connect is None:
        _err.print("[red]no Kafka Connect URL:[/red] add `connect: {url: ...}` or pass --url")
        raise typer.Exit(2)
    return config.connect.url


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def _ensure_signal_table(config: Config) -> None:
    """Create the signal table before the connector starts (it joins the publication then);
    a source that can't be reached here only costs incremental snapshots, so warn."""
    try:
        if ensure_configured_signal_table(config):
            _err.print(f"signal table [bold]{config.source.signal_table}[/bold] created")
    except psycopg.Error as exc:
        _err.print(
            f"[yellow]warning:[/yellow] could not create the signal table "
            f"{config.source.signal_table} ({escape(str(exc).strip())}); create it before the "
            f"connector starts ({SIGNAL_TABLE_COLUMNS}) or incremental snapshots won't work",
            highlight=False,
        )


@app.command()
def register(
    config_path: ConfigOption = Path("cdc.yaml"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the connector config (redacted); send nothing.")
    ] = False,
    url: UrlOption = None,
) -> None:
    """Create or update the Debezium connector from the config (PUT /connectors/NAME/config)."""
    config = _load(config_path)
    props = debezium_properties(config, runtime="connect")
    if dry_run:
        _echo_json(redacted(props))
        return
    name = config.source.connector_name
    _ensure_signal_table(config)
    try:
        with ConnectClient(_connect_url(config, url)) as client:
            result = client.put_connector_config(name, props)
    except ConnectError as exc:
        _err.print("[red]error:[/red] " + escape(str(exc)), highlight=False)
        raise typer.Exit(1) from None
    _err.print(f"connector [bold]{name}[/bold] registered")
    _echo_json(redacted(result))


@app.command()
def status(
    config_path: ConfigOption = Path("cdc.yaml"),
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print Connect's raw answer.")] = False,
) -> None:
    """Show the state of the connector and its tasks (GET /connectors/NAME/status)."""
    config = _load(config_path)
    name = config.source.connector_name
    try:
        with ConnectClient(_connect_url(config, url)) as client:
            answer = client.status(name)
    except ConnectError as exc:
        _err.print("[red]error:[/red] " + escape(str(exc)), highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        _echo_json(answer)
        return
    table = Table(title=f"connector {name}")
    for column in ("part", "state", "worker", "trace"):
        table.add_column(column)
    connector = answer.get("connector", {})
    table.add_row("connector", connector.get("state", "?"), connector.get("worker_id", ""), "")
    for task in answer.get("tasks", []):
        trace = str(task.get("trace", "")).splitlines()
        table.add_row(
            f"task {task.get('id', '?')}",
            task.get("state", "?"),
            task.get("worker_id", ""),
            trace[0] if trace else "",
        )
    Console().print(table)
    failed = [t for t in answer.get("tasks", []) if t.get("state") == "FAILED"]
    if connector.get("state") == "FAILED" or failed:
        raise typer.Exit(1)


@app.command("reset-offsets")
def reset_offsets(
    config_path: ConfigOption = Path("cdc.yaml"),
    offsets_file: Annotated[
        Path,
        typer.Option(
            "--offsets-file",
            help="The embedded connector's offsets file (offset.storage.file.filename; "
            "`cdc local`: <state-dir>/debezium/offsets.dat).",
        ),
    ] = Path(".cdc/local/debezium/offsets.dat"),
) -> None:
    """Forget the embedded connector's stored offsets, so its next start takes a new initial
    snapshot (the recovery from a dropped replication slot). Stop the connector first."""
    from cdc.local.debezium import stored_offsets

    config = _load(config_path)
    ours = (config.source.connector_name, config.source.topic_prefix)
    stored = stored_offsets(offsets_file)
    others = sorted(k for k in stored if k != ours)
    if others:
        _err.print(
            f"[red]error:[/red] {offsets_file} also holds the offsets of other connectors "
            f"({', '.join(f'{n} (topic prefix {p})' for n, p in others)}); not touched",
            highlight=False,
        )
        raise typer.Exit(2)
    if ours not in stored:
        _err.print(f"no stored offsets of connector {ours[0]} in {offsets_file}: nothing to do")
        return
    offsets_file.unlink()
    _err.print(
        f"offsets of connector [bold]{ours[0]}[/bold] (last LSN {stored[ours].get('lsn')}) "
        f"removed: {offsets_file}; its next start takes a new initial snapshot",
        highlight=False,
    )
