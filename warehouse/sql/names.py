"""Names in SQL: the one place identifiers are quoted and tables are referenced.

Every statement builder of the package (and the tiering and reconciliation statements) names
columns and tables through :func:`ident`, :func:`col` and :class:`TableRef`, and renders with
:func:`render`, which quotes every identifier in the engine's dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlglot import exp

Columns = Sequence[tuple[str, exp.DataType]]
# A staged column read as a value of a target type (e.g. PARSE_JSON for Snowflake's VARIANT)
StagedValue = Callable[[exp.Expr, exp.DataType], exp.Expr]

S, T, D = "s", "t", "d"  # aliases: stage (source), target, delete markers


def ident(name: str) -> exp.Identifier:
    """A quoted identifier."""
    return exp.Identifier(this=name, quoted=True)


def col(name: str, table: str | None = None) -> exp.Column:
    """A quoted (optionally qualified) column reference."""
    return exp.Column(this=ident(name), table=ident(table) if table else None)


def render(statement: exp.Expr, dialect: str = "duckdb") -> str:
    """SQL text of a statement in a dialect, every identifier quoted."""
    return statement.sql(dialect=dialect, identify=True)


@dataclass(frozen=True, slots=True)
class TableRef:
    """A schema-qualified table."""

    schema: str
    name: str

    def expr(self, alias: str | None = None) -> exp.Table:
        table = exp.Table(this=ident(self.name), db=ident(self.schema))
        if alias:
            table.set("alias", exp.TableAlias(this=ident(alias)))
        return table


StageName = str | TableRef  # a registered Arrow table (DuckDB) or a staging table (Snowflake)


def stage_table(stage: StageName, alias: str = S) -> exp.Table:
    """A stage as ``alias`` (default ``s``): a registered Arrow table (DuckDB, by name) or a
    staging table (Snowflake)."""
    if isinstance(stage, TableRef):
        return stage.expr(alias)
    return exp.Table(this=ident(stage), alias=exp.TableAlias(this=ident(alias)))
