"""Pure TRUNCATE logic: what a truncate event asks of its table, and the position guard it
leaves behind. No I/O.

A truncate at position ``P`` (its change LSN) removes every stored row of the table at or
below ``P``, whatever its key; the engine runs it set-based (:mod:`warehouse.sql.truncation`).
It reaches :meth:`warehouse.base.Warehouse.apply` alone in its table batch: the consumer cuts
polled batches around it (:func:`cdc.consumer.batching.cut_at_truncates`), so every change
before it is stored first and every change after it comes later.

Afterwards the table's *truncation mark* (the highest truncate position applied, kept in
``_cdc.truncations``) makes every change at or below it stale, for every key: a redelivered
old insert can't bring a truncated row back, even one of a key the warehouse never held. A
TRUNCATE takes PostgreSQL's ACCESS EXCLUSIVE lock, so no other transaction writes the table
between its position and its commit: every later change of the table has a higher LSN.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from cdc.model import Op
from warehouse.arrow import Stage
from warehouse.base import TableBatch


@dataclass(frozen=True, slots=True)
class Truncation:
    """One TRUNCATE of a table: its position, transaction and commit time."""

    table: str
    lsn: int
    txid: int | None
    commit_ts_us: int
    commit_lsn: int | None = None

    def stage(self) -> pa.Table:
        """The truncate as a one-row stage (the statements read its values from there)."""
        return pa.table(
            {
                "table_name": pa.array([self.table], pa.string()),
                Stage.lsn: pa.array([self.lsn], pa.int64()),
                Stage.commit_lsn: pa.array([self.commit_lsn], pa.int64()),
                Stage.txid: pa.array([self.txid], pa.int64()),
                Stage.source_ts: pa.array([self.commit_ts_us], pa.timestamp("us", tz="UTC")),
            }
        )


def truncation_of(batch: TableBatch) -> Truncation | None:
    """The batch's truncate, or None when it holds none. A truncate must be alone in its
    batch: a ``ValueError`` otherwise (the consumer cuts batches around truncates)."""
    truncates = [e for e in batch.events if e.op is Op.TRUNCATE]
    if not truncates:
        return None
    if len(batch.events) != 1:
        raise ValueError(
            f"table {batch.target.name!r}: a TRUNCATE must be applied alone in its batch "
            f"(got {len(truncates)} truncates among {len(batch.events)} events); cut the batch "
            "with cdc.consumer.batching.cut_at_truncates"
        )
    pos = truncates[0].position
    return Truncation(batch.target.name, pos.lsn, pos.tx_id, pos.commit_ts_us, pos.commit_lsn)


def past_truncation(batch: TableBatch, mark: int | None) -> tuple[TableBatch, int]:
    """The batch without its changes at or below the table's truncation mark, and how many
    were dropped (stale: a truncate applied after them already removed their rows)."""
    if mark is None:
        return batch, 0
    kept = [e for e in batch.events if e.position.lsn > mark]
    if len(kept) == len(batch.events):
        return batch, 0
    return TableBatch(batch.target, batch.schema, kept), len(batch.events) - len(kept)
