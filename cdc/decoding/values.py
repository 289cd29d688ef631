"""Field value decoders: one per Debezium/Kafka Connect logical type and per primitive type.

A :data:`Decoder` turns one non-null JSON field value (as parsed by ``orjson``) into the Python
representation that ``cdc.model`` documents for the column's :class:`~cdc.model.Kind`. It takes
the unchanged-TOAST placeholder string as its second argument so the decoders of TOASTable types
(text, bytea, json, xml, arrays ...) can return :data:`~cdc.model.UNCHANGED_TOAST`.

Decoders are built once per schema field by a factory (``field schema dict -> Decoder``) looked up
in :data:`LOGICAL_TYPES` (keyed on the Connect schema ``name``) or :data:`PRIMITIVE_TYPES` (keyed on
the Connect schema ``type``). :func:`decoder_for_type` builds the same decoders from a
:class:`~cdc.model.ColumnType` for schemaless envelopes. Every failure is a :class:`DecodeError`.

Encodings assumed (Debezium PostgreSQL connector with ``decimal.handling.mode=string`` (or
``precise``, read too),
``time.precision.mode=adaptive_time_microseconds``, ``interval.handling.mode=string``,
``binary.handling.mode=bytes``, ``hstore.handling.mode=json``, Kafka ``JsonConverter``).
"""

from __future__ import annotations

import base64
import binascii
import decimal
import hashlib
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any, Final

import orjson

from cdc.decoding.refusals import refusal_for_source_type
from cdc.model import (
    DATE_INFINITY,
    TIMESTAMP_INFINITY,
    UNCHANGED_TOAST,
    ColumnType,
    FarDate,
    FarTimestamp,
    Interval,
    Kind,
    date_value,
    days_from_civil,
    time_value,
    timestamp_value,
)

DEFAULT_TOAST_PLACEHOLDER: Final = "__debezium_unavailable_value"
"""Debezium's default ``unavailable.value.placeholder``."""

Decoder = Callable[[Any, str], Any]
"""``(non-null JSON value, toast placeholder) -> Python value``; raises :class:`DecodeError`."""

DecoderFactory = Callable[[Mapping[str, Any]], Decoder]
"""Builds a :data:`Decoder` from a Connect JSON field schema (``{"type":..,"name":..,...}``)."""


class DecodeError(Exception):
    """A message (or one of its values) is malformed; ``field`` names the failing part."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def within(self, name: str) -> DecodeError:
        """The same error, with ``name`` prepended to the field path (``after`` + ``[2]``...)."""
        if self.field is None:
            path = name
        elif self.field.startswith("["):
            path = name + self.field
        else:
            path = f"{name}.{self.field}"
        return DecodeError(self.message, field=path)


# --------------------------------------------------------------------------------------------
# helpers


def _mismatch(expected: str, value: Any) -> DecodeError:
    if value.__class__ is int and value.bit_length() > 200:  # repr of a huge int is slow
        return DecodeError(f"expected {expected}, got an int of {value.bit_length()} bits")
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return DecodeError(f"expected {expected}, got {type(value).__name__} {shown}")


def _b64decode(value: str) -> bytes:
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"invalid base64: {exc}") from None


@lru_cache(maxsize=16)
def _b64_placeholder(placeholder: str) -> str:
    return base64.b64encode(placeholder.encode()).decode()


@lru_cache(maxsize=16)
def _hstore_placeholder(placeholder: str) -> str:
    # hstore.handling.mode=json: Debezium renders the TOAST marker as {"<ph>":"<ph>"}
    return orjson.dumps({placeholder: placeholder}).decode()


@lru_cache(maxsize=16)
def _uuid_placeholder(placeholder: str) -> str:
    # Java UUID.nameUUIDFromBytes: MD5, version 3 (Debezium's placeholder for uuid[] elements)
    return str(uuid.UUID(bytes=hashlib.md5(placeholder.encode()).digest(), version=3))


def _params(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    params = schema.get("parameters")
    return params if isinstance(params, Mapping) else {}


_MAX_PARAM_DIGITS: Final = 12


def int_param(schema: Mapping[str, Any], name: str) -> int | None:
    """An integer schema parameter (Connect JSON carries parameters as strings), or None."""
    raw = _params(schema).get(name)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str) or len(str(raw)) > _MAX_PARAM_DIGITS:
        raise DecodeError(f"schema parameter {name}={str(raw)[:20]!r} is not a bounded integer")
    try:
        return int(raw)
    except ValueError:
        raise DecodeError(f"schema parameter {name}={raw!r} is not an integer") from None


MAX_NUMERIC_PRECISION: Final = 1000
"""PostgreSQL's largest declared numeric precision; a larger one is not a declared precision."""
MAX_NUMERIC_SCALE: Final = 16383
"""PostgreSQL's largest numeric display scale; a scale beyond it is a malformed schema."""
MAX_NUMERIC_WEIGHT: Final = 131071
"""PostgreSQL numerics have at most 131072 digits before the decimal point."""
_MAX_DECIMAL_BYTES: Final = 62_000  # an unscaled value of PostgreSQL's 147455 digits at most
MONEY_PRECISION: Final = 19
"""``money`` is a 64-bit count of cents: at most 19 digits."""
SOURCE_TYPE: Final = "__debezium.source.column.type"
SOURCE_LENGTH: Final = "__debezium.source.column.length"
SOURCE_SCALE: Final = "__debezium.source.column.scale"


