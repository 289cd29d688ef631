"""What a table's contract says, independent of how it was written in cdc.yaml (pure data)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

OnViolation = Literal["quarantine", "dlq", "fail"]
CheckKind = Literal[
    "not_null", "ge", "le", "between", "allowed", "pattern", "length", "unique", "custom"
]


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One check. ``name`` is what logs, metrics, quarantine rows and dead letters show, e.g.
    ``email: pattern ^[^@]+@[^@]+$``; ``where`` is its place in cdc.yaml (``file:line key``).

    ``value`` by kind: ge/le a number or string; between ``(low, high)``; allowed a tuple;
    pattern a regex; length ``(min | None, max | None)``; custom the callable, which gets the
    batch as a ``polars.DataFrame`` (one row per inserted/updated row) and returns a boolean
    ``polars.Series`` or ``polars.Expr`` (true = the row passes).
    """

    name: str
    kind: CheckKind
    column: str | None = None
    value: Any = None
    where: str = ""

    @property
    def function(self) -> Callable[..., Any]:
        assert self.kind == "custom" and callable(self.value)
        return self.value  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class TableContract:
    """The checks of one table and what happens to rows that fail them."""

    table: str  # the warehouse table name
    checks: tuple[CheckSpec, ...]
    on_violation: OnViolation = "quarantine"


def check_name(kind: str, column: str | None, value: Any) -> str:
    """The display name of a check: ``column: kind value``."""
    # only the given kind's form is built: the others would misread its value
    if kind in ("ge", "le"):
        shown = f"{'>=' if kind == 'ge' else '<='} {value}"
    elif kind == "between":
        shown = f"between {value[0]} and {value[1]}"
    elif kind == "allowed":
        shown = f"in {list(value)}"
    elif kind == "length":
        shown = _length_name(value)
    else:
        shown = {
            "not_null": "not null",
            "pattern": f"pattern {value}",
            "unique": "unique in the batch",
            "custom": f"custom {value}",
        }[kind]
    return shown if column is None else f"{column}: {shown}"


def _length_name(value: Any) -> str:
    if not isinstance(value, Sequence):
        return "length"
    low, high = value
    if low is not None and high is not None:
        return f"length {low}..{high}"
    return f"length >= {low}" if low is not None else f"length <= {high}"
