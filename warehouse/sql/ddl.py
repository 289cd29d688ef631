"""DDL and catalog statements: schemas, tables, columns."""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from warehouse.sql.clauses import bound_match
from warehouse.sql.names import Columns, TableRef, col, ident


def create_schema(schema: str) -> exp.Create:
    return exp.Create(this=exp.Table(db=ident(schema)), kind="SCHEMA", exists=True)


def create_table(ref: TableRef, columns: Columns, primary_key: Sequence[str] = ()) -> exp.Create:
    """``CREATE TABLE IF NOT EXISTS`` with the columns and an optional primary key."""
    defs: list[exp.Expr] = [exp.ColumnDef(this=ident(n), kind=t.copy()) for n, t in columns]
    if primary_key:
        defs.append(exp.PrimaryKey(expressions=[ident(k) for k in primary_key]))
    return exp.Create(this=exp.Schema(this=ref.expr(), expressions=defs), kind="TABLE", exists=True)


def drop(ref: TableRef, kind: str) -> exp.Drop:
    """``DROP <kind> IF EXISTS``."""
    return exp.Drop(tables=[ref.expr()], kind=kind, exists=True)


def add_column(ref: TableRef, name: str, dtype: exp.DataType) -> exp.Alter:
    return exp.Alter(
        this=ref.expr(), kind="TABLE", actions=[exp.ColumnDef(this=ident(name), kind=dtype.copy())]
    )


def drop_column(ref: TableRef, name: str) -> exp.Alter:
    """``ALTER TABLE ... DROP COLUMN IF EXISTS`` (idempotent: a second run drops nothing)."""
    column = exp.Column(this=ident(name))
    return exp.Alter(
        this=ref.expr(), kind="TABLE",
        actions=[exp.Drop(tables=[column], kind="COLUMN", exists=True)],
    )  # fmt: skip


def alter_column_type(ref: TableRef, name: str, dtype: exp.DataType) -> exp.Alter:
    return exp.Alter(
        this=ref.expr(),
        kind="TABLE",
        actions=[exp.AlterColumn(this=ident(name), dtype=dtype.copy())],
    )


def fill_column(ref: TableRef, name: str, stage: str) -> exp.Update:
    """Set ``name`` in every row to the one value staged in ``stage`` (column ``v``)."""
    value = exp.select(col("v")).from_(exp.Table(this=ident(stage))).subquery()
    return exp.Update(this=ref.expr(), expressions=[exp.EQ(this=col(name), expression=value)])


def table_columns() -> exp.Select:
    """Columns of one table (bound: schema, table) in ordinal order: name, SQL type text."""
    info = exp.Table(this=ident("columns"), db=ident("information_schema"))
    return (
        exp.select(col("column_name"), col("data_type"))
        .from_(info)
        .where(
            exp.and_(
                exp.EQ(this=col("table_schema"), expression=exp.Placeholder()),
                exp.EQ(this=col("table_name"), expression=exp.Placeholder()),
            )
        )
        .order_by(col("ordinal_position"))
    )


def tables_named() -> exp.Select:
    """How many tables have a name (bound: schema, table)."""
    info = exp.Table(this=ident("tables"), db=ident("information_schema"))
    return (
        exp.select(exp.Count(this=exp.Star()))
        .from_(info)
        .where(bound_match(["table_schema", "table_name"]))
    )
