"""Intake: polled messages into table batches the warehouse can take. Decoding (what can't be
decoded, or belongs to no configured table, goes to the dead-letter topic),
and screening against the tables' contracts and the warehouse's capabilities (rows that fail
go to quarantine or the dead-letter topic, as the table's contract says)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from cdc.consumer.batching import Polled
from cdc.consumer.dlq import DeadLetterWriter
from cdc.consumer.observer import LoopMetrics
from cdc.consumer.screening import ContractStopError, Screened, screen
from cdc.consumer.settings import ReplicationStoppedError, ReplicatorSettings, RunStats
from cdc.contracts import Validator
from cdc.decoding import DecodeError, Skip
from cdc.model import ChangeEvent
from cdc.names import display
from warehouse.base import TableBatch, Warehouse

log = structlog.get_logger("cdc.consumer")


class IntakeMixin:
    """The :class:`cdc.consumer.loop.Replicator`'s decoding and screening of one batch."""

    settings: ReplicatorSettings
    stats: RunStats
    metrics: LoopMetrics | None
    warehouse: Warehouse
    decode: Callable[..., ChangeEvent | Skip]
    dlq: DeadLetterWriter
    validators: dict[str, Validator]
    _holding: set[str]

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
