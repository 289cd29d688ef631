"""The TRUNCATE contract, one set of test bodies for every adapter (DuckDB and Snowflake).

A TRUNCATE reaches ``Warehouse.apply`` alone in its apply (the consumer cuts polled batches
around it: ``cdc.consumer.batching.cut_at_truncates``), as one event with an empty key and a
keyless schema (Debezium sends it with a null Kafka key). At its position P it ends every stored
row of its table at or below P: a mirror table deletes them, a soft-delete table marks the live
ones deleted with the truncate's metadata (``_cdc_op = 't'``), a history table closes every
current version at the truncate's commit time as a delete (granularity ``transaction``: the
truncating transaction's own versions leave nothing). Afterwards every change of the table at
or below P is stale, for every key, whoever delivers it (``_cdc.truncations`` keeps P); the
changes after P apply normally.

Same fixture as test_warehouse_contract.py (tests/conformance/conftest.py): a DuckDB file,
then fakesnow's server with the real connector.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sample_data import ITEMS, ITEMS_SCHEMA, T0_US, ev, rows

from cdc.model import ChangeEvent, KafkaOrigin, Op, SourcePosition
from warehouse.base import (
    OffsetRow,
    Scd2Options,
    SourceRows,
    TableApplyStats,
    TableBatch,
    TableTarget,
    Warehouse,
)
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.snowflake.adapter import SnowflakeWarehouse

pytestmark = pytest.mark.conformance

KEYLESS = dataclasses.replace(ITEMS_SCHEMA, key=())  # a truncate's schema: no key columns
MIRROR = ITEMS
SOFT = TableTarget("items", soft_delete=True)
HIST = TableTarget("items", mode="scd2")
EVERY = TableTarget("items", mode="scd2", scd2=Scd2Options(granularity="every_change"))
MODES = {"mirror": MIRROR, "soft_delete": SOFT, "scd2": HIST}
T0 = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=T0_US)


def truncate(lsn: int, tx: int | None = None) -> ChangeEvent:
    """A TRUNCATE at ``lsn`` in transaction ``tx`` (default: its own), committed at T0 + tx µs,
    as the decoder gives it: empty key, no before, no after, a keyless schema."""
    return dataclasses.replace(ev(Op.TRUNCATE, {}, lsn, KEYLESS, tx=tx, snapshot=False), after=None)


def apply(
    wh: Warehouse, target: TableTarget, *events: ChangeEvent, offsets: list[OffsetRow] | None = None
) -> TableApplyStats:
    """One apply of one table batch (its schema: the first event's), its stats."""
    result = wh.apply([TableBatch(target, events[0].schema, events)], offsets or [])
    [stats] = result.tables
    assert stats.table == target.name
    return stats


def tx_of(value: dt.datetime) -> int:
    """A stored commit time as the transaction number it came from (µs after T0)."""
    if value.tzinfo is None:  # an engine that hands TIMESTAMPTZ back without its zone: UTC
        value = value.replace(tzinfo=dt.UTC)
    return (value - T0) // dt.timedelta(microseconds=1)


def run_sql(wh: Warehouse, text: str) -> list[tuple[Any, ...]]:
    """SQL text on the adapter's engine (``{schema}``: the target schema, ``{bk}``: the
    bookkeeping schema, both quoted)."""
    text = text.replace("{schema}", f'"{wh.schema}"')  # type: ignore[attr-defined]
    text = text.replace("{bk}", f'"{wh.bookkeeping_schema}"')  # type: ignore[attr-defined]
    if isinstance(wh, DuckDBWarehouse):
        with wh.connection() as con:
            return con.execute(text).fetchall()
    assert isinstance(wh, SnowflakeWarehouse)
    cur = wh._connection().cursor()
    cur.execute(text)
    return list(cur.fetchall()) if cur.description else []


def stored(wh: Warehouse, target: TableTarget) -> list[tuple[Any, ...]]:
    """Every stored row of a mirror table, soft-deleted ones included: (id, name, deleted, op,
    lsn, txid, source_ts as a transaction number). A table without soft deletes has no
    deleted column: its rows are all live."""
    m = target.metadata
    deleted = f'"{m.deleted}"' if target.soft_delete else "false"
    got = run_sql(
        wh,
        f'SELECT "id", "name", {deleted}, "{m.op}", "{m.lsn}", "{m.txid}", "{m.source_ts}" '
        f'FROM {{schema}}."{target.name}" ORDER BY "id"',
    )
    return [(*r[:6], tx_of(r[6])) for r in got]


def truncations(wh: Warehouse) -> list[tuple[Any, ...]]:
    """``_cdc.truncations``: (table_name, lsn, txid, source_ts as a transaction number)."""
    got = run_sql(
        wh,
        'SELECT "table_name", "lsn", "txid", "source_ts", "applied_at" '
        'FROM {bk}."truncations" ORDER BY "table_name", "lsn"',
    )
    assert all(r[4] is not None for r in got)
    return [(r[0], r[1], r[2], tx_of(r[3])) for r in got]


def versions(wh: Warehouse, target: TableTarget) -> list[tuple[Any, ...]]:
    """(id, valid_from tx, valid_to tx, deleted, name) per version, in key and version order."""
    out = []
    for r in wh.fetch_history(target):
        end = None if r["valid_to"] is None else tx_of(r["valid_to"])
        assert r["is_current"] == (end is None), r
        out.append((r["id"], tx_of(r["valid_from"]), end, r["_cdc_deleted"], r["name"]))
    return out


def assert_history_ok(wh: Warehouse, target: TableTarget, current: int) -> None:
    report = wh.history_report(target)
    assert report.ok, report
    assert report.current == current, report


def live(*pairs: tuple[int, str]) -> list[dict[str, Any]]:
    return [{"id": k, "name": name, "doc": None} for k, name in pairs]


def truncated(stats: TableApplyStats, deleted: int) -> None:
    """The stats of an applied truncate: one event, ``deleted`` rows ended, nothing else."""
    assert (stats.events, stats.deleted, stats.stale, stats.upserted) == (1, deleted, 0, 0)


# ---- mirror tables ---------------------------------------------------------------------------


def test_a_truncate_deletes_every_row_of_a_mirror_table(wh: Warehouse) -> None:
    apply(wh, MIRROR, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 11, name="b"),
          ev(Op.CREATE, 3, 12, name="c"))  # fmt: skip
    apply(wh, MIRROR, ev(Op.UPDATE, 1, 13, name="a2"), ev(Op.DELETE, 3, 14))
    offsets = [OffsetRow("g", "pg.public.items", 0, 7)]
    stats = apply(wh, MIRROR, truncate(20, tx=19), offsets=offsets)
    truncated(stats, deleted=2)
    assert rows(wh) == []
    assert stored(wh, MIRROR) == []
    assert truncations(wh) == [("items", 20, 19, 19)]
    # the truncate's offsets commit with it
    assert wh.load_offsets("g") == {("pg.public.items", 0): 7}
    # a later change of the table applies as usual
    again = apply(wh, MIRROR, ev(Op.CREATE, 2, 21, name="back"), ev(Op.UPDATE, 2, 22, name="b2"))
    assert (again.upserted, again.stale) == (1, 0)
    assert rows(wh) == live((2, "b2"))


