"""The ``<table>_history`` views over the hot table and the live tier files, per engine.

DuckDB reads the files with ``read_parquet([...])`` (the paths as string literals). Snowflake
reads them through an external table on a named stage: the two statements about the external
table (:func:`create_external_table`, :func:`refresh_external_table`) are the only SQL built
as text here, because sqlglot has no expression for them (it parses them as opaque commands);
their names still come from :mod:`.names` and their one value is a sqlglot string literal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlglot import exp

from cdc.names import path_segment
from warehouse.base import TerminalWarehouseError
from warehouse.sql.names import Columns, TableRef, col, ident, render
from warehouse.types import DT

SNOWFLAKE = "snowflake"

# ---- DuckDB -------------------------------------------------------------------------------


def typed_star(
    as_text: Sequence[tuple[str, str]], dialect: str, table: str | None = None
) -> exp.Expr:
    """``*`` with the columns Parquet holds as text cast back to their type
    (``* REPLACE (CAST(c AS <type>) AS c, ...)``); ``as_text``: (name, DuckDB type text)."""
    replace = [
        exp.alias_(
            exp.Cast(this=col(name, table), to=exp.DataType.build(kind, dialect=dialect)),
            ident(name),
        )
        for name, kind in as_text
    ]
    star = exp.Star(replace=replace) if replace else exp.Star()
    return exp.Column(this=star, table=ident(table)) if table else star


def text_star(names: Sequence[str], table: str) -> exp.Expr:
    """``table.*`` with the named columns as text (``REPLACE (CAST(c AS VARCHAR) AS c)``)."""
    varchar = exp.DataType.build("VARCHAR")
    replace = [exp.alias_(exp.Cast(this=col(n, table), to=varchar.copy()), ident(n)) for n in names]
    return exp.Column(this=exp.Star(replace=replace) if replace else exp.Star(), table=ident(table))


def duckdb_history_view(
    view: TableRef, hot: TableRef, paths: Sequence[str], typed: exp.Expr
) -> exp.Create:
    """``CREATE OR REPLACE VIEW``: the hot table ``UNION ALL BY NAME`` the live files (read
    with ``typed`` projections, see :func:`typed_star`)."""
    body: exp.Query = exp.select(exp.Star()).from_(hot.expr())
    if paths:
        read = exp.ReadParquet(
            expressions=[
                exp.Array(expressions=[exp.Literal.string(p) for p in paths]),
                exp.EQ(this=exp.var("union_by_name"), expression=exp.true()),
                exp.EQ(this=exp.var("hive_partitioning"), expression=exp.false()),
            ]
        )
        files = exp.select(typed).from_(exp.Table(this=read))
        body = exp.Union(this=body, expression=files, distinct=False, by_name=True)
    return exp.Create(this=view.expr(), kind="VIEW", replace=True, expression=body)


# ---- Snowflake (external table on a stage) ------------------------------------------------

_PART = r'"[^"]+"|[A-Za-z_][A-Za-z0-9_$]*'
_STAGE_NAME = re.compile(rf"^@?((?:{_PART})(?:\.(?:{_PART})){{0,2}})$")


def _name(ref: TableRef) -> str:
    return render(ref.expr(), SNOWFLAKE)


def stage_location(stage: str) -> str:
    """``@"DB"."SCHEMA"."STAGE"`` for a configured stage name (1-3 parts, each a plain or a
    double-quoted identifier). Unquoted parts resolve as Snowflake resolves them (upper case),
    then every part is quoted; anything else (a path, a quote, a statement) is refused."""
    match = _STAGE_NAME.match(stage.strip())
    if match is None:
        raise TerminalWarehouseError(
            f"tiering.snowflake_stage {stage!r} is not a stage name: give [database.][schema.]"
            "stage, each part a plain or a double-quoted identifier (the stage's URL is "
            "tiering.target; no path)"
        )
    parts = re.findall(_PART, match.group(1))
    names = [p[1:-1] if p.startswith('"') else p.upper() for p in parts]
    return "@" + ".".join(render(ident(n), SNOWFLAKE) for n in names)


def tier_pattern(table: str) -> str:
    """The regex of a table's tier files under the stage (``<tier>/<table>/month=YYYY-MM/
    <move>.parquet``). Characters of the name other than letters, digits and ``_`` match any
    character: never too narrow, and nothing to escape (the view keeps only the live files)."""
    folder = path_segment(table)
    name = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "." for c in folder)
    return f".*(warm|cold)/{name}/month=[0-9]{{4}}-[0-9]{{2}}/[^/]+[.]parquet"


def create_external_table(ext: TableRef, stage: str, table: str) -> str:
    """The external table over a table's tier files (its ``VALUE`` column only)."""
    pattern = exp.Literal.string(tier_pattern(table)).sql(SNOWFLAKE)
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {_name(ext)} WITH LOCATION = "
        f"{stage_location(stage)}/ AUTO_REFRESH = FALSE PATTERN = {pattern} "
        "FILE_FORMAT = (TYPE = PARQUET BINARY_AS_TEXT = FALSE USE_LOGICAL_TYPE = TRUE)"
    )


