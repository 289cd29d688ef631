"""Reading topics to their end: watermarks of the partitions that exist, and every message of
assigned partitions until each reports end-of-partition (``enable.partition.eof``). Used by
the dead-letter reader and replay, by ``cdc status`` and by reconciliation (:func:`log_ends`)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from cdc.config import Config
from cdc.consumer.broker_watch import quiet_client


def watermarks(
    consumer: Consumer, topics: Iterable[str], timeout: float
) -> dict[tuple[str, int], tuple[int, int]]:
    """``(low, high)`` per ``(topic, partition)`` of the ``topics`` that exist."""
    metadata = consumer.list_topics(timeout=timeout)
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for topic in topics:
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None:
            continue
        for p in meta.partitions:
            out[(topic, p)] = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=timeout
            )
    return out


def read_to_end(
    consumer: Consumer, assignments: list[TopicPartition], timeout: float, *, idle: bool = False
) -> Iterator[Message]:
    """Assign ``assignments`` and yield their messages until every partition reported its end,
    or ``timeout`` passed (since the start; with ``idle``, since the last message). Other
    errors raise :class:`KafkaException`. The consumer needs ``enable.partition.eof``."""
    consumer.assign(assignments)
    open_partitions = {(tp.topic, tp.partition) for tp in assignments}
    deadline = time.monotonic() + timeout
    while open_partitions and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                open_partitions.discard((msg.topic(), msg.partition()))
                continue
            raise KafkaException(err)
        if idle:
            deadline = time.monotonic() + timeout
        yield msg


def log_ends(config: Config, topics: list[str]) -> dict[str, dict[int, tuple[int, int]]]:
    """``(low, end)`` per partition of each topic that exists. The end is the offset after the
    last message, read from the log: the broker's high watermark alone is not enough, as the
    local stack's broker (Tansu) reports the last record batch's base offset + 1 there.
    ``cdc status`` counts pending events with it; reconciliation waits for the stored offsets
    to reach it."""
    consumer = Consumer(
        {
            # no raw librdkafka lines: an unreachable broker raises KafkaException below
            **quiet_client(config.kafka.bootstrap_servers, config.kafka.client_config()),
            "group.id": f"{config.kafka.group_id}-status",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        found = watermarks(consumer, topics, timeout=10)
        tail = [TopicPartition(t, p, max(low, high - 1))
                for (t, p), (low, high) in found.items() if high > low]  # fmt: skip
        if tail:
            for msg in read_to_end(consumer, tail, timeout=10):
                key = (msg.topic() or "", msg.partition() or 0)
                low, high = found[key]
                found[key] = (low, max(high, (msg.offset() or 0) + 1))
        marks: dict[str, dict[int, tuple[int, int]]] = {}
        for (topic, p), mark in found.items():
            marks.setdefault(topic, {})[p] = mark
        return marks
    finally:
        consumer.close()
