"""The two-part position (commit LSN, change LSN) against the source itself (issue 19).

A simulated PostgreSQL + Debezium: transactions commit one after another and stream at their
commit, each change carrying ``source.sequence[0]`` (the last commit before its transaction;
unknown for the first one, as after a connector start); one transaction at a time may stay
open while others commit (row locks: they never touch its keys); an incremental snapshot
window reads every committed row (MVCC: the open transaction's writes are invisible) and emits
the reads at its window-close signal's position. The events, in emission order and split into
any batches, must leave every table mode (mirror, soft-delete mirror, scd2) equal to the
source's final committed state, the history well formed, and a replay of any range of batches
must change nothing. With the change LSN alone, a transaction open across a window close lost
to the reads (its changes have lower LSNs than the close)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sample_data import ITEMS_SCHEMA, split

from cdc.model import ChangeEvent, KafkaOrigin, Op, SourcePosition, newer
from warehouse.base import TableBatch, TableTarget
from warehouse.duckdb.adapter import DuckDBWarehouse

T0_US = 1_700_000_000_000_000
NAMES = st.sampled_from(["a", "b", "c", "d"])
TARGETS = (
    TableTarget("mirror"),
    TableTarget("soft", soft_delete=True),
    TableTarget("hist", mode="scd2"),
)
Change = tuple[int, Op, str | None, int]  # key, op, name (None: delete), change LSN


class Source:
    """The committed state and the stream Debezium emits for it."""

    def __init__(self) -> None:
        self.state: dict[int, str] = {}
        self.lsn = 0
        self.last_commit: int | None = None  # unknown before the first commit streams
        self.events: list[ChangeEvent] = []
        self.txid = 0

    def next_lsn(self) -> int:
        self.lsn += 1
        return self.lsn

    def emit(self, op: Op, key: int, name: str | None, position: SourcePosition) -> None:
        self.events.append(
            ChangeEvent(
                op=op,
                schema=ITEMS_SCHEMA,
                key={"id": key},
                before=None,
                after=None if op is Op.DELETE else {"id": key, "name": name, "doc": None},
                position=position,
                origin=KafkaOrigin("t", 0, len(self.events)),
            )
        )

    def changes(self, draw: st.DrawFn, keys: list[int]) -> list[Change]:
        """A transaction's changes of ``keys`` against the committed state (its own earlier
        changes included)."""
        live = set(self.state)
        out: list[Change] = []
        for key in keys:
            if key in live and draw(st.integers(0, 2)) == 0:
                out.append((key, Op.DELETE, None, self.next_lsn()))
                live.discard(key)
            else:
                op = Op.UPDATE if key in live else Op.CREATE
                out.append((key, op, draw(NAMES), self.next_lsn()))
                live.add(key)
        return out

    def commit(self, changes: list[Change]) -> None:
        """The transaction commits now and streams: every change at (last commit, its LSN)."""
        self.txid += 1
        commit_lsn = self.next_lsn()
        at = T0_US + commit_lsn
        for key, op, name, lsn in changes:
            self.emit(op, key, name, SourcePosition(lsn, self.txid, at, False, self.last_commit))
            if op is Op.DELETE:
                self.state.pop(key, None)
            else:
                assert name is not None
                self.state[key] = name
        self.last_commit = commit_lsn

    def window(self) -> None:
        """An incremental snapshot chunk of every row: read now, emitted at the close signal
        (its own transaction, inserting into the signal table)."""
        signal = self.next_lsn()
        position = SourcePosition(signal, None, T0_US + signal + 1, True, self.last_commit)
        rows = sorted(self.state.items())
        self.last_commit = self.next_lsn()  # the signal's commit
        for key, name in rows:
            self.emit(Op.READ, key, name, position)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[ChangeEvent], dict[int, str]]:
    src = Source()
    open_tx: list[Change] | None = None
    for _ in range(draw(st.integers(1, 14))):
        step = draw(st.sampled_from(["tx", "tx", "open", "window", "window", "commit"]))
        locked = {c[0] for c in open_tx or []}
        if step == "tx":
            keys = [k for k in draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
                    if k not in locked]  # fmt: skip
            if keys:
                src.commit(src.changes(draw, keys))
        elif step == "open" and open_tx is None:
            open_tx = src.changes(draw, draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)))
        elif step == "window":
            src.window()
        elif step == "commit" and open_tx is not None:
            src.commit(open_tx)
            open_tx = None
    if open_tx is not None:
        src.commit(open_tx)
    return src.events, src.state


def live(wh: DuckDBWarehouse, target: TableTarget) -> dict[int, Any]:
    return {r["id"]: r["name"] for r in wh.fetch_table(target)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=streams(),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    replay=st.tuples(st.integers(0, 10), st.integers(0, 10)),
)
def test_every_table_mode_ends_equal_to_the_source_whatever_the_batches(
    stream: tuple[list[ChangeEvent], dict[int, str]],
    cuts: list[int],
    replay: tuple[int, int],
) -> None:
    events, source = stream
    assume(events)  # windows over an empty table emit nothing
    batches = split(events, cuts)
    with tempfile.TemporaryDirectory() as tmp:
        wh = DuckDBWarehouse(Path(tmp) / "p.duckdb", keep_open=True)
        try:
            for b in batches:
                wh.apply([TableBatch(t, ITEMS_SCHEMA, b) for t in TARGETS], [])
            for t in TARGETS:
                assert live(wh, t) == source, t.name
            report = wh.history_report(TARGETS[2])
            assert report.ok, report

            lo, hi = sorted(i % (len(batches) + 1) for i in replay)
            again = [e for b in batches[lo:hi] for e in b]
            if again:
                wh.apply([TableBatch(t, ITEMS_SCHEMA, again) for t in TARGETS], [])
            for t in TARGETS:
                assert live(wh, t) == source, (t.name, "after a replay")
            assert wh.history_report(TARGETS[2]).ok
        finally:
            wh.close()


def test_the_position_rule() -> None:
    """Commit order first when both commit parts are known, change order otherwise."""
    assert newer(None, 5, None, None)  # nothing stored
    assert newer(20, 3, 10, 9)  # a later commit wins over a higher change LSN
    assert not newer(10, 9, 20, 3)
    assert newer(10, 9, 10, 3) and not newer(10, 3, 10, 3)  # one transaction: change order
    assert newer(None, 9, 20, 3) and not newer(20, 3, None, 9)  # a commit part unknown
