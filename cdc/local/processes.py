"""Tracking of processes the local stack starts: by pid and start time, never by name."""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A process we started: its pid plus its create time, so a recycled pid is not ours."""

    name: str
    pid: int
    create_time: float

    @classmethod
    def of(cls, name: str, pid: int) -> ProcessRecord:
        return cls(name=name, pid=pid, create_time=psutil.Process(pid).create_time())

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return (
                abs(proc.create_time() - self.create_time) < 0.01
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Signal the process (and wait); SIGKILL if it outlives ``timeout``."""
        if not self.alive():
            return
        try:
            proc = psutil.Process(self.pid)
            os.kill(self.pid, sig)
            proc.wait(timeout=timeout)
        except psutil.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            psutil.Process(self.pid).wait(timeout=5)
        except (psutil.NoSuchProcess, ProcessLookupError, ChildProcessError):
            pass

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout: float, what: str, alive: ProcessRecord | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if alive is not None and not alive.alive():
            raise RuntimeError(f"{what} exited before listening on 127.0.0.1:{port}")
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")
