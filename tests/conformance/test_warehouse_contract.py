"""The Warehouse contract, one set of test bodies for every adapter (DuckDB and Snowflake).

Each test runs against ``DuckDBWarehouse`` (a tmp file, ``keep_open``) and
``SnowflakeWarehouse`` (fakesnow's server with the real connector, see conftest). The
assertions are the same for both; where fakesnow differs from Snowflake the adapter works
around it (NULL timestamps are checked with ``IS NULL`` on the engine) or a separate test
documents what fakesnow does.

JSON values are compared parsed on both adapters: Snowflake normalises JSON text (VARIANT),
DuckDB keeps it as sent; the contract is the JSON value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sample_data import (
    ALL_KINDS,
    INT64,
    ITEMS,
    ITEMS_SCHEMA,
    KINDS_SCHEMA,
    NULL_ROW,
    T0_US,
    batch,
    ev,
    row_event,
    rows,
)
from sample_data import FULL_ROW as BASE_FULL_ROW

from cdc.model import (
    UNCHANGED_TOAST,
    ChangeEvent,
    Column,
    ColumnType,
    Interval,
    Kind,
    Op,
    SourcePosition,
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
    Warehouse,
    WarehouseError,
)
from warehouse.duckdb.adapter import DuckDBWarehouse
from warehouse.snowflake.adapter import SnowflakeWarehouse
from warehouse.snowflake.settings import SnowflakeSettings

pytestmark = pytest.mark.conformance

SCHEMA = ITEMS_SCHEMA
SOFT = TableTarget("items", soft_delete=True)
HOSTILE = "it's a \"quote\"; DROP TABLE X; -- $$ dollar $$ \\ backslash ' '' end"


# ---- upsert, update, delete ----------------------------------------------------------------


def test_insert_update_delete(wh: Warehouse) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 11, name="b"))], [])
    assert rows(wh) == [{"id": 1, "name": "a", "doc": None}, {"id": 2, "name": "b", "doc": None}]
    result = wh.apply([batch(ev(Op.UPDATE, 1, 12, name="a2", doc="d"), ev(Op.DELETE, 2, 13))], [])
    assert (result.tables[0].upserted, result.tables[0].deleted) == (1, 1)
    assert rows(wh) == [{"id": 1, "name": "a2", "doc": "d"}]
    assert wh.registered("items") is not None
    reg = wh.registered("items")
    assert reg is not None and reg.key == ("id",) and reg.mode == "mirror"
    assert wh.registered("nope") is None


def test_position_guard_refuses_older_and_equal_and_applies_newer(wh: Warehouse) -> None:
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


def test_a_replayed_older_insert_does_not_resurrect_a_deleted_key(wh: Warehouse) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"))], [])
    wh.apply([batch(ev(Op.DELETE, 1, 20))], [])
    replay = wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"))], [])
    assert replay.tables[0].stale == 1
    assert rows(wh) == []
    wh.apply([batch(ev(Op.CREATE, 1, 30, name="back"))], [])
    assert rows(wh) == [{"id": 1, "name": "back", "doc": None}]
    # the marker was superseded: a replay of the delete is still refused
    wh.apply([batch(ev(Op.DELETE, 1, 20))], [])
    assert rows(wh) == [{"id": 1, "name": "back", "doc": None}]


def test_soft_delete_hides_the_row_and_guards_the_key(wh: Warehouse) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"), target=SOFT)], [])
    deleted = wh.apply([batch(ev(Op.DELETE, 1, 20), ev(Op.DELETE, 2, 21), target=SOFT)], [])
    assert deleted.tables[0].deleted == 2
    assert rows(wh, SOFT) == []
    replay = wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 5), target=SOFT)], [])
    assert replay.tables[0].stale == 2
    assert rows(wh, SOFT) == []
    wh.apply([batch(ev(Op.CREATE, 2, 30, name="new"), target=SOFT)], [])
    assert rows(wh, SOFT) == [{"id": 2, "name": "new", "doc": None}]


# ---- idempotent replay: a property over random histories -----------------------------------

change = st.tuples(st.integers(0, 3), st.booleans(), st.text(max_size=5))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=st.lists(change, min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 12), max_size=3),
    replay=st.tuples(st.integers(0, 12), st.integers(0, 12)),
)
def test_any_split_and_any_replayed_range_give_the_reference_state(
    wh: Warehouse,
    history: list[tuple[int, bool, str]],
    cuts: list[int],
    replay: tuple[int, int],
) -> None:
    table = f"prop_{uuid.uuid4().hex[:8]}"
    target = TableTarget(table)
    schema = TableSchema(TableId("public", table), SCHEMA.columns, ("id",))
    events = []
    model: dict[int, dict[str, Any]] = {}
    for i, (key, delete, name) in enumerate(history):
        lsn = 100 + i
        if delete:
            events.append(ev(Op.DELETE, key, lsn, schema))
            model.pop(key, None)
        else:
            events.append(ev(Op.UPDATE, key, lsn, schema, name=name, doc=None))
            model[key] = {"id": key, "name": name, "doc": None}
    bounds = sorted({0, len(events), *(c for c in cuts if c <= len(events))})
    for lo, hi in itertools.pairwise(bounds):
        if hi > lo:
            wh.apply([TableBatch(target, schema, events[lo:hi])], [])
    lo, hi = sorted(replay)
    if events[lo:hi]:
        again = wh.apply([TableBatch(target, schema, events[lo:hi])], [])
        assert again.tables[0].upserted == again.tables[0].deleted == 0
    assert rows(wh, target) == sorted(model.values(), key=lambda r: r["id"])


# ---- TOAST ---------------------------------------------------------------------------------


def test_unchanged_toast_keeps_the_stored_value(wh: Warehouse) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a", doc="big " * 50))], [])
    wh.apply([batch(ev(Op.UPDATE, 1, 20, name="b", doc=UNCHANGED_TOAST))], [])
    assert rows(wh) == [{"id": 1, "name": "b", "doc": "big " * 50}]
    # in one batch with a key that is new: nothing to carry, NULL
    wh.apply(
        [
            batch(
                ev(Op.UPDATE, 1, 30, name="c", doc=UNCHANGED_TOAST), ev(Op.CREATE, 2, 31, name="x")
            )
        ],
        [],
    )
    assert rows(wh) == [
        {"id": 1, "name": "c", "doc": "big " * 50},
        {"id": 2, "name": "x", "doc": None},
    ]


def test_primary_key_change_with_an_untouched_toast_value(wh: Warehouse) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a", doc="toasted"))], [])
    # Debezium: a delete of the old key and a create of the new key at one LSN
    result = wh.apply(
        [batch(ev(Op.DELETE, 1, 20), ev(Op.CREATE, 7, 20, name="moved", doc=UNCHANGED_TOAST))], []
    )
    assert result.tables[0].toast_unresolved == 0
    assert rows(wh) == [{"id": 7, "name": "moved", "doc": "toasted"}]


def test_key_change_after_a_hard_delete_in_an_earlier_batch_has_no_value_to_carry(
    wh: Warehouse,
) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a", doc="toasted"))], [])
    wh.apply([batch(ev(Op.DELETE, 1, 20))], [])
    # the create half of the key change arrives alone: the old row is gone (hard delete)
    result = wh.apply([batch(ev(Op.CREATE, 7, 20, name="moved", doc=UNCHANGED_TOAST))], [])
    assert result.tables[0].toast_unresolved == 1
    assert rows(wh) == [{"id": 7, "name": "moved", "doc": None}]


def test_key_change_after_a_soft_delete_in_an_earlier_batch_carries_the_stored_value(
    wh: Warehouse,
) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a", doc="toasted"), target=SOFT)], [])
    wh.apply([batch(ev(Op.DELETE, 1, 20), target=SOFT)], [])
    result = wh.apply(
        [batch(ev(Op.CREATE, 7, 20, name="moved", doc=UNCHANGED_TOAST), target=SOFT)], []
    )
    assert result.tables[0].toast_unresolved == 0
    assert rows(wh, SOFT) == [{"id": 7, "name": "moved", "doc": "toasted"}]


# ---- schema evolution ----------------------------------------------------------------------


def test_added_column_and_widened_numeric_and_text(wh: Warehouse) -> None:
    v1 = TableSchema(
        TableId("public", "evo"),
        (
            Column("id", INT64, nullable=False),
            Column("n", ColumnType(Kind.INT16)),
            Column("amount", ColumnType(Kind.DECIMAL, precision=6, scale=2)),
            Column("s", ColumnType(Kind.TEXT, length=10)),
        ),
        ("id",),
    )
    target = TableTarget("evo")
    row1 = {"n": 7, "amount": Decimal("1234.56"), "s": "short"}
    wh.apply([TableBatch(target, v1, [ev(Op.CREATE, 1, 10, v1, **row1)])], [])
    v2 = TableSchema(
        v1.table,
        (
            Column("id", INT64, nullable=False),
            Column("n", ColumnType(Kind.INT64)),
            Column("amount", ColumnType(Kind.DECIMAL, precision=14, scale=2)),
            Column("s", ColumnType(Kind.TEXT, length=100)),
            Column("extra", ColumnType(Kind.TEXT), default="dflt"),
        ),
        ("id",),
    )
    row2 = {"n": 2**40, "amount": Decimal("123456789012.34"), "s": "x" * 60, "extra": "e"}
    wh.apply([TableBatch(target, v2, [ev(Op.CREATE, 2, 11, v2, **row2)])], [])
    assert rows(wh, target) == [
        {"id": 1, **row1, "extra": "dflt"},
        {"id": 2, **row2},
    ]


SCALE_V1 = TableSchema(
    TableId("public", "scaled"),
    (Column("id", INT64), Column("x", ColumnType(Kind.DECIMAL, precision=6, scale=2))),
    ("id",),
)
SCALE_V2 = TableSchema(
    SCALE_V1.table,
    (Column("id", INT64), Column("x", ColumnType(Kind.DECIMAL, precision=14, scale=4))),
    ("id",),
)


def _change_scale(wh: Warehouse) -> None:
    target = TableTarget("scaled")
    wh.apply(
        [TableBatch(target, SCALE_V1, [ev(Op.CREATE, 1, 10, SCALE_V1, x=Decimal("1.25"))])], []
    )
    wh.apply(
        [TableBatch(target, SCALE_V2, [ev(Op.CREATE, 2, 11, SCALE_V2, x=Decimal("1.2345"))])], []
    )


@pytest.mark.parametrize("wh", ["duckdb"], indirect=True)
def test_duckdb_widens_a_decimal_scale(wh: Warehouse) -> None:
    _change_scale(wh)
    got = [r["x"] for r in rows(wh, TableTarget("scaled"))]
    assert got == [Decimal("1.25"), Decimal("1.2345")]


@pytest.mark.parametrize("wh", ["snowflake"], indirect=True)
def test_snowflake_refuses_a_decimal_scale_change(wh: Warehouse) -> None:
    """Snowflake's ALTER COLUMN can't change a NUMBER's scale (its documentation; fakesnow
    would accept the ALTER, so the adapter refuses before asking): the table is parked."""
    with pytest.raises(IncompatibleSchemaChangeError, match="scale") as info:
        _change_scale(wh)
    assert info.value.table == "scaled"


def test_an_incompatible_type_change_is_refused(wh: Warehouse) -> None:
    v1 = TableSchema(
        TableId("public", "inc"), (Column("id", INT64), Column("c", ColumnType(Kind.TEXT))), ("id",)
    )
    v2 = TableSchema(v1.table, (Column("id", INT64), Column("c", ColumnType(Kind.INT32))), ("id",))
    target = TableTarget("inc")
    wh.apply([TableBatch(target, v1, [ev(Op.CREATE, 1, 10, v1, c="x")])], [])
    with pytest.raises(IncompatibleSchemaChangeError):
        wh.apply([TableBatch(target, v2, [ev(Op.CREATE, 2, 11, v2, c=5)])], [])


# ---- offsets and atomicity -----------------------------------------------------------------


def test_nothing_is_quarantined(wh: Warehouse) -> None:
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"))], [])
    assert wh.list_quarantine() == []
    assert wh.list_quarantine("items", include_replayed=True) == []


def test_offsets_only_move_forward(wh: Warehouse) -> None:
    group = f"g-{HOSTILE}"
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"))], [OffsetRow(group, "t", 0, 5)])
    wh.apply([], [OffsetRow(group, "t", 0, 9), OffsetRow(group, "t", 1, 3)])
    # a zombie consumer with older offsets moves nothing back
    wh.apply([], [OffsetRow(group, "t", 0, 4), OffsetRow(group, "t", 1, 3)])
    assert wh.load_offsets(group) == {("t", 0): 9, ("t", 1): 3}
    assert wh.load_offsets("other") == {}


def test_a_data_error_rolls_back_everything(wh: Warehouse) -> None:
    money = TableSchema(
        TableId("public", "money"),
        (Column("id", INT64), Column("amount", ColumnType(Kind.DECIMAL, precision=6, scale=2))),
        ("id",),
    )
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"))], [OffsetRow("g", "t", 0, 1)])
    good = batch(ev(Op.UPDATE, 1, 20, name="changed"), ev(Op.CREATE, 2, 21, name="new"))
    bad = TableBatch(
        TableTarget("money"), money, [ev(Op.CREATE, 1, 22, money, amount=Decimal("12345.678"))]
    )
    with pytest.raises(DataError) as info:
        wh.apply([good, bad], [OffsetRow("g", "t", 0, 50)])
    assert info.value.table == "money"
    assert rows(wh) == [{"id": 1, "name": "a", "doc": None}]
    assert wh.load_offsets("g") == {("t", 0): 1}


JSON_SCHEMA = TableSchema(
    TableId("public", "docs"), (Column("id", INT64), Column("doc", ColumnType(Kind.JSON))), ("id",)
)


def _engine_rejects_json(wh: Warehouse) -> pytest.ExceptionInfo[WarehouseError]:
    """A batch whose second table holds text the engine can't parse as JSON (staging can't
    tell: JSON is staged as text), after a first table's statements ran in the transaction."""
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"))], [OffsetRow("g", "t", 0, 1)])
    good = batch(ev(Op.UPDATE, 1, 20, name="changed"), ev(Op.CREATE, 2, 21, name="new"))
    bad = TableBatch(
        TableTarget("docs"), JSON_SCHEMA, [ev(Op.CREATE, 1, 22, JSON_SCHEMA, doc="{bad")]
    )
    with pytest.raises(WarehouseError) as info:
        wh.apply([good, bad], [OffsetRow("g", "t", 0, 50)])
    return info


