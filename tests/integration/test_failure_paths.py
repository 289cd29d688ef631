"""Expected failures against real processes: each ends the command with one message (what
happened, what to do), its own exit code (cdc.cli.exit_codes) and no traceback.

- the source database down: its port closed (what a client sees of a stopped PostgreSQL on
  this host: connection refused);
- no broker: a closed port, and a real Tansu broker where the command must get past it;
- the warehouse file on a read-only filesystem (a tmpfs mounted here, remounted read-only:
  root writes through chmod, not through a read-only mount), on a full disk (a small tmpfs
  filled up), a directory in its place, and held by another process;
- Prefect: no PREFECT_API_URL, a server that doesn't answer, a missing deployment, a flow
  run that fails and one that doesn't end in time, on a real local Prefect server.

Every process started here is stopped by its pid; every mount is unmounted.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import httpx
import pytest

from cdc.local.broker import LocalBroker
from cdc.local.processes import ProcessRecord, free_port

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration


def _config(folder: Path, *, pg_port: int, kafka: str, warehouse: str | Path,
            lock_timeout: float = 30, connect_timeout: int = 10) -> Path:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cdc.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            source: {{host: 127.0.0.1, port: {pg_port}, database: shop, user: postgres,
                      connect_timeout_seconds: {connect_timeout}}}
            kafka: {{bootstrap_servers: "{kafka}", group_id: failure-paths}}
            warehouse: {{type: duckdb, path: "{warehouse}", lock_timeout_seconds: {lock_timeout}}}
            tables: [{{name: public.items}}]
            """
        )
    )
    return path


def _cdc(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "cdc", *args],
        capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ),
    )  # fmt: skip
    out.seconds = time.monotonic() - started
    return out


