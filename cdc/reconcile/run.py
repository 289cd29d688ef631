"""One reconciliation run over the configured tables (the I/O around the pure parts).

Per table: reflect the source table (``cdc.source.catalog``), narrow the differing key ranges
on both engines (:mod:`cdc.reconcile.bisect`, checksums from :mod:`warehouse.checksum`), diff
the leaves' rows (:mod:`cdc.reconcile.rows`), re-check the differing keys until they settle
(:mod:`cdc.reconcile.lag`), check the history invariants of an scd2 table, optionally repair
(:mod:`cdc.reconcile.repair`) and re-check the repaired keys. Every run appends one audit row
per table to the warehouse's ``reconcile_runs``.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg.conninfo import make_conninfo

from cdc.compare import key_text as quarantine_key_text
from cdc.config import Config, TableConfig
from cdc.consumer.fitting import fit_batch, override_type
from cdc.model import TableSchema
from cdc.reconcile.bisect import bisect
from cdc.reconcile.lag import LagProbe, settle
from cdc.reconcile.multiset import reconcile_multiset
from cdc.reconcile.quiet import QuietReplaceError, quiet_replace
from cdc.reconcile.repair import repair_batch
from cdc.reconcile.report import RunReport, TableResult
from cdc.reconcile.rows import Key, RowsDiff, diff_rows
from cdc.reconcile.source import SourceTable, current_lsn
from cdc.source.catalog import SourceTableError, reflect_table, source_connection
from cdc.warehouses import open_warehouse
from warehouse.base import (
    ComputeRow,
    KeyRange,
    RangeChecksum,
    TableBatch,
    TableTarget,
    Warehouse,
    WarehouseError,
)

log = structlog.get_logger("cdc.reconcile")
T = TypeVar("T")
U = TypeVar("U")


class ReconcileError(Exception):
    """The run can't start as asked (unknown table, table without a primary key...)."""


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """``leaf_rows``: ranges this small are diffed row by row; ``fanout``: sub-ranges per
    split; ``rounds``: re-check rounds for keys in flight; ``lag_timeout``: seconds one round
    waits for the consumer; ``parallel``: source and warehouse statements run concurrently."""

    leaf_rows: int = 1000
    fanout: int = 16
    rounds: int = 5
    lag_timeout: float = 30.0
    parallel: bool = True


class WarehouseSide:
    """The warehouse seen as one side of one table's comparison; it measures the time of its
    warehouse calls (``seconds``, ``calls``: recorded for the cost report)."""

    def __init__(self, warehouse: Warehouse, target: TableTarget, schema: TableSchema) -> None:
        self.warehouse, self.target, self.schema = warehouse, target, schema
        self.seconds, self.calls = 0.0, 0

    def timed(self, call: Callable[[], T]) -> T:
        mark = time.perf_counter()
        try:
            return call()
        finally:
            self.seconds += time.perf_counter() - mark
            self.calls += 1

    def checksums(self, ranges: Sequence[KeyRange]) -> list[RangeChecksum]:
        return self.timed(lambda: self.warehouse.checksums(self.target, self.schema, ranges))

    def split_keys(self, ranges: Sequence[tuple[KeyRange, int]]) -> list[list[Key]]:
        return self.timed(lambda: self.warehouse.split_keys(self.target, self.schema, ranges))

    def range_rows(self, ranges: Sequence[KeyRange]) -> list[tuple[dict[str, Any], int]]:
        return self.timed(lambda: self.warehouse.range_rows(self.target, self.schema, ranges))

    def key_rows(self, keys: Sequence[Key]) -> list[tuple[dict[str, Any], int]]:
        return self.timed(lambda: self.warehouse.key_rows(self.target, self.schema, keys))


def resolve_tables(config: Config, names: Sequence[str] | None) -> list[TableConfig]:
    """The configured tables named (all when None), by source name (``schema.table`` or
    ``table``, PostgreSQL's quoted form for other names) or warehouse name; an unknown name
    is an error naming the configured ones."""
    if not names:
        return list(config.tables)
    chosen: list[TableConfig] = []
    unknown: list[str] = []
    for name in names:
        found = [t for t in config.tables if name in (t.name, t.target_name, t.source.name)]
        if not found:
            try:  # PostgreSQL's quoted form written another way, e.g. "public"."orders"
                found = [config.table(name)]
            except KeyError:
                unknown.append(name)
        chosen += [t for t in found if t not in chosen]
    if unknown:
        known = ", ".join(t.name for t in config.tables)
        raise ReconcileError(
            f"unknown table{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"not in the configuration (configured: {known})"
        )
    return chosen


