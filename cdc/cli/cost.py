"""``cdc cost-report``: measure and price every table per tier, print it, write the files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from cdc.cli.console import Console
from cdc.cli.options import ConfigOpt

if TYPE_CHECKING:
    from cdc.costs.report import CostReport

console = Console()


def _delta(value: float | None, digits: int = 6) -> str:
    if value is None:
        return "new"
    return f"{value:+,}" if isinstance(value, int) else f"{value:+.{digits}f}"


def report_table(report: CostReport) -> Table:
    """The report as a rich table, one row per table and tier."""
    table = Table(title=f"cost report {report.report_id} (storage per month; GB = 1e9 bytes)")
    for name in ("table", "tier", "rows", "bytes", "storage / month", "compute", "Δ rows",
                 "Δ bytes", "Δ storage"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("table", "tier") else "right")
    for x in report.lines:
        table.add_row(
            x.table, x.tier, f"{x.rows:,}", f"{x.bytes:,}", f"{x.storage_cost:.6f}",
            f"{x.compute_cost:.6f}", _delta(x.delta_rows), _delta(x.delta_bytes),
            _delta(x.delta_storage_cost),
        )  # fmt: skip
    return table


def cost_report_command(config: ConfigOpt = Path("cdc.yaml")) -> None:
    """Report what each table costs: rows, bytes and storage cost per month in each tier
    (hot: the warehouse table; warm and cold: its Parquet files), compute time since the last
    report (measured statement time; on Snowflake, credits from query history), the trend
    against the last report and the monthly saving of the tiering policy. The report is stored
    in the warehouse's `cost_reports` table and written as CSV, JSON, markdown and a PNG chart
    to `costs.output`. Exit code 1 when something can't be measured (e.g. the tier storage
    can't be listed), 2 for an invalid configuration."""
    from cdc.cli import _load
    from cdc.costs.measure import CostReportError
    from cdc.costs.run import cost_report

    cfg = _load(config)
    try:
        result = cost_report(cfg)
    except CostReportError as exc:
        Console(stderr=True).print(f"[red]cannot report costs:[/] {escape(str(exc))}",
                                   highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(1) from None
    report, files = result.report, result.files
    console.print(report_table(report))
    console.print(
        f"storage {report.storage_total:.6f} per month, compute {report.compute_total:.6f} "
        f"({report.compute_basis}), tiering saves {report.saving_total:.6f} per month"
    )
    for note in report.notes:
        console.print(f"[dim]{note}[/]")
    console.print(f"files: {files.csv}, {files.json}, {files.markdown}, {files.chart}",
                  soft_wrap=True)  # fmt: skip
