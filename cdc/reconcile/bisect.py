"""Narrowing differing key ranges down to small ones (pure; the sides do the I/O).

Both sides compute ``(rows, checksum)`` for a list of key ranges. Equal ranges are done. A
differing range small enough (``leaf_rows`` on both sides) is a *leaf*: its rows are fetched and
diffed. A bigger one is split into about ``fanout`` sub-ranges at keys of the side holding more
of its rows (every ``step``-th key in key order), and the sub-ranges are checked in the next
round, all in one statement per side. A table that agrees costs one statement per side; a few
differing keys in ``n`` rows cost about ``log_fanout(n / leaf_rows)`` rounds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from warehouse.base import KeyRange, RangeChecksum

Key = tuple[Any, ...]
T = TypeVar("T")
U = TypeVar("U")


class Side(Protocol):
    def checksums(self, ranges: Sequence[KeyRange]) -> list[RangeChecksum]: ...

    def split_keys(self, ranges: Sequence[tuple[KeyRange, int]]) -> list[list[Key]]: ...


def sequential(f: Callable[[], T], g: Callable[[], U]) -> tuple[T, U]:
    return f(), g()


Pair = Callable[[Callable[[], Any], Callable[[], Any]], tuple[Any, Any]]


def split_range(rng: KeyRange, points: Sequence[Key]) -> list[KeyRange]:
    """``rng`` cut at ``points`` (sorted keys; those outside the range or repeated are
    ignored): consecutive half-open ranges covering exactly ``rng``."""
    inside = [
        p for p in points if (rng.lo is None or p > rng.lo) and (rng.hi is None or p < rng.hi)
    ]
    cuts = sorted(set(inside))
    bounds: list[Key | None] = [rng.lo, *cuts, rng.hi]
    return [KeyRange(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


@dataclass
class Bisection:
    """What the narrowing found: the whole table's figures, the leaf ranges to diff, and how
    much work it took."""

    source: RangeChecksum
    warehouse: RangeChecksum
    leaves: list[KeyRange] = field(default_factory=list)
    rounds: int = 0
    ranges_checked: int = 0


def bisect(
    source: Side,
    warehouse: Side,
    *,
    leaf_rows: int = 1000,
    fanout: int = 16,
    pair: Pair = sequential,
    max_rounds: int = 64,
) -> Bisection:
    """The leaf ranges where the sides differ (see the module docstring)."""
    todo = [KeyRange()]
    result: Bisection | None = None
    for _ in range(max_rounds):
        if not todo:
            break
        ranges = todo
        s_sums, w_sums = pair(
            functools.partial(source.checksums, ranges),
            functools.partial(warehouse.checksums, ranges),
        )
        if result is None:
            result = Bisection(source=s_sums[0], warehouse=w_sums[0])
        result.rounds += 1
        result.ranges_checked += len(ranges)
        todo = []
        splits: dict[int, list[tuple[KeyRange, int]]] = {0: [], 1: []}  # 0: source side
        for rng, a, b in zip(ranges, s_sums, w_sums, strict=True):
            if a == b:
                continue
            rows = max(a.rows, b.rows)
            if rows <= leaf_rows:
                result.leaves.append(rng)
                continue
            splits[0 if a.rows >= b.rows else 1].append((rng, max(1, math.ceil(rows / fanout))))
        s_points, w_points = pair(
            functools.partial(source.split_keys, splits[0]),
            functools.partial(warehouse.split_keys, splits[1]),
        )
        pairs = [*zip(splits[0], s_points, strict=True), *zip(splits[1], w_points, strict=True)]
        for (rng, _), points in pairs:
            parts = split_range(rng, points)
            if len(parts) == 1:
                result.leaves.append(rng)
            else:
                todo += parts
    assert result is not None
    result.leaves += todo  # rounds exhausted: diff what is left row by row
    return result
