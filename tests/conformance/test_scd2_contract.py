"""The scd2 contract, one set of test bodies for every adapter (DuckDB and Snowflake):
validity from commit times, tracked columns, TOAST, snapshot reads, split transactions, both
granularities, key changes, mode switches, the current view, the invariant report; on DuckDB
also a constant number of statements per batch and no value in SQL text (Snowflake's is
``test_no_value_reaches_the_sql_text_on_snowflake``).

Same fixture as test_warehouse_contract.py (tests/conformance/conftest.py): a DuckDB file,
then fakesnow's server with the real connector.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import pytest
from sample_data import T0_US
from sample_data import ev as sample_ev

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
    IncompatibleSchemaChangeError,
    OffsetRow,
    Scd2Options,
    TableBatch,
    TableTarget,
    Warehouse,
)
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.snowflake.adapter import SnowflakeWarehouse

pytestmark = pytest.mark.conformance

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
T0 = T0_US  # µs


def ev(op: Op, key: int, lsn: int, tx: int | None = None, **after: Any) -> ChangeEvent:
    """A change of transaction ``tx`` (default: its own), committed at T0 + tx µs."""
    return sample_ev(op, key, lsn, SCHEMA, tx=tx, topic="pg.public.dim", **after)


def at(tx: int | None) -> dt.datetime | None:
    if tx is None:
        return None
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=T0 + tx)


def apply(wh: Warehouse, *events: ChangeEvent, target: TableTarget = DIM) -> Any:
    return wh.apply([TableBatch(target, SCHEMA, events)], []).tables[0]


def versions(wh: Warehouse, target: TableTarget = DIM, *cols: str) -> list[tuple[Any, ...]]:
    """(id, valid_from tx, valid_to tx, deleted, *cols) per version, in key and version order."""
    out = []
    for r in wh.fetch_history(target):
        start = int((r["valid_from"] - at(0)).total_seconds() * 1e6)  # type: ignore[operator]
        end = None if r["valid_to"] is None else int((r["valid_to"] - at(0)).total_seconds() * 1e6)
        assert r["is_current"] == (end is None)
        out.append((r["id"], start, end, r["_cdc_deleted"], *(r[c] for c in cols)))
    return out


def run_sql(wh: Warehouse, text: str) -> list[tuple[Any, ...]]:
    """Run SQL text on the adapter's engine (``{schema}`` is the target schema, quoted)."""
    text = text.replace("{schema}", f'"{wh.schema}"')  # type: ignore[attr-defined]
    if isinstance(wh, DuckDBWarehouse):
        with wh.connection() as con:
            return con.execute(text).fetchall()
    assert isinstance(wh, SnowflakeWarehouse)
    cur = wh._connection().cursor()
    cur.execute(text)
    return list(cur.fetchall()) if cur.description else []


def reopen(wh: Warehouse) -> Warehouse:
    """A new adapter on the same warehouse (a new process: nothing cached)."""
    if isinstance(wh, DuckDBWarehouse):
        return DuckDBWarehouse(wh.path, keep_open=False)
    assert isinstance(wh, SnowflakeWarehouse)
    return SnowflakeWarehouse(wh.settings, tmpdir=wh.tmpdir)


def test_versions_are_valid_between_source_commit_times(wh: Warehouse) -> None:
    apply(wh, ev(Op.CREATE, 1, 10, name="a"), ev(Op.UPDATE, 1, 20, name="b"))
    apply(wh, ev(Op.DELETE, 1, 30), ev(Op.CREATE, 1, 40, name="c"))
    assert versions(wh, DIM, "name") == [
        (1, 10, 20, False, "a"),
        (1, 20, 30, True, "b"),  # closed by the delete
        (1, 40, None, False, "c"),  # the re-insert opens a new version
    ]
    history = wh.fetch_history(DIM)
    assert [(r["_cdc_op"], r["_cdc_txid"], r["_cdc_lsn"]) for r in history] == [
        ("c", 10, 10),
        ("u", 20, 20),
        ("c", 40, 40),
    ]
    assert wh.history_report(DIM).ok
    assert wh.fetch_table(DIM) == [{"id": 1, "name": "c", "score": None, "doc": None}]


