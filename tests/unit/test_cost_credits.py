"""Snowflake credits attributed per table from query-history rows through the JSON query tag
(cdc.costs.credits), on sample rows in QUERY_HISTORY's shape (fakesnow has no ACCOUNT_USAGE)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdc.costs.credits import (
    NO_TABLE,
    UNATTRIBUTED,
    QueryRecord,
    attribute,
    credits_per_hour,
    owner,
)
from warehouse.snowflake.credits import query_history_sql
from warehouse.snowflake.settings import SnowflakeSettings

SAMPLE = Path(__file__).parent / "fixtures" / "snowflake" / "query_history_sample.json"


def sample() -> tuple[str, list[QueryRecord]]:
    doc = json.loads(SAMPLE.read_text())
    return doc["app"], [QueryRecord.from_row(r) for r in doc["rows"]]


@pytest.mark.parametrize(
    ("size", "rate"),
    [("X-Small", 1), ("XSMALL", 1), ("Small", 2), ("Medium", 4), ("Large", 8),
     ("X-Large", 16), ("2X-Large", 32), ("XXLarge", 32), ("3X-Large", 64), ("4X-Large", 128),
     ("5X-Large", 256), ("6X-Large", 512), ("6x_large", 512), ("Huge", None), (None, None)],
)  # fmt: skip
def test_credits_per_hour_follow_the_warehouse_size(size: str | None, rate: int | None) -> None:
    assert credits_per_hour(size) == rate


def test_sample_rows_are_attributed_to_job_and_table() -> None:
    app, records = sample()
    got = attribute(records, app)
    summary = {
        k: (u.queries, round(u.seconds, 3), round(u.credits, 6)) for k, u in got.by_table.items()
    }
    assert summary == {
        # 2 x 30 min on X-Small (1 credit/h) = 1 credit; the cloud-services query adds none
        ("apply", "orders"): (3, 3600.12, 1.0),
        ("apply", "customers"): (1, 900.0, 1.0),  # 15 min on Medium (4/h)
        ("snapshot", "customers"): (1, 450.0, 1.0),  # 7.5 min on Large (8/h)
        ("apply", NO_TABLE): (1, 36.0, 0.01),  # our statement on no table (bookkeeping)
        ("reconcile", "orders"): (1, 112.5, 1.0),  # 2X-Large: 32/h
        ("tier", "orders"): (1, 60.0, 0.0),  # a size we don't know: no credits, unpriced
        # another app's tag (dbt, Small 1 h = 2), plain text (Small 30 min = 1), empty
        # (X-Small 6 min = 0.1) and JSON that isn't an object (6X-Large 7.2 s = 1.024)
        UNATTRIBUTED: (4, 5767.2, 4.124),
    }
    assert got.unpriced == 1
    assert got.total_credits == pytest.approx(8.134)
    assert got.table_credits() == pytest.approx(
        {"orders": 2.0, "customers": 2.0, NO_TABLE: 0.01, "unattributed": 4.124}
    )


def test_the_adapters_own_tag_is_recognised_and_others_are_not() -> None:
    settings = SnowflakeSettings(account="a", user="u", password="p", database="d", schema="s")
    assert owner(settings.query_tag("apply", "orders"), "cdc-replicator") == ("apply", "orders")
    assert owner(settings.query_tag("snapshot", None), "cdc-replicator") == ("snapshot", NO_TABLE)
    assert owner(settings.query_tag("apply", "orders"), "other-app") is None
    for foreign in (None, "", "{", '"text"', '{"app": "cdc-replicator"}', "[]"):
        assert owner(foreign, "cdc-replicator") is None


def test_the_query_history_query_reads_the_account_usage_view_of_the_current_user() -> None:
    text = query_history_sql().sql(dialect="snowflake")
    assert "FROM SNOWFLAKE.ACCOUNT_USAGE.QUERY_HISTORY" in text
    assert "START_TIME >= CAST(? AS" in text  # the period start is bound, never in the text
    assert "USER_NAME = CURRENT_USER()" in text
    for column in ("QUERY_TAG", "WAREHOUSE_SIZE", "EXECUTION_TIME"):
        assert column in text
