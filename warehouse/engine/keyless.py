"""The apply template's steps for tables without a primary key, written once for every engine
(planning in :mod:`warehouse.keyless`, statements in :mod:`warehouse.sql.keyless`).

Prepare: read the table's watermark (``_cdc.keyless_positions``) in the apply's session, net
the batch against it, reserve the stage. Write, in the apply's transaction: clear the table
for a new snapshot, remove the netted copies, insert the added ones, store the watermark.
Engines differ only through :attr:`KeylessSteps._exact_value` (how a column is compared).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
import structlog

from warehouse.base import DataError, TableApplyStats, TableBatch, WatermarkMovedError
from warehouse.engine.core import EngineCore, Stage
from warehouse.keyless import KeylessPlan, Watermark, keyless_stage, plan_keyless
from warehouse.sql import TargetTable
from warehouse.sql import keyless as statements

LOG = "keyless_positions"  # _cdc.keyless_positions, created with the other bookkeeping tables
log = structlog.get_logger("cdc.warehouse")


@dataclass(slots=True)
class KeylessWork:
    """One keyless table's share of an apply."""

    plan: KeylessPlan
    data: pa.Table | None = None
    into: Stage = None  # None: nothing to write (a stale batch)


class KeylessSteps(EngineCore):
    """Watermark reads and the multiset writes of a keyless table."""

    # how a stored or staged column is compared for equality (None: the values themselves)
    _exact_value: ClassVar[statements.Exact] = None

    def _watermark(self, c: Any, name: str) -> Watermark:
        query = statements.watermark_select(self._ref(LOG))
        rows = self._exec(c, query, [name]).fetchall()
        if not rows:
            return Watermark()
        return Watermark(*(None if v is None else int(v) for v in rows[0]))

    def _refuse_stray(self, c: Any, batch: TableBatch) -> None:
        """Messages without a key on a keyed table's topic (none of the batch has a key) are
        a DataError, before any DDL: the consumer dead-letters them."""
        name = batch.target.name
        doc = self._registry_doc(c, name)
        if doc is not None and doc[2]["schema"]["key"]:
            raise DataError(
                f"table {name!r} has the primary key {doc[2]['schema']['key']}, but these "
                "messages have no key: they go to the dead-letter topic",
                table=name,
            )

    def _prepare_keyless(self, c: Any, batch: TableBatch) -> KeylessWork:
        """Net the batch against the stored watermark and reserve its stage."""
        name = batch.target.name
        work = KeylessWork(plan_keyless(batch, self._watermark(c, name)))
        if work.plan.moved:
            work.data = keyless_stage(work.plan)
            work.into = self._reserve(c, "keyless", work.data)
        return work

    def _write_keyless(
        self, c: Any, m: TargetTable, w: KeylessWork, stats: TableApplyStats
    ) -> None:
        """One keyless table's statements, in the apply's transaction."""
        plan = w.plan
        stats.events, stats.stale = plan.events, plan.stale
        if w.into is None:
            return
        assert w.data is not None
        exact = type(self)._exact_value
        self._load(c, w.into, w.data, plan.table)
        if plan.replace:
            self._exec(c, statements.keyless_clear(m.target))
        if plan.removes:
            row = self._exec(c, statements.keyless_remove_count(m, w.into, exact)).fetchone()
            stats.deleted = int(row[0] or 0) if row else 0
            self._exec(c, statements.keyless_remove(m, w.into, exact))
            wanted = sum(k for _, k in plan.removes)
            if stats.deleted < wanted:
                log.warning("keyless rows to remove were not in the warehouse table",
                            table=plan.table, wanted=wanted, found=stats.deleted)  # fmt: skip
        if plan.adds:
            self._exec(c, statements.keyless_insert(m, w.into))
            stats.upserted = len(plan.adds)
        ref, mark = self._ref(LOG), plan.watermark
        self._exec(c, statements.watermark_delete(ref), [plan.table])
        values = [plan.table, mark.commit_lsn, mark.lsn, mark.read_lsn, mark.read_offset,
                  mark.txid]  # fmt: skip
        self._exec(c, statements.watermark_insert(ref), values)

    def _check_watermark(self, c: Any, name: str, expected: Watermark) -> None:
        """The compare-and-set of a re-load, in its transaction: take the watermark row's lock
        (a write), then read it; :class:`WatermarkMovedError` unless it is ``expected``."""
        self._exec(c, statements.watermark_touch(self._ref(LOG)), [name])
        stored = self._watermark(c, name)
        if stored != expected:
            raise WatermarkMovedError(
                f"table {name!r}: the stream applied changes since the source was read "
                f"(watermark {stored}, expected {expected}); nothing was replaced",
                table=name,
            )