def test_a_truncate_marks_every_live_row_of_a_soft_delete_table(wh: Warehouse) -> None:
    apply(wh, SOFT, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 11, name="b"),
          ev(Op.CREATE, 3, 12, name="c"))  # fmt: skip
    apply(wh, SOFT, ev(Op.DELETE, 3, 13))
    stats = apply(wh, SOFT, truncate(20, tx=19))
    truncated(stats, deleted=2)  # key 3 was deleted already
    assert rows(wh, SOFT) == []
    assert stored(wh, SOFT) == [
        (1, "a", True, "t", 20, 19, 19),
        (2, "b", True, "t", 20, 19, 19),
        (3, "c", True, "d", 13, 13, 13),  # untouched: deleted before the truncate
    ]
    assert truncations(wh) == [("items", 20, 19, 19)]
    apply(wh, SOFT, ev(Op.CREATE, 2, 21, name="back"))
    assert rows(wh, SOFT) == live((2, "back"))
    assert stored(wh, SOFT)[1] == (2, "back", False, "c", 21, 21, 21)


@pytest.mark.parametrize("mode", MODES)
def test_rows_written_after_the_truncate_position_survive_it(wh: Warehouse, mode: str) -> None:
    """Only rows at or below the position end (built directly: the stream can't send this)."""
    target = MODES[mode]
    apply(wh, target, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 30, name="b"))
    truncated(apply(wh, target, truncate(20)), deleted=1)
    assert rows(wh, target) == live((2, "b"))
    if mode == "soft_delete":
        assert [r[:5] for r in stored(wh, target)] == [(1, "a", True, "t", 20),
                                                       (2, "b", False, "c", 30)]  # fmt: skip
    if mode == "scd2":
        assert versions(wh, target) == [(1, 10, 20, True, "a"), (2, 30, None, False, "b")]
        assert_history_ok(wh, target, current=1)


