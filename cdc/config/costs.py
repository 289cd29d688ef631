"""Section ``costs``: the prices the cost report uses."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from warehouse.settings import SectionModel


class CostsConfig(SectionModel):
    """Prices the cost report uses (``costs``), in your currency per unit."""

    warehouse_gb_month: float = Field(
        default=0.023,
        ge=0,
        description="Hot tier: warehouse storage per GB-month (Snowflake on-demand is about "
        "23 per TB-month; for a local DuckDB file, what your disk costs).",
    )
    standard_gb_month: float = Field(
        default=0.023, ge=0, description="Object storage, standard class, per GB-month."
    )
    infrequent_gb_month: float = Field(
        default=0.0125, ge=0, description="Object storage, infrequent-access class, per GB-month."
    )
    archive_gb_month: float = Field(
        default=0.004, ge=0, description="Object storage, archive class, per GB-month."
    )
    warm_class: Literal["standard", "infrequent", "archive"] = Field(
        default="infrequent", description="Which object storage price the warm tier pays."
    )
    cold_class: Literal["standard", "infrequent", "archive"] = Field(
        default="archive", description="Which object storage price the cold tier pays."
    )
    compute_hour: float = Field(
        default=3.0,
        ge=0,
        description="Price of one hour of measured statement time (DuckDB: your machine; "
        "Snowflake: credits per hour of the warehouse size times the credit price).",
    )
    credit_price: float = Field(
        default=3.0, ge=0, description="Snowflake: price of one credit (query-history credits)."
    )
    output: str = Field(
        default=".cdc/reports",
        description="Folder for the report's CSV, JSON and PNG chart (relative to the "
        "configuration file's folder).",
    )
