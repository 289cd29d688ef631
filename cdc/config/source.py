"""Section ``source``: the PostgreSQL database and the Debezium connector reading it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from cdc.config.checks import (
    PropertyValue,
    check_connector_name,
    check_pg_identifier,
    check_slot_name,
    check_topic_part,
    qualified_table,
    reveal,
    wrap_secrets,
)
from cdc.model import TableId
from cdc.names import parse_table
from warehouse.settings import SectionModel


class SourceConfig(SectionModel):
    """The PostgreSQL database to replicate and the Debezium connector that reads it."""

    host: str = Field(description="Host name or IP address of the PostgreSQL server.")
    port: int = Field(default=5432, ge=1, le=65535, description="PostgreSQL TCP port.")
    database: str = Field(description="Name of the database holding the replicated tables.")
    user: str = Field(
        description="User Debezium connects as; needs the REPLICATION attribute and SELECT "
        "on the replicated tables (and CREATE on the database to create the publication)."
    )
    password: SecretStr = Field(
        default=SecretStr(""),
        description="Password of `user`. Use `${PGPASSWORD}` to read it from the environment.",
    )
    slot_name: str = Field(
        default="cdc_slot",
        description="Logical replication slot Debezium reads (created if missing). The slot "
        "keeps WAL on the server until the connector confirms it.",
    )
    publication_name: str = Field(
        default="cdc_pub",
        description="pgoutput publication Debezium reads; created for the configured tables "
        "(`publication.autocreate.mode=filtered`).",
    )
    topic_prefix: str = Field(
        default="cdc",
        description="Debezium `topic.prefix`: changes of `schema.table` go to the Kafka topic "
        "`<topic_prefix>.<schema>.<table>`.",
    )
    snapshot_mode: Literal[
        "initial", "no_data", "never", "always", "when_needed", "initial_only"
    ] = Field(
        default="initial",
        description="Debezium `snapshot.mode`: `initial` copies existing rows once then "
        "streams; `no_data` streams only new changes; `when_needed` snapshots again if the "
        "stored offset is no longer available; `initial_only` snapshots and stops.",
    )
    heartbeat_interval_ms: int = Field(
        default=10_000,
        ge=0,
        description="Debezium heartbeat interval (0 disables). Heartbeats let the slot advance "
        "while the replicated tables are idle, so the server can recycle WAL.",
    )
    max_retained_wal_mb: int = Field(
        default=1024,
        ge=1,
        description="`cdc status` warns when the slot retains more WAL than this many MB "
        "(`pg_current_wal_lsn()` minus the slot's `restart_lsn`).",
    )
    connect_timeout_seconds: int = Field(
        default=10,
        ge=1,
        le=600,
        description="How long the replicator's own connections to PostgreSQL (status, "
        "reconcile, snapshots, type checks) wait for the server before giving up with "
        "exit code 4: a host that drops packets then fails instead of hanging.",
    )
    connector_name: str = Field(
        default="cdc-postgres",
        description="Name of the connector (Kafka Connect connector name, embedded engine name).",
    )
    signal_table: str | None = Field(
        default="public.debezium_signal",
        description="Debezium signal table as `schema.table` (`signal.data.collection`): "
        "inserting an `execute-snapshot` row into it starts an incremental snapshot (`cdc "
        "snapshot --method incremental`). It is created if missing (`id varchar(42) PRIMARY "
        "KEY, type varchar(32) NOT NULL, data varchar(2048)`) before the connector starts, "
        "because it must be in the publication; Debezium adds it there itself. Its own topic "
        "is not replicated. The connector user needs INSERT on it. `null` disables signals.",
    )
    debezium: dict[str, PropertyValue] = Field(
        default_factory=dict,
        description="Extra Debezium connector properties passed through verbatim; they "
        "override the derived ones. Values whose key contains password/secret/sasl are secret.",
    )

    @field_validator("slot_name")
    @classmethod
    def _slot(cls, value: str) -> str:
        return check_slot_name(value)

    @field_validator("publication_name")
    @classmethod
    def _publication(cls, value: str) -> str:
        return check_pg_identifier(value)

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        return check_topic_part(value)

    @field_validator("connector_name")
    @classmethod
    def _connector_name(cls, value: str) -> str:
        return check_connector_name(value)

    @field_validator("signal_table")
    @classmethod
    def _signal_table(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return qualified_table(value, "signal_table", " (or null)")

    @property
    def signal_table_id(self) -> TableId | None:
        """The signal table, or None when signals are disabled."""
        if self.signal_table is None:
            return None
        return parse_table(self.signal_table)

    @field_validator("debezium")
    @classmethod
    def _debezium_secrets(cls, value: dict[str, str | SecretStr]) -> dict[str, str | SecretStr]:
        return wrap_secrets(value)

    def debezium_extras(self) -> dict[str, str]:
        """The extra Debezium properties with secrets revealed (for the connector only)."""
        return {key: str(reveal(value)) for key, value in self.debezium.items()}

    def conninfo(self) -> dict[str, Any]:
        """``psycopg.connect`` arguments for the source (holds the password: never log it)."""
        info: dict[str, Any] = {"host": self.host, "port": self.port, "dbname": self.database,
                                "user": self.user,
                                "connect_timeout": self.connect_timeout_seconds}  # fmt: skip
        if self.password.get_secret_value():
            info["password"] = self.password.get_secret_value()
        return info
