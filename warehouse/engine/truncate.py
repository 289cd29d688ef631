"""The apply template's TRUNCATE steps, written once for every engine (rules in
:mod:`warehouse.truncation`, statements in :mod:`warehouse.sql.truncation`).

A truncate is applied set-based over its table, in the apply's transaction: it ends every
stored row at or below its position (delete, mark deleted, or close the current version),
prunes the delete markers it makes redundant and appends its position to
``_cdc.truncations``. The truncation marks (the highest position per table) are read in
every apply's session (one small query), which drops the changes at or below its tables'
marks before planning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from warehouse import sql
from warehouse.base import TableApplyStats, TableBatch
from warehouse.engine.core import EngineCore, Stage
from warehouse.sql import TableRef
from warehouse.truncation import Truncation, past_truncation, truncation_of

LOG = "truncations"  # _cdc.truncations, created with the other bookkeeping tables


@dataclass(slots=True)
class TruncateWork:
    """One truncate's share of an apply."""

    batch: TableBatch
    cut: Truncation
    stats: TableApplyStats
    data: pa.Table | None = None
    into: Stage = None  # its stage; None: nothing to write (a redelivered truncate)


class TruncateSteps(EngineCore):
    """Truncation marks and the truncate of one table."""

    def _truncation_marks(self, c: Any) -> dict[str, int]:
        """Every truncated table's mark, read in the apply's session (another writer's
        truncate counts as soon as it committed)."""
        rows = self._exec(c, sql.truncation_marks(self._ref(LOG))).fetchall()
        return {str(name): int(lsn) for name, lsn in rows}

    def _past_marks(
        self, batches: Sequence[TableBatch], marks: Mapping[str, int]
    ) -> tuple[list[TableBatch], list[tuple[TableBatch, Truncation]], dict[str, int]]:
        """The batches of changes without those their table's last truncate made stale, the
        truncates, and how many changes each table dropped."""
        kept, cuts, stale = [], [], {}
        for batch in batches:
            cut = truncation_of(batch)
            if cut is not None:
                cuts.append((batch, cut))
                continue
            batch, stale[batch.target.name] = past_truncation(batch, marks.get(batch.target.name))
            kept.append(batch)
        return kept, cuts, stale

    def _prepare_truncate(
        self, c: Any, batch: TableBatch, cut: Truncation, marks: Mapping[str, int]
    ) -> TruncateWork:
        """Reserve the truncate's stage (before the writes: staging may be DDL)."""
        work = TruncateWork(batch, cut, TableApplyStats(batch.target.name, events=1))
        mark = marks.get(cut.table)
        if mark is not None and cut.lsn <= mark:
            work.stats.stale = 1  # a redelivered truncate: applied already
            return work
        work.data = cut.stage()
        work.into = self._reserve(c, "truncate", work.data)
        return work

    def _write_truncate(self, c: Any, work: TruncateWork) -> None:
        """Apply one truncate, in the apply's transaction."""
        if work.into is None:
            return
        assert work.data is not None
        name = work.batch.target.name
        self._load(c, work.into, work.data, name)
        doc = self._registry_doc(c, name)
        if doc is not None:  # else the warehouse holds no row of it yet: only the mark
            work.stats.deleted = self._end_rows(c, work.batch, doc[2]["schema"]["key"], work.into)
        self._exec(c, sql.record_truncation(self._ref(LOG), work.into))

    def _end_rows(self, c: Any, batch: TableBatch, key: list[str], stage: Any) -> int:
        target = batch.target
        ref = self._ref(f"{target.name}__deleted")
        markers = ref if self._columns_of(c, ref) else None  # no such table: nothing to prune
        scd2 = target.scd2 if target.mode == "scd2" else None
        m = sql.registered_table(TableRef(self.schema, target.name), markers, key,
                                 target.metadata, target.soft_delete, scd2)  # fmt: skip
        row = self._exec(c, sql.truncate_count(m, stage)).fetchone()
        ended = int(row[0]) if row and row[0] is not None else 0
        if scd2 is None:
            ending = sql.truncate_mark_deleted if target.soft_delete else sql.truncate_delete
            self._exec(c, ending(m, stage))
        else:
            if scd2.granularity == "transaction":
                self._exec(c, sql.truncate_flag_replaced(m, stage))
                self._exec(c, sql.truncate_remove_own(m, stage))
            self._exec(c, sql.truncate_close(m, stage))
        if markers is not None:
            self._exec(c, sql.truncate_prune_markers(markers, target.metadata.lsn, stage))
        return ended
