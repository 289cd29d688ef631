"""A column dropped at the source on the real chain: PostgreSQL (``ALTER TABLE ... DROP
COLUMN``) -> Debezium -> broker -> consumer -> warehouse, on DuckDB and on Snowflake (fakesnow's
server, the real connector), with each ``tables[].on_column_drop`` policy in mirror and scd2
tables.

Six tables get the same changes: rows replicated (snapshot, then streamed updates and a
delete), then ``DROP COLUMN legacy``, then updates and an insert, caught up; then a second
consumer run (a restart) with more changes. Expected:

- ``keep``: the column stays; rows updated after the drop keep their last value, the new row has
  NULL; ``cdc status --json`` lists ``legacy`` under the table's ``dropped_columns``;
- ``null``: the live rows (mirror, soft delete: rows not deleted; scd2: the current versions)
  have NULL there; the soft-deleted row and the closed versions keep their values; the restart
  writes nothing; status lists the column (it is still there);
- ``drop``: the warehouse table has no ``legacy`` column (scd2: the ``<table>_current`` view
  reads without it); status lists nothing.

Every table's live rows equal the source (its columns) throughout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from stack_support import engine_warehouse, stored

from cdc.config import Config
from cdc.consumer.settings import RunStats
from cdc.runtime import open_warehouse

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

DDL = "CREATE TABLE {t} (id int PRIMARY KEY, name text NOT NULL, legacy text, n int NOT NULL)"
# table -> (mode, soft_delete, on_column_drop)
TABLES: dict[str, tuple[str, bool, str]] = {
    "kept": ("mirror", False, "keep"),
    "nulled": ("mirror", True, "null"),
    "dropped": ("mirror", False, "drop"),
    "hist_kept": ("scd2", False, "keep"),
    "hist_nulled": ("scd2", False, "null"),
    "hist_dropped": ("scd2", False, "drop"),
}


def entry(name: str) -> dict[str, Any]:
    mode, soft, policy = TABLES[name]
    out: dict[str, Any] = {"name": f"public.{name}", "mode": mode, "on_column_drop": policy}
    return out | ({"soft_delete": True} if soft else {})


def everywhere(p: Pipeline, statement: str) -> None:
    for t in TABLES:
        p.sql(statement.format(t=t))


def replicate(p: Pipeline) -> RunStats:
    stats = p.replicate_until_caught_up()
    assert stats.dead_letters == 0 and not stats.parked, stats
    return stats


def legacy(config: Config, table: str) -> list[tuple[int, Any, bool]]:
    """(id, legacy, live) of every stored row / version, in key and position order; live: not
    soft-deleted (mirror), current (scd2)."""
    _, rows = stored(config, table)
    mode = TABLES[table][0]
    live = (lambda r: bool(r["is_current"])) if mode == "scd2" else (
        lambda r: not r.get("_cdc_deleted"))  # fmt: skip
    return [(r["id"], r["legacy"], live(r)) for r in rows]


def status(p: Pipeline) -> dict[str, list[str]]:
    """``cdc status --json``: the dropped columns of each table."""
    out = subprocess.run(
        [sys.executable, "-m", "cdc", "status", "-c", str(p.workdir / "cdc.yaml"), "--json"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    return {t["table"]: t["dropped_columns"] for t in doc["tables"]}


@pytest.mark.parametrize("engine", ["duckdb", "snowflake"])
def test_each_policy_handles_a_column_dropped_at_the_source(
    pipeline: Pipeline, engine: str, request: pytest.FixtureRequest
) -> None:
    p = pipeline
    section = engine_warehouse(p, engine, request)
    everywhere(p, DDL)
    everywhere(p, "INSERT INTO {t} SELECT g, 'n' || g, 'old ' || g, g FROM generate_series(1, 6) g")
    config = p.configure([entry(t) for t in TABLES], warehouse=section, linger_ms=50)
    assert config.warehouse.type == engine
    p.start_debezium()
    replicate(p)  # the snapshot
    everywhere(p, "UPDATE {t} SET legacy = 'new 5' WHERE id = 5")
    everywhere(p, "DELETE FROM {t} WHERE id = 6")
    replicate(p)
    assert status(p) == {t: [] for t in TABLES}  # nothing dropped yet

    # ---- the drop, then changes without the column -----------------------------------------
    everywhere(p, "ALTER TABLE {t} DROP COLUMN legacy")
    everywhere(p, "UPDATE {t} SET n = n + 100 WHERE id IN (1, 2)")
    everywhere(p, "INSERT INTO {t} VALUES (7, 'n7', 7)")
    replicate(p)
    p.assert_equal_to_source(" (after the drop)")

    # keep: nothing changed in place; the new row / versions have NULL
    assert legacy(config, "kept") == [
        (1, "old 1", True), (2, "old 2", True), (3, "old 3", True), (4, "old 4", True),
        (5, "new 5", True), (7, None, True),
    ]  # fmt: skip
    assert legacy(config, "hist_kept") == [
        (1, "old 1", False), (1, None, True), (2, "old 2", False), (2, None, True),
        (3, "old 3", True), (4, "old 4", True), (5, "old 5", False), (5, "new 5", True),
        (6, "old 6", False), (7, None, True),
    ]  # fmt: skip
    # null: the live rows / current versions lost it; deleted rows and closed versions not
    expected_nulled = [
        (1, None, True), (2, None, True), (3, None, True), (4, None, True), (5, None, True),
        (6, "old 6", False), (7, None, True),
    ]  # fmt: skip
    assert legacy(config, "nulled") == expected_nulled
    expected_history = [
        (1, None, False), (1, None, True),  # current at the drop, then updated
        (2, None, False), (2, None, True),
        (3, None, True), (4, None, True),
        (5, "old 5", False), (5, None, True),  # closed before the drop: kept
        (6, "old 6", False),  # deleted before the drop: kept
        (7, None, True),
    ]  # fmt: skip
    assert legacy(config, "hist_nulled") == expected_history
    # drop: gone from the tables, the current view reads
    for table in ("dropped", "hist_dropped"):
        names = stored(config, table)[0]
        assert "legacy" not in names and "n" in names, (table, names)
    names, current = stored(config, "hist_dropped_current")
    assert "legacy" not in names and [r["id"] for r in current] == [1, 2, 3, 4, 5, 7]
    warehouse = open_warehouse(config)
    try:
        for table in ("hist_kept", "hist_nulled", "hist_dropped"):
            report = warehouse.history_report(config.table_target(config.table(table)))
            assert report.ok, report
    finally:
        warehouse.close()
    assert status(p) == {
        "kept": ["legacy"], "nulled": ["legacy"], "dropped": [],
        "hist_kept": ["legacy"], "hist_nulled": ["legacy"], "hist_dropped": [],
    }  # fmt: skip

    # ---- a restart with more changes: the policies were applied once --------------------
    everywhere(p, "UPDATE {t} SET name = 'again' WHERE id IN (3, 7)")
    replicate(p)
    p.assert_equal_to_source(" (after the restart)")
    assert legacy(config, "nulled") == expected_nulled
    again = {3: [(3, None, False), (3, None, True)], 7: [(7, None, False), (7, None, True)]}
    assert legacy(config, "hist_nulled") == [
        w for v in expected_history for w in (again.pop(v[0], []) if v[0] in (3, 7) else [v])
    ]
    assert [r for r in legacy(config, "kept") if r[0] == 3] == [(3, "old 3", True)]
    assert "legacy" not in stored(config, "dropped")[0]
