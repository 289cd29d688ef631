"""Bulk snapshot: PostgreSQL COPY in key-range chunks from one exported snapshot, read in
parallel, applied to the warehouse at the snapshot's position while the stream runs.

* Validation first (:func:`check_request`): every table is configured (captured by the
  connector), exists, has a primary key and only mappable types; a ``where`` filter parses
  (PostgreSQL plans it); the connector's replication slot exists. Nothing is read before.
* The position: the slot's ``restart_lsn`` read before the snapshot, minus one (see
  :mod:`cdc.snapshot.plan`). Then ``pg_export_snapshot()`` in a REPEATABLE READ, READ ONLY
  transaction; every reader imports it (``SET TRANSACTION SNAPSHOT``), so all chunks see one
  consistent state.
* Readers (threads, one connection each) COPY their chunk out in text format; psycopg's
  loaders give the :mod:`cdc.model` representation. The main thread applies each chunk as
  snapshot reads through :meth:`warehouse.base.Warehouse.apply`: the same set-based,
  position-guarded path as the stream (mirror and scd2 alike), with the chunk's completion
  stored in the same transaction (offsets group ``snapshot:<id>``).
* Resume: the plan (chunk bounds) is saved as JSON in the state folder before the first chunk;
  a rerun finds it and loads only the chunks without a stored completion, from a new
  snapshot (each chunk is consistent on its own, and the guard orders it against the stream).
  The plan file is removed when every chunk is loaded.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import psycopg
import pyarrow as pa
import structlog
from psycopg import sql

from cdc.config import Config, TableConfig
from cdc.consumer.fitting import first_unfit
from cdc.model import KafkaOrigin, TableSchema
from cdc.names import path_segment
from cdc.reconcile.quiet import QuietReplaceError
from cdc.reconcile.run import reload_keyless
from cdc.snapshot.plan import (
    Chunk,
    SnapshotPlan,
    bounds_query,
    chunk_query,
    chunks_from_bounds,
    copy_types,
    schema_with_key_not_null,
    snapshot_position,
)
from cdc.source.catalog import (
    SourceTableError,
    plan_filter,
    reflect_table,
    slot_position,
    source_connection,
    source_dsn,
)
from warehouse.arrow import csv_columns, csv_readable
from warehouse.base import ComputeRow, OffsetRow, SourceRows, Warehouse, WarehouseError

log = structlog.get_logger(__name__)

# a chunk: rows of model values (list of tuples) or Arrow columns (pyarrow.Table)
Rows: TypeAlias = Any


class SnapshotError(Exception):
    """A snapshot request that can't run as given; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ChunkLoaded:
    """Progress: one chunk is in the warehouse (or was already, on a resume)."""

    table: str
    index: int
    rows: int
    done: int  # chunks of this table loaded so far (skipped ones included)
    total: int
    skipped: bool = False


@dataclass(slots=True)
class TableSnapshot:
    """What a bulk snapshot of one table did."""

    table: str
    target: str
    snapshot_id: str
    lsn: int
    chunks: int
    chunks_loaded: int = 0
    chunks_skipped: int = 0
    rows: int = 0
    upserted: int = 0
    stale: int = 0  # rows the stream had already changed (the guard kept the newer value)
    seconds: float = 0.0
    plan_seconds: float = 0.0  # exporting the snapshot, finding the chunk bounds
    wait_seconds: float = 0.0  # waiting for readers (COPY out + parsing)
    load_seconds: float = 0.0  # the warehouse loading chunks
    resumed: bool = False
    columnar: bool = False  # chunks read as Arrow columns from CSV (else as rows of values)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request for one table."""

    table: TableConfig
    schema: TableSchema
    keyless: bool = False  # no primary key: re-loaded whole (cdc.reconcile.quiet)


@dataclass(slots=True)
class BulkOptions:
    rows_per_chunk: int = 100_000
    workers: int = 2
    where: str | None = None
    state_dir: Path | None = None  # default: <state_dir of the config>/snapshots
    fresh: bool = False  # ignore a saved plan: start a new snapshot
    stop_after_chunks: int | None = None  # load at most this many chunks, then stop (tests)
    on_chunk: Callable[[ChunkLoaded], None] | None = None
    _chunks_this_run: int = field(default=0, repr=False)


