"""``replicate``: the consumer as a bounded Prefect flow run, for micro-batch schedules and
visibility in the UI. It runs until every partition is applied to its end (default) or for
``minutes``, then publishes what it applied as a table artifact. The replication itself is
``cdc.consumer.loop.Replicator``, exactly what ``cdc run`` runs."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from blocks import load_section
from cdc.config import load_config
from cdc.consumer.loop import Replicator
from cdc.consumer.settings import RunStats
from cdc.prefect_logs import product_logs_in_prefect
from cdc.runtime import open_warehouse, replicator_settings


def run_rows(stats: RunStats) -> list[dict[str, Any]]:
    """One row per table: events applied, plus what was parked (the artifact's table)."""
    tables = sorted(set(stats.per_table) | set(stats.parked))
    return [
        {"table": t, "events": stats.per_table.get(t, 0), "parked": stats.parked.get(t, "")}
        for t in tables
    ]


@flow(name="cdc-replicate")
def replicate(config: str = "cdc.yaml", minutes: float | None = None) -> dict[str, Any]:
    """Replicate the tables of ``config`` until caught up, or for ``minutes``."""
    logger = get_run_logger()
    with product_logs_in_prefect():
        cfg = load_config(config, load_section=load_section)
        replicator = Replicator(replicator_settings(cfg, check_types=True), open_warehouse(cfg))
        stats = replicator.run(
            until_caught_up=minutes is None,
            max_seconds=None if minutes is None else minutes * 60,
        )
    summary = {
        "events": stats.events,
        "batches": stats.batches,
        "dead_letters": stats.dead_letters,
        "retries": stats.retries,
        "parked": dict(stats.parked),
    }
    logger.info("replicated %(events)s events in %(batches)s batches", summary)
    create_table_artifact(
        key="cdc-replicate",
        table=run_rows(stats),
        description=f"{stats.events} events in {stats.batches} batches, "
        f"{stats.dead_letters} dead letters, {stats.retries} retries",
    )
    return summary
