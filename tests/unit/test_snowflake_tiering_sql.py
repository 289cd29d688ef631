"""The statements of the tier side of Snowflake's ``<table>_history`` view, as text.

fakesnow has no external stages, external tables or ``METADATA$`` columns, so these statements
never run in the tests: their text is checked here (identifiers quoted, names and values
never spliced unescaped, a configured stage name refused unless it is one), and the view's
SELECT parses as Snowflake SQL. Whether a real account accepts them is not proven here.
"""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp

from cdc.names import path_segment
from cdc.tiering.policy import file_path
from warehouse.base import TerminalWarehouseError
from warehouse.snowflake.types import number, time6, timestamp_ntz6, timestamp_tz6
from warehouse.sql import TableRef
from warehouse.sql.tier_views import (
    create_external_table,
    history_view_sql,
    refresh_external_table,
    stage_location,
    tier_pattern,
    tier_value,
)
from warehouse.types import DT

TIERS = TableRef("_CDC_S", "items__tiers")
FILES = TableRef("_CDC_S", "tier_files")
HOT = TableRef("S", "items")
VIEW = TableRef("S", "items_history")
COLUMNS = [
    ("id", number(19, 0)),
    ("doc", exp.DataType(this=DT.VARIANT)),
    ("tags", exp.DataType(this=DT.ARRAY)),
    ("at", time6()),
    ("local", timestamp_ntz6()),
    ("valid_to", timestamp_tz6()),
    ("raw", exp.DataType(this=DT.BINARY)),
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tier_stage", '@"TIER_STAGE"'),
        ("@tier_stage", '@"TIER_STAGE"'),
        ("my_db.sch.tier_stage", '@"MY_DB"."SCH"."TIER_STAGE"'),
        ('"Mixed Case".stg', '@"Mixed Case"."STG"'),
        ("  s$1  ", '@"S$1"'),
    ],
)
def test_stage_names_resolve_like_snowflake_and_are_quoted(name: str, expected: str) -> None:
    assert stage_location(name) == expected


@pytest.mark.parametrize(
    "name",
    ["", "a.b.c.d", "stg/path", "stg; DROP TABLE x", "'stg'", 'a."b', "1stage", "@", "a..b"],
)
def test_anything_but_a_stage_name_is_refused(name: str) -> None:
    with pytest.raises(TerminalWarehouseError, match="not a stage name"):
        stage_location(name)


def test_external_table_over_the_stage_root_with_the_tables_files_only() -> None:
    text = create_external_table(TIERS, "db.sch.tiers", "items")
    assert text == (
        'CREATE EXTERNAL TABLE IF NOT EXISTS "_CDC_S"."items__tiers" '
        'WITH LOCATION = @"DB"."SCH"."TIERS"/ AUTO_REFRESH = FALSE '
        "PATTERN = '.*(warm|cold)/items/month=[0-9]{4}-[0-9]{2}/[^/]+[.]parquet' "
        "FILE_FORMAT = (TYPE = PARQUET BINARY_AS_TEXT = FALSE USE_LOGICAL_TYPE = TRUE)"
    )
    assert refresh_external_table(TIERS) == 'ALTER EXTERNAL TABLE "_CDC_S"."items__tiers" REFRESH'


@pytest.mark.parametrize(
    "table", ["items", "odd name", "it's", 'q"uote', "a/b", "dots.and-dash", "ünï", "x\\y"]
)
def test_the_pattern_matches_the_tables_files_and_needs_no_escaping(table: str) -> None:
    pattern = tier_pattern(table)
    assert re.fullmatch(r"[A-Za-z0-9_.*()|/=\[\]{}\-^+]+", pattern), pattern
    for tier in ("warm", "cold"):  # the files' paths, as cdc.tiering.policy.file_path makes them
        path = file_path("prefix", tier, table, "2024-03", "hot_to_warm-0123456789abcdef")
        assert re.fullmatch(pattern, path)
    assert not re.fullmatch(pattern, f"warm/{path_segment(table)}/month=2024-03/x.csv")
    text = create_external_table(TIERS, "tiers", table)
    assert text.count("'") == 2  # the pattern is the only literal, and holds no quote


def test_columns_are_cast_from_the_files_values() -> None:
    assert tier_value("id", number(19, 0)) == "CAST(x.VALUE['id'] AS DECIMAL(19, 0))"
    assert tier_value("doc", COLUMNS[1][1]) == "PARSE_JSON(CAST(x.VALUE['doc'] AS VARCHAR))"
    assert tier_value("tags", COLUMNS[2][1]) == (
        "CAST(PARSE_JSON(CAST(x.VALUE['tags'] AS VARCHAR)) AS ARRAY)"
    )
    assert tier_value("valid_to", timestamp_tz6()) == (
        "CAST(x.VALUE['valid_to'] AS TIMESTAMPTZ(6))"
    )
    assert tier_value("it's", number(5, 0)) == "CAST(x.VALUE['it\\'s'] AS DECIMAL(5, 0))"


def test_the_view_is_the_hot_table_and_the_live_files() -> None:
    text = history_view_sql(VIEW, HOT, COLUMNS, table="items", tiers=TIERS, files=FILES)
    head = 'CREATE OR REPLACE VIEW "S"."items_history" AS '
    assert text.startswith(head)
    names = '"id", "doc", "tags", "at", "local", "valid_to", "raw"'
    assert f'SELECT {names} FROM "S"."items" UNION ALL SELECT ' in text
    assert text.endswith(
        'FROM "_CDC_S"."items__tiers" AS x WHERE EXISTS(SELECT 1 FROM "_CDC_S"."tier_files" '
        "AS f WHERE f.\"table_name\" = 'items' AND ENDSWITH(f.\"path\", '/' || "
        "x.METADATA$FILENAME))"
    )
    for name, dtype in COLUMNS:
        assert f'{tier_value(name, dtype)} AS "{name}"' in text
    # the SELECT parses as Snowflake SQL: two branches of the same columns
    select = sqlglot.parse_one(text[len(head) :], read="snowflake")
    assert isinstance(select, exp.Union)
    assert [e.alias_or_name for e in select.left.expressions] == [n for n, _ in COLUMNS]
    assert [e.alias_or_name for e in select.right.expressions] == [n for n, _ in COLUMNS]


def test_without_a_stage_the_view_is_the_hot_table_only() -> None:
    assert history_view_sql(VIEW, HOT, COLUMNS[:2], table="items") == (
        'CREATE OR REPLACE VIEW "S"."items_history" AS SELECT "id", "doc" FROM "S"."items"'
    )


def test_names_are_quoted_and_values_escaped() -> None:
    odd = TableRef('s"x', 'it\'s "t"')
    text = history_view_sql(odd, odd, [('c"1', number(5, 0))], table="it's",
                            tiers=odd, files=odd)  # fmt: skip
    assert '"s""x"."it\'s ""t"""' in text
    assert "'it\\'s'" in text  # the table name as a literal, escaped
    assert "x.VALUE['c\"1']" in text
