"""The apply pipeline, written once for every engine (template method).

One apply: plan each table's target (``sql.target_table``) and carry key changes
(:mod:`warehouse.key_change`); then, in the engine's unit of work:

1. *prepare*: per table, create or sync the target table (idempotent DDL) when it is needed,
   fill key changes' placeholders from stored rows, hold changes of keys with an open
   quarantined change (:mod:`warehouse.quarantine`), plan (:mod:`warehouse.mirror`,
   :mod:`warehouse.scd2`: the stored tails are read set-based, their keys staged as data) and
   reserve each stage;
2. *write*, in ONE transaction: mark resolved quarantine rows replayed, store the quarantine
   rows (once per origin), per table load its stage and run its few set-based statements,
   store the offsets (forward only), commit.

A TRUNCATE comes alone in its table batch and is applied set-based in the same transaction
(:mod:`warehouse.engine.truncate`); changes at or below a table's last truncate (its mark,
read first in the session) are dropped as stale before planning.

With ``capabilities.transactional_ddl`` the transaction spans both phases; without it (DDL
commits an open transaction) the prepare phase runs before it, and the registry row is written
with the data. With ``capabilities.merge_in_transaction`` the writes are MERGE statements;
without it the logical merge (UPDATE ... FROM + INSERT ... WHERE NOT EXISTS). Any exception:
rollback, the error mapped once by the engine; the consumer retries the whole batch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cdc import failpoints
from warehouse import sql
from warehouse.arrow import key_stage, mirror_stage, quarantine_stage, scd2_stage, source_rows_stage
from warehouse.base import (
    ApplyResult,
    OffsetRow,
    QuarantineRow,
    SourceRows,
    TableApplyStats,
    TableBatch,
    TableTarget,
)
from warehouse.engine.core import I64, Field, Stage, meta_kinds, naming_table
from warehouse.engine.keyless import KeylessSteps, KeylessWork
from warehouse.engine.truncate import TruncateSteps
from warehouse.key_change import KeyChangeCarry, StoredRow, carry_key_changes
from warehouse.keyless import Watermark, keyless_stage, replace_plan
from warehouse.mirror import Key, MirrorPlan, event_key, plan_mirror
from warehouse.quarantine import first_open, hold, open_keys
from warehouse.scd2 import Scd2Plan, StoredVersion, plan_scd2, stored_tails
from warehouse.sql import TargetTable

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
Pending = dict[str, tuple[TableTarget, Any]]


def _micros(value: dt.datetime) -> int:
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


@dataclass(slots=True)
class TableWork:
    """One table's share of an apply, prepared before its writes."""

    batch: TableBatch
    m: TargetTable
    stats: TableApplyStats
    plan: MirrorPlan | Scd2Plan | None = None
    stage: pa.Table | None = None
    into: Stage = None  # its stage; None: nothing to write
    toast: frozenset[int] = frozenset()
    held: list[QuarantineRow] = field(default_factory=list)
    keyless: KeylessWork | None = None  # a table without a primary key (warehouse.keyless)


