"""Prometheus metrics and a health endpoint for ``cdc run``.

:class:`Metrics` holds its own :class:`prometheus_client.CollectorRegistry` (never the global
one, so two replicators in one process, or tests, don't clash) and is what the replication loop
updates. :class:`MetricsServer` serves it over HTTP in a daemon thread:

- ``GET /metrics``: the Prometheus text format;
- ``GET /health``: JSON, ``200 {"status": "ok", ...}`` while the loop is running and polled
  within ``stall_seconds``, else ``503`` with ``status`` ``starting``, ``stalled`` or
  ``stopping``.

:class:`SlotPoller` reads the replication slot's lag from ``pg_replication_slots`` every few
seconds on its own connection; a failed read is logged and retried, never fatal.
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from cdc.source.slot import read_slot

__all__ = ["Metrics", "MetricsServer", "SlotPoller"]

log = structlog.get_logger("cdc.metrics")

# seconds, from a small DuckDB batch to a large Snowflake MERGE
_APPLY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """The replicator's metrics, and the liveness the health endpoint reports.

    ``clock`` (wall time, seconds) and ``monotonic`` are injectable for tests."""

    def __init__(
        self,
        *,
        stall_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._state = "starting"
        self._last_alive: float | None = None
        self._pending: dict[str, int] = {}  # table -> events not applied yet
        self._newest_commit: dict[str, float] = {}  # table -> source commit (epoch s)
        r = self.registry
        self.events_applied = Counter(
            "cdc_events_applied", "Change events applied to the warehouse.", ["table"], registry=r
        )
        self.batches = Counter("cdc_batches", "Batches committed to the warehouse.", registry=r)
        self.batch_seconds = Histogram(
            "cdc_batch_apply_seconds",
            "Time to apply one batch (decoded events to warehouse commit), retries included.",
            buckets=_APPLY_BUCKETS,
            registry=r,
        )
        self.lag_events = Gauge(
            "cdc_lag_events",
            "Messages in the table's topic not applied yet (log end minus applied offset).",
            ["table"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "cdc_lag_seconds",
            "Now minus the source commit time of the newest applied change; 0 when caught up.",
            ["table"],
            registry=r,
        )
        self.dead_letters = Counter(
            "cdc_dead_letters", "Messages sent to a dead-letter topic.", registry=r
        )
        self.retries = Counter(
            "cdc_warehouse_retries",
            "Retries after a transient warehouse error (the loop waits, nothing is consumed).",
            registry=r,
        )
        self.parked = Gauge(
            "cdc_table_parked",
            "1 while the table is parked after an incompatible schema change.",
            ["table"],
            registry=r,
        )
        self.slot_lag_bytes = Gauge(
            "cdc_slot_lag_bytes",
            "WAL after the replication slot's confirmed_flush_lsn (not confirmed by Debezium).",
            ["slot"],
            registry=r,
        )
        self.slot_retained_bytes = Gauge(
            "cdc_slot_retained_wal_bytes",
            "WAL the server keeps for the replication slot (after its restart_lsn).",
            ["slot"],
            registry=r,
        )
        self.slot_active = Gauge(
            "cdc_slot_active", "1 when a walsender (Debezium) reads the slot.", ["slot"], registry=r
        )
        self.last_poll = Gauge(
            "cdc_last_poll_timestamp_seconds",
            "When the consumer loop last polled the broker (epoch seconds).",
            registry=r,
        )

    # ------------------------------------------------------------ the loop's hooks
    def tables(self, names: list[str]) -> None:
        """Create every table's series at 0 so they show before the first batch."""
        for name in names:
            self.events_applied.labels(name)
            self.parked.labels(name).set(0)
            self.lag_seconds.labels(name).set_function(functools.partial(self._lag_seconds, name))

    def alive(self) -> None:
        """The loop made progress (a poll, a batch, a retry)."""
        with self._lock:
            if self._state == "starting":
                self._state = "running"
            self._last_alive = self._monotonic()
        self.last_poll.set(self._clock())

    def stopping(self) -> None:
        with self._lock:
            self._state = "stopping"

    def batch_applied(
        self, seconds: float, events: Mapping[str, int], newest_commit: Mapping[str, float]
    ) -> None:
        """One committed batch: its apply time, events per table, and per table the newest
        applied change's source commit time (epoch seconds)."""
        self.batches.inc()
        self.batch_seconds.observe(seconds)
        for table, count in events.items():
            self.events_applied.labels(table).inc(count)
        with self._lock:
            for table, ts in newest_commit.items():
                self._newest_commit[table] = max(ts, self._newest_commit.get(table, ts))

    def pending(self, per_table: Mapping[str, int]) -> None:
        """Messages not applied yet per table."""
        with self._lock:
            self._pending.update(per_table)
        for table, count in per_table.items():
            self.lag_events.labels(table).set(count)

    def dead_lettered(self) -> None:
        self.dead_letters.inc()

    def retried(self) -> None:
        self.retries.inc()
        self.alive()

    def table_parked(self, table: str) -> None:
        self.parked.labels(table).set(1)

    def slot(self, name: str, *, active: bool, lag: int | None, retained: int | None) -> None:
        self.slot_active.labels(name).set(1 if active else 0)
        if lag is not None:
            self.slot_lag_bytes.labels(name).set(lag)
        if retained is not None:
            self.slot_retained_bytes.labels(name).set(retained)

    # ------------------------------------------------------------------ reading
    def _lag_seconds(self, table: str) -> float:
        with self._lock:
            if self._pending.get(table, 0) == 0:
                return 0.0
            newest = self._newest_commit.get(table)
        return 0.0 if newest is None else max(0.0, self._clock() - newest)

    def health(self) -> tuple[int, dict[str, Any]]:
        """HTTP status and body of ``/health``."""
        with self._lock:
            state, last = self._state, self._last_alive
            pending = sum(self._pending.values())
        since = None if last is None else self._monotonic() - last
        if state == "running" and since is not None and since > self.stall_seconds:
            state = "stalled"
        body: dict[str, Any] = {
            "status": "ok" if state == "running" else state,
            "seconds_since_poll": None if since is None else round(since, 3),
            "pending_events": pending,
        }
        return (200 if state == "running" else 503), body

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` and ``/health`` over HTTP on ``host:port`` (port 0: any free one, see
    :attr:`port`), served by a daemon thread until :meth:`close`."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics = metrics
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), _handler(metrics))
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cdc-metrics", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("serving metrics", metrics=f"{self.url}/metrics", health=f"{self.url}/health")
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.render())
            elif path == "/health":
                code, body = metrics.health()
                self._send(code, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics, /health\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Requests are not logged (a scrape every few seconds would drown the logs)."""

    return Handler


class SlotPoller:
    """Reads the slot's lag every ``interval_seconds`` into ``metrics`` (a daemon thread with
    its own connection; a failure is logged and the connection opened again next time)."""

    def __init__(
        self,
        metrics: Metrics,
        conninfo: Mapping[str, Any],
        slot_name: str,
        *,
        interval_seconds: float = 15.0,
    ) -> None:
        self.metrics = metrics
        self._conninfo = dict(conninfo)  # holds the password: never logged
        self.slot_name = slot_name
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cdc-slot-poller", daemon=True)
        self._conn: Any = None

    def start(self) -> SlotPoller:
        self._thread.start()
        return self

    def poll_once(self) -> None:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    **{**self._conninfo, "connect_timeout": 5}, autocommit=True
                )
            slot = read_slot(self._conn, self.slot_name)
        except psycopg.Error as exc:
            self._close_conn()
            log.warning(
                "replication slot lag not read; trying again later",
                slot=self.slot_name,
                error_class=type(exc).__name__,
                error=str(exc).strip()[:300],  # libpq's messages hold no password
            )
            return
        if not slot.exists:
            log.warning("replication slot missing", slot=self.slot_name)
        self.metrics.slot(
            self.slot_name, active=slot.active, lag=slot.lag_bytes, retained=slot.retained_bytes
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_seconds)
        self._close_conn()

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
