"""What every engine's settings share: they are sections of ``cdc.yaml`` (the ``warehouse``
section, chosen by ``type``), read with the same rules as every other section.

Engines' settings models live in ``warehouse/<engine>/settings.py``; the discriminated union
of them is :data:`warehouse.factory.WarehouseSection`. This module imports nothing of ``cdc``,
so ``cdc.config`` can build on it without a cycle.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


class SectionModel(BaseModel):
    """A section of ``cdc.yaml``: keys by their YAML names only, unknown keys refused, frozen."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=False
    )

    def where(self) -> str:
        """Where this warehouse is, for messages (no secrets)."""
        return str(getattr(self, "type", "warehouse"))

    def missing_store(self) -> str | None:
        """Why reading this warehouse can't find anything yet (its file doesn't exist...),
        or None; readers that must not create it (``cdc history``) check this first."""
        return None


def check_identifier(value: str) -> str:
    """A plain identifier (PostgreSQL's rules; the warehouses accept them unquoted too)."""
    if not _IDENTIFIER_RE.fullmatch(value):
        raise PydanticCustomError(
            "pg_identifier",
            "must be a plain PostgreSQL identifier: a letter or _ then letters, digits, _ or $ "
            "(at most 63 characters)",
        )
    return value


def relative_to_config(value: Path, info: ValidationInfo) -> Path:
    """A relative path against the configuration file's folder (validation context
    ``config_dir``, set by ``cdc.config``); as given when validated without one."""
    if value.is_absolute():
        return value
    base = (info.context or {}).get("config_dir")
    return (Path(base) / value) if base is not None else value
