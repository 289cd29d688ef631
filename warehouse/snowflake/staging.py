"""Staging Arrow tables into Snowflake as data (PUT + COPY).

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
import snowflake.connector.errors as sf_errors
from sqlglot import exp

from warehouse.base import DataError, TerminalWarehouseError
from warehouse.snowflake.errors import map_error
from warehouse.snowflake.types import DIALECT, number, time6, timestamp_ntz6, timestamp_tz6
from warehouse.sql import ident
from warehouse.types import DT


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
