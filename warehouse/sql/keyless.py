"""Tables without a primary key (:mod:`warehouse.keyless`): multiset apply and the watermark.

A keyless table's rows carry a surrogate id (``<prefix>row``, staged as data) that tells equal
rows apart. One stage holds the batch's net changes: *remove* rows (one per distinct value,
``m_count`` copies, ``m_index`` naming it) and *add* rows (one per copy, with its new id).
Removing k copies of a value numbers the stored rows equal to it (NULL-safe on every column,
``IS NOT DISTINCT FROM``, compared as the engine stores them: :data:`Exact`) and deletes those
numbered 1..k. Set-based: a constant number of statements whatever the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sqlglot import exp

from warehouse.arrow import Stage
from warehouse.sql.clauses import insert_select, is_true, not_true, window
from warehouse.sql.names import S, StageName, T, TableRef, col, ident, stage_table
from warehouse.sql.target import TargetTable

# A stored or staged value as compared for equality (an engine whose equality of a type is
# looser than its stored form, e.g. DuckDB's INTERVAL '1 month' = '30 days', compares a
# rendering instead); None: the values themselves.
Exact = Callable[[exp.Expr, exp.DataType], exp.Expr] | None

COUNT, INDEX, ROW = "m_count", "m_index", "m_row"
WATERMARK_COLUMNS: Final = ("table_name", "commit_lsn", "lsn", "read_lsn", "read_offset", "txid")
_N, _K, _R = "n", "k", "r"


def _compare(exact: Exact, value: exp.Expr, dtype: exp.DataType) -> exp.Expr:
    return value if exact is None else exact(value, dtype)


def _sign(value: exp.Expr) -> exp.Expr:
    """``ATAN2(x, -1)``: pi for 0.0, -pi for -0.0 (which ``=`` holds equal), NaN for NaN."""
    return exp.Anonymous(this="ATAN2", expressions=[value, exp.Literal.number(-1)])


def row_match(m: TargetTable, exact: Exact, alias: str = T) -> exp.Expr:
    """Every data column of ``alias`` NULL-safely equal to the stage's value (floats: and the
    same sign of zero, as IEEE equality holds -0.0 = 0.0 but they are different values)."""
    conds: list[exp.Expr] = []
    for name, dtype in m.columns:
        stored = _compare(exact, col(name, alias), dtype)
        staged = _compare(exact, m.staged(name), dtype)
        conds.append(exp.NullSafeEQ(this=stored, expression=staged))
        if dtype.is_type(exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE):
            conds.append(exp.NullSafeEQ(this=_sign(stored.copy()), expression=_sign(staged.copy())))
    return exp.and_(*conds)


def _numbered(m: TargetTable, stage: StageName, exact: Exact) -> exp.Subquery:
    """Stored rows equal to a staged remove, numbered within each value, with its count."""
    rank = window(exp.RowNumber(), [col(INDEX, S)], col(m.meta.row, T))
    query = (
        exp.select(
            exp.alias_(col(m.meta.row, T), ident(_R)),
            exp.alias_(rank, ident(_N)),
            exp.alias_(col(COUNT, S), ident(_K)),
        )
        .from_(m.target.expr(T))
        .join(stage_table(stage), on=exp.and_(is_true(col(Stage.deleted, S)), row_match(m, exact)))
    )
    return query.subquery("q")


def _chosen(m: TargetTable, stage: StageName, exact: Exact) -> exp.Select:
    q = "q"
    return (
        exp.select(col(_R, q))
        .from_(_numbered(m, stage, exact))
        .where(exp.LTE(this=col(_N, q), expression=col(_K, q)))
    )


def keyless_remove_count(m: TargetTable, stage: StageName, exact: Exact) -> exp.Select:
    """How many stored rows :func:`keyless_remove` deletes."""
    return exp.select(exp.Count(this=exp.Star())).from_(_chosen(m, stage, exact).subquery("c"))


def keyless_remove(m: TargetTable, stage: StageName, exact: Exact) -> exp.Delete:
    """Delete ``m_count`` stored copies of each staged remove value."""
    chosen = exp.In(this=col(m.meta.row), query=_chosen(m, stage, exact).subquery())
    return exp.Delete(this=m.target.expr(), where=exp.Where(this=chosen))


def keyless_insert(m: TargetTable, stage: StageName) -> exp.Insert:
    """Insert the staged add rows (one per copy) with their metadata and surrogate ids."""
    meta = m.meta
    pairs: list[tuple[str, exp.Expr]] = [(name, m.staged(name)) for name, _ in m.columns]
    pairs += [
        (meta.lsn, col(Stage.lsn, S)),
        (meta.commit_lsn, col(Stage.commit_lsn, S)),
        (meta.txid, col(Stage.txid, S)),
        (meta.op, col(Stage.op, S)),
        (meta.source_ts, col(Stage.source_ts, S)),
        (meta.loaded_at, exp.CurrentTimestamp()),
        (meta.row, col(ROW, S)),
    ]
    source = (
        exp.select(*[exp.alias_(v, ident(n)) for n, v in pairs])
        .from_(stage_table(stage))
        .where(not_true(col(Stage.deleted, S)))
    )
    return insert_select(m.target, pairs, source)


def keyless_clear(target: TableRef) -> exp.Delete:
    """Every row of the table (a new snapshot replaces them)."""
    return exp.Delete(this=target.expr())


def watermark_select(ref: TableRef) -> exp.Select:
    """A table's stored watermark (parameter: the table name)."""
    return (
        exp.select(*[col(n) for n in WATERMARK_COLUMNS[1:]])
        .from_(ref.expr())
        .where(exp.EQ(this=col("table_name"), expression=exp.Placeholder()))
    )


def watermark_touch(ref: TableRef) -> exp.Update:
    """Stamp a table's watermark row now (parameter: the table name): a write that takes the
    row's lock (or conflicts) before a compare-and-set reads it."""
    return exp.update(
        ref.expr(), {"updated_at": exp.CurrentTimestamp()},
        where=exp.EQ(this=col("table_name"), expression=exp.Placeholder()),
    )  # fmt: skip


def watermark_delete(ref: TableRef) -> exp.Delete:
    return exp.Delete(
        this=ref.expr(), where=exp.Where(this=exp.EQ(this=col("table_name"),
                                                     expression=exp.Placeholder()))
    )  # fmt: skip


def watermark_insert(ref: TableRef) -> exp.Insert:
    """One watermark row (parameters: :data:`WATERMARK_COLUMNS`), stamped now."""
    source = exp.select(*[exp.Placeholder() for _ in WATERMARK_COLUMNS], exp.CurrentTimestamp())
    columns = [ident(n) for n in (*WATERMARK_COLUMNS, "updated_at")]
    return exp.Insert(this=exp.Schema(this=ref.expr(), expressions=columns), expression=source)
