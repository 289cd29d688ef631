"""A key change out of a key that a *replayed* key change created keeps the unchanged TOAST
value (warehouse.key_change), in the pure carry, the SCD2 planner and end to end through
DuckDB (mirror, hard and soft delete, and scd2).

The history (hypothesis found it, tests/unit/test_scd2_properties.py)::

    lsn  1  create key 3, doc "big"
    lsn  7  UPDATE SET id = 0        delete key 3, create key 0 (doc unchanged: placeholder)
    lsn 10  create key 3 again, doc "key 3 later life"
    lsn 13  UPDATE SET id = 2        delete key 0, create key 2 (doc unchanged: placeholder)

delivered as [1], [7], [10], then [13] with a replay of [7] in the same batch (also with key
2 created and deleted earlier in the key change's transaction, at 11 and 12, a batch before).
Key 2's doc is key 0's as of lsn 13: "big". In the last batch key 0's value comes from the
replayed key change at 7, whose own old key (3) has moved on to a later life, so only key 0's
stored row — written by that very change — still has it. It used to be ignored (not *newer*
than the change), and key 2 got NULL in place of "big": in the mirror, and in SCD2 in both
granularities.

A sibling (last section): a key change out of a key an *orphan* created (a key change's create
whose delete came in an earlier batch) took that key's stored row — its earlier life — instead
of the value the orphan is linked to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sample_data import ev as sample_ev
from scd2_reference import SCHEMA, Store, change_reference, target

from cdc.model import UNCHANGED_TOAST, ChangeEvent, Op
from warehouse.base import Granularity, TableBatch, TableTarget
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.key_change import StoredRow, carry_key_changes

T = UNCHANGED_TOAST
BIG = "big" * 300


def ev(
    op: Op, key: int, lsn: int, tx: int, before: dict[str, Any] | None = None, **after: Any
) -> ChangeEvent:
    return sample_ev(op, key, lsn, SCHEMA, tx=tx, before=before, topic="pg.public.hist", **after)


def key_change(old: int, new: int, lsn: int, tx: int, **after: Any) -> list[ChangeEvent]:
    """Debezium's two halves of ``UPDATE ... SET id = new``: one LSN, one transaction."""
    return [ev(Op.DELETE, old, lsn, tx), ev(Op.CREATE, new, lsn, tx, **after)]


CREATE_3 = ev(Op.CREATE, 3, 1, 501, a="x", b=0, doc=BIG)
MOVE_3_TO_0 = key_change(3, 0, 7, 504, a="x", b=0, doc=T)
CREATE_3_AGAIN = ev(Op.CREATE, 3, 10, 506, a="x", b=0, doc="key 3 later life")
MOVE_0_TO_2 = key_change(0, 2, 13, 507, a="x", b=0, doc=T)
# key 2 created and deleted earlier in the transaction of the key change (as hypothesis had it)
KEY_2_BEFORE = [
    ev(Op.CREATE, 2, 11, 507, a="y", b=1, doc="key 2 first life"),
    ev(Op.DELETE, 2, 12, 507),
]

DELIVERIES = {
    "replay-after": [[CREATE_3], MOVE_3_TO_0, [CREATE_3_AGAIN], [*MOVE_0_TO_2, *MOVE_3_TO_0]],
    "replay-before": [[CREATE_3], MOVE_3_TO_0, [CREATE_3_AGAIN], [*MOVE_3_TO_0, *MOVE_0_TO_2]],
    "key-2-earlier-in-the-tx": [
        [CREATE_3],
        MOVE_3_TO_0,
        [CREATE_3_AGAIN],
        KEY_2_BEFORE,
        [*MOVE_0_TO_2, *MOVE_3_TO_0],
    ],
}
# the value each placeholder stands for
RESOLVED = {(0, 7): BIG, (2, 13): BIG}


