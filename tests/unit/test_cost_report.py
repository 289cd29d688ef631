"""The cost report's arithmetic (cdc.costs.report): storage per tier at its price (GB = 1e9
bytes), compute from measured seconds or attributed credits, the trend against the previous
stored report, and the saving of the tiering policy; the chart's series (cdc.costs.chart)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from cdc.config import CostsConfig
from cdc.costs.chart import series
from cdc.costs.credits import Attribution, Usage
from cdc.costs.report import (
    CostReport,
    Line,
    Measurement,
    TableMeasure,
    build_report,
    previous_report,
    tier_price,
)
from warehouse.base import CostReportRow, TableStorage

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
PRICES = CostsConfig(
    warehouse_gb_month=40.0, standard_gb_month=23.0, infrequent_gb_month=12.5,
    archive_gb_month=4.0, warm_class="infrequent", cold_class="archive", compute_hour=3.0,
    credit_price=2.0,
)  # fmt: skip


def measurement(
    at: dt.datetime = T0, since: dt.datetime | None = None, **kw: object
) -> Measurement:
    tables = [
        TableMeasure("orders", TableStorage(1000, 2_000_000_000),
                     TableStorage(400, 500_000_000), TableStorage(100, 250_000_000)),
        TableMeasure("items", TableStorage(10, 262_144)),
    ]  # fmt: skip
    compute = {("apply", "orders"): 7200.0, ("snapshot", "orders"): 1800.0,
               ("apply", "items"): 36.0, ("apply", "gone"): 360.0}  # fmt: skip
    return Measurement(at, since, tables, compute, **kw)  # type: ignore[arg-type]


def line(report: CostReport, table: str, tier: str) -> Line:
    return next(x for x in report.lines if (x.table, x.tier) == (table, tier))


def test_each_tier_pays_its_price_per_decimal_gb_month() -> None:
    assert [tier_price(PRICES, t) for t in ("hot", "warm", "cold")] == [40.0, 12.5, 4.0]
    cheap = PRICES.model_copy(update={"warm_class": "standard", "cold_class": "infrequent"})
    assert [tier_price(cheap, t) for t in ("warm", "cold")] == [23.0, 12.5]
    report = build_report("r1", measurement(), PRICES)
    assert [(x.table, x.tier) for x in report.lines] == [
        ("orders", "hot"),
        ("orders", "warm"),
        ("orders", "cold"),
        ("items", "hot"),
    ]
    assert line(report, "orders", "hot").storage_cost == pytest.approx(80.0)  # 2 GB x 40
    assert line(report, "orders", "warm").storage_cost == pytest.approx(6.25)  # 0.5 GB x 12.5
    assert line(report, "orders", "cold").storage_cost == pytest.approx(1.0)  # 0.25 GB x 4
    assert line(report, "items", "hot").storage_cost == pytest.approx(262_144 / 1e9 * 40)
    assert report.storage_total == pytest.approx(87.25 + 262_144 / 1e9 * 40)


def test_measured_seconds_are_priced_per_compute_hour_on_the_hot_row() -> None:
    report = build_report("r1", measurement(), PRICES)
    hot, warm = line(report, "orders", "hot"), line(report, "orders", "warm")
    assert hot.compute_seconds == 9000.0 and hot.compute_cost == pytest.approx(7.5)  # 2.5 h x 3
    assert warm.compute_cost == 0.0
    assert report.compute_basis == "measured"
    jobs = {(c.job, c.table): c.cost for c in report.compute}
    # a table no longer configured still shows in the compute lines and the total
    want = {("apply", "gone"): 0.3, ("apply", "items"): 0.03, ("apply", "orders"): 6.0,
            ("snapshot", "orders"): 1.5}  # fmt: skip
    assert jobs == pytest.approx(want)
    assert report.compute_total == pytest.approx(7.83)


def test_snowflake_credits_replace_measured_time_when_query_history_was_read() -> None:
    credits = Attribution({("apply", "orders"): Usage(3, 3600.0, 1.5),
                           ("unattributed", "unattributed"): Usage(2, 60.0, 0.25)})  # fmt: skip
    report = build_report("r1", measurement(credits=credits), PRICES)
    assert report.compute_basis == "credits"
    by = {(c.job, c.table): c for c in report.compute}
    assert by[("apply", "orders")].cost == pytest.approx(3.0)  # 1.5 credits x 2
    assert by[("apply", "orders")].seconds == 7200.0  # the measured time is kept alongside
    assert by[("snapshot", "orders")].cost == 0.0  # no credits attributed to it
    assert by[("unattributed", "unattributed")].cost == pytest.approx(0.5)
    assert line(report, "orders", "hot").compute_cost == pytest.approx(3.0)


def test_the_tiering_saving_is_the_tiered_bytes_at_the_hot_price_minus_their_cost() -> None:
    report = build_report("r1", measurement(), PRICES)
    (saving,) = report.savings  # only tiered tables have one
    assert saving.table == "orders" and saving.tiered_bytes == 750_000_000
    assert saving.at_hot_price == pytest.approx(30.0)  # 0.75 GB x 40
    assert saving.in_tiers == pytest.approx(7.25)
    assert saving.per_month == pytest.approx(22.75)
    assert report.saving_total == pytest.approx(22.75)


def test_the_trend_is_the_difference_with_the_previous_report() -> None:
    first = build_report("r1", measurement(), PRICES)
    later = T0 + dt.timedelta(days=7)
    grown = dataclasses.replace(
        measurement(at=later, since=T0),
        tables=[TableMeasure("orders", TableStorage(900, 1_500_000_000),
                             TableStorage(500, 750_000_000), TableStorage(100, 250_000_000)),
                TableMeasure("added", TableStorage(5, 262_144))],
    )  # fmt: skip
    stored = [*first.audit_rows(), CostReportRow("r0", T0 - dt.timedelta(days=7), "orders",
                                                 "hot", 1, 1, 1.0, 1.0)]  # fmt: skip
    previous = previous_report(stored)
    assert {r.report_id for r in previous} == {"r1"}
    second = build_report("r2", grown, PRICES, previous)
    assert second.previous_id == "r1"
    hot = line(second, "orders", "hot")
    assert (hot.delta_rows, hot.delta_bytes) == (-100, -500_000_000)
    assert hot.delta_storage_cost == pytest.approx(-20.0)
    warm = line(second, "orders", "warm")
    assert (warm.delta_rows, warm.delta_bytes) == (100, 250_000_000)
    assert warm.delta_storage_cost == pytest.approx(3.125)
    cold = line(second, "orders", "cold")
    assert (cold.delta_rows, cold.delta_bytes, cold.delta_storage_cost) == (0, 0, 0.0)
    new = line(second, "added", "hot")
    assert (new.delta_rows, new.delta_bytes, new.delta_storage_cost) == (None, None, None)
    assert "new" in second.markdown()


def test_the_outputs_carry_every_line_and_the_totals() -> None:
    report = build_report("r1", measurement(notes=["Kafka topic bytes: not measured"]), PRICES)
    doc = report.to_json()
    assert doc["gb"] == "1e9 bytes" and len(doc["lines"]) == 4
    assert doc["totals"]["tiering_saving_per_month"] == pytest.approx(22.75)
    rows = report.rows()
    assert [r["tier"] for r in rows] == ["hot", "warm", "cold", "hot"]
    assert {r["report_id"] for r in rows} == {"r1"}
    assert len(report.audit_rows()) == 4
    text = report.markdown()
    assert "| orders | warm | 400 | 500,000,000 | 6.250000 |" in text
    assert "Kafka topic bytes: not measured" in text


def test_chart_series_are_one_per_table_and_tier_in_time_order() -> None:
    r1 = build_report("r1", measurement(), PRICES).audit_rows()
    later = T0 + dt.timedelta(days=7)
    r2 = build_report("r2", measurement(at=later, since=T0), PRICES).audit_rows()
    storage, compute = series([*r2, *r1])
    assert [s.label for s in storage] == ["items/hot", "orders/hot", "orders/warm", "orders/cold"]
    orders_hot = storage[1]
    assert orders_hot.times == (T0, later)
    assert orders_hot.values == pytest.approx((80.0, 80.0))
    assert [s.label for s in compute] == ["items", "orders"]
    assert compute[1].values == pytest.approx((7.5, 7.5))
