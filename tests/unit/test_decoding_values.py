"""Every Debezium value encoding, decoded through a with-schema envelope to its exact value."""

from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc.decoding import DEFAULT_TOAST_PLACEHOLDER, DecodeError, decode_message
from cdc.model import UNCHANGED_TOAST, ChangeEvent, ColumnType, Interval, Kind

PARTS = json.loads(
    (Path(__file__).parent / "fixtures" / "debezium" / "envelope_parts.json").read_text()
)
PH = DEFAULT_TOAST_PLACEHOLDER


def col(
    name: str,
    typ: str,
    logical: str | None = None,
    *,
    optional: bool = True,
    params: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A field schema as Debezium's JsonConverter writes it."""
    out: dict[str, Any] = {"type": typ, "optional": optional}
    if logical:
        out["name"] = logical
        out["version"] = 1
    if params:
        out["parameters"] = params
    out.update(extra)
    out["field"] = name
    return out


ID = col("id", "int32", optional=False, params={"__debezium.source.column.type": "INT4"})


def envelope(
    columns: list[dict[str, Any]],
    after: dict[str, Any] | None,
    *,
    before: dict[str, Any] | None = None,
    op: str = "c",
    source: dict[str, Any] | None = None,
) -> bytes:
    """A Debezium PostgreSQL change event value (schema + payload), compact like Kafka's."""
    row = {"type": "struct", "fields": columns, "optional": True, "name": "cdc.public.t.Value"}
    schema = {
        "type": "struct",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            PARTS["source_schema"],
            PARTS["transaction_schema"],
            *PARTS["trailing_fields"],
        ],
        "optional": False,
        "name": "cdc.public.t.Envelope",
        "version": 2,
    }
    payload = {
        "before": before,
        "after": after,
        "source": {**PARTS["source"], **(source or {})},
        "transaction": None,
        "op": op,
        "ts_ms": 1795594583633,
        "ts_us": 1795594583633855,
        "ts_ns": 1795594583633855958,
    }
    return json.dumps({"schema": schema, "payload": payload}, separators=(",", ":")).encode()


KEY = b'{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],\
"optional":false,"name":"cdc.public.t.Key"},"payload":{"id":1}}'


def decode_one(column: dict[str, Any], raw: Any, **kwargs: Any) -> Any:
    """Decode ``raw`` as the after-value of a one-column (plus id) table."""
    event = decode_message(
        KEY,
        envelope([ID, column], {"id": 1, column["field"]: raw}),
        topic="cdc.public.t",
        partition=0,
        offset=0,
        **kwargs,
    )
    assert isinstance(event, ChangeEvent)
    return event.after[column["field"]] if event.after else None


def type_of(column: dict[str, Any]) -> ColumnType:
    event = decode_message(
        KEY,
        envelope([ID, column], {"id": 1, column["field"]: None}),
        topic="t",
        partition=0,
        offset=0,
    )
    assert isinstance(event, ChangeEvent)
    return event.schema.column(column["field"]).type


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unscaled_b64(unscaled: int) -> str:
    """Connect Decimal bytes: minimal big-endian two's complement (Java BigInteger)."""
    return b64(unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True))


def src(t: str, length: str | None = None, **more: str) -> dict[str, str]:
    params = {"__debezium.source.column.type": t}
    if length is not None:
        params["__debezium.source.column.length"] = length
    return {**params, **more}


# ----------------------------------------------------------------------------- integers/floats


@pytest.mark.parametrize(
    ("typ", "raw", "kind"),
    [
        ("int8", -128, Kind.INT16),
        ("int16", -32768, Kind.INT16),
        ("int16", 7, Kind.INT16),
        ("int32", 2147483647, Kind.INT32),
        ("int64", 9000000000, Kind.INT64),
        ("int64", -9223372036854775808, Kind.INT64),
    ],
)
def test_integers(typ: str, raw: int, kind: Kind) -> None:
    column = col("v", typ)
    value = decode_one(column, raw)
    assert value == raw and type(value) is int
    assert type_of(column).kind is kind