def test_untracked_changes_update_the_current_version_in_place(wh: Warehouse) -> None:
    target = TableTarget("dim", mode="scd2", scd2=Scd2Options(track=("name",)))
    apply(wh, ev(Op.CREATE, 1, 10, name="a", score=1), target=target)
    apply(wh, ev(Op.UPDATE, 1, 20, name="a", score=2), target=target)
    apply(wh, ev(Op.UPDATE, 1, 30, name="b", score=3), ev(Op.UPDATE, 1, 40, name="b", score=4),
          target=target)  # fmt: skip
    assert versions(wh, target, "name", "score") == [
        (1, 10, 30, False, "a", 2),
        (1, 30, None, False, "b", 4),
    ]
    current = wh.fetch_history(target)[-1]
    # opened by tx 30 ('u'); last written by the change at lsn 40
    assert (current["_cdc_txid"], current["_cdc_op"], current["_cdc_lsn"]) == (30, "u", 40)
    assert current["_cdc_source_ts"] == at(40)


def test_unchanged_toast_is_carried_within_the_batch_and_from_the_table(
    wh: Warehouse,
) -> None:
    big = "x" * 10_000
    apply(wh, ev(Op.CREATE, 1, 10, name="a", doc=big))
    apply(
        wh,
        ev(Op.UPDATE, 1, 20, name="b", doc=UNCHANGED_TOAST),  # from the table
        ev(Op.UPDATE, 1, 30, name="c", doc=UNCHANGED_TOAST),  # from earlier in the batch
    )
    apply(wh, ev(Op.UPDATE, 1, 40, name="d", doc=UNCHANGED_TOAST))
    assert [r["doc"] for r in wh.fetch_history(DIM)] == [big] * 4
    assert [r["name"] for r in wh.fetch_history(DIM)] == ["a", "b", "c", "d"]


def test_snapshot_reads_open_a_version_only_when_values_differ(wh: Warehouse) -> None:
    apply(wh, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 11, name="b"))
    # a later snapshot: key 1 unchanged, key 2 changed while nobody was looking, key 3 new
    apply(
        wh,
        ev(Op.READ, 1, 50, tx=50, name="a"),
        ev(Op.READ, 2, 50, tx=50, name="B"),
        ev(Op.READ, 3, 50, tx=50, name="c"),
    )
    assert versions(wh, DIM, "name") == [
        (1, 10, None, False, "a"),
        (2, 11, 50, False, "b"),
        (2, 50, None, False, "B"),
        (3, 50, None, False, "c"),
    ]
    assert [r["_cdc_op"] for r in wh.fetch_history(DIM)] == ["c", "c", "r", "r"]


@pytest.mark.parametrize("split", [False, True])
def test_one_version_per_committed_transaction_even_when_split(wh: Warehouse, split: bool) -> None:
    apply(wh, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 3, 11, name="z"))
    tx = [
        ev(Op.UPDATE, 1, 20, tx=20, name="b"),
        ev(Op.UPDATE, 1, 21, tx=20, name="c"),  # rewrites tx 20's version
        ev(Op.CREATE, 2, 22, tx=20, name="x"),
        ev(Op.DELETE, 2, 23, tx=20),  # inserted and deleted in one transaction: no version
        ev(Op.UPDATE, 3, 24, tx=20, name="y"),
        ev(Op.UPDATE, 3, 25, tx=20, name="z"),  # back to the committed value: no version
    ]
    if split:
        for e in tx:
            apply(wh, e)
    else:
        apply(wh, *tx)
    assert versions(wh, DIM, "name") == [
        (1, 10, 20, False, "a"),
        (1, 20, None, False, "c"),
        (3, 11, None, False, "z"),
    ]
    assert wh.history_report(DIM).ok
    apply(wh, *tx)  # a replay changes nothing
    assert len(wh.fetch_history(DIM)) == 3


def test_every_change_keeps_each_change_of_a_transaction(wh: Warehouse) -> None:
    target = TableTarget("dim", mode="scd2", scd2=Scd2Options(granularity="every_change"))
    apply(wh, ev(Op.CREATE, 1, 10, name="a"), target=target)
    apply(wh, ev(Op.UPDATE, 1, 20, tx=20, name="b"), ev(Op.UPDATE, 1, 21, tx=20, name="c"),
          target=target)  # fmt: skip
    assert versions(wh, target, "name") == [
        (1, 10, 20, False, "a"),
        (1, 20, 20, False, "b"),  # zero length: inside transaction 20
        (1, 20, None, False, "c"),
    ]
    assert wh.history_report(target).ok


