"""`make bench`: how fast the consumer applies a backlog, and how far behind the source it runs.

A benchmark, not a test: it always exits 0 (unless the stack itself fails) and says plainly
whether each target was met. One run, one local stack (PostgreSQL with logical decoding, the
Tansu broker, the real embedded Debezium engine), all on loopback, stopped by pid at the end.

Pre-fill
    ``bench_orders`` (bigint key, text, varchar, numeric, timestamptz, text[], jsonb, uuid,
    boolean, date) gets ``--rows`` rows in one INSERT ... SELECT; Debezium's initial snapshot
    then publishes one envelope per row to ``cdc.public.bench_orders``. Then ``--updates`` rows
    (default: half of them) are updated once each, 1000 rows per transaction, which streams one
    update envelope per row. The backlog is rows + updates envelopes. "prefill s" is the time
    from starting Debezium until it confirmed a WAL marker written after the updates (so every
    envelope before it is in Kafka).

(a) ceiling, events/s
    A bare confluent-kafka consumer (assigned partition 0 from the beginning, the Replicator's
    fetch settings) that only fetches and calls ``decode_message`` on every message, shaped like
    the Replicator (one ``poll`` for the first message, then ``consume(batch)``).
    Rate = rows / (time from the first message in hand to the last message decoded).

(b) apply, events/s
    The real ``Replicator`` (fresh consumer group, fresh DuckDB file, the library's default
    warehouse settings unless ``--keep-open``) replaying the same backlog with
    ``run(until_caught_up=True)``. Rate = events applied / (time from the first message in hand
    to the end of the last batch, i.e. after its warehouse commit and Kafka commit). The group
    join before the first message and the idle grace after the last batch are excluded, so
    (a) and (b) measure the same span. The breakdown splits that span into fetch (inside
    ``_poll_batch``), decode, warehouse ``apply`` (itself: DuckDB file open, plan, Arrow
    staging, SQL + commit) and the rest (grouping, Kafka commit, bookkeeping).

ratio = (b) / (a)
    The share of the consume+decode ceiling that survives applying to the warehouse.
    Target: >= 0.6.

(b2) scd2 apply, events/s, and scd2 ratio = (b2) / (a)
    As (b), with the table in mode ``scd2`` (every column tracked): the snapshot opens one
    version per row, each update closes it and opens a second. The breakdown adds the stored
    tails' fetch (the one query per batch that reads the keys' last versions). Target: >= 0.5.

(b3) apply with a data contract, events/s, and the validation overhead
    As (b), with checks on the table (not null + length, pattern + unique in the batch,
    between, allowed values: every row passes, so all rows are applied). "validation s" is the
    time spent screening batches with pandera; overhead = validation s / (b)'s span, and the
    rate ratio (b) / (b3) - 1 for comparison. Target: overhead <= 15%.

(c) latency, s
    ``ReplicatorThread`` (what ``cdc run`` does, in a thread; again a fresh group and DuckDB
    file) first catches up with the snapshot backlog, then a steady workload runs for
    ``--seconds`` at ``--rate`` transactions/s (each: update 1-3 random rows' amount/status,
    sometimes insert a row, sometimes delete one). Latency per streamed event = warehouse commit
    time - source commit time (``RunStats.latencies_s``; snapshot events are not counted).
    Target: p99 < 1.5 s.

(d) reconcile, rows/s
    ``cdc reconcile`` of ``--reconcile-rows`` equal rows (``bench_recon``), PostgreSQL vs a
    fresh DuckDB file: see ``tests/bench/reconcile_bench.py``. Target: >= 1M rows/s.

Usage: ``make bench ARGS="--rows 20000 --seconds 10 --json"`` or
``.venv/bin/python tests/bench/run.py --help``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from reconcile_bench import TARGET_ROWS_PER_S, run_reconcile_bench  # (d), tests/bench/
from rich.console import Console
from rich.table import Table

from cdc.config import Config
from cdc.consumer.batching import Polled
from cdc.consumer.loop import Replicator, RunStats
from cdc.decoding import DecodeError, Skip, decode_message
from cdc.local.pipeline import (
    ReplicatorThread,
    start_debezium,
    wait_until_published,
    write_stack_config,
)
from cdc.local.stack import LocalStack
from cdc.logs import configure_logging
from cdc.model import ChangeEvent
from cdc.runtime import open_warehouse, replicator_settings

TABLE = "public.bench_orders"
RATIO_TARGET = 0.6
SCD2_RATIO_TARGET = 0.5
CONTRACT_OVERHEAD_TARGET = 0.15
STATUSES = ["new", "paid", "shipped", "cancelled", "returned"]
CHECKS = [
    {"column": "customer", "not_null": True, "length": {"max": 200}},
    {"column": "email", "pattern": "^[^@]+@[^@]+$", "unique": True},
    {"column": "amount", "between": [0, 20000]},
    {"column": "status", "allowed": STATUSES},
]
UPDATE_CHUNK = 1000
P99_TARGET_S = 1.5

DDL = """
CREATE TABLE bench_orders (
    id bigint PRIMARY KEY,
    customer text NOT NULL,
    email varchar(120),
    amount numeric(12, 2),
    placed_at timestamptz,
    status text,
    tags text[],
    meta jsonb,
    ref uuid,
    shipped boolean,
    ship_date date
)
"""

FILL = """
INSERT INTO bench_orders
SELECT g,
       'Customer ' || g || ' ' || left(md5(g::text), 8),
       'c' || g || '@example.com',
       round((random() * 10000)::numeric, 2),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '7 seconds',
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g %% 4],
       ARRAY['t' || (g %% 10), 'bulk'],
       jsonb_build_object('source', 'web', 'items', g %% 7, 'note', md5(g::text)),
       md5(g::text)::uuid,
       g %% 3 = 0,
       date '2024-01-01' + (g %% 365)
