"""Issue 17, points 2-4, on the real chain, into DuckDB and Snowflake (fakesnow's server):
special values arrive and are either stored exactly or quarantined with a named reason; a
column override then stores them exactly. Never NULL in place of a value, never rounded.

- ``numeric`` NaN and ±Infinity: Debezium's ``precise`` mode sent NULL (point 2); in
  ``string`` mode they arrive, and a DECIMAL column can't hold them: quarantined, the key's
  later changes held behind, the other keys applied.
- ``timestamp 'infinity'``, ``timestamptz '-infinity'``, ``date 'infinity'`` and BC values
  dead-lettered the row (point 3): exact on DuckDB; on Snowflake (no infinity, years 1-9999)
  quarantined with the reason.
- An unconstrained numeric wider than DECIMAL(38,10) dead-lettered the row (point 4):
  quarantined, and exact with a ``text`` override.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from stack_support import snowflake_warehouse_section

from cdc.local.pipeline import ReplicatorThread, compare_all, write_stack_config
from cdc.runtime import open_warehouse

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE readings (
    id int PRIMARY KEY, reading numeric, at timestamp, at_tz timestamptz, day date, note text
);
INSERT INTO readings VALUES
    (1, 1.50, '2020-01-01 12:00:00.000001', '2020-01-01 00:00+00', '2020-01-01', 'plain'),
    (2, 'NaN', 'infinity', '-infinity', '0044-03-15 BC', 'specials in the snapshot'),
    (3, 123456789012345678901234567890.5, '0001-01-01 00:00:00 BC', '2020-01-01 00:00+00',
        'infinity', 'too wide'),
    (6, 98765432109876543210987654321098765.4321, NULL, NULL, NULL, 'too wide, stays');
"""
STREAM = """
INSERT INTO readings VALUES
    (4, '-Infinity', '-infinity', 'infinity', '-infinity', 'streamed specials'),
    (5, 0.0000000001, '1999-12-31 23:59:59', '1999-12-31 23:59:59+00', '1999-12-31', 'fits');
UPDATE readings SET note = 'still NaN: quarantined too' WHERE id = 2;
UPDATE readings SET reading = 7, note = 'fits, but waits behind key 3' WHERE id = 3;
UPDATE readings SET note = 'a later change of a clean key' WHERE id = 1;
"""
SPECIAL_COLUMNS = ("reading", "at", "at_tz", "day")


def _warehouse(
    pipeline: Pipeline, engine: str, fakesnow: dict[str, Any] | None, suffix: str
) -> dict[str, Any]:
    if engine == "duckdb":
        return {"type": "duckdb", "path": str(pipeline.workdir / f"w{suffix}.duckdb")}
    assert fakesnow is not None
    return snowflake_warehouse_section(fakesnow, f"CDC_{pipeline.name.upper()}{suffix}")


@pytest.mark.parametrize("engine", ["duckdb", "snowflake"])
def test_special_values_are_stored_exactly_or_quarantined_with_the_reason(
    pipeline: Pipeline, engine: str, request: pytest.FixtureRequest
) -> None:
    fakesnow = request.getfixturevalue("fakesnow_server") if engine == "snowflake" else None
    pipeline.sql(DDL)
    config = pipeline.configure(
        ["public.readings"], warehouse=_warehouse(pipeline, engine, fakesnow, "a")
    )
    pipeline.start_debezium()
    pipeline.wait_published()
    pipeline.sql(STREAM)
    stats = pipeline.replicate_until_caught_up()
    assert stats.dead_letters == 0 and not stats.parked

    warehouse = open_warehouse(config)
    try:
        quarantined = warehouse.list_quarantine("readings")
    finally:
        warehouse.close()
    by_key: dict[str, list[str]] = {}
    for change in quarantined:
        by_key.setdefault(change.row.key, []).extend(change.row.checks)
    # NaN, ±Infinity and the too-wide numeric can't be held by DECIMAL(38,10) anywhere
    expected = {"[2]", "[3]", "[4]", "[6]"}
    assert set(by_key) == expected, by_key
    assert any("'reading'" in c and "NaN" in c and "type: text" in c for c in by_key["[2]"])
    assert any("'reading'" in c and "-Infinity" in c for c in by_key["[4]"])
    assert any("'reading'" in c and "decimal(38,10)" in c for c in by_key["[3]"])
    if engine == "snowflake":  # and Snowflake has no infinity and no year 44 BC
        assert any("'at'" in c and "infinity" in c for c in by_key["[2]"])
        assert any("'day'" in c and "44 BC" in c for c in by_key["[2]"])
    # key 3's later change fits (on DuckDB), yet waits behind its quarantined one; key 1's
    # applied. On Snowflake the change still holds a BC timestamp: quarantined itself.
    held = [c.row for c in quarantined if c.row.reason == "held"]
    assert [r.key for r in held] == (["[3]"] if engine == "duckdb" else [])
    if engine == "snowflake":
        assert [c.row.reason for c in quarantined if c.row.key == "[3]"] == ["violation"] * 2
    assert [c.row.reason for c in quarantined if c.row.key == "[2]"] == ["violation"] * 2
    for diff in compare_all(config, pipeline.url, skip_quarantined=True):
        assert diff.diffs == 0 and diff.excluded == 4, diff.describe()

    # the same source with the columns stored as text: every value exact, nothing quarantined
    overrides = {name: {"type": "text"} for name in SPECIAL_COLUMNS}
    if engine == "duckdb":  # DuckDB holds infinity and BC values: only the numeric needs it
        overrides = {"reading": {"type": "text"}}
    text_config = write_stack_config(
        pipeline.workdir / "cdc-text.yaml",
        pipeline.stack,
        [{"name": "public.readings", "columns": overrides}],
        warehouse=_warehouse(pipeline, engine, fakesnow, "b"),
        group_id=f"{pipeline.name}-text",
        topic_prefix=pipeline.name,
        slot_name=f"{pipeline.name}_slot",
        database=pipeline.database,
    )
    again = ReplicatorThread(text_config).start().finish()
    assert again.quarantined == 0 and again.dead_letters == 0 and not again.parked
    for diff in compare_all(text_config, pipeline.url):
        assert diff.diffs == 0 and diff.source_rows == 6, diff.describe()
    warehouse = open_warehouse(text_config)
    try:
        assert warehouse.list_quarantine("readings") == []
        rows = {r["id"]: r for r in warehouse.fetch_table(text_config.table_target(
            text_config.tables[0]))}  # fmt: skip
    finally:
        warehouse.close()
    assert rows[2]["reading"] == "NaN" and rows[4]["reading"] == "-Infinity"
    assert rows[3]["reading"] == "7"
    assert rows[6]["reading"] == "98765432109876543210987654321098765.4321"
    assert rows[1]["reading"] == "1.50"  # PostgreSQL's text: its scale kept
    if engine == "snowflake":
        assert rows[2]["at"] == "infinity" and rows[2]["day"] == "0044-03-15 BC"
        assert rows[4]["at_tz"] == "infinity"
