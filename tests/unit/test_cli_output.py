"""What the CLI prints when its output is not a terminal, its version, `cdc dlq list`'s
partition and `cdc local restart`'s refusals; no server (the dead letters are stubbed)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from rich.console import Console as RichConsole
from rich.table import Table
from typer.testing import CliRunner

from cdc.cli import app
from cdc.cli.console import PIPED_WIDTH, Console
from cdc.compare import TableDiff
from cdc.config import dump_example_config
from cdc.consumer import dlq
from cdc.demo.summary import DemoResult, print_summary

SHOP = ["customers", "products", "orders", "order_items", "warehouse_locations_by_region"]
HEADERS = ["table", "mode", "source rows", "warehouse rows", "keys in quarantine",
           "diffs before replay", "replayed", "diffs", "detail"]  # fmt: skip


def cells(output: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    for line in output.splitlines():
        row = [c.strip() for c in re.split(r"[│┃|]", line)[1:-1]]
        if row and row[0] == first:
            return row
    raise AssertionError(f"no row {first!r} in:\n{output}")


def demo_result() -> DemoResult:
    return DemoResult(
        ok=True,
        events=1234,
        tables=[TableDiff(name, 1000 + i, 1000 + i) for i, name in enumerate(SHOP)],
        warehouse="demo.duckdb",
        seconds=42.0,
        workload_changes=1000,
        workload_transactions=300,
        modes={"customers": "scd2", "products": "scd2"},
    )


def test_the_demo_summary_keeps_full_names_when_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_summary(demo_result(), Console())  # prints to pytest's captured stdout: no terminal
    out = capsys.readouterr().out
    assert "…" not in out
    header = cells(out, "table")
    assert header == HEADERS
    for i, name in enumerate(SHOP):
        mode = "scd2" if name in ("customers", "products") else "mirror"
        assert cells(out, name)[:4] == [name, mode, str(1000 + i), str(1000 + i)]
    # the same table on rich's own console is cut to 80 columns: what this console prevents
    narrow = io.StringIO()
    print_summary(demo_result(), RichConsole(file=narrow))
    assert "…" in narrow.getvalue()


def test_the_console_is_wide_only_off_a_terminal() -> None:
    piped = Console(file=io.StringIO())
    assert piped.width == PIPED_WIDTH
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert terminal.width == RichConsole(file=io.StringIO(), force_terminal=True).width
    table = Table()
    table.add_column("name")
    table.add_row("x" * 300)
    piped.print(table)
    text = piped.file.getvalue()  # type: ignore[attr-defined]
    assert "x" * 300 in text and max(len(line) for line in text.splitlines()) == 304


def test_cli_tables_through_clirunner_are_not_cut(tmp_path: Path) -> None:
    state_dir = tmp_path / ("a-state-directory-with-a-rather-long-name-" * 3)
    result = CliRunner().invoke(app, ["local", "status", "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    log = cells(result.output, "debezium")[3]
    assert log == str(state_dir.resolve() / "debezium" / "debezium.log")
    assert not state_dir.exists()  # status of nothing writes nothing


def test_version_is_the_installed_package_version() -> None:
    expected = f"cdc-replicator {version('cdc-replicator')}"
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == expected
    assert re.fullmatch(r"cdc-replicator \d+\.\d+\S*", expected)
    proc = subprocess.run(
        [sys.executable, "-m", "cdc", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, expected), proc.stderr


def _letter(partition: int, offset: int, original: tuple[str, int, int]) -> dlq.DeadLetter:
    topic, part, off = original
    return dlq.DeadLetter(
        topic=f"{topic}.dlq",
        partition=partition,
        offset=offset,
        key=None,
        value=b"{}",
        headers={
            dlq.H_ERROR_CLASS: "DataError",
            dlq.H_ERROR_MESSAGE: "NOT NULL constraint failed: items.price",
            dlq.H_TOPIC: topic,
            dlq.H_PARTITION: str(part),
            dlq.H_OFFSET: str(off),
            dlq.H_FAILED_AT: "1765100000000",
        },
    )


def test_dlq_list_shows_the_partition_in_the_table_and_the_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "cdc.yaml"
    config.write_text(dump_example_config())
    letters = [_letter(2, 17, ("cdc.public.items", 1, 42)), _letter(0, 3, ("cdc.public.o", 0, 9))]
    monkeypatch.setattr(dlq, "read_dead_letters", lambda client, topics, **kw: iter(letters))

    result = CliRunner().invoke(app, ["dlq", "list", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert cells(result.output, "dead-letter topic")[:3] == ["dead-letter topic", "partition",
                                                             "offset"]  # fmt: skip
    assert cells(result.output, "cdc.public.items.dlq") == [
        "cdc.public.items.dlq", "2", "17", "cdc.public.items[1]@42",
        "DataError: NOT NULL constraint failed: items.price",
    ]  # fmt: skip
    assert cells(result.output, "cdc.public.o.dlq")[:3] == ["cdc.public.o.dlq", "0", "3"]

    result = CliRunner().invoke(app, ["dlq", "list", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert (first["topic"], first["partition"], first["offset"]) == ("cdc.public.items.dlq", 2, 17)
    assert first["original"] == {"topic": "cdc.public.items", "partition": 1, "offset": 42}
    assert first["error"] == "DataError: NOT NULL constraint failed: items.price"
    assert first["headers"][dlq.H_PARTITION] == "1"
    assert (second["partition"], second["original"]["partition"]) == (0, 0)


def test_restart_refuses_when_the_stack_does_not_run(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    result = CliRunner().invoke(
        app, ["local", "restart", "debezium", "--state-dir", str(state_dir)]
    )
    assert result.exit_code == 2, result.output
    assert "not running: postgres, broker" in result.output
    assert "cdc local up" in result.output
    result = CliRunner().invoke(
        app, ["local", "restart", "postgres", "--state-dir", str(state_dir)]
    )
    assert result.exit_code == 2  # only debezium restarts on its own
