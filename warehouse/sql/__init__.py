"""Statement builders: every statement is a sqlglot expression, rendered per dialect.

Identifiers are always quoted; values never appear in SQL text: rows reach the engine as a
staged (registered) Arrow table whose columns follow :class:`warehouse.arrow.Stage`, and the
few scalar inputs are bound parameters (``exp.Placeholder``). Nothing here is DuckDB-specific
beyond the default dialect, so another engine's adapter can reuse the builders and render
them with its own dialect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlglot import exp

from cdc.model import ColumnType
from cdc.names import case_collisions, display
from warehouse.arrow import Stage
from warehouse.base import (
    RECONCILE_COLUMNS,
    IncompatibleSchemaChangeError,
    MetadataColumns,
    Scd2Options,
    TableBatch,
    TableTarget,
    TerminalWarehouseError,
)
from warehouse.types import DT, fetch_type, metadata_types

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


@dataclass(frozen=True, slots=True)
class TargetTable:
    """What the apply statements need to know about one target table.

    ``columns`` are the data columns in schema order (stage column ``c<i>`` is column i);
    ``markers`` is the delete-marker table (key columns + lsn), None with soft deletes;
    ``scd2`` is set for history tables; ``value`` reads a staged column as its target type
    (default: ``CAST``; the Snowflake adapter parses JSON text into VARIANT and ARRAY).
    """

    target: TableRef
    markers: TableRef | None
    columns: tuple[tuple[str, exp.DataType], ...]
    key: tuple[str, ...]
    meta: MetadataColumns
    soft_delete: bool
    scd2: Scd2Options | None = None
    value: StagedValue | None = None

    def index(self, name: str) -> int:
        return [c for c, _ in self.columns].index(name)

    def staged(self, name: str) -> exp.Expr:
        """The stage's value of a data column, cast to the column's SQL type."""
        i = self.index(name)
        if self.value is not None:
            return self.value(col(Stage.data(i), S), self.columns[i][1])
        return exp.Cast(this=col(Stage.data(i), S), to=self.columns[i][1].copy())

    def key_match(self, other: str, staged: bool = True) -> exp.Expr:
        """``other.k = <stage key>`` for every key column, ANDed."""
        conds = [
            exp.EQ(this=col(k, other), expression=self.staged(k) if staged else col(k, S))
            for k in self.key
        ]
        return exp.and_(*conds)


def reserved_columns(target: TableTarget) -> set[str]:
    """The names a target table keeps for itself: every metadata column, and for a history
    table the validity columns. Source columns may not use them; reads leave them out."""
    names = {n for n, _ in metadata_types(target.metadata, True)}
    return names | (set(target.scd2.names) if target.mode == "scd2" else set())


def target_table(
    batch: TableBatch,
    schema: str,
    bookkeeping: str,
    column_type: Callable[[ColumnType], exp.DataType],
    value: StagedValue | None = None,
) -> TargetTable:
    """The statements' view of a batch's target table, checked (both adapters).

    Refuses what can't be replicated: an unknown mode (terminal), a source table without a
    primary key or with columns named like the metadata or validity columns, a type the
    engine can't hold (the table is parked). History tables and hard-delete mirror tables
    keep delete markers in ``bookkeeping.<table>__deleted`` (so do tiered soft-delete mirror
    tables: tiering records there the deleted rows it moves out).
    """
    target, source = batch.target, batch.schema
    if target.mode not in ("mirror", "scd2"):
        raise TerminalWarehouseError(f"table {target.name!r}: mode {target.mode!r} unsupported")
    if not source.key:
        raise IncompatibleSchemaChangeError(
            f"table {target.name!r}: the source table {source.table} has no primary key, so "
            "its changes can't be matched to rows; the table is parked. Add a primary key "
            "at the source (ALTER TABLE ... ADD PRIMARY KEY), then re-snapshot the table",
            table=target.name,
        )
    scd2 = target.scd2 if target.mode == "scd2" else None
    folded = case_collisions([*source.names, *sorted(reserved_columns(target))])
    if folded:
        shown = "; ".join(" and ".join(repr(n) for n in group) for group in folded)
        raise IncompatibleSchemaChangeError(
            f"table {target.name!r}: the source table {display(source.table)} has columns "
            f"whose names differ only in letter case ({shown}); warehouse names are compared "
            "ignoring case (DuckDB folds case even in quotes), so they would be one column. "
            "Nothing of the table was applied and it is parked. Rename one of them at the "
            "source (ALTER TABLE ... RENAME COLUMN), then restart `cdc run`",
            table=target.name,
        )
    clash = reserved_columns(target).intersection(source.names)
    if clash:
        raise IncompatibleSchemaChangeError(
            f"table {target.name!r}: source columns {sorted(clash)} collide with the "
            "metadata or validity columns; rename them in the table's settings "
            "(consumer.metadata_prefix, scd2.valid_from/valid_to/is_current)",
            table=target.name,
        )
    try:
        columns = tuple((c.name, column_type(c.type)) for c in source.columns)
    except IncompatibleSchemaChangeError as exc:
        exc.table = exc.table or target.name
        raise
    keep_markers = scd2 is not None or not target.soft_delete or target.tiered
    return TargetTable(
        target=TableRef(schema, target.name),
        markers=TableRef(bookkeeping, f"{target.name}__deleted") if keep_markers else None,
        columns=columns,
        key=source.key,
        meta=target.metadata,
        soft_delete=target.soft_delete,
        scd2=scd2,
        value=value,
    )


def mode_switch_refused(
    m: TargetTable, rows: int, stored: str, wanted: str
) -> IncompatibleSchemaChangeError:
    """The error for a table holding rows of the other mode (mirror vs scd2)."""
    markers = f"{m.markers.schema}.{m.markers.name}" if m.markers else f"{m.target.name}__deleted"
    return IncompatibleSchemaChangeError(
        f"table {m.target.name!r} holds {rows} rows replicated in mode {stored!r}, but "
        f"cdc.yaml now says mode {wanted!r}; the two are not mixed and the table is "
        f"parked. To keep the old table, set its mode back. To switch, migrate: rename "
        f"or drop {m.target.schema}.{m.target.name} (and {markers}), then re-snapshot the "
        f"table so it is rebuilt in mode {wanted!r}",
        table=m.target.name,
    )


def history_table(target_: TableRef, key: Sequence[str], meta: MetadataColumns,
                  scd2: Scd2Options) -> TargetTable:  # fmt: skip
    """The statements' view of a registered history table (reads: key columns only)."""
    return TargetTable(target=target_, markers=None, columns=(), key=tuple(key), meta=meta,
                       soft_delete=False, scd2=scd2)  # fmt: skip


