"""Dates, times, timestamps and intervals, as Debezium encodes them
(``time.precision.mode=adaptive_time_microseconds``, ``interval.handling.mode=string``):
values ``datetime`` can hold as ``datetime`` objects, the others (BC, after 9999, ±infinity,
24:00:00) as the model's far values, and anything outside PostgreSQL's range a DecodeError."""

from __future__ import annotations

import decimal
import re
from datetime import UTC, date, datetime, time
from typing import Any, Final

from cdc.decoding.common import DecodeError, mismatch
from cdc.model import (
    DATE_INFINITY,
    TIMESTAMP_INFINITY,
    FarDate,
    FarTimestamp,
    Interval,
    date_value,
    days_from_civil,
    time_value,
    timestamp_value,
)

_EXACT: Final = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MICROS_PER_DAY: Final = 86_400_000_000

# PostgreSQL's ranges (days and µs from 1970-01-01): dates 4713-01-01 BC .. 5874897-12-31,
# timestamps 4713-11-24 BC .. 294276-12-31 23:59:59.999999.
PG_MIN_DATE: Final = days_from_civil(-4712, 1, 1)
PG_MAX_DATE: Final = days_from_civil(5874897, 12, 31)
PG_MIN_TIMESTAMP: Final = days_from_civil(-4713, 11, 24) * _MICROS_PER_DAY
PG_MAX_TIMESTAMP: Final = days_from_civil(294277, 1, 1) * _MICROS_PER_DAY - 1

# Debezium 3.6 can't carry date 'infinity': it sends these day numbers, all outside
# PostgreSQL's range (seen on the real chain: snapshot reads, then streamed changes). Any other
# out-of-range number is a DecodeError, never a guess.
_DATE_SENTINELS: Final = {
    -622191234: DATE_INFINITY,
    -625821272: -DATE_INFINITY,
    -2147472692: DATE_INFINITY,
    -2147472691: -DATE_INFINITY,
}
# Timestamp 'infinity' / '-infinity': the JDBC driver's DATE_POSITIVE_INFINITY and
# DATE_NEGATIVE_INFINITY, in µs (MicroTimestamp) or ms (Timestamp).
_TIMESTAMP_SENTINELS_US: Final = {
    9223372036825200000: TIMESTAMP_INFINITY,
    -9223372036832400000: -TIMESTAMP_INFINITY,
}
_TIMESTAMP_SENTINELS_MS: Final = {
    9223372036825200: TIMESTAMP_INFINITY,
    -9223372036832400: -TIMESTAMP_INFINITY,
}


def _require_int(value: Any, label: str) -> int:
    if value.__class__ is not int:
        raise mismatch(label, value)
    return int(value)


def decode_date(value: Any, placeholder: str) -> date | FarDate:
    """io.debezium.time.Date / connect Date: int32 days since 1970-01-01 (may be negative)."""
    days = _require_int(value, "int32 days")
    if PG_MIN_DATE <= days <= PG_MAX_DATE:
        return date_value(days)
    infinite = _DATE_SENTINELS.get(days)
    if infinite is not None:
        return FarDate(infinite)
    raise DecodeError(f"date {days} days from epoch is outside PostgreSQL's range")


def time_from_micros(micros: int) -> Any:
    """Time of day from microseconds past midnight; 24:00:00 is :data:`END_OF_DAY`."""
    if not 0 <= micros <= _MICROS_PER_DAY:
        raise DecodeError(f"time of day {micros}us is out of range")
    return time_value(micros)


def decode_time_millis(value: Any, placeholder: str) -> Any:
    """io.debezium.time.Time / connect Time: int32 milliseconds past midnight."""
    return time_from_micros(_require_int(value, "int32 millis") * 1000)


def decode_micro_time(value: Any, placeholder: str) -> Any:
    """io.debezium.time.MicroTime: int64 microseconds past midnight."""
    return time_from_micros(_require_int(value, "int64 micros"))


