"""Kafka clients that say "the broker is unreachable" once in a while instead of librdkafka's
raw log lines, and a bounded wait for a broker that never answers.

librdkafka prints every failed connection attempt to stderr (``%3|...|FAIL|rdkafka#...``,
several per second and per client). :meth:`BrokerWatch.client_config` routes its log lines and
errors to this watch (``logger``, ``error_cb``): connection failures become one structured
warning every ``warn_every_s`` seconds (with what to check), other log lines go to structlog.
The owner reports signs of life (:meth:`BrokerWatch.alive`: an assignment, messages) and,
after too long a silence, asks :meth:`BrokerWatch.confirm` to reach the broker once, which
raises :class:`BrokerUnreachableError` when it doesn't answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException

log = structlog.get_logger("cdc.kafka")

# librdkafka error codes (never a message text) that start an outage: no broker is up, or
# none can be resolved or authenticated against
OUTAGE_CODES = frozenset(
    {
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._SSL,
        KafkaError._AUTHENTICATION,
    }
)
# ... and codes of one failed connection or request: part of an outage while one lasts, else
# (an idle connection closed, one broker of several down) not worth a warning
UNREACHABLE_CODES = OUTAGE_CODES | {KafkaError._TRANSPORT, KafkaError._TIMED_OUT}
# librdkafka log facilities of failed connections (error_cb reports them; the lines go to debug)
CONNECTION_FACILITIES = frozenset({"FAIL", "ERROR", "CONNECT", "BROKERFAIL"})


class BrokerUnreachableError(Exception):
    """No Kafka broker answered; the message says which servers and what to check."""


def unreachable_message(bootstrap_servers: str, waited_s: float | None, detail: str) -> str:
    """What happened and what to do, in one sentence or two."""
    waited = f" for {waited_s:.0f} s" if waited_s is not None else ""
    return (
        f"no Kafka broker at {bootstrap_servers} answered{waited} ({detail}). Check that the "
        "broker runs and that kafka.bootstrap_servers (and kafka.client's security settings) "
        "in the configuration point at it; `cdc local status` shows the local stack's."
    )


def is_unreachable(exc: BaseException) -> bool:
    """A KafkaException whose error code means the broker could not be reached."""
    if not isinstance(exc, KafkaException) or not exc.args:
        return False
    error = exc.args[0]
    return isinstance(error, KafkaError) and error.code() in UNREACHABLE_CODES


class _LogSink:
    """librdkafka's ``logger``: it is called as ``log(level, "%s [%s] %s", fac, name, text)``."""

    def __init__(self, watch: BrokerWatch) -> None:
        self.watch = watch

    def log(self, level: int, fmt: str, *args: Any) -> None:
        facility = str(args[0]) if args else ""
        text = str(args[-1]) if args else fmt
        if facility in CONNECTION_FACILITIES:
            log.debug("kafka connection", facility=facility, message=text)
        elif level >= logging.WARNING:
            log.warning("kafka client", facility=facility, message=text)
        else:
            log.debug("kafka client", facility=facility, message=text)


class BrokerWatch:
    """Connection state of the Kafka clients that share it (see the module docstring)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        warn_every_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.warn_every_s = warn_every_s
        self.clock = clock
        self.last_alive = clock()  # the start counts: the silence is measured from it
        self.failing_since: float | None = None  # the first failure since the last sign of life
        self.last_error = ""
        self.suppressed = 0  # failures not warned about since the last warning
        self._warned_at: float | None = None

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings routing its errors and log lines here."""
        return {"error_cb": self.on_error, "logger": _LogSink(self)}

    def on_error(self, error: KafkaError) -> None:
        """``error_cb``: an outage starts with no broker up; connection errors while it lasts
        are counted (one warning now and then); other errors are warned about."""
        code = error.code()
        if code in OUTAGE_CODES or (code in UNREACHABLE_CODES and self.failing):
            self.failed(error.str())
        elif code in UNREACHABLE_CODES:  # one connection: an idle one closed, say
            self.last_error = error.str()
            log.debug("kafka connection error", code=error.name(), error=error.str())
        else:
            log.warning("kafka error", code=error.name(), error=error.str())

    def failed(self, detail: str) -> None:
        """A failed connection attempt: a warning now and then, never one per attempt."""
        now = self.clock()
        self.failing_since = self.failing_since if self.failing_since is not None else now
        self.last_error = detail
        self.suppressed += 1
        if self._warned_at is not None and now - self._warned_at < self.warn_every_s:
            return
        self._warned_at = now
        log.warning(
            "kafka broker unreachable; retrying",
            bootstrap_servers=self.bootstrap_servers,
            for_s=round(now - self.failing_since, 1),
            attempts=self.suppressed,
            error=detail,
            action="check that the broker runs and kafka.bootstrap_servers points at it",
        )
        self.suppressed = 0

    def alive(self) -> None:
        """The broker answered (an assignment, messages, metadata)."""
        if self.failing_since is not None:
            log.info("kafka broker reachable again", bootstrap_servers=self.bootstrap_servers,
                     after_s=round(self.clock() - self.failing_since, 1))  # fmt: skip
        self.last_alive = self.clock()
        self.failing_since = None
        self._warned_at = None
        self.suppressed = 0

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def silent_for(self) -> float:
        """Seconds since the last sign of life (or since the watch was created)."""
        return self.clock() - self.last_alive

    def confirm(self, client: Any, timeout_s: float = 5.0) -> None:
        """Reach the broker once through ``client`` (its metadata); raise
        :class:`BrokerUnreachableError` when it does not answer."""
        try:
            client.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            detail = self.last_error or str(exc.args[0] if exc.args else exc)
            raise BrokerUnreachableError(
                unreachable_message(self.bootstrap_servers, self.silent_for(), detail)
            ) from None
        self.alive()


def quiet_client(bootstrap_servers: str, client: Mapping[str, Any]) -> dict[str, Any]:
    """``client`` (librdkafka settings) with the log lines and errors of a short-lived client
    (status, dead-letter and notification readers) routed to a :class:`BrokerWatch`: an
    unreachable broker then shows as one warning now and then and the caller's own timeout
    error, never as raw ``%3|...|FAIL|`` lines. ``client``'s own settings win."""
    return {**BrokerWatch(bootstrap_servers).client_config(), **client}
