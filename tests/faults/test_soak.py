"""Fault scenario 19: a soak at a steady rate. ``cdc run`` (a subprocess, as in production)
replicates a mirror table and an scd2 table while a workload writes to both for
``CDC_SOAK_SECONDS`` (600 by default). Every ~5 s the test samples, from outside the consumer:

- its memory: VmRSS from ``/proc/<pid>/status``;
- events behind: each topic's log end minus the group's committed offset (the consumer commits
  to Kafka after the warehouse transaction holding the same offsets, so this is an upper bound
  of what the warehouse is missing);
- seconds behind: now minus the source commit time (``source.ts_ms``) of the oldest change not
  applied yet (the message at the committed offset), 0 when nothing is pending; this is how
  long the oldest waiting change has waited, at least what the warehouse lags;
- the consumer's own ``cdc_lag_seconds`` from ``--metrics-port``, as a cross-check.

Assertions: memory flat after warm-up, lag bounded and not trending upward, and at the end
(workload stopped, caught up, SIGTERM -> exit 0) the warehouse equals the source (:func:`verify`).
A summary line is printed and written to ``CDC_SOAK_REPORT`` (default ``<workdir>/soak.txt``).

Bounds, for a loaded 2-core CI machine (the rest of the suite runs beside the soak):

- RSS end - RSS warm < 50 MB, warm being the RSS at the end of the first quarter: at ~60 txn/s
  x ~2.5 changes the soak applies ~65k events in the last three quarters of 600 s, so a leak of
  ~800 bytes per event (a kept message, a per-key cache entry) would cross it. The first
  quarter is warm-up: one 600 s run measured a single step of ~47 MB between 60 s and 150 s
  (DuckDB's buffers and the allocator settling as the tables grow), flat after it (Q2 median
  283.1 MB, Q4 291.7 MB, end 291.5 MB); another run stayed within 208-226 MB throughout.
- the median RSS of the last quarter within 30 MB of the second quarter's (no steady climb);
- seconds behind < 30 s at every sample; the last quarter's max at most the first quarter's
  max + 10 s, and events behind in the last quarter at most 2x the first quarter's max + 1000.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import Consumer, TopicPartition
from fault_support import Workload, create_load_table, verify

from cdc.consumer.partitions import log_ends

if TYPE_CHECKING:
    from stack_support import Pipeline

    from cdc.config import Config

pytestmark = [pytest.mark.faults, pytest.mark.soak]

SOAK = float(os.environ.get("CDC_SOAK_SECONDS", "600"))
RATE = 35.0  # per table: the workload's target; it writes ~60 txn/s over both on 2 cores
SAMPLE = 5.0
RSS_GROWTH_MB = 50.0
RSS_CLIMB_MB = 30.0
LAG_MAX_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _metrics_lag(port: int) -> float | None:
    """The consumer's own max ``cdc_lag_seconds`` over its tables (None if not served)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cdc_lag_seconds{")
    ]
    return max(values) if values else None


