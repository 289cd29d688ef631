"""Row-by-row diff of the rows fetched from both sides (pure), values normalised with
:func:`cdc.compare.normalise` so the comparison is exact (numbers as ``Decimal``, times in UTC)."""

from __future__ import annotations

import decimal
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdc.compare import normalise
from cdc.model import ColumnType, Kind, TableSchema

Key = tuple[Any, ...]
Row = Mapping[str, Any]


def pg_type(ct: ColumnType) -> str:
    """The type name :func:`cdc.compare.normalise` needs (``real`` is compared as float32)."""
    if ct.kind is Kind.ARRAY and ct.element is not None:
        return pg_type(ct.element) + "[]"
    return {Kind.FLOAT32: "real", Kind.JSON: "json"}.get(ct.kind, ct.kind.value)


def _json(value: Any) -> Any:
    if isinstance(value, list):
        return [_json(v) for v in value]
    return None if value is None else json.loads(value, parse_float=decimal.Decimal)


@dataclass
class RowsDiff:
    """Keys in the source only (with the source row), in the warehouse only, and in both with
    different values (the first differing column, both values); ``lsn``: the warehouse row's
    ``_cdc_lsn`` of every warehouse key seen."""

    missing: dict[Key, Row] = field(default_factory=dict)
    extra: set[Key] = field(default_factory=set)
    different: dict[Key, tuple[str, Any, Any]] = field(default_factory=dict)
    source: dict[Key, Row] = field(default_factory=dict)
    lsn: dict[Key, int] = field(default_factory=dict)

    @property
    def keys(self) -> set[Key]:
        return set(self.missing) | self.extra | set(self.different)

    def merge(self, other: RowsDiff) -> None:
        self.missing.update(other.missing)
        self.extra |= other.extra
        self.different.update(other.different)
        self.source.update(other.source)
        self.lsn.update(other.lsn)


def diff_rows(
    schema: TableSchema,
    source: Iterable[Row],
    warehouse: Iterable[tuple[Row, int]],
    *,
    json_values: bool = False,
) -> RowsDiff:
    """Compare rows by key, every column of the schema. ``json_values``: JSON compared parsed
    (a warehouse that normalises JSON text, like Snowflake's VARIANT)."""
    types = {c.name: pg_type(c.type) for c in schema.columns}
    src = {tuple(r[k] for k in schema.key): r for r in source}
    wh: dict[Key, Row] = {}
    out = RowsDiff(source=src)
    for row, lsn in warehouse:
        key = tuple(row[k] for k in schema.key)
        wh[key] = row
        out.lsn[key] = lsn
    for key, s_row in src.items():
        w_row = wh.get(key)
        if w_row is None:
            out.missing[key] = s_row
            continue
        for name, type_name in types.items():
            s_val = normalise(s_row.get(name), type_name)
            w_val = normalise(w_row.get(name), type_name)
            if json_values and type_name.removesuffix("[]") == "json":
                s_val, w_val = _json(s_val), _json(w_val)
            if s_val != w_val:
                out.different[key] = (name, s_val, w_val)
                break
    out.extra = {k for k in wh if k not in src}
    return out
