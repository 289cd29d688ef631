"""`cdc run` exits within 30 s of SIGTERM, whatever it is doing (issue 17).

Each scenario starts `cdc run` as a process on the real stack, lets it get busy with something
that used to keep it from ever seeing the signal (a ``money`` column whose Decimal schema made
the decoder compute ``10**2147483647`` while holding the GIL), or that takes long (a warehouse
held by another process; one batch of many rows), sends SIGTERM and requires the process gone
within :data:`GRACE_S` with exit code 0. The process is SIGKILLed (and the test failed) if it
is still there. Afterwards, a consumer run to the end must leave the warehouse equal to the
source.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pytest

from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults

GRACE_S = 30


def _start_run(pipeline: Pipeline, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cdc", "run", "-c", str(pipeline.workdir / "cdc.yaml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CDC_LOG_FORMAT": "json"},
        )


def _wait_for(log: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether ``needle`` appeared in the log within ``timeout`` s (fails if the run ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text(errors="replace"):
            return True
        if proc.poll() is not None:
            raise AssertionError(f"cdc run exited early ({proc.returncode}): {log.read_text()}")
        time.sleep(0.05)
    return False


def _sigterm_and_wait(proc: subprocess.Popen[bytes], log: Path, what: str) -> float:
    """SIGTERM; the seconds until the process ended. Fails (after SIGKILL) if it outlives
    :data:`GRACE_S`, or if it exits with a code other than 0."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(
            f"cdc run still running {GRACE_S} s after SIGTERM ({what}); SIGKILLed. "
            f"Log tail:\n{log.read_text(errors='replace')[-3000:]}"
        )
    took = time.monotonic() - sent
    assert code == 0, f"cdc run exited with {code} on SIGTERM ({what}):\n{log.read_text()[-3000:]}"
    return took


def test_sigterm_while_decoding_a_money_column(pipeline: Pipeline) -> None:
    """A table with a ``money`` column (the schema that made the decoder compute
    ``10**2147483647``): SIGTERM once `cdc run` is consuming; it exits within 30 s with code
    0, and a consumer run to the end leaves the warehouse equal to the source."""
    pipeline.sql("CREATE TABLE m (id int PRIMARY KEY, v money)")
    pipeline.sql(
        "INSERT INTO m SELECT g, (g * 12.34)::numeric::money FROM generate_series(1, 200) g"
    )
    pipeline.sql("INSERT INTO m VALUES (201, NULL), (202, '-92233720368547758.08')")
    pipeline.sql("INSERT INTO m VALUES (203, '92233720368547758.07')")
    pipeline.configure(["public.m"], batch_size=100, linger_ms=50)
    pipeline.start_debezium()
    pipeline.wait_published()

    log = pipeline.workdir / "run.log"
    proc = _start_run(pipeline, log)
    try:
        assert _wait_for(log, "consumer started", proc, timeout=120), log.read_text()[-3000:]
        # it is now reading the money rows: applying them (fixed) or stuck decoding (the bug)
        _wait_for(log, "batch applied", proc, timeout=10)
        _sigterm_and_wait(proc, log, "decoding money rows")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert "stopped cleanly" in text, text[-3000:]

    ReplicatorThread(pipeline.config_).start().finish()
    pipeline.assert_equal_to_source(f"\nrun log tail:\n{text[-2000:]}")


def _hold(path: Path, timeout: float = 60) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file (one process at a time), retrying while `cdc run` has it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_sigterm_while_the_warehouse_is_held(pipeline: Pipeline) -> None:
    """Another process holds the DuckDB file, so `cdc run` retries its batch with backoff:
    SIGTERM then still ends it within 30 s, with code 0, and nothing is lost (a later run
    applies everything)."""
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v int)")
    pipeline.sql("INSERT INTO items SELECT g, g FROM generate_series(1, 500) g")
    config = pipeline.configure(["public.items"], batch_size=200, linger_ms=50)
    pipeline.start_debezium()
    pipeline.wait_published()

    log = pipeline.workdir / "run.log"
    proc = _start_run(pipeline, log)
    holder = None
    try:
        assert _wait_for(log, "batch applied", proc, timeout=120), log.read_text()[-3000:]
        holder = _hold(config.warehouse.path)
        pipeline.sql("UPDATE items SET v = v + 1")
        assert _wait_for(log, "warehouse unavailable", proc, timeout=120), log.read_text()
        time.sleep(2)  # into its backoff
        _sigterm_and_wait(proc, log, "retrying a held warehouse")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if holder is not None:
            holder.close()
    ReplicatorThread(config).start().finish()
    pipeline.assert_equal_to_source()


def test_sigterm_during_one_large_batch(pipeline: Pipeline) -> None:
    """One batch of 60,000 wide rows (batch_size above it): SIGTERM while it is read and
    applied; the process finishes (or abandons) that batch and exits within 30 s, code 0."""
    rows = 60_000
    pipeline.sql("CREATE TABLE wide (id int PRIMARY KEY, a text, b text, c numeric(20,4))")
    pipeline.sql(
        "INSERT INTO wide SELECT g, repeat(md5(g::text), 16), repeat('y', 300), g / 7.0 "
        f"FROM generate_series(1, {rows}) g"
    )
    config = pipeline.configure(["public.wide"], batch_size=100_000, linger_ms=20_000)
    pipeline.start_debezium()
    pipeline.wait_published()

    log = pipeline.workdir / "run.log"
    proc = _start_run(pipeline, log)
    try:
        assert _wait_for(log, "consumer started", proc, timeout=120), log.read_text()[-3000:]
        time.sleep(8)  # reading and decoding the batch (its linger is 20 s)
        _sigterm_and_wait(proc, log, "in one large batch")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ReplicatorThread(config).start().finish()
    pipeline.assert_equal_to_source()
