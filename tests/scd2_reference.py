"""SCD Type 2 reference models and history generators, shared by the property tests
(``tests/unit/test_scd2_properties.py``: the pure planner and DuckDB;
``tests/conformance/test_scd2_properties_contract.py``: Snowflake on fakesnow's server).

Two references, both written from the spec (warehouse.scd2's docstring), not from the planner:

* a change-by-change model of the rules, compared on every version column;
* a committed-state model: each key's sequence of states (after each transaction, or after each
  change for ``every_change``), maximal runs of present states with equal tracked values merged
  into versions. Compared on key, tracked columns, validity, ``is_current`` and ``deleted``.

:class:`Store` is an in-memory store that hands the pure planner what an engine would (each
key's last two versions and its position high-water mark); :func:`check_end_to_end` runs a
generated history through a real adapter.

TRUNCATE (``scenarios(truncates=True)``; tests/conformance/test_truncate_properties_contract.py):
a truncate ends every current version at its commit time as a delete (granularity
``transaction``: a version its own transaction opened leaves nothing, the version that one
replaced ends deleted) and makes every later change at or below its position stale; the
committed-state model sees every key absent after it. :class:`Store` plans no truncate (the
engine applies them set-based), so the pure-planner properties never generate one.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from cdc.model import (
    UNCHANGED_TOAST,
    ChangeEvent,
    Column,
    ColumnType,
    KafkaOrigin,
    Kind,
    Op,
    SourcePosition,
    TableId,
    TableSchema,
)
from warehouse.base import Granularity, Scd2Options, TableBatch, TableTarget, Warehouse
from warehouse.key_change import StoredRow, carry_key_changes
from warehouse.mirror import Key
from warehouse.scd2 import Scd2Plan, StoredTail, Version, plan_scd2

SCHEMA = TableSchema(
    TableId("public", "hist"),
    (
        Column("id", ColumnType(Kind.INT32), nullable=False),
        Column("a", ColumnType(Kind.TEXT)),  # tracked
        Column("b", ColumnType(Kind.INT32)),  # untracked (unless track=None)
        Column("doc", ColumnType(Kind.TEXT)),  # large: updates may send it as unchanged TOAST
    ),
    ("id",),
)
KEYLESS = dataclasses.replace(SCHEMA, key=())  # a truncate's schema: Debezium sends no key
DATA = SCHEMA.names
KEYS = range(4)
BASE_TS_US = 1_700_000_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
A = st.sampled_from(["x", "y", "", None])
B = st.sampled_from([0, 1, None])
DOC = st.sampled_from(["doc-1" * 500, "doc-2" * 500, None])
TRACKS = st.sampled_from([("a",), ("a", "doc"), None])
KEEP = object()  # an update that sends the column's current value


def target(granularity: Granularity, track: tuple[str, ...] | None) -> TableTarget:
    return TableTarget("hist", mode="scd2", scd2=Scd2Options(granularity=granularity, track=track))


# --- generator -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    events: list[ChangeEvent]  # log order: increasing lsn, transactions in commit order
    live: dict[int, dict[str, Any]]  # the source table after the last transaction
    # the events as the references see them: a key change's create with the value its
    # placeholder stands for (the old key's, which Debezium doesn't send)
    resolved: list[ChangeEvent]


@st.composite
def rows(draw: st.DrawFn, key: int) -> dict[str, Any]:
    return {"id": key, "a": draw(A), "b": draw(B), "doc": draw(DOC)}


@st.composite
def scenarios(draw: st.DrawFn, truncates: bool = False, transactions: int = 10) -> Scenario:
    """1..``transactions`` transactions of 1..4 changes (a key may change several times in
    one), snapshot reads, deletes, re-inserts and primary-key changes; commits at least 1 µs
    apart. ``truncates``: TRUNCATEs too, as transactions of their own and among a
    transaction's changes."""
    live: dict[int, dict[str, Any]] = {}
    events: list[ChangeEvent] = []
    resolved: list[ChangeEvent] = []
    lsn, ts, txid = 0, BASE_TS_US, 500

    def emit(
        op: Op,
        key: int,
        after: dict[str, Any] | None,
        tx: int | None,
        *,
        same_lsn: bool = False,
        real: dict[str, Any] | None = None,
    ) -> None:
        nonlocal lsn
        if not same_lsn:
            lsn += draw(st.integers(1, 3))
        event = ChangeEvent(
            op=op,
            schema=SCHEMA,
            key={"id": key},
            # Debezium under REPLICA IDENTITY DEFAULT: the key, nulls for the rest
            before={"id": key, "a": None, "b": None, "doc": None} if op is Op.DELETE else None,
            after=after,
            position=SourcePosition(lsn, tx, ts, op is Op.READ),
            origin=KafkaOrigin("pg.public.hist", 0, len(events)),
        )
        events.append(event)
        resolved.append(event if real is None else dataclasses.replace(event, after=real))

    def emit_truncate(tx: int) -> None:
        nonlocal lsn
        lsn += draw(st.integers(1, 3))
        position = SourcePosition(lsn, tx, ts, False)
        origin = KafkaOrigin("pg.public.hist", 0, len(events))
        event = ChangeEvent(Op.TRUNCATE, KEYLESS, {}, None, None, position, origin)
        events.append(event)
        resolved.append(event)
        live.clear()

    for _ in range(draw(st.integers(1, transactions))):
        ts += draw(st.integers(1, 3))
        txid += draw(st.integers(1, 2))
        if truncates and draw(st.integers(0, 4)) == 0:
            emit_truncate(txid)  # TRUNCATE in a transaction of its own (autocommit)
            continue
        if live and draw(st.sampled_from(["tx", "tx", "snapshot"])) == "snapshot":
            # Snapshot reads of live keys: the current values, or values the log missed.
            tx = None if draw(st.booleans()) else txid
            keys = draw(
                st.lists(st.sampled_from(sorted(live)), min_size=1, max_size=3, unique=True)
            )
            for key in keys:
                if draw(st.booleans()):
                    live[key] = draw(rows(key))
                emit(Op.READ, key, dict(live[key]), tx)
            continue
        committed = {k: dict(r) for k, r in live.items()}  # the state before this transaction
        touched = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=2, unique=True))
        for _ in range(draw(st.integers(1, 4))):
            if truncates and draw(st.integers(0, 5)) == 0:
                emit_truncate(txid)  # among the transaction's changes
                continue
            key = draw(st.sampled_from(touched))
            if key not in live:
                as_it_was = key in committed and draw(st.booleans())
                live[key] = dict(committed[key]) if as_it_was else draw(rows(key))
                emit(Op.CREATE, key, dict(live[key]), txid)
                continue
            action = draw(st.sampled_from(["update", "update", "delete", "move", "revert"]))
            if action == "revert" and key in committed:
                # Put the values back as they were before this transaction.
                toast = live[key]["doc"] == committed[key]["doc"] and draw(st.booleans())
                live[key] = dict(committed[key])
                emit(
                    Op.UPDATE,
                    key,
                    {**live[key], **({"doc": UNCHANGED_TOAST} if toast else {})},
                    txid,
                )
                continue
            free = [k for k in KEYS if k not in live]
            if action == "delete":
                del live[key]
                emit(Op.DELETE, key, None, txid)
            elif action == "move" and free:
                # Primary-key change: Debezium sends a delete of the old key and a create.
                # Both halves sit at the UPDATE's LSN. If the update leaves the large
                # column alone, the create carries the placeholder: the value is the old key's.
                new = draw(st.sampled_from(free))
                row = {**live.pop(key), "id": new}
                after = dict(row)
                if draw(st.booleans()):
                    row = after = draw(rows(new))
                elif draw(st.booleans()):
                    after["doc"] = UNCHANGED_TOAST
                live[new] = row
                emit(Op.DELETE, key, None, txid)
                emit(Op.CREATE, new, after, txid, same_lsn=True, real=dict(row))
            else:
                row, after = dict(live[key]), {"id": key}
                for column, values in (("a", A), ("b", B)):
                    value = draw(st.one_of(st.just(KEEP), values))
                    if value is not KEEP:
                        row[column] = value
                    after[column] = row[column]
                doc = draw(st.one_of(st.just(UNCHANGED_TOAST), st.just(KEEP), DOC))
                if doc is not KEEP and doc is not UNCHANGED_TOAST:
                    row["doc"] = doc
                after["doc"] = UNCHANGED_TOAST if doc is UNCHANGED_TOAST else row["doc"]
                live[key] = row
                emit(Op.UPDATE, key, after, txid)
    return Scenario(events, live, resolved)


