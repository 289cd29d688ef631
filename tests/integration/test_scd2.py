"""SCD Type 2 history on the real chain: PostgreSQL -> Debezium -> broker -> consumer -> DuckDB.

The expected history is built from an audit trail the *source* keeps: a trigger records every row
change (key, op, the full new row, the transaction id) and ``pg_xact_commit_timestamp`` gives
each transaction's commit time afterwards (``track_commit_timestamp`` is on in the local
stack). From it, a committed-state model of the spec (warehouse.scd2's docstring): each key's
states after each transaction (``every_change``: after each change), absent or a row, runs of
present states with equal tracked values merged into one version valid from the commit time of
its first state to the commit time of the state that ended it. The warehouse history must equal
it exactly: data columns, validity to the microsecond, ``is_current``, ``_cdc_deleted``, and
the version metadata (``_cdc_txid``/``_cdc_op`` of the change that opened it, ``_cdc_source_ts``
of the last transaction written into it).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from stack_support import engine_warehouse, read_topic

from cdc.config import Config
from cdc.local.pipeline import ReplicatorThread, compare_all
from cdc.runtime import open_warehouse
from warehouse.base import HistoryReport

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

PLACEHOLDER = b"__debezium_unavailable_value"
_US = timedelta(microseconds=1)

# ---- the source's audit trail --------------------------------------------------------------

AUDIT_DDL = """
CREATE TABLE {t}_audit (
    seq bigserial PRIMARY KEY,
    id bigint NOT NULL,
    op char(1) NOT NULL,
    new_row jsonb,
    txid bigint NOT NULL DEFAULT txid_current()
);
CREATE FUNCTION {t}_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO {t}_audit (id, op, new_row) VALUES (OLD.id, 'd', NULL);
    ELSIF TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id THEN
        -- a key change: the old key ends, the new key begins (as Debezium reports it)
        INSERT INTO {t}_audit (id, op, new_row) VALUES (OLD.id, 'd', NULL);
        INSERT INTO {t}_audit (id, op, new_row) VALUES (NEW.id, 'c', to_jsonb(NEW));
    ELSE
        INSERT INTO {t}_audit (id, op, new_row)
        VALUES (NEW.id, CASE TG_OP WHEN 'INSERT' THEN 'c' ELSE 'u' END, to_jsonb(NEW));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER {t}_audit AFTER INSERT OR UPDATE OR DELETE ON {t}
    FOR EACH ROW EXECUTE FUNCTION {t}_audit_fn();
"""


@dataclass(frozen=True)
class Change:
    """One audited row change at the source."""

    seq: int
    key: int
    op: str  # c / u / d
    txid: int
    committed: datetime  # pg_xact_commit_timestamp of the writing transaction
    row: dict[str, Any] | None  # the full new row (None: the key is gone)


def install_audit(p: Pipeline, table: str) -> None:
    p.sql(AUDIT_DDL.format(t=table))


def _columns(p: Pipeline, table: str) -> list[str]:
    rows = p.sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        [table],
    )
    return [r[0] for r in rows]


def audit_trail(p: Pipeline, table: str) -> list[Change]:
    """Every audited change of ``table`` in order, with its row typed as the table's columns
    (``jsonb_populate_record``: numerics stay exact) and its transaction's commit time."""
    columns = _columns(p, table)
    select = ", ".join(f"r.{c}" for c in columns)
    rows = p.sql(
        f"SELECT a.seq, a.id, a.op, a.txid, pg_xact_commit_timestamp(a.xmin), "
        f"a.new_row IS NULL, {select} "
        f"FROM {table}_audit a "
        f"CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, a.new_row) r ORDER BY a.seq"
    )
    changes = []
    for seq, key, op, txid, committed, gone, *values in rows:
        assert committed is not None, f"no commit timestamp for audit row {seq}"
        row = None if gone else dict(zip(columns, values, strict=True))
        changes.append(Change(seq, key, op, txid, committed, row))
    # the workloads run one transaction at a time: audit order is commit order, and commit
    # times strictly increase from one transaction to the next
    by_tx = list(dict.fromkeys((c.txid, c.committed) for c in changes))
    assert len({t for t, _ in by_tx}) == len(by_tx)
    assert all(a[1] < b[1] for a, b in itertools.pairwise(by_tx)), "commit times"
    return changes


# ---- the committed-state model -------------------------------------------------------------

