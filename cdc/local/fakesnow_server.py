"""fakesnow's server on loopback: Snowflake's SQL on DuckDB behind the HTTP API the real
Snowflake connector speaks. The local stand-in for a Snowflake account (``cdc demo
--warehouse snowflake-local``, the conformance and integration tests).

``fakesnow.server()`` can be called once per process (its first call imports the submodule
``fakesnow.server``, which replaces the function on the package), so this starts the same
uvicorn app directly: any number of times, one server per call. Its data lives in memory,
shared by every connection, and is gone when the server stops.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

HOST = "127.0.0.1"


@contextlib.contextmanager
def fakesnow_server(
    start_timeout_s: float = 30.0, *, quiet: bool = False
) -> Iterator[dict[str, Any]]:
    """Run a server on a free loopback port; yields ``snowflake.connector.connect`` kwargs
    (account, user, password, host, port, protocol, session parameters). ``quiet`` silences
    fakesnow's per-request log lines and warnings (for ``cdc demo``)."""
    if quiet:
        logging.getLogger("fakesnow").setLevel(logging.WARNING)
        logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "Unsupported property ..."
        warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
    try:
        import uvicorn
        from fakesnow.server import app
    except ImportError as exc:  # pragma: no cover - the local extra is not installed
        raise RuntimeError(
            "the local Snowflake needs fakesnow's server: install the `local` extra "
            "(`make demo` does)"
        ) from exc
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="fakesnow server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while thread.is_alive() and not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        raise RuntimeError(f"fakesnow's server did not start on {HOST}:{port}")
    try:
        yield {
            "user": "fake",
            "password": "snow",
            "account": "fakesnow",
            "host": HOST,
            "port": port,
            "protocol": "http",
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
            "network_timeout": 1,  # fakesnow answers at once; don't retry its errors
        }
    finally:
        server.should_exit = True
        thread.join(10)


def warehouse_section(server: dict[str, Any], database: str, schema: str) -> dict[str, Any]:
    """A cdc.yaml ``warehouse`` section for the server, its database and schema created."""
    import snowflake.connector

    with snowflake.connector.connect(**server) as conn:
        cur = conn.cursor()
        cur.execute(f'CREATE DATABASE IF NOT EXISTS "{database}"')
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"."{schema}"')
    return {
        "type": "snowflake",
        "account": server["account"],
        "user": server["user"],
        "password": server["password"],
        "database": database,
        "schema": schema,
        "host": server["host"],
        "port": server["port"],
        "protocol": server["protocol"],
    }
