"""Pure SCD2 planning: a table's batch of change events + the stored tail of each key's
history -> the exact row operations on the history table.

No I/O. The engine fetches, for every key of the batch, its last two stored versions and its
position high-water mark (one set-based query), this module decides, and the engine applies the
result with a constant number of set-based statements (insert new versions, update stored
versions, remove stored versions, record deletes). Doing the decisions here, on values in the
``cdc.model`` representation, keeps one exact implementation for every engine.

Semantics (architecture.md §3), per key, change by change in log order:

* The position guard: a change at or below the key's high-water mark (the highest position
  already applied, deletes included) is stale and changes nothing. Replaying any range of a
  topic, in any batch split, therefore adds no version.
* An upsert (``c``/``u``/``r``) whose tracked values equal the current version's updates that
  version in place (every column; its validity does not change). Otherwise it closes the
  current version at the change's commit time and opens a new one valid from that time.
  Snapshot reads (``r``) follow the same rule: the same values open no version; different
  values (missed changes) open one marked ``_cdc_op = 'r'``. An incremental snapshot read
  (one with a commit position) whose every value equals the current version's is a no-op:
  it leaves the version and the high-water mark as they are, so a change of a transaction
  that was open across the read's window close (a lower change LSN, a later commit) still
  applies after it (see :func:`cdc.model.newer`).
* A delete closes the current version (flagged ``deleted``). A later insert opens a new one.
* ``granularity: transaction``: changes of one source transaction give one version per
  committed state. A change of the transaction that opened the current version rewrites that
  version in place; if it returns the tracked values to those of the version the transaction
  closed, that version is reopened and the transaction's version removed; a delete removes the
  transaction's version. These rules also hold when a transaction is split across batches.
  ``every_change``: every change that alters tracked values opens a version; versions within
  one transaction then share its commit time (zero length, ordered by ``_cdc_lsn``).
* Unchanged TOAST values take the value of the current version (from earlier in the batch or
  from the table).

Version columns: ``_cdc_txid`` and ``_cdc_op`` name the change that opened the version;
``_cdc_lsn`` and ``_cdc_source_ts`` the last change written into it (opening or in place);
``deleted`` is true when the version ended because the key was deleted. Untracked columns are
updated change by change: a version closed by a transaction keeps the untracked values that
transaction wrote before its first tracked change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc.model import UNCHANGED_TOAST, ChangeEvent, Op, TableSchema, newer
from warehouse.base import IncompatibleSchemaChangeError, Scd2Options, TableBatch
from warehouse.mirror import Key, event_key


@dataclass(slots=True)
class Version:
    """One version of a key, as stored or as planned.

    ``stored_lsn`` identifies the stored row it came from (its ``_cdc_lsn`` when fetched);
    None for a version opened in this batch.
    """

    values: dict[str, Any]
    valid_from_us: int
    valid_to_us: int | None
    deleted: bool
    lsn: int
    txid: int | None
    op: Op
    source_ts_us: int
    stored_lsn: int | None = None
    commit_lsn: int | None = None  # the commit part of the position (cdc.model.newer)
    changed: bool = False  # validity, flags or metadata differ from the stored row
    values_changed: bool = False  # data columns differ from the stored row
    was_current: bool = True  # current when fetched (new versions: when opened)

    @property
    def current(self) -> bool:
        return self.valid_to_us is None


@dataclass(frozen=True, slots=True)
class StoredTail:
    """What the table knows of one key: its last (at most two) versions, oldest first, and the
    highest position applied to it (the newest version's or a recorded delete's): its change
    LSN ``hwm`` and its commit part ``hwm_commit`` (None: unknown)."""

    versions: tuple[Version, ...] = ()
    hwm: int | None = None
    hwm_commit: int | None = None


# A stored version as read back: data values, then _cdc_lsn, _cdc_txid, _cdc_op, and
# _cdc_source_ts, valid_from, valid_to in µs since the epoch, then the deleted flag and
# _cdc_commit_lsn.
StoredVersion = tuple[dict[str, Any], int, int | None, str, int, int, int | None, bool, int | None]


def stored_tails(
    key: Sequence[str],
    versions: Iterable[StoredVersion],
    markers: Iterable[tuple[Key, int, int | None]],
) -> dict[Key, StoredTail]:
    """The stored tails of the ``scd2_tail`` versions and ``scd2_hwm`` delete markers read."""
    grouped: dict[Key, list[Version]] = {}
    for values, lsn, txid, op, source_ts, valid_from, valid_to, deleted, commit in versions:
        grouped.setdefault(tuple(values[k] for k in key), []).append(
            Version(
                values=values,
                valid_from_us=valid_from,
                valid_to_us=valid_to,
                deleted=bool(deleted),
                lsn=lsn,
                txid=txid,
                op=Op(op),
                source_ts_us=source_ts,
                stored_lsn=lsn,
                commit_lsn=commit,
                was_current=valid_to is None,
            )
        )
    tails = {}
    for k, vs in grouped.items():
        ordered = tuple(sorted(vs, key=lambda v: v.lsn))
        tails[k] = StoredTail(ordered, ordered[-1].lsn, ordered[-1].commit_lsn)
    for k, marker, commit in markers:
        tail = tails.get(k, StoredTail())
        if tail.hwm is None or marker > tail.hwm:
            tail = StoredTail(tail.versions, marker, commit)
        tails[k] = tail
    return tails


@dataclass(frozen=True, slots=True)
class VersionWrite:
    key: Key
    version: Version


@dataclass(frozen=True, slots=True)
class Scd2Plan:
    """Row operations on one history table for one batch."""

    table: str
    schema: TableSchema
    inserts: tuple[VersionWrite, ...]  # new versions
    updates: tuple[VersionWrite, ...]  # stored versions (by key + stored_lsn) to rewrite
    removes: tuple[tuple[Key, int], ...]  # stored versions (key, stored_lsn) to delete
    deletes: tuple[tuple[Key, int, int | None], ...]  # delete positions (key, lsn, commit_lsn)
    events: int
    stale: int
    upserted: int
    deleted: int
    opened: int
    closed: int

    @property
    def empty(self) -> bool:
        return not (self.inserts or self.updates or self.removes or self.deletes)


def tracked_columns(schema: TableSchema, options: Scd2Options, table: str) -> tuple[str, ...]:
    """The columns whose changes open a version; unknown tracked columns park the table."""
    if options.track is None:
        return schema.names
    missing = [c for c in options.track if c not in schema.names]
    if missing:
        raise IncompatibleSchemaChangeError(
            f"table {table!r}: tracked columns {missing} are not columns of {schema.table} "
            f"(columns: {list(schema.names)}); fix `scd2.track` in cdc.yaml, then resume",
            table=table,
        )
    return options.track


def same_value(a: Any, b: Any) -> bool:
    """Equality of two values of one column (NaN equals NaN: the value did not change)."""
    if a is b or a == b:
        return True
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _same_tracked(a: Mapping[str, Any], b: Mapping[str, Any], tracked: Sequence[str]) -> bool:
    return all(same_value(a.get(c), b.get(c)) for c in tracked)


@dataclass
class _KeyHistory:
    """The working tail of one key: stored versions first, then versions opened here."""

    key: Key
    versions: list[Version]
    hwm: int | None
    hwm_commit: int | None = None
    removed: list[int] = field(default_factory=list)  # stored_lsn of removed stored versions
    delete_at: tuple[int, int | None] | None = None  # (lsn, commit_lsn) of the last delete

    @property
    def cur(self) -> Version | None:
        return self.versions[-1] if self.versions and self.versions[-1].current else None

    @property
    def prev(self) -> Version | None:
        """The newest closed version (before the current one, or the last one)."""
        if not self.versions:
            return None
        if self.versions[-1].current:
            return self.versions[-2] if len(self.versions) > 1 else None
        return self.versions[-1]

    def remove(self, version: Version) -> None:
        self.versions.remove(version)
        if version.stored_lsn is not None:
            self.removed.append(version.stored_lsn)


def _values(
    event: ChangeEvent, schema: TableSchema, key: Key, cur: Version | None
) -> dict[str, Any]:
    """The event's row, missing columns at their default, unchanged TOAST from ``cur``."""
    assert event.after is not None
    values: dict[str, Any] = {}
    for column in schema.columns:
        value = event.after.get(column.name, column.default)
        if value is UNCHANGED_TOAST:
            value = cur.values.get(column.name) if cur is not None else None
        values[column.name] = value
    values.update(zip(schema.key, key, strict=True))
    return values


