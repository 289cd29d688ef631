"""Section ``metrics``: Prometheus metrics and the health endpoint of `cdc run`."""

from __future__ import annotations

from pydantic import Field

from warehouse.settings import SectionModel


class MetricsConfig(SectionModel):
    """Prometheus metrics and the health endpoint of `cdc run`."""

    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="TCP port serving `/metrics` and `/health` (`null`: not served; 0: any "
        "free port, logged).",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the endpoint binds to (`0.0.0.0` exposes it on every interface).",
    )
    slot_poll_seconds: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="How often the replication slot's lag is read from `pg_replication_slots`.",
    )
    stall_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="`/health` answers 503 when the loop made no progress (poll, batch, retry) "
        "for this long.",
    )
