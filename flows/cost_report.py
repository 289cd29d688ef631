"""``cost_report``: what each table costs, per tier and in warehouse time, as a Prefect flow run
on a weekly schedule. The work is :func:`cdc.costs.run.cost_report`, exactly what
``cdc cost-report`` runs (tested without Prefect); the flow publishes the report as a markdown
artifact and a table artifact, and logs where the CSV, JSON and PNG files went."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from blocks import load_section
from cdc.config import load_config
from cdc.costs.run import CostReportResult
from cdc.costs.run import cost_report as run_cost_report
from cdc.prefect_logs import product_logs_in_prefect


@task(name="measure-and-price")
def measure(config: str) -> CostReportResult:
    return run_cost_report(load_config(config, load_section=load_section))


@task(name="publish-report")
def publish(result: CostReportResult) -> None:
    report = result.report
    create_markdown_artifact(
        key="cdc-cost-report",
        markdown=report.markdown() + f"\nChart: `{result.files.chart}`\n",
        description=f"cost report {report.report_id}",
    )
    create_table_artifact(
        key="cdc-cost-report-tables",
        table=report.rows(),
        description=(
            f"report {report.report_id}: storage {report.storage_total:.4f} per month, "
            f"tiering saves {report.saving_total:.4f} per month"
        ),
    )


@flow(name="cdc-cost-report")
def cost_report(config: str = "cdc.yaml") -> dict[str, Any]:
    """Measure and price every configured table of ``config``; store and publish the report."""
    logger = get_run_logger()
    with product_logs_in_prefect():
        result = measure(config)
    publish(result)
    files = result.files
    logger.info("cost report %s: %s, %s, %s, %s", result.report.report_id, files.csv,
                files.json, files.markdown, files.chart)  # fmt: skip
    return {
        **result.report.to_json(),
        "files": {k: str(getattr(files, k)) for k in ("csv", "json", "markdown", "chart")},
    }