def source_type(schema: Mapping[str, Any]) -> str | None:
    """The PostgreSQL type name Debezium propagates (``column.propagate.source.type``)."""
    value = _params(schema).get(SOURCE_TYPE)
    return value if isinstance(value, str) else None


def decimal_scale(schema: Mapping[str, Any], name: str = "scale") -> int:
    """A Decimal's scale parameter (0 when absent), bounded by PostgreSQL's limits."""
    scale = int_param(schema, name) or 0
    if not -MAX_NUMERIC_SCALE <= scale <= MAX_NUMERIC_SCALE:
        raise DecodeError(f"schema parameter {name}={scale} is out of range")
    return scale


def decimal_precision(schema: Mapping[str, Any]) -> int | None:
    """Declared precision of a Connect Decimal: ``connect.decimal.precision``, else the source
    column length when it is a possible precision (1 to 1000: Debezium reports 2147483647 for
    ``money``, which has 19 digits); otherwise None (unconstrained)."""
    for name in ("connect.decimal.precision", SOURCE_LENGTH):
        precision = int_param(schema, name)
        if precision is not None and 0 < precision <= MAX_NUMERIC_PRECISION:
            return precision
    stype = source_type(schema)
    if stype is not None and stype.upper() == "MONEY":
        return MONEY_PRECISION
    return None


_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def _to_decimal(unscaled: int, scale: int) -> decimal.Decimal:
    return decimal.Decimal(unscaled).scaleb(-scale, _EXACT)


# --------------------------------------------------------------------------------------------
# primitives


def _int_decoder(bits: int) -> Decoder:
    low, high, label = -(1 << (bits - 1)), (1 << (bits - 1)) - 1, f"int{bits}"

    def decode_int(value: Any, placeholder: str) -> int:
        if value.__class__ is int and low <= value <= high:
            return int(value)
        raise _mismatch(label, value)

    return decode_int


decode_int8 = _int_decoder(8)
decode_int16 = _int_decoder(16)
decode_int32 = _int_decoder(32)
decode_int64 = _int_decoder(64)

_SPECIAL_FLOATS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def decode_float(value: Any, placeholder: str) -> float:
    """float32/float64: a JSON number, or Debezium's "NaN"/"Infinity"/"-Infinity" strings."""
    cls = value.__class__
    if cls is float:
        return float(value)
    if cls is int:
        return float(value)
    if cls is str and value in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[value]
    raise _mismatch("float", value)


def decode_boolean(value: Any, placeholder: str) -> bool:
    if value.__class__ is bool:
        return bool(value)
    raise _mismatch("boolean", value)


def decode_string(value: Any, placeholder: str) -> Any:
    """string (text, varchar, char, inet, xml, ...); the placeholder means unchanged TOAST."""
    if value.__class__ is not str:
        raise _mismatch("string", value)
    if value == placeholder:
        return UNCHANGED_TOAST
    return value


def decode_bytes(value: Any, placeholder: str) -> Any:
    """bytes (bytea, bit varying): base64 text; the base64 of the placeholder means TOAST."""
    if value.__class__ is not str:
        raise _mismatch("base64 string", value)
    if value == _b64_placeholder(placeholder):
        return UNCHANGED_TOAST
    return _b64decode(value)


def decode_json(value: Any, placeholder: str) -> Any:
    """io.debezium.data.Json (json, jsonb, hstore): the JSON text exactly as sent."""
    if value.__class__ is not str:
        raise _mismatch("JSON text string", value)
    if value == placeholder or value == _hstore_placeholder(placeholder):
        return UNCHANGED_TOAST
    return value


def decode_json_value(value: Any, placeholder: str) -> Any:
    """map / unnamed struct / inferred objects: re-serialised as JSON text (strings pass)."""
    if value.__class__ is str:
        return decode_json(value, placeholder)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    raise _mismatch("JSON object", value)


def _array_decoder(element: Decoder, element_optional: bool, is_toast: ToastCheck) -> Decoder:
    def decode_array(value: Any, placeholder: str) -> Any:
        if value.__class__ is not list:
            raise _mismatch("array", value)
        if is_toast(value, placeholder):
            return UNCHANGED_TOAST
        out: list[Any] = []
        for i, item in enumerate(value):
            if item is None:
                if not element_optional:
                    raise DecodeError("null element in non-optional array items", field=f"[{i}]")
                out.append(None)
                continue
            try:
                out.append(element(item, placeholder))
            except DecodeError as exc:
                raise exc.within(f"[{i}]") from None
        return out

    return decode_array


# --------------------------------------------------------------------------------------------
# unchanged-TOAST placeholders of arrays
#
# Debezium's UnchangedToastedPlaceholder.getArrayValue: string elements carry the placeholder as
# one element (uuid elements: the name-based UUID of the placeholder bytes); bytes elements carry
# the placeholder bytes as one element; every other element type carries one element per
# placeholder byte (a signed Java byte) converted to the element type.

ToastCheck = Callable[[list[Any], str], bool]


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def _one_byte_b64(byte: int) -> str:
    return base64.b64encode(bytes([byte])).decode()