@pytest.mark.parametrize(("typ", "kind"), [("float", Kind.FLOAT32), ("double", Kind.FLOAT64)])
def test_floats(typ: str, kind: Kind) -> None:
    column = col("v", typ, params=src("FLOAT8"))
    assert decode_one(column, 2.25) == 2.25
    assert decode_one(column, 3) == 3.0 and type(decode_one(column, 3)) is float
    assert math.isnan(decode_one(column, "NaN"))
    assert decode_one(column, "Infinity") == math.inf
    assert decode_one(column, "-Infinity") == -math.inf
    assert type_of(column) == ColumnType(kind, source_type="FLOAT8")


def test_boolean() -> None:
    assert decode_one(col("v", "boolean"), True) is True
    assert decode_one(col("v", "boolean"), False) is False
    assert type_of(col("v", "boolean")).kind is Kind.BOOLEAN


# ----------------------------------------------------------------------------- numerics


def test_decimal_precise() -> None:
    params = {"scale": "2", "connect.decimal.precision": "12", **src("NUMERIC", "12")}
    column = col("n", "bytes", "org.apache.kafka.connect.data.Decimal", params=params)
    assert decode_one(column, "BNI=") == Decimal("12.34")  # from a real Debezium 3.6 message
    negative = decode_one(column, unscaled_b64(-1234))
    assert negative == Decimal("-12.34") and negative.as_tuple().exponent == -2
    zero = decode_one(column, unscaled_b64(0))
    assert str(zero) == "0.00"
    assert decode_one(column, unscaled_b64(999999999999)) == Decimal("9999999999.99")
    assert type_of(column) == ColumnType(Kind.DECIMAL, precision=12, scale=2, source_type="NUMERIC")


def test_decimal_precision_defaults() -> None:
    from_length = col(
        "n",
        "bytes",
        "org.apache.kafka.connect.data.Decimal",
        params={"scale": "0", **src("NUMERIC", "5")},
    )
    assert type_of(from_length) == ColumnType(
        Kind.DECIMAL, precision=5, scale=0, source_type="NUMERIC"
    )
    bare = col("n", "bytes", "org.apache.kafka.connect.data.Decimal", params={"scale": "2"})
    assert type_of(bare) == ColumnType(Kind.DECIMAL, precision=None, scale=2)
    assert decode_one(bare, unscaled_b64(-150)) == Decimal("-1.50")
    # money (precise mode): no connect.decimal.precision, and a column length of 2^31-1 that
    # is not a precision (it made the decoder compute 10**2147483647 and hang: issue 17)
    money = col(
        "n",
        "bytes",
        "org.apache.kafka.connect.data.Decimal",
        params={"scale": "2", **src("MONEY", "2147483647")},
    )
    assert type_of(money) == ColumnType(Kind.DECIMAL, precision=19, scale=2, source_type="MONEY")
    assert decode_one(money, unscaled_b64(-9223372036854775808)) == Decimal("-92233720368547758.08")


def test_decimal_wider_than_28_digits_is_exact() -> None:
    params = {"scale": "10", "connect.decimal.precision": "38"}
    column = col("n", "bytes", "org.apache.kafka.connect.data.Decimal", params=params)
    unscaled = -(10**37) + 7
    assert decode_one(column, unscaled_b64(unscaled)) == Decimal(f"{unscaled}E-10")