VERSION_COLUMNS = (
    "valid_from",
    "valid_to",
    "is_current",
    "_cdc_deleted",
    "_cdc_txid",
    "_cdc_op",
    "_cdc_source_ts",
)


def expected_history(
    changes: Sequence[Change], tracked: Sequence[str] | None, granularity: str
) -> dict[int, list[dict[str, Any]]]:
    """Each key's versions by the committed-state model (see the module docstring).

    In place (every column and ``_cdc_source_ts``; untracked columns follow change by change):
    every change of a step whose tracked values are those of the version current at the step's
    start is written into that version -- also when the step then ends it. With
    ``transaction`` granularity that includes a change putting the tracked values back after an
    earlier change of the transaction closed the version (the version is reopened and written),
    so a version a transaction ends can keep untracked values (and ``_cdc_source_ts``) written
    after that transaction's first tracked change; the planner (warehouse.scd2) and the unit
    reference model (tests/unit/test_scd2_properties.py) both do this.
    """
    steps: dict[int, list[list[Change]]] = defaultdict(list)  # key -> its changes per step
    last_step: dict[int, object] = {}
    for c in changes:
        step = c.txid if granularity == "transaction" else c.seq
        if last_step.get(c.key) != step:
            steps[c.key].append([])
            last_step[c.key] = step
        steps[c.key][-1].append(c)

    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        names = tracked if tracked is not None else b.keys()
        return all(a[n] == b[n] for n in names)

    out: dict[int, list[dict[str, Any]]] = {}
    for key, key_steps in steps.items():
        versions: list[dict[str, Any]] = []
        cur: dict[str, Any] | None = None
        for group in key_steps:
            last = group[-1]
            ts, state = last.committed, last.row
            if cur is not None:
                # every change of the step with the tracked values of the version current at
                # its start is written into that version in place (it stays, or is reopened)
                for c in group:
                    if c.row is not None and same(cur, c.row):
                        cur.update(c.row, _cdc_source_ts=ts)
                if state is not None and same(cur, state):
                    continue  # the step's committed state keeps the version
            if state is None:
                if cur is not None:
                    cur.update(valid_to=ts, is_current=False, _cdc_deleted=True)
                    cur = None
                continue
            if cur is not None:
                cur.update(valid_to=ts, is_current=False, _cdc_deleted=False)
            # the change that opened it: the step's first change after its last delete
            deletes = [i for i, c in enumerate(group) if c.op == "d"]
            opener = group[deletes[-1] + 1] if deletes else group[0]
            cur = {
                **state,
                "valid_from": ts,
                "valid_to": None,
                "is_current": True,
                "_cdc_deleted": False,
                "_cdc_txid": last.txid,
                "_cdc_op": opener.op,
                "_cdc_source_ts": ts,
            }
            versions.append(cur)
        if versions:
            out[key] = versions
    return out


def warehouse_history(
    config: Config, table: str
) -> tuple[dict[int, list[dict[str, Any]]], HistoryReport, list[dict[str, Any]]]:
    """The stored versions per key (in stored order), the invariant report, the raw rows."""
    target = config.table_target(config.table(table))
    warehouse = open_warehouse(config)
    try:
        rows = warehouse.fetch_history(target)
        report = warehouse.history_report(target)
    finally:
        warehouse.close()
    by_key: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_key[row["id"]].append(row)
    return dict(by_key), report, rows


