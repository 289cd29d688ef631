"""Statement builders of the cost bookkeeping (``compute_log``, ``cost_reports``).

Like :mod:`warehouse.sql`: sqlglot expressions, identifiers quoted, values bound as
parameters (times as ISO text cast to the engine's timestamp type).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from warehouse.base import COMPUTE_COLUMNS, COST_REPORT_COLUMNS
from warehouse.sql import TableRef, col, ident

_TIMES = frozenset({"at"})


def _insert(ref: TableRef, columns: Sequence[str], rows: int, ts: exp.DataType) -> exp.Insert:
    """One INSERT of ``rows`` rows, every value a placeholder (bound row by row, flattened)."""
    row = [
        exp.Cast(this=exp.Placeholder(), to=ts.copy()) if c in _TIMES else exp.Placeholder()
        for c in columns
    ]
    return exp.Insert(
        this=exp.Schema(this=ref.expr(), expressions=[ident(c) for c in columns]),
        expression=exp.Values(
            expressions=[exp.Tuple(expressions=[v.copy() for v in row]) for _ in range(rows)]
        ),
    )


def compute_insert(ref: TableRef, rows: int, ts: exp.DataType) -> exp.Insert:
    """``rows`` rows of ``compute_log`` (bound: :data:`COMPUTE_COLUMNS` per row)."""
    return _insert(ref, COMPUTE_COLUMNS, rows, ts)


def cost_report_insert(ref: TableRef, rows: int, ts: exp.DataType) -> exp.Insert:
    """``rows`` rows of ``cost_reports`` (bound: :data:`COST_REPORT_COLUMNS` per row)."""
    return _insert(ref, COST_REPORT_COLUMNS, rows, ts)


def compute_totals(ref: TableRef, since: bool, ts: exp.DataType) -> exp.Select:
    """Seconds per (job, table_name); with ``since``: rows at or after the bound time."""
    query = (
        exp.select(col("job"), col("table_name"), exp.Sum(this=col("seconds")))
        .from_(ref.expr())
        .group_by(col("job"), col("table_name"))
    )
    if since:
        query = query.where(
            exp.GTE(this=col("at"), expression=exp.Cast(this=exp.Placeholder(), to=ts.copy()))
        )
    return query


def cost_history(ref: TableRef) -> exp.Select:
    """Every ``cost_reports`` row, oldest first."""
    return (
        exp.select(*map(col, COST_REPORT_COLUMNS))
        .from_(ref.expr())
        .order_by(col("at"), col("report_id"), col("table_name"), col("tier"))
    )


def information_schema_storage() -> exp.Select:
    """Snowflake: ROW_COUNT and BYTES of one table (bound: schema, table)."""
    info = exp.Table(this=ident("TABLES"), db=ident("INFORMATION_SCHEMA"))
    return (
        exp.select(col("ROW_COUNT"), col("BYTES"))
        .from_(info)
        .where(
            exp.and_(
                exp.EQ(this=col("TABLE_SCHEMA"), expression=exp.Placeholder()),
                exp.EQ(this=col("TABLE_NAME"), expression=exp.Placeholder()),
            )
        )
    )
