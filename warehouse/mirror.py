"""Pure mirror planning: a table's batch of change events -> rows to upsert and keys to delete.

No I/O. The plan keeps one change per key, the newest by the position rule
(:func:`cdc.model.newer`: commit order then change order when both commit parts are known,
change LSN otherwise), with unchanged TOAST values carried forward from earlier changes of the
same key in the batch.
Columns still :data:`~cdc.model.UNCHANGED_TOAST` after that are listed per row in ``toast``;
the engine takes them from the stored row (architecture.md §4, invariants 4 and 5).

A primary-key change arrives from Debezium as a delete of the old key and a create of the new
key; they are simply two keys here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdc.model import UNCHANGED_TOAST, ChangeEvent, Op, TableSchema, newer
from warehouse.base import DataError, TableBatch

Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class RowChange:
    """The newest change of one key in a batch.

    ``values`` holds every column of the schema. For a delete only the key columns are set;
    for an upsert, columns listed in ``toast`` are ``None`` here and must come from the stored
    row.
    """

    key: Key
    values: dict[str, Any]
    toast: frozenset[str]
    lsn: int
    txid: int | None
    op: Op
    source_ts_us: int
    deleted: bool
    commit_lsn: int | None = None


@dataclass(frozen=True, slots=True)
class MirrorPlan:
    """What one table's batch does to the mirror table: upserts and deletes, one per key."""

    table: str
    schema: TableSchema
    upserts: tuple[RowChange, ...]
    deletes: tuple[RowChange, ...]
    events: int

    @property
    def toast_columns(self) -> frozenset[str]:
        """Columns that at least one upsert row must take from the stored row."""
        out: set[str] = set()
        for row in self.upserts:
            out |= row.toast
        return frozenset(out)


def event_key(event: ChangeEvent, schema: TableSchema, batch_table: str | None = None) -> Key:
    """The key tuple of an event, in ``schema.key`` order.

    An event without the key columns (a keyless message on a keyed table's topic) is a
    :class:`DataError`: the consumer isolates it and dead-letters it.
    """
    try:
        return tuple(event.key[name] for name in schema.key)
    except KeyError as exc:
        raise DataError(
            f"event for {schema.table} at {event.origin} lacks key column {exc.args[0]!r} "
            f"(key columns: {schema.key}); it goes to the dead-letter topic",
            table=batch_table,
        ) from None


def _fold(prev: RowChange | None, event: ChangeEvent, key: Key, schema: TableSchema) -> RowChange:
    """Apply one event on top of the previous in-batch change of the same key.

    A column the event does not have (it was written before the column was added at the
    source) takes the column's default, as PostgreSQL gives it to every existing row.
    """
    pos = event.position
    if event.op is Op.DELETE:
        values = {name: None for name in schema.names}
        values.update(zip(schema.key, key, strict=True))
        return RowChange(key, values, frozenset(), pos.lsn, pos.tx_id, event.op,
                         pos.commit_ts_us, deleted=True, commit_lsn=pos.commit_lsn)  # fmt: skip
    if event.after is None:
        raise ValueError(
            f"{event.op.value!r} event for {schema.table} at {event.origin} has no after"
        )
    values = {}
    toast: set[str] = set()
    for column in schema.columns:
        name = column.name
        value = event.after.get(name, column.default)
        if value is UNCHANGED_TOAST:
            if prev is None or name in prev.toast:
                value = None
                toast.add(name)
            elif prev.deleted:
                value = None  # deleted earlier in this batch: there is nothing to carry
            else:
                value = prev.values[name]
        values[name] = value
    values.update(zip(schema.key, key, strict=True))
    return RowChange(key, values, frozenset(toast), pos.lsn, pos.tx_id, event.op,
                     pos.commit_ts_us, deleted=False, commit_lsn=pos.commit_lsn)  # fmt: skip


def plan_mirror(batch: TableBatch) -> MirrorPlan:
    """Collapse a batch to the newest change per key, carrying TOAST values forward.

    Raises ``ValueError`` for a truncate (the consumer handles those) and
    :class:`DataError` for events without their key columns.
    """
    schema = batch.schema
    ordered = sorted(batch.events, key=lambda e: (e.position.lsn, e.origin.offset))
    newest: dict[Key, RowChange] = {}
    for event in ordered:
        if event.op is Op.TRUNCATE:
            raise ValueError(
                f"truncate of {schema.table} at {event.origin}: not a row change; "
                "the consumer must handle truncates before planning"
            )
        key = event_key(event, schema, batch.target.name)
        prev = newest.get(key)
        pos = event.position
        # in LSN order every change folds onto the previous one, except where the position
        # rule says the kept change is later (a read after a change whose transaction
        # committed after the read's window closed)
        if prev is None or not newer(prev.commit_lsn, prev.lsn, pos.commit_lsn, pos.lsn):
            newest[key] = _fold(prev, event, key, schema)
    rows = list(newest.values())
    return MirrorPlan(
        table=batch.target.name,
        schema=schema,
        upserts=tuple(r for r in rows if not r.deleted),
        deletes=tuple(r for r in rows if r.deleted),
        events=len(batch.events),
    )
