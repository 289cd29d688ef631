"""Conformance of the reconciliation checksum: PostgreSQL and every warehouse adapter (DuckDB,
Snowflake on fakesnow's server, a real account when configured) compute the same per-range
counts and checksums for the same rows, for a column of every Kind (``sample_data``'s every-kind
table), and a changed value changes them."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest
from sample_data import FULL_ROW

from cdc.compare import source_connection
from cdc.model import TableId, TableSchema
from cdc.reconcile.repair import repair_batch
from cdc.reconcile.source import SourceTable
from cdc.source.catalog import reflect_table
from warehouse.base import KeyRange, TableTarget, Warehouse

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.conformance]

DDL = """
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE all_kinds (
    id bigint PRIMARY KEY, i16 smallint, i32 int, dec numeric(38,10), money numeric(12,2),
    vardec numeric, f32 real, f64 double precision, flag bool, txt varchar(200), mood mood,
    raw bytea, day date, t time, ttz timetz, ts timestamp, tstz timestamptz, span interval,
    uid uuid, doc jsonb, ints int[], tags text[]
)
"""
# FULL_ROW of sample_data, as PostgreSQL literals (ttz with a zone other than UTC on purpose)
FULL = """
INSERT INTO all_kinds VALUES (1, -32768, 2147483647, 1234567890123456789012345678.0123456789,
 -9999999999.99, 3.1415926535, 1.5, 2.718281828459045, true, E'héllo\\nwörld ✓', 'happy',
 '\\x00ff1062696e617279', '1999-12-31', '23:59:59.999999', '12:11:12.123456+02',
 '2024-02-29 12:00:00.000001', '2024-02-29 23:59:59.999999+00',
 '14 months 40 days 01:00:00.000001', '12345678-1234-5678-1234-567812345678',
 '{"b": [1, 2, {"c": null}],   "a": "x"}', '{1,NULL,-3}', '{a,"",NULL,"d''quote"}')
"""
MORE = """
INSERT INTO all_kinds
SELECT g, g, -g, g * 1.5, g / 100.0, round(g / 7.0, 10), g / 3.0, g / 9.0, g % 2 = 0, 'row ' || g,
       'sad', int4send(g), date '2000-01-01' + g, time '00:00:01' + g * interval '1 ms',
       timetz '23:00:00-05' + g * interval '1 s', timestamp '1999-01-01' + g * interval '1 h',
       timestamptz '2030-06-01 00:00:00+09' + g * interval '1 us',
       make_interval(0, g, 0, g, 0, 0, g / 1000.0), md5(g::text)::uuid,
       jsonb_build_object('g', g, 'list', jsonb_build_array(g, 'x')), ARRAY[g, NULL],
       ARRAY['t' || g]
FROM generate_series(3, 60) g
"""
RANGES = [KeyRange(), KeyRange(None, (2,)), KeyRange((2,), (30,)), KeyRange((30,), None)]


def _source(pipeline: Pipeline) -> tuple[Any, TableSchema, list[dict[str, Any]]]:
    pipeline.sql(DDL)
    pipeline.sql(FULL)
    pipeline.sql("INSERT INTO all_kinds (id) VALUES (2)")
    pipeline.sql(MORE)
    conn = source_connection(pipeline.url)
    schema = reflect_table(conn, TableId("public", "all_kinds"))
    rows = SourceTable(conn, schema).range_rows([KeyRange()])
    return conn, schema, rows


def test_source_rows_are_the_sample_every_kind_row(pipeline: Pipeline) -> None:
    conn, schema, rows = _source(pipeline)
    conn.close()
    full = next(r for r in rows if r["id"] == 1)
    batch = repair_batch(TableTarget("all_kinds"), schema, [full], [], 1)
    assert batch.events[0].after == FULL_ROW | {"doc": full["doc"]}  # jsonb prints its own way


def test_checksums_agree_with_postgresql_for_every_kind(pipeline: Pipeline, wh: Warehouse) -> None:
    conn, schema, rows = _source(pipeline)
    target = TableTarget("all_kinds")
    wh.apply([repair_batch(target, schema, rows, [], 100)], [])
    source = SourceTable(conn, schema, peer=wh.checksum_dialect)
    try:
        key = schema.column("id")
        differ = []
        for column in schema.columns[1:]:  # one column at a time: a failure names the Kind
            one = dataclasses.replace(schema, columns=(key, column))
            theirs = SourceTable(conn, one, peer=wh.checksum_dialect).checksums(RANGES)
            if wh.checksums(target, one, RANGES) != theirs:
                differ.append(f"{column.name} ({column.type})")
        assert differ == []
        expected = source.checksums(RANGES)
        assert [c.rows for c in expected] == [60, 1, 28, 31]
        assert wh.checksums(target, schema, RANGES) == expected

        # a changed value changes the checksum of its range only
        changed = {**next(r for r in rows if r["id"] == 40), "txt": "changed"}
        wh.apply([repair_batch(target, schema, [changed], [], 200)], [])
        after = wh.checksums(target, schema, RANGES)
        assert after[1:3] == expected[1:3]
        assert after[3] != expected[3] and after[3].rows == expected[3].rows
        # range rows and split points agree too
        assert wh.split_keys(target, schema, [(KeyRange((2,), None), 10)]) == source.split_keys(
            [(KeyRange((2,), None), 10)]
        )
        fetched = wh.range_rows(target, schema, [KeyRange((39,), (41,))])
        assert sorted(r["id"] for r, _ in fetched) == [39, 40]
        assert {r["id"]: lsn for r, lsn in fetched} == {39: 100, 40: 200}
    finally:
        conn.close()


def test_composite_text_keys_give_the_same_ranges_on_both_sides(
    pipeline: Pipeline, wh: Warehouse
) -> None:
    pipeline.sql(
        "CREATE TABLE pairs (region text, n int, v text, c char(4), PRIMARY KEY (region, n))"
    )
    pipeline.sql(
        "INSERT INTO pairs SELECT r, g, r || g, left(r, 1) FROM unnest(ARRAY['a', 'B', 'é', "
        "'z', 'Z', 'ab', '']) r, generate_series(1, 9) g"
    )
    conn = source_connection(pipeline.url)
    try:
        schema = reflect_table(conn, TableId("public", "pairs"))
        source = SourceTable(conn, schema, peer=wh.checksum_dialect)
        target = TableTarget("pairs")
        wh.apply([repair_batch(target, schema, source.range_rows([KeyRange()]), [], 5)], [])
        splits = source.split_keys([(KeyRange(), 7)])
        assert wh.split_keys(target, schema, [(KeyRange(), 7)]) == splits
        assert splits[0][:3] == [("", 8), ("B", 6), ("Z", 4)]  # code point order: '' < B < Z < a
        ranges = [KeyRange(None, ("Z", 6)), KeyRange(("Z", 6), ("ab", 2)), KeyRange(("ab", 2))]
        expected = source.checksums(ranges)
        assert sum(c.rows for c in expected) == 63 and expected[1].rows == 4 + 9 + 1
        assert wh.checksums(target, schema, ranges) == expected
        assert {r["c"] for r, _ in wh.range_rows(target, schema, [KeyRange()])} >= {"a   "}
        rows = wh.range_rows(target, schema, [ranges[1]])
        assert sorted((r["region"], r["n"]) for r, _ in rows) == sorted(
            (r["region"], r["n"]) for r in source.range_rows([ranges[1]])
        )
    finally:
        conn.close()