def source_url(config: Config) -> str:
    return make_conninfo(**config.source.conninfo())


class _Pair:
    """Runs a source and a warehouse call concurrently (or one after the other)."""

    def __init__(self, parallel: bool) -> None:
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="reconcile") if parallel else None

    def __call__(self, f: Callable[[], T], g: Callable[[], U]) -> tuple[T, U]:
        if self.pool is None:
            return f(), g()
        a, b = self.pool.submit(f), self.pool.submit(g)
        return a.result(), b.result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _snapshot_rows(
    conn: psycopg.Connection[Any], source: SourceTable, keys: Sequence[Key]
) -> tuple[list[dict[str, Any]], int]:
    """The keys' source rows and the position they are as of (one REPEATABLE READ snapshot)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        position = current_lsn(conn)
        rows = source.key_rows(keys)
    return rows, position


class Reconciler:
    """Compares (and repairs) tables of one configuration; see the module docstring."""

    def __init__(
        self,
        config: Config,
        warehouse: Warehouse,
        conn: psycopg.Connection[Any],
        settings: ReconcileSettings,
        pair: _Pair,
    ) -> None:
        self.config, self.warehouse, self.conn = config, warehouse, conn
        self.settings, self.pair = settings, pair
        self.probe = LagProbe(config, warehouse, conn)
        self.json_values = warehouse.capabilities.json_as_values
        self.compute: list[ComputeRow] = []  # measured warehouse time per table compared

    def _diff(self, schema: TableSchema, source: list[dict[str, Any]],
              warehouse: list[tuple[dict[str, Any], int]]) -> RowsDiff:  # fmt: skip
        return diff_rows(schema, source, warehouse, json_values=self.json_values)

    def table(self, table: TableConfig, reflected: TableSchema, repair: bool) -> TableResult:
        """Compare (and repair) one table; ``reflected``: its source schema. The comparison
        is in the warehouse's types (the table's column overrides applied)."""
        started = time.perf_counter()
        target = self.config.table_target(table)
        result = TableResult(table.target_name, table.name, table.mode)
        overrides = {name: override_type(o.type) for name, o in table.columns.items()}
        src = SourceTable(
            self.conn, reflected, peer=self.warehouse.checksum_dialect, overrides=overrides
        )
        schema = src.schema
        wh = WarehouseSide(self.warehouse, target, schema)
        if not schema.key:
            self._multiset(table, src, wh, result, repair)
            result.seconds = time.perf_counter() - started
            self.compute.append(ComputeRow("reconcile", target.name, wh.seconds, wh.calls,
                                           dt.datetime.now(dt.UTC)))  # fmt: skip
            return result
        s = self.settings
        found = bisect(src, wh, leaf_rows=s.leaf_rows, fanout=s.fanout, pair=self.pair)
        result.source_rows, result.warehouse_rows = found.source.rows, found.warehouse.rows
        result.rounds, result.ranges_checked = found.rounds, found.ranges_checked
        diff = RowsDiff()
        for start in range(0, len(found.leaves), 64):
            leaves = found.leaves[start : start + 64]
            s_rows, w_rows = self.pair(
                functools.partial(src.range_rows, leaves), functools.partial(wh.range_rows, leaves)
            )
            result.rows_fetched += len(s_rows) + len(w_rows)
            diff.merge(self._diff(schema, s_rows, w_rows))
        pending = diff.keys
        log.info("compared", table=table.target_name, rounds=found.rounds,
                 ranges=found.ranges_checked, leaves=len(found.leaves),
                 rows_fetched=result.rows_fetched, differing=len(pending),
                 seconds=round(time.perf_counter() - started, 3))  # fmt: skip
        if pending:  # values a column can't hold are quarantined whatever the table's checks
            held = {
                c.row.key for c in wh.timed(lambda: self.warehouse.list_quarantine(target.name))
            }
            left_out = {k for k in pending if quarantine_key_text(k) in held}
            result.excluded, pending = len(left_out), pending - left_out
        confirmed = self._settle(table, src, wh, schema, pending, result)
        result.missing = sorted(confirmed.missing, key=repr)
        result.extra = sorted(confirmed.extra, key=repr)
        result.different = sorted(
            ((k, *v) for k, v in confirmed.different.items()), key=lambda d: repr(d[0])
        )
        if repair and confirmed.keys:
            self._repair(target, schema, src, wh, confirmed, result)
        if table.mode == "scd2" and result.warehouse_rows:
            result.history = wh.timed(lambda: self.warehouse.history_report(target))
            if repair and (result.history.gaps or result.history.overlaps):
                before = result.history.gaps + result.history.overlaps
                result.history = wh.timed(lambda: self.warehouse.close_history_gaps(target))
                result.repaired += before - result.history.gaps - result.history.overlaps
        result.seconds = time.perf_counter() - started
        self.compute.append(ComputeRow("reconcile", target.name, wh.seconds, wh.calls,
                                       dt.datetime.now(dt.UTC)))  # fmt: skip
        return result

    def _multiset(self, table: TableConfig, src: SourceTable, wh: WarehouseSide,
                  result: TableResult, repair: bool) -> None:  # fmt: skip
        """A table without a primary key, compared as a multiset; repaired by an exact
        re-load (:mod:`cdc.reconcile.quiet`) and compared again."""
        target = self.config.table_target(table)
        reconcile_multiset(
            self.conn, src, lambda: wh.timed(lambda: self.warehouse.fetch_table(target)),
            lambda position: self.probe.applied(table, position, self.settings.lag_timeout),
            result, rounds=self.settings.rounds, json_values=self.json_values,
        )  # fmt: skip
        if not (repair and result.diffs):
            return
        found = result.diffs
        try:
            replaced = quiet_replace(
                self.conn, src, self.warehouse, target,
                lambda position: self.probe.applied(table, position, self.settings.lag_timeout),
                attempts=self.settings.rounds,
            )  # fmt: skip
        except QuietReplaceError as exc:
            result.remaining = found
            result.note = f"not repaired: {exc}"
            log.warning("keyless table not repaired", table=table.target_name, reason=str(exc))
            return
        after = TableResult(result.table, result.source_table, result.mode)
        reconcile_multiset(
            self.conn, src, lambda: wh.timed(lambda: self.warehouse.fetch_table(target)),
            lambda position: self.probe.applied(table, position, self.settings.lag_timeout),
            after, rounds=self.settings.rounds, json_values=self.json_values,
        )  # fmt: skip
        result.remaining = after.diffs
        result.repaired = max(0, found - after.diffs)
        result.note = f"repaired (replaced {replaced} rows)"
        log.info("keyless table re-loaded", table=table.target_name, rows=replaced,
                 differences=found, remaining=after.diffs)  # fmt: skip

    def _settle(
        self,
        table: TableConfig,
        src: SourceTable,
        wh: WarehouseSide,
        schema: TableSchema,
        pending: set[Key],
        result: TableResult,
    ) -> RowsDiff:
        confirmed = RowsDiff()
        for _ in range(self.settings.rounds):
            if not pending:
                break
            keys = sorted(pending, key=repr)
            s_rows, position = _snapshot_rows(self.conn, src, keys)
            applied = self.probe.applied(table, position, self.settings.lag_timeout)
            diff = self._diff(schema, s_rows, wh.key_rows(keys))
            again = sorted(diff.keys, key=repr)
            later = {tuple(r[k] for k in schema.key): r for r in src.key_rows(again)}
            verdict = settle(diff, set(keys), position, applied, later)
            result.stalled = not applied
            log.info("re-checked", table=table.target_name, keys=len(keys), applied=applied,
                     differing=len(diff.keys), confirmed=len(verdict.confirmed.keys),
                     pending=len(verdict.pending))  # fmt: skip
            confirmed.merge(verdict.confirmed)
            pending = verdict.pending
            result.rechecks += 1
        result.unsettled = sorted(pending, key=repr)
        return confirmed

    def _repair(self, target: TableTarget, schema: TableSchema, src: SourceTable,
                wh: WarehouseSide, confirmed: RowsDiff, result: TableResult) -> None:  # fmt: skip
        keys = sorted(confirmed.keys, key=repr)
        rows = src.key_rows(keys)
        lsn = current_lsn(self.conn)  # after the rows were read: newer than the damage
        present = {tuple(r[k] for k in schema.key) for r in rows}
        deletes = [k for k in keys if k not in present]
        # rows already in the warehouse's types (overrides applied): a value the column can't
        # hold is not written (the stream quarantines it too); its key stays a difference
        batch, unfit = fit_batch(
            repair_batch(target, schema, rows, deletes, lsn), {}, self.warehouse.capabilities
        )
        if unfit:
            bad = {u.index for u in unfit}
            log.warning("repair left out unfit rows", table=target.name, rows=len(bad),
                        reason=unfit[0].reasons[0])  # fmt: skip
            kept = [e for i, e in enumerate(batch.events) if i not in bad]
            batch = TableBatch(batch.target, batch.schema, kept)
        wh.timed(lambda: self.warehouse.apply([batch], []))
        after = self._diff(schema, src.key_rows(keys), wh.key_rows(keys))
        result.remaining = len(after.keys & set(keys))
        result.repaired = len(keys) - result.remaining


def reconcile(
    config: Config,
    tables: Sequence[str] | None = None,
    *,
    repair: bool = False,
    settings: ReconcileSettings | None = None,
    warehouse: Warehouse | None = None,
    record: bool = True,
) -> RunReport:
    """Compare (and with ``repair``, fix) the chosen tables; raises :class:`ReconcileError`
    before any work for an unknown table, a missing source table or one without a primary
    key that has no REPLICA IDENTITY FULL (one with it is compared as a multiset:
    :mod:`cdc.reconcile.multiset`). The run is recorded in ``reconcile_runs`` unless
    ``record`` is False."""
    chosen = resolve_tables(config, tables)
    settings = settings or ReconcileSettings()
    run_id = uuid.uuid4().hex[:12]
    started = dt.datetime.now(dt.UTC)
    with source_connection(source_url(config)) as conn:
        schemas: dict[str, TableSchema] = {}
        problems = []
        for t in chosen:
            try:
                schemas[t.name] = reflect_table(conn, t.source, keyless=True)
            except SourceTableError as exc:
                problems.append(f"{t.name}: {exc}")
        if problems:
            raise ReconcileError("; ".join(problems))
        own = warehouse is None
        wh = open_warehouse(config) if warehouse is None else warehouse
        pair = _Pair(settings.parallel)
        try:
            start_lsn = current_lsn(conn)
            reconciler = Reconciler(config, wh, conn, settings, pair)
            results = []
            for t in chosen:
                try:
                    results.append(reconciler.table(t, schemas[t.name], repair))
                except (WarehouseError, psycopg.Error) as exc:
                    failed = TableResult(t.target_name, t.name, t.mode)
                    failed.error = f"{type(exc).__name__}: {exc}"
                    results.append(failed)
            report = RunReport(run_id, started, dt.datetime.now(dt.UTC), start_lsn, repair,
                               results)  # fmt: skip
            if record:
                wh.record_reconcile(report.audit_rows())
                wh.record_compute(reconciler.compute)
        finally:
            pair.close()
            if own:
                wh.close()
    return report


def reload_keyless(
    config: Config,
    table: str,
    *,
    settings: ReconcileSettings | None = None,
    warehouse: Warehouse | None = None,
) -> int:
    """Re-load one table without a primary key exactly (:func:`cdc.reconcile.quiet.
    quiet_replace`, what ``reconcile --repair`` does to a differing keyless table); returns the
    rows written. Raises :class:`ReconcileError` for a table with a primary key,
    :class:`cdc.reconcile.quiet.QuietReplaceError` when it can't be made exact."""
    [chosen] = resolve_tables(config, [table])
    settings = settings or ReconcileSettings()
    with source_connection(source_url(config)) as conn:
        try:
            reflected = reflect_table(conn, chosen.source, keyless=True)
        except SourceTableError as exc:
            raise ReconcileError(f"{chosen.name}: {exc}") from exc
        if reflected.key:
            raise ReconcileError(f"{chosen.name} has a primary key: repair it by key")
        overrides = {name: override_type(o.type) for name, o in chosen.columns.items()}
        own = warehouse is None
        wh = open_warehouse(config) if warehouse is None else warehouse
        try:
            src = SourceTable(conn, reflected, peer=wh.checksum_dialect, overrides=overrides)
            probe = LagProbe(config, wh, conn)
            return quiet_replace(
                conn, src, wh, config.table_target(chosen),
                lambda position: probe.applied(chosen, position, settings.lag_timeout),
                attempts=settings.rounds,
            )  # fmt: skip
        finally:
            if own:
                wh.close()
