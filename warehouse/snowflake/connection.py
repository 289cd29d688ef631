"""Snowflake building blocks: connection settings, error classification, types and staging.

This module is the base the Snowflake adapter (``snowflake_warehouse``) is built on; it holds
no apply logic.
Everything was checked against fakesnow 0.12.1 in server mode with the real
snowflake-connector-python 4.8.1 (``tests/conformance``); what fakesnow cannot prove is listed
in ``tests/conformance/test_snowflake_staging.py``.

Connection and query tag
------------------------
:class:`SnowflakeSettings` holds the connection settings (password as ``SecretStr`` or a
key-pair file). :meth:`SnowflakeSettings.connect_kwargs` gives the arguments of
``snowflake.connector.connect``, with a JSON ``QUERY_TAG`` (``{"app", "job", "table"}``) as a
session parameter, merged into (never replacing) any other session parameters. fakesnow accepts
the tag at connect but can't read it back and doesn't implement ``ALTER SESSION SET QUERY_TAG``,
so a different tag means a new connection. ``paramstyle`` is always ``qmark``: the values are
then bound on the server. The connector's default ``pyformat`` formats values into the SQL
text on the client, which this project never allows. Don't bind ``Decimal`` or a NULL
``TIMESTAMP_TZ`` with qmark on fakesnow (HTTP 500). Batches are staged as Parquet (below), and
only scalar bookkeeping values (group, topic, partition, offset) are bound.

The rest of the engine's building blocks live in sibling modules, re-exported here:
:mod:`warehouse.snowflake.errors` (error classification), :mod:`warehouse.snowflake.types`
(column types) and :mod:`warehouse.snowflake.staging` (Arrow staged as Parquet, PUT + COPY).
"""

from __future__ import annotations

from warehouse.snowflake.errors import (
    AUTH_REJECTED,
    BAD_VALUE,
    CONNECTION,
    SESSION_EXPIRED,
    STATEMENT,
    classify,
    map_error,
)
from warehouse.snowflake.staging import (
    QualifiedName,
    create_stage,
    create_staging_table,
    json_text,
    parquet_ready,
    stage_arrow,
    staged_value,
    staging_columns,
    staging_type,
)
from warehouse.snowflake.types import (
    DIALECT,
    number,
    render_type,
    snowflake_type,
    time6,
    timestamp_ntz6,
    timestamp_tz6,
)

__all__ = [
    "AUTH_REJECTED", "BAD_VALUE", "CONNECTION", "DIALECT", "SESSION_EXPIRED", "STATEMENT",
    "QualifiedName", "classify", "create_stage", "create_staging_table", "json_text",
    "map_error", "number", "parquet_ready", "render_type", "snowflake_type", "stage_arrow",
    "staged_value", "staging_columns", "staging_type", "time6", "timestamp_ntz6",
    "timestamp_tz6",
]  # fmt: skip
