"""Section ``kafka``: the Kafka cluster the connector writes to and the consumer reads from."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from cdc.config.checks import ClientValue, check_topic_part, reveal, wrap_secrets
from warehouse.settings import SectionModel


class KafkaConfig(SectionModel):
    """The Kafka cluster the connector writes to and the consumer reads from."""

    bootstrap_servers: str = Field(
        min_length=1, description="Comma-separated `host:port` list of Kafka brokers."
    )
    group_id: str = Field(
        default="cdc-warehouse",
        min_length=1,
        description="Consumer group of `cdc run`; offsets are stored in the warehouse under it.",
    )
    dlq_topic_suffix: str = Field(
        default=".dlq",
        min_length=1,
        description="Dead-letter topic of a table topic: `<topic><dlq_topic_suffix>`.",
    )
    client: dict[str, ClientValue] = Field(
        default_factory=dict,
        description="Extra librdkafka settings (e.g. `security.protocol`, `sasl.username`) "
        "merged into the consumer and producer configuration. Values whose key contains "
        "password/secret/sasl are secret.",
    )

    @field_validator("client")
    @classmethod
    def _client_secrets(
        cls, value: dict[str, str | int | bool | SecretStr]
    ) -> dict[str, str | int | bool | SecretStr]:
        return wrap_secrets(value)

    @field_validator("dlq_topic_suffix")
    @classmethod
    def _suffix(cls, value: str) -> str:
        return check_topic_part(value)

    def client_config(self) -> dict[str, str | int | bool]:
        """librdkafka settings: ``bootstrap.servers`` plus ``client`` with secrets revealed."""
        settings: dict[str, str | int | bool] = {"bootstrap.servers": self.bootstrap_servers}
        settings.update({key: reveal(value) for key, value in self.client.items()})
        return settings
