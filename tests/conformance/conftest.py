"""Conformance fixtures: fakesnow's server (loopback) for the real Snowflake connector.

The server must start: a conformance run without its engine proves nothing, so a failure to
start fails the tests (it is never a skip).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import snowflake.connector
from snowflake.connector import SnowflakeConnection

from warehouse.snowflake.settings import SnowflakeSettings

Connect = Callable[..., SnowflakeConnection]


@pytest.fixture
def connect(snowflake_settings: SnowflakeSettings) -> Iterator[Connect]:
    """Open connections to the test's schema (closed at teardown, even on failure)."""
    opened: list[SnowflakeConnection] = []

    def open_one(job: str = "test", table: str | None = None) -> SnowflakeConnection:
        conn = snowflake.connector.connect(**snowflake_settings.connect_kwargs(job, table))
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        conn.close()
