"""The cost report's numbers against sizes computed independently (issue 7's acceptance).

A real DuckDB warehouse file holds rows loaded through the warehouse API, and tier files are
written with pyarrow in the tier layout (``<root>/<warm|cold>/<table>/month=YYYY-MM/``). The
report's rows, bytes and costs must equal what the test computes on its own: the files'
sizes (``os.path.getsize``), their row counts (``pyarrow.parquet`` metadata) and a direct DuckDB
query of the warehouse file. A second report shows the trend, and the PNG chart has one
storage series per table and tier. No local stack needed: this runs in seconds."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sample_data import batch, ev

from cdc.config import Config, parse_config
from cdc.costs.run import cost_report
from cdc.model import Op
from cdc.runtime import open_warehouse
from warehouse.base import ComputeRow, TableTarget, Warehouse

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)
T2 = T1 + dt.timedelta(days=7)
PNG = b"\x89PNG\r\n\x1a\n"

CONFIG = """
source: {host: 127.0.0.1, database: shop, user: cdc}
kafka: {bootstrap_servers: 127.0.0.1:9092}
warehouse: {type: duckdb, path: wh.duckdb}
tables:
  - name: public.items
    soft_delete: true
    tiering: {hot: 30d, warm: 365d, retention: 7y}
  - name: public.orders
tiering: {target: tiers}
costs:
  warehouse_gb_month: 40.0
  infrequent_gb_month: 12.5
  archive_gb_month: 4.0
  warm_class: infrequent
  cold_class: archive
  compute_hour: 3.0
  output: reports
