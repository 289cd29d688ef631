"""Property: SCD Type 2 history on Snowflake (fakesnow's server, the real connector) equals
the reference models (tests/scd2_reference.py) for any change history split into any batches;
re-applying everything afterwards changes nothing. The pure planner and DuckDB run the same
property in tests/unit/test_scd2_properties.py.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector
from hypothesis import HealthCheck, given, settings
from scd2_reference import Scenario, cases, check_end_to_end, target

from cdc.model import ChangeEvent
from warehouse.base import Granularity
from warehouse.snowflake.adapter import SnowflakeWarehouse
from warehouse.snowflake.settings import SnowflakeSettings

pytestmark = pytest.mark.conformance


@pytest.mark.parametrize("granularity", ["transaction", "every_change"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_snowflake_history_matches_the_references_in_any_batches(
    fakesnow_server: dict[str, Any],
    granularity: Granularity,
    case: tuple[Scenario, list[list[ChangeEvent]], tuple[str, ...] | None],
) -> None:
    """The same on Snowflake (fakesnow's server, the real connector), a fresh schema per
    example."""
    schema = f"P_{uuid.uuid4().hex[:12].upper()}"
    settings_ = SnowflakeSettings.from_fakesnow(fakesnow_server, database="PROPS", schema=schema)
    with snowflake.connector.connect(**settings_.connect_kwargs("setup", None)) as conn:
        conn.cursor().execute('CREATE DATABASE IF NOT EXISTS "PROPS"')
    with tempfile.TemporaryDirectory() as tmp:
        wh = SnowflakeWarehouse(settings_, tmpdir=Path(tmp))
        try:
            check_end_to_end(wh, target(granularity, case[2]), case, granularity)
        finally:
            wh.close()
