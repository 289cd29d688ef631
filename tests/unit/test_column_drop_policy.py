"""``tables[].on_column_drop``: the setting's validation, and which warehouse columns count as
dropped at the source and the statements each policy runs (pure; the behaviour on the engines
is in tests/conformance/test_column_drop_contract.py, on the real chain in
tests/integration/test_column_drop.py)."""

from __future__ import annotations

import pytest

from cdc.config import ConfigError, parse_config
from warehouse import sql
from warehouse.base import MetadataColumns, TableTarget

HEAD = """\
source: {host: db, database: shop, user: u}
kafka: {bootstrap_servers: "k:9092"}
warehouse: {type: duckdb}
tables:
  - name: public.items
"""


def policy_of(line: str = "") -> str:
    config = parse_config(HEAD + line, file="cdc.yaml", env={})
    return config.table_target(config.tables[0]).on_column_drop


# ---- the setting -------------------------------------------------------------------------------


def test_the_default_keeps_dropped_columns() -> None:
    assert policy_of() == "keep"
    assert TableTarget("items").on_column_drop == "keep"


@pytest.mark.parametrize(
    ("written", "policy"),
    [("keep", "keep"), ("drop", "drop"), ("'null'", "null"), ("null", "null"), ("~", "null")],
)
def test_each_policy_reaches_the_target(written: str, policy: str) -> None:
    # YAML reads a bare null as no value: for this key it names the policy
    assert policy_of(f"    on_column_drop: {written}\n") == policy


def test_an_unknown_policy_is_an_error_naming_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(HEAD + "    mode: scd2\n    on_column_drop: delete\n", file="cdc.yaml", env={})
    assert str(info.value).splitlines() == [
        "cdc.yaml:7: tables[0].on_column_drop: Input should be 'keep', 'null' or 'drop' "
        "(got 'delete')"
    ]


# ---- which columns are dropped -----------------------------------------------------------------

META = ["_cdc_lsn", "_cdc_txid", "_cdc_op", "_cdc_source_ts", "_cdc_loaded_at", "_cdc_deleted"]


def test_dropped_columns_are_stored_data_columns_the_source_lacks_in_stored_order() -> None:
    stored = ["id", "legacy", "name", "Old Name", *META]
    assert sql.dropped_columns(stored, ["id", "name"], TableTarget("t")) == ["legacy", "Old Name"]
    assert sql.dropped_columns(stored, ["id", "name", "legacy", "Old Name"], TableTarget("t")) == []


def test_names_compare_ignoring_case_as_warehouse_names_do() -> None:
    assert sql.dropped_columns(["id", "Email"], ["id", "email"], TableTarget("t")) == []


def test_validity_columns_of_a_history_table_are_not_dropped_columns() -> None:
    stored = ["id", *META, "valid_from", "valid_to", "is_current"]
    assert sql.dropped_columns(stored, ["id"], TableTarget("t", mode="scd2")) == []
    # a mirror table with those names: they are data columns there
    assert sql.dropped_columns(stored, ["id"], TableTarget("t")) == [
        "valid_from", "valid_to", "is_current"
    ]  # fmt: skip


def test_metadata_columns_of_an_earlier_prefix_are_not_dropped_columns() -> None:
    """A table replicated under ``metadata_prefix: _cdc_`` keeps those columns after the prefix
    changed: the registry document recorded them as metadata, so no policy touches them."""
    renamed = TableTarget("t", metadata=MetadataColumns(*(n.replace("_cdc_", "_x_") for n in META)))
    registered = {"metadata": dict(zip(["lsn", "txid", "op", "source_ts", "loaded_at", "deleted"],
                                       META, strict=True)),
                  "scd2": {"valid_from": "vf", "valid_to": "vt", "is_current": "cur"}}  # fmt: skip
    stored = ["id", "gone", *META, "vf", "vt", "cur"]
    assert sql.dropped_columns(stored, ["id"], renamed, registered) == ["gone"]
    assert sql.dropped_columns(stored, ["id"], renamed) == ["gone", *META, "vf", "vt", "cur"]


# ---- the statements ----------------------------------------------------------------------------

REF = sql.TableRef("main", "t")


@pytest.mark.parametrize(
    ("target", "live"),
    [
        (TableTarget("t"), ""),
        (TableTarget("t", soft_delete=True), ' AND NOT COALESCE("_cdc_deleted", FALSE)'),
        (TableTarget("t", mode="scd2"), ' AND "is_current"'),
    ],
)
def test_null_sets_live_rows_that_still_hold_a_value(target: TableTarget, live: str) -> None:
    held = '(NOT "a" IS NULL OR NOT "b c" IS NULL)'
    update = sql.render(sql.null_columns(REF, ["a", "b c"], target))
    assert update == f'UPDATE "main"."t" SET "a" = NULL, "b c" = NULL WHERE {held}{live}'
    count = sql.render(sql.count_holding(REF, ["a", "b c"], target))
    assert count == f'SELECT COUNT(*) FROM "main"."t" WHERE {held}{live}'


@pytest.mark.parametrize("dialect", ["duckdb", "snowflake"])
def test_drop_is_idempotent_ddl_with_the_name_quoted(dialect: str) -> None:
    statement = sql.render(sql.drop_column(REF, 'we"ird'), dialect)
    assert statement == 'ALTER TABLE "main"."t" DROP COLUMN IF EXISTS "we""ird"'