@st.composite
def deliveries(draw: st.DrawFn, events: list[ChangeEvent]) -> list[list[ChangeEvent]]:
    """The events in batches (random cut points), with replays of earlier ranges (possibly
    overlapping the current batch) appended to a batch or delivered as a batch of their own."""
    n = len(events)
    if draw(st.integers(0, 3)) == 0:
        cuts = list(range(n + 1))  # one event per batch: every transaction split
    else:
        cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=8))) | {0, n})
    # never between the two halves of a key change: the consumer doesn't end a batch there
    # (Replicator._complete_key_changes); replays may still start at the create
    cuts = [c for c in cuts if c in (0, n) or not _halves(events[c - 1], events[c])]
    batches: list[list[ChangeEvent]] = []
    for lo, hi in itertools.pairwise(cuts):
        batch = list(events[lo:hi])
        if draw(st.booleans()):
            start = draw(st.integers(0, hi - 1))
            again = list(events[start : draw(st.integers(start + 1, hi))])
            if draw(st.booleans()):
                batch += again
            else:
                batches.append(batch)
                batch = again
        batches.append(batch)
    return batches


def _halves(a: ChangeEvent, b: ChangeEvent) -> bool:
    return a.op is Op.DELETE and b.op is Op.CREATE and a.position.lsn == b.position.lsn


