"""Arrow -> logical values: rows read back from an engine through Arrow, in the ``cdc.model``
representation (the inverse of :mod:`warehouse.arrow`'s staging; after ``types.fetch_type``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from sqlglot import exp

from cdc.model import (
    END_OF_DAY,
    FarDate,
    FarTimestamp,
    Interval,
    date_value,
    time_value,
    timestamp_value,
)
from warehouse.types import DT, base_type


def _python_column(values: pa.ChunkedArray, dtype: exp.DataType) -> list[Any]:
    out: list[Any]
    if pa.types.is_time(values.type):  # to_pylist turns 24:00:00 into 00:00:00 silently
        out = _temporal_values(values)
    else:
        try:
            out = values.to_pylist()
        except (ValueError, OverflowError):  # a far date or timestamp (BC, ±infinity)
            out = _temporal_values(values)
    if needs_python_conversion(dtype):
        out = [python_value(dtype, v) for v in out]
    return out


def _temporal_values(values: pa.ChunkedArray | pa.Array) -> list[Any]:
    """Dates, timestamps and times of day read as numbers, in the model form: what
    ``to_pylist`` can't return (years outside 1..9999, infinities, 24:00:00)."""
    atype = values.type
    if pa.types.is_list(atype):
        inner = atype.value_type
        lists = values.cast(pa.list_(_number_type(inner))).to_pylist()
        return [
            None if v is None else _temporal_values(pa.array(v, _number_type(inner)).cast(inner))
            for v in lists
        ]
    numbers = values.cast(_number_type(atype)).to_pylist()
    if pa.types.is_date(atype):
        return [None if n is None else date_value(n) for n in numbers]
    if pa.types.is_time(atype):
        return [None if n is None else time_value(n) for n in numbers]
    zoned = pa.types.is_timestamp(atype) and atype.tz is not None
    return [None if n is None else timestamp_value(n, zoned=zoned) for n in numbers]


def _number_type(atype: pa.DataType) -> pa.DataType:
    return pa.int32() if pa.types.is_date32(atype) else pa.int64()


def fetched_rows(
    table: pa.Table, columns: Sequence[tuple[str, exp.DataType]]
) -> list[dict[str, Any]]:
    """Fetched Arrow rows as dicts in the ``cdc.model`` value representation."""
    out = {name: _python_column(table.column(i), dtype) for i, (name, dtype) in enumerate(columns)}
    return [dict(zip(out, row, strict=True)) for row in zip(*out.values(), strict=True)]


# ---- reading back -------------------------------------------------------------------------


_FAR = (FarDate, FarTimestamp, type(END_OF_DAY))


def python_value(dtype: exp.DataType, value: Any) -> Any:
    """A value read back through Arrow (after ``types.fetch_type``) in the cdc.model form."""
    if value is None or value.__class__ in _FAR:
        return value
    t = base_type(dtype)
    if t is DT.UUID:
        return uuid.UUID(value)
    if t is DT.TIMETZ:
        return value.replace(tzinfo=dt.UTC)
    if t is DT.TIMESTAMPTZ:
        return value.astimezone(dt.UTC)
    if t is DT.INTERVAL:
        return Interval(value.months, value.days, value.nanoseconds // 1000)
    if t is DT.ARRAY:
        element = dtype.expressions[0]
        return [python_value(element, x) for x in value]
    return value


def needs_python_conversion(dtype: exp.DataType) -> bool:
    """Whether ``python_value`` changes values of this type (to skip the loop otherwise)."""
    t = base_type(dtype)
    if t is DT.ARRAY:
        return needs_python_conversion(dtype.expressions[0])
    return t in (DT.UUID, DT.TIMETZ, DT.TIMESTAMPTZ, DT.INTERVAL)
