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
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import orjson

from cdc.decoding.common import (
    DEFAULT_TOAST_PLACEHOLDER,
    SOURCE_LENGTH,
    SOURCE_SCALE,
    SOURCE_TYPE,
    DecodeError,
    Decoder,
    DecoderFactory,
    b64_placeholder,
    b64decode,
    decode_float,
    hstore_placeholder,
    int_param,
    mismatch,
    params,
    source_type,
    uuid_placeholder,
)
from cdc.decoding.numeric import (
    MAX_NUMERIC_PRECISION,
    MAX_NUMERIC_SCALE,
    MONEY_PRECISION,
    decimal_precision,
    decimal_scale,
    decode_variable_scale_decimal,
    make_decimal_decoder,
    make_decimal_text_decoder,
)
from cdc.decoding.special import MONEY_SCALE, pg_float, special_field
from cdc.decoding.temporal import (
    decode_any_interval,
    decode_date,
    decode_interval,
    decode_micro_duration,
    decode_micro_time,
    decode_micro_timestamp,
    decode_nano_time,
    decode_nano_timestamp,
    decode_time_millis,
    decode_timestamp_millis,
    decode_zoned_time,
    decode_zoned_timestamp,
    parse_interval,
    time_from_micros,
    timestamp_from_micros,
)
from cdc.model import UNCHANGED_TOAST, ColumnType, Kind

__all__ = [
    "DEFAULT_TOAST_PLACEHOLDER",
    "MAX_NUMERIC_PRECISION",
    "MAX_NUMERIC_SCALE",
    "MONEY_PRECISION",
    "MONEY_SCALE",
    "SOURCE_LENGTH",
    "SOURCE_SCALE",
    "SOURCE_TYPE",
    "DecodeError",
    "Decoder",
    "DecoderFactory",
    "decimal_precision",
    "decimal_scale",
    "decode_float",
    "int_param",
    "make_decimal_decoder",
    "make_decimal_text_decoder",
    "parse_interval",
    "pg_float",
    "source_type",
    "special_field",
    "time_from_micros",
    "timestamp_from_micros",
]

# --------------------------------------------------------------------------------------------
# primitives


def _int_decoder(bits: int) -> Decoder:
    low, high, label = -(1 << (bits - 1)), (1 << (bits - 1)) - 1, f"int{bits}"

    def decode_int(value: Any, placeholder: str) -> int:
        if value.__class__ is int and low <= value <= high:
            return int(value)
        raise mismatch(label, value)

    return decode_int


decode_int8 = _int_decoder(8)
decode_int16 = _int_decoder(16)
decode_int32 = _int_decoder(32)
decode_int64 = _int_decoder(64)


def decode_boolean(value: Any, placeholder: str) -> bool:
    if value.__class__ is bool:
        return bool(value)
    raise mismatch("boolean", value)


def decode_string(value: Any, placeholder: str) -> Any:
    """string (text, varchar, char, inet, xml, ...); the placeholder means unchanged TOAST."""
    if value.__class__ is not str:
        raise mismatch("string", value)
    if value == placeholder:
        return UNCHANGED_TOAST
    return value


def decode_bytes(value: Any, placeholder: str) -> Any:
    """bytes (bytea, bit varying): base64 text; the base64 of the placeholder means TOAST."""
    if value.__class__ is not str:
        raise mismatch("base64 string", value)
    if value == b64_placeholder(placeholder):
        return UNCHANGED_TOAST
    return b64decode(value)


def decode_json(value: Any, placeholder: str) -> Any:
    """io.debezium.data.Json (json, jsonb, hstore): the JSON text exactly as sent."""
    if value.__class__ is not str:
        raise mismatch("JSON text string", value)
    if value == placeholder or value == hstore_placeholder(placeholder):
        return UNCHANGED_TOAST
    return value


def decode_json_value(value: Any, placeholder: str) -> Any:
    """map / unnamed struct / inferred objects: re-serialised as JSON text (strings pass)."""
    if value.__class__ is str:
        return decode_json(value, placeholder)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    raise mismatch("JSON object", value)


def _array_decoder(element: Decoder, element_optional: bool, is_toast: ToastCheck) -> Decoder:
    def decode_array(value: Any, placeholder: str) -> Any:
        if value.__class__ is not list:
            raise mismatch("array", value)
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
            return lambda value, ph: uuid_placeholder(ph) in value
        return lambda value, ph: ph in value
    if typ == "bytes" and name != DECIMAL:
        return lambda value, ph: b64_placeholder(ph) in value
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


def _decimal_factory(schema: Mapping[str, Any]) -> Decoder:
    return make_decimal_decoder(decimal_scale(schema), decimal_precision(schema))


# --------------------------------------------------------------------------------------------
# dates and times

# --------------------------------------------------------------------------------------------
# strings with meaning


def decode_uuid(value: Any, placeholder: str) -> uuid.UUID:
    """io.debezium.data.Uuid: the canonical text form."""
    if value.__class__ is not str:
        raise mismatch("uuid string", value)
    try:
        return uuid.UUID(value)
    except ValueError:
        raise DecodeError(f"invalid uuid {value!r}") from None


def decode_enum(value: Any, placeholder: str) -> str:
    """io.debezium.data.Enum: the label as a string."""
    if value.__class__ is not str:
        raise mismatch("enum label string", value)
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
    item_params = dict(params(items))
    item_params[SOURCE_TYPE] = stype[1:]
    return {**items, "parameters": item_params}


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
        return make_decimal_decoder(column_type.scale or 0, column_type.precision)
    if column_type.kind is Kind.ARRAY:
        if column_type.element is None:
            raise DecodeError("array type without element type")
        items = _KIND_ITEMS.get(column_type.element.kind, {})
        check = array_toast_check(items) if items else _never_toast
        return _array_decoder(decoder_for_type(column_type.element), True, check)
    return _KIND_DECODERS[column_type.kind]
