"""Tiering on the real chain: a pass runs while `cdc run`'s consumer applies changes to the
same DuckDB file, keys whose old versions went to the warm tier keep changing, and at the end
the current versions equal the source, the history view holds every version exactly once,
and the history invariants hold."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

import psycopg
import pytest

from cdc.local.pipeline import ReplicatorThread
from cdc.runtime import open_warehouse
from cdc.tiering.run import tier
from warehouse.base import TerminalWarehouseError

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

KEYS = 20


def _history_versions(pipeline: Pipeline) -> Counter[int]:
    config = pipeline.config_
    wh = open_warehouse(config)
    try:
        rows = wh.history_rows(config.table_target(config.tables[0])).to_pylist()  # type: ignore[attr-defined]
    finally:
        wh.close()
    assert len({(r["id"], r["_cdc_lsn"]) for r in rows}) == len(rows), "a version twice"
    return Counter(r["id"] for r in rows)


def _wait_versions(pipeline: Pipeline, total: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sum(_history_versions(pipeline).values()) >= total:
                return
        except TerminalWarehouseError:  # the consumer didn't create the table yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the consumer did not apply {total} versions within {timeout:.0f} s")


def test_a_pass_next_to_the_running_consumer_loses_and_doubles_nothing(
    pipeline: Pipeline,
) -> None:
    pipeline.sql("CREATE TABLE dim (id int PRIMARY KEY, v int NOT NULL)")
    pipeline.sql(f"INSERT INTO dim SELECT g, 0 FROM generate_series(1, {KEYS}) g")
    config = pipeline.configure(
        [{"name": "public.dim", "mode": "scd2",
          "tiering": {"hot": "2s", "warm": "1h", "retention": "1d"}}],
        batch_size=50,
    )  # fmt: skip
    pipeline.start_debezium()
    pipeline.wait_published()
    consumer = ReplicatorThread(config).start()
    expected: Counter[int] = Counter(range(1, KEYS + 1))  # the snapshot's versions
    with psycopg.connect(pipeline.url, autocommit=True) as conn:
        for step in range(1, 6):
            for key in range(1, KEYS + 1):
                conn.execute("UPDATE dim SET v = %s WHERE id = %s", (step, key))
                expected[key] += 1
    pipeline.wait_published()
    _wait_versions(pipeline, sum(expected.values()))
    time.sleep(2.5)  # the closed versions are now past the 2 s hot window

    wh = open_warehouse(config)
    try:
        [first] = tier(config, wh)  # while the consumer keeps polling the same file
    finally:
        wh.close()
    assert first.to_warm == 5 * KEYS  # every closed version; the current ones stay

    with psycopg.connect(pipeline.url, autocommit=True) as conn:
        for key in range(1, KEYS + 1):  # keys whose history is in the warm tier change again
            conn.execute("UPDATE dim SET v = v + 100 WHERE id = %s", (key,))
            expected[key] += 1
        for key in range(1, KEYS + 1, 4):
            conn.execute("DELETE FROM dim WHERE id = %s", (key,))
        for key in range(1, KEYS + 1, 8):
            conn.execute("INSERT INTO dim VALUES (%s, 7)", (key,))
            expected[key] += 1
    pipeline.wait_published()
    consumer.finish()

    pipeline.assert_equal_to_source()
    assert _history_versions(pipeline) == expected
    wh = open_warehouse(config)
    try:
        target = config.table_target(config.tables[0])
        report = wh.history_report(target)
        assert report.ok, report
        time.sleep(2.5)
        [second] = tier(config, wh)
        assert second.to_warm > 0
    finally:
        wh.close()
    assert _history_versions(pipeline) == expected
    pipeline.assert_equal_to_source()