def decode_nano_time(value: Any, placeholder: str) -> Any:
    """io.debezium.time.NanoTime: int64 nanoseconds past midnight (truncated to µs)."""
    return time_from_micros(_require_int(value, "int64 nanos") // 1000)


def timestamp_from_micros(micros: int, *, zoned: bool = False) -> datetime | FarTimestamp:
    """A timestamp from µs since the epoch (UTC when ``zoned``): ``datetime`` when it can hold
    it, else :class:`~cdc.model.FarTimestamp`. Outside PostgreSQL's range: DecodeError."""
    if abs(micros) == TIMESTAMP_INFINITY or PG_MIN_TIMESTAMP <= micros <= PG_MAX_TIMESTAMP:
        return timestamp_value(micros, zoned=zoned)
    raise DecodeError(f"timestamp {micros}us from epoch is outside PostgreSQL's range")


def decode_timestamp_millis(value: Any, placeholder: str) -> datetime | FarTimestamp:
    """io.debezium.time.Timestamp / connect Timestamp: int64 ms since the epoch, no zone."""
    millis = _require_int(value, "int64 millis")
    infinite = _TIMESTAMP_SENTINELS_MS.get(millis)
    return FarTimestamp(infinite, False) if infinite else timestamp_from_micros(millis * 1000)


def decode_micro_timestamp(value: Any, placeholder: str) -> datetime | FarTimestamp:
    """io.debezium.time.MicroTimestamp: int64 µs since the epoch, no zone."""
    micros = _require_int(value, "int64 micros")
    infinite = _TIMESTAMP_SENTINELS_US.get(micros)
    return FarTimestamp(infinite, False) if infinite else timestamp_from_micros(micros)


def decode_nano_timestamp(value: Any, placeholder: str) -> datetime | FarTimestamp:
    """io.debezium.time.NanoTimestamp: int64 ns since the epoch (floored to µs), no zone."""
    return timestamp_from_micros(_require_int(value, "int64 nanos") // 1000)


_ISO_TIMESTAMP: Final = re.compile(
    r"([+-]?\d{4,7})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d\d:\d\d(?::\d\d)?)"
)
_ZONED_INFINITY: Final = {"infinity": TIMESTAMP_INFINITY, "-infinity": -TIMESTAMP_INFINITY}


def _far_zoned_timestamp(value: str) -> FarTimestamp | datetime:
    """An ISO timestamp beyond ``datetime`` (BC as a negative ISO year, years > 9999)."""
    infinite = _ZONED_INFINITY.get(value)
    if infinite is not None:
        return FarTimestamp(infinite, True)
    match = _ISO_TIMESTAMP.fullmatch(value)
    if match is None:
        raise DecodeError(f"unparseable or out-of-range timestamptz {value!r}")
    y, mo, d, h, mi, sec, frac, zone = match.groups()
    month, day = int(mo), int(d)
    if not (1 <= month <= 12 and 1 <= day <= 31 and int(h) < 24 and int(mi) < 60):
        raise DecodeError(f"invalid timestamptz {value!r}")
    micros = days_from_civil(int(y), month, day) * _MICROS_PER_DAY
    micros += ((int(h) * 60 + int(mi)) * 60 + int(sec)) * 1_000_000
    micros += int((frac or "0").ljust(9, "0")[:6])
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        parts = [int(p) for p in zone[1:].split(":")]
        offset = (parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)) * sign
        micros -= offset * 1_000_000
    return timestamp_from_micros(micros, zoned=True)


def decode_zoned_timestamp(value: Any, placeholder: str) -> datetime | FarTimestamp:
    """io.debezium.time.ZonedTimestamp: ISO-8601 with offset (Debezium uses Z) -> aware UTC;
    ``infinity``, ``-infinity``, BC (negative ISO years) and years > 9999 -> FarTimestamp."""
    if value.__class__ is not str:
        raise mismatch("ISO-8601 timestamp string", value)
    if len(value) > 64:
        raise mismatch("ISO-8601 timestamp string", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return _far_zoned_timestamp(value)
    offset = parsed.utcoffset()
    if offset is None:
        raise DecodeError(f"timestamptz {value!r} has no offset")
    if offset:
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            return _far_zoned_timestamp(value)
    return parsed if parsed.tzinfo is UTC else parsed.replace(tzinfo=UTC)


def decode_zoned_time(value: Any, placeholder: str) -> time:
    """io.debezium.time.ZonedTime: ISO-8601 time with offset -> time(tzinfo=UTC)."""
    if value.__class__ is not str:
        raise mismatch("ISO-8601 time string", value)
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise DecodeError(f"unparseable or out-of-range timetz {value!r}") from None
    offset = parsed.utcoffset()
    if offset is None:
        raise DecodeError(f"timetz {value!r} has no offset")
    if offset:
        shifted = datetime.combine(date(2000, 1, 2), parsed.replace(tzinfo=None)) - offset
        return shifted.time().replace(tzinfo=UTC)
    return parsed.replace(tzinfo=UTC)


# every part at most 19 digits: a PostgreSQL interval's parts are 32- and 64-bit integers
_INTERVAL_RE: Final = re.compile(
    r"P(?:([+-]?\d{1,19})Y)?(?:([+-]?\d{1,19})M)?(?:([+-]?\d{1,19})W)?(?:([+-]?\d{1,19})D)?"
    r"(?:T(?:([+-]?\d{1,19})H)?(?:([+-]?\d{1,19})M)?"
    r"(?:([+-]?(?:\d{1,19}(?:\.\d{0,19})?|\.\d{1,19}))S)?)?"
)


def parse_interval(text: str) -> Interval:
    """An ISO-8601 duration as Debezium writes it (``P1Y2M3DT4H5M6.78S``; any part signed)."""
    match = _INTERVAL_RE.fullmatch(text)
    if match is None or text.endswith("T"):
        raise DecodeError(f"invalid ISO-8601 interval {text!r}")
    y, mo, w, d, h, mi, s = match.groups()
    months = int(y or 0) * 12 + int(mo or 0)
    days = int(w or 0) * 7 + int(d or 0)
    micros = (int(h or 0) * 60 + int(mi or 0)) * 60_000_000
    if s:
        micros += int(decimal.Decimal(s).scaleb(6, _EXACT))  # truncates beyond µs, like Debezium
    return Interval(months, days, micros)


def decode_interval(value: Any, placeholder: str) -> Interval:
    """io.debezium.time.Interval: ISO-8601 duration string -> Interval (lossless)."""
    if value.__class__ is not str:
        raise mismatch("ISO-8601 interval string", value)
    return parse_interval(value)


def decode_micro_duration(value: Any, placeholder: str) -> Interval:
    """io.debezium.time.MicroDuration: int64 µs -> Interval(0, 0, µs)."""
    return Interval(0, 0, _require_int(value, "int64 micros"))


def decode_any_interval(value: Any, placeholder: str) -> Interval:
    """Interval from either representation (schemaless envelopes)."""
    if value.__class__ is int:
        return Interval(0, 0, int(value))
    return decode_interval(value, placeholder)
