"""Checks of a history (scd2) table's invariants, and the repair of its validity."""

from __future__ import annotations

from sqlglot import exp

from warehouse.sql.clauses import count_if, is_null, is_true, when_update, window
from warehouse.sql.names import S, T, col
from warehouse.sql.target import TargetTable
from warehouse.types import DT

HISTORY_CHECKS = (
    "several_current",
    "current_not_last",
    "current_deleted",
    "open_closed",
    "empty_validity",
    "overlaps",
    "gaps",
)


def _history_flags(m: TargetTable, strict: bool) -> exp.Select:
    """One row per version with a boolean column per invariant it breaks (HISTORY_CHECKS)."""
    assert m.scd2 is not None
    v, meta = m.scd2, m.meta
    keys = [col(k) for k in m.key]
    lsn = col(meta.lsn)
    frm, to, cur, deleted = col(v.valid_from), col(v.valid_to), col(v.is_current), col(meta.deleted)
    prev_to, prev_deleted, first = col("_prev_to"), col("_prev_deleted"), col("_rn")
    later = exp.GT(this=first, expression=exp.Literal.number(1))
    numbered = exp.select(
        *keys,
        frm,
        to,
        cur,
        deleted,
        exp.alias_(window(exp.Lag(this=col(v.valid_to)), keys, lsn), "_prev_to"),
        exp.alias_(window(exp.Lag(this=col(meta.deleted)), keys, lsn), "_prev_deleted"),
        exp.alias_(window(exp.RowNumber(), keys, lsn), "_rn"),
        exp.alias_(window(exp.RowNumber(), keys, lsn, desc=True), "_rn_desc"),
        exp.alias_(
            exp.Window(
                this=exp.Sum(
                    this=exp.Case(ifs=[exp.If(this=is_true(cur), true=exp.Literal.number(1))])
                ),
                partition_by=keys,
            ),
            "_currents",
        ),
    ).from_(m.target.expr())
    empty = exp.GTE(this=frm, expression=to) if strict else exp.GT(this=frm, expression=to)
    flags = {
        "several_current": exp.and_(
            exp.EQ(this=col("_rn_desc"), expression=exp.Literal.number(1)),
            exp.GT(this=col("_currents"), expression=exp.Literal.number(1)),
        ),
        "current_not_last": exp.and_(
            is_true(cur), exp.GT(this=col("_rn_desc"), expression=exp.Literal.number(1))
        ),
        "current_deleted": exp.and_(is_true(cur), is_true(deleted)),
        "open_closed": exp.NullSafeNEQ(this=cur, expression=exp.Paren(this=is_null(to))),
        "empty_validity": exp.and_(exp.Not(this=is_null(to)), empty),
        "overlaps": exp.and_(
            later, exp.or_(is_null(prev_to), exp.LT(this=frm, expression=prev_to))
        ),
        "gaps": exp.and_(
            later,
            exp.GT(this=frm, expression=prev_to),
            exp.Not(this=is_true(prev_deleted)),
        ),
    }
    return exp.select(
        *keys,
        exp.alias_(exp.EQ(this=col("_rn_desc"), expression=exp.Literal.number(1)), "_last"),
        exp.alias_(
            exp.and_(is_true(cur), exp.EQ(this=col("_rn_desc"), expression=exp.Literal.number(1))),
            "_live",
        ),
        *(exp.alias_(cond, name) for name, cond in flags.items()),
    ).from_(numbered.subquery("v"))


def scd2_close_gaps(m: TargetTable) -> exp.Update:
    """Make each key's validity contiguous again (a repair, not a replay): a version that is
    followed by another and did not end with a delete ends exactly where the next begins and
    is not current. Closes gaps (a lost middle version) and overlaps, never a delete's gap."""
    assert m.scd2 is not None
    v, meta = m.scd2, m.meta
    keys = [col(k) for k in m.key]
    nxt = "_next_from"
    following = exp.select(
        *keys,
        col(meta.lsn),
        exp.alias_(window(exp.Lead(this=col(v.valid_from)), keys, col(meta.lsn)), nxt),
    ).from_(m.target.expr())
    pairs = [(v.valid_to, col(nxt, S)), (v.is_current, exp.false())]
    update = when_update(pairs)
    update.set("this", m.target.expr(T))
    update.set("from_", exp.From(this=following.subquery(S)))
    broken = exp.or_(
        exp.NullSafeNEQ(this=col(v.valid_to, T), expression=col(nxt, S)),
        is_true(col(v.is_current, T)),
    )
    where = exp.and_(
        *(exp.EQ(this=col(k, T), expression=col(k, S)) for k in m.key),
        exp.EQ(this=col(meta.lsn, T), expression=col(meta.lsn, S)),
        exp.Not(this=is_null(col(nxt, S))),
        exp.Not(this=is_true(col(meta.deleted, T))),
        exp.Paren(this=broken),
    )
    update.set("where", exp.Where(this=where))
    return update


def history_counts(m: TargetTable, strict: bool) -> exp.Select:
    """keys, versions, live keys, then one count per HISTORY_CHECKS entry."""

    def count(e: exp.Expr, name: str) -> exp.Expr:
        return count_if(is_true(e), name)

    return exp.select(
        count(col("_last"), "keys"),
        exp.alias_(exp.Count(this=exp.Star()), "versions"),
        count(col("_live"), "current"),
        *(count(col(name), name) for name in HISTORY_CHECKS),
    ).from_(_history_flags(m, strict).subquery("f"))


def history_examples(m: TargetTable, strict: bool, limit: int = 5) -> exp.Select:
    """Keys (as text) of versions breaking an invariant, with the invariant's name."""
    checks = [exp.If(this=is_true(col(n)), true=exp.Literal.string(n)) for n in HISTORY_CHECKS]
    which = exp.Case(ifs=checks)
    keys = [exp.Cast(this=col(k), to=exp.DataType(this=DT.VARCHAR)) for k in m.key]
    query = exp.select(exp.alias_(which, "broken"), *keys).from_(
        _history_flags(m, strict).subquery("f")
    )
    return query.where(exp.Not(this=is_null(which))).limit(limit)
