"""Pure batch bookkeeping: which events go to which table, and which offsets a batch covers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cdc.model import ChangeEvent, KafkaOrigin, Op, TableId
from warehouse.base import OffsetRow, TableBatch, TableTarget


@dataclass(frozen=True, slots=True)
class Polled:
    """One Kafka message as the loop keeps it: where it came from and its bytes."""

    origin: KafkaOrigin
    key: bytes | None
    value: bytes | None


def next_offsets(messages: Iterable[Polled]) -> dict[tuple[str, int], int]:
    """``{(topic, partition): last offset + 1}`` over the messages."""
    out: dict[tuple[str, int], int] = {}
    for m in messages:
        tp = (m.origin.topic, m.origin.partition)
        nxt = m.origin.offset + 1
        if out.get(tp, -1) < nxt:
            out[tp] = nxt
    return out


def offset_rows(group: str, offsets: Mapping[tuple[str, int], int]) -> list[OffsetRow]:
    return [
        OffsetRow(consumer_group=group, topic=t, partition=p, next_offset=o)
        for (t, p), o in sorted(offsets.items())
    ]


def group_by_table(
    events: Sequence[ChangeEvent], targets: Mapping[TableId, TableTarget]
) -> list[TableBatch]:
    """One TableBatch per source table, events in (topic, partition, offset) order, newest
    schema last seen.

    The table is the envelope's (``source.schema``/``source.table``), never the topic's name:
    Debezium sanitises topic names, so two tables can share a topic. Every event's table must
    be in ``targets`` (the loop dead-letters the others first). A table's topic may have
    several partitions; a key always maps to one partition, so ordering by (partition,
    offset) keeps every key's changes in log order.
    """
    by_table: dict[TableId, list[ChangeEvent]] = {}
    for event in events:
        by_table.setdefault(event.schema.table, []).append(event)
    batches = []
    for table, evs in by_table.items():
        evs.sort(key=lambda e: (e.origin.topic, e.origin.partition, e.origin.offset))
        # a stray keyless message must not decide a keyed table's schema
        keyed = [e for e in evs if e.schema.key] or evs
        newest = max(keyed, key=lambda e: e.position.lsn)
        batches.append(TableBatch(target=targets[table], schema=newest.schema, events=evs))
    return batches


def split_events(batch: TableBatch) -> tuple[TableBatch, TableBatch]:
    """Halve a table batch in log order (for isolating an event the warehouse rejects)."""
    mid = len(batch.events) // 2
    first = TableBatch(batch.target, batch.schema, batch.events[:mid])
    second = TableBatch(batch.target, batch.schema, batch.events[mid:])
    return first, second


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of polled messages applied as one unit, with their decoded events."""

    messages: list[Polled]
    events: list[ChangeEvent]


def cut_at_truncates(messages: Sequence[Polled], events: Sequence[ChangeEvent]) -> list[Segment]:
    """Cut a polled batch so that every TRUNCATE is applied alone, in log order: the messages
    before it, then the truncate, then the messages after it (cut again at the next one).

    A truncate affects every stored row of its table at or below its position, so it can't be
    folded into a batch's per-key plan; the changes before it must be in the warehouse before
    it runs, and those after it run after it. Messages keep their polled order (each
    partition's in log order), so each segment's offsets cover exactly its messages. Events
    belong to the segment of their message; messages that decoded to nothing (dead letters,
    skips) stay in theirs, so their offsets move with it.
    """
    if not any(e.op is Op.TRUNCATE for e in events):
        return [Segment(list(messages), list(events))]
    by_origin = {e.origin: e for e in events}
    out: list[Segment] = []
    run: Segment = Segment([], [])
    for m in messages:
        event = by_origin.get(m.origin)
        if event is not None and event.op is Op.TRUNCATE:
            if run.messages:
                out.append(run)
            out.append(Segment([m], [event]))
            run = Segment([], [])
            continue
        run.messages.append(m)
        if event is not None:
            run.events.append(event)
    if run.messages:
        out.append(run)
    return out
