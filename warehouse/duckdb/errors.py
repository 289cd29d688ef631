"""DuckDB errors classified into the contract's errors, by class (never by message text)."""

from __future__ import annotations

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


def map_error(exc: duckdb.Error, *, table: str | None, path: str) -> WarehouseError:
    """Classify a DuckDB error by its class (never its message) into the contract's errors."""
    if isinstance(exc, duckdb.IOException):
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
