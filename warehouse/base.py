"""The warehouse contract: what the consumer may ask of any engine.

The consumer only talks to :class:`Warehouse`; engine modules (``warehouse.duckdb``, later
``warehouse.snowflake``) fill it in. Common code asks :class:`Capabilities` instead of branching
on engine names. Errors are classified by the engine module (by exception class / SQLSTATE /
error code, never by message text) into the three classes below, which decide what the consumer
does: retry, dead-letter the offending events, or stop.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from cdc.model import ChangeEvent, TableSchema

TableMode = Literal["mirror"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an engine can do; common code reads these instead of engine names."""

    transactional_ddl: bool
    max_decimal_precision: int
    # True when other processes can read while `cdc run` is replicating (between batches).
    concurrent_readers: bool


@dataclass(frozen=True, slots=True)
class MetadataColumns:
    """Names of the bookkeeping columns on every replicated table (architecture.md §3)."""

    lsn: str = "_cdc_lsn"
    txid: str = "_cdc_txid"
    op: str = "_cdc_op"
    source_ts: str = "_cdc_source_ts"
    loaded_at: str = "_cdc_loaded_at"
    deleted: str = "_cdc_deleted"


@dataclass(frozen=True, slots=True)
class TableTarget:
    """Where and how one source table lands in the warehouse."""

    name: str  # the warehouse table name (unqualified; the adapter adds its schema)
    mode: TableMode = "mirror"
    soft_delete: bool = False
    metadata: MetadataColumns = field(default_factory=MetadataColumns)


@dataclass(frozen=True, slots=True)
class TableBatch:
    """All events of one batch for one table, in log order (Kafka offset order)."""

    target: TableTarget
    schema: TableSchema  # the newest schema seen in the batch for this table
    events: Sequence[ChangeEvent]


@dataclass(frozen=True, slots=True)
class OffsetRow:
    """The next Kafka offset to consume for one partition, stored with the data it covers."""

    consumer_group: str
    topic: str
    partition: int
    next_offset: int


@dataclass(slots=True)
class TableApplyStats:
    table: str
    events: int = 0
    upserted: int = 0
    deleted: int = 0
    stale: int = 0  # changes the position guard refused (older than what is stored)


@dataclass(slots=True)
class ApplyResult:
    tables: list[TableApplyStats]
    seconds: float


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


class Warehouse(abc.ABC):
    """One warehouse engine. Not thread-safe; one instance per process."""

    capabilities: ClassVar[Capabilities]

    @abc.abstractmethod
    def ensure_bookkeeping(self) -> None:
        """Create the bookkeeping schema and tables (offsets, ...) if missing. Idempotent."""

    @abc.abstractmethod
    def apply(self, batches: Sequence[TableBatch], offsets: Sequence[OffsetRow]) -> ApplyResult:
        """Apply every batch and store the offsets in ONE transaction, set-based.

        Creates missing target tables and adds new columns first (idempotent DDL). Per table:
        collapse to the newest change per key, carry unchanged TOAST values forward, stage the
        rows as data, upsert with the position guard (older never wins), delete or soft-delete.
        Offsets only move forward. Either everything commits or nothing does.
        """

    @abc.abstractmethod
    def load_offsets(self, consumer_group: str) -> dict[tuple[str, int], int]:
        """Next offsets stored for the group: ``{(topic, partition): next_offset}``."""

    @abc.abstractmethod
    def fetch_table(self, target: TableTarget) -> list[dict[str, Any]]:
        """Every live row of a target table (soft-deleted rows excluded), metadata omitted."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and locks."""