FROM generate_series(1, %s) AS g
"""

INSERT = (
    "INSERT INTO bench_orders (id, customer, email, amount, placed_at, status, tags, meta, ref,"
    " shipped, ship_date) VALUES (%s, %s, %s, %s, now(), 'new', %s, %s::jsonb, %s, false,"
    " current_date)"
)


# --------------------------------------------------------------------------------- helpers
def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fresh_config(
    stack: LocalStack,
    name: str,
    args: argparse.Namespace,
    *,
    group: str | None = None,
    mode: str = "mirror",
    checks: list[dict[str, Any]] | None = None,
) -> Config:
    """A cdc.yaml of its own (fresh consumer group and DuckDB file) for one phase."""
    table: dict[str, Any] = {"name": TABLE, "mode": mode}
    if checks:
        table["checks"] = checks
    return write_stack_config(
        stack.state_dir / f"cdc-{name}.yaml",
        stack,
        [table],
        warehouse_path=stack.state_dir / f"{name}.duckdb",
        group_id=group or f"bench-{name}-{uuid.uuid4().hex[:8]}",
        batch_size=args.batch_size,
        linger_ms=100,
        heartbeat_interval_ms=1000,
    )


def consumer_config(config: Config, group: str) -> dict[str, Any]:
    """The Replicator's librdkafka settings (see cdc.consumer.loop.Replicator.__init__)."""
    settings = replicator_settings(config)
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        **settings.kafka,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }


@dataclass
class Timers:
    """Seconds and call counts per label, filled by wrapped callables."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds
        self.calls[label] = self.calls.get(label, 0) + 1

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.add(label, time.perf_counter() - started)

        return timed


@contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    """Replace ``obj.name`` for the duration (in this process only; no file is edited)."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


# ---------------------------------------------------------------------------- prefill
def create_and_fill(url: str, rows: int) -> float:
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DDL)
        conn.execute(FILL, (rows,))
        conn.execute("ANALYZE bench_orders")
    return time.monotonic() - started


