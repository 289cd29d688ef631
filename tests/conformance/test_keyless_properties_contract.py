"""Property, on every adapter (DuckDB and Snowflake on fakesnow): any history of a table
without a primary key (tests/keyless_reference.py: equal rows, NULLs and NaN, interleaved
transactions, an interrupted initial snapshot, Debezium re-sending a stretch), split into any
batches, leaves the warehouse table equal to the source as a multiset; redelivering any range
of batches afterwards changes nothing."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Hashable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keyless_reference import SCHEMA, bag, histories, split

from cdc.model import ChangeEvent
from warehouse.base import TableBatch, TableTarget, Warehouse

pytestmark = pytest.mark.conformance


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(), data=st.data())
def test_a_keyless_table_matches_the_source_multiset_and_redelivery_changes_nothing(
    wh: Warehouse, history: tuple[list[ChangeEvent], Counter[Hashable]], data: st.DataObject
) -> None:
    topic, expected = history
    batches = split(data.draw, topic)
    if not batches:
        return
    target = TableTarget(f"logs_{uuid.uuid4().hex[:8]}")

    def stored() -> Counter[Hashable]:
        return bag(*((r["msg"], r["f"]) for r in wh.fetch_table(target)))

    for b in batches:
        wh.apply([TableBatch(target, SCHEMA, b)], [])
    assert stored() == expected
    start = data.draw(st.integers(0, len(batches) - 1))
    for b in batches[start : data.draw(st.integers(start + 1, len(batches)))]:
        [stats] = wh.apply([TableBatch(target, SCHEMA, b)], []).tables
        assert (stats.stale, stats.upserted, stats.deleted) == (len(b), 0, 0)
    assert stored() == expected
