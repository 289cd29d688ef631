"""The pure side of bulk snapshots: chunks cover every key exactly once, their SQL, the saved
plan's round trip, the COPY types."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from cdc.model import Column, ColumnType, Kind, TableId, TableSchema
from cdc.snapshot.plan import (
    Chunk,
    SnapshotPlan,
    chunk_predicate,
    chunk_query,
    chunks_from_bounds,
    copy_types,
    schema_with_key_not_null,
)

SCHEMA = TableSchema(
    TableId("public", "odd table"),
    (
        Column("a", ColumnType(Kind.INT32)),
        Column('b"q', ColumnType(Kind.TEXT)),
        Column("at", ColumnType(Kind.TIMESTAMPTZ)),
        Column("tags", ColumnType(Kind.ARRAY, element=ColumnType(Kind.INT32))),
    ),
    ("a", 'b"q'),
)


def contains(chunk: Chunk, key: tuple[int, ...]) -> bool:
    return (chunk.lower is None or key > chunk.lower) and (
        chunk.upper is None or key <= chunk.upper
    )


@given(
    st.lists(st.tuples(st.integers(-50, 50), st.integers(-3, 3)), unique=True, max_size=12),
    st.lists(st.tuples(st.integers(-60, 60), st.integers(-4, 4)), max_size=30),
)
def test_chunks_cover_every_key_exactly_once(
    bounds: list[tuple[int, int]], keys: list[tuple[int, int]]
) -> None:
    chunks = chunks_from_bounds(sorted(bounds))
    assert [c.index for c in chunks] == list(range(len(bounds) + 1))
    for key in keys:
        assert sum(contains(c, key) for c in chunks) == 1, key


def test_chunk_sql_compares_row_values_with_quoted_names_and_literals() -> None:
    chunk = Chunk(1, (1, "it's"), (5, "z"))
    text = chunk_predicate(SCHEMA.key, chunk).as_string(None)
    assert text == '("a", "b""q") > (1, \'it\'\'s\') AND ("a", "b""q") <= (5, \'z\')'
    assert chunk_predicate(["id"], Chunk(0, None, (3,))).as_string(None) == '"id" <= 3'
    assert chunk_predicate(["id"], Chunk(0, None, None)).as_string(None) == "TRUE"
    query = chunk_query(SCHEMA, Chunk(0, None, None), "a > 1", utc_text=True).as_string(None)
    assert query == (
        'SELECT "a", "b""q", ("at" AT TIME ZONE \'UTC\'), "tags" FROM "public"."odd table" '
        "WHERE TRUE AND (a > 1)"
    )


keys = st.one_of(
    st.integers(),
    st.text(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.datetimes(),
    st.dates(),
    st.uuids(),
    st.binary(),
    st.booleans(),
    st.none(),
)


@given(st.lists(st.lists(keys, min_size=1, max_size=3).map(tuple), max_size=5))
def test_a_saved_plan_reads_back_exactly(bounds: list[tuple[object, ...]]) -> None:
    plan = SnapshotPlan(
        id="items-1", table="public.items", target="items", where="x = 'y'", lsn=99,
        commit_ts_us=7, chunks=chunks_from_bounds(bounds),
    )  # fmt: skip
    again = SnapshotPlan.loads(plan.dumps())
    assert again == plan
    for a, b in zip(again.chunks, plan.chunks, strict=True):
        for x, y in zip(a.upper or (), b.upper or (), strict=True):
            assert type(x) is type(y)


def test_copy_types_give_each_column_its_loader() -> None:
    assert copy_types(SCHEMA) == ["int4", "text", "timestamptz", "int4[]"]
    kinds = TableSchema(
        TableId("p", "k"),
        tuple(
            Column(k.value, ColumnType(k, element=ColumnType(Kind.TEXT)))
            for k in Kind
            if k is not Kind.DECIMAL
        ),
        ("int64",),
    )
    assert len(copy_types(kinds)) == len(kinds.columns)
    assert copy_types(kinds)[list(Kind).index(Kind.JSON) - 1] == "text"


def test_key_columns_are_not_null() -> None:
    schema = schema_with_key_not_null(SCHEMA)
    assert [c.nullable for c in schema.columns] == [False, False, True, True]


def test_values_of_every_key_type_survive_json() -> None:
    values = (Decimal("1.10"), uuid.UUID(int=5), b"\x00\xff", dt.time(1, 2, 3, 4))
    plan = SnapshotPlan("i", "public.t", "t", None, 1, 2, chunks_from_bounds([values]))
    assert SnapshotPlan.loads(plan.dumps()).chunks[0].upper == values