class LagProbe:
    """Events and seconds behind, read from the broker only (the DuckDB file is the running
    consumer's: another process can't open it)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.topics = sorted({config.topic_for(t) for t in config.tables})
        base = config.kafka.client_config()
        self.group = Consumer({**base, "group.id": config.kafka.group_id,
                               "enable.auto.commit": False})  # fmt: skip
        self.reader = Consumer({**base, "group.id": f"{config.kafka.group_id}-soak-probe",
                                "enable.auto.commit": False})  # fmt: skip

    def close(self) -> None:
        self.group.close()
        self.reader.close()

    def _source_ts(self, topic: str, partition: int, offset: int, end: int) -> float | None:
        """The source commit time (epoch s) of the first change at or after ``offset``."""
        self.reader.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            msg = self.reader.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            value = msg.value()
            if value is not None:  # a delete's tombstone has none: the next message
                doc = json.loads(value)
                source = doc.get("payload", doc).get("source") or {}
                if "ts_ms" in source:
                    return float(source["ts_ms"]) / 1000
            if (msg.offset() or 0) + 1 >= end:
                return None
        return None

    def sample(self) -> tuple[int, float]:
        """(events behind, seconds behind) over every topic."""
        ends = log_ends(self.config, self.topics)
        wanted = [TopicPartition(t, p) for t, parts in ends.items() for p in parts]
        committed = {(tp.topic, tp.partition): tp.offset
                     for tp in self.group.committed(wanted, timeout=10)}  # fmt: skip
        now = time.time()
        events, seconds = 0, 0.0
        for topic, parts in ends.items():
            for p, (low, end) in parts.items():
                at = max(low, committed.get((topic, p), low))
                if end > at:
                    events += end - at
                    ts = self._source_ts(topic, p, at, end)
                    if ts is not None:
                        seconds = max(seconds, now - ts)
        return events, seconds


@dataclass
class Samples:
    t: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    lag_t: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    metrics_lag: list[float] = field(default_factory=list)
    halt: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def quarter(self, ts: list[float], values: list[float], q: int) -> list[float]:
        lo, hi = SOAK * q / 4, SOAK * (q + 1) / 4
        return [v for t, v in zip(ts, values, strict=True) if lo <= t < hi] or [values[-1]]


def _sample_lag(probe: LagProbe, s: Samples, began: float, port: int) -> None:
    """Every ~SAMPLE s until halted (a thread: one probe takes a few seconds on a loaded
    machine, the RSS samples keep their pace)."""
    try:
        while not s.halt.is_set():
            at = time.monotonic()
            events, seconds = probe.sample()
            s.lag_t.append(at - began)
            s.events.append(events)
            s.seconds.append(seconds)
            m = _metrics_lag(port)
            if m is not None:
                s.metrics_lag.append(m)
            s.halt.wait(max(0.0, SAMPLE - (time.monotonic() - at)))
    except BaseException as exc:  # surfaced by the main loop
        s.error = exc


def _wait_committed(probe: LagProbe, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"cdc run exited with {proc.returncode}"
        events, _ = probe.sample()
        if events == 0:
            return
        time.sleep(1)
    raise AssertionError(f"the consumer didn't catch up in {timeout} s: {probe.sample()}")


@pytest.mark.timeout(SOAK + 600)
def test_soak_memory_flat_lag_bounded_no_diffs(pipeline: Pipeline) -> None:
    create_load_table(pipeline, "items")
    create_load_table(pipeline, "dim")
    config = pipeline.configure(
        ["public.items", {"name": "public.dim", "mode": "scd2"}], batch_size=2000, linger_ms=200
    )
    pipeline.start_debezium()
    pipeline.wait_published()
    report = Path(os.environ.get("CDC_SOAK_REPORT") or pipeline.workdir / "soak.txt")
    port = _free_port()
    log = pipeline.workdir / "cdc-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc", "run", "--config", str(pipeline.workdir / "cdc.yaml"),
             "--metrics-port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    probe = LagProbe(config)
    s = Samples()
    try:
        _wait_committed(probe, proc, 120)  # the snapshot applied: the soak starts caught up
        rss_start = _rss_mb(proc.pid)
        with (
            Workload(pipeline.url, "items", rate=RATE, seed=19) as w1,
            Workload(pipeline.url, "dim", rate=RATE, seed=20) as w2,
        ):
            began = time.monotonic()
            lag = threading.Thread(target=_sample_lag, args=(probe, s, began, port), daemon=True)
            lag.start()
            while (elapsed := time.monotonic() - began) < SOAK:
                assert proc.poll() is None, (
                    f"cdc run exited with {proc.returncode} after {elapsed:.0f} s:\n"
                    + log.read_text()[-4000:]
                )
                assert w1.error is None and w2.error is None, (w1.error, w2.error)
                assert s.error is None, s.error
                s.t.append(elapsed)
                s.rss.append(_rss_mb(proc.pid))
                time.sleep(max(0.0, min(SAMPLE, SOAK - elapsed)))
            s.halt.set()
        written = time.monotonic() - began  # the workloads stopped
        txns = w1.commits + w2.commits
        lag.join(60)
        pipeline.wait_published()
        _wait_committed(probe, proc, 180)
        rss_end = _rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        assert code == 0, f"cdc run exited with {code} on SIGTERM:\n{log.read_text()[-4000:]}"
    finally:
        probe.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert s.error is None, s.error
    verify(pipeline, context=f"\ncdc run's log:\n{log.read_text()[-4000:]}")

    warm_at = max(30.0, SOAK / 4)  # the end of the first quarter (see the module docstring)
    warm = next(r for t, r in zip(s.t, s.rss, strict=True) if t >= warm_at)
    rss_max = max(s.rss)
    q2 = statistics.median(s.quarter(s.t, s.rss, 1))
    q4 = statistics.median(s.quarter(s.t, s.rss, 3))
    ev_q1 = max(s.quarter(s.lag_t, [float(e) for e in s.events], 0))
    ev_q4 = max(s.quarter(s.lag_t, [float(e) for e in s.events], 3))
    sec_q1 = max(s.quarter(s.lag_t, s.seconds, 0))
    sec_q4 = max(s.quarter(s.lag_t, s.seconds, 3))
    p95 = sorted(s.seconds)[int(0.95 * (len(s.seconds) - 1))]
    metrics = f", metrics lag max {max(s.metrics_lag):.1f} s" if s.metrics_lag else ""
    summary = (
        f"SOAK: {written:.0f} s, {txns} txns, {txns / written:.1f} txn/s, "
        f"RSS start {rss_start:.1f} MB warm {warm:.1f} MB end {rss_end:.1f} MB "
        f"max {rss_max:.1f} MB (median Q2 {q2:.1f} Q4 {q4:.1f}), "
        f"lag max {max(s.seconds):.1f} s p95 {p95:.1f} s (Q1 max {sec_q1:.1f} Q4 max "
        f"{sec_q4:.1f}){metrics}, events-behind max {max(s.events)} "
        f"(Q1 {ev_q1:.0f} Q4 {ev_q4:.0f}), {len(s.rss)} RSS / {len(s.events)} lag samples, "
        f"at {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
    )
    print(summary)
    every_30s = " ".join(
        f"{t:.0f}s:{r:.0f}" for i, (t, r) in enumerate(zip(s.t, s.rss, strict=True)) if i % 6 == 0
    )
    report.write_text(f"{summary}\nSOAK RSS MB by time: {every_30s}\n")

    assert rss_end - warm < RSS_GROWTH_MB, summary
    assert q4 - q2 < RSS_CLIMB_MB, summary
    assert max(s.seconds) < LAG_MAX_S, summary
    assert sec_q4 <= sec_q1 + 10, summary
    assert ev_q4 <= 2 * ev_q1 + 1000, summary
