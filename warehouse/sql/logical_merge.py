"""A merge as UPDATE ... FROM + INSERT ... WHERE NOT EXISTS (the "logical merge").

For engines that can't run MERGE inside a transaction (fakesnow, hence the Snowflake adapter):
the same semantics as :mod:`.mirror`, :mod:`.quarantine` and :mod:`.bookkeeping`'s MERGEs,
split into statements every engine runs in one transaction. The stage is a schema-qualified
table (aliased ``s``); staged values are read through ``value`` (a function of the stage
column and the target type, e.g. PARSE_JSON for VARIANT).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from warehouse.arrow import Stage
from warehouse.sql.bookkeeping import OFFSET_KEY, REGISTRY_COLUMNS
from warehouse.sql.clauses import (
    bound_match,
    count_if,
    insert_select,
    is_kind,
    newer,
    not_exists,
    stage_later,
)
from warehouse.sql.mirror import metadata_values
from warehouse.sql.names import D, S, StagedValue, T, TableRef, col, ident
from warehouse.sql.quarantine import QUARANTINE_COLUMNS, origin_match
from warehouse.sql.target import TargetTable


def _plain(column: exp.Expr, dtype: exp.DataType) -> exp.Expr:
    return column


def logical_key_match(m: TargetTable, other: str) -> exp.Expr:
    """``other.k = s.c<i>`` for every key column (staged keys load as the column type)."""
    return exp.and_(
        *[exp.EQ(this=col(k, other), expression=col(Stage.data(m.index(k)), S)) for k in m.key]
    )


def _logical_source(m: TargetTable, stage: TableRef, deleted: bool) -> exp.Subquery:
    """Stage rows of one kind, newest per key, not older than a recorded delete marker.

    Deletes of an scd2 stage are its delete-marker rows (kind ``d``)."""
    kind: exp.Expr = col(Stage.deleted, S) if deleted else exp.Not(this=col(Stage.deleted, S))
    if deleted and m.scd2 is not None:
        kind = is_kind(Stage.KIND_MARKER)
    newest = exp.Window(
        this=exp.RowNumber(),
        partition_by=[col(Stage.data(m.index(k)), S) for k in m.key],
        order=exp.Order(expressions=[exp.Ordered(this=col(Stage.lsn, S), desc=True)]),
    )
    query = exp.select(exp.Column(this=exp.Star(), table=ident(S))).from_(stage.expr(S))
    where: exp.Expr = kind
    # as in mirror._guarded_source: a tiered soft-delete table's deletes are guarded by the markers
    if m.markers is not None and (not deleted or (m.soft_delete and m.scd2 is None)):
        query = query.join(m.markers.expr(D), on=logical_key_match(m, D), join_type="left")
        where = exp.and_(kind, newer(m.meta, D))
    query = query.where(where).qualify(exp.EQ(this=newest, expression=exp.Literal.number(1)))
    return query.subquery(S)


def logical_upsert_update(
    m: TargetTable, stage: TableRef, toast: frozenset[int], value: StagedValue = _plain
) -> exp.Update:
    """Update stored rows older than their staged upsert; TOAST-flagged columns keep theirs."""
    pairs: list[tuple[str, exp.Expr]] = []
    for i, (name, dtype) in enumerate(m.columns):
        if name in m.key:
            continue
        staged = value(col(Stage.data(i), S), dtype)
        if i in toast:
            case = exp.Case(ifs=[exp.If(this=col(Stage.toast(i), S), true=col(name, T))])
            case.set("default", staged)
            staged = case
        pairs.append((name, staged))
    pairs += metadata_values(m, deleted=False)
    guard = stage_later(m.meta, T)
    return exp.Update(
        this=m.target.expr(T),
        expressions=[exp.EQ(this=col(n), expression=v) for n, v in pairs],
        from_=exp.From(this=_logical_source(m, stage, deleted=False)),
        where=exp.Where(this=exp.and_(logical_key_match(m, T), guard)),
    )


def logical_upsert_insert(
    m: TargetTable, stage: TableRef, value: StagedValue = _plain
) -> exp.Insert:
    """Insert staged upserts of keys the table doesn't hold (TOAST columns: NULL, none stored)."""
    pairs = [(n, value(col(Stage.data(i), S), t)) for i, (n, t) in enumerate(m.columns)]
    pairs += metadata_values(m, deleted=False)
    source = (
        exp.select(*[v for _, v in pairs])
        .from_(_logical_source(m, stage, deleted=False))
        .where(not_exists(m.target, T, logical_key_match(m, T)))
    )
    return insert_select(m.target, pairs, source)


def logical_guard_counts(m: TargetTable, stage: TableRef) -> exp.Select:
    """Staged upserts and deletes passing the position guard: (upserts, deletes)."""
    guard = newer(m.meta, T)
    query = exp.select().from_(stage.expr(S))
    query = query.join(m.target.expr(T), on=logical_key_match(m, T), join_type="left")
    if m.markers is not None:
        query = query.join(m.markers.expr(D), on=logical_key_match(m, D), join_type="left")
        guard = exp.and_(guard, newer(m.meta, D))
    return query.select(
        count_if(exp.and_(exp.Not(this=col(Stage.deleted, S)), guard), "upserts"),
        count_if(exp.and_(col(Stage.deleted, S), guard), "deletes"),
    )


def _logical_deletes(m: TargetTable, stage: TableRef) -> exp.Subquery:
    return _logical_source(m, stage, deleted=True)


