"""Values that the warehouse column can't hold exactly, and column type overrides.

Pure: a batch in, the batch with overrides applied and the events whose values don't fit out.
The consumer quarantines those events (their key's later changes wait behind them, as for data
contracts), with a reason that names the column, the value, the type and what to do: a value
is never rounded, clamped or replaced by NULL.

What fits depends on the column's type (a DECIMAL's precision and scale) and on the engine's
:class:`~warehouse.base.Capabilities` (DuckDB holds infinite and BC timestamps, Snowflake
neither). A column override (``tables[].columns.<name>.type`` in cdc.yaml) stores a column as
``text`` (the value exactly as PostgreSQL prints it) or as ``decimal(p,s)``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from cdc.decoding.special import pg_float
from cdc.model import (
    DATE_INFINITY,
    END_OF_DAY,
    TIMESTAMP_INFINITY,
    UNCHANGED_TOAST,
    ChangeEvent,
    ColumnType,
    FarDate,
    FarTimestamp,
    Interval,
    Kind,
    TableSchema,
    civil_from_days,
)
from warehouse.base import Capabilities, TableBatch

_EXACT: Final = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_DAY_US: Final = 86_400_000_000
DEFAULT_DECIMAL: Final = (38, 10)  # unconstrained numeric, as warehouse.types stores it
TEXT_OVERRIDABLE: Final = frozenset(
    {
        Kind.INT16, Kind.INT32, Kind.INT64, Kind.DECIMAL, Kind.VARDECIMAL, Kind.FLOAT32,
        Kind.FLOAT64, Kind.BOOLEAN, Kind.TEXT, Kind.ENUM, Kind.DATE, Kind.TIME, Kind.TIMESTAMP,
        Kind.TIMESTAMPTZ, Kind.UUID, Kind.JSON, Kind.TIMETZ, Kind.INTERVAL, Kind.BYTES,
        Kind.ARRAY,
    }
)  # fmt: skip
DECIMAL_OVERRIDABLE: Final = frozenset(
    {Kind.INT16, Kind.INT32, Kind.INT64, Kind.DECIMAL, Kind.VARDECIMAL, Kind.TEXT}
)


class UnfitValueError(ValueError):
    """A value the target type can't hold exactly (the message says why)."""


@dataclass(frozen=True, slots=True)
class Unfit:
    """An event that can't be applied as it is, and why (one reason per column)."""

    index: int
    reasons: tuple[str, ...]


def override_type(spec: str) -> ColumnType:
    """``text`` or ``decimal(p,s)`` (as validated in cdc.config) as a column type."""
    if spec == "text":
        return ColumnType(Kind.TEXT)
    precision, scale = (int(x) for x in spec[len("decimal(") : -1].split(","))
    return ColumnType(Kind.DECIMAL, precision=precision, scale=scale)


def override_problem(source: ColumnType, target: ColumnType) -> str | None:
    """Why an override can't apply to a column of type ``source`` (None: it can)."""
    kinds = TEXT_OVERRIDABLE if target.kind is Kind.TEXT else DECIMAL_OVERRIDABLE
    if source.kind in kinds:
        return None
    allowed = ", ".join(sorted(k.value for k in kinds))
    return f"a {source} column can't be stored as {target} (overridable kinds: {allowed})"


# ---- PostgreSQL's text of a value ---------------------------------------------------------


def numeric_text(value: decimal.Decimal) -> str:
    """A numeric as PostgreSQL prints it: plain digits with its scale, NaN, ±Infinity."""
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "Infinity" if value > 0 else "-Infinity"
    return format(value, "f")


def _clock(value: dt.time | dt.datetime) -> str:
    """HH:MM:SS[.ffffff] with the fraction's trailing zeros dropped, as PostgreSQL prints it."""
    text = f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    return text + f".{value.microsecond:06d}".rstrip("0") if value.microsecond else text


def _time_text(value: dt.time) -> str:
    return _clock(value) + ("+00" if value.tzinfo is not None else "")


