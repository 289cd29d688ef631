"""`cdc reconcile` over the values the decoder carries beyond the usual ranges, on the real
chain (PostgreSQL -> Debezium -> broker -> consumer -> DuckDB, and Snowflake on fakesnow):
infinite, BC and far dates and timestamps, 24:00:00, money, bit(n), geometric, range,
composite, tsquery and pg_lsn values (stored as text), numerics wider than DECIMAL(38,10) and
NaN (quarantined), and column overrides (``text`` holding NaN/±Infinity and infinite/BC
timestamps, ``decimal(p,s)``). A table the warehouse holds exactly reconciles with no
difference (quarantined keys left out and counted); damage is found exactly, repaired, and a
re-run is clean."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
import snowflake.connector
from stack_support import snowflake_warehouse_section

from cdc.config import Config
from cdc.reconcile.run import ReconcileSettings, reconcile

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

FAST = ReconcileSettings(leaf_rows=4, fanout=4, lag_timeout=30)

DDL = """
CREATE TYPE pair AS (a int, b text);
CREATE TABLE odd (
    id int PRIMARY KEY, d date, ts timestamp, tstz timestamptz, t time,
    n numeric, n_text numeric, tstz_text timestamptz, d_text date, n_dec numeric,
    m money, bits bit(5), bx box, pt point, r int4range, c pair, q tsquery, lsn pg_lsn
)
"""
COLUMNS = {
    "n_text": {"type": "text"},
    "tstz_text": {"type": "text"},
    "d_text": {"type": "text"},
    "n_dec": {"type": "decimal(12,3)"},
}
# key: (d, ts, tstz, t, n, n_text, tstz_text, d_text, n_dec, m, bits, bx, pt, r, c, q, lsn)
ROWS = """
INSERT INTO odd VALUES
 (1, '2024-02-29', '2024-02-29 12:00:00.5', '2024-02-29 23:59:59.25+02', '12:34:56.789',
  12.5, 1.50, '2024-02-29 12:00:00+02', '1999-12-31', 1.5, '$1,234.56', B'10101',
  '((1,1),(0,0))', '(1.5,-2)', '[1,5)', ROW(1, 'x y'), 'fat & rat', '0/16B3748'),
 (2, 'infinity', '-infinity', 'infinity', '00:00:00', 0, 'NaN', 'infinity', '-infinity',
  0, '-$0.01', B'00000', '((2.5,3),(-1,0.1))', '(0,0)', 'empty', ROW(NULL, ''), 'a | !b',
  '0/0'),
 (3, '0044-03-15', '0044-03-15 12:00:00.5 BC', '0001-01-01 00:00:00+00 BC', '23:59:59.999999',
  -1, 'Infinity', '0044-03-15 12:00:00+00 BC', '0044-03-15', -1.25, '$0.00', B'11111',
  '((0,0),(0,0))', '(1e+20,-0.000001)', '[-3,)', ROW(-7, 'a"b,c'), 'x:*', 'FF/FFFFFFFF'),
 (4, '12345-06-07', '20000-01-01 00:00:00', '99999-12-31 23:59:59+00', '24:00:00',
  0.1, '-Infinity', '2024-01-01 00:00:00.123456+00', '2024-01-01', 99999.999,
  '-$92,233,720,368,547,758.08', B'01010', '((1,2),(3,4))', '(-0,1)', '(,10]', ROW(0, NULL),
  'w', '1/1'),
 (5, NULL, NULL, NULL, '24:00:00', NULL, 123456789012345678901234567890123456789.0123456789012,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (6, '2000-01-01', '2000-01-01 00:00:00', '2000-01-01 00:00:00+00', '00:00:01', 'NaN', 1,
  NULL, NULL, 1, '$1.00', B'00001', NULL, NULL, NULL, NULL, NULL, NULL),
 (7, '2000-01-02', NULL, NULL, NULL, 12345678901234567890123456789012345678901234567890.5, 2,
  NULL, NULL, 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (8, '2000-01-03', '2000-01-03 00:00:00', NULL, '00:00:02', 3, 3, NULL, '2000-01-03', 3.25,
  '$3.00', B'00011', '((3,3),(0,0))', '(3,3)', '[3,4)', ROW(3, '3'), '3', '0/3')
"""
STREAMED = "INSERT INTO odd SELECT id + 100, d, ts, tstz, t, n, n_text, tstz_text, d_text, n_dec, m, bits, bx, pt, r, c, q, lsn FROM odd"  # noqa: E501
UPDATES = (
    "UPDATE odd SET n_text = 'NaN', d = '1900-01-01', m = '$5.00' WHERE id = 101;"
    "UPDATE odd SET d = '0001-01-01 BC', tstz = '-infinity' WHERE id = 102;"
    # BC dates streamed only: a snapshot read of one lands as the same date AD (upstream)
    "UPDATE odd SET d = '0044-03-15 BC', d_text = '0044-03-15 BC' WHERE id = 103"
)
# keys with a value the warehouse can't hold (quarantined, left out by reconcile): n NaN or
# wider than DECIMAL(38,10) everywhere; infinity, BC, years after 9999 and 24:00:00 on Snowflake
UNFIT = {"duckdb": {6, 7}, "snowflake": {2, 3, 4, 5, 6, 7}}


def _duckdb_damage(pipeline: Pipeline) -> Callable[[str], None]:
    def run(statement: str) -> None:
        con = duckdb.connect(str(pipeline.workdir / "warehouse.duckdb"))
        try:
            con.execute(statement)
        finally:
            con.close()

    return run


def _snowflake_damage(config: Config, server: dict[str, Any]) -> Callable[[str], None]:
    settings = config.warehouse
    assert settings.type == "snowflake"

    def run(statement: str) -> None:
        with snowflake.connector.connect(
            **server, database=settings.database, schema=settings.schema_name
        ) as conn:
            conn.cursor().execute(statement)

    return run


def _configure(pipeline: Pipeline, engine: str, request: pytest.FixtureRequest) -> Config:
    extra: dict[str, Any] = {}
    if engine == "snowflake":
        server = request.getfixturevalue("fakesnow_server")
        extra["warehouse"] = snowflake_warehouse_section(server, f"CDC_{pipeline.name.upper()}")
    return pipeline.configure([{"name": "public.odd", "columns": COLUMNS}], **extra)


@pytest.mark.parametrize("engine", ["duckdb", "snowflake"])
def test_edge_values_reconcile_clean_and_damage_is_found_and_repaired(
    pipeline: Pipeline, engine: str, request: pytest.FixtureRequest
) -> None:
    pipeline.sql(DDL)
    pipeline.sql(ROWS)
    config = _configure(pipeline, engine, request)
    pipeline.start_debezium()
    pipeline.wait_published()  # the rows above came through the snapshot; these stream
    pipeline.sql(STREAMED)
    pipeline.sql(UPDATES)
    pipeline.replicate_until_caught_up()

    unfit = UNFIT[engine] | {k + 100 for k in UNFIT[engine]}
    clean = reconcile(config, settings=FAST)
    (table,) = clean.tables
    assert table.error is None, table.error
    assert (table.missing, table.extra, table.different) == ([], [], []), clean.to_json()
    assert table.status == "ok" and table.excluded == len(unfit), clean.to_json()
    assert table.source_rows == 16 and table.warehouse_rows == 16 - len(unfit)

    name = config.table_target(config.tables[0]).name
    damage = (
        _duckdb_damage(pipeline)
        if engine == "duckdb"
        else _snowflake_damage(config, request.getfixturevalue("fakesnow_server"))
    )
    damage(f'UPDATE "{name}" SET "n_text" = \'Infinity\' WHERE "id" = 1')  # text override
    damage(f'UPDATE "{name}" SET "bx" = \'(2,2),(0,0)\' WHERE "id" = 101')  # box as text
    damage(f'UPDATE "{name}" SET "n_dec" = 3.251 WHERE "id" = 108')  # decimal override
    damage(f'UPDATE "{name}" SET "m" = 3.01 WHERE "id" = 8')  # money
    different, missing = {1, 101, 108, 8}, set[int]()
    if engine == "duckdb":  # infinite and BC values, held by DuckDB only
        damage(f'UPDATE "{name}" SET "d" = \'-infinity\' WHERE "id" = 2')
        damage(f'UPDATE "{name}" SET "ts" = \'0044-03-15 (BC) 12:00:00.25\' WHERE "id" = 3')
        damage(f'UPDATE "{name}" SET "t" = \'23:59:59\' WHERE "id" = 5')  # was 24:00
        damage(f'DELETE FROM "{name}" WHERE "id" = 103')
        different, missing = different | {2, 3, 5}, {103}

    found = reconcile(config, settings=FAST)
    (table,) = found.tables
    assert table.error is None, table.error
    assert {k for k, *_ in table.different} == {(k,) for k in different}, found.to_json()
    assert set(table.missing) == {(k,) for k in missing} and table.extra == []
    assert table.excluded == len(unfit)

    repaired = reconcile(config, repair=True, settings=FAST)
    (table,) = repaired.tables
    assert table.repaired == len(different | missing) and table.remaining == 0, repaired.to_json()

    rerun = reconcile(config, settings=FAST)
    (table,) = rerun.tables
    assert table.status == "ok" and table.diffs == 0, rerun.to_json()
    assert table.excluded == len(unfit)
