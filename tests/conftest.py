"""Shared pytest set-up: one fakesnow server for the whole session (``cdc.local.fakesnow_server``,
which `cdc demo --warehouse snowflake-local` runs too), and the ``wh`` fixture: each warehouse
adapter in turn."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector

from cdc.local.fakesnow_server import fakesnow_server as start_fakesnow
from warehouse.base import Warehouse
from warehouse.duckdb import DuckDBWarehouse
from warehouse.snowflake import SnowflakeSettings
from warehouse.snowflake_warehouse import SnowflakeWarehouse


@pytest.fixture(scope="session")
def fakesnow_server() -> Iterator[dict[str, Any]]:
    """Connection kwargs of fakesnow's server (Snowflake's SQL on DuckDB, 127.0.0.1 only) for
    the real Snowflake connector. It must start: a failure fails the tests, never skips them."""
    try:
        server = start_fakesnow()
        kwargs = server.__enter__()
    except Exception as exc:
        pytest.fail(f"fakesnow's server did not start: {type(exc).__name__}: {exc}")
    try:
        assert kwargs["host"] == "127.0.0.1"
        yield dict(kwargs)
    finally:
        server.__exit__(None, None, None)


DATABASE = "CONFORMANCE"


@pytest.fixture
def snowflake_settings(fakesnow_server: dict[str, Any]) -> SnowflakeSettings:
    """Settings for a fresh schema (its own per test) in the conformance database."""
    schema = f"T_{uuid.uuid4().hex[:12].upper()}"
    settings = SnowflakeSettings.from_fakesnow(fakesnow_server, database=DATABASE, schema=schema)
    # the database must exist before the schema (a schema in a missing database: HTTP 500)
    with snowflake.connector.connect(**settings.connect_kwargs("setup", None)) as conn:
        cur = conn.cursor()
        cur.execute(f'CREATE DATABASE IF NOT EXISTS "{DATABASE}"')
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{DATABASE}"."{schema}"')
    return settings


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