def resolved(
    batches: list[list[ChangeEvent]], values: dict[tuple[int, int], Any] = RESOLVED
) -> list[ChangeEvent]:
    """The log in order, each placeholder replaced by the value it stands for (``values``:
    (key, lsn) -> value)."""
    events = {(e.position.lsn, e.op is not Op.DELETE, e.key["id"]): e for b in batches for e in b}
    out = []
    for (lsn, _, key), e in sorted(events.items()):
        if (key, lsn) in values and e.after is not None:
            e = dataclasses.replace(e, after={**e.after, "doc": values[key, lsn]})
        out.append(e)
    return out


def after_of(carried: TableBatch, key: int) -> dict[str, Any]:
    [event] = [e for e in carried.events if e.key == {"id": key} and e.op is Op.CREATE]
    assert event.after is not None
    return event.after


# ---- the pure carry ---------------------------------------------------------------------------


@pytest.mark.parametrize("replay_first", [False, True], ids=["replay-after", "replay-before"])
def test_a_key_change_out_of_a_replayed_key_change_takes_the_value_stored_by_it(
    replay_first: bool,
) -> None:
    events = [*MOVE_3_TO_0, *MOVE_0_TO_2] if replay_first else [*MOVE_0_TO_2, *MOVE_3_TO_0]
    carry = carry_key_changes(TableBatch(target("every_change", None), SCHEMA, events))
    stored = {
        (0,): StoredRow(7, {"id": 0, "a": "x", "b": 0, "doc": BIG}),  # written by the change at 7
        (3,): StoredRow(10, {"id": 3, "a": "x", "b": 0, "doc": "key 3 later life"}),
    }
    assert carry.needs == {(0,), (3,)}
    filled, _ = carry.fill(stored)
    assert after_of(filled, 2)["doc"] == BIG


def test_the_batch_value_still_wins_over_a_stored_row_at_the_same_position() -> None:
    """A delete's before image is the value just before the key change; a stored row at the
    delete's position (a soft-delete tombstone, no values) does not replace it."""
    before = {"id": 1, "a": "x", "b": 0, "doc": "from before"}
    events = [ev(Op.DELETE, 1, 30, 530, before), ev(Op.CREATE, 10, 30, 530, a="x", b=0, doc=T)]
    carry = carry_key_changes(TableBatch(target("every_change", None), SCHEMA, events))
    tombstone = StoredRow(30, {"id": 1, "a": None, "b": None, "doc": None})
    filled, unresolved = carry.fill({(1,): tombstone})
    assert unresolved == 0
    assert after_of(filled, 10)["doc"] == "from before"


# ---- the SCD2 planner (in-memory store) --------------------------------------------------------


@pytest.mark.parametrize("delivery", list(DELIVERIES))
@pytest.mark.parametrize("granularity", ["transaction", "every_change"])
def test_scd2_planner_keeps_the_value_through_a_replayed_key_change(
    granularity: Granularity, delivery: str
) -> None:
    batches = DELIVERIES[delivery]
    store = Store(target(granularity, ("a",)))
    for b in batches:
        store.apply(b)
    history = store.history()
    current = {v["id"]: v["doc"] for v in history if v["is_current"]}
    assert current == {2: BIG, 3: "key 3 later life"}
    assert history == change_reference(resolved(batches), ("a",), granularity == "transaction")


# ---- end to end through DuckDB -----------------------------------------------------------------


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    w = DuckDBWarehouse(tmp_path / "w.duckdb", keep_open=True)
    yield w
    w.close()


TARGETS = {
    "mirror": TableTarget("hist"),
    "soft": TableTarget("hist", soft_delete=True),
    "scd2-transaction": target("transaction", ("a",)),
    "scd2-every_change": target("every_change", ("a",)),
}


@pytest.mark.parametrize("delivery", list(DELIVERIES))
@pytest.mark.parametrize("kind", list(TARGETS))
def test_duckdb_keeps_the_value_through_a_replayed_key_change(
    wh: DuckDBWarehouse, kind: str, delivery: str
) -> None:
    tgt = TARGETS[kind]
    for b in DELIVERIES[delivery]:
        wh.apply([TableBatch(tgt, SCHEMA, b)], [])
    if tgt.mode == "scd2":
        docs = {r["id"]: r["doc"] for r in wh.fetch_history(tgt) if r["is_current"]}
        assert wh.history_report(tgt).ok
    else:
        docs = {r["id"]: r["doc"] for r in wh.fetch_table(tgt)}
    assert docs == {2: BIG, 3: "key 3 later life"}