def test_variable_scale_decimal() -> None:
    column = col(
        "vn",
        "struct",
        "io.debezium.data.VariableScaleDecimal",
        params=src("NUMERIC", "0"),
        fields=[
            {"type": "int32", "optional": False, "field": "scale"},
            {"type": "bytes", "optional": False, "field": "value"},
        ],
        doc="Variable scaled decimal",
    )
    assert decode_one(column, {"scale": 11, "value": "HL6ZGhQ="}) == Decimal("1.23456789012")
    value = decode_one(column, {"scale": 0, "value": unscaled_b64(-5)})
    assert value == Decimal(-5) and value.as_tuple().exponent == 0
    assert type_of(column) == ColumnType(Kind.VARDECIMAL, source_type="NUMERIC")


# ----------------------------------------------------------------------------- strings/bytes


def test_text_varchar_bpchar_inet() -> None:
    text = col("v", "string", params=src("TEXT", "2147483647"))
    assert decode_one(text, "héllo ☃") == "héllo ☃"
    assert type_of(text) == ColumnType(Kind.TEXT, source_type="TEXT")
    varchar = col("v", "string", params=src("VARCHAR", "20"))
    assert decode_one(varchar, "hello") == "hello"
    assert type_of(varchar) == ColumnType(Kind.TEXT, length=20, source_type="VARCHAR")
    bpchar = col("v", "string", params=src("BPCHAR", "3"))
    assert decode_one(bpchar, "ab ") == "ab "
    assert type_of(bpchar) == ColumnType(Kind.TEXT, length=3, source_type="BPCHAR")
    unbounded = col("v", "string", params=src("VARCHAR", "2147483647"))
    assert type_of(unbounded).length is None
    inet = col("v", "string", params=src("INET", "2147483647"))
    assert decode_one(inet, "192.168.0.1/24") == "192.168.0.1/24"
    assert type_of(col("v", "string")) == ColumnType(Kind.TEXT)


def test_bytes() -> None:
    column = col("b", "bytes", params=src("BYTEA", "2147483647"))
    assert decode_one(column, "AP8=") == b"\x00\xff"
    assert decode_one(column, "") == b""
    assert type_of(column) == ColumnType(Kind.BYTES, source_type="BYTEA")


def test_bits() -> None:
    column = col("v", "bytes", "io.debezium.data.Bits", params={"length": "4", **src("BIT", "4")})
    # bit(n): little-endian bytes (B'0101' arrives as 0x05) -> PostgreSQL's text, n digits
    assert decode_one(column, b64(b"\x05")) == "0101"
    assert decode_one(column, b64(b"")) == "0000"
    assert type_of(column) == ColumnType(Kind.TEXT, source_type="BIT")
    wide = col("v", "bytes", "io.debezium.data.Bits", params={"length": "17", **src("BIT", "17")})
    assert decode_one(wide, b64(b"\x01")) == "0" * 16 + "1"
    assert decode_one(wide, b64(b"\x00\x80")) == "01" + "0" * 15
    with pytest.raises(DecodeError, match="more than 4 bits"):
        decode_one(column, b64(b"\x15"))


def test_bit_varying_is_refused_because_debezium_drops_its_length() -> None:
    """Issue 17 point 6: B'101' and B'0101' both arrive as 0x05 (and B'' like B'0000'), so no
    decoding can be exact: the column is refused with the reason, never decoded."""
    for params in ({"length": "2147483647", **src("VARBIT", "2147483647")}, src("VARBIT", "8")):
        column = col("v", "bytes", "io.debezium.data.Bits", params=params)
        with pytest.raises(DecodeError, match="type varbit"):
            type_of(column)
        with pytest.raises(DecodeError, match="bit length"):
            decode_one(column, b64(b"\x05"))


def test_json_and_jsonb_are_kept_verbatim() -> None:
    column = col("j", "string", "io.debezium.data.Json", params=src("JSONB"))
    assert decode_one(column, '{"a": [1, 2]}') == '{"a": [1, 2]}'
    assert decode_one(column, '{"b":  1}') == '{"b":  1}'
    assert decode_one(column, "null") == "null"
    assert type_of(column) == ColumnType(Kind.JSON, source_type="JSONB")


