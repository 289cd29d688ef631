"""Wiring: from a validated Config to the running pieces (warehouse, replicator settings,
metrics). :func:`open_warehouse` lives in :mod:`cdc.warehouses`, below the modules that use it."""

from __future__ import annotations

from dataclasses import dataclass

from cdc.config import Config
from cdc.consumer.fitting import override_type
from cdc.consumer.settings import ReplicatorSettings
from cdc.metrics import Metrics, MetricsServer, SlotPoller
from cdc.warehouses import open_warehouse

__all__ = [
    "ServedMetrics",
    "open_warehouse",
    "refused_topics",
    "replicator_settings",
    "serve_metrics",
]


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
