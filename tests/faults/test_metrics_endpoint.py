"""Operability on the real chain. `cdc run --metrics-port`: /metrics counts what was applied
per table, shows the slot's lag and no lag once caught up, /health answers 200 while the loop
runs, and SIGTERM still ends the run cleanly (exit 0). `cdc status` warns when the slot retains
more WAL than the threshold, and when the slot is missing."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from pathlib import Path

    from stack_support import Pipeline

pytestmark = pytest.mark.faults

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _scrape(base: str) -> Samples:
    code, text = _get(f"{base}/metrics")
    assert code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _wait_for(
    base: str, want: dict[tuple[str, tuple[tuple[str, str], ...]], float], log: Path
) -> Samples:
    deadline = time.monotonic() + 60
    got: Samples = {}
    while time.monotonic() < deadline:
        try:
            got = _scrape(base)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)  # not serving yet
            continue
        if all(got.get(k) == v for k, v in want.items()):
            return got
        time.sleep(0.2)
    raise AssertionError(
        f"metrics never reached {want}: { ({k: got.get(k) for k in want}) }\n"
        f"cdc run's log:\n{log.read_text()[-4000:]}"
    )


def test_metrics_and_health_of_a_running_replicator(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v int)")
    pipeline.sql("CREATE TABLE notes (id int PRIMARY KEY, t text)")
    pipeline.sql("INSERT INTO items SELECT g, g FROM generate_series(1, 120) g")
    pipeline.sql("INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 30) g")
    config = pipeline.configure(["public.items", "public.notes"], linger_ms=50)
    cfg_path = pipeline.workdir / "cdc.yaml"
    with cfg_path.open("a") as f:
        f.write("metrics:\n  slot_poll_seconds: 1\n")
    pipeline.start_debezium()
    pipeline.wait_published()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = pipeline.workdir / "run.log"
    slot = (("slot", config.source.slot_name),)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc", "run", "-c", str(cfg_path), "--metrics-port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        got = _wait_for(
            base,
            {
                ("cdc_events_applied_total", (("table", "items"),)): 120,
                ("cdc_events_applied_total", (("table", "notes"),)): 30,
            },
            log,
        )
        assert got[("cdc_batches_total", ())] >= 1
        assert got[("cdc_batch_apply_seconds_count", ())] == got[("cdc_batches_total", ())]
        assert got[("cdc_dead_letters_total", ())] == 0
        assert got[("cdc_warehouse_retries_total", ())] == 0
        assert got[("cdc_table_parked", (("table", "items"),))] == 0

        # idle at the end of the log: nothing pending, 0 s behind; the slot read on its own
        got = _wait_for(
            base,
            {
                ("cdc_lag_events", (("table", "items"),)): 0,
                ("cdc_lag_events", (("table", "notes"),)): 0,
                ("cdc_lag_seconds", (("table", "items"),)): 0,
                ("cdc_slot_active", slot): 1,
            },
            log,
        )
        assert got[("cdc_slot_lag_bytes", slot)] >= 0
        assert got[("cdc_slot_retained_wal_bytes", slot)] > 0
        code, body = _get(f"{base}/health")
        health = json.loads(body)
        assert (code, health["status"], health["pending_events"]) == (200, "ok", 0), body

        # changes made while it runs are counted as they are applied
        pipeline.sql("UPDATE items SET v = -v WHERE id <= 10")
        _wait_for(base, {("cdc_events_applied_total", (("table", "items"),)): 130}, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    text = log.read_text()
    assert code == 0, text[-4000:]
    assert "stopped cleanly: 160 events" in text
    assert f"{base}/metrics" in text  # the URL is logged when serving starts
    with pytest.raises(urllib.error.URLError):
        _get(f"{base}/health")  # and the server is gone with the process
    pipeline.assert_equal_to_source()
    pipeline.stack.stop_debezium(kill=True)  # its graceful stop takes ~30 s; nothing to keep


def _status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc", "status", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_warns_about_retained_wal_and_a_missing_slot(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v int)")
    pipeline.sql("INSERT INTO items SELECT g, g FROM generate_series(1, 10) g")
    config = pipeline.configure(["public.items"])
    cfg_path = pipeline.workdir / "cdc.yaml"
    pipeline.start_debezium()
    pipeline.wait_published()
    calm = _status(cfg_path, "--json")
    assert calm.returncode == 0, calm.stderr
    assert json.loads(calm.stdout.splitlines()[-1])["warnings"] == []

    # nobody confirms the slot any more while 3 MB of WAL are written
    pipeline.stack.stop_debezium(kill=True)
    pipeline.sql("SELECT pg_logical_emit_message(false, 'filler', repeat('x', 3000000))")
    doc = json.loads(_status(cfg_path, "--json", "--wal-warn-mb", "2").stdout.splitlines()[-1])
    assert doc["slot"]["retained_bytes"] > 3_000_000 and not doc["slot"]["active"]
    [warning] = doc["warnings"]
    assert f"replication slot {config.source.slot_name} retains" in warning
    assert "threshold 2 MB; inactive" in warning
    table = _status(cfg_path, "--wal-warn-mb", "2")
    assert table.returncode == 0, table.stderr
    assert "warning: replication slot" in table.stdout and "heartbeat" in table.stdout
    # the default threshold (1024 MB) is far away
    assert json.loads(_status(cfg_path, "--json").stdout.splitlines()[-1])["warnings"] == []

    pipeline.sql("SELECT pg_drop_replication_slot(%s)", [config.source.slot_name])
    gone = json.loads(_status(cfg_path, "--json").stdout.splitlines()[-1])
    assert not gone["slot"]["exists"]
    assert gone["warnings"][0].startswith(
        f"replication slot {config.source.slot_name} does not exist"
    )
