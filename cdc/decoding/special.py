"""Fields read by their propagated source type rather than their Connect type alone: refused
types (:mod:`cdc.decoding.refusals`), numerics sent as text, ``bit(n)`` as its bit string, types
Debezium has no converter for (their text, sent as bytes), points and vectors as text."""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from cdc.decoding.common import (
    SOURCE_LENGTH,
    SOURCE_SCALE,
    DecodeError,
    Decoder,
    b64_placeholder,
    b64decode,
    decode_float,
    int_param,
    mismatch,
    source_type,
)
from cdc.decoding.numeric import (
    MAX_NUMERIC_PRECISION,
    MONEY_PRECISION,
    decimal_scale,
    make_decimal_text_decoder,
)
from cdc.decoding.refusals import refusal_for_source_type
from cdc.model import UNCHANGED_TOAST, ColumnType, Kind

_TEXT_DECIMAL_TYPES: Final = frozenset({"NUMERIC", "DECIMAL"})
MONEY_SCALE: Final = 2
"""Debezium's ``money.fraction.digits`` default: the scale ``money`` values are stored with."""
_MAX_BITS: Final = 83_886_080  # PostgreSQL's longest bit(n)


def _bits_decoder(length: int) -> Decoder:
    """io.debezium.data.Bits of a bit(n): little-endian bytes -> PostgreSQL's '0101' text."""

    def decode_bits(value: Any, placeholder: str) -> Any:
        if value.__class__ is not str:
            raise mismatch("base64 bits", value)
        if value == b64_placeholder(placeholder):
            return UNCHANGED_TOAST
        raw = b64decode(value)
        if len(raw) > length // 8 + 1:
            raise DecodeError(f"bit({length}) value has {len(raw)} bytes")
        number = int.from_bytes(raw, "little")
        if number >> length:
            raise DecodeError(f"bit({length}) value has more than {length} bits")
        return format(number, f"0{length}b")

    return decode_bits


def signed_scale(scale: int) -> int:
    """A numeric's scale as PostgreSQL declares it: the JDBC driver reports a negative scale
    (numeric(5,-2), PostgreSQL 15+) as its 11-bit two's complement (2046)."""
    return scale - 2048 if 1000 < scale < 2048 else scale


def _bit1_decoder(value: Any, placeholder: str) -> str:
    """bit(1) (Debezium sends it as a boolean) -> PostgreSQL's text, '0' or '1'."""
    if value.__class__ is not bool:
        raise mismatch("boolean bit", value)
    return "1" if value else "0"


def decode_text_bytes(value: Any, placeholder: str) -> Any:
    """A type Debezium doesn't know (``include.unknown.datatypes``): its PostgreSQL text form,
    sent as base64 bytes -> the text."""
    if value.__class__ is not str:
        raise mismatch("base64 text", value)
    if value == b64_placeholder(placeholder):
        return UNCHANGED_TOAST
    try:
        return b64decode(value).decode("utf-8")
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
        raise mismatch("Point struct", value)
    x, y = decode_float(value.get("x"), placeholder), decode_float(value.get("y"), placeholder)
    return f"({pg_float(x)},{pg_float(y)})"


def decode_vector(value: Any, placeholder: str) -> Any:
    """io.debezium.data.DoubleVector / FloatVector (pgvector) -> its text form ``[1,2.5]``."""
    if value.__class__ is not list:
        raise mismatch("vector array", value)
    return "[" + ",".join(pg_float(decode_float(v, placeholder)) for v in value) + "]"


def decode_sparse_vector(value: Any, placeholder: str) -> str:
    """io.debezium.data.SparseDoubleVector ``{dimensions, vector: {index: value}}`` (pgvector's
    sparsevec) -> its text form ``{1:1.5,3:-2}/5``."""
    if value.__class__ is not dict:
        raise mismatch("SparseDoubleVector struct", value)
    dimensions, entries = value.get("dimensions"), value.get("vector")
    if entries.__class__ is dict:  # a map: JSON object, or [key, value] pairs (int keys)
        entries = list(entries.items())
    if dimensions.__class__ is not int or entries.__class__ is not list:
        raise mismatch("SparseDoubleVector struct", value)
    try:
        items = sorted((int(k), decode_float(v, placeholder)) for k, v in entries)
    except (ValueError, TypeError):
        raise DecodeError("SparseDoubleVector entries are not [index, value] pairs") from None
    return "{" + ",".join(f"{i}:{pg_float(x)}" for i, x in items) + f"}}/{dimensions}"


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
        scale = signed_scale(decimal_scale(schema, SOURCE_SCALE))
        if 0 < length <= MAX_NUMERIC_PRECISION:
            # numeric(p,-s) (PostgreSQL 15+) holds integers of p+s digits
            shape = (length, scale) if scale >= 0 else (length - scale, 0)
            ctype = ColumnType(Kind.DECIMAL, precision=shape[0], scale=shape[1], source_type=stype)
            return ctype, make_decimal_text_decoder(scale, length)
        return ColumnType(Kind.VARDECIMAL, source_type=stype), make_decimal_text_decoder(None, None)
    if name is None and typ == "string" and upper == "MONEY":
        ctype = ColumnType(Kind.DECIMAL, precision=MONEY_PRECISION, scale=MONEY_SCALE)
        return replace(ctype, source_type=stype), make_decimal_text_decoder(None, None)
    if name is None and typ == "boolean" and upper == "BIT":  # bit(1) arrives as a boolean
        return ColumnType(Kind.TEXT, source_type=stype), _bit1_decoder
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
    if name == "io.debezium.data.SparseDoubleVector":
        return ColumnType(Kind.TEXT, source_type=stype), decode_sparse_vector
    if name in ("io.debezium.data.DoubleVector", "io.debezium.data.FloatVector"):
        return ColumnType(Kind.TEXT, source_type=stype), decode_vector
    return None
