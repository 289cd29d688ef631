"""Pure tiering decisions: cutoffs, which month files are due, file names. No I/O."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cdc.names import path_segment
from warehouse.tier_files import MoveKind, Tier, TierFile

__all__ = [
    "Cutoffs",
    "MoveKind",
    "Tier",
    "TierFile",
    "cutoffs",
    "due_months",
    "file_path",
    "month_end",
    "month_of",
    "month_start",
    "move_id",
]


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows that closed before ``hot`` leave the warehouse; warm months that ended before
    ``warm`` go cold; cold months that ended before ``retention`` are deleted."""

    hot: dt.datetime
    warm: dt.datetime
    retention: dt.datetime


def cutoffs(
    now: dt.datetime, hot: dt.timedelta, warm: dt.timedelta, retention: dt.timedelta
) -> Cutoffs:
    return Cutoffs(hot=now - hot, warm=now - warm, retention=now - retention)


def month_of(ts: dt.datetime) -> str:
    return f"{ts.year:04d}-{ts.month:02d}"


def month_start(month: str) -> dt.datetime:
    year, mon = (int(p) for p in month.split("-"))
    return dt.datetime(year, mon, 1, tzinfo=dt.UTC)


def month_end(month: str) -> dt.datetime:
    """The first instant after the month (UTC)."""
    year, mon = (int(p) for p in month.split("-"))
    year, mon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    return dt.datetime(year, mon, 1, tzinfo=dt.UTC)


def due_months(files: Iterable[TierFile], tier: Tier, before: dt.datetime) -> list[str]:
    """Months of ``tier`` whose every row closed before ``before`` (the month ended by then)."""
    return sorted({f.month for f in files if f.tier == tier and month_end(f.month) <= before})


def move_id(kind: MoveKind, table: str, *parts: object) -> str:
    """A short id naming one move's files (stable for the same inputs)."""
    digest = hashlib.sha256("|".join([kind, table, *map(str, parts)]).encode()).hexdigest()
    return f"{kind}-{digest[:16]}"


def file_path(root: str, tier: Tier, table: str, month: str, move: str) -> str:
    folder = path_segment(table)  # any table name is one folder
    return f"{root.rstrip('/')}/{tier}/{folder}/month={month}/{move}.parquet"