def update_backlog(url: str, updates: int) -> None:
    """Update rows 1..updates once each, UPDATE_CHUNK rows per transaction."""
    with psycopg.connect(url, autocommit=True) as conn:
        for lo in range(1, updates + 1, UPDATE_CHUNK):
            hi = min(lo + UPDATE_CHUNK - 1, updates)
            conn.execute(
                "UPDATE bench_orders SET amount = amount + 1, status = 'returned' "
                "WHERE id BETWEEN %s AND %s",
                (lo, hi),
            )


def wait_for_topic(stack: LocalStack, config: Config) -> None:
    """Wait until Debezium has published everything committed so far (its snapshot included).

    Not by the topic's high watermark: Tansu reports the last record batch's base offset + 1,
    which can stay below the message count for good. The WAL marker of
    ``wait_until_published`` is exact: Debezium confirms it only after the publisher flushed.
    """
    try:
        wait_until_published(stack.pg_url(), config.source.slot_name, timeout=900)
    except TimeoutError:
        if not stack.running("debezium"):
            tail = stack.debezium_log.read_text(errors="replace")[-3000:]
            raise RuntimeError(
                f"Debezium stopped while snapshotting; its log ends:\n{tail}"
            ) from None
        raise


# ----------------------------------------------------------------------- (a) ceiling
@dataclass
class CeilingResult:
    messages: int
    seconds: float
    decode_seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def run_ceiling(config: Config, topic: str, rows: int, batch_size: int) -> CeilingResult:
    consumer = Consumer(consumer_config(config, f"bench-ceiling-{uuid.uuid4().hex[:8]}"))
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    decoded = 0
    decode_seconds = 0.0
    sink: list[ChangeEvent | Skip] = []

    def decode(msgs: list[Message]) -> None:
        nonlocal decoded, decode_seconds
        started = time.perf_counter()
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"kafka error: {err}")
                continue
            try:
                sink.append(
                    decode_message(
                        m.key(),
                        m.value(),
                        topic=m.topic() or "",
                        partition=m.partition() or 0,
                        offset=m.offset() or 0,
                    )
                )
            except DecodeError as exc:
                raise RuntimeError(f"undecodable message at offset {m.offset()}: {exc}") from exc
            decoded += 1
        decode_seconds += time.perf_counter() - started
        sink.clear()

    try:
        deadline = time.monotonic() + 60
        first: Message | None = None
        while first is None or first.error() is not None:
            if time.monotonic() > deadline:
                raise TimeoutError("the ceiling consumer received nothing within 60 s")
            first = consumer.poll(0.5)
        started = time.monotonic()
        decode([first])
        while decoded < rows:
            decode(consumer.consume(num_messages=min(batch_size, 10000), timeout=1.0))
            if time.monotonic() - started > 600:
                raise TimeoutError(f"the ceiling consumer decoded only {decoded} of {rows}")
        return CeilingResult(decoded, time.monotonic() - started, decode_seconds)
    finally:
        consumer.close()


