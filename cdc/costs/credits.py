"""Snowflake credits per table from query history (pure).

Every statement the Snowflake adapter runs carries a JSON ``QUERY_TAG``
``{"app": <query_tag_prefix>, "job": "apply", "table": "orders"}``
(:meth:`warehouse.snowflake.SnowflakeSettings.query_tag`). A query's credits are estimated as
its execution time times the credits per hour of its warehouse's size: X-Small 1, Small 2,
Medium 4, Large 8, X-Large 16, 2X-Large 32, 3X-Large 64, 4X-Large 128, 5X-Large 256,
6X-Large 512. This is the warehouse time the query used; Snowflake bills a running warehouse
per second (60 s at least after a resume) whether one query or ten run on it, and cloud
services separately, so the sum is an attribution, not the invoice.

Queries whose tag is missing, not JSON, or from another app are counted as *unattributed*
(their credits too). A query without a warehouse size (it ran in cloud services only) has
no warehouse credits; one with a size we don't know is counted in ``unpriced``.

On a real account the rows come from ``SNOWFLAKE.ACCOUNT_USAGE.QUERY_HISTORY`` (read by
:meth:`warehouse.base.Warehouse.credit_usage`; it lags up to 45 minutes). fakesnow has no
``ACCOUNT_USAGE``, so the attribution is tested on recorded sample rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CREDITS_PER_HOUR: dict[str, int] = {
    "XSMALL": 1, "SMALL": 2, "MEDIUM": 4, "LARGE": 8, "XLARGE": 16, "2XLARGE": 32,
    "3XLARGE": 64, "4XLARGE": 128, "5XLARGE": 256, "6XLARGE": 512,
}  # fmt: skip
_ALIASES = {"XXLARGE": "2XLARGE", "XXXLARGE": "3XLARGE", "XXXXLARGE": "4XLARGE"}

UNATTRIBUTED = ("unattributed", "unattributed")
NO_TABLE = "(bookkeeping)"  # our statements that work on no table (offsets, registry...)


def credits_per_hour(size: str | None) -> int | None:
    """Credits per hour of a warehouse size as QUERY_HISTORY spells it (``X-Small``,
    ``2X-Large``...; case, dashes, underscores and spaces ignored); None: unknown."""
    if size is None:
        return None
    name = "".join(ch for ch in size.upper() if ch not in "-_ ")
    return CREDITS_PER_HOUR.get(_ALIASES.get(name, name))


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """The columns of one QUERY_HISTORY row that the attribution uses."""

    query_tag: str | None
    warehouse_size: str | None
    execution_ms: float  # EXECUTION_TIME, in milliseconds

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> QueryRecord:
        """From a QUERY_HISTORY row as a mapping (column names in any case)."""
        upper = {str(k).upper(): v for k, v in row.items()}
        return cls(
            query_tag=upper.get("QUERY_TAG") or None,
            warehouse_size=upper.get("WAREHOUSE_SIZE") or None,
            execution_ms=float(upper.get("EXECUTION_TIME") or 0),
        )


@dataclass(slots=True)
class Usage:
    queries: int = 0
    seconds: float = 0.0
    credits: float = 0.0


@dataclass(slots=True)
class Attribution:
    """Credits per ``(job, table)``; foreign or unparsable tags under :data:`UNATTRIBUTED`."""

    by_table: dict[tuple[str, str], Usage] = field(default_factory=dict)
    unpriced: int = 0  # queries on a warehouse size not in CREDITS_PER_HOUR

    @property
    def total_credits(self) -> float:
        return sum(u.credits for u in self.by_table.values())

    def table_credits(self) -> dict[str, float]:
        """Credits per table over every job (unattributed and bookkeeping included)."""
        out: dict[str, float] = {}
        for (_job, table), usage in self.by_table.items():
            out[table] = out.get(table, 0.0) + usage.credits
        return out


def owner(tag: str | None, app: str) -> tuple[str, str] | None:
    """``(job, table)`` of one of our query tags; None for a missing, unparsable or foreign
    tag."""
    if not tag:
        return None
    try:
        doc = json.loads(tag)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("app") != app or not isinstance(doc.get("job"), str):
        return None
    table = doc.get("table")
    return doc["job"], table if isinstance(table, str) and table else NO_TABLE


def attribute(records: Iterable[QueryRecord], app: str) -> Attribution:
    """Sum each query's execution seconds and credits under its tag's ``(job, table)``."""
    out = Attribution()
    for r in records:
        key = owner(r.query_tag, app) or UNATTRIBUTED
        rate = credits_per_hour(r.warehouse_size)
        if r.warehouse_size is not None and rate is None:
            out.unpriced += 1
        seconds = r.execution_ms / 1000
        usage = out.by_table.setdefault(key, Usage())
        usage.queries += 1
        usage.seconds += seconds
        usage.credits += seconds / 3600 * (rate or 0)
    return out
