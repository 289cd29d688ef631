"""Netting a keyless table's batches (warehouse.keyless): examples, and a property against a
reference multiset (a Counter).

Property: any source history of a keyless table (inserts, deletes and updates of one of
several equal rows, transactions whose change LSNs interleave while their commit order is the
stream's order, an initial snapshot, maybe interrupted and restarted, Debezium re-sending a
stretch after a restart), split into any batches, ends as the source's multiset; replaying
any range of batches afterwards changes nothing. Checked on the pure plan applied to a Counter
and on a DuckDB file (histories: tests/keyless_reference.py; both engines:
tests/conformance/test_keyless_properties_contract.py).
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keyless_reference import SCHEMA, TARGET, bag, change, histories, split

from cdc.model import UNCHANGED_TOAST, ChangeEvent, Op
from warehouse.base import DataError, IncompatibleSchemaChangeError, TableBatch
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.keyless import Watermark, plan_keyless, row_identity


class Model:
    """A warehouse reduced to its multiset and watermark: a plan applied as the engine does."""

    def __init__(self) -> None:
        self.rows: Counter[Hashable] = Counter()
        self.mark = Watermark()

    def apply(self, events: Sequence[ChangeEvent]) -> None:
        plan = plan_keyless(TableBatch(TARGET, SCHEMA, events), self.mark)
        if not plan.moved:
            assert plan.watermark == self.mark
            return
        if plan.replace:
            self.rows.clear()
        for values, k in plan.removes:
            ident = row_identity(values)
            self.rows[ident] -= min(k, self.rows[ident])
        for added in plan.adds:
            self.rows[row_identity(added.values)] += 1
        self.rows = +self.rows
        self.mark = plan.watermark


# ---- examples ----------------------------------------------------------------------------


def test_two_equal_rows_one_deleted_leaves_one() -> None:
    m = Model()
    m.apply(
        [
            change(Op.CREATE, None, ("a", 1.0), 10, 5, 0),
            change(Op.CREATE, None, ("a", 1.0), 20, 15, 1),
        ]
    )
    m.apply([change(Op.DELETE, ("a", 1.0), None, 30, 25, 2)])
    assert m.rows == bag(("a", 1.0))
    assert m.mark == Watermark(25, 30, None, None, txid=30)


def test_an_add_and_a_remove_of_one_value_cancel_in_the_batch() -> None:
    events = [change(Op.CREATE, None, ("a", None), 10, 5, 0),
              change(Op.UPDATE, ("a", None), ("b", None), 11, 5, 1),
              change(Op.DELETE, ("c", None), None, 20, 15, 2)]  # fmt: skip
    plan = plan_keyless(TableBatch(TARGET, SCHEMA, events), Watermark())
    assert [a.values for a in plan.adds] == [("b", None)]
    assert plan.removes == ((("c", None), 1),)


def test_nan_rows_are_one_value() -> None:
    nan = float("nan")
    assert row_identity(("a", nan)) == row_identity(("a", float("nan")))
    events = [change(Op.CREATE, None, ("a", nan), 10, 5, 0),
              change(Op.DELETE, ("a", float("nan")), None, 20, 15, 1)]  # fmt: skip
    plan = plan_keyless(TableBatch(TARGET, SCHEMA, events), Watermark())
    assert (plan.adds, plan.removes) == ((), ())
    assert math.isnan(events[0].after["f"])  # type: ignore[index]


def test_minus_zero_is_not_zero() -> None:
    """Equal by IEEE, different values: an insert of -0.0 and a delete of 0.0 don't cancel."""
    events = [
        change(Op.CREATE, None, ("a", -0.0), 10, 5, 0),
        change(Op.DELETE, ("a", 0.0), None, 20, 15, 1),
    ]
    plan = plan_keyless(TableBatch(TARGET, SCHEMA, events), Watermark())
    assert [a.values for a in plan.adds] == [("a", -0.0)]
    assert [(v, k) for v, k in plan.removes] == [(("a", 0.0), 1)]
    assert row_identity(("a", -0.0)) != row_identity(("a", 0.0))


def test_the_pair_orders_transactions_where_the_lsn_alone_does_not() -> None:
    """A transaction that began first commits second: its change LSN is lower than the
    first-committed one's, its sequence[0] higher. Both apply; a re-send of both applies none."""
    first = change(Op.CREATE, None, ("late", 1.0), 50, 40, 0)
    second = change(Op.CREATE, None, ("early", 1.0), 45, 60, 1)
    m = Model()
    m.apply([first])
    m.apply([second])
    assert m.rows == bag(("late", 1.0), ("early", 1.0))
    m.apply([replace(first, origin=replace(first.origin, offset=7)),
             replace(second, origin=replace(second.origin, offset=8))])  # fmt: skip
    assert m.rows == bag(("late", 1.0), ("early", 1.0))


