"""The dead-letter topic: messages we could not decode or apply, with the reason in headers.

Each dead letter keeps the original key and value bytes untouched, plus headers naming the error
class, its message, and the original topic/partition/offset. ``cdc dlq list`` reads them back,
``cdc dlq replay`` re-publishes them to their original topic once the cause is fixed; there the
normal apply path, with its position guard, decides whether they are still newest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from cdc.consumer.batching import Polled
from cdc.consumer.partitions import read_to_end, watermarks

H_ERROR_CLASS = "cdc.error.class"
H_ERROR_MESSAGE = "cdc.error.message"
H_TOPIC = "cdc.original.topic"
H_PARTITION = "cdc.original.partition"
H_OFFSET = "cdc.original.offset"
H_FAILED_AT = "cdc.failed.at"
H_CHECKS = "cdc.failed.checks"  # data contract violations: the failed checks, a JSON list


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _headers(msg: Message) -> dict[str, str]:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    out = {}
    for k, v in pairs:
        out[k] = v.decode(errors="replace") if isinstance(v, bytes) else (v or "")
    return out


def dlq_topic(topic: str, suffix: str) -> str:
    return f"{topic}{suffix}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str  # the dead-letter topic
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def original_topic(self) -> str:
        return self.headers.get(H_TOPIC, "")

    @property
    def error(self) -> str:
        return f"{self.headers.get(H_ERROR_CLASS, '?')}: {self.headers.get(H_ERROR_MESSAGE, '')}"


class DeadLetterWriter:
    """Sends dead letters and waits for the broker's acknowledgement before returning."""

    def __init__(self, producer_conf: dict[str, Any], suffix: str) -> None:
        self._producer = Producer({**producer_conf, "enable.idempotence": True})
        self._suffix = suffix
        self.count = 0

    def send(self, message: Polled, error: BaseException) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            (H_ERROR_CLASS, type(error).__name__.encode()),
            (H_ERROR_MESSAGE, str(error)[:4000].encode()),
            (H_TOPIC, message.origin.topic.encode()),
            (H_PARTITION, str(message.origin.partition).encode()),
            (H_OFFSET, str(message.origin.offset).encode()),
            (H_FAILED_AT, str(int(time.time() * 1000)).encode()),
        ]
        checks = getattr(error, "checks", None)
        if checks:
            headers.append((H_CHECKS, json.dumps(list(checks)).encode()))
        self._producer.produce(
            dlq_topic(message.origin.topic, self._suffix),
            key=message.key,
            value=message.value,
            headers=headers,
        )
        self.count += 1

    def flush(self, timeout: float = 30) -> None:
        remaining = self._producer.flush(timeout)
        if remaining:
            raise KafkaException(f"{remaining} dead letters not acknowledged within {timeout} s")

    def close(self) -> None:
        """Flush, then release the producer (its connections close with it)."""
        self.flush()
        del self._producer


def read_dead_letters(
    client: Mapping[str, Any], topics: list[str], *, timeout: float = 10
) -> Iterator[DeadLetter]:
    """Every message currently in the dead-letter ``topics`` (from the start to the end).

    ``client``: librdkafka settings, ``bootstrap.servers`` and any security settings.
    """
    consumer = Consumer(
        {
            **client,
            "group.id": "cdc-dlq-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        assignments = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for (topic, p), (low, high) in watermarks(consumer, topics, timeout).items()
            if high > low
        ]
        if not assignments:
            return
        for msg in read_to_end(consumer, assignments, timeout, idle=True):
            yield DeadLetter(
                topic=msg.topic() or "",
                partition=msg.partition() or 0,
                offset=msg.offset() or 0,
                key=_as_bytes(msg.key()),
                value=_as_bytes(msg.value()),
                headers=_headers(msg),
            )
    finally:
        consumer.close()


def replay_dead_letters(
    client: Mapping[str, Any], topics: list[str], *, group_id: str, timeout: float = 10
) -> int:
    """Re-publish dead letters not replayed before to their original topics.

    Progress is kept in the consumer group ``group_id`` on the dead-letter topics, so a second
    replay only sends letters that arrived since.
    """
    producer = Producer({**client, "enable.idempotence": True})
    consumer = Consumer(
        {
            **client,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    sent = consumed = 0
    try:
        metadata = consumer.list_topics(timeout=timeout)
        wanted = [t for t in topics if t in metadata.topics]
        partitions = [TopicPartition(t, p) for t in wanted for p in metadata.topics[t].partitions]
        if not partitions:
            return 0
        committed = consumer.committed(partitions, timeout=timeout)
        for tp in committed:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
        for msg in read_to_end(consumer, committed, timeout):
            consumed += 1
            headers = _headers(msg)
            original = headers.get(H_TOPIC)
            if not original:
                continue
            producer.produce(original, key=msg.key(), value=msg.value())
            sent += 1
        if producer.flush(30):
            raise KafkaException("replayed messages were not acknowledged; nothing committed")
        if consumed:  # nothing new: no stored offset to commit (librdkafka: _NO_OFFSET)
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return sent
