"""structlog set-up: readable in a terminal, JSON lines in services (``CDC_LOG_FORMAT=json``).

Inside a Prefect flow or task run each event also goes to the run's Prefect logs
(:mod:`cdc.prefect_logs`, the processor just before the renderer); outside a run it does
nothing."""

from __future__ import annotations

import logging
import os
import sys

import structlog

from cdc.prefect_logs import with_bridge


def configure_logging(level: str = "INFO", fmt: str | None = None) -> None:
    fmt = fmt or os.environ.get("CDC_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=with_bridge(
            [
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                renderer,
            ]
        ),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