_PER_BYTE: Final[dict[str, Callable[[int], Any]]] = {
    "int8": _signed,
    "int16": _signed,
    "int32": _signed,
    "int64": _signed,
    "float": lambda b: float(_signed(b)),
    "double": lambda b: float(_signed(b)),
    "float32": lambda b: float(_signed(b)),
    "float64": lambda b: float(_signed(b)),
    "boolean": lambda b: b != 0,
    "decimal": _one_byte_b64,
    "vsdecimal": lambda b: {"scale": 0, "value": _one_byte_b64(b)},
}


@lru_cache(maxsize=64)
def _per_byte_placeholder(kind: str, placeholder: str) -> list[Any]:
    return [_PER_BYTE[kind](b) for b in placeholder.encode()]


def _never_toast(value: list[Any], placeholder: str) -> bool:
    return False


def array_toast_check(items: Mapping[str, Any]) -> ToastCheck:
    """How an array whose elements follow schema ``items`` carries the TOAST placeholder."""
    typ, name = items.get("type"), items.get("name")
    if typ == "string":
        if name == "io.debezium.data.Uuid":
            return lambda value, ph: _uuid_placeholder(ph) in value
        return lambda value, ph: ph in value
    if typ == "bytes" and name != DECIMAL:
        return lambda value, ph: _b64_placeholder(ph) in value
    if typ == "bytes":
        kind = "decimal"
    elif typ == "struct" and name == VARIABLE_SCALE_DECIMAL:
        kind = "vsdecimal"
    elif isinstance(typ, str) and typ in _PER_BYTE:
        kind = typ
    else:
        return _never_toast

    def per_byte(value: list[Any], placeholder: str) -> bool:
        expected = _per_byte_placeholder(kind, placeholder)
        return len(value) == len(expected) and value == expected

    return per_byte


# --------------------------------------------------------------------------------------------
# numerics


def make_decimal_decoder(scale: int, precision: int | None) -> Decoder:
    """org.apache.kafka.connect.data.Decimal: base64 big-endian two's-complement unscaled value;
    ``precision`` None = no declared precision (the value's own size bounds the work)."""
    if precision is not None and not 0 < precision <= MAX_NUMERIC_PRECISION:
        raise DecodeError(f"Decimal precision {precision} is out of range")
    if not -MAX_NUMERIC_SCALE <= scale <= MAX_NUMERIC_SCALE:
        raise DecodeError(f"Decimal scale {scale} is out of range")
    bound = None if precision is None else 10**precision

    def decode_decimal(value: Any, placeholder: str) -> decimal.Decimal:
        if value.__class__ is not str:
            raise _mismatch("base64 Decimal", value)
        if len(value) > _MAX_DECIMAL_BYTES * 4 // 3 + 4:
            raise DecodeError("Decimal bytes longer than any PostgreSQL numeric")
        raw = _b64decode(value)
        if not raw:
            raise DecodeError("empty Decimal bytes")
        unscaled = int.from_bytes(raw, "big", signed=True)
        if bound is not None and not -bound < unscaled < bound:
            raise DecodeError(f"Decimal of scale {scale} has more than {precision} digits")
        return _to_decimal(unscaled, scale)

    return decode_decimal


_DECIMAL_TEXT: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,6})?")
_DECIMAL_SPECIALS: Final = {
    "NAN": decimal.Decimal("NaN"),
    "NaN": decimal.Decimal("NaN"),
    "POSITIVE_INFINITY": decimal.Decimal("Infinity"),
    "Infinity": decimal.Decimal("Infinity"),
    "NEGATIVE_INFINITY": decimal.Decimal("-Infinity"),
    "-Infinity": decimal.Decimal("-Infinity"),
}
_MAX_DECIMAL_TEXT: Final = 200_000  # PostgreSQL: 131072 digits before the point, 16383 after


def make_decimal_text_decoder(scale: int | None, precision: int | None) -> Decoder:
    """A numeric sent as text (``decimal.handling.mode=string``): its digits, or Debezium's
    ``NAN`` / ``POSITIVE_INFINITY`` / ``NEGATIVE_INFINITY`` -> Decimal's own specials. With a
    declared ``precision`` and ``scale``, a value with more digits is a DecodeError."""
    bound = None if precision is None else 10**precision

    def decode_decimal_text(value: Any, placeholder: str) -> decimal.Decimal:
        if value.__class__ is not str:
            raise _mismatch("numeric text", value)
        special = _DECIMAL_SPECIALS.get(value)
        if special is not None:
            return special
        if len(value) > _MAX_DECIMAL_TEXT or not _DECIMAL_TEXT.fullmatch(value):
            raise _mismatch("numeric text", value)
        number = decimal.Decimal(value)
        exponent: Any = number.as_tuple().exponent
        if exponent < -MAX_NUMERIC_SCALE or number.adjusted() > MAX_NUMERIC_WEIGHT:
            raise DecodeError(f"numeric {value[:40]} is outside PostgreSQL's numeric range")
        if bound is not None:
            scaled = number.scaleb(scale or 0, _EXACT)
            if scaled != scaled.to_integral_value() or not -bound < scaled < bound:
                raise DecodeError(f"numeric {value} does not fit numeric({precision},{scale})")
        return number

    return decode_decimal_text


def _decimal_factory(schema: Mapping[str, Any]) -> Decoder:
    return make_decimal_decoder(decimal_scale(schema), decimal_precision(schema))


