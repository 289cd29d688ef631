"""The ``incremental`` snapshot method: Debezium re-reads the tables through the signal table
(:mod:`cdc.source.signals`) and the rows reach the warehouse through the normal path (Kafka,
the consumer, the position guard). Here: signal, wait for Debezium's completion notice, and
say what it scanned."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cdc.config import Config
from cdc.names import display
from cdc.snapshot.bulk import SnapshotError
from cdc.source.signals import (
    IncrementalSnapshotProgress,
    SignalError,
    request_configured_snapshot,
    wait_configured_snapshot,
)


def run_incremental(
    config: Config,
    tables: Sequence[str],
    where: str | None = None,
    *,
    timeout: float = 3600.0,
    on_progress: Callable[[IncrementalSnapshotProgress], None] | None = None,
) -> dict[str, Any]:
    """Request an incremental snapshot of ``tables`` and wait until Debezium has emitted it
    (the consumer applies the rows as it catches up). Raises SnapshotError for a request that
    can't run (checked before the signal is written) or a snapshot Debezium didn't finish."""
    if not tables:
        raise SnapshotError("name at least one table to snapshot")
    try:
        signal_id = request_configured_snapshot(config, tables, where)
    except SignalError as exc:
        raise SnapshotError(str(exc)) from None
    result = wait_configured_snapshot(config, signal_id, timeout, on_progress=on_progress)
    # Debezium names a table by its raw `schema.table` (ambiguous when a name holds a dot):
    # shown as cdc.yaml writes it, via the configured tables
    shown = {f"{t.source.schema}.{t.source.name}": display(t.source) for t in config.tables}
    outcome: dict[str, Any] = {
        "method": "incremental",
        "signal": signal_id,
        "tables": [
            {"table": shown.get(t, t), "status": s, "rows": result.rows.get(t, 0)}
            for t, s in sorted(result.tables.items())
        ],
        "chunks": result.chunks,
        "seconds": round(result.seconds, 2),
    }
    if not result.succeeded:
        raise SnapshotError(f"Debezium did not finish the incremental snapshot: {outcome}")
    return outcome
