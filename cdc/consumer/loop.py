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
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from cdc import failpoints
from cdc.consumer.batching import Polled, group_by_table, next_offsets, offset_rows, split_events
from cdc.consumer.dlq import DeadLetterWriter
from cdc.consumer.partitions import read_to_end
from cdc.consumer.screening import ContractStopError, Screened, screen
from cdc.contracts import TableContract, Validator
from cdc.decoding import DecodeError, Skip, decode_message
from cdc.model import ChangeEvent, ColumnType, KafkaOrigin, Op, TableId
from cdc.names import display
from warehouse.base import (
    ApplyResult,
    ComputeRow,
    DataError,
    IncompatibleSchemaChangeError,
    OffsetRow,
    QuarantineRow,
    TableBatch,
    TableTarget,
    TerminalWarehouseError,
    TransientWarehouseError,
    Warehouse,
    WarehouseError,
)

if TYPE_CHECKING:
    from cdc.metrics import Metrics

log = structlog.get_logger("cdc.consumer")

# Both consumers' group timeouts, before the user's kafka.client settings (which win)
GROUP_TIMEOUTS: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "max.poll.interval.ms": 300000,
}


def _may_be_half_a_key_change(m: Polled) -> bool:
    """A tombstone or a delete envelope (Debezium's compact JSON): maybe a key change's first
    half. Cheap bytes test, no decoding; a false positive only waits 50 ms."""
    return m.value is None or b'"op":"d"' in m.value


class ReplicationStoppedError(Exception):
    """The loop stopped on a terminal error; the message says what to do."""


class _StopDuringRetryError(Exception):
    """A stop was requested while the warehouse was unavailable: the batch is left
    uncommitted (its offsets don't move) and the loop ends."""


@dataclass(frozen=True)
class ReplicatorSettings:
    bootstrap_servers: str
    group_id: str
    # source table (the envelope's source.schema/source.table) -> where it lands
    targets: dict[TableId, TableTarget]
    # topic -> the warehouse names of its tables (Debezium sanitises topic names: tables may
    # share one, so a message's table comes from its envelope, never from its topic)
    topics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    batch_size: int = 5000
    linger_ms: int = 500
    dlq_suffix: str = ".dlq"
    kafka: dict[str, Any] = field(default_factory=dict)  # extra librdkafka settings
    retry_initial_seconds: float = 0.2
    retry_max_seconds: float = 10.0
    retry_give_up_seconds: float | None = None  # None: retry transient errors forever
    contracts: dict[str, TableContract] = field(default_factory=dict)  # table name -> checks
    # table name -> column -> the type it is stored as (cdc.yaml `columns` overrides)
    overrides: dict[str, dict[str, ColumnType]] = field(default_factory=dict)
    # topic -> why its table is refused before any row is read (cdc.source.type_support)
    refused: dict[str, str] = field(default_factory=dict)


@dataclass
class RunStats:
    batches: int = 0
    events: int = 0
    skipped: int = 0
    dead_letters: int = 0
    retries: int = 0
    per_table: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)  # source commit -> warehouse commit
    apply_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    first_batch_at: float | None = None
    last_batch_at: float | None = None
    parked: dict[str, str] = field(default_factory=dict)  # topic -> reason
    failed_checks: dict[str, int] = field(default_factory=dict)  # "table: check" -> rows
    quarantined: int = 0  # rows that failed checks, kept in the quarantine table
    held: int = 0  # later changes of quarantined keys, kept there behind them


