"""Snowflake building blocks: connection settings, error classification, types and staging.

This module is the base the Snowflake adapter (``snowflake_warehouse``) is built on; it holds
no apply logic.
Everything was checked against fakesnow 0.12.1 in server mode with the real
snowflake-connector-python 4.8.1 (``tests/conformance``); what fakesnow cannot prove is listed
in ``tests/conformance/test_snowflake_staging.py``.

Connection and query tag
------------------------
:class:`SnowflakeSettings` holds the connection settings (password as ``SecretStr`` or a
key-pair file). :meth:`SnowflakeSettings.connect_kwargs` gives the arguments of
``snowflake.connector.connect``, with a JSON ``QUERY_TAG`` (``{"app", "job", "table"}``) as a
session parameter, merged into (never replacing) any other session parameters. fakesnow accepts
the tag at connect but can't read it back and doesn't implement ``ALTER SESSION SET QUERY_TAG``,
so a different tag means a new connection. ``paramstyle`` is always ``qmark``: the values are
then bound on the server. The connector's default ``pyformat`` formats values into the SQL
text on the client, which this project never allows. Don't bind ``Decimal`` or a NULL
``TIMESTAMP_TZ`` with qmark on fakesnow (HTTP 500). Batches are staged as Parquet (below), and
only scalar bookkeeping values (group, topic, partition, offset) are bound.

Error classification (:func:`classify`, :func:`map_error`)
----------------------------------------------------------
Errors are classified by exception class, ``errno`` and ``sqlstate``, never by message text.
The first matching row wins:

=====  ====================================================  ============  =======================
order  condition                                             class         why / what to do
=====  ====================================================  ============  =======================
1      HTTP ``ForbiddenError`` (403), ``BadRequest`` (400),  terminal      wrong account URL or
       ``MethodNotAllowed`` (405)                                          not authorised; fix
                                                                           the settings
2      HTTP ``InternalServerError`` (500),                   transient     the service is busy or
       ``ServiceUnavailableError`` (503), ``BadGateway``,                  restarting; retry the
       ``GatewayTimeout``, ``RequestTimeout``,                             whole batch later
       ``TooManyRequests``, ``OtherHTTPRetryableError``
3      errno 390100, 390144, 394300-394306 (bad password,    terminal      credentials rejected;
       invalid/expired JWT)                                                fix user/password/key
4      errno 390112, 390114 (session / master token          transient     reconnect and retry
       expired)
5      errno 250001, 250002, 250003, 250005 (can't           transient     network; retry
       connect, connection closed, request failed)
6      errno 100035, 100038, 100046, 100069, 100072,         data          a value the column
       100074 (bad value / timestamp, numeric overflow,                    can't hold: dead-letter
       invalid JSON, NULL into NOT NULL, string too long)                  the events
7      errno 1003, 904, 2003, 2043, 2019, 1011, 9999         terminal      syntax, missing or
       (syntax, invalid identifier, missing object,                        unauthorised object,
       fakesnow's missing column, COPY shape, stage URL,                   bad COPY: a bug or a
       not implemented)                                                    missing grant
8      sqlstate class 22 (data exception) or 23              data          as row 6
       (constraint violation)
9      sqlstate class 08 (connection), 40 (transaction       transient     retry
       rollback), 57 (statement timeout / cancelled)
10     sqlstate class 28 (authorisation), 42 (syntax /       terminal      as rows 3 and 7
       access), 0A (not supported)
11     ``OperationalError``; Python ``ConnectionError`` /    transient     network
       ``TimeoutError``
12     ``IntegrityError``, ``DataError`` (connector)         data          as row 6
13     anything else                                         terminal      unknown: stop rather
                                                                           than retry forever
=====  ====================================================  ============  =======================

Measured on fakesnow: a cast or conversion error is 100035 / 22007; a Parquet decimal too
wide for its column in COPY is 100038 / 22018. On fakesnow an HTTP 500 also stands for
DuckDB-level failures (NOT NULL violation, invalid JSON, MERGE or CREATE TEMPORARY TABLE inside
a transaction, any statement after an error aborted the transaction). They are transient here,
because on real Snowflake an HTTP 500 is a service error; the consumer's bounded retry stops
them. On any error inside the apply transaction, ROLLBACK and retry the whole batch: that is
correct on both systems. For HTTP errors the connector adds 290000 to ``errno`` (fakesnow's 500
gives 580500), so those are classified by class.

Types (:func:`snowflake_type`)
------------------------------
=============  =====================  =====================================================
Kind           Snowflake              note
=============  =====================  =====================================================
INT16/32/64    NUMBER(5/10/19, 0)     exact digit counts, so ``types.widen`` works unchanged
DECIMAL(p,s)   NUMBER(p, s)           p > 38 is refused (IncompatibleSchemaChangeError)
VARDECIMAL     NUMBER(38, 10)         like DuckDB; values checked by ``arrow.column_array``
FLOAT32/64     FLOAT (as DOUBLE)      Snowflake FLOAT is a 64-bit double; rendered DOUBLE,
                                      its synonym, because sqlglot parses the FLOAT that
                                      Snowflake reports back as DOUBLE (stable round trip)
BOOLEAN        BOOLEAN
TEXT, ENUM     VARCHAR                unbounded: Snowflake stores by content, widening free
UUID           VARCHAR                its canonical text (Snowflake has no UUID type)
BYTES          BINARY                 at most 8 MB a value on Snowflake
DATE           DATE
TIME           TIME(6)
TIMETZ         TIME(6), in UTC        Snowflake has no time with a zone. Debezium sends
                                      TIMETZ normalised to UTC, and the model holds it with
                                      tzinfo=UTC, so a UTC TIME is lossless and stays
                                      comparable and sortable (VARCHAR would be neither).
                                      Readers put tzinfo=UTC back.
TIMESTAMP      TIMESTAMP_NTZ(6)       rendered TIMESTAMPNTZ(6), a documented synonym
TIMESTAMPTZ    TIMESTAMP_TZ(6)        rendered TIMESTAMPTZ(6); instants are staged in UTC
INTERVAL       VARIANT                ``{"months": m, "days": d, "micros": us}``. Snowflake
                                      has no INTERVAL column type. PostgreSQL's three parts
                                      are independent (a month is not 30 days), so one
                                      number or an ISO-8601 string would lose or hide them;
                                      the object keeps them exact and each part queryable
                                      (``c:months::INT``).
JSON           VARIANT                Snowflake normalises the text (whitespace, key
                                      order): compare parsed values, not text.
ARRAY          ARRAY                  untyped. Elements become JSON values: numbers
                                      stay numbers, DECIMAL elements become strings (exact),
                                      dates/times/timestamps ISO strings, bytes hex, UUIDs
                                      text, intervals objects as above.
=============  =====================  =====================================================

Staging (:func:`stage_arrow`)
-----------------------------
A batch is staged as data, never as SQL text. The Arrow table is written to a uniquely named
Parquet file, ``PUT`` to a named stage, then ``COPY INTO`` a TRANSIENT staging table with
``MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE PURGE=TRUE``. The staging table is not TEMPORARY:
fakesnow can't COPY into a temporary table, or create one inside a transaction. It is created
beforehand, outside the apply transaction (:func:`create_staging_table`), because DDL commits an
open transaction on Snowflake. CASE_SENSITIVE silently loads NULLs into quoted mixed-case
columns on fakesnow, hence CASE_INSENSITIVE, so staged column names must differ by more than
case. Arrow types that Parquet or Snowflake can't load as such are converted first
(:func:`parquet_ready`): ``month_day_nano_interval`` and list columns become JSON text. Those
columns, and JSON columns (already text), are staged as VARCHAR and cast in the apply statements
by :func:`staged_value`: ``PARSE_JSON(s.c)`` for VARIANT, ``CAST(PARSE_JSON(s.c) AS ARRAY)`` for
ARRAY. Loading a Parquet string straight into a VARIANT column works on fakesnow, but on
Snowflake it would store a JSON *string*. A NaN or infinite float in an array has no JSON form
and is a :class:`DataError`. Staging tables need plain names (no spaces): fakesnow's COPY runs
an unquoted DESCRIBE of the target. Target tables and all column names may be anything.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
import snowflake.connector.errors as sf_errors
from sqlglot import exp

from cdc.model import ColumnType, Kind
from warehouse.base import (
    DataError,
    IncompatibleSchemaChangeError,
    TerminalWarehouseError,
    TransientWarehouseError,
    WarehouseError,
)
from warehouse.sql import ident
from warehouse.types import DT, MAX_DECIMAL_PRECISION, VARDECIMAL_PRECISION, VARDECIMAL_SCALE

DIALECT = "snowflake"

# ---- errors -------------------------------------------------------------------------------

_HTTP_TERMINAL: tuple[type[Exception], ...] = (
    sf_errors.ForbiddenError,
    sf_errors.BadRequest,
    sf_errors.MethodNotAllowed,
)
_HTTP_TRANSIENT: tuple[type[Exception], ...] = (
    sf_errors.InternalServerError,
    sf_errors.ServiceUnavailableError,
    sf_errors.BadGatewayError,
    sf_errors.GatewayTimeoutError,
    sf_errors.RequestTimeoutError,
    sf_errors.TooManyRequests,
    sf_errors.OtherHTTPRetryableError,
)

AUTH_REJECTED = frozenset({390100, 390144, *range(394300, 394307)})
SESSION_EXPIRED = frozenset({390112, 390114})
CONNECTION = frozenset({250001, 250002, 250003, 250005})
BAD_VALUE = frozenset({100035, 100038, 100046, 100069, 100072, 100074})
STATEMENT = frozenset({1003, 904, 2003, 2043, 2019, 1011, 9999})

_DATA_SQLSTATE = ("22", "23")
_TRANSIENT_SQLSTATE = ("08", "40", "57")
_TERMINAL_SQLSTATE = ("28", "42", "0A")

_HINTS: dict[type[WarehouseError], str] = {
    TransientWarehouseError: (
        "Snowflake is unreachable or busy; the batch is rolled back and retried with backoff, "
        "offsets do not advance"
    ),
    DataError: (
        "a value in the batch does not fit its column; the offending events go to the "
        "dead-letter topic"
    ),
    TerminalWarehouseError: (
        "retrying will not help: check the account, credentials, grants and that the "
        "database, schema, stage and tables exist; the consumer stops"
    ),
}


def _errno(exc: BaseException) -> int | None:
    value = getattr(exc, "errno", None)
    return value if isinstance(value, int) and value > 0 else None


def _sqlstate(exc: BaseException) -> str | None:
    value = getattr(exc, "sqlstate", None)
    return value if isinstance(value, str) and len(value) == 5 else None


def classify(exc: BaseException) -> type[WarehouseError]:
    """Which warehouse error class an exception is (table in the module docstring)."""
    if isinstance(exc, WarehouseError):
        return type(exc)
    if isinstance(exc, _HTTP_TERMINAL):
        return TerminalWarehouseError
    if isinstance(exc, _HTTP_TRANSIENT):
        return TransientWarehouseError
    errno, sqlstate = _errno(exc), _sqlstate(exc)
    by_errno: list[tuple[frozenset[int], type[WarehouseError]]] = [
        (AUTH_REJECTED, TerminalWarehouseError),
        (SESSION_EXPIRED, TransientWarehouseError),
        (CONNECTION, TransientWarehouseError),
        (BAD_VALUE, DataError),
        (STATEMENT, TerminalWarehouseError),
    ]
    for codes, cls in by_errno:
        if errno in codes:
            return cls
    if sqlstate is not None:
        if sqlstate.startswith(_DATA_SQLSTATE):
            return DataError
        if sqlstate.startswith(_TRANSIENT_SQLSTATE):
            return TransientWarehouseError
        if sqlstate.startswith(_TERMINAL_SQLSTATE):
            return TerminalWarehouseError
    if isinstance(exc, sf_errors.OperationalError | ConnectionError | TimeoutError):
        return TransientWarehouseError
    if isinstance(exc, sf_errors.IntegrityError | sf_errors.DataError):
        return DataError
    return TerminalWarehouseError


def map_error(exc: BaseException, *, table: str | None) -> WarehouseError:
    """The warehouse error to raise (``from exc``) for an exception of a statement on
    ``table``; the message says what failed, its codes, and what happens next."""
    if isinstance(exc, WarehouseError):
        return exc
    cls = classify(exc)
    errno, sqlstate = _errno(exc), _sqlstate(exc)
    detail = str(getattr(exc, "raw_msg", None) or exc)[:500]
    message = (
        f"Snowflake error on table {table!r} ({type(exc).__name__} errno={errno} "
        f"sqlstate={sqlstate}): {detail}. {_HINTS[cls]}"
    )
    if cls is DataError:
        return DataError(message, table=table)
    return cls(message)


# ---- types --------------------------------------------------------------------------------


def number(precision: int, scale: int) -> exp.DataType:
    """``NUMBER(precision, scale)`` (rendered by sqlglot as its synonym DECIMAL)."""
    return exp.DataType(
        this=DT.DECIMAL,
        expressions=[
            exp.DataTypeParam(this=exp.Literal.number(precision)),
            exp.DataTypeParam(this=exp.Literal.number(scale)),
        ],
    )


def _with_precision(t: DT, precision: int) -> exp.DataType:
    return exp.DataType(this=t, expressions=[exp.DataTypeParam(this=exp.Literal.number(precision))])


def time6() -> exp.DataType:
    return _with_precision(DT.TIME, 6)


def timestamp_ntz6() -> exp.DataType:
    return _with_precision(DT.TIMESTAMPNTZ, 6)


def timestamp_tz6() -> exp.DataType:
    return _with_precision(DT.TIMESTAMPTZ, 6)


def _simple(t: DT) -> Callable[[], exp.DataType]:
    return lambda: exp.DataType(this=t)


_TYPES: dict[Kind, Callable[[], exp.DataType]] = {
    Kind.INT16: lambda: number(5, 0),
    Kind.INT32: lambda: number(10, 0),
    Kind.INT64: lambda: number(19, 0),
    Kind.VARDECIMAL: lambda: number(VARDECIMAL_PRECISION, VARDECIMAL_SCALE),
    Kind.FLOAT32: _simple(DT.DOUBLE),
    Kind.FLOAT64: _simple(DT.DOUBLE),
    Kind.BOOLEAN: _simple(DT.BOOLEAN),
    Kind.TEXT: _simple(DT.VARCHAR),
    Kind.ENUM: _simple(DT.VARCHAR),
    Kind.UUID: _simple(DT.VARCHAR),
    Kind.BYTES: _simple(DT.BINARY),
    Kind.DATE: _simple(DT.DATE),
    Kind.TIME: time6,
    Kind.TIMETZ: time6,
    Kind.TIMESTAMP: timestamp_ntz6,
    Kind.TIMESTAMPTZ: timestamp_tz6,
    Kind.INTERVAL: _simple(DT.VARIANT),
    Kind.JSON: _simple(DT.VARIANT),
    Kind.ARRAY: _simple(DT.ARRAY),
}


def snowflake_type(ct: ColumnType) -> exp.DataType:
    """The Snowflake column type of a logical type (table in the module docstring)."""
    if ct.kind is Kind.DECIMAL and ct.precision is not None:
        precision, scale = ct.precision, ct.scale or 0
        if precision > MAX_DECIMAL_PRECISION:
            raise IncompatibleSchemaChangeError(
                f"decimal({precision},{scale}) exceeds Snowflake's maximum precision "
                f"{MAX_DECIMAL_PRECISION}; declare the source column with a smaller precision "
                "or as unconstrained numeric"
            )
        return number(precision, scale)
    if ct.kind is Kind.DECIMAL:
        return number(VARDECIMAL_PRECISION, VARDECIMAL_SCALE)
    if ct.kind is Kind.ARRAY and ct.element is None:
        raise IncompatibleSchemaChangeError("array type without an element type")
    return _TYPES[ct.kind]()


def render_type(dtype: exp.DataType) -> str:
    return dtype.sql(dialect=DIALECT)


# ---- staging ------------------------------------------------------------------------------


class QualifiedName(Protocol):
    """A schema-qualified name (``warehouse.sql.TableRef`` is one)."""

    @property
    def schema(self) -> str: ...

    @property
    def name(self) -> str: ...


def _is_json_text(atype: pa.DataType) -> bool:
    """Arrow types :func:`parquet_ready` turns into JSON text."""
    return bool(
        pa.types.is_interval(atype) or pa.types.is_list(atype) or pa.types.is_large_list(atype)
    )


def staging_type(atype: pa.DataType) -> exp.DataType:
    """The staging column type that loads an Arrow column (after :func:`parquet_ready`)."""
    if pa.types.is_integer(atype):
        digits = {8: 3, 16: 5, 32: 10, 64: 19}[atype.bit_width]
        return number(digits + (1 if pa.types.is_unsigned_integer(atype) else 0), 0)
    if pa.types.is_decimal(atype):
        return number(atype.precision, atype.scale)
    if pa.types.is_floating(atype):
        return exp.DataType(this=DT.DOUBLE)
    if pa.types.is_boolean(atype):
        return exp.DataType(this=DT.BOOLEAN)
    if pa.types.is_string(atype) or pa.types.is_large_string(atype) or _is_json_text(atype):
        return exp.DataType(this=DT.VARCHAR)
    if pa.types.is_binary(atype) or pa.types.is_large_binary(atype):
        return exp.DataType(this=DT.BINARY)
    if pa.types.is_date(atype):
        return exp.DataType(this=DT.DATE)
    if pa.types.is_time(atype):
        return time6()
    if pa.types.is_timestamp(atype):
        return timestamp_tz6() if atype.tz is not None else timestamp_ntz6()
    raise TerminalWarehouseError(f"Arrow type {atype} can't be staged in Snowflake")


def staging_columns(schema: pa.Schema) -> list[tuple[str, exp.DataType]]:
    """(name, staging type) of every field of a staged Arrow schema."""
    return [(f.name, staging_type(f.type)) for f in schema]


def create_staging_table(ref: QualifiedName, columns: list[tuple[str, exp.DataType]]) -> exp.Create:
    """``CREATE TRANSIENT TABLE IF NOT EXISTS`` for a staging table (run outside the apply
    transaction: DDL commits an open transaction on Snowflake)."""
    defs: list[exp.Expr] = [exp.ColumnDef(this=ident(n), kind=t.copy()) for n, t in columns]
    return exp.Create(
        this=exp.Schema(this=_table(ref), expressions=defs),
        kind="TABLE",
        exists=True,
        properties=exp.Properties(expressions=[exp.TransientProperty()]),
    )


def create_stage(ref: QualifiedName) -> str:
    """``CREATE STAGE IF NOT EXISTS`` (sqlglot can't build it; identifiers quoted by it)."""
    return f"CREATE STAGE IF NOT EXISTS {_table(ref).sql(dialect=DIALECT)}"


def staged_value(column: exp.Expr, dtype: exp.DataType) -> exp.Expr:
    """The staged column as a value of the target type ``dtype``: VARIANT and ARRAY columns
    are staged as JSON text and parsed here; every other type loads as it is stored."""
    if dtype.this is DT.VARIANT:
        return exp.ParseJSON(this=column)
    if dtype.this is DT.ARRAY:
        return exp.Cast(this=exp.ParseJSON(this=column), to=exp.DataType(this=DT.ARRAY))
    return column


def _table(ref: QualifiedName) -> exp.Table:
    return exp.Table(this=ident(ref.name), db=ident(ref.schema))


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, pa.MonthDayNano):
        return _interval_object(value)
    raise TypeError(f"{type(value).__name__} can't be written as JSON")