def test_hstore_as_json_and_as_map() -> None:
    as_json = col("h", "string", "io.debezium.data.Json", params=src("HSTORE"))
    assert decode_one(as_json, '{"a":"1","b":null}') == '{"a":"1","b":null}'
    as_map = col(
        "h",
        "map",
        keys={"type": "string", "optional": False},
        values={"type": "string", "optional": True},
    )
    assert decode_one(as_map, {"a": "1", "b": None}) == '{"a":"1","b":null}'
    assert type_of(as_map).kind is Kind.JSON


def test_uuid() -> None:
    column = col("u", "string", "io.debezium.data.Uuid", params=src("UUID"))
    value = decode_one(column, "e82b8392-ef81-43f8-8218-59e98cf3ad15")
    assert value == uuid.UUID("e82b8392-ef81-43f8-8218-59e98cf3ad15")
    assert type_of(column) == ColumnType(Kind.UUID, source_type="UUID")


def test_enum() -> None:
    column = col(
        "m", "string", "io.debezium.data.Enum", params={"allowed": "sad,ok,happy", **src("MOOD")}
    )
    assert decode_one(column, "happy") == "happy"
    assert type_of(column) == ColumnType(
        Kind.ENUM, enum_values=("sad", "ok", "happy"), source_type="MOOD"
    )


def test_enum_set_xml_ltree() -> None:
    enum_set = col("v", "string", "io.debezium.data.EnumSet", params={"allowed": "a,b,c"})
    assert decode_one(enum_set, "a,c") == "a,c"
    assert type_of(enum_set).kind is Kind.TEXT
    xml = col("v", "string", "io.debezium.data.Xml", params=src("XML"))
    assert decode_one(xml, "<a>1</a>") == "<a>1</a>"
    assert type_of(xml) == ColumnType(Kind.TEXT, source_type="XML")
    ltree = col("v", "string", "io.debezium.data.Ltree")
    assert decode_one(ltree, "a.b.c") == "a.b.c"


# ----------------------------------------------------------------------------- dates and times


@pytest.mark.parametrize(
    ("logical", "raw", "expected"),
    [
        ("io.debezium.time.Date", 19724, date(2024, 1, 2)),
        ("io.debezium.time.Date", 0, date(1970, 1, 1)),
        ("io.debezium.time.Date", -1, date(1969, 12, 31)),
        ("io.debezium.time.Date", -719162, date(1, 1, 1)),
        ("io.debezium.time.Date", 2932896, date(9999, 12, 31)),
        ("org.apache.kafka.connect.data.Date", 19724, date(2024, 1, 2)),
    ],
)
def test_dates(logical: str, raw: int, expected: date) -> None:
    column = col("d", "int32", logical, params=src("DATE"))
    assert decode_one(column, raw) == expected
    assert type_of(column) == ColumnType(Kind.DATE, source_type="DATE")


@pytest.mark.parametrize(
    ("typ", "logical", "raw", "expected"),
    [
        ("int64", "io.debezium.time.MicroTime", 11045123456, time(3, 4, 5, 123456)),
        ("int64", "io.debezium.time.MicroTime", 0, time(0, 0)),
        ("int64", "io.debezium.time.MicroTime", 86399999999, time(23, 59, 59, 999999)),
        ("int32", "io.debezium.time.Time", 11045123, time(3, 4, 5, 123000)),
        ("int64", "io.debezium.time.NanoTime", 11045123456789, time(3, 4, 5, 123456)),
        ("int32", "org.apache.kafka.connect.data.Time", 11045123, time(3, 4, 5, 123000)),
    ],
)
def test_times(typ: str, logical: str, raw: int, expected: time) -> None:
    column = col("tm", typ, logical, params=src("TIME"))
    value = decode_one(column, raw)
    assert value == expected and value.tzinfo is None
    assert type_of(column) == ColumnType(Kind.TIME, source_type="TIME")


