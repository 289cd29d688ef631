"""Lifecycle tiering on a real DuckDB file and real Parquet files (a local folder, and S3
through moto's server): history moved warm and cold reads back unchanged through the
``<table>_history`` view and as-of queries; kill -9 inside a move converges on rerun; restore
brings rows back exactly; bad input stops before anything moves.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from sample_data import ITEMS_SCHEMA, dated

from cdc.config import Config, load_config
from cdc.model import ChangeEvent, Op
from cdc.runtime import open_warehouse
from cdc.tiering.run import TierError, restore, tier
from warehouse.base import OffsetRow, TableBatch, Warehouse

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC)
KEYS = 30

CONFIG = """\
source: {{host: 127.0.0.1, port: 5432, database: shop, user: postgres, password: x}}
kafka: {{bootstrap_servers: 127.0.0.1:9092, group_id: g}}
warehouse: {{type: duckdb, path: wh.duckdb}}
tables:
  - name: public.items
    {mode}
    tiering: {{hot: 30d, warm: 365d, retention: {retention}}}
tiering:
  target: {target}
  storage_options: {options}
"""


def _event(op: Op, key: int, at: dt.datetime, name: str | None = None) -> ChangeEvent:
    return dated(op, key, at, name=name, doc=f"doc {key}")


def _load_history(config: Config) -> None:
    """30 keys, a version every 9 days over the last ~900 days; every 7th key deleted."""
    events = []
    start = NOW - dt.timedelta(days=900)
    for step in range(100):
        at = start + dt.timedelta(days=9 * step, minutes=step)
        for key in range(1, KEYS + 1):
            op = Op.CREATE if step == 0 else Op.UPDATE
            events.append(_event(op, key, at + dt.timedelta(seconds=key), f"v{step}"))
    for key in range(7, KEYS + 1, 7):
        events.append(_event(Op.DELETE, key, NOW - dt.timedelta(days=400 - key)))
    events.sort(key=lambda e: e.position.lsn)
    wh = open_warehouse(config)
    try:
        target = config.table_target(config.tables[0])
        wh.apply([TableBatch(target, ITEMS_SCHEMA, tuple(events))],
                 [OffsetRow("g", "pg.public.items", 0, len(events))])  # fmt: skip
    finally:
        wh.close()


def _config(
    tmp: Path, target: str, *, retention: str = "7y", options: str = "{}", mode: str = "scd2"
) -> Config:
    path = tmp / "cdc.yaml"
    line = "mode: scd2" if mode == "scd2" else "soft_delete: true"
    path.write_text(CONFIG.format(target=target, retention=retention, options=options, mode=line))
    return load_config(path)


def _history(wh: Warehouse, config: Config, as_of: dt.datetime | None = None) -> list[Any]:
    target = config.table_target(config.tables[0])
    rows = wh.history_rows(target, as_of).to_pylist()  # type: ignore[attr-defined]
    return sorted(rows, key=lambda r: (r["id"], r["_cdc_lsn"]))


def _hot_count(config: Config) -> int:
    with duckdb.connect(str(config.warehouse.path), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM main.items").fetchone()
    assert row is not None
    return int(row[0])


AS_OF = [NOW - dt.timedelta(days=d) for d in (850, 500, 380, 100, 10, 0)]


def _before(config: Config) -> tuple[list[Any], dict[dt.datetime, list[Any]]]:
    wh = open_warehouse(config)
    try:
        return _history(wh, config), {t: _history(wh, config, t) for t in AS_OF}
    finally:
        wh.close()


def _assert_unchanged(
    config: Config, before: tuple[list[Any], dict[dt.datetime, list[Any]]]
) -> None:
    everything, as_of = before
    wh = open_warehouse(config)
    try:
        assert _history(wh, config) == everything
        for t, rows in as_of.items():
            assert _history(wh, config, t) == rows, f"as of {t}"
    finally:
        wh.close()


@pytest.fixture
def local(tmp_path: Path) -> Config:
    config = _config(tmp_path, "tiers")
    _load_history(config)
    return config


EARLIER = NOW - dt.timedelta(days=300)


def test_history_moved_warm_and_cold_reads_back_unchanged(local: Config) -> None:
    before = _before(local)
    total = len(before[0])
    wh = open_warehouse(local)
    try:
        # 300 days ago: what had closed a month before went warm (older than a year: cold)
        [first] = tier(local, wh, now=EARLIER)
        _assert_unchanged(local, before)
        # today: those warm months are past the warm window and go cold, newer rows warm
        [result] = tier(local, wh)
        files = wh.tier_files("items")  # type: ignore[attr-defined]
        moves = wh.tier_moves("items")  # type: ignore[attr-defined]
    finally:
        wh.close()
    assert first.to_warm > 0 and first.to_cold > 0
    assert result.to_warm > 0 and result.to_cold > 0
    assert {f.tier for f in files} == {"warm", "cold"}
    assert _hot_count(local) + sum(f.rows for f in files) == total
    for f in files:
        assert Path(f.path).exists()
        assert pq.ParquetFile(f.path).metadata.num_rows == f.rows
        closing = pq.read_table(f.path)["valid_to"].to_pylist()
        limit = NOW - dt.timedelta(days=365 if f.tier == "cold" else 30)
        assert all(c < limit for c in closing)
        assert all(f"{c:%Y-%m}" == f.month for c in closing)
    cold_codec = pq.ParquetFile(next(f.path for f in files if f.tier == "cold"))
    assert cold_codec.metadata.row_group(0).column(0).compression == "ZSTD"
    assert {m["kind"] for m in moves} >= {"hot_to_warm", "warm_to_cold"}
    _assert_unchanged(local, before)
    # the hot table keeps every current version and the delete markers guard deleted keys
    with duckdb.connect(str(local.warehouse.path), read_only=True) as con:
        current = con.execute("SELECT count(*) FROM main.items WHERE valid_to IS NULL")
        assert current.fetchone() == (KEYS - len(range(7, KEYS + 1, 7)),)

    # a second pass has nothing left to do and changes nothing
    wh = open_warehouse(local)
    try:
        [again] = tier(local, wh)
    finally:
        wh.close()
    assert (again.to_warm, again.to_cold, again.expired, again.orphans_deleted) == (0, 0, 0, 0)
    _assert_unchanged(local, before)


def test_restore_brings_rows_back_exactly(local: Config) -> None:
    before = _before(local)
    wh = open_warehouse(local)
    try:
        tier(local, wh)
        start, end = NOW - dt.timedelta(days=500), NOW - dt.timedelta(days=200)
        wanted = [r for r in before[0] if r["valid_to"] and start <= r["valid_to"] < end]
        count = restore(local, wh, "items", start, end)
        files = wh.tier_files("items")  # type: ignore[attr-defined]
        # held hot: a pass right after the restore leaves them in the table
        [result] = tier(local, wh)
    finally:
        wh.close()
    assert count == len(wanted) > 0
    assert result.to_warm == 0
    with duckdb.connect(str(local.warehouse.path), read_only=True) as con:
        back = con.execute(
            "SELECT count(*) FROM main.items WHERE valid_to >= ? AND valid_to < ?", [start, end]
        ).fetchone()
    assert back == (len(wanted),)
    for f in files:
        closing = pq.read_table(f.path)["valid_to"].to_pylist()
        assert not any(start <= c < end for c in closing)
    _assert_unchanged(local, before)


def test_retention_deletes_cold_history_past_it(tmp_path: Path) -> None:
    config = _config(tmp_path, "tiers", retention="600d")
    _load_history(config)
    everything, _ = _before(config)
    wh = open_warehouse(config)
    try:
        [result] = tier(config, wh)
        left = _history(wh, config)
    finally:
        wh.close()
    gone = [r for r in everything if r["valid_to"] and r["valid_to"] < NOW - dt.timedelta(days=600)]
    assert result.expired > 0
    # whole months that ended before the retention cutoff are deleted, nothing younger
    assert len(everything) - len(left) == result.expired <= len(gone)
    assert all(r in everything for r in left)
    assert all(
        r["valid_to"] is None or r["valid_to"] >= NOW - dt.timedelta(days=600 + 31) for r in left
    )


def _cdc_tier(config: Config, failpoint: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("CDC_FAILPOINT", None)
    if failpoint:
        env["CDC_FAILPOINT"] = f"tier:{failpoint}"
    return subprocess.run(
        [sys.executable, "-m", "cdc", "tier", "--config", str(config.config_dir / "cdc.yaml")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    "failpoint",
    [
        "after_write",  # files written and verified, hot rows not deleted yet
        "hot_to_warm_after_delete",  # hot rows deleted inside the transaction, no audit yet
        "after_commit",  # committed, before anything after it
        "warm_to_cold_after_write",
        "warm_to_cold_after_delete",
        "warm_to_cold_after_commit",  # committed, the replaced warm files not deleted yet
    ],
)
def test_kill_9_inside_a_move_converges_on_rerun(tmp_path: Path, failpoint: str) -> None:
    config = _config(tmp_path, "tiers")
    _load_history(config)
    before = _before(config)
    if failpoint.startswith("warm_to_cold"):  # warm files that today's pass moves cold
        wh = open_warehouse(config)
        try:
            tier(config, wh, now=EARLIER)
        finally:
            wh.close()
    crashed = _cdc_tier(config, failpoint)
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    # whatever the crash left, the view shows every row exactly once
    _assert_unchanged(config, before)
    rerun = _cdc_tier(config, None)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _assert_unchanged(config, before)
    wh = open_warehouse(config)
    try:
        files = wh.tier_files("items")  # type: ignore[attr-defined]
    finally:
        wh.close()
    on_disk = sorted(str(p) for p in (tmp_path / "tiers").rglob("*.parquet"))
    assert on_disk == sorted(f.path for f in files)  # no orphan left, none missing
    assert _hot_count(config) + sum(f.rows for f in files) == len(before[0])


def test_bad_input_is_refused_before_anything_moves(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the tier folder should be")
    config = _config(tmp_path, str(blocked))
    _load_history(config)
    wh = open_warehouse(config)
    try:
        with pytest.raises(TierError, match="not reachable"):
            tier(config, wh)
        with pytest.raises(TierError, match="not configured"):
            tier(config, wh, ["public.nope"])
    finally:
        wh.close()
    assert _hot_count(config) == len(_before(config)[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3() -> Iterator[str]:
    """moto's S3 server on a loopback port (a real HTTP S3 endpoint), stopped by its pid."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("moto's S3 server did not start within 30 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def test_s3_target_through_moto_server(tmp_path: Path, s3: str) -> None:
    import boto3

    boto3.client(
        "s3", endpoint_url=s3, aws_access_key_id="k", aws_secret_access_key="s",
        region_name="us-east-1",
    ).create_bucket(Bucket="history")  # fmt: skip
    options = f"{{endpoint_url: '{s3}', key: k, secret: s}}"
    config = _config(tmp_path, "s3://history/cdc", options=options)
    _load_history(config)
    before = _before(config)
    wh = open_warehouse(config)
    try:
        [result] = tier(config, wh)
        files = wh.tier_files("items")  # type: ignore[attr-defined]
    finally:
        wh.close()
    assert result.to_warm > 0 and result.to_cold > 0
    assert all(f.path.startswith("s3://history/cdc/") for f in files)
    _assert_unchanged(config, before)  # DuckDB reads the view's files from S3
    from cdc.tiering.run import store_for

    store = store_for(config, config.tables[0])
    classes = {f.tier: store.storage_class(f.path) for f in files}
    assert classes == {"warm": "STANDARD", "cold": "GLACIER_IR"}


