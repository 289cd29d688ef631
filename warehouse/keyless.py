"""Pure planning of a table without a primary key: a batch as multiset changes. No I/O.

A keyless source table is mirrored when it has ``REPLICA IDENTITY FULL``: Debezium then sends
an UPDATE as ``before`` (every column) + ``after``, a DELETE as ``before``, a CREATE as
``after``, with a null Kafka key. The table is a multiset of rows: an update removes one copy
of ``before`` and adds one copy of ``after``; two equal rows are two copies, and deleting one
of them leaves one. A batch nets to, per distinct row value, how many stored copies to remove
and which copies to add (an add and a remove of the same value in the batch cancel).

No key means no per-key position guard. The table has one *watermark* instead
(:class:`Watermark`, stored with the rows in the apply's transaction):

- streamed changes: the last applied ``(commit_lsn, lsn)`` (Debezium's ``source.sequence``:
  the last commit LSN before the change, then the change's LSN). In stream order the pair
  strictly increases (the LSN alone does not across transactions), so a change at or below
  it was applied already (a redelivery, Debezium re-sending after a restart, a replay);
- snapshot reads (``op = r``, Debezium's initial snapshot): every read of one snapshot has the
  snapshot's LSN, so reads are ordered by ``(lsn, Kafka offset)`` (the topic has one
  partition). A read at a higher LSN than the last applied read starts a new snapshot, which
  *replaces* the table's rows. Once a streamed change is applied the snapshot has ended
  (Debezium streams a table only after its initial snapshot): a read at or below its LSN is
  stale, and a new snapshot can't be made exact (which streamed changes it contains is not
  known), so it parks the table.

The order is the topic's (one partition): events are taken by Kafka offset.
"""

from __future__ import annotations

import decimal
import math
import uuid
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from cdc.model import (
    UNCHANGED_TOAST,
    ChangeEvent,
    Op,
    SourcePosition,
    TableId,
    TableSchema,
    newer,
)
from warehouse.arrow import Stage, column_array
from warehouse.base import DataError, IncompatibleSchemaChangeError, TableBatch
from warehouse.sql.keyless import COUNT, INDEX, ROW

Values = tuple[Any, ...]  # a row's values, in schema column order


@dataclass(frozen=True, slots=True)
class Watermark:
    """A keyless table's applied position: streamed ``(commit_lsn, lsn)`` and snapshot read
    ``(read_lsn, read_offset)``; None where nothing of that kind was applied. ``txid``: the
    source transaction id (Debezium's ``source.txId``) of the last applied streamed change,
    which tells whether a source snapshot saw it (:mod:`cdc.reconcile.quiet`)."""

    commit_lsn: int | None = None
    lsn: int | None = None
    read_lsn: int | None = None
    read_offset: int | None = None
    txid: int | None = None

    @property
    def streamed(self) -> tuple[int, int] | None:
        return None if self.lsn is None else (self.commit_lsn or 0, self.lsn)


@dataclass(frozen=True, slots=True)
class Added:
    """One copy to add, with the metadata of the change that added it."""

    values: Values
    lsn: int
    txid: int | None
    op: Op
    source_ts_us: int
    commit_lsn: int | None = None


@dataclass(frozen=True, slots=True)
class KeylessPlan:
    """What one batch does to a keyless table, applied in this order: ``replace`` (delete
    every stored row: a new snapshot), remove ``removes`` (value, copies) from the stored
    rows, add ``adds`` (one per copy), then store ``watermark``."""

    table: str
    schema: TableSchema
    replace: bool
    removes: tuple[tuple[Values, int], ...]
    adds: tuple[Added, ...]
    watermark: Watermark
    events: int
    stale: int

    @property
    def moved(self) -> bool:
        """Whether anything is applied (else the batch was stale through and through)."""
        return self.stale < self.events


def alter_identity(table: str) -> str:
    """The statement that makes a keyless source table replicable (``table``: quoted)."""
    return f"ALTER TABLE {table} REPLICA IDENTITY FULL;"


def _same(value: Any) -> Hashable:
    """A hashable stand-in with the warehouse's equality: NaNs equal, -0.0 not 0.0, lists as
    tuples."""
    if isinstance(value, float) and math.isnan(value):
        return ("NaN",)
    if isinstance(value, float) and value == 0.0:
        return ("zero", math.copysign(1.0, value))
    if isinstance(value, decimal.Decimal) and value.is_nan():
        return ("NaN",)
    if isinstance(value, list):
        return tuple(_same(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _same(v)) for k, v in value.items()))
    return value  # type: ignore[no-any-return]


