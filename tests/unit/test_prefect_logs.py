"""The log bridge (cdc.prefect_logs): inside a Prefect flow or task run the product's structlog
events also reach the run's Prefect logger, at their level, with their context in the line and
secrets masked as on the console; outside a run nothing changes. No server: the run contexts
are entered by hand, Prefect's sending to its API is switched off, and the run loggers' records
are captured where Prefect's API handler would get them."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings
from pydantic import SecretStr

from cdc.logs import configure_logging
from cdc.prefect_logs import forward_to_prefect, product_logs_in_prefect, render_line

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def prefect_records() -> Iterator[Captured]:
    """Records of Prefect's run loggers (what its API handler sends to the flow run's page);
    sending to an API is off, so no server is needed or started."""
    handler = Captured()
    loggers = [logging.getLogger(name) for name in RUN_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    with temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: False}):
        yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def flow_run() -> FlowRun:
    return FlowRun(id=uuid.uuid4(), name="tidy-otter", flow_id=uuid.uuid4())


def json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_outside_a_run_the_event_passes_unchanged_and_nothing_goes_to_prefect(
    prefect_records: Captured, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {"event": "batch applied", "level": "info", "events": 12}
    assert forward_to_prefect(None, "info", event) is event
    assert event == {"event": "batch applied", "level": "info", "events": 12}

    configure_logging("INFO", fmt="json")
    structlog.get_logger("cdc.consumer").info("batch applied", events=12, table="orders")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == "batch applied" and line["events"] == 12 and line["table"] == "orders"
    assert prefect_records.records == []


def test_in_a_flow_run_events_reach_its_logger_at_their_level_with_their_context(
    prefect_records: Captured, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", fmt="json")
    log = structlog.get_logger("cdc.reconcile")
    run = flow_run()
    with FlowRunContext.model_construct(flow_run=run, flow=None):
        log.info("compared", table="orders", rounds=2, differing=1, offsets={"cdc.orders[0]": 41})
        log.warning("repair left out unfit rows", table="orders", rows=3)
        log.debug("chunk loaded", table="orders")  # below the configured level: nowhere
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("table failed", table="orders")
    records = prefect_records.records
    assert [(r.name, r.levelno) for r in records] == [
        ("prefect.flow_runs", logging.INFO),
        ("prefect.flow_runs", logging.WARNING),
        ("prefect.flow_runs", logging.ERROR),
    ]
    assert {getattr(r, "flow_run_id", None) for r in records} == {str(run.id)}
    compared, warning, failed = prefect_records.lines()
    assert compared == "compared table=orders rounds=2 differing=1 offsets={'cdc.orders[0]': 41}"
    assert warning == "repair left out unfit rows table=orders rows=3"
    assert failed.startswith("table failed table=orders\nTraceback (most recent call last):")
    assert failed.rstrip().endswith("ValueError: boom")
    # the terminal gets every event as before, the debug one filtered the same way
    shown = [line["event"] for line in json_lines(capsys.readouterr().err)]
    assert shown == ["compared", "repair left out unfit rows", "table failed"]


def test_in_a_task_run_events_reach_the_task_runs_logger(prefect_records: Captured) -> None:
    configure_logging("INFO", fmt="json")
    run = flow_run()
    task_run = TaskRun(id=uuid.uuid4(), name="compare-tables-0", flow_run_id=run.id,
                       task_key="compare", dynamic_key="0")  # fmt: skip
    with (
        FlowRunContext.model_construct(flow_run=run, flow=None),
        TaskRunContext.model_construct(task_run=task_run, task=None),
    ):
        structlog.get_logger("cdc.tier").info("tier move committed", table="products", rows=5)
    (record,) = prefect_records.records
    assert record.name == "prefect.task_runs"
    assert getattr(record, "task_run_id", None) == str(task_run.id)
    assert getattr(record, "flow_run_id", None) == str(run.id)
    assert record.getMessage() == "tier move committed table=products rows=5"


def test_secrets_stay_masked_in_the_prefect_line_as_on_the_console(
    prefect_records: Captured, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", fmt="console")
    with FlowRunContext.model_construct(flow_run=flow_run(), flow=None):
        structlog.get_logger("cdc").info("connecting", password=SecretStr("hunter2"), user="cdc")
    (line,) = prefect_records.lines()
    assert "hunter2" not in line and "hunter2" not in capsys.readouterr().err
    assert line == "connecting password=SecretStr('**********') user=cdc"


def test_the_flows_context_bridges_a_default_structlog_and_lends_the_run_logger_to_threads(
    prefect_records: Captured,
) -> None:
    structlog.reset_defaults()  # a worker's flow-run process: nobody configured structlog
    log = structlog.get_logger("cdc.snapshot")

    def in_a_thread(event: str) -> None:
        thread = threading.Thread(target=log.info, args=(event,), kwargs={"table": "orders"})
        thread.start()
        thread.join()

    with FlowRunContext.model_construct(flow_run=flow_run(), flow=None):
        with product_logs_in_prefect():
            log.info("snapshot started", table="orders", chunks=4)
            in_a_thread("chunk read as rows")  # a reader thread: no run context of its own
        in_a_thread("after the flow body")  # nothing lent any more
    log.info("outside the run")
    assert prefect_records.lines() == [
        "snapshot started table=orders chunks=4",
        "chunk read as rows table=orders",
    ]
    assert forward_to_prefect in structlog.get_config()["processors"]


def test_render_line_puts_stack_and_traceback_below_the_event() -> None:
    event = {"event": "stopped", "level": "error", "timestamp": "t", "table": "a",
             "stack": "Stack (most recent call last)", "exception": "Traceback"}  # fmt: skip
    line = render_line(event)
    assert line == "stopped table=a\nStack (most recent call last)\nTraceback"
