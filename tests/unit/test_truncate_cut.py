"""A polled batch is cut so that every TRUNCATE is applied alone
(:func:`cdc.consumer.batching.cut_at_truncates`): the messages before it, the truncate, the
messages after it, each segment with exactly its own messages (so its own offsets), in polled
order, messages that decoded to nothing (dead letters, skips) staying in their place.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from sample_data import ITEMS_SCHEMA, ev

from cdc.consumer.batching import Polled, Segment, cut_at_truncates, next_offsets
from cdc.model import ChangeEvent, KafkaOrigin, Op

TOPIC = "pg.public.items"
KEYLESS = dataclasses.replace(ITEMS_SCHEMA, key=())  # Debezium: a truncate has a null key


def msg(offset: int, partition: int = 0, topic: str = TOPIC) -> Polled:
    return Polled(KafkaOrigin(topic, partition, offset), b"k", b"v")


def change(m: Polled) -> ChangeEvent:
    o = m.origin
    lsn = 1000 + 10 * o.offset + o.partition
    return ev(Op.CREATE, o.offset, lsn, topic=o.topic, partition=o.partition, offset=o.offset)


def truncate(m: Polled) -> ChangeEvent:
    o = m.origin
    lsn = 1000 + 10 * o.offset + o.partition
    e = ev(Op.TRUNCATE, {}, lsn, KEYLESS, topic=o.topic, partition=o.partition, offset=o.offset)
    return dataclasses.replace(e, after=None)


def shape(segments: Sequence[Segment]) -> list[tuple[list[int], list[int]]]:
    """Each segment as (message offsets, event offsets)."""
    return [
        ([m.origin.offset for m in s.messages], [e.origin.offset for e in s.events])
        for s in segments
    ]


def test_a_batch_without_a_truncate_is_one_segment() -> None:
    messages = [msg(i) for i in range(4)]
    events = [change(m) for m in messages[:3]]  # the last message decoded to nothing
    [segment] = cut_at_truncates(messages, events)
    assert segment.messages == messages and segment.events == events


def test_a_truncate_is_applied_alone_between_what_came_before_and_after() -> None:
    messages = [msg(i) for i in range(5)]
    events = [change(messages[0]), change(messages[1]), truncate(messages[2]),
              change(messages[3]), change(messages[4])]  # fmt: skip
    segments = cut_at_truncates(messages, events)
    assert shape(segments) == [([0, 1], [0, 1]), ([2], [2]), ([3, 4], [3, 4])]
    assert segments[1].events == [events[2]] and segments[1].messages == [messages[2]]


def test_a_leading_trailing_or_repeated_truncate_leaves_no_empty_segment() -> None:
    messages = [msg(i) for i in range(5)]
    events = [truncate(messages[0]), truncate(messages[1]), change(messages[2]),
              truncate(messages[3]), truncate(messages[4])]  # fmt: skip
    segments = cut_at_truncates(messages, events)
    assert shape(segments) == [([0], [0]), ([1], [1]), ([2], [2]), ([3], [3]), ([4], [4])]
    only = cut_at_truncates([messages[0]], [events[0]])
    assert shape(only) == [([0], [0])]


def test_messages_that_decoded_to_nothing_keep_their_place_and_their_offsets() -> None:
    messages = [msg(i) for i in range(6)]
    # 1, 3 and 5 decoded to nothing; 3 and 5 make segments of their own with no event, so
    # their offsets are committed after the truncate's, never with it or before it
    events = [change(messages[0]), truncate(messages[2]), truncate(messages[4])]
    segments = cut_at_truncates(messages, events)
    assert shape(segments) == [([0, 1], [0]), ([2], [2]), ([3], []), ([4], [4]), ([5], [])]


def test_each_segment_carries_the_offsets_of_its_own_messages_across_partitions() -> None:
    # polled order interleaves two partitions; the truncate (partition 0) cuts both
    messages = [msg(0, 0), msg(0, 1), msg(1, 0), msg(1, 1), msg(2, 0)]
    events = [change(messages[0]), change(messages[1]), truncate(messages[2]),
              change(messages[3]), change(messages[4])]  # fmt: skip
    segments = cut_at_truncates(messages, events)
    assert [next_offsets(s.messages) for s in segments] == [
        {(TOPIC, 0): 1, (TOPIC, 1): 1},
        {(TOPIC, 0): 2},
        {(TOPIC, 1): 2, (TOPIC, 0): 3},
    ]
    assert [s.events for s in segments] == [events[:2], [events[2]], events[3:]]


def test_truncates_of_two_tables_in_one_poll_are_each_alone() -> None:
    other = "pg.public.other"
    messages = [msg(0), msg(0, topic=other), msg(1), msg(1, topic=other), msg(2)]
    events = [change(messages[0]), truncate(messages[1]), change(messages[2]),
              truncate(messages[3]), change(messages[4])]  # fmt: skip
    segments = cut_at_truncates(messages, events)
    assert [s.events for s in segments] == [[e] for e in events]
    assert [s.messages for s in segments] == [[m] for m in messages]


KINDS = st.sampled_from(["change", "change", "truncate", "nothing"])


@settings(max_examples=300, deadline=None)
@given(
    polled=st.lists(st.tuples(KINDS, st.integers(0, 2)), min_size=1, max_size=20),
)
def test_any_poll_is_cut_into_maximal_runs_around_lone_truncates(
    polled: list[tuple[str, int]],
) -> None:
    counters = [itertools.count() for _ in range(3)]
    messages = [msg(next(counters[p]), p) for _, p in polled]
    events: list[ChangeEvent] = []
    for (kind, _), m in zip(polled, messages, strict=True):
        if kind != "nothing":
            events.append(truncate(m) if kind == "truncate" else change(m))
    segments = cut_at_truncates(messages, events)

    # nothing lost, nothing duplicated, nothing reordered
    assert [m for s in segments for m in s.messages] == messages
    assert [e for s in segments for e in s.events] == events
    for s in segments:
        assert s.messages, "an empty segment"
        # a segment's events are exactly those of its messages, in their order
        origins = [m.origin for m in s.messages]
        assert [e.origin for e in s.events] == [e.origin for e in events if e.origin in origins]
        if any(e.op is Op.TRUNCATE for e in s.events):
            assert len(s.messages) == len(s.events) == 1, "a truncate not alone"
    # runs are maximal: two neighbouring segments without a truncate would be one
    plain = [not any(e.op is Op.TRUNCATE for e in s.events) for s in segments]
    assert not any(a and b for a, b in itertools.pairwise(plain))