class ApplyTemplate(TruncateSteps, KeylessSteps):
    """:meth:`apply` and :meth:`load_rows` on the engine hooks."""

    @contextlib.contextmanager
    def _transaction(self, c: Any) -> Iterator[Callable[[], None]]:
        """One apply's transaction, committed at the end. The body prepares (DDL, the plans'
        reads), then calls the function it is given where the writes start: the transaction
        begins there, or already began here when DDL is transactional."""
        early = self.capabilities.transactional_ddl
        if early:
            self._begin(c)
        try:
            if not self._bookkept:
                self._bookkeeping_ddl(c)
            yield (lambda: None) if early else (lambda: self._begin(c))
            self._commit(c)
        except BaseException:
            self._rollback(c)
            raise

    def apply(
        self,
        batches: Sequence[TableBatch],
        offsets: Sequence[OffsetRow],
        quarantine: Sequence[QuarantineRow] = (),
        resolve: Sequence[QuarantineRow] = (),
    ) -> ApplyResult:
        started = time.perf_counter()
        pending: Pending = {}
        with self._session(None) as c, self._transaction(c) as writing:
            marks = self._truncation_marks(c)
            kept, cuts, stale = self._past_marks(batches, marks)
            planned = []
            for batch in kept:
                with naming_table(batch.target.name):
                    carry = carry_key_changes(batch) if batch.schema.key else KeyChangeCarry(batch)
                    planned.append((self._target_table(batch), carry))
            work = [self._prepare(c, m, carry, quarantine, resolve, pending)
                    for m, carry in planned]  # fmt: skip
            truncates = [self._prepare_truncate(c, b, cut, marks) for b, cut in cuts]
            self._tagged = None
            stored = [*quarantine, *(r for w in work for r in w.held)]
            queued = self._queue_quarantine(c, stored, resolve)
            writing()
            self._write_quarantine(c, queued)
            for w in work:
                self._tagged = w.batch.target.name
                self._write(c, w)
                w.stats.stale += stale.get(w.batch.target.name, 0)
            for t in truncates:
                self._tagged = t.batch.target.name
                self._write_truncate(c, t)
            self._tagged = None
            self._store_offsets(c, offsets)
            failpoints.reach("before_warehouse_commit")
        self._bookkept = True
        self._ensured.update(pending)
        stats = [*(w.stats for w in work), *(t.stats for t in truncates)]
        return ApplyResult(tables=stats, seconds=time.perf_counter() - started)

    def keyless_watermark(self, target: TableTarget) -> Watermark:
        return self._or_missing(lambda c: self._watermark(c, target.name), Watermark(),  # type: ignore[no-any-return]
                                target.name)  # fmt: skip

    def replace_keyless(self, batch: TableBatch, expected: Watermark) -> int:
        name = batch.target.name
        with naming_table(name):
            m = self._target_table(batch)
            plan = replace_plan(batch, expected)
        data = keyless_stage(plan)
        pending: Pending = {}
        with self._session(name) as c, self._transaction(c) as writing:
            with naming_table(name):
                self._ensure_table(c, batch, m, pending)
            work = KeylessWork(plan, data, self._reserve(c, "keyless", data))
            writing()
            self._check_watermark(c, name, expected)
            self._write_keyless(c, m, work, TableApplyStats(name))
            if not self.capabilities.transactional_ddl:
                self._register(c, batch)
        self._bookkept = True
        self._ensured.update(pending)
        return len(plan.adds)

    def _prepare(
        self,
        c: Any,
        m: TargetTable,
        carry: KeyChangeCarry,
        quarantine: Sequence[QuarantineRow],
        resolve: Sequence[QuarantineRow],
        pending: Pending,
    ) -> TableWork:
        """One table's DDL, reads, plan and stage, before its writes."""
        batch, name = carry.batch, carry.batch.target.name
        self._tagged = name
        if not m.key:
            work = TableWork(batch, m, TableApplyStats(name))
            with naming_table(name):
                self._refuse_stray(c, batch)
                self._ensure_table(c, batch, m, pending)
                work.keyless = self._prepare_keyless(c, batch)
            return work
        unresolved = 0
        if carry.asks:
            with naming_table(name):
                self._ensure_table(c, batch, m, pending)
                batch, unresolved = self._carry_key_changes(c, carry, m)
        held: list[QuarantineRow] = []
        if batch.target.quarantine:
            batch, held = self._hold(c, batch, quarantine, resolve)
        stats = TableApplyStats(name, held=len(held), toast_unresolved=unresolved)
        work = TableWork(batch, m, stats, held=held)
        if not batch.events:
            return work
        with naming_table(name):
            self._ensure_table(c, batch, m, pending)
            if m.scd2 is not None:
                plan = self._plan_scd2(c, batch, m)
                stats.events, stats.upserted = plan.events, plan.upserted
                stats.deleted, stats.stale = plan.deleted, plan.stale
                stats.versions_opened, stats.versions_closed = plan.opened, plan.closed
                work.plan, work.stage = plan, scd2_stage(plan)
                work.into = None if plan.empty else self._reserve(c, "scd2", work.stage)
            else:
                mirror = plan_mirror(batch)
                work.plan = mirror
                work.stage, work.toast = mirror_stage(mirror)
                work.into = self._reserve(c, "mirror", work.stage)
        return work

    def _write(self, c: Any, w: TableWork) -> None:
        """The set-based statements of one table, in the transaction."""
        if w.keyless is not None:
            self._write_keyless(c, w.m, w.keyless, w.stats)
            if w.keyless.into is not None and not self.capabilities.transactional_ddl:
                self._register(c, w.batch)
            return
        if w.into is None:
            return
        assert w.stage is not None
        self._load(c, w.into, w.stage, w.batch.target.name)
        m, into = w.m, w.into
        if isinstance(w.plan, Scd2Plan):
            if w.plan.removes:
                self._exec(c, sql.scd2_remove(m, into))
            if w.plan.updates:
                self._exec(c, sql.scd2_update(m, into))
            if w.plan.inserts:
                self._exec(c, sql.scd2_insert(m, into))
            if w.plan.deletes:
                self._write_markers(c, m, into)
        else:
            assert isinstance(w.plan, MirrorPlan)
            self._write_mirror(c, w.plan, w, into)
        if not self.capabilities.transactional_ddl:
            self._register(c, w.batch)

    def _write_markers(self, c: Any, m: TargetTable, into: Stage) -> None:
        if self.capabilities.merge_in_transaction:
            self._exec(c, sql.record_delete_markers(m, into))
        else:
            self._exec(c, sql.logical_markers_update(m, into))
            self._exec(c, sql.logical_markers_insert(m, into))

    def _upsert(self, c: Any, m: TargetTable, into: Stage, toast: frozenset[int]) -> None:
        if self.capabilities.merge_in_transaction:
            self._exec(c, sql.mirror_upsert(m, into, toast))
        else:
            self._exec(c, sql.logical_upsert_update(m, into, toast, self._value))
            self._exec(c, sql.logical_upsert_insert(m, into, self._value))

    def _prune_markers(self, c: Any, m: TargetTable, into: Stage) -> None:
        if self.capabilities.merge_in_transaction:
            self._exec(c, sql.prune_delete_markers(m, into))
        else:
            self._exec(c, sql.logical_prune_delete_markers(m, into))

    def _guard_counts(self, c: Any, m: TargetTable, into: Stage) -> tuple[int, int]:
        """How many staged upserts and deletes pass the position guard."""
        merge = self.capabilities.merge_in_transaction
        query = sql.guard_counts(m, into) if merge else sql.logical_guard_counts(m, into)
        row = self._exec(c, query).fetchone()
        return (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)

    def _write_mirror(self, c: Any, plan: MirrorPlan, w: TableWork, into: Stage) -> None:
        m, merge = w.m, self.capabilities.merge_in_transaction
        upserts, deletes = self._guard_counts(c, m, into)
        if plan.upserts:
            self._upsert(c, m, into, w.toast)
        if plan.deletes and m.soft_delete:
            if merge:
                self._exec(c, sql.soft_delete(m, into))
            else:
                self._exec(c, sql.logical_soft_delete_update(m, into))
                self._exec(c, sql.logical_soft_delete_insert(m, into))
        elif plan.deletes:
            self._write_markers(c, m, into)
            self._exec(c, sql.hard_delete(m, into) if merge else sql.logical_hard_delete(m, into))
        if plan.upserts and m.markers is not None:
            self._prune_markers(c, m, into)
        staged = len(plan.upserts) + len(plan.deletes)
        w.stats.events, w.stats.upserted, w.stats.deleted = plan.events, upserts, deletes
        w.stats.stale = staged - upserts - deletes

    def _store_offsets(self, c: Any, offsets: Sequence[OffsetRow]) -> None:
        """Store the newest offset per partition, forward only."""
        newest: dict[tuple[str, str, int], int] = {}
        for o in offsets:
            k = (o.consumer_group, o.topic, o.partition)
            newest[k] = max(newest.get(k, o.next_offset), o.next_offset)
        if not newest:
            return
        ref = self._ref("offsets")
        if self.capabilities.merge_in_transaction:
            table = pa.table({
                "consumer_group": pa.array([k[0] for k in newest], pa.string()),
                "topic": pa.array([k[1] for k in newest], pa.string()),
                "partition": pa.array([k[2] for k in newest], pa.int32()),
                "next_offset": pa.array(list(newest.values()), pa.int64()),
            })  # fmt: skip
            self._exec(c, sql.upsert_offsets(ref, self._stage(c, "offsets", table, None)))
            return
        insert = sql.logical_insert_if_missing(
            ref, [*sql.OFFSET_KEY, "next_offset"], sql.OFFSET_KEY
        )
        for (group, topic, partition), nxt in newest.items():
            self._exec(c, sql.logical_offsets_update(ref), [nxt, group, topic, partition, nxt])
            self._exec(c, insert, [group, topic, partition, nxt, group, topic, partition])

    # ---- quarantine -------------------------------------------------------------------------

    def _hold(
        self,
        c: Any,
        batch: TableBatch,
        new: Sequence[QuarantineRow],
        resolve: Sequence[QuarantineRow],
    ) -> tuple[TableBatch, list[QuarantineRow]]:
        """Hold the batch's changes of keys with an earlier open quarantined change (the
        origins being resolved by this apply don't count)."""
        query = sql.quarantine_open_rows(self._ref("quarantine"))
        rows = self._exec(c, query, [batch.target.name]).fetchall()
        mine = [r for r in new if r.table == batch.target.name]
        return hold(batch, first_open(mine, open_keys(rows, resolve)))

    def _queue_quarantine(
        self, c: Any, stored: Sequence[QuarantineRow], resolve: Sequence[QuarantineRow]
    ) -> list[tuple[str, pa.Table, Stage]]:
        """Stages for the origins to resolve and the quarantine rows to store."""
        out = []
        for purpose, rows in (("resolve", resolve), ("quarantine", stored)):
            if rows:
                data = quarantine_stage(rows)
                out.append((purpose, data, self._reserve(c, purpose, data)))
        return out

    def _write_quarantine(self, c: Any, queued: list[tuple[str, pa.Table, Stage]]) -> None:
        ref = self._ref("quarantine")
        for purpose, data, into in queued:
            self._load(c, into, data, "quarantine")
            if purpose == "resolve":
                self._exec(c, sql.quarantine_resolve(ref, into))
            elif self.capabilities.merge_in_transaction:
                self._exec(c, sql.quarantine_insert(ref, into))
            else:
                self._exec(c, sql.logical_quarantine_insert(ref, into))

    # ---- reads the plans need ---------------------------------------------------------------

    def _carry_key_changes(
        self, c: Any, carry: KeyChangeCarry, m: TargetTable
    ) -> tuple[TableBatch, int]:
        """Fill key changes' placeholders from stored rows: which key was deleted at each
        orphan create's LSN, then those old keys' stored rows; the LSNs and keys are staged as
        data and joined (one query each)."""
        schema, name = carry.batch.schema, carry.batch.target.name
        kinds = {col.name: col.type for col in schema.columns}
        types, lsn = dict(m.columns), m.meta.lsn
        position = Field(lsn, self._type(I64), I64)
        if carry.orphans:
            lsns = pa.table({"lsn": pa.array(list(carry.orphans), pa.int64())})
            staged = self._stage(c, "lsns", lsns, name)
            fields = [Field(k, types[k], kinds.get(k)) for k in m.key] + [position]
            found = self._fetch(c, sql.deleted_at(m, staged), fields)
            carry = carry.link({int(r[lsn]): tuple(r[k] for k in m.key) for r in found})
        stored: dict[Key, StoredRow] = {}
        if carry.needs:
            staged = self._stage(c, "keys", key_stage(schema, list(carry.needs), name), name)
            fields = [Field(n, t, kinds.get(n)) for n, t in m.columns] + [position]
            for r in self._fetch(c, sql.latest_rows(m, staged), fields):
                values = {n: r[n] for n, _ in m.columns}
                stored[tuple(values[k] for k in m.key)] = StoredRow(int(r[lsn]), values)
        return carry.fill(stored)

    def _plan_scd2(self, c: Any, batch: TableBatch, m: TargetTable) -> Scd2Plan:
        """Read the stored tails of the batch's keys (two set-based queries), then plan."""
        name, schema = batch.target.name, batch.schema
        keys = list(dict.fromkeys(event_key(e, schema, name) for e in batch.events))
        staged = self._stage(c, "keys", key_stage(schema, keys, name), name)
        kinds = {col.name: col.type for col in schema.columns} | meta_kinds(batch.target)
        types = dict(m.columns)
        meta = sql.scd2_meta_columns(m)
        fields = [Field(n, t, kinds.get(n)) for n, t in m.columns]
        fields += [Field(n, self._type(kinds[n]), kinds[n]) for n in meta]
        versions: list[StoredVersion] = []
        for r in self._fetch(c, sql.scd2_tail(m, staged), fields):
            values = {n: r[n] for n, _ in m.columns}
            lsn, txid, op, source_ts, valid_from, valid_to, deleted, commit = (r[n] for n in meta)
            end = None if valid_to is None else _micros(valid_to)
            versions.append((values, int(lsn), txid, op, _micros(source_ts), _micros(valid_from),
                             end, bool(deleted), commit))  # fmt: skip
        key_fields = [Field(k, types[k], kinds.get(k)) for k in m.key]
        key_fields.append(Field(m.meta.lsn, self._type(I64), I64))
        key_fields.append(Field(m.meta.commit_lsn, self._type(I64), I64))
        markers = [
            (tuple(r[k] for k in m.key), int(r[m.meta.lsn]), r[m.meta.commit_lsn])
            for r in self._fetch(c, sql.scd2_hwm(m, staged), key_fields)
        ]
        return plan_scd2(batch, stored_tails(m.key, versions, markers))

    # ---- source rows ------------------------------------------------------------------------

    def load_rows(self, rows: SourceRows, offsets: Sequence[OffsetRow] = ()) -> ApplyResult:
        """Mirror tables of an engine that :meth:`takes_columns`: the rows staged
        column-wise and upserted under the position guard (no per-row planning: source rows
        have distinct keys and no TOAST placeholders). Other tables (scd2, quarantine holds)
        take the event path of the base class."""
        target = rows.target
        if not self.takes_columns(target) or not len(rows):
            return super().load_rows(rows, offsets)
        if not self._bookkept:
            self.ensure_bookkeeping()
        with self._session(target.name) as c:
            mark = self._truncation_marks(c).get(target.name)
        if mark is not None and rows.position.lsn <= mark:
            # read before a truncate applied since (apply() drops such reads too): each row
            # that outlived the truncate was written by a later change, which the stream brings
            done = self.apply([], offsets)
            n = len(rows)
            return ApplyResult([TableApplyStats(target.name, events=n, stale=n)], done.seconds)
        started = time.perf_counter()
        batch = TableBatch(target, rows.schema, ())
        with naming_table(target.name):
            m = self._target_table(batch)
            data = source_rows_stage(rows)
        pending: Pending = {}
        with self._session(target.name) as c, self._transaction(c) as writing:
            with naming_table(target.name):
                self._ensure_table(c, batch, m, pending)
            stage = self._reserve(c, "rows", data)
            writing()
            self._load(c, stage, data, target.name)
            upserted, _ = self._guard_counts(c, m, stage)
            self._upsert(c, m, stage, frozenset())
            if m.markers is not None:
                self._prune_markers(c, m, stage)
            if not self.capabilities.transactional_ddl:
                self._register(c, batch)
            self._tagged = None
            self._store_offsets(c, offsets)
        self._bookkept = True
        self._ensured.update(pending)
        n = len(rows)
        stats = TableApplyStats(target.name, events=n, upserted=upserted, stale=n - upserted)
        return ApplyResult(tables=[stats], seconds=time.perf_counter() - started)
