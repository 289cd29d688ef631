"""`cdc local up / status / down` on the real processes, run as the user runs them.

Every step is checked by its effect, not only by what is printed: pids in state.json are alive
(or gone), PostgreSQL answers with wal_level=logical at the printed URL, the broker answers at
the printed bootstrap servers, Debezium publishes a row inserted at the source, no twin process
exists, and a kill -9 of everything leaves stale state that is detected and cleaned.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from cdc.local.pipeline import write_stack_config
from cdc.local.processes import ProcessRecord
from cdc.local.stack import COMPONENTS, LocalStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TABLE = "cli_items"
PREFIX = "clitest"
CLI_TIMEOUT = 240  # PostgreSQL start + Debezium topic creation on a busy 2-core machine
PUBLISH_TIMEOUT = 240  # Debezium's JVM start + snapshot, same machine


# ------------------------------------------------------------------ helpers
@dataclass
class Env:
    base: Path  # the temp dir; holds the state dir, the config and the CLI's cwd
    state_dir: Path
    cwd: Path  # the CLI runs here: it must stay empty (state lives in the state dir only)
    seen: list[ProcessRecord]  # every process recorded during the test, killed at the end

    def cli(self, *args: str, config: Path | None = None) -> str:
        cmd = [sys.executable, "-m", "cdc", "local", *args, "--state-dir", str(self.state_dir)]
        if config is not None:
            cmd += ["--config", str(config)]
        env = {**os.environ, "COLUMNS": "250", "PYTHONIOENCODING": "utf-8"}
        env.pop("CDC_CONFIG", None)
        proc = subprocess.run(
            cmd, cwd=self.cwd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out}"
        self.remember()
        return out

    def records(self) -> dict[str, ProcessRecord]:
        data = json.loads((self.state_dir / "state.json").read_text())
        return {k: ProcessRecord(**v) for k, v in data["processes"].items()}

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state_dir / "state.json").read_text())
        return data

    def remember(self) -> None:
        if (self.state_dir / "state.json").exists():
            self.seen.extend(r for r in self.records().values() if r not in self.seen)

    def config(self, name: str) -> Path:
        """A cdc.yaml for TABLE on the running stack (ports read from its state)."""
        stack = LocalStack(self.state_dir)
        path = self.base / "conf" / name
        write_stack_config(
            path,
            stack,
            [f"public.{TABLE}"],
            warehouse_path=self.base / "conf" / "warehouse.duckdb",
            topic_prefix=PREFIX,
            slot_name=f"{PREFIX}_slot",
        )
        return path


@pytest.fixture
def env() -> Iterator[Env]:
    with env_in("cdc-cli-") as e:
        yield e


@contextlib.contextmanager
def env_in(prefix: str) -> Iterator[Env]:
    """A temp dir holding the state dir, the configs and the CLI's cwd; everything recorded
    is stopped at the end, by pid."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(base, 0o755)  # PostgreSQL runs as an unprivileged user when we are root
    e = Env(base=base, state_dir=base / "state", cwd=base / "cwd", seen=[])
    e.cwd.mkdir()
    try:
        yield e
    finally:
        try:
            LocalStack(e.state_dir).down()
        finally:
            # whatever survived (a failed step, a twin): kill it by its recorded pid
            for record in e.seen:
                if record.alive():
                    os.kill(record.pid, signal.SIGKILL)
            shutil.rmtree(base, ignore_errors=True)


