"""The Snowflake engine: settings, adapter, error classification, types, staging, tiering.

The adapter (:mod:`.adapter`) supplies the hooks of the engine-neutral template
(:mod:`warehouse.engine`); the apply logic is not here.
Everything was checked against fakesnow 0.12.1 in server mode with the real
snowflake-connector-python 4.8.1 (``tests/conformance``); what fakesnow cannot prove is listed
in ``tests/conformance/test_snowflake_staging.py``.

Connection and query tag
------------------------
:class:`~warehouse.snowflake.settings.SnowflakeSettings` holds the connection settings (password
as ``SecretStr`` or a key-pair file). :meth:`SnowflakeSettings.connect_kwargs` gives the
arguments of ``snowflake.connector.connect``, with a JSON ``QUERY_TAG`` (``{"app", "job",
"table"}``) as a session parameter, merged into (never replacing) any other session parameters.
fakesnow accepts the tag at connect but can't read it back and doesn't implement ``ALTER SESSION
SET QUERY_TAG``, so a different tag means a new connection. ``paramstyle`` is always ``qmark``:
the values are then bound on the server. The connector's default ``pyformat`` formats values
into the SQL text on the client, which this project never allows. Don't bind ``Decimal`` or a
NULL ``TIMESTAMP_TZ`` with qmark on fakesnow (HTTP 500). Batches are staged as Parquet (below),
and only scalar bookkeeping values (group, topic, partition, offset) are bound.

The engine's building blocks live in the modules of this package:
:mod:`warehouse.snowflake.errors` (error classification), :mod:`warehouse.snowflake.types`
(column types) and :mod:`warehouse.snowflake.staging` (Arrow staged as Parquet, PUT + COPY).
"""
