"""The whole chain, really running: PostgreSQL -> Debezium -> broker -> consumer -> DuckDB."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from conftest import read_topic

from cdc.demo.shop import SHOP_DDL, SHOP_TABLES
from cdc.demo.workload import ShopWorkload
from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from conftest import Pipeline

pytestmark = pytest.mark.integration

PLACEHOLDER = b"__debezium_unavailable_value"


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
    topic = config.topic_for(config.table("customers"))
    messages = read_topic(pipeline.stack.bootstrap_servers, topic)
    toast_hits = sum(1 for m in messages if m.value() and PLACEHOLDER in m.value())
    assert toast_hits > 20
    pipeline.assert_equal_to_source()
