"""One cost report: measure, price, store, chart and write the files (``cdc cost-report`` and
the ``cdc-cost-report`` flow run this)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from cdc.config import Config
from cdc.costs.chart import Chart, draw
from cdc.costs.measure import measure
from cdc.costs.output import ReportFiles, file_names, write
from cdc.costs.report import CostReport, build_report, previous_report
from warehouse.base import Warehouse


@dataclass(frozen=True, slots=True)
class CostReportResult:
    report: CostReport
    files: ReportFiles
    chart: Chart


def cost_report(
    config: Config, *, warehouse: Warehouse | None = None, now: dt.datetime | None = None
) -> CostReportResult:
    """Measure every configured table, price it with ``config.costs``, compare with the
    previous stored report, store this one in ``cost_reports``, draw the chart over every
    stored report and write the CSV, JSON, markdown and PNG files to ``costs.output``.
    The report's own warehouse time is recorded in ``compute_log`` (it shows in the next)."""
    from cdc.warehouses import open_warehouse

    at = now or dt.datetime.now(dt.UTC)
    own = warehouse is None
    wh = open_warehouse(config) if warehouse is None else warehouse
    try:
        wh.ensure_bookkeeping()
        history = wh.cost_history()
        previous = previous_report(history)
        since = previous[0].at if previous else None
        measurement, spent = measure(config, wh, since=since, at=at)
        report = build_report(uuid.uuid4().hex[:12], measurement, config.costs, previous)
        wh.record_cost_report(report.audit_rows())
        files = file_names(config, report)
        chart = draw([*history, *report.audit_rows()], files.chart)
        write(files, report)
        wh.record_compute(spent)
    finally:
        if own:
            wh.close()
    return CostReportResult(report, files, chart)
