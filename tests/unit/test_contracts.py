"""Data contracts: every check kind through cdc.yaml and pandera, the config errors with their
file lines, screening by ``on_violation`` and the pure hold rule. The warehouse's hold rule and
the replay of quarantined changes run on every adapter in
tests/conformance/test_quarantine_contract.py.

Events are decoded from Debezium envelopes (tests/contract_support.py), so they carry the raw
Kafka key and value the quarantine stores and a replay decodes again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl
import pytest
from contract_support import (
    ACCOUNT_CHECKS,
    BALANCE,
    EMAIL,
    FIRST_CHECK_LINE,
    TOAST,
    TOPIC,
    batch_of,
    change,
    config,
    validator,
)

from cdc.config import Config, ConfigError
from cdc.consumer.screening import (
    ContractStopError,
    ContractViolationError,
    Screened,
    screen,
)
from cdc.contracts import ContractError, Validator, Violation
from cdc.model import UNCHANGED_TOAST, ChangeEvent
from warehouse.base import QuarantineRow
from warehouse.quarantine import hold


def errors_of(checks: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(checks)
    return str(info.value).splitlines()


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


# ------------------------------------------------------------------------- the hold rule


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
