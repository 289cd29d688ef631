"""`cdc reconcile` on the real chain: damage injected in the warehouse is found with exact
counts, repaired at a fresh position, and a re-run is clean; a steady workload with the
consumer running causes no false alarms; bad input is refused before any work."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import duckdb
import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from cdc.local.pipeline import ReplicatorThread
from cdc.reconcile.run import ReconcileError, ReconcileSettings, reconcile
from cdc.runtime import open_warehouse
from flows.reconcile import reconcile as reconcile_flow

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

FAST = ReconcileSettings(leaf_rows=64, fanout=8, lag_timeout=30)


def _damage(pipeline: Pipeline, *statements: str) -> None:
    con = duckdb.connect(str(pipeline.workdir / "warehouse.duckdb"))
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


def test_damage_is_found_exactly_repaired_and_a_rerun_is_clean(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE orders (id int PRIMARY KEY, v text, amount numeric(10,2))")
    pipeline.sql("INSERT INTO orders SELECT g, 'v' || g, g / 100.0 FROM generate_series(1, 5000) g")
    pipeline.sql("CREATE TABLE hist (id int PRIMARY KEY, tier text)")
    pipeline.sql("INSERT INTO hist SELECT g, 'a' FROM generate_series(1, 200) g")
    config = pipeline.configure(["public.orders", {"name": "public.hist", "mode": "scd2"}])
    pipeline.start_debezium()
    pipeline.wait_published()  # the snapshot is done: the updates below stream as versions
    pipeline.sql("UPDATE hist SET tier = 'b' WHERE id <= 5")
    pipeline.sql("UPDATE hist SET tier = 'c' WHERE id <= 5")
    pipeline.replicate_until_caught_up()

    clean = reconcile(config, settings=FAST)
    assert [t.status for t in clean.tables] == ["ok", "ok"], clean.to_json()
    assert clean.tables[0].rows_fetched == 0  # equal tables are not pulled

    _damage(
        pipeline,
        "DELETE FROM orders WHERE id IN (10, 2500, 4999)",  # missing 3
        "UPDATE orders SET v = 'broken' WHERE id IN (7, 3000)",  # different 2
        "UPDATE orders SET amount = amount + 0.01 WHERE id = 4000",  # different 1 more
        "INSERT INTO orders (id, v, amount, _cdc_lsn) "
        "SELECT g, 'ghost', 1, 1 FROM range(6001, 6005) t(g)",  # extra 4
        "UPDATE hist SET tier = 'zzz' WHERE id = 50 AND is_current",  # different 1
        # a gap: key 1's middle version is gone
        "DELETE FROM hist WHERE id = 1 AND NOT is_current AND tier = 'b'",
    )
    found = reconcile(config, settings=FAST)
    orders, hist = found.tables
    assert (len(orders.missing), len(orders.extra), len(orders.different)) == (3, 4, 3)
    assert sorted(orders.missing) == [(10,), (2500,), (4999,)]
    assert sorted(orders.extra) == [(6001,), (6002,), (6003,), (6004,)]
    assert sorted(k for k, *_ in orders.different) == [(7,), (3000,), (4000,)]
    assert orders.rows_fetched < 5000 and orders.status == "diffs"
    assert (len(hist.missing), len(hist.extra), len(hist.different)) == (0, 0, 1)
    assert hist.history is not None and hist.history.gaps == 1 and hist.history_problems == 1
    assert not found.ok

    repaired = reconcile(config, repair=True, settings=FAST)
    orders, hist = repaired.tables
    assert (orders.repaired, orders.remaining, orders.status) == (10, 0, "repaired")
    # the altered current version (a new version) and the gap (validity made contiguous)
    assert (hist.repaired, hist.remaining, hist.status) == (2, 0, "repaired")
    assert hist.history is not None and hist.history.ok

    again = reconcile(config, settings=FAST)
    orders, hist = again.tables
    assert (orders.diffs, orders.status) == (0, "ok")
    assert (hist.diffs, hist.status) == (0, "ok")
    assert hist.history is not None and hist.history.ok
    pipeline.sql("UPDATE orders SET v = 'after repair' WHERE id = 10")  # the stream still wins
    pipeline.replicate_until_caught_up()
    assert reconcile(config, ["orders"], settings=FAST).tables[0].status == "ok"

    # the CLI: exit 1 while a (new) history gap is there, 0 for the clean table, JSON report
    _damage(pipeline, "DELETE FROM hist WHERE id = 2 AND NOT is_current AND tier = 'b'")
    cfg = str(pipeline.workdir / "cdc.yaml")
    out = _cli("reconcile", "-c", cfg, "--json")
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert {t["table"]: t["status"] for t in doc["tables"]} == {"orders": "ok", "hist": "diffs"}
    assert _cli("reconcile", "orders", "-c", cfg).returncode == 0
    refused = _cli("reconcile", "nope", "-c", cfg)
    assert refused.returncode == 2 and "unknown table 'nope'" in refused.stderr

    warehouse = open_warehouse(config)
    try:
        last = warehouse.last_reconciles()
    finally:
        warehouse.close()
    assert last["orders"].status == "ok" and last["hist"].status == "diffs"
    assert last["hist"].history_problems == 1
    status = json.loads(_cli("status", "-c", cfg, "--json").stdout.strip().splitlines()[-1])
    shown = {t["table"]: t["last_reconcile"] for t in status["tables"]}
    assert shown["orders"].startswith("ok at ") and shown["hist"].startswith("diffs at ")
    assert "history 1" in shown["hist"]
    assert _cli("reconcile", "hist", "-c", cfg, "--repair").returncode == 0
    assert _cli("reconcile", "-c", cfg).returncode == 0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_the_flow_reconciles_and_publishes_artifacts(
    pipeline: Pipeline, prefect_server: None
) -> None:
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v text)")
    pipeline.sql("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 300) g")
    pipeline.configure(["public.items"])
    pipeline.start_debezium()
    pipeline.replicate_until_caught_up()
    _damage(pipeline, "DELETE FROM items WHERE id = 5")

    state = reconcile_flow(str(pipeline.workdir / "cdc.yaml"), repair=True, return_state=True)
    assert state.is_completed(), state
    summary = state.result()
    assert summary["ok"] and summary["tables"][0]["missing"] == 1
    assert summary["tables"][0]["repaired"] == 1
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts()}
    assert "items" in str(artifacts["cdc-reconcile"].data)
    assert "| items | repaired |" in str(artifacts["cdc-reconcile-report"].data)


def test_unknown_tables_and_tables_without_a_key_are_refused_before_any_work(
    pipeline: Pipeline,
) -> None:
    pipeline.sql("CREATE TABLE keyed (id int PRIMARY KEY)")
    pipeline.sql("CREATE TABLE loose (id int)")
    config = pipeline.configure(["public.keyed", "public.loose"])
    with pytest.raises(ReconcileError, match=r"unknown table 'nope'.*configured: public.keyed"):
        reconcile(config, ["nope"])
    with pytest.raises(ReconcileError, match=r"public\.loose.*no primary key"):
        reconcile(config)
    assert not (pipeline.workdir / "warehouse.duckdb").exists()  # nothing was touched


def _workload(url: str, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    next_id = 100_000
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            with conn.transaction():
                for _ in range(3):
                    choice = rng.random()
                    if choice < 0.6:
                        conn.execute(
                            "UPDATE items SET v = v + 1, note = md5(random()::text) WHERE id = %s",
                            (rng.randint(1, 3000),),
                        )
                    elif choice < 0.85:
                        next_id += 1
                        conn.execute("INSERT INTO items VALUES (%s, 0, 'new')", (next_id,))
                    else:
                        conn.execute("DELETE FROM items WHERE id = %s", (rng.randint(1, 3000),))
            time.sleep(0.01)


def test_no_false_alarms_while_a_steady_workload_streams(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v int, note text)")
    pipeline.sql("INSERT INTO items SELECT g, 0, 'n' || g FROM generate_series(1, 3000) g")
    config = pipeline.configure(["public.items"], batch_size=500, linger_ms=100)
    pipeline.start_debezium()
    pipeline.wait_published()
    consumer = ReplicatorThread(config).start()
    stop = threading.Event()
    writer = threading.Thread(target=_workload, args=(pipeline.url, stop, 11), daemon=True)
    try:
        consumer.wait_caught_up()
        writer.start()
        time.sleep(2)
        reports = [reconcile(config, settings=FAST) for _ in range(2)]
    finally:
        stop.set()
        writer.join(30)
        consumer.stop()
    for report in reports:
        items = report.tables[0]
        assert (items.diffs, items.status, items.error) == (0, "ok", None), items.to_json()
        # only keys the workload kept rewriting through every re-check round stay in doubt
        assert len(items.unsettled) <= 3, items.to_json()
    assert any(r.tables[0].rechecks for r in reports)  # rows were in flight, and re-checked
