"""The cost chart (cdc.costs.chart) reads well for one report (bars per table, stacked by tier,
on a table axis) and for several (one line per table and tier over the reports' own span, not
a multi-year date axis). Checked on the matplotlib axes and on the PNG written; no server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib.dates as mdates
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pytest

from cdc.costs.chart import draw, figure
from warehouse.base import CostReportRow

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
PNG = b"\x89PNG\r\n\x1a\n"
# (table, tier) -> (storage cost per month, compute cost of the period)
FIRST = {
    ("orders", "hot"): (80.0, 7.5),
    ("orders", "warm"): (6.0, 0.0),
    ("orders", "cold"): (1.5, 0.0),
    ("items", "hot"): (0.01, 0.03),
    ("customers_with_a_long_name", "hot"): (2.0, 0.5),
}


def report(
    report_id: str, at: dt.datetime, lines: dict[tuple[str, str], tuple[float, float]]
) -> list[CostReportRow]:
    return [
        CostReportRow(report_id, at, table, tier, 1000, 1_000_000, storage, compute)
        for (table, tier), (storage, compute) in lines.items()
    ]


def test_one_report_is_bars_per_table_stacked_by_tier(tmp_path: Path) -> None:
    history = report("r1", T0, FIRST)
    fig, chart = figure(history)
    try:
        top, bottom = fig.axes
        assert chart.kind == "bars"
        tables = ["customers_with_a_long_name", "items", "orders"]
        assert [t.get_text() for t in bottom.get_xticklabels()] == tables
        # one bar group per tier, hot at the bottom of each stack
        assert [c.get_label() for c in top.containers] == ["hot", "warm", "cold"]
        totals = [sum(c.patches[i].get_height() for c in top.containers) for i in range(3)]
        assert totals == pytest.approx([2.0, 0.01, 87.5])
        hot, warm, cold = (c.patches[2] for c in top.containers)  # orders
        assert (hot.get_y(), hot.get_height()) == pytest.approx((0.0, 80.0))
        assert warm.get_y() == pytest.approx(80.0)
        assert cold.get_y() == pytest.approx(86.0)
        assert [t.get_text() for t in top.texts] == ["2", "0.01", "87.5"]  # the totals
        assert top.get_ylim()[1] > 87.5 * 1.1  # room above the tallest stack for its label
        assert bottom.get_ylim()[1] > 7.5 * 1.1
        [compute] = bottom.containers
        assert [p.get_height() for p in compute.patches] == pytest.approx([0.5, 0.03, 7.5])
        # a categorical axis around the three tables, not a date axis with one dot per series
        assert not top.get_lines() and not bottom.get_lines()
        low, high = bottom.get_xlim()
        assert -1 < low < 0 and 2 < high < 3
        assert "2026-12-01 09:00" in top.get_title()
    finally:
        plt.close(fig)

    drawn = draw(history, tmp_path / "out" / "chart.png")
    assert drawn.path == tmp_path / "out" / "chart.png" and drawn.kind == "bars"
    assert drawn.path.read_bytes()[:8] == PNG
    height, width, _ = mpimg.imread(drawn.path).shape
    assert (width, height) == (1000, 800)
    assert [s.label for s in drawn.storage][:2] == ["customers_with_a_long_name/hot", "items/hot"]


def test_several_reports_are_a_trend_over_their_own_span(tmp_path: Path) -> None:
    later = T0 + dt.timedelta(days=7)
    second = {**FIRST, ("orders", "hot"): (90.0, 3.0)}
    history = [*report("r1", T0, FIRST), *report("r2", later, second)]
    fig, chart = figure(history)
    try:
        top, bottom = fig.axes
        assert chart.kind == "trend"
        assert not top.containers  # no bars
        lines = {line.get_label(): line for line in top.get_lines()}
        assert len(lines) == len(FIRST)
        orders_hot = lines["orders/hot"]
        assert list(orders_hot.get_ydata()) == pytest.approx([80.0, 90.0])
        assert [mdates.num2date(x) for x in orders_hot.get_xdata(orig=False)] == [T0, later]
        compute = {line.get_label(): list(line.get_ydata()) for line in bottom.get_lines()}
        assert compute["orders"] == pytest.approx([7.5, 3.0])
        # the axis spans the week between the reports (padded), not years
        low, high = top.get_xlim()
        assert mdates.date2num(T0) - 1 < low < mdates.date2num(T0)
        assert mdates.date2num(later) < high < mdates.date2num(later) + 1
    finally:
        plt.close(fig)

    drawn = draw(history, tmp_path / "chart.png")
    assert drawn.kind == "trend" and drawn.path.read_bytes()[:8] == PNG
    assert {s.times for s in drawn.storage} == {(T0, later)}


def test_no_report_yet_still_writes_a_chart(tmp_path: Path) -> None:
    drawn = draw([], tmp_path / "chart.png")
    assert drawn.kind == "empty" and drawn.storage == [] and drawn.compute == []
    assert drawn.path.read_bytes()[:8] == PNG