# ---- a key change out of an orphan's key ------------------------------------------------------
# Key 0 moves to key 1 at 20, its delete in an earlier batch than its create (an orphan: the
# halves sit on different partitions); in the orphan's batch key 1 moves on to key 2 at 30.
# Key 2's doc is key 1's at 30, which is key 0's at 20: "big" — not key 1's earlier life's.

ORPHAN_BATCHES = [
    [ev(Op.CREATE, 1, 5, 505, a="x", b=0, doc="key 1 first life"), ev(Op.DELETE, 1, 6, 506)],
    [ev(Op.CREATE, 0, 10, 510, a="x", b=0, doc=BIG)],
    [ev(Op.DELETE, 0, 20, 520)],
    [ev(Op.CREATE, 1, 20, 520, a="x", b=0, doc=T), *key_change(1, 2, 30, 530, a="x", b=0, doc=T)],
]
ORPHAN_RESOLVED = {(1, 20): BIG, (2, 30): BIG}


def test_a_key_change_out_of_an_orphans_key_takes_the_value_the_orphan_is_linked_to() -> None:
    carry = carry_key_changes(TableBatch(target("every_change", None), SCHEMA, ORPHAN_BATCHES[3]))
    assert carry.orphans == {20: (0,)}
    stored = {
        (0,): StoredRow(10, {"id": 0, "a": "x", "b": 0, "doc": BIG}),
        (1,): StoredRow(5, {"id": 1, "a": "x", "b": 0, "doc": "key 1 first life"}),
    }
    linked = carry.link({20: (0,)})
    assert linked.needs == {(0,), (1,)}
    filled, unresolved = linked.fill(stored)
    assert unresolved == 0
    assert after_of(filled, 1)["doc"] == after_of(filled, 2)["doc"] == BIG
    # no key deleted at 20: both placeholders unknown and counted, not key 1's earlier life
    filled, unresolved = carry.link({}).fill(stored)
    assert unresolved == 2
    assert after_of(filled, 1)["doc"] is T and after_of(filled, 2)["doc"] is T


@pytest.mark.parametrize("granularity", ["transaction", "every_change"])
def test_scd2_planner_keeps_the_value_through_an_orphans_key(granularity: Granularity) -> None:
    store = Store(target(granularity, ("a",)))
    for b in ORPHAN_BATCHES:
        store.apply(b)
    history = store.history()
    assert {v["id"]: v["doc"] for v in history if v["is_current"]} == {2: BIG}
    by_tx = granularity == "transaction"
    assert history == change_reference(resolved(ORPHAN_BATCHES, ORPHAN_RESOLVED), ("a",), by_tx)


@pytest.mark.parametrize("kind", list(TARGETS))
def test_duckdb_keeps_the_value_through_an_orphans_key(wh: DuckDBWarehouse, kind: str) -> None:
    tgt = TARGETS[kind]
    unresolved = [
        wh.apply([TableBatch(tgt, SCHEMA, b)], []).tables[0].toast_unresolved
        for b in ORPHAN_BATCHES
    ]
    if tgt.mode == "scd2":
        docs = {r["id"]: r["doc"] for r in wh.fetch_history(tgt) if r["is_current"]}
        assert wh.history_report(tgt).ok
    else:
        docs = {r["id"]: r["doc"] for r in wh.fetch_table(tgt)}
    if tgt.mode == "mirror" and not tgt.soft_delete:
        # a hard delete took key 0's row (and its value) with it: said so, not silent
        assert unresolved[-1] == 2 and set(docs) == {2}
    else:
        assert unresolved[-1] == 0 and docs == {2: BIG}
