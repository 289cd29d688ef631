"""The reconciliation audit (``reconcile_runs``)."""

from __future__ import annotations

from sqlglot import exp

from warehouse.base import RECONCILE_COLUMNS
from warehouse.sql.names import TableRef, col, ident


def reconcile_insert(ref: TableRef, timestamp: exp.DataType) -> exp.Insert:
    """One ``reconcile_runs`` row (bound: :data:`warehouse.base.RECONCILE_COLUMNS` in order,
    the two times as ISO text cast to ``timestamp``)."""
    values: list[exp.Expr] = [
        exp.Cast(this=exp.Placeholder(), to=timestamp.copy())
        if c in ("started_at", "finished_at")
        else exp.Placeholder()
        for c in RECONCILE_COLUMNS
    ]
    return exp.Insert(
        this=exp.Schema(this=ref.expr(), expressions=[ident(c) for c in RECONCILE_COLUMNS]),
        expression=exp.Values(expressions=[exp.Tuple(expressions=values)]),
    )


def reconcile_latest(ref: TableRef) -> exp.Select:
    """The newest ``reconcile_runs`` row of every table."""
    newest = exp.Window(
        this=exp.RowNumber(),
        partition_by=[col("table_name")],
        order=exp.Order(expressions=[exp.Ordered(this=col("finished_at"), desc=True)]),
    )
    query = exp.select(*map(col, RECONCILE_COLUMNS)).from_(ref.expr())
    return query.qualify(exp.EQ(this=newest, expression=exp.Literal.number(1)))