# ------------------------------------------------------------------------- (b) apply
class TimedReplicator(Replicator):
    """The library's Replicator, with stopwatches around its steps (behaviour unchanged)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.timers = Timers()
        self.first_message_at: float | None = None
        self.last_batch_end: float | None = None
        self.messages = 0

    def _keep(self, m: Message, out: list[Polled]) -> None:  # type: ignore[override]
        if self.first_message_at is None and m.error() is None:
            self.first_message_at = time.monotonic()
        Replicator._keep(m, out)

    def _poll_batch(self) -> list[Polled]:
        started = time.perf_counter()
        batch = super()._poll_batch()
        if batch:
            self.timers.add("fetch (poll/consume)", time.perf_counter() - started)
            self.messages += len(batch)
        return batch

    def _decode(self, batch: list[Polled]) -> list[ChangeEvent]:
        started = time.perf_counter()
        try:
            return super()._decode(batch)
        finally:
            self.timers.add("decode", time.perf_counter() - started)

    def _screen(self, batches: Any) -> Any:
        started = time.perf_counter()
        try:
            return super()._screen(batches)
        finally:
            self.timers.add("validation (pandera)", time.perf_counter() - started)

    def _process(self, batch: list[Polled]) -> None:
        started = time.perf_counter()
        super()._process(batch)
        self.timers.add("batch (decode..commit)", time.perf_counter() - started)
        self.last_batch_end = time.monotonic()


@dataclass
class ApplyRun:
    events: int
    messages: int
    batches: int
    seconds: float
    apply_seconds: float
    timers: dict[str, float]
    keep_open: bool

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def run_apply(config: Config, *, keep_open: bool, profile: Path | None = None) -> ApplyRun:
    """Replay the backlog with the real Replicator into a fresh DuckDB file."""
    import warehouse.engine.apply as wd  # the apply pipeline's module, for the stopwatches only

    warehouse = open_warehouse(config, keep_open=keep_open)
    replicator = TimedReplicator(replicator_settings(config), warehouse)
    t = replicator.timers
    engine: Any = wd  # its helpers are imported names, not exports: patch them where used
    with (
        patched(warehouse, "_open", t.wrap("  duckdb file open", warehouse._open)),  # type: ignore[attr-defined]
        patched(engine, "plan_mirror", t.wrap("  plan", engine.plan_mirror)),
        patched(engine, "mirror_stage", t.wrap("  Arrow staging", engine.mirror_stage)),
        patched(engine, "plan_scd2", t.wrap("  plan", engine.plan_scd2)),
        patched(engine, "stored_tails", t.wrap("  plan", engine.stored_tails)),
        patched(engine, "scd2_stage", t.wrap("  Arrow staging", engine.scd2_stage)),
        patched(warehouse, "_arrow", t.wrap("  tail fetch", warehouse._arrow)),  # type: ignore[attr-defined]
    ):
        if profile is not None:
            profiler = cProfile.Profile()
            stats = profiler.runcall(replicator.run, until_caught_up=True)
            profiler.dump_stats(profile)
        else:
            stats = replicator.run(until_caught_up=True)
    if replicator.first_message_at is None or replicator.last_batch_end is None:
        raise RuntimeError("the replicator applied nothing")
    return ApplyRun(
        events=stats.events,
        messages=replicator.messages,
        batches=stats.batches,
        seconds=replicator.last_batch_end - replicator.first_message_at,
        apply_seconds=stats.apply_seconds,
        timers=dict(t.seconds),
        keep_open=keep_open,
    )


def breakdown(result: ApplyRun) -> list[tuple[str, float]]:
    """The (b) span split into its parts, in seconds."""
    s = result.timers
    fetch = s.get("fetch (poll/consume)", 0.0)
    decode = s.get("decode", 0.0)
    batch = s.get("batch (decode..commit)", 0.0)
    apply = result.apply_seconds
    opened = s.get("  duckdb file open", 0.0)
    plan = s.get("  plan", 0.0)
    stage = s.get("  Arrow staging", 0.0)
    tails = s.get("  tail fetch", 0.0)
    return [
        ("fetch (inside _poll_batch)", fetch),
        ("decode", decode),
        ("warehouse apply", apply),
        ("  DuckDB file open", opened),
        ("  scd2 tail fetch (SQL to Arrow)", tails),
        ("  plan (plan_mirror / plan_scd2)", plan),
        ("  Arrow staging", stage),
        ("  SQL statements + commit", max(0.0, apply - opened - plan - stage - tails)),
        ("rest of the batch (grouping, Kafka commit)", max(0.0, batch - decode - apply)),
        ("unaccounted (loop)", max(0.0, result.seconds - fetch - batch)),
    ]


# ----------------------------------------------------------------------- (c) latency
@dataclass
class WorkloadStats:
    transactions: int = 0
    updates: int = 0
    inserts: int = 0
    deletes: int = 0
    seconds: float = 0.0


def run_workload(url: str, rows: int, seconds: float, rate: float, seed: int) -> WorkloadStats:
    """Steady transactions at ``rate``/s for ``seconds``: 1-3 updates, sometimes an insert
    (30 %), sometimes a delete (10 %)."""
    rng = random.Random(seed)
    live = list(range(1, rows + 1))
    next_id = rows + 1
    out = WorkloadStats()
    with psycopg.connect(url) as conn:
        started = time.monotonic()
        while True:
            now = time.monotonic()
            if now - started >= seconds:
                break
            due = started + out.transactions / rate
            if due > now:
                time.sleep(due - now)
            with conn.transaction():
                for _ in range(rng.randint(1, 3)):
                    conn.execute(
                        "UPDATE bench_orders SET amount = %s, status = %s WHERE id = %s",
                        (
                            Decimal(rng.randint(0, 10**6)) / 100,
                            rng.choice(STATUSES),
                            live[rng.randrange(len(live))],
                        ),
                    )
                    out.updates += 1
                if rng.random() < 0.3:
                    conn.execute(
                        INSERT,
                        (
                            next_id,
                            f"Customer {next_id}",
                            f"c{next_id}@example.com",
                            Decimal(rng.randint(0, 10**6)) / 100,
                            ["t1", "live"],
                            json.dumps({"source": "app", "items": rng.randint(1, 9)}),
                            uuid.UUID(int=rng.getrandbits(128)),
                        ),
                    )
                    live.append(next_id)
                    next_id += 1
                    out.inserts += 1
                if rng.random() < 0.1 and len(live) > 1:
                    i = rng.randrange(len(live))
                    live[i], live[-1] = live[-1], live[i]
                    conn.execute("DELETE FROM bench_orders WHERE id = %s", (live.pop(),))
                    out.deletes += 1
            out.transactions += 1
        out.seconds = time.monotonic() - started
    return out


@dataclass
class LatencyResult:
    workload: WorkloadStats
    latencies_s: list[float]
    catch_up_seconds: float
    stats: RunStats


def run_latency(
    config: Config, url: str, args: argparse.Namespace, console: Console
) -> LatencyResult:
    thread = ReplicatorThread(config)
    if args.keep_open:  # prototype: the thread's warehouse holds its DuckDB connection
        thread.replicator.warehouse = open_warehouse(config, keep_open=True)
    started = time.monotonic()
    thread.start()
    try:
        thread.wait_caught_up(timeout=max(300.0, args.rows / 100))
    except BaseException:
        thread.stop()
        raise
    catch_up = time.monotonic() - started
    console.print(f"  caught up with the backlog in {catch_up:.1f} s; workload starts")
    before = len(thread.replicator.stats.latencies_s)
    try:
        workload = run_workload(url, args.rows, args.seconds, args.rate, args.seed)
        wait_until_published(url, config.source.slot_name)
    except BaseException:
        thread.stop()
        raise
    stats = thread.finish()
    return LatencyResult(workload, stats.latencies_s[before:], catch_up, stats)


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=200_000, help="backlog size (default 200000)")
    p.add_argument(
        "--updates", type=int, default=None, help="streamed updates after the snapshot (rows/2)"
    )
    p.add_argument("--rate", type=float, default=300, help="workload transactions/s (300)")
    p.add_argument("--seconds", type=float, default=30, help="latency workload duration (30)")
    p.add_argument("--batch-size", type=int, default=5000, help="consumer batch size (5000)")
    p.add_argument("--state-dir", type=Path, default=None, help="default: a fresh temp dir")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--keep-open",
        action="store_true",
        help="prototype: hold one DuckDB connection (keep_open=True) in (b) and (c)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="also replay (b) once more under cProfile, dump to FILE, print the top entries",
    )
    p.add_argument("--reconcile-rows", type=int, default=1_000_000,
                   help="(d) equal rows reconciled PostgreSQL vs DuckDB (1000000)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="end with one JSON line of all figures")
    return p.parse_args(argv)


def make_state_dir(args: argparse.Namespace) -> tuple[Path, bool]:
    if args.state_dir is not None:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        return args.state_dir.resolve(), False
    path = Path(tempfile.mkdtemp(prefix="cdc-bench-", dir="/tmp"))
    os.chmod(path, 0o755)  # PostgreSQL runs unprivileged when we are root: must traverse it
    return path, True


def print_profile(path: Path, console: Console) -> None:
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).sort_stats("tottime").print_stats(25)
    console.print("[bold]cProfile of (b), top 25 by own time[/]")
    console.print(buf.getvalue(), markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(highlight=False)
    say = console.print
    configure_logging("WARNING")
    state_dir, made = make_state_dir(args)
    stack = LocalStack(state_dir, pg_port=None, kafka_port=None, database="bench")
    figures: dict[str, Any] = {
        "rows": args.rows,
        "batch_size": args.batch_size,
        "keep_open": args.keep_open,
        "cpus": os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
    }
    ok = False
    try:
        say(f"[bold]Starting the local stack[/] in {state_dir}")
        stack.up()
        url = stack.pg_url()
        say(f"  PostgreSQL {url}")
        say(f"  broker     {stack.bootstrap_servers}")

        updates = args.rows // 2 if args.updates is None else min(args.updates, args.rows)
        backlog = args.rows + updates
        fill_s = create_and_fill(url, args.rows)
        say(f"Filled bench_orders with {args.rows:,} rows in {fill_s:.1f} s")
        config = fresh_config(stack, "latency", args)
        topic = config.topic_for(config.tables[0])
        started = time.monotonic()
        start_debezium(stack, config)
        wait_for_topic(stack, config)
        update_backlog(url, updates)
        wait_for_topic(stack, config)
        prefill_s = time.monotonic() - started
        figures |= {
            "updates": updates,
            "backlog_events": backlog,
            "fill_seconds": round(fill_s, 2),
            "prefill_seconds": round(prefill_s, 2),
        }
        say(
            f"Pre-filled {topic} with {args.rows:,} snapshot envelopes and {updates:,} streamed "
            f"updates in {prefill_s:.1f} s (Debezium start to all published)"
        )

        say("[bold](a) ceiling[/]: consume + decode only")
        ceiling = run_ceiling(fresh_config(stack, "ceiling", args), topic, backlog, args.batch_size)
        say(
            f"  {ceiling.messages:,} messages in {ceiling.seconds:.2f} s = "
            f"[bold]{ceiling.rate:,.0f} events/s[/] (decode {ceiling.decode_seconds:.2f} s, "
            f"{ceiling.decode_seconds / ceiling.seconds:.0%} of the span)"
        )

        mode = "keep_open=True (prototype)" if args.keep_open else "library default"
        say(f"[bold](b) apply[/]: the Replicator into a fresh DuckDB file ({mode})")
        applied = run_apply(fresh_config(stack, "apply", args), keep_open=args.keep_open)
        ratio = applied.rate / ceiling.rate if ceiling.rate else 0.0
        say(
            f"  {applied.events:,} events in {applied.batches} batches, {applied.seconds:.2f} s "
            f"from first message to last commit = [bold]{applied.rate:,.0f} events/s[/]"
        )
        parts = Table(title="(b) where the time goes", title_justify="left")
        parts.add_column("part")
        parts.add_column("seconds", justify="right")
        parts.add_column("share", justify="right")
        for label, secs in breakdown(applied):
            parts.add_row(label, f"{secs:.2f}", f"{secs / applied.seconds:.0%}")
        say(parts)
        figures |= {
            "ceiling_events_per_s": round(ceiling.rate),
            "ceiling_seconds": round(ceiling.seconds, 3),
            "ceiling_decode_seconds": round(ceiling.decode_seconds, 3),
            "apply_events_per_s": round(applied.rate),
            "apply_seconds_span": round(applied.seconds, 3),
            "apply_seconds_warehouse": round(applied.apply_seconds, 3),
            "apply_batches": applied.batches,
            "apply_breakdown_s": {k.strip(): round(v, 3) for k, v in breakdown(applied)},
            "ratio": round(ratio, 3),
            "ratio_target": RATIO_TARGET,
            "ratio_met": ratio >= RATIO_TARGET,
        }
        say("[bold](b2) scd2 apply[/]: the same, into a history table (every column tracked)")
        history = run_apply(
            fresh_config(stack, "scd2", args, mode="scd2"), keep_open=args.keep_open
        )
        scd2_ratio = history.rate / ceiling.rate if ceiling.rate else 0.0
        say(
            f"  {history.events:,} events in {history.batches} batches, {history.seconds:.2f} s "
            f"= [bold]{history.rate:,.0f} events/s[/] (ratio {scd2_ratio:.2f})"
        )
        parts = Table(title="(b2) where the time goes", title_justify="left")
        parts.add_column("part")
        parts.add_column("seconds", justify="right")
        parts.add_column("share", justify="right")
        for label, secs in breakdown(history):
            parts.add_row(label, f"{secs:.2f}", f"{secs / history.seconds:.0%}")
        say(parts)
        figures |= {
            "scd2_events_per_s": round(history.rate),
            "scd2_seconds_span": round(history.seconds, 3),
            "scd2_breakdown_s": {k.strip(): round(v, 3) for k, v in breakdown(history)},
            "scd2_ratio": round(scd2_ratio, 3),
            "scd2_ratio_target": SCD2_RATIO_TARGET,
            "scd2_ratio_met": scd2_ratio >= SCD2_RATIO_TARGET,
        }
        say("[bold](b3) apply with a data contract[/]: (b) plus checks on four columns")
        checked = run_apply(fresh_config(stack, "contract", args, checks=CHECKS),
                            keep_open=args.keep_open)  # fmt: skip
        validation_s = checked.timers.get("validation (pandera)", 0.0)
        overhead = validation_s / applied.seconds if applied.seconds else 0.0
        rate_overhead = applied.rate / checked.rate - 1 if checked.rate else 0.0
        say(
            f"  {checked.events:,} events, {checked.seconds:.2f} s = [bold]{checked.rate:,.0f} "
            f"events/s[/]; validation {validation_s:.2f} s = [bold]{overhead:.1%}[/] of (b)'s "
            f"span (rate ratio (b)/(b3) - 1 = {rate_overhead:+.1%})"
        )
        figures |= {
            "contract_events_per_s": round(checked.rate),
            "contract_validation_seconds": round(validation_s, 3),
            "contract_overhead": round(overhead, 4),
            "contract_rate_overhead": round(rate_overhead, 4),
            "contract_overhead_target": CONTRACT_OVERHEAD_TARGET,
            "contract_overhead_met": overhead <= CONTRACT_OVERHEAD_TARGET,
        }
        say("[bold](d) reconcile[/]: equal tables, PostgreSQL vs DuckDB (cdc reconcile)")
        figures |= run_reconcile_bench(stack, state_dir / "reconcile", args.reconcile_rows, say)
        if args.profile is not None:
            say(f"Replaying (b) once more under cProfile -> {args.profile}")
            run_apply(
                fresh_config(stack, "profile", args), keep_open=args.keep_open, profile=args.profile
            )
            print_profile(args.profile, console)

        say(
            f"[bold](c) latency[/]: ReplicatorThread catches up, then {args.rate:g} tx/s for "
            f"{args.seconds:g} s"
        )
        lat = run_latency(fresh_config(stack, "latency-run", args), url, args, console)
        w = lat.workload
        values = lat.latencies_s
        p50, p95, p99 = (percentile(values, q) for q in (0.5, 0.95, 0.99))
        worst = max(values) if values else float("nan")
        say(
            f"  workload: {w.transactions:,} transactions in {w.seconds:.1f} s "
            f"({w.transactions / w.seconds:,.0f} tx/s; {w.updates:,} updates, {w.inserts:,} "
            f"inserts, {w.deletes:,} deletes)"
        )
        say(
            f"  latency over {len(values):,} streamed events: p50 {p50:.3f} s, p95 {p95:.3f} s, "
            f"p99 {p99:.3f} s, max {worst:.3f} s"
        )
        figures |= {
            "catch_up_seconds": round(lat.catch_up_seconds, 2),
            "workload_transactions": w.transactions,
            "workload_tx_per_s": round(w.transactions / w.seconds, 1),
            "latency_events": len(values),
            "latency_p50_s": round(p50, 4),
            "latency_p95_s": round(p95, 4),
            "latency_p99_s": round(p99, 4),
            "latency_max_s": round(worst, 4),
            "p99_target_s": P99_TARGET_S,
            "p99_met": bool(values) and p99 < P99_TARGET_S,
        }
        ok = True
    finally:
        stack.down(purge=made and ok)
        if not ok:
            say(f"[red]The benchmark failed; state and logs kept in {state_dir}[/]")

    def verdict(met: bool) -> str:
        return "[bold green]yes[/]" if met else "[bold red]NO[/]"

    summary = Table(title=f"CDC benchmark ({figures['machine']}, {figures['cpus']} CPUs)")
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    summary.add_row("rows (snapshot envelopes)", f"{args.rows:,}")
    summary.add_row("streamed updates", f"{figures['updates']:,}")
    summary.add_row("prefill s (Debezium snapshot -> topic)", f"{figures['prefill_seconds']:.1f}")
    summary.add_row("(a) consume + decode, events/s", f"{figures['ceiling_events_per_s']:,}")
    summary.add_row(f"(b) apply to DuckDB ({mode}), events/s", f"{figures['apply_events_per_s']:,}")
    summary.add_row("ratio (b)/(a)", f"{figures['ratio']:.2f}")
    summary.add_row(f"target ratio >= {RATIO_TARGET} met?", verdict(figures["ratio_met"]))
    summary.add_row("(b2) scd2 apply to DuckDB, events/s", f"{figures['scd2_events_per_s']:,}")
    summary.add_row("scd2 ratio (b2)/(a)", f"{figures['scd2_ratio']:.2f}")
    summary.add_row(
        f"target scd2 ratio >= {SCD2_RATIO_TARGET} met?", verdict(figures["scd2_ratio_met"])
    )
    summary.add_row("(b3) apply with checks, events/s", f"{figures['contract_events_per_s']:,}")
    summary.add_row("validation overhead (of (b)'s span)", f"{figures['contract_overhead']:.1%}")
    summary.add_row(
        f"target overhead <= {CONTRACT_OVERHEAD_TARGET:.0%} met?",
        verdict(figures["contract_overhead_met"]),
    )
    summary.add_row(
        f"(d) reconcile {figures['reconcile_rows']:,} equal rows, rows/s",
        f"{figures['reconcile_rows_per_s']:,} ({figures['reconcile_ratio_to_target']:.2f} x)",
    )
    summary.add_row(
        f"target >= {TARGET_ROWS_PER_S:,} rows/s met?", verdict(figures["reconcile_met"])
    )
    summary.add_row("latency p50 s", f"{figures['latency_p50_s']:.3f}")
    summary.add_row("latency p99 s", f"{figures['latency_p99_s']:.3f}")
    summary.add_row(f"target p99 < {P99_TARGET_S} s met?", verdict(figures["p99_met"]))
    summary.add_row("CPUs (os.cpu_count())", str(figures["cpus"]))
    say(summary)
    missed = [
        name
        for name, met in (
            ("ratio", figures["ratio_met"]),
            ("scd2 ratio", figures["scd2_ratio_met"]),
            ("contract overhead", figures["contract_overhead_met"]),
            ("p99", figures["p99_met"]),
            ("reconcile rows/s", figures["reconcile_met"]),
        )
        if not met
    ]
    if missed:
        say(f"[bold red]Target missed: {', '.join(missed)}[/] (a benchmark, not a test: exit 0)")
    else:
        say("[bold green]All targets met.[/]")
    if args.json:
        sys.stdout.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
