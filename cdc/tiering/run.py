"""One tiering pass over the tiered tables, and restores (``cdc tier``, the ``tier`` flow).

Per table, in order: delete orphan files (a crashed move's), hot -> warm, warm -> cold,
expire. Each move writes and verifies its files first, then commits one warehouse transaction
(rows deleted or restored + live file set + audit + view), then deletes the files it replaced.
A crash at any step leaves the previous state or the next one, never a row lost or doubled;
rerunning converges. One pass at a time per tier storage (the deployment has a concurrency
limit of 1).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from cdc.config import Config, TableConfig
from cdc.tiering.policy import (
    MoveKind,
    Tier,
    TierFile,
    cutoffs,
    due_months,
    file_path,
    month_end,
    month_start,
    move_id,
)
from cdc.tiering.storage import TierStorageError, TierStore
from warehouse.base import ComputeRow, TableTarget, Warehouse, WarehouseError
from warehouse.tiering import Hold, TierChange, closing_column, failpoint

log = structlog.get_logger("cdc.tier")


class TierError(Exception):
    """Tiering can't start or go on; the message says what to do."""


@dataclass
class TableTierResult:
    table: str
    to_warm: int = 0
    to_cold: int = 0
    expired: int = 0
    restored: int = 0
    orphans_deleted: int = 0
    files: dict[str, int] = field(default_factory=dict)  # tier -> live files after the pass

    def row(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "to warm": self.to_warm,
            "to cold": self.to_cold,
            "expired": self.expired,
            "restored": self.restored,
            "orphans deleted": self.orphans_deleted,
            "warm files": self.files.get("warm", 0),
            "cold files": self.files.get("cold", 0),
        }


def tiered_tables(config: Config, names: Sequence[str] | None = None) -> list[TableConfig]:
    """The tables to tier: the named ones (each must have a policy) or all with a policy."""
    if not names:
        found = [t for t in config.tables if t.tiering is not None]
        if not found:
            raise TierError(
                "no table has a tiering policy: add `tiering:` to a table in "
                f"{config.where('tables')} (see `cdc config example`)"
            )
        return found
    out = []
    for name in names:
        try:
            table = config.table(name)
        except KeyError as exc:
            raise TierError(str(exc.args[0])) from None
        if table.tiering is None:
            raise TierError(
                f"table {table.name} has no tiering policy: add `tiering:` to it in cdc.yaml"
            )
        out.append(table)
    return out


def store_for(config: Config, table: TableConfig) -> TierStore:
    assert table.tiering is not None
    root = config.tiering.resolve(table.tiering.target or config.tiering.target, config.config_dir)
    return TierStore(
        root,
        config.tiering.options(),
        cold_storage_class=config.tiering.cold_storage_class,
        levels={
            "warm": config.tiering.warm_compression_level,
            "cold": config.tiering.cold_compression_level,
        },
    )


def _check_engine(warehouse: Warehouse) -> Any:
    if not hasattr(warehouse, "apply_tier_change"):
        raise TierError(f"{type(warehouse).__name__} doesn't support lifecycle tiering")
    return warehouse


def _key_of(warehouse: Any, target: TableTarget) -> tuple[str, ...]:
    registered = warehouse.registered(target.name)
    if registered is None:
        raise TierError(
            f"table {target.name!r} has no history yet (nothing replicated to it): nothing to tier"
        )
    return tuple(registered.key)


def _by_month(rows: pa.Table, column: str) -> dict[str, pa.Table]:
    """The rows split by the month (UTC) of ``column`` (integer year*100+month: no text)."""
    values = rows[column]
    months = pc.add(pc.multiply(pc.year(values), 100), pc.month(values))
    out: dict[str, pa.Table] = {}
    for ym in sorted(pc.unique(months).to_pylist()):
        out[f"{ym // 100:04d}-{ym % 100:02d}"] = rows.filter(pc.equal(months, ym))
    return out


def _key_strings(table: pa.Table, key: Sequence[str]) -> pa.Array:
    """One comparable string per row from its key columns."""
    parts = [pc.cast(table[k], pa.string()) for k in key]
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "\x1f")


