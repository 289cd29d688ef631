"""Pure: unchanged TOAST values across a primary-key change.

PostgreSQL logs an UPDATE that changes the primary key as the old key and the new row, and a
large (TOASTed) column the update did not touch is not in that new row. Debezium sends a delete
of the old key and a create of the new key, both at the update's LSN and transaction, the
create holding the unavailable-value placeholder (:data:`~cdc.model.UNCHANGED_TOAST`) for that
column. Its value is the *old* key's, which the mirror and SCD2 planners (carrying TOAST values
within one key) cannot see.

:func:`carry_key_changes` links each such create to its delete (same LSN and transaction, another
key) and works out, per placeholder, where the old key's value just before the delete is:

* in the delete's ``before`` (its non-null values: REPLICA IDENTITY FULL sends the old row;
  under DEFAULT Debezium sends the key there and nulls for the rest);
* else in the old key's earlier changes in the batch (including an earlier key change into
  it) — unless the stored row is newer: a batch may hold a replay of older changes, so a value
  from the batch is only a fallback, used when the old key's stored row is older than it;
* else only in the old key's stored row.

The engine fetches the stored rows (with their positions) of :attr:`KeyChangeCarry.needs` and
hands them to :meth:`KeyChangeCarry.fill`. A create whose delete came in an earlier batch (the
halves may sit on different partitions) is an *orphan*: the engine looks up which key was
deleted at its LSN (the delete markers, or a soft-deleted row) and :meth:`KeyChangeCarry.link`
turns it into a fill from that key's stored row — the orphan's placeholders, and those of later
key changes in the batch out of the orphan's key. Every other event passes unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cdc.model import UNCHANGED_TOAST, ChangeEvent, Op
from warehouse.base import TableBatch
from warehouse.mirror import Key, event_key

_NOTHING: Final = object()  # no value known in the batch


@dataclass(frozen=True, slots=True)
class _DeletedAt:
    """The key deleted at ``lsn`` in an earlier batch: an orphan's old key, until
    :meth:`KeyChangeCarry.link` names it (no stored row before that)."""

    lsn: int


@dataclass(frozen=True, slots=True)
class Source:
    """Where a carried value of one column is.

    The batch's change of ``key`` at position ``lsn`` gave it ``inner``: a plain value, another
    :class:`Source` (a key change carried it from an older key), or ``_NOTHING`` (no change in
    the batch: only the stored row knows). The stored row of ``key`` wins over that when it is
    newer than ``lsn`` — a batch may replay older changes — but not newer than ``until``, the
    key change that took the value (a stored row from after it is a later life of the key).
    A stored row *at* ``lsn`` is that very change, applied by an earlier batch (the batch
    replays it), with the value it carried then: it stands in when ``inner`` knows none (its
    own older key may since have moved on to a later life).
    """

    key: Key | _DeletedAt
    lsn: int = -1
    inner: Any = _NOTHING
    until: int | None = None

    def chain(self) -> Iterator[Key]:
        """Every key whose stored row this value may come from."""
        if not isinstance(self.key, _DeletedAt):
            yield self.key
        if isinstance(self.inner, Source):
            yield from self.inner.chain()

    def linked(self, deleted_at: Mapping[int, Key]) -> Source:
        """This source with each orphan's old key named, where ``deleted_at`` knows it."""
        key = self.key
        if isinstance(key, _DeletedAt):
            key = deleted_at.get(key.lsn, key)
        inner = self.inner.linked(deleted_at) if isinstance(self.inner, Source) else self.inner
        return dataclasses.replace(self, key=key, inner=inner)

    def resolve(self, stored: Mapping[Key, StoredRow], column: str) -> Any:
        """The value (``_NOTHING`` if none is known)."""
        row = None if isinstance(self.key, _DeletedAt) else stored.get(self.key)
        if row is not None and not (
            column in row.values
            and self.lsn <= row.lsn
            and (self.until is None or row.lsn <= self.until)
        ):
            row = None  # older than the batch's change, or a later life of the key
        if row is not None and row.lsn > self.lsn:
            return row.values[column]
        inner = self.inner.resolve(stored, column) if isinstance(self.inner, Source) else self.inner
        if inner is _NOTHING and row is not None:
            return row.values[column]  # the batch's change itself, as an earlier batch stored it
        return inner

    @property
    def in_batch(self) -> bool:
        """Whether the batch itself holds a value (the stored rows may still override it)."""
        return self.resolve({}, "") is not _NOTHING


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A key's stored row as the engine fetched it: its position and data columns."""

    lsn: int
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class KeyChangeCarry:
    """The batch's key-change creates, and where each of their placeholders' values is."""

    batch: TableBatch
    pending: tuple[tuple[int, str, Source], ...] = ()  # (event index, column, source)
    # LSN -> indexes of creates with placeholders and no delete at that LSN in the batch
    orphans: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @property
    def needs(self) -> frozenset[Key]:
        """The old keys whose stored rows :meth:`fill` wants."""
        return frozenset(k for _, _, src in self.pending for k in src.chain())

    @property
    def asks(self) -> bool:
        """Whether the engine has anything to look up for this batch."""
        return bool(self.pending or self.orphans)

    def link(self, deleted_at: Mapping[int, Key]) -> KeyChangeCarry:
        """Orphans whose LSN names a deleted key (``deleted_at``: LSN -> key) are filled from
        that key's stored row, and so are later key changes in the batch out of the orphans'
        keys; the others are left as they are (counted by :meth:`fill`)."""
        pending = tuple((i, column, src.linked(deleted_at)) for i, column, src in self.pending)
        return KeyChangeCarry(self.batch, pending)

    def fill(self, stored: Mapping[Key, StoredRow]) -> tuple[TableBatch, int]:
        """The batch with every pending placeholder filled: from the stored row when it is
        newer than the batch's value (or there is none), else the batch's value. The second
        element counts placeholders with no value anywhere, unlinked orphans included (they
        stay placeholders: the planners then find no value either)."""
        if not self.pending:
            return self.batch, 0
        events = list(self.batch.events)
        unresolved = 0
        for i, column, src in self.pending:
            value = src.resolve(stored, column)
            if value is _NOTHING:
                unresolved += 1
                continue
            after = dict(events[i].after or {})
            after[column] = value
            events[i] = dataclasses.replace(events[i], after=after)
        return TableBatch(self.batch.target, self.batch.schema, events), unresolved


