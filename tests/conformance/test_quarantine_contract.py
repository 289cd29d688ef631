"""The warehouse's hold rule and the replay of quarantined changes (data contracts), on every
adapter: a DuckDB file, Snowflake on fakesnow's server with the real connector (and a real
account when ``SNOWFLAKE_*`` is set). Checks, config errors and screening are unit-tested in
tests/unit/test_contracts.py; the ``accounts`` table is tests/contract_support.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from contract_support import (
    ACCOUNT_CHECKS,
    BALANCE,
    EMAIL,
    GROUP,
    TOAST,
    TOPIC,
    batch_of,
    change,
    config,
)

from cdc.config import Config
from cdc.consumer.quarantine_replay import replay_quarantine
from cdc.consumer.screening import (
    Screened,
    screen,
)
from cdc.contracts import Validator
from cdc.model import ChangeEvent
from warehouse.base import OffsetRow, Warehouse

pytestmark = pytest.mark.conformance


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
