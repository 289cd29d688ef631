"""Expected failures, pure logic: which exit code and which message each failure gets, the
DuckDB file's storage problems read from the filesystem, the broker watch's rate-limited
warning, and the flow run's outcome. No server starts here (tests/integration/
test_failure_paths.py runs the same paths against real processes)."""

from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import typer
from confluent_kafka import KafkaError, KafkaException
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings
from structlog.testing import capture_logs
from typer.testing import CliRunner

from cdc.cli import app
from cdc.cli.deployment import RunOutcome, api_url, outcome_of
from cdc.cli.exit_codes import MEANING, ExitCode
from cdc.cli.failures import PrefectUnavailableError, classify, expected_failures
from cdc.config import Config, load_config
from cdc.consumer.broker_watch import BrokerUnreachableError, BrokerWatch
from cdc.consumer.settings import ReplicationStoppedError
from warehouse.base import TerminalWarehouseError, TransientWarehouseError
from warehouse.duckdb import errors as duckdb_errors
from warehouse.duckdb.errors import map_error, storage_problem


def _config(tmp_path: Path) -> Config:
    path = tmp_path / "cdc.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            source: {host: 127.0.0.1, port: 5999, database: shop, user: repl}
            kafka: {bootstrap_servers: "127.0.0.1:9999", group_id: g}
            warehouse: {type: duckdb, path: w.duckdb}
            tables: [{name: public.items}]
            """
        )
    )
    return load_config(path)


# ------------------------------------------------------------------ exit codes
def test_every_exit_code_is_distinct_and_explained() -> None:
    assert len({int(c) for c in ExitCode}) == len(ExitCode)
    assert set(MEANING) == set(ExitCode)
    # the codes the README documented before stay what they were
    assert (ExitCode.NOT_OK, ExitCode.CONFIG, ExitCode.WAREHOUSE) == (1, 2, 3)


# ---------------------------------------------------------------- classification
def test_database_unreachable_names_the_server_and_what_to_check(tmp_path: Path) -> None:
    exc = psycopg.OperationalError(
        'connection failed: connection to server at "127.0.0.1", port 5999 failed: '
        "Connection refused\n\tIs the server running on that host?"
    )
    failure = classify(exc, _config(tmp_path))
    assert failure is not None and failure.code == ExitCode.SOURCE_UNREACHABLE == 4
    assert "shop at 127.0.0.1:5999 (user repl)" in failure.message
    assert "Connection refused Is the server running" in failure.message  # one line
    assert "Check that PostgreSQL runs" in failure.message


def test_broker_unreachable_by_error_code_not_by_text(tmp_path: Path) -> None:
    config = _config(tmp_path)
    down = classify(KafkaException(KafkaError(KafkaError._TRANSPORT, "refused")), config)
    assert down is not None and down.code == ExitCode.BROKER_UNREACHABLE == 5
    assert "127.0.0.1:9999" in down.message and "kafka.bootstrap_servers" in down.message
    # another Kafka error, even one whose text says "transport", is not "unreachable"
    other = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "transport"))
    assert classify(other, config) is None
    watched = classify(BrokerUnreachableError("no Kafka broker at x answered"), config)
    assert watched is not None and watched.code is ExitCode.BROKER_UNREACHABLE


def test_warehouse_prefect_and_unknown_failures() -> None:
    for exc in (TerminalWarehouseError("read-only"), TransientWarehouseError("held")):
        failure = classify(exc)
        assert failure is not None and failure.code is ExitCode.WAREHOUSE
    stopped = classify(ReplicationStoppedError("the warehouse refused the batch"))
    assert stopped is not None and stopped.code is ExitCode.WAREHOUSE
    prefect = classify(PrefectUnavailableError("no Prefect server configured"))
    assert prefect is not None and prefect.code == ExitCode.PREFECT == 6
    assert classify(ValueError("a bug")) is None  # keeps its traceback


def _command_failing_with(exc: Exception, as_json: bool) -> typer.Typer:
    command = typer.Typer()

    @command.command()
    def go() -> None:
        with expected_failures(as_json=as_json):
            raise exc

    return command


def test_an_expected_failure_is_one_message_and_its_code_never_a_traceback() -> None:
    result = CliRunner().invoke(_command_failing_with(TerminalWarehouseError("full"), False))
    assert result.exit_code == 3
    assert result.output.strip() == "warehouse unavailable: full"
    assert "Traceback" not in result.output


def test_under_json_stdout_gets_the_failure_as_json() -> None:
    failing = _command_failing_with(PrefectUnavailableError("set PREFECT_API_URL"), True)
    result = CliRunner().invoke(failing)
    assert result.exit_code == 6
    assert result.stdout.strip() == (
        '{"error": "Prefect unavailable", "message": "set PREFECT_API_URL", "exit_code": 6}'
    )
    assert "Prefect unavailable: set PREFECT_API_URL" in result.stderr


def test_an_unexpected_error_keeps_its_traceback() -> None:
    result = CliRunner().invoke(_command_failing_with(ValueError("a bug"), False))
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


# --------------------------------------------------------- DuckDB storage problems
class _FakeStatvfs:
    def __init__(self, flag: int = 0, free_blocks: int = 10**6) -> None:
        self.f_flag, self.f_bavail, self.f_frsize = flag, free_blocks, 4096


def test_a_writable_folder_has_no_storage_problem(tmp_path: Path) -> None:
    assert storage_problem(str(tmp_path / "w.duckdb")) is None
    assert storage_problem(":memory:") is None


def test_a_directory_or_a_missing_folder_in_place_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "w.duckdb").mkdir()
    problem = storage_problem(str(tmp_path / "w.duckdb"))
    assert problem is not None and "is a directory, not a DuckDB file" in problem
    problem = storage_problem(str(tmp_path / "no" / "w.duckdb"))
    assert problem is not None and "does not exist: create" in problem


def test_read_only_and_full_filesystems_are_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "w.duckdb")
    monkeypatch.setattr(os, "statvfs", lambda _p: _FakeStatvfs(flag=os.ST_RDONLY))
    problem = storage_problem(path)
    assert problem is not None and "read-only filesystem: remount it read-write" in problem
    monkeypatch.setattr(os, "statvfs", lambda _p: _FakeStatvfs(free_blocks=3))
    problem = storage_problem(path)
    assert problem is not None and "is full (12 KiB free): free some space" in problem


def test_an_io_error_on_a_read_only_file_is_terminal_a_lock_is_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "w.duckdb")
    io = duckdb.IOException("IO Error: Could not set lock on file")
    assert isinstance(map_error(io, table="t", path=path), TransientWarehouseError)
    monkeypatch.setattr(duckdb_errors.os, "statvfs", lambda _p: _FakeStatvfs(os.ST_RDONLY))
    mapped = map_error(io, table="t", path=path)
    assert isinstance(mapped, TerminalWarehouseError)
    assert "read-only filesystem" in str(mapped)


# ------------------------------------------------------------------ broker watch
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_connections_give_one_warning_every_interval() -> None:
    clock = _Clock()
    watch = BrokerWatch("127.0.0.1:9", warn_every_s=15, clock=clock)
    sink = watch.client_config()["logger"]
    with capture_logs() as logs:
        watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        for _ in range(450):  # what librdkafka said in 20 s
            sink.log(3, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connection refused")
            watch.on_error(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
            clock.now += 20 / 450
    warnings = [e for e in logs if e["event"] == "kafka broker unreachable; retrying"]
    assert len(warnings) == 2  # at 0 s and at 15 s
    assert not [e for e in logs if e["log_level"] not in ("debug", "warning", "info")]
    assert warnings[0]["bootstrap_servers"] == "127.0.0.1:9"
    assert "kafka.bootstrap_servers" in warnings[0]["action"]
    assert watch.failing and watch.silent_for() == pytest.approx(20, abs=0.1)
    watch.alive()
    assert not watch.failing and watch.silent_for() == 0


def test_one_closed_connection_is_no_outage() -> None:
    watch = BrokerWatch("b:9092")
    with capture_logs() as logs:
        watch.on_error(KafkaError(KafkaError._TRANSPORT, "Disconnected (after 600000ms)"))
    assert not watch.failing
    assert [e["log_level"] for e in logs] == ["debug"]


def test_other_kafka_log_lines_go_to_structlog() -> None:
    watch = BrokerWatch("b:9092")
    with capture_logs() as logs:
        watch.client_config()["logger"].log(30, "%s [%s] %s", "CONFWARN", "c", "ignored")
        watch.on_error(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"))
    assert [e["event"] for e in logs] == ["kafka client", "kafka error"]
    assert not watch.failing


class _Client:
    def __init__(self, answers: bool) -> None:
        self.answers = answers

    def list_topics(self, timeout: float) -> object:
        if not self.answers:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "all brokers down"))
        return object()


def test_confirm_raises_when_the_broker_does_not_answer() -> None:
    clock = _Clock()
    watch = BrokerWatch("127.0.0.1:9", clock=clock)
    clock.now += 61
    with pytest.raises(BrokerUnreachableError, match=r"127\.0\.0\.1:9 answered for 61 s"):
        watch.confirm(_Client(answers=False))
    watch.confirm(_Client(answers=True))
    assert watch.silent_for() == 0


# ---------------------------------------------------------------- deployments
def _run(state: StateType, name: str) -> FlowRun:
    return FlowRun(
        id=uuid.UUID(int=7), name="brave-otter", flow_id=uuid.uuid4(),
        state=State(type=state, name=name, message="boom" if state is StateType.FAILED else None),
    )  # fmt: skip


def test_flow_run_outcomes_and_their_exit_codes() -> None:
    api = "http://127.0.0.1:4299/api"
    with temporary_settings({PREFECT_API_URL: api}, restore_defaults={PREFECT_UI_URL}):
        done = outcome_of("cdc-snapshot/snapshot", _run(StateType.COMPLETED, "Completed"), 60, "p")
        failed = outcome_of("cdc-snapshot/snapshot", _run(StateType.FAILED, "Failed"), 60, "p")
        late = outcome_of("cdc-snapshot/snapshot", _run(StateType.SCHEDULED, "Late"), 0.5, "p")
    url = "http://127.0.0.1:4299/runs/flow-run/00000000-0000-0000-0000-000000000007"
    assert (done.code, failed.code, late.code) == (0, 7, 8)
    assert done.url == url
    assert failed.summary() == (
        "flow run brave-otter of cdc-snapshot/snapshot ended Failed (boom): read its logs. "
        f"See {url}"
    )
    assert "still Late after 0.5 min" in late.summary()
    assert "`prefect worker start --pool p`" in late.summary()
    doc: dict[str, Any] = failed.to_json()
    assert (doc["flow_run"], doc["state"], doc["url"], doc["exit_code"]) == (
        "00000000-0000-0000-0000-000000000007", "Failed", url, 7,
    )  # fmt: skip
    assert isinstance(done, RunOutcome)


def test_no_prefect_api_url_is_refused_without_starting_a_server() -> None:
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(PrefectUnavailableError, match="set PREFECT_API_URL"),
    ):
        api_url()


def test_snapshot_on_a_deployment_without_prefect_api_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(tmp_path)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    args = ["snapshot", "items", "-c", str(tmp_path / "cdc.yaml"),
            "--deployment", "cdc-snapshot/snapshot"]  # fmt: skip
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 6, result.output
    assert "Prefect unavailable: no Prefect server configured: set PREFECT_API_URL" in (
        result.output
    )
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit(6), not an error


def test_snapshot_deployment_name_must_be_flow_slash_deployment(tmp_path: Path) -> None:
    _config(tmp_path)
    args = ["snapshot", "items", "-c", str(tmp_path / "cdc.yaml"), "--deployment", "snapshot"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "is not FLOW/DEPLOYMENT" in result.output
