"""What a warehouse does for lifecycle tiering (engine-neutral part).

A :class:`TierChange` is one move as the warehouse applies it, in one transaction: delete the
hot rows that went to files (or insert restored rows back), add and drop entries of the live
file set (``tier_files``), record the move (``tier_moves``), hold restored ranges hot
(``tier_holds``), and redefine the ``<table>_history`` view over the hot table and the live
files. A file not in the live set is invisible, so a crash between writing files and this
transaction leaves only orphans, which the next run deletes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow as pa

from cdc import failpoints
from warehouse.base import TableTarget
from warehouse.tier_files import MoveKind, TierFile


@dataclass(frozen=True, slots=True)
class Hold:
    """Rows closed in [closed_from, closed_to) stay hot until ``until`` (after a restore)."""

    closed_from: dt.datetime
    closed_to: dt.datetime
    until: dt.datetime


@dataclass(frozen=True)
class TierChange:
    move_id: str
    kind: MoveKind
    cutoff: dt.datetime | None = None
    remove_rows: pa.Table | None = None  # hot rows that went to files (all stored columns)
    insert_rows: pa.Table | None = None  # rows restored to hot
    add_files: tuple[TierFile, ...] = ()
    remove_files: tuple[TierFile, ...] = ()
    hold: Hold | None = None
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def rows(self) -> int:
        moved = self.remove_rows if self.remove_rows is not None else self.insert_rows
        if moved is not None:
            return int(moved.num_rows)
        return sum(f.rows for f in self.add_files) or sum(f.rows for f in self.remove_files)


def failpoint(name: str) -> None:
    """``CDC_FAILPOINT=tier:<name>`` kills the process there with SIGKILL (crash tests)."""
    failpoints.reach(f"tier:{name}")


class TierConflictError(Exception):
    """The hot rows changed between selection and the move's transaction: nothing moved."""


def closing_column(target: TableTarget) -> str:
    """The column whose time decides when a row is due: scd2 valid_to, mirror deletion time."""
    if target.mode == "scd2":
        return target.scd2.valid_to
    return target.metadata.source_ts


def history_view(target: TableTarget) -> str:
    return f"{target.name}_history"