def assert_history_equals_audit(
    p: Pipeline, table: str, *, tracked: Sequence[str] | None, granularity: str
) -> tuple[dict[int, list[dict[str, Any]]], list[Change]]:
    """The warehouse history of ``table`` equals the audit trail's committed-state model."""
    changes = audit_trail(p, table)
    expected = expected_history(changes, tracked, granularity)
    actual, report, rows = warehouse_history(p.config_, table)
    data = _columns(p, table)
    projected = {
        key: [{c: v[c] for c in (*data, *VERSION_COLUMNS)} for v in versions]
        for key, versions in actual.items()
    }
    assert report.ok, report
    assert report.keys == len(expected), (report.keys, len(expected))
    assert report.versions == sum(map(len, expected.values())) == len(rows)

    # validity first, with the offsets in µs: a precision loss (e.g. ms) would show here
    def stamps(h: dict[int, list[dict[str, Any]]]) -> dict[int, list[Any]]:
        return {k: [(v["valid_from"], v["valid_to"]) for v in vs] for k, vs in h.items()}

    got, want = stamps(projected), stamps(expected)
    if got != want:
        offsets = [
            (k, (a[0] - e[0]) // _US, None if None in (a[1], e[1]) else (a[1] - e[1]) // _US)
            for k in sorted(set(want) | set(got))
            for a, e in zip(got.get(k, []), want.get(k, []), strict=False)
            if a != e
        ]
        raise AssertionError(
            f"{table}: validity differs from the source commit times; (key, valid_from "
            f"offset µs, valid_to offset µs) of differing versions: {offsets[:20]}; "
            f"version counts actual/expected per differing key: "
            f"{_count_diffs(projected, expected)}"
        )
    diffs = {
        k: _version_diffs(projected.get(k, []), expected.get(k, []))
        for k in sorted(set(expected) | set(projected))
        if projected.get(k) != expected.get(k)
    }
    trail = {
        k: [(c.seq, c.txid, c.op, _brief(c.row)) for c in changes if c.key == k] for k in diffs
    }
    assert not diffs, (
        f"{table}: history differs for {len(diffs)} keys: {_short(diffs)}; "
        f"their audit trails (seq, txid, op, row): {_short(trail)}"
    )
    return projected, changes


def _version_diffs(
    actual: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """(version index, column, actual, expected) for every differing value."""
    if len(actual) != len(expected):
        return [("versions", len(actual), len(expected), _brief(actual), _brief(expected))]
    return [
        (i, c, _brief(a.get(c)), _brief(e.get(c)))
        for i, (a, e) in enumerate(zip(actual, expected, strict=True))
        for c in e
        if a.get(c) != e.get(c)
    ]


def _brief(value: Any) -> Any:
    """Long strings (the TOASTed values) as their length and a digest, in messages."""
    if isinstance(value, str) and len(value) > 80:
        return f"<{len(value)} chars, sha1 {hashlib.sha1(value.encode()).hexdigest()[:10]}>"
    if isinstance(value, dict):
        return {k: _brief(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_brief(v) for v in value]
    return value


def _count_diffs(a: dict[int, list[Any]], b: dict[int, list[Any]]) -> dict[int, tuple[int, int]]:
    return {
        k: (len(a.get(k, [])), len(b.get(k, [])))
        for k in set(a) | set(b)
        if len(a.get(k, [])) != len(b.get(k, []))
    }


def _short(value: Any, limit: int = 4000) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def replicate(p: Pipeline) -> Any:
    """Everything committed so far into the warehouse, in a fresh consumer run (its own
    batches); no dead letters, nothing parked."""
    stats = p.replicate_until_caught_up()
    assert stats.dead_letters == 0 and not stats.parked, stats
    return stats


# ---- test 1: audit-trail equality, transaction granularity ---------------------------------

CUSTOMERS_DDL = """
CREATE TABLE {t} (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    tier text,
    balance numeric(12,2),
    notes text
)
"""
TIERS = ("bronze", "silver", "gold", None)


class CustomerWorkload:
    """Serial transactions on a customers table; ``live`` mirrors its keys."""

    def __init__(self, url: str, table: str, seed: int) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.t = table
        self.rng = random.Random(seed)
        self.live: set[int] = set()
        self.kinds: dict[str, int] = defaultdict(int)

    def close(self) -> None:
        self.conn.close()

    def x(self, statement: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(statement.format(t=self.t), params).rowcount

    def values(self, key: int) -> tuple[Any, ...]:
        r = self.rng
        balance = Decimal(r.randint(-(10**6), 10**8)) / 100
        notes = None if r.random() < 0.3 else f"note {r.randint(0, 10**6)}"
        return (key, f"name {key}.{r.randint(0, 999)}", r.choice(TIERS), balance, notes)

    def insert(self, key: int) -> None:
        self.x("INSERT INTO {t} VALUES (%s, %s, %s, %s, %s)", self.values(key))
        self.live.add(key)

    def update(self, key: int) -> None:
        r = self.rng
        sets = r.sample(["name", "tier", "balance", "notes"], r.randint(1, 3))
        full = dict(zip(("id", "name", "tier", "balance", "notes"), self.values(key), strict=True))
        clause = ", ".join(f"{c} = %s" for c in sets)
        self.x(f"UPDATE {{t}} SET {clause} WHERE id = %s", [*(full[c] for c in sets), key])

    def delete(self, key: int) -> None:
        self.x("DELETE FROM {t} WHERE id = %s", [key])
        self.live.discard(key)

    def rekey(self, old: int, new: int) -> None:
        assert self.x("UPDATE {t} SET id = %s WHERE id = %s", [new, old]) == 1
        self.live.discard(old)
        self.live.add(new)

    def revert(self, key: int) -> None:
        """Change a key and put it back within the transaction: no new committed state."""
        self.x("UPDATE {t} SET tier = coalesce(tier, '') || '!' WHERE id = %s", [key])
        self.x("UPDATE {t} SET balance = balance + 1 WHERE id = %s", [key])
        self.x(
            "UPDATE {t} SET tier = nullif(left(tier, -1), ''), balance = balance - 1 WHERE id = %s",
            [key],
        )

    def reinsert_same(self, key: int) -> None:
        """Delete a key and insert it back as it was, in the running transaction."""
        row = self.conn.execute(
            f"DELETE FROM {self.t} WHERE id = %s RETURNING id, name, tier, balance, notes", [key]
        ).fetchone()
        assert row is not None
        self.x("INSERT INTO {t} VALUES (%s, %s, %s, %s, %s)", row)

    def noop(self, key: int) -> None:
        self.x("UPDATE {t} SET name = name WHERE id = %s", [key])

    def free_key(self, low: int, high: int) -> int:
        while True:
            key = self.rng.randint(low, high)
            if key not in self.live:
                return key

    def scripted(self) -> None:
        """Every case the spec names, once each, in its own transaction(s)."""
        c = self.conn
        with c.transaction():  # several keys in one transaction
            for key in range(1, 13):
                self.insert(key)
        with c.transaction():  # several changes to one key in one transaction
            self.x("UPDATE {t} SET name = 'first' WHERE id = 1")
            self.x("UPDATE {t} SET tier = 'gold' WHERE id = 1")
            self.x("UPDATE {t} SET balance = 12.34, notes = 'third' WHERE id = 1")
        with c.transaction():  # one statement, several keys
            self.x("UPDATE {t} SET balance = balance * 2 WHERE id BETWEEN 2 AND 5")
        with c.transaction():
            self.revert(2)  # back to where it was: no new version
        with c.transaction():
            self.noop(3)  # nothing changes: no new version
        with c.transaction():
            self.delete(4)  # gone: the version ends, flagged deleted
        with c.transaction():
            self.x("INSERT INTO {t} VALUES (4, 'back', 'bronze', 1.00, NULL)")  # re-insert
            self.live.add(4)
        with c.transaction():
            self.reinsert_same(5)  # deleted and back as it was in one transaction: nothing
        with c.transaction():  # deleted and back with other values: a new version, no delete
            self.x("DELETE FROM {t} WHERE id = 6")
            self.x("INSERT INTO {t} VALUES (6, 'reborn', 'silver', 6.66, 'x')")
        with c.transaction():  # a key that lives only inside one transaction: nothing
            self.x("INSERT INTO {t} VALUES (99, 'ghost', NULL, 0, NULL)")
            self.x("UPDATE {t} SET name = 'ghost2' WHERE id = 99")
            self.x("DELETE FROM {t} WHERE id = 99")
        with c.transaction():  # updated then deleted: only the delete counts
            self.x("UPDATE {t} SET name = 'doomed' WHERE id = 7")
            self.delete(7)
        with c.transaction():  # a primary-key change
            self.rekey(8, 100)
        with c.transaction():  # ... and back, with a change after it
            self.rekey(100, 8)
            self.x("UPDATE {t} SET notes = 'renumbered' WHERE id = 8")
        with c.transaction():  # a key change onto a key deleted earlier (7)
            self.rekey(9, 7)
        with c.transaction() as tx:  # a rolled-back savepoint leaves no trace
            self.x("UPDATE {t} SET name = 'kept' WHERE id = 10")
            with c.transaction() as savepoint:
                self.x("UPDATE {t} SET name = 'rolled back' WHERE id = 10")
                self.x("DELETE FROM {t} WHERE id = 11")
                raise psycopg.Rollback(savepoint)
            self.x("UPDATE {t} SET tier = 'silver' WHERE id = 10")
            assert tx is not None
        with c.transaction():  # insert and update of a new key in one transaction
            self.insert(13)
            self.x("UPDATE {t} SET name = 'thirteen' WHERE id = 13")

    def random(self, transactions: int) -> None:
        r = self.rng
        for _ in range(transactions):
            with self.conn.transaction():
                for _ in range(r.randint(1, 4)):
                    self.step()

    def step(self) -> None:
        r = self.rng
        kind = r.choices(
            ["update", "insert", "delete", "rekey", "revert", "reinsert", "noop"],
            weights=[50, 15, 12, 8, 8, 4, 3],
        )[0]
        if kind != "insert" and not self.live:
            kind = "insert"
        if kind == "insert" and len(self.live) > 30:
            kind = "update"
        self.kinds[kind] += 1
        key = r.choice(sorted(self.live)) if self.live else 0
        if kind == "update":
            self.update(key)
        elif kind == "insert":
            self.insert(self.free_key(1, 40))
        elif kind == "delete":
            self.delete(key)
        elif kind == "rekey":
            self.rekey(key, self.free_key(1, 60))
        elif kind == "revert":
            self.revert(key)
        elif kind == "reinsert":
            self.reinsert_same(key)
        else:
            self.noop(key)


def _start(p: Pipeline, tables: list[dict[str, Any]], **kwargs: Any) -> Config:
    """Configure the (still empty) tables, start Debezium, wait until it streams: every change
    after this is a streamed change with its commit time (no snapshot reads)."""
    config = p.configure(tables, **kwargs)
    p.start_debezium()
    p.wait_published()
    return config


@pytest.mark.parametrize("target", ["duckdb", "snowflake"])
def test_history_equals_the_source_audit_trail(
    pipeline: Pipeline, target: str, request: pytest.FixtureRequest
) -> None:
    """Inserts, updates, several changes to a key in one transaction, reverts, deletes,
    re-inserts, primary-key changes, savepoints, while the consumer runs: the history equals
    the committed states of the source's audit trail, validity = commit times to the µs. On
    DuckDB and on Snowflake (fakesnow's server, the real connector)."""
    p = pipeline
    p.sql(CUSTOMERS_DDL.format(t="customers"))
    install_audit(p, "customers")
    warehouse = engine_warehouse(p, target, request)
    config = _start(
        p,
        [{"name": "public.customers", "mode": "scd2", "scd2": {"granularity": "transaction"}}],
        batch_size=50,  # many batches: transactions split across them too
        linger_ms=50,
        warehouse=warehouse,
    )
    assert config.warehouse.type == target
    replicator = ReplicatorThread(config).start()
    replicator.wait_caught_up()  # assigned and consuming before the first change
    workload = CustomerWorkload(p.url, "customers", seed=23)
    try:
        workload.scripted()
        workload.random(150)
    finally:
        workload.close()
    p.wait_published()
    stats = replicator.finish()
    assert stats.dead_letters == 0 and not stats.parked, stats
    assert stats.batches > 5, stats.batches
    assert min(workload.kinds[k] for k in ("delete", "rekey", "revert", "reinsert")) > 0

    history, changes = assert_history_equals_audit(
        p, "customers", tracked=None, granularity="transaction"
    )
    p.assert_equal_to_source()  # the current versions are the source's rows

    # the scripted cases, checked directly (the random transactions come after them)
    first, second = history[1][:2]  # inserted, then three changes in one transaction
    assert (second["name"], second["tier"], second["balance"], second["notes"]) == (
        "first",
        "gold",
        Decimal("12.34"),
        "third",
    )  # one version for the transaction, none for its intermediate states
    assert first["valid_to"] == second["valid_from"] and not first["_cdc_deleted"]
    all_versions = [v for vs in history.values() for v in vs]
    assert not any((v["tier"] or "").endswith("!") for v in all_versions)  # reverted in-tx
    assert not any(v["name"] == "rolled back" for v in all_versions)  # savepoint rolled back
    assert 99 not in history  # lived only inside one transaction
    assert [(v["_cdc_op"], v["_cdc_deleted"], v["is_current"]) for v in history[100]] == [
        ("c", True, False)
    ]  # the key change 8 -> 100 and back
    eight = history[8]
    moved = next(i for i, v in enumerate(eight) if v["_cdc_deleted"])
    assert eight[moved]["valid_to"] == history[100][0]["valid_from"]
    assert eight[moved + 1]["valid_from"] == history[100][0]["valid_to"]
    assert (eight[moved + 1]["_cdc_op"], eight[moved + 1]["notes"]) == ("c", "renumbered")
    reborn = next(i for i, v in enumerate(history[6]) if v["name"] == "reborn")
    assert not history[6][reborn - 1]["_cdc_deleted"]  # deleted and re-inserted in one tx
    assert history[6][reborn - 1]["valid_to"] == history[6][reborn]["valid_from"]
    # validity equals the source commit times exactly, not only through the model
    commit_times = {c.committed for c in changes}
    assert all(v["valid_from"] in commit_times for v in all_versions)
    assert all(v["valid_to"] in commit_times for v in all_versions if v["valid_to"])


# ---- test 2: unchanged TOAST values carried into every version -----------------------------

DOCS_DDL = """
CREATE TABLE {t} (id int PRIMARY KEY, status text NOT NULL, counter int NOT NULL, body text)
"""
DOCS = ("docs_status", "docs_all")  # track: [status] / every column (body included)


def _large(seed: int) -> str:
    """24,000 characters of random hex: pglz can't shrink it, so it is stored out of line."""
    return random.Random(seed).randbytes(12_000).hex()


def test_unchanged_toast_values_are_carried_into_every_version(pipeline: Pipeline) -> None:
    """Updates that leave a TOASTed column alone reach the consumer without its value (Debezium's
    unavailable-value placeholder); every version must still hold the source's value -- carried
    from earlier in the batch or from the stored history -- whether the column is untracked
    (``track: [status]``) or tracked (every column)."""
    p = pipeline
    for t in DOCS:
        p.sql(DOCS_DDL.format(t=t))
        install_audit(p, t)
        assert p.sql("SELECT relreplident FROM pg_class WHERE oid = %s::regclass", [t]) == [("d",)]
    config = _start(
        p,
        [
            {"name": "public.docs_status", "mode": "scd2", "scd2": {"track": ["status"]}},
            {"name": "public.docs_all", "mode": "scd2"},
        ],
        linger_ms=1500,  # what is published before a consumer run is one batch
    )
    b1, b2, b3, b1b, b3b = (_large(seed) for seed in range(1, 6))

    def tx(*statements: tuple[str, Sequence[Any]]) -> None:
        """One source transaction running each statement on both tables."""
        with psycopg.connect(p.url, autocommit=True) as conn, conn.transaction():
            for statement, params in statements:
                for t in DOCS:
                    conn.execute(statement.format(t=t), params)

    def status(key: int, value: str) -> tuple[str, Sequence[Any]]:
        return "UPDATE {t} SET status = %s WHERE id = %s", [value, key]

    def bump(key: int, by: int) -> tuple[str, Sequence[Any]]:
        return "UPDATE {t} SET counter = counter + %s WHERE id = %s", [by, key]

    def body(key: int, value: str) -> tuple[str, Sequence[Any]]:
        return "UPDATE {t} SET body = %s WHERE id = %s", [value, key]

    # phase 1, one batch: every carry comes from earlier in the same batch
    tx(("INSERT INTO {t} VALUES (1, 'new', 0, %s), (2, 'new', 0, %s), (3, 'new', 0, %s)",
        [b1, b2, b3]))  # fmt: skip
    tx(status(1, "open"))
    tx(bump(1, 1))
    tx(status(2, "open"))
    tx(status(2, "review"))
    tx(("UPDATE {t} SET status = 'x', counter = 5 WHERE id = 3", []), status(3, "y"))
    tx(body(1, b1b))
    tx(status(1, "closed"))
    p.wait_published()
    assert replicate(p).batches == 1
    for t in DOCS:  # the large values really are out of line (TOASTed)
        toast = p.sql("SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = %s", [t])
        chunks = p.sql(f"SELECT count(DISTINCT chunk_id) FROM {toast[0][0]}")
        assert chunks[0][0] >= 3, (t, chunks)

    # phases 2-4, one batch each: the carry comes from the stored history
    tx(status(1, "reopened"), bump(2, 10), body(3, b3b))
    replicate(p)
    tx(status(2, "done"), status(3, "z"), bump(1, 1))
    replicate(p)
    tx(status(1, "final"))
    tx(status(2, "final"))
    replicate(p)

    histories: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for t, tracked in zip(DOCS, (["status"], None), strict=True):
        histories[t], changes = assert_history_equals_audit(
            p, t, tracked=tracked, granularity="transaction"
        )
        # Debezium really sent the placeholder for every update that left the body alone
        previous: dict[int, Any] = {}
        untouched = 0
        for c in changes:
            assert c.row is not None
            untouched += c.op == "u" and c.row["body"] == previous[c.key]
            previous[c.key] = c.row["body"]
        topic = config.topic_for(config.table(t))
        messages = read_topic(p.stack.bootstrap_servers, topic)
        placeholders = sum(1 for m in messages if m.value() and PLACEHOLDER in m.value())
        assert placeholders == untouched == 14, (t, placeholders, untouched)
    p.assert_equal_to_source()

    def bodies(t: str, key: int) -> list[tuple[str, int, str]]:
        names = {b1: "b1", b2: "b2", b3: "b3", b1b: "b1b", b3b: "b3b"}
        return [(v["status"], v["counter"], names[v["body"]]) for v in histories[t][key]]

    # untracked body and counter: written into the current version in place
    assert bodies("docs_status", 1) == [
        ("new", 0, "b1"),
        ("open", 1, "b1b"),
        ("closed", 1, "b1b"),
        ("reopened", 2, "b1b"),
        ("final", 2, "b1b"),
    ]
    assert bodies("docs_status", 3) == [("new", 0, "b3"), ("y", 5, "b3b"), ("z", 5, "b3b")]
    # tracked: every change opens a version, each carrying the large value
    assert bodies("docs_all", 1) == [
        ("new", 0, "b1"),
        ("open", 0, "b1"),
        ("open", 1, "b1"),
        ("open", 1, "b1b"),
        ("closed", 1, "b1b"),
        ("reopened", 1, "b1b"),
        ("reopened", 2, "b1b"),
        ("final", 2, "b1b"),
    ]
    assert bodies("docs_all", 2) == [
        ("new", 0, "b2"),
        ("open", 0, "b2"),
        ("review", 0, "b2"),
        ("review", 10, "b2"),
        ("done", 10, "b2"),
        ("final", 10, "b2"),
    ]


# ---- test 3: every_change granularity ------------------------------------------------------


def test_every_change_history_equals_the_source_audit_trail(pipeline: Pipeline) -> None:
    """``every_change``: one version per change that alters the row, versions of one
    transaction valid from its commit time (zero length but the last), still well formed."""
    p = pipeline
    p.sql(CUSTOMERS_DDL.format(t="accounts"))
    install_audit(p, "accounts")
    config = _start(
        p,
        [{"name": "public.accounts", "mode": "scd2", "scd2": {"granularity": "every_change"}}],
        batch_size=40,
        linger_ms=50,
    )
    replicator = ReplicatorThread(config).start()
    replicator.wait_caught_up()
    workload = CustomerWorkload(p.url, "accounts", seed=31)
    try:
        workload.scripted()
        workload.random(60)
    finally:
        workload.close()
    p.wait_published()
    stats = replicator.finish()
    assert stats.dead_letters == 0 and not stats.parked, stats

    history, changes = assert_history_equals_audit(
        p, "accounts", tracked=None, granularity="every_change"
    )
    p.assert_equal_to_source()

    def shape(key: int, n: int) -> list[tuple[Any, ...]]:
        """(zero length, deleted, current, name) of a key's first n versions."""
        return [
            (v["valid_from"] == v["valid_to"], v["_cdc_deleted"], v["is_current"], v["name"])
            for v in history[key][:n]
        ]

    # three changes to key 1 in one transaction: three versions, the first two zero length,
    # all valid from that transaction's commit time and opened by it
    one = history[1][1:4]
    assert len({(v["valid_from"], v["_cdc_txid"]) for v in one}) == 1
    assert [v["valid_from"] == v["valid_to"] for v in one[:2]] == [True, True]
    assert [(v["name"], v["tier"], v["notes"]) for v in one] == [
        ("first", history[1][0]["tier"], history[1][0]["notes"]),
        ("first", "gold", history[1][0]["notes"]),
        ("first", "gold", "third"),
    ]
    # a key inserted, updated and deleted in one transaction: two zero-length versions
    assert shape(99, 3) == [(True, False, False, "ghost"), (True, True, False, "ghost2")]
    # a revert in one transaction leaves its intermediate states (zero length)
    assert any((v["tier"] or "").endswith("!") for v in history[2])
    zero = sum(v["valid_from"] == v["valid_to"] for vs in history.values() for v in vs)
    assert zero >= 5, zero
    assert len(changes) > 100


# ---- test 4: a key change of a row with an untouched TOASTed value ------------------------


def test_key_change_keeps_an_untouched_toasted_value(pipeline: Pipeline) -> None:
    """A primary-key change of a row whose large (TOASTed) column it does not touch: PostgreSQL
    logs the new row without that value, Debezium sends the new key's create with the
    unavailable-value placeholder; the new key's first version (and, for comparison, a mirror
    table's new row) must still hold the source's value."""
    p = pipeline
    tables = ("keyed_hist", "keyed_mirror")
    for t in tables:
        p.sql(DOCS_DDL.format(t=t))
    install_audit(p, "keyed_hist")
    config = _start(
        p, [{"name": "public.keyed_hist", "mode": "scd2"}, {"name": "public.keyed_mirror"}]
    )
    big, other = _large(7), _large(8)
    with psycopg.connect(p.url, autocommit=True) as conn:
        for t in tables:
            conn.execute(
                f"INSERT INTO {t} VALUES (1, 'new', 0, %s), (2, 'new', 0, %s)", [big, other]
            )
    replicate(p)  # key 1 is stored: its value is in the warehouse
    with psycopg.connect(p.url, autocommit=True) as conn:
        for t in tables:
            conn.execute(f"UPDATE {t} SET id = 10 WHERE id = 1")  # alone in its transaction
            with conn.transaction():  # with another change of the key in the transaction
                conn.execute(f"UPDATE {t} SET id = 20, status = 'moved' WHERE id = 2")
                conn.execute(f"UPDATE {t} SET counter = 1 WHERE id = 20")
    replicate(p)

    # the cause: the new keys' creates carry the placeholder, not the value
    for t in tables:
        messages = read_topic(p.stack.bootstrap_servers, config.topic_for(config.table(t)))
        creates = [m.value() for m in messages if m.key() and b'"id":10' in m.key()]
        assert creates and PLACEHOLDER in creates[0], t

    problems = []
    history, report, _ = warehouse_history(config, "keyed_hist")
    assert report.ok, report
    for key, value in ((10, big), (20, other)):
        got = [_brief(v["body"]) for v in history[key]]
        if got != [_brief(value)] * len(history[key]):
            problems.append(f"keyed_hist: versions of key {key} hold {got}, source {_brief(value)}")
    for d in compare_all(config, p.url):  # current rows: the history's and the mirror's
        if d.diffs:
            problems.append(f"{d.name} vs source: {d.diffs} rows differ: {d.describe()[:300]}")
    assert not problems, "\n".join(problems)
    assert_history_equals_audit(p, "keyed_hist", tracked=None, granularity="transaction")


# ---- test 5: a batch never ends between the two halves of a key change ----------------------


def test_a_batch_ending_at_a_key_changes_delete_takes_its_create_along(pipeline: Pipeline) -> None:
    """A hard-deleted mirror row is gone once its batch commits, so the create half of a key
    change must be applied in the same batch as the delete half. With ``batch_size`` cut right
    after the delete (offsets 0-2: the inserts, 3: the delete, 4: its tombstone, 5: the
    create), the consumer takes the next messages into the batch: the new key keeps the
    untouched large value, and no value goes unresolved."""
    p = pipeline
    p.sql(DOCS_DDL.format(t="cut_docs"))
    config = _start(p, [{"name": "public.cut_docs"}], batch_size=4)
    bodies = {k: _large(20 + k) for k in (1, 2, 3)}
    with psycopg.connect(p.url, autocommit=True) as conn:
        for k, body in bodies.items():
            conn.execute("INSERT INTO cut_docs VALUES (%s, 'new', 0, %s)", [k, body])
        conn.execute("UPDATE cut_docs SET id = 30 WHERE id = 3")
    p.wait_published()
    messages = read_topic(p.stack.bootstrap_servers, config.topic_for(config.table("cut_docs")))
    shape = [(m.offset(), m.value() is None, PLACEHOLDER in (m.value() or b"")) for m in messages]
    assert shape[3:] == [(3, False, False), (4, True, False), (5, False, True)], shape
    stats = replicate(p)
    assert stats.batches == 1, "the batch was cut between the halves"
    assert stats.events == 5
    warehouse = open_warehouse(config)
    try:
        rows = {
            r["id"]: r["body"]
            for r in warehouse.fetch_table(config.table_target(config.table("cut_docs")))
        }
    finally:
        warehouse.close()
    assert rows == {1: bodies[1], 2: bodies[2], 30: bodies[3]}