"""


def load(wh: Warehouse, table: str, keys: range) -> None:
    events = [ev(Op.CREATE, k, 100 + k, name=f"name {k} " * 5, doc=f"d{k}") for k in keys]
    wh.apply([batch(*events, target=TableTarget(table))], [])


def tier_file(root: Path, tier: str, month: str, name: str, rows: int, level: int) -> Path:
    path = root / tier / "items" / f"month={month}" / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = pa.table({"id": list(range(rows)), "name": [f"old {i}" * 3 for i in range(rows)]})
    pq.write_table(data, path, compression="zstd", compression_level=level)
    return path


def files_of(root: Path, tier: str) -> list[Path]:
    return sorted((root / tier / "items").rglob("*.parquet"))


def hot_measured(path: Path, table: str) -> tuple[int, int]:
    """Rows and checkpointed bytes of a table, straight from the DuckDB file."""
    con = duckdb.connect(str(path))
    try:
        (rows,) = con.execute(f'SELECT count(*) FROM main."{table}"').fetchone() or (0,)
        (block_size,) = con.execute(
            "SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()"
        ).fetchone() or (0,)
        blocks = set()
        for block_id, extra, persistent in con.execute(
            f"SELECT block_id, additional_block_ids, persistent FROM pragma_storage_info('{table}')"
        ).fetchall():
            if persistent and block_id is not None and block_id >= 0:
                blocks.add(block_id)
            blocks.update(extra or [])
    finally:
        con.close()
    return int(rows), len(blocks) * int(block_size)


def compute_between(path: Path, table: str, since: dt.datetime | None, until: dt.datetime) -> float:
    """Seconds recorded for a table before a report (``until``; the report's own time is
    recorded after it, at its time) and at or after the previous one."""
    con = duckdb.connect(str(path))
    try:
        query = (
            "SELECT coalesce(sum(seconds), 0) FROM _cdc.compute_log "
            'WHERE table_name = ? AND "at" < ?'
        )
        params: list[object] = [table, until]
        if since is not None:
            query += ' AND "at" >= ?'
            params.append(since)
        (seconds,) = con.execute(query, params).fetchone() or (0.0,)
    finally:
        con.close()
    return float(seconds)


def line(doc: dict[str, object], table: str, tier: str) -> dict[str, object]:
    lines = doc["lines"]
    assert isinstance(lines, list)
    return next(x for x in lines if (x["table"], x["tier"]) == (table, tier))


def expected_tier(root: Path, tier: str) -> tuple[int, int]:
    files = files_of(root, tier)
    return (sum(pq.ParquetFile(f).metadata.num_rows for f in files),
            sum(os.path.getsize(f) for f in files))  # fmt: skip


def check_numbers(
    cfg: Config, doc: dict[str, object], since: dt.datetime | None, until: dt.datetime
) -> None:
    db, root = cfg.config_dir / "wh.duckdb", cfg.config_dir / "tiers"
    for table in ("items", "orders"):
        rows, size = hot_measured(db, table)
        hot = line(doc, table, "hot")
        assert (hot["rows"], hot["bytes"]) == (rows, size), table
        assert 0 < size <= os.path.getsize(db)
        assert hot["storage_cost"] == pytest.approx(size / 1e9 * 40.0)
        assert hot["compute_cost"] == pytest.approx(
            compute_between(db, table, since, until) / 3600 * 3.0
        )
    for tier, price in (("warm", 12.5), ("cold", 4.0)):
        rows, size = expected_tier(root, tier)
        got = line(doc, "items", tier)
        assert (got["rows"], got["bytes"]) == (rows, size), tier
        assert got["storage_cost"] == pytest.approx(size / 1e9 * price)
    tiered = sum(expected_tier(root, t)[1] for t in ("warm", "cold"))
    (saving,) = doc["savings"]  # type: ignore[misc]
    in_tiers = (
        expected_tier(root, "warm")[1] / 1e9 * 12.5 + expected_tier(root, "cold")[1] / 1e9 * 4
    )
    assert saving["tiered_bytes"] == tiered
    assert saving["per_month"] == pytest.approx(tiered / 1e9 * 40.0 - in_tiers)
    assert not any(x["table"] == "orders" and x["tier"] != "hot" for x in doc["lines"])  # type: ignore[attr-defined]


def test_cost_report_numbers_match_independently_computed_sizes(tmp_path: Path) -> None:
    cfg = parse_config(CONFIG, config_dir=tmp_path)
    root = tmp_path / "tiers"
    wh = open_warehouse(cfg)
    try:
        wh.ensure_bookkeeping()
        load(wh, "items", range(1, 3001))
        load(wh, "orders", range(1, 51))
        tier_file(root, "warm", "2026-01", "m1", 400, 3)
        tier_file(root, "warm", "2026-02", "m2", 250, 3)
        tier_file(root, "cold", "2025-01", "c1", 1000, 19)
        (root / "warm" / "items" / "month=2026-02" / "notes.txt").write_text("not a tier file")
        wh.record_compute([ComputeRow("apply", "items", 90.0, 3, T0),
                           ComputeRow("snapshot", "orders", 18.0, 2, T0)])  # fmt: skip

        first = cost_report(cfg, warehouse=wh, now=T1)
        doc = json.loads(first.files.json.read_text())
        assert doc["report_id"] == first.report.report_id and doc["since"] is None
        check_numbers(cfg, doc, None, T1)
        assert line(doc, "items", "hot")["compute_cost"] == pytest.approx(90.0 / 3600 * 3.0)
        assert all(x["delta_bytes"] is None for x in doc["lines"])  # nothing to compare with
        csv_lines = first.files.csv.read_text().splitlines()
        assert len(csv_lines) == 1 + 4 and csv_lines[0].startswith("report_id,at,table,tier")
        assert first.files.markdown.read_text().startswith("# Cost report")
        assert first.files.chart.read_bytes()[:8] == PNG

        # a week later: more rows, a month moved to warm, more apply time
        load(wh, "items", range(3001, 9001))
        tier_file(root, "warm", "2026-03", "m3", 300, 3)
        wh.record_compute([ComputeRow("apply", "items", 36.0, 1, T1 + dt.timedelta(days=1))])
        before = {(x["table"], x["tier"]): x for x in doc["lines"]}
        second = cost_report(cfg, warehouse=wh, now=T2)
        doc2 = json.loads(second.files.json.read_text())
        assert doc2["previous_report"] == first.report.report_id
        assert doc2["since"] == T1.isoformat()
        check_numbers(cfg, doc2, T1, T2)
        for x in doc2["lines"]:
            old = before[(x["table"], x["tier"])]
            assert x["delta_rows"] == x["rows"] - old["rows"]
            assert x["delta_bytes"] == x["bytes"] - old["bytes"]
            assert x["delta_storage_cost"] == pytest.approx(x["storage_cost"] - old["storage_cost"])
        assert line(doc2, "items", "hot")["delta_rows"] == 6000
        assert line(doc2, "items", "warm")["delta_rows"] == 300
        assert line(doc2, "items", "cold")["delta_bytes"] == 0
        history = wh.cost_history()
        assert len(history) == 8 and {r.report_id for r in history} == {
            first.report.report_id,
            second.report.report_id,
        }
    finally:
        wh.close()

    png = second.chart.path.read_bytes()
    assert png[:8] == PNG and len(png) > 1000
    storage = {s.label: s for s in second.chart.storage}
    assert sorted(storage) == ["items/cold", "items/hot", "items/warm", "orders/hot"]
    for s in storage.values():
        assert s.times == (T1, T2)
        stored = [line(d, s.table, s.tier or "")["storage_cost"] for d in (doc, doc2)]
        assert list(s.values) == pytest.approx(stored)
    assert [c.label for c in second.chart.compute] == ["items", "orders"]


def test_the_flow_publishes_markdown_and_table_artifacts_and_the_cli_prints(
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness
    from typer.testing import CliRunner

    from cdc.cli import app
    from flows.cost_report import cost_report as cost_report_flow

    config = tmp_path / "cdc.yaml"
    config.write_text(CONFIG)
    wh = open_warehouse(parse_config(CONFIG, config_dir=tmp_path))
    try:
        load(wh, "items", range(1, 101))
    finally:
        wh.close()
    tier_file(tmp_path / "tiers", "warm", "2026-01", "m1", 40, 3)

    out = CliRunner().invoke(app, ["cost-report", "-c", str(config)])
    assert out.exit_code == 0, out.output
    assert "items" in out.output and "warm" in out.output and "files:" in out.output

    with prefect_test_harness(server_startup_timeout=120):
        state = cost_report_flow(str(config), return_state=True)
        assert state.is_completed(), state
        summary = state.result()
        with get_client(sync_client=True) as client:
            artifacts = {a.key: a for a in client.read_artifacts()}
    assert summary["previous_report"] is not None  # the CLI's report came first
    assert Path(summary["files"]["chart"]).read_bytes()[:8] == PNG
    assert "# Cost report" in str(artifacts["cdc-cost-report"].data)
    assert "items" in str(artifacts["cdc-cost-report-tables"].data)
