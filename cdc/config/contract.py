"""A table's data contract (``tables[].checks``): one entry per column's checks or custom
check."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cdc.config.checks import import_check
from warehouse.settings import SectionModel


class LengthConfig(SectionModel):
    """Bounds of a string length check (either or both)."""

    min: int | None = Field(default=None, ge=0, description="Shortest allowed length.")
    max: int | None = Field(default=None, ge=0, description="Longest allowed length.")

    @model_validator(mode="after")
    def _bounds(self) -> LengthConfig:
        if self.min is None and self.max is None:
            raise PydanticCustomError("length_bounds", "give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("length_bounds", "min is greater than max")
        return self


Bound = int | float | str


class CheckConfig(SectionModel):
    """One entry of a table's `checks`: checks on one column, or one custom check."""

    column: str | None = Field(default=None, description="The column the checks apply to.")
    not_null: bool = Field(default=False, description="The value must not be NULL.")
    ge: Bound | None = Field(default=None, alias=">=", description="Value >= this.")
    le: Bound | None = Field(default=None, alias="<=", description="Value <= this.")
    between: list[Bound] | None = Field(
        default=None, description="[low, high]: low <= value <= high."
    )
    allowed: list[Bound] | None = Field(default=None, description="The allowed values.")
    pattern: str | None = Field(
        default=None, description="Regular expression the text must match from its start."
    )
    length: LengthConfig | None = Field(default=None, description="Text length bounds.")
    unique: bool = Field(default=False, description="No two keys share the value within one batch.")
    custom: str | None = Field(
        default=None,
        description="`package.module.function` taking the batch as a polars DataFrame and "
        "returning a boolean Series or Expr (true = the row passes).",
    )

    @field_validator("between")
    @classmethod
    def _between(cls, value: list[Bound] | None) -> list[Bound] | None:
        if value is not None and len(value) != 2:
            raise PydanticCustomError("between", "must be [low, high]")
        return value

    @field_validator("allowed")
    @classmethod
    def _allowed(cls, value: list[Bound] | None) -> list[Bound] | None:
        if value is not None and not value:
            raise PydanticCustomError("allowed_empty", "must list at least one value")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise PydanticCustomError(
                    "pattern", "is not a valid regular expression: {error}", {"error": str(exc)}
                ) from None
        return value

    @field_validator("custom")
    @classmethod
    def _custom(cls, value: str | None) -> str | None:
        if value is not None:
            import_check(value)
        return value

    @model_validator(mode="after")
    def _shape(self) -> CheckConfig:
        kinds = self.kinds()
        if (self.column is None) == (self.custom is None):
            raise PydanticCustomError(
                "check_shape", "give either `column` (with its checks) or `custom`, not both"
            )
        if self.column is not None and not kinds:
            raise PydanticCustomError(
                "check_shape",
                "names a column but no check: add not_null, '>=', '<=', between, allowed, "
                "pattern, length or unique",
            )
        return self

    def kinds(self) -> list[tuple[str, Any]]:
        """(kind, value) of every check this entry declares, custom excluded."""
        out: list[tuple[str, Any]] = []
        if self.not_null:
            out.append(("not_null", None))
        for kind, value in (("ge", self.ge), ("le", self.le)):
            if value is not None:
                out.append((kind, value))
        if self.between is not None:
            out.append(("between", tuple(self.between)))
        if self.allowed is not None:
            out.append(("allowed", tuple(self.allowed)))
        if self.pattern is not None:
            out.append(("pattern", self.pattern))
        if self.length is not None:
            out.append(("length", (self.length.min, self.length.max)))
        if self.unique:
            out.append(("unique", None))
        return out
