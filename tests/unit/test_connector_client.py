"""cdc.source.connect_client and `cdc connector` against a real local HTTP server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cdc.cli.connector import app
from cdc.config import parse_config
from cdc.source.connect_client import ConnectClient, ConnectError
from cdc.source.connector import debezium_properties


@dataclass
class Recorded:
    method: str
    path: str
    content_type: str | None
    body: Any


@dataclass
class FakeConnect:
    """A Kafka Connect look-alike: scripted (status, body) answers, every request recorded."""

    url: str = ""
    answers: list[tuple[int, Any]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)

    def answer(self, status: int, body: Any = None) -> None:
        self.answers.append((status, body))


@pytest.fixture
def connect() -> Iterator[FakeConnect]:
    fake = FakeConnect()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            fake.requests.append(
                Recorded(
                    self.command,
                    self.path,
                    self.headers.get("Content-Type"),
                    json.loads(raw) if raw else None,
                )
            )
            status, body = fake.answers.pop(0) if fake.answers else (404, {"message": "nope"})
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


PROPS = {"connector.class": "io.debezium.connector.postgresql.PostgresConnector", "x": "1"}


def client(url: str) -> ConnectClient:
    return ConnectClient(url, timeout=5.0, backoff=0.01)


def test_put_created(connect: FakeConnect) -> None:
    created = {"name": "cdc-postgres", "config": PROPS, "tasks": [], "type": "source"}
    connect.answer(201, created)
    with client(connect.url) as c:
        assert c.put_connector_config("cdc-postgres", PROPS) == created
    [request] = connect.requests
    assert (request.method, request.path) == ("PUT", "/connectors/cdc-postgres/config")
    assert request.content_type == "application/json"
    assert request.body == PROPS


def test_put_updated_200_and_name_is_quoted(connect: FakeConnect) -> None:
    connect.answer(200, {"name": "a/b c", "config": PROPS, "tasks": [{"connector": "a/b c"}]})
    with client(connect.url) as c:
        assert c.put_connector_config("a/b c", PROPS)["name"] == "a/b c"
    assert connect.requests[0].path == "/connectors/a%2Fb%20c/config"


def test_409_rebalance_is_retried(connect: FakeConnect) -> None:
    connect.answer(409, {"error_code": 409, "message": "Cannot complete request momentarily"})
    connect.answer(200, {"name": "c", "config": PROPS, "tasks": []})
    with client(connect.url) as c:
        assert c.put_connector_config("c", PROPS)["name"] == "c"
    assert [r.method for r in connect.requests] == ["PUT", "PUT"]
    assert connect.requests[0].body == connect.requests[1].body == PROPS


def test_409_forever_gives_up_after_three_tries(connect: FakeConnect) -> None:
    for _ in range(5):
        connect.answer(409, {"error_code": 409, "message": "rebalance in progress"})
    with client(connect.url) as c, pytest.raises(ConnectError) as info:
        c.put_connector_config("c", PROPS)
    assert len(connect.requests) == 3
    assert info.value.status == 409
    assert str(info.value) == (
        "Kafka Connect PUT /connectors/c/config failed: HTTP 409: rebalance in progress"
    )


def test_400_carries_connect_message(connect: FakeConnect) -> None:
    message = "Connector configuration is invalid and contains the following 1 error(s):\nbad"
    connect.answer(400, {"error_code": 400, "message": message})
    with client(connect.url) as c, pytest.raises(ConnectError) as info:
        c.put_connector_config("c", PROPS)
    assert len(connect.requests) == 1  # not retried
    assert info.value.status == 400
    assert info.value.detail == message
    assert "HTTP 400" in str(info.value) and "Connector configuration is invalid" in str(info.value)


def test_status_and_delete(connect: FakeConnect) -> None:
    answer = {
        "name": "c",
        "connector": {"state": "RUNNING", "worker_id": "10.0.0.1:8083"},
        "tasks": [{"id": 0, "state": "RUNNING", "worker_id": "10.0.0.1:8083"}],
        "type": "source",
    }
    connect.answer(200, answer)
    connect.answer(204)
    connect.answer(404, {"error_code": 404, "message": "Connector c not found"})
    with client(connect.url) as c:
        assert c.status("c") == answer
        c.delete("c")
        with pytest.raises(ConnectError, match="HTTP 404: Connector c not found") as info:
            c.delete("c")
    assert info.value.status == 404
    assert [(r.method, r.path) for r in connect.requests] == [
        ("GET", "/connectors/c/status"),
        ("DELETE", "/connectors/c"),
        ("DELETE", "/connectors/c"),
    ]


def test_unreachable_server(closed_port_url: str) -> None:
    with client(closed_port_url) as c, pytest.raises(ConnectError) as info:
        c.status("c")
    assert info.value.status is None
    text = str(info.value)
    assert text.startswith(f"could not reach Kafka Connect at {closed_port_url}: ")
    assert text.endswith("is it running? (docker compose up connect)")


# -- CLI ----------------------------------------------------------------------------------------

CONFIG = """\
source:
  host: postgres
  database: shop
  user: postgres
  password: ${PGPASSWORD}
kafka:
  bootstrap_servers: kafka:19092
warehouse:
  type: duckdb
tables:
  - name: public.customers
connect:
  url: URL
"""


def write_config(tmp_path: Path, url: str = "http://127.0.0.1:8083") -> Path:
    path = tmp_path / "cdc.yaml"
    path.write_text(CONFIG.replace("URL", url))
    return path


def test_register_dry_run_prints_redacted_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "cli-secret")
    path = write_config(tmp_path)
    result = CliRunner().invoke(app, ["register", "--config", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "cli-secret" not in result.output
    printed = json.loads(result.stdout)
    expected = debezium_properties(
        parse_config(path.read_text(), env={"PGPASSWORD": "cli-secret"}), runtime="connect"
    )
    assert printed == {**expected, "database.password": "********"}
    assert printed["table.include.list"] == r"(?-i:public\.customers)"


def test_register_puts_config(
    connect: FakeConnect, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "cli-secret")
    path = write_config(tmp_path, connect.url)
    connect.answer(201, {"name": "cdc-postgres", "config": {"database.password": "cli-secret"}})
    result = CliRunner().invoke(app, ["register", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "cli-secret" not in result.output
    [request] = connect.requests
    assert (request.method, request.path) == ("PUT", "/connectors/cdc-postgres/config")
    assert request.body["database.password"] == "cli-secret"
    assert request.body["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"


def test_register_reports_errors(
    closed_port_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "x")
    result = CliRunner().invoke(
        app, ["register", "--config", str(write_config(tmp_path, closed_port_url))]
    )
    assert result.exit_code == 1
    assert "could not reach Kafka Connect" in result.output

    monkeypatch.delenv("PGPASSWORD")
    result = CliRunner().invoke(app, ["register", "--config", str(write_config(tmp_path))])
    assert result.exit_code == 2
    assert "source.password: environment variable PGPASSWORD is not set" in result.output


def test_status_command(
    connect: FakeConnect, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "x")
    connect.answer(
        200,
        {
            "name": "cdc-postgres",
            "connector": {"state": "RUNNING", "worker_id": "w1"},
            "tasks": [{"id": 0, "state": "FAILED", "worker_id": "w1", "trace": "Boom\n at x"}],
        },
    )
    result = CliRunner().invoke(
        app, ["status", "--config", str(write_config(tmp_path, connect.url))]
    )
    assert result.exit_code == 1  # a failed task is a failure
    assert "RUNNING" in result.output and "FAILED" in result.output and "Boom" in result.output
    assert connect.requests[0].path == "/connectors/cdc-postgres/status"
