"""Schema drift mid-stream under a workload (issue 8, scenario 8), beyond
tests/faults/test_schema_changes.py: a dropped column, a widened numeric(p,s), and the resume
of a table parked by an incompatible change, done the way its message says."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING

import duckdb
import pytest
from fault_support import Workload, create_load_table, verify

from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults


def _columns(path: str, table: str) -> dict[str, str]:
    with duckdb.connect(path, read_only=True) as con:
        return dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? AND table_schema = 'main'",
                [table],
            ).fetchall()
        )


def test_dropped_column_and_widened_numeric_under_a_workload(pipeline: Pipeline) -> None:
    """Scenario 8 (drop column, widen numeric): while a workload writes, a column is dropped
    at the source and a numeric(8,2) widened to numeric(20,6). The warehouse keeps the dropped
    column (history is not destroyed): rows inserted after the drop get NULL there, the others
    keep their value from before the drop, also when updated after it; the widened column
    becomes DECIMAL(20,6) and keeps every digit. verify() compares the source's columns (the
    extra warehouse column is checked explicitly here)."""
    create_load_table(pipeline, "items")
    pipeline.sql(
        "CREATE TABLE drifting (id int PRIMARY KEY, price numeric(8,2), legacy text, n int)"
    )
    pipeline.sql(
        "INSERT INTO drifting SELECT g, g + 0.25, 'old ' || g, g FROM generate_series(1, 40) g"
    )
    config = pipeline.configure(["public.items", "public.drifting"], linger_ms=50)
    pipeline.start_debezium()
    replicator = ReplicatorThread(config).start()
    pipeline.wait_published()
    replicator.wait_caught_up()
    path = str(config.warehouse.path)

    with Workload(pipeline.url, "items", rate=40):
        pipeline.sql("ALTER TABLE drifting DROP COLUMN legacy")
        pipeline.sql("UPDATE drifting SET n = n + 1000 WHERE id <= 10")
        pipeline.sql("INSERT INTO drifting VALUES (41, 41.5, 41)")
        pipeline.sql("ALTER TABLE drifting ALTER COLUMN price TYPE numeric(20,6)")
        pipeline.sql(
            "INSERT INTO drifting VALUES (42, 12345678901234.123456, 42), (43, 0.000001, 43)"
        )
        pipeline.sql("UPDATE drifting SET price = price * 1000000 + 0.123456 WHERE id <= 5")
        pipeline.sql("DELETE FROM drifting WHERE id BETWEEN 30 AND 32")
        time.sleep(1)
    pipeline.wait_published()
    stats = replicator.finish()

    assert stats.dead_letters == 0 and not stats.parked, stats.parked
    types = _columns(path, "drifting")
    assert types["price"] == "DECIMAL(20,6)"
    assert "legacy" in types  # kept, not dropped
    with duckdb.connect(path, read_only=True) as con:
        legacy = dict(con.execute("SELECT id, legacy FROM drifting").fetchall())
    # rows inserted after the drop have NULL there; the others keep the last value the source
    # had before the drop, also when they were updated afterwards (the column is no longer
    # maintained: an update only writes the columns its event carries)
    assert all(legacy[i] is None for i in (41, 42, 43)), legacy
    assert all(legacy[i] == f"old {i}" for i in (1, 5, 10, 11, 20, 40)), legacy
    verify(pipeline)
    pipeline.stack.stop_debezium(kill=True)  # its graceful stop costs ~30 s


def test_parked_table_resumes_after_the_documented_action(pipeline: Pipeline) -> None:
    """Scenario 8 (incompatible change): a text column becomes integer under a workload on
    another table. The table parks with a message naming the action (recreate the target
    table and re-snapshot it); doing exactly that (drop the warehouse table, `cdc snapshot`
    it, `cdc run` again) makes it flow again, the later changes included: verify()."""
    create_load_table(pipeline, "items")
    pipeline.sql("CREATE TABLE breaking (id int PRIMARY KEY, code text)")
    pipeline.sql("INSERT INTO breaking SELECT g, 'c' || g FROM generate_series(1, 30) g")
    config = pipeline.configure(["public.items", "public.breaking"], linger_ms=50)
    cdc_yaml = str(pipeline.workdir / "cdc.yaml")
    pipeline.start_debezium()
    replicator = ReplicatorThread(config).start()
    pipeline.wait_published()
    replicator.wait_caught_up()

    with Workload(pipeline.url, "items", rate=40):
        pipeline.sql("ALTER TABLE breaking ALTER COLUMN code TYPE integer USING length(code)")
        pipeline.sql("INSERT INTO breaking VALUES (31, 7)")
        pipeline.sql("UPDATE breaking SET code = code + 10 WHERE id <= 5")
        time.sleep(1)
    pipeline.wait_published()
    stats = replicator.finish()
    topic = config.topic_for(config.table("breaking"))
    assert set(stats.parked) == {topic}
    reason = stats.parked[topic]
    assert "recreate the target table and re-snapshot it" in reason, reason

    # the action the message names
    with duckdb.connect(str(config.warehouse.path)) as con:
        con.execute("DROP TABLE breaking")
    for args in (
        ["snapshot", "breaking", "-c", cdc_yaml],
        ["run", "--config", cdc_yaml, "--until-caught-up"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "cdc", *args], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"cdc {args}: {done.returncode}\n{done.stderr[-3000:]}"
        assert "parked" not in done.stdout + done.stderr, done.stderr[-3000:]
    pipeline.sql("UPDATE breaking SET code = 99 WHERE id = 31")  # it flows again
    pipeline.wait_published()
    ReplicatorThread(config).start().finish()
    assert _columns(str(config.warehouse.path), "breaking")["code"] == "INTEGER"
    verify(pipeline)
    pipeline.stack.stop_debezium(kill=True)  # its graceful stop costs ~30 s
