"""Names (issue 17, point 5): parsing cdc.yaml's table names, the canonical form, Debezium's
topic names and filters, warehouse collisions of tables and of columns."""

from __future__ import annotations

import textwrap

import pytest
from sample_data import T0_US, ev

from cdc.config import Config, ConfigError, parse_config
from cdc.consumer.batching import group_by_table
from cdc.model import (
    ChangeEvent,
    Column,
    ColumnType,
    Kind,
    Op,
    TableId,
    TableSchema,
)
from cdc.names import (
    BadNameError,
    display,
    include_regex,
    parse_table,
    path_segment,
    sanitize_topic,
    topic_name,
)
from cdc.runtime import replicator_settings
from cdc.source.connector import table_include_list
from warehouse.base import IncompatibleSchemaChangeError, TableBatch, TableTarget
from warehouse.duckdb.adapter import DuckDBWarehouse

BASE = """\
source: {host: db, database: shop, user: u, topic_prefix: cdc}
kafka: {bootstrap_servers: "k:9092"}
warehouse: {type: duckdb, path: ":memory:"}
tables:
"""


def load(tables: str) -> Config:
    return parse_config(BASE + textwrap.indent(textwrap.dedent(tables), "  "))


def errors(tables: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(tables)
    return [str(p) for p in e.value.problems]


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("orders", TableId("public", "orders")),
        ("sales.Orders", TableId("sales", "Orders")),  # unquoted: as written, case kept
        ('"Sales Data"."Order""Items"', TableId("Sales Data", 'Order"Items')),
        ('"a.b"', TableId("public", "a.b")),
        ('public."select"', TableId("public", "select")),
        ('"ünï"."Mixed Col"', TableId("ünï", "Mixed Col")),
        ('"x"""', TableId("public", 'x"')),
    ],
)
def test_names_parse_and_display_round_trips(text: str, table: TableId) -> None:
    assert parse_table(text) == table
    assert parse_table(display(table)) == table


def test_canonical_form_quotes_only_what_needs_it() -> None:
    assert display(TableId("public", "orders")) == "public.orders"
    assert display(TableId("Sales Data", 'Order"Items')) == '"Sales Data"."Order""Items"'
    assert display(TableId("public", "a.b")) == 'public."a.b"'


@pytest.mark.parametrize(
    "text",
    ["a.b.c", "Sales Data.x", '"open', '"a"b', "", '""', "a..b", "x" * 64, '"' + "é" * 32 + '"'],
)
def test_unreadable_names_are_refused(text: str) -> None:
    with pytest.raises(BadNameError):
        parse_table(text)


def test_config_accepts_quoted_names_and_schema_table_keys() -> None:
    config = load(
        """\
        - name: '"Sales Data"."Order""Items"'
        - schema: Sales Data
          table: a.b
        - table: select
          target: Select Stuff
        - name: plain
        """
    )
    odd, dotted, reserved, plain = config.tables
    assert odd.source == TableId("Sales Data", 'Order"Items')
    assert odd.name == '"Sales Data"."Order""Items"' and odd.target_name == 'Order"Items'
    assert dotted.source == TableId("Sales Data", "a.b") and dotted.name == '"Sales Data"."a.b"'
    assert reserved.source == TableId("public", "select")
    assert reserved.target_name == "Select Stuff"
    assert plain.name == "public.plain"
    # any spelling of a configured table finds it (the command lines' TABLE arguments)
    assert config.table('"Sales Data"."Order""Items"') is odd
    assert config.table('"public"."plain"') is plain
    assert config.table(TableId("Sales Data", "a.b")) is dotted
    with pytest.raises(KeyError, match="not configured"):
        config.table('"Sales Data"."a"')


def test_the_old_plain_only_rule_is_gone_but_bad_names_are_still_refused() -> None:
    assert errors("- name: Sales Data.x\n") == [
        "cdc.yaml:5: tables[0].name: 'Sales Data' in 'Sales Data.x' is not a plain name (a "
        'letter or _, then letters, digits, _ or $): quote it, e.g. "Sales Data"."Order '
        'Items" (a " inside is written twice), or use the keys schema: and table: '
        "(got 'Sales Data.x')"
    ]
    assert errors("- name: x\n  table: y\n")[0].endswith(
        "give either `name` or `schema` + `table`, not both"
    )


