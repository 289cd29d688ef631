"""Section ``connect``: Kafka Connect, where the Debezium connector runs in production."""

from __future__ import annotations

from pydantic import Field, field_validator

from cdc.config.checks import check_http_url
from warehouse.settings import SectionModel


class ConnectConfig(SectionModel):
    """Kafka Connect, where the Debezium connector runs in production."""

    url: str = Field(
        default="http://127.0.0.1:8083", description="Base URL of the Kafka Connect REST API."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)
