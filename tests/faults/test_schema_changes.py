"""Schema changes at the source, mid-stream, on the real chain (architecture.md §4.7):
compatible ones are applied to the warehouse table; an incompatible one parks that table with a
clear error while the other tables flow on, and its offsets stay before the change."""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import pytest
from fault_support import verify

from cdc.compare import compare_rows, source_connection, source_rows
from cdc.local.pipeline import ReplicatorThread
from cdc.runtime import open_warehouse

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults


def _column_types(path: str, table: str) -> dict[str, str]:
    with duckdb.connect(path, read_only=True) as con:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
            [table],
        ).fetchall()
    return dict(rows)


def test_added_and_widened_columns_follow_the_source(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE evolving (id int PRIMARY KEY, price numeric(6,2), name varchar(10), "
        "n smallint)"
    )
    pipeline.sql(
        "INSERT INTO evolving SELECT g, g + 0.5, 'n' || g, g FROM generate_series(1, 50) g"
    )
    config = pipeline.configure(["public.evolving"], linger_ms=50)
    pipeline.start_debezium()
    replicator = ReplicatorThread(config).start()
    pipeline.wait_published()
    replicator.wait_caught_up()

    pipeline.sql("ALTER TABLE evolving ADD COLUMN note text DEFAULT 'fresh'")
    pipeline.sql("UPDATE evolving SET note = 'set ' || id WHERE id <= 10")
    pipeline.sql("ALTER TABLE evolving ALTER COLUMN price TYPE numeric(14,4)")
    pipeline.sql("ALTER TABLE evolving ALTER COLUMN name TYPE varchar(60)")
    pipeline.sql("ALTER TABLE evolving ALTER COLUMN n TYPE bigint")
    pipeline.sql(
        "INSERT INTO evolving VALUES (100, 1234567890.1234, repeat('w', 60), 9000000000, 'new')"
    )
    pipeline.sql("UPDATE evolving SET price = price * 3, n = n * 1000000000 WHERE id <= 20")
    pipeline.sql("DELETE FROM evolving WHERE id BETWEEN 30 AND 35")
    pipeline.wait_published()
    stats = replicator.finish()

    assert stats.dead_letters == 0 and not stats.parked
    verify(pipeline)  # every column, the new one included
    types = _column_types(str(config.warehouse.path), "evolving")
    assert types["note"] == "VARCHAR"
    assert types["price"] == "DECIMAL(14,4)"  # widened, still exact
    assert types["n"] == "BIGINT"


def test_incompatible_change_parks_only_that_table(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE steady (id int PRIMARY KEY, v int)")
    pipeline.sql("CREATE TABLE breaking (id int PRIMARY KEY, code text)")
    pipeline.sql("INSERT INTO steady SELECT g, g FROM generate_series(1, 20) g")
    pipeline.sql("INSERT INTO breaking SELECT g, 'c' || g FROM generate_series(1, 20) g")
    config = pipeline.configure(["public.steady", "public.breaking"], linger_ms=50)
    pipeline.start_debezium()
    replicator = ReplicatorThread(config).start()
    pipeline.wait_published()
    replicator.wait_caught_up()
    before_change = _breaking_rows(str(config.warehouse.path))

    # text -> integer can't be followed without losing data
    pipeline.sql("ALTER TABLE breaking ALTER COLUMN code TYPE integer USING length(code)")
    pipeline.sql("INSERT INTO breaking VALUES (21, 7)")
    for i in range(1, 11):
        pipeline.sql("UPDATE steady SET v = v + 100 WHERE id = %s", [i])
    pipeline.sql("INSERT INTO steady VALUES (21, 21)")
    pipeline.wait_published()
    stats = replicator.finish()

    breaking_topic = config.topic_for(config.table("breaking"))
    steady_topic = config.topic_for(config.table("steady"))
    assert set(stats.parked) == {breaking_topic}
    reason = stats.parked[breaking_topic]
    assert "'breaking'" in reason and "'code'" in reason and "re-snapshot" in reason
    assert stats.dead_letters == 0  # parked, not dropped: nothing was dead-lettered

    # the other table flowed on and is exact
    warehouse = open_warehouse(config)
    try:
        with source_connection(pipeline.url) as conn:
            key, types, rows = source_rows(conn, config.table("steady").source)
        steady = compare_rows(
            "steady",
            key,
            types,
            rows,
            warehouse.fetch_table(config.table_target(config.table("steady"))),
        )
        offsets = warehouse.load_offsets(config.kafka.group_id)
    finally:
        warehouse.close()
    assert steady.diffs == 0, steady.describe()
    # the parked table is untouched and its offset did not pass the change
    assert _breaking_rows(str(config.warehouse.path)) == before_change
    assert offsets[(breaking_topic, 0)] <= 20 < offsets[(steady_topic, 0)]


def _breaking_rows(path: str) -> list[tuple[object, ...]]:
    with duckdb.connect(path, read_only=True) as con:
        return con.execute("SELECT * FROM breaking ORDER BY id").fetchall()


def test_a_table_without_primary_key_is_parked_and_the_others_flow(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE keyed (id int PRIMARY KEY, v int)")
    pipeline.sql("CREATE TABLE keyless (msg text)")
    pipeline.sql("INSERT INTO keyed VALUES (1, 1)")
    pipeline.sql("INSERT INTO keyless VALUES ('a'), ('b')")
    config = pipeline.configure(["public.keyed", "public.keyless"], linger_ms=50)
    pipeline.start_debezium()
    pipeline.wait_published()
    pipeline.sql("INSERT INTO keyed VALUES (2, 2)")
    pipeline.sql("INSERT INTO keyless VALUES ('c')")
    stats = pipeline.replicate_until_caught_up()

    keyless_topic = config.topic_for(config.table("keyless"))
    assert set(stats.parked) == {keyless_topic}
    assert "no primary key" in stats.parked[keyless_topic]
    # refused before any row moved (REPLICA IDENTITY is not FULL), with the statement to run
    assert 'ALTER TABLE "public"."keyless" REPLICA IDENTITY FULL;' in stats.parked[keyless_topic]
    warehouse = open_warehouse(config)
    try:
        keyed = warehouse.fetch_table(config.table_target(config.table("keyed")))
        offsets = warehouse.load_offsets(config.kafka.group_id)
    finally:
        warehouse.close()
    assert sorted(r["id"] for r in keyed) == [1, 2]
    assert (keyless_topic, 0) not in offsets  # nothing of it was consumed for good
