"""``snapshot``: an initial load or re-load of chosen tables while the stream runs.

Method ``bulk`` (:mod:`cdc.snapshot.bulk`): COPY in key-range chunks from one exported
snapshot, in parallel, applied at the snapshot's position so changes streamed meanwhile win;
resumable (a rerun skips the chunks already loaded). Method ``incremental``: Debezium's
incremental snapshot through the signal table; the rows flow through the normal path, so the
flow only signals and waits. A progress artifact follows the chunks; a table artifact sums up.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict
from typing import Any, Literal
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from blocks import load_section
from cdc.config import load_config
from cdc.prefect_logs import product_logs_in_prefect
from cdc.runtime import open_warehouse
from cdc.snapshot.bulk import BulkOptions, ChunkLoaded, TableSnapshot, check_request
from cdc.snapshot.bulk import snapshot_table as load_table


def summary_rows(results: list[TableSnapshot]) -> list[dict[str, Any]]:
    """The summary artifact's rows: one per table."""
    return [
        {
            "table": r.table,
            "snapshot": r.snapshot_id,
            "chunks": r.chunks,
            "loaded": r.chunks_loaded,
            "skipped (already loaded)": r.chunks_skipped,
            "rows": r.rows,
            "kept newer streamed value": r.stale,
            "seconds": round(r.seconds, 2),
            "rows/s": round(r.rows_per_second),
        }
        for r in results
    ]


def artifact_key(prefix: str, name: str) -> str:
    """A Prefect artifact key for ``name``: Prefect takes only lowercase letters, digits and
    dashes. A name already of that form is kept (``cdc-snapshot-items``); any other becomes
    its slug plus a short hash of the name, so two names never share a key."""
    if re.fullmatch(r"[a-z0-9-]+", name):
        return f"{prefix}-{name}"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{prefix}-{slug}-{digest}" if slug else f"{prefix}-{digest}"


@task(name="bulk-snapshot-table")
def bulk_table(config: str, table: str, options: dict[str, Any]) -> dict[str, Any]:
    """Bulk-load one table, updating a progress artifact per chunk."""
    cfg = load_config(config, load_section=load_section)
    (request,) = check_request(cfg, [table], options.get("where"))
    artifact = create_progress_artifact(
        0.0,
        key=artifact_key("cdc-snapshot", request.table.target_name),
        description=f"snapshot of {table}",
    )

    assert isinstance(artifact, UUID)

    def on_chunk(event: ChunkLoaded) -> None:
        update_progress_artifact(artifact, 100.0 * event.done / max(event.total, 1))

    warehouse = open_warehouse(cfg)
    try:
        result = load_table(cfg, warehouse, request, BulkOptions(**options, on_chunk=on_chunk))
    finally:
        warehouse.close()
    return asdict(result)


@flow(name="cdc-snapshot")
def snapshot(
    config: str = "cdc.yaml",
    tables: list[str] | None = None,
    method: Literal["bulk", "incremental"] = "bulk",
    where: str | None = None,
    rows_per_chunk: int = 100_000,
    workers: int = 2,
    fresh: bool = False,
    timeout_minutes: float = 60,
) -> list[dict[str, Any]]:
    """Snapshot ``tables`` (default: every configured table) of ``config``."""
    logger = get_run_logger()
    cfg = load_config(config, load_section=load_section)
    names = tables or [t.name for t in cfg.tables]
    if method == "incremental":
        from cdc.snapshot.incremental import run_incremental

        with product_logs_in_prefect():
            outcome = run_incremental(cfg, names, where, timeout=timeout_minutes * 60)
        create_table_artifact(
            key="cdc-snapshot",
            table=outcome["tables"],
            description=f"incremental snapshot {outcome['signal']}: {outcome['chunks']} chunks",
        )
        return [outcome]
    check_request(cfg, names, where)  # every table valid before the first is loaded
    options = {"rows_per_chunk": rows_per_chunk, "workers": workers, "where": where,
               "fresh": fresh}  # fmt: skip
    with product_logs_in_prefect():
        results = [TableSnapshot(**bulk_table(config, name, options)) for name in names]
    rows = summary_rows(results)
    for row in rows:
        logger.info("snapshot of %(table)s: %(rows)s rows in %(seconds)s s", row)
    create_table_artifact(
        key="cdc-snapshot",
        table=rows,
        description=f"bulk snapshot of {len(results)} table(s), "
        f"{sum(r.rows for r in results)} rows",
    )
    return [asdict(r) for r in results]