def test_an_engine_error_mid_transaction_rolls_back_everything(wh: Warehouse) -> None:
    _engine_rejects_json(wh)
    assert rows(wh) == [{"id": 1, "name": "a", "doc": None}]
    assert wh.load_offsets("g") == {("t", 0): 1}
    # the warehouse is usable again: the retried batch (fixed) applies
    fixed = TableBatch(
        TableTarget("docs"), JSON_SCHEMA, [ev(Op.CREATE, 1, 22, JSON_SCHEMA, doc="{}")]
    )
    wh.apply([batch(ev(Op.UPDATE, 1, 20, name="changed")), fixed], [OffsetRow("g", "t", 0, 50)])
    assert rows(wh) == [{"id": 1, "name": "changed", "doc": None}]
    assert wh.load_offsets("g") == {("t", 0): 50}


@pytest.mark.parametrize("wh", ["duckdb"], indirect=True)
def test_duckdb_classifies_invalid_json_as_a_data_error(wh: Warehouse) -> None:
    info = _engine_rejects_json(wh)
    assert isinstance(info.value, DataError) and info.value.table == "docs"


@pytest.mark.parametrize("wh", ["snowflake"], indirect=True)
def test_fakesnow_reports_invalid_json_as_http_500_so_it_is_transient(wh: Warehouse) -> None:
    """fakesnow answers PARSE_JSON of invalid text with HTTP 500 (Snowflake: errno 100069,
    a DataError). An HTTP 500 is a service error on Snowflake, hence transient: the consumer's
    bounded retry stops it. What matters for the contract (nothing kept) is asserted above."""
    info = _engine_rejects_json(wh)
    assert isinstance(info.value, TransientWarehouseError)