# ---- DDL ----------------------------------------------------------------------------------


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


# ---- mirror apply -------------------------------------------------------------------------


def _is_null(e: exp.Expr) -> exp.Expr:
    return exp.Is(this=e, expression=exp.Null())


def _newer(than: exp.Expr) -> exp.Expr:
    """``than IS NULL OR s.m_lsn > than``: the position guard against one stored lsn."""
    return exp.or_(_is_null(than), exp.GT(this=col(Stage.lsn, S), expression=than))


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
        where = exp.and_(kind, _newer(col(m.meta.lsn, D)))
    return query.where(where).subquery(S)


def _metadata_values(m: TargetTable, deleted: bool) -> list[tuple[str, exp.Expr]]:
    meta = m.meta
    values: list[tuple[str, exp.Expr]] = [
        (meta.lsn, col(Stage.lsn, S)),
        (meta.txid, col(Stage.txid, S)),
        (meta.op, col(Stage.op, S)),
        (meta.source_ts, col(Stage.source_ts, S)),
        (meta.loaded_at, exp.CurrentTimestamp()),
    ]
    if m.soft_delete:
        values.append((meta.deleted, exp.true() if deleted else exp.false()))
    return values


def _set(pairs: Sequence[tuple[str, exp.Expr]]) -> exp.Update:
    return exp.Update(expressions=[exp.EQ(this=col(n), expression=v) for n, v in pairs])


def _insert(pairs: Sequence[tuple[str, exp.Expr]]) -> exp.Insert:
    return exp.Insert(
        this=exp.Tuple(expressions=[col(n) for n, _ in pairs]),
        expression=exp.Tuple(expressions=[v for _, v in pairs]),
    )


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
    meta = _metadata_values(m, deleted=False)
    return exp.Merge(
        this=m.target.expr(T),
        using=_guarded_source(m, stage, deleted=False),
        on=m.key_match(T),
        whens=exp.Whens(
            expressions=[
                exp.When(
                    matched=True, condition=_newer(col(m.meta.lsn, T)), then=_set(updates + meta)
                ),
                exp.When(matched=False, then=_insert(inserts + meta)),
            ]
        ),
    )


def record_delete_markers(m: TargetTable, stage: str) -> exp.Merge:
    """Remember each hard-deleted key with the delete's lsn (the highest one wins)."""
    assert m.markers is not None
    keys = [exp.alias_(m.staged(k), ident(k)) for k in m.key]
    rows = _is_kind(Stage.KIND_MARKER) if m.scd2 is not None else col(Stage.deleted, S)
    source = (
        exp.select(*keys, exp.alias_(col(Stage.lsn, S), ident(Stage.lsn)))
        .from_(exp.Table(this=ident(stage), alias=exp.TableAlias(this=ident(S))))
        .where(rows)
        .subquery(S)
    )
    lsn = m.meta.lsn
    pairs = [(k, col(k, S)) for k in m.key] + [(lsn, col(Stage.lsn, S))]
    return exp.Merge(
        this=m.markers.expr(D),
        using=source,
        on=m.key_match(D, staged=False),
        whens=exp.Whens(
            expressions=[
                exp.When(
                    matched=True,
                    condition=exp.GT(this=col(Stage.lsn, S), expression=col(lsn, D)),
                    then=_set([(lsn, col(Stage.lsn, S))]),
                ),
                exp.When(matched=False, then=_insert(pairs)),
            ]
        ),
    )


def _stage_table(stage: str | TableRef) -> exp.Table:
    """A stage as ``s``: a registered Arrow table (DuckDB) or a staging table (Snowflake)."""
    if isinstance(stage, TableRef):
        return stage.expr(S)
    return exp.Table(this=ident(stage), alias=exp.TableAlias(this=ident(S)))


def hard_delete(m: TargetTable, stage: str) -> exp.Delete:
    """Delete stored rows whose stage delete is newer than the stored row."""
    cond = exp.and_(
        m.key_match(T),
        col(Stage.deleted, S),
        exp.GT(this=col(Stage.lsn, S), expression=col(m.meta.lsn, T)),
    )
    return exp.Delete(
        this=m.target.expr(T), using=[_stage_table(stage)], where=exp.Where(this=cond)
    )


