"""The pure parts of reconciliation: range splitting, bisection down to the differing keys
(a property against a plain reference), the lag verdict, row diffs and the report."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.model import Column, ColumnType, Kind, TableId, TableSchema, days_from_civil
from cdc.reconcile.bisect import bisect, split_range
from cdc.reconcile.lag import settle
from cdc.reconcile.report import RunReport, TableResult, last_result_text
from cdc.reconcile.rows import diff_rows
from warehouse.base import HistoryReport, KeyRange, RangeChecksum
from warehouse.checksum import canonical, weak

Key = tuple[int, ...]


class MemorySide:
    """A side held in memory: key -> row text; checksums are what the engines compute."""

    def __init__(self, rows: Mapping[Key, str]) -> None:
        self.rows = dict(rows)
        self.fetched_ranges: list[KeyRange] = []

    def _in(self, rng: KeyRange) -> list[Key]:
        return sorted(
            k
            for k in self.rows
            if (rng.lo is None or k >= rng.lo) and (rng.hi is None or k < rng.hi)
        )

    def checksums(self, ranges: Sequence[KeyRange]) -> list[RangeChecksum]:
        out = []
        for rng in ranges:
            keys = self._in(rng)
            total = sum(
                int(hashlib.md5(f"{k}|{self.rows[k]}".encode()).hexdigest()[:15], 16) for k in keys
            )
            out.append(RangeChecksum(len(keys), total))
        return out

    def split_keys(self, ranges: Sequence[tuple[KeyRange, int]]) -> list[list[Key]]:
        return [self._in(rng)[step::step] for rng, step in ranges]

    def range_rows(self, rng: KeyRange) -> dict[Key, str]:
        return {k: self.rows[k] for k in self._in(rng)}


def test_split_range_covers_the_range_exactly_with_the_points_inside_it() -> None:
    rng = KeyRange((10,), (50,))
    parts = split_range(rng, [(5,), (20,), (20,), (30,), (50,), (70,)])
    assert parts == [KeyRange((10,), (20,)), KeyRange((20,), (30,)), KeyRange((30,), (50,))]
    assert split_range(KeyRange(), []) == [KeyRange()]
    assert split_range(KeyRange(None, (3, "b")), [(1, "a")]) == [
        KeyRange(None, (1, "a")),
        KeyRange((1, "a"), (3, "b")),
    ]


def test_equal_tables_cost_one_round_and_fetch_nothing() -> None:
    rows = {(i,): f"v{i}" for i in range(10_000)}
    found = bisect(MemorySide(rows), MemorySide(rows), leaf_rows=50)
    assert (found.rounds, found.ranges_checked, found.leaves) == (1, 1, [])
    assert found.source == found.warehouse and found.source.rows == 10_000


@st.composite
def damaged(draw: st.DrawFn) -> tuple[dict[Key, str], dict[Key, str], set[Key]]:
    keys = draw(st.lists(st.integers(0, 5_000), min_size=0, max_size=800, unique=True))
    source = {(k,): f"v{k}" for k in keys}
    warehouse = dict(source)
    changed: set[Key] = set()
    for key in draw(st.lists(st.sampled_from(sorted(source)), max_size=15)) if source else []:
        kind = draw(st.sampled_from(["delete", "alter"]))
        if kind == "delete":
            warehouse.pop(key, None)
        else:
            warehouse[key] = "broken"
        changed.add(key)
    for extra in draw(st.lists(st.integers(5_001, 6_000), max_size=10, unique=True)):
        warehouse[(extra,)] = "ghost"
        changed.add((extra,))
    return source, warehouse, changed


@settings(max_examples=150, deadline=None)
@given(damaged(), st.integers(1, 40), st.integers(2, 9))
def test_bisection_finds_exactly_the_injected_keys(
    case: tuple[dict[Key, str], dict[Key, str], set[Key]], leaf_rows: int, fanout: int
) -> None:
    source_rows, warehouse_rows, _ = case
    # the reference: a plain full comparison
    reference = {
        k
        for k in source_rows.keys() | warehouse_rows.keys()
        if source_rows.get(k) != warehouse_rows.get(k)
    }
    source, warehouse = MemorySide(source_rows), MemorySide(warehouse_rows)
    found = bisect(source, warehouse, leaf_rows=leaf_rows, fanout=fanout)
    seen: set[Key] = set()
    fetched = 0
    for leaf in found.leaves:
        s, w = source.range_rows(leaf), warehouse.range_rows(leaf)
        fetched += len(s) + len(w)
        seen |= {k for k in s.keys() | w.keys() if s.get(k) != w.get(k)}
    assert seen == reference
    # leaves are disjoint and only differing ranges are fetched
    total = len(source_rows) + len(warehouse_rows)
    if not reference:
        assert found.leaves == [] and fetched == 0
    else:
        assert fetched <= total
        assert len(found.leaves) <= len(reference) * max(1, fanout)


SCHEMA = TableSchema(
    TableId("public", "t"),
    (
        Column("id", ColumnType(Kind.INT64), nullable=False),
        Column("amount", ColumnType(Kind.DECIMAL, precision=10, scale=2)),
        Column("f", ColumnType(Kind.FLOAT32)),
        Column("at", ColumnType(Kind.TIMESTAMPTZ)),
    ),
    ("id",),
)
UTC = dt.UTC


def _row(i: int, amount: str = "1.50", f: float = 0.1) -> dict[str, object]:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    return {"id": i, "amount": Decimal(amount), "f": f, "at": at}


def test_row_diff_is_exact_and_normalised() -> None:
    source = [_row(1), _row(2), _row(3, amount="2.00")]
    warehouse = [
        ({**_row(1), "at": dt.datetime(2025, 12, 31, 22, tzinfo=UTC)}, 10),  # same instant
        ({**_row(2), "f": 0.10000000149011612}, 11),  # the same float32
        ({**_row(3), "amount": Decimal("2.01")}, 12),
        (_row(4), 13),
    ]
    diff = diff_rows(SCHEMA, source, warehouse)
    assert diff.missing == {} and diff.extra == {(4,)}
    assert diff.different == {(3,): ("amount", Decimal("2.00"), Decimal("2.01"))}
    assert diff.lsn[(3,)] == 12


def test_settle_confirms_only_applied_unchanged_keys() -> None:
    source = [_row(1, "5.00"), _row(2, "5.00"), _row(3, "5.00"), _row(5)]
    warehouse = [(_row(1), 90), (_row(2), 150), (_row(3), 90), (_row(4), 50)]
    diff = diff_rows(SCHEMA, source, warehouse)
    later = {(1,): _row(1, "5.00"), (2,): _row(2, "5.00"), (3,): _row(3, "6.00"),
             (5,): _row(5)}  # fmt: skip
    verdict = settle(diff, {(1,), (2,), (3,), (4,), (5,)}, 100, True, later)
    # 1: applied and unchanged; 2: the warehouse row is newer than the snapshot; 3: the source
    # moved on; 4: extra and confirmed; 5: missing and still at the source
    assert set(verdict.confirmed.different) == {(1,)}
    assert verdict.confirmed.extra == {(4,)} and set(verdict.confirmed.missing) == {(5,)}
    assert verdict.pending == {(2,), (3,)}
    stalled = settle(diff, {(1,), (4,), (5,)}, 100, False, later)
    assert stalled.pending == {(1,), (4,), (5,)} and not stalled.confirmed.keys


def _history(gaps: int) -> HistoryReport:
    return HistoryReport("h", 3, 5, 3, 0, 0, 0, 0, 0, 0, gaps, ("gaps: key 1",) if gaps else ())


def test_report_status_counts_markdown_and_audit_rows() -> None:
    now = dt.datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    ok = TableResult("a", "public.a", "mirror", source_rows=10, warehouse_rows=10)
    bad = TableResult("b", "public.b", "mirror", source_rows=10, warehouse_rows=11,
                      missing=[(1,)], extra=[(20,), (21,)],
                      different=[((3,), "v", "x", "y")])  # fmt: skip
    fixed = TableResult("c", "public.c", "mirror", missing=[(1,)], repaired=1, remaining=0)
    hist = TableResult("h", "public.h", "scd2", history=_history(1))
    stalled = TableResult("s", "public.s", "mirror", unsettled=[(9,)], stalled=True)
    busy = TableResult("u", "public.u", "mirror", unsettled=[(9,)])
    assert [t.status for t in (ok, bad, fixed, hist, stalled, busy)] == [
        "ok", "diffs", "repaired", "diffs", "unsettled", "ok",
    ]  # fmt: skip
    assert (bad.diffs, bad.left, hist.history_problems, fixed.left) == (4, 4, 1, 0)
    report = RunReport("r1", now, now, 123, False, [ok, bad, fixed, hist])
    assert not report.ok and report.rows_compared == 21
    text = report.markdown()
    assert "| b | diffs | 10 | 11 | 1 | 2 | 1 | 0 | 0 | 0 |" in text
    assert "key 3 v: source 'x' != warehouse 'y'" in text and "gaps: key 1" in text
    rows = report.audit_rows()
    assert [(r.table, r.missing, r.extra, r.different, r.history_problems, r.status)
            for r in rows] == [("a", 0, 0, 0, 0, "ok"), ("b", 1, 2, 1, 0, "diffs"),
                               ("c", 1, 0, 0, 0, "repaired"),
                               ("h", 0, 0, 0, 1, "diffs")]  # fmt: skip
    assert report.to_json()["tables"][1]["examples"]["extra"] == [["20"], ["21"]]
    assert last_result_text(None) == "never"
    assert last_result_text(rows[0]) == "ok at 2026-12-02 06:00:00Z"
    assert last_result_text(rows[1]).startswith("diffs at 2026-12-02 06:00:00Z (missing 1")


def test_weak_renderings_are_the_documented_ones() -> None:
    def array(kind: Kind) -> ColumnType:
        return ColumnType(Kind.ARRAY, element=ColumnType(kind))

    assert weak(ColumnType(Kind.JSON), "snowflake") and not weak(ColumnType(Kind.JSON), "duckdb")
    assert not weak(array(Kind.INT32), "postgres") and not weak(array(Kind.TEXT), "snowflake")
    assert weak(array(Kind.TIMESTAMPTZ), "duckdb") and weak(array(Kind.DECIMAL), "postgres")
    assert not any(
        weak(ColumnType(k), d)
        for k in Kind
        if k not in (Kind.JSON, Kind.ARRAY)
        for d in ("postgres", "duckdb", "snowflake")
    )


def _duckdb_canonical(kind: Kind, literal: str, **type_args: int) -> str:
    import duckdb

    from warehouse.sql import col, render

    text = canonical(ColumnType(kind, **type_args), col("v"), "duckdb")  # type: ignore[arg-type]
    row = duckdb.connect().execute(f"SELECT {render(text)} FROM (SELECT {literal} AS v)").fetchone()
    assert row is not None
    return str(row[0])


def test_far_values_render_the_same_as_on_postgresql() -> None:
    """DuckDB's canonical text of infinite, BC and far dates and timestamps and of 24:00:00
    (PostgreSQL's renders the same: tests/integration/test_reconcile_types.py)."""
    assert _duckdb_canonical(Kind.DATE, "DATE 'infinity'") == "infinity"
    assert _duckdb_canonical(Kind.DATE, "DATE '-infinity'") == "-infinity"
    assert _duckdb_canonical(Kind.DATE, "DATE '0044-03-15 (BC)'") == str(
        days_from_civil(-43, 3, 15)
    )
    assert _duckdb_canonical(Kind.TIMESTAMP, "TIMESTAMP '-infinity'") == "-infinity"
    assert _duckdb_canonical(Kind.TIMESTAMPTZ, "TIMESTAMPTZ 'infinity'") == "infinity"
    far = days_from_civil(20000, 1, 1) * 86_400_000_000
    assert _duckdb_canonical(Kind.TIMESTAMP, "TIMESTAMP '20000-01-01'") == str(far)
    assert _duckdb_canonical(Kind.TIME, "TIME '24:00:00'") == "86400000000"
    assert _duckdb_canonical(
        Kind.DECIMAL, "CAST(1.5 AS DECIMAL(19, 2))", precision=19, scale=2
    ) == ("1.50")


def test_postgresql_guards_numerics_a_decimal_cant_hold_and_reads_the_stored_form() -> None:
    from cdc.consumer.fitting import override_type
    from cdc.reconcile.source import SourceTable, pg_text
    from warehouse.sql import col

    rendered = pg_text(canonical(ColumnType(Kind.VARDECIMAL), col("n"), "postgres"))
    assert 'ROUND(CAST("n" AS DECIMAL), 10)' in rendered and "'!' ||" in rendered
    schema = TableSchema(
        TableId("public", "t"),
        (
            Column("id", ColumnType(Kind.INT32)),
            Column("n", ColumnType(Kind.VARDECIMAL)),
            Column("m", ColumnType(Kind.DECIMAL, 19, 2, source_type="MONEY")),
            Column("b", ColumnType(Kind.TEXT, source_type="BOX")),
            Column("c", ColumnType(Kind.TEXT, length=3, source_type="BPCHAR")),
            Column("s", ColumnType(Kind.TEXT, source_type="VARCHAR")),
        ),
        ("id",),
    )
    side = SourceTable(None, schema, overrides={"n": override_type("text")})  # type: ignore[arg-type]
    assert side.schema.column("n").type == ColumnType(Kind.TEXT)
    assert side.schema.column("m").type == schema.column("m").type
    shaped = pg_text(side.ref)  # type: ignore[arg-type]
    assert 'CASE WHEN "n" IS NULL THEN NULL ELSE CONCAT("n") END AS "n"' in shaped
    assert 'CAST("m" AS DECIMAL) AS "m"' in shaped
    assert 'CONCAT("b")' in shaped and 'CONCAT("c")' in shaped and '"s" AS "s"' in shaped
    plain = SourceTable(None, TableSchema(schema.table, schema.columns[:1], ("id",)))  # type: ignore[arg-type]
    assert pg_text(plain.ref.expr()) == '"public"."t"'  # type: ignore[union-attr]
