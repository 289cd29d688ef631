"""`cdc history`: a real DuckDB history built through DuckDBWarehouse.apply, read by the command."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from rich.console import Console
from sample_data import ev
from typer.testing import CliRunner

import cdc.cli
from cdc.cli import app
from cdc.cli.history import display, jsonable
from cdc.model import (
    ChangeEvent,
    Column,
    ColumnType,
    Interval,
    Kind,
    Op,
    TableId,
    TableSchema,
)
from warehouse.base import Scd2Options, TableBatch, TableTarget
from warehouse.duckdb.adapter import DuckDBWarehouse

ACCOUNTS = TableSchema(
    TableId("public", "accounts"),
    (
        Column("region", ColumnType(Kind.TEXT), nullable=False),
        Column("id", ColumnType(Kind.INT64), nullable=False),
        Column("name", ColumnType(Kind.TEXT)),  # tracked
        Column("tier", ColumnType(Kind.TEXT)),  # tracked
        Column("balance", ColumnType(Kind.DECIMAL, precision=12, scale=2)),  # in place
        Column("note", ColumnType(Kind.TEXT)),  # in place, long
    ),
    ("region", "id"),
)
TARGET = TableTarget("accounts", mode="scd2", scd2=Scd2Options(track=("name", "tier")))
BASE_US = 1_700_000_000_000_000
LONG_NOTE = "n" * 300

CONFIG = """\
source:
  host: 127.0.0.1
  port: 5432
  database: shop
  user: postgres
kafka:
  bootstrap_servers: 127.0.0.1:9092
warehouse:
  type: duckdb
  path: {path}
tables:
  - name: public.accounts
    mode: scd2
    scd2:
      track: [name, tier]
  - name: public.orders
  - name: sales.ledger
    target: ledger_history
    mode: scd2
"""


def ts(tx: int) -> datetime:
    return datetime.fromtimestamp(0, UTC) + timedelta(microseconds=BASE_US + tx * 1_000_000)


def event(op: Op, lsn: int, tx: int, key: tuple[str, int], **values: Any) -> ChangeEvent:
    """A change of transaction ``tx``, committed ``tx`` seconds after BASE_US, at offset lsn."""
    region, id_ = key
    commit_us = BASE_US + tx * 1_000_000
    return ev(
        op,
        {"region": region, "id": id_},
        lsn,
        ACCOUNTS,
        tx=tx,
        commit_us=commit_us,
        snapshot=False,
        topic="cdc.public.accounts",
        offset=lsn,
        **values,
    )


ANN = ("eu", 1)
BOB = ("eu", 2)
FULL = {"name": "Ann", "tier": "gold", "balance": Decimal("1.00"), "note": LONG_NOTE}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A warehouse holding three versions of eu/1 and one of eu/2, and its cdc.yaml."""
    path = tmp_path / "wh.duckdb"
    wh = DuckDBWarehouse(path)
    batches = [
        [
            event(Op.CREATE, 10, 100, ANN, **FULL),
            event(Op.CREATE, 11, 100, BOB, **{**FULL, "name": "Bob"}),
            # untracked column: updated in place
            event(Op.UPDATE, 20, 101, ANN, **{**FULL, "balance": Decimal("2.50")}),
        ],
        [
            # two tracked changes in one transaction: one version
            event(Op.UPDATE, 30, 102, ANN, **{**FULL, "name": "Anna", "balance": Decimal("2.50")}),
            event(Op.UPDATE, 31, 102, ANN, **{**FULL, "name": "Anna", "tier": "silver"}),
            event(Op.DELETE, 40, 103, ANN),
            event(Op.CREATE, 50, 104, ANN, **{**FULL, "name": "Ann B", "note": "back"}),
        ],
    ]
    for batch in batches:
        wh.apply([TableBatch(TARGET, ACCOUNTS, batch)], [])
    wh.close()
    file = tmp_path / "cdc.yaml"
    file.write_text(CONFIG.format(path=path))
    return file


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables wide enough that cells are not folded (CliRunner's output is no terminal)."""
    monkeypatch.setattr(cdc.cli, "console", Console(width=400))
    monkeypatch.setattr(cdc.cli, "err", Console(width=400, stderr=True))


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["history", *args])


def test_json_lines_are_the_versions_oldest_first(config: Path) -> None:
    result = invoke("accounts", "eu", "1", "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [list(r)[:6] for r in rows] == [
        ["valid_from", "valid_to", "is_current", "_cdc_op", "_cdc_txid", "_cdc_lsn"]
    ] * 3
    assert [(r["valid_from"], r["valid_to"]) for r in rows] == [
        (ts(100).isoformat(), ts(102).isoformat()),
        (ts(102).isoformat(), ts(103).isoformat()),
        (ts(104).isoformat(), None),
    ]
    assert [r["is_current"] for r in rows] == [False, False, True]
    assert [r["_cdc_deleted"] for r in rows] == [False, True, False]
    assert [(r["_cdc_op"], r["_cdc_txid"], r["_cdc_lsn"]) for r in rows] == [
        ("c", 100, 20),
        ("u", 102, 31),
        ("c", 104, 50),
    ]
    assert [(r["name"], r["tier"], r["balance"]) for r in rows] == [
        ("Ann", "gold", "2.50"),  # the untracked balance change went into the first version
        ("Anna", "silver", "1.00"),
        ("Ann B", "gold", "1.00"),
    ]
    assert rows[0]["note"] == LONG_NOTE  # never shortened in JSON
    assert (rows[0]["region"], rows[0]["id"]) == ("eu", 1)