def test_scd2_support_is_declared(wh: Warehouse) -> None:
    """Both adapters keep history (the scd2 bodies are in test_scd2_contract.py)."""
    target = TableTarget("hist", mode="scd2")
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"), target=target)], [])
    assert wh.history_report(target).ok
    assert [r["name"] for r in wh.fetch_history(target)] == ["a"]


# ---- every kind, hostile strings, odd names -----------------------------------------------

KINDS = KINDS_SCHEMA
# every text of the shared full row, hostile strings included
FULL_ROW: dict[str, Any] = BASE_FULL_ROW | {
    "txt": f"{BASE_FULL_ROW['txt']} {HOSTILE}",
    "tags": [*BASE_FULL_ROW["tags"], HOSTILE],
}


def _kinds_event(row: dict[str, Any], lsn: int) -> ChangeEvent:
    return row_event(KINDS, row, lsn)


def _json_parsed(row: dict[str, Any]) -> dict[str, Any]:
    """JSON columns compared as values (see the module docstring)."""
    return {k: json.loads(v) if k == "doc" and v is not None else v for k, v in row.items()}


@pytest.mark.parametrize("mode", ["mirror", "scd2"])
def test_every_kind_and_nulls_round_trip(wh: Warehouse, mode: str) -> None:
    target = TableTarget("all_kinds", mode=mode)  # type: ignore[arg-type]
    wh.apply(
        [TableBatch(target, KINDS, [_kinds_event(FULL_ROW, 1), _kinds_event(NULL_ROW, 2)])], []
    )
    got = [_json_parsed(r) for r in rows(wh, target)]
    assert got == [_json_parsed(FULL_ROW), NULL_ROW]
    if mode == "scd2":
        names = [c.name for c in ALL_KINDS]
        history = [_json_parsed({n: r[n] for n in names}) for r in wh.fetch_history(target)]
        assert history == [_json_parsed(FULL_ROW), NULL_ROW]


