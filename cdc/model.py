"""The typed records every layer shares: column types, table schemas and change events.

Decoding (``cdc.decoding``) produces these from Debezium envelopes; the warehouse adapters
(``warehouse``) consume them. Nothing here does I/O.

Python value representation of each :class:`Kind` (decoders produce exactly these, the warehouse
stages exactly these, comparisons normalise to these):

============  =====================================================================
Kind          Python value
============  =====================================================================
INT16/32/64   ``int``
DECIMAL       ``decimal.Decimal`` (exact; ``precision``/``scale`` on the type; NaN and
              ±Infinity are Decimal's own specials)
VARDECIMAL    ``decimal.Decimal`` (unconstrained ``numeric``; any scale; specials too)
FLOAT32/64    ``float``
BOOLEAN       ``bool``
TEXT          ``str`` (text, varchar(n), char(n), inet, cidr, macaddr ...)
ENUM          ``str`` (``enum_values`` lists the allowed labels when known)
BYTES         ``bytes``
DATE          ``datetime.date``; :class:`FarDate` for BC, after 9999 and ±infinity
TIME          ``datetime.time`` (naive, µs); :data:`END_OF_DAY` for 24:00:00
TIMETZ        ``datetime.time`` with ``tzinfo=UTC`` (Debezium normalises to UTC)
TIMESTAMP     ``datetime.datetime`` naive (µs); :class:`FarTimestamp` beyond it (BC, ±infinity)
TIMESTAMPTZ   ``datetime.datetime`` aware, UTC (µs); :class:`FarTimestamp` beyond it
INTERVAL      :class:`Interval` (months, days, microseconds: lossless)
UUID          ``uuid.UUID``
JSON          ``str`` holding the JSON text exactly as Debezium sent it
ARRAY         ``list`` of the element kind's values (``element`` on the type)
============  =====================================================================

``None`` is SQL NULL for every kind. :data:`UNCHANGED_TOAST` stands for a value PostgreSQL did
not send because it was TOASTed and unchanged; the apply path carries the previous value forward.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final


class Kind(enum.StrEnum):
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    DECIMAL = "decimal"
    VARDECIMAL = "vardecimal"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BOOLEAN = "boolean"
    TEXT = "text"
    ENUM = "enum"
    BYTES = "bytes"
    DATE = "date"
    TIME = "time"
    TIMETZ = "timetz"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    INTERVAL = "interval"
    UUID = "uuid"
    JSON = "json"
    ARRAY = "array"


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A column's logical type, independent of any warehouse engine."""

    kind: Kind
    precision: int | None = None  # DECIMAL
    scale: int | None = None  # DECIMAL
    length: int | None = None  # TEXT from varchar(n)/char(n), when the source says so
    element: ColumnType | None = None  # ARRAY
    enum_values: tuple[str, ...] | None = None  # ENUM
    source_type: str | None = None  # the PostgreSQL type name, when Debezium propagates it

    def __str__(self) -> str:
        if self.kind is Kind.DECIMAL:
            return f"decimal({self.precision},{self.scale})"
        if self.kind is Kind.ARRAY:
            return f"{self.element}[]"
        return self.kind.value


@dataclass(frozen=True, slots=True)
class Column:
    """A column; ``default`` is its source default value as Debezium reports it (decoded), or
    None. It fills rows that existed before the column was added (PostgreSQL gives them the
    default without writing a change) and changes written before the column existed."""

    name: str
    type: ColumnType
    nullable: bool = True
    default: Any = None


@dataclass(frozen=True, slots=True)
class TableId:
    """A source table: ``schema.name`` (PostgreSQL schema, not the Debezium schema)."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class TableSchema:
    """Columns of a table as Debezium describes them, with the key columns named."""

    table: TableId
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


DATE_INFINITY: Final = 2**31 - 1
"""``FarDate.days`` of date 'infinity' (its negation: '-infinity'), as DuckDB and Arrow store it."""
TIMESTAMP_INFINITY: Final = 2**63 - 1
"""``FarTimestamp.micros`` of 'infinity' (its negation: '-infinity'), as DuckDB stores it."""


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of the proleptic Gregorian calendar, astronomical years (0 = 1 BC)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (astronomical year numbering)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _pg_date_text(days: int) -> str:
    year, month, day = civil_from_days(days)
    if year <= 0:
        return f"{1 - year:04d}-{month:02d}-{day:02d} BC"
    return f"{year:04d}-{month:02d}-{day:02d}"


@dataclass(frozen=True, slots=True, order=True)
class FarDate:
    """A date ``datetime.date`` can't hold: BC, after year 9999, or ±infinity
    (``days`` = ±:data:`DATE_INFINITY`). ``days`` counts from 1970-01-01 (proleptic
    Gregorian, as PostgreSQL and DuckDB count). ``str()`` is PostgreSQL's text form."""

    days: int

    def __str__(self) -> str:
        if abs(self.days) == DATE_INFINITY:
            return "infinity" if self.days > 0 else "-infinity"
        return _pg_date_text(self.days)


@dataclass(frozen=True, slots=True, order=True)
class FarTimestamp:
    """A timestamp ``datetime`` can't hold: BC, after year 9999, or ±infinity (``micros`` =
    ±:data:`TIMESTAMP_INFINITY`). ``micros`` counts from 1970-01-01 00:00 (UTC when
    ``zoned``). ``str()`` is PostgreSQL's text form (zoned ones in UTC, ``+00``)."""

    micros: int
    zoned: bool

    def __str__(self) -> str:
        if abs(self.micros) == TIMESTAMP_INFINITY:
            return "infinity" if self.micros > 0 else "-infinity"
        days, rest = divmod(self.micros, 86_400_000_000)
        seconds, us = divmod(rest, 1_000_000)
        clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if us:
            clock += f".{us:06d}".rstrip("0")
        text = _pg_date_text(days)
        bc = text.endswith(" BC")
        text = f"{text.removesuffix(' BC')} {clock}{'+00' if self.zoned else ''}"
        return f"{text} BC" if bc else text


