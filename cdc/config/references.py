"""Sections saved elsewhere: a section written as ``{block: <type>/<name>}`` is replaced by the
section a *section loader* returns for it (the Prefect blocks of :mod:`blocks`).

``cdc.config`` doesn't import the loader; the program that loads configurations installs it
(:func:`use_section_loader`): :mod:`blocks` does so when imported, the ``cdc`` command on start,
the flows by importing :mod:`blocks`. A loader can also be passed to
:func:`cdc.config.parse_config` / :func:`cdc.config.load_config` directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cdc.config.problems import Loc, Problem, line_of

SectionLoader = Callable[[str, str], Mapping[str, Any]]
"""``(section, reference) -> the section's mapping`` (as it would be written inline); raises
when the reference can't be loaded, with a message saying why."""

BLOCK_SECTIONS = ("source", "kafka", "connect", "warehouse")

_installed: SectionLoader | None = None


def use_section_loader(loader: SectionLoader | None) -> None:
    """Resolve ``{block: ...}`` sections with ``loader`` from now on (None: no longer)."""
    global _installed
    _installed = loader


def installed_section_loader() -> SectionLoader | None:
    """The loader :func:`use_section_loader` installed, if any."""
    return _installed


def resolve_references(
    data: dict[str, Any], file: str, lines: Mapping[Loc, int], loader: SectionLoader | None
) -> list[Problem]:
    """Replace each section written as ``{block: <type>/<name>}`` by the section ``loader``
    returns for it; a reference that can't be loaded is a problem naming the line."""
    problems = []
    for section in BLOCK_SECTIONS:
        value = data.get(section)
        if not (isinstance(value, dict) and set(value) == {"block"}):
            continue
        ref = value["block"]
        line = line_of((section, "block"), lines)
        if loader is None:
            problems.append(
                Problem(file, line, section, f"block {ref!r} could not be loaded: no section "
                        "loader is installed (import the `blocks` package before loading the "
                        "configuration, as the `cdc` command and the flows do)")
            )  # fmt: skip
            continue
        try:
            data[section] = dict(loader(section, str(ref)))
        except Exception as exc:  # Prefect raises several types for a missing block or API
            problems.append(
                Problem(
                    file,
                    line,
                    section,
                    f"block {ref!r} could not be loaded: {exc}. Check the name "
                    "(`prefect block ls`) and that PREFECT_API_URL points at your Prefect server",
                )
            )
    return problems
