"""Property: SCD Type 2 history equals simple reference models, for any change history split
into any batches with any replays; re-applying everything afterwards changes nothing.

Two references, both written from the spec (warehouse.scd2's docstring), not from the planner:

* a change-by-change model of the rules, compared on every version column;
* a committed-state model: each key's sequence of states (after each transaction, or after each
  change for ``every_change``), maximal runs of present states with equal tracked values merged
  into versions. Compared on key, tracked columns, validity, ``is_current`` and ``deleted``.

The pure planner runs against an in-memory store that hands it what an engine would (each key's
last two versions and its position high-water mark); the DuckDB adapter runs the same
histories end to end (Snowflake: tests/conformance/test_scd2_properties_contract.py). The
references, the generators and the in-memory store are in tests/scd2_reference.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from scd2_reference import (
    Scenario,
    Store,
    cases,
    check_against_references,
    check_end_to_end,
    target,
)

from cdc.model import ChangeEvent
from warehouse.base import Granularity
from warehouse.duckdb.adapter import DuckDBWarehouse


@pytest.mark.parametrize("granularity", ["transaction", "every_change"])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_planner_history_matches_the_references_in_any_batches(
    granularity: Granularity,
    case: tuple[Scenario, list[list[ChangeEvent]], tuple[str, ...] | None],
) -> None:
    scenario, batches, track = case
    store = Store(target(granularity, track))
    for batch in batches:
        store.apply(batch)
    history = store.history()
    check_against_references(history, scenario, granularity, track)

    again = store.apply(scenario.events)
    assert again.empty and again.stale == len(scenario.events)
    assert (again.upserted, again.deleted, again.opened, again.closed) == (0, 0, 0, 0)
    assert store.history() == history


# --- DuckDB, end to end ----------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["transaction", "every_change"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_duckdb_history_matches_the_references_in_any_batches(
    granularity: Granularity,
    case: tuple[Scenario, list[list[ChangeEvent]], tuple[str, ...] | None],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wh = DuckDBWarehouse(Path(tmp) / "h.duckdb", keep_open=True)
        try:
            check_end_to_end(wh, target(granularity, case[2]), case, granularity)
        finally:
            wh.close()
