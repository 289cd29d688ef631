"""Property: with TRUNCATEs in the log, any change history delivered the way the consumer
delivers it (batches cut at random points, earlier ranges redelivered, every truncate applied
alone: ``cdc.consumer.batching.cut_at_truncates``) gives

* a mirror table (hard or soft deletes) equal to a replay reference: a dict, newest position
  per key wins, a truncate empties it and makes every change at or below it stale;
* a history table equal to the SCD2 reference models of tests/scd2_reference.py (extended with
  the truncate step), with the history invariants holding on the engine;

and redelivering the whole log afterwards changes nothing (every event stale). Each example
writes a table of its own; one set of bodies for every adapter (the ``wh`` fixture).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scd2_reference import (
    SCHEMA,
    TRACKS,
    Scenario,
    change_reference,
    check_against_references,
    deliveries,
    scenarios,
    stored_history,
)

from cdc.consumer.batching import Polled, cut_at_truncates
from cdc.model import UNCHANGED_TOAST, ChangeEvent, Op
from warehouse.base import (
    Granularity,
    Scd2Options,
    TableApplyStats,
    TableBatch,
    TableTarget,
    Warehouse,
)

pytestmark = pytest.mark.conformance

Case = tuple[Scenario, list[list[ChangeEvent]], tuple[str, ...] | None]
PROPERTY = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def consumed(batches: list[list[ChangeEvent]]) -> list[list[ChangeEvent]]:
    """Each delivered batch cut as the consumer cuts a polled batch: every truncate alone."""
    out = []
    for batch in batches:
        messages = [Polled(e.origin, None, None) for e in batch]
        out += [s.events for s in cut_at_truncates(messages, batch) if s.events]
    return out


@st.composite
def truncating_cases(draw: st.DrawFn) -> Case:
    scenario = draw(scenarios(truncates=True, transactions=6))
    return scenario, consumed(draw(deliveries(scenario.events))), draw(TRACKS)


def apply_all(wh: Warehouse, target: TableTarget, batches: list[list[ChangeEvent]]) -> int:
    """Apply the batches one apply each (a truncate's batch: its keyless schema); the number
    of events counted stale."""
    stale = 0
    for events in batches:
        result = wh.apply([TableBatch(target, events[0].schema, events)], [])
        [stats] = result.tables
        assert stats.table == target.name
        if events[0].op is Op.TRUNCATE:
            assert stats.events == 1
        stale += stats.stale
    return stale


def live_rows(wh: Warehouse, target: TableTarget) -> list[dict[str, Any]]:
    """The table's live rows by key; none when nothing ever created it (a log of truncates and
    changes they made stale)."""
    if wh.registered(target.name) is None:
        return []
    return sorted(wh.fetch_table(target), key=lambda r: r["id"])


def redeliver_everything(wh: Warehouse, target: TableTarget, events: list[ChangeEvent]) -> None:
    """The whole log again, as one polled batch cut at its truncates: nothing written, every
    event stale (a mirror table counts its changes after the last truncate once per key: it
    collapses a batch to each key's newest change first)."""
    total = TableApplyStats(target.name)
    for segment in consumed([events]):
        [stats] = wh.apply([TableBatch(target, segment[0].schema, segment)], []).tables
        total.stale += stats.stale
        total.upserted += stats.upserted
        total.deleted += stats.deleted
        total.versions_opened += stats.versions_opened
        total.versions_closed += stats.versions_closed
    if target.mode == "scd2":
        assert total.stale == len(events), total
    else:
        last = max((i for i, e in enumerate(events) if e.op is Op.TRUNCATE), default=-1)
        after = events[last + 1 :]
        assert total.stale == last + 1 + len({e.key["id"] for e in after}), total
    assert (total.upserted, total.deleted) == (0, 0), total
    assert (total.versions_opened, total.versions_closed) == (0, 0), total


# --- mirror --------------------------------------------------------------------------------


def mirror_reference(events: list[ChangeEvent]) -> dict[int, dict[str, Any]]:
    """One change at a time: a newer position per key wins (deletes included), unchanged TOAST
    keeps the row's value, a truncate empties the table and makes everything at or below it
    stale."""
    table: dict[int, dict[str, Any]] = {}
    position: dict[int, int] = {}
    mark = -1
    for e in events:
        lsn = e.position.lsn
        if lsn <= mark:
            continue
        if e.op is Op.TRUNCATE:
            mark = lsn
            table.clear()
            continue
        key = e.key["id"]
        if lsn <= position.get(key, -1):
            continue
        position[key] = lsn
        if e.op is Op.DELETE:
            table.pop(key, None)
            continue
        assert e.after is not None
        old = table.get(key, {})
        table[key] = {c: old.get(c) if v is UNCHANGED_TOAST else v for c, v in e.after.items()}
    return table


@pytest.mark.parametrize("soft_delete", [False, True], ids=["hard_delete", "soft_delete"])
@PROPERTY
@given(case=truncating_cases())
def test_a_mirror_table_matches_the_reference_through_truncates(
    wh: Warehouse, soft_delete: bool, case: Case
) -> None:
    scenario, batches, _ = case
    target = TableTarget(f"mirror_{uuid.uuid4().hex[:8]}", soft_delete=soft_delete)
    apply_all(wh, target, batches)
    expected = mirror_reference(scenario.resolved)
    assert expected == scenario.live  # the reference agrees with the generated source table
    assert live_rows(wh, target) == [expected[k] for k in sorted(expected)]
    redeliver_everything(wh, target, scenario.events)
    assert live_rows(wh, target) == [expected[k] for k in sorted(expected)]


# --- history -------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["transaction", "every_change"])
@PROPERTY
@given(case=truncating_cases())
def test_a_history_table_matches_the_references_through_truncates(
    wh: Warehouse, granularity: Granularity, case: Case
) -> None:
    scenario, batches, track = case
    options = Scd2Options(granularity=granularity, track=track)
    target = TableTarget(f"hist_{uuid.uuid4().hex[:8]}", mode="scd2", scd2=options)
    apply_all(wh, target, batches)
    if wh.registered(target.name) is None:  # nothing ever created it
        assert change_reference(scenario.resolved, SCHEMA.names, by_tx=True) == []
        assert scenario.live == {}
        redeliver_everything(wh, target, scenario.events)
        return
    history = stored_history(wh, target)
    check_against_references(history, scenario, granularity, track)
    current = [{c: scenario.live[k][c] for c in SCHEMA.names} for k in sorted(scenario.live)]
    assert live_rows(wh, target) == current
    report = wh.history_report(target)
    assert report.ok, report
    assert (report.versions, report.current) == (len(history), len(scenario.live))

    redeliver_everything(wh, target, scenario.events)
    assert stored_history(wh, target) == history