def _one_message(out: Any, code: int, heading: str, *phrases: str) -> str:
    """The command exited ``code`` with ``heading: ...`` on stderr, no traceback, no raw
    librdkafka line; returns the message's line."""
    both = out.stdout + out.stderr
    assert out.returncode == code, both
    assert "Traceback" not in both, both
    assert "%3|" not in both and "|FAIL|" not in both, both
    lines = [line for line in out.stderr.splitlines() if line.startswith(f"{heading}:")]
    assert len(lines) == 1, out.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Tansu broker (topics in memory), stopped by pid."""
    local = LocalBroker(tmp_path_factory.mktemp("broker"), free_port())
    record = local.start()
    try:
        yield local.bootstrap_servers
    finally:
        record.stop()


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own (remountable read-only, or filled), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    point = tmp_path / "mnt"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)], check=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


# ------------------------------------------------------------- source database down
def test_reconcile_with_the_database_down_exits_4_not_1(tmp_path: Path) -> None:
    cfg = _config(tmp_path, pg_port=free_port(), kafka="127.0.0.1:1", warehouse="w.duckdb")
    out = _cdc("reconcile", "-c", str(cfg))
    _one_message(out, 4, "source database unreachable",
                 "cannot connect to the source database shop at 127.0.0.1:",
                 "Connection refused", "Check that PostgreSQL runs")  # fmt: skip
    as_json = _cdc("reconcile", "-c", str(cfg), "--json")
    assert as_json.returncode == 4
    doc = json.loads(as_json.stdout)  # stdout is the JSON alone
    assert (doc["error"], doc["exit_code"]) == ("source database unreachable", 4)


def test_status_and_snapshot_with_the_database_down_exit_4(tmp_path: Path, broker: str) -> None:
    cfg = _config(tmp_path, pg_port=free_port(), kafka=broker, warehouse="w.duckdb")
    _one_message(_cdc("status", "-c", str(cfg)), 4, "source database unreachable",
                 "Connection refused")  # fmt: skip
    _one_message(_cdc("snapshot", "items", "-c", str(cfg)), 4, "source database unreachable",
                 "Connection refused")  # fmt: skip


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word: what a client sees of a
    host whose PostgreSQL hangs (or of a firewall that swallows the startup packet)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # never accepted: the kernel completes the handshakes, nobody answers
        yield sock.getsockname()[1]


def test_a_silent_database_host_fails_after_the_connect_timeout_not_hangs(
    tmp_path: Path, broker: str, silent_port: int
) -> None:
    cfg = _config(tmp_path, pg_port=silent_port, kafka=broker, warehouse="w.duckdb",
                  connect_timeout=2)  # fmt: skip
    for command in (["reconcile"], ["status"], ["snapshot", "items"]):
        out = _cdc(*command, "-c", str(cfg), timeout=90)
        _one_message(out, 4, "source database unreachable",
                     f"at 127.0.0.1:{silent_port}", "timeout")  # fmt: skip
        assert out.seconds < 45, (command, out.seconds)  # a bounded wait, not a hang


# ---------------------------------------------------------------------- no broker
def test_run_until_caught_up_without_a_broker_fails_after_the_bounded_wait(
    tmp_path: Path,
) -> None:
    kafka = f"127.0.0.1:{free_port()}"
    cfg = _config(tmp_path, pg_port=free_port(), kafka=kafka, warehouse="w.duckdb")
    out = _cdc("run", "-c", str(cfg), "--until-caught-up", "--broker-timeout", "6",
               "--log-level", "WARNING")  # fmt: skip
    _one_message(out, 5, "Kafka broker unreachable", f"no Kafka broker at {kafka} answered",
                 "Check that the broker runs")  # fmt: skip
    assert "stopped cleanly" not in out.stderr
    warnings = out.stderr.count("kafka broker unreachable; retrying")
    assert 1 <= warnings <= 2, out.stderr  # one every 15 s, not one per attempt
    assert out.seconds < 60


def test_run_max_seconds_without_a_broker_does_not_end_cleanly(tmp_path: Path) -> None:
    kafka = f"127.0.0.1:{free_port()}"
    cfg = _config(tmp_path, pg_port=free_port(), kafka=kafka, warehouse="w.duckdb")
    out = _cdc("run", "-c", str(cfg), "--max-seconds", "5", "--log-level", "WARNING")
    _one_message(out, 5, "Kafka broker unreachable", kafka)
    assert "stopped cleanly" not in out.stderr


def test_a_live_broker_gives_no_unreachable_warning(tmp_path: Path, broker: str) -> None:
    cfg = _config(tmp_path, pg_port=free_port(), kafka=broker, warehouse="w.duckdb")
    out = _cdc("run", "-c", str(cfg), "--max-seconds", "8", "--log-level", "WARNING")
    assert out.returncode == 0, out.stderr
    assert "stopped cleanly: 0 events" in out.stderr
    assert "unreachable" not in out.stderr and "%3|" not in out.stderr, out.stderr


def test_status_without_a_broker_exits_5(tmp_path: Path) -> None:
    kafka = f"127.0.0.1:{free_port()}"
    cfg = _config(tmp_path, pg_port=free_port(), kafka=kafka, warehouse="w.duckdb")
    _one_message(_cdc("status", "-c", str(cfg)), 5, "Kafka broker unreachable", kafka)


def test_dlq_list_and_replay_without_a_broker_exit_5(tmp_path: Path) -> None:
    kafka = f"127.0.0.1:{free_port()}"
    cfg = _config(tmp_path, pg_port=free_port(), kafka=kafka, warehouse="w.duckdb")
    for command in (["dlq", "list"], ["dlq", "replay"]):
        out = _cdc(*command, "-c", str(cfg), timeout=90)
        _one_message(out, 5, "Kafka broker unreachable", kafka)
        assert out.seconds < 45, (command, out.seconds)


# ---------------------------------------------------------------------- warehouse
def _run_to_warehouse(tmp_path: Path, warehouse: Path, lock_timeout: float = 30) -> Any:
    cfg = _config(tmp_path / "cfg", pg_port=free_port(), kafka=f"127.0.0.1:{free_port()}",
                  warehouse=warehouse, lock_timeout=lock_timeout)  # fmt: skip
    return _cdc("run", "-c", str(cfg), "--until-caught-up", "--broker-timeout", "30",
                "--log-level", "ERROR")  # fmt: skip


def test_warehouse_on_a_read_only_filesystem_exits_3_at_once(
    tmp_path: Path, mounted: Path, broker: str
) -> None:
    file = mounted / "w.duckdb"
    duckdb.connect(str(file)).close()
    subprocess.run(["mount", "-o", "remount,ro", str(mounted)], check=True)
    out = _run_to_warehouse(tmp_path, file)
    _one_message(out, 3, "warehouse unavailable", "is on a read-only filesystem",
                 "remount it read-write")  # fmt: skip
    assert "another process" not in out.stderr
    assert out.seconds < 20  # no 30 s of retries that can't help
    cfg = _config(tmp_path / "status", pg_port=free_port(), kafka=broker, warehouse=file)
    _one_message(_cdc("status", "-c", str(cfg)), 3, "warehouse unavailable", "read-only")


def test_warehouse_on_a_full_disk_exits_3(tmp_path: Path, mounted: Path) -> None:
    with contextlib.suppress(OSError), open(mounted / "filler", "wb") as filler:
        while True:
            filler.write(b"\0" * 65536)
    out = _run_to_warehouse(tmp_path, mounted / "w.duckdb")
    _one_message(out, 3, "warehouse unavailable", "is full", "free some space")
    assert out.seconds < 20


def test_a_directory_in_place_of_the_warehouse_file_exits_3(tmp_path: Path) -> None:
    (tmp_path / "w.duckdb").mkdir()
    out = _run_to_warehouse(tmp_path, tmp_path / "w.duckdb")
    _one_message(out, 3, "warehouse unavailable", "is a directory, not a DuckDB file")
    assert out.seconds < 20
    cfg = tmp_path / "cfg" / "cdc.yaml"
    for command in (["quarantine", "list"], ["quarantine", "replay"]):
        _one_message(_cdc(*command, "-c", str(cfg)), 3, "warehouse unavailable",
                     "is a directory, not a DuckDB file")  # fmt: skip


def test_a_warehouse_held_by_another_process_is_waited_for_then_exits_3(
    tmp_path: Path,
) -> None:
    file = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time\n"
         f"c = duckdb.connect({str(file)!r}); print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        out = _run_to_warehouse(tmp_path, file, lock_timeout=3)
        _one_message(out, 3, "warehouse unavailable", "could not be opened within 3s",
                     "another process probably holds it")  # fmt: skip
        assert out.seconds >= 3
    finally:
        ProcessRecord.of("holder", holder.pid).stop()
        holder.wait(10)


# ------------------------------------------------------------------------ Prefect
def _snapshot_on(cfg: Path, env: dict[str, str], *extra: str, timeout: float = 120) -> Any:
    return _cdc("snapshot", "items", "-c", str(cfg), "--idempotency-key",
                f"t-{uuid.uuid4().hex}", *extra, env=env, timeout=timeout)  # fmt: skip


def test_deployment_without_prefect_api_url_refuses_and_starts_no_server(
    tmp_path: Path,
) -> None:
    cfg = _config(tmp_path, pg_port=free_port(), kafka="127.0.0.1:1", warehouse="w.duckdb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # no profile setting an API URL
    out = _snapshot_on(cfg, env, "--deployment", "cdc-snapshot/snapshot")
    _one_message(out, 6, "Prefect unavailable", "no Prefect server configured",
                 "set PREFECT_API_URL")  # fmt: skip
    assert "ObjectNotFound" not in out.stderr and "temporary" not in out.stderr.lower()
    assert not (tmp_path / "prefect-home" / "prefect.db").exists()  # no server's database


def test_deployment_on_a_server_that_does_not_answer_exits_6(tmp_path: Path) -> None:
    cfg = _config(tmp_path, pg_port=free_port(), kafka="127.0.0.1:1", warehouse="w.duckdb")
    api = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "ph")}
    out = _snapshot_on(cfg, env, "--deployment", "cdc-snapshot/snapshot")
    _one_message(out, 6, "Prefect unavailable", f"the Prefect server at {api} does not answer",
                 "prefect server start")  # fmt: skip


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real local Prefect server (its own home and database); the env to reach it."""
    home = tmp_path_factory.mktemp("prefect")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    with open(home / "server.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    record = ProcessRecord.of("prefect-server", server.pid)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (home / "server.log").read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the Prefect server did not start in 180 s"
            time.sleep(0.5)
        yield env
    finally:
        record.stop(timeout=30)
        server.wait(10)


def _deployment(env: dict[str, str], name: str) -> str:
    """A deployment of flow `cdc-snapshot` with no worker: its runs stay Scheduled."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        flow_id = client.create_flow_from_name("cdc-snapshot")
        client.create_deployment(flow_id, name)
    return f"cdc-snapshot/{name}"


def test_a_missing_deployment_exits_6(tmp_path: Path, prefect_api: dict[str, str]) -> None:
    cfg = _config(tmp_path, pg_port=free_port(), kafka="127.0.0.1:1", warehouse="w.duckdb")
    out = _snapshot_on(cfg, prefect_api, "--deployment", "cdc-snapshot/no-such")
    _one_message(out, 6, "Prefect unavailable", "deployment 'cdc-snapshot/no-such' does not "
                 "exist", "prefect --no-prompt deploy --all")  # fmt: skip


def test_a_flow_run_that_does_not_end_in_time_exits_8(
    tmp_path: Path, prefect_api: dict[str, str]
) -> None:
    name = _deployment(prefect_api, f"idle-{uuid.uuid4().hex[:6]}")
    cfg = _config(tmp_path, pg_port=free_port(), kafka="127.0.0.1:1", warehouse="w.duckdb")
    out = _snapshot_on(cfg, prefect_api, "--deployment", name, "--timeout", "0.1", "--json")
    line = _one_message(out, 8, "flow run not done", "after 0.1 min", "prefect worker start")
    doc = json.loads(out.stdout)  # stdout is the JSON alone
    port = prefect_api["PREFECT_API_URL"].split(":")[2].split("/")[0]
    assert doc["url"] == f"http://127.0.0.1:{port}/runs/flow-run/{doc['flow_run']}"
    assert doc["state"] in ("Scheduled", "Late") and doc["exit_code"] == 8, doc
    assert f"is still {doc['state']}" in line and doc["url"] in line


def test_a_failed_flow_run_exits_7_with_its_state_and_link(
    tmp_path: Path, prefect_api: dict[str, str]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Failed

    name = _deployment(prefect_api, f"failing-{uuid.uuid4().hex[:6]}")
    cfg = _config(tmp_path, pg_port=free_port(), kafka="127.0.0.1:1", warehouse="w.duckdb")
    stop = threading.Event()

    def fail_its_run() -> None:  # what a worker reports when the flow raises
        with (
            temporary_settings({PREFECT_API_URL: prefect_api["PREFECT_API_URL"]}),
            get_client(sync_client=True) as client,
        ):
            while not stop.is_set():
                for run in client.read_flow_runs():
                    if run.state is not None and run.state.is_scheduled():
                        deployment = client.read_deployment(run.deployment_id)
                        if f"cdc-snapshot/{deployment.name}" == name:
                            client.set_flow_run_state(run.id, Failed(message="boom"), force=True)
                            return
                time.sleep(0.5)

    failer = threading.Thread(target=fail_its_run, daemon=True)
    failer.start()
    try:
        out = _snapshot_on(cfg, prefect_api, "--deployment", name, "--timeout", "2")
    finally:
        stop.set()
        failer.join(10)
    line = _one_message(out, 7, "flow run failed", "ended Failed (boom): read its logs",
                        "/runs/flow-run/")  # fmt: skip
    assert name in line


# ------------------------------------------------------------- --json is JSON alone
def test_reconcile_json_stdout_is_only_the_json(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v text)")
    pipeline.sql("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 20) g")
    pipeline.configure(["public.items"])
    out = _cdc("reconcile", "-c", str(pipeline.workdir / "cdc.yaml"), "--json",
               "--lag-timeout", "1", "--log-level", "INFO")  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr  # nothing replicated: differences
    doc = json.loads(out.stdout)  # the whole of stdout
    assert doc["tables"][0]["table"] == "items", doc
    assert "Traceback" not in out.stderr