def prune_delete_markers(m: TargetTable, stage: str) -> exp.Delete:
    """Drop markers superseded by a newer upsert of the key in this stage.

    Safe after :func:`mirror_upsert`: either the upsert was written (the row's lsn now guards
    the key) or a stored row newer than the upsert, hence than the marker, guards it.
    """
    assert m.markers is not None
    cond = exp.and_(
        m.key_match(D),
        exp.Not(this=col(Stage.deleted, S)),
        exp.LT(this=col(m.meta.lsn, D), expression=col(Stage.lsn, S)),
    )
    return exp.Delete(
        this=m.markers.expr(D), using=[_stage_table(stage)], where=exp.Where(this=cond)
    )


def soft_delete(m: TargetTable, stage: str) -> exp.Merge:
    """Mark deleted keys ``deleted = true`` with the delete's metadata (position-guarded).

    A key the table never had gets a tombstone row (key + metadata) so that the guard still
    refuses an older replayed insert.
    """
    meta = _metadata_values(m, deleted=True)
    keys = [(k, m.staged(k)) for k in m.key]
    return exp.Merge(
        this=m.target.expr(T),
        using=_guarded_source(m, stage, deleted=True),
        on=m.key_match(T),
        whens=exp.Whens(
            expressions=[
                exp.When(matched=True, condition=_newer(col(m.meta.lsn, T)), then=_set(meta)),
                exp.When(matched=False, then=_insert(keys + meta)),
            ]
        ),
    )


def _count_if(cond: exp.Expr, name: str) -> exp.Expr:
    case = exp.Case(ifs=[exp.If(this=cond, true=exp.Literal.number(1))])
    case.set("default", exp.Literal.number(0))
    return exp.alias_(
        exp.Coalesce(this=exp.Sum(this=case), expressions=[exp.Literal.number(0)]), name
    )


def guard_counts(m: TargetTable, stage: str) -> exp.Select:
    """How many staged upserts and deletes pass the position guard: (upserts, deletes)."""
    guard = _newer(col(m.meta.lsn, T))
    query = exp.select().from_(_stage_table(stage))
    query = query.join(m.target.expr(T), on=m.key_match(T), join_type="left")
    if m.markers is not None:
        query = query.join(m.markers.expr(D), on=m.key_match(D), join_type="left")
        guard = exp.and_(guard, _newer(col(m.meta.lsn, D)))
    return query.select(
        _count_if(exp.and_(exp.Not(this=col(Stage.deleted, S)), guard), "upserts"),
        _count_if(exp.and_(col(Stage.deleted, S), guard), "deletes"),
    )


def select_live(ref: TableRef, columns: Columns, deleted: str | None) -> exp.Select:
    """Live rows of a table, each column cast to its fetch representation."""
    projections: list[exp.Expr] = []
    for name, dtype in columns:
        as_type = fetch_type(dtype)
        value: exp.Expr = col(name) if as_type is None else exp.Cast(this=col(name), to=as_type)
        projections.append(exp.alias_(value, ident(name)))
    query = exp.select(*projections).from_(ref.expr())
    if deleted is not None:
        query = query.where(
            exp.Not(this=exp.Coalesce(this=col(deleted), expressions=[exp.false()]))
        )
    return query


# ---- scd2 apply ---------------------------------------------------------------------------


def _is_true(e: exp.Expr) -> exp.Expr:
    """``COALESCE(e, false) = true``: NULL counts as false."""
    return exp.EQ(this=exp.Coalesce(this=e, expressions=[exp.false()]), expression=exp.true())


def _is_kind(kind: str) -> exp.Expr:
    return exp.EQ(this=col(Stage.kind, S), expression=exp.Literal.string(kind))


def _fetched(name: str, dtype: exp.DataType, table: str | None = None) -> exp.Expr:
    """A stored column in its fetch representation (see ``types.fetch_type``), named as is."""
    as_type = fetch_type(dtype)
    value: exp.Expr = col(name, table)
    return exp.alias_(value if as_type is None else exp.Cast(this=value, to=as_type), ident(name))


def _window(
    func: exp.Expr, partition: Sequence[exp.Expr], order: exp.Expr, desc: bool = False
) -> exp.Window:
    return exp.Window(
        this=func,
        partition_by=list(partition),
        order=exp.Order(expressions=[exp.Ordered(this=order, desc=desc)]),
    )


def scd2_meta_columns(m: TargetTable) -> list[str]:
    """Metadata and validity columns a history row carries, in the order of the fetch queries."""
    assert m.scd2 is not None
    meta, v = m.meta, m.scd2
    return [meta.lsn, meta.txid, meta.op, meta.source_ts, v.valid_from, v.valid_to, meta.deleted]


def scd2_tail(m: TargetTable, keys: StageName) -> exp.Select:
    """The last two versions (by ``_cdc_lsn``) of every key staged in ``keys``.

    Columns: the data columns (fetch representation), then :func:`scd2_meta_columns`.
    """
    return _latest(m, keys, 2, [*map(col, scd2_meta_columns(m))])


def latest_rows(m: TargetTable, keys: StageName) -> exp.Select:
    """The stored row of every key staged in ``keys``, deleted ones included (a mirror table's
    soft-deleted row, an scd2 table's last version): the data columns (fetch representation).
    A hard-deleted mirror row is gone: no row. The row's ``_cdc_lsn`` follows the data."""
    return _latest(m, keys, 1, [col(m.meta.lsn)])