def logical_markers_update(m: TargetTable, stage: TableRef) -> exp.Update:
    """Raise recorded delete markers to a later staged delete's position."""
    assert m.markers is not None
    meta = m.meta
    return exp.Update(
        this=m.markers.expr(D),
        expressions=[
            exp.EQ(this=col(meta.lsn), expression=col(Stage.lsn, S)),
            exp.EQ(this=col(meta.commit_lsn), expression=col(Stage.commit_lsn, S)),
        ],
        from_=exp.From(this=_logical_deletes(m, stage)),
        where=exp.Where(this=exp.and_(logical_key_match(m, D), stage_later(meta, D))),
    )


def logical_markers_insert(m: TargetTable, stage: TableRef) -> exp.Insert:
    """Record a delete marker for staged deletes of keys without one."""
    assert m.markers is not None
    pairs = [(k, col(Stage.data(m.index(k)), S)) for k in m.key]
    pairs.append((m.meta.lsn, col(Stage.lsn, S)))
    pairs.append((m.meta.commit_lsn, col(Stage.commit_lsn, S)))
    source = (
        exp.select(*[v for _, v in pairs])
        .from_(_logical_deletes(m, stage))
        .where(not_exists(m.markers, D, logical_key_match(m, D)))
    )
    return insert_select(m.markers, pairs, source)


def logical_hard_delete(m: TargetTable, stage: TableRef) -> exp.Delete:
    """Delete stored rows older than their staged delete."""
    cond = exp.and_(logical_key_match(m, T), stage_later(m.meta, T))
    return exp.Delete(
        this=m.target.expr(T), using=[_logical_deletes(m, stage)], where=exp.Where(this=cond)
    )


def logical_prune_delete_markers(m: TargetTable, stage: TableRef) -> exp.Delete:
    """Drop markers superseded by a newer staged upsert (see
    :func:`.mirror.prune_delete_markers`)."""
    assert m.markers is not None
    cond = exp.and_(
        logical_key_match(m, D),
        exp.Not(this=col(Stage.deleted, S)),
        stage_later(m.meta, D),
    )
    return exp.Delete(this=m.markers.expr(D), using=[stage.expr(S)], where=exp.Where(this=cond))


def logical_soft_delete_update(m: TargetTable, stage: TableRef) -> exp.Update:
    """Mark stored rows older than their staged delete as deleted, with its metadata."""
    meta = metadata_values(m, deleted=True)
    return exp.Update(
        this=m.target.expr(T),
        expressions=[exp.EQ(this=col(n), expression=v) for n, v in meta],
        from_=exp.From(this=_logical_deletes(m, stage)),
        where=exp.Where(this=exp.and_(logical_key_match(m, T), newer(m.meta, T))),
    )


def logical_soft_delete_insert(m: TargetTable, stage: TableRef) -> exp.Insert:
    """A tombstone row (key + metadata) for a staged delete of a key the table never had."""
    pairs: list[tuple[str, exp.Expr]] = [(k, col(Stage.data(m.index(k)), S)) for k in m.key]
    pairs += metadata_values(m, deleted=True)
    source = (
        exp.select(*[v for _, v in pairs])
        .from_(_logical_deletes(m, stage))
        .where(not_exists(m.target, T, logical_key_match(m, T)))
    )
    return insert_select(m.target, pairs, source)


def logical_quarantine_insert(ref: TableRef, stage: TableRef) -> exp.Insert:
    """Store staged quarantine rows, once per origin (see :func:`.quarantine.quarantine_insert`)."""
    pairs: list[tuple[str, exp.Expr]] = [(c, col(c, S)) for c in QUARANTINE_COLUMNS]
    pairs.append(("quarantined_at", exp.CurrentTimestamp()))
    source = (
        exp.select(*[v for _, v in pairs])
        .from_(stage.expr(S))
        .where(not_exists(ref, T, origin_match()))
    )
    return insert_select(ref, pairs, source)


def logical_offsets_update(offsets: TableRef) -> exp.Update:
    """Move one stored offset forward only (bound: next_offset, group, topic, partition,
    next_offset)."""
    return exp.Update(
        this=offsets.expr(),
        expressions=[
            exp.EQ(this=col("next_offset"), expression=exp.Placeholder()),
            exp.EQ(this=col("updated_at"), expression=exp.CurrentTimestamp()),
        ],
        where=exp.Where(
            this=exp.and_(
                bound_match(OFFSET_KEY),
                exp.LT(this=col("next_offset"), expression=exp.Placeholder()),
            )
        ),
    )


def logical_insert_if_missing(
    ref: TableRef, columns: Sequence[str], key: Sequence[str]
) -> exp.Insert:
    """Insert one bound row (``columns`` then ``updated_at``) unless a row with the bound
    ``key`` exists (bound: the column values, then the key values)."""
    source = exp.select(*[exp.Placeholder() for _ in columns], exp.CurrentTimestamp()).where(
        exp.Not(
            this=exp.Exists(
                this=exp.select(exp.Literal.number(1)).from_(ref.expr()).where(bound_match(key))
            )
        )
    )
    return exp.Insert(
        this=exp.Schema(this=ref.expr(), expressions=[ident(c) for c in (*columns, "updated_at")]),
        expression=source,
    )


def logical_register_update(registry: TableRef) -> exp.Update:
    """Update one registry row (bound: source_table, mode, schema_json, table_name)."""
    pairs = [exp.EQ(this=col(c), expression=exp.Placeholder()) for c in REGISTRY_COLUMNS[1:]]
    pairs.append(exp.EQ(this=col("updated_at"), expression=exp.CurrentTimestamp()))
    return exp.Update(
        this=registry.expr(), expressions=pairs, where=exp.Where(this=bound_match(["table_name"]))
    )
