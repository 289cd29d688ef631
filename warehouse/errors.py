"""The warehouse layer's error classes.

Each engine classifies its driver's errors (by exception class / SQLSTATE / error code, never
by message text) into these, which decide what the consumer does: retry, dead-letter the
offending events, or stop. Re-exported by :mod:`warehouse.base`.
"""

from __future__ import annotations


class WarehouseError(Exception):
    """Base class of every error the warehouse layer raises."""


class TransientWarehouseError(WarehouseError):
    """The engine is unavailable or busy (locked file, network, timeout): retry later."""


class TerminalWarehouseError(WarehouseError):
    """Retrying will not help (permissions, corrupt file, bug): stop with this message."""


class DataError(WarehouseError):
    """The batch holds a value the target column can't hold (overflow, bad cast...).

    The consumer isolates the offending events and dead-letters them; ``table`` names the
    table whose statement failed.
    """

    def __init__(self, message: str, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class IncompatibleSchemaChangeError(WarehouseError):
    """The source changed a column in a way the target can't follow (e.g. text -> int).

    ``table`` names the target table (set by the adapter when the raiser didn't know it), so
    the consumer parks exactly that table and lets the others flow on.
    """

    def __init__(self, message: str, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table


class WatermarkMovedError(WarehouseError):
    """A keyless table's re-load (``Warehouse.replace_keyless``) found the table's watermark
    moved since the caller checked it: the stream applied changes meanwhile. Nothing was
    written; read the source again and retry."""

    def __init__(self, message: str, table: str | None = None) -> None:
        super().__init__(message)
        self.table = table