def decode_variable_scale_decimal(value: Any, placeholder: str) -> decimal.Decimal:
    """io.debezium.data.VariableScaleDecimal: ``{"scale": int, "value": base64 unscaled}``."""
    if value.__class__ is not dict:
        raise _mismatch("VariableScaleDecimal struct", value)
    scale, raw = value.get("scale"), value.get("value")
    if scale.__class__ is not int:
        raise _mismatch("int32 scale", scale)
    if raw.__class__ is not str:
        raise _mismatch("base64 value", raw)
    if not -MAX_NUMERIC_SCALE <= scale <= MAX_NUMERIC_SCALE:
        raise DecodeError(f"VariableScaleDecimal scale {scale} is out of range")
    if len(raw) > _MAX_DECIMAL_BYTES * 4 // 3 + 4:
        raise DecodeError("VariableScaleDecimal bytes longer than any PostgreSQL numeric")
    data = _b64decode(raw)
    if not data:
        raise DecodeError("empty VariableScaleDecimal bytes")
    return _to_decimal(int.from_bytes(data, "big", signed=True), scale)


# --------------------------------------------------------------------------------------------
# dates and times

_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MICROS_PER_DAY: Final = 86_400_000_000

# PostgreSQL's ranges (days and µs from 1970-01-01): dates 4713-01-01 BC .. 5874897-12-31,
# timestamps 4713-11-24 BC .. 294276-12-31 23:59:59.999999.
PG_MIN_DATE: Final = days_from_civil(-4712, 1, 1)
PG_MAX_DATE: Final = days_from_civil(5874897, 12, 31)
PG_MIN_TIMESTAMP: Final = days_from_civil(-4713, 11, 24) * _MICROS_PER_DAY
PG_MAX_TIMESTAMP: Final = days_from_civil(294277, 1, 1) * _MICROS_PER_DAY - 1

# Debezium 3.6 can't carry date 'infinity': it sends these day numbers, all outside
# PostgreSQL's range (seen on the real chain: snapshot reads, then streamed changes). Any other
# out-of-range number is a DecodeError, never a guess.
_DATE_SENTINELS: Final = {
    -622191234: DATE_INFINITY,
    -625821272: -DATE_INFINITY,
    -2147472692: DATE_INFINITY,
    -2147472691: -DATE_INFINITY,
}
# Timestamp 'infinity' / '-infinity': the JDBC driver's DATE_POSITIVE_INFINITY and
# DATE_NEGATIVE_INFINITY, in µs (MicroTimestamp) or ms (Timestamp).
_TIMESTAMP_SENTINELS_US: Final = {
    9223372036825200000: TIMESTAMP_INFINITY,
    -9223372036832400000: -TIMESTAMP_INFINITY,
}
_TIMESTAMP_SENTINELS_MS: Final = {
    9223372036825200: TIMESTAMP_INFINITY,
    -9223372036832400: -TIMESTAMP_INFINITY,
}


def _require_int(value: Any, label: str) -> int:
    if value.__class__ is not int:
        raise _mismatch(label, value)
    return int(value)


def decode_date(value: Any, placeholder: str) -> date | FarDate:
    """io.debezium.time.Date / connect Date: int32 days since 1970-01-01 (may be negative)."""
    days = _require_int(value, "int32 days")
    if PG_MIN_DATE <= days <= PG_MAX_DATE:
        return date_value(days)
    infinite = _DATE_SENTINELS.get(days)
    if infinite is not None:
        return FarDate(infinite)
    raise DecodeError(f"date {days} days from epoch is outside PostgreSQL's range")


def time_from_micros(micros: int) -> Any:
    """Time of day from microseconds past midnight; 24:00:00 is :data:`END_OF_DAY`."""
    if not 0 <= micros <= _MICROS_PER_DAY:
        raise DecodeError(f"time of day {micros}us is out of range")
    return time_value(micros)


def decode_time_millis(value: Any, placeholder: str) -> Any:
    """io.debezium.time.Time / connect Time: int32 milliseconds past midnight."""
    return time_from_micros(_require_int(value, "int32 millis") * 1000)


def decode_micro_time(value: Any, placeholder: str) -> Any:
    """io.debezium.time.MicroTime: int64 microseconds past midnight."""
    return time_from_micros(_require_int(value, "int64 micros"))