def _interval_object(value: Any) -> dict[str, int]:
    return {"months": value.months, "days": value.days, "micros": value.nanoseconds // 1000}


def json_text(value: Any) -> str | None:
    """The JSON text an interval or array value is staged as (None stays NULL)."""
    if value is None:
        return None
    if isinstance(value, pa.MonthDayNano):
        value = _interval_object(value)
    return json.dumps(value, default=_json_default, separators=(",", ":"), allow_nan=False)


def parquet_ready(table: pa.Table, *, table_name: str | None = None) -> pa.Table:
    """The table with interval and list columns as JSON text (see the module docstring).

    A value JSON can't hold (a NaN or infinite float in an array) is a :class:`DataError`.
    """
    columns: list[pa.Array | pa.ChunkedArray] = []
    for column, field in zip(table.columns, table.schema, strict=True):
        if _is_json_text(field.type):
            texts: list[str | None] = []
            for value in column.to_pylist():
                try:
                    texts.append(json_text(value))
                except (TypeError, ValueError) as exc:
                    raise DataError(
                        f"table {table_name!r} column {field.name!r}: value {value!r} can't be "
                        f"staged as JSON text ({exc}). The offending events go to the "
                        "dead-letter topic",
                        table=table_name,
                    ) from exc
            column = pa.array(texts, type=pa.string())
        columns.append(column)
    names = [f.name for f in table.schema]
    return pa.Table.from_arrays(columns, names=names)


_SAFE_PATH = re.compile(r"[^A-Za-z0-9_]")


def _stage_dir(staging: QualifiedName) -> str:
    return _SAFE_PATH.sub("_", staging.name).lower() or "batch"


def _execute(
    cursor: Any, sql: str, table: str, statement_params: Mapping[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    try:
        if statement_params:
            cursor.execute(sql, _statement_params=dict(statement_params))
        else:
            cursor.execute(sql)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    except (sf_errors.Error, OSError) as exc:
        raise map_error(exc, table=table) from exc
    return rows


def _copy_rows_loaded(cursor: Any, rows: list[tuple[Any, ...]], staging: str, file: str) -> int:
    names = [d[0].lower() for d in cursor.description or ()]
    if "rows_loaded" not in names or "status" not in names:
        raise TerminalWarehouseError(
            f"COPY INTO {staging!r} loaded no file ({rows!r}): the staged file {file!r} was not "
            "found; check the stage name and that PUT succeeded"
        )
    status, loaded = names.index("status"), names.index("rows_loaded")
    bad = [r for r in rows if str(r[status]).upper() != "LOADED"]
    if bad or not rows:
        raise TerminalWarehouseError(
            f"COPY INTO {staging!r} did not load {file!r}: {bad or rows!r}. A LOAD_SKIPPED "
            "file was loaded before: staged file names must be unique per batch"
        )
    return sum(int(r[loaded]) for r in rows)


def stage_arrow(
    cursor: Any,
    table: pa.Table,
    staging: QualifiedName,
    stage_name: str,
    tmpdir: Path,
    *,
    replace: bool = True,
    table_name: str | None = None,
    statement_params: Mapping[str, Any] | None = None,
) -> int:
    """Load an Arrow table into a staging table as data; returns the rows COPY loaded.

    Writes a uniquely named Parquet file to ``tmpdir``, ``PUT``s it to the named stage
    ``stage_name`` (in ``staging.schema``), then ``COPY INTO staging``. With ``replace`` the
    staging table is emptied first (``DELETE``, so it rolls back with an open transaction).
    The staging table must exist with :func:`staging_columns` of the table's schema. No value
    reaches the SQL text: only identifiers (quoted by sqlglot) and the file's path. Errors are
    mapped by :func:`map_error`, naming ``table_name`` (the target table the batch is for;
    default: the staging table). ``statement_params`` go with each statement (the query tag).
    """
    where = table_name or staging.name
    stage = exp.Table(this=ident(stage_name), db=ident(staging.schema))
    target = _table(staging).sql(dialect=DIALECT)
    if replace:
        _execute(cursor, f"DELETE FROM {target}", where, statement_params)
    if table.num_rows == 0:
        return 0
    file = f"b_{uuid.uuid4().hex}.parquet"
    path = (tmpdir / file).resolve()
    if "'" in str(path):
        raise TerminalWarehouseError(f"staging directory {tmpdir} must not contain a quote")
    location = f"@{stage.sql(dialect=DIALECT)}/{_stage_dir(staging)}/"
    staged = parquet_ready(table, table_name=where)
    try:
        try:
            pq.write_table(staged, path)
        except OSError as exc:
            raise map_error(exc, table=where) from exc
        _execute(
            cursor,
            f"PUT 'file://{path}' {location} AUTO_COMPRESS=FALSE OVERWRITE=TRUE",
            where,
            statement_params,
        )
    finally:
        path.unlink(missing_ok=True)
    rows = _execute(
        cursor,
        f"COPY INTO {target} FROM {location}{file} FILE_FORMAT=(TYPE=PARQUET) "
        "MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE PURGE=TRUE",
        where,
        statement_params,
    )
    loaded = _copy_rows_loaded(cursor, rows, where, file)
    if loaded != table.num_rows:
        raise TerminalWarehouseError(
            f"COPY INTO {where!r} loaded {loaded} of {table.num_rows} rows from {file!r}; "
            "another writer uses this staging table or the file was changed; stop and check"
        )
    return loaded