NASTY = ["Order Id", 'My "odd" col', "semi;colon", "UPPER", "sélect", "drop table x; --",
         "c0", "m_lsn", "t1", "s"]  # fmt: skip


@pytest.mark.parametrize("mode", ["mirror", "scd2"])
def test_odd_table_and_column_names_and_hostile_strings(wh: Warehouse, mode: str) -> None:
    table = 'Weird "Tbl" ; name'
    texts = [Column(n, ColumnType(Kind.TEXT)) for n in NASTY[1:]]
    columns = (Column("Order Id", INT64, nullable=False), *texts)
    schema = TableSchema(TableId("public", "weird"), columns, ("Order Id",))
    target = TableTarget(table, mode=mode)  # type: ignore[arg-type]
    row = {"Order Id": 1, **{n: f"{HOSTILE} {n}" for n in NASTY[1:]}}
    event = ev(Op.CREATE, {"Order Id": 1}, 5, schema, commit_us=T0_US, topic="t", offset=1, **row)
    wh.apply([TableBatch(target, schema, [event])], [])
    assert wh.fetch_table(target) == [row]
    later = T0_US + 1  # committed 1 µs later
    delete = ev(Op.DELETE, {"Order Id": 1}, 6, schema, commit_us=later, topic="t", offset=2)
    wh.apply([TableBatch(target, schema, [delete])], [])
    assert wh.fetch_table(target) == []
    if mode == "scd2":
        [version] = wh.fetch_history(target)
        assert {n: version[n] for n in row} == row and version["_cdc_deleted"] is True
        assert wh.history_report(target).ok


