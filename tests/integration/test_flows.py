"""The Prefect flows on the real chain, run against a temporary local Prefect server
(Prefect's test harness)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from flows.replicate import replicate
from flows.snapshot import snapshot

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_replicate_runs_until_caught_up_and_publishes_an_artifact(
    pipeline: Pipeline, prefect_server: None
) -> None:
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v text)")
    pipeline.sql("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 500) g")
    pipeline.configure(["public.items"], batch_size=200, linger_ms=50)
    pipeline.start_debezium()
    pipeline.wait_published()

    state = replicate(str(pipeline.workdir / "cdc.yaml"), return_state=True)
    assert state.is_completed(), state
    summary = state.result()
    assert summary["events"] == 500 and summary["dead_letters"] == 0 and not summary["parked"]
    assert summary["batches"] >= 3
    pipeline.assert_equal_to_source()

    pipeline.sql("UPDATE items SET v = 'changed' WHERE id <= 10")
    pipeline.sql("DELETE FROM items WHERE id > 490")
    pipeline.wait_published()
    assert replicate(str(pipeline.workdir / "cdc.yaml"))["events"] == 20  # resumes, no replay
    pipeline.assert_equal_to_source()

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    tables = [a for a in artifacts if a.key == "cdc-replicate"]
    assert tables and "items" in str(tables[0].data)


def test_snapshot_flow_bulk_and_incremental_publish_progress_and_summaries(
    pipeline: Pipeline, prefect_server: None
) -> None:
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v text)")
    pipeline.sql("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 2000) g")
    # no heartbeats: their logical messages would move the slot past Debezium's snapshot, and
    # the bulk snapshot's rows (at restart_lsn - 1) would then re-write the 1,500 intact rows
    pipeline.configure(["public.items"], batch_size=500, linger_ms=50, heartbeat_interval_ms=0)
    pipeline.start_debezium()
    pipeline.wait_published()
    config = str(pipeline.workdir / "cdc.yaml")
    replicate(config)
    # damage the warehouse copy, then re-load it with a bulk snapshot
    import duckdb

    with duckdb.connect(str(pipeline.workdir / "warehouse.duckdb")) as con:
        con.execute("DELETE FROM main.items WHERE id > 1500")
    (bulk,) = snapshot(config, ["items"], rows_per_chunk=400)
    assert bulk["rows"] == 2000 and bulk["chunks"] == 6 and bulk["upserted"] == 500
    pipeline.assert_equal_to_source()

    with duckdb.connect(str(pipeline.workdir / "warehouse.duckdb")) as con:
        con.execute("DELETE FROM main.items WHERE id <= 100")
    (incremental,) = snapshot(config, ["items"], method="incremental", timeout_minutes=3)
    assert incremental["tables"] == [{"table": "public.items", "status": "SUCCEEDED",
                                      "rows": 2000}]  # fmt: skip
    pipeline.wait_published()
    assert replicate(config)["events"] >= 2000
    pipeline.assert_equal_to_source()

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    progress = [a for a in artifacts if a.key == "cdc-snapshot-items"]
    assert progress and progress[0].type == "progress" and progress[0].data == 100.0
    summaries = [a for a in artifacts if a.key == "cdc-snapshot"]
    assert len(summaries) >= 2 and any("SUCCEEDED" in str(a.data) for a in summaries)
