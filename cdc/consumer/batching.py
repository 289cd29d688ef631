"""Pure batch bookkeeping: which events go to which table, and which offsets a batch covers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cdc.model import ChangeEvent, KafkaOrigin
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
    events: Sequence[ChangeEvent], targets: Mapping[str, TableTarget]
) -> list[TableBatch]:
    """One TableBatch per topic, events in (partition, offset) order, newest schema last seen.

    A table's topic may have several partitions; a key always maps to one partition, so
    ordering by (partition, offset) keeps every key's changes in log order.
    """
    by_topic: dict[str, list[ChangeEvent]] = {}
    for event in events:
        by_topic.setdefault(event.origin.topic, []).append(event)
    batches = []
    for topic, evs in by_topic.items():
        evs.sort(key=lambda e: (e.origin.partition, e.origin.offset))
        # a stray keyless message must not decide a keyed table's schema
        keyed = [e for e in evs if e.schema.key] or evs
        newest = max(keyed, key=lambda e: e.position.lsn)
        batches.append(TableBatch(target=targets[topic], schema=newest.schema, events=evs))
    return batches


def split_events(batch: TableBatch) -> tuple[TableBatch, TableBatch]:
    """Halve a table batch in log order (for isolating an event the warehouse rejects)."""
    mid = len(batch.events) // 2
    first = TableBatch(batch.target, batch.schema, batch.events[:mid])
    second = TableBatch(batch.target, batch.schema, batch.events[mid:])
    return first, second
