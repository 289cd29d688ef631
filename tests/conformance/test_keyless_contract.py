"""Tables without a primary key, one set of test bodies for every adapter (DuckDB and
Snowflake on fakesnow): rows matched on all columns, NULL-safely, as a multiset.

Debezium sends a keyless table's changes (REPLICA IDENTITY FULL) with a null Kafka key: the
decoder gives them an empty key and a schema without key columns. A create adds one copy of
``after``, a delete removes one copy of ``before``, an update both. Exactly-once comes from the
table's watermark, ``(commit_lsn, lsn)`` of the last applied change (reads: their LSN and
Kafka offset), stored with the rows: replaying any batch, or Debezium re-sending changes under
new offsets, changes nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import pytest
from sample_data import ALL_KINDS, FULL_ROW, NULL_ROW, T0_US

from cdc.model import (
    ChangeEvent,
    Column,
    ColumnType,
    Interval,
    KafkaOrigin,
    Kind,
    Op,
    SourcePosition,
    TableId,
    TableSchema,
)
from warehouse import sql
from warehouse.base import (
    IncompatibleSchemaChangeError,
    TableApplyStats,
    TableBatch,
    TableTarget,
    Warehouse,
    WatermarkMovedError,
)
from warehouse.keyless import Watermark, row_identity

pytestmark = pytest.mark.conformance

LOGS = TableSchema(
    TableId("public", "logs"),
    (Column("msg", ColumnType(Kind.TEXT)), Column("n", ColumnType(Kind.INT64))),
    (),
)
TARGET = TableTarget("logs")
KINDS = TableSchema(TableId("public", "kinds"), ALL_KINDS, ())
KINDS_TARGET = TableTarget("kinds")
_offsets = itertools.count()


class Source:
    """A keyless source table's change stream: each change its own transaction unless
    grouped; ``sequence = [commit_lsn, lsn]`` as Debezium sends it."""

    def __init__(self, schema: TableSchema = LOGS) -> None:
        self.schema = schema
        self.lsn = 100
        self.last_commit = 50

    def _event(self, op: Op, before: Any, after: Any, *, tx_end: bool = True) -> ChangeEvent:
        self.lsn += 10
        pos = SourcePosition(self.lsn, self.lsn, T0_US + self.lsn, op is Op.READ,
                             None if op is Op.READ else self.last_commit)  # fmt: skip
        if tx_end and op is not Op.READ:
            self.last_commit = self.lsn + 5
        return ChangeEvent(op, self.schema, {}, before, after, pos,
                           KafkaOrigin("pg.public.logs", 0, next(_offsets)))  # fmt: skip

    def insert(self, row: dict[str, Any], **kw: Any) -> ChangeEvent:
        return self._event(Op.CREATE, None, row, **kw)

    def update(self, old: dict[str, Any], new: dict[str, Any], **kw: Any) -> ChangeEvent:
        return self._event(Op.UPDATE, old, new, **kw)

    def delete(self, row: dict[str, Any], **kw: Any) -> ChangeEvent:
        return self._event(Op.DELETE, row, None, **kw)


def read(schema: TableSchema, row: dict[str, Any], lsn: int) -> ChangeEvent:
    """A snapshot read of ``row`` by a snapshot at ``lsn`` (every read of it: that LSN)."""
    pos = SourcePosition(lsn, None, T0_US + lsn, True, None)
    return ChangeEvent(Op.READ, schema, {}, None, row, pos,
                       KafkaOrigin("pg.public.logs", 0, next(_offsets)))  # fmt: skip


def resent(event: ChangeEvent) -> ChangeEvent:
    """The same change re-sent by Debezium after a restart: a new Kafka offset."""
    origin = dataclasses.replace(event.origin, offset=next(_offsets))
    return dataclasses.replace(event, origin=origin)


def r(msg: str | None, n: int | None) -> dict[str, Any]:
    return {"msg": msg, "n": n}


def apply(wh: Warehouse, *events: ChangeEvent, target: TableTarget = TARGET) -> TableApplyStats:
    [stats] = wh.apply([TableBatch(target, events[0].schema, events)], []).tables
    return stats


def multiset(wh: Warehouse, target: TableTarget = TARGET) -> Counter[Hashable]:
    """The ``logs`` table's live rows as a multiset (data columns only: no surrogate id
    shows)."""
    rows = wh.fetch_table(target)
    names = [c.name for c in LOGS.columns]
    for row in rows:
        assert set(row) == set(names), row
    return Counter(row_identity(tuple(row[n] for n in names)) for row in rows)


def bag(*rows: dict[str, Any], schema: TableSchema = LOGS) -> Counter[Hashable]:
    return Counter(row_identity(tuple(row[c.name] for c in schema.columns)) for row in rows)


def test_equal_rows_are_copies_and_a_delete_removes_one(wh: Warehouse) -> None:
    src = Source()
    stats = apply(wh, src.insert(r("a", 1)), src.insert(r("a", 1)), src.insert(r("b", None)))
    assert (stats.events, stats.upserted, stats.deleted, stats.stale) == (3, 3, 0, 0)
    assert multiset(wh) == bag(r("a", 1), r("a", 1), r("b", None))

    stats = apply(wh, src.delete(r("a", 1)))
    assert (stats.events, stats.upserted, stats.deleted, stats.stale) == (1, 0, 1, 0)
    assert multiset(wh) == bag(r("a", 1), r("b", None))

    # an update of the NULL-holding row makes a third... second copy of ('a', 1)
    apply(wh, src.update(r("b", None), r("a", 1)))
    assert multiset(wh) == bag(r("a", 1), r("a", 1))
    apply(wh, src.update(r("a", 1), r(None, None)))
    assert multiset(wh) == bag(r("a", 1), r(None, None))
    apply(wh, src.delete(r(None, None)), src.delete(r("a", 1)))
    assert multiset(wh) == Counter()


def test_changes_net_within_a_batch_in_log_order(wh: Warehouse) -> None:
    src = Source()
    apply(wh, src.insert(r("x", 1)))
    # one batch: insert a copy, delete two (the new one and the stored one), re-insert one,
    # update it twice; changes of one transaction and of several
    events = [
        src.insert(r("x", 1), tx_end=False),
        src.delete(r("x", 1)),
        src.delete(r("x", 1)),
        src.insert(r("x", 1)),
        src.update(r("x", 1), r("y", 2), tx_end=False),
        src.update(r("y", 2), r("z", 3)),
        src.insert(r("y", 2)),
    ]
    stats = apply(wh, *events)
    assert multiset(wh) == bag(r("z", 3), r("y", 2))
    assert (stats.events, stats.stale, stats.deleted) == (7, 0, 1)


def test_replaying_any_batch_or_a_resend_changes_nothing(wh: Warehouse) -> None:
    src = Source()
    batches: list[Sequence[ChangeEvent]] = [
        [src.insert(r("a", 1)), src.insert(r("a", 1)), src.insert(r("b", 2))],
        [src.delete(r("a", 1)), src.update(r("b", 2), r("a", 1))],
        [src.insert(r("c", 3), tx_end=False), src.insert(r("c", 3))],
        [src.delete(r("c", 3))],
    ]
    for events in batches:
        apply(wh, *events)
    final = multiset(wh)
    assert final == bag(r("a", 1), r("a", 1), r("c", 3))
    for events in [*batches, *reversed(batches)]:  # a second consumer group, any order
        stats = apply(wh, *events)
        assert (stats.stale, stats.upserted, stats.deleted) == (len(events), 0, 0)
        assert multiset(wh) == final
    # Debezium re-sends the last two batches (new offsets, same positions), then goes on
    stats = apply(wh, *(resent(e) for e in [*batches[2], *batches[3]]), src.insert(r("d", 4)))
    assert (stats.stale, stats.upserted) == (3, 1)
    assert multiset(wh) == final + bag(r("d", 4))


def test_every_type_matches_null_safely_on_its_stored_value(wh: Warehouse) -> None:
    """Rows of every kind, NULLs, NaN, and intervals equal only by normalisation
    ('1 month' vs '30 days') are told apart exactly. (Engines hand some kinds back in their
    own form, JSON text on Snowflake, so the rows are counted by id and interval; the deletes'
    counts say that every column matched.)"""
    src = Source(KINDS)
    full = {**FULL_ROW, "id": 1}
    nulls = {**NULL_ROW, "id": None}
    nan = {**NULL_ROW, "id": 3, "f64": float("nan"), "f32": float("nan")}
    month = {**NULL_ROW, "id": 4, "span": Interval(1, 0, 0)}
    days = {**NULL_ROW, "id": 4, "span": Interval(0, 30, 0)}
    zero = {**NULL_ROW, "id": 5, "f64": 0.0}
    minus_zero = {**NULL_ROW, "id": 5, "f64": -0.0}

    def counted(*rows: dict[str, Any]) -> Counter[tuple[Any, Any]]:
        return Counter((row["id"], row["span"]) for row in rows)

    rows = [full, full, nulls, nulls, nan, nan, month, days]
    apply(wh, *(src.insert(row) for row in rows), target=KINDS_TARGET)
    assert counted(*wh.fetch_table(KINDS_TARGET)) == counted(*rows)
    stats = apply(wh, *(src.delete(row) for row in (full, nulls, nan, days)), target=KINDS_TARGET)
    assert stats.deleted == 4
    assert counted(*wh.fetch_table(KINDS_TARGET)) == counted(full, nulls, nan, month)
    stats = apply(wh, src.delete(month), target=KINDS_TARGET)
    assert stats.deleted == 1
    assert counted(*wh.fetch_table(KINDS_TARGET)) == counted(full, nulls, nan)
    # -0.0 and 0.0 are equal by IEEE, not the same value: deleting -0.0 leaves 0.0
    apply(wh, src.insert(minus_zero), src.insert(zero), target=KINDS_TARGET)
    stats = apply(wh, src.delete(minus_zero), target=KINDS_TARGET)
    assert stats.deleted == 1
    [left] = [r["f64"] for r in wh.fetch_table(KINDS_TARGET) if r["id"] == 5]
    assert (left, math.copysign(1.0, left)) == (0.0, 1.0)
    stats = apply(wh, src.delete(zero), target=KINDS_TARGET)
    assert stats.deleted == 1
    stats = apply(wh, *(src.delete(row) for row in (full, nulls, nan)), target=KINDS_TARGET)
    assert stats.deleted == 3
    assert wh.fetch_table(KINDS_TARGET) == []


def test_snapshot_reads_replace_the_rows_and_replay_changes_nothing(wh: Warehouse) -> None:
    first = [read(LOGS, r("a", 1), 500), read(LOGS, r("a", 1), 500), read(LOGS, r("b", 2), 500)]
    apply(wh, *first[:2])
    apply(wh, first[2])
    assert multiset(wh) == bag(r("a", 1), r("a", 1), r("b", 2))
    stats = apply(wh, *first)  # replayed
    assert stats.stale == 3
    assert multiset(wh) == bag(r("a", 1), r("a", 1), r("b", 2))
    # Debezium restarts its snapshot (interrupted): a new snapshot LSN replaces the rows
    again = [read(LOGS, r("a", 1), 700), read(LOGS, r("c", 3), 700)]
    apply(wh, again[0])
    assert multiset(wh) == bag(r("a", 1))
    apply(wh, again[1])
    src = Source()
    src.lsn, src.last_commit = 800, 690
    apply(wh, src.insert(r("a", 1)))
    assert multiset(wh) == bag(r("a", 1), r("a", 1), r("c", 3))
    # a snapshot after streamed changes can't be made exact: the table is parked
    with pytest.raises(IncompatibleSchemaChangeError, match="snapshotted the keyless"):
        apply(wh, read(LOGS, r("z", 9), 900))
    assert multiset(wh) == bag(r("a", 1), r("a", 1), r("c", 3))


def test_a_truncate_empties_a_keyless_table(wh: Warehouse) -> None:
    src = Source()
    apply(wh, src.insert(r("a", 1)), src.insert(r("a", 1)))
    truncate = src._event(Op.TRUNCATE, None, None)
    stats = apply(wh, truncate)
    assert stats.deleted == 2
    assert multiset(wh) == Counter()
    apply(wh, src.insert(r("b", 2)))
    assert multiset(wh) == bag(r("b", 2))


@pytest.mark.parametrize(
    ("target", "words"),
    [
        (TableTarget("logs", mode="scd2"), "mode 'scd2'"),
        (TableTarget("logs", soft_delete=True), "soft_delete"),
    ],
)
def test_history_and_soft_deletes_are_refused(
    wh: Warehouse, target: TableTarget, words: str
) -> None:
    src = Source()
    with pytest.raises(IncompatibleSchemaChangeError, match="no primary key") as caught:
        apply(wh, src.insert(r("a", 1)), target=target)
    assert words in str(caught.value)
    assert caught.value.table == "logs"


def test_rows_match_across_an_added_and_a_dropped_column(wh: Warehouse) -> None:
    """A column added at the source: stored rows get its default, and the before images that
    carry it match them. A column dropped at the source (kept in the warehouse): rows are
    matched on the source's columns."""
    src = Source()
    apply(wh, src.insert(r("a", 1)), src.insert(r("a", 1)), src.insert(r("b", 2)))
    wider = dataclasses.replace(
        LOGS, columns=(*LOGS.columns, Column("tag", ColumnType(Kind.TEXT), default="t0"))
    )
    src.schema = wider
    stats = apply(wh, src.update({**r("a", 1), "tag": "t0"}, {**r("a", 1), "tag": "t1"}))
    assert stats.deleted == 1
    rows = sorted((x["msg"], x["n"], x["tag"]) for x in wh.fetch_table(TARGET))
    assert rows == [("a", 1, "t0"), ("a", 1, "t1"), ("b", 2, "t0")]
    narrower = dataclasses.replace(LOGS, columns=(LOGS.columns[0], wider.columns[2]))
    src.schema = narrower
    stats = apply(wh, src.delete({"msg": "a", "tag": "t1"}), src.delete({"msg": "b", "tag": "t0"}))
    assert stats.deleted == 2
    rows = sorted((x["msg"], x["n"], x["tag"]) for x in wh.fetch_table(TARGET))
    assert rows == [("a", 1, "t0")]


