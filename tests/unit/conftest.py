"""Unit tests start no server: no fakesnow server, no Prefect server, no local stack, no real
Snowflake account (``make unit`` runs them alone, in under two minutes).

The shared fixtures that would start one are overridden here to fail, naming where such a
test belongs, and a unit module using Prefect's test harness or a suite marker is refused at
collection, before anything starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest

UNIT = Path(__file__).parent
SUITE_MARKERS = ("integration", "conformance", "faults", "soak")


def _no_server(what: str, where: str) -> NoReturn:
    pytest.fail(f"a unit test asked for {what}: unit tests start no server; move it to {where}")


@pytest.fixture(scope="session")
def fakesnow_server() -> NoReturn:
    _no_server("fakesnow's server", "tests/conformance")


@pytest.fixture
def real_snowflake_settings() -> NoReturn:
    _no_server("a real Snowflake account", "tests/conformance")


@pytest.fixture(scope="session")
def stack() -> NoReturn:
    _no_server("the local stack", "tests/integration")


@pytest.fixture
def pipeline() -> NoReturn:
    _no_server("the local stack", "tests/integration")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse unit tests that would start a server the fixtures above don't cover."""
    problems = []
    for item in items:
        if not item.path.is_relative_to(UNIT):
            continue  # this hook sees every item of the session
        marks = [m for m in SUITE_MARKERS if item.get_closest_marker(m)]
        if marks:
            problems.append(f"{item.nodeid}: marked {marks}: move it to its suite's folder")
        module = getattr(item, "module", None)
        if module is not None and "prefect_test_harness" in vars(module):
            problems.append(
                f"{item.nodeid}: uses Prefect's test harness (a server): move it to "
                "tests/integration"
            )
    if problems:
        raise pytest.UsageError("unit tests start no server:\n" + "\n".join(problems))
