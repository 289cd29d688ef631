"""Row-by-row comparison of a source table with its warehouse copy (demo and tests).

Both sides are normalised to the value representation of ``cdc.model`` before comparing:
timestamps and times with zones to UTC (Debezium sends timetz in UTC, so the source's offset
can't survive — documented), ``real`` through float32, JSON/inet as the text PostgreSQL prints,
intervals as (months, days, µs). Numbers compare exactly (``Decimal``), never as floats.

Keys can be left out of a comparison by their text form (:func:`key_text`, the form of the
quarantine table's ``key``): a key with open quarantined changes legitimately differs from the
source until they are replayed.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import struct
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.types.datetime import (
    DateLoader,
    TimeLoader,
    TimestampLoader,
    TimestamptzLoader,
    TimetzLoader,
)

from cdc.decoding.values import parse_interval
from cdc.model import (
    DATE_INFINITY,
    END_OF_DAY,
    TIMESTAMP_INFINITY,
    FarDate,
    FarTimestamp,
    TableId,
    date_value,
    days_from_civil,
    timestamp_value,
)


class _TextLoader(Loader):
    def load(self, data: Buffer) -> str:
        return bytes(data).decode()


class _IntervalLoader(Loader):
    def load(self, data: Buffer) -> Any:
        return parse_interval(bytes(data).decode())


class _UtcTimetzLoader(TimetzLoader):
    """A timetz in UTC (``tzinfo=UTC``), as Debezium sends it (the model representation)."""

    def load(self, data: Buffer) -> dt.time:
        value: dt.time = super().load(data)
        offset = value.utcoffset()
        if offset is None:
            return value
        moment = dt.datetime.combine(dt.date(2000, 1, 1), value.replace(tzinfo=None)) - offset
        return moment.time().replace(tzinfo=dt.UTC)


Buffer = bytes | bytearray | memoryview

_PG_DATE = re.compile(r"(\d{4,7})-(\d\d)-(\d\d)")
_PG_TIMESTAMP = re.compile(
    r"(\d{4,7})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-]\d\d)(?::(\d\d))?)?( BC)?"
)


def _far_days(text: str) -> int:
    bc = text.endswith(" BC")
    match = _PG_DATE.fullmatch(text.removesuffix(" BC"))
    if match is None:
        raise ValueError(f"unexpected date {text!r}")
    year, month, day = (int(g) for g in match.groups())
    return days_from_civil(1 - year if bc else year, month, day)


class _FarDateLoader(DateLoader):
    """Dates ``datetime.date`` can't hold (BC, after 9999, ±infinity) as FarDate."""

    def load(self, data: Buffer) -> Any:
        text = bytes(data).decode()
        if text in ("infinity", "-infinity"):
            return FarDate(DATE_INFINITY if text == "infinity" else -DATE_INFINITY)
        if len(text) == 10:
            return super().load(data)
        return date_value(_far_days(text))


def _far_timestamp(text: str, zoned: bool) -> Any:
    if text in ("infinity", "-infinity"):
        return FarTimestamp(
            TIMESTAMP_INFINITY if text == "infinity" else -TIMESTAMP_INFINITY, zoned
        )
    match = _PG_TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"unexpected timestamp {text!r}")
    y, mo, d, h, mi, sec, frac, oh, om, bc = match.groups()
    days = days_from_civil(1 - int(y) if bc else int(y), int(mo), int(d))
    micros = days * 86_400_000_000 + ((int(h) * 60 + int(mi)) * 60 + int(sec)) * 1_000_000
    micros += int((frac or "0").ljust(6, "0"))
    if oh is not None:
        offset = int(oh) * 3600 + (int(om or 0) * 60) * (-1 if oh.startswith("-") else 1)
        micros -= offset * 1_000_000
    return timestamp_value(micros, zoned=zoned)


class _FarTimestampLoader(TimestampLoader):
    def load(self, data: Buffer) -> Any:
        text = bytes(data).decode()
        if len(text) <= 26 and text[0].isdigit() and text[4] == "-" and not text.endswith("BC"):
            return super().load(data)
        return _far_timestamp(text, False)


class _FarTimestamptzLoader(TimestamptzLoader):
    def load(self, data: Buffer) -> Any:
        text = bytes(data).decode()
        if len(text) <= 32 and text[0].isdigit() and text[4] == "-" and not text.endswith("BC"):
            return super().load(data)
        return _far_timestamp(text, True)


class _TimeLoader(TimeLoader):
    """24:00:00 as END_OF_DAY."""

    def load(self, data: Buffer) -> Any:
        if bytes(data) == b"24:00:00":
            return END_OF_DAY
        return super().load(data)


class _MoneyLoader(Loader):
    """money in the C locale (``$1,234.56``) as a Decimal."""

    def load(self, data: Buffer) -> Any:
        return decimal.Decimal(bytes(data).decode().replace("$", "").replace(",", ""))


