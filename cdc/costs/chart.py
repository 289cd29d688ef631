"""The cost chart: a PNG of the stored reports (matplotlib, Agg backend: no display).

One report (the first one, or several made at the same moment) is drawn as bars: top, the
storage cost per month of each table, stacked by tier (hot, warm, cold); bottom, the compute
cost of the report's period per table. Two reports or more are drawn as a trend over the
reports' own time span: top, storage cost per month, one line per table and tier; bottom,
compute cost of each report's period, one line per table.

:func:`figure` builds the figure (a test can inspect its axes), :func:`draw` writes it and
returns the series it plotted, so a test can check them against the stored reports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from warehouse.base import CostReportRow

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TIERS = ("hot", "warm", "cold")
TIER_COLOURS = {"hot": "#d95f02", "warm": "#e6ab02", "cold": "#1f78b4"}
ChartKind = Literal["bars", "trend", "empty"]


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
    kind: ChartKind = "trend"  # bars: one report; trend: two or more; empty: none


def _tier_rank(tier: str) -> int:
    return TIERS.index(tier) if tier in TIERS else len(TIERS)


def series(history: Sequence[CostReportRow]) -> tuple[list[Series], list[Series]]:
    """Storage series per (table, tier) and compute series per table, in time order."""
    storage: dict[tuple[str, str], list[tuple[dt.datetime, float]]] = {}
    compute: dict[str, dict[dt.datetime, float]] = {}
    for r in sorted(history, key=lambda r: (r.at, r.table, r.tier)):
        storage.setdefault((r.table, r.tier), []).append((r.at, r.storage_cost))
        per_report = compute.setdefault(r.table, {})
        per_report[r.at] = per_report.get(r.at, 0.0) + r.compute_cost
    s_out = [
        Series(
            f"{table}/{tier}", table, tier, tuple(p[0] for p in points), tuple(p[1] for p in points)
        )
        for (table, tier), points in sorted(
            storage.items(), key=lambda kv: (kv[0][0], _tier_rank(kv[0][1]), kv[0][1])
        )
    ]
    c_out = [
        Series(table, table, None, tuple(sorted(points)), tuple(points[t] for t in sorted(points)))
        for table, points in sorted(compute.items())
    ]
    return s_out, c_out


def chart_kind(history: Sequence[CostReportRow]) -> ChartKind:
    reports = {r.at for r in history}
    return "empty" if not reports else "bars" if len(reports) == 1 else "trend"


def _money(value: float) -> str:
    return f"{value:.3g}" if value else "0"


def _bars(top: Axes, bottom: Axes, storage: list[Series], compute: list[Series]) -> None:
    """One report: storage stacked by tier per table (top), compute per table (bottom)."""
    tables = sorted({s.table for s in storage} | {s.table for s in compute})
    x = list(range(len(tables)))
    value = {(s.table, s.tier): s.values[-1] for s in storage}
    base = [0.0] * len(tables)
    tiers = sorted({s.tier or "" for s in storage}, key=lambda t: (_tier_rank(t), t))
    for tier in tiers:
        heights = [value.get((t, tier), 0.0) for t in tables]
        top.bar(x, heights, bottom=base, label=tier, color=TIER_COLOURS.get(tier), width=0.6)
        base = [b + h for b, h in zip(base, heights, strict=True)]
    for i, total in enumerate(base):
        top.annotate(_money(total), (i, total), ha="center", va="bottom", fontsize="small")
    at = storage[0].times[-1] if storage else compute[0].times[-1]
    top.set_title(f"Storage cost per month, by table and tier (report of {at:%Y-%m-%d %H:%M})")
    top.set_ylabel("per month")
    cost = {s.table: s.values[-1] for s in compute}
    heights = [cost.get(t, 0.0) for t in tables]
    bars = bottom.bar(x, heights, color="#7570b3", width=0.6)
    bottom.bar_label(bars, labels=[_money(h) for h in heights], fontsize="small")
    bottom.set_title("Compute cost of the report's period, by table")
    bottom.set_ylabel("per period")
    rotation = 30 if len(tables) > 4 else 0
    for ax, tallest in ((top, max(base, default=0.0)), (bottom, max(heights, default=0.0))):
        ax.set_xticks(x, tables, rotation=rotation, ha="right" if rotation else "center")
        # room for the value labels (margins can't: a stacked bar's base is a sticky edge)
        ax.set_ylim(0, tallest * 1.15 or 1.0)
        ax.grid(True, axis="y", alpha=0.3)
    if tiers:
        top.legend(fontsize="small", loc="upper right", title="tier")


def _trend(top: Axes, bottom: Axes, storage: list[Series], compute: list[Series]) -> None:
    """Two reports or more: one line per table and tier (top) and per table (bottom)."""
    import matplotlib.dates as mdates

    for s in storage:
        top.plot(s.times, s.values, marker="o", label=s.label)  # type: ignore[arg-type]
    top.set_title("Storage cost per month, by table and tier")
    top.set_ylabel("per month")
    for s in compute:
        bottom.plot(s.times, s.values, marker="o", label=s.label)  # type: ignore[arg-type]
    bottom.set_title("Compute cost of each report's period, by table")
    bottom.set_ylabel("per period")
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    for ax in (top, bottom):
        ax.xaxis.set_major_locator(locator)
        formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_formatter(formatter)
        ax.margins(x=0.05)  # the axis spans the reports, a little padded
        if ax.get_lines():
            ax.legend(fontsize="small", loc="upper left")
        ax.grid(True, alpha=0.3)


def figure(history: Sequence[CostReportRow]) -> tuple[Figure, Chart]:
    """The chart of ``history`` as a matplotlib figure (not saved; close it), with what was
    plotted (its ``path`` is empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    storage, compute = series(history)
    kind = chart_kind(history)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    if kind == "bars":
        _bars(top, bottom, storage, compute)
    elif kind == "trend":
        _trend(top, bottom, storage, compute)
    else:
        top.set_title("No cost report stored yet")
        for ax in (top, bottom):
            ax.set_axis_off()
    fig.tight_layout()
    return fig, Chart(Path(), storage, compute, kind)


def draw(history: Sequence[CostReportRow], path: Path) -> Chart:
    """Write the chart of ``history`` to ``path`` (PNG) and return what was plotted."""
    fig, chart = figure(history)  # selects the Agg backend first
    import matplotlib.pyplot as plt

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
    chart.path = path
    return chart