def _apply(config: Config, events: list[ChangeEvent]) -> None:
    wh = open_warehouse(config)
    try:
        target = config.table_target(config.tables[0])
        wh.apply([TableBatch(target, ITEMS_SCHEMA, tuple(events))], [])
    finally:
        wh.close()


def _mirror_rows(config: Config) -> list[Any]:
    with duckdb.connect(str(config.warehouse.path), read_only=True) as con:
        return con.execute("SELECT * FROM main.items ORDER BY id").fetchall()


def test_soft_deleted_mirror_rows_tier_and_replays_change_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path, "tiers", mode="mirror")
    inserts = [_event(Op.CREATE, k, NOW - dt.timedelta(days=800), "new") for k in range(1, 41)]
    deletes = [_event(Op.DELETE, k, NOW - dt.timedelta(days=10 * k)) for k in range(1, 41) if k % 2]
    _apply(config, inserts + deletes)
    wh = open_warehouse(config)
    target = config.table_target(config.tables[0])
    try:
        before = sorted(wh.history_rows(target).to_pylist(), key=lambda r: r["id"])  # type: ignore[attr-defined]
        [result] = tier(config, wh)
        after = sorted(wh.history_rows(target).to_pylist(), key=lambda r: r["id"])  # type: ignore[attr-defined]
        files = wh.tier_files("items")  # type: ignore[attr-defined]
    finally:
        wh.close()
    # deleted 30 days ago or more: keys 3, 5, ... 39
    moved = [k for k in range(1, 41) if k % 2 and 10 * k >= 30]  # the cutoff is later
    assert result.to_warm + result.to_cold == len(moved) == sum(f.rows for f in files)
    assert after == before
    hot = _mirror_rows(config)
    assert not {r[0] for r in hot} & set(moved)
    # replaying every old change (inserts and deletes) leaves table and view unchanged
    _apply(config, inserts + deletes)
    assert _mirror_rows(config) == hot
    wh = open_warehouse(config)
    try:
        again = sorted(wh.history_rows(target).to_pylist(), key=lambda r: r["id"])  # type: ignore[attr-defined]
        # a tiered key inserted again later lives in the table; restore keeps its old row
        # in the files and brings the others back
        _apply(config, [_event(Op.CREATE, 5, NOW - dt.timedelta(days=1), "back")])
        count = restore(config, wh, "items", NOW - dt.timedelta(days=400), NOW)
        files = wh.tier_files("items")  # type: ignore[attr-defined]
    finally:
        wh.close()
    assert again == before
    assert count == len(moved) - 1
    assert sum(f.rows for f in files) == 1
    rows = {r[0]: r for r in _mirror_rows(config)}
    assert set(moved) <= set(rows) and rows[5][1] == "back"