DT = datetime(2024, 1, 2, 3, 4, 5, 123456)
DT_MS = datetime(2024, 1, 2, 3, 4, 5, 123000)
DT_MAX = datetime(9999, 12, 31, 23, 59, 59, 999999)


@pytest.mark.parametrize(
    ("logical", "raw", "expected"),
    [
        ("io.debezium.time.MicroTimestamp", 1704164645123456, DT),
        ("io.debezium.time.MicroTimestamp", -1, datetime(1969, 12, 31, 23, 59, 59, 999999)),
        ("io.debezium.time.MicroTimestamp", 253402300799999999, DT_MAX),
        ("io.debezium.time.MicroTimestamp", -62135596800000000, datetime(1, 1, 1)),
        ("io.debezium.time.Timestamp", 1704164645123, DT_MS),
        ("io.debezium.time.NanoTimestamp", 1704164645123456789, DT),
        ("org.apache.kafka.connect.data.Timestamp", 1704164645123, DT_MS),
    ],
)
def test_timestamps(logical: str, raw: int, expected: datetime) -> None:
    column = col("t", "int64", logical, params=src("TIMESTAMP"))
    value = decode_one(column, raw)
    assert value == expected and value.tzinfo is None
    assert type_of(column) == ColumnType(Kind.TIMESTAMP, source_type="TIMESTAMP")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-02T01:04:05.123456Z", datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC)),
        ("2024-01-02T01:04:05Z", datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2024-01-02T01:04:05.03Z", datetime(2024, 1, 2, 1, 4, 5, 30000, tzinfo=UTC)),
        ("2024-01-02T03:04:05.5+02:00", datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_zoned_timestamp(raw: str, expected: datetime) -> None:
    column = col("ts", "string", "io.debezium.time.ZonedTimestamp", params=src("TIMESTAMPTZ"))
    value = decode_one(column, raw)
    assert value == expected and value.tzinfo is UTC
    assert type_of(column) == ColumnType(Kind.TIMESTAMPTZ, source_type="TIMESTAMPTZ")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("01:04:05.123456Z", time(1, 4, 5, 123456, tzinfo=UTC)),
        ("23:59:59Z", time(23, 59, 59, tzinfo=UTC)),
        ("01:30:00+02:00", time(23, 30, tzinfo=UTC)),
    ],
)
def test_zoned_time(raw: str, expected: time) -> None:
    column = col("ttz", "string", "io.debezium.time.ZonedTime", params=src("TIMETZ"))
    value = decode_one(column, raw)
    assert value == expected and value.tzinfo is UTC
    assert type_of(column) == ColumnType(Kind.TIMETZ, source_type="TIMETZ")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("P1Y2M3DT4H5M6.78S", Interval(14, 3, 14_706_780_000)),
        ("P-1Y-2M3DT-4H-5M-6.78S", Interval(-14, 3, -14_706_780_000)),
        ("P0Y0M0DT0H0M0S", Interval(0, 0, 0)),
        ("P0Y0M-1DT0H0M-0.000001S", Interval(0, -1, -1)),
        ("P0Y0M0DT100H0M0.5S", Interval(0, 0, 360_000_500_000)),
        ("P178000000Y0M0DT0H0M0S", Interval(2_136_000_000, 0, 0)),
    ],
)
def test_interval_string(raw: str, expected: Interval) -> None:
    column = col("iv", "string", "io.debezium.time.Interval", params=src("INTERVAL"))
    assert decode_one(column, raw) == expected
    assert type_of(column) == ColumnType(Kind.INTERVAL, source_type="INTERVAL")


def test_micro_duration() -> None:
    column = col("iv", "int64", "io.debezium.time.MicroDuration", params=src("INTERVAL"))
    assert decode_one(column, 3_600_000_001) == Interval(0, 0, 3_600_000_001)
    assert decode_one(column, -5) == Interval(0, 0, -5)
    assert type_of(column).kind is Kind.INTERVAL


