"""Exact re-load of a table without a primary key ("quiet replace"), used by
``cdc reconcile --repair``.

A keyless table has no per-key position guard, so a re-load must replace the table's rows with
the source's multiset at a moment when the warehouse has applied exactly the transactions the
source read saw. One attempt:

1. Read the source in one REPEATABLE READ transaction: ``pg_current_snapshot()`` first (the
   transaction's MVCC snapshot S), every row, then ``pg_current_wal_lsn()`` as L.
2. Wait until the warehouse holds every change up to L (:class:`cdc.reconcile.lag.LagProbe`:
   the slot confirmed a WAL marker written after L, the consumer's stored offsets reached the
   topic's end). Bounded: a timeout asks whether ``cdc run`` is running.
3. Read the table's watermark. Every transaction visible in S committed before L, so it is
   applied; the changes applied are exactly S's when the last applied one's transaction
   (``txid`` in the watermark) is visible in S (changes arrive in commit order). If it is not,
   the table changed after the read (a transaction committed between S and L, or after L):
   the attempt is retried from 1.
4. :meth:`warehouse.base.Warehouse.replace_keyless`: delete the rows and insert the source's
   (op ``r``, position L) in one transaction, if the watermark is still the one checked
   (compare-and-set; moved, or a write conflict with the consumer's transaction on an engine
   that detects it: retry from 1). The watermark is kept: every change after it in
   the stream commits after every change up to L was applied, so after L (its transaction is
   invisible in S and not in the rows read), and it applies on top of the re-load.

Debezium's ``source.txId`` is the 32-bit transaction id (pgoutput's BEGIN message); it is
widened to the 64-bit ``xid8`` against S's ``xmax`` (the id within 2^31 of it: PostgreSQL
keeps live ids within that window) before ``pg_visible_in_snapshot``.

Residual window: PostgreSQL makes transactions visible in nearly, not strictly, their commit
record order (a commit record can precede another's while its transaction becomes visible
after it, during its commit flush). A change of such a transaction applied before the last
one could be invisible in S; the reconcile that follows the re-load compares again and
reports what differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog

from cdc.consumer.fitting import fit_batch
from cdc.reconcile.repair import repair_batch
from cdc.reconcile.source import SourceTable, current_lsn
from warehouse.base import TableTarget, TransientWarehouseError, Warehouse, WatermarkMovedError

log = structlog.get_logger("cdc.reconcile")
_WRAP = 1 << 32


class QuietReplaceError(Exception):
    """The re-load could not be made exact (the consumer did not catch up, or the table kept
    changing); nothing was replaced."""


@dataclass(frozen=True, slots=True)
class SourceRead:
    """The source's rows read in one snapshot (``snapshot``: ``pg_snapshot`` text) as of
    WAL position ``position``."""

    rows: list[dict[str, Any]]
    snapshot: str
    position: int


def read_source(conn: psycopg.Connection[Any], src: SourceTable) -> SourceRead:
    """Step 1: the snapshot, the rows, then the position, in one REPEATABLE READ transaction."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        row = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
        assert row is not None
        rows = src.all_rows()
        position = current_lsn(conn)
    return SourceRead(rows, str(row[0]), position)


def full_xid(txid: int, xmax: int) -> int:
    """A 32-bit transaction id as the 64-bit one nearest ``xmax`` (a 64-bit id as it is)."""
    if txid >= _WRAP:
        return txid
    ahead = (txid - xmax) % _WRAP
    return xmax + ahead if ahead < _WRAP // 2 else xmax - (_WRAP - ahead)


def visible(conn: psycopg.Connection[Any], txid: int, snapshot: str) -> bool:
    """Whether transaction ``txid`` (Debezium's ``txId``) is visible in ``snapshot``."""
    row = conn.execute("SELECT pg_snapshot_xmax(%s::pg_snapshot)::text", [snapshot]).fetchone()
    assert row is not None
    xid = full_xid(txid, int(row[0]))
    if xid < 0:
        return True
    seen = conn.execute(
        "SELECT pg_visible_in_snapshot(%s::text::xid8, %s::pg_snapshot)", [str(xid), snapshot]
    ).fetchone()
    return bool(seen and seen[0])


def quiet_replace(
    conn: psycopg.Connection[Any],
    src: SourceTable,
    warehouse: Warehouse,
    target: TableTarget,
    caught_up: Callable[[int], bool],
    *,
    attempts: int = 3,
) -> int:
    """Replace a keyless table's rows with the source's (see the module docstring); returns
    the rows written. ``caught_up(position)``: waits (bounded) until the warehouse applied
    every change up to ``position``. Raises :class:`QuietReplaceError`."""
    schema = src.schema
    for attempt in range(1, max(1, attempts) + 1):
        read = read_source(conn, src)
        if not caught_up(read.position):
            raise QuietReplaceError(
                f"table {target.name!r}: the warehouse did not apply the source's changes up to "
                f"LSN {read.position} in time, so the re-load can't be made exact; is "
                "`cdc run` running (and keeping up)? Repair again once it has caught up"
            )
        mark = warehouse.keyless_watermark(target)
        if mark.streamed is not None and mark.txid is None:
            raise QuietReplaceError(
                f"table {target.name!r}: its watermark holds no transaction id (written by an "
                "older version), so which changes the warehouse applied can't be checked "
                "against the source read; repair it after its next streamed change"
            )
        if mark.streamed is not None and not visible(conn, mark.txid or 0, read.snapshot):
            log.info("keyless table changed after the source read; reading again",
                     table=target.name, attempt=attempt, txid=mark.txid)  # fmt: skip
            continue
        batch, unfit = fit_batch(
            repair_batch(target, schema, read.rows, [], read.position), {},
            warehouse.capabilities,
        )  # fmt: skip
        if unfit:
            raise QuietReplaceError(
                f"table {target.name!r}: {len(unfit)} source rows hold values the warehouse "
                f"can't store ({unfit[0].reasons[0]}); not re-loaded"
            )
        try:
            return warehouse.replace_keyless(batch, mark)
        except (WatermarkMovedError, TransientWarehouseError) as exc:  # a conflict: the same
            log.info("keyless table changed during the re-load; reading again",
                     table=target.name, attempt=attempt, reason=str(exc))  # fmt: skip
    raise QuietReplaceError(
        f"table {target.name!r}: the table kept changing during {attempts} attempts to re-load "
        "it exactly; repair it at a quieter moment"
    )
