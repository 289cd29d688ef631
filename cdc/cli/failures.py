"""Expected failures of the ``cdc`` commands: each one becomes one message (what happened,
what to do) on stderr and its exit code (:mod:`cdc.cli.exit_codes`), never a traceback.

:func:`classify` maps an exception to a :class:`Failure` by its class (and librdkafka's error
code), never by its text; :func:`expected_failures` wraps a command's work with it. Anything
it does not know is a bug and keeps its traceback (exit code 1).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from cdc.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from cdc.config import Config

err = Console(stderr=True)


class PrefectUnavailableError(Exception):
    """No Prefect API is configured, its server doesn't answer, or the deployment is missing."""


@dataclass(frozen=True, slots=True)
class Failure:
    code: ExitCode
    heading: str  # a few words: "source database unreachable"
    message: str  # what happened and what to do

    def to_json(self) -> dict[str, Any]:
        return {"error": self.heading, "message": self.message, "exit_code": int(self.code)}


def _first_lines(exc: BaseException) -> str:
    """The driver's own words, on one line (shown, never parsed)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def source_failure(exc: BaseException, config: Config | None) -> Failure:
    where = "the source database"
    if config is not None:
        s = config.source
        where = f"the source database {s.database} at {s.host}:{s.port} (user {s.user})"
    detail = _first_lines(exc)
    detail += "" if detail.endswith((".", "?", "!")) else "."
    return Failure(
        ExitCode.SOURCE_UNREACHABLE,
        "source database unreachable",
        f"cannot connect to {where}: {detail} Check that PostgreSQL runs and "
        "accepts connections, and that source.host, port, database, user and password in the "
        "configuration are right (`cdc local status` shows the local stack's).",
    )


def classify(exc: BaseException, config: Config | None = None) -> Failure | None:
    """The :class:`Failure` an exception stands for, or None when it is not an expected one."""
    import psycopg
    from confluent_kafka import KafkaException

    from cdc.consumer.broker_watch import BrokerUnreachableError, is_unreachable
    from cdc.consumer.broker_watch import unreachable_message as broker_message
    from cdc.consumer.settings import ReplicationStoppedError
    from warehouse.base import WarehouseError

    if isinstance(exc, psycopg.OperationalError):  # connecting, or the connection lost
        return source_failure(exc, config)
    if isinstance(exc, BrokerUnreachableError):
        return Failure(ExitCode.BROKER_UNREACHABLE, "Kafka broker unreachable", str(exc))
    if isinstance(exc, KafkaException) and is_unreachable(exc):
        servers = config.kafka.bootstrap_servers if config is not None else "the configured servers"
        detail = _first_lines(exc.args[0].str() if exc.args else exc)
        return Failure(
            ExitCode.BROKER_UNREACHABLE,
            "Kafka broker unreachable",
            broker_message(servers, None, detail),
        )
    if isinstance(exc, WarehouseError):
        where = f" (warehouse: {config.warehouse.where()})" if config is not None else ""
        return Failure(ExitCode.WAREHOUSE, "warehouse unavailable", _first_lines(exc) + where)
    if isinstance(exc, ReplicationStoppedError):  # the loop's terminal warehouse errors
        return Failure(ExitCode.WAREHOUSE, "stopped", _first_lines(exc))
    if isinstance(exc, PrefectUnavailableError):
        return Failure(ExitCode.PREFECT, "Prefect unavailable", str(exc))
    return None


def show(failure: Failure, *, as_json: bool = False) -> None:
    """The one message on stderr; with ``as_json`` also a JSON object on stdout."""
    err.print(f"[red]{failure.heading}:[/] " + escape(failure.message), highlight=False,
              soft_wrap=True)  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(failure.to_json()) + "\n")
        sys.stdout.flush()


def fail(failure: Failure, *, as_json: bool = False) -> typer.Exit:
    """Show ``failure``; the caller raises the returned exit (``raise fail(...)``)."""
    show(failure, as_json=as_json)
    return typer.Exit(int(failure.code))


@contextmanager
def expected_failures(config: Config | None = None, *, as_json: bool = False) -> Iterator[None]:
    """Run the block; an expected failure ends the command with its message and exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        failure = classify(exc, config)
        if failure is None:
            raise
        raise fail(failure, as_json=as_json) from None