# --- reference 1: change by change -----------------------------------------------------------


@dataclass
class RefVersion:
    values: dict[str, Any]
    valid_from: int
    valid_to: int | None
    deleted: bool
    lsn: int
    txid: int | None
    op: Op
    source_ts: int


def _equal(a: dict[str, Any], b: dict[str, Any], tracked: Sequence[str]) -> bool:
    return all(a[c] == b[c] for c in tracked)


def _rewrite(v: RefVersion, values: dict[str, Any], e: ChangeEvent) -> None:
    v.values, v.lsn, v.source_ts = values, e.position.lsn, e.position.commit_ts_us
    v.valid_to, v.deleted = None, False


def _ref_step(
    versions: list[RefVersion], e: ChangeEvent, tracked: Sequence[str], by_tx: bool
) -> None:
    ts, tx = e.position.commit_ts_us, e.position.tx_id
    cur = versions[-1] if versions and versions[-1].valid_to is None else None
    closed = [v for v in versions if v.valid_to is not None]
    prev = closed[-1] if closed else None  # the newest closed version
    opened_by_tx = by_tx and tx is not None and cur is not None and cur.txid == tx
    closed_by_tx = by_tx and tx is not None and prev is not None and prev.valid_to == ts
    if e.op is Op.DELETE:
        if cur is None:
            return
        if opened_by_tx:
            versions.remove(cur)
            if closed_by_tx and prev is not None:
                prev.deleted = True
        else:
            cur.valid_to, cur.deleted = ts, True
        return
    assert e.after is not None
    values = {
        c: ((cur.values[c] if cur else None) if e.after[c] is UNCHANGED_TOAST else e.after[c])
        for c in DATA
    }
    back_to_prev = closed_by_tx and prev is not None and _equal(prev.values, values, tracked)
    if cur is not None and _equal(cur.values, values, tracked):
        _rewrite(cur, values, e)
    elif cur is not None and opened_by_tx:
        if back_to_prev and prev is not None:  # the transaction put the values back
            versions.remove(cur)
            _rewrite(prev, values, e)
        else:
            _rewrite(cur, values, e)
    elif cur is None and back_to_prev and prev is not None:  # deleted and re-inserted as it was
        _rewrite(prev, values, e)
    else:
        if cur is not None:
            cur.valid_to, cur.deleted = ts, False
        elif closed_by_tx and prev is not None:  # deleted and re-inserted: not a delete
            prev.deleted = False
        versions.append(RefVersion(values, ts, None, False, e.position.lsn, tx, e.op, ts))


