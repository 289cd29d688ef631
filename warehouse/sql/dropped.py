"""Columns the source table no longer has (``tables[].on_column_drop``): which they are, and
the statements of the ``null`` policy (``drop`` runs :func:`warehouse.sql.ddl.drop_column`).

A column dropped at the source disappears from the batch schema (Debezium's newest schema);
the apply writes only the schema's columns, so the warehouse column stays where it is. The
template (``EngineCore._ensure_table``) finds such columns with :func:`dropped_columns` and
applies the table's policy: ``keep`` leaves them, ``null`` sets them to NULL in the live rows
(mirror rows not soft-deleted, current versions of a history table) with :func:`null_columns`,
``drop`` drops them from the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlglot import exp

from warehouse.base import TableTarget
from warehouse.sql.names import TableRef, col
from warehouse.sql.target import reserved_columns


def registered_reserved(doc: Mapping[str, Any] | None) -> set[str]:
    """The metadata and validity column names a table's registry document recorded: columns
    of the table under an earlier ``metadata_prefix`` or validity names are not source
    columns, and no policy touches them."""
    if not doc:
        return set()
    names = {str(n) for n in (doc.get("metadata") or {}).values()}
    scd2 = doc.get("scd2") or {}
    return names | {str(scd2[k]) for k in ("valid_from", "valid_to", "is_current") if k in scd2}


def dropped_columns(
    stored: Iterable[str],
    source: Iterable[str],
    target: TableTarget,
    registered: Mapping[str, Any] | None = None,
) -> list[str]:
    """The data columns of a stored table that the source's columns no longer include, in
    stored order: neither a metadata or validity column of ``target`` nor one the registry
    document ``registered`` recorded as such. Names compare ignoring letter case, as warehouse
    names do (DuckDB folds case even in quotes)."""
    kept = {n.casefold() for n in source}
    kept |= {n.casefold() for n in reserved_columns(target) | registered_reserved(registered)}
    return [n for n in stored if n.casefold() not in kept]


def _live(target: TableTarget) -> exp.Expr | None:
    """The rows a dropped column is nulled in: current versions of a history table, rows not
    soft-deleted of a mirror table (closed versions and deleted rows keep their values)."""
    if target.mode == "scd2":
        return col(target.scd2.is_current)
    if target.soft_delete:
        return exp.Not(this=exp.Coalesce(this=col(target.metadata.deleted),
                                          expressions=[exp.false()]))  # fmt: skip
    return None


def _holding(columns: Sequence[str], target: TableTarget) -> exp.Expr:
    """Live rows where any of ``columns`` still holds a value."""
    held = exp.or_(*(exp.Not(this=exp.Is(this=col(n), expression=exp.Null())) for n in columns))
    live = _live(target)
    return exp.paren(held) if live is None else exp.and_(exp.paren(held), live)


def count_holding(ref: TableRef, columns: Sequence[str], target: TableTarget) -> exp.Select:
    """``count(*)`` of the live rows :func:`null_columns` would change (0: nothing to do)."""
    query = exp.select(exp.Count(this=exp.Star())).from_(ref.expr())
    return query.where(_holding(columns, target))


def null_columns(ref: TableRef, columns: Sequence[str], target: TableTarget) -> exp.Update:
    """``UPDATE t SET c = NULL, ... WHERE (c IS NOT NULL OR ...) AND <live>``: idempotent, a
    second run changes no row."""
    return exp.Update(
        this=ref.expr(),
        expressions=[exp.EQ(this=col(n), expression=exp.Null()) for n in columns],
        where=exp.Where(this=_holding(columns, target)),
    )