# ----------------------------------------------------------------------------- arrays


def test_int_and_text_arrays() -> None:
    ints = col("ai", "array", params=src("_INT4", "10"), items={"type": "int32", "optional": True})
    assert decode_one(ints, [1, 2, None]) == [1, 2, None]
    assert decode_one(ints, []) == []
    assert type_of(ints) == ColumnType(
        Kind.ARRAY, element=ColumnType(Kind.INT32), source_type="_INT4"
    )
    texts = col("at", "array", params=src("_TEXT"), items={"type": "string", "optional": True})
    assert decode_one(texts, ["a", "b c", None]) == ["a", "b c", None]
    assert str(type_of(texts)) == "text[]"


def test_arrays_of_logical_types() -> None:
    decimal_items = {
        "type": "bytes",
        "optional": True,
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": {"scale": "2", "connect.decimal.precision": "5"},
    }
    numerics = col("v", "array", items=decimal_items)
    assert decode_one(numerics, [unscaled_b64(125), None]) == [Decimal("1.25"), None]
    assert type_of(numerics).element == ColumnType(Kind.DECIMAL, precision=5, scale=2)
    # a numeric[] column is refused: Debezium sends one holding NaN or Infinity as NULL
    refused = col("v", "array", params=src("_NUMERIC", "5"), items=decimal_items)
    with pytest.raises(DecodeError, match="NaN or Infinity as NULL"):
        type_of(refused)
    uuids = col(
        "v",
        "array",
        items={"type": "string", "optional": True, "name": "io.debezium.data.Uuid", "version": 1},
    )
    assert decode_one(uuids, ["e82b8392-ef81-43f8-8218-59e98cf3ad15"]) == [
        uuid.UUID("e82b8392-ef81-43f8-8218-59e98cf3ad15")
    ]
    dates = col(
        "v",
        "array",
        items={"type": "int32", "optional": True, "name": "io.debezium.time.Date", "version": 1},
    )
    assert decode_one(dates, [19724, -1]) == [date(2024, 1, 2), date(1969, 12, 31)]
    assert str(type_of(dates)) == "date[]"


# ----------------------------------------------------------------------------- NULL


NULLABLE_COLUMNS = [
    col("v", "int16"),
    col("v", "int32"),
    col("v", "int64"),
    col("v", "float"),
    col("v", "double"),
    col("v", "boolean"),
    col("v", "string"),
    col("v", "bytes"),
    col("v", "bytes", "org.apache.kafka.connect.data.Decimal", params={"scale": "2"}),
    col("v", "struct", "io.debezium.data.VariableScaleDecimal"),
    col("v", "int32", "io.debezium.time.Date"),
    col("v", "int32", "io.debezium.time.Time"),
    col("v", "int64", "io.debezium.time.MicroTime"),
    col("v", "int64", "io.debezium.time.NanoTime"),
    col("v", "int64", "io.debezium.time.Timestamp"),
    col("v", "int64", "io.debezium.time.MicroTimestamp"),
    col("v", "int64", "io.debezium.time.NanoTimestamp"),
    col("v", "string", "io.debezium.time.ZonedTimestamp"),
    col("v", "string", "io.debezium.time.ZonedTime"),
    col("v", "string", "io.debezium.time.Interval"),
    col("v", "int64", "io.debezium.time.MicroDuration"),
    col("v", "string", "io.debezium.data.Json"),
    col("v", "string", "io.debezium.data.Uuid"),
    col("v", "string", "io.debezium.data.Enum", params={"allowed": "a,b"}),
    col("v", "string", "io.debezium.data.EnumSet"),
    col("v", "string", "io.debezium.data.Xml"),
    col("v", "bytes", "io.debezium.data.Bits"),
    col("v", "int32", "org.apache.kafka.connect.data.Date"),
    col("v", "int32", "org.apache.kafka.connect.data.Time"),
    col("v", "int64", "org.apache.kafka.connect.data.Timestamp"),
    col("v", "array", items={"type": "int32", "optional": True}),
    col("v", "map", keys={"type": "string"}, values={"type": "string"}),
]


