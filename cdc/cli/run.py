"""``cdc run``: the replication service (or a micro-batch run with ``--until-caught-up``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cdc.cli.console import Console
from cdc.cli.exit_codes import ExitCode
from cdc.cli.options import ConfigOpt

err = Console(stderr=True)


def run_command(
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
    broker_timeout: Annotated[
        float,
        typer.Option(
            min=1,
            help="--until-caught-up: give up (exit code 5) when no Kafka broker answered for "
            "this many seconds. Without it `cdc run` waits for the broker as long as it runs.",
        ),
    ] = 60.0,
) -> None:
    """Replicate: consume the tables' topics and apply them to the warehouse until stopped.

    Each batch is applied in one warehouse transaction together with the Kafka offsets it
    covers; SIGTERM or Ctrl-C finishes the current batch, then exits. While the broker is
    unreachable one warning is logged every 15 s. Exit codes: 0 stopped cleanly; 2 bad
    configuration or metrics port; 3 the warehouse can't be used (read-only, full, refused a
    batch); 5 no broker answered (--until-caught-up after --broker-timeout, or --max-seconds
    ended without ever reaching it).
    """
    from cdc.cli import _load
    from cdc.cli.failures import expected_failures
    from cdc.consumer.loop import Replicator
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
            raise typer.Exit(int(ExitCode.CONFIG)) from None
    metrics = served.metrics if served is not None else None
    try:
        with expected_failures(cfg):
            settings = replicator_settings(cfg, check_types=True)
            settings = dataclasses.replace(settings, broker_wait_seconds=broker_timeout)
            replicator = Replicator(settings, open_warehouse(cfg), metrics=metrics)
            replicator.install_signal_handlers()
            stats = replicator.run(until_caught_up=until_caught_up, max_seconds=max_seconds)
    finally:
        if served is not None:
            served.close()
    err.print(
        f"stopped cleanly: {stats.events} events in {stats.batches} batches, "
        f"{stats.dead_letters} dead letters"
    )