def refresh_external_table(ext: TableRef) -> str:
    """Register the files written and forget the files deleted since the last refresh."""
    return f"ALTER EXTERNAL TABLE {_name(ext)} REFRESH"


def _plain(name: str) -> exp.Identifier:
    """An unquoted identifier: an alias, ``VALUE`` or a ``METADATA$`` pseudo-column."""
    return exp.Identifier(this=name, quoted=False)


def tier_value_expr(name: str, dtype: exp.DataType, alias: str = "x") -> exp.Expr:
    """A column of a tier file as the hot table's type: VARIANT and ARRAY columns are JSON
    text in the files (parsed), every other type is cast from the file's value."""
    value = exp.Bracket(
        this=exp.Column(this=_plain("VALUE"), table=_plain(alias)),
        expressions=[exp.Literal.string(name)],
    )
    varchar = exp.DataType.build("VARCHAR")
    if dtype.this in (DT.VARIANT, DT.OBJECT):
        return exp.ParseJSON(this=exp.Cast(this=value, to=varchar))
    if dtype.this is DT.ARRAY:
        parsed = exp.ParseJSON(this=exp.Cast(this=value, to=varchar))
        return exp.Cast(this=parsed, to=exp.DataType(this=DT.ARRAY))
    return exp.Cast(this=value, to=dtype.copy())


def tier_value(name: str, dtype: exp.DataType, alias: str = "x") -> str:
    """:func:`tier_value_expr` as Snowflake text."""
    return tier_value_expr(name, dtype, alias).sql(SNOWFLAKE)  # type: ignore[no-any-return]


def snowflake_history_view(
    view: TableRef,
    hot: TableRef,
    columns: Columns,
    *,
    table: str,
    tiers: TableRef | None = None,
    files: TableRef | None = None,
) -> exp.Create:
    """``CREATE OR REPLACE VIEW`` of the history: the hot table, and with ``tiers`` (the
    external table) and ``files`` (``tier_files``) the rows of the live tier files."""
    body: exp.Query = exp.select(*(col(n) for n, _ in columns)).from_(hot.expr())
    if tiers is not None and files is not None:
        x, f = _plain("x"), _plain("f")
        filename = exp.Column(this=_plain("METADATA$FILENAME"), table=x.copy())
        live = (
            exp.select(exp.Literal.number(1))
            .from_(files.expr().as_(f))
            .where(
                exp.and_(
                    exp.EQ(this=exp.Column(this=ident("table_name"), table=f.copy()),
                           expression=exp.Literal.string(table)),
                    exp.EndsWith(
                        this=exp.Column(this=ident("path"), table=f.copy()),
                        expression=exp.DPipe(this=exp.Literal.string("/"), expression=filename),
                    ),
                )
            )
        )  # fmt: skip
        typed = [exp.alias_(tier_value_expr(n, t), ident(n)) for n, t in columns]
        rows = exp.select(*typed).from_(tiers.expr().as_(x)).where(exp.Exists(this=live))
        body = exp.Union(this=body, expression=rows, distinct=False)
    return exp.Create(this=view.expr(), kind="VIEW", replace=True, expression=body)


def history_view_sql(
    view: TableRef,
    hot: TableRef,
    columns: Columns,
    *,
    table: str,
    tiers: TableRef | None = None,
    files: TableRef | None = None,
) -> str:
    """:func:`snowflake_history_view` as Snowflake text: names quoted where :mod:`.names` made them
    (aliases, ``VALUE`` and ``METADATA$FILENAME`` stay plain)."""
    statement = snowflake_history_view(view, hot, columns, table=table, tiers=tiers, files=files)
    return statement.sql(SNOWFLAKE)  # type: ignore[no-any-return]
