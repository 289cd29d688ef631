"""Lifecycle tiering statements (both engines): the tier bookkeeping tables (``tier_files``,
``tier_moves``, ``tier_holds``), the rows due, one move's deletes and inserts, and the reads.

Times are bound parameters; ``ts`` (when given) is the type a bound time is cast to on the
engine (Snowflake binds times as ISO text: fakesnow can't bind a NULL TIMESTAMP_TZ). The
history views over the tier files are in :mod:`.tier_views`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from warehouse.base import TableTarget
from warehouse.sql.clauses import bound_match, is_null
from warehouse.sql.names import Columns, StageName, TableRef, col, ident, stage_table
from warehouse.tiering import closing_column

FILES, MOVES, HOLDS = "tier_files", "tier_moves", "tier_holds"
FILE_COLUMNS = ("table_name", "tier", "month", "path", "rows", "checksum", "bytes", "move_id")
MOVE_COLUMNS = ("move_id", "table_name", "kind", "cutoff", "rows", "files_added",
                "files_removed", "bytes_added", "moved_at")  # fmt: skip
HOLD_COLUMNS = ("table_name", "closed_from", "closed_to", "until")
HOT, HOLD, GONE = "t", "h", "g"  # aliases: the hot table, a hold, the staged moved rows


@dataclass(frozen=True, slots=True)
class TierTypes:
    """The engine's types of the tier bookkeeping columns."""

    text: exp.DataType
    bigint: exp.DataType
    integer: exp.DataType
    timestamp: exp.DataType


def tier_tables(types: TierTypes) -> dict[str, Columns]:
    """The columns of the three tier bookkeeping tables, by table name."""
    v, n19, n10, ts = types.text, types.bigint, types.integer, types.timestamp
    return {
        FILES: [("table_name", v), ("tier", v), ("month", v), ("path", v), ("rows", n19),
                ("checksum", v), ("bytes", n19), ("move_id", v), ("added_at", ts)],
        MOVES: [("move_id", v), ("table_name", v), ("kind", v), ("cutoff", ts), ("rows", n19),
                ("files_added", n10), ("files_removed", n10), ("bytes_added", n19),
                ("moved_at", ts)],
        HOLDS: [("table_name", v), ("closed_from", ts), ("closed_to", ts), ("until", ts)],
    }  # fmt: skip


def bound_time(ts: exp.DataType | None) -> exp.Expr:
    """A bound time: ``?``, or ``CAST(? AS ts)``."""
    return exp.Placeholder() if ts is None else exp.Cast(this=exp.Placeholder(), to=ts.copy())


def closing(target: TableTarget, alias: str = HOT) -> exp.Column:
    """The column whose time decides when a row is due (see ``warehouse.tiering``)."""
    return col(closing_column(target), alias)


def due(target: TableTarget, alias: str = HOT) -> exp.Expr:
    """Rows of the hot table that tiering may move: closed versions of a history table,
    soft-deleted rows of a mirror table."""
    if target.mode == "scd2":
        return exp.Not(this=is_null(closing(target, alias)))
    return exp.Coalesce(this=col(target.metadata.deleted, alias), expressions=[exp.false()])


def _held(target: TableTarget, holds: TableRef, ts: exp.DataType | None) -> exp.Expr:
    """A hold of the table (bound: table name, now) covers the row's closing time."""
    at = closing(target)
    inner = (
        exp.select(exp.Literal.number(1))
        .from_(holds.expr(HOLD))
        .where(
            exp.and_(
                exp.EQ(this=col("table_name", HOLD), expression=exp.Placeholder()),
                exp.GT(this=col("until", HOLD), expression=bound_time(ts)),
                exp.GTE(this=at, expression=col("closed_from", HOLD)),
                exp.LT(this=at.copy(), expression=col("closed_to", HOLD)),
            )
        )
    )
    return exp.Exists(this=inner)


def candidates(
    hot: TableRef,
    holds: TableRef,
    target: TableTarget,
    projections: Sequence[exp.Expr],
    ts: exp.DataType | None = None,
) -> exp.Select:
    """The rows due before a cutoff and not held by a restore (bound: cutoff, table, now)."""
    cond = exp.and_(
        due(target),
        exp.LT(this=closing(target), expression=bound_time(ts)),
        exp.Not(this=_held(target, holds, ts)),
    )
    return exp.select(*projections).from_(hot.expr(HOT)).where(cond)


def of_table(ref: TableRef, columns: Sequence[str] | None = None) -> exp.Select:
    """Rows of a tier bookkeeping table about one table (bound: table name); all columns
    when ``columns`` is None."""
    projections = [exp.Star()] if columns is None else [col(c) for c in columns]
    return exp.select(*projections).from_(ref.expr()).where(bound_match(["table_name"]))


