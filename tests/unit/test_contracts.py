"""Data contracts: every check kind through cdc.yaml and pandera, the config errors with their
file lines, screening by ``on_violation``, the warehouse's hold rule, and the replay of
quarantined changes once the check is fixed.

Events are decoded from Debezium envelopes built here, so they carry the raw Kafka key and
value the quarantine stores and a replay decodes again.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import textwrap
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from cdc.config import Config, ConfigError, parse_config
from cdc.consumer.quarantine_replay import replay_quarantine
from cdc.consumer.screening import (
    ContractStopError,
    ContractViolationError,
    Screened,
    screen,
)
from cdc.contracts import ContractError, Validator, Violation
from cdc.decoding import DEFAULT_TOAST_PLACEHOLDER, decode_message
from cdc.model import UNCHANGED_TOAST, ChangeEvent
from warehouse.base import OffsetRow, QuarantineRow, TableBatch, Warehouse
from warehouse.quarantine import hold

PARTS = json.loads(
    (Path(__file__).parent / "fixtures" / "debezium" / "envelope_parts.json").read_text()
)
TOPIC = "cdc.public.accounts"
GROUP = "g"
TOAST = DEFAULT_TOAST_PLACEHOLDER  # what Debezium sends for an unchanged TOASTed value


# ------------------------------------------------------------------------------- envelopes


def _field(name: str, typ: str, logical: str | None = None, **params: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": typ, "optional": name != "id"}
    if logical:
        out.update(name=logical, version=1)
    if params:
        out["parameters"] = params
    out["field"] = name
    return out


COLUMNS = [
    _field("id", "int32", **{"__debezium.source.column.type": "INT4"}),
    _field("email", "string"),
    _field("balance", "int64"),
    _field("tier", "string"),
    _field(
        "price",
        "bytes",
        "org.apache.kafka.connect.data.Decimal",
        scale="2",
        **{"connect.decimal.precision": "10"},
    ),
    _field("born", "int32", "io.debezium.time.Date"),
    _field("note", "string"),
]
ROW_SCHEMA = {"type": "struct", "fields": COLUMNS, "optional": True, "name": f"{TOPIC}.Value"}
VALUE_SCHEMA = {
    "type": "struct",
    "fields": [
        {**ROW_SCHEMA, "field": "before"},
        {**ROW_SCHEMA, "field": "after"},
        PARTS["source_schema"],
        PARTS["transaction_schema"],
        *PARTS["trailing_fields"],
    ],
    "optional": False,
    "name": f"{TOPIC}.Envelope",
    "version": 2,
}
KEY_SCHEMA = {"type": "struct", "fields": [COLUMNS[0]], "optional": False, "name": f"{TOPIC}.Key"}


def _wire(row: dict[str, Any]) -> dict[str, Any]:
    """A row's values as Debezium's JsonConverter writes them."""
    out = dict(row)
    if isinstance(out.get("price"), str | Decimal):
        unscaled = int(Decimal(out["price"]).scaleb(2))
        raw = unscaled.to_bytes(unscaled.bit_length() // 8 + 1, "big", signed=True)
        out["price"] = base64.b64encode(raw).decode()
    if isinstance(out.get("born"), dt.date):
        out["born"] = (out["born"] - dt.date(1970, 1, 1)).days
    return out


def change(op: str, key: int, offset: int, partition: int = 0, **after: Any) -> ChangeEvent:
    """One decoded change of ``accounts`` at ``offset`` (its LSN grows with the offset).

    Columns not given are NULL; ``note=TOAST`` is an unchanged TOASTed value."""
    lsn = 10_000 + offset
    row = {c["field"]: None for c in COLUMNS} | {"id": key} | after
    payload = {
        "before": {c["field"]: None for c in COLUMNS} | {"id": key} if op == "d" else None,
        "after": None if op == "d" else _wire(row),
        "source": {
            **PARTS["source"],
            "table": "accounts",
            "lsn": lsn,
            "txId": lsn,
            "sequence": json.dumps([str(lsn), str(lsn)]),
            "ts_us": 1_795_594_583_000_000 + offset * 1_000_000,
            "snapshot": "false",
        },
        "transaction": None,
        "op": op,
        "ts_ms": 1,
        "ts_us": 1,
        "ts_ns": 1,
    }
    raw_key = json.dumps({"schema": KEY_SCHEMA, "payload": {"id": key}}).encode()
    raw_value = json.dumps({"schema": VALUE_SCHEMA, "payload": payload}).encode()
    event = decode_message(raw_key, raw_value, topic=TOPIC, partition=partition, offset=offset)
    assert isinstance(event, ChangeEvent)
    return event


# ---------------------------------------------------------------------------------- config

HEAD = """\
source: {{host: db, database: shop, user: u}}
kafka: {{bootstrap_servers: "k:9092"}}
warehouse: {{type: duckdb}}
tables:
  - name: public.accounts
    mode: {mode}
    on_violation: {on_violation}
    checks:
"""  # the first check entry is on line 9
FIRST_CHECK_LINE = 9


def yaml_text(checks: str, on_violation: str = "quarantine", mode: str = "mirror") -> str:
    body = textwrap.indent(textwrap.dedent(checks), "      ")
    return HEAD.format(mode=mode, on_violation=on_violation) + body


def config(checks: str, on_violation: str = "quarantine", mode: str = "mirror") -> Config:
    return parse_config(yaml_text(checks, on_violation, mode), file="cdc.yaml", env={})


def errors_of(checks: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(checks)
    return str(info.value).splitlines()


def validator(cfg: Config) -> Validator:
    contract = cfg.contract_for(cfg.tables[0])
    assert contract is not None
    return Validator(contract)


def batch_of(cfg: Config, events: Sequence[ChangeEvent]) -> TableBatch:
    return TableBatch(cfg.table_target(cfg.tables[0]), events[-1].schema, list(events))


def violations(cfg: Config, events: Sequence[ChangeEvent]) -> dict[int, tuple[str, ...]]:
    """Failing events by offset, with their failed checks."""
    found = validator(cfg).violations(batch_of(cfg, events))
    return {events[v.index].origin.offset: v.checks for v in found}


# custom checks, referenced from cdc.yaml by this module's import name
SEEN: list[pl.DataFrame] = []


def gold_not_overdrawn(frame: pl.DataFrame) -> pl.Series:
    """A Series: gold accounts have a balance >= 0 (NULLs pass)."""
    SEEN.append(frame)
    return ~((frame["tier"] == "gold") & (frame["balance"] < 0)).fill_null(False)


def bronze_capped(frame: pl.DataFrame) -> pl.Expr:
    """An Expr: bronze accounts hold at most 1000."""
    return ((pl.col("tier") != "bronze") | (pl.col("balance") <= 1000)).fill_null(True)


# ------------------------------------------------------------------------ every check kind


def test_not_null() -> None:
    cfg = config("- column: email\n  not_null: true\n")
    events = [
        change("c", 1, 0, email="a@x"),
        change("c", 2, 1),  # email NULL
        change("u", 1, 2, email=TOAST),  # unchanged TOAST: unknown here, passes
    ]
    assert violations(cfg, events) == {1: ("email: not null",)}


def test_greater_less_or_equal_with_bounds_included() -> None:
    cfg = config("- column: balance\n  '>=': 0\n  '<=': 100000\n")
    events = [change("c", k, k, balance=b) for k, b in enumerate([0, 100000, -1, 100001, None, 5])]
    assert violations(cfg, events) == {2: ("balance: >= 0",), 3: ("balance: <= 100000",)}


def test_between_on_decimal_and_on_date_with_iso_bounds() -> None:
    cfg = config(
        """\
        - column: price
          between: [0, 10000]
        - column: born
          between: ['1900-01-01', '2024-12-31']
        """
    )
    events = [
        change("c", 1, 0, price="0.00", born=dt.date(1900, 1, 1)),
        change("c", 2, 1, price="10000.00", born=dt.date(2024, 12, 31)),
        change("c", 3, 2, price="-0.01"),
        change("c", 4, 3, price="10000.01", born=dt.date(2025, 1, 1)),
        change("c", 5, 4, born=dt.date(1899, 12, 31)),
    ]
    price, born = "price: between 0 and 10000", "born: between 1900-01-01 and 2024-12-31"
    assert violations(cfg, events) == {2: (price,), 3: (price, born), 4: (born,)}


def test_allowed() -> None:
    cfg = config("- column: tier\n  allowed: [bronze, silver, gold]\n")
    events = [
        change("c", 1, 0, tier="gold"),
        change("c", 2, 1, tier="platinum"),
        change("c", 3, 2, tier="Gold"),
        change("c", 4, 3),  # NULL: not_null is its own check
    ]
    name = "tier: in ['bronze', 'silver', 'gold']"
    assert violations(cfg, events) == {1: (name,), 2: (name,)}


def test_pattern_matches_from_the_start() -> None:
    cfg = config("- column: email\n  pattern: '^[^@]+@[^@]+$'\n")
    events = [
        change("c", 1, 0, email="a@x"),
        change("c", 2, 1, email="no at sign"),
        change("c", 3, 2, email="a@b@c"),
        change("c", 4, 3),
    ]
    name = "email: pattern ^[^@]+@[^@]+$"
    assert violations(cfg, events) == {1: (name,), 2: (name,)}


def test_pattern_alternatives_all_match_from_the_start() -> None:
    """`gold|silver` means "starts with gold or with silver", not "silver anywhere"."""
    cfg = config("- column: tier\n  pattern: gold|silver\n")
    events = [
        change("c", 1, 0, tier="silver"),
        change("c", 2, 1, tier="goldish"),  # from the start, not the whole value
        change("c", 3, 2, tier="not silver"),
        change("c", 4, 3, tier="bronze"),
    ]
    name = "tier: pattern gold|silver"
    assert violations(cfg, events) == {2: (name,), 3: (name,)}


def test_length_counts_characters() -> None:
    cfg = config(
        """\
        - column: email
          length: {max: 5}
        - column: tier
          length: {min: 2, max: 3}
        """
    )
    events = [
        change("c", 1, 0, email="é@éxé", tier="ab"),  # 5 characters, more bytes
        change("c", 2, 1, email="abc@de", tier="abc"),
        change("c", 3, 2, tier="a"),
        change("c", 4, 3, tier="abcd"),
    ]
    assert violations(cfg, events) == {
        1: ("email: length <= 5",),
        2: ("tier: length 2..3",),
        3: ("tier: length 2..3",),
    }


def test_unique_within_the_batch_among_the_newest_row_of_each_key() -> None:
    cfg = config("- column: email\n  unique: true\n")
    events = [
        change("c", 1, 0, email="a@x"),
        change("u", 1, 1, email="b@x"),  # key 1's newest row
        change("c", 2, 2, email="a@x"),  # key 1 no longer has a@x: no duplicate
        change("c", 3, 3, email="b@x"),  # duplicate of key 1's newest row
        change("c", 4, 4, email="c@x"),
        change("u", 4, 5, email="c@x"),  # the same key twice is not a duplicate
        change("c", 5, 6, email="d@x"),
        change("c", 6, 7, email="d@x"),
        change("d", 6, 8),  # key 6's newest change is a delete: its row is gone
        change("c", 7, 9),
        change("c", 8, 10),  # NULLs are not duplicates
        change("c", 9, 11, email="e@x"),
        change("u", 9, 12, email=TOAST),  # unknown value: not a duplicate of anything
        change("c", 10, 13, email=TOAST),
    ]
    name = "email: unique in the batch"
    assert violations(cfg, events) == {1: (name,), 3: (name,)}
    # across batches nothing is compared: each half alone is clean
    assert violations(cfg, events[:2]) == {}
    assert violations(cfg, events[2:4]) == {}


def test_custom_checks_get_every_column_as_a_polars_frame() -> None:
    cfg = config(
        f"""\
        - custom: {__name__}.gold_not_overdrawn
        - custom: {__name__}.bronze_capped
        - column: email
          unique: true
        """
    )
    SEEN.clear()
    events = [
        change("c", 1, 0, tier="gold", balance=-1, email="a@x"),
        change("c", 2, 1, tier="silver", balance=-1, email="b@x"),
        change("c", 3, 2, tier="bronze", balance=1001, email="c@x"),
        change("c", 4, 3, tier="gold", balance=-5),
        change("u", 4, 4, tier="bronze", balance=5, note=TOAST),
        change("d", 2, 5),  # deletes never reach a check
    ]
    gold = f"custom {__name__}.gold_not_overdrawn"
    bronze = f"custom {__name__}.bronze_capped"
    assert violations(cfg, events) == {0: (gold,), 2: (bronze,), 3: (gold,)}
    [frame] = SEEN
    # every column, none of the helper columns of the unique check; TOAST as NULL
    assert frame.columns == ["email", "id", "balance", "tier", "price", "born", "note"]
    assert frame.height == 5
    assert frame["note"].to_list() == [None] * 5


def test_every_failed_check_named_in_contract_order() -> None:
    cfg = config(
        """\
        - column: tier
          allowed: [gold]
        - column: email
          not_null: true
          length: {min: 3}
          pattern: '.*@'
        - column: balance
          '>=': 0
        """
    )
    events = [change("c", 1, 0, email="ok@x", tier="gold"), change("c", 2, 1, tier="x", balance=-1)]
    found = validator(cfg).violations(batch_of(cfg, events))
    assert found == [
        Violation(1, ("tier: in ['gold']", "email: not null", "balance: >= 0")),
    ]
    events = [change("c", 1, 0, email="x", tier="gold", balance=1)]
    # within one entry the kinds come in a fixed order, whatever the order of the keys
    assert violations(cfg, events) == {0: ("email: pattern .*@", "email: length >= 3")}


def test_unchanged_toast_values_pass_every_check() -> None:
    cfg = config(
        """\
        - column: note
          not_null: true
          pattern: 'ok'
          length: {min: 10}
          allowed: [ok-ok-ok-ok]
          unique: true
        """
    )
    events = [change("u", k, k, note=TOAST) for k in range(3)]
    assert events[0].after is not None and events[0].after["note"] is UNCHANGED_TOAST
    assert violations(cfg, events) == {}
    # the same values sent in full are checked
    assert set(violations(cfg, [change("u", 1, 0, note="bad")])) == {0}


def test_deletes_are_not_checked() -> None:
    cfg = config("- column: email\n  not_null: true\n  '>=': 'z'\n")
    assert violations(cfg, [change("d", 1, 0), change("d", 2, 1)]) == {}
    assert violations(cfg, [change("d", 1, 0), change("c", 2, 1), change("d", 3, 2)]) == {
        1: ("email: not null",)
    }


def test_a_check_declared_twice_runs_once() -> None:
    cfg = config("- column: balance\n  '>=': 0\n- column: balance\n  '>=': 0\n")
    assert violations(cfg, [change("c", 1, 0, balance=-1)]) == {0: ("balance: >= 0",)}


# ------------------------------------------------------------------------- config errors


def test_invalid_regex_names_the_line() -> None:
    [line] = errors_of("- column: email\n  not_null: true\n  pattern: '[unclosed'\n")
    assert line.startswith(
        f"cdc.yaml:{FIRST_CHECK_LINE + 2}: tables[0].checks[0].pattern: is not a valid "
        "regular expression: unterminated character set"
    )


def test_unknown_custom_check_names_the_line() -> None:
    [line] = errors_of("- column: email\n  not_null: true\n- custom: nosuch.module.fn\n")
    assert line.startswith(
        f"cdc.yaml:{FIRST_CHECK_LINE + 2}: tables[0].checks[1].custom: can't import "
        "nosuch.module.fn: No module named 'nosuch'"
    )
    [line] = errors_of(f"- custom: {__name__}.no_such_function\n")
    assert line.startswith(
        f"cdc.yaml:{FIRST_CHECK_LINE}: tables[0].checks[0].custom: can't import "
        f"{__name__}.no_such_function"
    )
    [line] = errors_of(f"- custom: {__name__}.SEEN\n")
    assert line.startswith(f"cdc.yaml:{FIRST_CHECK_LINE}: tables[0].checks[0].custom: ")
    assert "is not callable" in line
    [line] = errors_of("- custom: fn\n")
    assert line.startswith(f"cdc.yaml:{FIRST_CHECK_LINE}: tables[0].checks[0].custom: must be")


def test_column_without_a_check_and_column_with_custom_name_the_line() -> None:
    [line] = errors_of("- column: email\n  not_null: true\n- column: tier\n")
    assert line.startswith(
        f"cdc.yaml:{FIRST_CHECK_LINE + 2}: tables[0].checks[1]: names a column but no check"
    )
    [line] = errors_of(f"- column: email\n  not_null: true\n  custom: {__name__}.bronze_capped\n")
    assert line == (
        f"cdc.yaml:{FIRST_CHECK_LINE}: tables[0].checks[0]: give either `column` (with its "
        "checks) or `custom`, not both"
    )
    [line] = errors_of("- not_null: true\n")  # neither
    assert line.startswith(f"cdc.yaml:{FIRST_CHECK_LINE}: tables[0].checks[0]: give either")


def test_check_value_shapes_name_the_line() -> None:
    [line] = errors_of("- column: price\n  between: [0, 5, 10]\n")
    assert line.startswith(
        f"cdc.yaml:{FIRST_CHECK_LINE + 1}: tables[0].checks[0].between: must be [low, high]"
    )
    [line] = errors_of("- column: tier\n  allowed: []\n")
    assert line.startswith(f"cdc.yaml:{FIRST_CHECK_LINE + 1}: tables[0].checks[0].allowed: must")
    [line] = errors_of("- column: tier\n  length: {min: 3, max: 2}\n")
    assert line.startswith(f"cdc.yaml:{FIRST_CHECK_LINE + 1}: tables[0].checks[0].length: min")
    [line] = errors_of("- column: tier\n  length: {}\n")
    assert "give min, max or both" in line
    [line] = errors_of("- column: tier\n  regex: x\n")
    assert line.startswith(f"cdc.yaml:{FIRST_CHECK_LINE + 1}: tables[0].checks[0].regex: unknown")


def test_unknown_column_is_a_contract_error_naming_the_line() -> None:
    cfg = config("- column: email\n  not_null: true\n- column: emial\n  pattern: '.+@'\n")
    events = [change("c", 1, 0, email="a@x")]
    with pytest.raises(ContractError) as info:
        validator(cfg).violations(batch_of(cfg, events))
    assert str(info.value) == (
        f"cdc.yaml:{FIRST_CHECK_LINE + 2}: tables[0].checks[1]: column 'emial' is not a column "
        "of public.accounts (columns: id, email, balance, tier, price, born, note); fix the "
        "check in cdc.yaml"
    )
    # screening stops on it, naming the table (whatever on_violation says)
    contract = cfg.contract_for(cfg.tables[0])
    assert contract is not None
    with pytest.raises(ContractStopError, match=r"data contract of 'accounts': cdc\.yaml:11: "):
        screen([batch_of(cfg, events)], {"accounts": Validator(contract)})


@pytest.mark.parametrize(
    ("check", "line", "name", "error"),
    [
        ("- column: email\n  pattern: '(?=a)b'\n", 1, "email: pattern (?=a)b", "look-around"),
        ("- column: email\n  '>=': 0\n", 1, "email: >= 0", "cannot compare string"),
        ("- column: balance\n  length: {max: 3}\n", 1, "balance: length <= 3", "String"),
        ("- column: balance\n  pattern: '[0-9]+'\n", 1, "balance: pattern [0-9]+", "String"),
    ],
)
def test_a_check_that_cannot_run_on_its_column_is_a_contract_error(
    check: str, line: int, name: str, error: str
) -> None:
    """Valid YAML and a valid Python regex, but the check can't run on the column (polars'
    regex engine has no look-around; a number bound on text; a length on a number): a
    ContractError naming the line, not every row failing the check."""
    cfg = config("- column: tier\n  not_null: true\n" + check)
    with pytest.raises(ContractError) as info:
        validator(cfg).violations(batch_of(cfg, [change("c", 1, 0, email="a", balance=1)]))
    message = str(info.value)
    assert message.startswith(
        f"cdc.yaml:{FIRST_CHECK_LINE + 1 + line}: tables[0].checks[1]: check {name!r} "
    ), message
    assert error in message


# ----------------------------------------------------------------------------- screening


ACCOUNT_CHECKS = """\
- column: email
  not_null: true
  pattern: '^[^@]+@[^@]+$'