def _ref_truncate(versions: list[RefVersion], e: ChangeEvent, by_tx: bool) -> None:
    """A truncate ends a key's current version at or below its position, as a delete; with
    ``by_tx`` a version its own transaction opened is removed and the one it replaced (ended
    at the same commit time) ends deleted."""
    ts, tx = e.position.commit_ts_us, e.position.tx_id
    cur = versions[-1] if versions and versions[-1].valid_to is None else None
    if cur is None or cur.lsn > e.position.lsn:
        return
    closed = [v for v in versions if v.valid_to is not None]
    prev = closed[-1] if closed else None
    if by_tx and tx is not None and cur.txid == tx and cur.valid_from == ts:
        versions.remove(cur)
        if prev is not None and prev.valid_to == ts:
            prev.deleted = True
    else:
        cur.valid_to, cur.deleted = ts, True


def change_reference(
    events: Sequence[ChangeEvent], tracked: Sequence[str], by_tx: bool
) -> list[dict[str, Any]]:
    history: dict[int, list[RefVersion]] = defaultdict(list)
    hwm: dict[int, int] = {}
    mark = -1  # the last truncate's position: every change at or below it is stale
    for e in events:
        if e.position.lsn <= mark:
            continue
        if e.op is Op.TRUNCATE:
            mark = e.position.lsn
            for versions in history.values():
                _ref_truncate(versions, e, by_tx)
            continue
        key = e.key["id"]
        if e.position.lsn <= hwm.get(key, -1):
            continue
        hwm[key] = e.position.lsn
        _ref_step(history[key], e, tracked, by_tx)
    return [
        row(v.values, v.valid_from, v.valid_to, v.deleted, v.txid, v.op, v.lsn, v.source_ts)
        for key in sorted(history)
        for v in history[key]
    ]


def row(
    values: dict[str, Any],
    valid_from: int,
    valid_to: int | None,
    deleted: bool,
    txid: int | None,
    op: str,
    lsn: int,
    source_ts: int,
) -> dict[str, Any]:
    """One version, engine-neutral (µs timestamps), in the comparison's shape."""
    return {
        **{c: values[c] for c in DATA},
        "valid_from": valid_from,
        "valid_to": valid_to,
        "is_current": valid_to is None,
        "deleted": deleted,
        "txid": txid,
        "op": str(op),
        "lsn": lsn,
        "source_ts": source_ts,
    }


# --- reference 2: committed states -----------------------------------------------------------


def committed_reference(
    events: Sequence[ChangeEvent], tracked: Sequence[str], per_change: bool
) -> list[dict[str, Any]]:
    """Versions from each key's committed states (after each transaction; after each change
    when ``per_change``): maximal runs of present states with equal tracked values."""
    source: dict[int, dict[str, Any]] = {}
    states: dict[int, list[tuple[int, dict[str, Any] | None]]] = defaultdict(list)
    touched: dict[int, None] = {}
    for i, e in enumerate(events):
        ts = e.position.commit_ts_us
        if e.op is Op.TRUNCATE:  # every key absent
            touched.update(dict.fromkeys(source))
            source.clear()
        else:
            key = e.key["id"]
            if e.op is Op.DELETE:
                source.pop(key, None)
            else:
                assert e.after is not None
                old = source.get(key, {})
                source[key] = {
                    c: old.get(c) if v is UNCHANGED_TOAST else v for c, v in e.after.items()
                }
            touched[key] = None
        last = i + 1 == len(events) or events[i + 1].position.commit_ts_us != ts
        if per_change or last:  # every transaction (snapshot group) has its own commit ts
            for k in touched:
                states[k].append((ts, dict(source[k]) if k in source else None))
            touched.clear()
    out = []
    for key in sorted(states):
        seq = states[key]
        i = 0
        while i < len(seq):
            start, state = seq[i]
            if state is None:
                i += 1
                continue
            j = i + 1
            while j < len(seq) and (nxt := seq[j][1]) is not None and _equal(nxt, state, tracked):
                j += 1
            end = seq[j][0] if j < len(seq) else None
            deleted = j < len(seq) and seq[j][1] is None
            out.append(project(row(state, start, end, deleted, None, "", 0, 0), tracked))
            i = j
    return out


