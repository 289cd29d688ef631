"""Reconciliation of a table without a primary key: the source's rows and the warehouse's live
rows compared as multisets (how many copies of each distinct row), values normalised as in
:mod:`cdc.reconcile.rows`.

Without a key there are no ranges to narrow, so both sides are read whole. A round reads the
source in one REPEATABLE READ snapshot at position P, waits until the consumer applied P
(:class:`cdc.reconcile.lag.LagProbe`), reads the warehouse, then the source again: when the
source did not change between its two reads and the warehouse differs, the difference is
confirmed (the warehouse applied the stream to a point between them); otherwise the round is
repeated, and what still differs after the last round is reported *unsettled*. ``missing``
lists each copy the warehouse lacks, ``extra`` each copy it has too many. No repair: a table
without a key is repaired by a re-snapshot.
"""

from __future__ import annotations

import decimal
import json
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import psycopg

from cdc.compare import normalise
from cdc.model import TableSchema
from cdc.reconcile.report import TableResult
from cdc.reconcile.rows import pg_type
from cdc.reconcile.source import SourceTable, current_lsn

Row = Mapping[str, Any]


def _hashable(value: Any) -> Hashable:
    if isinstance(value, float) and math.isnan(value):
        return ("NaN",)
    if isinstance(value, decimal.Decimal) and value.is_nan():
        return ("NaN",)
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return value  # type: ignore[no-any-return]


def _json(value: Any) -> Any:
    if isinstance(value, list):
        return [_json(v) for v in value]
    return None if value is None else json.loads(value, parse_float=decimal.Decimal)


def row_counts(
    schema: TableSchema, rows: Iterable[Row], *, json_values: bool = False
) -> Counter[Hashable]:
    """Copies of each distinct row, every column normalised (``json_values``: JSON compared
    parsed, as a warehouse that normalises JSON text stores it)."""
    types = [(c.name, pg_type(c.type)) for c in schema.columns]
    out: Counter[Hashable] = Counter()
    for row in rows:
        values = []
        for name, type_name in types:
            value = normalise(row.get(name), type_name)
            if json_values and type_name.removesuffix("[]") == "json":
                value = _json(value)
            values.append(_hashable(value))
        out[tuple(values)] += 1
    return out


def diff_multisets(
    source: Counter[Hashable], warehouse: Counter[Hashable]
) -> tuple[list[Any], list[Any]]:
    """(copies missing from the warehouse, copies it has too many), each row once per copy."""
    missing, extra = source - warehouse, warehouse - source
    return sorted(missing.elements(), key=repr), sorted(extra.elements(), key=repr)


def reconcile_multiset(
    conn: psycopg.Connection[Any],
    src: SourceTable,
    warehouse_rows: Callable[[], list[dict[str, Any]]],
    applied: Callable[[int], bool],
    result: TableResult,
    *,
    rounds: int,
    json_values: bool,
) -> None:
    """Fill ``result`` for a keyless table (see the module docstring)."""
    schema = src.schema

    def source_rows() -> tuple[Counter[Hashable], int]:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            position = current_lsn(conn)
            rows = src.all_rows()
        return row_counts(schema, rows, json_values=json_values), position

    missing: list[Any] = []
    extra: list[Any] = []
    for _ in range(max(1, rounds)):
        before, position = source_rows()
        caught_up = applied(position)
        stored = row_counts(schema, warehouse_rows(), json_values=json_values)
        after, _ = source_rows()
        result.rows_fetched += 2 * sum(before.values()) + sum(stored.values())
        result.source_rows, result.warehouse_rows = sum(after.values()), sum(stored.values())
        result.stalled = not caught_up
        missing, extra = diff_multisets(before, stored)
        if not missing and not extra:
            result.unsettled = []
            return
        if caught_up and before == after:
            result.missing, result.extra = missing, extra
            result.unsettled = []
            return
        result.rechecks += 1
    result.unsettled = [*missing, *extra]
