"""Secrets never reach logs or artifacts: the real chain runs with a password on every secret
setting (a least-privilege replication role's PostgreSQL password, a Debezium extra and a
librdkafka setting marked secret, the Snowflake password on fakesnow's server), and every
output of every command is searched for them: stdout and stderr of `cdc run` (and, on
DuckDB, of one serving metrics), `cdc status` (table and JSON), `cdc connector register
--dry-run` and of failing commands whose errors name the connection; Debezium's logs; every
file in the work dir (the DuckDB file and the run's logs included); /metrics and /health.

The secrets are read from the environment (`${VAR}` in cdc.yaml), so the configuration file
holds none and is searched too. The one file that must hold the database password is the
embedded engine's connector.json (mode 0600, checked), as a Kafka Connect worker holds it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import yaml
from psycopg import sql

from cdc.config import load_config

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def _replication_role(pipeline: Pipeline, role: str, password: str, publication: str) -> None:
    """The README's least-privilege setup: a LOGIN REPLICATION role with CONNECT, USAGE and
    SELECT on the listed table only, and a publication an admin made for that table."""
    with psycopg.connect(pipeline.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} WITH LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        for grant in (
            "GRANT CONNECT ON DATABASE {db} TO {role}",
            "GRANT USAGE ON SCHEMA public TO {role}",
            "GRANT SELECT ON public.items TO {role}",
        ):
            conn.execute(
                sql.SQL(grant).format(
                    db=sql.Identifier(pipeline.database), role=sql.Identifier(role)
                )
            )
        conn.execute(
            sql.SQL("CREATE PUBLICATION {} FOR TABLE public.items").format(
                sql.Identifier(publication)
            )
        )


def _drop_role(pipeline: Pipeline, role: str) -> None:
    with psycopg.connect(pipeline.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("engine", ["duckdb", "snowflake"])
def test_no_configured_secret_in_any_output(
    pipeline: Pipeline,
    engine: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = uuid.uuid4().hex
    secrets = {
        "CDC_TEST_PGPASSWORD": f"S3cr3t-pg-{token}",
        "CDC_TEST_SSLPASSWORD": f"S3cr3t-ssl-{token[::-1]}",
        "CDC_TEST_KAFKA_PASSWORD": f"S3cr3t-kafka-{token[:16]}{token[:16]}",
    }
    warehouse: dict[str, Any] | None = None
    if engine == "snowflake":
        from cdc.local.fakesnow_server import warehouse_section

        server = request.getfixturevalue("fakesnow_server")
        warehouse = warehouse_section(dict(server), pipeline.name.upper(), "RAW")
        secrets["CDC_TEST_SNOWFLAKE_PASSWORD"] = f"S3cr3t-snow-{token[8:24]}"
        warehouse["password"] = "${CDC_TEST_SNOWFLAKE_PASSWORD}"
        warehouse["login_timeout_seconds"] = 10
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)

    role = f"{pipeline.name}_replicator"
    publication = f"{pipeline.name}_slot_pub"
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, v int, note text)")
    pipeline.sql("INSERT INTO items SELECT g, g, 'seed' FROM generate_series(1, 50) g")
    _replication_role(pipeline, role, secrets["CDC_TEST_PGPASSWORD"], publication)
    try:
        outputs = _run_everything(pipeline, role, warehouse)
    finally:
        # killed: its graceful stop takes ~30 s, and nothing it would flush matters here
        pipeline.stack.stop_debezium(kill=True)
        _drop_role(pipeline, role)

    # the artifacts: Debezium's log (this test's part) and its other files, the work dir
    dbz = pipeline.stack.debezium_dir
    connector_json = dbz / "connector.json"
    assert connector_json.stat().st_mode & 0o077 == 0, "connector.json must be private"
    outputs["debezium.log"] = pipeline.stack.debezium_log.read_bytes()[
        int(outputs.pop("_debezium_log_from")) :
    ].decode(errors="replace")
    for path in [*_files(dbz), *_files(pipeline.workdir)]:
        if path not in (connector_json, pipeline.stack.debezium_log):
            outputs[str(path)] = path.read_bytes().decode("latin-1")
    assert any(p.suffix == ".duckdb" for p in _files(pipeline.workdir)) or engine != "duckdb"

    leaks = {
        f"{name} in {where}"
        for name, value in secrets.items()
        for where, text in outputs.items()
        if value in text or value.split("-")[-1] in text
    }
    assert not leaks, sorted(leaks)
    # and the searched outputs are the real thing (the run happened, the dry run masks)
    assert "stopped cleanly: 50 events" in outputs["cdc run --until-caught-up"]
    assert '"database.password": "********"' in outputs["cdc connector register --dry-run"]
    assert engine != "duckdb" or "cdc_slot_lag_bytes" in outputs["/metrics"]


def _run_everything(
    pipeline: Pipeline, role: str, warehouse: dict[str, Any] | None
) -> dict[str, str]:
    """Configure the pipeline with the secrets, run every command; their outputs by name.
    Commands that don't share the DuckDB file run side by side (each start costs seconds)."""
    source = {
        "user": role,
        "password": "${CDC_TEST_PGPASSWORD}",
        "signal_table": None,
        "debezium": {
            "publication.autocreate.mode": "disabled",
            "database.sslpassword": "${CDC_TEST_SSLPASSWORD}",
        },
    }
    pipeline.configure(["public.items"], linger_ms=50, source_options=source, warehouse=warehouse)
    cfg_path = pipeline.workdir / "cdc.yaml"
    doc = yaml.safe_load(cfg_path.read_text())
    doc["kafka"]["client"] = {"sasl.password": "${CDC_TEST_KAFKA_PASSWORD}"}
    doc["metrics"] = {"slot_poll_seconds": 1}
    cfg_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    pipeline.config = load_config(cfg_path)
    # the same pipeline with a source port nothing listens on (and its own warehouse), for
    # the failing commands
    bad = pipeline.workdir / "bad.yaml"
    doc["source"]["port"] = _free_port()
    doc["kafka"]["group_id"] = f"{pipeline.name}-bad"
    if warehouse is None:
        doc["warehouse"]["path"] = str(pipeline.workdir / "bad.duckdb")
    else:
        doc["warehouse"].update(port=_free_port(), login_timeout_seconds=2)
    bad.write_text(yaml.safe_dump(doc, sort_keys=False))

    outputs: dict[str, str] = {"_debezium_log_from": "0"}
    if pipeline.stack.debezium_log.exists():
        outputs["_debezium_log_from"] = str(pipeline.stack.debezium_log.stat().st_size)
    pipeline.start_debezium()
    pipeline.wait_published()
    c, b = str(cfg_path), str(bad)

    def finish(name: str, proc: subprocess.Popen[str], code: int | None = 0) -> str:
        out, err = proc.communicate(timeout=120)
        outputs[name] = f"{out}\n{err}"
        if code is not None:
            assert proc.returncode == code, f"{name} exited {proc.returncode}:\n{err[-3000:]}"
        return str(out)

    finish("cdc run --until-caught-up", _start("run", "-c", c, "--until-caught-up"))

    # a long-running `cdc run` serving metrics, scraped while it runs (its output doesn't
    # depend on the warehouse: DuckDB only); beside it the commands that don't open its file
    pipeline.sql("UPDATE items SET note = 'changed' WHERE id <= 5")
    port = _free_port()
    running = _start("run", "-c", c, "--metrics-port", str(port)) if warehouse is None else None
    closed = f"http://127.0.0.1:{_free_port()}"
    side = {
        "cdc connector register --dry-run": (_start("connector", "register", "-c", c,
                                                    "--dry-run"), 0),
        "connector register to nothing": (_start("connector", "register", "-c", c,
                                                 "--url", closed), 1),
        "cdc status, source down": (_start("status", "-c", b), None),
    }  # fmt: skip
    if warehouse is None:  # the consumer runs; only the slot poller's reads fail, logged
        side["cdc run, source down"] = (
            _start("run", "-c", b, "--metrics-port", "0", "--max-seconds", "3"),
            0,
        )
    try:
        deadline = time.monotonic() + 60
        metrics = ""
        while running is not None and time.monotonic() < deadline:
            try:
                metrics = _get(f"http://127.0.0.1:{port}/metrics")
            except urllib.error.URLError:
                metrics = ""
            if 'cdc_events_applied_total{table="items"} 5.0' in metrics and "slot_lag" in metrics:
                break
            time.sleep(0.3)
        if running is not None:
            outputs["/metrics"] = metrics
            outputs["/health"] = _get(f"http://127.0.0.1:{port}/health")
    finally:
        if running is not None:
            running.send_signal(signal.SIGTERM)
            finish("cdc run --metrics-port", running)
        for name, (proc, code) in side.items():
            finish(name, proc, code)
    if running is not None:
        assert 'cdc_events_applied_total{table="items"} 5.0' in outputs["/metrics"]
        assert json.loads(outputs["/health"])["status"] == "ok", outputs["/health"]
    assert f'"database.user": "{role}"' in outputs["cdc connector register --dry-run"]
    down = outputs["cdc status, source down"]
    assert side["cdc status, source down"][0].returncode != 0 and "127.0.0.1" in down, down
    if warehouse is None:
        assert "replication slot lag not read" in outputs["cdc run, source down"]

    status = [_start("status", "-c", c), _start("status", "-c", c, "--json")]
    finish("cdc status", status[0])
    report = json.loads(finish("cdc status --json", status[1]).strip().splitlines()[-1])
    assert report["slot"]["exists"] and report["warnings"] == [], report
    return outputs


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cdc", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CDC_LOG_FORMAT": "json"},
    )
