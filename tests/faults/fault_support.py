"""What every fault scenario shares: a workload that keeps writing while something breaks, and
the end check (reconciliation finds 0 missing, 0 extra, 0 different rows in every table with a
primary key; every table equals the source row for row; the SCD2 invariants hold).

A scenario: create its tables, ``with Workload(pipeline.url, "items") as load:`` start the
writes, break something, let it recover, leave the block (the writes stop), replicate to the
end, then :func:`verify`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg

from cdc.local.pipeline import compare_all, history_reports
from cdc.reconcile.run import ReconcileSettings, reconcile

if TYPE_CHECKING:
    from stack_support import Pipeline

FAST = ReconcileSettings(leaf_rows=64, fanout=8, lag_timeout=30)


def log_events(text: str, name: str) -> list[dict[str, Any]]:
    """The records of a ``cdc run`` log (JSON lines, ``CDC_LOG_FORMAT=json``) whose event is
    ``name``, in order; other lines are skipped."""
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event") == name:
            out.append(record)
    return out


def create_load_table(pipeline: Pipeline, table: str = "items", rows: int = 300) -> None:
    """``table`` (id PK, v int, note text, at timestamptz) with ``rows`` seed rows."""
    pipeline.sql(
        f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL, note text, "
        "at timestamptz NOT NULL DEFAULT now())"
    )
    pipeline.sql(
        f"INSERT INTO {table} (id, v, note) SELECT g, g, 'seed' FROM generate_series(1, {rows}) g"
    )


class Workload(threading.Thread):
    """Random inserts, updates and deletes on ``table`` (see :func:`create_load_table`), a few
    per transaction, at about ``rate`` transactions per second, until stopped. When the
    database goes away (a restart), it reconnects and goes on; ``failures`` counts the
    transactions that failed (rolled back, so the source never saw them)."""

    def __init__(
        self, url: str, table: str = "items", *, rate: float = 50, seed: int = 1, top: int = 600
    ) -> None:
        super().__init__(daemon=True, name=f"workload-{table}")
        self.url, self.table, self.rate, self.top = url, table, rate, top
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.commits = 0
        self.failures = 0
        self.error: BaseException | None = None

    def _one(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        t = self.table
        with conn.transaction():
            for _ in range(self.rng.randint(1, 4)):
                k = self.rng.randint(1, self.top)
                op = self.rng.random()
                if op < 0.45:
                    conn.execute(
                        f"INSERT INTO {t} (id, v, note) VALUES (%s, 0, 'new') "
                        f"ON CONFLICT (id) DO UPDATE SET v = {t}.v + 1, at = now()",
                        (k,),
                    )
                elif op < 0.85:
                    conn.execute(
                        f"UPDATE {t} SET v = v + 1, note = %s, at = now() WHERE id = %s",
                        (f"u{self.commits}", k),
                    )
                else:
                    conn.execute(f"DELETE FROM {t} WHERE id = %s", (k,))

    def run(self) -> None:
        pause = 1 / self.rate
        try:
            while not self.halt.is_set():
                try:
                    with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                        while not self.halt.is_set():
                            self._one(conn)
                            self.commits += 1
                            time.sleep(pause)
                except psycopg.OperationalError:
                    self.failures += 1
                    time.sleep(0.5)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> int:
        """Stop writing; the number of committed transactions (at least one is required)."""
        self.halt.set()
        self.join(30)
        if self.error is not None:
            raise self.error
        assert self.commits > 0, "the workload committed nothing"
        return self.commits

    def __enter__(self) -> Workload:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.halt.set()
        self.join(30)
        if exc_type is None:
            self.stop()


def verify(pipeline: Pipeline, *, context: str = "") -> None:
    """The end of every scenario (run it once the consumer has caught up): reconciliation of
    every table with a primary key reports 0 missing / extra / different and nothing unsettled;
    every table equals the source row for row; every ``scd2`` table's history is well formed."""
    config = pipeline.config_
    keyed = [
        t.name
        for t in config.tables
        if pipeline.sql(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s",
            (t.source.schema, t.source.name),
        )
    ]
    if keyed:
        report = reconcile(config, keyed, settings=FAST, record=False)
        bad = {
            r.table: {
                "missing": r.missing[:5],
                "extra": r.extra[:5],
                "different": r.different[:5],
                "unsettled": r.unsettled[:5],
                "stalled": r.stalled,
            }
            for r in report.tables
            if r.missing or r.extra or r.different or r.unsettled or r.stalled
        }
        assert not bad, f"reconciliation found differences: {bad}{context}"
    diffs = compare_all(config, pipeline.url)
    differ = {d.name: d.describe() for d in diffs if d.diffs}
    assert not differ, f"warehouse differs from source: {differ}{context}"
    broken = {n: r for n, r in history_reports(config).items() if not r.ok}
    assert not broken, f"SCD2 invariants broken: {broken}{context}"
