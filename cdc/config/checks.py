"""Value checks and value types shared by the section models (secrets, names, durations)."""

from __future__ import annotations

import datetime as dt
import importlib
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr
from pydantic_core import PydanticCustomError

from cdc.names import BadNameError, display, parse_table
from warehouse.settings import check_identifier as check_pg_identifier

__all__ = [
    "ClientValue",
    "Duration",
    "PropertyValue",
    "check_connector_name",
    "check_http_url",
    "check_metadata_prefix",
    "check_pg_identifier",
    "check_slot_name",
    "check_topic_part",
    "check_warehouse_name",
    "format_duration",
    "import_check",
    "is_secret_key",
    "qualified_table",
    "reveal",
    "wrap_secrets",
]

_SECRET_KEY_PARTS = ("password", "secret", "sasl")


def is_secret_key(key: str) -> bool:
    """True when a setting's name marks its value as a secret (password, secret, sasl)."""
    lowered = key.lower()
    return any(part in lowered for part in _SECRET_KEY_PARTS)


_PG_SLOT_RE = re.compile(r"[a-z0-9_]{1,63}")
_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")
_CONNECTOR_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")


def check_slot_name(value: str) -> str:
    if not _PG_SLOT_RE.fullmatch(value):
        raise PydanticCustomError(
            "pg_slot_name",
            "must be a valid replication slot name: 1-63 characters of a-z, 0-9 and _",
        )
    return value


def check_topic_part(value: str) -> str:
    if not _TOPIC_RE.fullmatch(value):
        raise PydanticCustomError(
            "kafka_topic", "must be 1-200 characters of letters, digits, '.', '_' and '-'"
        )
    return value


def check_connector_name(value: str) -> str:
    if not _CONNECTOR_NAME_RE.fullmatch(value):
        raise PydanticCustomError(
            "connector_name", "must be 1-200 characters of letters, digits, '.', '_' and '-'"
        )
    return value


def check_metadata_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", value):
        raise PydanticCustomError(
            "metadata_prefix", "must start with a letter or _ and hold only letters, digits and _"
        )
    return value


def check_http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise PydanticCustomError("http_url", "must be an http:// or https:// URL")
    return value.rstrip("/")


def qualified_table(value: str, error: str, alternative: str = "") -> str:
    """The canonical ``schema.table`` (cdc.names.display) of ``schema.table`` or ``table``
    (``public``); parts are plain identifiers or PostgreSQL's quoted form."""
    try:
        return display(parse_table(value))
    except BadNameError as exc:
        raise PydanticCustomError(error, f"{exc}{alternative}") from None


def check_warehouse_name(value: str) -> str:
    if not value or "\x00" in value or len(value) > 200:
        raise PydanticCustomError(
            "warehouse_name", "must be 1 to 200 characters (any, but no NUL character)"
        )
    return value


# --------------------------------------------------------------------------------------------
# Settings passed through to Debezium, librdkafka and fsspec; secrets among them


def _to_property_string(value: Any) -> Any:
    """Debezium/Connect properties are strings; accept YAML numbers and booleans too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _check_scalar_setting(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str | int | bool) or isinstance(value, float):
        raise PydanticCustomError("client_setting", "must be a string, an integer or a boolean")
    return value


PropertyValue = Annotated[str | SecretStr, BeforeValidator(_to_property_string)]
ClientValue = Annotated[str | int | bool | SecretStr, BeforeValidator(_check_scalar_setting)]


def wrap_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every value whose key names a secret held as ``SecretStr``."""
    return {
        key: SecretStr(str(_to_property_string(value)))
        if is_secret_key(key) and not isinstance(value, SecretStr)
        else value
        for key, value in values.items()
    }


def reveal(value: Any) -> Any:
    """The value of a ``SecretStr``; any other value as it is."""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# --------------------------------------------------------------------------------------------
# Durations and custom checks

_DURATION_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w|y)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _duration(value: Any) -> dt.timedelta:
    """``30d``, ``12h``, ``10m``, ``45s``, ``2w``, ``7y`` (365 days), or a number of seconds."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    match = _DURATION_RE.match(str(value))
    if not match:
        raise PydanticCustomError(
            "duration",
            "must be a duration like 30d, 12h, 10m, 45s, 2w or 7y (365 days)",
        )
    return dt.timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])


Duration = Annotated[dt.timedelta, BeforeValidator(_duration)]


def format_duration(value: dt.timedelta) -> str:
    """A duration as whole days, hours, minutes or seconds (``30d``, ``2555d``, ``10m``)."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def import_check(path: str) -> Any:
    """The function a custom check's ``package.module.function`` names."""
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise PydanticCustomError("custom_path", "must be a dotted path: package.module.function")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PydanticCustomError(
            "custom_import", "can't import {path}: {error}", {"path": path, "error": str(exc)}
        ) from None
    if not callable(function):
        raise PydanticCustomError("custom_import", "{path} is not callable", {"path": path})
    return function
