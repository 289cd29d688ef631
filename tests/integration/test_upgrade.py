"""Upgrading a warehouse in place (issue 19): a warehouse written by the release before the
two-part position (main at 02218a6, its `cdc`, `warehouse`, `blocks` and `flows` packages kept
in tests/fixtures/upgrade/main-02218a6.tar.gz and run from there in a subprocess), then the
current code on the same warehouse, the same topics and the same consumer group.

The old release stores the change LSN alone (`_cdc_lsn`); the current one adds the commit part
(`_cdc_commit_lsn`) to every table and delete-marker table with ADD COLUMN on its first batch.
Rows written before keep NULL there, which the position guard reads as "commit part unknown":
it compares change LSNs, as the old release did."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from stack_support import commit_across_a_snapshot, engine_warehouse, stored

from cdc.local.pipeline import history_reports

if TYPE_CHECKING := False:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

OLD_RELEASE = Path(__file__).parents[1] / "fixtures" / "upgrade" / "main-02218a6.tar.gz"
TABLES = ("plain", "soft", "hist")
CONFIG_TABLES: list[str | dict[str, Any]] = [
    {"name": "public.plain"},
    {"name": "public.soft", "soft_delete": True},
    {"name": "public.hist", "mode": "scd2"},
]
DDL = """
CREATE TABLE {t} (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL, note text);
INSERT INTO {t} SELECT g, 'item-' || g, g % 17, repeat('n', g % 7) FROM generate_series(1, 300) g;
"""


def old_release(tmp: Path) -> Path:
    """The old release's packages, extracted under ``tmp``."""
    root = tmp / "old-release"
    with tarfile.open(OLD_RELEASE) as tar:
        tar.extractall(root, filter="data")
    return root


def run_old(p: Pipeline, root: Path) -> str:
    """``cdc run --until-caught-up`` of the old release on the pipeline's config."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    probe = subprocess.run(
        [sys.executable, "-c", "import cdc, warehouse; print(cdc.__file__, warehouse.__file__)"],
        env=env, cwd=p.workdir, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert probe.stdout.count(str(root)) == 2, probe.stdout  # the old code, not this tree's
    p.wait_published()
    done = subprocess.run(
        [sys.executable, "-m", "cdc", "run", "--until-caught-up", "-c", "cdc.yaml"],
        env=env, cwd=p.workdir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def sql_all(p: Pipeline, *statements: str) -> None:
    for table in TABLES:
        for statement in statements:
            p.sql(statement.format(t=table))


@pytest.mark.parametrize("engine", ["duckdb", "snowflake"])
def test_a_warehouse_written_by_the_previous_release_upgrades_in_place(
    pipeline: Pipeline, engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    p = pipeline
    section = engine_warehouse(p, engine, request)
    for table in TABLES:
        p.sql(DDL.format(t=table))
    config = p.configure(CONFIG_TABLES, warehouse=section)
    p.start_debezium()

    # ---- the previous release: snapshot, then changes, hard and soft deletes, history ------
    root = old_release(tmp_path)
    sql_all(
        p,
        "UPDATE {t} SET qty = qty + 100 WHERE id % 10 = 0",
        "DELETE FROM {t} WHERE id BETWEEN 280 AND 290",
        "INSERT INTO {t} VALUES (1001, 'new', 1, NULL)",
    )
    run_old(p, root)
    p.assert_equal_to_source(f" (written by the previous release, {engine})")
    for table in TABLES:
        assert "_cdc_commit_lsn" not in stored(config, table)[0], table  # the old layout

    # ---- the current release on the same warehouse ------------------------------------------
    sql_all(
        p,
        "UPDATE {t} SET name = name || '+' WHERE id % 10 = 0 OR id = 1001",
        "DELETE FROM {t} WHERE id BETWEEN 1 AND 5",
        "INSERT INTO {t} VALUES (282, 'back', 282, 'was deleted by the old release')",
    )
    stats = p.replicate_until_caught_up()
    assert stats.dead_letters == 0 and not stats.parked, stats
    p.assert_equal_to_source(f" (after the upgrade, {engine})")

    # the commit part: NULL in rows the old release wrote and nothing changed since, set in
    # every row the current release wrote
    for table in TABLES:
        rows = stored(config, table)[1]
        old = [r["_cdc_commit_lsn"] for r in rows if r["id"] == 7]
        assert old == [None], (table, old)  # written by the old release, unchanged since
        live = [r for r in rows if r["id"] in (282, 1001) and r.get("is_current", True)
                and not r.get("_cdc_deleted")]  # fmt: skip
        assert len(live) == 2, (table, live)
        assert all(r["_cdc_commit_lsn"] is not None for r in live), (table, live)

    # the open-transaction case on upgraded tables: the update and the delete win over reads
    commit_across_a_snapshot(p, config, TABLES)
    p.assert_equal_to_source(f" (after an incremental snapshot on upgraded tables, {engine})")
    reports = history_reports(config)
    assert all(r.ok for r in reports.values()), reports
