"""`cdc local up -c` refuses tables that are not in the source database, and `cdc local restart
debezium` restarts Debezium alone, on the real processes, run as the user runs them.

Checked by effect: no Debezium process exists after a refusal; after a restart PostgreSQL and
the broker have the same pids, the old Debezium is gone, the new one's publication holds the
table added to the config and its rows reach Kafka; `cdc local status` shows the new pid and
the config it runs with. Helpers and the ``env`` fixture come from test_local_stack_cli.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from test_local_stack_cli import (
    CLI_TIMEOUT,
    PREFIX,
    TABLE,
    Env,
    assert_no_twins,
    env_in,
    printed_connection,
    processes_mentioning,
    sql,
    status_rows,
    wait_for_rows,
)

from cdc.local.pipeline import write_stack_config
from cdc.local.stack import LocalStack

pytestmark = pytest.mark.integration

LATER = "cli_later"  # created at the source only after the first refusal
VIEW = "cli_items_view"
SLOT = f"{PREFIX}_slot"


@pytest.fixture
def env() -> Iterator[Env]:
    with env_in("cdc-restart-") as e:
        yield e


def cli_code(e: Env, *args: str, config: Path | None = None) -> tuple[int, str]:
    """Run `cdc local ARGS` (any exit code): (exit code, stdout + stderr)."""
    cmd = [sys.executable, "-m", "cdc", "local", *args, "--state-dir", str(e.state_dir)]
    if config is not None:
        cmd += ["--config", str(config)]
    env_vars = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    env_vars.pop("CDC_CONFIG", None)
    env_vars.pop("COLUMNS", None)  # not a terminal: the tables must not be cut anyway
    proc = subprocess.run(
        cmd, cwd=e.cwd, env=env_vars, capture_output=True, text=True, timeout=CLI_TIMEOUT
    )
    e.remember()
    return proc.returncode, proc.stdout + proc.stderr


def config_for(e: Env, name: str, tables: list[str]) -> Path:
    path = e.base / "conf" / name
    write_stack_config(
        path,
        LocalStack(e.state_dir),
        [f"public.{t}" for t in tables],
        warehouse_path=e.base / "conf" / "warehouse.duckdb",
        topic_prefix=PREFIX,
        slot_name=SLOT,
    )
    return path


def published(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (f"{SLOT}_pub",)
        ).fetchall()
    return {str(r[0]) for r in rows}


def wait_published(url: str, table: str, timeout: float = 120) -> None:
    """Debezium (filtered publication) adds the table when it starts: wait for it, since a
    change is only decoded for a table that was in the publication when it was made."""
    deadline = time.monotonic() + timeout
    while table not in published(url):
        if time.monotonic() > deadline:
            pytest.fail(f"{table} not in publication {SLOT}_pub: {published(url)}")
        time.sleep(0.5)


def test_up_refuses_absent_tables_and_restart_debezium_adds_one(env: Env) -> None:
    out = env.cli("up")
    url, bootstrap = printed_connection(out)
    sql(url, f"CREATE TABLE {TABLE} (id int PRIMARY KEY, note text NOT NULL)")
    sql(url, f"INSERT INTO {TABLE} VALUES (1, 'first')")
    sql(url, f"CREATE VIEW {VIEW} AS SELECT * FROM {TABLE}")

    # 1. up -c with a missing table and a view: refused before Debezium starts, exit code 2
    bad = config_for(env, "bad.yaml", [TABLE, LATER, VIEW])
    code, out = cli_code(env, "up", config=bad)
    assert code == 2, out
    assert "Debezium not started" in out
    assert f"public.{LATER} (does not exist)" in out
    assert f"public.{VIEW} (is a view, not a table)" in out
    assert f"public.{TABLE} (" not in out  # the table that exists is not named
    assert "Create them (with a primary key), or remove them from `tables`" in out
    assert "debezium" not in env.records()
    assert status_rows(out)["debezium"] == ("stopped", None)
    assert processes_mentioning(str(env.state_dir / "debezium")) == set()
    assert published(url) == set()  # no publication was made for a partial table list

    # 2. up -c with the table that exists: Debezium runs; status names its config
    good = config_for(env, "cdc.yaml", [TABLE])
    out = env.cli("up", config=good)
    assert "started: debezium" in out
    records = env.records()
    first = records["debezium"]
    assert status_rows(out)["debezium"] == ("running", first.pid)
    assert f"(config {good})" in out
    topic = f"{PREFIX}.public.{TABLE}"
    wait_for_rows(env, bootstrap, topic, {"first"})

    # 3. restart with the bad config: refused, the running Debezium left alone
    code, out = cli_code(env, "restart", "debezium", config=bad)
    assert code == 2, out
    assert "Debezium keeps running as it was" in out and f"public.{LATER}" in out
    assert env.records() == records and first.alive()

    # 4. the table is created and added to the config: restart Debezium alone
    sql(url, f"CREATE TABLE {LATER} (id int PRIMARY KEY, note text NOT NULL)")
    both = config_for(env, "both.yaml", [TABLE, LATER])
    out = env.cli("restart", "debezium", config=both)
    second = env.records()["debezium"]
    assert f"restarted: debezium (pid {first.pid} -> {second.pid})" in out
    assert not first.alive() and second.alive()
    assert {k: v for k, v in env.records().items() if k != "debezium"} == {
        k: v for k, v in records.items() if k != "debezium"
    }  # PostgreSQL and the broker kept running
    assert status_rows(out)["debezium"] == ("running", second.pid)
    assert_no_twins(env)
    wait_published(url, LATER)
    assert published(url) - {"debezium_signal"} == {TABLE, LATER}  # and the signal table
    sql(url, f"INSERT INTO {LATER} VALUES (1, 'later')")
    sql(url, f"INSERT INTO {TABLE} VALUES (2, 'second')")
    later_topic = f"{PREFIX}.public.{LATER}"
    assert wait_for_rows(env, bootstrap, later_topic, {"later"})["later"]["op"] == "c"
    assert wait_for_rows(env, bootstrap, topic, {"second"})["second"]["op"] == "c"

    # 5. status shows the new Debezium and its config; restart without -c reuses that config
    out = env.cli("status")
    assert status_rows(out)["debezium"] == ("running", second.pid)
    assert f"(config {both})" in out
    out = env.cli("restart", "debezium")
    third = env.records()["debezium"]
    assert f"restarted: debezium (pid {second.pid} -> {third.pid})" in out
    assert f"(config {both})" in out
    sql(url, f"INSERT INTO {LATER} VALUES (2, 'after-second-restart')")
    wait_for_rows(env, bootstrap, later_topic, {"after-second-restart"})

    out = env.cli("down")
    assert "stopped: debezium, broker, postgres" in out
