"""DuckDBWarehouse with scd2 tables: a constant number of statements per batch and no value in
SQL text. The scd2 behaviour itself is in tests/conformance/test_scd2_contract.py, run on
every adapter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from cdc.model import (
    UNCHANGED_TOAST,
    ChangeEvent,
    Column,
    ColumnType,
    KafkaOrigin,
    Kind,
    Op,
    SourcePosition,
    TableId,
    TableSchema,
)
from warehouse.base import (
    OffsetRow,
    TableBatch,
    TableTarget,
)
from warehouse.duckdb import DuckDBWarehouse

SCHEMA = TableSchema(
    TableId("public", "dim"),
    (
        Column("id", ColumnType(Kind.INT64), nullable=False),
        Column("name", ColumnType(Kind.TEXT)),
        Column("score", ColumnType(Kind.INT32)),
        Column("doc", ColumnType(Kind.TEXT)),
    ),
    ("id",),
)
DIM = TableTarget("dim", mode="scd2")
T0 = 1_700_000_000_000_000  # µs
_offset = iter(range(10**9))


def ev(op: Op, key: int, lsn: int, tx: int | None = None, **after: Any) -> ChangeEvent:
    """A change of transaction ``tx`` (default: its own), committed at T0 + tx µs."""
    tx = lsn if tx is None else tx
    return ChangeEvent(
        op=op,
        schema=SCHEMA,
        key={"id": key},
        before=None,
        after=None if op is Op.DELETE else {"id": key, **after},
        position=SourcePosition(lsn, tx, T0 + tx, op is Op.READ),
        origin=KafkaOrigin("pg.public.dim", 0, next(_offset)),
    )


def at(tx: int | None) -> dt.datetime | None:
    if tx is None:
        return None
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=T0 + tx)


def apply(wh: DuckDBWarehouse, *events: ChangeEvent, target: TableTarget = DIM) -> Any:
    return wh.apply([TableBatch(target, SCHEMA, events)], []).tables[0]


def versions(wh: DuckDBWarehouse, target: TableTarget = DIM, *cols: str) -> list[tuple[Any, ...]]:
    """(id, valid_from tx, valid_to tx, deleted, *cols) per version, in key and version order."""
    out = []
    for r in wh.fetch_history(target):
        start = int((r["valid_from"] - at(0)).total_seconds() * 1e6)  # type: ignore[operator]
        end = None if r["valid_to"] is None else int((r["valid_to"] - at(0)).total_seconds() * 1e6)
        assert r["is_current"] == (end is None)
        out.append((r["id"], start, end, r["_cdc_deleted"], *(r[c] for c in cols)))
    return out


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    w = DuckDBWarehouse(tmp_path / "w.duckdb", keep_open=True)
    yield w
    w.close()


def test_statement_count_does_not_grow_with_the_batch(
    wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    exec_, arrow = DuckDBWarehouse._exec, DuckDBWarehouse._arrow

    def counting_exec(self: DuckDBWarehouse, con: Any, stmt: Any, params: Any = ()) -> Any:
        calls.append(type(stmt).__name__)
        return exec_(self, con, stmt, params)

    def counting_arrow(self: DuckDBWarehouse, con: Any, stmt: Any, params: Any = ()) -> Any:
        calls.append(type(stmt).__name__)
        return arrow(self, con, stmt, params)

    monkeypatch.setattr(DuckDBWarehouse, "_exec", counting_exec)
    monkeypatch.setattr(DuckDBWarehouse, "_arrow", counting_arrow)
    apply(wh, ev(Op.CREATE, 0, 1))  # DDL out of the way
    counts = []
    for n in (3, 300):
        calls.clear()
        base = 10_000 * n
        events = [ev(Op.CREATE, base + i, base + i, name="a") for i in range(n)]
        events += [ev(Op.UPDATE, base + i, base + n + i, name="b") for i in range(n)]
        events += [ev(Op.DELETE, base + i, base + 3 * n + i) for i in range(0, n, 3)]
        wh.apply([TableBatch(DIM, SCHEMA, events)], [OffsetRow("g", "t", 0, n)])
        calls.clear()
        # and a batch touching stored versions: close, reopen in one transaction, remove
        events = [ev(Op.UPDATE, base + i, base + 5 * n + i, name="c") for i in range(1, n, 3)]
        events += [ev(Op.CREATE, base + i, base + 6 * n + i, name="d") for i in range(0, n, 3)]
        wh.apply([TableBatch(DIM, SCHEMA, events)], [OffsetRow("g", "t", 0, n + 1)])
        counts.append(len(calls))
    assert counts[0] == counts[1] <= 7


def test_no_value_reaches_sql_text(wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    nasty = "x'); DROP TABLE dim; -- $$ \" \\"
    seen: list[str] = []
    execute = duckdb.DuckDBPyConnection.execute

    def spying(con: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(query)
        return execute(con, query, *args, **kwargs)

    monkeypatch.setattr(duckdb.DuckDBPyConnection, "execute", spying)
    apply(wh, ev(Op.CREATE, 1, 10, name=nasty, doc=nasty))
    apply(wh, ev(Op.UPDATE, 1, 20, name=nasty + "2", doc=UNCHANGED_TOAST))
    assert [r["name"] for r in wh.fetch_history(DIM)] == [nasty, nasty + "2"]
    assert [r["doc"] for r in wh.fetch_history(DIM)] == [nasty, nasty]
    assert seen and not any("DROP TABLE dim" in q for q in seen)