def test_status_reads_count_live_rows_and_the_last_change(wh: Warehouse) -> None:
    src = Source()
    apply(wh, src.insert(r("a", 1)), src.insert(r("a", 1)), src.insert(r("b", 2)))
    apply(wh, src.delete(r("b", 2)))
    assert wh.row_counts()["logs"] == 2
    applied = wh.last_applied(TARGET)
    # the newest stored row's change (the second insert), as for keyed tables: a hard
    # delete leaves no row to show
    assert applied is not None and applied.lsn == src.lsn - 20
    registered = wh.registered("logs")
    assert registered is not None and registered.key == ()


def test_arrays_of_floats_tell_minus_zero_and_nan_apart(wh: Warehouse) -> None:
    """[-0.0, 1.5] and [0.0, 1.5] are different rows (NaN in an array: Snowflake's staging
    refuses it, on the keyed path too)."""
    floats = TableSchema(
        TableId("public", "vec"),
        (Column("v", ColumnType(Kind.ARRAY, element=ColumnType(Kind.FLOAT64))),),
        (),
    )
    target = TableTarget("vec")
    src = Source(floats)
    rows = [{"v": [-0.0, 1.5]}, {"v": [0.0, 1.5]}, {"v": [2.5, None]}, {"v": [2.5, None]}]
    apply(wh, *(src.insert(row) for row in rows), target=target)
    stats = apply(wh, src.delete({"v": [0.0, 1.5]}), src.delete({"v": [2.5, None]}),
                  target=target)  # fmt: skip
    assert stats.deleted == 2
    left = sorted(repr(r["v"]) for r in wh.fetch_table(target))
    assert left == ["[-0.0, 1.5]", "[2.5, None]"]