def _table_config(config: Config, name: str) -> TableConfig:
    try:
        return config.table(name)
    except KeyError as exc:
        raise SnapshotError(
            f"{exc.args[0]}; the connector captures only configured tables: add it to "
            "`tables` in cdc.yaml first"
        ) from None


def check_where(conn: psycopg.Connection[Any], schema: TableSchema, where: str) -> None:
    """Raise SnapshotError unless PostgreSQL can plan the filter on the table
    (:func:`cdc.source.catalog.plan_filter`)."""
    try:
        plan_filter(conn, schema.table, where)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise SnapshotError(f"--where {where!r} does not work on {schema.table}: {first}") from None


def check_request(config: Config, tables: Sequence[str], where: str | None = None) -> list[Request]:
    """Validate a snapshot request before any work; SnapshotError names the first problem."""
    if not tables:
        raise SnapshotError("name at least one table to snapshot")
    configs = [_table_config(config, name) for name in tables]
    out: list[Request] = []
    with source_connection(source_dsn(config.source)) as conn:
        for table in configs:
            try:
                schema = reflect_table(conn, table.source)
            except SourceTableError as exc:
                try:  # no primary key: with REPLICA IDENTITY FULL, an exact re-load
                    schema = reflect_table(conn, table.source, keyless=True)
                except SourceTableError:
                    raise SnapshotError(str(exc)) from None
            if not schema.key:
                if where:
                    raise SnapshotError(
                        f"table {table.name} has no primary key: it is re-loaded whole and "
                        "exactly, which a --where filter can't be"
                    )
                out.append(Request(table, schema, keyless=True))
                continue
            if table.columns:
                raise SnapshotError(
                    f"table {table.name} has column type overrides, which the bulk method does "
                    "not apply: use `cdc snapshot --method incremental` (its rows go through "
                    "the stream, overrides and quarantine included)"
                )
            if where:
                check_where(conn, schema, where)
            out.append(Request(table, schema_with_key_not_null(schema)))
        try:
            slot_position(conn, config.source.slot_name)
        except SourceTableError as exc:
            raise SnapshotError(str(exc)) from None
    return out


def state_dir(config: Config, options: BulkOptions) -> Path:
    return options.state_dir or config.state_path("snapshots")


def _plan_file(folder: Path, target: str) -> Path:
    return folder / f"{path_segment(target)}.json"  # any table name is one file name


def _save(path: Path, plan: SnapshotPlan) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(plan.dumps())
    tmp.replace(path)


class _Readers:
    """Reader threads, each with its own connection inside the exported snapshot."""

    def __init__(self, url: str, snapshot: str, workers: int, columns: bool) -> None:
        self.url = url
        self.columns = columns
        self.snapshot = snapshot
        self.local = threading.local()
        self.conns: list[psycopg.Connection[Any]] = []
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cdc-snapshot")

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = source_connection(self.url)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot)))
            self.local.conn = conn
            with self.lock:
                self.conns.append(conn)
        return conn

    def read(self, schema: TableSchema, chunk: Chunk, where: str | None) -> Rows:
        """The chunk's rows: as Arrow columns parsed from CSV when ``columns`` (falling back
        to the row read when Arrow can't take a value exactly), else as model values."""
        conn = self._conn()
        if self.columns:
            query = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(
                chunk_query(schema, chunk, where, utc_text=True)
            )
            with conn.cursor() as cur, cur.copy(query) as copy:
                data = b"".join(bytes(block) for block in copy)
            try:
                return csv_columns(schema, data)
            except pa.ArrowInvalid as exc:
                log.info("chunk read as rows", chunk=chunk.index, reason=str(exc)[:200])
        query = sql.SQL("COPY ({}) TO STDOUT").format(chunk_query(schema, chunk, where))
        with conn.cursor() as cur, cur.copy(query) as copy:
            copy.set_types(copy_types(schema))
            return list(copy.rows())

    def submit(self, schema: TableSchema, chunk: Chunk, where: str | None) -> Future[Rows]:
        return self.pool.submit(self.read, schema, chunk, where)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for conn in self.conns:
            conn.close()