def project(version: dict[str, Any], tracked: Sequence[str]) -> dict[str, Any]:
    names = ("id", *tracked, "valid_from", "valid_to", "is_current", "deleted")
    return {n: version[n] for n in names}


# --- invariants ------------------------------------------------------------------------------


def check_history(
    history: list[dict[str, Any]],
    live: dict[int, dict[str, Any]],
    by_tx: bool,
    tracked: Sequence[str],
) -> None:
    """The history invariants (HistoryReport's, computed here), and the current versions are
    exactly the source table's rows."""
    by_key: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for v in history:
        by_key[v["id"]].append(v)
    current = {}
    for key, versions in by_key.items():
        assert [v["lsn"] for v in versions] == sorted({v["lsn"] for v in versions}), key
        for v in versions:
            assert v["is_current"] == (v["valid_to"] is None), v
            if v["valid_to"] is not None:
                assert (
                    v["valid_from"] < v["valid_to"] if by_tx else v["valid_from"] <= v["valid_to"]
                )
        for v, w in itertools.pairwise(versions):
            assert not v["is_current"], (key, "current not last")
            assert v["valid_to"] <= w["valid_from"], (key, "overlap")
            if not v["deleted"]:
                assert v["valid_to"] == w["valid_from"], (key, "gap")
                assert not _equal(v, w, tracked), (key, "consecutive versions with equal values")
        if versions[-1]["is_current"]:
            assert not versions[-1]["deleted"], key
            current[key] = {c: versions[-1][c] for c in DATA}
    assert current == live


# --- the pure planner, against an in-memory store ---------------------------------------------


class Store:
    """What an engine keeps: every version per key, and each key's position high-water mark."""

    def __init__(self, target: TableTarget) -> None:
        self.target = target
        self.versions: dict[Key, list[Version]] = {}
        self.hwm: dict[Key, int] = {}
        self.deleted_at: dict[int, Key] = {}  # the delete markers: position -> key

    def apply(self, events: Sequence[ChangeEvent]) -> Scd2Plan:
        carry = carry_key_changes(TableBatch(self.target, SCHEMA, events))
        if carry.orphans:
            carry = carry.link(self.deleted_at)
        last = {
            k: StoredRow(self.versions[k][-1].lsn, self.versions[k][-1].values)
            for k in carry.needs
            if k in self.versions
        }
        batch, unresolved = carry.fill(last)
        # left unresolved only where the references prove it harmless (a stale replay)
        del unresolved
        events = batch.events
        keys = {(e.key["id"],) for e in events}
        stored = {
            k: StoredTail(tuple(_stored(v) for v in self.versions.get(k, [])[-2:]), self.hwm.get(k))
            for k in keys
            if k in self.versions or k in self.hwm
        }
        plan = plan_scd2(TableBatch(self.target, SCHEMA, events), stored)
        for key, lsn in plan.removes:
            assert lsn in {v.stored_lsn for v in stored[key].versions}, "removes an unfetched row"
            self.versions[key] = [v for v in self.versions[key] if v.lsn != lsn]
        for w in plan.updates:
            assert w.version.stored_lsn in {v.stored_lsn for v in stored[w.key].versions}
            self.versions[w.key] = [
                _stored(w.version) if v.lsn == w.version.stored_lsn else v
                for v in self.versions[w.key]
            ]
        for w in plan.inserts:
            assert w.version.stored_lsn is None
            self.versions.setdefault(w.key, []).append(_stored(w.version))
        written: dict[Key, list[int]] = defaultdict(list)
        for w in (*plan.inserts, *plan.updates):
            written[w.key].append(w.version.lsn)
        for key, lsn, _ in plan.deletes:
            written[key].append(lsn)
            self.deleted_at[lsn] = key
        for key, lsns in written.items():
            self.hwm[key] = max(self.hwm.get(key, -1), *lsns)
        for key in list(self.versions):
            self.versions[key].sort(key=lambda v: v.lsn)
            if not self.versions[key]:
                del self.versions[key]
        return plan

    def history(self) -> list[dict[str, Any]]:
        return [_row(v) for key in sorted(self.versions) for v in self.versions[key]]