def test_replace_reloads_the_multiset_and_keeps_the_watermark(wh: Warehouse) -> None:
    """``replace_keyless``: every stored row replaced by the batch's reads (duplicates as
    copies) in one transaction, the watermark kept, so the stream goes on after it; a
    watermark moved since the caller read it refuses the re-load and writes nothing."""
    src = Source()
    last = src.insert(r("b", 2))
    apply(wh, src.insert(r("a", 1)), src.insert(r("a", 1)), last)
    mark = wh.keyless_watermark(TARGET)
    assert mark.lsn == src.lsn and mark.txid == src.lsn
    reads = [read(LOGS, row, 2_000) for row in (r("a", 1), r("c", None), r("c", None))]
    assert wh.replace_keyless(TableBatch(TARGET, LOGS, reads), mark) == 3
    assert multiset(wh) == bag(r("a", 1), r("c", None), r("c", None))
    assert wh.keyless_watermark(TARGET) == mark
    # the stream goes on: a change already applied is stale, a newer one applies
    assert apply(wh, resent(last)).stale == 1
    assert multiset(wh) == bag(r("a", 1), r("c", None), r("c", None))
    stats = apply(wh, src.delete(r("c", None)))
    assert (stats.deleted, stats.stale) == (1, 0)
    assert multiset(wh) == bag(r("a", 1), r("c", None))
    # compare-and-set: the watermark moved (the change above), so the old one is refused
    with pytest.raises(WatermarkMovedError, match="stream applied changes") as caught:
        wh.replace_keyless(TableBatch(TARGET, LOGS, [read(LOGS, r("z", 9), 3_000)]), mark)
    assert caught.value.table == "logs"
    assert multiset(wh) == bag(r("a", 1), r("c", None))
    moved = wh.keyless_watermark(TARGET)
    assert moved != mark and moved.lsn == src.lsn
    assert wh.replace_keyless(TableBatch(TARGET, LOGS, []), moved) == 0
    assert multiset(wh) == Counter()
    assert wh.keyless_watermark(TARGET) == moved


def test_replace_loads_a_table_the_stream_never_wrote(wh: Warehouse) -> None:
    target = TableTarget("fresh")
    assert wh.keyless_watermark(target) == Watermark()
    reads = [read(LOGS, r("a", 1), 2_000), read(LOGS, r("a", 1), 2_000)]
    assert wh.replace_keyless(TableBatch(target, LOGS, reads), Watermark()) == 2
    assert multiset(wh, target) == bag(r("a", 1), r("a", 1))
    assert wh.keyless_watermark(target) == Watermark()


def test_a_watermark_table_without_the_txid_column_is_upgraded_in_place(wh: Warehouse) -> None:
    """``_cdc.keyless_positions`` as created before it held the transaction id: the first
    apply of a process adds the column, and the stream goes on."""
    engine: Any = wh
    src = Source()
    apply(wh, src.insert(r("a", 1)))
    with engine._session(None) as c:
        engine._exec(c, sql.drop_column(engine._ref("keyless_positions"), "txid"))
    engine._bookkept = False
    apply(wh, src.insert(r("a", 1)))
    assert multiset(wh) == bag(r("a", 1), r("a", 1))
    assert wh.keyless_watermark(TARGET).txid == src.lsn
