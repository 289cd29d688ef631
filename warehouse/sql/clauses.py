"""Small expression pieces the statement builders share: conditions, the position guard,
MERGE clauses, counts and windows. Column and table names come from :mod:`.names`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from warehouse.arrow import Stage
from warehouse.contract import MetadataColumns
from warehouse.sql.names import S, TableRef, col, ident
from warehouse.types import fetch_type


def is_null(e: exp.Expr) -> exp.Expr:
    return exp.Is(this=e, expression=exp.Null())


def is_true(e: exp.Expr) -> exp.Expr:
    """``COALESCE(e, false) = true``: NULL counts as false."""
    return exp.EQ(this=exp.Coalesce(this=e, expressions=[exp.false()]), expression=exp.true())


def not_true(e: exp.Expr) -> exp.Expr:
    """``NOT COALESCE(e, false)``: NULL counts as false."""
    return exp.Not(this=exp.Coalesce(this=e, expressions=[exp.false()]))


def later(s_commit: exp.Expr, s_lsn: exp.Expr, t_commit: exp.Expr, t_lsn: exp.Expr) -> exp.Expr:
    """``(s_commit, s_lsn)`` after ``(t_commit, t_lsn)``: commit order, then change order,
    when both commit parts are known; change order alone otherwise (:func:`cdc.model.newer`,
    the same rule in Python)."""
    known = exp.and_(exp.Not(this=is_null(s_commit)), exp.Not(this=is_null(t_commit)))
    by_commit = exp.or_(
        exp.GT(this=s_commit, expression=t_commit),
        exp.and_(exp.EQ(this=s_commit.copy(), expression=t_commit.copy()),
                 exp.GT(this=s_lsn, expression=t_lsn)),
    )  # fmt: skip
    by_lsn = exp.GT(this=s_lsn.copy(), expression=t_lsn.copy())
    return exp.or_(
        exp.and_(known, exp.paren(by_commit)),
        exp.and_(exp.Not(this=exp.paren(known.copy())), by_lsn),
    )


def stage_later(meta: MetadataColumns, alias: str) -> exp.Expr:
    """The stage row ``s`` is later than the stored position of ``alias`` (a row or a delete
    marker): :func:`later` without the NULL case."""
    return later(col(Stage.commit_lsn, S), col(Stage.lsn, S),
                 col(meta.commit_lsn, alias), col(meta.lsn, alias))  # fmt: skip


def newer(meta: MetadataColumns, alias: str) -> exp.Expr:
    """The position guard against the stored position of ``alias`` (a row or a delete
    marker): nothing stored, or the stage row ``s`` is later (:func:`later`)."""
    return exp.or_(is_null(col(meta.lsn, alias)), stage_later(meta, alias))


def is_kind(kind: str) -> exp.Expr:
    """Stage rows of one kind (``s.m_kind = '<kind>'``)."""
    return exp.EQ(this=col(Stage.kind, S), expression=exp.Literal.string(kind))


def bound_match(columns: Sequence[str]) -> exp.Expr:
    """``c = ?`` for every column, ANDed."""
    return exp.and_(*[exp.EQ(this=col(c), expression=exp.Placeholder()) for c in columns])


def not_exists(ref: TableRef, alias: str, match: exp.Expr) -> exp.Expr:
    """``NOT EXISTS (SELECT 1 FROM ref AS alias WHERE match)``."""
    inner = exp.select(exp.Literal.number(1)).from_(ref.expr(alias)).where(match)
    return exp.Not(this=exp.Exists(this=inner))


def when_update(pairs: Sequence[tuple[str, exp.Expr]]) -> exp.Update:
    """The ``UPDATE SET`` of a MERGE's WHEN MATCHED clause."""
    return exp.Update(expressions=[exp.EQ(this=col(n), expression=v) for n, v in pairs])


def when_insert(pairs: Sequence[tuple[str, exp.Expr]]) -> exp.Insert:
    """The ``INSERT (...) VALUES (...)`` of a MERGE's WHEN NOT MATCHED clause."""
    return exp.Insert(
        this=exp.Tuple(expressions=[col(n) for n, _ in pairs]),
        expression=exp.Tuple(expressions=[v for _, v in pairs]),
    )


def insert_select(
    ref: TableRef, pairs: Sequence[tuple[str, exp.Expr]], source: exp.Select
) -> exp.Insert:
    """``INSERT INTO ref (<names of pairs>) <source>``."""
    return exp.Insert(
        this=exp.Schema(this=ref.expr(), expressions=[ident(n) for n, _ in pairs]),
        expression=source,
    )


def count_if(cond: exp.Expr, name: str) -> exp.Expr:
    """``COALESCE(SUM(CASE WHEN cond THEN 1 ELSE 0 END), 0) AS name``."""
    case = exp.Case(ifs=[exp.If(this=cond, true=exp.Literal.number(1))])
    case.set("default", exp.Literal.number(0))
    return exp.alias_(
        exp.Coalesce(this=exp.Sum(this=case), expressions=[exp.Literal.number(0)]), name
    )


def fetched(name: str, dtype: exp.DataType, table: str | None = None) -> exp.Expr:
    """A stored column in its fetch representation (see ``types.fetch_type``), named as is."""
    as_type = fetch_type(dtype)
    value: exp.Expr = col(name, table)
    return exp.alias_(value if as_type is None else exp.Cast(this=value, to=as_type), ident(name))


def window(
    func: exp.Expr, partition: Sequence[exp.Expr], order: exp.Expr, desc: bool = False
) -> exp.Window:
    """``func OVER (PARTITION BY partition ORDER BY order [DESC])``."""
    return exp.Window(
        this=func,
        partition_by=list(partition),
        order=exp.Order(expressions=[exp.Ordered(this=order, desc=desc)]),
    )