def float32_text(value: float) -> str:
    """A ``real`` as PostgreSQL prints it: the shortest digits that read back as the same
    float32 (the model holds it as the double of that float32)."""
    if value != value or value in (float("inf"), float("-inf")):
        return pg_float(value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == value:
            return pg_float(float(text))
    return pg_float(value)


def interval_text(value: Interval) -> str:
    """An interval as PostgreSQL prints it with ``IntervalStyle = iso_8601``."""
    years, months = int(value.months / 12), value.months - int(value.months / 12) * 12
    micros = value.microseconds
    sign = -1 if micros < 0 else 1
    hours, rest = divmod(abs(micros), 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    date_part = "".join(
        f"{n}{unit}" for n, unit in ((years, "Y"), (months, "M"), (value.days, "D")) if n
    )
    clock = [(sign * hours, "H"), (sign * minutes, "M")]
    time_part = "".join(f"{n}{unit}" for n, unit in clock if n)
    if seconds or fraction:
        text = f"{seconds}" + (f".{fraction:06d}".rstrip("0") if fraction else "")
        time_part += f"{'-' if sign < 0 else ''}{text}S"
    if not date_part and not time_part:
        return "PT0S"
    return f"P{date_part}" + (f"T{time_part}" if time_part else "")


_ARRAY_PLAIN: Final = re.compile(r'[^\s{},"\\]+')


def array_text(values: list[Any], element: ColumnType | None) -> str:
    """An array as PostgreSQL prints it: ``{1,NULL,"a b"}`` (elements quoted when needed)."""
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
            continue
        if isinstance(value, list):
            parts.append(array_text(value, element))
            continue
        if isinstance(value, bool):
            text = "t" if value else "f"
        else:
            text = convert(value, ColumnType(Kind.TEXT), element)
        plain = _ARRAY_PLAIN.fullmatch(text) and text.upper() != "NULL"
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(text if plain else f'"{quoted}"')
    return "{" + ",".join(parts) + "}"


def pg_text(value: Any) -> str:
    """A model value as PostgreSQL prints it (timestamps with zones in UTC, ``+00``; intervals
    in ISO 8601; bytea as ``\\x`` hex)."""
    if isinstance(value, Interval):
        return interval_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, list):
        return array_text(value, None)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, decimal.Decimal):
        return numeric_text(value)
    if isinstance(value, float):
        return pg_float(value)
    if isinstance(value, dt.datetime):
        text = f"{value.date().isoformat()} {_clock(value)}"
        return text + "+00" if value.tzinfo is not None else text
    if isinstance(value, dt.time):
        return _time_text(value)
    if isinstance(value, dt.date | FarDate | FarTimestamp) or value is END_OF_DAY:
        return str(value)
    return str(value)


# ---- conversions and fit -------------------------------------------------------------------


def _to_decimal(value: Any, precision: int, scale: int) -> decimal.Decimal:
    if isinstance(value, str):
        try:
            value = decimal.Decimal(value)
        except decimal.InvalidOperation:
            raise UnfitValueError(f"{value[:40]!r} is not a number") from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = decimal.Decimal(value)
    if not isinstance(value, decimal.Decimal):
        raise UnfitValueError(f"{value!r} is not a number")
    _check_decimal(value, precision, scale)
    return value


def _check_decimal(value: decimal.Decimal, precision: int, scale: int) -> None:
    finite = value.is_finite()
    exponent: Any = value.as_tuple().exponent
    if finite and exponent >= -scale and value.adjusted() < precision - scale:
        return  # the usual case, without arithmetic
    if not finite:
        raise UnfitValueError(
            f"{numeric_text(value)} can't be held by decimal({precision},{scale})"
        )
    scaled = value.scaleb(scale, _EXACT)
    if scaled != scaled.to_integral_value() or abs(scaled) >= _EXACT.power(10, precision):
        raise UnfitValueError(
            f"{numeric_text(value)} does not fit decimal({precision},{scale}) exactly"
        )


