"""``tier``: one lifecycle tiering pass (daily): the work is :func:`cdc.tiering.run.tier`,
exactly what ``cdc tier`` runs (tested without Prefect); the flow publishes a table artifact
of what moved and a markdown summary."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from blocks import load_section
from cdc.config import load_config
from cdc.prefect_logs import product_logs_in_prefect
from cdc.runtime import open_warehouse
from cdc.tiering.run import TableTierResult
from cdc.tiering.run import tier as tier_pass


@task(name="tier-tables")
def run_pass(config: str, tables: list[str] | None) -> list[TableTierResult]:
    cfg = load_config(config, load_section=load_section)
    warehouse = open_warehouse(cfg)
    try:
        return tier_pass(cfg, warehouse, tables)
    finally:
        warehouse.close()


def summary_markdown(results: list[TableTierResult]) -> str:
    lines = [
        "# Tiering pass",
        "",
        "| table | to warm | to cold | expired | warm files | cold files |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.table} | {r.to_warm} | {r.to_cold} | {r.expired} | "
            f"{r.files.get('warm', 0)} | {r.files.get('cold', 0)} |"
        )
    return "\n".join(lines) + "\n"


@flow(name="cdc-tier")
def tier(config: str = "cdc.yaml", tables: list[str] | None = None) -> list[dict[str, Any]]:
    """Move due history of ``tables`` (default: every tiered table) between the tiers."""
    logger = get_run_logger()
    with product_logs_in_prefect():
        results = run_pass(config, tables)
    rows = [r.row() for r in results]
    create_table_artifact(key="cdc-tier", table=rows, description="tiering pass")
    create_markdown_artifact(key="cdc-tier-summary", markdown=summary_markdown(results))
    for r in results:
        logger.info("%s: %s to warm, %s to cold, %s expired", r.table, r.to_warm, r.to_cold,
                    r.expired)  # fmt: skip
    return rows
