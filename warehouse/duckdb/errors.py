"""DuckDB errors classified into the contract's errors, by class (never by message text).

DuckDB raises one class, ``IOException``, for a file another process holds, a read-only
filesystem and a full disk alike, without an errno. Which one it is comes from the filesystem
itself (:func:`storage_problem`: ``statvfs`` flags and free space, the path's kind, ``access``),
so a file that can never be written is reported at once instead of being retried.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from warehouse.base import (
    DataError,
    TerminalWarehouseError,
    TransientWarehouseError,
    WarehouseError,
)

_DATA_ERRORS = (
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
    duckdb.ConstraintException,
    duckdb.TypeMismatchException,
)


# Less free space than this on the file's filesystem counts as full: DuckDB writes whole
# blocks (256 KiB by default) and its write-ahead log next to the file.
MIN_FREE_BYTES = 1024 * 1024


def storage_problem(path: str) -> str | None:
    """Why the DuckDB file ``path`` can't be written, read from the filesystem (``statvfs``
    flags and free space, the path's kind, ``access``), as "what happened; what to do", or
    None when nothing there prevents it (then an I/O error is most likely a lock another
    process holds). ``:memory:`` has no file."""
    if path == ":memory:":
        return None
    file = Path(path)
    if file.is_dir():
        return (
            f"warehouse file {path} is a directory, not a DuckDB file: point warehouse.path "
            "at a file name (it is created on first use)"
        )
    folder = file.parent
    if not folder.is_dir():
        return (
            f"the folder of warehouse file {path} does not exist: create {folder}, "
            "or point warehouse.path elsewhere"
        )
    existing = file if file.exists() else folder
    try:
        fs = os.statvfs(existing)
    except OSError as exc:
        return f"warehouse file {path} can't be inspected ({exc.strerror}): check the path"
    if fs.f_flag & os.ST_RDONLY:
        return (
            f"warehouse file {path} is on a read-only filesystem: remount it read-write, "
            "or point warehouse.path at a writable disk"
        )
    free = fs.f_bavail * fs.f_frsize
    if free < MIN_FREE_BYTES:
        return (
            f"the disk of warehouse file {path} is full ({free // 1024} KiB free): "
            "free some space (or grow the disk), then run the command again"
        )
    if not os.access(existing, os.W_OK):
        return (
            f"warehouse file {path} is not writable by this user: give it (and its folder) "
            "write permission"
        )
    return None


def map_error(exc: duckdb.Error, *, table: str | None, path: str) -> WarehouseError:
    """Classify a DuckDB error by its class (never its message) into the contract's errors;
    an I/O error by the state of the file's filesystem (:func:`storage_problem`)."""
    if isinstance(exc, duckdb.IOException):
        problem = storage_problem(path)
        if problem is not None:
            return TerminalWarehouseError(f"{problem}. (DuckDB: {exc})")
        return TransientWarehouseError(f"DuckDB file {path}: I/O error, retry later: {exc}")
    if isinstance(exc, duckdb.TransactionException):
        return TransientWarehouseError(f"DuckDB file {path}: transaction conflict: {exc}")
    if isinstance(exc, _DATA_ERRORS):
        return DataError(
            f"table {table!r}: the batch holds a value the target can't take: {exc}", table=table
        )
    return TerminalWarehouseError(
        f"DuckDB file {path} (table {table!r}): {type(exc).__name__}: {exc}. "
        "Not retryable: check the file, the table definitions and the configuration"
    )