def decode_nano_time(value: Any, placeholder: str) -> Any:
    """io.debezium.time.NanoTime: int64 nanoseconds past midnight (truncated to µs)."""
    return time_from_micros(_require_int(value, "int64 nanos") // 1000)


def timestamp_from_micros(micros: int, *, zoned: bool = False) -> datetime | FarTimestamp:
    """A timestamp from µs since the epoch (UTC when ``zoned``): ``datetime`` when it can hold
    it, else :class:`~cdc.model.FarTimestamp`. Outside PostgreSQL's range: DecodeError."""
    if abs(micros) == TIMESTAMP_INFINITY or PG_MIN_TIMESTAMP <= micros <= PG_MAX_TIMESTAMP:
        return timestamp_value(micros, zoned=zoned)
    raise DecodeError(f"timestamp {micros}us from epoch is outside PostgreSQL's range")


def decode_timestamp_millis(value: Any, placeholder: str) -> datetime | FarTimestamp:
    """io.debezium.time.Timestamp / connect Timestamp: int64 ms since the epoch, no zone."""
    millis = _require_int(value, "int64 millis")
    infinite = _TIMESTAMP_SENTINELS_MS.get(millis)
    return FarTimestamp(infinite, False) if infinite else timestamp_from_micros(millis * 1000)


def decode_micro_timestamp(value: Any, placeholder: str) -> datetime | FarTimestamp:
    """io.debezium.time.MicroTimestamp: int64 µs since the epoch, no zone."""
    micros = _require_int(value, "int64 micros")
    infinite = _TIMESTAMP_SENTINELS_US.get(micros)
    return FarTimestamp(infinite, False) if infinite else timestamp_from_micros(micros)


def decode_nano_timestamp(value: Any, placeholder: str) -> datetime | FarTimestamp:
    """io.debezium.time.NanoTimestamp: int64 ns since the epoch (floored to µs), no zone."""
    return timestamp_from_micros(_require_int(value, "int64 nanos") // 1000)


_ISO_TIMESTAMP: Final = re.compile(
    r"([+-]?\d{4,7})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d\d:\d\d(?::\d\d)?)"
)
_ZONED_INFINITY: Final = {"infinity": TIMESTAMP_INFINITY, "-infinity": -TIMESTAMP_INFINITY}


def _far_zoned_timestamp(value: str) -> FarTimestamp | datetime:
    """An ISO timestamp beyond ``datetime`` (BC as a negative ISO year, years > 9999)."""
    infinite = _ZONED_INFINITY.get(value)
    if infinite is not None:
        return FarTimestamp(infinite, True)
    match = _ISO_TIMESTAMP.fullmatch(value)
    if match is None:
        raise DecodeError(f"unparseable or out-of-range timestamptz {value!r}")
    y, mo, d, h, mi, sec, frac, zone = match.groups()
    month, day = int(mo), int(d)
    if not (1 <= month <= 12 and 1 <= day <= 31 and int(h) < 24 and int(mi) < 60):
        raise DecodeError(f"invalid timestamptz {value!r}")
    micros = days_from_civil(int(y), month, day) * _MICROS_PER_DAY
    micros += ((int(h) * 60 + int(mi)) * 60 + int(sec)) * 1_000_000
    micros += int((frac or "0").ljust(9, "0")[:6])
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        parts = [int(p) for p in zone[1:].split(":")]
        offset = (parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)) * sign
        micros -= offset * 1_000_000
    return timestamp_from_micros(micros, zoned=True)


def decode_zoned_timestamp(value: Any, placeholder: str) -> datetime | FarTimestamp:
    """io.debezium.time.ZonedTimestamp: ISO-8601 with offset (Debezium uses Z) -> aware UTC;
    ``infinity``, ``-infinity``, BC (negative ISO years) and years > 9999 -> FarTimestamp."""
    if value.__class__ is not str:
        raise _mismatch("ISO-8601 timestamp string", value)
    if len(value) > 64:
        raise _mismatch("ISO-8601 timestamp string", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return _far_zoned_timestamp(value)
    offset = parsed.utcoffset()
    if offset is None:
        raise DecodeError(f"timestamptz {value!r} has no offset")
    if offset:
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            return _far_zoned_timestamp(value)
    return parsed if parsed.tzinfo is UTC else parsed.replace(tzinfo=UTC)


def decode_zoned_time(value: Any, placeholder: str) -> time:
    """io.debezium.time.ZonedTime: ISO-8601 time with offset -> time(tzinfo=UTC)."""
    if value.__class__ is not str:
        raise _mismatch("ISO-8601 time string", value)
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise DecodeError(f"unparseable or out-of-range timetz {value!r}") from None
    offset = parsed.utcoffset()
    if offset is None:
        raise DecodeError(f"timetz {value!r} has no offset")
    if offset:
        shifted = datetime.combine(date(2000, 1, 2), parsed.replace(tzinfo=None)) - offset
        return shifted.time().replace(tzinfo=UTC)
    return parsed.replace(tzinfo=UTC)


_INTERVAL_RE: Final = re.compile(
    r"P(?:([+-]?\d+)Y)?(?:([+-]?\d+)M)?(?:([+-]?\d+)W)?(?:([+-]?\d+)D)?"
    r"(?:T(?:([+-]?\d+)H)?(?:([+-]?\d+)M)?(?:([+-]?(?:\d+(?:\.\d*)?|\.\d+))S)?)?"
)


def parse_interval(text: str) -> Interval:
    """An ISO-8601 duration as Debezium writes it (``P1Y2M3DT4H5M6.78S``; any part signed)."""
    match = _INTERVAL_RE.fullmatch(text)
    if match is None or text.endswith("T"):
        raise DecodeError(f"invalid ISO-8601 interval {text!r}")
    y, mo, w, d, h, mi, s = match.groups()
    months = int(y or 0) * 12 + int(mo or 0)
    days = int(w or 0) * 7 + int(d or 0)
    micros = (int(h or 0) * 60 + int(mi or 0)) * 60_000_000
    if s:
        micros += int(decimal.Decimal(s).scaleb(6, _EXACT))  # truncates beyond µs, like Debezium
    return Interval(months, days, micros)


def decode_interval(value: Any, placeholder: str) -> Interval:
    """io.debezium.time.Interval: ISO-8601 duration string -> Interval (lossless)."""
    if value.__class__ is not str:
        raise _mismatch("ISO-8601 interval string", value)
    return parse_interval(value)


def decode_micro_duration(value: Any, placeholder: str) -> Interval:
    """io.debezium.time.MicroDuration: int64 µs -> Interval(0, 0, µs)."""
    return Interval(0, 0, _require_int(value, "int64 micros"))


def decode_any_interval(value: Any, placeholder: str) -> Interval:
    """Interval from either representation (schemaless envelopes)."""
    if value.__class__ is int:
        return Interval(0, 0, int(value))
    return decode_interval(value, placeholder)


# --------------------------------------------------------------------------------------------
# strings with meaning


def decode_uuid(value: Any, placeholder: str) -> uuid.UUID:
    """io.debezium.data.Uuid: the canonical text form."""
    if value.__class__ is not str:
        raise _mismatch("uuid string", value)
    try:
        return uuid.UUID(value)
    except ValueError:
        raise DecodeError(f"invalid uuid {value!r}") from None


def decode_enum(value: Any, placeholder: str) -> str:
    """io.debezium.data.Enum: the label as a string."""
    if value.__class__ is not str:
        raise _mismatch("enum label string", value)
    return str(value)


# --------------------------------------------------------------------------------------------
# registries

DECIMAL: Final = "org.apache.kafka.connect.data.Decimal"
VARIABLE_SCALE_DECIMAL: Final = "io.debezium.data.VariableScaleDecimal"


@dataclass(frozen=True, slots=True)
class LogicalType:
    """What a Connect schema name means: the column kind and how to build its decoder."""

    kind: Kind
    factory: DecoderFactory


def _fixed(decoder: Decoder) -> DecoderFactory:
    return lambda schema: decoder


LOGICAL_TYPES: Final[dict[str, LogicalType]] = {
    DECIMAL: LogicalType(Kind.DECIMAL, _decimal_factory),
    VARIABLE_SCALE_DECIMAL: LogicalType(Kind.VARDECIMAL, _fixed(decode_variable_scale_decimal)),
    "io.debezium.time.Date": LogicalType(Kind.DATE, _fixed(decode_date)),
    "io.debezium.time.Time": LogicalType(Kind.TIME, _fixed(decode_time_millis)),
    "io.debezium.time.MicroTime": LogicalType(Kind.TIME, _fixed(decode_micro_time)),
    "io.debezium.time.NanoTime": LogicalType(Kind.TIME, _fixed(decode_nano_time)),
    "io.debezium.time.Timestamp": LogicalType(Kind.TIMESTAMP, _fixed(decode_timestamp_millis)),
    "io.debezium.time.MicroTimestamp": LogicalType(Kind.TIMESTAMP, _fixed(decode_micro_timestamp)),
    "io.debezium.time.NanoTimestamp": LogicalType(Kind.TIMESTAMP, _fixed(decode_nano_timestamp)),
    "io.debezium.time.ZonedTimestamp": LogicalType(
        Kind.TIMESTAMPTZ, _fixed(decode_zoned_timestamp)
    ),
    "io.debezium.time.ZonedTime": LogicalType(Kind.TIMETZ, _fixed(decode_zoned_time)),
    "io.debezium.time.Interval": LogicalType(Kind.INTERVAL, _fixed(decode_interval)),
    "io.debezium.time.MicroDuration": LogicalType(Kind.INTERVAL, _fixed(decode_micro_duration)),
    "io.debezium.data.Json": LogicalType(Kind.JSON, _fixed(decode_json)),
    "io.debezium.data.Uuid": LogicalType(Kind.UUID, _fixed(decode_uuid)),
    "io.debezium.data.Enum": LogicalType(Kind.ENUM, _fixed(decode_enum)),
    "io.debezium.data.EnumSet": LogicalType(Kind.TEXT, _fixed(decode_string)),
    "io.debezium.data.Xml": LogicalType(Kind.TEXT, _fixed(decode_string)),
    "io.debezium.data.Bits": LogicalType(Kind.BYTES, _fixed(decode_bytes)),
    "io.debezium.data.Ltree": LogicalType(Kind.TEXT, _fixed(decode_string)),
    "io.debezium.data.TsVector": LogicalType(Kind.TEXT, _fixed(decode_string)),
    "io.debezium.data.Tsvector": LogicalType(Kind.TEXT, _fixed(decode_string)),
    "org.apache.kafka.connect.data.Date": LogicalType(Kind.DATE, _fixed(decode_date)),
    "org.apache.kafka.connect.data.Time": LogicalType(Kind.TIME, _fixed(decode_time_millis)),
    "org.apache.kafka.connect.data.Timestamp": LogicalType(
        Kind.TIMESTAMP, _fixed(decode_timestamp_millis)
    ),
}
"""Connect schema ``name`` -> meaning. A named field whose name is not here is an error."""


def array_items(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """An array's ``items`` schema, carrying the element's source type (``_BOX`` -> ``BOX``):
    Debezium propagates the source type on the array only."""
    items = schema.get("items")
    if not isinstance(items, Mapping):
        raise DecodeError("array schema without items")
    stype = source_type(schema)
    if stype is None or not stype.startswith("_") or source_type(items) is not None:
        return items
    params = dict(_params(items))
    params[SOURCE_TYPE] = stype[1:]
    return {**items, "parameters": params}


def _array_factory(schema: Mapping[str, Any]) -> Decoder:
    items = array_items(schema)
    element = field_decoder(items)
    return _array_decoder(element, items.get("optional") is True, array_toast_check(items))


PRIMITIVE_TYPES: Final[dict[str, tuple[Kind, DecoderFactory]]] = {
    "int8": (Kind.INT16, _fixed(decode_int8)),
    "int16": (Kind.INT16, _fixed(decode_int16)),
    "int32": (Kind.INT32, _fixed(decode_int32)),
    "int64": (Kind.INT64, _fixed(decode_int64)),
    "float": (Kind.FLOAT32, _fixed(decode_float)),  # JsonConverter's name for FLOAT32
    "double": (Kind.FLOAT64, _fixed(decode_float)),  # JsonConverter's name for FLOAT64
    "float32": (Kind.FLOAT32, _fixed(decode_float)),
    "float64": (Kind.FLOAT64, _fixed(decode_float)),
    "boolean": (Kind.BOOLEAN, _fixed(decode_boolean)),
    "string": (Kind.TEXT, _fixed(decode_string)),
    "bytes": (Kind.BYTES, _fixed(decode_bytes)),
    "array": (Kind.ARRAY, _array_factory),
    "map": (Kind.JSON, _fixed(decode_json_value)),
    "struct": (Kind.JSON, _fixed(decode_json_value)),
}
"""Connect schema ``type`` -> (kind, decoder factory), for fields without a logical name."""


def field_decoder(schema: Mapping[str, Any]) -> Decoder:
    """The decoder for one Connect JSON field schema; unknown names/types are DecodeErrors."""
    special = special_field(schema)
    if special is not None:
        return special[1]
    name = schema.get("name")
    if name is not None:
        logical = LOGICAL_TYPES.get(name)
        if logical is None:
            raise DecodeError(f"unknown logical type {name!r}")
        return logical.factory(schema)
    typ = schema.get("type")
    primitive = PRIMITIVE_TYPES.get(typ) if isinstance(typ, str) else None
    if primitive is None:
        raise DecodeError(f"unknown schema type {typ!r}")
    return primitive[1](schema)


# --------------------------------------------------------------------------------------------
# fields whose meaning depends on the propagated source type (or that are carried as text)

_TEXT_DECIMAL_TYPES: Final = frozenset({"NUMERIC", "DECIMAL"})
MONEY_SCALE: Final = 2
"""Debezium's ``money.fraction.digits`` default: the scale ``money`` values are stored with."""
_MAX_BITS: Final = 83_886_080  # PostgreSQL's longest bit(n)


def _bits_decoder(length: int) -> Decoder:
    """io.debezium.data.Bits of a bit(n): little-endian bytes -> PostgreSQL's '0101' text."""

    def decode_bits(value: Any, placeholder: str) -> Any:
        if value.__class__ is not str:
            raise _mismatch("base64 bits", value)
        if value == _b64_placeholder(placeholder):
            return UNCHANGED_TOAST
        raw = _b64decode(value)
        if len(raw) > length // 8 + 1:
            raise DecodeError(f"bit({length}) value has {len(raw)} bytes")
        number = int.from_bytes(raw, "little")
        if number >> length:
            raise DecodeError(f"bit({length}) value has more than {length} bits")
        return format(number, f"0{length}b")

    return decode_bits


def decode_text_bytes(value: Any, placeholder: str) -> Any:
    """A type Debezium doesn't know (``include.unknown.datatypes``): its PostgreSQL text form,
    sent as base64 bytes -> the text."""
    if value.__class__ is not str:
        raise _mismatch("base64 text", value)
    if value == _b64_placeholder(placeholder):
        return UNCHANGED_TOAST
    try:
        return _b64decode(value).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("value of an unknown type is not UTF-8 text") from None


def pg_float(value: float) -> str:
    """A float as PostgreSQL prints it: the shortest digits that read back exactly, plain
    for exponents -4 to 14 and ``1.5e+15`` style beyond (float8out), NaN, ±Infinity."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    number = decimal.Decimal(repr(value)).normalize()
    exponent = number.adjusted()
    if -4 <= exponent < 15:
        return format(number, "f")
    sign, digits, _ = number.as_tuple()
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


_FLOAT_TOKEN: Final = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|-?Infinity|NaN")
_GEOMETRIC: Final = frozenset({"BOX", "LSEG", "PATH", "POLYGON", "CIRCLE", "LINE"})


def _geometric_text(text: str) -> str:
    """A geometric value's numbers as PostgreSQL prints them: a snapshot read renders them
    through the JDBC driver's objects (``1.0``), a streamed change as PostgreSQL (``1``)."""
    return _FLOAT_TOKEN.sub(lambda m: pg_float(float(m.group())), text)


def _geometric_decoder(value: Any, placeholder: str) -> Any:
    text = decode_text_bytes(value, placeholder)
    return text if text is UNCHANGED_TOAST else _geometric_text(text)


def decode_point(value: Any, placeholder: str) -> str:
    """io.debezium.data.geometry.Point ``{x, y, wkb, srid}`` -> PostgreSQL's ``(x,y)``."""
    if value.__class__ is not dict:
        raise _mismatch("Point struct", value)
    x, y = decode_float(value.get("x"), placeholder), decode_float(value.get("y"), placeholder)
    return f"({pg_float(x)},{pg_float(y)})"


def decode_vector(value: Any, placeholder: str) -> Any:
    """io.debezium.data.DoubleVector / FloatVector (pgvector) -> its text form ``[1,2.5]``."""
    if value.__class__ is not list:
        raise _mismatch("vector array", value)
    return "[" + ",".join(pg_float(decode_float(v, placeholder)) for v in value) + "]"


def special_field(schema: Mapping[str, Any]) -> tuple[ColumnType, Decoder] | None:
    """Fields read by their propagated source type rather than their Connect type alone:
    refused types, numerics sent as text (``decimal.handling.mode=string``), bit(n) strings,
    types Debezium doesn't know (their text, sent as bytes), points and vectors as text.
    None for every other field."""
    stype = source_type(schema)
    refusal = refusal_for_source_type(stype)
    if refusal is not None:
        raise DecodeError(refusal.message((stype or "").lower()))
    name, typ = schema.get("name"), schema.get("type")
    upper = stype.upper() if stype else None
    if name is None and typ == "string" and upper in _TEXT_DECIMAL_TYPES:
        length = int_param(schema, SOURCE_LENGTH) or 0
        scale = decimal_scale(schema, SOURCE_SCALE)
        if 0 < length <= MAX_NUMERIC_PRECISION:
            ctype = ColumnType(Kind.DECIMAL, precision=length, scale=scale, source_type=stype)
            return ctype, make_decimal_text_decoder(scale, length)
        return ColumnType(Kind.VARDECIMAL, source_type=stype), make_decimal_text_decoder(None, None)
    if name is None and typ == "string" and upper == "MONEY":
        ctype = ColumnType(Kind.DECIMAL, precision=MONEY_PRECISION, scale=MONEY_SCALE)
        return replace(ctype, source_type=stype), make_decimal_text_decoder(None, None)
    if name == "io.debezium.data.Bits" and upper == "BIT":
        length = int_param(schema, "length") or int_param(schema, SOURCE_LENGTH) or 0
        if not 0 < length <= _MAX_BITS:
            raise DecodeError(f"bit({length}) has no valid length")
        return ColumnType(Kind.TEXT, source_type=stype), _bits_decoder(length)
    if name is None and typ == "bytes" and upper in _GEOMETRIC:
        return ColumnType(Kind.TEXT, source_type=stype), _geometric_decoder
    if name is None and typ == "bytes" and upper is not None and upper != "BYTEA":
        return ColumnType(Kind.TEXT, source_type=stype), decode_text_bytes
    if name == "io.debezium.data.geometry.Point":
        return ColumnType(Kind.TEXT, source_type=stype), decode_point
    if name in ("io.debezium.data.DoubleVector", "io.debezium.data.FloatVector"):
        return ColumnType(Kind.TEXT, source_type=stype), decode_vector
    return None


# --------------------------------------------------------------------------------------------
# decoders from ColumnType (schemaless envelopes)

_KIND_DECODERS: Final[dict[Kind, Decoder]] = {
    Kind.INT16: decode_int16,
    Kind.INT32: decode_int32,
    Kind.INT64: decode_int64,
    Kind.VARDECIMAL: decode_variable_scale_decimal,
    Kind.FLOAT32: decode_float,
    Kind.FLOAT64: decode_float,
    Kind.BOOLEAN: decode_boolean,
    Kind.TEXT: decode_string,
    Kind.ENUM: decode_enum,
    Kind.BYTES: decode_bytes,
    Kind.DATE: decode_date,
    Kind.TIME: decode_micro_time,  # adaptive_time_microseconds: every time(p) is MicroTime
    Kind.TIMETZ: decode_zoned_time,
    Kind.TIMESTAMP: decode_micro_timestamp,  # assumes timestamp(4..6); (0..3) would be millis
    Kind.TIMESTAMPTZ: decode_zoned_timestamp,
    Kind.INTERVAL: decode_any_interval,
    Kind.UUID: decode_uuid,
    Kind.JSON: decode_json_value,
}

_KIND_ITEMS: Final[dict[Kind, dict[str, str]]] = {
    Kind.INT16: {"type": "int16"},
    Kind.INT32: {"type": "int32"},
    Kind.INT64: {"type": "int64"},
    Kind.FLOAT32: {"type": "float"},
    Kind.FLOAT64: {"type": "double"},
    Kind.BOOLEAN: {"type": "boolean"},
    Kind.TEXT: {"type": "string"},
    Kind.ENUM: {"type": "string"},
    Kind.JSON: {"type": "string"},
    Kind.BYTES: {"type": "bytes"},
    Kind.UUID: {"type": "string", "name": "io.debezium.data.Uuid"},
    Kind.DECIMAL: {"type": "bytes", "name": DECIMAL},
    Kind.VARDECIMAL: {"type": "struct", "name": VARIABLE_SCALE_DECIMAL},
    Kind.DATE: {"type": "int32"},
}


def decoder_for_type(column_type: ColumnType) -> Decoder:
    """The decoder for a value of ``column_type`` as Debezium would encode it without schema."""
    if column_type.kind is Kind.DECIMAL:
        return make_decimal_decoder(column_type.scale or 0, column_type.precision or 38)
    if column_type.kind is Kind.ARRAY:
        if column_type.element is None:
            raise DecodeError("array type without element type")
        items = _KIND_ITEMS.get(column_type.element.kind, {})
        check = array_toast_check(items) if items else _never_toast
        return _array_decoder(decoder_for_type(column_type.element), True, check)
    return _KIND_DECODERS[column_type.kind]