class Tierer:
    """Moves of one table between its tiers (see the module docstring for the protocol)."""

    def __init__(
        self,
        config: Config,
        table: TableConfig,
        warehouse: Warehouse,
        *,
        now: dt.datetime | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        assert table.tiering is not None
        self.config = config
        self.table = table
        self.policy = table.tiering
        self.target = config.table_target(table)
        self.warehouse = _check_engine(warehouse)
        self.store = store_for(config, table)
        self.now = now or dt.datetime.now(dt.UTC)
        self.progress = progress or (lambda _msg: None)
        self.result = TableTierResult(self.target.name)
        self.commits = 0

    @property
    def name(self) -> str:
        return self.target.name

    def _live(self) -> list[TierFile]:
        return list(self.warehouse.tier_files(self.name))

    def collect_orphans(self) -> None:
        """Delete files of this table that no committed move lists (crashed moves' files)."""
        live = {f.path for f in self._live()}
        orphans = [p for p in self.store.files_under(self.name) if p not in live]
        if orphans:
            self.store.delete(orphans)
            log.info("deleted orphan tier files", table=self.name, files=len(orphans))
        self.result.orphans_deleted += len(orphans)

    def run(self) -> TableTierResult:
        started = time.monotonic()
        try:
            return self._run()
        finally:
            self._record_compute(time.monotonic() - started)

    def _record_compute(self, seconds: float) -> None:
        """The pass's measured time for cost reports; bookkeeping only, so a refusal is
        logged and the pass's result stands."""
        row = ComputeRow("tier", self.name, seconds, self.commits, dt.datetime.now(dt.UTC))
        try:
            self.warehouse.record_compute([row])
        except WarehouseError as exc:
            log.warning("measured tiering time not stored", table=self.name, error=str(exc))

    def _run(self) -> TableTierResult:
        self.store.check_reachable()
        self.warehouse.ensure_history_view(self.target)
        self.collect_orphans()
        cuts = cutoffs(self.now, self.policy.hot, self.policy.warm, self.policy.retention)
        self.to_warm(cuts.hot, cuts.warm)
        self.to_cold(cuts.warm)
        self.expire(cuts.retention)
        live = self._live()
        self.result.files = {t: sum(1 for f in live if f.tier == t) for t in ("warm", "cold")}
        return self.result

    def _write(self, rows: pa.Table, tier: Tier, month: str, move: str) -> TierFile:
        """One month's file of a move: written, read back and verified."""
        path = file_path(self.store.root, tier, self.name, month, move)
        return self.store.put(rows, path, tier, name=self.name, month=month, move=move)

    def _drop_replaced(self, old: Sequence[TierFile]) -> None:
        """Delete files a committed move replaced, then let the view's engine forget them
        (Snowflake's external table is refreshed; DuckDB's view already lists only live
        files)."""
        self.store.delete([f.path for f in old])
        self.warehouse.ensure_history_view(self.target)

    def _commit(self, change: TierChange, key: Sequence[str] = ()) -> None:
        self.warehouse.apply_tier_change(self.target, change, key)
        self.commits += 1
        log.info(
            "tier move committed",
            table=self.name,
            kind=change.kind,
            move=change.move_id,
            rows=change.rows,
            files_added=len(change.add_files),
            files_removed=len(change.remove_files),
        )

    def to_warm(self, cutoff: dt.datetime, warm_cutoff: dt.datetime) -> None:
        """Due hot rows to files, one per month; months already past the warm window go
        straight to the cold tier (one write instead of two)."""
        key = _key_of(self.warehouse, self.target)
        rows = self.warehouse.tier_candidates(self.target, cutoff)
        if rows.num_rows == 0:
            return
        self.progress(f"{self.name}: {rows.num_rows} rows out of the warehouse table")
        lsns = pc.sum(rows[self.target.metadata.lsn]).as_py()
        mid = move_id("hot_to_warm", self.name, cutoff.isoformat(), rows.num_rows, lsns)
        added = []
        for month, part in _by_month(rows, closing_column(self.target)).items():
            tier: Tier = "cold" if month_end(month) <= warm_cutoff else "warm"
            added.append(self._write(part, tier, month, mid))
        failpoint("after_write")
        change = TierChange(mid, "hot_to_warm", cutoff, remove_rows=rows, add_files=tuple(added))
        self._commit(change, key)
        failpoint("after_commit")
        self.result.to_warm += sum(f.rows for f in added if f.tier == "warm")
        self.result.to_cold += sum(f.rows for f in added if f.tier == "cold")

    def _rewrite(
        self, kind: MoveKind, tier: Tier, old: list[TierFile], cutoff: dt.datetime
    ) -> None:
        """Replace ``old`` files (one month) by one file in ``tier``; verified, committed."""
        data = self.store.read([f.path for f in old])
        if data.num_rows != sum(f.rows for f in old):
            raise TierStorageError(
                f"table {self.name!r}: tier files of {old[0].month} hold {data.num_rows} rows, "
                f"the file set records {sum(f.rows for f in old)}; nothing moved"
            )
        month = old[0].month
        mid = move_id(kind, self.name, month, *sorted(f.path for f in old))
        new = self._write(data, tier, month, mid)
        failpoint(f"{kind}_after_write")
        self._commit(TierChange(mid, kind, cutoff, add_files=(new,), remove_files=tuple(old)))
        failpoint(f"{kind}_after_commit")
        self._drop_replaced(old)

    def to_cold(self, cutoff: dt.datetime) -> None:
        live = self._live()
        for month in due_months(live, "warm", cutoff):
            old = [f for f in live if f.tier == "warm" and f.month == month]
            self.progress(f"{self.name}: {month} to the cold tier")
            self._rewrite("warm_to_cold", "cold", old, cutoff)
            self.result.to_cold += sum(f.rows for f in old)

    def expire(self, cutoff: dt.datetime) -> None:
        live = self._live()
        for month in due_months(live, "cold", cutoff):
            old = [f for f in live if f.tier == "cold" and f.month == month]
            mid = move_id("expire", self.name, month, *sorted(f.path for f in old))
            self._commit(TierChange(mid, "expire", cutoff, remove_files=tuple(old)))
            self._drop_replaced(old)
            self.result.expired += sum(f.rows for f in old)

    def restore(self, start: dt.datetime, end: dt.datetime) -> int:
        """Bring rows that closed in [start, end) back to the hot table; they stay hot for
        one hot window from now. Files keep the rest of their months' rows."""
        if end <= start:
            raise TierError(f"--to ({end:%Y-%m-%d}) must be after --from ({start:%Y-%m-%d})")
        self.store.check_reachable()
        self.collect_orphans()
        column = closing_column(self.target)
        live = [
            f for f in self._live() if month_end(f.month) > start and month_start(f.month) < end
        ]
        hold = Hold(start, end, self.now + self.policy.hot)
        restored = 0
        for month in sorted({f.month for f in live}):
            old = [f for f in live if f.month == month]
            data = self.store.read([f.path for f in old])
            closing = data[column]
            back = pc.and_(pc.greater_equal(closing, start), pc.less(closing, end))
            wanted, rest = data.filter(back), data.filter(pc.invert(back))
            if self.target.mode == "mirror" and wanted.num_rows:
                # a deleted key inserted again since lives in the table: its old row stays
                # in the files (the table can hold one row per key)
                key = list(_key_of(self.warehouse, self.target))
                present = self.warehouse.present_keys(self.target, wanted.select(key))
                if present.num_rows:
                    again = pc.is_in(_key_strings(wanted, key), _key_strings(present, key))
                    rest = pa.concat_tables([rest, wanted.filter(again)])
                    wanted = wanted.filter(pc.invert(again))
            if wanted.num_rows == 0:
                continue
            mid = move_id("restore", self.name, month, start.isoformat(), end.isoformat())
            added: tuple[TierFile, ...] = ()
            if rest.num_rows:
                tier = old[0].tier
                added = (self._write(rest, tier, month, mid),)
            change = TierChange(
                mid, "restore", None, insert_rows=wanted, add_files=added,
                remove_files=tuple(old), hold=hold,
            )  # fmt: skip
            self._commit(change)
            self._drop_replaced(old)
            restored += wanted.num_rows
        self.result.restored += restored
        return restored


def check_storage(config: Config, tables: Sequence[TableConfig]) -> None:
    """Reachable storage for every table before anything moves (precise errors)."""
    problems = []
    for table in tables:
        try:
            store_for(config, table).check_reachable()
        except TierStorageError as exc:
            problems.append(f"{config.where('tiering', 'target')}: {exc}")
    if problems:
        raise TierError("; ".join(problems))


def tier(
    config: Config,
    warehouse: Warehouse,
    tables: Sequence[str] | None = None,
    *,
    now: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[TableTierResult]:
    """One tiering pass over the chosen (default: every tiered) table."""
    chosen = tiered_tables(config, tables)
    check_storage(config, chosen)
    return [Tierer(config, t, warehouse, now=now, progress=progress).run() for t in chosen]


def restore(
    config: Config,
    warehouse: Warehouse,
    table: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    now: dt.datetime | None = None,
) -> int:
    [chosen] = tiered_tables(config, [table])
    return Tierer(config, chosen, warehouse, now=now).restore(start, end)