def deleted_at(m: TargetTable, lsns: StageName) -> exp.Select:
    """Keys deleted at the positions staged in ``lsns`` (column ``lsn``): key columns (fetch
    representation), then the position. From the delete markers, or the soft-deleted rows."""
    types = dict(m.columns)
    at = col("lsn", S)
    cond: exp.Expr
    if m.markers is not None:
        source, alias, cond = m.markers, D, exp.EQ(this=col(m.meta.lsn, D), expression=at)
    else:
        source, alias = m.target, T
        cond = exp.and_(
            exp.EQ(this=col(m.meta.lsn, T), expression=at), _is_true(col(m.meta.deleted, T))
        )
    return (
        exp.select(*(_fetched(k, types[k], alias) for k in m.key), col(m.meta.lsn, alias))
        .from_(source.expr(alias))
        .join(_stage_table(lsns), on=cond)
    )


def _latest(m: TargetTable, keys: StageName, depth: int, extra: Sequence[exp.Expr]) -> exp.Select:
    """Each staged key's last ``depth`` rows by ``_cdc_lsn``: data columns, then ``extra``."""
    rn = "_cdc_rn"
    numbered = (
        exp.select(
            exp.Column(this=exp.Star(), table=ident(T)),
            exp.alias_(
                _window(exp.RowNumber(), [col(k, T) for k in m.key], col(m.meta.lsn, T), True),
                ident(rn),
            ),
        )
        .from_(m.target.expr(T))
        .join(_stage_table(keys), on=m.key_match(T))
    )
    names = [*(_fetched(n, t) for n, t in m.columns), *extra]
    return (
        exp.select(*names)
        .from_(numbered.subquery(T))
        .where(exp.LTE(this=col(rn), expression=exp.Literal.number(depth)))
    )


def scd2_hwm(m: TargetTable, keys: StageName) -> exp.Select:
    """Recorded delete positions of the keys staged in ``keys``: key columns, then lsn."""
    assert m.markers is not None
    types = dict(m.columns)
    return (
        exp.select(*(_fetched(k, types[k], D) for k in m.key), col(m.meta.lsn, D))
        .from_(m.markers.expr(D))
        .join(_stage_table(keys), on=m.key_match(D))
    )


def _scd2_values(m: TargetTable) -> list[tuple[str, exp.Expr]]:
    """Metadata and validity of a staged version (insert and update)."""
    assert m.scd2 is not None
    meta, v = m.meta, m.scd2
    return [
        (meta.lsn, col(Stage.lsn, S)),
        (meta.source_ts, col(Stage.source_ts, S)),
        (meta.loaded_at, exp.CurrentTimestamp()),
        (meta.deleted, col(Stage.deleted, S)),
        (v.valid_from, col(Stage.valid_from, S)),
        (v.valid_to, col(Stage.valid_to, S)),
        (v.is_current, _is_null(col(Stage.valid_to, S))),
    ]


def scd2_insert(m: TargetTable, stage: StageName) -> exp.Insert:
    """Insert the staged new versions (kind ``i``)."""
    meta = m.meta
    pairs = [(name, m.staged(name)) for name, _ in m.columns]
    pairs += [(meta.txid, col(Stage.txid, S)), (meta.op, col(Stage.op, S)), *_scd2_values(m)]
    query = (
        exp.select(*(v for _, v in pairs))
        .from_(_stage_table(stage))
        .where(_is_kind(Stage.KIND_INSERT))
    )
    return exp.Insert(
        this=exp.Schema(this=m.target.expr(), expressions=[ident(n) for n, _ in pairs]),
        expression=query,
    )


def _stored_version(m: TargetTable, kind: str) -> exp.Expr:
    """Stage rows of one kind matched to the stored version they name (key + old lsn)."""
    return exp.and_(
        _is_kind(kind),
        m.key_match(T),
        exp.EQ(this=col(m.meta.lsn, T), expression=col(Stage.old_lsn, S)),
    )


def scd2_update(m: TargetTable, stage: StageName) -> exp.Update:
    """Rewrite stored versions (kind ``u``): validity, flags and position always; the data
    columns only where ``m_values`` is set (an in-place change), else they keep their value."""
    pairs: list[tuple[str, exp.Expr]] = []
    for name, _ in m.columns:
        if name in m.key:
            continue
        value = exp.Case(ifs=[exp.If(this=col(Stage.values, S), true=m.staged(name))])
        value.set("default", col(name, T))
        pairs.append((name, value))
    update = _set([*pairs, *_scd2_values(m)])
    update.set("this", m.target.expr(T))
    update.set("from_", exp.From(this=_stage_table(stage)))
    update.set("where", exp.Where(this=_stored_version(m, Stage.KIND_UPDATE)))
    return update


def scd2_remove(m: TargetTable, stage: StageName) -> exp.Delete:
    """Delete stored versions the batch removed (kind ``r``)."""
    return exp.Delete(
        this=m.target.expr(T),
        using=[_stage_table(stage)],
        where=exp.Where(this=_stored_version(m, Stage.KIND_REMOVE)),
    )


def create_current_view(view: TableRef, m: TargetTable) -> exp.Create:
    """``<table>_current``: the current version of every live key."""
    assert m.scd2 is not None
    query = exp.select(exp.Star()).from_(m.target.expr()).where(col(m.scd2.is_current))
    return exp.Create(this=view.expr(), kind="VIEW", replace=True, expression=query)


