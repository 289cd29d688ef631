"""Pure: unchanged TOAST values across a primary-key change.

PostgreSQL logs an UPDATE that changes the primary key as the old key and the new row, and a
large (TOASTed) column the update did not touch is not in that new row. Debezium sends a delete
of the old key and a create of the new key, both at the update's LSN and transaction, the
create holding the unavailable-value placeholder (:data:`~cdc.model.UNCHANGED_TOAST`) for that
column. Its value is the *old* key's, which the mirror and SCD2 planners (carrying TOAST values
within one key) cannot see.

:func:`carry_key_changes` links each such create to its delete (same LSN and transaction, another
key) and fills the placeholders with the old key's value just before the delete: from the
delete's ``before`` (its non-null values: under REPLICA IDENTITY DEFAULT Debezium sends the
key there and nulls for the rest), else from the old key's earlier changes in the
batch (including an earlier key change into it), else from the stored row, which the engine
fetches for the keys in :attr:`KeyChangeCarry.needs` and hands to :meth:`KeyChangeCarry.fill`.
A create whose delete came in an earlier batch (the halves may sit on different partitions) is
an *orphan*: the engine looks up which key was deleted at its LSN (the delete markers, or a
soft-deleted row) and :meth:`KeyChangeCarry.link` turns it into a pending fill from that key.
Every other event is passed through unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc.model import UNCHANGED_TOAST, ChangeEvent, Op
from warehouse.base import TableBatch
from warehouse.mirror import Key, event_key


@dataclass(frozen=True, slots=True)
class _Stored:
    """A value only the stored row of ``key`` has."""

    key: Key


@dataclass(frozen=True, slots=True)
class KeyChangeCarry:
    """The batch with in-batch carries done, and what still has to come from stored rows."""

    batch: TableBatch
    # (event index, column, old key): placeholders only the old key's stored row can fill
    pending: tuple[tuple[int, str, Key], ...] = ()
    needs: dict[Key, frozenset[str]] = field(default_factory=dict)  # old key -> columns
    # LSN -> indexes of creates with placeholders and no delete at that LSN in the batch
    orphans: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @property
    def asks(self) -> bool:
        """Whether the engine has anything to look up for this batch."""
        return bool(self.needs or self.orphans)

    def link(self, deleted_at: Mapping[int, Key]) -> KeyChangeCarry:
        """Orphans whose LSN names a deleted key (``deleted_at``: LSN -> key) become pending
        fills from that key's stored row; the others are left as they are (counted by
        :meth:`fill`)."""
        pending = list(self.pending)
        unlinked = 0
        for lsn, indexes in self.orphans.items():
            old = deleted_at.get(lsn)
            for i in indexes:
                after = self.batch.events[i].after or {}
                for column, value in after.items():
                    if value is UNCHANGED_TOAST:
                        if old is None:
                            unlinked += 1
                        else:
                            pending.append((i, column, old))
        return KeyChangeCarry(self.batch, tuple(pending), _needs(pending), unlinked=unlinked)

    unlinked: int = 0  # orphan placeholders whose old key :meth:`link` could not find

    def fill(self, stored: Mapping[Key, Mapping[str, Any]]) -> tuple[TableBatch, int]:
        """The batch with pending placeholders filled from ``stored`` (old key -> its stored
        values); the second element counts placeholders no stored row could fill, unlinked
        orphans included (they stay placeholders: the planners then find no value either)."""
        if not self.pending:
            return self.batch, self.unlinked
        events = list(self.batch.events)
        unresolved = self.unlinked
        for i, column, old in self.pending:
            row = stored.get(old)
            if row is None or column not in row:
                unresolved += 1
                continue
            after = dict(events[i].after or {})
            after[column] = row[column]
            events[i] = dataclasses.replace(events[i], after=after)
        return TableBatch(self.batch.target, self.batch.schema, events), unresolved


def carry_key_changes(batch: TableBatch) -> KeyChangeCarry:
    """Fill the placeholders of key-change creates from their old key (see the module doc)."""
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

    order = sorted(range(len(events)), key=log_order)
    state: dict[Key, dict[str, Any]] = {}  # each key's known values so far in the batch
    before_delete: dict[int, dict[str, Any]] = {}  # delete index -> its key's values before it
    pending: list[tuple[int, str, Key]] = []
    orphans: dict[int, list[int]] = {}
    for i in order:
        e, key = events[i], keys[i]
        known = state.get(key, {})
        if e.op is Op.DELETE:
            prior = dict(known)
            # REPLICA IDENTITY FULL: the full old row; DEFAULT: the key, other columns null
            # (a null says nothing then, and a true null is what the old state has anyway)
            old_row = (e.before or {}).items()
            prior.update((c, v) for c, v in old_row if v is not None and v is not UNCHANGED_TOAST)
            before_delete[i] = prior
            state[key] = {}
            continue
        if e.after is None:
            continue
        halves = _old_halves(e, i, keys, deletes) if _has_placeholder(e) else []
        if not halves and e.op is Op.CREATE and _has_placeholder(e):
            orphans.setdefault(e.position.lsn, []).append(i)
        if halves:
            old = halves[0]
            # a replay in the same batch repeats the delete: the first one saw the values
            source: dict[str, Any] = {}
            for d in halves:
                for column, value in before_delete[d].items():
                    if isinstance(source.get(column, _Stored(key)), _Stored):
                        source[column] = value
            after = dict(e.after)
            for column, value in e.after.items():
                if value is not UNCHANGED_TOAST:
                    continue
                carried = source.get(column, _Stored(keys[old]))
                if isinstance(carried, _Stored):
                    pending.append((i, column, carried.key))
                    after[column] = carried
                else:
                    after[column] = carried
            events[i] = dataclasses.replace(e, after=_unmark(after))
            state[key] = after
        else:
            state[key] = {
                c: (known.get(c, _Stored(key)) if v is UNCHANGED_TOAST else v)
                for c, v in e.after.items()
            }
    return KeyChangeCarry(
        TableBatch(batch.target, batch.schema, events),
        tuple(pending),
        _needs(pending),
        {lsn: tuple(ix) for lsn, ix in orphans.items()},
    )


def _needs(pending: Sequence[tuple[int, str, Key]]) -> dict[Key, frozenset[str]]:
    needs: dict[Key, set[str]] = {}
    for _, column, old_key in pending:
        needs.setdefault(old_key, set()).add(column)
    return {k: frozenset(v) for k, v in needs.items()}


def _has_placeholder(event: ChangeEvent) -> bool:
    return event.after is not None and any(v is UNCHANGED_TOAST for v in event.after.values())


def _old_halves(
    event: ChangeEvent,
    index: int,
    keys: list[Key],
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


def _unmark(after: dict[str, Any]) -> dict[str, Any]:
    """Values only a stored row has stay placeholders until :meth:`KeyChangeCarry.fill`."""
    return {c: UNCHANGED_TOAST if isinstance(v, _Stored) else v for c, v in after.items()}
