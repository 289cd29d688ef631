"""Shared pytest set-up: one fakesnow server for the whole session (``cdc.local.fakesnow_server``,
which `cdc demo --warehouse snowflake-local` runs too), the ``wh`` fixture: each warehouse
adapter in turn, and the real local stack's ``stack`` and ``pipeline`` fixtures
(``stack_support``), shared by the integration and the fault tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector
from stack_support import pipeline, stack

from cdc.local.fakesnow_server import fakesnow_server as start_fakesnow
from warehouse.base import Warehouse
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.snowflake.adapter import SnowflakeWarehouse
from warehouse.snowflake.settings import SnowflakeSettings

__all__ = ["pipeline", "stack"]  # the stack's fixtures, for every test directory


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


# A real Snowflake account, opt-in: the same tests run on it when these are set (else skipped)
REAL_SNOWFLAKE = ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_DATABASE")
REAL_SNOWFLAKE_AUTH = ("SNOWFLAKE_PASSWORD", "SNOWFLAKE_PRIVATE_KEY_PATH")


@pytest.fixture
def real_snowflake_settings() -> Iterator[SnowflakeSettings]:
    """Settings for a fresh schema in the account named by ``SNOWFLAKE_*`` (skipped when
    they are not set); the schema and its bookkeeping schema are dropped afterwards."""
    env = os.environ
    missing = [n for n in REAL_SNOWFLAKE if not env.get(n)]
    if missing or not any(env.get(n) for n in REAL_SNOWFLAKE_AUTH):
        pytest.skip(
            "no Snowflake account configured: set SNOWFLAKE_ACCOUNT, SNOWFLAKE_USER, "
            "SNOWFLAKE_DATABASE and SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH "
            "(optional: SNOWFLAKE_ROLE, SNOWFLAKE_WAREHOUSE) to run this on a real account"
        )
    schema = f"CDC_TEST_{uuid.uuid4().hex[:12].upper()}"
    key = env.get("SNOWFLAKE_PRIVATE_KEY_PATH")
    settings = SnowflakeSettings(
        account=env["SNOWFLAKE_ACCOUNT"],
        user=env["SNOWFLAKE_USER"],
        password=None if key else env.get("SNOWFLAKE_PASSWORD"),
        private_key_path=Path(key) if key else None,
        role=env.get("SNOWFLAKE_ROLE"),
        warehouse=env.get("SNOWFLAKE_WAREHOUSE"),
        database=env["SNOWFLAKE_DATABASE"],
        schema=schema,
        query_tag_prefix="cdc-replicator-tests",
    )
    yield settings
    with snowflake.connector.connect(**settings.connect_kwargs("teardown", None)) as conn:
        for name in (schema, f"_CDC_{schema}"):
            conn.cursor().execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["duckdb", "snowflake", "snowflake-real"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """Each adapter in turn: a DuckDB file (``keep_open``), Snowflake on fakesnow's server,
    and a real Snowflake account when ``SNOWFLAKE_*`` are set (skipped otherwise)."""
    w: Warehouse
    if request.param == "duckdb":
        w = DuckDBWarehouse(tmp_path / "contract.duckdb", keep_open=True)
    else:
        fixture = (
            "snowflake_settings" if request.param == "snowflake" else "real_snowflake_settings"
        )
        settings_: SnowflakeSettings = request.getfixturevalue(fixture)
        w = SnowflakeWarehouse(settings_, tmpdir=tmp_path)
    w.ensure_bookkeeping()
    yield w
    w.close()
