"""Mirror apply: upserts and deletes of a batch's stage under the position guard (MERGE).

Engines that can't MERGE (inside a transaction) run the same semantics as UPDATE + INSERT
(:mod:`.logical_merge`).
"""

from __future__ import annotations

from sqlglot import exp

from warehouse.arrow import Stage
from warehouse.sql.clauses import (
    count_if,
    is_kind,
    newer,
    stage_later,
    when_insert,
    when_update,
)
from warehouse.sql.names import D, S, T, col, ident, stage_table
from warehouse.sql.target import TargetTable


def _guarded_source(m: TargetTable, stage: str, deleted: bool) -> exp.Expr:
    """Stage rows of one kind (upserts or deletes) not older than a recorded delete marker."""
    kind = col(Stage.deleted, S) if deleted else exp.Not(this=col(Stage.deleted, S))
    query = exp.select(exp.Column(this=exp.Star(), table=ident(S))).from_(
        exp.Table(this=ident(stage), alias=exp.TableAlias(this=ident(S)))
    )
    where: exp.Expr = kind
    # soft deletes record no markers themselves (only tiering does), so a delete is guarded
    # by them too: an old delete replayed after its row was tiered adds no tombstone
    if m.markers is not None and (not deleted or m.soft_delete):
        query = query.join(m.markers.expr(D), on=m.key_match(D), join_type="left")
        where = exp.and_(kind, newer(m.meta, D))
    return query.where(where).subquery(S)


def metadata_values(m: TargetTable, deleted: bool) -> list[tuple[str, exp.Expr]]:
    meta = m.meta
    values: list[tuple[str, exp.Expr]] = [
        (meta.lsn, col(Stage.lsn, S)),
        (meta.commit_lsn, col(Stage.commit_lsn, S)),
        (meta.txid, col(Stage.txid, S)),
        (meta.op, col(Stage.op, S)),
        (meta.source_ts, col(Stage.source_ts, S)),
        (meta.loaded_at, exp.CurrentTimestamp()),
    ]
    if m.soft_delete:
        values.append((meta.deleted, exp.true() if deleted else exp.false()))
    return values


def mirror_upsert(m: TargetTable, stage: str, toast: frozenset[int]) -> exp.Merge:
    """Upsert the stage's newest rows under the position guard, keeping TOAST columns.

    A row is written only if its lsn is newer than the stored row's and than a recorded
    delete of its key. Columns flagged ``t<i>`` keep the stored value.
    """
    updates: list[tuple[str, exp.Expr]] = []
    inserts: list[tuple[str, exp.Expr]] = []
    for i, (name, _) in enumerate(m.columns):
        value = m.staged(name)
        inserts.append((name, value))
        if name in m.key:
            continue
        if i in toast:
            value = exp.Case(ifs=[exp.If(this=col(Stage.toast(i), S), true=col(name, T))])
            value.set("default", m.staged(name))
        updates.append((name, value))
    meta = metadata_values(m, deleted=False)
    return exp.Merge(
        this=m.target.expr(T),
        using=_guarded_source(m, stage, deleted=False),
        on=m.key_match(T),
        whens=exp.Whens(
            expressions=[
                exp.When(
                    matched=True,
                    condition=newer(m.meta, T),
                    then=when_update(updates + meta),
                ),
                exp.When(matched=False, then=when_insert(inserts + meta)),
            ]
        ),
    )


def record_delete_markers(m: TargetTable, stage: str) -> exp.Merge:
    """Remember each hard-deleted key with the delete's position (the latest one wins)."""
    assert m.markers is not None
    keys = [exp.alias_(m.staged(k), ident(k)) for k in m.key]
    rows = is_kind(Stage.KIND_MARKER) if m.scd2 is not None else col(Stage.deleted, S)
    source = (
        exp.select(
            *keys,
            exp.alias_(col(Stage.lsn, S), ident(Stage.lsn)),
            exp.alias_(col(Stage.commit_lsn, S), ident(Stage.commit_lsn)),
        )
        .from_(exp.Table(this=ident(stage), alias=exp.TableAlias(this=ident(S))))
        .where(rows)
        .subquery(S)
    )
    position = [(m.meta.lsn, col(Stage.lsn, S)), (m.meta.commit_lsn, col(Stage.commit_lsn, S))]
    pairs = [(k, col(k, S)) for k in m.key] + position
    return exp.Merge(
        this=m.markers.expr(D),
        using=source,
        on=m.key_match(D, staged=False),
        whens=exp.Whens(
            expressions=[
                exp.When(
                    matched=True,
                    condition=stage_later(m.meta, D),
                    then=when_update(position),
                ),
                exp.When(matched=False, then=when_insert(pairs)),
            ]
        ),
    )


def hard_delete(m: TargetTable, stage: str) -> exp.Delete:
    """Delete stored rows whose stage delete is newer than the stored row."""
    cond = exp.and_(
        m.key_match(T),
        col(Stage.deleted, S),
        stage_later(m.meta, T),
    )
    return exp.Delete(this=m.target.expr(T), using=[stage_table(stage)], where=exp.Where(this=cond))


def prune_delete_markers(m: TargetTable, stage: str) -> exp.Delete:
    """Drop markers superseded by a newer upsert of the key in this stage.

    Safe after :func:`mirror_upsert`: either the upsert was written (the row's lsn now guards
    the key) or a stored row newer than the upsert, hence than the marker, guards it.
    """
    assert m.markers is not None
    cond = exp.and_(
        m.key_match(D),
        exp.Not(this=col(Stage.deleted, S)),
        stage_later(m.meta, D),
    )
    return exp.Delete(
        this=m.markers.expr(D), using=[stage_table(stage)], where=exp.Where(this=cond)
    )


def soft_delete(m: TargetTable, stage: str) -> exp.Merge:
    """Mark deleted keys ``deleted = true`` with the delete's metadata (position-guarded).

    A key the table never had gets a tombstone row (key + metadata) so that the guard still
    refuses an older replayed insert.
    """
    meta = metadata_values(m, deleted=True)
    keys = [(k, m.staged(k)) for k in m.key]
    return exp.Merge(
        this=m.target.expr(T),
        using=_guarded_source(m, stage, deleted=True),
        on=m.key_match(T),
        whens=exp.Whens(
            expressions=[
                exp.When(matched=True, condition=newer(m.meta, T), then=when_update(meta)),
                exp.When(matched=False, then=when_insert(keys + meta)),
            ]
        ),
    )


def guard_counts(m: TargetTable, stage: str) -> exp.Select:
    """How many staged upserts and deletes pass the position guard: (upserts, deletes)."""
    guard = newer(m.meta, T)
    query = exp.select().from_(stage_table(stage))
    query = query.join(m.target.expr(T), on=m.key_match(T), join_type="left")
    if m.markers is not None:
        query = query.join(m.markers.expr(D), on=m.key_match(D), join_type="left")
        guard = exp.and_(guard, newer(m.meta, D))
    return query.select(
        count_if(exp.and_(exp.Not(this=col(Stage.deleted, S)), guard), "upserts"),
        count_if(exp.and_(col(Stage.deleted, S), guard), "deletes"),
    )
