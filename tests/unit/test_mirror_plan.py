"""The pure mirror plan: newest change per key, TOAST carry-forward, deletes, key changes."""

from __future__ import annotations

from typing import Any

import pytest
from sample_data import ITEMS_SCHEMA
from sample_data import ev as sample_ev

from cdc.model import UNCHANGED_TOAST, ChangeEvent, KafkaOrigin, Op
from warehouse.base import DataError, TableBatch, TableTarget
from warehouse.mirror import plan_mirror

SCHEMA = ITEMS_SCHEMA


def ev(op: Op, key: int, lsn: int, offset: int, **after: Any) -> ChangeEvent:
    """Transaction lsn // 10, committed at lsn ms; unset columns NULL; never a snapshot."""
    row = {"name": None, "doc": None, **after}
    commit_us = lsn * 1000
    return sample_ev(
        op, key, lsn, tx=lsn // 10, commit_us=commit_us, snapshot=False, offset=offset, **row
    )


def plan(*events: ChangeEvent):  # type: ignore[no-untyped-def]
    return plan_mirror(TableBatch(TableTarget("items"), SCHEMA, events))


def test_newest_change_per_key_wins_by_lsn_not_arrival_order() -> None:
    p = plan(
        ev(Op.CREATE, 1, 10, 0, name="a"),
        ev(Op.UPDATE, 1, 30, 1, name="c"),
        ev(Op.UPDATE, 1, 20, 2, name="b"),  # arrives later, older lsn
        ev(Op.CREATE, 2, 15, 3, name="x"),
    )
    rows = {r.key: r for r in p.upserts}
    assert set(rows) == {(1,), (2,)}
    assert rows[(1,)].values == {"id": 1, "name": "c", "doc": None}
    assert rows[(1,)].lsn == 30 and rows[(1,)].op is Op.UPDATE and rows[(1,)].txid == 3
    assert rows[(1,)].source_ts_us == 30_000
    assert rows[(2,)].values["name"] == "x"
    assert p.deletes == () and p.events == 4


def test_equal_lsn_is_ordered_by_kafka_offset() -> None:
    p = plan(ev(Op.UPDATE, 1, 10, 5, name="later"), ev(Op.UPDATE, 1, 10, 4, name="earlier"))
    assert p.upserts[0].values["name"] == "later"


def test_insert_update_delete_in_one_batch_is_a_delete() -> None:
    p = plan(
        ev(Op.CREATE, 1, 10, 0, name="a"),
        ev(Op.UPDATE, 1, 11, 1, name="b"),
        ev(Op.DELETE, 1, 12, 2),
    )
    assert p.upserts == ()
    assert len(p.deletes) == 1
    d = p.deletes[0]
    assert d.key == (1,) and d.lsn == 12 and d.deleted and d.op is Op.DELETE
    assert d.values == {"id": 1, "name": None, "doc": None}


def test_delete_then_reinsert_is_an_upsert_of_the_new_row() -> None:
    p = plan(
        ev(Op.CREATE, 1, 10, 0, name="a", doc="d1"),
        ev(Op.DELETE, 1, 11, 1),
        ev(Op.CREATE, 1, 12, 2, name="again"),
    )
    assert p.deletes == ()
    (row,) = p.upserts
    assert row.values == {"id": 1, "name": "again", "doc": None}
    assert row.lsn == 12 and not row.deleted and row.toast == frozenset()


def test_toast_is_carried_from_an_earlier_change_in_the_batch() -> None:
    p = plan(
        ev(Op.UPDATE, 1, 10, 0, name="a", doc="big"),
        ev(Op.UPDATE, 1, 11, 1, name="b", doc=UNCHANGED_TOAST),
        ev(Op.UPDATE, 1, 12, 2, name="c", doc=UNCHANGED_TOAST),
    )
    (row,) = p.upserts
    assert row.values == {"id": 1, "name": "c", "doc": "big"}
    assert row.toast == frozenset()
    assert p.toast_columns == frozenset()


def test_residual_toast_columns_are_reported_for_the_stored_row() -> None:
    p = plan(
        ev(Op.UPDATE, 1, 10, 0, name="a", doc=UNCHANGED_TOAST),
        ev(Op.UPDATE, 1, 11, 1, name="b", doc=UNCHANGED_TOAST),
        ev(Op.UPDATE, 2, 12, 2, name="z", doc="real"),
    )
    rows = {r.key: r for r in p.upserts}
    assert rows[(1,)].toast == frozenset({"doc"})
    assert rows[(1,)].values == {"id": 1, "name": "b", "doc": None}
    assert rows[(2,)].toast == frozenset()
    assert p.toast_columns == frozenset({"doc"})


def test_toast_after_an_in_batch_delete_has_nothing_to_carry() -> None:
    p = plan(
        ev(Op.CREATE, 1, 10, 0, doc="old"),
        ev(Op.DELETE, 1, 11, 1),
        ev(Op.UPDATE, 1, 12, 2, doc=UNCHANGED_TOAST),
    )
    (row,) = p.upserts
    assert row.values["doc"] is None and row.toast == frozenset()


def test_primary_key_change_is_a_delete_of_the_old_and_an_upsert_of_the_new_key() -> None:
    p = plan(
        ev(Op.CREATE, 1, 10, 0, name="a"),
        ev(Op.DELETE, 1, 11, 1),
        ev(Op.CREATE, 7, 11, 2, name="a"),
    )
    assert [d.key for d in p.deletes] == [(1,)]
    assert [(u.key, u.values["id"], u.lsn) for u in p.upserts] == [((7,), 7, 11)]


def test_snapshot_read_is_an_upsert() -> None:
    p = plan(ev(Op.READ, 3, 5, 0, name="snap"))
    assert p.upserts[0].op is Op.READ and p.upserts[0].values["name"] == "snap"


def test_truncate_is_refused() -> None:
    t = ev(Op.CREATE, 1, 10, 0)
    truncate = ChangeEvent(Op.TRUNCATE, SCHEMA, {}, None, None, t.position, t.origin)
    with pytest.raises(ValueError, match="truncate"):
        plan(truncate)


def test_event_without_key_column_is_refused() -> None:
    bad = ChangeEvent(
        Op.CREATE, SCHEMA, {"nope": 1}, None, {"id": 1}, ev(Op.CREATE, 1, 1, 0).position,
        KafkaOrigin("t", 0, 9),
    )  # fmt: skip
    with pytest.raises(DataError, match="key column 'id'") as e:
        plan(bad)
    assert e.value.table == "items"