def _write(version: Version, values: dict[str, Any], event: ChangeEvent) -> None:
    """Write a change into a version in place (its opening txid/op and valid_from stay)."""
    version.values = values
    version.lsn = event.position.lsn
    version.commit_lsn = event.position.commit_lsn
    version.source_ts_us = event.position.commit_ts_us
    version.valid_to_us = None
    version.deleted = False
    version.changed = version.values_changed = True


def _close(version: Version, at_us: int, *, deleted: bool) -> None:
    version.valid_to_us = at_us
    version.deleted = deleted
    version.changed = True


class _Counts:
    __slots__ = ("deleted", "stale", "upserted")

    def __init__(self) -> None:
        self.stale = self.upserted = self.deleted = 0


def _step(
    h: _KeyHistory,
    event: ChangeEvent,
    schema: TableSchema,
    tracked: Sequence[str],
    by_transaction: bool,
    n: _Counts,
) -> None:
    """Apply one (non-stale) change to a key's working history."""
    pos = event.position
    ts = pos.commit_ts_us
    cur, prev = h.cur, h.prev
    # "this transaction opened the current version": only with transaction granularity.
    same_tx = by_transaction and pos.tx_id is not None
    opened_here = same_tx and cur is not None and cur.txid == pos.tx_id
    # "this transaction closed prev": prev ended at this commit (nothing else can, since row
    # locks serialise the writers of a key and a commit takes longer than a microsecond).
    closed_here = same_tx and prev is not None and prev.valid_to_us == ts
    if event.op is Op.DELETE:
        n.deleted += 1
        h.delete_at = (pos.lsn, pos.commit_lsn)
        if cur is None:
            return
        if opened_here:
            h.remove(cur)
            if closed_here and prev is not None:
                prev.deleted = prev.changed = True
        else:
            _close(cur, ts, deleted=True)
        return
    n.upserted += 1
    values = _values(event, schema, h.key, cur)
    if cur is not None and _same_tracked(cur.values, values, tracked):
        _write(cur, values, event)
    elif cur is not None and opened_here:
        if closed_here and prev is not None and _same_tracked(prev.values, values, tracked):
            h.remove(cur)  # the transaction put the tracked values back: no new state
            _write(prev, values, event)
        else:
            _write(cur, values, event)
    elif (
        cur is None
        and closed_here
        and prev is not None
        and (_same_tracked(prev.values, values, tracked))
    ):
        _write(prev, values, event)  # deleted and re-inserted as it was in one transaction
    else:
        if cur is not None:
            _close(cur, ts, deleted=False)
        elif closed_here and prev is not None and prev.deleted:
            prev.deleted = False  # deleted and re-inserted in one transaction: not a delete
            prev.changed = True
        h.versions.append(
            Version(
                values=values,
                valid_from_us=ts,
                valid_to_us=None,
                deleted=False,
                lsn=pos.lsn,
                txid=pos.tx_id,
                op=event.op,
                source_ts_us=ts,
                commit_lsn=pos.commit_lsn,
                changed=True,
                values_changed=True,
            )
        )


