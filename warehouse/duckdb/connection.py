"""Opening and closing a DuckDB file, and DuckDB's storage introspection.

Opening a file that another process holds is retried with exponential backoff for a bounded
time (:func:`open_file`), then reported as a :class:`~warehouse.base.TransientWarehouseError`.
A file that can't be written at all (read-only filesystem, full disk, a directory in its
place: :func:`~warehouse.duckdb.errors.storage_problem`) is a
:class:`~warehouse.base.TerminalWarehouseError` at once: waiting would not help.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_any,
    wait_exponential,
)
from tenacity.stop import stop_base

from warehouse.base import TerminalWarehouseError, TransientWarehouseError
from warehouse.duckdb.errors import storage_problem

# DuckDB shares one database instance between the connections of a process to one file and
# drops it with the last one. Opening a file while another thread's connection closes races
# with that (seen with duckdb 2.0.1: a thread's query then fails with "Table Function with name
# python_arrow_scan does not exist"), so connects and closes take turns within the process
# (a reconcile or a status read next to `cdc run`'s thread, as in the tests).
_INSTANCE_LOCK = threading.Lock()

# DuckDB's storage introspection (table_storage); the only inputs are bound parameters
TABLE_EXISTS = (
    "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2"
)
BLOCKS = (
    "SELECT count(DISTINCT b) FROM ("
    "SELECT block_id AS b FROM pragma_storage_info($1) WHERE persistent AND block_id >= 0 "
    "UNION ALL SELECT unnest(additional_block_ids) FROM pragma_storage_info($1) "
    "WHERE persistent)"
)
BLOCK_SIZE = (
    "SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()"
)


class _StopWhen(stop_base):
    """Stop retrying once ``interrupted()`` says so (SIGTERM while a file is held)."""

    def __init__(self, interrupted: Callable[[], bool]) -> None:
        self.interrupted = interrupted

    def __call__(self, retry_state: RetryCallState) -> bool:
        return bool(self.interrupted())


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    with _INSTANCE_LOCK:
        return duckdb.connect(path)


def disconnect(con: duckdb.DuckDBPyConnection) -> None:
    with _INSTANCE_LOCK:
        con.close()


def open_file(
    path: str,
    lock_timeout_s: float,
    interrupted: Callable[[], bool],
    filesystems: Sequence[Any] = (),
) -> duckdb.DuckDBPyConnection:
    """A connection to the file (in UTC, with the tier files' filesystems registered)."""

    def held_elsewhere(exc: BaseException) -> bool:  # else the file can't be written at all
        return isinstance(exc, duckdb.IOException) and storage_problem(path) is None

    retrying = Retrying(
        retry=retry_if_exception(held_elsewhere),
        stop=stop_any(stop_after_delay(lock_timeout_s), _StopWhen(interrupted)),
        wait=wait_exponential(multiplier=0.01, min=0.01, max=1.0),
        reraise=True,
    )
    try:
        con = retrying(_connect, path)
    except duckdb.IOException as exc:
        problem = storage_problem(path)
        if problem is not None:
            raise TerminalWarehouseError(f"{problem}. (DuckDB: {exc})") from exc
        raise TransientWarehouseError(
            f"DuckDB file {path} could not be opened within {lock_timeout_s:g}s; "
            f"another process probably holds it (a `cdc run` or a long query): {exc}"
        ) from exc
    con.execute("SET TimeZone = 'UTC'")
    for fs in filesystems:  # history views reading tier files on S3 etc.
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        if not con.filesystem_is_registered(protocol):
            con.register_filesystem(fs)
    return con
