"""Property: random change histories over a few keys, random checks, on_violation quarantine,
screened and applied to DuckDB in random batches:

(a) every event is either applied or quarantined (a violation or held), once;
(b) no row of the target table fails a row check;
(c) a key with a quarantined change holds its state from strictly before the first one, the
    other keys their final state;
and a redelivery of any batches changes nothing, then a replay once the checks are dropped
gives the table every change produced, in order.

The expected violations come from a plain-Python model of the checks, independent of pandera.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sample_data import split
from test_contracts import TOAST, change, config

from cdc.consumer.quarantine_replay import replay_quarantine
from cdc.consumer.screening import screen
from cdc.contracts import CheckSpec, TableContract, Validator
from cdc.contracts.spec import check_name
from cdc.model import UNCHANGED_TOAST, ChangeEvent, Op
from warehouse.base import OffsetRow, TableBatch
from warehouse.duckdb.adapter import DuckDBWarehouse

TOPIC = "cdc.public.accounts"
COLUMNS = ("id", "email", "balance", "tier", "price", "born", "note")
CFG = config("- column: balance\n  '>=': -1000\n")  # the table; its own check always passes
TARGET = CFG.table_target(CFG.tables[0])
LOOSE = CFG  # after the fix: nothing fails any more


def short_email_for_balance(frame: pl.DataFrame) -> pl.Expr:
    """Cross-column: the email is at most `balance` characters long (NULLs pass)."""
    return (pl.col("email").str.len_chars() <= pl.col("balance")).fill_null(True)


# (kind, column, value) of the checks a contract draws from
CHECKS: list[tuple[str, str | None, Any]] = [
    ("not_null", "balance", None),
    ("ge", "balance", 0),
    ("le", "balance", 2),
    ("between", "balance", (-1, 1)),
    ("allowed", "tier", ("x", "xy", "y")),
    ("pattern", "tier", "x|y$"),
    ("length", "tier", (None, 1)),
    ("unique", "balance", None),
    ("unique", "email", None),
    ("custom", None, short_email_for_balance),
]
ROW_KINDS = {"not_null", "ge", "le", "between", "allowed", "pattern", "length", "custom"}


def spec_of(kind: str, column: str | None, value: Any) -> CheckSpec:
    shown = f"{__name__}.{value.__name__}" if kind == "custom" else value
    return CheckSpec(check_name(kind, column, shown), kind, column, value, "prop")  # type: ignore[arg-type]


# ------------------------------------------------------------------------ the Python model


def _unknown(value: Any) -> bool:
    return value is None or value is UNCHANGED_TOAST


def row_fails(spec: CheckSpec, row: dict[str, Any]) -> bool:
    """A row check on one row (unchanged TOAST passes: its value was checked when written)."""
    if spec.kind == "custom":
        email, balance = row.get("email"), row.get("balance")
        return not _unknown(email) and not _unknown(balance) and len(email) > balance
    assert spec.column is not None
    value = row.get(spec.column)
    if value is UNCHANGED_TOAST:
        return False
    if spec.kind == "not_null":
        return value is None
    if value is None:
        return False
    v = spec.value
    return {
        "ge": lambda: value < v,
        "le": lambda: value > v,
        "between": lambda: not v[0] <= value <= v[1],
        "allowed": lambda: value not in v,
        "pattern": lambda: re.match(v, value) is None,
        "length": lambda: (
            (v[0] is not None and len(value) < v[0]) or (v[1] is not None and len(value) > v[1])
        ),
    }[spec.kind]()


def expected_violations(
    specs: Sequence[CheckSpec], events: Sequence[ChangeEvent]
) -> dict[int, tuple[str, ...]]:
    """Offset -> failed checks, for one screened batch."""
    last = {e.key["id"]: i for i, e in enumerate(events)}
    newest = [e for i, e in enumerate(events) if last[e.key["id"]] == i and e.after is not None]
    out: dict[int, tuple[str, ...]] = {}
    for i, e in enumerate(events):
        if e.op is Op.DELETE:
            continue
        assert e.after is not None
        failed = []
        for spec in specs:
            if spec.kind != "unique":
                if row_fails(spec, e.after):
                    failed.append(spec.name)
                continue
            assert spec.column is not None
            value = e.after.get(spec.column)
            if last[e.key["id"]] != i or _unknown(value):
                continue
            others = {o.key["id"] for o in newest if o.after and o.after.get(spec.column) == value}
            if others - {e.key["id"]}:
                failed.append(spec.name)
        if failed:
            out[e.origin.offset] = tuple(failed)
    return out


def state(events: Sequence[ChangeEvent]) -> dict[int, dict[str, Any]]:
    """The table after applying ``events`` one by one (unchanged TOAST keeps the old value)."""
    table: dict[int, dict[str, Any]] = {}
    for e in events:
        key = e.key["id"]
        if e.after is None:
            table.pop(key, None)
            continue
        old = table.get(key, {})
        table[key] = {c: old.get(c) if v is UNCHANGED_TOAST else v for c, v in e.after.items()}
    return table


# ---------------------------------------------------------------------------- strategies

EMAIL = st.sampled_from([None, "a", "ab", "abc"])
BALANCE = st.sampled_from([None, -2, -1, 0, 1, 2, 3])
TIER = st.sampled_from([None, "", "x", "xy", "y", "yx", "zy"])


@st.composite
def histories(draw: st.DrawFn) -> list[ChangeEvent]:
    """Per-key histories over 4 keys: insert, updates (some TOAST), delete, re-insert."""
    live: set[int] = set()
    events = []
    for offset in range(draw(st.integers(1, 30))):
        key = draw(st.integers(0, 3))
        if key in live and draw(st.integers(0, 4)) == 0:
            live.discard(key)
            events.append(change("d", key, offset))
            continue
        op = "u" if key in live else "c"
        live.add(key)
        toast = op == "u" and draw(st.booleans())
        tier = TOAST if toast and draw(st.booleans()) else draw(TIER)
        note = TOAST if toast else draw(st.sampled_from(["n1", "n2", None]))
        row = {"email": draw(EMAIL), "balance": draw(BALANCE), "tier": tier, "note": note}
        events.append(change(op, key, offset, **row))
    return events


def deliver(wh: DuckDBWarehouse, validator: Validator, batch: list[ChangeEvent]) -> Any:
    out = screen([TableBatch(TARGET, batch[-1].schema, batch)], {"accounts": validator})
    offsets = [OffsetRow("g", TOPIC, 0, batch[-1].origin.offset + 1)]
    wh.apply(out.batches, offsets, quarantine=out.quarantine)
    return out


def rows(wh: DuckDBWarehouse) -> dict[int, dict[str, Any]]:
    if "accounts" not in wh.row_counts():  # every change so far quarantined: no table yet
        return {}
    return {r["id"]: {c: r[c] for c in COLUMNS} for r in wh.fetch_table(TARGET)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=histories(),
    checks=st.lists(st.sampled_from(CHECKS), min_size=1, max_size=4, unique_by=lambda c: c[:2]),
    cuts=st.lists(st.integers(0, 30), max_size=4),
    again=st.tuples(st.integers(0, 5), st.integers(0, 5)),
)
def test_quarantine_loses_nothing_and_keeps_each_keys_order(
    events: list[ChangeEvent],
    checks: list[tuple[str, str | None, Any]],
    cuts: list[int],
    again: tuple[int, int],
) -> None:
    specs = [spec_of(*c) for c in checks]
    validator = Validator(TableContract("accounts", tuple(specs), "quarantine"))
    batches = split(events, cuts)
    every = {e.origin.offset for e in events}
    with tempfile.TemporaryDirectory() as tmp:
        wh = DuckDBWarehouse(Path(tmp) / "p.duckdb", keep_open=True)
        try:
            passed: set[int] = set()  # offsets that passed screening
            expected: dict[int, tuple[str, ...]] = {}
            for batch in batches:
                out = deliver(wh, validator, batch)
                for b in out.batches:
                    passed |= {e.origin.offset for e in b.events}
                expected |= expected_violations(specs, batch)
                # the validator agrees with the model, check names and all
                assert {q.offset: q.checks for q in out.quarantine} == expected_violations(
                    specs, batch
                )

            listed = wh.list_quarantine("accounts")
            violation = {c.row.offset: c.row.checks for c in listed if c.row.reason == "violation"}
            held = [c.row.offset for c in listed if c.row.reason == "held"]
            assert violation == expected
            # (a) applied + quarantined == every event, each once
            offsets = [c.row.offset for c in listed]
            assert len(offsets) == len(set(offsets))
            applied = passed - set(held)
            assert not applied & set(offsets)
            assert applied | set(offsets) == every
            assert set(held) <= passed

            # per key: first quarantined offset; all later changes are quarantined too
            first: dict[int, int] = {}
            for e in events:
                if e.origin.offset in violation:
                    first.setdefault(e.key["id"], e.origin.offset)
            for e in events:
                f = first.get(e.key["id"])
                quarantined = e.origin.offset in set(offsets)
                assert quarantined == (f is not None and e.origin.offset >= f), e.origin

            # (c) each key's state: from strictly before its first quarantined change
            kept = [e for e in events if e.origin.offset < first.get(e.key["id"], 1 << 30)]
            table = rows(wh)
            assert table == state(kept)
            # (b) no stored row fails a row check
            for row in table.values():
                assert not [s.name for s in specs if s.kind in ROW_KINDS and row_fails(s, row)]

            # a redelivery of any range of batches changes nothing, adds no quarantine row
            lo, hi = sorted(i % (len(batches) + 1) for i in again)
            for batch in batches[lo:hi]:
                deliver(wh, validator, batch)
            assert rows(wh) == table
            assert [c.row for c in wh.list_quarantine("accounts")] == [c.row for c in listed]

            # the checks are dropped: the replay applies every quarantined change, in order
            [result] = replay_quarantine(LOOSE, wh)
            assert (result.replayed, result.still_open) == (len(offsets), 0)
            assert wh.list_quarantine() == []
            assert rows(wh) == state(events)
        finally:
            wh.close()
