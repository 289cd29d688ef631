"""cdc.source.signals without a database: the signal payload, the checks made before
connecting, the notification fold; the signal_table setting; decoding incremental reads.
(The checks that ask PostgreSQL run on the real chain: tests/integration/
test_incremental_snapshot.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdc.config import ConfigError, parse_config
from cdc.decoding import DecodeError, decode_message
from cdc.model import ChangeEvent, Op, TableId
from cdc.source.signals import (
    IncrementalSnapshotAbortedError,
    IncrementalSnapshotProgress,
    InvalidFilterError,
    SignalError,
    SnapshotTracker,
    TableNotCapturedError,
    UnknownTableError,
    parse_table,
    request_configured_snapshot,
    request_incremental_snapshot,
    signal_payload,
)

# nothing listens here: a check that connected would fail with OperationalError instead
NOWHERE = "postgresql://postgres@127.0.0.1:9/none?connect_timeout=2"

CONFIG = """\
source:
  host: 127.0.0.1
  database: shop
  user: postgres
SIGNAL
kafka:
  bootstrap_servers: 127.0.0.1:9092
warehouse:
  type: duckdb
tables:
  - name: public.customers
  - name: sales.orders
"""


def config_text(signal: str = "") -> str:
    return CONFIG.replace("SIGNAL\n", signal)


# -- payload ------------------------------------------------------------------------------------


def test_payload_of_an_incremental_snapshot() -> None:
    tables = [TableId("public", "customers"), TableId("sales", "orders")]
    assert signal_payload(tables) == {
        "type": "incremental",
        # Debezium full-matches each entry, as a case-sensitive regex, against `schema.table`
        "data-collections": ["(?-i:public\\.customers)", "(?-i:sales\\.orders)"],
    }


def test_payload_with_a_filter_puts_it_on_every_table_in_parentheses() -> None:
    payload = signal_payload([TableId("public", "customers")], "tier = 'gold' OR id < 5")
    assert payload["additional-conditions"] == [
        {"data-collection": "(?-i:public\\.customers)", "filter": "(tier = 'gold' OR id < 5)"}
    ]
    assert json.loads(json.dumps(payload)) == payload  # what goes into the data column


def test_table_names() -> None:
    assert parse_table("customers") == TableId("public", "customers")
    assert parse_table("sales.orders") == TableId("sales", "orders")
    assert parse_table(TableId("a", "b")) == TableId("a", "b")
    for bad in ("a.b.c", "sales.", ".orders"):
        with pytest.raises(UnknownTableError, match="is not a table name"):
            parse_table(bad)


# -- checks made before connecting -------------------------------------------------------------


def test_a_table_the_connector_does_not_capture_is_refused_before_connecting() -> None:
    with pytest.raises(TableNotCapturedError) as info:
        request_incremental_snapshot(
            NOWHERE,
            "public.debezium_signal",
            ["customers", "public.payments"],
            captured=[TableId("public", "customers"), "sales.orders"],
        )
    assert str(info.value) == (
        "the connector doesn't capture public.payments (it captures: public.customers, "
        "sales.orders); add the table to `tables` in cdc.yaml and restart the connector first"
    )


def test_empty_requests_are_refused() -> None:
    with pytest.raises(SignalError, match="at least one table"):
        request_incremental_snapshot(NOWHERE, "public.debezium_signal", [])
    with pytest.raises(InvalidFilterError, match="the filter is empty"):
        request_incremental_snapshot(NOWHERE, "public.debezium_signal", ["customers"], "  ")


def test_configured_request_checks_the_configured_tables_and_needs_signals_on() -> None:
    config = parse_config(config_text())
    with pytest.raises(TableNotCapturedError, match=r"doesn't capture public\.orders"):
        request_configured_snapshot(config, ["orders"], url=NOWHERE)
    off = parse_config(config_text("  signal_table: null\n"))
    with pytest.raises(SignalError, match=r"signals are disabled \(source.signal_table is null"):
        request_configured_snapshot(off, ["customers"], url=NOWHERE)


# -- the signal_table setting -------------------------------------------------------------------


def test_signal_table_setting() -> None:
    assert parse_config(config_text()).source.signal_table == "public.debezium_signal"
    named = parse_config(config_text("  signal_table: cdc_signals\n")).source
    assert (named.signal_table, named.signal_table_id) == (
        "public.cdc_signals",
        TableId("public", "cdc_signals"),
    )
    assert parse_config(config_text("  signal_table: null\n")).source.signal_table_id is None
    with pytest.raises(ConfigError) as info:
        parse_config(config_text("  signal_table: a.b.c\n"))
    assert str(info.value) == (
        "cdc.yaml:5: source.signal_table: 'a.b.c' must be 'schema.table' or 'table'; a name "
        'holding a dot, a space or a quote is written quoted: "Sales Data"."a.b" (or null) '
        "(got 'a.b.c')"
    )


# -- notifications ------------------------------------------------------------------------------


def note(kind: str, signal_id: str = "sig-1", **data: str) -> dict[str, Any]:
    return {
        "id": signal_id,
        "type": kind,
        "aggregate_type": "Incremental Snapshot",
        "additional_data": {"connector_name": "cdc", **data},
        "timestamp": 1796188589168,
    }


def test_tracker_follows_chunks_and_tables_to_completion() -> None:
    seen: list[IncrementalSnapshotProgress] = []
    tracker = SnapshotTracker("sig-1", seen.append)
    feed = [
        {**note("SKIPPED", "other"), "aggregate_type": "Initial Snapshot"},
        note("STARTED", data_collections="public.items"),
        note(
            "IN_PROGRESS",
            current_collection_in_progress="public.items",
            last_processed_key="110",
            maximum_key="250",
        ),
        note("IN_PROGRESS", "sig-2", current_collection_in_progress="public.other"),
        note("COMPLETED", "sig-2"),
        note(
            "IN_PROGRESS",
            current_collection_in_progress="public.items",
            last_processed_key="250",
            maximum_key="250",
        ),
        note(
            "TABLE_SCAN_COMPLETED",
            scanned_collection="public.items",
            total_rows_scanned="240",
            status="SUCCEEDED",
        ),
    ]
    assert [tracker.feed(n) for n in feed] == [False] * len(feed)
    assert tracker.feed(None) is False
    assert tracker.feed(note("COMPLETED")) is True
    result = tracker.result(1.5)
    assert (result.tables, result.rows, result.chunks) == (
        {"public.items": "SUCCEEDED"},
        {"public.items": 240},
        2,
    )
    assert result.succeeded and result.seconds == 1.5
    assert seen == [
        IncrementalSnapshotProgress("public.items", "110", "250"),
        IncrementalSnapshotProgress("public.items", "250", "250"),
    ]


def test_tracker_reports_a_failed_table_and_an_abort() -> None:
    tracker = SnapshotTracker("sig-1")
    tracker.feed(note("TABLE_SCAN_COMPLETED", scanned_collection="public.t", status="SKIPPED"))
    assert not tracker.result().succeeded
    with pytest.raises(IncrementalSnapshotAbortedError, match="aborted the incremental snapshot"):
        tracker.feed(note("ABORTED", data_collections="public.t"))


# -- decoding an incremental read --------------------------------------------------------------

REAL = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "debezium_pg18_real_messages.json").read_text()
)


def incremental_read(**source: Any) -> tuple[bytes, bytes]:
    """A real create envelope turned into an incremental read, as Debezium 3.6 sends it: op
    r, snapshot "incremental", no lsn or txId, the window-close signal's sequence."""
    doc = json.loads(REAL[2]["value"])
    doc["payload"]["op"] = "r"
    doc["payload"]["source"].update(
        {
            "snapshot": "incremental",
            "lsn": None,
            "txId": None,
            "sequence": '["28806680","28806712"]',
        }
    )
    for name, value in source.items():
        if value is ...:
            del doc["payload"]["source"][name]
        else:
            doc["payload"]["source"][name] = value
    return REAL[2]["key"].encode(), json.dumps(doc).encode()


def decode(key: bytes, value: bytes) -> Any:
    return decode_message(key, value, topic="cdc.public.t", partition=0, offset=7)


def test_an_incremental_read_is_positioned_at_its_window_close() -> None:
    event = decode(*incremental_read())
    assert isinstance(event, ChangeEvent)
    assert event.op is Op.READ
    assert event.position.snapshot is True
    assert (event.position.lsn, event.position.commit_lsn, event.position.tx_id) == (
        28806712,
        28806680,
        None,
    )


@pytest.mark.parametrize("sequence", [..., None, "[]", '["1"]', "[null, null]", "nonsense"])
def test_an_incremental_read_without_a_usable_sequence_is_malformed(sequence: Any) -> None:
    with pytest.raises(DecodeError) as info:
        decode(*incremental_read(sequence=sequence))
    assert info.value.field == "source.sequence"


def test_only_incremental_reads_may_lack_an_lsn() -> None:
    with pytest.raises(DecodeError) as info:
        decode(*incremental_read(snapshot="true"))
    assert info.value.field == "source.lsn"
    # an lsn, when present, is the position
    event = decode(*incremental_read(lsn=28806999))
    assert isinstance(event, ChangeEvent) and event.position.lsn == 28806999