def convert(value: Any, target: ColumnType, source: ColumnType | None = None) -> Any:
    """``value`` (of a column of type ``source``, when known) as the override type ``target``
    stores it; raises UnfitValueError."""
    if value is None or value is UNCHANGED_TOAST:
        return value
    if target.kind is Kind.TEXT:
        if source is not None and source.kind is Kind.FLOAT32 and isinstance(value, float):
            return float32_text(value)
        if isinstance(value, list):
            return array_text(value, source.element if source is not None else None)
        return pg_text(value)
    return _to_decimal(value, target.precision or 38, target.scale or 0)


def _year_of_days(days: int) -> int:
    return civil_from_days(days)[0]


def _check_days(days: int, caps: Capabilities, what: str) -> None:
    if abs(days) == DATE_INFINITY:
        if not caps.infinite_dates:
            raise UnfitValueError(
                f"the warehouse has no {what} '{'-' if days < 0 else ''}infinity'"
            )
        return
    low, high = caps.date_years if what == "date" else caps.timestamp_years
    year = _year_of_days(days)
    if not low <= year <= high:
        shown = f"{1 - year} BC" if year <= 0 else str(year)
        raise UnfitValueError(f"year {shown} is outside the warehouse's {what} range")


def check_value(value: Any, ct: ColumnType, caps: Capabilities) -> None:
    """Raise UnfitValueError when the warehouse column of type ``ct`` can't hold ``value``.
    (``datetime`` values, years 1 to 9999, fit every engine.)"""
    if value is None or value is UNCHANGED_TOAST:
        return
    kind = ct.kind
    if kind in (Kind.DECIMAL, Kind.VARDECIMAL):
        precision, scale = (
            (ct.precision, ct.scale or 0)
            if kind is Kind.DECIMAL and ct.precision is not None
            else DEFAULT_DECIMAL
        )
        if isinstance(value, decimal.Decimal):
            _check_decimal(value, precision, scale)
    elif value.__class__ is FarDate:
        _check_days(value.days, caps, "date")
    elif value.__class__ is FarTimestamp:
        if abs(value.micros) == TIMESTAMP_INFINITY:
            if not caps.infinite_dates:
                sign = "-" if value.micros < 0 else ""
                raise UnfitValueError(f"the warehouse has no timestamp '{sign}infinity'")
            return
        if not -TIMESTAMP_INFINITY < value.micros < TIMESTAMP_INFINITY:
            raise UnfitValueError(f"{value} is beyond every warehouse's timestamp range")
        _check_days(value.micros // _DAY_US, caps, "timestamp")
    elif value is END_OF_DAY:
        if not caps.end_of_day_time:
            raise UnfitValueError("the warehouse's TIME has no 24:00:00")
    elif kind is Kind.JSON and caps.json_number_digits is not None and isinstance(value, str):
        _check_json_numbers(value, caps.json_number_digits)
    elif kind is Kind.ARRAY and ct.element is not None and isinstance(value, list):
        floats = ct.element.kind in (Kind.FLOAT32, Kind.FLOAT64)
        for item in value:
            special = isinstance(item, float) and (item != item or abs(item) == float("inf"))
            if floats and special and not caps.special_floats_in_arrays:
                raise UnfitValueError(f"the warehouse's arrays can't hold {pg_text(item)}")
            check_value(item, ct.element, caps)


def _check_json_numbers(text: str, digits: int) -> None:
    """Every number of a JSON text has at most ``digits`` digits (integer and fraction)."""
    if not any(c.isdigit() for c in text):
        return
    try:
        doc = json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)
    except ValueError:
        return  # not JSON: the engine says so when it loads it
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, decimal.Decimal):
            exponent: Any = item.as_tuple().exponent
            total = max(0, item.adjusted() + 1) + max(0, -exponent)
            if not item.is_finite() or total > digits:
                raise UnfitValueError(
                    f"the JSON number {numeric_text(item)[:40]} has more than {digits} digits, "
                    "which the warehouse's JSON type turns into a double"
                )


