"""Property: any change history, split into any batches, gives the reference model's table;
re-applying any earlier range of batches afterwards changes nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sample_data import ITEMS_SCHEMA, ev, split

from cdc.model import UNCHANGED_TOAST, ChangeEvent, Op
from warehouse.base import TableBatch, TableTarget
from warehouse.duckdb.adapter import DuckDBWarehouse

SCHEMA = ITEMS_SCHEMA  # (id, name, doc)
TARGET = TableTarget("prop")
TEXT = st.text(alphabet="ab'\"; $", max_size=4) | st.none()


@st.composite
def histories(draw: st.DrawFn) -> list[ChangeEvent]:
    """Realistic per-key histories: insert, updates (some with TOAST), delete, re-insert."""
    live: set[int] = set()
    lsn = 0
    events: list[ChangeEvent] = []
    for offset in range(draw(st.integers(1, 40))):
        key = draw(st.integers(0, 4))
        lsn += draw(st.integers(1, 3))
        if key not in live:
            op, after = Op.CREATE, {"id": key, "name": draw(TEXT), "doc": draw(TEXT)}
            live.add(key)
        elif draw(st.integers(0, 3)) == 0:
            op, after = Op.DELETE, None
            live.discard(key)
        else:
            doc = UNCHANGED_TOAST if draw(st.booleans()) else draw(TEXT)
            op, after = Op.UPDATE, {"id": key, "name": draw(TEXT), "doc": doc}
        commit_us = lsn * 1000
        values = after or {}
        events.append(
            ev(op, key, lsn, SCHEMA, commit_us=commit_us, topic="t", offset=offset, **values)
        )
    return events


def reference(events: list[ChangeEvent]) -> list[dict[str, Any]]:
    """Replay one event at a time: newer lsn wins, unchanged TOAST keeps the stored value."""
    table: dict[int, dict[str, Any]] = {}
    position: dict[int, int] = {}  # newest lsn seen per key, deletes included
    for e in events:
        key = e.key["id"]
        if e.position.lsn <= position.get(key, -1):
            continue
        position[key] = e.position.lsn
        if e.op is Op.DELETE:
            table.pop(key, None)
            continue
        assert e.after is not None
        old = table.get(key, {})
        table[key] = {c: (old.get(c) if v is UNCHANGED_TOAST else v) for c, v in e.after.items()}
    return [table[k] for k in sorted(table)]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=histories(),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    replay=st.tuples(st.integers(0, 10), st.integers(0, 10)),
)
def test_batches_match_the_reference_and_replays_change_nothing(
    events: list[ChangeEvent], cuts: list[int], replay: tuple[int, int]
) -> None:
    batches = split(events, cuts)
    with tempfile.TemporaryDirectory() as tmp:
        wh = DuckDBWarehouse(Path(tmp) / "p.duckdb", keep_open=True)
        try:
            for b in batches:
                wh.apply([TableBatch(TARGET, SCHEMA, b)], [])
            expected = reference(events)
            assert sorted(wh.fetch_table(TARGET), key=lambda r: r["id"]) == expected

            lo, hi = sorted(i % (len(batches) + 1) for i in replay)
            again = [e for b in batches[lo:hi] for e in b]
            if again:
                result = wh.apply([TableBatch(TARGET, SCHEMA, again)], [])
                assert result.tables[0].upserted == 0 and result.tables[0].deleted == 0
            assert sorted(wh.fetch_table(TARGET), key=lambda r: r["id"]) == expected
        finally:
            wh.close()
