"""Envelope-level decoding: real Debezium messages, skips, positions, keys, schemaless, errors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc.decoding import DecodeError, Skip, decode_message
from cdc.model import (
    UNCHANGED_TOAST,
    ChangeEvent,
    Column,
    ColumnType,
    Interval,
    KafkaOrigin,
    Kind,
    Op,
    SourcePosition,
    TableId,
    TableSchema,
)

HERE = Path(__file__).parent
REAL = json.loads((HERE.parent / "fixtures" / "debezium_pg18_real_messages.json").read_text())
PARTS = json.loads((HERE / "fixtures" / "debezium" / "envelope_parts.json").read_text())
TOPIC = "cdc.public.t"


def raw(i: int) -> tuple[bytes | None, bytes | None]:
    msg = REAL[i]
    return (
        msg["key"].encode() if msg["key"] is not None else None,
        msg["value"].encode() if msg["value"] is not None else None,
    )


def decode(key: bytes | None, value: bytes | None, **kwargs: Any) -> ChangeEvent | Skip:
    return decode_message(
        key, value, topic=kwargs.pop("topic", TOPIC), partition=3, offset=42, **kwargs
    )


def event(key: bytes | None, value: bytes | None, **kwargs: Any) -> ChangeEvent:
    result = decode(key, value, **kwargs)
    assert isinstance(result, ChangeEvent)
    return result


def compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# ----------------------------------------------------------------------------- real messages


def test_real_snapshot_read_every_type() -> None:
    key, value = raw(0)
    ev = event(key, value)
    assert ev.op is Op.READ
    assert ev.table == TableId("public", "t")
    assert ev.key == {"id": 1}
    assert ev.schema.key == ("id",)
    assert ev.before is None
    assert ev.position == SourcePosition(
        lsn=24083344, tx_id=757, commit_ts_us=1795594579749473, snapshot=True, commit_lsn=None
    )
    assert ev.origin == KafkaOrigin(TOPIC, 3, 42)
    assert ev.raw_value == value
    assert ev.after is not None
    after = dict(ev.after)
    assert after.pop("big") == "x" * 10000
    assert after == {
        "id": 1,
        "n": Decimal("12.34"),
        "vn": Decimal("1.23456789012"),
        "ts": datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC),
        "t": datetime(2024, 1, 2, 3, 4, 5, 123456),
        "d": date(2024, 1, 2),
        "tm": ev.after["tm"],
        "ttz": ev.after["ttz"],
        "iv": Interval(14, 3, 14_706_780_000),
        "u": ev.after["u"],
        "j": '{"a": [1, 2]}',
        "js": '{"b":  1}',
        "b": b"\x00\xff",
        "ai": [1, 2, None],
        "at": ["a", "b c"],
        "m": "happy",
        "ip": "192.168.0.1/24",
        "r": 1.5,
        "dp": 2.25,
        "s": 7,
        "bi": 9000000000,
        "bo": True,
        "vc": "hello",
        "ch": "ab ",
    }
    assert str(ev.after["tm"]) == "03:04:05.123456"
    assert str(ev.after["ttz"]) == "01:04:05.123456+00:00"
    assert str(ev.after["u"]) == "e82b8392-ef81-43f8-8218-59e98cf3ad15"
    assert ev.schema.names[:3] == ("id", "n", "vn")
    assert ev.schema.column("n").type == ColumnType(
        Kind.DECIMAL, precision=12, scale=2, source_type="NUMERIC"
    )


def test_real_snapshot_last_row_of_nulls() -> None:
    ev = event(*raw(1))
    assert ev.position.snapshot is True
    assert ev.after is not None and ev.after["id"] == 2
    assert all(v is None for k, v in ev.after.items() if k != "id")


def test_real_update_and_commit_lsn() -> None:
    ev = event(*raw(6))
    assert ev.op is Op.UPDATE
    assert ev.after is not None and ev.after["bi"] == 2
    assert ev.position == SourcePosition(24084552, 760, 1795594583466104, False, 24084040)


def test_real_delete_and_tombstone() -> None:
    ev = event(*raw(3))
    assert ev.op is Op.DELETE and ev.is_delete
    assert ev.after is None
    assert ev.before is not None and ev.before["id"] == 2
    assert ev.key == {"id": 2}
    assert ev.position.commit_lsn == 24083920
    assert decode(*raw(4)) == Skip("tombstone")


def test_table_schema_is_shared_between_messages() -> None:
    assert event(*raw(2)).schema is event(*raw(5)).schema  # cached per schema text
    assert event(*raw(0)).schema == event(*raw(2)).schema  # snapshot schema text differs


# ----------------------------------------------------------------------------- skips


def test_heartbeat_by_topic_and_by_schema_name() -> None:
    hb = PARTS["heartbeat"]
    key, value = hb["key"].encode(), hb["value"].encode()
    assert decode(key, value, topic="__debezium-heartbeat.cdc") == Skip("heartbeat")
    assert decode(key, value, topic="some.other.topic") == Skip("heartbeat")


def test_transaction_metadata() -> None:
    tx = PARTS["transaction_begin"]
    assert decode(tx["key"].encode(), tx["value"].encode(), topic="cdc.transaction") == Skip(
        "transaction"
    )
    end = compact(PARTS["transaction_end_schemaless"])
    assert decode(None, end, topic="cdc.transaction") == Skip("transaction")


def test_schema_change_event() -> None:
    value = compact(
        {"source": {}, "databaseName": "db", "ddl": "ALTER TABLE t ...", "tableChanges": []}
    )
    assert decode(None, value) == Skip("schema_change")


def test_tombstone_without_key() -> None:
    assert decode(None, None) == Skip("tombstone")


# ----------------------------------------------------------------------------- source block


def with_source(**changes: Any) -> bytes:
    doc = json.loads(REAL[2]["value"])
    doc["payload"]["source"].update(changes)
    for name, v in changes.items():
        if v is ...:
            del doc["payload"]["source"][name]
    return compact(doc)


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("true", True),
        ("last", True),
        ("first", True),
        ("first_in_data_collection", True),
        ("last_in_data_collection", True),
        ("incremental", True),
        ("false", False),
        (..., False),
    ],
)
def test_snapshot_markers(marker: Any, expected: bool) -> None:
    assert event(raw(2)[0], with_source(snapshot=marker)).position.snapshot is expected


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        ('["24023928","24023930"]', 24023928),
        ('[null,"24023928"]', None),
        ("[null,null]", None),
        (..., None),
    ],
)
def test_sequence_commit_lsn(sequence: Any, expected: int | None) -> None:
    assert event(raw(2)[0], with_source(sequence=sequence)).position.commit_lsn == expected


def test_commit_time_falls_back_to_ts_ms() -> None:
    ev = event(raw(2)[0], with_source(ts_us=..., ts_ns=..., ts_ms=1700000000123))
    assert ev.position.commit_ts_us == 1700000000123000


def test_null_tx_id() -> None:
    assert event(raw(2)[0], with_source(txId=None)).position.tx_id is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lsn": ...}, "source.lsn"),
        ({"lsn": "24083384"}, "source.lsn"),
        ({"txId": "758"}, "source.txId"),
        ({"ts_us": ..., "ts_ms": ...}, "source.ts_us"),
        ({"snapshot": "maybe"}, "source.snapshot"),
        ({"sequence": "not json"}, "source.sequence"),
        ({"sequence": '["x"]'}, "source.sequence"),
        ({"table": ...}, "source.table"),
    ],
)
def test_bad_source_block(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(raw(2)[0], with_source(**changes))
    assert info.value.field == field


# ----------------------------------------------------------------------------- ops and keys


def test_truncate() -> None:
    doc = json.loads(REAL[2]["value"])
    doc["payload"].update(op="t", before=None, after=None)
    ev = event(None, compact(doc))
    assert ev.op is Op.TRUNCATE
    assert ev.before is None and ev.after is None and ev.key == {}
    assert ev.schema.key == ()


def test_table_without_primary_key() -> None:
    ev = event(None, raw(2)[1])
    assert ev.key == {} and ev.schema.key == ()


def test_composite_key_keeps_key_order() -> None:
    key = compact(
        {
            "schema": {
                "type": "struct",
                "optional": False,
                "name": "cdc.public.t.Key",
                "fields": [
                    {"type": "string", "optional": False, "field": "vc"},
                    {"type": "int32", "optional": False, "field": "id"},
                ],
            },
            "payload": {"vc": "hello", "id": 1},
        }
    )
    ev = event(key, raw(2)[1])
    assert ev.schema.key == ("vc", "id")
    assert ev.key == {"vc": "hello", "id": 1}


def test_key_values_are_decoded_with_their_types() -> None:
    key = compact(
        {
            "schema": {
                "type": "struct",
                "optional": False,
                "name": "k",
                "fields": [
                    {
                        "type": "int32",
                        "optional": False,
                        "name": "io.debezium.time.Date",
                        "field": "d",
                    }
                ],
            },
            "payload": {"d": 19724},
        }
    )
    assert event(key, raw(2)[1]).key == {"d": date(2024, 1, 2)}


def test_schemaless_key_uses_row_types() -> None:
    ev = event(b'{"id": 1, "d": 19724}', raw(2)[1])
    assert ev.key == {"id": 1, "d": date(2024, 1, 2)}
    assert ev.schema.key == ("id", "d")


@pytest.mark.parametrize("op", ["x", "", None, 1])
def test_unknown_op(op: Any) -> None:
    doc = json.loads(REAL[2]["value"])
    doc["payload"]["op"] = op
    with pytest.raises(DecodeError, match="unknown op") as info:
        decode(None, compact(doc))
    assert info.value.field == "op"


def test_missing_op() -> None:
    doc = json.loads(REAL[2]["value"])
    del doc["payload"]["op"]
    with pytest.raises(DecodeError, match="missing op"):
        decode(None, compact(doc))


@pytest.mark.parametrize("op", ["c", "u", "r"])
def test_insert_update_read_need_after(op: str) -> None:
    doc = json.loads(REAL[2]["value"])
    doc["payload"].update(op=op, after=None)
    with pytest.raises(DecodeError, match="without after"):
        decode(None, compact(doc))


# ----------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    "value",
    [
        b"{not json",
        b"",
        b'{"schema":{"type":"struct"},"payload":',
        b"\xff\xfe",
        b"[1, 2]",
        b'"text"',
        b"null",
        b'{"schema":{"type":"struct","fields":[]},"payload":null}',
        b'{"schema": 5, "payload": {}}',
    ],
)
def test_malformed_values(value: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(None, value)


def test_invalid_json_reports_value_field() -> None:
    with pytest.raises(DecodeError, match="invalid JSON") as info:
        decode(None, b"{not json")
    assert info.value.field == "value"


def test_invalid_key_json() -> None:
    with pytest.raises(DecodeError, match="invalid JSON") as info:
        decode(b"{oops", raw(2)[1])
    assert info.value.field == "key"


def test_missing_payload() -> None:
    doc = json.loads(REAL[2]["value"])
    doc["payload"] = None
    with pytest.raises(DecodeError, match="payload") as info:
        decode(None, compact(doc))
    assert info.value.field == "payload"


def test_spaced_json_with_schema_takes_the_slow_path() -> None:
    doc = json.loads(REAL[2]["value"])
    spaced = json.dumps(doc, indent=2).encode()
    assert event(raw(2)[0], spaced).after == event(*raw(2)).after


def test_schema_containing_the_payload_separator() -> None:
    doc = json.loads(REAL[2]["value"])
    doc["schema"]["fields"][1]["fields"][0]["parameters"] = {"a": "1", "payload": "x"}
    value = compact(doc)
    assert b',"payload":' in value[: value.index(b'"payload":{"before"')]
    ev = event(raw(2)[0], value)
    assert ev.after is not None and ev.after["id"] == 1


def test_a_decode_error_carries_field_and_message() -> None:
    err = DecodeError("boom", field="after.x")
    assert (err.message, err.field, str(err)) == ("boom", "after.x", "after.x: boom")
    assert str(DecodeError("boom")) == "boom"


# ----------------------------------------------------------------------------- schemaless


def schemaless(op: str = "u", **row_changes: Any) -> bytes:
    payload = json.loads(REAL[2]["value"])["payload"]
    payload["op"] = op
    payload["after"].update(row_changes)
    return compact(payload)


def test_schemaless_without_hint_infers_types() -> None:
    payload = {
        "before": None,
        "after": {
            "id": 1,
            "f": 1.5,
            "ok": True,
            "s": "x",
            "doc": {"a": [1, 2]},
            "tags": ["a", None],
            "nums": [1, 2],
            "nothing": None,
        },
        "source": PARTS["source"],
        "op": "c",
        "ts_ms": 1,
    }
    ev = event(b'{"id": 1}', compact(payload))
    assert ev.after == {
        "id": 1,
        "f": 1.5,
        "ok": True,
        "s": "x",
        "doc": '{"a":[1,2]}',
        "tags": ["a", None],
        "nums": [1, 2],
        "nothing": None,
    }
    assert ev.schema == TableSchema(
        TableId("public", "t"),
        (
            Column("id", ColumnType(Kind.INT64)),
            Column("f", ColumnType(Kind.FLOAT64)),
            Column("ok", ColumnType(Kind.BOOLEAN)),
            Column("s", ColumnType(Kind.TEXT)),
            Column("doc", ColumnType(Kind.JSON)),
            Column("tags", ColumnType(Kind.ARRAY, element=ColumnType(Kind.TEXT))),
            Column("nums", ColumnType(Kind.ARRAY, element=ColumnType(Kind.INT64))),
            Column("nothing", ColumnType(Kind.TEXT)),
        ),
        ("id",),
    )
    assert ev.key == {"id": 1}
    assert ev.position.lsn == PARTS["source"]["lsn"]


def test_schemaless_without_hint_toast() -> None:
    ph = "__debezium_unavailable_value"
    after = {"id": 1, "big": ph, "arr": [ph]}
    payload = {"before": None, "after": after, "source": PARTS["source"], "op": "u"}
    ev = event(None, compact(payload))
    assert ev.after == {"id": 1, "big": UNCHANGED_TOAST, "arr": UNCHANGED_TOAST}


HINT = TableSchema(
    TableId("public", "t"),
    (
        Column("id", ColumnType(Kind.INT32), nullable=False),
        Column("n", ColumnType(Kind.DECIMAL, precision=12, scale=2)),
        Column("vn", ColumnType(Kind.VARDECIMAL)),
        Column("ts", ColumnType(Kind.TIMESTAMPTZ)),
        Column("t", ColumnType(Kind.TIMESTAMP)),
        Column("d", ColumnType(Kind.DATE)),
        Column("tm", ColumnType(Kind.TIME)),
        Column("iv", ColumnType(Kind.INTERVAL)),
        Column("b", ColumnType(Kind.BYTES)),
        Column("ai", ColumnType(Kind.ARRAY, element=ColumnType(Kind.INT32))),
        Column("j", ColumnType(Kind.JSON)),
        Column("big", ColumnType(Kind.TEXT)),
    ),
    ("id",),
)


def test_schemaless_with_hint_uses_hint_types() -> None:
    ev = event(b'{"id":1}', schemaless(), schema_hint=HINT)
    assert ev.schema is HINT
    assert ev.after is not None
    assert {k: ev.after[k] for k in ("id", "n", "vn", "t", "d", "iv", "b", "ai", "j")} == {
        "id": 1,
        "n": Decimal("13.34"),
        "vn": Decimal("1.23456789012"),
        "t": datetime(2024, 1, 2, 3, 4, 5, 123456),
        "d": date(2024, 1, 2),
        "iv": Interval(14, 3, 14_706_780_000),
        "b": b"\x00\xff",
        "ai": [1, 2, None],
        "j": '{"a": [1, 2]}',
    }
    assert ev.after["ts"] == datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC)
    assert str(ev.after["tm"]) == "03:04:05.123456"
    assert set(ev.after) == set(HINT.names)


def test_schemaless_with_hint_toast_and_errors() -> None:
    ph = "__debezium_unavailable_value"
    ev = event(None, schemaless(big=ph, ai=list(ph.encode())), schema_hint=HINT)
    assert ev.after is not None
    assert ev.after["big"] is UNCHANGED_TOAST and ev.after["ai"] is UNCHANGED_TOAST
    assert ev.schema == TableSchema(HINT.table, HINT.columns, ())
    with pytest.raises(DecodeError) as info:
        decode(None, schemaless(d="2024-01-02"), schema_hint=HINT)
    assert info.value.field == "after.d"
    with pytest.raises(DecodeError) as info:
        decode(None, schemaless(id=None), schema_hint=HINT)
    assert info.value.field == "after.id" and "null" in info.value.message


def test_hint_is_ignored_when_the_envelope_has_a_schema() -> None:
    ev = event(*raw(2), schema_hint=HINT)
    assert ev.schema is not HINT and len(ev.schema.columns) == 25


def test_field_defaults_are_decoded_like_values() -> None:
    from cdc.decoding.schema import struct_plan

    plan = struct_plan(
        {
            "type": "struct",
            "fields": [
                {"type": "int32", "optional": False, "field": "id"},
                {"type": "string", "optional": True, "default": "fresh", "field": "note"},
                {
                    "type": "bytes",
                    "optional": False,
                    "name": "org.apache.kafka.connect.data.Decimal",
                    "parameters": {"scale": "2", "connect.decimal.precision": "6"},
                    "default": "AJY=",
                    "field": "amt",
                },
                {"type": "int32", "optional": True, "default": "not an int", "field": "bad"},
            ],
        },
        "after",
    )
    defaults = {c.name: c.default for c in plan.columns}
    assert defaults == {"id": None, "note": "fresh", "amt": Decimal("1.50"), "bad": None}