def _shown(value: Any) -> str:
    if isinstance(value, decimal.Decimal):
        text = numeric_text(value)
    elif isinstance(value, list | Interval):
        text = repr(value)
    else:
        text = pg_text(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- a batch --------------------------------------------------------------------------------

_CHECKED: Final = frozenset(
    {
        Kind.DECIMAL, Kind.VARDECIMAL, Kind.DATE, Kind.TIME, Kind.TIMESTAMP, Kind.TIMESTAMPTZ,
        Kind.JSON,
    }
)  # fmt: skip
_FLOATS: Final = frozenset({Kind.FLOAT32, Kind.FLOAT64})  # checked inside arrays only


def _checked(ct: ColumnType) -> bool:
    if ct.kind is Kind.ARRAY and ct.element is not None:
        return ct.element.kind in _FLOATS or _checked(ct.element)
    return ct.kind in _CHECKED


def overridden_schema(schema: TableSchema, overrides: Mapping[str, ColumnType]) -> TableSchema:
    """The schema with override types in place of the source types of the named columns."""
    if not overrides or not any(c.name in overrides for c in schema.columns):
        return schema
    columns = tuple(
        replace(c, type=overrides[c.name], default=None) if c.name in overrides else c
        for c in schema.columns
    )
    return replace(schema, columns=columns)


def _row(
    values: dict[str, Any] | None, overrides: Mapping[str, ColumnType], schema: TableSchema
) -> Any:
    if values is None:
        return None
    out = dict(values)
    sources = {c.name: c.type for c in schema.columns}
    for name, target in overrides.items():
        if name in out:
            out[name] = convert(out[name], target, sources.get(name))
    return out


def fit_batch(
    batch: TableBatch, overrides: Mapping[str, ColumnType], caps: Capabilities
) -> tuple[TableBatch, list[Unfit]]:
    """The batch with overrides applied, and the events (by index in ``batch.events``) that
    still hold a value their column can't hold. Those stay in the returned batch: the caller
    takes them out (quarantine)."""
    schema = overridden_schema(batch.schema, overrides)
    types = {c.name: c.type for c in schema.columns if _checked(c.type)}
    events: list[ChangeEvent] = []
    unfit: list[Unfit] = []
    for i, event in enumerate(batch.events):
        reasons: list[str] = []
        try:
            if overrides:
                event = replace(
                    event,
                    schema=overridden_schema(event.schema, overrides),
                    key=_row(event.key, overrides, event.schema),
                    before=_row(event.before, overrides, event.schema),
                    after=_row(event.after, overrides, event.schema),
                )
        except UnfitValueError as exc:
            reasons.append(f"a column override can't hold a value: {exc}")
        row = event.after or event.key or {}
        for name, ct in types.items():
            value = row.get(name)
            if value is None:
                continue
            try:
                check_value(value, ct, caps)
            except UnfitValueError as exc:
                reasons.append(
                    f"column {name!r} ({ct}): value {_shown(value)} can't be stored exactly: "
                    f"{exc}. Set `columns: {{{name!r}: {{type: text}}}}` (or a decimal(p,s) "
                    "that holds it) on this table in cdc.yaml, then run `cdc quarantine replay`"
                )
        if reasons:
            unfit.append(Unfit(i, tuple(reasons)))
        events.append(event)
    return TableBatch(batch.target, schema, events), unfit


def first_unfit(
    schema: TableSchema, rows: Sequence[Sequence[Any]], caps: Capabilities
) -> str | None:
    """The reason the first value of source rows (values in ``schema.columns`` order) that
    its column can't hold can't be stored, or None when every value fits."""
    checked = [(i, c) for i, c in enumerate(schema.columns) if _checked(c.type)]
    for row in rows:
        for i, column in checked:
            try:
                check_value(row[i], column.type, caps)
            except UnfitValueError as exc:
                key = [row[schema.names.index(k)] for k in schema.key]
                return (
                    f"key {key}: column {column.name!r} ({column.type}): value "
                    f"{_shown(row[i])} can't be stored exactly: {exc}"
                )
    return None