def select_history(m: TargetTable, columns: Columns) -> exp.Select:
    """Every version, ordered by key then ``_cdc_lsn``, columns in fetch representation."""
    return (
        exp.select(*(_fetched(n, t) for n, t in columns))
        .from_(m.target.expr())
        .order_by(*(col(k) for k in m.key), col(m.meta.lsn))
    )


def key_is_text(key: Sequence[str]) -> exp.Expr:
    """``CAST(k AS VARCHAR) = ?`` for every key column (bound: the key values as text)."""
    varchar = exp.DataType(this=DT.VARCHAR)
    return exp.and_(
        *(exp.EQ(this=exp.Cast(this=col(k), to=varchar.copy()), expression=exp.Placeholder())
          for k in key)
    )  # fmt: skip


def of_key(
    query: exp.Select, m: TargetTable, key: Sequence[str] | None
) -> tuple[exp.Select, list[str]]:
    """``query`` limited to one key given as its key columns' values in text, and the binds."""
    if key is None:
        return query, []
    if len(key) != len(m.key):
        raise TerminalWarehouseError(
            f"table {m.target.name!r} has key columns {list(m.key)}; "
            f"give one value for each (got {len(key)})"
        )
    return query.where(key_is_text(m.key)), list(key)


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
    is_true = _is_true
    prev_to, prev_deleted, first = col("_prev_to"), col("_prev_deleted"), col("_rn")
    later = exp.GT(this=first, expression=exp.Literal.number(1))
    numbered = exp.select(
        *keys,
        frm,
        to,
        cur,
        deleted,
        exp.alias_(_window(exp.Lag(this=col(v.valid_to)), keys, lsn), "_prev_to"),
        exp.alias_(_window(exp.Lag(this=col(meta.deleted)), keys, lsn), "_prev_deleted"),
        exp.alias_(_window(exp.RowNumber(), keys, lsn), "_rn"),
        exp.alias_(_window(exp.RowNumber(), keys, lsn, desc=True), "_rn_desc"),
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
        "open_closed": exp.NullSafeNEQ(this=cur, expression=exp.Paren(this=_is_null(to))),
        "empty_validity": exp.and_(exp.Not(this=_is_null(to)), empty),
        "overlaps": exp.and_(
            later, exp.or_(_is_null(prev_to), exp.LT(this=frm, expression=prev_to))
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
        exp.alias_(_window(exp.Lead(this=col(v.valid_from)), keys, col(meta.lsn)), nxt),
    ).from_(m.target.expr())
    pairs = [(v.valid_to, col(nxt, S)), (v.is_current, exp.false())]
    update = _set(pairs)
    update.set("this", m.target.expr(T))
    update.set("from_", exp.From(this=following.subquery(S)))
    broken = exp.or_(
        exp.NullSafeNEQ(this=col(v.valid_to, T), expression=col(nxt, S)),
        _is_true(col(v.is_current, T)),
    )
    where = exp.and_(
        *(exp.EQ(this=col(k, T), expression=col(k, S)) for k in m.key),
        exp.EQ(this=col(meta.lsn, T), expression=col(meta.lsn, S)),
        exp.Not(this=_is_null(col(nxt, S))),
        exp.Not(this=_is_true(col(meta.deleted, T))),
        exp.Paren(this=broken),
    )
    update.set("where", exp.Where(this=where))
    return update


def history_counts(m: TargetTable, strict: bool) -> exp.Select:
    """keys, versions, live keys, then one count per HISTORY_CHECKS entry."""

    def count(e: exp.Expr, name: str) -> exp.Expr:
        return _count_if(_is_true(e), name)

    return exp.select(
        count(col("_last"), "keys"),
        exp.alias_(exp.Count(this=exp.Star()), "versions"),
        count(col("_live"), "current"),
        *(count(col(name), name) for name in HISTORY_CHECKS),
    ).from_(_history_flags(m, strict).subquery("f"))


def history_examples(m: TargetTable, strict: bool, limit: int = 5) -> exp.Select:
    """Keys (as text) of versions breaking an invariant, with the invariant's name."""
    checks = [exp.If(this=_is_true(col(n)), true=exp.Literal.string(n)) for n in HISTORY_CHECKS]
    which = exp.Case(ifs=checks)
    keys = [exp.Cast(this=col(k), to=exp.DataType(this=DT.VARCHAR)) for k in m.key]
    query = exp.select(exp.alias_(which, "broken"), *keys).from_(
        _history_flags(m, strict).subquery("f")
    )
    return query.where(exp.Not(this=_is_null(which))).limit(limit)


# ---- bookkeeping --------------------------------------------------------------------------

OFFSET_KEY = ("consumer_group", "topic", "partition")


def upsert_offsets(offsets: TableRef, stage: str) -> exp.Merge:
    """Store next offsets, forward only: an older offset (a zombie consumer) changes nothing."""
    on = exp.and_(*[exp.EQ(this=col(k, T), expression=col(k, S)) for k in OFFSET_KEY])
    now = exp.CurrentTimestamp()
    return exp.Merge(
        this=offsets.expr(T),
        using=_stage_table(stage),
        on=on,
        whens=exp.Whens(
            expressions=[
                exp.When(
                    matched=True,
                    condition=exp.GT(this=col("next_offset", S), expression=col("next_offset", T)),
                    then=_set(
                        [
                            (
                                "next_offset",
                                exp.Greatest(
                                    this=col("next_offset", T), expressions=[col("next_offset", S)]
                                ),
                            ),
                            ("updated_at", now),
                        ]
                    ),
                ),
                exp.When(
                    matched=False,
                    then=_insert(
                        [(k, col(k, S)) for k in (*OFFSET_KEY, "next_offset")]
                        + [("updated_at", now.copy())]
                    ),
                ),
            ]
        ),
    )


def select_offsets(offsets: TableRef) -> exp.Select:
    """(topic, partition, next_offset) of one consumer group (bound: group)."""
    return (
        exp.select(col("topic"), col("partition"), col("next_offset"))
        .from_(offsets.expr())
        .where(exp.EQ(this=col("consumer_group"), expression=exp.Placeholder()))
    )


REGISTRY_COLUMNS = ("table_name", "source_table", "mode", "schema_json")


def register_table(registry: TableRef) -> exp.Merge:
    """Upsert one table's registry row (bound: table_name, source_table, mode, schema_json)."""
    source = exp.select(
        *[exp.alias_(exp.Placeholder(), ident(c)) for c in REGISTRY_COLUMNS]
    ).subquery(S)
    pairs = [(c, col(c, S)) for c in REGISTRY_COLUMNS] + [("updated_at", exp.CurrentTimestamp())]
    return exp.Merge(
        this=registry.expr(T),
        using=source,
        on=exp.EQ(this=col("table_name", T), expression=col("table_name", S)),
        whens=exp.Whens(
            expressions=[
                exp.When(matched=True, then=_set(pairs[1:])),
                exp.When(matched=False, then=_insert(pairs)),
            ]
        ),
    )


# ---- quarantine ---------------------------------------------------------------------------

QUARANTINE_ORIGIN = ("topic", "partition", "offset")
QUARANTINE_COLUMNS = (
    "table_name", "key_json", "topic", "partition", "offset", "lsn", "op", "checks", "reason",
    "raw_key", "raw_value",
)  # fmt: skip


def _origin_match() -> exp.Expr:
    return exp.and_(*[exp.EQ(this=col(k, T), expression=col(k, S)) for k in QUARANTINE_ORIGIN])


def quarantine_insert(ref: TableRef, stage: str) -> exp.Merge:
    """Store staged quarantine rows, once per origin (a redelivery adds nothing)."""
    pairs: list[tuple[str, exp.Expr]] = [(c, col(c, S)) for c in QUARANTINE_COLUMNS]
    pairs.append(("quarantined_at", exp.CurrentTimestamp()))
    return exp.Merge(
        this=ref.expr(T),
        using=_stage_table(stage),
        on=_origin_match(),
        whens=exp.Whens(expressions=[exp.When(matched=False, then=_insert(pairs))]),
    )


def quarantine_resolve(ref: TableRef, stage: StageName) -> exp.Update:
    """Mark the staged origins replayed."""
    update = _set([("replayed_at", exp.CurrentTimestamp())])
    update.set("this", ref.expr(T))
    update.set("from_", exp.From(this=_stage_table(stage)))
    update.set("where", exp.Where(this=exp.and_(_origin_match(), _is_null(col("replayed_at", T)))))
    return update


def quarantine_open(ref: TableRef) -> exp.Select:
    """Per key of one table (bound: table name): partition and earliest open offset."""
    return (
        exp.select(col("key_json"), col("partition"), exp.Min(this=col("offset")))
        .from_(ref.expr())
        .where(
            exp.and_(
                exp.EQ(this=col("table_name"), expression=exp.Placeholder()),
                _is_null(col("replayed_at")),
            )
        )
        .group_by(col("key_json"), col("partition"))
    )


def quarantine_open_rows(ref: TableRef) -> exp.Select:
    """Open quarantine rows of one table (bound: table name): key, topic, partition, offset."""
    return (
        exp.select(*map(col, ("key_json", *QUARANTINE_ORIGIN)))
        .from_(ref.expr())
        .where(
            exp.and_(
                exp.EQ(this=col("table_name"), expression=exp.Placeholder()),
                _is_null(col("replayed_at")),
            )
        )
    )


def quarantine_list(ref: TableRef, table: bool, include_replayed: bool) -> exp.Select:
    """Quarantine rows in origin order (bound: the table name when ``table``)."""
    query = exp.select(*map(col, (*QUARANTINE_COLUMNS, "quarantined_at", "replayed_at")))
    query = query.from_(ref.expr())
    conds: list[exp.Expr] = []
    if table:
        conds.append(exp.EQ(this=col("table_name"), expression=exp.Placeholder()))
    if not include_replayed:
        conds.append(_is_null(col("replayed_at")))
    if conds:
        query = query.where(exp.and_(*conds))
    return query.order_by(*map(col, QUARANTINE_ORIGIN))


def count_rows(ref: TableRef, deleted: str | None) -> exp.Select:
    query = exp.select(exp.Count(this=exp.Star())).from_(ref.expr())
    if deleted is not None:
        query = query.where(
            exp.Not(this=exp.Coalesce(this=col(deleted), expressions=[exp.false()]))
        )
    return query


def newest_applied(ref: TableRef, meta: MetadataColumns) -> exp.Select:
    """``max`` of the position, source commit time and load time of a table's rows."""
    return exp.select(
        *[
            exp.alias_(exp.Max(this=col(c)), ident(c))
            for c in (meta.lsn, meta.source_ts, meta.loaded_at)
        ]
    ).from_(ref.expr())


def live_rows_count(schema: str, name: str, registry_doc: str) -> exp.Select:
    """``count(*)`` of a registered table's live rows (its registry JSON says how): current
    versions of an scd2 table, rows not soft-deleted of a mirror table."""
    info = json.loads(registry_doc)
    ref = TableRef(schema, name)
    if info["mode"] == "scd2":
        return count_rows(ref, None).where(col(info["scd2"]["is_current"]))
    return count_rows(ref, info["metadata"]["deleted"] if info["soft_delete"] else None)


# ---- Snowflake mirror apply (MERGE-free; stage as a schema-qualified table) ----------------
#
# fakesnow can't run MERGE inside a transaction, so the Snowflake adapter upserts with
# UPDATE ... FROM + INSERT ... WHERE NOT EXISTS. Staged values are read through ``value``
# (a function of the stage column and the target type, e.g. PARSE_JSON for VARIANT).


def _plain(column: exp.Expr, dtype: exp.DataType) -> exp.Expr:
    return column


def _stage_ref(stage: TableRef) -> exp.Table:
    return stage.expr(S)


def sf_key_match(m: TargetTable, other: str) -> exp.Expr:
    """``other.k = s.c<i>`` for every key column (staged keys load as the column type)."""
    return exp.and_(
        *[exp.EQ(this=col(k, other), expression=col(Stage.data(m.index(k)), S)) for k in m.key]
    )


def _sf_source(m: TargetTable, stage: TableRef, deleted: bool) -> exp.Subquery:
    """Stage rows of one kind, newest per key, not older than a recorded delete marker.

    Deletes of an scd2 stage are its delete-marker rows (kind ``d``)."""
    kind: exp.Expr = col(Stage.deleted, S) if deleted else exp.Not(this=col(Stage.deleted, S))
    if deleted and m.scd2 is not None:
        kind = _is_kind(Stage.KIND_MARKER)
    newest = exp.Window(
        this=exp.RowNumber(),
        partition_by=[col(Stage.data(m.index(k)), S) for k in m.key],
        order=exp.Order(expressions=[exp.Ordered(this=col(Stage.lsn, S), desc=True)]),
    )
    query = exp.select(exp.Column(this=exp.Star(), table=ident(S))).from_(_stage_ref(stage))
    where: exp.Expr = kind
    # as in _guarded_source: a tiered soft-delete table's deletes are guarded by the markers
    if m.markers is not None and (not deleted or (m.soft_delete and m.scd2 is None)):
        query = query.join(m.markers.expr(D), on=sf_key_match(m, D), join_type="left")
        where = exp.and_(kind, _newer(col(m.meta.lsn, D)))
    query = query.where(where).qualify(exp.EQ(this=newest, expression=exp.Literal.number(1)))
    return query.subquery(S)


def _not_exists(ref: TableRef, alias: str, match: exp.Expr) -> exp.Expr:
    inner = exp.select(exp.Literal.number(1)).from_(ref.expr(alias)).where(match)
    return exp.Not(this=exp.Exists(this=inner))


def _sf_insert(
    ref: TableRef, pairs: Sequence[tuple[str, exp.Expr]], source: exp.Select
) -> exp.Insert:
    return exp.Insert(
        this=exp.Schema(this=ref.expr(), expressions=[ident(n) for n, _ in pairs]),
        expression=source,
    )


def sf_mirror_update(
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
    pairs += _metadata_values(m, deleted=False)
    guard = exp.GT(this=col(Stage.lsn, S), expression=col(m.meta.lsn, T))
    return exp.Update(
        this=m.target.expr(T),
        expressions=[exp.EQ(this=col(n), expression=v) for n, v in pairs],
        from_=exp.From(this=_sf_source(m, stage, deleted=False)),
        where=exp.Where(this=exp.and_(sf_key_match(m, T), guard)),
    )


def sf_mirror_insert(m: TargetTable, stage: TableRef, value: StagedValue = _plain) -> exp.Insert:
    """Insert staged upserts of keys the table doesn't hold (TOAST columns: NULL, none stored)."""
    pairs = [(n, value(col(Stage.data(i), S), t)) for i, (n, t) in enumerate(m.columns)]
    pairs += _metadata_values(m, deleted=False)
    source = (
        exp.select(*[v for _, v in pairs])
        .from_(_sf_source(m, stage, deleted=False))
        .where(_not_exists(m.target, T, sf_key_match(m, T)))
    )
    return _sf_insert(m.target, pairs, source)


def sf_guard_counts(m: TargetTable, stage: TableRef) -> exp.Select:
    """Staged upserts and deletes passing the position guard: (upserts, deletes)."""
    guard = _newer(col(m.meta.lsn, T))
    query = exp.select().from_(_stage_ref(stage))
    query = query.join(m.target.expr(T), on=sf_key_match(m, T), join_type="left")
    if m.markers is not None:
        query = query.join(m.markers.expr(D), on=sf_key_match(m, D), join_type="left")
        guard = exp.and_(guard, _newer(col(m.meta.lsn, D)))
    return query.select(
        _count_if(exp.and_(exp.Not(this=col(Stage.deleted, S)), guard), "upserts"),
        _count_if(exp.and_(col(Stage.deleted, S), guard), "deletes"),
    )


def _sf_deletes(m: TargetTable, stage: TableRef) -> exp.Subquery:
    return _sf_source(m, stage, deleted=True)


def sf_markers_update(m: TargetTable, stage: TableRef) -> exp.Update:
    """Raise recorded delete markers to a newer staged delete's lsn."""
    assert m.markers is not None
    lsn = m.meta.lsn
    return exp.Update(
        this=m.markers.expr(D),
        expressions=[exp.EQ(this=col(lsn), expression=col(Stage.lsn, S))],
        from_=exp.From(this=_sf_deletes(m, stage)),
        where=exp.Where(
            this=exp.and_(
                sf_key_match(m, D), exp.GT(this=col(Stage.lsn, S), expression=col(lsn, D))
            )
        ),
    )


def sf_markers_insert(m: TargetTable, stage: TableRef) -> exp.Insert:
    """Record a delete marker for staged deletes of keys without one."""
    assert m.markers is not None
    pairs = [(k, col(Stage.data(m.index(k)), S)) for k in m.key]
    pairs.append((m.meta.lsn, col(Stage.lsn, S)))
    source = (
        exp.select(*[v for _, v in pairs])
        .from_(_sf_deletes(m, stage))
        .where(_not_exists(m.markers, D, sf_key_match(m, D)))
    )
    return _sf_insert(m.markers, pairs, source)


def sf_hard_delete(m: TargetTable, stage: TableRef) -> exp.Delete:
    """Delete stored rows older than their staged delete."""
    cond = exp.and_(
        sf_key_match(m, T), exp.GT(this=col(Stage.lsn, S), expression=col(m.meta.lsn, T))
    )
    return exp.Delete(
        this=m.target.expr(T), using=[_sf_deletes(m, stage)], where=exp.Where(this=cond)
    )


def sf_prune_delete_markers(m: TargetTable, stage: TableRef) -> exp.Delete:
    """Drop markers superseded by a newer staged upsert (see :func:`prune_delete_markers`)."""
    assert m.markers is not None
    cond = exp.and_(
        sf_key_match(m, D),
        exp.Not(this=col(Stage.deleted, S)),
        exp.LT(this=col(m.meta.lsn, D), expression=col(Stage.lsn, S)),
    )
    return exp.Delete(this=m.markers.expr(D), using=[_stage_ref(stage)], where=exp.Where(this=cond))


def sf_soft_delete_update(m: TargetTable, stage: TableRef) -> exp.Update:
    """Mark stored rows older than their staged delete as deleted, with its metadata."""
    meta = _metadata_values(m, deleted=True)
    return exp.Update(
        this=m.target.expr(T),
        expressions=[exp.EQ(this=col(n), expression=v) for n, v in meta],
        from_=exp.From(this=_sf_deletes(m, stage)),
        where=exp.Where(this=exp.and_(sf_key_match(m, T), _newer(col(m.meta.lsn, T)))),
    )


def sf_soft_delete_insert(m: TargetTable, stage: TableRef) -> exp.Insert:
    """A tombstone row (key + metadata) for a staged delete of a key the table never had."""
    pairs: list[tuple[str, exp.Expr]] = [(k, col(Stage.data(m.index(k)), S)) for k in m.key]
    pairs += _metadata_values(m, deleted=True)
    source = (
        exp.select(*[v for _, v in pairs])
        .from_(_sf_deletes(m, stage))
        .where(_not_exists(m.target, T, sf_key_match(m, T)))
    )
    return _sf_insert(m.target, pairs, source)


def sf_quarantine_insert(ref: TableRef, stage: TableRef) -> exp.Insert:
    """Store staged quarantine rows, once per origin (see :func:`quarantine_insert`)."""
    pairs: list[tuple[str, exp.Expr]] = [(c, col(c, S)) for c in QUARANTINE_COLUMNS]
    pairs.append(("quarantined_at", exp.CurrentTimestamp()))
    source = (
        exp.select(*[v for _, v in pairs])
        .from_(_stage_ref(stage))
        .where(_not_exists(ref, T, _origin_match()))
    )
    return _sf_insert(ref, pairs, source)


def _bound_match(columns: Sequence[str]) -> exp.Expr:
    return exp.and_(*[exp.EQ(this=col(c), expression=exp.Placeholder()) for c in columns])


def sf_offsets_update(offsets: TableRef) -> exp.Update:
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
                _bound_match(OFFSET_KEY),
                exp.LT(this=col("next_offset"), expression=exp.Placeholder()),
            )
        ),
    )