- column: balance
  '>=': 0
"""
EMAIL = "email: pattern ^[^@]+@[^@]+$"
BALANCE = "balance: >= 0"


def screened(on_violation: str, events: Sequence[ChangeEvent]) -> Screened:
    cfg = config(ACCOUNT_CHECKS, on_violation)
    return screen([batch_of(cfg, events)], {"accounts": validator(cfg)})


def test_screen_quarantine_mode_splits_off_quarantine_rows() -> None:
    events = [
        change("c", 1, 0, email="a@x", balance=1),
        change("c", 2, 1, email="bad", balance=-1),
        change("u", 1, 2, email="a@x", balance=-2),
        change("d", 2, 3),
    ]
    out = screened("quarantine", events)
    [kept] = out.batches
    assert [e.origin.offset for e in kept.events] == [0, 3]
    assert out.dead_letters == []
    assert out.failed_checks == {f"accounts: {EMAIL}": 1, f"accounts: {BALANCE}": 2}
    assert out.quarantine == [
        QuarantineRow(
            "accounts", "[2]", TOPIC, 0, 1, 10_001, "c", (EMAIL, BALANCE), "violation",
            events[1].raw_key, events[1].raw_value,
        ),
        QuarantineRow(
            "accounts", "[1]", TOPIC, 0, 2, 10_002, "u", (BALANCE,), "violation",
            events[2].raw_key, events[2].raw_value,
        ),
    ]  # fmt: skip


def test_screen_dlq_mode_makes_dead_letters_naming_the_checks() -> None:
    events = [change("c", 1, 0, email="a@x"), change("c", 2, 1, email="bad", balance=-1)]
    out = screened("dlq", events)
    assert [e.origin.offset for e in out.batches[0].events] == [0]
    assert out.quarantine == []
    [(event, error)] = out.dead_letters
    assert event is events[1]
    assert isinstance(error, ContractViolationError)
    assert error.checks == (EMAIL, BALANCE)
    assert str(error) == f"table 'accounts': failed checks: {EMAIL}; {BALANCE}"


def test_screen_fail_mode_stops_naming_table_key_check_and_offset() -> None:
    events = [
        change("c", 1, 0, email="a@x"),
        change("c", 7, 1, email="a@x", balance=-3),
        change("c", 8, 2, email="bad"),
    ]
    with pytest.raises(ContractStopError) as info:
        screened("fail", events)
    message = str(info.value)
    assert message.startswith(
        f"table 'accounts': key [7] at {TOPIC}[0]@1 fails {BALANCE} (2 failing rows in this "
        "batch). on_violation is `fail`: nothing of this batch was applied"
    ), message


def test_screen_leaves_clean_batches_and_tables_without_contract_alone() -> None:
    cfg = config(ACCOUNT_CHECKS)
    clean = batch_of(cfg, [change("c", 1, 0, email="a@x")])
    other = batch_of(cfg, [change("c", 2, 1, email="bad")])
    out = screen([clean], {"accounts": validator(cfg)})
    assert out.batches == [clean] and not out.quarantine and not out.failed_checks
    assert screen([other], {}).batches == [other]


# ------------------------------------------------------------ the warehouse's hold rule


@pytest.fixture
def warehouse(wh: Warehouse) -> Warehouse:
    """Each adapter (tests/conftest.py): the hold and replay rules hold on DuckDB and on
    Snowflake (fakesnow's server, real connector)."""
    return wh


def deliver(wh: Warehouse, cfg: Config, events: Sequence[ChangeEvent]) -> Screened:
    """What the consumer does with one polled batch of the table: screen, then apply the
    passing events, the quarantine rows and the offsets in one transaction."""
    contract = cfg.contract_for(cfg.tables[0])
    validators = {"accounts": Validator(contract)} if contract else {}
    out = screen([batch_of(cfg, events)], validators)
    offsets = [OffsetRow(GROUP, TOPIC, 0, max(e.origin.offset for e in events) + 1)]
    wh.apply(out.batches, offsets, quarantine=out.quarantine)
    return out


def table(wh: Warehouse, cfg: Config) -> dict[int, tuple[Any, ...]]:
    rows = wh.fetch_table(cfg.table_target(cfg.tables[0]))
    return {r["id"]: (r["email"], r["balance"], r["note"]) for r in rows}


def open_rows(wh: Warehouse) -> list[tuple[str, int, str, str, tuple[str, ...]]]:
    return [
        (c.row.key, c.row.offset, c.row.op, c.row.reason, c.row.checks)
        for c in wh.list_quarantine("accounts")
    ]


# Key 1: a valid insert, a violation, then a valid update and a delete (held behind it).
# Key 2: only valid changes. Key 3: its insert violates, its valid update waits behind it.
FIRST = [
    ("c", 1, 0, {"email": "one@x", "balance": 10, "note": "n1"}),
    ("c", 2, 1, {"email": "two@x", "balance": 20, "note": "t"}),
    ("u", 1, 2, {"email": "one@x", "balance": -5, "note": "n2"}),  # violation
    ("u", 1, 3, {"email": "one@x", "balance": 7, "note": TOAST}),  # held
    ("u", 2, 4, {"email": "two@x", "balance": 21, "note": "t"}),
    ("c", 3, 5, {"email": "three", "balance": 1, "note": "c"}),  # violation
    ("u", 3, 6, {"email": "three@x", "balance": 2, "note": "c"}),  # held, though valid
]
SECOND = [
    ("u", 1, 7, {"email": "one@x", "balance": 8, "note": TOAST}),  # held (stored open row)
    ("u", 2, 8, {"email": "two@x", "balance": 22, "note": "t2"}),
    ("u", 3, 9, {"email": "three@x", "balance": 3, "note": "c"}),  # held
]


def events_of(spec: Sequence[tuple[str, int, int, dict[str, Any]]]) -> list[ChangeEvent]:
    return [change(op, key, offset, **after) for op, key, offset, after in spec]


EXPECTED_OPEN = [
    ("[1]", 2, "u", "violation", (BALANCE,)),
    ("[1]", 3, "u", "held", ()),
    ("[3]", 5, "c", "violation", (EMAIL,)),
    ("[3]", 6, "u", "held", ()),
    ("[1]", 7, "u", "held", ()),
    ("[3]", 9, "u", "held", ()),
]


def test_later_changes_of_a_quarantined_key_are_held(warehouse: Warehouse) -> None:
    cfg = config(ACCOUNT_CHECKS)
    first = events_of(FIRST)
    assert len(deliver(warehouse, cfg, first).quarantine) == 2
    # key 1 as of before its violation, key 2 fully applied, key 3 not there at all
    assert table(warehouse, cfg) == {1: ("one@x", 10, "n1"), 2: ("two@x", 21, "t")}
    assert open_rows(warehouse) == EXPECTED_OPEN[:4]

    deliver(warehouse, cfg, events_of(SECOND))  # stored open rows hold the next batch too
    assert table(warehouse, cfg) == {1: ("one@x", 10, "n1"), 2: ("two@x", 22, "t2")}
    assert open_rows(warehouse) == EXPECTED_OPEN
    assert warehouse.load_offsets(GROUP) == {(TOPIC, 0): 10}

    # a redelivery of the first batch (crash before the Kafka commit) adds nothing
    deliver(warehouse, cfg, first)
    assert open_rows(warehouse) == EXPECTED_OPEN
    assert table(warehouse, cfg) == {1: ("one@x", 10, "n1"), 2: ("two@x", 22, "t2")}


def test_a_delete_behind_a_quarantined_change_is_held(warehouse: Warehouse) -> None:
    cfg = config(ACCOUNT_CHECKS)
    deliver(
        warehouse,
        cfg,
        [
            change("c", 1, 0, email="a@x", balance=1),
            change("u", 1, 1, email="a@x", balance=-1),
            change("d", 1, 2),
        ],
    )
    assert table(warehouse, cfg) == {1: ("a@x", 1, None)}
    assert [(o, op, reason) for _, o, op, reason, _ in open_rows(warehouse)] == [
        (1, "u", "violation"),
        (2, "d", "held"),
    ]


def test_hold_is_per_key_and_partition_aware() -> None:
    """Same partition: only later offsets wait. Another partition: no order to trust, every
    change of the key waits."""
    cfg = config(ACCOUNT_CHECKS)
    events = [
        change("u", 1, 4, partition=0, email="a@x"),
        change("u", 1, 6, partition=0, email="a@x"),
        change("u", 1, 2, partition=1, email="a@x"),
        change("u", 2, 9, partition=0, email="b@x"),
    ]
    kept, held = hold(batch_of(cfg, events), {"[1]": (0, 5)})
    assert [(e.origin.partition, e.origin.offset) for e in kept.events] == [(0, 4), (0, 9)]
    assert [(r.partition, r.offset, r.reason, r.checks) for r in held] == [
        (0, 6, "held", ()),
        (1, 2, "held", ()),
    ]
    assert hold(batch_of(cfg, events), {})[1] == []


def test_tables_in_dlq_mode_hold_nothing(warehouse: Warehouse) -> None:
    cfg = config(ACCOUNT_CHECKS, "dlq")
    out = deliver(
        warehouse,
        cfg,
        [change("c", 1, 0, email="a@x", balance=-1), change("c", 1, 1, email="a@x", balance=2)],
    )
    assert len(out.dead_letters) == 1
    assert table(warehouse, cfg) == {1: ("a@x", 2, None)}
    assert warehouse.list_quarantine() == []


# --------------------------------------------------------------------------------- replay


def test_replay_after_the_fix_applies_in_order_and_marks_replayed(
    warehouse: Warehouse,
) -> None:
    cfg = config(ACCOUNT_CHECKS)
    deliver(warehouse, cfg, events_of(FIRST))
    deliver(warehouse, cfg, events_of(SECOND))

    # the fix: negative balances are fine after all (the email check stays)
    fixed = config("- column: email\n  not_null: true\n  pattern: '^[^@]+@[^@]+$'\n")
    [result] = replay_quarantine(fixed, warehouse)
    assert (result.table, result.replayed, result.still_open) == ("accounts", 3, 3)
    assert result.reasons == [f"key [3]: offset 5: still fails {EMAIL}"]
    # key 1's three changes applied in their order: the balance of the last one, the note of
    # the violating one (the held ones carry it forward as unchanged TOAST)
    assert table(warehouse, fixed) == {1: ("one@x", 8, "n2"), 2: ("two@x", 22, "t2")}
    # key 3's violation still fails: it blocks its own later changes, nothing else
    assert open_rows(warehouse) == [r for r in EXPECTED_OPEN if r[0] == "[3]"]
    replayed = [
        (c.row.offset, c.replayed_at is not None)
        for c in warehouse.list_quarantine("accounts", include_replayed=True)
    ]
    assert replayed == [(2, True), (3, True), (5, False), (6, False), (7, True), (9, False)]

    # the stream goes on: key 1 is free again, key 3 still waits
    deliver(
        warehouse,
        fixed,
        [
            change("u", 1, 10, email="one@x", balance=9, note=TOAST),
            change("u", 3, 11, email="three@x", balance=4, note="c4"),
        ],
    )
    assert table(warehouse, fixed)[1] == ("one@x", 9, "n2")
    assert 3 not in table(warehouse, fixed)
    assert [r[1] for r in open_rows(warehouse)] == [5, 6, 9, 11]

    # a second replay with nothing fixed changes nothing
    [again] = replay_quarantine(fixed, warehouse)
    assert (again.replayed, again.still_open) == (0, 4)

    # the data fix: the email check is dropped too; everything left applies, in order
    [last] = replay_quarantine(
        config("- column: tier\n  not_null: false\n  length: {max: 9}\n"), warehouse
    )
    assert (last.replayed, last.still_open) == (4, 0)
    assert warehouse.list_quarantine() == []
    assert table(warehouse, fixed) == {
        1: ("one@x", 9, "n2"),
        2: ("two@x", 22, "t2"),
        3: ("three@x", 4, "c4"),
    }
    # replayed rows are resolved: a redelivery of the original batches applies nothing new
    deliver(warehouse, cfg, events_of(FIRST))
    assert table(warehouse, fixed)[3] == ("three@x", 4, "c4")


def test_replay_where_an_earlier_change_now_passes_and_a_later_one_still_fails(
    warehouse: Warehouse,
) -> None:
    """Per key, changes up to the first that still fails are applied; it and the rest wait."""
    cfg = config(ACCOUNT_CHECKS)
    deliver(
        warehouse,
        cfg,
        [
            change("c", 1, 0, email="a@x", balance=1),
            change("u", 1, 1, email="a@x", balance=-1),  # violation, fixed below
            change("u", 1, 2, email="a@x", balance=2),  # held
            change("u", 1, 3, email="bad", balance=3),  # violation, still failing
            change("u", 1, 4, email="a@x", balance=4),  # held
            change("c", 2, 5, email="b@x", balance=-9),  # violation, fixed below
        ],
    )
    fixed = config("- column: email\n  pattern: '^[^@]+@[^@]+$'\n")
    [result] = replay_quarantine(fixed, warehouse, ["accounts"])
    assert (result.replayed, result.still_open) == (3, 2)
    assert table(warehouse, fixed) == {1: ("a@x", 2, None), 2: ("b@x", -9, None)}
    assert [(o, reason) for _, o, _, reason, _ in open_rows(warehouse)] == [
        (3, "violation"),
        (4, "held"),
    ]


def test_replay_on_an_scd2_table_keeps_the_versions_in_order(
    warehouse: Warehouse,
) -> None:
    cfg = config("- column: balance\n  '>=': 0\n", mode="scd2")
    deliver(
        warehouse,
        cfg,
        [
            change("c", 1, 0, email="a@x", balance=1),
            change("u", 1, 1, email="a@x", balance=-1),
            change("u", 1, 2, email="a@x", balance=2),
        ],
    )
    target = cfg.table_target(cfg.tables[0])
    assert [r["balance"] for r in warehouse.fetch_history(target)] == [1]
    deliver(warehouse, cfg, [change("u", 1, 3, email="a@x", balance=3)])  # held
    fixed = config("- column: balance\n  '>=': -10\n", mode="scd2")
    [result] = replay_quarantine(fixed, warehouse)
    assert (result.replayed, result.still_open) == (3, 0)
    history = warehouse.fetch_history(target)
    assert [(r["balance"], r["is_current"]) for r in history] == [
        (1, False),
        (-1, False),
        (2, False),
        (3, True),
    ]
    report = warehouse.history_report(target)
    assert (report.keys, report.versions, report.current) == (1, 4, 1)
