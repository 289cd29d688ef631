"""Any legal PostgreSQL name replicates (issue 17, point 5): a schema with a space, a table
with a double quote, columns with a dot, a space, mixed case, a reserved word, unicode and a
quote; plus a plain table whose Debezium topic name is the same as the odd table's (Debezium
replaces characters other than [A-Za-z0-9._-] by '_'), so the consumer must take the table
from each envelope. Snapshot, streamed insert/update/delete, `cdc reconcile` and
`cdc snapshot --method bulk` on the real chain, into DuckDB and into Snowflake (fakesnow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
import yaml
from stack_support import snowflake_warehouse_section

from cdc.config import load_config
from cdc.local.pipeline import compare_all
from cdc.model import TableId
from cdc.reconcile.run import ReconcileSettings, reconcile
from cdc.runtime import open_warehouse
from cdc.snapshot.bulk import BulkOptions, SnapshotError, bulk_snapshot
from cdc.snapshot.incremental import run_incremental

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

FAST = ReconcileSettings(leaf_rows=64, fanout=8, lag_timeout=30)
ODD = '"Sales Data"."Order""Items"'  # as cdc.yaml and the command line write it

DDL = """
CREATE SCHEMA "Sales Data";
CREATE TABLE "Sales Data"."Order""Items" (
    "Id" int PRIMARY KEY,
    "Mixed Col" text,
    "select" int,
    "a.b" numeric(12, 3),
    "ünï" text,
    "it""s" text
);
CREATE SCHEMA "Sales_Data";
CREATE TABLE "Sales_Data"."Order_Items" (id int PRIMARY KEY, v text);
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO "Sales Data"."Order""Items"
    SELECT g, 'm' || g, g * 2, g / 8.0, 'ü' || g, 'q"' || g FROM generate_series(1, 300) g;
