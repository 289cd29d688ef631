"""Sections of ``cdc.yaml`` saved as Prefect blocks (``source: {block: <type>/<name>}``), for
the command line: Prefect is imported only when a configuration file names a block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def load_block_section(section: str, ref: str) -> Mapping[str, Any]:
    """The section Prefect block ``ref`` holds (see :func:`blocks.load_section`)."""
    from blocks import load_section

    return load_section(section, ref)
