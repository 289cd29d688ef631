"""Numerics: Connect Decimals (precise mode), Debezium's VariableScaleDecimal, and numerics sent
as text (string mode: their digits, NaN, ±Infinity), each bounded by PostgreSQL's limits so
that no input makes the decoder do unbounded work."""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping
from typing import Any, Final

from cdc.decoding.common import (
    SOURCE_LENGTH,
    DecodeError,
    Decoder,
    b64decode,
    int_param,
    mismatch,
    source_type,
)

MAX_NUMERIC_PRECISION: Final = 1000
"""PostgreSQL's largest declared numeric precision; a larger one is not a declared precision."""
MAX_NUMERIC_SCALE: Final = 16383
"""PostgreSQL's largest numeric display scale; a scale beyond it is a malformed schema."""
MAX_NUMERIC_WEIGHT: Final = 131071
"""PostgreSQL numerics have at most 131072 digits before the decimal point."""
_MAX_DECIMAL_BYTES: Final = 62_000  # an unscaled value of PostgreSQL's 147455 digits at most
MONEY_PRECISION: Final = 19
"""``money`` is a 64-bit count of cents: at most 19 digits."""


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
            raise mismatch("base64 Decimal", value)
        if len(value) > _MAX_DECIMAL_BYTES * 4 // 3 + 4:
            raise DecodeError("Decimal bytes longer than any PostgreSQL numeric")
        raw = b64decode(value)
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
            raise mismatch("numeric text", value)
        special = _DECIMAL_SPECIALS.get(value)
        if special is not None:
            return special
        if len(value) > _MAX_DECIMAL_TEXT or not _DECIMAL_TEXT.fullmatch(value):
            raise mismatch("numeric text", value)
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


def decode_variable_scale_decimal(value: Any, placeholder: str) -> decimal.Decimal:
    """io.debezium.data.VariableScaleDecimal: ``{"scale": int, "value": base64 unscaled}``."""
    if value.__class__ is not dict:
        raise mismatch("VariableScaleDecimal struct", value)
    scale, raw = value.get("scale"), value.get("value")
    if scale.__class__ is not int:
        raise mismatch("int32 scale", scale)
    if raw.__class__ is not str:
        raise mismatch("base64 value", raw)
    if not -MAX_NUMERIC_SCALE <= scale <= MAX_NUMERIC_SCALE:
        raise DecodeError(f"VariableScaleDecimal scale {scale} is out of range")
    if len(raw) > _MAX_DECIMAL_BYTES * 4 // 3 + 4:
        raise DecodeError("VariableScaleDecimal bytes longer than any PostgreSQL numeric")
    data = b64decode(raw)
    if not data:
        raise DecodeError("empty VariableScaleDecimal bytes")
    return _to_decimal(int.from_bytes(data, "big", signed=True), scale)