INSERT INTO "Sales_Data"."Order_Items" SELECT g, 'o' || g FROM generate_series(1, 50) g;
INSERT INTO plain SELECT g, 'p' || g FROM generate_series(1, 50) g;
"""

CHANGES = """
INSERT INTO "Sales Data"."Order""Items" VALUES (1001, 'new', 1, 0.5, 'ñ', 'x"y');
UPDATE "Sales Data"."Order""Items" SET "Mixed Col" = 'changed', "select" = -1 WHERE "Id" <= 20;
DELETE FROM "Sales Data"."Order""Items" WHERE "Id" BETWEEN 21 AND 30;
INSERT INTO "Sales_Data"."Order_Items" VALUES (1001, 'shared topic');
UPDATE "Sales_Data"."Order_Items" SET v = 'u' WHERE id <= 5;
DELETE FROM "Sales_Data"."Order_Items" WHERE id = 6;
INSERT INTO plain VALUES (1001, 'new');
DELETE FROM plain WHERE id = 1;
"""


@pytest.mark.parametrize("warehouse", ["duckdb", "snowflake"])
def test_odd_names_replicate_reconcile_and_snapshot(
    pipeline: Pipeline, warehouse: str, request: pytest.FixtureRequest
) -> None:
    pipeline.sql(DDL)
    extra: dict[str, Any] = {}
    if warehouse == "snowflake":
        server = request.getfixturevalue("fakesnow_server")
        database = f"CDC_{pipeline.name.upper()}"
        extra["warehouse"] = snowflake_warehouse_section(server, database)
    config = pipeline.configure(
        [{"name": ODD}, {"schema": "Sales_Data", "table": "Order_Items"}, "plain"], **extra
    )
    odd, shared, _plain = config.tables
    assert odd.source == TableId("Sales Data", 'Order"Items') and odd.name == ODD
    assert odd.target_name == 'Order"Items'
    assert shared.source == TableId("Sales_Data", "Order_Items")
    # Debezium's sanitised topic names are equal: the envelope says which table it is
    assert (
        config.topic_for(odd)
        == config.topic_for(shared)
        == f"{pipeline.name}.Sales_Data.Order_Items"
    )

    pipeline.start_debezium()
    run = pipeline.replicate_until_caught_up()  # Debezium's initial snapshot
    assert run.dead_letters == 0 and not run.parked, run
    pipeline.assert_equal_to_source()

    pipeline.sql(CHANGES)
    run = pipeline.replicate_until_caught_up()
    assert run.dead_letters == 0 and not run.parked, run
    pipeline.assert_equal_to_source()

    report = reconcile(config, settings=FAST)
    assert [t.status for t in report.tables] == ["ok", "ok", "ok"], report.to_json()
    assert sum(t.left for t in report.tables) == 0

    wh = open_warehouse(config)
    try:
        (result,) = bulk_snapshot(config, wh, [ODD], BulkOptions(rows_per_chunk=100))
    finally:
        wh.close()
    assert result.rows == 291 and result.chunks >= 2
    pipeline.assert_equal_to_source()
    report = reconcile(config, [ODD], settings=FAST)
    assert [t.status for t in report.tables] == ["ok"], report.to_json()


INCREMENTAL_DDL = """
CREATE SCHEMA "Sales Data";
CREATE TABLE "Sales Data"."Order""Items" ("Id" int PRIMARY KEY, "Mixed Col" text, "a.b" int);
CREATE TABLE "x.y" (id int PRIMARY KEY, v text);
CREATE TABLE "a*" (id int PRIMARY KEY, v text);
CREATE TABLE "a+b" (id int PRIMARY KEY, v text);
CREATE TABLE "MiXed" (id int PRIMARY KEY, v text);
CREATE TABLE a (id int PRIMARY KEY, v text);
INSERT INTO "Sales Data"."Order""Items" SELECT g, 'm' || g, g FROM generate_series(1, 300) g;
INSERT INTO "x.y" SELECT g, 'x' || g FROM generate_series(1, 120) g;
INSERT INTO "a*" SELECT g, 's' || g FROM generate_series(1, 120) g;
INSERT INTO "a+b" SELECT g, 'a' || g FROM generate_series(1, 80) g;
INSERT INTO "MiXed" SELECT g, 'c' || g FROM generate_series(1, 30) g;
INSERT INTO a SELECT g, 'z' || g FROM generate_series(1, 40) g;
"""


def test_incremental_snapshot_of_odd_names_reads_exactly_those_tables(pipeline: Pipeline) -> None:
    """`snapshot_mode: no_data`, so only the incremental snapshot brings the old rows: of a
    table named `a*` (its raw `public.a*`, which Debezium reads as a regex, matches `public.a`
    and not itself), one with another regex character and one in mixed case. Exactly those
    tables are scanned (not `a`) and the warehouse equals the source. Tables Debezium can't
    carry through an incremental snapshot (a space and a quote: its stored offset doesn't
    parse and the connector stops; a dot: the events name schema `x` table `y`) are refused
    before any signal is written."""
    pipeline.sql(INCREMENTAL_DDL)
    names = ['"a*"', '"a+b"', '"MiXed"']
    config = pipeline.configure(
        [ODD, 'public."x.y"', *names, "a"],
        source_options={
            "snapshot_mode": "no_data",
            "debezium": {"incremental.snapshot.chunk.size": "50"},
        },
    )
    pipeline.start_debezium()
    pipeline.wait_published()
    # one streamed change per table: the warehouse tables exist before the snapshot
    for table in (ODD, '"x.y"', '"a*"', '"a+b"', '"MiXed"', "a"):
        key = '"Id"' if table == ODD else "id"
        pipeline.sql(f"UPDATE {table} SET {key} = -{key} WHERE {key} = 1")
    run = pipeline.replicate_until_caught_up()
    assert run.dead_letters == 0 and not run.parked, run

    for refused in (ODD, 'public."x.y"'):
        with pytest.raises(SnapshotError, match="bulk method") as error:
            run_incremental(config, [refused, *names], timeout=60)
        assert refused in str(error.value)
    assert pipeline.sql("SELECT count(*) FROM debezium_signal") == [(0,)]

    outcome = run_incremental(config, names, timeout=240)
    assert {t["table"]: (t["status"], t["rows"]) for t in outcome["tables"]} == {
        'public."a*"': ("SUCCEEDED", 120),
        'public."a+b"': ("SUCCEEDED", 80),
        "public.MiXed": ("SUCCEEDED", 30),
    }, outcome
    assert outcome["chunks"] >= 5
    run = pipeline.replicate_until_caught_up()
    assert run.dead_letters == 0 and not run.parked, run

    diffs = {d.name: d for d in compare_all(config, pipeline.url)}
    for name in ("a", 'Order"Items', "x.y"):  # not snapshotted: only the streamed row
        assert len(diffs.pop(name).missing) == diffs_source_rows(name) - 1
    bad = {name: d.describe() for name, d in diffs.items() if d.diffs}
    assert not bad, bad
    assert {name: d.source_rows for name, d in diffs.items()} == {
        "a*": 120,
        "a+b": 80,
        "MiXed": 30,
    }


def diffs_source_rows(name: str) -> int:
    return {"a": 40, 'Order"Items': 300, "x.y": 120}[name]


def _cdc(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args, "--config", str(config)],
        env={**os.environ, "COLUMNS": "250", "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=240,
    )


def _ok(*args: str, config: Path) -> str:
    proc = _cdc(*args, config=config)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"cdc {' '.join(args)} failed ({proc.returncode}):\n{out}"
    return proc.stdout


def test_cli_takes_quoted_names(pipeline: Pipeline) -> None:
    """`cdc status`, `cdc history`, `cdc tier run`, `cdc snapshot` and `cdc reconcile` as
    real processes, the table given on the command line in PostgreSQL's quoted form."""
    pipeline.sql(DDL)
    pipeline.configure(
        [
            {
                "name": ODD,
                "mode": "scd2",
                "tiering": {"hot": "1s", "warm": "2d", "retention": "3d"},
            },
            "plain",
        ]
    )
    path = pipeline.workdir / "cdc.yaml"
    document = yaml.safe_load(path.read_text())
    document["tiering"] = {"target": str(pipeline.workdir / "tiers")}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    pipeline.config = load_config(path)

    pipeline.start_debezium()
    pipeline.replicate_until_caught_up()
    for value, last in (("v2", 10), ("v3", 5)):  # two transactions: two versions
        pipeline.sql(
            'UPDATE "Sales Data"."Order""Items" SET "Mixed Col" = %s WHERE "Id" <= %s',
            (value, last),
        )
    run = pipeline.replicate_until_caught_up()
    assert run.dead_letters == 0 and not run.parked, run

    status = _ok("status", config=path)
    assert any(
        line.split("│")[1:3] == [' Order"Items ', " scd2   "] for line in status.splitlines()
    ), status

    history = _ok("history", ODD, "3", "--json", config=path)
    versions = [json.loads(line) for line in history.splitlines() if line.startswith("{")]
    assert [v["Mixed Col"] for v in versions] == ["m3", "v2", "v3"], history

    time.sleep(2)  # the replaced versions closed more than `hot` (1 s) ago
    tiered = _ok("tier", "run", ODD, "--json", config=path)
    # (structlog's "tier move committed" line goes to stdout before the JSON)
    (moved,) = json.loads(tiered.splitlines()[-1])
    assert (moved["table"], moved["to warm"]) == ('Order"Items', 15), tiered  # 10 + 5 closed
    assert list((pipeline.workdir / "tiers").rglob("*.parquet")), tiered
    # the closed versions left the warehouse table; the <table>_history view still has them
    history = _ok("history", ODD, "3", "--json", config=path)
    versions = [json.loads(line) for line in history.splitlines() if line.startswith("{")]
    assert [v["Mixed Col"] for v in versions] == ["v3"], history
    with duckdb.connect(str(pipeline.workdir / "warehouse.duckdb")) as con:
        rows = con.execute(
            'SELECT "Mixed Col" FROM "Order""Items_history" WHERE "Id" = 3 ORDER BY valid_from'
        ).fetchall()
    assert rows == [("m3",), ("v2",), ("v3",)], tiered

    snapshot = _ok("snapshot", ODD, "--rows-per-chunk", "100", "--json", config=path)
    (loaded,) = json.loads(snapshot)
    assert (loaded["table"], loaded["rows"]) == (ODD, 300), snapshot
    refused = _cdc("snapshot", ODD, "--method", "incremental", config=path)
    assert refused.returncode != 0 and "bulk method" in refused.stdout + refused.stderr

    report = json.loads(_ok("reconcile", ODD, "--json", config=path).splitlines()[-1])
    assert [(t["source_table"], t["status"]) for t in report["tables"]] == [(ODD, "ok")], report
    pipeline.assert_equal_to_source()
