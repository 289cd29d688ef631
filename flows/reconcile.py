"""``reconcile``: compare (and optionally repair) the configured tables source vs warehouse as
a Prefect flow run, on a schedule. The work is :func:`cdc.reconcile.run.reconcile`, exactly what
``cdc reconcile`` runs (tested without Prefect); the flow publishes the report as a markdown
artifact and a table artifact, and fails the run when differences remain."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from blocks import load_section
from cdc.config import load_config
from cdc.prefect_logs import product_logs_in_prefect
from cdc.reconcile.report import RunReport
from cdc.reconcile.run import reconcile as run_reconcile


@task(name="compare-tables")
def compare(config: str, tables: list[str] | None, repair: bool) -> RunReport:
    return run_reconcile(load_config(config, load_section=load_section), tables, repair=repair)


@task(name="publish-report")
def publish(report: RunReport) -> None:
    create_markdown_artifact(
        key="cdc-reconcile-report",
        markdown=report.markdown(),
        description=f"reconcile run {report.run_id}",
    )
    create_table_artifact(
        key="cdc-reconcile",
        table=report.rows(),
        description=f"run {report.run_id}: {'ok' if report.ok else 'differences remain'}",
    )


@flow(name="cdc-reconcile")
def reconcile(
    config: str = "cdc.yaml", tables: list[str] | None = None, repair: bool = False
) -> dict[str, Any]:
    """Compare ``tables`` (default: all) of ``config``; with ``repair``, fix what differs."""
    logger = get_run_logger()
    with product_logs_in_prefect():
        report = compare(config, tables, repair)
    publish(report)
    summary = report.to_json()
    for t in report.tables:
        logger.info("%s: %s (%s)", t.table, t.status, t.examples(3) or "no differences")
    if not report.ok:
        raise RuntimeError(
            "differences remain: "
            + "; ".join(f"{t.table} {t.status}" for t in report.tables if t.status != "ok")
        )
    return summary