def test_every_type_reads_back_unchanged_from_the_tiers(tmp_path: Path) -> None:
    """Lossless types across tiers: a version holding a value in every column and one of
    NULLs, closed, moved warm, then cold, and restored."""
    from sample_data import FULL_ROW, KINDS_SCHEMA, NULL_ROW

    path = tmp_path / "cdc.yaml"
    path.write_text(
        CONFIG.format(target="tiers", retention="7y", options="{}", mode="mode: scd2").replace(
            "public.items", "public.all_kinds"
        )
    )
    config = load_config(path)
    old = NOW - dt.timedelta(days=400)

    def change(row: dict[str, Any], at: dt.datetime, op: Op) -> ChangeEvent:
        return dated(op, row["id"], at, KINDS_SCHEMA, **row)

    events = [change(FULL_ROW, old, Op.CREATE), change(NULL_ROW, old, Op.CREATE)]
    events += [change({**FULL_ROW, "txt": "next"}, old + dt.timedelta(days=1), Op.UPDATE),
               change({**NULL_ROW, "i16": 1}, old + dt.timedelta(days=1), Op.UPDATE)]  # fmt: skip
    wh = open_warehouse(config)
    target = config.table_target(config.tables[0])
    try:
        wh.apply([TableBatch(target, KINDS_SCHEMA, tuple(events))], [])
        before = sorted(wh.history_rows(target).to_pylist(), key=lambda r: (r["id"], r["_cdc_lsn"]))  # type: ignore[attr-defined]
        [result] = tier(config, wh)
        after = sorted(wh.history_rows(target).to_pylist(), key=lambda r: (r["id"], r["_cdc_lsn"]))  # type: ignore[attr-defined]
        restored = restore(config, wh, "all_kinds", old - dt.timedelta(days=1), NOW)
        back = sorted(wh.history_rows(target).to_pylist(), key=lambda r: (r["id"], r["_cdc_lsn"]))  # type: ignore[attr-defined]
    finally:
        wh.close()
    assert result.to_cold == 2 and restored == 2
    assert after == before
    assert back == before