# ---- what comes after a truncate --------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_redelivered_change_at_or_below_the_truncate_is_stale(wh: Warehouse, mode: str) -> None:
    """For a key that was stored, one that was deleted and one the warehouse never held."""
    target = MODES[mode]
    apply(wh, target, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 11, name="b"),
          ev(Op.CREATE, 3, 12, name="c"))  # fmt: skip
    apply(wh, target, ev(Op.DELETE, 3, 13))
    apply(wh, target, truncate(20))
    before = wh.fetch_history(target) if mode == "scd2" else stored(wh, target)
    redelivered = apply(
        wh,
        target,
        ev(Op.CREATE, 1, 10, name="a"),  # stored, then truncated
        ev(Op.UPDATE, 2, 14, name="b2"),  # never applied, below the truncate
        ev(Op.CREATE, 3, 12, name="c"),  # deleted before the truncate
        ev(Op.DELETE, 3, 13),
        ev(Op.CREATE, 9, 15, name="z"),  # a key the warehouse never held
    )
    assert (redelivered.stale, redelivered.upserted, redelivered.deleted) == (5, 0, 0)
    assert rows(wh, target) == []
    after = wh.fetch_history(target) if mode == "scd2" else stored(wh, target)
    assert after == before
    # the truncate itself, redelivered: stale, and recorded once
    again = apply(wh, target, truncate(20))
    assert (again.events, again.stale, again.deleted) == (1, 1, 0)
    assert truncations(wh) == [("items", 20, 20, 20)]
    if mode == "scd2":
        assert_history_ok(wh, target, current=0)
    # one batch of stale and new changes: the new ones apply
    mixed = apply(wh, target, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 1, 21, name="new"))
    assert (mixed.stale, mixed.upserted) == (1, 1)
    assert rows(wh, target) == live((1, "new"))


@pytest.mark.parametrize("mode", MODES)
def test_a_snapshot_chunk_read_before_the_truncate_is_stale(wh: Warehouse, mode: str) -> None:
    target = MODES[mode]
    apply(wh, target, ev(Op.CREATE, 1, 10, name="a"))
    apply(wh, target, truncate(20))
    origin = KafkaOrigin("snapshot:s1", 0, 0)
    chunk = [(1, "snap", None), (2, "snap", None)]
    old = SourceRows(
        target, ITEMS_SCHEMA, chunk, SourcePosition(15, None, T0_US + 15, True), origin
    )
    assert wh.load_rows(old).tables[0].stale == 2
    assert rows(wh, target) == []
    new = SourceRows(
        target, ITEMS_SCHEMA, chunk, SourcePosition(25, None, T0_US + 25, True), origin
    )
    assert wh.load_rows(new).tables[0].upserted == 2
    assert rows(wh, target) == live((1, "snap"), (2, "snap"))


@pytest.mark.parametrize("mode", ["mirror", "scd2"])
def test_a_truncate_of_a_table_never_seen_only_records_its_position(
    wh: Warehouse, mode: str
) -> None:
    target = TableTarget("fresh", mode=mode)  # type: ignore[arg-type]
    truncated(apply(wh, target, truncate(20)), deleted=0)
    assert truncations(wh) == [("fresh", 20, 20, 20)]
    after = apply(wh, target, ev(Op.CREATE, 1, 15, name="old"), ev(Op.CREATE, 2, 25, name="new"))
    assert (after.stale, after.upserted) == (1, 1)
    assert rows(wh, target) == live((2, "new"))
    reg = wh.registered("fresh")
    assert reg is not None and reg.key == ("id",) and reg.mode == mode