MARKER = "zq7-marker-\u03a9\u00df"


@pytest.mark.parametrize("mode", ["mirror", "scd2"])
@pytest.mark.parametrize("wh", ["snowflake"], indirect=True)
def test_no_value_reaches_the_sql_text_on_snowflake(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Rows are staged as Parquet and scalars bound (qmark): the text sent never holds them."""
    from snowflake.connector.cursor import SnowflakeCursor

    sent: list[str] = []
    tags: list[dict[str, Any]] = []
    original = SnowflakeCursor.execute

    def recording(self: SnowflakeCursor, command: str, params: Any = None, **kw: Any) -> Any:
        sent.append(command)
        tags.append(json.loads((kw.get("_statement_params") or {}).get("QUERY_TAG", "null")))
        return original(self, command, params, **kw)

    monkeypatch.setattr(SnowflakeCursor, "execute", recording)
    row = FULL_ROW | {"txt": MARKER, "tags": [MARKER], "doc": json.dumps({"k": MARKER})}
    target = TableTarget("all_kinds", mode=mode)  # type: ignore[arg-type]
    wh.apply(
        [TableBatch(target, KINDS, [_kinds_event(row, 1)])],
        [OffsetRow(f"group-{MARKER}", f"topic-{MARKER}", 0, 7)],
    )
    later = _kinds_event(row | {"txt": "x"}, 2)  # another transaction, committed later
    later = dataclasses.replace(later, position=SourcePosition(2, 8, 1_700_000_000_223_456, False))
    wh.apply([TableBatch(target, KINDS, [later])], [])
    assert wh.load_offsets(f"group-{MARKER}") == {(f"topic-{MARKER}", 0): 7}
    assert rows(wh, target)[0]["txt"] == "x"
    if mode == "scd2":
        assert [r["txt"] for r in wh.fetch_history(target)] == [MARKER, "x"]
        wh.fetch_history(target, key=[MARKER])  # a key given as text is bound too
    assert sent and not [c for c in sent if MARKER in c]
    # every statement carries a QUERY_TAG naming the job and the table it works on
    assert all(t and t["app"] == "cdc-replicator" and t["job"] == "apply" for t in tags), tags
    assert {t["table"] for t in tags} == {"all_kinds", None}  # None: offsets, bookkeeping
    assert not [c for c in sent if c.lstrip().upper().startswith("MERGE")]


def test_both_adapters_fetch_the_same_rows(
    tmp_path: Path, snowflake_settings: SnowflakeSettings
) -> None:
    """fetch_table of the same batches is equal across adapters (JSON compared parsed)."""
    target = TableTarget("all_kinds")
    other = FULL_ROW | {"id": 3, "txt": HOSTILE, "span": Interval(-1, -2, -3), "ints": []}
    batches = [TableBatch(target, KINDS, [_kinds_event(r, i) for i, r in
                                          enumerate([FULL_ROW, NULL_ROW, other], 1)])]  # fmt: skip
    fetched = []
    for w in (
        DuckDBWarehouse(tmp_path / "same.duckdb", keep_open=True),
        SnowflakeWarehouse(snowflake_settings, tmpdir=tmp_path),
    ):
        try:
            w.ensure_bookkeeping()
            w.apply(batches, [])
            fetched.append([_json_parsed(r) for r in rows(w, target)])
        finally:
            w.close()
    assert fetched[0] == fetched[1]
    assert len(fetched[0]) == 3


def test_a_warehouse_never_written_to_has_no_offsets(tmp_path: Path) -> None:
    fresh = DuckDBWarehouse(tmp_path / "never.duckdb")
    assert fresh.load_offsets("g") == {}
    assert fresh.last_applied(ITEMS) is None
    fresh.close()


def test_last_applied_is_the_newest_change_deletes_included(wh: Warehouse) -> None:
    assert wh.last_applied(ITEMS) is None  # no table yet
    wh.apply([batch(ev(Op.CREATE, 1, 10, name="a"), ev(Op.CREATE, 2, 30, name="b"))], [])
    first = wh.last_applied(ITEMS)
    assert first is not None and first.lsn == 30
    assert first.source_ts == dt.datetime.fromtimestamp(1_700_000_000.000030, dt.UTC)
    assert first.loaded_at is not None and first.loaded_at.tzinfo is not None
    wh.apply([batch(ev(Op.DELETE, 2, 40), target=SOFT)], [])
    soft = wh.last_applied(SOFT)
    assert soft is not None and soft.lsn == 40  # the soft-deleted row counts
