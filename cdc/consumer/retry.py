"""The loop's one retry policy for the warehouse: transient errors are retried with
exponential backoff (``retry_initial_seconds`` doubling up to ``retry_max_seconds``, giving up
after ``retry_give_up_seconds`` when set), terminal errors stop the loop with a message, and a
stop requested during the wait ends it without committing the batch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import structlog

from cdc.consumer.settings import ReplicationStoppedError, ReplicatorSettings
from warehouse.base import TerminalWarehouseError, TransientWarehouseError

log = structlog.get_logger("cdc.consumer")
T = TypeVar("T")


class StopDuringRetryError(Exception):
    """A stop was requested while the warehouse was unavailable: the batch is left
    uncommitted (its offsets don't move) and the loop ends."""


def with_retry(
    fn: Callable[[], T],
    settings: ReplicatorSettings,
    *,
    stopped: Callable[[], bool],
    on_retry: Callable[[], None],
) -> T:
    """Run ``fn``; on transient warehouse errors wait with exponential backoff and retry.

    Nothing is consumed meanwhile (the loop is single-threaded), so no offset can move
    past unapplied data. An outage longer than max.poll.interval.ms makes the broker
    rebalance us out; on return the consumer rejoins and seeks to the warehouse offsets.
    ``stopped`` says whether a stop was requested (checked before and during each wait);
    ``on_retry`` counts each retry.
    """
    delay = settings.retry_initial_seconds
    started = time.monotonic()
    while True:
        try:
            return fn()
        except TransientWarehouseError as exc:
            waited = time.monotonic() - started
            limit = settings.retry_give_up_seconds
            if limit is not None and waited >= limit:
                raise ReplicationStoppedError(
                    f"the warehouse stayed unavailable for {waited:.0f} s: {exc}. "
                    "Nothing past the last applied batch was committed; fix the "
                    "warehouse and start `cdc run` again."
                ) from exc
            if stopped():
                raise StopDuringRetryError from exc
            on_retry()
            log.warning("warehouse unavailable; retrying", error=str(exc), in_s=delay)
            until = time.monotonic() + delay
            while not stopped() and time.monotonic() < until:
                time.sleep(min(0.2, delay))
            delay = min(delay * 2, settings.retry_max_seconds)
        except TerminalWarehouseError as exc:
            raise ReplicationStoppedError(
                f"the warehouse refused the batch: {exc}. Nothing of this batch was "
                "committed; fix the cause and start `cdc run` again."
            ) from exc