@contextmanager
def exported_snapshot(
    url: str, slot: str
) -> Iterator[tuple[psycopg.Connection[Any], str, int, int]]:
    """``(connection, snapshot name, position, commit time µs)``: the exported snapshot lives
    while the context is open. The position is read before the snapshot is taken."""
    conn = source_connection(url)
    try:
        restart_lsn, _ = slot_position(conn, slot)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute(
            "SELECT pg_export_snapshot(), (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
        ).fetchone()
        assert row is not None
        yield conn, str(row[0]), restart_lsn - 1, int(row[1])
    finally:
        conn.close()


def _new_plan(
    conn: psycopg.Connection[Any],
    request: Request,
    options: BulkOptions,
    lsn: int,
    ts_us: int,
) -> SnapshotPlan:
    bounds = [tuple(r) for r in conn.execute(bounds_query(request.schema, options.rows_per_chunk))]
    return SnapshotPlan(
        id=f"{request.table.target_name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-"
        f"{uuid.uuid4().hex[:6]}",
        table=request.table.name,
        target=request.table.target_name,
        where=options.where,
        lsn=lsn,
        commit_ts_us=ts_us,
        chunks=chunks_from_bounds(bounds),
    )


def snapshot_table(
    config: Config, warehouse: Warehouse, request: Request, options: BulkOptions
) -> TableSnapshot:
    """Bulk-load one validated table (resuming a saved plan unless ``options.fresh``); a
    table without a primary key is re-loaded whole, exactly (:mod:`cdc.reconcile.quiet`)."""
    started = time.perf_counter()
    if request.keyless:
        try:
            rows = reload_keyless(config, request.table.name, warehouse=warehouse)
        except QuietReplaceError as exc:
            raise SnapshotError(str(exc)) from None
        return TableSnapshot(request.table.name, config.table_target(request.table).name,
                             "reload", 0, 1, chunks_loaded=1, rows=rows, upserted=rows,
                             seconds=time.perf_counter() - started)  # fmt: skip
    folder = state_dir(config, options)
    path = _plan_file(folder, request.table.target_name)
    url = source_dsn(config.source)
    target = config.table_target(request.table)
    with exported_snapshot(url, config.source.slot_name) as (conn, name, lsn, ts_us):
        plan: SnapshotPlan | None = None
        if path.exists() and not options.fresh:
            plan = SnapshotPlan.loads(path.read_text())
            if plan.where != options.where or plan.table != request.table.name:
                raise SnapshotError(
                    f"an unfinished snapshot of {plan.table} with where={plan.where!r} is "
                    f"saved in {path}: rerun with the same filter to resume it, or pass "
                    "--fresh to start over"
                )
        resumed = plan is not None
        if plan is None:
            plan = _new_plan(conn, request, options, lsn, ts_us)
            _save(path, plan)
        done = {
            part for (topic, part) in warehouse.load_offsets(plan.group) if topic == plan.target
        }
        result = TableSnapshot(
            table=plan.table,
            target=plan.target,
            snapshot_id=plan.id,
            lsn=lsn,
            chunks=len(plan.chunks),
            resumed=resumed,
            plan_seconds=time.perf_counter() - started,
        )
        log.info(
            "snapshot started",
            table=plan.table,
            snapshot=plan.id,
            chunks=len(plan.chunks),
            already_loaded=len(done),
            lsn=lsn,
        )
        position = snapshot_position(lsn, ts_us)
        pending = [c for c in plan.chunks if c.index not in done]
        for c in plan.chunks:
            if c.index in done:
                result.chunks_skipped += 1
                loaded = ChunkLoaded(
                    plan.table, c.index, 0, result.chunks_skipped, result.chunks, True
                )
                _report(options, loaded)
        columns = warehouse.takes_columns(target) and csv_readable(request.schema)
        result.columnar = columns
        readers = _Readers(url, name, max(1, options.workers), columns)
        inflight: queue.SimpleQueue[tuple[Chunk, Future[Rows]]] = queue.SimpleQueue()
        try:
            upcoming = iter(pending)
            for chunk in _take(upcoming, 2 * max(1, options.workers)):
                inflight.put((chunk, readers.submit(request.schema, chunk, plan.where)))
            while not inflight.empty():
                if (
                    options.stop_after_chunks is not None
                    and options._chunks_this_run >= options.stop_after_chunks
                ):
                    break
                chunk, future = inflight.get()
                mark = time.perf_counter()
                rows = future.result()
                result.wait_seconds += time.perf_counter() - mark
                nxt = next(upcoming, None)
                if nxt is not None:
                    inflight.put((nxt, readers.submit(request.schema, nxt, plan.where)))
                origin = KafkaOrigin(plan.group, chunk.index, 0)
                if isinstance(rows, list):
                    unfit = first_unfit(request.schema, rows, warehouse.capabilities)
                    if unfit is not None:
                        raise SnapshotError(
                            f"table {plan.table}: {unfit}. The chunks loaded so far stay; set "
                            "a column override (`columns: {<name>: {type: text}}`) and use "
                            "`cdc snapshot --method incremental`, whose rows are quarantined "
                            "one by one instead"
                        )
                    chunk_rows = SourceRows(target, request.schema, rows, position, origin)
                else:
                    chunk_rows = SourceRows(target, request.schema, (), position, origin, rows)
                mark = time.perf_counter()
                applied = warehouse.load_rows(
                    chunk_rows, [OffsetRow(plan.group, plan.target, chunk.index, 1)]
                )
                result.load_seconds += time.perf_counter() - mark
                for stats in applied.tables:
                    result.upserted += stats.upserted
                    result.stale += stats.stale
                result.rows += len(chunk_rows)
                result.chunks_loaded += 1
                log.debug("chunk loaded", table=plan.table, chunk=chunk.index, rows=len(chunk_rows))
                options._chunks_this_run += 1
                _report(options, ChunkLoaded(
                    plan.table, chunk.index, len(chunk_rows),
                    result.chunks_loaded + result.chunks_skipped, result.chunks,
                ))  # fmt: skip
        finally:
            readers.close()
    result.seconds = time.perf_counter() - started
    if result.chunks_loaded:
        _record_compute(warehouse, result)
    if result.chunks_loaded + result.chunks_skipped == result.chunks:
        path.unlink(missing_ok=True)
    log.info(
        "snapshot finished" if not path.exists() else "snapshot stopped",
        table=plan.table,
        snapshot=plan.id,
        rows=result.rows,
        chunks_loaded=result.chunks_loaded,
        chunks_skipped=result.chunks_skipped,
        seconds=round(result.seconds, 3),
    )
    return result


