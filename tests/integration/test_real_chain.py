"""The whole chain, really running: PostgreSQL -> Debezium -> broker -> consumer -> DuckDB (and
once with Snowflake, on fakesnow's server, as the warehouse)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from stack_support import read_topic, snowflake_warehouse_section

from cdc.demo.shop import SHOP_DDL, SHOP_TABLES
from cdc.demo.workload import ShopWorkload
from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from stack_support import Pipeline

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


def test_random_workload_replicates_exactly_to_snowflake(
    pipeline: Pipeline, fakesnow_server: dict[str, Any]
) -> None:
    """The same chain with Snowflake as the warehouse: fakesnow's server and the real
    connector (what fakesnow can't prove: tests/conformance/test_snowflake_staging.py).
    Every table, mirror mode, ends equal to the source in every column."""
    pipeline.sql(SHOP_DDL)
    workload = ShopWorkload(pipeline.url, seed=12)
    workload.seed(customers=40, products=30)
    section = snowflake_warehouse_section(fakesnow_server, f"CDC_{pipeline.name.upper()}")
    config = pipeline.configure(
        [f"public.{t}" for t in SHOP_TABLES], batch_size=2000, warehouse=section
    )
    assert config.warehouse.type == "snowflake"
    pipeline.start_debezium()
    pipeline.wait_published()
    replicator = ReplicatorThread(config).start()
    stats = workload.run(changes=1500)
    pipeline.wait_published()
    run = replicator.finish()

    assert stats.changes >= 1500
    assert stats.by_kind["delete"] > 10 and stats.by_kind["pk_change"] > 5
    assert run.dead_letters == 0 and not run.parked
    topic = config.topic_for(config.table("customers"))
    messages = read_topic(pipeline.stack.bootstrap_servers, topic)
    assert any(m.value() and PLACEHOLDER in m.value() for m in messages)
    pipeline.assert_equal_to_source()
