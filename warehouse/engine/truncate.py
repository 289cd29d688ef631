"""The apply template's TRUNCATE steps, written once for every engine (rules in
:mod:`warehouse.truncation`, statements in :mod:`warehouse.sql.truncation`).

A truncate is applied set-based over its table, in the apply's transaction: it ends every
stored row at or below its position (delete, mark deleted, or close the current version),
prunes the delete markers it makes redundant and appends its position to
``_cdc.truncations``. The truncation marks (the highest position per table) are read once
per warehouse object and kept up to date by its own commits; every apply drops the changes
at or below its tables' marks before planning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from warehouse import sql
from warehouse.base import TableApplyStats, TableBatch
from warehouse.engine.core import EngineCore, Stage
from warehouse.sql import TableRef
from warehouse.truncation import Truncation, past_truncation

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

    _truncated: dict[str, int] | None = None  # table -> mark, once read

    def _truncation_marks(self) -> dict[str, int]:
        """Every truncated table's mark (read once; this object's applies keep it current)."""
        if self._truncated is None:
            if not self._bookkept:
                self.ensure_bookkeeping()
            with self._session(None) as c:
                rows = self._exec(c, sql.truncation_marks(self._ref(LOG))).fetchall()
            self._truncated = {str(name): int(lsn) for name, lsn in rows}
        return self._truncated

    def _past_marks(self, batch: TableBatch) -> tuple[TableBatch, int]:
        """The batch without the changes its table's last truncate made stale."""
        return past_truncation(batch, self._truncation_marks().get(batch.target.name))

    def _prepare_truncate(self, c: Any, batch: TableBatch, cut: Truncation) -> TruncateWork:
        """Reserve the truncate's stage (before the writes: staging may be DDL)."""
        work = TruncateWork(batch, cut, TableApplyStats(batch.target.name, events=1))
        mark = self._truncation_marks().get(cut.table)
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
        markers: TableRef | None = self._ref(f"{target.name}__deleted")
        if markers is not None and not self._columns_of(c, markers):
            markers = None
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

    def _truncated_now(self, truncations: list[TruncateWork]) -> None:
        """After the commit: this object's marks include the truncates it just applied."""
        marks = self._truncation_marks()
        for work in truncations:
            cut = work.cut
            marks[cut.table] = max(marks.get(cut.table, cut.lsn), cut.lsn)