def status_rows(output: str) -> dict[str, tuple[str, int | None]]:
    """component -> (state, pid) from the printed status table."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line)]
        if len(cells) >= 4 and cells[1] in COMPONENTS:
            rows[cells[1]] = (cells[2], int(cells[3]) if cells[3] else None)
    assert set(rows) == set(COMPONENTS), output
    return rows


def printed_connection(output: str) -> tuple[str, str]:
    url = re.search(r"^psql (postgresql://\S+)$", output, re.M)
    bootstrap = re.search(r"^bootstrap servers: (\S+)$", output, re.M)
    assert url and bootstrap, output
    return url[1], bootstrap[1]


def wal_level(url: str) -> str:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SHOW wal_level").fetchone()
    assert row is not None
    return str(row[0])


def sql(url: str, statement: str, params: tuple[Any, ...] | None = None) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement, params)


def broker_topics(bootstrap: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return set(admin.list_topics(timeout=20).topics)


def processes_mentioning(text: str) -> set[int]:
    """Pids of every process whose command line contains ``text``."""
    pids = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(text in part for part in cmdline):
            pids.add(proc.info["pid"])
    return pids


def assert_no_twins(e: Env) -> None:
    """The only processes of this stack are the recorded ones (found by command line)."""
    records = e.records()
    state = e.state()
    # the postmaster names its data dir; Debezium its properties file: both in the state dir
    expected = {records["postgres"].pid} | (
        {records["debezium"].pid} if "debezium" in records else set()
    )
    assert processes_mentioning(str(e.state_dir)) == expected
    assert processes_mentioning(str(e.state_dir / "postgres" / "data")) == {records["postgres"].pid}
    # Tansu names its listener
    assert processes_mentioning(f"tcp://127.0.0.1:{state['kafka_port']}") == {records["broker"].pid}


def wait_for_rows(
    e: Env, bootstrap: str, topic: str, markers: set[str], timeout: float = PUBLISH_TIMEOUT
) -> dict[str, dict[str, Any]]:
    """Read ``topic`` from the beginning until a row with each marker arrived; marker -> row."""
    debezium = e.records()["debezium"]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"cli-test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    found: dict[str, dict[str, Any]] = {}
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while markers - found.keys():
            if time.monotonic() > deadline:
                log = (e.state_dir / "debezium" / "debezium.log").read_text()[-4000:]
                pytest.fail(f"{markers - found.keys()} not in {topic} in {timeout} s\n{log}")
            if not debezium.alive():
                log = (e.state_dir / "debezium" / "debezium.log").read_text()[-4000:]
                pytest.fail(f"Debezium (pid {debezium.pid}) died:\n{log}")
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None or not msg.value():
                continue
            payload = json.loads(msg.value())["payload"]
            after = payload.get("after") or {}
            if after.get("note") in markers:
                found[after["note"]] = payload
    finally:
        consumer.close()
    return found


def assert_gone(records: dict[str, ProcessRecord]) -> None:
    for name, record in records.items():
        assert not record.alive(), f"{name} (pid {record.pid}) still runs"


def assert_state_in_one_dir(e: Env) -> None:
    assert list(e.cwd.iterdir()) == [], "the CLI wrote outside its state directory"
    assert {p.name for p in e.state_dir.iterdir()} <= {"state.json", *COMPONENTS}


# -------------------------------------------------------------------- tests
def test_up_twice_with_debezium_status_and_down(env: Env) -> None:
    """up starts PostgreSQL (wal_level=logical) and the broker and prints how to connect; a
    second up starts no twin; up --config starts Debezium, which publishes an inserted row;
    status lists all three with pids; down stops them by pid; a second down has nothing to do."""
    # 1. up: PostgreSQL and the broker, really running and reachable at the printed addresses
    out = env.cli("up")
    assert "started: postgres, broker" in out
    url, bootstrap = printed_connection(out)
    state = env.state()
    assert url == f"postgresql://postgres@127.0.0.1:{state['pg_port']}/postgres"
    assert bootstrap == f"127.0.0.1:{state['kafka_port']}"
    first = env.records()
    assert set(first) == {"postgres", "broker"}
    assert all(r.alive() for r in first.values())
    assert status_rows(out)["postgres"] == ("running", first["postgres"].pid)
    assert status_rows(out)["broker"] == ("running", first["broker"].pid)
    assert wal_level(url) == "logical"
    broker_topics(bootstrap)  # answers (raises on timeout)
    assert_no_twins(env)

    # 2. a second up reports what runs and starts nothing
    out = env.cli("up")
    assert "already running: nothing started" in out
    assert env.records() == first
    assert printed_connection(out) == (url, bootstrap)
    assert_no_twins(env)

    # 3. up --config: Debezium for a real table; a row inserted at the source reaches Kafka
    sql(url, f"CREATE TABLE {TABLE} (id int PRIMARY KEY, note text NOT NULL)")
    sql(url, f"INSERT INTO {TABLE} VALUES (1, 'before-debezium')")
    config = env.config("cdc.yaml")
    out = env.cli("up", config=config)
    assert "started: debezium" in out
    records = env.records()
    assert {k: v for k, v in records.items() if k != "debezium"} == first  # no restarts
    assert records["debezium"].alive()
    assert "cdc.local.debezium" in psutil.Process(records["debezium"].pid).cmdline()
    assert_no_twins(env)
    topic = f"{PREFIX}.public.{TABLE}"
    snapshot = wait_for_rows(env, bootstrap, topic, {"before-debezium"})
    assert snapshot["before-debezium"]["op"] == "r"  # read by the snapshot
    # the slot exists once the snapshot published: a new row is streamed from the WAL
    sql(url, f"INSERT INTO {TABLE} VALUES (2, 'after-debezium')")
    streamed = wait_for_rows(env, bootstrap, topic, {"after-debezium"})
    assert streamed["after-debezium"]["op"] == "c"

    # ... and a second up --config starts no second Debezium
    out = env.cli("up", config=config)
    assert "Debezium already runs" in out
    assert "already running: nothing started" in out
    assert env.records() == records
    assert_no_twins(env)

    # 4. status: all three running, with their pids
    out = env.cli("status")
    assert status_rows(out) == {n: ("running", records[n].pid) for n in COMPONENTS}
    assert printed_connection(out) == (url, bootstrap)
    assert "cleaned stale" not in out

    # 6. down: everything stopped by pid
    out = env.cli("down")
    assert "stopped: debezium, broker, postgres" in out
    assert_gone(records)
    assert processes_mentioning(str(env.state_dir)) == set()
    assert env.records() == {}
    out = env.cli("status")
    assert status_rows(out) == {n: ("stopped", None) for n in COMPONENTS}
    out = env.cli("down")
    assert "nothing was running" in out
    assert_state_in_one_dir(env)


def test_crash_leaves_stale_state_that_is_detected_and_cleaned(env: Env) -> None:
    """kill -9 of every recorded process (a crash): status reports the stale records cleaned
    and shows everything stopped; up starts fresh processes that work (Debezium included)."""
    out = env.cli("up")
    url, bootstrap = printed_connection(out)
    sql(url, f"CREATE TABLE {TABLE} (id int PRIMARY KEY, note text NOT NULL)")
    sql(url, f"INSERT INTO {TABLE} VALUES (1, 'before-crash')")
    config = env.config("cdc.yaml")
    env.cli("up", config=config)
    crashed = env.records()
    assert set(crashed) == set(COMPONENTS)
    assert all(r.alive() for r in crashed.values())

    # 5. crash: kill -9 every recorded pid (never by name)
    for record in crashed.values():
        os.kill(record.pid, signal.SIGKILL)
    for record in crashed.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(record.pid).wait(timeout=30)
    assert_gone(crashed)
    assert set(env.records()) == set(COMPONENTS)  # the stale records are still on disk

    out = env.cli("status")
    assert "cleaned stale state of: postgres, broker, debezium" in out
    assert status_rows(out) == {n: ("stopped", None) for n in COMPONENTS}
    assert env.records() == {}  # cleaned on disk too
    # the addresses printed before the crash stay valid
    assert printed_connection(out) == (url, bootstrap)

    # up again: fresh processes (new pids) at the same addresses, and they work
    out = env.cli("up", config=config)
    assert "started: postgres, broker, debezium" in out
    assert printed_connection(out) == (url, bootstrap)
    fresh = env.records()
    assert set(fresh) == set(COMPONENTS)
    assert all(r.alive() for r in fresh.values())
    assert all(fresh[n] != crashed[n] for n in COMPONENTS)
    assert wal_level(url) == "logical"
    assert_no_twins(env)
    sql(url, f"INSERT INTO {TABLE} VALUES (2, 'after-crash')")
    # the broker keeps topics in memory: the new Debezium snapshots afresh, then streams
    rows = wait_for_rows(
        env, bootstrap, f"{PREFIX}.public.{TABLE}", {"before-crash", "after-crash"}
    )
    assert {r["after"]["id"] for r in rows.values()} == {1, 2}

    out = env.cli("down")
    assert "stopped: debezium, broker, postgres" in out
    assert_gone(fresh)
    assert_state_in_one_dir(env)
