"""Reads of a table's contents: live rows, counts, the newest applied position."""

from __future__ import annotations

import json

from sqlglot import exp

from warehouse.base import MetadataColumns
from warehouse.sql.names import Columns, TableRef, col, ident
from warehouse.types import fetch_type


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
