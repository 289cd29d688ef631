"""Conformance fixtures: fakesnow's server (loopback) for the real Snowflake connector.

The server must start: a conformance run without its engine proves nothing, so a failure to
start fails the tests (it is never a skip).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector
from snowflake.connector import SnowflakeConnection

from warehouse.base import Warehouse
from warehouse.duckdb import DuckDBWarehouse
from warehouse.snowflake import SnowflakeSettings
from warehouse.snowflake_warehouse import SnowflakeWarehouse

DATABASE = "CONFORMANCE"

Connect = Callable[..., SnowflakeConnection]


@pytest.fixture(scope="session")
def fakesnow_kwargs(fakesnow_server: dict[str, Any]) -> dict[str, Any]:
    """Connection kwargs of the session's fakesnow server (tests/conftest.py)."""
    return fakesnow_server


@pytest.fixture
def snowflake_settings(fakesnow_kwargs: dict[str, Any]) -> SnowflakeSettings:
    """Settings for a fresh schema (its own per test) in the conformance database."""
    schema = f"T_{uuid.uuid4().hex[:12].upper()}"
    settings = SnowflakeSettings.from_fakesnow(fakesnow_kwargs, database=DATABASE, schema=schema)
    # the database must exist before the schema (a schema in a missing database: HTTP 500)
    with snowflake.connector.connect(**settings.connect_kwargs("setup", None)) as conn:
        cur = conn.cursor()
        cur.execute(f'CREATE DATABASE IF NOT EXISTS "{DATABASE}"')
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{DATABASE}"."{schema}"')
    return settings


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


@pytest.fixture(params=["duckdb", "snowflake"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """Each adapter in turn: a DuckDB file (``keep_open``), then Snowflake (fakesnow)."""
    w: Warehouse
    if request.param == "duckdb":
        w = DuckDBWarehouse(tmp_path / "contract.duckdb", keep_open=True)
    else:
        settings_: SnowflakeSettings = request.getfixturevalue("snowflake_settings")
        w = SnowflakeWarehouse(settings_, tmpdir=tmp_path)
    w.ensure_bookkeeping()
    yield w
    w.close()