def test_two_tables_with_one_warehouse_name_are_an_error_naming_both_lines() -> None:
    assert errors(
        """\
        - name: Foo
        - name: other.foo
        """
    ) == [
        "cdc.yaml:6: tables[1].name: warehouse table 'foo' is already the target of "
        "tables[0] at line 5"
    ]
    problems = errors(
        """\
        - name: '"Sales Data"."A b"'
        - schema: x
          table: y
          target: a B
        """
    )
    assert problems == [
        "cdc.yaml:8: tables[1].target: warehouse table 'a B' is already the target of "
        "tables[0] at line 5"
    ]
    # the same table written two ways is a duplicate
    assert "duplicate table 'public.t'" in errors('- name: t\n- name: \'"public"."t"\'\n')[0]


def test_topic_names_are_sanitised_like_debezium() -> None:
    assert topic_name("cdc", TableId("Sales Data", 'Order"Items')) == "cdc.Sales_Data.Order_Items"
    assert topic_name("cdc", TableId("public", "a.b")) == "cdc.public.a.b"
    assert sanitize_topic("ünï-x_y.Z9") == "_n_-x_y.Z9"
    assert sanitize_topic("\U0001f600") == "__"  # one character, two UTF-16 units in Java
    config = load(
        """\
        - name: '"Sales Data"."Order""Items"'
        - name: Sales_Data.Order_Items
        """
    )
    odd, plain = config.tables
    assert config.topic_for(odd) == config.topic_for(plain) == "cdc.Sales_Data.Order_Items"
    settings = replicator_settings(config)
    assert settings.topics == {"cdc.Sales_Data.Order_Items": ('Order"Items', "Order_Items")}
    assert set(settings.targets) == {odd.source, plain.source}


def test_include_list_matches_exactly_the_raw_names() -> None:
    regex = include_regex(TableId("Sales Data", 'Order"Items,x'))
    assert regex == r"(?-i:Sales\x{20}Data\.Order\x{22}Items\x{2C}x)"
    assert "," not in regex and " " not in regex
    config = load('- name: public.orders\n- name: \'"a b"."c"\'\n')
    assert table_include_list(config) == r"(?-i:public\.orders),(?-i:a\x{20}b\.c)"


def test_tier_folders_hold_any_name() -> None:
    assert path_segment("orders") == "orders"
    assert path_segment('a/b="c d"') == "a%2Fb%3D%22c%20d%22"
    assert path_segment("..") == "%2E%2E"


def _event(table: TableId, topic: str, offset: int, columns: tuple[str, ...]) -> ChangeEvent:
    schema = TableSchema(table, tuple(Column(c, ColumnType(Kind.INT32)) for c in columns), ("id",))
    row = dict.fromkeys(columns, 1)
    lsn = offset + 1
    return ev(Op.CREATE, 1, lsn, schema, tx=1, commit_us=T0_US, topic=topic, offset=offset, **row)


def test_events_of_a_shared_topic_go_to_their_own_tables() -> None:
    odd, plain = TableId("Sales Data", 'Order"Items'), TableId("Sales_Data", "Order_Items")
    targets = {odd: TableTarget('Order"Items'), plain: TableTarget("Order_Items")}
    topic = "cdc.Sales_Data.Order_Items"
    events = [_event(odd, topic, 0, ("id",)), _event(plain, topic, 1, ("id",))]
    batches = group_by_table(events, targets)
    assert {b.target.name: len(b.events) for b in batches} == {'Order"Items': 1, "Order_Items": 1}


def test_columns_equal_ignoring_case_park_the_table_before_any_row() -> None:
    table = TableId("public", "T")
    event = _event(table, "cdc.public.T", 0, ("id", "A", "a", "Mixed Col"))
    wh = DuckDBWarehouse(":memory:", keep_open=True)
    try:
        wh.ensure_bookkeeping()
        with pytest.raises(IncompatibleSchemaChangeError) as e:
            wh.apply([TableBatch(TableTarget("T"), event.schema, [event])], [])
        assert e.value.table == "T"
        assert "'A' and 'a'" in str(e.value) and 'public."T"' not in str(e.value)
        assert "public.T" in str(e.value)
        with wh.connection() as con:
            found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'T'")
            assert found.fetchone() == (0,)
    finally:
        wh.close()


def test_signal_collection_is_the_exact_include_regex_when_debezium_can_carry_the_table() -> None:
    from cdc.names import debezium_carries, signal_collection

    for table in (TableId("public", "a*"), TableId("public", "a+b"), TableId("Mi", 'Xe"D')):
        assert debezium_carries(table)
        assert signal_collection(table) == include_regex(table)
    # Debezium's TableIdParser reads these raw `schema.table` back wrong or not at all
    for table in (
        TableId("Sales Data", 'Order"Items'),
        TableId("public", '"q'),
        TableId("public", "x.y"),
        TableId("public", 'a""b'),
    ):
        assert not debezium_carries(table)
        with pytest.raises(BadNameError, match="bulk method"):
            signal_collection(table)
