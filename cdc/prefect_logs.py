"""The product's structlog events in Prefect's run logs.

Inside a Prefect flow or task run, every structlog event of the product ("batch applied",
"snapshot started", "compared", warnings...) also goes to Prefect's run logger, at the same
level, as one line: the event, then its context as ``key=value`` pairs (strings as they are,
other values as their ``repr``, like the console renderer), then an exception's traceback.
The line shows on the flow run's page; the event still goes to stdout/stderr as before.

:func:`forward_to_prefect` is a structlog processor placed just before the renderer, so every
processor before it (and the ``SecretStr`` values that render masked) keeps secrets out of the
Prefect line exactly as out of the terminal. Outside a run it passes the event on untouched
and sends nothing (it does not even import Prefect). The flows wrap their bodies in
:func:`product_logs_in_prefect`, which puts the processor into structlog's configuration when
it isn't there (a worker's flow-run process never calls :func:`cdc.logs.configure_logging`)
and lends the run's logger to threads that have no run context of their own (snapshot
readers, reconcile's paired queries).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import structlog

if TYPE_CHECKING:  # LoggerAdapter is subscriptable at run time from Python 3.12 only
    RunLogger: TypeAlias = logging.Logger | logging.LoggerAdapter[logging.Logger]

# structlog level names (``add_log_level``'s, or the method's name) -> logging levels
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
# keys rendered elsewhere in the line (or not at all: the record has its own time and level)
_NOT_CONTEXT = frozenset({"event", "level", "timestamp", "exc_info", "exception", "stack"})

_lent: list[RunLogger] = []  # run loggers of the flows running in this process, innermost last
_lent_lock = threading.Lock()


def level_of(method_name: str, event_dict: MutableMapping[str, Any]) -> int:
    """The logging level of an event: its ``level`` key, else the logger method's name."""
    name = event_dict.get("level")
    return LEVELS.get(str(name if name is not None else method_name).lower(), logging.INFO)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def render_line(event_dict: MutableMapping[str, Any]) -> str:
    """``event key=value ...``, then the stack and traceback texts on their own lines."""
    parts = [str(event_dict.get("event", ""))]
    parts += [
        f"{key}={_text(value)}" for key, value in event_dict.items() if key not in _NOT_CONTEXT
    ]
    line = " ".join(p for p in parts if p)
    for key in ("stack", "exception"):
        text = event_dict.get(key)
        if text:
            line += "\n" + str(text)
    return line


def current_run_logger() -> RunLogger | None:
    """Prefect's logger of the flow or task run this thread is in; else the logger a running
    flow lent to threads without a run context; else None (no run: nothing is sent)."""
    if "prefect.context" not in sys.modules:
        return None  # Prefect is not even imported: no run can be active
    from prefect.context import FlowRunContext, TaskRunContext

    if TaskRunContext.get() is not None or FlowRunContext.get() is not None:
        from prefect.logging import get_run_logger

        return get_run_logger()
    with _lent_lock:
        return _lent[-1] if _lent else None


def forward_to_prefect(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: inside a Prefect run, send the event to the run's logger too; the
    event goes on unchanged either way."""
    target = current_run_logger()
    if target is not None:
        exc_info = event_dict.get("exc_info") or None  # still there if nothing formatted it
        target.log(level_of(method_name, event_dict), "%s", render_line(event_dict),
                   exc_info=exc_info)  # fmt: skip
    return event_dict


def with_bridge(processors: Sequence[Any]) -> list[Any]:
    """``processors`` with :func:`forward_to_prefect` just before the last one (the renderer),
    unless it is in the chain already."""
    chain = list(processors)
    if forward_to_prefect in chain:
        return chain
    return [*chain[:-1], forward_to_prefect, *chain[-1:]]


@contextmanager
def product_logs_in_prefect() -> Iterator[None]:
    """For the body of a flow: the product's events go to this run's Prefect logs as well.

    Puts the bridge into structlog's configuration (defaults included) when it is missing;
    it stays there, passing events on untouched once no run is active. Must be entered
    inside a flow run."""
    from prefect.logging import get_run_logger

    processors = structlog.get_config()["processors"]
    if forward_to_prefect not in processors:
        structlog.configure(processors=with_bridge(processors))
    run_logger = get_run_logger()
    with _lent_lock:
        _lent.append(run_logger)
    try:
        yield
    finally:
        with _lent_lock:
            _lent.remove(run_logger)
