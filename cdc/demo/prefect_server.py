"""A local Prefect server and a process worker as child processes of ``cdc demo --prefect``
(and of the UI test), tracked and stopped by pid, never by name.

The server keeps its embedded SQLite database in ``home`` (``PREFECT_HOME``) and listens on a
free 127.0.0.1 port; ``PREFECT_UI_API_URL`` tells the UI where its API is, so the UI works on
any port. Every ``prefect`` command and the worker get the same environment: this server, the
checkout's ``prefect.yaml`` folder as ``CDC_PROJECT_DIR`` and the demo's ``CDC_CONFIG``. The
``PREFECT_*`` variables of the caller are left out, so a profile or API key of another server
never leaks in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from cdc.local.processes import ProcessRecord, free_port

POOL = "cdc-process"


class PrefectProcessError(RuntimeError):
    """A ``prefect`` command failed, or the server or worker did not come up."""


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return f"({path} was not written)"


class LocalPrefect:
    """``prefect server start`` and ``prefect worker start`` for one project, by pid."""

    def __init__(self, home: Path, project_dir: Path, env: dict[str, str] | None = None) -> None:
        self.home = home.resolve()
        self.project_dir = project_dir.resolve()
        self.port = free_port()
        self.extra_env = dict(env or {})
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    def log(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        return {
            **base,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick a new flow run up within a second
            "CDC_PROJECT_DIR": str(self.project_dir),
            **self.extra_env,
        }

    # ----------------------------------------------------------------- processes
    def _spawn(self, name: str, *args: str) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log(name), "ab") as log:
            self._procs[name] = subprocess.Popen(
                [sys.executable, "-m", "prefect", *args],
                env=self.env(),
                cwd=self.project_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops these in order
            )

    def start_server(self) -> None:
        """Start the server (not waiting for it: see :meth:`wait_healthy`)."""
        self._spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(self.port))

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self._procs["server"]
            if proc.poll() is not None:
                raise PrefectProcessError(
                    f"the Prefect server exited with {proc.returncode}:\n{tail(self.log('server'))}"
                )
            with contextlib.suppress(httpx.HTTPError):  # not listening yet
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise PrefectProcessError(
                    f"the Prefect server did not answer on {self.api_url}/health within "
                    f"{timeout:.0f} s:\n{tail(self.log('server'))}"
                )
            time.sleep(0.5)

    def start_worker(self, pool: str = POOL) -> None:
        self._spawn("worker", "worker", "start", "--pool", pool)

    def alive(self) -> list[str]:
        return [name for name, proc in self._procs.items() if proc.poll() is None]

    def cli(self, *args: str, timeout: float = 300) -> str:
        """Run ``prefect ARGS`` against this server from the project folder; its output."""
        out = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            env=self.env(), cwd=self.project_dir, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if out.returncode != 0:
            raise PrefectProcessError(
                f"`prefect {' '.join(args)}` exited with {out.returncode}:\n"
                f"{(out.stdout + out.stderr)[-3000:]}"
            )
        return out.stdout + out.stderr

    def stop(self) -> list[str]:
        """Stop the worker, then the server, each with the processes it started, by pid."""
        stopped = []
        for name in ("worker", "server"):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                _stop_tree(proc)
                stopped.append(name)
        return stopped


def _stop_tree(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM (then SIGKILL) ``proc``, then every process it had started that outlived it,
    each by its pid and start time (a recycled pid is not ours)."""
    children = []
    try:
        found = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        found = []
    for child in found:
        with contextlib.suppress(psutil.Error):  # gone already
            children.append(ProcessRecord.of(f"child of {proc.pid}", child.pid))
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for record in children:
        record.stop(timeout=10)