def _record_compute(warehouse: Warehouse, result: TableSnapshot) -> None:
    """Store the measured warehouse time of the chunks loaded (cost reports); bookkeeping
    only, so a refusal is logged and the snapshot's result stands."""
    row = ComputeRow("snapshot", result.target, result.load_seconds, result.chunks_loaded,
                     dt.datetime.now(dt.UTC))  # fmt: skip
    try:
        warehouse.record_compute([row])
    except WarehouseError as exc:
        log.warning("measured snapshot time not stored", table=result.table, error=str(exc))


def _take(it: Iterator[Chunk], n: int) -> list[Chunk]:
    out: list[Chunk] = []
    for chunk in it:
        out.append(chunk)
        if len(out) == n:
            break
    return out


def _report(options: BulkOptions, event: ChunkLoaded) -> None:
    if options.on_chunk is not None:
        options.on_chunk(event)


def bulk_snapshot(
    config: Config,
    warehouse: Warehouse,
    tables: Sequence[str],
    options: BulkOptions | None = None,
) -> list[TableSnapshot]:
    """Validate every table, then bulk-load them one after the other."""
    options = options or BulkOptions()
    requests = check_request(config, tables, options.where)
    results: list[TableSnapshot] = []
    for request in requests:
        results.append(snapshot_table(config, warehouse, request, options))
        if (
            options.stop_after_chunks is not None
            and options._chunks_this_run >= options.stop_after_chunks
        ):
            break
    return results


__all__ = [
    "BulkOptions",
    "ChunkLoaded",
    "Request",
    "SnapshotError",
    "TableSnapshot",
    "bulk_snapshot",
    "check_request",
    "check_where",
    "snapshot_table",
]
