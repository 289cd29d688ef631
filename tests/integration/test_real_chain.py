"""The whole chain, really running: PostgreSQL -> Debezium -> broker -> consumer -> DuckDB."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from cdc.demo.shop import SHOP_DDL, SHOP_TABLES
from cdc.demo.workload import ShopWorkload
from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from conftest import Pipeline

pytestmark = pytest.mark.integration

PLACEHOLDER = b"__debezium_unavailable_value"


def _count_in_topic(bootstrap: str, topic: str, needle: bytes) -> tuple[int, int]:
    """(messages, messages containing needle) in partition 0 of a topic."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "inspect"})
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        seen = hits = 0
        while seen < high:
            for m in consumer.consume(1000, timeout=2):
                seen += 1
                if m.value() and needle in m.value():
                    hits += 1
        return seen, hits
    finally:
        consumer.close()


def test_random_workload_replicates_exactly(pipeline: Pipeline) -> None:
    """≥5,000 changes (deletes, PK changes, multi-change transactions, untouched TOAST values)
    while the consumer runs: afterwards every table equals the source, all columns."""
    pipeline.sql(SHOP_DDL)
    workload = ShopWorkload(pipeline.url, seed=11)
    workload.seed(customers=60, products=40)
    config = pipeline.configure([f"public.{t}" for t in SHOP_TABLES], batch_size=2000)
    pipeline.start_debezium()
    pipeline.wait_published()  # snapshot done, Debezium streaming
    replicator = ReplicatorThread(config).start()
    stats = workload.run(changes=6000)
    pipeline.wait_published()
    run = replicator.finish()

    assert stats.changes >= 5000
    assert stats.by_kind["delete"] > 100
    assert stats.by_kind["pk_change"] > 50
    assert run.dead_letters == 0
    # the workload really produced unchanged-TOAST placeholders for the apply path to handle
    _n, toast_hits = _count_in_topic(
        pipeline.stack.bootstrap_servers, config.topic_for(config.table("customers")), PLACEHOLDER
    )
    assert toast_hits > 20
    pipeline.assert_equal_to_source()