@pytest.mark.parametrize("column", NULLABLE_COLUMNS, ids=lambda c: c.get("name", c["type"]))
def test_null_in_optional_field(column: dict[str, Any]) -> None:
    assert decode_one(column, None) is None


@pytest.mark.parametrize("column", NULLABLE_COLUMNS, ids=lambda c: c.get("name", c["type"]))
def test_null_in_required_field_is_an_error(column: dict[str, Any]) -> None:
    required = {**column, "optional": False}
    with pytest.raises(DecodeError) as info:
        decode_one(required, None)
    assert info.value.field == "after.v"
    assert "null" in info.value.message


def test_nullability_is_reported() -> None:
    event = decode_message(
        KEY,
        envelope([ID, col("v", "string")], {"id": 1, "v": "x"}),
        topic="t",
        partition=0,
        offset=0,
    )
    assert isinstance(event, ChangeEvent)
    assert [(c.name, c.nullable) for c in event.schema.columns] == [("id", False), ("v", True)]


# ----------------------------------------------------------------------------- unchanged TOAST


def test_toast_text_bytea_json() -> None:
    assert decode_one(col("v", "string", params=src("TEXT")), PH) is UNCHANGED_TOAST
    assert decode_one(col("v", "bytes", params=src("BYTEA")), b64(PH.encode())) is UNCHANGED_TOAST
    jsonb = col("v", "string", "io.debezium.data.Json", params=src("JSONB"))
    assert decode_one(jsonb, PH) is UNCHANGED_TOAST
    hstore = col("v", "string", "io.debezium.data.Json", params=src("HSTORE"))
    assert decode_one(hstore, json.dumps({PH: PH}, separators=(",", ":"))) is UNCHANGED_TOAST
    xml = col("v", "string", "io.debezium.data.Xml")
    assert decode_one(xml, PH) is UNCHANGED_TOAST


def test_toast_arrays() -> None:
    texts = col("v", "array", params=src("_TEXT"), items={"type": "string", "optional": True})
    assert decode_one(texts, [PH]) is UNCHANGED_TOAST
    ints = col("v", "array", params=src("_INT4"), items={"type": "int32", "optional": True})
    assert decode_one(ints, list(PH.encode())) is UNCHANGED_TOAST  # [95, 95, 100, 101, ...]
    bigints = col("v", "array", params=src("_INT8"), items={"type": "int64", "optional": True})
    assert decode_one(bigints, list(PH.encode())) is UNCHANGED_TOAST
    dates = col(
        "v", "array", items={"type": "int32", "optional": True, "name": "io.debezium.time.Date"}
    )
    assert decode_one(dates, list(PH.encode())) is UNCHANGED_TOAST
    byteas = col("v", "array", items={"type": "bytes", "optional": True})
    assert decode_one(byteas, [b64(PH.encode())]) is UNCHANGED_TOAST
    uuids = col(
        "v", "array", items={"type": "string", "optional": True, "name": "io.debezium.data.Uuid"}
    )
    assert decode_one(uuids, [_java_name_uuid(PH)]) is UNCHANGED_TOAST
    # a real array that merely starts like the placeholder is data
    assert decode_one(ints, list(PH.encode())[:-1]) == list(PH.encode())[:-1]


