"""What every field decoder shares: the decoder types, :class:`DecodeError`, schema parameters,
base64 and the unchanged-TOAST placeholders, and floats (Debezium's "NaN"/"Infinity" strings)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import uuid
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

import orjson

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


def mismatch(expected: str, value: Any) -> DecodeError:
    if value.__class__ is int and value.bit_length() > 200:  # repr of a huge int is slow
        return DecodeError(f"expected {expected}, got an int of {value.bit_length()} bits")
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return DecodeError(f"expected {expected}, got {type(value).__name__} {shown}")


def b64decode(value: str) -> bytes:
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"invalid base64: {exc}") from None


@lru_cache(maxsize=16)
def b64_placeholder(placeholder: str) -> str:
    return base64.b64encode(placeholder.encode()).decode()


@lru_cache(maxsize=16)
def hstore_placeholder(placeholder: str) -> str:
    # hstore.handling.mode=json: Debezium renders the TOAST marker as {"<ph>":"<ph>"}
    return orjson.dumps({placeholder: placeholder}).decode()


@lru_cache(maxsize=16)
def uuid_placeholder(placeholder: str) -> str:
    # Java UUID.nameUUIDFromBytes: MD5, version 3 (Debezium's placeholder for uuid[] elements)
    return str(uuid.UUID(bytes=hashlib.md5(placeholder.encode()).digest(), version=3))


def params(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    params = schema.get("parameters")
    return params if isinstance(params, Mapping) else {}


_MAX_PARAM_DIGITS: Final = 12


def int_param(schema: Mapping[str, Any], name: str) -> int | None:
    """An integer schema parameter (Connect JSON carries parameters as strings), or None."""
    raw = params(schema).get(name)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str) or len(str(raw)) > _MAX_PARAM_DIGITS:
        raise DecodeError(f"schema parameter {name}={str(raw)[:20]!r} is not a bounded integer")
    try:
        return int(raw)
    except ValueError:
        raise DecodeError(f"schema parameter {name}={raw!r} is not an integer") from None


SOURCE_TYPE: Final = "__debezium.source.column.type"
SOURCE_LENGTH: Final = "__debezium.source.column.length"
SOURCE_SCALE: Final = "__debezium.source.column.scale"


def source_type(schema: Mapping[str, Any]) -> str | None:
    """The PostgreSQL type name Debezium propagates (``column.propagate.source.type``)."""
    value = params(schema).get(SOURCE_TYPE)
    return value if isinstance(value, str) else None


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
    raise mismatch("float", value)
