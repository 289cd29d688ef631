"""Values between the connector and the ``cdc.model`` representation (reads and binds).

Reads convert with the model types recorded in the registry (UUID text -> ``uuid.UUID``, TIME
as TIMETZ in UTC, VARIANT intervals -> :class:`~cdc.model.Interval`, ARRAY JSON -> typed
lists). JSON comes back as compact text of the value Snowflake normalised (compare parsed).
NULL timestamps are taken from ``IS NULL`` evaluated on the engine, because fakesnow fetches
them as 1970-01-01 (:func:`read`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlglot import exp

from cdc.model import ColumnType, Interval, Kind
from warehouse import sql

_TS_KINDS = (Kind.TIMESTAMP, Kind.TIMESTAMPTZ)


def _element(ct: ColumnType, value: Any) -> Any:
    """An ARRAY element from its JSON form (``warehouse.snowflake.json_text``) to the model."""
    if value is None:
        return None
    kind = ct.kind
    if kind in (Kind.DECIMAL, Kind.VARDECIMAL):
        return decimal.Decimal(str(value))
    if kind is Kind.BYTES:
        return bytes.fromhex(value)
    if kind is Kind.UUID:
        return uuid.UUID(value)
    if kind is Kind.DATE:
        return dt.date.fromisoformat(value)
    if kind in (Kind.TIME, Kind.TIMETZ):
        t = dt.time.fromisoformat(value)
        return t.replace(tzinfo=dt.UTC) if kind is Kind.TIMETZ else t
    if kind is Kind.TIMESTAMP:
        return dt.datetime.fromisoformat(value)
    if kind is Kind.TIMESTAMPTZ:
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    if kind is Kind.INTERVAL:
        return Interval(value["months"], value["days"], value["micros"])
    if kind in (Kind.FLOAT32, Kind.FLOAT64):
        return float(value)
    if kind is Kind.ARRAY and ct.element is not None:
        return [_element(ct.element, x) for x in value]
    return value


def model_value(ct: ColumnType | None, value: Any) -> Any:
    """A value fetched by the connector in the ``cdc.model`` representation."""
    if value is None or ct is None:
        return value
    kind = ct.kind
    if kind is Kind.UUID:
        return uuid.UUID(value)
    if kind is Kind.BYTES:
        return bytes(value)
    if kind is Kind.TIMETZ:
        return value.replace(tzinfo=dt.UTC)
    if kind is Kind.TIMESTAMPTZ:
        return value.astimezone(dt.UTC)
    if kind is Kind.TIMESTAMP:
        return value.replace(tzinfo=None) if value.tzinfo is not None else value
    if kind is Kind.INTERVAL:
        doc = json.loads(value)
        return Interval(doc["months"], doc["days"], doc["micros"])
    if kind is Kind.JSON:
        return json.dumps(json.loads(value), separators=(",", ":"))
    if kind is Kind.ARRAY and ct.element is not None:
        return [_element(ct.element, x) for x in json.loads(value)]
    if kind in (Kind.FLOAT32, Kind.FLOAT64):
        return float(value)
    if kind in (Kind.INT16, Kind.INT32, Kind.INT64):
        return int(value)
    if kind in (Kind.DECIMAL, Kind.VARDECIMAL) and not isinstance(value, decimal.Decimal):
        return decimal.Decimal(str(value))
    return value


def bindable(value: Any) -> Any:
    """A key value as a qmark bind: Decimal and UUID as text (fakesnow's server can't bind a
    Decimal; Snowflake has no UUID type), other values as they are."""
    return str(value) if isinstance(value, decimal.Decimal | uuid.UUID) else value


def read(
    execute: Callable[[exp.Expr, Sequence[Any]], Any],
    query: exp.Select,
    columns: Sequence[tuple[str, ColumnType | None]],
    params: Sequence[Any] = (),
    order: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Rows of ``query`` (whose projections are named ``columns``) in the model
    representation, run by ``execute(statement, params)``. fakesnow fetches a NULL timestamp
    as 1970-01-01, so timestamps come with ``IS NULL`` evaluated on the engine."""
    q = "q"
    nulls = [n for n, ct in columns if ct is not None and ct.kind in _TS_KINDS]
    outer = exp.select(
        *[sql.col(n, q) for n, _ in columns],
        *[exp.Is(this=sql.col(n, q), expression=exp.Null()) for n in nulls],
    ).from_(query.subquery(q))
    if order:
        outer = outer.order_by(*[sql.col(n, q) for n in order])
    out = []
    for row in execute(outer, params).fetchall():
        values = {n: model_value(ct, v) for (n, ct), v in zip(columns, row, strict=False)}
        for n, is_null in zip(nulls, row[len(columns) :], strict=True):
            if is_null:
                values[n] = None
        out.append(values)
    return out
