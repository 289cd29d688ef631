"""The cost chart: a PNG of the stored reports over time (matplotlib, Agg backend: no display).

Top: storage cost per month, one line per table and tier. Bottom: compute cost of each
report's period, one line per table. :func:`draw` returns the series it plotted, so a test
can check them against the stored reports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from warehouse.base import CostReportRow


@dataclass(frozen=True, slots=True)
class Series:
    label: str  # "table/tier" (storage) or "table" (compute)
    table: str
    tier: str | None  # None: the compute series of a table
    times: tuple[dt.datetime, ...]
    values: tuple[float, ...]


@dataclass(slots=True)
class Chart:
    path: Path
    storage: list[Series] = field(default_factory=list)
    compute: list[Series] = field(default_factory=list)


def series(history: Sequence[CostReportRow]) -> tuple[list[Series], list[Series]]:
    """Storage series per (table, tier) and compute series per table, in time order."""
    storage: dict[tuple[str, str], list[tuple[dt.datetime, float]]] = {}
    compute: dict[str, dict[dt.datetime, float]] = {}
    for r in sorted(history, key=lambda r: (r.at, r.table, r.tier)):
        storage.setdefault((r.table, r.tier), []).append((r.at, r.storage_cost))
        per_report = compute.setdefault(r.table, {})
        per_report[r.at] = per_report.get(r.at, 0.0) + r.compute_cost
    tier_order = {"hot": 0, "warm": 1, "cold": 2}
    s_out = [
        Series(
            f"{table}/{tier}", table, tier, tuple(p[0] for p in points), tuple(p[1] for p in points)
        )
        for (table, tier), points in sorted(
            storage.items(), key=lambda kv: (kv[0][0], tier_order.get(kv[0][1], 9), kv[0][1])
        )
    ]
    c_out = [
        Series(table, table, None, tuple(sorted(points)), tuple(points[t] for t in sorted(points)))
        for table, points in sorted(compute.items())
    ]
    return s_out, c_out


def draw(history: Sequence[CostReportRow], path: Path) -> Chart:
    """Write the chart of ``history`` to ``path`` (PNG) and return what was plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    storage, compute = series(history)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    try:
        for s in storage:
            top.plot(s.times, s.values, marker="o", label=s.label)
        top.set_title("Storage cost per month, by table and tier")
        top.set_ylabel("per month")
        for s in compute:
            bottom.plot(s.times, s.values, marker="o", label=s.label)
        bottom.set_title("Compute cost of each report's period, by table")
        bottom.set_ylabel("per period")
        for ax in (top, bottom):
            if ax.get_lines():
                ax.legend(fontsize="small", loc="upper left")
            ax.grid(True, alpha=0.3)
        fig.autofmt_xdate()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
    return Chart(path, storage, compute)
