"""cdc.source.connector: Debezium properties derived from the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.config import Config, parse_config
from cdc.source.connector import debezium_properties, notification_topic, redacted

CONFIG = """\
source:
  host: db.example
  port: 6543
  database: shop
  user: replicator
  password: ${PGPASSWORD}
  slot_name: my_slot
  publication_name: my_pub
  topic_prefix: shop
  snapshot_mode: no_data
  heartbeat_interval_ms: 2500
  connector_name: shop-postgres
  debezium:
    snapshot.mode: when_needed
    max.queue.size: 16384
    skipped.operations: none
kafka:
  bootstrap_servers: 127.0.0.1:9092
warehouse:
  type: duckdb
tables:
  - name: public.customers
  - name: orders
  - name: sales.order_lines
"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, env={"PGPASSWORD": "pw-123"})


INCLUDED = r"(?-i:public\.customers),(?-i:public\.orders),(?-i:sales\.order_lines)"

COMMON = {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "plugin.name": "pgoutput",
    "database.hostname": "db.example",
    "database.port": "6543",
    "database.user": "replicator",
    "database.password": "pw-123",
    "database.dbname": "shop",
    "topic.prefix": "shop",
    "slot.name": "my_slot",
    "publication.name": "my_pub",
    "publication.autocreate.mode": "filtered",
    "table.include.list": INCLUDED,
    "decimal.handling.mode": "string",
    "time.precision.mode": "adaptive_time_microseconds",
    "interval.handling.mode": "string",
    "binary.handling.mode": "bytes",
    "hstore.handling.mode": "json",
    "column.propagate.source.type": ".*",
    "include.unknown.datatypes": "true",
    "tombstones.on.delete": "true",
    "heartbeat.interval.ms": "2500",
    "heartbeat.action.query": "SELECT pg_logical_emit_message(false, 'cdc-heartbeat', '')",
    "provide.transaction.metadata": "false",
    # signals (source.signal_table, on by default) and notifications
    "signal.data.collection": "public.debezium_signal",
    "signal.enabled.channels": "source",
    "notification.enabled.channels": "sink",
    "notification.sink.topic.name": "__debezium-notification.shop",
    # extras, last and winning
    "snapshot.mode": "when_needed",
    "max.queue.size": "16384",
    "skipped.operations": "none",
}


def test_embedded_properties(config: Config, tmp_path: Path) -> None:
    props = debezium_properties(config, runtime="embedded", offsets_file=tmp_path / "off.dat")
    assert props == {
        **COMMON,
        "name": "shop-postgres",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(tmp_path / "off.dat"),
        "offset.flush.interval.ms": "0",
        "poll.interval.ms": "100",
        "max.batch.size": "2048",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
    }
    assert all(isinstance(v, str) for v in props.values())


def test_connect_properties(config: Config) -> None:
    props = debezium_properties(config, runtime="connect")
    converter = "org.apache.kafka.connect.json.JsonConverter"
    assert props == {
        **COMMON,
        "tasks.max": "1",
        "key.converter": converter,
        "value.converter": converter,
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
    }
    assert "offset.storage" not in props and "name" not in props


def test_runtime_arguments_checked(config: Config, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="offsets_file"):
        debezium_properties(config, runtime="embedded")
    with pytest.raises(ValueError, match="embedded runtime only"):
        debezium_properties(config, runtime="connect", offsets_file=tmp_path / "x")
    with pytest.raises(ValueError, match="unknown runtime"):
        debezium_properties(config, runtime="standalone")  # type: ignore[arg-type]


def test_snapshot_mode_from_config_without_extras() -> None:
    text = CONFIG.split("  debezium:")[0] + CONFIG.split("skipped.operations: none\n")[1]
    props = debezium_properties(parse_config(text, env={"PGPASSWORD": ""}), runtime="connect")
    assert props["snapshot.mode"] == "no_data"
    assert props["database.password"] == ""


def test_extras_win_over_derived(config: Config) -> None:
    text = CONFIG.replace(
        "    skipped.operations: none\n",
        "    skipped.operations: none\n"
        "    tombstones.on.delete: false\n"
        "    plugin.name: decoderbufs\n",
    )
    props = debezium_properties(parse_config(text, env={"PGPASSWORD": "x"}), runtime="connect")
    assert props["tombstones.on.delete"] == "false"  # YAML bool -> property string
    assert props["plugin.name"] == "decoderbufs"


def test_secret_extras_reach_debezium(config: Config) -> None:
    text = CONFIG.replace("    skipped.operations: none\n", "    database.sslpassword: ${SSLPW}\n")
    cfg = parse_config(text, env={"PGPASSWORD": "x", "SSLPW": "ssl-secret"})
    assert "ssl-secret" not in repr(cfg)
    props = debezium_properties(cfg, runtime="embedded", offsets_file=Path("o.dat"))
    assert props["database.sslpassword"] == "ssl-secret"
    assert redacted(props)["database.sslpassword"] == "********"


def test_table_include_list_escapes_dots_only_between_parts() -> None:
    text = CONFIG.replace("  - name: orders\n", "  - name: s1.t$1\n")
    props = debezium_properties(parse_config(text, env={"PGPASSWORD": ""}), runtime="connect")
    assert props["table.include.list"] == (
        r"(?-i:public\.customers),(?-i:s1\.t\x{24}1),(?-i:sales\.order_lines)"
    )


def test_redacted(config: Config, tmp_path: Path) -> None:
    props = debezium_properties(config, runtime="embedded", offsets_file=tmp_path / "o")
    safe = redacted(props)
    assert safe["database.password"] == "********"
    assert "pw-123" not in str(safe)
    assert {k: v for k, v in safe.items() if k != "database.password"} == {
        k: v for k, v in props.items() if k != "database.password"
    }
    assert props["database.password"] == "pw-123"  # the original is untouched
    nested = redacted({"name": "c", "config": {"database.password": "p", "x": "1"}})
    assert nested == {"name": "c", "config": {"database.password": "********", "x": "1"}}
    assert redacted({"database.password": ""}) == {"database.password": ""}


NAME_LINE = "  connector_name: shop-postgres\n"


def test_signal_table_setting_and_notification_topic() -> None:
    text = CONFIG.replace(NAME_LINE, NAME_LINE + "  signal_table: ops.signals\n")
    cfg = parse_config(text, env={"PGPASSWORD": ""})
    props = debezium_properties(cfg, runtime="connect")
    assert props["signal.data.collection"] == "ops.signals"
    # the signal table is not a replicated table: Debezium adds it to the publication itself
    assert props["table.include.list"] == INCLUDED
    assert notification_topic(cfg) == "__debezium-notification.shop"

    moved = text.replace(
        "    skipped.operations: none\n", "    notification.sink.topic.name: ops.notes\n"
    )
    cfg = parse_config(moved, env={"PGPASSWORD": ""})
    assert notification_topic(cfg) == "ops.notes"
    assert (
        debezium_properties(cfg, runtime="connect")["notification.sink.topic.name"] == "ops.notes"
    )


def test_signals_off_leave_no_signal_or_notification_properties() -> None:
    text = CONFIG.replace(NAME_LINE, NAME_LINE + "  signal_table: null\n")
    props = debezium_properties(parse_config(text, env={"PGPASSWORD": ""}), runtime="connect")
    assert not [k for k in props if k.startswith(("signal.", "notification."))]