def test_a_primary_key_change_closes_the_old_key_and_opens_the_new(wh: Warehouse) -> None:
    apply(wh, ev(Op.CREATE, 1, 10, name="a"))
    apply(wh, ev(Op.DELETE, 1, 20, tx=20), ev(Op.CREATE, 7, 21, tx=20, name="a"))
    assert versions(wh, DIM, "name") == [(1, 10, 20, True, "a"), (7, 20, None, False, "a")]
    assert wh.history_report(DIM).ok


def test_replaying_a_range_in_any_split_adds_no_version(wh: Warehouse) -> None:
    events = [ev(Op.CREATE, 1, 10, name="a"), ev(Op.UPDATE, 1, 20, name="b"),
              ev(Op.DELETE, 1, 30), ev(Op.CREATE, 1, 40, name="c")]  # fmt: skip
    apply(wh, *events)
    before = wh.fetch_history(DIM)
    for i in range(len(events)):
        apply(wh, *events[i:])
        apply(wh, *events[: i + 1])
    after = wh.fetch_history(DIM)
    strip = [{k: v for k, v in r.items() if k != "_cdc_loaded_at"} for r in before]
    assert [{k: v for k, v in r.items() if k != "_cdc_loaded_at"} for r in after] == strip


def test_switching_a_table_with_data_between_modes_is_refused(wh: Warehouse) -> None:
    mirror = TableTarget("dim")
    apply(wh, ev(Op.CREATE, 1, 10, name="a"), target=mirror)
    with pytest.raises(IncompatibleSchemaChangeError) as info:
        apply(wh, ev(Op.UPDATE, 1, 20, name="b"))
    message = str(info.value)
    assert info.value.table == "dim"
    assert "holds 1 rows replicated in mode 'mirror'" in message
    assert "re-snapshot" in message and "set its mode back" in message
    assert wh.fetch_table(mirror) == [{"id": 1, "name": "a", "score": None, "doc": None}]
    # ... and back: a history table is not turned into a mirror either
    other = TableTarget("other", mode="scd2")
    apply(wh, ev(Op.CREATE, 1, 10, name="a"), target=other)
    with pytest.raises(IncompatibleSchemaChangeError, match="mode 'scd2'"):
        apply(wh, ev(Op.CREATE, 2, 20, name="a"), target=TableTarget("other"))


def test_an_empty_table_may_switch_mode(wh: Warehouse) -> None:
    mirror = TableTarget("dim")
    apply(wh, ev(Op.CREATE, 1, 10, name="a"), target=mirror)
    apply(wh, ev(Op.DELETE, 1, 20), target=mirror)
    fresh = reopen(wh)
    wh.close()
    fresh.apply([TableBatch(DIM, SCHEMA, [ev(Op.CREATE, 2, 30, name="b")])], [])
    assert versions(fresh, DIM, "name") == [(2, 30, None, False, "b")]


def test_current_view_row_counts_and_history_of_one_key(wh: Warehouse) -> None:
    apply(wh, ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 11, name="b"))
    apply(wh, ev(Op.UPDATE, 1, 20, name="c"), ev(Op.DELETE, 2, 21))
    assert run_sql(wh, 'SELECT "id", "name" FROM {schema}."dim_current"') == [(1, "c")]
    assert wh.row_counts() == {"dim": 1}
    assert [r["name"] for r in wh.fetch_history(DIM, key=["1"])] == ["a", "c"]
    assert wh.fetch_history(DIM, key=["3"]) == []


def test_an_unknown_tracked_column_parks_the_table(wh: Warehouse) -> None:
    target = TableTarget("dim", mode="scd2", scd2=Scd2Options(track=("name", "nope")))
    with pytest.raises(IncompatibleSchemaChangeError, match=r"tracked columns \['nope'\]") as info:
        apply(wh, ev(Op.CREATE, 1, 10, name="a"), target=target)
    assert info.value.table == "dim"


