"""The multiset comparison of a table without a primary key (cdc.reconcile.multiset): copies
counted per distinct row, values normalised as the keyed comparison does."""

from __future__ import annotations

from decimal import Decimal

from cdc.model import Column, ColumnType, Kind, TableId, TableSchema
from cdc.reconcile.multiset import diff_multisets, row_counts

SCHEMA = TableSchema(
    TableId("public", "logs"),
    (
        Column("msg", ColumnType(Kind.TEXT)),
        Column("f", ColumnType(Kind.FLOAT64)),
        Column("d", ColumnType(Kind.DECIMAL, 10, 2)),
        Column("doc", ColumnType(Kind.JSON)),
        Column("tags", ColumnType(Kind.ARRAY, element=ColumnType(Kind.TEXT))),
    ),
    (),
)


def row(
    msg: str | None,
    f: float | None = None,
    d: Decimal | None = None,
    doc: str | None = None,
    tags: list[str | None] | None = None,
) -> dict[str, object]:
    return {"msg": msg, "f": f, "d": d, "doc": doc, "tags": tags}


def test_copies_are_counted_and_each_missing_or_extra_copy_is_listed() -> None:
    source = row_counts(SCHEMA, [row("a"), row("a"), row("a"), row("b"), row(None)])
    stored = row_counts(SCHEMA, [row("a"), row("b"), row("b"), row(None)])
    missing, extra = diff_multisets(source, stored)
    assert [m[0] for m in missing] == ["a", "a"]
    assert [e[0] for e in extra] == ["b"]
    assert diff_multisets(source, source) == ([], [])


def test_equal_values_in_other_forms_are_one_row() -> None:
    """NaN equals NaN, decimals by value, arrays with NULLs; JSON parsed where the warehouse
    normalises it (json_values), compared as text where it keeps the text."""
    nan = float("nan")
    a = row("a", nan, Decimal("1.50"), '{"k": [1, 2]}', ["x", None])
    b = row("a", float("nan"), Decimal("1.5"), '{"k":[1,2]}', ["x", None])
    assert row_counts(SCHEMA, [a], json_values=True) == row_counts(SCHEMA, [b], json_values=True)
    assert row_counts(SCHEMA, [a]) != row_counts(SCHEMA, [b])  # JSON text differs
    assert row_counts(SCHEMA, [a, b], json_values=True).most_common(1)[0][1] == 2
    assert row_counts(SCHEMA, [row("a", 0.5)]) != row_counts(SCHEMA, [row("a", 0.25)])
