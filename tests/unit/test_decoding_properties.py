"""Round-trip properties of the value decoders, and the decode throughput benchmark."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from cdc.decoding import DEFAULT_TOAST_PLACEHOLDER as PH
from cdc.decoding import decode_message
from cdc.decoding.values import (
    decode_date,
    decode_micro_timestamp,
    decode_zoned_timestamp,
    make_decimal_decoder,
    parse_interval,
)
from cdc.model import ChangeEvent, Interval

EPOCH = datetime(1970, 1, 1)


def connect_decimal_bytes(unscaled: int) -> str:
    """What Kafka Connect writes for a Decimal: Java BigInteger.toByteArray(), base64."""
    return base64.b64encode(
        unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
    ).decode()


@st.composite
def decimals(draw: st.DrawFn) -> tuple[int, int, int]:
    precision = draw(st.integers(1, 38))
    scale = draw(st.integers(0, precision))
    unscaled = draw(st.integers(-(10**precision) + 1, 10**precision - 1))
    return precision, scale, unscaled


@given(decimals())
def test_decimal_round_trip(case: tuple[int, int, int]) -> None:
    precision, scale, unscaled = case
    value = make_decimal_decoder(scale, precision)(connect_decimal_bytes(unscaled), PH)
    assert value == Decimal(f"{unscaled}E-{scale}")  # exact, unlike arithmetic at 28 digits
    sign, digits, exponent = value.as_tuple()
    assert exponent == -scale
    assert (-1 if sign else 1) * int("".join(map(str, digits))) == unscaled


def _trunc_div(a: int, b: int) -> tuple[int, int]:
    q = abs(a) // b * (1 if a >= 0 else -1)
    return q, a - q * b


def debezium_interval(months: int, days: int, micros: int) -> str:
    """Interval.toIsoString as the PostgreSQL connector calls it (PGInterval fields)."""
    years, months = _trunc_div(months, 12)
    hours, rest = _trunc_div(micros, 3_600_000_000)
    minutes, rest = _trunc_div(rest, 60_000_000)
    seconds = Decimal(rest).scaleb(-6).normalize()
    text = format(seconds, "f") if seconds else "0"
    return f"P{years}Y{months}M{days}DT{hours}H{minutes}M{text}S"


PG_INT32 = st.integers(-(2**31), 2**31 - 1)


@given(PG_INT32, PG_INT32, st.integers(-(2**63), 2**63 - 1))
def test_interval_round_trip(months: int, days: int, micros: int) -> None:
    # a PostgreSQL interval's time part has one sign, which PGInterval spreads over h/m/s
    assert parse_interval(debezium_interval(months, days, micros)) == Interval(months, days, micros)


def test_interval_example_strings() -> None:
    assert debezium_interval(14, 3, 14_706_780_000) == "P1Y2M3DT4H5M6.78S"
    assert debezium_interval(-14, 3, -14_706_780_000) == "P-1Y-2M3DT-4H-5M-6.78S"


MIN_US = (datetime(1, 1, 1) - EPOCH) // timedelta(microseconds=1)
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999) - EPOCH) // timedelta(microseconds=1)


@given(st.integers(MIN_US, MAX_US))
def test_micro_timestamp_round_trip(micros: int) -> None:
    value = decode_micro_timestamp(micros, PH)
    assert value.tzinfo is None
    assert (value - EPOCH) // timedelta(microseconds=1) == micros


@given(st.dates())
def test_date_round_trip(day: date) -> None:
    assert decode_date((day - date(1970, 1, 1)).days, PH) == day


@given(st.datetimes(timezones=st.just(UTC)))
def test_zoned_timestamp_round_trip(moment: datetime) -> None:
    text = moment.isoformat().replace("+00:00", "Z")
    value = decode_zoned_timestamp(text, PH)
    assert value == moment and value.tzinfo is UTC


# ----------------------------------------------------------------------------- benchmark


def _ten_column_message(i: int) -> tuple[bytes, bytes]:
    def f(name: str, typ: str, logical: str | None = None, **params: str) -> dict[str, object]:
        out: dict[str, object] = {"type": typ, "optional": name != "id"}
        if logical:
            out.update(name=logical, version=1)
        out["parameters"] = {"__debezium.source.column.type": typ.upper(), **params}
        out["field"] = name
        return out

    columns = [
        f("id", "int64"),
        f("name", "string", **{"__debezium.source.column.length": "100"}),
        f(
            "amount",
            "bytes",
            "org.apache.kafka.connect.data.Decimal",
            scale="2",
            **{"connect.decimal.precision": "12"},
        ),
        f("qty", "int32"),
        f("price", "double"),
        f("active", "boolean"),
        f("created", "int64", "io.debezium.time.MicroTimestamp"),
        f("updated", "string", "io.debezium.time.ZonedTimestamp"),
        f("day", "int32", "io.debezium.time.Date"),
        f("ref", "string", "io.debezium.data.Uuid"),
    ]
    row = {"type": "struct", "fields": columns, "optional": True, "name": "cdc.public.orders.Value"}
    schema = {
        "type": "struct",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {
                "type": "struct",
                "fields": [],
                "optional": False,
                "name": "io.debezium.connector.postgresql.Source",
                "field": "source",
            },
            {"type": "string", "optional": False, "field": "op"},
        ],
        "optional": False,
        "name": "cdc.public.orders.Envelope",
        "version": 2,
    }
    after = {
        "id": i,
        "name": f"customer {i}",
        "amount": connect_decimal_bytes(123456 + i),
        "qty": 3,
        "price": 19.99,
        "active": True,
        "created": 1704164645123456 + i,
        "updated": "2024-01-02T01:04:05.123456Z",
        "day": 19724,
        "ref": "e82b8392-ef81-43f8-8218-59e98cf3ad15",
    }
    source = {
        "version": "3.6.3.Final",
        "connector": "postgresql",
        "name": "cdc",
        "ts_ms": 1795594583465,
        "snapshot": "false",
        "db": "postgres",
        "sequence": f'["{24083920 + i}","{24083960 + i}"]',
        "ts_us": 1795594583465724,
        "ts_ns": 1795594583465724000,
        "schema": "public",
        "table": "orders",
        "txId": 759 + i,
        "lsn": 24083960 + i,
        "xmin": None,
    }
    payload = {
        "before": None,
        "after": after,
        "source": source,
        "transaction": None,
        "op": "u",
        "ts_ms": 1795594583633,
    }
    key = {
        "schema": {
            "type": "struct",
            "optional": False,
            "name": "cdc.public.orders.Key",
            "fields": [{"type": "int64", "optional": False, "field": "id"}],
        },
        "payload": {"id": i},
    }
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    return dumps(key).encode(), dumps({"schema": schema, "payload": payload}).encode()


def test_decode_throughput() -> None:
    messages = [_ten_column_message(i) for i in range(20_000)]
    first = decode_message(*messages[0], topic="cdc.public.orders", partition=0, offset=0)
    assert isinstance(first, ChangeEvent) and first.after is not None
    assert first.after["amount"] == Decimal("1234.56")
    start = time.perf_counter()
    for offset, (key, value) in enumerate(messages):
        decode_message(key, value, topic="cdc.public.orders", partition=0, offset=offset)
    elapsed = time.perf_counter() - start
    size = len(messages[0][1])
    print(
        f"\ndecode throughput: {len(messages) / elapsed:,.0f} messages/s "
        f"(10-column row, {size} byte envelope with schema, one core)"
    )