def carry_key_changes(batch: TableBatch) -> KeyChangeCarry:
    """Link key-change creates to their deletes and find their values (see the module doc)."""
    events = list(batch.events)
    if not any(_has_placeholder(e) for e in events if e.op is Op.CREATE):
        return KeyChangeCarry(batch)
    schema, table = batch.schema, batch.target.name
    keys = [event_key(e, schema, table) for e in events]
    deletes: dict[tuple[int, int | None], list[int]] = {}
    for i, e in enumerate(events):
        if e.op is Op.DELETE:
            deletes.setdefault((e.position.lsn, e.position.tx_id), []).append(i)

    # log order; at one LSN the key change's delete before its create (they may sit on
    # different partitions, whose offsets don't compare)
    def log_order(i: int) -> tuple[int, bool, int]:
        e = events[i]
        return e.position.lsn, e.op is not Op.DELETE, e.origin.offset

    state: dict[Key, dict[str, Source]] = {}  # where each key's values are, so far
    before_delete: dict[int, dict[str, Source]] = {}  # delete index -> its key's values
    pending: list[tuple[int, str, Source]] = []
    orphans: dict[int, list[int]] = {}
    for i in sorted(range(len(events)), key=log_order):
        e, key = events[i], keys[i]
        lsn = e.position.lsn
        if e.op is Op.DELETE:
            prior = dict(state.get(key, {}))
            for column, value in (e.before or {}).items():
                if value is not None and value is not UNCHANGED_TOAST:
                    prior[column] = Source(key, lsn, value)
            before_delete[i] = prior
            state[key] = {}
            continue
        if e.after is None:
            continue
        known = state.get(key, {})
        halves = _old_halves(e, i, keys, deletes) if _has_placeholder(e) else []
        orphan = not halves and e.op is Op.CREATE and _has_placeholder(e)
        if orphan:
            orphans.setdefault(lsn, []).append(i)
        # a replay in the same batch repeats the delete: take the best-known value of each
        old_values: dict[str, Source] = {}
        for d in halves:
            for column, src in before_delete[d].items():
                if column not in old_values or not old_values[column].in_batch:
                    old_values[column] = src
        now: dict[str, Source] = {}
        for column, value in e.after.items():
            if value is not UNCHANGED_TOAST:
                now[column] = Source(key, lsn, value)
            elif halves or orphan:
                # an orphan's old key is the one deleted at its LSN: :meth:`link` names it
                old = keys[halves[0]] if halves else _DeletedAt(lsn)
                src = old_values.get(column, Source(old))
                if src.until is None:  # the value as it was at this key change
                    src = dataclasses.replace(src, until=lsn)
                pending.append((i, column, src))
                now[column] = Source(key, lsn, src)
            else:
                now[column] = known.get(column, Source(key))
        state[key] = now
    return KeyChangeCarry(
        batch,
        tuple(pending),
        {lsn: tuple(ix) for lsn, ix in orphans.items()},
    )


def _has_placeholder(event: ChangeEvent) -> bool:
    return event.after is not None and any(v is UNCHANGED_TOAST for v in event.after.values())


def _old_halves(
    event: ChangeEvent,
    index: int,
    keys: Sequence[Key],
    deletes: Mapping[tuple[int, int | None], list[int]],
) -> list[int]:
    """The indexes of the delete this create is the other half of (one, or its replays in
    the same batch: one key), in batch order; none if it is no key change's create."""
    if event.op is not Op.CREATE:
        return []
    candidates = [
        d
        for d in deletes.get((event.position.lsn, event.position.tx_id), [])
        if keys[d] != keys[index]
    ]
    return candidates if len({keys[d] for d in candidates}) == 1 else []