def row_identity(values: Values) -> Hashable:
    """The netting key of a row value (two rows the warehouse can't tell apart: one key)."""
    return tuple(_same(v) for v in values)


def _quoted(table: TableId) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in (table.schema, table.name))


def _row(event: ChangeEvent, image: dict[str, Any] | None, schema: TableSchema, side: str,
         unchanged: Values | None = None) -> Values:  # fmt: skip
    """A full row image in schema order; a column the image lacks takes its default, and an
    unchanged TOAST value the ``unchanged`` row's (an update's ``before``: with REPLICA
    IDENTITY FULL PostgreSQL logs the old row whole)."""
    if image is None:
        raise IncompatibleSchemaChangeError(
            f"{event.op.value!r} event of {schema.table} at {event.origin} has no {side} "
            "image: a table without a primary key is matched on all its columns, which "
            "Debezium sends only with REPLICA IDENTITY FULL. Run "
            f"{alter_identity(_quoted(schema.table))} at the source, then re-snapshot the table"
        )
    values = tuple(image.get(c.name, c.default) for c in schema.columns)
    if unchanged is not None:
        values = tuple(
            u if v is UNCHANGED_TOAST else v for v, u in zip(values, unchanged, strict=True)
        )
    if any(v is UNCHANGED_TOAST for v in values):
        raise DataError(
            f"{event.op.value!r} event of {schema.table} at {event.origin}: an unchanged "
            "TOAST placeholder in a keyless table's row without the old value to take "
            "(REPLICA IDENTITY FULL logs it); it can't be matched to a stored row and goes to "
            "the dead-letter topic"
        )
    return values


class _Net:
    """The running multiset change of one batch."""

    def __init__(self) -> None:
        self.pending: dict[Hashable, list[Added]] = {}  # adds not cancelled yet
        self.removes: Counter[Hashable] = Counter()
        self.shown: dict[Hashable, Values] = {}  # a value of each removed identity

    def add(self, added: Added) -> None:
        self.pending.setdefault(row_identity(added.values), []).append(added)

    def remove(self, values: Values) -> None:
        ident = row_identity(values)
        waiting = self.pending.get(ident)
        if waiting:
            waiting.pop()  # an add earlier in the batch: the two cancel
            return
        self.removes[ident] += 1
        self.shown.setdefault(ident, values)

    def clear(self) -> None:
        self.pending.clear()
        self.removes.clear()
        self.shown.clear()


def _check_partition(batch: TableBatch) -> None:
    spread = sorted({e.origin.partition for e in batch.events} - {0})
    if spread:
        raise IncompatibleSchemaChangeError(
            f"table {batch.target.name!r}: the source table {batch.schema.table} has no "
            f"primary key and its changes arrive on partition {spread[0]} of topic "
            f"{batch.events[0].origin.topic}: keyless changes (null Kafka keys) keep their "
            "order only on a topic with ONE partition. Recreate the topic with one partition "
            "and re-snapshot the table",
            table=batch.target.name,
        )


def _after(pos: SourcePosition, mark: Watermark) -> bool:
    """A streamed change after the watermark: :func:`cdc.model.newer`, with one difference. A
    watermark without a commit part was set by Debezium's first transaction after a start
    (it sends none before its first commit), so a change with a commit part comes after it
    whatever its change LSN (the LSN alone is not monotonic across transactions)."""
    if pos.commit_lsn is not None and mark.commit_lsn is None and mark.lsn is not None:
        return True
    return newer(pos.commit_lsn, pos.lsn, mark.commit_lsn, mark.lsn)


