"""Logical values -> Arrow: staging rows as data (reading them back: ``warehouse.fetched``).

Staging representation of each :class:`~cdc.model.Kind` (the SQL layer CASTs the staged column
to the target type): UUID as its text, JSON as text, TIMETZ as ``time64[us]`` in UTC, INTERVAL
as ``month_day_nano_interval``, VARDECIMAL as ``decimal128(38, 10)``. Decimal values are checked
before staging: a value that does not fit exactly raises :class:`~warehouse.base.DataError`,
never a silent rounding.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from cdc.model import (
    ColumnType,
    Interval,
    Kind,
    TableSchema,
    temporal_number,
)
from warehouse.base import DataError, IncompatibleSchemaChangeError, QuarantineRow, SourceRows
from warehouse.mirror import Key, MirrorPlan
from warehouse.scd2 import Scd2Plan, Version
from warehouse.types import (
    MAX_DECIMAL_PRECISION,
    VARDECIMAL_PRECISION,
    VARDECIMAL_SCALE,
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


_DECIMALS = (Kind.DECIMAL, Kind.VARDECIMAL)


class _DecimalDoesNotFitError(ValueError):
    pass


def _check_decimal(ct: ColumnType) -> Convert:
    precision, scale = decimal_shape(ct)

    quantum = decimal.Decimal(1).scaleb(-scale)

    def check(value: Any) -> Any:
        if not isinstance(value, decimal.Decimal) or not _decimal_fits(value, precision, scale):
            raise _DecimalDoesNotFitError(f"does not fit decimal({precision},{scale}) exactly")
        exponent: Any = value.as_tuple().exponent
        if exponent < -scale:  # trailing zeros only (it fits): drop them, exactly
            return value.quantize(quantum, context=_EXACT)
        return value

    return check


def _plain_decimals(values: Sequence[Any], scale: int) -> bool:
    """Whether every value is a Decimal (or None) with at most ``scale`` fractional digits:
    pyarrow 26 turns a Decimal with ~200 trailing fractional zeros into 0 (seen: 5.000...0
    staged as decimal128(38,10) read back 0E-10), so such values go through ``_check_decimal``
    (which quantizes them exactly) instead of straight to ``pa.array``."""
    for v in values:
        if v is None:
            continue
        if v.__class__ is not decimal.Decimal:
            return False
        exponent: Any = v.as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -scale:
            return False
    return True


_TEMPORAL = (Kind.DATE, Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.TIME)


def _temporal(ct: ColumnType) -> bool:
    if ct.kind is Kind.ARRAY and ct.element is not None:
        return _temporal(ct.element)
    return ct.kind in _TEMPORAL


def _temporal_numbers(ct: ColumnType) -> Convert:
    """Far dates and timestamps (BC, ±infinity...) and 24:00:00 as the numbers Arrow stores."""
    if ct.kind is Kind.ARRAY:
        return lambda xs: [temporal_number(x) for x in xs]
    return temporal_number


def column_array(ct: ColumnType, values: Sequence[Any], *, table: str, column: str) -> pa.Array:
    """Stage one column's values as an Arrow array; a value that can't be held is a DataError."""
    atype = arrow_type(ct)
    convert = _converter(ct)
    if ct.kind in _DECIMALS and _plain_decimals(values, decimal_shape(ct)[1]):
        # Arrow itself refuses a value that doesn't fit exactly (precision, scale, NaN): only
        # when it does is each value checked, to name the first that doesn't fit
        with contextlib.suppress(pa.ArrowInvalid):
            return pa.array(values, type=atype)
    if _temporal(ct):
        # the usual values stage as they are; far ones (BC, ±infinity) only fail the fast path
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            return pa.array(values, type=atype)
        convert = _temporal_numbers(ct)
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
    commit_lsn = "m_commit_lsn"
    txid = "m_txid"
    op = "m_op"
    source_ts = "m_source_ts"
    deleted = "m_deleted"
    # scd2 stages: what a row does (KIND_*), the stored version it names, its validity, and
    # whether it carries data values (in-place changes) or only validity and flags.
    kind = "m_kind"
    old_lsn = "m_old_lsn"
    valid_from = "m_valid_from"
    valid_to = "m_valid_to"
    values = "m_values"
    KIND_INSERT, KIND_UPDATE, KIND_REMOVE, KIND_MARKER = "i", "u", "r", "d"

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
    arrays[Stage.commit_lsn] = pa.array([r.commit_lsn for r in rows], type=pa.int64())
    arrays[Stage.txid] = pa.array([r.txid for r in rows], type=pa.int64())
    arrays[Stage.op] = pa.array([r.op.value for r in rows], type=pa.string())
    arrays[Stage.source_ts] = pa.array(
        [r.source_ts_us for r in rows], type=pa.timestamp("us", tz="UTC")
    )
    arrays[Stage.deleted] = pa.array([r.deleted for r in rows], type=pa.bool_())
    return pa.table(arrays), frozenset(toast_indexes)


def source_rows_stage(rows: SourceRows) -> pa.Table:
    """Source rows as a mirror stage (upserts only, all at one position), built column-wise:
    the same table :func:`mirror_stage` makes of their snapshot-read events."""
    n = len(rows)
    arrays: dict[str, Any] = {}
    if rows.columns is not None:
        for i in range(len(rows.schema.columns)):
            arrays[Stage.data(i)] = rows.columns.column(i)
    else:
        columns = list(zip(*rows.rows, strict=True)) if n else [() for _ in rows.schema.columns]
        for i, (col, values) in enumerate(zip(rows.schema.columns, columns, strict=True)):
            arrays[Stage.data(i)] = column_array(col.type, values, table=rows.target.name,
                                                 column=col.name)  # fmt: skip
    pos = rows.position
    arrays[Stage.lsn] = pa.array([pos.lsn] * n, type=pa.int64())
    arrays[Stage.commit_lsn] = pa.array([pos.commit_lsn] * n, type=pa.int64())
    arrays[Stage.txid] = pa.array([pos.tx_id] * n, type=pa.int64())
    arrays[Stage.op] = pa.array(["r"] * n, type=pa.string())
    arrays[Stage.source_ts] = pa.array([pos.commit_ts_us] * n, type=pa.timestamp("us", tz="UTC"))
    arrays[Stage.deleted] = pa.array([False] * n, type=pa.bool_())
    return pa.table(arrays)


# Kinds whose PostgreSQL CSV text Arrow's CSV reader parses into exactly the stage value
# (timestamptz only when the query renders it in UTC without an offset: see
# cdc.snapshot.plan.csv_query). Other kinds take the row path.
_CSV_KINDS = frozenset({
    Kind.INT16, Kind.INT32, Kind.INT64, Kind.FLOAT32, Kind.FLOAT64, Kind.BOOLEAN, Kind.TEXT,
    Kind.ENUM, Kind.JSON, Kind.UUID, Kind.DECIMAL, Kind.DATE, Kind.TIMESTAMP, Kind.TIMESTAMPTZ,
})  # fmt: skip


def csv_readable(schema: TableSchema) -> bool:
    """Whether :func:`csv_columns` can read every column of ``schema``."""
    return all(c.type.kind in _CSV_KINDS for c in schema.columns)


def csv_columns(schema: TableSchema, data: bytes) -> pa.Table:
    """PostgreSQL ``COPY ... (FORMAT csv)`` output as Arrow columns of the stage types (one
    per schema column, in order), parsed by Arrow without Python objects.

    Raises ``pyarrow.ArrowInvalid`` for a value Arrow can't read exactly (a decimal too wide,
    an infinite date...); the caller then reads those rows the row way.
    """
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(len(schema.columns))]
    read_types: dict[str, pa.DataType] = {}
    for name, column in zip(names, schema.columns, strict=True):
        stage = arrow_type(column.type)
        kind = column.type.kind
        read_types[name] = pa.timestamp("us") if kind is Kind.TIMESTAMPTZ else stage
    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=names),
        convert_options=pacsv.ConvertOptions(
            column_types=read_types,
            true_values=["t"],
            false_values=["f"],
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    arrays = []
    for i, column in enumerate(schema.columns):
        values = table.column(i)
        stage = arrow_type(column.type)
        arrays.append(values if values.type == stage else values.cast(stage))
    out = pa.table(arrays, names=names)
    # the CSV reader does not check a decimal's precision (seen with pyarrow 26: a value with
    # too many integer digits parses): a full validation does
    out.validate(full=True)
    return out


def quarantine_stage(rows: Sequence[QuarantineRow]) -> pa.Table:
    """Quarantine rows as one Arrow table, columns named as the quarantine table's."""

    def column(get: Any, atype: pa.DataType) -> pa.Array:
        return pa.array([get(r) for r in rows], type=atype)

    return pa.table(
        {
            "table_name": column(lambda r: r.table, pa.string()),
            "key_json": column(lambda r: r.key, pa.string()),
            "topic": column(lambda r: r.topic, pa.string()),
            "partition": column(lambda r: r.partition, pa.int32()),
            "offset": column(lambda r: r.offset, pa.int64()),
            "lsn": column(lambda r: r.lsn, pa.int64()),
            "op": column(lambda r: r.op, pa.string()),
            "checks": column(lambda r: json.dumps(list(r.checks)), pa.string()),
            "reason": column(lambda r: r.reason, pa.string()),
            "raw_key": column(lambda r: r.raw_key, pa.binary()),
            "raw_value": column(lambda r: r.raw_value, pa.binary()),
        }
    )