class _EndOfDay:
    """Sentinel type: the time of day 24:00:00, which PostgreSQL allows and ``time`` can't hold."""

    _instance: _EndOfDay | None = None

    def __new__(cls) -> _EndOfDay:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "END_OF_DAY"

    def __str__(self) -> str:
        return "24:00:00"

    def __reduce__(self) -> str:
        return "END_OF_DAY"


END_OF_DAY: Final = _EndOfDay()


_EPOCH_DATE: Final = date(1970, 1, 1)
_EPOCH_DATETIME: Final = datetime(1970, 1, 1)
_MICROS_PER_DAY: Final = 86_400_000_000
_MIN_PY_DAYS: Final = (date.min - _EPOCH_DATE).days
_MAX_PY_DAYS: Final = (date.max - _EPOCH_DATE).days


def date_value(days: int) -> date | FarDate:
    """The model value of a date given as days since 1970-01-01 (FarDate beyond ``date``)."""
    if _MIN_PY_DAYS <= days <= _MAX_PY_DAYS:
        return _EPOCH_DATE + timedelta(days=days)
    return FarDate(days)


def timestamp_value(micros: int, *, zoned: bool) -> datetime | FarTimestamp:
    """The model value of a timestamp given as µs since the epoch (FarTimestamp beyond
    ``datetime``); ``zoned``: aware, in UTC."""
    if _MIN_PY_DAYS * _MICROS_PER_DAY <= micros < (_MAX_PY_DAYS + 1) * _MICROS_PER_DAY:
        moment = _EPOCH_DATETIME + timedelta(microseconds=micros)
        return moment.replace(tzinfo=UTC) if zoned else moment
    return FarTimestamp(micros, zoned)


def time_value(micros: int) -> time | _EndOfDay:
    """The model value of a time of day given as µs past midnight (24:00:00 = END_OF_DAY)."""
    if micros == _MICROS_PER_DAY:
        return END_OF_DAY
    seconds, us = divmod(micros, 1_000_000)
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60, us)


def temporal_number(value: Any) -> Any:
    """A date, timestamp or time as the number Arrow stores (days, µs since the epoch, µs past
    midnight) when it is one of the model's far values; any other value as it is."""
    cls = value.__class__
    if cls is FarDate:
        return value.days
    if cls is FarTimestamp:
        return value.micros
    if cls is _EndOfDay:
        return _MICROS_PER_DAY
    return value


@dataclass(frozen=True, slots=True)
class Interval:
    """A PostgreSQL interval, kept as its three independent parts (no 30-day months)."""

    months: int
    days: int
    microseconds: int


class Op(enum.StrEnum):
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # snapshot read
    TRUNCATE = "t"


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a change came from in the source's log.

    ``lsn`` orders changes of one row (row locks serialise writers). ``commit_lsn`` is the
    first element of Debezium's ``source.sequence`` (the last commit LSN seen before this
    change), which with ``lsn`` orders changes across transactions in commit order.
    """

    lsn: int
    tx_id: int | None
    commit_ts_us: int
    snapshot: bool
    commit_lsn: int | None = None


def newer(
    commit_lsn: int | None, lsn: int, than_commit_lsn: int | None, than_lsn: int | None
) -> bool:
    """The position guard: is ``(commit_lsn, lsn)`` newer than the stored ``(than_commit_lsn,
    than_lsn)`` (``than_lsn`` None: nothing stored)?

    When both commit parts are known, positions compare in commit order, then change order:
    ``source.sequence[0]`` (the last commit before the change's transaction) strictly grows
    from one transaction to the next in stream order, while change LSNs of a transaction that
    stayed open can be lower than those of transactions that committed before it. For the
    changes of one row the two orders agree (row locks serialise its writers); they differ for
    an incremental snapshot read, positioned at its window-close signal, against a transaction
    that wrote the row before the close and committed after it. When a commit part is unknown
    (bulk snapshot and repair rows, the first transaction after a connector start, rows
    stored before the commit part was kept) the change LSNs compare alone, as they always did.
    :func:`warehouse.sql.clauses.newer` is the same rule in SQL.
    """
    if than_lsn is None:
        return True
    if commit_lsn is not None and than_commit_lsn is not None and commit_lsn != than_commit_lsn:
        return commit_lsn > than_commit_lsn
    return lsn > than_lsn


@dataclass(frozen=True, slots=True)
class KafkaOrigin:
    topic: str
    partition: int
    offset: int


class _UnchangedToast:
    """Sentinel type: the source did not send this value because it is TOASTed and unchanged."""

    _instance: _UnchangedToast | None = None

    def __new__(cls) -> _UnchangedToast:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"

    def __reduce__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Final = _UnchangedToast()


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One decoded Debezium change of one row.

    ``key`` holds the key columns' values (from the Kafka message key). ``before``/``after``
    are full rows keyed by column name (``before`` may hold only the key under the default
    REPLICA IDENTITY). Values follow the table in the module docstring; any value may be
    :data:`UNCHANGED_TOAST` in ``after``.
    """

    op: Op
    schema: TableSchema
    key: dict[str, Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    position: SourcePosition
    origin: KafkaOrigin
    raw_value: bytes | None = field(default=None, repr=False, compare=False)
    raw_key: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def table(self) -> TableId:
        return self.schema.table

    @property
    def is_delete(self) -> bool:
        return self.op is Op.DELETE
