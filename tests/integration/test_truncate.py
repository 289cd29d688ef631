"""TRUNCATE on the real chain: PostgreSQL -> Debezium (``skipped.operations=none``) -> broker ->
consumer -> warehouse, on DuckDB and on Snowflake (fakesnow's server, the real connector).

Three tables get the same changes: ``plain`` (mirror), ``soft`` (mirror, ``soft_delete``) and
``hist`` (scd2, granularity ``transaction``). The consumer has applied earlier rows before each
truncate (mid-stream). Truncates come in their own transactions (``TRUNCATE plain, hist``: two
tables in one statement, then ``TRUNCATE soft``) with changes before and after them in other
transactions, and inside one transaction between its changes
(``BEGIN; INSERT; UPDATE; TRUNCATE plain, soft, hist; INSERT; UPDATE; COMMIT``) while the
consumer runs.

Expected (the warehouse semantics of a truncate at position P, commit time T):

- mirror: the rows equal the source exactly (nothing at or below P survives);
- soft delete: the live rows equal the source; every row live at the truncate is marked
  deleted with ``_cdc_op = 't'`` and ``_cdc_source_ts = T``, rows of the truncating
  transaction's own changes before it included;
- scd2: every version current at the truncate closes at T (``valid_to = T``, not current,
  ``_cdc_deleted``); a version the truncating transaction itself opened leaves no version (and
  the version it replaced ends at T as deleted); keys inserted after it open versions at T.
  Granularity ``transaction`` keeps one version per committed state, so a key the truncating
  transaction inserts again after the truncate follows warehouse.scd2's rules for a delete and
  re-insert in one transaction: back as it was, its version goes on (reopened); back with
  other values, its version ends at T not deleted and a new one opens (the reference models
  of tests/scd2_reference.py say the same). The whole history is given per key as
  (valid_from, valid_to, is_current, deleted), every instant a commit time PostgreSQL reports
  (``pg_xact_commit_timestamp``).

Then ``history_report`` and reconciliation are clean, and neither a second consumer run nor a
replay of every topic from its first offset (a new consumer group: every old insert, update
and truncate redelivered) changes a stored row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from stack_support import engine_warehouse, read_topic, stored

from cdc.config import Config
from cdc.consumer.settings import RunStats
from cdc.local.pipeline import ReplicatorThread, write_stack_config
from cdc.reconcile.run import ReconcileSettings, reconcile
from cdc.runtime import open_warehouse

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.integration

TABLES = ("plain", "soft", "hist")
DDL = "CREATE TABLE {t} (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL)"
CONFIG_TABLES: list[str | dict[str, Any]] = [
    {"name": "public.plain"},
    {"name": "public.soft", "soft_delete": True},
    {"name": "public.hist", "mode": "scd2", "scd2": {"granularity": "transaction"}},
]
FAST = ReconcileSettings(leaf_rows=64, fanout=8, lag_timeout=30)


def insert(low: int, high: int) -> str:
    """Rows ``low..high`` with their default values (``v<id>``, ``id``), in every table."""
    return f"INSERT INTO {{t}} SELECT g, 'v' || g, g FROM generate_series({low}, {high}) g"


class Source:
    """Named source transactions and their commit times (``track_commit_timestamp`` is on)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.commits: dict[str, dt.datetime] = {}

    def tx(self, name: str, *statements: str) -> None:
        """One transaction; a statement with ``{t}`` runs once per table (in TABLES order)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            with conn.transaction():
                row = conn.execute("SELECT txid_current()").fetchone()
                assert row is not None
                for statement in statements:
                    for t in TABLES if "{t}" in statement else ("",):
                        conn.execute(statement.format(t=t))
            committed = conn.execute(
                "SELECT pg_xact_commit_timestamp(mod(%s, 4294967296)::text::xid)", [row[0]]
            ).fetchone()
        assert committed is not None and committed[0] is not None, name
        assert committed[0] not in self.commits.values(), f"{name}: commit time seen before"
        self.commits[name] = committed[0]

    def ids(self, table: str) -> list[int]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")]


def stored_rows(config: Config, table: str) -> list[dict[str, Any]]:
    """Every stored row of a warehouse table (:func:`stack_support.stored`: soft-deleted rows
    and closed versions included, metadata columns too). Timestamps with a zone come back in
    UTC. (fakesnow fetches a NULL timestamp as 1970-01-01: only non-null ones are asserted on
    from here.)"""
    _, rows = stored(config, config.table_target(config.table(table)).name)

    def utc(value: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.astimezone(dt.UTC)
        return value

    return [{n: utc(v) for n, v in row.items()} for row in rows]


def snapshot(config: Config) -> dict[str, list[str]]:
    """Every stored row of every table (load times left out), in a comparable form."""
    return {
        t: sorted(
            repr(sorted((k, v) for k, v in row.items() if k != "_cdc_loaded_at"))
            for row in stored_rows(config, t)
        )
        for t in TABLES
    }


def history(config: Config) -> dict[int, list[tuple[Any, ...]]]:
    """``hist``'s versions per key, in stored order: (valid_from, valid_to, is_current,
    deleted)."""
    warehouse = open_warehouse(config)
    try:
        rows = warehouse.fetch_history(config.table_target(config.table("hist")))
    finally:
        warehouse.close()
    out: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for r in rows:
        out[r["id"]].append((r["valid_from"], r["valid_to"], r["is_current"], r["_cdc_deleted"]))
    return dict(out)


def replicate(p: Pipeline, config: Config | None = None) -> RunStats:
    stats: RunStats = p.replicate_until_caught_up(config)
    assert stats.dead_letters == 0 and not stats.parked, stats
    return stats


def truncate_messages(p: Pipeline, config: Config, table: str) -> list[tuple[Any, str]]:
    """(Kafka key, op) of the table's topic's truncate events."""
    messages = read_topic(p.stack.bootstrap_servers, config.topic_for(config.table(table)))
    out = []
    for m in messages:
        value = m.value()
        if value is None:
            continue
        doc = json.loads(value)
        payload = doc.get("payload", doc)
        if payload.get("op") == "t":
            out.append((m.key(), payload["op"]))
    return out


@pytest.mark.parametrize("engine", ["duckdb", "snowflake"])
def test_truncates_mid_stream_end_rows_in_every_table_mode(
    pipeline: Pipeline, engine: str, request: pytest.FixtureRequest
) -> None:
    p = pipeline
    section = engine_warehouse(p, engine, request)
    for t in TABLES:
        p.sql(DDL.format(t=t))
    config = p.configure(CONFIG_TABLES, warehouse=section)
    assert config.warehouse.type == engine
    p.start_debezium()
    p.wait_published()  # streaming: every change below comes with its commit time
    src = Source(p.url)

    # ---- mid-stream: rows the consumer has applied before any truncate ----------------------
    src.tx("s0", insert(1, 20))
    src.tx("s1", "UPDATE {t} SET v = 'w' || id WHERE id IN (4, 5)")
    replicate(p)
    p.assert_equal_to_source(" (before any truncate)")

    # ---- round 1: truncates in their own transactions, one consumer run --------------------
    src.tx("a", insert(21, 25))  # not applied yet when the truncate comes
    src.tx("b", "UPDATE {t} SET n = n + 1 WHERE id IN (2, 3)")
    src.tx("T1a", "TRUNCATE plain, hist")  # two tables, one statement
    src.tx("T1b", "TRUNCATE soft")
    src.tx("c", insert(1, 3), insert(30, 39))  # keys 1-3 back (key 1, 2 as at s0)
    src.tx("d", "UPDATE {t} SET v = 'x' || id WHERE id = 30", "DELETE FROM {t} WHERE id = 31")
    replicate(p)
    p.assert_equal_to_source(" (after round 1: truncates in their own transactions)")

    # ---- round 2: the truncate inside a transaction, while the consumer runs ---------------
    replicator = ReplicatorThread(config).start()
    replicator.wait_caught_up()
    src.tx(
        "T2",
        insert(40, 44),
        "UPDATE {t} SET v = 'changed' WHERE id IN (1, 30, 32, 40)",
        "TRUNCATE plain, soft, hist",
        insert(45, 49),
        "INSERT INTO {t} VALUES (1, 'v1', 1), (2, 'v2', 2), (3, 'other', 33), "
        "(32, 'other', 320), (40, 'again', 400)",
        "UPDATE {t} SET n = n + 100 WHERE id = 45",
    )
    src.tx("e", insert(50, 50), "UPDATE {t} SET v = 'y' || id WHERE id = 46")
    p.wait_published()
    stats = replicator.finish()
    assert stats.dead_letters == 0 and not stats.parked, stats

    # the truncates really went through Kafka: op "t", no Kafka key
    for table, count in (("plain", 2), ("soft", 2), ("hist", 2)):
        assert truncate_messages(p, config, table) == [(None, "t")] * count, table

    live = [1, 2, 3, 32, 40, 45, 46, 47, 48, 49, 50]
    assert all(src.ids(t) == live for t in TABLES)
    ts = src.commits

    # ---- every table's live rows equal the source; the mirror holds nothing else -----------
    p.assert_equal_to_source(" (after round 2: a truncate inside a transaction)")
    assert sorted(r["id"] for r in stored_rows(config, "plain")) == live

    # ---- soft delete: truncated rows marked deleted with the truncate's op and commit time --
    expected_soft: dict[int, tuple[Any, ...]] = {k: (False,) for k in live}
    for k in range(4, 26):  # live at T1b, never back
        expected_soft[k] = (True, "t", ts["T1b"])
    for k in (30, *range(33, 40), *range(41, 45)):  # live at T2 (41-44: from T2 itself)
        expected_soft[k] = (True, "t", ts["T2"])
    expected_soft[31] = (True, "d", ts["d"])  # an ordinary delete between the truncates
    got_soft = {
        r["id"]: (False,) if not r["_cdc_deleted"] else (True, r["_cdc_op"], r["_cdc_source_ts"])
        for r in stored_rows(config, "soft")
    }
    assert got_soft == expected_soft, {
        k: (got_soft.get(k), expected_soft.get(k))
        for k in sorted(set(got_soft) | set(expected_soft))
        if got_soft.get(k) != expected_soft.get(k)
    }

    # ---- scd2: the whole history, validity at the source's commit times ---------------------
    def v(opened: str, closed: str | None = None, deleted: bool = False) -> tuple[Any, ...]:
        return (ts[opened], ts[closed] if closed else None, closed is None, deleted)

    expected: dict[int, list[tuple[Any, ...]]] = {
        # T2 changes 1 and 32 before its truncate and inserts 1, 2, 3 and 32 again after it:
        # 1 and 2 as they were (their versions from c go on), 3 and 32 with other values
        # (their versions from c end at T2, not deleted: the keys did not go away)
        1: [v("s0", "T1a", True), v("c")],
        2: [v("s0", "b"), v("b", "T1a", True), v("c")],
        3: [v("s0", "b"), v("b", "T1a", True), v("c", "T2"), v("T2")],
        4: [v("s0", "s1"), v("s1", "T1a", True)],
        5: [v("s0", "s1"), v("s1", "T1a", True)],
        **{k: [v("s0", "T1a", True)] for k in range(6, 21)},
        **{k: [v("a", "T1a", True)] for k in range(21, 26)},  # applied with the truncate
        30: [v("c", "d"), v("d", "T2", True)],
        31: [v("c", "d", True)],
        32: [v("c", "T2"), v("T2")],
        **{k: [v("c", "T2", True)] for k in range(33, 40)},  # truncated at T2
        40: [v("T2")],  # its insert and update before the truncate leave no version
        # 41-44: inserted in T2 before its truncate: no version at all
        **{k: [v("T2")] for k in (45, 47, 48, 49)},
        46: [v("T2", "e"), v("e")],
        50: [v("e")],
    }
    got = history(config)
    names = {when: name for name, when in ts.items()}

    def named(h: dict[int, list[tuple[Any, ...]]], k: int) -> list[tuple[Any, ...]]:
        return [(names.get(f, f), names.get(t, t), c, d) for f, t, c, d in h.get(k, [])]

    differing = {
        k: {"stored": named(got, k), "expected": named(expected, k)}
        for k in sorted(set(got) | set(expected))
        if got.get(k) != expected.get(k)
    }
    assert not differing, f"hist: versions (valid_from, valid_to, current, deleted): {differing}"

    target = config.table_target(config.table("hist"))
    warehouse = open_warehouse(config)
    try:
        report = warehouse.history_report(target)
    finally:
        warehouse.close()
    assert report.ok, report
    assert (report.keys, report.current) == (len(expected), len(live)), report
    assert report.versions == sum(map(len, expected.values())), report

    # ---- reconciliation: no difference anywhere ---------------------------------------------
    checked = reconcile(config, settings=FAST)
    for result in checked.tables:
        assert (result.error, result.diffs, result.status) == (None, 0, "ok"), result.to_json()
    assert [r.table for r in checked.tables] == list(TABLES)
    (hist,) = [r for r in checked.tables if r.mode == "scd2"]
    assert hist.history is not None and hist.history.ok, hist.to_json()

    # ---- idempotent: another run, then every message again, change no stored row ------------
    before = snapshot(config)
    replicate(p)
    assert snapshot(config) == before, "a second consumer run changed stored rows"
    replay = write_stack_config(
        p.workdir / "replay.yaml",
        p.stack,
        CONFIG_TABLES,
        warehouse_path=p.workdir / "warehouse.duckdb",
        group_id=f"{p.name}-replay",  # no offsets stored: from each topic's first message
        topic_prefix=p.name,
        slot_name=f"{p.name}_slot",
        database=p.database,
        warehouse=section,
    )
    replayed = replicate(p, replay)
    assert replayed.events > 0, replayed
    after = snapshot(config)
    changed = {t: sorted(set(after[t]) ^ set(before[t]))[:10] for t in TABLES}
    assert after == before, f"redelivered changes altered stored rows: {changed}"
