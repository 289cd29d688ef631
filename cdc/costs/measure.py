"""What the cost report measures (the I/O side; the arithmetic is in :mod:`cdc.costs.report`).

- **Hot**: :meth:`warehouse.base.Warehouse.table_storage` of every configured table (rows and
  the bytes the engine reports; see each adapter for what they count).
- **Warm and cold** (tables with ``tiering`` only): every ``*.parquet`` file under
  ``<root>/<warm|cold>/<table>/`` on the tier storage, listed with fsspec (root:
  ``tables[].tiering.target`` or ``tiering.target``, with ``tiering.storage_options``). Bytes
  are the files' sizes as the storage lists them, rows the row counts in their Parquet footers.
  Every file there is counted, also one a crashed move left behind (it is billed until the next
  tier run deletes it).
- **Compute**: the seconds recorded in ``compute_log`` since the previous report
  (:meth:`~warehouse.base.Warehouse.compute_totals`); where the engine records what its
  queries cost, also those credits (:meth:`~warehouse.base.Warehouse.credit_usage`),
  attributed per table by :mod:`cdc.costs.credits`.
- **Kafka topic bytes**: not measured. The broker knows them (DescribeLogDirs), but the
  Kafka client this project uses (confluent-kafka) has no call for it; the report says so.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import fsspec
import pyarrow.parquet as pq

from cdc.config import Config, TableConfig
from cdc.costs.credits import Attribution, QueryRecord, attribute
from cdc.costs.report import Measurement, TableMeasure
from cdc.names import path_segment
from warehouse.base import ComputeRow, TableStorage, Warehouse

KAFKA_NOTE = (
    "Kafka topic bytes: not measured (the broker reports them through DescribeLogDirs, which "
    "confluent-kafka's admin client does not offer)"
)
FIRST_CREDITS_WINDOW = dt.timedelta(days=7)  # query history read by a first report


class CostReportError(Exception):
    """Something the report must measure can't be read; the message says what and where."""


def tier_root(config: Config, table: TableConfig) -> str:
    """The folder or URL holding a tiered table's warm and cold files."""
    assert table.tiering is not None
    return config.tiering.resolve(table.tiering.target or config.tiering.target, config.config_dir)


def tier_usage(root: str, options: dict[str, Any], table: str) -> tuple[TableStorage, TableStorage]:
    """Rows and bytes of a table's warm and cold Parquet files under ``root``."""
    try:
        fs, base = fsspec.core.url_to_fs(root, **options)
    except (ImportError, ValueError, TypeError) as exc:
        raise CostReportError(f"tier storage {root}: {exc}") from exc
    out = []
    for tier in ("warm", "cold"):
        folder = f"{base.rstrip('/')}/{tier}/{path_segment(table)}"
        try:
            found: dict[str, dict[str, Any]] = fs.find(folder, detail=True)
        except FileNotFoundError:
            found = {}
        except OSError as exc:
            raise CostReportError(
                f"tier storage {root} can't be listed ({type(exc).__name__}: {exc}); check "
                "`tiering.target` and `tiering.storage_options`"
            ) from exc
        rows = size = 0
        for path, info in sorted(found.items()):
            if not path.endswith(".parquet"):
                continue
            size += int(info["size"])
            with fs.open(path, "rb") as f:
                rows += int(pq.read_metadata(f).num_rows)
        out.append(TableStorage(rows, size))
    return out[0], out[1]


def warehouse_credits(
    warehouse: Warehouse, since: dt.datetime
) -> tuple[Attribution | None, str | None]:
    """Credits per table from the engine's own query history
    (:meth:`~warehouse.base.Warehouse.credit_usage`), or None and why not (an engine without
    credits says nothing; one that can't read them here says so in a note)."""
    usage = warehouse.credit_usage(since)
    if usage.queries is None:
        return None, usage.note
    records = [QueryRecord.from_row(row) for row in usage.queries]
    return attribute(records, usage.tag_prefix), usage.note


def measure(
    config: Config, warehouse: Warehouse, *, since: dt.datetime | None, at: dt.datetime
) -> tuple[Measurement, list[ComputeRow]]:
    """Measure every configured table; also returns the measured time of this report's own
    storage reads (job ``cost_report``), for the caller to record."""
    tables: list[TableMeasure] = []
    own: list[ComputeRow] = []
    for t in config.tables:
        target = config.table_target(t)
        mark = time.perf_counter()
        hot = warehouse.table_storage(target)
        own.append(ComputeRow("cost_report", target.name, time.perf_counter() - mark, 1, at))
        warm = cold = None
        if t.tiering is not None:
            warm, cold = tier_usage(tier_root(config, t), config.tiering.options(), target.name)
        tables.append(TableMeasure(target.name, hot, warm, cold))
    notes = [KAFKA_NOTE]
    credits, note = warehouse_credits(warehouse, since or at - FIRST_CREDITS_WINDOW)
    if note:
        notes.append(note)
    if credits is not None and since is None:
        notes.append(f"Credits of the last {FIRST_CREDITS_WINDOW.days} days")
    measurement = Measurement(
        at=at,
        since=since,
        tables=tables,
        compute=warehouse.compute_totals(since),
        credits=credits,
        notes=notes,
    )
    return measurement, own
