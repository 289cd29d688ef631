"""A primary-key change keeps the old key's unchanged TOAST value (warehouse.key_change), in the
pure carry and end to end through DuckDB: mirror (hard and soft delete) and scd2, with the old
key's value in the same batch, in the delete's ``before``, or only in the stored row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sample_data import ev as sample_ev

from cdc.model import (
    UNCHANGED_TOAST,
    ChangeEvent,
    Column,
    ColumnType,
    Kind,
    Op,
    TableId,
    TableSchema,
)
from warehouse.base import TableBatch, TableTarget
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.key_change import StoredRow, carry_key_changes

SCHEMA = TableSchema(
    TableId("public", "docs"),
    (
        Column("id", ColumnType(Kind.INT64), nullable=False),
        Column("status", ColumnType(Kind.TEXT)),
        Column("body", ColumnType(Kind.TEXT)),
    ),
    ("id",),
)
MIRROR = TableTarget("docs")
SOFT = TableTarget("docs", soft_delete=True)
HISTORY = TableTarget("docs", mode="scd2")
T = UNCHANGED_TOAST


def ev(
    op: Op, key: int, lsn: int, tx: int | None = None, before: dict[str, Any] | None = None,
    partition: int = 0, **after: Any,
) -> ChangeEvent:  # fmt: skip
    topic = "pg.public.docs"
    return sample_ev(
        op, key, lsn, SCHEMA, tx=tx, before=before, partition=partition, topic=topic, **after
    )


def key_change(old: int, new: int, lsn: int, **after: Any) -> list[ChangeEvent]:
    """Debezium's two halves of ``UPDATE ... SET id = new``: one LSN, one transaction."""
    return [ev(Op.DELETE, old, lsn), ev(Op.CREATE, new, lsn, **after)]


def batch(*events: ChangeEvent, target: TableTarget = MIRROR) -> TableBatch:
    return TableBatch(target, SCHEMA, list(events))


def after_of(carried: TableBatch, key: int) -> dict[str, Any]:
    [event] = [e for e in carried.events if e.key == {"id": key} and e.op is Op.CREATE]
    assert event.after is not None
    return event.after


# ---- the pure carry ---------------------------------------------------------------------------


def test_the_new_key_takes_the_old_keys_value_from_earlier_in_the_batch() -> None:
    carry = carry_key_changes(
        batch(
            ev(Op.CREATE, 1, 10, status="new", body="big"),
            ev(Op.UPDATE, 1, 20, status="seen", body=T),  # the body stays "big"
            *key_change(1, 10, 30, status="seen", body=T),
        )
    )
    assert carry.needs == {(1,)}  # the stored row could still be newer (a replayed batch)
    filled, unresolved = carry.fill({})
    assert unresolved == 0
    assert after_of(filled, 10) == {"id": 10, "status": "seen", "body": "big"}
    older = StoredRow(5, {"id": 1, "status": "x", "body": "older"})
    assert after_of(carry.fill({(1,): older})[0], 10)["body"] == "big"


def test_a_stored_row_newer_than_a_replayed_change_in_the_batch_wins() -> None:
    """The batch replays key 1's old insert; the stored row has the body of a later update."""
    carry = carry_key_changes(
        batch(
            ev(Op.CREATE, 1, 10, status="new", body="first"),  # replayed: stale
            *key_change(1, 10, 30, status="new", body=T),
        )
    )
    stored = StoredRow(20, {"id": 1, "status": "new", "body": "updated at 20"})
    filled, unresolved = carry.fill({(1,): stored})
    assert unresolved == 0
    assert after_of(filled, 10)["body"] == "updated at 20"


def test_the_deletes_full_before_image_is_used_first() -> None:
    carry = carry_key_changes(
        batch(
            ev(Op.DELETE, 1, 30, before={"id": 1, "status": "x", "body": "from before"}),
            ev(Op.CREATE, 10, 30, status="x", body=T),
        )
    )
    older = StoredRow(20, {"id": 1, "status": "x", "body": "older"})
    assert after_of(carry.fill({(1,): older})[0], 10)["body"] == "from before"


def test_the_nulls_of_a_default_replica_identity_before_image_are_not_values() -> None:
    """Under REPLICA IDENTITY DEFAULT Debezium's delete carries the key and nulls."""
    carry = carry_key_changes(
        batch(
            ev(Op.CREATE, 1, 10, status="new", body="big"),
            ev(Op.DELETE, 1, 30, before={"id": 1, "status": None, "body": None}),
            ev(Op.CREATE, 10, 30, status="new", body=T),
        )
    )
    assert after_of(carry.fill({})[0], 10)["body"] == "big"


def test_a_value_only_the_stored_row_has_is_asked_for_and_filled() -> None:
    carry = carry_key_changes(batch(*key_change(1, 10, 30, status="x", body=T)))
    assert carry.needs == {(1,)}
    assert after_of(carry.batch, 10)["body"] is T  # until filled
    filled, unresolved = carry.fill({(1,): StoredRow(9, {"id": 1, "status": "x", "body": "st"})})
    assert unresolved == 0
    assert after_of(filled, 10)["body"] == "st"
    filled, unresolved = carry.fill({})  # no stored row: counted, left a placeholder
    assert unresolved == 1 and after_of(filled, 10)["body"] is T


def test_a_chain_of_key_changes_in_one_batch_reaches_back_to_the_first_key() -> None:
    carry = carry_key_changes(
        batch(*key_change(1, 2, 30, status="a", body=T), *key_change(2, 3, 40, status="b", body=T))
    )
    assert carry.needs == {(1,), (2,)}  # key 2's stored row would win if newer than 30
    filled, _ = carry.fill({(1,): StoredRow(9, {"id": 1, "status": "a", "body": "first"})})
    assert after_of(filled, 2)["body"] == after_of(filled, 3)["body"] == "first"


