"""The report's files for tooling: CSV (one row per table and tier), JSON (everything) and
markdown, in ``costs.output`` (relative to the configuration file's folder)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from cdc.config import Config
from cdc.costs.report import CostReport


@dataclass(frozen=True, slots=True)
class ReportFiles:
    folder: Path
    csv: Path
    json: Path
    markdown: Path
    chart: Path


def output_dir(config: Config) -> Path:
    folder = Path(config.costs.output)
    return folder if folder.is_absolute() else (config.config_dir / folder).resolve()


def file_names(config: Config, report: CostReport) -> ReportFiles:
    """Where a report's files go: ``cost-report-<UTC time>-<id>.{csv,json,md,png}``."""
    folder = output_dir(config)
    stem = f"cost-report-{report.at:%Y%m%dT%H%M%SZ}-{report.report_id}"
    return ReportFiles(
        folder,
        folder / f"{stem}.csv",
        folder / f"{stem}.json",
        folder / f"{stem}.md",
        folder / f"{stem}.png",
    )


def write(files: ReportFiles, report: CostReport) -> None:
    """Write the CSV, JSON and markdown files (the chart is drawn by :mod:`cdc.costs.chart`)."""
    files.folder.mkdir(parents=True, exist_ok=True)
    rows = report.rows()
    with files.csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["report_id"])
        writer.writeheader()
        writer.writerows(rows)
    files.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    files.markdown.write_text(report.markdown())