def test_the_report_finds_each_broken_invariant(wh: Warehouse) -> None:
    apply(wh, ev(Op.CREATE, 1, 10, name="a"), ev(Op.UPDATE, 1, 20, name="b"))
    apply(wh, ev(Op.CREATE, 2, 30, name="a"), ev(Op.UPDATE, 2, 40, name="b"))
    assert wh.history_report(DIM).ok
    # key 1: the closed version reopened -> two current versions, the first not last
    run_sql(wh, 'UPDATE {schema}."dim" SET "valid_to" = NULL, "is_current" = true '
                'WHERE "_cdc_lsn" = 10')  # fmt: skip
    # key 2: a gap between its versions without a delete
    later = ("DATEADD(microsecond, 5, \"valid_from\")" if isinstance(wh, SnowflakeWarehouse)
             else "\"valid_from\" + INTERVAL 5 MICROSECONDS")  # fmt: skip
    run_sql(wh, f'UPDATE {{schema}}."dim" SET "valid_from" = {later} WHERE "_cdc_lsn" = 40')
    report = wh.history_report(DIM)
    assert not report.ok
    assert (report.several_current, report.current_not_last, report.overlaps, report.gaps) == (
        1, 1, 1, 1,
    )  # fmt: skip
    assert any("key 1" in e for e in report.examples) and any("key 2" in e for e in report.examples)


def test_a_key_change_carries_an_untouched_toast_value_into_the_new_key(wh: Warehouse) -> None:
    apply(wh, ev(Op.CREATE, 1, 10, name="a", doc="toasted"))
    # Debezium: a delete of the old key and a create of the new key at one LSN and txid
    stats = apply(wh, ev(Op.DELETE, 1, 20), ev(Op.CREATE, 7, 20, name="moved", doc=UNCHANGED_TOAST))
    assert stats.toast_unresolved == 0
    assert versions(wh, DIM, "name", "doc") == [
        (1, 10, 20, True, "a", "toasted"),
        (7, 20, None, False, "moved", "toasted"),
    ]


def test_a_key_change_split_across_batches_finds_the_closed_version(wh: Warehouse) -> None:
    apply(wh, ev(Op.CREATE, 1, 10, name="a", doc="toasted"))
    apply(wh, ev(Op.DELETE, 1, 20))
    # the create half arrives alone: the old key is found by its delete marker at lsn 20
    stats = apply(wh, ev(Op.CREATE, 7, 20, name="moved", doc=UNCHANGED_TOAST))
    assert stats.toast_unresolved == 0
    assert [r["doc"] for r in wh.fetch_history(DIM)] == ["toasted", "toasted"]
    assert wh.history_report(DIM).ok


@pytest.mark.parametrize("wh", ["duckdb"], indirect=True)
def test_duckdb_statement_count_does_not_grow_with_the_batch(
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


@pytest.mark.parametrize("wh", ["duckdb"], indirect=True)
def test_no_value_reaches_duckdb_sql_text(
    wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
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


def test_close_history_gaps_repairs_a_lost_version_and_keeps_a_deletes_gap(wh: Warehouse) -> None:
    """A middle version lost (damage) leaves a gap; the repair ends the previous version where
    the next begins. A key deleted and inserted again keeps its legitimate gap."""
    apply(wh, ev(Op.CREATE, 1, 10, name="a"), ev(Op.UPDATE, 1, 20, name="b"),
          ev(Op.UPDATE, 1, 30, name="c"), ev(Op.CREATE, 2, 11, name="x"),
          ev(Op.DELETE, 2, 21), ev(Op.CREATE, 2, 31, name="y"))  # fmt: skip
    run_sql(wh, 'DELETE FROM {schema}."dim" WHERE "id" = 1 AND "name" = \'b\'')
    damaged = wh.history_report(DIM)
    assert (damaged.gaps, damaged.overlaps) == (1, 0)
    repaired = wh.close_history_gaps(DIM)
    assert repaired.ok, repaired
    assert versions(wh) == [
        (1, 10, 30, False), (1, 30, None, False),
        (2, 11, 21, True), (2, 31, None, False),
    ]  # fmt: skip
    assert wh.close_history_gaps(DIM).ok and len(versions(wh)) == 4  # idempotent