def plan_keyless(batch: TableBatch, stored: Watermark) -> KeylessPlan:
    """Net a keyless table's batch against its stored watermark (see the module docstring).

    Raises :class:`IncompatibleSchemaChangeError` (the table is parked) for an update or delete
    without its full ``before`` image, a topic partition other than 0, or a new snapshot after
    streamed changes; ``ValueError`` for a truncate (the template applies those first)."""
    _check_partition(batch)
    schema, name = batch.schema, batch.target.name
    net, mark, stale, wipe = _Net(), stored, 0, False
    for event in sorted(batch.events, key=lambda e: e.origin.offset):
        pos = event.position
        if event.op is Op.TRUNCATE:
            raise ValueError(f"truncate of {schema.table} at {event.origin}: not a row change")
        if event.op is Op.READ:
            done = mark.read_lsn is not None and (
                pos.lsn < mark.read_lsn
                or (pos.lsn == mark.read_lsn and mark.streamed is not None)  # it ended
                or (pos.lsn, event.origin.offset) <= (mark.read_lsn, mark.read_offset or 0)
            )
            if done:
                stale += 1
                continue
            if mark.read_lsn is None or pos.lsn > mark.read_lsn:  # a new snapshot
                if mark.streamed is not None:
                    raise IncompatibleSchemaChangeError(
                        f"table {name!r}: Debezium snapshotted the keyless source table "
                        f"{schema.table} again (at LSN {pos.lsn}) after streamed changes were "
                        "applied; which of them the snapshot holds is unknown, so it can't be "
                        f"applied exactly and the table is parked. Drop the warehouse table "
                        f"{name!r} and its row in _cdc.keyless_positions, then restart",
                        table=name,
                    )
                net.clear()
                wipe = True
            mark = replace(mark, read_lsn=pos.lsn, read_offset=event.origin.offset)
            net.add(Added(_row(event, event.after, schema, "after"), pos.lsn, pos.tx_id,
                          event.op, pos.commit_ts_us))  # fmt: skip
            continue
        if not _after(pos, mark):
            stale += 1
            continue
        mark = replace(mark, commit_lsn=pos.commit_lsn, lsn=pos.lsn, txid=pos.tx_id)
        old = None
        if event.op in (Op.UPDATE, Op.DELETE):
            old = _row(event, event.before, schema, "before")
            net.remove(old)
        if event.op in (Op.CREATE, Op.UPDATE):
            net.add(Added(_row(event, event.after, schema, "after", old), pos.lsn, pos.tx_id,
                          event.op, pos.commit_ts_us, pos.commit_lsn))  # fmt: skip
    adds = tuple(sorted((a for rows in net.pending.values() for a in rows), key=lambda a: a.lsn))
    return KeylessPlan(
        table=name,
        schema=schema,
        replace=wipe,
        removes=tuple((net.shown[i], k) for i, k in net.removes.items() if k),
        adds=adds,
        watermark=mark,
        events=len(batch.events),
        stale=stale,
    )


def replace_plan(batch: TableBatch, kept: Watermark) -> KeylessPlan:
    """A re-load of a keyless table (:meth:`warehouse.base.Warehouse.replace_keyless`): every
    stored row replaced by the batch's snapshot reads (one copy each), the watermark ``kept``
    as it is (the stream goes on after it)."""
    _check_partition(batch)
    schema = batch.schema
    adds = []
    for event in batch.events:
        if event.op is not Op.READ:
            raise ValueError(f"a re-load of {schema.table} takes snapshot reads, not {event.op}")
        pos = event.position
        adds.append(Added(_row(event, event.after, schema, "after"), pos.lsn, pos.tx_id,
                          event.op, pos.commit_ts_us))  # fmt: skip
    return KeylessPlan(table=batch.target.name, schema=schema, replace=True, removes=(),
                       adds=tuple(adds), watermark=kept, events=len(adds), stale=0)  # fmt: skip


def keyless_stage(plan: KeylessPlan) -> pa.Table:
    """The plan's removes (one row per value: ``m_count`` copies, ``m_index`` its number,
    ``m_deleted`` true) and adds (one row per copy, a fresh surrogate id in ``m_row``) as one
    Arrow table; data columns ``c<i>`` as in every stage (:class:`warehouse.arrow.Stage`)."""
    removes, adds = plan.removes, plan.adds
    arrays: dict[str, pa.Array] = {}
    for i, column in enumerate(plan.schema.columns):
        values = [v[i] for v, _ in removes] + [a.values[i] for a in adds]
        arrays[Stage.data(i)] = column_array(column.type, values, table=plan.table,
                                             column=column.name)  # fmt: skip
    none = [None] * len(removes)
    arrays[Stage.deleted] = pa.array([True] * len(removes) + [False] * len(adds), pa.bool_())
    arrays[COUNT] = pa.array([k for _, k in removes] + [None] * len(adds), pa.int64())
    arrays[INDEX] = pa.array(list(range(len(removes))) + [None] * len(adds), pa.int64())
    arrays[ROW] = pa.array(none + [uuid.uuid4().hex for _ in adds], pa.string())
    arrays[Stage.lsn] = pa.array(none + [a.lsn for a in adds], pa.int64())
    arrays[Stage.commit_lsn] = pa.array(none + [a.commit_lsn for a in adds], pa.int64())
    arrays[Stage.txid] = pa.array(none + [a.txid for a in adds], pa.int64())
    arrays[Stage.op] = pa.array(none + [a.op.value for a in adds], pa.string())
    arrays[Stage.source_ts] = pa.array(none + [a.source_ts_us for a in adds],
                                       pa.timestamp("us", tz="UTC"))  # fmt: skip
    return pa.table(arrays)