def valid_at(target: TableTarget, ts: exp.DataType | None = None) -> exp.Expr:
    """Versions valid at a bound time (bound twice): ``from <= ? AND (to IS NULL OR to > ?)``."""
    frm, to = col(target.scd2.valid_from), col(target.scd2.valid_to)
    later = exp.or_(is_null(to), exp.GT(this=to.copy(), expression=bound_time(ts)))
    return exp.and_(exp.LTE(this=frm, expression=bound_time(ts)), exp.paren(later))


def select_from(ref: TableRef, columns: Sequence[str] | None = None) -> exp.Select:
    """``SELECT <columns or *> FROM ref``."""
    projections = [exp.Star()] if columns is None else [col(c) for c in columns]
    return exp.select(*projections).from_(ref.expr())


def match(pairs: Sequence[tuple[exp.Expr, exp.Expr]], null_safe: bool = False) -> exp.Expr:
    """``a = b`` (``IS NOT DISTINCT FROM`` when ``null_safe``) for every pair, ANDed."""
    op = exp.NullSafeEQ if null_safe else exp.EQ
    return exp.and_(*[op(this=a, expression=b) for a, b in pairs])


def delete_moved(
    hot: TableRef,
    gone: StageName,
    target: TableTarget,
    matched: exp.Expr,
    ts: exp.DataType | None = None,
) -> exp.Delete:
    """Delete the hot rows that went to files (``matched`` to the staged rows aliased ``g``)
    if they are still due before the cutoff (bound: cutoff)."""
    cond = exp.and_(matched, due(target), exp.LT(this=closing(target), expression=bound_time(ts)))
    return exp.Delete(
        this=hot.expr(HOT), using=[stage_table(gone, GONE)], where=exp.Where(this=cond)
    )


def delete_using(ref: TableRef, alias: str, stage: StageName, cond: exp.Expr) -> exp.Delete:
    """``DELETE FROM ref AS alias USING stage AS g WHERE cond``."""
    return exp.Delete(
        this=ref.expr(alias), using=[stage_table(stage, GONE)], where=exp.Where(this=cond)
    )


def insert_from(
    ref: TableRef, names: Sequence[str], values: Sequence[exp.Expr], stage: StageName,
    alias: str,
) -> exp.Insert:  # fmt: skip
    """``INSERT INTO ref (names) SELECT values FROM stage AS alias``."""
    return exp.Insert(
        this=exp.Schema(this=ref.expr(), expressions=[ident(n) for n in names]),
        expression=exp.select(*values).from_(stage_table(stage, alias)),
    )


def present(
    keys: StageName, hot: TableRef, projections: Sequence[exp.Expr], matched: exp.Expr
) -> exp.Select:
    """``projections`` of the staged keys (alias ``k``) the hot table (alias ``t``) holds."""
    inner = exp.select(exp.Literal.number(1)).from_(hot.expr(HOT)).where(matched)
    return exp.select(*projections).from_(stage_table(keys, "k")).where(exp.Exists(this=inner))


def delete_file(files: TableRef) -> exp.Delete:
    """Drop one file of the live set (bound: path)."""
    return exp.Delete(this=files.expr(), where=exp.Where(this=bound_match(["path"])))


def insert_rows(
    ref: TableRef,
    columns: Sequence[str],
    times: Sequence[str],
    rows: int = 1,
    ts: exp.DataType | None = None,
    named: bool = True,
) -> exp.Insert:
    """``rows`` bound rows of ``columns`` (``times`` bound as times); ``named``: with the
    column list (else the table's columns in order)."""
    row = [bound_time(ts) if c in times else exp.Placeholder() for c in columns]
    values = exp.Values(
        expressions=[exp.Tuple(expressions=[v.copy() for v in row]) for _ in range(rows)]
    )
    into: exp.Expr = ref.expr()
    if named:
        into = exp.Schema(this=into, expressions=[ident(c) for c in columns])
    return exp.Insert(this=into, expression=values)


def restore_by_name(hot: TableRef, stage: str, typed: exp.Expr) -> exp.Insert:
    """DuckDB: ``INSERT INTO hot BY NAME SELECT typed FROM stage``: restored rows back to hot."""
    return exp.Insert(
        this=hot.expr(),
        by_name=True,
        expression=exp.select(typed).from_(exp.Table(this=ident(stage))),
    )


def markers_like(markers: TableRef, hot: TableRef, columns: Sequence[str]) -> exp.Create:
    """DuckDB: ``CREATE TABLE IF NOT EXISTS markers AS SELECT columns FROM hot WHERE false``."""
    query = exp.select(*map(col, columns)).from_(hot.expr()).where(exp.false())
    return exp.Create(this=markers.expr(), kind="TABLE", exists=True, expression=query)