def test_a_chain_through_a_key_whose_stored_row_is_newer_takes_that_row() -> None:
    """The batch replays key 3's creation by a key change from key 0 (at 4); key 3's stored
    row (a snapshot read at 13) is newer: key 3's next key change (at 15) carries that."""
    carry = carry_key_changes(
        batch(*key_change(0, 3, 4, status="a", body=T), *key_change(3, 2, 15, status="a", body=T))
    )
    stored = {
        (0,): StoredRow(12, {"id": 0, "status": "a", "body": "key 0 later life"}),
        (3,): StoredRow(13, {"id": 3, "status": "a", "body": "read at 13"}),
    }
    filled, unresolved = carry.fill(stored)
    assert unresolved == 1  # key 3's replayed creation: key 0's row is from a later life
    assert after_of(filled, 2)["body"] == "read at 13"


def test_orphans_are_linked_through_the_key_deleted_at_their_position() -> None:
    carry = carry_key_changes(batch(ev(Op.CREATE, 10, 30, status="x", body=T)))
    assert carry.orphans == {30: (0,)} and not carry.needs
    linked = carry.link({30: (1,)})
    assert linked.needs == {(1,)}
    filled, _ = linked.fill({(1,): StoredRow(9, {"id": 1, "status": "x", "body": "st"})})
    assert after_of(filled, 10)["body"] == "st"
    assert carry.link({}).fill({})[1] == 1  # no key deleted there: counted


def test_halves_on_different_partitions_in_any_order_are_linked() -> None:
    create = ev(Op.CREATE, 10, 30, partition=1, status="x", body=T)
    delete = ev(Op.DELETE, 1, 30, partition=0)
    earlier = ev(Op.CREATE, 1, 10, status="x", body="big")
    carry = carry_key_changes(batch(create, earlier, delete))
    assert after_of(carry.fill({})[0], 10)["body"] == "big"


def test_creates_that_are_not_key_changes_and_other_events_pass_unchanged() -> None:
    lone = ev(Op.CREATE, 5, 50, status="x", body=T)  # no delete at its LSN
    update = ev(Op.UPDATE, 6, 60, status="y", body=T)  # the planners' own TOAST carry
    source = batch(lone, update, ev(Op.DELETE, 7, 70), ev(Op.CREATE, 7, 70, body=T, status="z"))
    carry = carry_key_changes(source)
    assert carry.batch.events == source.events
    assert not carry.needs and set(carry.orphans) == {50, 70}  # creates without their delete


# ---- end to end through DuckDB -----------------------------------------------------------------


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    w = DuckDBWarehouse(tmp_path / "w.duckdb", keep_open=True)
    yield w
    w.close()


def bodies(wh: DuckDBWarehouse, target: TableTarget) -> dict[int, Any]:
    if target.mode == "scd2":
        return {r["id"]: r["body"] for r in wh.fetch_history(target) if r["is_current"]}
    return {r["id"]: r["body"] for r in wh.fetch_table(target)}


@pytest.mark.parametrize("target", [MIRROR, SOFT, HISTORY], ids=["mirror", "soft", "scd2"])
def test_a_key_change_keeps_the_stored_value(wh: DuckDBWarehouse, target: TableTarget) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, status="new", body="big"), target=target)], [])
    [stats] = wh.apply(
        [batch(*key_change(1, 10, 30, status="new", body=T), target=target)], []
    ).tables
    assert stats.toast_unresolved == 0
    assert bodies(wh, target) == {10: "big"}


@pytest.mark.parametrize("target", [SOFT, HISTORY], ids=["soft", "scd2"])
def test_halves_split_across_batches_still_find_the_deleted_keys_value(
    wh: DuckDBWarehouse, target: TableTarget
) -> None:
    """The soft-deleted row, or the closed last version, still holds the value."""
    wh.apply([batch(ev(Op.CREATE, 1, 10, status="new", body="big"), target=target)], [])
    delete, create = key_change(1, 10, 30, status="new", body=T)
    wh.apply([batch(delete, target=target)], [])
    [stats] = wh.apply([batch(create, target=target)], []).tables
    assert stats.toast_unresolved == 0
    assert bodies(wh, target) == {10: "big"}
    if target.mode == "scd2":
        assert wh.history_report(target).ok


def test_a_hard_deleted_old_key_across_batches_is_counted_not_silent(wh: DuckDBWarehouse) -> None:
    """What the consumer's batching avoids (it doesn't end a batch after a delete while the
    next message is there): with the halves in two batches the value is gone, and said so."""
    wh.apply([batch(ev(Op.CREATE, 1, 10, status="new", body="big"))], [])
    delete, create = key_change(1, 10, 30, status="new", body=T)
    wh.apply([batch(delete)], [])
    [stats] = wh.apply([batch(create)], []).tables
    assert stats.toast_unresolved == 1
    assert bodies(wh, MIRROR) == {10: None}


def test_a_replayed_key_change_changes_nothing(wh: DuckDBWarehouse) -> None:
    events = [ev(Op.CREATE, 1, 10, status="new", body="big"), *key_change(1, 10, 30, body=T)]
    wh.apply([batch(*events, target=HISTORY)], [])
    before = wh.fetch_history(HISTORY)
    [stats] = wh.apply([batch(*events, target=HISTORY)], []).tables
    assert stats.stale == 3
    assert wh.fetch_history(HISTORY) == before
