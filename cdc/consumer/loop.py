"""The replication loop: poll a batch, decode, apply it with its offsets in one warehouse
transaction, then commit to Kafka.

Order of effects per batch (the exactly-once argument, architecture.md §4.1):

1. dead letters for undecodable messages are produced and acknowledged;
2. the warehouse commits the batch's rows AND the offsets it covers in one transaction;
3. the offsets are committed to Kafka (advisory only: on assignment we seek to the offsets
   stored in the warehouse, never to Kafka's).

A crash between any two steps re-delivers the batch; the warehouse's position guard makes the
re-delivery a no-op. Transient warehouse errors are retried with backoff while every partition
is paused (offsets never move past unapplied data); terminal errors stop the loop with a message.

The :class:`Replicator`'s parts: batch assembly (:mod:`cdc.consumer.polling`), decoding and
screening (:mod:`cdc.consumer.intake`), the partitions' progress and the side reads of the logs'
ends (:mod:`cdc.consumer.progress`), the retry policy (:mod:`cdc.consumer.retry`), its settings
and counters (:mod:`cdc.consumer.settings`) and the metrics hooks it calls
(:class:`cdc.consumer.observer.LoopMetrics`).
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, cast

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cdc import failpoints
from cdc.consumer.batching import (
    Polled,
    cut_at_truncates,
    group_by_table,
    next_offsets,
    offset_rows,
    split_events,
)
from cdc.consumer.broker_watch import BrokerUnreachableError, BrokerWatch
from cdc.consumer.dlq import DeadLetterWriter
from cdc.consumer.intake import IntakeMixin
from cdc.consumer.observer import LoopMetrics
from cdc.consumer.polling import PollingMixin
from cdc.consumer.progress import ProgressMixin
from cdc.consumer.retry import StopDuringRetryError, with_retry
from cdc.consumer.settings import (
    GROUP_TIMEOUTS,
    ReplicationStoppedError,
    ReplicatorSettings,
    RunStats,
)
from cdc.contracts import Validator
from cdc.decoding import Skip, decode_message
from cdc.model import ChangeEvent
from warehouse.base import (
    ApplyResult,
    ComputeRow,
    DataError,
    IncompatibleSchemaChangeError,
    OffsetRow,
    QuarantineRow,
    TableBatch,
    Warehouse,
    WarehouseError,
)

log = structlog.get_logger("cdc.consumer")

__all__ = [
    "GROUP_TIMEOUTS",
    "BrokerUnreachableError",
    "ReplicationStoppedError",
    "Replicator",
    "ReplicatorSettings",
    "RunStats",
]


class Replicator(PollingMixin, IntakeMixin, ProgressMixin):
    """A consumer-group member applying its partitions to one warehouse."""

    # measured apply time is stored (Warehouse.record_compute) at most this often, and at close
    compute_flush_seconds: float = 60.0

    def __init__(
        self,
        settings: ReplicatorSettings,
        warehouse: Warehouse,
        *,
        decoder: Callable[..., ChangeEvent | Skip] = decode_message,
        metrics: LoopMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics  # None: nothing measured
        self.warehouse = warehouse
        self.decode = decoder
        self.stats = RunStats()
        self._stop = False
        self.until_caught_up = False  # may be set from another thread (e.g. the demo)
        self.caught_up_event = threading.Event()  # set while idle at the end of every partition
        # per assigned partition: the offset the warehouse holds everything before (set on
        # assignment from the stored offsets, moved by every committed batch), and the end of
        # what was received since the assignment. "Caught up" trusts the client's position
        # only once this assignment delivered something: a rebalance that re-seeks a partition
        # drops polled messages, and the position can still show the old assignment's.
        self._applied_to: dict[tuple[str, int], int] = {}
        self._received_to: dict[tuple[str, int], int] = {}
        self._revoked: set[tuple[str, int]] = set()
        # the clients' connection errors and log lines: a warning now and then (broker_watch)
        self.broker = BrokerWatch(settings.bootstrap_servers)
        base = {
            "bootstrap.servers": settings.bootstrap_servers,
            **self.broker.client_config(),
            **settings.kafka,
        }
        self.consumer = Consumer(
            {
                **base,
                "group.id": settings.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                **GROUP_TIMEOUTS,
                "fetch.wait.max.ms": 100,
                "topic.metadata.refresh.interval.ms": 2000,
                **{k: v for k, v in settings.kafka.items() if k != "bootstrap.servers"},
            }
        )
        self.dlq = DeadLetterWriter(base, settings.dlq_suffix)
        self._base = base
        self._side: Consumer | None = None  # reads the logs' last batches (see _read_log_ends)
        self._ends: dict[tuple[str, int], tuple[int, int]] = {}  # (high watermark, real end)
        self.validators = {name: Validator(c) for name, c in settings.contracts.items()}
        warehouse.interrupted = lambda: self._stop  # a held file's wait ends on SIGTERM
        # tables with quarantined unfit values: their keys' later changes wait behind them
        self._holding: set[str] = set()
        self._compute: dict[str, tuple[float, int]] = {}  # table -> (apply seconds, batches)
        self._compute_flushed = time.monotonic()

    # ------------------------------------------------------------ assignment
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Seek every assigned partition to the offset stored in the warehouse."""
        stored = self._with_retry(
            lambda: self.warehouse.load_offsets(self.settings.group_id), in_callback=True
        )
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            # No stored offset: from the beginning. A stored offset beyond the log's end
            # (a recreated topic, e.g. a new local broker) makes the broker answer
            # OFFSET_OUT_OF_RANGE and auto.offset.reset=earliest replays the partition from
            # the start; the position guard absorbs what was already applied.
            tp.offset = OFFSET_BEGINNING if offset is None else offset
            self._applied_to[(tp.topic, tp.partition)] = tp.offset
            self._received_to.pop((tp.topic, tp.partition), None)
        self._revoked -= {(tp.topic, tp.partition) for tp in partitions}
        consumer.assign(partitions)
        self.broker.alive()
        log.info(
            "partitions assigned",
            partitions=[f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions],
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoked |= {(tp.topic, tp.partition) for tp in partitions}
        consumer.unassign()
        log.info(
            "partitions revoked", partitions=[f"{tp.topic}[{tp.partition}]" for tp in partitions]
        )

    # ------------------------------------------------------------------ loop
    def request_stop(self, *_: object) -> None:
        """Finish the current batch, then return from :meth:`run` (SIGTERM/Ctrl-C)."""
        self._stop = True
        if self.metrics is not None:
            self.metrics.stopping()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stop requested; finishing the current batch", signal=signum)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(
        self,
        *,
        until_caught_up: bool = False,
        max_seconds: float | None = None,
        idle_grace_seconds: float = 1.0,
    ) -> RunStats:
        """Replicate until stopped (or caught up / out of time when asked)."""
        self.warehouse.ensure_bookkeeping()
        for topic, reason in self.settings.refused.items():
            self.stats.parked[topic] = reason
            log.error("table refused before any row was read; other tables go on",
                      topic=topic, error=reason)  # fmt: skip
        topics = sorted(self.settings.topics)
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("consumer started", group=self.settings.group_id, topics=topics)
        self.until_caught_up = self.until_caught_up or until_caught_up
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        idle_since: float | None = None
        if self.metrics is not None:
            self.metrics.tables(sorted({t.name for t in self.settings.targets.values()}))
        try:
            while not self._stop:
                if deadline is not None and time.monotonic() >= deadline:
                    if self.broker.failing:  # never ends "cleanly" without having reached it
                        self.broker.confirm(self.consumer)
                    break
                batch = self._poll_batch()
                if self.metrics is not None:
                    self.metrics.alive()
                if batch:
                    self.broker.alive()
                    idle_since = None
                    self.caught_up_event.clear()
                    self._process(batch)
                    continue
                now = time.monotonic()
                idle_since = idle_since or now
                if now - idle_since >= idle_grace_seconds and self.caught_up():
                    if self.metrics is not None and not self.caught_up_event.is_set():
                        self.metrics.pending({t.name: 0 for t in self.settings.targets.values()})
                    self.caught_up_event.set()
                    if self.until_caught_up:
                        break
                elif self.until_caught_up and (
                    self.broker.silent_for() >= self.settings.broker_wait_seconds
                ):
                    self.broker.confirm(self.consumer)  # BrokerUnreachableError: it never answered
        except StopDuringRetryError:
            log.warning(
                "stopped while the warehouse was unavailable: the batch was not committed, "
                "its offsets did not move, it is read again on restart"
            )
        finally:
            if self.metrics is not None:
                self.metrics.stopping()
            self.close()
        return self.stats

    def close(self) -> None:
        try:
            self._flush_compute()
            self.dlq.close()
            if self._side is not None:
                self._side.close()
            self.consumer.close()
        finally:
            self.warehouse.close()

    # --------------------------------------------------------------- a batch
    def _process(self, batch: list[Polled]) -> None:
        """Decode a polled batch and apply it: in one unit, or cut around each TRUNCATE
        (:func:`cut_at_truncates`), each part with the offsets of its own messages."""
        events = self._decode(batch)
        for segment in cut_at_truncates(batch, events):
            self._apply_segment(segment.messages, segment.events)

    def _apply_segment(self, batch: list[Polled], events: list[ChangeEvent]) -> None:
        offsets = next_offsets(batch)
        table_batches = group_by_table(events, self.settings.targets)
        table_batches = [
            b for b in table_batches if b.events[0].origin.topic not in self.stats.parked
        ]
        for topic, _p in list(offsets):
            if topic in self.stats.parked:
                del offsets[(topic, _p)]
        screened = self._screen(table_batches)
        table_batches, quarantine = screened.batches, screened.quarantine
        self.dlq.flush()  # dead letters are durable before the offsets pass them
        rows = offset_rows(self.settings.group_id, offsets)
        started = time.monotonic()
        while True:
            try:
                result = self._apply(table_batches, rows, quarantine)
                break
            except DataError as exc:
                table_batches = self._isolate_bad_events(table_batches, exc, quarantine)
            except IncompatibleSchemaChangeError as exc:
                table_batches = self._park(table_batches, exc, offsets)
                remaining = {b.target.name for b in table_batches}
                quarantine = [q for q in quarantine if q.table in remaining]
                rows = offset_rows(self.settings.group_id, offsets)
        committed_at = time.time()
        self.stats.apply_seconds += time.monotonic() - started
        self.stats.first_batch_at = self.stats.first_batch_at or started
        self.stats.last_batch_at = time.monotonic()
        self.stats.batches += 1
        for stats in result.tables:
            self.stats.per_table[stats.table] = (
                self.stats.per_table.get(stats.table, 0) + stats.events
            )
            self.stats.held += stats.held
        self.stats.quarantined += len(quarantine)
        for b in table_batches:
            self.stats.events += len(b.events)
            self.stats.latencies_s.extend(
                committed_at - e.position.commit_ts_us / 1e6
                for e in b.events
                if not e.position.snapshot
            )
        unresolved = {s.table: s.toast_unresolved for s in result.tables if s.toast_unresolved}
        if unresolved:
            log.warning(
                "a primary-key change lacked an unchanged TOAST value its old key no longer "
                "has (the old key's delete was applied in an earlier batch): written as NULL; "
                "re-snapshot those keys, or set REPLICA IDENTITY FULL on the table",
                values=unresolved,
            )
        log.info(
            "batch applied",
            offsets={f"{t}[{p}]": f"..{o - 1}" for (t, p), o in sorted(offsets.items())},
            messages=len(batch),
            events=len(events),
            tables={s.table: s.events for s in result.tables},
            stale=sum(s.stale for s in result.tables),
            versions={
                s.table: {"opened": s.versions_opened, "closed": s.versions_closed}
                for s in result.tables
                if s.versions_opened or s.versions_closed
            },
            seconds=round(result.seconds, 4),
        )
        self._measure(result)
        self._applied_to.update(offsets)  # a partition's batches come in log order
        if self.metrics is not None:
            self._report(result, table_batches, time.monotonic() - started)
        failpoints.reach("after_warehouse_commit", self.stats.batches)
        if rows:
            self.consumer.commit(
                offsets=[TopicPartition(r.topic, r.partition, r.next_offset) for r in rows],
                asynchronous=True,
            )

    def _measure(self, result: ApplyResult) -> None:
        """Add the batch's measured apply time to each table's share (by its events), and
        store the totals once ``compute_flush_seconds`` passed since the last time."""
        events = sum(s.events for s in result.tables)
        for s in result.tables:
            if events and s.events:
                seconds, batches = self._compute.get(s.table, (0.0, 0))
                self._compute[s.table] = (seconds + result.seconds * s.events / events, batches + 1)
        if time.monotonic() - self._compute_flushed >= self.compute_flush_seconds:
            self._flush_compute()

    def _flush_compute(self) -> None:
        """Store the measured apply time gathered since the last flush (one statement). It is
        bookkeeping: a warehouse that refuses it is logged, and replication goes on."""
        self._compute_flushed = time.monotonic()
        if not self._compute:
            return
        at = dt.datetime.now(dt.UTC)
        rows = [ComputeRow("apply", t, s, n, at) for t, (s, n) in sorted(self._compute.items())]
        self._compute = {}
        try:
            self.warehouse.record_compute(rows)
        except WarehouseError as exc:
            log.warning("measured apply time not stored", tables=len(rows), error=str(exc))

    def _apply(
        self,
        batches: Sequence[TableBatch],
        rows: Sequence[OffsetRow],
        quarantine: Sequence[QuarantineRow] = (),
    ) -> ApplyResult:
        return cast(
            ApplyResult,
            self._with_retry(lambda: self.warehouse.apply(batches, rows, quarantine)),
        )

    def _isolate_bad_events(
        self, batches: Sequence[TableBatch], exc: DataError, quarantine: Sequence[QuarantineRow]
    ) -> list[TableBatch]:
        """Find the events the warehouse rejects (bisection), dead-letter them, and return the
        batches without them. Good halves are committed on the way: replay-safe by the guard
        (and the table's quarantine rows go with every half: stored once per origin, they hold
        the later changes of their keys)."""
        failing = [b for b in batches if b.target.name == exc.table] or list(batches)
        rest = [b for b in batches if b not in failing]
        for table_batch in failing:
            mine = [q for q in quarantine if q.table == table_batch.target.name]
            self._bisect(table_batch, mine)
        return rest

    def _bisect(self, batch: TableBatch, quarantine: Sequence[QuarantineRow] = ()) -> None:
        try:
            self._with_retry(lambda: self.warehouse.apply([batch], [], quarantine))
            self.stats.events += len(batch.events)
            return
        except DataError as exc:
            if len(batch.events) == 1:
                event = batch.events[0]
                self._dead_letter(Polled(event.origin, event.raw_key, event.raw_value), exc)
                self.dlq.flush()
                return
        first, second = split_events(batch)
        self._bisect(first, quarantine)
        self._bisect(second, quarantine)

    def _park(
        self,
        batches: Sequence[TableBatch],
        exc: IncompatibleSchemaChangeError,
        offsets: dict[tuple[str, int], int],
    ) -> list[TableBatch]:
        """Stop applying one table (its offsets stay where they are), let the others flow."""
        parked = [b for b in batches if b.target.name == exc.table]
        if not parked:
            raise ReplicationStoppedError(
                f"incompatible schema change in an unnamed table: {exc}. Nothing of this "
                "batch was committed; fix the table and start `cdc run` again."
            ) from exc
        for b in parked:
            topic = b.events[0].origin.topic
            self.stats.parked[topic] = str(exc)
            if self.metrics is not None:
                self.metrics.table_parked(b.target.name)
            for tp in list(offsets):
                if tp[0] == topic:
                    del offsets[tp]
            self.consumer.pause([tp for tp in self.consumer.assignment() if tp.topic == topic])
            log.error(
                "table parked after an incompatible schema change; other tables go on",
                table=b.target.name,
                topic=topic,
                error=str(exc),
                action="migrate the warehouse table (or re-snapshot it), then restart `cdc run`",
            )
        return [b for b in batches if b not in parked]

    def _with_retry(self, fn: Callable[[], Any], *, in_callback: bool = False) -> Any:
        """Run ``fn`` under the retry policy (:func:`cdc.consumer.retry.with_retry`)."""
        del in_callback  # the wait is a sleep either way: polling here could drop messages
        return with_retry(fn, self.settings, stopped=lambda: self._stop, on_retry=self._retried)

    def _retried(self) -> None:
        self.stats.retries += 1
        if self.metrics is not None:
            self.metrics.retried()
