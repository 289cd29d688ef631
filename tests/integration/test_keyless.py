"""Tables without a primary key on the real chain: PostgreSQL -> Debezium -> broker -> consumer
-> warehouse, on DuckDB and on Snowflake (fakesnow's server, the real connector).

``logs`` has no primary key and ``REPLICA IDENTITY FULL``: it holds equal rows (duplicates,
NULLs, a NaN, jsonb) before Debezium starts (its initial snapshot reads them), then gets
inserts of more copies, deletes and updates of ONE of two equal rows (by ``ctid``), in
transactions of several statements. The warehouse ends equal to the source as a multiset, and
neither a second consumer run nor a replay of the whole topic by a new consumer group changes
it. ``loose`` has no primary key and the default REPLICA IDENTITY: it is refused before any of
its rows is read, with the ``ALTER TABLE`` that fixes it, while ``logs`` flows.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import duckdb
import psycopg
import pytest
import snowflake.connector
from stack_support import engine_warehouse

from cdc.config import Config
from cdc.consumer.settings import RunStats
from cdc.local.pipeline import ReplicatorThread, write_stack_config
from cdc.reconcile.quiet import QuietReplaceError, full_xid
from cdc.reconcile.run import ReconcileSettings, reconcile, reload_keyless
from cdc.runtime import open_warehouse
from cdc.snapshot.bulk import BulkOptions, SnapshotError, check_request, snapshot_table
from cdc.source.type_support import table_problems
from warehouse.duckdb.settings import DuckDBSettings
from warehouse.snowflake.settings import SnowflakeSettings

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

TABLES: list[str | dict[str, Any]] = ["public.logs", "public.loose"]
ALTER = 'ALTER TABLE "public"."loose" REPLICA IDENTITY FULL;'
FAST = ReconcileSettings(lag_timeout=30)


def engine_sql(config: Config, text: str) -> None:
    """SQL on the warehouse engine itself (``{t}``: the quoted ``logs`` table)."""
    section = config.warehouse
    if isinstance(section, SnowflakeSettings):
        text = text.replace("{t}", f'"{section.schema_name}"."logs"')
        with snowflake.connector.connect(**section.connect_kwargs("test", None)) as conn:
            conn.cursor().execute(text)
        return
    assert isinstance(section, DuckDBSettings)
    con = duckdb.connect(str(section.path))
    try:
        con.execute(text.replace("{t}", f'"{section.schema_name}"."logs"'))
    finally:
        con.close()


def one(value: Any) -> Hashable:
    """A value as compared: NaN equal to NaN, JSON by its parsed value."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, str) and value[:1] in "{[":
        return json.dumps(json.loads(value), sort_keys=True)
    return value  # type: ignore[no-any-return]


def bag(rows: list[tuple[Any, ...]]) -> Counter[Hashable]:
    return Counter(tuple(one(v) for v in row) for row in rows)


def source_bag(url: str) -> Counter[Hashable]:
    with psycopg.connect(url, autocommit=True) as conn:
        return bag(conn.execute("SELECT msg, n, f, doc::text FROM logs").fetchall())


def warehouse_bag(config: Config) -> Counter[Hashable]:
    warehouse = open_warehouse(config)
    try:
        rows = warehouse.fetch_table(config.table_target(config.table("logs")))
    finally:
        warehouse.close()
    assert all(set(r) == {"msg", "n", "f", "doc"} for r in rows), rows[:1]
    return bag([(r["msg"], r["n"], r["f"], r["doc"]) for r in rows])


def replicate(p: Pipeline, config: Config, run: Config | None = None) -> RunStats:
    """A consumer run to the end: ``loose`` refused up front, nothing else parked."""
    stats: RunStats = p.replicate_until_caught_up(run)
    loose = config.topic_for(config.table("loose"))
    assert set(stats.parked) == {loose}, stats.parked
    assert ALTER in stats.parked[loose] and "no primary key" in stats.parked[loose]
    assert stats.dead_letters == 0, stats
    return stats


def one_of(match: str) -> str:
    """``ctid`` of one of the rows matching ``match`` (equal rows: any one of them)."""
    return f"(SELECT ctid FROM logs WHERE {match} LIMIT 1)"


@pytest.mark.parametrize("engine", ["duckdb", "snowflake"])
def test_a_keyless_table_replicates_as_a_multiset_and_one_without_full_identity_is_refused(
    pipeline: Pipeline, engine: str, request: pytest.FixtureRequest
) -> None:
    p = pipeline
    section = engine_warehouse(p, engine, request)
    p.sql("CREATE TABLE logs (msg text, n int, f float8, doc jsonb)")
    p.sql("ALTER TABLE logs REPLICA IDENTITY FULL")
    p.sql("CREATE TABLE loose (msg text)")
    pair = "('a', 1, 0.5, '{\"k\": [1, 2]}')"
    p.sql(f"INSERT INTO logs VALUES {pair}, {pair}, ('b', NULL, 'NaN', NULL)")
    p.sql("INSERT INTO logs VALUES ('b', NULL, 'NaN', NULL), (NULL, NULL, NULL, NULL)")
    p.sql("INSERT INTO loose VALUES ('x'), ('x')")
    config = p.configure(TABLES, warehouse=section)
    assert config.warehouse.type == engine
    p.start_debezium()
    p.wait_published()

    # ---- the initial snapshot: equal rows are copies ---------------------------------------
    replicate(p, config)
    assert warehouse_bag(config) == source_bag(p.url)
    assert sum(source_bag(p.url).values()) == 5

    # ---- streamed: more copies, then one of two equal rows deleted or updated --------------
    with psycopg.connect(p.url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO logs VALUES ('a', 1, 0.5, '{\"k\": [1, 2]}'), ('c', 3, -0.0, '[]')"
        )
        conn.execute(f"DELETE FROM logs WHERE ctid = {one_of('msg = ' + repr('a'))}")
        conn.execute(f"UPDATE logs SET n = 2 WHERE ctid = {one_of('msg = ' + repr('b'))}")
    p.sql(f"DELETE FROM logs WHERE ctid = {one_of('msg IS NULL')}")
    p.sql(f"UPDATE logs SET msg = 'a', n = 1 WHERE ctid = {one_of('n = 2')}")
    p.sql("INSERT INTO loose VALUES ('y')")
    replicate(p, config)
    expected = source_bag(p.url)
    assert warehouse_bag(config) == expected
    assert expected[("a", 1, 0.5, json.dumps({"k": [1, 2]}))] == 2, expected

    # ---- a large (TOASTed) value, then an update that leaves it untouched -------------------
    big = (
        "(SELECT jsonb_build_object('k', string_agg(md5(g::text), '')) "
        "FROM generate_series(1, 400) g)"
    )
    p.sql(f"INSERT INTO logs SELECT 'big', 1, 1.0, {big}")
    p.sql(f"INSERT INTO logs SELECT 'big', 1, 1.0, {big}")
    p.sql(f"UPDATE logs SET n = 2 WHERE ctid = {one_of('msg = ' + repr('big'))}")
    replicate(p, config)
    assert warehouse_bag(config) == source_bag(p.url)

    # ---- a second round in one transaction: copies in and out of one batch -----------------
    with psycopg.connect(p.url, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO logs VALUES ('d', 4, 1.0, NULL), ('d', 4, 1.0, NULL)")
        conn.execute(f"DELETE FROM logs WHERE ctid = {one_of('msg = ' + repr('d'))}")
        conn.execute(f"UPDATE logs SET f = 'NaN' WHERE ctid = {one_of('msg = ' + repr('a'))}")
        conn.execute("DELETE FROM logs WHERE msg = 'c'")
    replicate(p, config)
    expected = source_bag(p.url)
    assert warehouse_bag(config) == expected

    # ---- reconciliation: a multiset comparison, clean ---------------------------------------
    checked = reconcile(config, ["public.logs"], settings=FAST)
    [result] = checked.tables
    assert (result.error, result.diffs, result.status) == (None, 0, "ok"), result.to_json()
    assert result.source_rows == result.warehouse_rows == sum(expected.values())

    # ---- the refused table: nothing of it reached the warehouse ---------------------------
    warehouse = open_warehouse(config)
    try:
        assert warehouse.registered(config.table_target(config.table("loose")).name) is None
        offsets = warehouse.load_offsets(config.kafka.group_id)
    finally:
        warehouse.close()
    assert not any(t == config.topic_for(config.table("loose")) for t, _ in offsets)

    # ---- idempotent: another run, then the whole topic again by a new group ----------------
    replicate(p, config)
    assert warehouse_bag(config) == expected
    replay = write_stack_config(
        p.workdir / "replay.yaml",
        p.stack,
        TABLES,
        warehouse_path=p.workdir / "warehouse.duckdb",
        group_id=f"{p.name}-replay",  # no offsets stored: from the topic's first message
        topic_prefix=p.name,
        slot_name=f"{p.name}_slot",
        database=p.database,
        warehouse=section,
    )
    replayed = replicate(p, config, replay)
    assert replayed.events > 0, replayed
    assert warehouse_bag(config) == expected

    # ---- a copy lost in the warehouse: reconciliation finds it, a re-run doesn't hide it -------
    engine_sql(
        config,
        'DELETE FROM {t} WHERE "_cdc_row" = (SELECT min("_cdc_row") FROM {t} WHERE "msg" = \'d\')',
    )
    [result] = reconcile(config, ["public.logs"], settings=FAST).tables
    assert (result.status, len(result.missing), result.extra) == ("diffs", 1, []), result.to_json()
    assert result.missing[0][0] == "d"
    assert warehouse_bag(config) == expected - bag([("d", 4, 1.0, None)])

    # ---- repaired by an exact re-load; the stream goes on on top of it ----------------------
    [result] = reconcile(config, ["public.logs"], repair=True, settings=FAST).tables
    assert (result.status, result.repaired, result.left) == ("repaired", 1, 0), result.error
    assert result.note == f"repaired (replaced {sum(expected.values())} rows)", result.note
    assert warehouse_bag(config) == expected
    [result] = reconcile(config, ["public.logs"], settings=FAST).tables
    assert (result.status, result.diffs, result.unsettled) == ("ok", 0, []), result.to_json()
    with psycopg.connect(p.url, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO logs VALUES ('d', 4, 1.0, NULL), ('e', 5, 2.0, NULL)")
        conn.execute("INSERT INTO logs VALUES ('e', 5, 2.0, NULL)")
        conn.execute(f"DELETE FROM logs WHERE ctid = {one_of('msg = ' + repr('a'))}")
        conn.execute(f"UPDATE logs SET n = 6 WHERE ctid = {one_of('msg = ' + repr('e'))}")
        [(xid,)] = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchall()
    replicate(p, config)
    expected = source_bag(p.url)
    assert warehouse_bag(config) == expected
    assert expected[("e", 5, 2.0, None)] == 1 and expected[("e", 6, 2.0, None)] == 1, expected
    # the watermark holds Debezium's txId of the last change: the 32-bit id, widened exactly
    warehouse = open_warehouse(config)
    try:
        mark = warehouse.keyless_watermark(config.table_target(config.table("logs")))
    finally:
        warehouse.close()
    assert mark.txid is not None and full_xid(mark.txid, xid + 5) == xid, (mark, xid)

    # ---- a writer keeps changing the table during a re-load: exact, or it gives up --------
    _reload_while_writing(p, config)

    # ---- `cdc snapshot` (bulk) re-loads it the same way ------------------------------------
    _bulk_snapshot_reloads(p, config)


def _bulk_snapshot_reloads(p: Pipeline, config: Config) -> None:
    """A bulk snapshot of the keyless table: no filter (it can't be exact), a copy lost in the
    warehouse is back, and the stream goes on on top of it."""
    with pytest.raises(SnapshotError, match="no primary key: it is re-loaded whole"):
        check_request(config, ["public.logs"], where="n = 1")
    engine_sql(
        config,
        'DELETE FROM {t} WHERE "_cdc_row" = (SELECT min("_cdc_row") FROM {t} WHERE "msg" = \'e\')',
    )
    [request] = check_request(config, ["public.logs"])
    assert request.keyless
    warehouse = open_warehouse(config)
    try:
        result = snapshot_table(config, warehouse, request, BulkOptions())
    finally:
        warehouse.close()
    expected = source_bag(p.url)
    assert (result.rows, result.chunks_loaded) == (sum(expected.values()), 1), result
    assert warehouse_bag(config) == expected
    with psycopg.connect(p.url, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO logs VALUES ('f', 1, 1.0, NULL), ('f', 1, 1.0, NULL)")
        conn.execute(f"DELETE FROM logs WHERE ctid = {one_of('msg = ' + repr('e'))}")
    p.sql(f"UPDATE logs SET n = 2 WHERE ctid = {one_of('msg = ' + repr('f'))}")
    replicate(p, config)
    assert warehouse_bag(config) == source_bag(p.url)


def _keyless_writes(url: str, stop: threading.Event) -> None:
    """Bursts of transactions on duplicate rows (insert copies, delete or update one copy),
    with pauses between bursts."""
    rng = random.Random(7)
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            for _ in range(rng.randint(1, 8)):
                with conn.transaction():
                    v = rng.randint(1, 3)
                    conn.execute("INSERT INTO logs VALUES ('w', %s, 1.0, NULL), "
                                 "('w', %s, 1.0, NULL)", [v, v])  # fmt: skip
                    conn.execute(f"DELETE FROM logs WHERE ctid = {one_of('n = %s')}", [v])
                    conn.execute(f"UPDATE logs SET n = n + 1 WHERE ctid = {one_of('n = %s')}",
                                 [rng.randint(1, 3)])  # fmt: skip
            stop.wait(rng.choice([0.05, 0.5, 2.0]))


def _reload_while_writing(p: Pipeline, config: Config) -> None:
    """One copy lost in the warehouse, then a re-load while a writer changes the table and the
    consumer streams it. It either succeeds (the stream applies the later changes on top) or
    gives up saying so; after a quiet re-load if it gave up, and once the stream caught up,
    the table equals the source as a multiset."""
    engine_sql(
        config,
        'DELETE FROM {t} WHERE "_cdc_row" = (SELECT min("_cdc_row") FROM {t} WHERE "msg" = \'e\')',
    )
    consumer = ReplicatorThread(config).start()
    stop = threading.Event()
    writer = threading.Thread(target=_keyless_writes, args=(p.url, stop), daemon=True)
    outcome: int | str
    try:
        consumer.wait_caught_up()
        writer.start()
        time.sleep(1)
        try:
            outcome = reload_keyless(config, "public.logs", settings=FAST)
        except QuietReplaceError as exc:
            outcome = str(exc)
            assert "kept changing" in outcome and "quieter moment" in outcome, outcome
    finally:
        stop.set()
        writer.join(30)
        consumer.stop()
    print(f"re-load during writes: {outcome!r}")
    if isinstance(outcome, str):
        replicate(p, config)
        assert reload_keyless(config, "public.logs", settings=FAST) == sum(
            source_bag(p.url).values()
        )
    replicate(p, config)
    assert warehouse_bag(config) == source_bag(p.url)
    [result] = reconcile(config, ["public.logs"], settings=FAST).tables
    assert (result.status, result.diffs) == ("ok", 0), result.to_json()


def test_settings_a_keyless_table_cant_have_are_refused_before_any_row_moves(
    pipeline: Pipeline,
) -> None:
    """The catalog check `cdc run` and `cdc config check` make at start: a keyless table
    without REPLICA IDENTITY FULL gets the ALTER TABLE (its quoted name), and one with it but
    with scd2, soft_delete, a quarantining contract or a snapshot mode that snapshots again is
    refused with what to do; a keyed table with the same settings and a keyless mirror table
    pass."""
    p = pipeline
    for name in ("full", "hist", "soft", "held", 'Odd "Name"'):
        quoted = '"' + name.replace('"', '""') + '"'
        p.sql(f"CREATE TABLE {quoted} (msg text)")
        if name != 'Odd "Name"':
            p.sql(f"ALTER TABLE {quoted} REPLICA IDENTITY FULL")
    p.sql("CREATE TABLE keyed (id int PRIMARY KEY, msg text)")
    check = {"checks": [{"column": "msg", "not_null": True}], "on_violation": "quarantine"}
    tables: list[str | dict[str, Any]] = [
        "public.full",
        {"name": "public.hist", "mode": "scd2"},
        {"name": "public.soft", "soft_delete": True},
        {"name": "public.held", **check},
        {"schema": "public", "table": 'Odd "Name"'},
        {"name": "public.keyed", "soft_delete": True, **check},
    ]
    config = p.configure(tables)
    with psycopg.connect(p.url, autocommit=True) as conn:
        problems = table_problems(config, conn)
    odd_name = 'public."Odd ""Name"""'
    assert set(problems) == {"public.hist", "public.soft", "public.held", odd_name}, problems
    [odd] = problems[odd_name]
    assert 'ALTER TABLE "public"."Odd ""Name""" REPLICA IDENTITY FULL;' in odd
    assert "no primary key" in odd
    [hist], [soft], [held] = (problems[f"public.{n}"] for n in ("hist", "soft", "held"))
    assert "mode 'scd2'" in hist and "mode: mirror" in hist
    assert "soft_delete: false" in soft and "on_violation: dlq" in held

    again = p.configure(["public.full"], "again.yaml", source_options={"snapshot_mode": "always"})
    with psycopg.connect(p.url, autocommit=True) as conn:
        [why] = table_problems(again, conn)["public.full"]
    assert "snapshot_mode 'always'" in why and "'initial'" in why
