"""PostgreSQL column types that can't be replicated exactly, and why: one table for both the
up-front catalog check (``cdc.source.type_support``) and the decoder (a column of such a type
that appears mid-stream is dead-lettered with the same reason, never decoded into a wrong value).

Each entry was seen on the real chain (Debezium 3.6, PostgreSQL 18, pgoutput): Debezium itself
loses the value, so no warehouse type or column override can bring it back. Keys are
PostgreSQL type names as ``pg_type.typname`` spells them (arrays with a leading ``_``), which
is also, upper-cased, what Debezium propagates as ``__debezium.source.column.type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a type can't be replicated exactly, and what the user can do about it."""

    reason: str
    action: str

    def message(self, type_name: str) -> str:
        return f"type {type_name} can't be replicated exactly: {self.reason}. {self.action}"


_ALTER_TEXT: Final = (
    "Store it as text at the source (ALTER TABLE ... ALTER COLUMN ... TYPE text USING ...::text), "
    "or leave the column out (source.debezium: column.exclude.list)"
)
_ALTER_TEXT_ARRAY: Final = (
    "Store it as text[] at the source (ALTER TABLE ... ALTER COLUMN ... TYPE text[] USING "
    "...::text[]), or leave the column out (source.debezium: column.exclude.list)"
)
_DROPPED: Final = Refusal(
    "Debezium 3.6 has no converter for arrays of this type and leaves the column out of every "
    "change event",
    _ALTER_TEXT_ARRAY,
)

REFUSED: Final[dict[str, Refusal]] = {
    "varbit": Refusal(
        "Debezium sends a bit varying value as bytes without its bit length (B'101' and "
        "B'0101' arrive the same, B'' and B'0000' too)",
        "Use bit(n) (fixed length) at the source, or store it as text",
    ),
    "int2vector": Refusal("Debezium sends int2vector values as empty arrays", _ALTER_TEXT),
    "oidvector": Refusal("Debezium sends oidvector values as empty arrays", _ALTER_TEXT),
    "_numeric": Refusal(
        "Debezium sends a numeric[] that holds NaN or Infinity as NULL for the whole array",
        _ALTER_TEXT_ARRAY,
    ),
    "_bit": Refusal("Debezium sends every bit(n)[] value as NULL", _ALTER_TEXT_ARRAY),
    "_time": Refusal("Debezium sends 24:00:00 inside a time[] as 00:00:00", _ALTER_TEXT_ARRAY),
    "_interval": _DROPPED,
    "_money": _DROPPED,
    "_varbit": _DROPPED,
    "_point": _DROPPED,
    "_name": _DROPPED,
    "_char": _DROPPED,
    "_int2vector": _DROPPED,
    "_oidvector": _DROPPED,
    "_xid": _DROPPED,
    "_pg_lsn": _DROPPED,
    "_tsvector": _DROPPED,
    "_tsquery": _DROPPED,
    "_line": _DROPPED,
    "_lseg": _DROPPED,
    "_path": _DROPPED,
    "_polygon": _DROPPED,
    "_circle": _DROPPED,
    "_macaddr8": _DROPPED,
}
"""``pg_type.typname`` -> why it is refused (see the module docstring)."""


def refusal_for_source_type(source_type: str | None) -> Refusal | None:
    """The refusal of a type named as Debezium propagates it (``VARBIT``, ``_NUMERIC``)."""
    return None if source_type is None else REFUSED.get(source_type.lower())