def _stale(h: _KeyHistory, event: ChangeEvent) -> bool:
    """At or below the key's high-water mark: by change LSN, and by the two-part position
    (:func:`cdc.model.newer`), which in LSN order puts an incremental snapshot read behind a
    change whose transaction committed after the read's window closed. (The reverse, such a
    change after a read that was written, stays refused: its version would sort before the
    read's by ``_cdc_lsn``. A read that only confirms the current version writes nothing, see
    :func:`_confirms`, so this happens only when the read repaired the key.)"""
    pos = event.position
    if h.hwm is None:
        return False
    return pos.lsn <= h.hwm or not newer(pos.commit_lsn, pos.lsn, h.hwm_commit, h.hwm)


def _confirms(h: _KeyHistory, event: ChangeEvent, schema: TableSchema) -> bool:
    """An incremental snapshot read (it has a commit position) that finds every value of the
    current version as it is: it tells nothing new, and writing it would move the key's
    position past changes that committed after it with lower change LSNs."""
    cur = h.cur
    if event.op is not Op.READ or event.position.commit_lsn is None or cur is None:
        return False
    values = _values(event, schema, h.key, cur)
    return all(same_value(cur.values.get(c), values[c]) for c in schema.names)


def plan_scd2(batch: TableBatch, stored: Mapping[Key, StoredTail]) -> Scd2Plan:
    """Plan one batch against the stored tails of its keys (see the module docstring).

    ``stored`` must hold every key of the batch that has versions or a recorded delete; the
    versions are copied, never mutated. Raises ``ValueError`` for a truncate and
    :class:`~warehouse.base.DataError` for events without their key columns.
    """
    schema, options = batch.schema, batch.target.scd2
    table = batch.target.name
    tracked = tracked_columns(schema, options, table)
    by_transaction = options.granularity == "transaction"
    ordered = sorted(batch.events, key=lambda e: (e.position.lsn, e.origin.offset))
    histories: dict[Key, _KeyHistory] = {}
    n = _Counts()
    for event in ordered:
        if event.op is Op.TRUNCATE:
            raise ValueError(
                f"truncate of {schema.table} at {event.origin}: not a row change; "
                "the consumer must handle truncates before planning"
            )
        key = event_key(event, schema, table)
        h = histories.get(key)
        if h is None:
            tail = stored.get(key, StoredTail())
            h = _KeyHistory(key, [_copy(v) for v in tail.versions], tail.hwm, tail.hwm_commit)
            histories[key] = h
        if _stale(h, event):
            n.stale += 1
            continue
        if event.op is not Op.DELETE and event.after is None:
            raise ValueError(
                f"{event.op.value!r} event for {schema.table} at {event.origin} has no after"
            )
        if _confirms(h, event, schema):
            n.stale += 1
            continue
        _step(h, event, schema, tracked, by_transaction, n)
        h.hwm, h.hwm_commit = event.position.lsn, event.position.commit_lsn
    inserts: list[VersionWrite] = []
    updates: list[VersionWrite] = []
    removes: list[tuple[Key, int]] = []
    deletes: list[tuple[Key, int, int | None]] = []
    for key, h in histories.items():
        for v in h.versions:
            if v.stored_lsn is None:
                inserts.append(VersionWrite(key, v))
            elif v.changed:
                updates.append(VersionWrite(key, v))
        removes.extend((key, lsn) for lsn in h.removed)
        if h.delete_at is not None:
            deletes.append((key, *h.delete_at))
    written = [w.version for w in (*inserts, *updates)]
    return Scd2Plan(
        table=table,
        schema=schema,
        inserts=tuple(inserts),
        updates=tuple(updates),
        removes=tuple(removes),
        deletes=tuple(deletes),
        events=len(batch.events),
        stale=n.stale,
        upserted=n.upserted,
        deleted=n.deleted,
        opened=len(inserts),
        closed=sum(1 for v in written if v.was_current and not v.current),
    )


def _copy(v: Version) -> Version:
    return Version(
        values=dict(v.values),
        valid_from_us=v.valid_from_us,
        valid_to_us=v.valid_to_us,
        deleted=v.deleted,
        lsn=v.lsn,
        txid=v.txid,
        op=v.op,
        source_ts_us=v.source_ts_us,
        stored_lsn=v.stored_lsn,
        commit_lsn=v.commit_lsn,
        was_current=v.current,
    )
