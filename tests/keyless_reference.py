"""A keyless source table's histories for the property tests (importable as
``keyless_reference``: pytest puts ``tests/`` on the path): Debezium's topic of a table without
a primary key (REPLICA IDENTITY FULL) and the source's final multiset, as a Counter.

A history: an initial snapshot (maybe interrupted and taken again at a higher LSN), then
transactions whose change LSNs interleave (a transaction may begin before the last commit) while
``source.sequence[0]`` follows the commit order, inserts of equal rows, deletes and updates of
one of several equal rows; now and then Debezium re-sends a stretch of the stream (a restart).
Values include NULLs and NaN.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Hashable
from dataclasses import replace
from typing import Any

from hypothesis import strategies as st

from cdc.model import (
    ChangeEvent,
    Column,
    ColumnType,
    KafkaOrigin,
    Kind,
    Op,
    SourcePosition,
    TableId,
    TableSchema,
)
from warehouse.base import TableTarget
from warehouse.keyless import row_identity

SCHEMA = TableSchema(
    TableId("public", "logs"),
    (Column("msg", ColumnType(Kind.TEXT)), Column("f", ColumnType(Kind.FLOAT64))),
    (),
)
TARGET = TableTarget("logs")
Row = tuple[Any, ...]


def change(op: Op, before: Row | None, after: Row | None, lsn: int, commit: int | None,
           offset: int = 0, partition: int = 0) -> ChangeEvent:  # fmt: skip
    def image(row: Row | None) -> dict[str, Any] | None:
        return None if row is None else dict(zip(SCHEMA.names, row, strict=True))

    pos = SourcePosition(lsn, lsn, 1_000 + lsn, op is Op.READ, commit)
    return ChangeEvent(op, SCHEMA, {}, image(before), image(after), pos,
                       KafkaOrigin("pg.public.logs", partition, offset))  # fmt: skip


def bag(*rows: Row) -> Counter[Hashable]:
    return Counter(row_identity(r) for r in rows)


VALUES = st.tuples(
    st.sampled_from(["a", "b", None]), st.sampled_from([0.0, -0.0, 1.5, float("nan"), None])
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[ChangeEvent], Counter[Hashable]]:
    """The topic of a keyless table (Kafka order) and the source's final multiset."""
    source: list[Row] = []
    topic: list[ChangeEvent] = []
    initial = draw(st.lists(VALUES, max_size=5))
    if initial and draw(st.booleans()):  # a snapshot interrupted, then taken again
        topic += [
            change(Op.READ, None, r, 5, None) for r in initial[: draw(st.integers(0, len(initial)))]
        ]
    topic += [change(Op.READ, None, r, 7, None) for r in initial]
    source += initial
    streamed = len(topic)  # the first streamed change's place
    last_commit = 10
    for _ in range(draw(st.integers(0, 12))):
        start = last_commit - draw(st.integers(0, 8))  # began before the last commit
        lsn, sequence0 = start, last_commit
        for _ in range(draw(st.integers(1, 3))):
            lsn += draw(st.integers(1, 3))
            choice = draw(st.integers(0, 2)) if source else 0
            if choice == 0:
                row = draw(VALUES)
                source.append(row)
                topic.append(change(Op.CREATE, None, row, lsn, sequence0))
                continue
            i = draw(st.integers(0, len(source) - 1))
            old = source.pop(i)
            if choice == 1:
                topic.append(change(Op.DELETE, old, None, lsn, sequence0))
            else:
                new = draw(VALUES)
                source.append(new)
                topic.append(change(Op.UPDATE, old, new, lsn, sequence0))
        last_commit = max(last_commit, lsn) + 1
        if draw(st.integers(0, 4)) == 0:  # Debezium restarts: a stretch streamed again
            topic += topic[draw(st.integers(streamed, len(topic) - 1)) :]
    topic = [replace(e, origin=replace(e.origin, offset=i)) for i, e in enumerate(topic)]
    return topic, bag(*source)


def split(draw: st.DrawFn, events: list[ChangeEvent]) -> list[list[ChangeEvent]]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=5)))
    bounds = [0, *(c for c in cuts if c < len(events)), len(events)]
    return [events[a:b] for a, b in itertools.pairwise(bounds) if b > a]
