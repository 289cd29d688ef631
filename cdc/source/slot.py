"""The replication slot's state, read from ``pg_replication_slots``: whether it exists, whether
a walsender (Debezium) reads it, the WAL not confirmed yet and the WAL the server retains for
it. Read by ``cdc status`` and by the metrics' slot poller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SlotStatus:
    name: str
    exists: bool
    active: bool = False
    lag_bytes: int | None = None  # WAL after the slot's confirmed_flush_lsn
    retained_bytes: int | None = None  # WAL the server keeps for the slot (after restart_lsn)


SLOT_QUERY = (
    "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
    "FROM pg_replication_slots WHERE slot_name = %s"
)


def read_slot(conn: Any, name: str) -> SlotStatus:
    """The slot's state on an open psycopg connection (autocommit)."""
    row = conn.execute(SLOT_QUERY, (name,)).fetchone()
    if row is None:
        return SlotStatus(name, exists=False)
    return SlotStatus(
        name,
        exists=True,
        active=bool(row[0]),
        lag_bytes=None if row[1] is None else int(row[1]),
        retained_bytes=None if row[2] is None else int(row[2]),
    )
