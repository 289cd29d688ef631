"""Where the loop stands in its partitions: whether the warehouse holds every message of
every assigned partition (:meth:`ProgressMixin.caught_up`, with one side read of the logs'
real ends when the broker's watermark can't tell), and what is left per table for the
metrics after each batch."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from cdc.consumer.observer import LoopMetrics
from cdc.consumer.partitions import read_to_end
from cdc.consumer.settings import GROUP_TIMEOUTS, ReplicatorSettings, RunStats
from warehouse.base import ApplyResult, TableBatch

log = structlog.get_logger("cdc.consumer")


class ProgressMixin:
    """The :class:`cdc.consumer.loop.Replicator`'s view of its partitions' progress.

    Per assigned partition: ``_applied_to``, the offset the warehouse holds everything before
    (set on assignment, moved by every committed batch); ``_received_to``, the end of what was
    received since the assignment; ``_ends``, (high watermark, real end) read by the side
    consumer ``_side``."""

    consumer: Consumer
    settings: ReplicatorSettings
    stats: RunStats
    metrics: LoopMetrics | None
    caught_up_event: threading.Event
    _applied_to: dict[tuple[str, int], int]
    _received_to: dict[tuple[str, int], int]
    _revoked: set[tuple[str, int]]
    _base: dict[str, Any]
    _side: Consumer | None
    _ends: dict[tuple[str, int], tuple[int, int]]

    def caught_up(self) -> bool:
        """True when the warehouse holds every message of every assigned partition.

        Per partition: everything received since the assignment is applied, and the position
        reached the high watermark. The position is the client's once this assignment
        delivered a message (it steps over offset gaps in the log), else the offset applied up
        to (the stored offset at assignment; no stored offset: the log's start). A watermark
        the broker can't tell (negative) is not caught up."""
        assignment = self.consumer.assignment()
        if not assignment:
            return False
        ends: dict[str, tuple[int, int]] = {}
        tails: list[tuple[tuple[str, int], int, int]] = []  # at the watermark: log end unknown
        for tp in self.consumer.position(assignment):
            tp_key = (tp.topic, tp.partition)
            if tp_key in self._revoked or tp.topic in self.stats.parked:
                continue
            try:
                state = self._partition_caught_up(tp, ends)
            except KafkaException as exc:  # the broker out of reach: not caught up, poll on
                log.warning("the broker did not answer; polling on", partition=tp_key,
                            error=str(exc))  # fmt: skip
                return False
            if state is False:
                return False
            if state is not True:
                tails.append(state)
        if tails:
            try:
                self._read_log_ends([(k, high) for k, high, _ in tails])
            except KafkaException as exc:
                log.warning("the broker did not answer; polling on", error=str(exc))
                return False
            if any(position < self._ends[k][1] for k, _, position in tails):
                return False
        if not self.caught_up_event.is_set():  # once per idle spell, not every poll
            log.info("caught up", partitions={k: f"{a}/{h}" for k, (a, h) in ends.items()})
        return True

    def _partition_caught_up(
        self, tp: TopicPartition, ends: dict[str, tuple[int, int]]
    ) -> bool | tuple[tuple[str, int], int, int]:
        """One partition of :meth:`caught_up` (its broker reads may raise KafkaException);
        records its (position, high watermark) in ``ends``. At the watermark of a log whose end
        is not known yet: (partition, watermark, position), for one read of every such log's
        end (:meth:`_read_log_ends`)."""
        tp_key = (tp.topic, tp.partition)
        low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        applied = self._applied_to.get(tp_key, low)
        if applied < 0:  # OFFSET_BEGINNING: nothing stored, nothing applied yet
            applied = low
        received = self._received_to.get(tp_key)
        if received is None:
            position = applied
        else:
            if applied < received:
                return False
            position = tp.offset if tp.offset >= 0 else received
        ends[f"{tp.topic}[{tp.partition}]"] = (position, high)
        if high < 0 or position < high:
            return False
        if high <= low:
            return True
        cached = self._ends.get(tp_key)
        if cached is not None and cached[0] == high:
            return position >= cached[1]
        return (tp_key, high, position)

    def _read_log_ends(self, partitions: Sequence[tuple[tuple[str, int], int]]) -> None:
        """The offset after each partition's last message, read from the logs' last batches in
        one pass (cached per watermark in ``_ends``).

        A broker's high watermark should be that, but the local stack's (Tansu) reports the
        last record batch's base offset + 1: a position at that watermark can still have
        messages after it. Read only when the loop is idle at the watermarks."""
        if self._side is None:
            self._side = Consumer(
                {
                    # before the user's settings: a max.poll.interval.ms of theirs below
                    # librdkafka's default session.timeout.ms (45 s) must be valid here too
                    **GROUP_TIMEOUTS,
                    **self._base,
                    "group.id": f"{self.settings.group_id}-log-end",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                }
            )
        found = {key: high for key, high in partitions}
        tails = [TopicPartition(t, p, max(0, high - 1)) for (t, p), high in partitions]
        for msg in read_to_end(self._side, tails, timeout=10):
            key = (msg.topic() or "", msg.partition() or 0)
            if key in found:
                found[key] = max(found[key], (msg.offset() or 0) + 1)
        for key, high in partitions:
            self._ends[key] = (high, found[key])

    def _report(self, result: ApplyResult, batches: Sequence[TableBatch], seconds: float) -> None:
        """Update the metrics after a committed batch: events per table, apply time, the
        newest applied source commit per table, and what is left per table: the log's end as
        the client knows it (its cached high watermark, or what it received if further) minus
        the applied offset, with no broker round trip. The local broker (Tansu) reports the
        last record batch's base offset + 1 as the watermark, so there it can count up to one
        record batch too few; the caught-up check sets 0 once the real end is reached."""
        assert self.metrics is not None
        newest: dict[str, float] = {}
        for b in batches:
            if b.events:
                ts = max(e.position.commit_ts_us for e in b.events) / 1e6
                newest[b.target.name] = max(ts, newest.get(b.target.name, ts))
        self.metrics.batch_applied(seconds, {s.table: s.events for s in result.tables}, newest)
        pending: dict[str, int] = {}
        for tp in self.consumer.assignment():
            names = self.settings.topics.get(tp.topic, ())
            applied = self._applied_to.get((tp.topic, tp.partition), -1)
            if not names or tp.topic in self.stats.parked or applied < 0:
                continue
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
            except KafkaException:  # not known to the client yet
                continue
            end = max(high, self._received_to.get((tp.topic, tp.partition), high))
            for name in names if end >= 0 else ():  # a shared topic's lag counts for each
                pending[name] = pending.get(name, 0) + max(0, end - applied)
        self.metrics.pending(pending)