def source_connection(url: str) -> psycopg.Connection[Any]:
    """A connection whose loaders produce the ``cdc.model`` representation."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute("SET intervalstyle = 'iso_8601'")
    conn.execute("SET datestyle = 'ISO, YMD'")
    conn.execute("SET lc_monetary = 'C'")
    conn.adapters.register_loader("date", _FarDateLoader)
    conn.adapters.register_loader("timestamp", _FarTimestampLoader)
    conn.adapters.register_loader("timestamptz", _FarTimestamptzLoader)
    conn.adapters.register_loader("time", _TimeLoader)
    conn.adapters.register_loader("money", _MoneyLoader)
    for name in ("json", "jsonb", "inet", "cidr", "macaddr"):
        conn.adapters.register_loader(name, _TextLoader)
    conn.adapters.register_loader("interval", _IntervalLoader)
    conn.adapters.register_loader("timetz", _UtcTimetzLoader)
    return conn


def _float32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def normalise(value: Any, pg_type: str = "") -> Any:
    """One value in the canonical form both sides are compared in."""
    if value is None:
        return None
    if isinstance(value, decimal.Decimal) and value.is_nan():
        return "NaN"  # NaN is unequal to itself; the same NaN on both sides is equal
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, list):
        return [normalise(v, pg_type.removesuffix("[]")) for v in value]
    if isinstance(value, float):
        return _float32(value) if pg_type == "real" else value
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.time) and value.tzinfo is not None:
        offset = value.utcoffset() or dt.timedelta(0)
        shifted = dt.datetime.combine(dt.date(2000, 1, 2), value.replace(tzinfo=None)) - offset
        return shifted.time()
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


@dataclass
class TableDiff:
    name: str
    source_rows: int
    warehouse_rows: int
    missing: list[tuple[Any, ...]] = field(default_factory=list)  # in source only
    extra: list[tuple[Any, ...]] = field(default_factory=list)  # in warehouse only
    different: list[tuple[tuple[Any, ...], str, Any, Any]] = field(default_factory=list)
    excluded: int = 0  # keys (on either side) left out of the comparison

    @property
    def diffs(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.different)

    def describe(self, limit: int = 3) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing keys {self.missing[:limit]}")
        if self.extra:
            parts.append(f"extra keys {self.extra[:limit]}")
        for key, col, src, wh in self.different[:limit]:
            parts.append(f"key {key} column {col}: source {src!r} != warehouse {wh!r}")
        return "; ".join(parts) or "equal"


def source_rows(
    conn: psycopg.Connection[Any], table: TableId
) -> tuple[list[str], dict[str, str], list[dict[str, Any]]]:
    """(key columns, column -> type name, rows) of a source table."""
    regclass = psycopg.sql.Identifier(table.schema, table.name).as_string(conn)
    types = dict(
        conn.execute(
            "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            (regclass,),
        ).fetchall()
    )
    key = [
        r[0]
        for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)",
            (regclass,),
        ).fetchall()
    ]
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        query = psycopg.sql.SQL("SELECT * FROM {}").format(
            psycopg.sql.Identifier(table.schema, table.name)
        )
        rows = cur.execute(query).fetchall()
    return key, types, rows


def key_text(key: tuple[Any, ...]) -> str:
    """A key's values as JSON text, like ``warehouse.quarantine.key_text`` writes an event's key
    (values other than JSON's own types as ``str()``: a UUID in its usual form)."""
    plain = [v if v is None or isinstance(v, bool | int | float | str) else str(v) for v in key]
    return json.dumps(plain)


def _json_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return None if value is None else json.loads(value, parse_float=decimal.Decimal)


def compare_rows(
    name: str,
    key: list[str],
    types: Mapping[str, str],
    source: Iterable[Mapping[str, Any]],
    warehouse: Iterable[Mapping[str, Any]],
    *,
    exclude: Set[str] = frozenset(),
    json_values: bool = False,
) -> TableDiff:
    """Every column of every row, by key; keys whose :func:`key_text` is in ``exclude`` are
    left out (and counted). The row counts are of the whole tables. ``json_values`` compares
    json/jsonb columns as parsed values (numbers exact) instead of text: for a warehouse that
    keeps a JSON value, not its text (Snowflake's VARIANT normalises spaces and escapes)."""
    src = {tuple(r[k] for k in key): r for r in source}
    wh = {tuple(r[k] for k in key): r for r in warehouse}
    diff = TableDiff(name=name, source_rows=len(src), warehouse_rows=len(wh))
    if exclude:
        left_out = {k for k in src.keys() | wh.keys() if key_text(k) in exclude}
        diff.excluded = len(left_out)
        src = {k: r for k, r in src.items() if k not in left_out}
        wh = {k: r for k, r in wh.items() if k not in left_out}
    diff.missing = sorted((k for k in src if k not in wh), key=repr)
    diff.extra = sorted((k for k in wh if k not in src), key=repr)
    for k in src.keys() & wh.keys():
        s_row, w_row = src[k], wh[k]
        for col, pg_type in types.items():
            s_val = normalise(s_row.get(col), pg_type)
            w_val = normalise(w_row.get(col), pg_type)
            if json_values and pg_type.removesuffix("[]") in ("json", "jsonb"):
                s_val, w_val = _json_value(s_val), _json_value(w_val)
            if s_val != w_val:
                diff.different.append((k, col, s_val, w_val))
                break
    return diff