def test_truncates_are_kept_per_table(wh: Warehouse) -> None:
    other = TableTarget("other")
    apply(wh, MIRROR, ev(Op.CREATE, 1, 10, name="a"))
    apply(wh, other, ev(Op.CREATE, 1, 11, name="o"))
    apply(wh, MIRROR, truncate(20))
    assert rows(wh, other) == live((1, "o"))  # another table is not touched
    late = apply(wh, other, ev(Op.CREATE, 2, 15, name="p"))  # below the other table's truncate
    assert (late.stale, late.upserted) == (0, 1)
    apply(wh, MIRROR, truncate(30, tx=29))  # a second truncate of the same table
    assert truncations(wh) == [("items", 20, 20, 20), ("items", 30, 29, 29)]
    assert apply(wh, MIRROR, ev(Op.CREATE, 1, 25, name="b")).stale == 1


def reopen(wh: Warehouse) -> Warehouse:
    """A new adapter on the same warehouse (a new process: nothing cached)."""
    if isinstance(wh, DuckDBWarehouse):
        wh.close()
        return DuckDBWarehouse(wh.path, keep_open=False)
    assert isinstance(wh, SnowflakeWarehouse)
    return SnowflakeWarehouse(wh.settings, tmpdir=wh.tmpdir)


def test_the_truncate_position_outlives_the_process(wh: Warehouse) -> None:
    apply(wh, MIRROR, ev(Op.CREATE, 1, 10, name="a"))
    apply(wh, MIRROR, truncate(20))
    fresh = reopen(wh)
    try:
        assert apply(fresh, MIRROR, ev(Op.CREATE, 1, 10, name="a")).stale == 1
        assert apply(fresh, MIRROR, truncate(20)).stale == 1
        assert rows(fresh) == []
    finally:
        fresh.close()


@pytest.fixture
def two_writers(wh: Warehouse) -> Iterator[tuple[Warehouse, Warehouse]]:
    """Two adapters writing to one warehouse in turn (a consumer and a snapshot process, or two
    members of a consumer group): DuckDB files opened per unit of work, two Snowflake sessions."""
    if isinstance(wh, DuckDBWarehouse):
        wh.close()
        pair: tuple[Warehouse, Warehouse] = (
            DuckDBWarehouse(wh.path, keep_open=False),
            DuckDBWarehouse(wh.path, keep_open=False),
        )
    else:
        assert isinstance(wh, SnowflakeWarehouse)
        pair = (wh, SnowflakeWarehouse(wh.settings, tmpdir=wh.tmpdir))
    try:
        yield pair
    finally:
        for w in pair:
            if w is not wh:
                w.close()


@pytest.mark.parametrize("path", ["stream", "snapshot"])
def test_a_truncate_by_another_writer_makes_older_changes_stale_here_too(
    two_writers: tuple[Warehouse, Warehouse], path: str
) -> None:
    """The second writer has been running since before the truncate (a consumer group's
    other member, or a snapshot process loading chunks read before the truncate)."""
    first, second = two_writers
    apply(first, MIRROR, ev(Op.CREATE, 1, 10, name="a"))
    apply(second, MIRROR, ev(Op.CREATE, 2, 11, name="b"))
    truncated(apply(first, MIRROR, truncate(20)), deleted=2)
    if path == "stream":
        late = apply(second, MIRROR, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 3, 12, name="c"))
    else:
        chunk = [(1, "a", None), (3, "c", None)]
        position = SourcePosition(15, None, T0_US + 15, True)
        origin = KafkaOrigin("snapshot:s1", 0, 0)
        [late] = second.load_rows(SourceRows(MIRROR, ITEMS_SCHEMA, chunk, position, origin)).tables
    assert (late.stale, late.upserted) == (2, 0)
    assert rows(second) == []


