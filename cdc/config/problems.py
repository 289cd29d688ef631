"""What is wrong with a configuration file, and where: :class:`Problem`, :class:`ConfigError`
and the key paths (``Loc``) problems are reported at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Loc = tuple[str | int, ...]
"""A key path in the file: section and key names, list indexes."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration file."""

    file: str
    line: int
    path: str  # dotted key path, e.g. ``tables[1].mode``; empty for the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where} {self.message}"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid.

    ``problems`` lists every problem found; ``str(error)`` has one line per problem in the form
    ``cdc.yaml:LINE: dotted.key.path: what is wrong``.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))


def dotted(loc: Loc) -> str:
    """``tables[1].mode`` for ``("tables", 1, "mode")``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def line_of(loc: Loc, lines: Mapping[Loc, int]) -> int:
    """The line of ``loc``, else of its nearest written parent, else 1."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1
