"""Slot and WAL safety: `cdc status` warnings (missing slot, retained WAL over the threshold)
and heartbeats on by default."""

from __future__ import annotations

from pathlib import Path

from cdc.config import parse_config
from cdc.source.connector import debezium_properties
from cdc.status import SlotStatus, StatusReport, slot_warnings

MB = 1024 * 1024

CONFIG = """\
source: {host: 127.0.0.1, database: shop, user: cdc}
kafka: {bootstrap_servers: 127.0.0.1:9092}
warehouse: {type: duckdb}
tables: [{name: public.a}]
"""


def test_no_warning_at_or_below_the_threshold() -> None:
    assert slot_warnings(SlotStatus("s", True, True, 0, 1024 * MB), 1024) == []
    assert slot_warnings(SlotStatus("s", True, True, 0, None), 1) == []  # unknown: no claim


def test_retained_wal_over_the_threshold_says_what_to_do() -> None:
    (warning,) = slot_warnings(SlotStatus("cdc_slot", True, False, 10, 1536 * MB), 1024)
    assert "retains 1536 MB of WAL (threshold 1024 MB; inactive)" in warning
    for advice in ("Debezium is running and confirming", "heartbeat_interval_ms",
                   "heartbeat.action.query", "pg_drop_replication_slot('cdc_slot')",
                   "Recovering from a dropped replication slot"):  # fmt: skip
        assert advice in warning


def test_a_missing_slot_is_a_warning() -> None:
    (warning,) = slot_warnings(SlotStatus("cdc_slot", exists=False), 1024)
    assert warning.startswith("replication slot cdc_slot does not exist")
    for step in ("cdc connector reset-offsets", "cdc run", "cdc reconcile --repair",
                 "Recovering from a dropped replication slot"):  # fmt: skip
        assert step in warning


def test_warnings_are_in_the_json() -> None:
    report = StatusReport([], SlotStatus("s", True, True, 1, 2), ["look"])
    assert report.to_json() == {
        "tables": [],
        "slot": {"name": "s", "exists": True, "active": True, "lag_bytes": 1,
                 "retained_bytes": 2},
        "warnings": ["look"],
    }  # fmt: skip


def test_threshold_default_and_setting() -> None:
    assert parse_config(CONFIG, file="cdc.yaml").source.max_retained_wal_mb == 1024
    set_ = CONFIG.replace("user: cdc}", "user: cdc, max_retained_wal_mb: 50}")
    assert parse_config(set_, file="cdc.yaml").source.max_retained_wal_mb == 50


def test_heartbeats_are_on_by_default(tmp_path: Path) -> None:
    config = parse_config(CONFIG, file="cdc.yaml")
    for props in (
        debezium_properties(config, runtime="embedded", offsets_file=tmp_path / "offsets.dat"),
        debezium_properties(config, runtime="connect"),
    ):
        assert int(props["heartbeat.interval.ms"]) > 0