def test_table_shows_versions_with_long_values_shortened(config: Path) -> None:
    result = invoke("public.accounts", "eu", "1", "-c", str(config))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "accounts key eu 1: 3 versions, oldest first" in out
    header = next(line for line in out.splitlines() if "valid_from" in line)
    names = ["valid_from", "valid_to", "is_current", "_cdc_op", "_cdc_txid", "_cdc_lsn"]
    names += ["region", "id", "name", "tier", "balance", "note"]
    assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == names
    body = [line for line in out.splitlines() if "eu" in line and "key" not in line]
    assert len(body) == 3
    assert [("Ann B" in b, "Anna" in b, "false (deleted)" in b) for b in body] == [
        (False, False, False),
        (False, True, True),
        (True, False, False),
    ]
    assert str(ts(100)) in body[0] and str(ts(104)) in body[2]
    assert LONG_NOTE not in out and "… (300 chars)" in body[0]


def test_single_version_key_and_width(config: Path) -> None:
    result = invoke("accounts", "eu", "2", "-c", str(config), "--width", "10")
    assert result.exit_code == 0, result.output
    assert "1 version," in result.stdout
    assert "nnnnnnnnn… (300 chars)" in result.stdout


def test_unknown_key_prints_no_versions(config: Path) -> None:
    result = invoke("accounts", "us", "1", "-c", str(config))
    assert result.exit_code == 1
    assert "no versions" in result.stderr
    assert "region=us, id=1" in result.stderr
    assert result.stdout == ""

    result = invoke("accounts", "eu", "1.0", "-c", str(config), "--json")
    assert result.exit_code == 1 and result.stdout == ""


def test_table_not_configured_lists_the_configured_ones(config: Path) -> None:
    result = invoke("customers", "1", "-c", str(config))
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "'customers' is not configured" in message
    assert "public.accounts, public.orders, sales.ledger (warehouse: ledger_history)" in message


def test_mirror_table_is_refused(config: Path) -> None:
    result = invoke("orders", "1", "-c", str(config))
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "public.orders is in mode 'mirror'" in message
    assert "scd2 tables here: public.accounts, sales.ledger" in message


@pytest.mark.parametrize("key", [["eu"], ["eu", "1", "x"]])
def test_wrong_number_of_key_values_names_the_key_columns(config: Path, key: list[str]) -> None:
    result = invoke("accounts", *key, "-c", str(config))
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "has 2 key column(s) region, id" in message
    assert f"(got {len(key)}:" in message


def test_table_found_by_warehouse_name_but_nothing_replicated(config: Path) -> None:
    result = invoke("ledger_history", "1", "-c", str(config))
    assert result.exit_code == 1
    assert "nothing has been replicated to table 'ledger_history'" in " ".join(
        result.stderr.split()
    )


def test_missing_warehouse_file_and_invalid_config(config: Path, tmp_path: Path) -> None:
    (tmp_path / "wh.duckdb").unlink()
    result = invoke("accounts", "eu", "1", "-c", str(config))
    assert result.exit_code == 3
    assert "does not exist" in result.stderr
    assert not (tmp_path / "wh.duckdb").exists()  # not created by looking

    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("tables: []\n"))
    result = invoke("accounts", "eu", "1", "-c", str(bad))
    assert result.exit_code == 2
    assert "invalid configuration" in result.stderr


def test_missing_key_argument_is_a_usage_error(config: Path) -> None:
    result = invoke("accounts", "-c", str(config))
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("value", "as_json", "shown"),
    [
        (Interval(14, 3, 14_706_789_000), "P1Y2M3DT4H5M6.789S", "P1Y2M3DT4H5M6.789S"),
        (Interval(-3, 2, -1_500_000), "P-3M2DT-1.5S", "P-3M2DT-1.5S"),
        (Interval(0, 0, 0), "PT0S", "PT0S"),
        (b"\x00\xff", "AP8=", "\\x00ff"),
        (True, True, "true"),
        (None, None, "NULL"),
        (Decimal("12345678901234567890.123"), "12345678901234567890.123", None),
        (float("nan"), "nan", "nan"),
        (UUID(int=1), "00000000-0000-0000-0000-000000000001", None),
        (["a", None, "b c"], ["a", None, "b c"], '["a", null, "b c"]'),
        (datetime(2024, 1, 2, 3, 4, 5, 6, UTC), "2024-01-02T03:04:05.000006+00:00", None),
    ],
)
def test_values_in_json_and_in_the_table(value: Any, as_json: Any, shown: str | None) -> None:
    assert jsonable(value) == as_json
    assert display(value, 40) == (str(value) if shown is None else shown)


def test_long_texts_are_shortened_numbers_and_times_never() -> None:
    assert display("x" * 50, 10) == "xxxxxxxxx… (50 chars)"
    assert display(["y" * 20], 10) == '["yyyyyyy… (24 chars)'
    assert display(b"\x01" * 10, 10) == "\\x0101010… (22 chars)"
    assert display(Decimal("1" * 30), 10) == "1" * 30