# ---- the scd2 stages -----------------------------------------------------------------------


def key_stage(schema: TableSchema, keys: Sequence[Key], table: str) -> pa.Table:
    """Distinct keys of a batch, key column ``k`` staged as ``c<index of k>``."""
    arrays = {}
    for j, name in enumerate(schema.key):
        i = schema.names.index(name)
        ct = schema.columns[i].type
        arrays[Stage.data(i)] = column_array(ct, [k[j] for k in keys], table=table, column=name)
    return pa.table(arrays)


_TS = pa.timestamp("us", tz="UTC")


def scd2_stage(plan: Scd2Plan) -> pa.Table:
    """The plan's row operations as one Arrow table (``m_kind`` says which operation).

    Data columns are set for inserts and in-place updates; removes and delete markers carry
    only the key.
    """
    schema = plan.schema
    rows: list[tuple[str, Key, Version | None, int | None]] = []
    rows += [(Stage.KIND_INSERT, w.key, w.version, None) for w in plan.inserts]
    rows += [(Stage.KIND_UPDATE, w.key, w.version, w.version.stored_lsn) for w in plan.updates]
    rows += [(Stage.KIND_REMOVE, key, None, lsn) for key, lsn in plan.removes]
    rows += [(Stage.KIND_MARKER, key, None, lsn) for key, lsn, _ in plan.deletes]
    marker_commits = [None] * (len(rows) - len(plan.deletes)) + [c for _, _, c in plan.deletes]
    arrays: dict[str, pa.Array] = {}
    for i, c in enumerate(schema.columns):
        if c.name in schema.key:
            j = schema.key.index(c.name)
            values = [key[j] for _, key, _, _ in rows]
        else:
            values = [v.values.get(c.name) if v is not None and v.values_changed else None
                      for _, _, v, _ in rows]  # fmt: skip
        arrays[Stage.data(i)] = column_array(c.type, values, table=plan.table, column=c.name)

    def meta(get: Any, atype: pa.DataType, default: Any = None) -> pa.Array:
        return pa.array([default if v is None else get(v) for _, _, v, _ in rows], type=atype)

    arrays[Stage.kind] = pa.array([kind for kind, _, _, _ in rows], type=pa.string())
    arrays[Stage.old_lsn] = pa.array(
        [lsn if kind in (Stage.KIND_UPDATE, Stage.KIND_REMOVE) else None
         for kind, _, _, lsn in rows], type=pa.int64())  # fmt: skip
    arrays[Stage.lsn] = pa.array(
        [lsn if v is None else v.lsn for _, _, v, lsn in rows], type=pa.int64()
    )
    commits = [c if v is None else v.commit_lsn
               for (_, _, v, _), c in zip(rows, marker_commits, strict=True)]  # fmt: skip
    arrays[Stage.commit_lsn] = pa.array(commits, type=pa.int64())
    arrays[Stage.txid] = meta(lambda v: v.txid, pa.int64())
    arrays[Stage.op] = meta(lambda v: v.op.value, pa.string())
    arrays[Stage.source_ts] = meta(lambda v: v.source_ts_us, _TS)
    arrays[Stage.valid_from] = meta(lambda v: v.valid_from_us, _TS)
    arrays[Stage.valid_to] = meta(lambda v: v.valid_to_us, _TS)
    arrays[Stage.deleted] = meta(lambda v: v.deleted, pa.bool_(), False)
    arrays[Stage.values] = meta(lambda v: v.values_changed, pa.bool_(), False)
    return pa.table(arrays)
