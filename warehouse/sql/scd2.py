"""History (scd2) apply and reads: the tail of each staged key, new and rewritten versions,
delete positions, the current view, and reads of one key's versions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from warehouse.arrow import Stage
from warehouse.base import TerminalWarehouseError
from warehouse.sql.clauses import fetched, is_kind, is_null, is_true, when_update, window
from warehouse.sql.names import Columns, D, S, StageName, T, TableRef, col, ident, stage_table
from warehouse.sql.target import TargetTable
from warehouse.types import DT


def scd2_meta_columns(m: TargetTable) -> list[str]:
    """Metadata and validity columns a history row carries, in the order of the fetch queries."""
    assert m.scd2 is not None
    meta, v = m.meta, m.scd2
    return [meta.lsn, meta.txid, meta.op, meta.source_ts, v.valid_from, v.valid_to, meta.deleted,
            meta.commit_lsn]  # fmt: skip


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
            exp.EQ(this=col(m.meta.lsn, T), expression=at), is_true(col(m.meta.deleted, T))
        )
    return (
        exp.select(*(fetched(k, types[k], alias) for k in m.key), col(m.meta.lsn, alias))
        .from_(source.expr(alias))
        .join(stage_table(lsns), on=cond)
    )


def _latest(m: TargetTable, keys: StageName, depth: int, extra: Sequence[exp.Expr]) -> exp.Select:
    """Each staged key's last ``depth`` rows by ``_cdc_lsn``: data columns, then ``extra``."""
    rn = "_cdc_rn"
    numbered = (
        exp.select(
            exp.Column(this=exp.Star(), table=ident(T)),
            exp.alias_(
                window(exp.RowNumber(), [col(k, T) for k in m.key], col(m.meta.lsn, T), True),
                ident(rn),
            ),
        )
        .from_(m.target.expr(T))
        .join(stage_table(keys), on=m.key_match(T))
    )
    names = [*(fetched(n, t) for n, t in m.columns), *extra]
    return (
        exp.select(*names)
        .from_(numbered.subquery(T))
        .where(exp.LTE(this=col(rn), expression=exp.Literal.number(depth)))
    )


def scd2_hwm(m: TargetTable, keys: StageName) -> exp.Select:
    """Recorded delete positions of the keys staged in ``keys``: key columns, then the lsn and
    the commit lsn."""
    assert m.markers is not None
    types = dict(m.columns)
    return (
        exp.select(
            *(fetched(k, types[k], D) for k in m.key),
            col(m.meta.lsn, D),
            col(m.meta.commit_lsn, D),
        )
        .from_(m.markers.expr(D))
        .join(stage_table(keys), on=m.key_match(D))
    )


def _scd2_values(m: TargetTable) -> list[tuple[str, exp.Expr]]:
    """Metadata and validity of a staged version (insert and update)."""
    assert m.scd2 is not None
    meta, v = m.meta, m.scd2
    return [
        (meta.lsn, col(Stage.lsn, S)),
        (meta.commit_lsn, col(Stage.commit_lsn, S)),
        (meta.source_ts, col(Stage.source_ts, S)),
        (meta.loaded_at, exp.CurrentTimestamp()),
        (meta.deleted, col(Stage.deleted, S)),
        (v.valid_from, col(Stage.valid_from, S)),
        (v.valid_to, col(Stage.valid_to, S)),
        (v.is_current, is_null(col(Stage.valid_to, S))),
    ]


def scd2_insert(m: TargetTable, stage: StageName) -> exp.Insert:
    """Insert the staged new versions (kind ``i``)."""
    meta = m.meta
    pairs = [(name, m.staged(name)) for name, _ in m.columns]
    pairs += [(meta.txid, col(Stage.txid, S)), (meta.op, col(Stage.op, S)), *_scd2_values(m)]
    query = (
        exp.select(*(v for _, v in pairs))
        .from_(stage_table(stage))
        .where(is_kind(Stage.KIND_INSERT))
    )
    return exp.Insert(
        this=exp.Schema(this=m.target.expr(), expressions=[ident(n) for n, _ in pairs]),
        expression=query,
    )


def _stored_version(m: TargetTable, kind: str) -> exp.Expr:
    """Stage rows of one kind matched to the stored version they name (key + old lsn)."""
    return exp.and_(
        is_kind(kind),
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
    update = when_update([*pairs, *_scd2_values(m)])
    update.set("this", m.target.expr(T))
    update.set("from_", exp.From(this=stage_table(stage)))
    update.set("where", exp.Where(this=_stored_version(m, Stage.KIND_UPDATE)))
    return update


def scd2_remove(m: TargetTable, stage: StageName) -> exp.Delete:
    """Delete stored versions the batch removed (kind ``r``)."""
    return exp.Delete(
        this=m.target.expr(T),
        using=[stage_table(stage)],
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
        exp.select(*(fetched(n, t) for n, t in columns))
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
