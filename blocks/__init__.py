"""Prefect Blocks: the sections of ``cdc.yaml`` saved by name in Prefect.

Each block holds one validated section (the same pydantic model ``cdc.yaml`` uses, so the
validation and the secrets are the same: ``SecretStr`` fields are stored as Prefect secret
fields and never shown). Register them with ``prefect block register -m blocks``, create them
in the UI or in code (``PostgresSource(settings=...).save("prod")``), and reference one from
``cdc.yaml`` instead of writing the section inline::

    source: {block: cdc-postgresql-source/prod}
    warehouse: {block: cdc-snowflake-warehouse/prod}

The CLI, the service and the flows then share one configuration. Blocks describe settings and
hold no logic. Importing this package installs :func:`load_section` as the loader
``cdc.config`` resolves such references with (``cdc.config.use_section_loader``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block

from cdc.config import ConnectConfig, KafkaConfig, SourceConfig, use_section_loader
from warehouse.duckdb.settings import DuckDBSettings
from warehouse.snowflake.settings import SnowflakeSettings


class PostgresSource(Block):
    """The PostgreSQL database to replicate and the Debezium connector reading it
    (``cdc.yaml`` section ``source``)."""

    _block_type_name = "CDC PostgreSQL source"
    section: ClassVar[str] = "source"
    settings: SourceConfig


class KafkaCluster(Block):
    """The Kafka cluster and the consumer group (section ``kafka``)."""

    _block_type_name = "CDC Kafka cluster"
    section: ClassVar[str] = "kafka"
    settings: KafkaConfig


class DebeziumConnect(Block):
    """Kafka Connect, where the Debezium connector runs in production (section ``connect``)."""

    _block_type_name = "CDC Debezium Connect"
    section: ClassVar[str] = "connect"
    settings: ConnectConfig


class DuckDBWarehouse(Block):
    """A DuckDB file as the warehouse (section ``warehouse``, ``type: duckdb``)."""

    _block_type_name = "CDC DuckDB warehouse"
    section: ClassVar[str] = "warehouse"
    settings: DuckDBSettings


class SnowflakeWarehouse(Block):
    """A Snowflake schema as the warehouse (section ``warehouse``, ``type: snowflake``);
    password or private-key passphrase are secret fields."""

    _block_type_name = "CDC Snowflake warehouse"
    section: ClassVar[str] = "warehouse"
    settings: SnowflakeSettings


BLOCKS: tuple[type[Block], ...] = (
    PostgresSource,
    KafkaCluster,
    DebeziumConnect,
    DuckDBWarehouse,
    SnowflakeWarehouse,
)


def load_section(section: str, ref: str) -> dict[str, Any]:
    """The ``cdc.yaml`` section saved in block ``ref`` (``<block-type-slug>/<name>``), as the
    mapping the section would hold inline (secrets as ``SecretStr``)."""
    if "/" not in ref:
        slugs = [b.get_block_type_slug() for b in BLOCKS if getattr(b, "section", None) == section]
        raise ValueError(
            f"give the block as <block type>/<name>, e.g. {slugs[0]}/{ref} "
            f"(block types for `{section}`: {', '.join(slugs)})"
        )
    block: Any = Block.load(ref)
    kind = type(block)
    if getattr(kind, "section", None) != section:
        raise ValueError(
            f"block {ref!r} is a {kind.__name__}, which holds section "
            f"`{getattr(kind, 'section', '?')}`, not `{section}`"
        )
    dumped: dict[str, Any] = block.settings.model_dump(by_alias=True)
    return dumped


use_section_loader(load_section)
