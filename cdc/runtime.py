"""Wiring: from a validated Config to the running pieces (warehouse, replicator settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdc.config import Config
from cdc.consumer.fitting import override_type
from cdc.consumer.loop import ReplicatorSettings
from cdc.metrics import Metrics, MetricsServer, SlotPoller
from warehouse.base import Warehouse


def open_warehouse(config: Config, *, keep_open: bool = False) -> Warehouse:
    """The warehouse engine named by ``warehouse.type`` (imported only when chosen)."""
    settings = config.warehouse
    if settings.type == "duckdb":
        from warehouse.duckdb.adapter import DuckDBWarehouse

        return DuckDBWarehouse(
            settings.path,
            schema=settings.schema_name,
            keep_open=keep_open,
            lock_timeout_s=settings.lock_timeout_seconds,
            tier_filesystems=_tier_filesystems(config),
        )
    if settings.type == "snowflake":
        from warehouse.snowflake.adapter import SnowflakeWarehouse
        from warehouse.snowflake.settings import SnowflakeSettings

        return SnowflakeWarehouse(
            SnowflakeSettings(
                account=settings.account,
                user=settings.user,
                password=settings.password,
                private_key_path=settings.private_key_path,
                private_key_passphrase=settings.private_key_passphrase,
                role=settings.role,
                warehouse=settings.warehouse,
                database=settings.database,
                schema=settings.schema_name,
                query_tag_prefix=settings.query_tag_prefix,
                host=settings.host,
                port=settings.port,
                protocol=settings.protocol,
                network_timeout=settings.network_timeout_seconds,
                login_timeout=settings.login_timeout_seconds,
            ),
            # read by the tiering mixin (history views over an external stage)
            tier_stage=config.tiering.snowflake_stage,
        )
    raise ValueError(f"unsupported warehouse type {settings.type!r}")  # pragma: no cover


def refused_topics(config: Config) -> dict[str, str]:
    """Topic -> why its table can't be replicated exactly, read from the source's catalog
    before any row moves (empty when the source can't be reached: see type_support)."""
    from cdc.source.type_support import check_source_types

    problems = check_source_types(config) or {}
    return {
        config.topic_for(t): f"table {t.name} is refused before any row was read: "
        + "; ".join(problems[t.name])
        for t in config.tables
        if t.name in problems
    }


def replicator_settings(config: Config, *, check_types: bool = False) -> ReplicatorSettings:
    """The consumer's settings; ``check_types`` reads the source's catalog first and parks
    the tables whose columns can't be replicated exactly (``cdc run``, the replicate flow)."""
    return ReplicatorSettings(
        bootstrap_servers=config.kafka.bootstrap_servers,
        group_id=config.kafka.group_id,
        targets={t.source: config.table_target(t) for t in config.tables},
        topics=_topics(config),
        batch_size=config.consumer.batch_size,
        linger_ms=config.consumer.linger_ms,
        dlq_suffix=config.kafka.dlq_topic_suffix,
        kafka=dict(config.kafka.client_config()),
        contracts={
            t.target_name: contract
            for t in config.tables
            if (contract := config.contract_for(t)) is not None
        },
        overrides={
            t.target_name: {name: override_type(o.type) for name, o in t.columns.items()}
            for t in config.tables
            if t.columns
        },
        refused=refused_topics(config) if check_types else {},
    )


def _topics(config: Config) -> dict[str, tuple[str, ...]]:
    """Topic -> warehouse names of its tables (several when Debezium's sanitised topic names
    of two tables are equal)."""
    out: dict[str, tuple[str, ...]] = {}
    for t in config.tables:
        topic = config.topic_for(t)
        out[topic] = (*out.get(topic, ()), t.target_name)
    return out


@dataclass
class ServedMetrics:
    """The metrics of one ``cdc run``, their HTTP server and the slot poller feeding them."""

    metrics: Metrics
    server: MetricsServer
    poller: SlotPoller

    def close(self) -> None:
        self.poller.close()
        self.server.close()


def serve_metrics(config: Config, port: int) -> ServedMetrics:
    """Start serving ``/metrics`` and ``/health`` on ``metrics.host:port`` and reading the
    slot's lag every ``metrics.slot_poll_seconds`` (raises OSError if the port is taken)."""
    metrics = Metrics(stall_seconds=config.metrics.stall_seconds)
    server = MetricsServer(metrics, config.metrics.host, port).start()
    poller = SlotPoller(
        metrics,
        config.source.conninfo(),
        config.source.slot_name,
        interval_seconds=config.metrics.slot_poll_seconds,
    ).start()
    return ServedMetrics(metrics, server, poller)


def _tier_filesystems(config: Config) -> list[Any]:
    """fsspec filesystems of remote tier targets, for DuckDB to read ``<table>_history``."""
    remote = {
        config.tiering.resolve(t.tiering.target or config.tiering.target, config.config_dir)
        for t in config.tables
        if t.tiering is not None
    }
    remote = {r for r in remote if "://" in r and not r.startswith("file://")}
    if not remote:
        return []
    import fsspec

    out: dict[str, Any] = {}
    for root in sorted(remote):
        fs, _ = fsspec.core.url_to_fs(root, **config.tiering.options())
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        out.setdefault(protocol, fs)
    return list(out.values())
