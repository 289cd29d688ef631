"""What the replication loop reports while it runs: the hooks it calls on its metrics.

:class:`cdc.metrics.Metrics` implements them (Prometheus, the health endpoint); the loop only
knows this protocol, so the consumer does not depend on the metrics layer above it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class LoopMetrics(Protocol):
    def tables(self, names: list[str]) -> None:
        """The tables replicated (their series start at 0)."""

    def alive(self) -> None:
        """The loop made progress (a poll, a batch, a retry)."""

    def stopping(self) -> None:
        """A stop was requested, or the loop ended."""

    def batch_applied(
        self, seconds: float, events: Mapping[str, int], newest_commit: Mapping[str, float]
    ) -> None:
        """One committed batch: apply time, events per table, newest source commit per table."""

    def pending(self, per_table: Mapping[str, int]) -> None:
        """Messages not applied yet per table."""

    def dead_lettered(self) -> None:
        """One message went to a dead-letter topic."""

    def retried(self) -> None:
        """A transient warehouse error: the loop waits and retries."""

    def table_parked(self, table: str) -> None:
        """The table stopped after an incompatible schema change."""
