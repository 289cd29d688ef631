"""Logical values <-> Arrow: staging rows as data, and reading stored rows back.

Staging representation of each :class:`~cdc.model.Kind` (the SQL layer CASTs the staged column
to the target type): UUID as its text, JSON as text, TIMETZ as ``time64[us]`` in UTC, INTERVAL
as ``month_day_nano_interval``, VARDECIMAL as ``decimal128(38, 10)``. Decimal values are checked
before staging: a value that does not fit exactly raises :class:`~warehouse.base.DataError`,
never a silent rounding.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
from sqlglot import exp

from cdc.model import ColumnType, Interval, Kind
from warehouse.base import DataError, IncompatibleSchemaChangeError
from warehouse.mirror import MirrorPlan
from warehouse.types import (
    DT,
    MAX_DECIMAL_PRECISION,
    VARDECIMAL_PRECISION,
    VARDECIMAL_SCALE,
    base_type,
)

_SIMPLE: dict[Kind, pa.DataType] = {
    Kind.INT16: pa.int16(),
    Kind.INT32: pa.int32(),
    Kind.INT64: pa.int64(),
    Kind.FLOAT32: pa.float32(),
    Kind.FLOAT64: pa.float64(),
    Kind.BOOLEAN: pa.bool_(),
    Kind.TEXT: pa.string(),
    Kind.ENUM: pa.string(),
    Kind.BYTES: pa.binary(),
    Kind.DATE: pa.date32(),
    Kind.TIME: pa.time64("us"),
    Kind.TIMETZ: pa.time64("us"),
    Kind.TIMESTAMP: pa.timestamp("us"),
    Kind.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
    Kind.INTERVAL: pa.month_day_nano_interval(),
    Kind.UUID: pa.string(),
    Kind.JSON: pa.string(),
}
_EXACT = decimal.Context(prec=200, traps=[decimal.InvalidOperation])


def decimal_shape(ct: ColumnType) -> tuple[int, int]:
    """(precision, scale) a DECIMAL/VARDECIMAL column is staged and stored with."""
    if ct.kind is Kind.DECIMAL and ct.precision is not None:
        return ct.precision, ct.scale or 0
    return VARDECIMAL_PRECISION, VARDECIMAL_SCALE


def arrow_type(ct: ColumnType) -> pa.DataType:
    """The Arrow type a column is staged as."""
    if ct.kind in (Kind.DECIMAL, Kind.VARDECIMAL):
        precision, scale = decimal_shape(ct)
        if precision > MAX_DECIMAL_PRECISION:
            raise IncompatibleSchemaChangeError(
                f"decimal({precision},{scale}) exceeds the maximum precision "
                f"{MAX_DECIMAL_PRECISION}"
            )
        return pa.decimal128(precision, scale)
    if ct.kind is Kind.ARRAY:
        if ct.element is None:
            raise IncompatibleSchemaChangeError("array type without an element type")
        return pa.list_(arrow_type(ct.element))
    return _SIMPLE[ct.kind]


def _decimal_fits(value: decimal.Decimal, precision: int, scale: int) -> bool:
    if not value.is_finite():
        return False
    scaled = value.scaleb(scale, _EXACT)
    return scaled == scaled.to_integral_value() and abs(scaled) < _EXACT.power(10, precision)


def _utc_time(value: dt.time) -> dt.time:
    offset = value.utcoffset()
    if offset is None or not offset:
        return value.replace(tzinfo=None)
    moment = dt.datetime.combine(dt.date(2000, 1, 1), value.replace(tzinfo=None)) - offset
    return moment.time()


def _interval(value: Interval) -> tuple[int, int, int]:
    return (value.months, value.days, value.microseconds * 1000)


def _uuid_text(value: uuid.UUID | str) -> str:
    return str(value) if isinstance(value, uuid.UUID) else str(uuid.UUID(value))


Convert = Callable[[Any], Any]


def _converter(ct: ColumnType) -> Convert | None:
    """Per-value conversion to the staging representation (None: values stage as they are)."""
    if ct.kind is Kind.TIMETZ:
        return _utc_time
    if ct.kind is Kind.INTERVAL:
        return _interval
    if ct.kind is Kind.UUID:
        return _uuid_text
    if ct.kind is Kind.ARRAY and ct.element is not None:
        inner = _converter(ct.element)
        if inner is not None:
            return lambda xs: [None if x is None else inner(x) for x in xs]
    if ct.kind in (Kind.DECIMAL, Kind.VARDECIMAL):
        return _check_decimal(ct)
    return None


class _DecimalDoesNotFitError(ValueError):
    pass


def _check_decimal(ct: ColumnType) -> Convert:
    precision, scale = decimal_shape(ct)

    def check(value: Any) -> Any:
        if not isinstance(value, decimal.Decimal) or not _decimal_fits(value, precision, scale):
            raise _DecimalDoesNotFitError(f"does not fit decimal({precision},{scale}) exactly")
        return value

    return check


def column_array(ct: ColumnType, values: Sequence[Any], *, table: str, column: str) -> pa.Array:
    """Stage one column's values as an Arrow array; a value that can't be held is a DataError."""
    atype = arrow_type(ct)
    convert = _converter(ct)
    current: Any = None
    try:
        if convert is not None:
            staged = []
            for current in values:
                staged.append(None if current is None else convert(current))
            values = staged
        current = None
        return pa.array(values, type=atype)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError) as exc:
        bad = current if current is not None else _first_bad(values, atype)
        raise DataError(
            f"table {table!r} column {column!r} ({ct}): value {bad!r} can't be staged as "
            f"{atype}: {exc}. The offending events go to the dead-letter topic",
            table=table,
        ) from exc


def _first_bad(values: Sequence[Any], atype: pa.DataType) -> Any:
    for value in values:
        try:
            pa.array([value], type=atype)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            return value
    return None


# ---- the mirror stage ---------------------------------------------------------------------


class Stage:
    """Column names of a staged mirror table.

    Data columns are positional (``c0``, ``c1``... in schema order) so that no source column
    name, however odd, can collide with the staging metadata; ``t<i>`` flags rows whose column
    ``i`` is an unchanged TOAST value to take from the stored row.
    """

    lsn = "m_lsn"
    txid = "m_txid"
    op = "m_op"
    source_ts = "m_source_ts"
    deleted = "m_deleted"

    @staticmethod
    def data(index: int) -> str:
        return f"c{index}"

    @staticmethod
    def toast(index: int) -> str:
        return f"t{index}"


def mirror_stage(plan: MirrorPlan) -> tuple[pa.Table, frozenset[int]]:
    """The plan's upserts and deletes as one Arrow table, and the indexes of TOAST columns.

    Delete rows carry only key values (other columns NULL) and ``m_deleted = true``.
    """
    rows = [*plan.upserts, *plan.deletes]
    schema = plan.schema
    toast_names = plan.toast_columns
    arrays: dict[str, pa.Array] = {}
    toast_indexes: set[int] = set()
    for i, col in enumerate(schema.columns):
        values = [r.values[col.name] for r in rows]
        arrays[Stage.data(i)] = column_array(col.type, values, table=plan.table, column=col.name)
        if col.name in toast_names:
            toast_indexes.add(i)
            flags = [col.name in r.toast for r in rows]
            arrays[Stage.toast(i)] = pa.array(flags, type=pa.bool_())
    arrays[Stage.lsn] = pa.array([r.lsn for r in rows], type=pa.int64())
    arrays[Stage.txid] = pa.array([r.txid for r in rows], type=pa.int64())
    arrays[Stage.op] = pa.array([r.op.value for r in rows], type=pa.string())
    arrays[Stage.source_ts] = pa.array(
        [r.source_ts_us for r in rows], type=pa.timestamp("us", tz="UTC")
    )
    arrays[Stage.deleted] = pa.array([r.deleted for r in rows], type=pa.bool_())
    return pa.table(arrays), frozenset(toast_indexes)


# ---- reading back -------------------------------------------------------------------------


def python_value(dtype: exp.DataType, value: Any) -> Any:
    """A value read back through Arrow (after ``types.fetch_type``) in the cdc.model form."""
    if value is None:
        return None
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