def test_an_update_without_its_before_image_says_to_set_replica_identity_full() -> None:
    event = change(Op.UPDATE, None, ("b", None), 10, 5)
    with pytest.raises(
        IncompatibleSchemaChangeError, match=r'"public"."logs" REPLICA IDENTITY FULL;'
    ):
        plan_keyless(TableBatch(TARGET, SCHEMA, [event]), Watermark())


def test_a_second_partition_is_refused() -> None:
    event = change(Op.CREATE, None, ("b", None), 10, 5, partition=1)
    with pytest.raises(IncompatibleSchemaChangeError, match="ONE partition"):
        plan_keyless(TableBatch(TARGET, SCHEMA, [event]), Watermark())


def test_an_unchanged_toast_value_is_the_before_rows_or_a_data_error() -> None:
    """An update that leaves a large value untouched: the value comes from ``before``
    (REPLICA IDENTITY FULL logs the old row whole). Nowhere to take it from: a DataError."""
    update = change(Op.UPDATE, ("b", 2.5), ("c", UNCHANGED_TOAST), 10, 5)
    plan = plan_keyless(TableBatch(TARGET, SCHEMA, [update]), Watermark())
    assert [a.values for a in plan.adds] == [("c", 2.5)]
    event = change(Op.CREATE, None, ("b", UNCHANGED_TOAST), 10, 5)
    with pytest.raises(DataError, match="TOAST"):
        plan_keyless(TableBatch(TARGET, SCHEMA, [event]), Watermark())


def test_a_snapshot_after_streamed_changes_is_refused() -> None:
    m = Model()
    m.apply([change(Op.CREATE, None, ("a", None), 10, 5, 0)])
    with pytest.raises(IncompatibleSchemaChangeError, match="snapshotted the keyless"):
        m.apply([change(Op.READ, None, ("a", None), 20, None, 1)])


# ---- the property ------------------------------------------------------------------------


@given(histories(), st.data())
@settings(max_examples=300, deadline=None)
def test_any_history_any_split_matches_the_multiset_and_replays_change_nothing(
    history: tuple[list[ChangeEvent], Counter[Hashable]], data: st.DataObject
) -> None:
    topic, expected = history
    batches = split(data.draw, topic)
    m = Model()
    for b in batches:
        m.apply(b)
    assert m.rows == expected
    mark = m.mark
    if batches:
        start = data.draw(st.integers(0, len(batches) - 1))
        for b in batches[start : data.draw(st.integers(start + 1, len(batches)))]:
            m.apply(b)
    assert (m.rows, m.mark) == (expected, mark)


@given(histories(), st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_duckdb_table_matches_the_multiset_and_replays_change_nothing(
    history: tuple[list[ChangeEvent], Counter[Hashable]], data: st.DataObject
) -> None:
    topic, expected = history
    batches = split(data.draw, topic)
    with tempfile.TemporaryDirectory() as tmp:
        wh = DuckDBWarehouse(Path(tmp) / "k.duckdb", keep_open=True)
        try:
            for b in batches:
                wh.apply([TableBatch(TARGET, SCHEMA, b)], [])

            def stored() -> Counter[Hashable]:
                if not batches:
                    return Counter()
                return bag(*((r["msg"], r["f"]) for r in wh.fetch_table(TARGET)))

            assert stored() == expected
            for b in batches[data.draw(st.integers(0, max(0, len(batches) - 1))) :]:
                wh.apply([TableBatch(TARGET, SCHEMA, b)], [])
            assert stored() == expected
        finally:
            wh.close()


def test_a_lone_message_without_a_key_on_a_keyed_table_is_a_data_error(tmp_path: Path) -> None:
    """Bisected down to itself, a stray keyless message of a table registered with a key is a
    DataError (dead-lettered), raised before any DDL: the keyed table keeps its shape."""
    keyed = replace(SCHEMA, key=("msg",))
    wh = DuckDBWarehouse(tmp_path / "k.duckdb", keep_open=True)
    try:
        first = replace(change(Op.CREATE, None, ("a", 1.0), 10, 5), schema=keyed, key={"msg": "a"})
        wh.apply([TableBatch(TARGET, keyed, [first])], [])
        with pytest.raises(DataError, match="have no key") as e:
            wh.apply(
                [TableBatch(TARGET, SCHEMA, [change(Op.CREATE, None, ("b", 1.0), 20, 15)])], []
            )
        assert e.value.table == "logs"
        with wh.connection() as con:
            columns = con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'logs'"
            )
            assert "_cdc_row" not in {r[0] for r in columns.fetchall()}
        assert [r["msg"] for r in wh.fetch_table(TARGET)] == ["a"]
    finally:
        wh.close()