def sf_insert_if_missing(ref: TableRef, columns: Sequence[str], key: Sequence[str]) -> exp.Insert:
    """Insert one bound row (``columns`` then ``updated_at``) unless a row with the bound
    ``key`` exists (bound: the column values, then the key values)."""
    source = exp.select(*[exp.Placeholder() for _ in columns], exp.CurrentTimestamp()).where(
        exp.Not(
            this=exp.Exists(
                this=exp.select(exp.Literal.number(1)).from_(ref.expr()).where(_bound_match(key))
            )
        )
    )
    return exp.Insert(
        this=exp.Schema(this=ref.expr(), expressions=[ident(c) for c in (*columns, "updated_at")]),
        expression=source,
    )


def sf_register_update(registry: TableRef) -> exp.Update:
    """Update one registry row (bound: source_table, mode, schema_json, table_name)."""
    pairs = [exp.EQ(this=col(c), expression=exp.Placeholder()) for c in REGISTRY_COLUMNS[1:]]
    pairs.append(exp.EQ(this=col("updated_at"), expression=exp.CurrentTimestamp()))
    return exp.Update(
        this=registry.expr(), expressions=pairs, where=exp.Where(this=_bound_match(["table_name"]))
    )


# ---- reconciliation audit (reconcile_runs) ------------------------------------------------


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
