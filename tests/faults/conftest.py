"""Every test under ``tests/faults`` carries the ``faults`` marker (``pytest -m faults`` runs
the fault suite alone, ``-m "not faults"`` leaves it out)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.faults)
