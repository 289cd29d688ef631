"""TRUNCATE statements: every stored row at or below the truncate's position, set-based.

The truncate's values (position, transaction, commit time) come from a one-row stage
(:meth:`warehouse.truncation.Truncation.stage`), read as ``s``; the rules are in
:mod:`warehouse.truncation` and docs/guarantees.md. ``m`` is :func:`registered_table`: a
registered table's key and options, no data columns (nothing here writes data values).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from warehouse.arrow import Stage
from warehouse.contract import MetadataColumns, Scd2Options
from warehouse.sql.clauses import is_true, not_true, when_update
from warehouse.sql.names import D, S, StageName, T, TableRef, col, ident, stage_table
from warehouse.sql.target import TargetTable

K = "k"  # the keys whose current version the truncating transaction opened
TRUNCATION_LOG = ("table_name", "lsn", "txid", "source_ts", "applied_at")


def registered_table(
    target: TableRef,
    markers: TableRef | None,
    key: Sequence[str],
    meta: MetadataColumns,
    soft_delete: bool,
    scd2: Scd2Options | None,
) -> TargetTable:
    """The statements' view of a registered table, as a truncate needs it."""
    return TargetTable(target=target, markers=markers, columns=(), key=tuple(key), meta=meta,
                       soft_delete=soft_delete, scd2=scd2)  # fmt: skip


def _at_or_below(alias: str, m: TargetTable) -> exp.Expr:
    return exp.LTE(this=col(m.meta.lsn, alias), expression=col(Stage.lsn, S))


def _affected(m: TargetTable) -> exp.Expr:
    """The stored rows a truncate ends: every row, the live ones, or the current versions."""
    if m.scd2 is not None:
        return exp.and_(is_true(col(m.scd2.is_current, T)), _at_or_below(T, m))
    if m.soft_delete:
        return exp.and_(not_true(col(m.meta.deleted, T)), _at_or_below(T, m))
    return _at_or_below(T, m)


def truncate_count(m: TargetTable, stage: StageName) -> exp.Select:
    """How many rows (live rows, current versions) the truncate ends."""
    return (
        exp.select(exp.Count(this=exp.Star()))
        .from_(m.target.expr(T))
        .join(stage_table(stage), on=_affected(m))
    )


def _update_from(m: TargetTable, source: exp.Expr, pairs: list[tuple[str, exp.Expr]],
                 where: exp.Expr) -> exp.Update:  # fmt: skip
    update = when_update(pairs)
    update.set("this", m.target.expr(T))
    update.set("from_", exp.From(this=source))
    update.set("where", exp.Where(this=where))
    return update


def truncate_delete(m: TargetTable, stage: StageName) -> exp.Delete:
    """A mirror table without soft deletes: delete every row at or below the position."""
    return exp.Delete(
        this=m.target.expr(T), using=[stage_table(stage)], where=exp.Where(this=_affected(m))
    )


def truncate_mark_deleted(m: TargetTable, stage: StageName) -> exp.Update:
    """A soft-delete mirror table: mark every live row at or below the position deleted, with
    the truncate's metadata (``_cdc_op = 't'``)."""
    meta = m.meta
    pairs: list[tuple[str, exp.Expr]] = [
        (meta.deleted, exp.true()),
        (meta.op, exp.Literal.string("t")),
        (meta.lsn, col(Stage.lsn, S)),
        (meta.commit_lsn, col(Stage.commit_lsn, S)),
        (meta.txid, col(Stage.txid, S)),
        (meta.source_ts, col(Stage.source_ts, S)),
        (meta.loaded_at, exp.CurrentTimestamp()),
    ]
    return _update_from(m, stage_table(stage), pairs, _affected(m))


def _own_current(m: TargetTable, alias: str) -> exp.Expr:
    """Current versions the truncating transaction itself opened (granularity transaction)."""
    assert m.scd2 is not None
    return exp.and_(
        is_true(col(m.scd2.is_current, alias)),
        exp.EQ(this=col(m.meta.txid, alias), expression=col(Stage.txid, S)),
        exp.EQ(this=col(m.scd2.valid_from, alias), expression=col(Stage.source_ts, S)),
        _at_or_below(alias, m),
    )


def truncate_flag_replaced(m: TargetTable, stage: StageName) -> exp.Update:
    """History, granularity ``transaction``: the version that the truncating transaction's
    own current version replaced (it ended at the commit time) ends with a delete instead:
    the transaction leaves no version of its own (run before :func:`truncate_remove_own`)."""
    assert m.scd2 is not None
    v, meta = m.scd2, m.meta
    keys = exp.select(*(col(k, D) for k in m.key), exp.alias_(col(Stage.source_ts, S), "ts"))
    keys = keys.from_(m.target.expr(D)).join(stage_table(stage), on=_own_current(m, D))
    where = exp.and_(
        *(exp.EQ(this=col(k, T), expression=col(k, K)) for k in m.key),
        exp.EQ(this=col(v.valid_to, T), expression=col("ts", K)),
        not_true(col(v.is_current, T)),
    )
    return _update_from(m, keys.subquery(K), [(meta.deleted, exp.true())], where)


def truncate_remove_own(m: TargetTable, stage: StageName) -> exp.Delete:
    """History, granularity ``transaction``: remove the current versions the truncating
    transaction opened (it inserted or changed the key, then truncated: no committed state)."""
    return exp.Delete(
        this=m.target.expr(T), using=[stage_table(stage)], where=exp.Where(this=_own_current(m, T))
    )


def truncate_close(m: TargetTable, stage: StageName) -> exp.Update:
    """History: close every current version at the truncate's commit time, as a delete."""
    assert m.scd2 is not None
    v = m.scd2
    pairs: list[tuple[str, exp.Expr]] = [
        (v.valid_to, col(Stage.source_ts, S)),
        (v.is_current, exp.false()),
        (m.meta.deleted, exp.true()),
    ]
    return _update_from(m, stage_table(stage), pairs, _affected(m))


def truncate_prune_markers(markers: TableRef, lsn: str, stage: StageName) -> exp.Delete:
    """Delete markers at or below the position: the truncation mark guards their keys now."""
    cond = exp.LTE(this=col(lsn, D), expression=col(Stage.lsn, S))
    return exp.Delete(this=markers.expr(D), using=[stage_table(stage)], where=exp.Where(this=cond))


def record_truncation(log: TableRef, stage: StageName) -> exp.Insert:
    """Append the truncate to ``_cdc.truncations`` (its mark guards later changes)."""
    query = exp.select(
        col("table_name", S),
        col(Stage.lsn, S),
        col(Stage.txid, S),
        col(Stage.source_ts, S),
        exp.CurrentTimestamp(),
    ).from_(stage_table(stage))
    return exp.Insert(
        this=exp.Schema(this=log.expr(), expressions=[ident(n) for n in TRUNCATION_LOG]),
        expression=query,
    )


def truncation_marks(log: TableRef) -> exp.Select:
    """Each truncated table's mark: the highest truncate position applied to it."""
    return (
        exp.select(col("table_name"), exp.alias_(exp.Max(this=col("lsn")), "lsn"))
        .from_(log.expr())
        .group_by(col("table_name"))
    )