def _java_name_uuid(text: str) -> str:
    import hashlib

    digest = bytearray(hashlib.md5(text.encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x30
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


def test_toast_placeholder_is_configurable() -> None:
    text = col("v", "string")
    assert decode_one(text, "<unchanged>", toast_placeholder="<unchanged>") is UNCHANGED_TOAST
    assert decode_one(text, PH, toast_placeholder="<unchanged>") == PH
    ints = col("v", "array", items={"type": "int32", "optional": True})
    assert decode_one(ints, [60, 117, 62], toast_placeholder="<u>") is UNCHANGED_TOAST


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("column", "raw", "needle"),
    [
        (col("v", "int32"), "12", "expected int32"),
        (col("v", "int32"), 1.5, "expected int32"),
        (col("v", "int32"), True, "expected int32"),
        (col("v", "int16"), 40000, "expected int16"),
        (col("v", "int64"), 2**63, "expected int64"),
        (col("v", "double"), "1.5", "expected float"),
        (col("v", "boolean"), 1, "expected boolean"),
        (col("v", "string"), 5, "expected string"),
        (col("v", "bytes"), "not base64!", "invalid base64"),
        (col("v", "bytes"), "AP8", "invalid base64"),
        (
            col(
                "v",
                "bytes",
                "org.apache.kafka.connect.data.Decimal",
                params={"scale": "2", "connect.decimal.precision": "4"},
            ),
            unscaled_b64(123456),
            "more than 4 digits",
        ),
        (
            col("v", "bytes", "org.apache.kafka.connect.data.Decimal", params={"scale": "2"}),
            "%%%",
            "invalid base64",
        ),
        (
            col("v", "struct", "io.debezium.data.VariableScaleDecimal"),
            {"scale": "1", "value": "AQ=="},
            "expected int32 scale",
        ),
        (col("v", "int32", "io.debezium.time.Date"), 2_146_000_000, "outside PostgreSQL"),
        (col("v", "int32", "io.debezium.time.Date"), "2024-01-01", "expected int32 days"),
        (col("v", "int64", "io.debezium.time.MicroTime"), 86_400_000_001, "out of range"),
        (
            col("v", "int64", "io.debezium.time.MicroTimestamp"),
            -9223372036853775810,  # Debezium's overflow of '294276-12-31 23:59:59.999999'
            "outside PostgreSQL",
        ),
        (col("v", "string", "io.debezium.time.ZonedTimestamp"), "infinite", "timestamptz"),
        (col("v", "string", "io.debezium.time.ZonedTimestamp"), "2024-01-02T01:04:05", "no offset"),
        (col("v", "string", "io.debezium.time.ZonedTime"), "24:00:00Z", "timetz"),
        (col("v", "string", "io.debezium.time.Interval"), "1 year", "invalid ISO-8601 interval"),
        (col("v", "string", "io.debezium.data.Uuid"), "not-a-uuid", "invalid uuid"),
        (col("v", "string", "io.debezium.data.Json"), {"a": 1}, "expected JSON text"),
        (col("v", "array", items={"type": "int32", "optional": True}), "[1]", "expected array"),
    ],
)
def test_value_mismatch(column: dict[str, Any], raw: Any, needle: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_one(column, raw)
    assert needle in info.value.message
    assert info.value.field == "after.v"


def test_array_element_errors_name_the_index() -> None:
    ints = col("v", "array", items={"type": "int32", "optional": False})
    with pytest.raises(DecodeError) as info:
        decode_one(ints, [1, "2"])
    assert info.value.field == "after.v[1]"
    with pytest.raises(DecodeError) as info:
        decode_one(ints, [1, None])
    assert info.value.field == "after.v[1]" and "null element" in info.value.message


def test_unknown_logical_type_names_type_and_field() -> None:
    column = col("geo", "struct", "io.debezium.data.geometry.Geometry")
    with pytest.raises(DecodeError) as info:
        decode_one(column, {"wkb": "AQ==", "srid": 4326})
    assert "io.debezium.data.geometry.Geometry" in str(info.value)
    assert info.value.field is not None and info.value.field.endswith("geo")


def test_unknown_primitive_type() -> None:
    with pytest.raises(DecodeError, match="unknown schema type 'int128'"):
        decode_one(col("v", "int128"), 1)
