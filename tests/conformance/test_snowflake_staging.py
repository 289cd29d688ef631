"""Snowflake staging and the apply shape on fakesnow's server with the real connector.

What these tests prove (fakesnow 0.12.1 + snowflake-connector-python 4.8.1):

- every Kind, staged with the project's own ``arrow_type``/``column_array`` and loaded by
  :func:`warehouse.snowflake.stage_arrow` (Parquet, PUT, COPY), reads back exactly, NULLs of
  every type included, with hostile strings and odd column names;
- the recommended apply shape (UPDATE ... FROM a deduplicated stage with the position guard,
  DELETE ... USING, INSERT ... WHERE NOT EXISTS, offsets UPDATE + INSERT), built with sqlglot
  and run in ONE transaction: ROLLBACK leaves nothing, COMMIT applies, a replay changes 0 rows;
- no staged or bound value ever appears in the SQL text sent to the server;
- MERGE can't run inside an explicit transaction on fakesnow, so the adapter must not use it.

What fakesnow cannot prove (it runs on DuckDB). Real Snowflake may differ here:

1. NULL TIMESTAMP_TZ / TIMESTAMP_NTZ values are stored as NULL but fetched as 1970-01-01
   (the server's Arrow encoding). NULL timestamps are checked with ``IS NULL`` in SQL, and
   ``test_fakesnow_fetches_null_timestamps_as_1970`` pins the bug.
2. TIMESTAMP_TZ keeps the instant, not the offset: values come back in UTC. We stage UTC
   instants, so this is no loss here, but the offset behaviour of Snowflake is untested.
3. MERGE fails inside an explicit transaction (``test_merge_fails_inside_a_transaction``),
   so the MERGE-with-offsets-in-one-transaction path of real Snowflake is untested.
4. COPY INTO a table whose name needs quoting (a space in it) fails: fakesnow runs an unquoted
   ``DESCRIBE`` (``test_copy_into_a_staging_table_with_a_space_fails``). Staging tables must
   therefore have plain names. Target tables and columns with odd names work.
5. A Parquet string loaded straight into a VARIANT column is accepted. Snowflake would store a
   JSON *string*. So JSON is staged as VARCHAR and parsed in the apply (``PARSE_JSON``). That
   this matters on Snowflake can't be shown here.
6. ARRAY is stored and reported as VARIANT (JSON), and ``CAST(PARSE_JSON(x) AS ARRAY)`` is
   accepted in INSERT/UPDATE. Snowflake's ARRAY semantics (element types, NULL elements as
   JSON null) are untested.
7. Errors inside a transaction: fakesnow aborts the whole transaction (later statements get
   HTTP 500), while Snowflake only fails the statement. NULL into NOT NULL, invalid JSON and
   the MERGE failure are HTTP 500 here, not Snowflake's 100072 / 100069 codes.
8. VARCHAR(n) lengths, division by zero and case-only-different quoted identifiers behave
   differently. A declared PRIMARY KEY is enforced here and not on Snowflake.
9. DDL inside ``BEGIN`` stays transactional here. Snowflake commits the open transaction.
10. QUERY_TAG is accepted at connect but can't be read back (and ``ALTER SESSION SET QUERY_TAG``
    is not implemented), so the tag itself is only checked in the unit tests.
11. UPDATE ... FROM with duplicate source keys is deterministic here and nondeterministic on
    Snowflake. The shape deduplicates (QUALIFY), but only Snowflake could catch a missing dedup.
12. ``CREATE TRANSIENT TABLE`` is accepted, but fakesnow drops TRANSIENT (sqlglot logs
    "Unsupported property transientproperty") and creates a plain table.
13. Performance, concurrency, warehouse sizing, load history retention and PURGE semantics.
14. The scd2 tails, key-change lookups and open quarantine rows are read before the apply
    transaction (one writer per schema). How Snowflake's read-committed isolation behaves
    with a second writer between that read and the COMMIT is untested.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from snowflake.connector import SnowflakeConnection
from snowflake.connector import errors as sf
from snowflake.connector.cursor import SnowflakeCursor
from sqlglot import exp

from cdc.model import ColumnType, Interval, Kind
from warehouse.arrow import Stage, column_array
from warehouse.base import DataError, TerminalWarehouseError, TransientWarehouseError
from warehouse.snowflake.errors import classify
from warehouse.snowflake.staging import (
    create_stage,
    create_staging_table,
    stage_arrow,
    staged_value,
    staging_columns,
)
from warehouse.snowflake.types import DIALECT, snowflake_type
from warehouse.sql import TableRef, col, ident, render

pytestmark = pytest.mark.conformance

Connect = Callable[..., SnowflakeConnection]  # the `connect` fixture (conftest)

HOSTILE = "it's a \"quote\"; DROP TABLE X; -- $$ dollar $$ \\ backslash ' '' end"
MARKER = "zq7-marker-Ωß"  # a distinctive staged text: must never reach the SQL text
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
STAGE_NAME = "CDC_STAGE"
INT64 = ColumnType(Kind.INT64)


def sql_text(statement: exp.Expr) -> str:
    return render(statement, DIALECT)


def execute(conn: SnowflakeConnection, sql: str, params: Sequence[Any] | None = None) -> Any:
    cur = conn.cursor()
    cur.execute(sql, params)
    return cur


def schema_of(conn: SnowflakeConnection) -> str:
    name: str = conn.schema
    return name


# ---- (i) every kind through Parquet staging -----------------------------------------------

# column name -> (type, [full row, NULL row, hostile/edge row])
EVERY_KIND: dict[str, tuple[ColumnType, list[Any]]] = {
    "id": (INT64, [1, 2, 3]),
    'Int16 "q" Col': (ColumnType(Kind.INT16), [-32768, None, 32767]),
    "int32 with space": (ColumnType(Kind.INT32), [2147483647, None, -2147483648]),
    "Int64Mixed": (INT64, [9223372036854775807, None, -9223372036854775808]),
    "Dec 12,2": (
        ColumnType(Kind.DECIMAL, precision=12, scale=2),
        [decimal.Decimal("1234567890.12"), None, decimal.Decimal("-0.01")],
    ),
    "dec38_10": (
        ColumnType(Kind.DECIMAL, precision=38, scale=10),
        [
            decimal.Decimal("1234567890123456789012345678.0123456789"),
            None,
            decimal.Decimal("-0.0000000001"),
        ],
    ),
    "vardec": (
        ColumnType(Kind.VARDECIMAL),
        [decimal.Decimal("3.1415926535"), None, decimal.Decimal("-9876543210.0000000001")],
    ),
    "f32": (ColumnType(Kind.FLOAT32), [1.5, None, -0.25]),
    "f64": (ColumnType(Kind.FLOAT64), [1.7976931348623157e308, None, -2.5e-300]),
    "Bool": (ColumnType(Kind.BOOLEAN), [True, None, False]),
    'Text "quoted"; col $$': (ColumnType(Kind.TEXT), [HOSTILE, None, MARKER]),
    "enum col": (ColumnType(Kind.ENUM, enum_values=("a'b", "c")), ["a'b", None, "c"]),
    "uuid": (
        ColumnType(Kind.UUID),
        [uuid.UUID("12345678-1234-5678-1234-567812345678"), None, uuid.UUID(int=0)],
    ),
    "bytes": (ColumnType(Kind.BYTES), [b"\x00\xff'\";$$", None, b""]),
    "date": (ColumnType(Kind.DATE), [dt.date(2024, 2, 29), None, dt.date(1970, 1, 1)]),
    "time": (ColumnType(Kind.TIME), [dt.time(23, 59, 59, 999999), None, dt.time(0, 0)]),
    "timetz": (
        ColumnType(Kind.TIMETZ),
        [dt.time(1, 2, 3, 4, tzinfo=IST), None, dt.time(0, 0, tzinfo=dt.UTC)],
    ),
    "ts": (
        ColumnType(Kind.TIMESTAMP),
        [dt.datetime(2024, 3, 9, 20, 29, 59, 123456), None, dt.datetime(1999, 12, 31, 23, 59)],
    ),
    "TsTz": (
        ColumnType(Kind.TIMESTAMPTZ),
        [
            dt.datetime(2024, 3, 10, 1, 59, 59, 123456, tzinfo=IST),
            None,
            dt.datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
        ],
    ),
    "interval": (
        ColumnType(Kind.INTERVAL),
        [Interval(14, -3, 86_400_000_001), None, Interval(0, 0, -1)],
    ),
    "json": (
        ColumnType(Kind.JSON),
        ['{"a": [1, 2], "q": "it\'s \\"x\\"; $$"}', None, f'["{MARKER}"]'],
    ),
    "int array": (ColumnType(Kind.ARRAY, element=INT64), [[1, None, 3], None, []]),
    "Text Array": (
        ColumnType(Kind.ARRAY, element=ColumnType(Kind.TEXT)),
        [["it's", '"$$;'], None, [HOSTILE]],
    ),
}
TIMESTAMPS = ("ts", "TsTz")
# the JSON text intervals and arrays are staged as, written out independently of json_text
STAGED_TEXT: dict[str, list[str | None]] = {
    "interval": [
        '{"months":14,"days":-3,"micros":86400000001}',
        None,
        '{"months":0,"days":0,"micros":-1}',
    ],
    "int array": ["[1,null,3]", None, "[]"],
    "Text Array": ['["it\'s","\\"$$;"]', None, json.dumps([HOSTILE], separators=(",", ":"))],
}


def _expected(ct: ColumnType, value: Any) -> Any:
    """What a staged value reads back as from its staging column."""
    if value is None:
        return None
    if ct.kind is Kind.UUID:
        return str(value)
    if ct.kind is Kind.TIMETZ:  # staged in UTC, as a plain TIME
        moment = dt.datetime.combine(dt.date(2000, 1, 1), value.replace(tzinfo=None))
        return (moment - value.utcoffset()).time()
    return value


def every_kind_batch() -> pa.Table:
    return pa.table(
        {
            name: column_array(ct, values, table="every kind", column=name)
            for name, (ct, values) in EVERY_KIND.items()
        }
    )


def create_staging(conn: SnowflakeConnection, ref: TableRef, batch: pa.Table) -> None:
    execute(conn, create_stage(TableRef(ref.schema, STAGE_NAME)))
    execute(conn, sql_text(create_staging_table(ref, staging_columns(batch.schema))))


def test_every_kind_round_trips_through_parquet_staging(connect: Connect, tmp_path: Path) -> None:
    conn = connect("stage", "every kind")
    ref = TableRef(schema_of(conn), "EVERY_KIND_STG")
    batch = every_kind_batch()
    create_staging(conn, ref, batch)

    assert stage_arrow(conn.cursor(), batch, ref, STAGE_NAME, tmp_path) == 3
    assert list(tmp_path.iterdir()) == []  # the local Parquet file is removed

    names = list(EVERY_KIND)
    select = exp.select(*[col(n) for n in names]).from_(ref.expr()).order_by(col("id"))
    rows = execute(conn, sql_text(select)).fetchall()
    assert len(rows) == 3
    for r, row in enumerate(rows):
        for name, got in zip(names, row, strict=True):
            ct, values = EVERY_KIND[name]
            if name in TIMESTAMPS and values[r] is None:
                continue  # fakesnow fetches NULL timestamps as 1970: checked with IS NULL below
            expected = STAGED_TEXT[name][r] if name in STAGED_TEXT else _expected(ct, values[r])
            assert got == expected, (name, r, got)
    tstz = rows[0][names.index("TsTz")]
    assert tstz.utcoffset() == dt.timedelta(0)  # the instant, in UTC

    null_checks = (
        exp.select(*[exp.Is(this=col(n), expression=exp.Null()) for n in names])
        .from_(ref.expr())
        .where(exp.EQ(this=col("id"), expression=exp.Literal.number(2)))
    )
    # the NULL row is NULL in every column but its id (timestamps included), in SQL
    assert execute(conn, sql_text(null_checks)).fetchall() == [(False, *[True] * (len(names) - 1))]
    not_null = exp.select(*[exp.Is(this=col(n), expression=exp.Null()) for n in TIMESTAMPS])
    not_null = not_null.from_(ref.expr()).where(
        exp.In(this=col("id"), expressions=[exp.Literal.number(1), exp.Literal.number(3)])
    )
    assert execute(conn, sql_text(not_null)).fetchall() == [(False, False), (False, False)]


def test_staging_columns_have_the_snowflake_types(connect: Connect, tmp_path: Path) -> None:
    conn = connect()
    ref = TableRef(schema_of(conn), "TYPES_STG")
    create_staging(conn, ref, every_kind_batch())
    info = execute(
        conn,
        "SELECT column_name, data_type, numeric_precision, numeric_scale "
        "FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [ref.schema, ref.name],
    ).fetchall()
    reported = {name: (dtype, p, s) for name, dtype, p, s in info}
    assert reported["Dec 12,2"] == ("NUMBER", 12, 2)
    assert reported["dec38_10"] == ("NUMBER", 38, 10)
    assert reported["vardec"] == ("NUMBER", 38, 10)
    assert reported['Int16 "q" Col'] == ("NUMBER", 5, 0)
    assert reported["Int64Mixed"] == ("NUMBER", 19, 0)
    assert reported["TsTz"][0] == "TIMESTAMP_TZ"
    assert reported["ts"][0] == "TIMESTAMP_NTZ"
    assert reported["bytes"][0] == "BINARY"
    assert reported["f64"][0] == "FLOAT"
    for text in ("json", "interval", "int array", "uuid"):
        assert reported[text][0] == "TEXT"  # Snowflake's name of VARCHAR


def test_a_second_batch_replaces_the_staged_rows(connect: Connect, tmp_path: Path) -> None:
    conn = connect()
    ref = TableRef(schema_of(conn), "REPLACE_STG")
    first = pa.table({"k": pa.array([1, 2, 3], pa.int64())})
    create_staging(conn, ref, first)
    assert stage_arrow(conn.cursor(), first, ref, STAGE_NAME, tmp_path) == 3
    second = pa.table({"k": pa.array([7], pa.int64())})
    assert stage_arrow(conn.cursor(), second, ref, STAGE_NAME, tmp_path) == 1
    assert execute(conn, sql_text(exp.select(col("k")).from_(ref.expr()))).fetchall() == [(7,)]
    empty = pa.table({"k": pa.array([], pa.int64())})
    assert stage_arrow(conn.cursor(), empty, ref, STAGE_NAME, tmp_path) == 0
    assert execute(conn, sql_text(exp.select(col("k")).from_(ref.expr()))).fetchall() == []


def test_fakesnow_fetches_null_timestamps_as_1970(connect: Connect, tmp_path: Path) -> None:
    """Pins fakesnow gap 1: when this fails, fakesnow fetches NULL timestamps as None."""
    conn = connect()
    ref = TableRef(schema_of(conn), "NULL_TS_STG")
    batch = pa.table({"ts": pa.array([None], pa.timestamp("us", tz="UTC"))})
    create_staging(conn, ref, batch)
    stage_arrow(conn.cursor(), batch, ref, STAGE_NAME, tmp_path)
    query = exp.select(col("ts"), exp.Is(this=col("ts"), expression=exp.Null()))
    got, is_null = execute(conn, sql_text(query.from_(ref.expr()))).fetchone()
    assert is_null is True
    assert got == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def test_copy_into_a_staging_table_with_a_space_fails(connect: Connect, tmp_path: Path) -> None:
    """Pins fakesnow gap 4 (unquoted DESCRIBE inside its COPY); real Snowflake accepts it."""
    conn = connect()
    ref = TableRef(schema_of(conn), "odd stg")
    batch = pa.table({"k": pa.array([1], pa.int64())})
    create_staging(conn, ref, batch)
    with pytest.raises(Exception) as caught:
        stage_arrow(conn.cursor(), batch, ref, STAGE_NAME, tmp_path)
    cause = caught.value.__cause__
    assert isinstance(cause, sf.ProgrammingError)
    assert (cause.errno, cause.sqlstate) == (1003, "42000")


# ---- (ii) the apply shape in one transaction ---------------------------------------------

S, T = "s", "t"
LSN = "_cdc_lsn"
OFFSETS = "cdc_offsets"


@dataclass(frozen=True)
class Shape:
    """A target table with odd names, its staging table and the offsets table."""

    target: TableRef
    staging: TableRef
    offsets: TableRef
    columns: tuple[tuple[str, ColumnType], ...]

    @property
    def key(self) -> str:
        return self.columns[0][0]

    def types(self) -> list[tuple[str, exp.DataType]]:
        return [(n, snowflake_type(ct)) for n, ct in self.columns]


def make_shape(schema: str) -> Shape:
    return Shape(
        target=TableRef(schema, 'Orders "Tgt" v1'),
        staging=TableRef(schema, "ORDERS_STG"),
        offsets=TableRef(schema, OFFSETS),
        columns=(
            ("Order Id", INT64),
            ("Amount $", ColumnType(Kind.DECIMAL, precision=12, scale=2)),
            ("Payload", ColumnType(Kind.JSON)),
            ('My "odd" col', ColumnType(Kind.TEXT)),
            ("tags", ColumnType(Kind.ARRAY, element=ColumnType(Kind.TEXT))),
            ("Updated At", ColumnType(Kind.TIMESTAMPTZ)),
        ),
    )


def _dedup(shape: Shape) -> exp.Subquery:
    """The newest staged row per key: the only rows every statement reads."""
    newest = exp.Window(
        this=exp.RowNumber(),
        partition_by=[col(Stage.data(0))],
        order=exp.Order(expressions=[exp.Ordered(this=col(Stage.lsn), desc=True)]),
    )
    query = exp.select(exp.Star()).from_(shape.staging.expr())
    query = query.qualify(exp.EQ(this=newest, expression=exp.Literal.number(1)))
    return query.subquery(S)


def _values(shape: Shape) -> list[tuple[str, exp.Expr]]:
    pairs = [
        (name, staged_value(col(Stage.data(i), S), dtype))
        for i, (name, dtype) in enumerate(shape.types())
    ]
    return [*pairs, (LSN, col(Stage.lsn, S))]


def _key_match(shape: Shape, other: str) -> exp.Expr:
    return exp.EQ(this=col(shape.key, other), expression=col(Stage.data(0), S))


def _deleted(flag: bool) -> exp.Expr:
    deleted = col(Stage.deleted, S)
    return deleted if flag else exp.Not(this=deleted)


def _guard() -> exp.Expr:
    return exp.GT(this=col(Stage.lsn, S), expression=col(LSN, T))


def apply_statements(shape: Shape) -> list[tuple[str, exp.Expr]]:
    """UPDATE ... FROM, DELETE ... USING, INSERT ... WHERE NOT EXISTS (FINDINGS' shape)."""
    values = _values(shape)
    update = exp.Update(
        this=shape.target.expr(T),
        expressions=[exp.EQ(this=col(n), expression=v) for n, v in values[1:]],
        from_=exp.From(this=_dedup(shape)),
        where=exp.Where(this=exp.and_(_key_match(shape, T), _deleted(False), _guard())),
    )
    delete = exp.Delete(
        this=shape.target.expr(T),
        using=[_dedup(shape)],
        where=exp.Where(this=exp.and_(_key_match(shape, T), _deleted(True), _guard())),
    )
    exists = exp.select(exp.Literal.number(1)).from_(shape.target.expr(T))
    exists = exists.where(_key_match(shape, T))
    insert = exp.Insert(
        this=exp.Schema(this=shape.target.expr(), expressions=[ident(n) for n, _ in values]),
        expression=exp.select(*[v for _, v in values])
        .from_(_dedup(shape))
        .where(exp.and_(_deleted(False), exp.Not(this=exp.Exists(this=exists)))),
    )
    return [("update", update), ("delete", delete), ("insert", insert)]


OFFSET_KEY = ("consumer_group", "topic", "partition")


def _offset_key_match() -> exp.Expr:
    return exp.and_(*[exp.EQ(this=col(k), expression=exp.Placeholder()) for k in OFFSET_KEY])


def offsets_statements(shape: Shape) -> list[tuple[str, exp.Expr, list[str]]]:
    """Offsets UPDATE (only forward) + INSERT if missing; values bound (qmark), never text."""
    update = exp.Update(
        this=shape.offsets.expr(),
        expressions=[
            exp.EQ(this=col("next_offset"), expression=exp.Placeholder()),
            exp.EQ(this=col("updated_at"), expression=exp.CurrentTimestamp()),
        ],
        where=exp.Where(
            this=exp.and_(
                _offset_key_match(),
                exp.LT(this=col("next_offset"), expression=exp.Placeholder()),
            )
        ),
    )
    missing = (
        exp.select(exp.Literal.number(1)).from_(shape.offsets.expr()).where(_offset_key_match())
    )
    insert = exp.Insert(
        this=exp.Schema(
            this=shape.offsets.expr(),
            expressions=[ident(c) for c in (*OFFSET_KEY, "next_offset", "updated_at")],
        ),
        expression=exp.select(*[exp.Placeholder() for _ in range(4)], exp.CurrentTimestamp()).where(
            exp.Not(this=exp.Exists(this=missing))
        ),
    )
    return [
        ("offsets_update", update, ["next_offset", *OFFSET_KEY, "next_offset"]),
        ("offsets_insert", insert, [*OFFSET_KEY, "next_offset", *OFFSET_KEY]),
    ]


def setup_shape(conn: SnowflakeConnection) -> Shape:
    """DDL outside any transaction: target, offsets, stage, staging table."""
    shape = make_shape(schema_of(conn))
    target = exp.Create(
        this=exp.Schema(
            this=shape.target.expr(),
            expressions=[
                exp.ColumnDef(this=ident(n), kind=t)
                for n, t in [*shape.types(), (LSN, snowflake_type(INT64))]
            ],
        ),
        kind="TABLE",
        exists=True,
    )
    offsets = exp.Create(
        this=exp.Schema(
            this=shape.offsets.expr(),
            expressions=[
                exp.ColumnDef(this=ident(n), kind=t)
                for n, t in [
                    ("consumer_group", exp.DataType(this=exp.DataType.Type.VARCHAR)),
                    ("topic", exp.DataType(this=exp.DataType.Type.VARCHAR)),
                    ("partition", snowflake_type(ColumnType(Kind.INT32))),
                    ("next_offset", snowflake_type(INT64)),
                    ("updated_at", snowflake_type(ColumnType(Kind.TIMESTAMPTZ))),
                ]
            ],
        ),
        kind="TABLE",
        exists=True,
    )
    execute(conn, sql_text(target))
    execute(conn, sql_text(offsets))
    create_staging(conn, shape.staging, stage_batch(shape, []))
    return shape


@dataclass(frozen=True)
class Change:
    key: int
    lsn: int
    deleted: bool = False
    amount: str | None = None


def _row_values(change: Change) -> dict[str, Any]:
    if change.deleted:
        return {}
    return {
        "Amount $": None if change.amount is None else decimal.Decimal(change.amount),
        "Payload": json.dumps({"k": change.key, "lsn": change.lsn, "s": HOSTILE}),
        'My "odd" col': f"{MARKER} {change.key}@{change.lsn} {HOSTILE}",
        "tags": [HOSTILE, f"k{change.key}"],
        "Updated At": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        + dt.timedelta(microseconds=change.lsn),
    }


def stage_batch(shape: Shape, changes: Sequence[Change]) -> pa.Table:
    """Changes staged like ``arrow.mirror_stage``: positional data columns + metadata."""
    arrays: dict[str, pa.Array] = {}
    for i, (name, ct) in enumerate(shape.columns):
        values = [c.key if i == 0 else _row_values(c).get(name) for c in changes]
        arrays[Stage.data(i)] = column_array(ct, values, table=shape.target.name, column=name)
    arrays[Stage.lsn] = pa.array([c.lsn for c in changes], pa.int64())
    arrays[Stage.deleted] = pa.array([c.deleted for c in changes], pa.bool_())
    return pa.table(arrays)


GROUP, TOPIC = f"group-{MARKER}", f"cdc.public.{HOSTILE}"


def apply_batch(
    conn: SnowflakeConnection,
    shape: Shape,
    changes: Sequence[Change],
    next_offset: int,
    tmpdir: Path,
    *,
    commit: bool,
) -> dict[str, int]:
    """Stage and apply one batch plus its offset in ONE transaction; returns rowcounts."""
    counts: dict[str, int] = {}
    cur = conn.cursor()
    cur.execute("BEGIN")
    try:
        counts["staged"] = stage_arrow(
            cur, stage_batch(shape, changes), shape.staging, STAGE_NAME, tmpdir
        )
        for name, statement in apply_statements(shape):
            counts[name] = cur.execute(sql_text(statement)).rowcount
        bound = {
            "next_offset": next_offset,
            "consumer_group": GROUP,
            "topic": TOPIC,
            "partition": 0,
        }
        for name, statement, params in offsets_statements(shape):
            counts[name] = cur.execute(sql_text(statement), [bound[p] for p in params]).rowcount
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT" if commit else "ROLLBACK")
    return counts


def target_rows(conn: SnowflakeConnection, shape: Shape) -> dict[int, dict[str, Any]]:
    names = [n for n, _ in shape.columns]
    select = exp.select(*[col(n) for n in [*names, LSN]]).from_(shape.target.expr())
    out: dict[int, dict[str, Any]] = {}
    for row in execute(conn, sql_text(select)).fetchall():
        values = dict(zip([*names, LSN], row, strict=True))
        values["Payload"] = json.loads(values["Payload"])  # VARIANT: compare parsed JSON
        values["tags"] = json.loads(values["tags"])
        out[values.pop("Order Id")] = values
    return out


def model_rows(shape: Shape, applied: Sequence[Change]) -> dict[int, dict[str, Any]]:
    """What the target must hold: the newest change per key, older ones never win."""
    state: dict[int, Change] = {}
    for c in applied:
        if c.key not in state or c.lsn > state[c.key].lsn:
            state[c.key] = c
    rows = {}
    for key, c in state.items():
        if c.deleted:
            continue
        values = _row_values(c)
        values["Payload"] = json.loads(values["Payload"])
        values[LSN] = c.lsn
        rows[key] = values
    return rows


def stored_offsets(conn: SnowflakeConnection, shape: Shape) -> list[tuple[Any, ...]]:
    select = exp.select(*[col(c) for c in (*OFFSET_KEY, "next_offset")])
    return list(execute(conn, sql_text(select.from_(shape.offsets.expr()))).fetchall())


SEED = [Change(k, 100, amount=f"{k}.00") for k in (1, 2, 3, 4)]
BATCH = [
    Change(1, 200, amount="10.10"),  # update ...
    Change(1, 250, amount="11.11"),  # ... twice: the newest wins
    Change(2, 50, amount="-1.00"),  # stale update: refused by the guard
    Change(3, 300, deleted=True),  # delete
    Change(4, 90, deleted=True),  # stale delete: refused
    Change(5, 310, amount="5.55"),  # insert
    Change(6, 320, amount="6.66"),  # insert ...
    Change(6, 330, deleted=True),  # ... then delete in the same batch: absent
]


def test_apply_shape_rolls_back_commits_and_replays_as_a_no_op(
    connect: Connect, tmp_path: Path
) -> None:
    conn = connect("apply", "orders")
    shape = setup_shape(conn)
    apply_batch(conn, shape, SEED, 10, tmp_path, commit=True)
    seeded = target_rows(conn, shape)
    assert seeded == model_rows(shape, SEED)
    assert stored_offsets(conn, shape) == [(GROUP, TOPIC, 0, 10)]

    counts = apply_batch(conn, shape, BATCH, 18, tmp_path, commit=False)
    assert counts["update"] == 1 and counts["delete"] == 1 and counts["insert"] == 1
    assert target_rows(conn, shape) == seeded  # ROLLBACK left nothing
    assert stored_offsets(conn, shape) == [(GROUP, TOPIC, 0, 10)]

    counts = apply_batch(conn, shape, BATCH, 18, tmp_path, commit=True)
    assert counts == {
        "staged": 8,
        "update": 1,
        "delete": 1,
        "insert": 1,
        "offsets_update": 1,
        "offsets_insert": 0,
    }
    applied = target_rows(conn, shape)
    assert applied == model_rows(shape, [*SEED, *BATCH])
    assert sorted(applied) == [1, 2, 4, 5]
    assert applied[1]["Amount $"] == decimal.Decimal("11.11")
    assert applied[2]["Amount $"] == decimal.Decimal("2.00")  # the stale update lost
    assert stored_offsets(conn, shape) == [(GROUP, TOPIC, 0, 18)]

    # another session sees the committed result
    assert target_rows(connect("check", None), shape) == applied

    replay = apply_batch(conn, shape, BATCH, 18, tmp_path, commit=True)
    assert replay == {
        "staged": 8,
        "update": 0,
        "delete": 0,
        "insert": 0,
        "offsets_update": 0,
        "offsets_insert": 0,
    }
    assert target_rows(conn, shape) == applied
    assert stored_offsets(conn, shape) == [(GROUP, TOPIC, 0, 18)]


# ---- (iii) no value in SQL text ----------------------------------------------------------


@pytest.fixture
def sent_sql(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """Every (SQL text, params) any cursor sends while the test runs."""
    sent: list[tuple[str, Any]] = []
    original = SnowflakeCursor.execute

    def recording(self: SnowflakeCursor, command: str, params: Any = None, **kw: Any) -> Any:
        sent.append((command, params))
        return original(self, command, params, **kw)

    monkeypatch.setattr(SnowflakeCursor, "execute", recording)
    yield sent


def test_no_staged_or_bound_value_reaches_the_sql_text(
    connect: Connect, tmp_path: Path, sent_sql: list[tuple[str, Any]]
) -> None:
    conn = connect("apply", "orders")
    shape = setup_shape(conn)
    every = every_kind_batch()
    every_ref = TableRef(shape.staging.schema, "EVERY_KIND_STG")
    create_staging(conn, every_ref, every)
    sent_sql.clear()  # from here on: only staging and applying

    stage_arrow(conn.cursor(), every, every_ref, STAGE_NAME, tmp_path)
    apply_batch(conn, shape, [*SEED, *BATCH], 987654321, tmp_path, commit=True)

    texts = [sql for sql, _ in sent_sql]
    assert any(t.startswith("PUT ") for t in texts) and any(
        t.startswith("COPY INTO") for t in texts
    )
    assert any(t.startswith("UPDATE") for t in texts) and any(t.startswith("INSERT") for t in texts)
    forbidden = [
        HOSTILE, MARKER, "DROP TABLE", "$$", "1234567890.12", "0123456789", "3.1415926535",
        "12345678-1234-5678-1234-567812345678", b"\x00\xff'\";$$".hex(), "\x00", "2024-03-09",
        "2024-02-29", "23:59:59", "86400000001", "it's", "11.11", "5.55", "9223372036854775807",
        "2147483647", GROUP, TOPIC, "987654321",
    ]  # fmt: skip
    for text in texts:
        for value in forbidden:
            assert value not in text, (value, text)
    # the offsets' values did reach the server: bound, not formatted
    bound = [p for _, p in sent_sql if p]
    assert any(GROUP in p and TOPIC in p and 987654321 in p for p in bound)
    assert target_rows(conn, shape) == model_rows(shape, [*SEED, *BATCH])


# ---- (iv) MERGE inside a transaction ------------------------------------------------------


def merge_statement(shape: Shape) -> exp.Merge:
    """The single-statement upsert real Snowflake would allow in a transaction. Staged columns
    are used as they are: fakesnow can't bind ``PARSE_JSON(s.c)`` in MERGE's branches."""
    staged = [col(Stage.data(i), S) for i in range(len(shape.columns))] + [col(Stage.lsn, S)]
    names = [n for n, _ in shape.columns] + [LSN]
    return exp.Merge(
        this=shape.target.expr(T),
        using=_dedup(shape),
        on=_key_match(shape, T),
        whens=exp.Whens(
            expressions=[
                exp.When(
                    matched=True,
                    condition=exp.and_(_deleted(False), _guard()),
                    then=exp.Update(
                        expressions=[
                            exp.EQ(this=col(n), expression=v)
                            for n, v in zip(names[1:], staged[1:], strict=True)
                        ]
                    ),
                ),
                exp.When(
                    matched=False,
                    condition=_deleted(False),
                    then=exp.Insert(
                        this=exp.Tuple(expressions=[col(n) for n in names]),
                        expression=exp.Tuple(expressions=staged),
                    ),
                ),
            ]
        ),
    )


def test_merge_fails_inside_a_transaction(connect: Connect, tmp_path: Path) -> None:
    """fakesnow writes its own metadata database during MERGE, and DuckDB writes one database
    per transaction, so MERGE in BEGIN ... COMMIT fails (HTTP 500). Real Snowflake runs it. If
    this test starts failing because the MERGE succeeds, fakesnow changed: MERGE plus offsets
    in one transaction may then be testable, so revisit the apply shape."""
    conn = connect("apply", "orders")
    shape = setup_shape(conn)
    changes = [Change(7, 700, amount="7.77")]
    cur = conn.cursor()
    stage_arrow(cur, stage_batch(shape, changes), shape.staging, STAGE_NAME, tmp_path)
    merge = sql_text(merge_statement(shape))

    cur.execute("BEGIN")
    with pytest.raises(sf.InternalServerError) as caught:
        cur.execute(merge)
    cur.execute("ROLLBACK")
    assert classify(caught.value) is TransientWarehouseError  # retried, and failing again
    assert target_rows(conn, shape) == {}

    # the statement itself is valid: it runs in autocommit
    conn.cursor().execute(merge)
    assert sorted(target_rows(conn, shape)) == [7]


# ---- errors through the real connector -----------------------------------------------------


def test_a_missing_stage_is_a_terminal_error(connect: Connect, tmp_path: Path) -> None:
    conn = connect()
    ref = TableRef(schema_of(conn), "NO_STAGE_STG")
    batch = pa.table({"k": pa.array([1], pa.int64())})
    create_staging(conn, ref, batch)
    with pytest.raises(TerminalWarehouseError, match="errno=2003") as caught:
        stage_arrow(conn.cursor(), batch, ref, "NO_SUCH_STAGE", tmp_path, table_name="orders")
    assert "'orders'" in str(caught.value) and "retrying will not help" in str(caught.value)


def test_a_value_the_staging_column_cannot_hold_is_a_data_error(
    connect: Connect, tmp_path: Path
) -> None:
    conn = connect()
    ref = TableRef(schema_of(conn), "NARROW_STG")
    create_staging(conn, ref, pa.table({"n": pa.array([], pa.decimal128(5, 2))}))
    wide = pa.table({"n": pa.array([decimal.Decimal("1234567.89")], pa.decimal128(12, 2))})
    with pytest.raises(DataError) as caught:
        stage_arrow(conn.cursor(), wide, ref, STAGE_NAME, tmp_path, table_name="orders")
    assert caught.value.table == "orders"
    cause = caught.value.__cause__
    assert isinstance(cause, sf.ProgrammingError)
    # measured on fakesnow: a Parquet decimal too wide for its column gives 100038 / 22018
    assert (cause.errno, cause.sqlstate) == (100038, "22018")