def _row(v: Version) -> dict[str, Any]:
    return row(
        v.values, v.valid_from_us, v.valid_to_us, v.deleted, v.txid, v.op, v.lsn, v.source_ts_us
    )


def _stored(v: Version) -> Version:
    """A version as the engine stores and fetches it (identified by its ``_cdc_lsn``)."""
    return Version(
        values=dict(v.values),
        valid_from_us=v.valid_from_us,
        valid_to_us=v.valid_to_us,
        deleted=v.deleted,
        lsn=v.lsn,
        txid=v.txid,
        op=v.op,
        source_ts_us=v.source_ts_us,
        stored_lsn=v.lsn,
    )


def check_against_references(
    history: list[dict[str, Any]],
    scenario: Scenario,
    granularity: Granularity,
    track: tuple[str, ...] | None,
) -> None:
    tracked = track if track is not None else DATA
    by_tx = granularity == "transaction"
    assert history == change_reference(scenario.resolved, tracked, by_tx)
    committed = committed_reference(scenario.resolved, tracked, per_change=not by_tx)
    assert [project(v, tracked) for v in history] == committed
    check_history(history, scenario.live, by_tx, tracked)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Scenario, list[list[ChangeEvent]], tuple[str, ...] | None]:
    scenario = draw(scenarios())
    return scenario, draw(deliveries(scenario.events)), draw(TRACKS)


def _us(value: datetime) -> int:
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value
    return (value - EPOCH) // timedelta(microseconds=1)


def stored_history(wh: Warehouse, tgt: TableTarget) -> list[dict[str, Any]]:
    return [
        row(
            r,
            _us(r["valid_from"]),
            None if r["valid_to"] is None else _us(r["valid_to"]),
            r["_cdc_deleted"],
            r["_cdc_txid"],
            r["_cdc_op"],
            r["_cdc_lsn"],
            _us(r["_cdc_source_ts"]),
        )
        | {"is_current": r["is_current"]}
        for r in wh.fetch_history(tgt)
    ]


def check_end_to_end(
    wh: Warehouse,
    tgt: TableTarget,
    case: tuple[Scenario, list[list[ChangeEvent]], tuple[str, ...] | None],
    granularity: Granularity,
) -> None:
    """Apply the batches, compare the stored history with the references, check the
    invariants on the engine, then replay everything: nothing changes."""
    scenario, batches, track = case
    for batch in batches:
        wh.apply([TableBatch(tgt, SCHEMA, batch)], [])
    history = stored_history(wh, tgt)
    check_against_references(history, scenario, granularity, track)
    report = wh.history_report(tgt)
    assert report.ok, report
    assert (report.versions, report.current) == (len(history), len(scenario.live))

    result = wh.apply([TableBatch(tgt, SCHEMA, scenario.events)], [])
    stats = result.tables[0]
    assert stats.stale == len(scenario.events)
    assert (stats.upserted, stats.deleted) == (0, 0)
    assert (stats.versions_opened, stats.versions_closed) == (0, 0)
    assert stored_history(wh, tgt) == history
