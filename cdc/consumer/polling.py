"""Batch assembly: up to ``batch_size`` messages per poll, waiting at most ``linger_ms``
after the first, never ending a batch between the two halves of a primary-key change, and
leaving out messages of partitions revoked meanwhile."""

from __future__ import annotations

import time

import structlog
from confluent_kafka import Consumer, KafkaError, Message

from cdc.consumer.batching import Polled, next_offsets
from cdc.consumer.settings import ReplicatorSettings
from cdc.model import KafkaOrigin

log = structlog.get_logger("cdc.consumer")


def _may_be_half_a_key_change(m: Polled) -> bool:
    """A tombstone or a delete envelope (Debezium's compact JSON): maybe a key change's first
    half. Cheap bytes test, no decoding; a false positive only waits 50 ms."""
    return m.value is None or b'"op":"d"' in m.value


class PollingMixin:
    """The :class:`cdc.consumer.loop.Replicator`'s polling: what one batch is made of."""

    consumer: Consumer
    settings: ReplicatorSettings
    _stop: bool
    _revoked: set[tuple[str, int]]
    _received_to: dict[tuple[str, int], int]

    def _poll_batch(self) -> list[Polled]:
        """Up to batch_size messages, waiting at most linger_ms after the first one.

        The first message is awaited with ``poll`` (returns as soon as one arrives); the rest
        with ``consume``, which returns when the batch is full or the linger time is over.
        """
        out: list[Polled] = []
        first = self.consumer.poll(0.5)
        if first is None:
            return out
        self._keep(first, out)
        deadline = time.monotonic() + self.settings.linger_ms / 1000
        while len(out) < self.settings.batch_size and not self._stop:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            msgs: list[Message] = self.consumer.consume(
                num_messages=min(self.settings.batch_size - len(out), 10000), timeout=timeout
            )
            for m in msgs:
                self._keep(m, out)
        self._complete_key_changes(out)
        if self._revoked:
            out = [m for m in out if (m.origin.topic, m.origin.partition) not in self._revoked]
        for tp_key, nxt in next_offsets(out).items():
            self._received_to[tp_key] = max(nxt, self._received_to.get(tp_key, nxt))
        return out

    def _complete_key_changes(self, out: list[Polled]) -> None:
        """Don't end a batch between the two halves of a primary-key change.

        Debezium sends a key change as a delete of the old key (then its tombstone) and a create
        of the new key, one after the other on a single-partition topic. The create may lack an
        unchanged TOASTed value that only the old key's row holds, and a hard-deleted mirror row
        is gone after its batch commits: while a partition's batch ends with a delete or a
        tombstone, take the messages that follow it (a short wait, a few rounds at most)."""
        for _ in range(4):
            last: dict[tuple[str, int], Polled] = {}
            for p in out:
                last[(p.origin.topic, p.origin.partition)] = p
            if not any(_may_be_half_a_key_change(p) for p in last.values()) or self._stop:
                return
            more: list[Message] = self.consumer.consume(num_messages=100, timeout=0.05)
            if not more:
                return
            for m in more:
                self._keep(m, out)

    @staticmethod
    def _keep(m: Message, out: list[Polled]) -> None:
        err = m.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka error", error=str(err))
            return
        out.append(
            Polled(
                KafkaOrigin(m.topic() or "", m.partition() or 0, m.offset() or 0),
                m.key(),
                m.value(),
            )
        )
