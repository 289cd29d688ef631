"""``cdc snapshot TABLE...``: load or re-load tables while the stream runs."""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cdc.cli.console import Console
from cdc.cli.deployment import RunOutcome
from cdc.cli.exit_codes import ExitCode
from cdc.cli.options import ConfigOpt

console = Console()
err = Console(stderr=True)


class Method(StrEnum):
    bulk = "bulk"
    incremental = "incremental"


def snapshot(
    tables: Annotated[
        list[str], typer.Argument(help="Source tables to snapshot (schema.table or table).")
    ],
    config: ConfigOpt = Path("cdc.yaml"),
    method: Annotated[
        Method,
        typer.Option(
            help="`bulk`: COPY in key-range chunks straight into the warehouse (fast, "
            "resumable). `incremental`: Debezium's incremental snapshot through the signal "
            "table; rows flow through Kafka and `cdc run` applies them."
        ),
    ] = Method.bulk,
    where: Annotated[
        str | None,
        typer.Option(help="Only rows matching this SQL condition, e.g. \"region = 'eu'\"."),
    ] = None,
    rows_per_chunk: Annotated[
        int, typer.Option(min=1, help="Bulk: rows per key-range chunk (one COPY each).")
    ] = 100_000,
    workers: Annotated[
        int, typer.Option(min=1, max=32, help="Bulk: chunks read from PostgreSQL in parallel.")
    ] = 2,
    fresh: Annotated[
        bool,
        typer.Option(help="Bulk: ignore an unfinished snapshot's saved plan and start over."),
    ] = False,
    deployment: Annotated[
        str | None,
        typer.Option(
            help="Run it on a Prefect worker instead: the deployment's name, e.g. "
            "`cdc-snapshot/snapshot` (see prefect.yaml). The same request is not started "
            "twice (idempotency key)."
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="--deployment: commands with the same key join one flow run. Default: the "
            "parameters and the current UTC minute (a retry in the next minute starts anew)."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Incremental / --deployment: minutes to wait for the end.")
    ] = 60,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG (one line per chunk), INFO, ...")] = (
        "WARNING"
    ),
) -> None:
    """Snapshot tables while replication runs: an initial load, or a re-load after doubt.

    Every table is checked first (configured, exists, has a primary key, the filter parses,
    the connector's slot exists); nothing is read before all pass. Bulk: a table without a
    primary key but with REPLICA IDENTITY FULL is re-loaded whole and exactly (no filter;
    `cdc run` must be running), as `cdc reconcile --repair` does. A bulk snapshot stopped or
    killed halfway resumes when run again: the chunks already loaded are skipped. Changes the
    stream applies meanwhile always win over the snapshot's older values.

    Exit codes: 0 done; 2 refused (bad table, filter, deployment name); 3 the warehouse can't
    be used; 4 the source database can't be reached; --deployment: 6 no Prefect server
    (PREFECT_API_URL unset or not answering) or no such deployment, 7 the flow run failed,
    8 it did not end within --timeout. With --deployment the run's state and UI link are
    printed (JSON with --json).
    """
    from cdc.cli import _load
    from cdc.cli.failures import expected_failures
    from cdc.logs import configure_logging
    from cdc.snapshot.bulk import SnapshotError, check_request

    configure_logging(log_level)
    cfg = _load(config)
    try:
        if deployment:
            with expected_failures(cfg, as_json=as_json):
                run = _on_deployment(deployment, config, tables, method, where,
                                     rows_per_chunk, workers, fresh, timeout,
                                     idempotency_key)  # fmt: skip
            _show_run(run, as_json=as_json)
            return
        with expected_failures(cfg, as_json=as_json):
            if method is Method.incremental:
                from cdc.snapshot.incremental import run_incremental

                with console.status("incremental snapshot: signalled, waiting for its rows..."):
                    outcome = run_incremental(cfg, tables, where, timeout=timeout * 60)
                print(json.dumps(outcome, default=str)) if as_json else console.print(outcome)
                return
            requests = check_request(cfg, tables, where)
            results = _bulk(cfg, requests, where, rows_per_chunk, workers, fresh, quiet=as_json)
    except SnapshotError as exc:
        err.print("[red]snapshot refused:[/] " + escape(str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps([asdict(r) for r in results], default=str))
        return
    table = Table(title="bulk snapshot")
    for col in ("table", "chunks", "loaded", "skipped", "rows", "kept newer", "rows/s"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for r in results:
        table.add_row(r.table, str(r.chunks), str(r.chunks_loaded), str(r.chunks_skipped),
                      f"{r.rows:,}", f"{r.stale:,}", f"{r.rows_per_second:,.0f}")  # fmt: skip
    console.print(table)


def _bulk(
    cfg: Any,
    requests: list[Any],
    where: str | None,
    rows_per_chunk: int,
    workers: int,
    fresh: bool,
    *,
    quiet: bool,
) -> list[Any]:
    from cdc.runtime import open_warehouse
    from cdc.snapshot.bulk import BulkOptions, ChunkLoaded, snapshot_table

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks · {task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    )
    results = []
    warehouse = open_warehouse(cfg)
    try:
        with progress:
            for request in requests:
                bar = progress.add_task(request.table.name, total=None, rows=0)

                def on_chunk(event: ChunkLoaded, bar: Any = bar) -> None:
                    task = progress.tasks[bar]
                    progress.update(bar, total=event.total, completed=event.done,
                                    rows=task.fields["rows"] + event.rows)  # fmt: skip

                options = BulkOptions(rows_per_chunk=rows_per_chunk, workers=workers,
                                      where=where, fresh=fresh, on_chunk=on_chunk)  # fmt: skip
                results.append(snapshot_table(cfg, warehouse, request, options))
    finally:
        warehouse.close()
    return results


def _show_run(run: RunOutcome, *, as_json: bool) -> None:
    """The flow run's state and link (stdout; JSON with ``as_json``); exits with its code."""
    if as_json:
        print(json.dumps(run.to_json()), flush=True)
    if run.code is ExitCode.OK:
        if not as_json:
            console.print(escape(run.summary()), highlight=False, soft_wrap=True)
        return
    heading = "flow run failed" if run.code is ExitCode.FLOW_RUN_FAILED else "flow run not done"
    err.print(f"[red]{heading}:[/] " + escape(run.summary()), highlight=False, soft_wrap=True)
    raise typer.Exit(int(run.code))


def _on_deployment(
    name: str,
    config: Path,
    tables: list[str],
    method: Method,
    where: str | None,
    rows_per_chunk: int,
    workers: int,
    fresh: bool,
    timeout: float,
    key: str | None = None,
) -> RunOutcome:
    """Trigger the deployment and wait for its end. The idempotency key (``key``, else the
    parameters and the current minute) makes a retried command join the run it started
    instead of starting a second one."""
    import hashlib
    from datetime import UTC, datetime

    from cdc.cli.deployment import trigger

    if "/" not in name:
        err.print(f"[red]snapshot refused:[/] --deployment {escape(name)!r} is not "
                  "FLOW/DEPLOYMENT, e.g. cdc-snapshot/snapshot (see prefect.yaml)",
                  highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(int(ExitCode.CONFIG))
    params: dict[str, Any] = {
        "config": str(config.resolve()),
        "tables": tables,
        "method": method.value,
        "where": where,
        "rows_per_chunk": rows_per_chunk,
        "workers": workers,
        "fresh": fresh,
    }
    if key is None:
        minute = datetime.now(UTC).strftime("%Y%m%dT%H%M")
        doc = json.dumps({**params, "minute": minute}, sort_keys=True)
        key = "cdc-snapshot-" + hashlib.sha256(doc.encode()).hexdigest()[:16]
    return trigger(name, params, key, timeout)