class Replicator:
    """A consumer-group member applying its partitions to one warehouse."""

    # measured apply time is stored (Warehouse.record_compute) at most this often, and at close
    compute_flush_seconds: float = 60.0

    def __init__(
        self,
        settings: ReplicatorSettings,
        warehouse: Warehouse,
        *,
        decoder: Callable[..., ChangeEvent | Skip] = decode_message,
        metrics: Metrics | None = None,
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
        base = {"bootstrap.servers": settings.bootstrap_servers, **settings.kafka}
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
                    break
                batch = self._poll_batch()
                if self.metrics is not None:
                    self.metrics.alive()
                if batch:
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
        except _StopDuringRetryError:
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

    # --------------------------------------------------------------- a batch
    def _decode(self, batch: list[Polled]) -> list[ChangeEvent]:
        events: list[ChangeEvent] = []
        for m in batch:
            if m.origin.topic in self.stats.parked:
                continue  # not even decoded: its offsets don't move either
            try:
                result = self.decode(
                    m.key,
                    m.value,
                    topic=m.origin.topic,
                    partition=m.origin.partition,
                    offset=m.origin.offset,
                )
            except DecodeError as exc:
                self._dead_letter(m, exc)
                continue
            if isinstance(result, Skip):
                self.stats.skipped += 1
                continue
            if result.schema.table not in self.settings.targets:
                self._dead_letter(
                    m,
                    DecodeError(
                        f"table {display(result.schema.table)} is not configured: its changes "
                        f"reached topic {m.origin.topic!r}, shared with a configured table "
                        "(Debezium replaces characters other than letters, digits, '.', '_' "
                        "and '-' in topic names by '_'). Add it to `tables`, or narrow "
                        "`source.debezium.table.include.list`",
                        field="source.table",
                    ),
                )
                continue
            if result.op is Op.TRUNCATE:
                self._dead_letter(
                    m, DecodeError("TRUNCATE is not replicated; re-snapshot the table instead")
                )
                continue
            events.append(result)
        return events

    def _dead_letter(self, message: Polled, error: BaseException) -> None:
        log.warning(
            "dead-lettered a message",
            topic=message.origin.topic,
            partition=message.origin.partition,
            offset=message.origin.offset,
            error_class=type(error).__name__,
            error=str(error)[:500],
        )
        self.dlq.send(message, error)
        self.stats.dead_letters += 1
        if self.metrics is not None:
            self.metrics.dead_lettered()

    def _screen(self, batches: list[TableBatch]) -> Screened:
        """Check the batches against their contracts; dead-letter failures of `dlq` tables."""
        try:
            screened = screen(
                batches,
                self.validators,
                overrides=self.settings.overrides,
                caps=self.warehouse.capabilities,
                holding=self._holding,
            )
        except ContractStopError as exc:
            raise ReplicationStoppedError(str(exc)) from exc
        for event, error in screened.dead_letters:
            self._dead_letter(Polled(event.origin, event.raw_key, event.raw_value), error)
        for name, count in screened.failed_checks.items():
            self.stats.failed_checks[name] = self.stats.failed_checks.get(name, 0) + count
        if screened.failed_checks:
            log.warning(
                "rows failed their checks",
                failed=screened.failed_checks,
                quarantined=len(screened.quarantine),
                dead_lettered=len(screened.dead_letters),
            )
        return screened

    def _process(self, batch: list[Polled]) -> None:
        events = self._decode(batch)
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
        """Run ``fn``; on transient warehouse errors wait with exponential backoff and retry.

        Nothing is consumed meanwhile (the loop is single-threaded), so no offset can move
        past unapplied data. An outage longer than max.poll.interval.ms makes the broker
        rebalance us out; on return the consumer rejoins and seeks to the warehouse offsets.
        """
        del in_callback  # the wait is a sleep either way: polling here could drop messages
        delay = self.settings.retry_initial_seconds
        started = time.monotonic()
        while True:
            try:
                return fn()
            except TransientWarehouseError as exc:
                waited = time.monotonic() - started
                limit = self.settings.retry_give_up_seconds
                if limit is not None and waited >= limit:
                    raise ReplicationStoppedError(
                        f"the warehouse stayed unavailable for {waited:.0f} s: {exc}. "
                        "Nothing past the last applied batch was committed; fix the "
                        "warehouse and start `cdc run` again."
                    ) from exc
                if self._stop:
                    raise _StopDuringRetryError from exc
                self.stats.retries += 1
                if self.metrics is not None:
                    self.metrics.retried()
                log.warning("warehouse unavailable; retrying", error=str(exc), in_s=delay)
                until = time.monotonic() + delay
                while not self._stop and time.monotonic() < until:
                    time.sleep(min(0.2, delay))
                delay = min(delay * 2, self.settings.retry_max_seconds)
            except TerminalWarehouseError as exc:
                raise ReplicationStoppedError(
                    f"the warehouse refused the batch: {exc}. Nothing of this batch was "
                    "committed; fix the cause and start `cdc run` again."
                ) from exc
