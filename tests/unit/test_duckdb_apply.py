"""DuckDBWarehouse.apply: position guard, replays, deletes, TOAST, offsets, atomicity, DDL,
and other processes reading between batches."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sample_data import ITEMS, ITEMS_SCHEMA, T0_US, batch, ev, rows

from cdc.consumer.batching import group_by_table
from cdc.model import (
    UNCHANGED_TOAST,
    ChangeEvent,
    Column,
    ColumnType,
    Kind,
    Op,
    TableId,
    TableSchema,
)
from warehouse.base import (
    DataError,
    IncompatibleSchemaChangeError,
    OffsetRow,
    TableBatch,
    TableTarget,
    TransientWarehouseError,
)
from warehouse.duckdb.adapter import DuckDBWarehouse

SCHEMA = ITEMS_SCHEMA


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    w = DuckDBWarehouse(tmp_path / "apply.duckdb", keep_open=True)
    w.ensure_bookkeeping()
    yield w
    w.close()


def test_position_guard_refuses_older_and_equal_and_applies_newer(wh: DuckDBWarehouse) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 100, name="v100"))], [])
    older = wh.apply([batch(ev(Op.UPDATE, 1, 99, name="v99"))], [])
    equal = wh.apply([batch(ev(Op.UPDATE, 1, 100, name="again"))], [])
    snapshot = wh.apply([batch(ev(Op.READ, 1, 50, name="snap"))], [])
    assert [r.tables[0].stale for r in (older, equal, snapshot)] == [1, 1, 1]
    assert [r.tables[0].upserted for r in (older, equal, snapshot)] == [0, 0, 0]
    assert rows(wh) == [{"id": 1, "name": "v100", "doc": None}]
    newer = wh.apply([batch(ev(Op.UPDATE, 1, 101, name="v101"))], [])
    assert (newer.tables[0].upserted, newer.tables[0].stale) == (1, 0)
    assert rows(wh) == [{"id": 1, "name": "v101", "doc": None}]
    with wh.connection() as con:
        meta = con.execute('SELECT _cdc_lsn, _cdc_txid, _cdc_op FROM "items"').fetchall()
    assert meta == [(101, 101, "u")]


def _history() -> list[ChangeEvent]:
    return [
        ev(Op.CREATE, 1, 10, name="a", doc="d1"),
        ev(Op.CREATE, 2, 11, name="b", doc="d2"),
        ev(Op.UPDATE, 1, 12, name="a2", doc=UNCHANGED_TOAST),
        ev(Op.DELETE, 2, 13),
        ev(Op.CREATE, 3, 14, name="c", doc="d3"),
        ev(Op.UPDATE, 3, 15, name="c2", doc="d3b"),
        ev(Op.CREATE, 2, 16, name="b-again", doc="d2b"),
        ev(Op.DELETE, 3, 17),
        ev(Op.UPDATE, 1, 18, name="a3", doc=UNCHANGED_TOAST),
    ]


EXPECTED = [
    {"id": 1, "name": "a3", "doc": "d1"},
    {"id": 2, "name": "b-again", "doc": "d2b"},
]


@pytest.mark.parametrize("split", [[9], [1] * 9, [4, 5], [2, 3, 4], [5, 1, 3]])
def test_any_split_gives_the_same_table_and_replays_change_nothing(
    wh: DuckDBWarehouse, split: list[int]
) -> None:
    history = _history()
    start = 0
    for size in split:
        wh.apply([batch(*history[start : start + size])], [])
        start += size
    assert rows(wh) == EXPECTED
    # Replay everything in another split, and a middle range: nothing changes.
    wh.apply([batch(*history)], [])
    for i in range(0, 9, 2):
        result = wh.apply([batch(*history[i : i + 2])], [])
        assert result.tables[0].upserted == 0 and result.tables[0].deleted == 0
    assert rows(wh) == EXPECTED


def test_hard_delete_is_not_undone_by_replaying_the_older_insert(wh: DuckDBWarehouse) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="x"))], [])
    deleted = wh.apply([batch(ev(Op.DELETE, 1, 20))], [])
    assert deleted.tables[0].deleted == 1 and rows(wh) == []
    replay = wh.apply([batch(ev(Op.CREATE, 1, 10, name="x"), ev(Op.UPDATE, 1, 15, name="y"))], [])
    assert (replay.tables[0].upserted, replay.tables[0].stale) == (0, 1)
    assert rows(wh) == []
    with wh.connection() as con:
        markers = con.execute('SELECT id, _cdc_lsn FROM "_cdc"."items__deleted"').fetchall()
    assert markers == [(1, 20)]
    # A genuinely newer re-insert comes back, and its marker is pruned.
    wh.apply([batch(ev(Op.CREATE, 1, 21, name="z"))], [])
    assert rows(wh) == [{"id": 1, "name": "z", "doc": None}]
    with wh.connection() as con:
        assert con.execute('SELECT count(*) FROM "_cdc"."items__deleted"').fetchone() == (0,)
    # An older delete replayed after the re-insert is refused.
    stale = wh.apply([batch(ev(Op.DELETE, 1, 20))], [])
    assert (stale.tables[0].deleted, stale.tables[0].stale) == (0, 1)
    assert rows(wh) == [{"id": 1, "name": "z", "doc": None}]


def test_soft_delete_keeps_the_row_flagged_and_guarded(wh: DuckDBWarehouse) -> None:
    soft = TableTarget("soft_items", soft_delete=True)
    wh.apply(
        [batch(ev(Op.CREATE, 1, 10, name="x"), ev(Op.CREATE, 2, 11, name="y"), target=soft)], []
    )
    wh.apply([batch(ev(Op.DELETE, 1, 12), ev(Op.DELETE, 9, 13), target=soft)], [])
    assert rows(wh, soft) == [{"id": 2, "name": "y", "doc": None}]
    with wh.connection() as con:
        stored = con.execute(
            'SELECT id, name, _cdc_lsn, _cdc_op, _cdc_deleted FROM "soft_items" ORDER BY id'
        ).fetchall()
    assert stored == [(1, "x", 12, "d", True), (2, "y", 11, "c", False), (9, None, 13, "d", True)]
    replay = wh.apply([batch(ev(Op.CREATE, 1, 10, name="x"), ev(Op.CREATE, 9, 5), target=soft)], [])
    assert replay.tables[0].stale == 2
    assert rows(wh, soft) == [{"id": 2, "name": "y", "doc": None}]
    wh.apply([batch(ev(Op.CREATE, 1, 20, name="back"), target=soft)], [])
    assert rows(wh, soft)[0] == {"id": 1, "name": "back", "doc": None}
    assert wh.row_counts() == {"soft_items": 2}


def test_unchanged_toast_is_carried_from_the_stored_row(wh: DuckDBWarehouse) -> None:
    wh.apply(
        [
            batch(
                ev(Op.CREATE, 1, 10, name="a", doc="huge"),
                ev(Op.CREATE, 2, 11, name="b", doc="big2"),
            )
        ],
        [],
    )
    wh.apply(
        [
            batch(
                ev(Op.UPDATE, 1, 12, name="a2", doc=UNCHANGED_TOAST),
                ev(Op.UPDATE, 2, 13, name="b2", doc="new"),
            )
        ],
        [],
    )
    assert rows(wh) == [
        {"id": 1, "name": "a2", "doc": "huge"},
        {"id": 2, "name": "b2", "doc": "new"},
    ]


def test_offsets_only_move_forward(wh: DuckDBWarehouse) -> None:
    wh.apply(
        [], [OffsetRow("g", "t", 0, 100), OffsetRow("g", "t", 1, 5), OffsetRow("h", "t", 0, 7)]
    )
    wh.apply([batch(ev(Op.CREATE, 1, 1))], [OffsetRow("g", "t", 0, 40), OffsetRow("g", "t", 1, 6)])
    assert wh.load_offsets("g") == {("t", 0): 100, ("t", 1): 6}
    assert wh.load_offsets("h") == {("t", 0): 7}
    assert wh.load_offsets("nobody") == {}


def test_a_data_error_in_the_second_table_rolls_back_everything(wh: DuckDBWarehouse) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="before"))], [OffsetRow("g", "t", 0, 10)])
    js = TableSchema(
        TableId("public", "docs"),
        (Column("id", ColumnType(Kind.INT64)), Column("j", ColumnType(Kind.JSON))),
        ("id",),
    )
    with pytest.raises(DataError) as info:
        wh.apply(
            [
                batch(ev(Op.UPDATE, 1, 11, name="after"), ev(Op.CREATE, 5, 12, name="new")),
                batch(ev(Op.CREATE, 1, 13, schema=js, j="{not json"), target=TableTarget("docs")),
            ],
            [OffsetRow("g", "t", 0, 20)],
        )
    assert info.value.table == "docs"
    assert rows(wh) == [{"id": 1, "name": "before", "doc": None}]
    assert wh.load_offsets("g") == {("t", 0): 10}
    with wh.connection() as con:
        assert con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name='docs'"
        ).fetchone() == (0,)
    # The warehouse is usable afterwards.
    wh.apply([batch(ev(Op.UPDATE, 1, 11, name="after"))], [OffsetRow("g", "t", 0, 20)])
    assert rows(wh)[0]["name"] == "after" and wh.load_offsets("g") == {("t", 0): 20}


def _schema(*cols: tuple[str, ColumnType]) -> TableSchema:
    return TableSchema(TableId("public", "evo"), tuple(Column(n, t) for n, t in cols), ("id",))


def test_schema_evolution_adds_columns_and_widens_types(wh: DuckDBWarehouse) -> None:
    evo = TableTarget("evo")
    v1 = _schema(
        ("id", ColumnType(Kind.INT32)),
        ("amount", ColumnType(Kind.DECIMAL, 10, 2)),
        ("n", ColumnType(Kind.INT16)),
    )
    wh.apply(
        [batch(ev(Op.CREATE, 1, 1, schema=v1, amount=Decimal("12345678.90"), n=7), target=evo)], []
    )
    v2 = _schema(
        ("id", ColumnType(Kind.INT64)),
        ("amount", ColumnType(Kind.DECIMAL, 14, 4)),
        ("n", ColumnType(Kind.INT64)),
        ("note", ColumnType(Kind.TEXT)),
    )
    big = {"amount": Decimal("1234567890.1234"), "n": 2**40, "note": "hi"}
    wh.apply([batch(ev(Op.CREATE, 2**33, 2, schema=v2, **big), target=evo)], [])
    with wh.connection() as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'evo'"
            ).fetchall()
        )
    assert (types["id"], types["amount"], types["n"], types["note"]) == (
        "BIGINT",
        "DECIMAL(14,4)",
        "BIGINT",
        "VARCHAR",
    )
    got = sorted(wh.fetch_table(evo), key=lambda r: r["id"])
    assert got == [
        {"id": 1, "amount": Decimal("12345678.90"), "n": 7, "note": None},
        {"id": 2**33, "amount": Decimal("1234567890.1234"), "n": 2**40, "note": "hi"},
    ]
    # A narrower schema later (old events replayed) keeps the wider column.
    wh.apply([batch(ev(Op.UPDATE, 1, 3, schema=v1, amount=Decimal("1.00"), n=1), target=evo)], [])
    with wh.connection() as con:
        assert con.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'evo' AND column_name = 'amount'"
        ).fetchone() == ("DECIMAL(14,4)",)


def test_incompatible_type_change_is_refused_with_table_column_and_types(
    wh: DuckDBWarehouse,
) -> None:
    evo = TableTarget("evo")
    v1 = _schema(("id", ColumnType(Kind.INT64)), ("code", ColumnType(Kind.TEXT)))
    wh.apply([batch(ev(Op.CREATE, 1, 1, schema=v1, code="A1"), target=evo)], [])
    v2 = _schema(("id", ColumnType(Kind.INT64)), ("code", ColumnType(Kind.INT32)))
    with pytest.raises(IncompatibleSchemaChangeError, match=r"'evo' column 'code'.*TEXT.*INT"):
        wh.apply(
            [batch(ev(Op.CREATE, 2, 2, schema=v2, code=5), target=evo)], [OffsetRow("g", "t", 0, 9)]
        )
    assert wh.load_offsets("g") == {}
    assert wh.fetch_table(evo) == [{"id": 1, "code": "A1"}]


def test_statement_count_does_not_grow_with_the_batch(
    wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = []
    original = DuckDBWarehouse._exec
    calls: list[str] = []

    def counting(self: DuckDBWarehouse, con: Any, stmt: Any, params: Any = ()) -> Any:
        calls.append(type(stmt).__name__)
        return original(self, con, stmt, params)

    monkeypatch.setattr(DuckDBWarehouse, "_exec", counting)
    wh.apply([batch(ev(Op.CREATE, 0, 1))], [])  # DDL out of the way
    for n in (3, 300):
        calls.clear()
        events = [ev(Op.CREATE, i, 10 + i, name=str(i)) for i in range(n)]
        events += [ev(Op.DELETE, i, 1000 + i) for i in range(0, n, 3)]
        wh.apply([batch(*events)], [OffsetRow("g", "t", 0, n)])
        counts.append(len(calls))
    assert counts[0] == counts[1] <= 7


def test_other_process_reads_between_applies(tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    wh = DuckDBWarehouse(path)  # short-lived connections (the default)
    wh.ensure_bookkeeping()
    reader = (
        "import duckdb, sys\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "print(con.execute('SELECT count(*) FROM items').fetchone()[0])\n"
    )
    for n in (1, 2):
        wh.apply([batch(*[ev(Op.CREATE, i, 10 * n + i) for i in range(n * 2)])], [])
        out = subprocess.run(
            [sys.executable, "-c", reader, str(path)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(n * 2)


def test_a_file_held_by_another_process_is_a_transient_error_after_retrying(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    DuckDBWarehouse(path).ensure_bookkeeping()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "print('ok', flush=True); time.sleep(30)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        wh = DuckDBWarehouse(path, lock_timeout_s=0.3)
        started = time.perf_counter()
        with pytest.raises(
            TransientWarehouseError, match=r"locked.duckdb could not be opened within 0.3s"
        ):
            wh.apply([batch(ev(Op.CREATE, 1, 1))], [])
        assert 0.3 <= time.perf_counter() - started < 5
    finally:
        holder.kill()
        holder.wait()
    # Once released, the same warehouse works.
    wh.apply([batch(ev(Op.CREATE, 1, 1))], [])
    assert len(wh.fetch_table(ITEMS)) == 1


def test_added_column_with_a_default_fills_existing_rows_and_older_events(
    wh: DuckDBWarehouse,
) -> None:
    """PostgreSQL gives existing rows an added column's default without logging a change: the
    warehouse does the same, and changes written before the column existed get it too."""
    evo = TableTarget("evo")
    v1 = _schema(("id", ColumnType(Kind.INT32)), ("n", ColumnType(Kind.INT32)))
    wh.apply([batch(ev(Op.CREATE, 1, 1, schema=v1, n=1), target=evo)], [])
    wh.apply([batch(ev(Op.CREATE, 2, 2, schema=v1, n=2), target=evo)], [])
    v2 = TableSchema(
        TableId("public", "evo"),
        (
            Column("id", ColumnType(Kind.INT32)),
            Column("n", ColumnType(Kind.INT32)),
            Column("price", ColumnType(Kind.DECIMAL, 6, 2), default=Decimal("1.50")),
            Column("note", ColumnType(Kind.TEXT), default="it's; $$ fresh"),
        ),
        ("id",),
    )
    # one batch: an old-schema update of key 2 (before the ALTER), then a new-schema insert
    old = ev(Op.UPDATE, 2, 3, schema=v1, n=20)
    new = ev(Op.CREATE, 3, 4, schema=v2, n=3, price=Decimal("9.99"), note=None)
    wh.apply([TableBatch(evo, v2, [old, new])], [])
    assert rows(wh, evo) == [
        {"id": 1, "n": 1, "price": Decimal("1.50"), "note": "it's; $$ fresh"},  # backfilled
        {"id": 2, "n": 20, "price": Decimal("1.50"), "note": "it's; $$ fresh"},  # older event
        {"id": 3, "n": 3, "price": Decimal("9.99"), "note": None},  # explicit NULL stays NULL
    ]


def test_a_history_table_without_primary_key_is_refused_with_what_to_do(
    wh: DuckDBWarehouse,
) -> None:
    """Keyless mirror tables are mirrored (tests/conformance/test_keyless_contract.py); a
    keyless scd2 table has no history to keep and is parked with what to do."""
    keyless = TableSchema(TableId("public", "log"), (Column("msg", ColumnType(Kind.TEXT)),), ())
    event = ev(Op.CREATE, {}, 1, keyless, commit_us=T0_US, topic="pg.public.log", msg="hi")
    with pytest.raises(
        IncompatibleSchemaChangeError, match=r"no primary key.*ADD PRIMARY KEY"
    ) as e:
        wh.apply([TableBatch(TableTarget("log", mode="scd2"), keyless, [event])], [])
    assert e.value.table == "log"


def test_a_keyless_message_on_a_keyed_table_is_a_data_error_of_that_table(
    wh: DuckDBWarehouse,
) -> None:
    """A stray message without a key must not stop `cdc run`: the consumer bisects DataErrors
    down to the event and dead-letters it."""
    good = ev(Op.CREATE, 1, 1, name="ok")
    stray = ev(Op.CREATE, {}, 2, TableSchema(SCHEMA.table, SCHEMA.columns, ()), id=2, name="stray")
    [grouped] = group_by_table([good, stray], {SCHEMA.table: ITEMS})
    assert grouped.schema.key == ("id",)  # the stray message does not decide the schema
    with pytest.raises(DataError, match="lacks key column 'id'") as e:
        wh.apply([grouped], [])
    assert e.value.table == ITEMS.name
    with wh.connection() as con:  # refused while planning: not even the table was created
        found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'items'")
        assert found.fetchone() == (0,)
