"""prefect.yaml for real: a local Prefect server (its own process and database), `prefect
deploy --all`, a process worker, and the `replicate` deployment run to completion on the real
chain. Every process started here is stopped by pid."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prefect(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, f"prefect {' '.join(args)}: {out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_prefect_yaml_deploys_and_a_worker_runs_replicate(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v text)")
    pipeline.sql("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 300) g")
    pipeline.configure(["public.items"], batch_size=100, linger_ms=50)
    pipeline.start_debezium()
    pipeline.wait_published()

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "CDC_PROJECT_DIR": str(ROOT),
        "CDC_CONFIG": str(pipeline.workdir / "cdc.yaml"),
    }
    server_log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=server_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the Prefect server did not start in 120 s"
            time.sleep(0.5)

        _prefect(env, "work-pool", "create", "cdc-process", "--type", "process")
        deployed = _prefect(env, "--no-prompt", "deploy", "--all")
        assert "cdc-replicate/replicate" in deployed, deployed
        assert "cdc-snapshot/snapshot" in deployed, deployed
        created = _prefect(env, "deployment", "run", "cdc-replicate/replicate")
        match = re.search(r"UUID: ([0-9a-f-]{36})", created)
        assert match, created
        run_id = uuid.UUID(match.group(1))

        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "cdc-process"],
            env=env, stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )  # fmt: skip
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            deadline = time.monotonic() + 300
            while True:
                run = client.read_flow_run(run_id)
                if run.state is not None and run.state.is_final():
                    break
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the flow run did not finish in 300 s"
                time.sleep(1)
        assert run.state.is_completed(), (run.state, (tmp_path / "worker.log").read_text()[-3000:])
        pipeline.assert_equal_to_source()

        # `cdc snapshot --deployment`: the worker runs the snapshot flow; the same command
        # again (same idempotency key) joins that run instead of starting another. The key
        # is explicit: the default one changes with the minute, and two commands may
        # straddle a minute's end (seen in CI)
        cdc = Path(sys.executable).with_name("cdc")
        cmd = [str(cdc), "snapshot", "items", "-c", str(pipeline.workdir / "cdc.yaml"),
               "--deployment", "cdc-snapshot/snapshot", "--json",
               "--idempotency-key", f"test-{uuid.uuid4().hex}"]  # fmt: skip
        outcomes = []
        for _ in range(2):
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
            assert out.returncode == 0, out.stdout + out.stderr
            outcomes.append(json.loads(out.stdout.strip().splitlines()[-1]))
        assert outcomes[0]["state"] == "Completed", outcomes
        assert outcomes[1]["flow_run"] == outcomes[0]["flow_run"], outcomes
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)
        server_log.close()
    pipeline.assert_equal_to_source()
