"""Snowflake's record of what queries cost: ``SNOWFLAKE.ACCOUNT_USAGE.QUERY_HISTORY``.

Read by :meth:`SnowflakeWarehouse.credit_usage` (a real account only; fakesnow has no
``ACCOUNT_USAGE``); ``cdc.costs.credits`` attributes the rows to tables by their query tags.
"""

from __future__ import annotations

from sqlglot import exp


def query_history_sql() -> exp.Select:
    """The rows the credit attribution needs, from ``SNOWFLAKE.ACCOUNT_USAGE.QUERY_HISTORY``:
    the current user's queries that started at or after the bound time (ISO text). Only valid
    on a real account (the role needs the SNOWFLAKE database's usage, e.g. IMPORTED
    PRIVILEGES)."""

    def c(name: str) -> exp.Column:
        return exp.Column(this=exp.to_identifier(name))

    history = exp.Table(
        this=exp.to_identifier("QUERY_HISTORY"),
        db=exp.to_identifier("ACCOUNT_USAGE"),
        catalog=exp.to_identifier("SNOWFLAKE"),
    )
    since = exp.Cast(
        this=exp.Placeholder(), to=exp.DataType.build("TIMESTAMP_LTZ", dialect="snowflake")
    )
    return (
        exp.select(c("QUERY_TAG"), c("WAREHOUSE_SIZE"), c("EXECUTION_TIME"))
        .from_(history)
        .where(
            exp.and_(
                exp.GTE(this=c("START_TIME"), expression=since),
                exp.EQ(this=c("USER_NAME"), expression=exp.CurrentUser()),
            )
        )
    )