# ---- history tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", [HIST, EVERY], ids=["transaction", "every_change"])
def test_a_truncate_closes_every_current_version_at_its_commit_time(
    wh: Warehouse, target: TableTarget
) -> None:
    apply(wh, target, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 11, name="x"),
          ev(Op.CREATE, 3, 12, name="gone"))  # fmt: skip
    apply(wh, target, ev(Op.UPDATE, 1, 13, name="b"), ev(Op.DELETE, 3, 14))
    truncated(apply(wh, target, truncate(20)), deleted=2)
    assert versions(wh, target) == [
        (1, 10, 13, False, "a"),
        (1, 13, 20, True, "b"),  # closed by the truncate, as a delete
        (2, 11, 20, True, "x"),
        (3, 12, 14, True, "gone"),  # deleted before: untouched
    ]
    history = wh.fetch_history(target)
    # a closed version keeps the change that opened it
    assert [(r["_cdc_op"], r["_cdc_txid"]) for r in history] == [
        ("c", 10), ("u", 13), ("c", 11), ("c", 12),
    ]  # fmt: skip
    assert wh.fetch_table(target) == []
    assert_history_ok(wh, target, current=0)
    # re-inserting a key opens a new version after the gap the truncate left
    apply(wh, target, ev(Op.CREATE, 1, 30, name="c"), ev(Op.CREATE, 4, 31, name="new"))
    assert versions(wh, target)[:3] == [
        (1, 10, 13, False, "a"),
        (1, 13, 20, True, "b"),
        (1, 30, None, False, "c"),
    ]
    assert versions(wh, target)[-1] == (4, 31, None, False, "new")
    assert rows(wh, target) == live((1, "c"), (4, "new"))
    assert_history_ok(wh, target, current=2)


# Transaction 20 updates key 1 and inserts key 2 (applied first), then truncates (applied
# alone); key 3 was inserted by transaction 11.
SAME_TX_EXPECTED = {
    # the transaction's own versions leave nothing; the version it replaced ends deleted
    "transaction": [(1, 10, 20, True, "a"), (3, 11, 20, True, "z")],
    # every change a version: the transaction's are zero-length, ended by the truncate
    "every_change": [
        (1, 10, 20, False, "a"),
        (1, 20, 20, True, "b"),
        (2, 20, 20, True, "x"),
        (3, 11, 20, True, "z"),
    ],
}


@pytest.mark.parametrize("target", [HIST, EVERY], ids=["transaction", "every_change"])
def test_a_truncate_ends_the_versions_its_own_transaction_opened(
    wh: Warehouse, target: TableTarget
) -> None:
    apply(wh, target, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 3, 11, name="z"))
    apply(wh, target, ev(Op.UPDATE, 1, 20, tx=20, name="b"), ev(Op.CREATE, 2, 21, tx=20, name="x"))
    # every current version ends: key 1's and key 2's (opened by tx 20) and key 3's
    truncated(apply(wh, target, truncate(22, tx=20)), deleted=3)
    assert versions(wh, target) == SAME_TX_EXPECTED[target.scd2.granularity]
    assert wh.fetch_table(target) == []
    assert_history_ok(wh, target, current=0)
    # the transaction's changes, redelivered: stale
    replay = apply(wh, target, ev(Op.UPDATE, 1, 20, tx=20, name="b"),
                   ev(Op.CREATE, 2, 21, tx=20, name="x"))  # fmt: skip
    assert (replay.stale, replay.upserted) == (2, 0)
    assert versions(wh, target) == SAME_TX_EXPECTED[target.scd2.granularity]


# Transaction 20 updates key 1, truncates, then inserts key 1 as it was before the transaction
# and key 2 with new values (each part applied on its own, as the consumer cuts them).
REINSERT_EXPECTED = {
    # one version per committed state: key 1 unchanged by the transaction, key 2 changed
    "transaction": [(1, 10, None, False, "a"), (2, 11, 20, False, "x"), (2, 20, None, False, "y")],
    "every_change": [
        (1, 10, 20, False, "a"),
        (1, 20, 20, True, "b"),
        (1, 20, None, False, "a"),
        (2, 11, 20, True, "x"),
        (2, 20, None, False, "y"),
    ],
}


@pytest.mark.parametrize("target", [HIST, EVERY], ids=["transaction", "every_change"])
def test_changes_after_a_truncate_in_its_own_transaction(
    wh: Warehouse, target: TableTarget
) -> None:
    apply(wh, target, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 11, name="x"))
    apply(wh, target, ev(Op.UPDATE, 1, 20, tx=20, name="b"))
    truncated(apply(wh, target, truncate(21, tx=20)), deleted=2)
    after = apply(wh, target, ev(Op.CREATE, 1, 22, tx=20, name="a"),
                  ev(Op.CREATE, 2, 23, tx=20, name="y"))  # fmt: skip
    assert (after.stale, after.upserted) == (0, 2)
    assert versions(wh, target) == REINSERT_EXPECTED[target.scd2.granularity]
    assert rows(wh, target) == live((1, "a"), (2, "y"))
    assert_history_ok(wh, target, current=2)
