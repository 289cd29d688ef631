"""The cost report's arithmetic (pure: measurements and prices in, report out).

Per table and tier (``hot``: the warehouse table; ``warm`` / ``cold``: its Parquet files):

- **storage cost per month** = bytes / 1e9 (GB means 10^9 bytes) x the tier's price per
  GB-month: hot pays ``costs.warehouse_gb_month``, warm the price of ``costs.warm_class``,
  cold that of ``costs.cold_class`` (``standard_gb_month``, ``infrequent_gb_month`` or
  ``archive_gb_month``);
- **compute cost** of the report's period (since the previous report; the first report: since
  measuring began), on the table's hot row: measured warehouse seconds / 3600 x
  ``costs.compute_hour``; on Snowflake with query history, attributed credits x
  ``costs.credit_price`` instead;
- **trend**: the difference of rows, bytes and costs with the same table and tier in the
  previous stored report (None where it had no such row);
- **tiering saving per month**, per table: what its warm and cold bytes would cost at the hot
  price, minus what they cost in their tiers. Parquet bytes stand in for the bytes the rows
  would take in the warehouse (their compressions differ, so this is an estimate).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cdc.config import CostsConfig
from cdc.costs.credits import Attribution
from warehouse.base import CostReportRow, TableStorage

GB = 1e9  # bytes in a GB (decimal, as object storage and Snowflake bill)
TIERS = ("hot", "warm", "cold")


@dataclass(frozen=True, slots=True)
class TableMeasure:
    """What one table holds in each tier (warm and cold: None when the table isn't tiered)."""

    table: str
    hot: TableStorage
    warm: TableStorage | None = None
    cold: TableStorage | None = None
    kafka_bytes: int | None = None  # the topic's bytes, when the broker tells them

    def tiers(self) -> list[tuple[str, TableStorage]]:
        out = [("hot", self.hot)]
        out += [(t, s) for t, s in (("warm", self.warm), ("cold", self.cold)) if s is not None]
        return out


@dataclass(frozen=True, slots=True)
class Measurement:
    """Everything measured for one report (see :mod:`cdc.costs.measure`)."""

    at: dt.datetime
    since: dt.datetime | None  # the previous report's time (compute is summed from there)
    tables: Sequence[TableMeasure]
    compute: Mapping[tuple[str, str], float]  # (job, table) -> measured seconds
    credits: Attribution | None = None  # Snowflake query history, when it could be read
    notes: Sequence[str] = ()


def tier_price(prices: CostsConfig, tier: str) -> float:
    """Price per GB-month of a tier."""
    if tier == "hot":
        return prices.warehouse_gb_month
    chosen = prices.warm_class if tier == "warm" else prices.cold_class
    by_class = {
        "standard": prices.standard_gb_month,
        "infrequent": prices.infrequent_gb_month,
        "archive": prices.archive_gb_month,
    }
    return by_class[chosen]


def storage_cost(size: int, price_gb_month: float) -> float:
    return size / GB * price_gb_month


def compute_cost(seconds: float, compute_hour: float) -> float:
    return seconds / 3600 * compute_hour


@dataclass(frozen=True, slots=True)
class Line:
    """One table and tier of a report."""

    table: str
    tier: str
    rows: int
    bytes: int
    price_gb_month: float
    storage_cost: float  # per month
    compute_seconds: float  # the period's, hot rows only
    compute_cost: float
    delta_rows: int | None
    delta_bytes: int | None
    delta_storage_cost: float | None
    delta_compute_cost: float | None


@dataclass(frozen=True, slots=True)
class ComputeLine:
    job: str
    table: str
    seconds: float
    cost: float
    credits: float | None = None  # Snowflake query history (None: not read)


@dataclass(frozen=True, slots=True)
class Saving:
    table: str
    tiered_bytes: int
    at_hot_price: float
    in_tiers: float

    @property
    def per_month(self) -> float:
        return self.at_hot_price - self.in_tiers


@dataclass(slots=True)
class CostReport:
    report_id: str
    at: dt.datetime
    since: dt.datetime | None
    previous_id: str | None
    compute_basis: str  # "measured" or "credits"
    lines: list[Line]
    compute: list[ComputeLine]
    savings: list[Saving]
    kafka_bytes: dict[str, int | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def storage_total(self) -> float:
        return sum(line.storage_cost for line in self.lines)

    @property
    def compute_total(self) -> float:
        return sum(c.cost for c in self.compute)

    @property
    def saving_total(self) -> float:
        return sum(s.per_month for s in self.savings)

    def audit_rows(self) -> list[CostReportRow]:
        """The rows stored in ``cost_reports`` (one per table and tier)."""
        out = []
        for x in self.lines:
            out.append(CostReportRow(self.report_id, self.at, x.table, x.tier, x.rows, x.bytes,
                                     x.storage_cost, x.compute_cost))  # fmt: skip
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per table and tier (the table artifact and the CSV)."""
        return [
            {"report_id": self.report_id, "at": self.at.isoformat(), **asdict(x)}
            for x in self.lines
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "at": self.at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "previous_report": self.previous_id,
            "gb": "1e9 bytes",
            "compute_basis": self.compute_basis,
            "lines": [asdict(x) for x in self.lines],
            "compute": [asdict(c) for c in self.compute],
            "savings": [{**asdict(s), "per_month": s.per_month} for s in self.savings],
            "kafka_bytes": self.kafka_bytes,
            "totals": {
                "storage_per_month": self.storage_total,
                "compute": self.compute_total,
                "tiering_saving_per_month": self.saving_total,
            },
            "notes": self.notes,
        }

    def markdown(self) -> str:
        period = f"since {self.since:%Y-%m-%d %H:%M} UTC" if self.since else "since measuring began"
        out = [
            f"# Cost report {self.report_id}",
            "",
            f"{self.at:%Y-%m-%d %H:%M} UTC. Storage per month (GB = 10^9 bytes); compute "
            f"{period} ({self.compute_basis}).",
            "",
            "| table | tier | rows | bytes | storage / month | compute | Δ bytes | Δ storage |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for x in self.lines:
            out.append(
                f"| {x.table} | {x.tier} | {x.rows:,} | {x.bytes:,} | {x.storage_cost:.6f} | "
                f"{x.compute_cost:.6f} | {_delta(x.delta_bytes)} | "
                f"{_delta(x.delta_storage_cost)} |"
            )
        out += ["", "| job | table | seconds | cost | credits |", "|---|---|---:|---:|---:|"]
        for c in self.compute:
            credits = "" if c.credits is None else f"{c.credits:.6f}"
            out.append(f"| {c.job} | {c.table} | {c.seconds:.3f} | {c.cost:.6f} | {credits} |")
        out += ["", "| table | tiered bytes | at hot price | in tiers | saving / month |",
                "|---|---:|---:|---:|---:|"]  # fmt: skip
        for s in self.savings:
            out.append(f"| {s.table} | {s.tiered_bytes:,} | {s.at_hot_price:.6f} | "
                       f"{s.in_tiers:.6f} | {s.per_month:.6f} |")  # fmt: skip
        out += [
            "",
            f"Totals: storage {self.storage_total:.6f} per month, compute "
            f"{self.compute_total:.6f}, tiering saves {self.saving_total:.6f} per month.",
        ]
        out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"


def _delta(value: float | None) -> str:
    if value is None:
        return "new"
    return f"{value:+,}" if isinstance(value, int) else f"{value:+.6f}"


def previous_report(history: Sequence[CostReportRow]) -> list[CostReportRow]:
    """The rows of the newest stored report (empty before the first)."""
    if not history:
        return []
    newest = max(history, key=lambda r: (r.at, r.report_id))
    return [r for r in history if r.report_id == newest.report_id]


def build_report(
    report_id: str,
    measurement: Measurement,
    prices: CostsConfig,
    previous: Sequence[CostReportRow] = (),
) -> CostReport:
    """The report of one measurement at ``prices``, with the trend against ``previous``."""
    by_key = {(r.table, r.tier): r for r in previous}
    use_credits = measurement.credits is not None
    compute = _compute_lines(measurement, prices)
    per_table: dict[str, tuple[float, float]] = {}
    for c in compute:
        seconds, cost = per_table.get(c.table, (0.0, 0.0))
        per_table[c.table] = (seconds + c.seconds, cost + c.cost)
    lines: list[Line] = []
    savings: list[Saving] = []
    for t in measurement.tables:
        tiered = 0
        in_tiers = 0.0
        for tier, usage in t.tiers():
            price = tier_price(prices, tier)
            cost = storage_cost(usage.bytes, price)
            seconds, ccost = per_table.get(t.table, (0.0, 0.0)) if tier == "hot" else (0.0, 0.0)
            before = by_key.get((t.table, tier))
            lines.append(Line(
                t.table, tier, usage.rows, usage.bytes, price, cost, seconds, ccost,
                None if before is None else usage.rows - before.rows,
                None if before is None else usage.bytes - before.bytes,
                None if before is None else cost - before.storage_cost,
                None if before is None else ccost - before.compute_cost,
            ))  # fmt: skip
            if tier != "hot":
                tiered += usage.bytes
                in_tiers += cost
        if t.warm is not None or t.cold is not None:
            hot_price = tier_price(prices, "hot")
            savings.append(Saving(t.table, tiered, storage_cost(tiered, hot_price), in_tiers))
    return CostReport(
        report_id=report_id,
        at=measurement.at,
        since=measurement.since,
        previous_id=previous[0].report_id if previous else None,
        compute_basis="credits" if use_credits else "measured",
        lines=lines,
        compute=compute,
        savings=savings,
        kafka_bytes={t.table: t.kafka_bytes for t in measurement.tables},
        notes=list(measurement.notes),
    )


def _compute_lines(measurement: Measurement, prices: CostsConfig) -> list[ComputeLine]:
    """Per (job, table): measured seconds, and the cost from credits (when read) or time."""
    credits = measurement.credits
    attributed = {} if credits is None else {k: u.credits for k, u in credits.by_table.items()}
    keys = sorted(set(measurement.compute) | set(attributed))
    out = []
    for job, table in keys:
        seconds = float(measurement.compute.get((job, table), 0.0))
        if credits is None:
            out.append(ComputeLine(job, table, seconds, compute_cost(seconds, prices.compute_hour)))
        else:
            used = attributed.get((job, table), 0.0)
            out.append(ComputeLine(job, table, seconds, used * prices.credit_price, used))
    return out
