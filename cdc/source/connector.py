"""Debezium PostgreSQL connector properties, derived from ``cdc.yaml`` by one function.

The same properties drive both runtimes, so topics, keys and envelopes are identical:

- ``embedded``: the Debezium engine inside a Python process (local stack, tests); offsets in a
  file, flushed after every batch.
- ``connect``: a connector on Kafka Connect (production), registered through its REST API.

The returned dict holds the database password in plain text, because it must reach Debezium;
print only :func:`redacted` copies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from cdc.config import Config
from cdc.names import include_regex

__all__ = [
    "CONNECTOR_CLASS",
    "HEARTBEAT_ACTION_QUERY",
    "NOTIFICATION_TOPIC_PREFIX",
    "debezium_properties",
    "notification_topic",
    "redacted",
    "table_include_list",
]

CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
HEARTBEAT_ACTION_QUERY = "SELECT pg_logical_emit_message(false, 'cdc-heartbeat', '')"
NOTIFICATION_TOPIC_PREFIX = "__debezium-notification"
_MASK = "********"
_SECRET_KEY = re.compile(r"password|secret|sasl\.jaas", re.IGNORECASE)


def table_include_list(config: Config) -> str:
    """Debezium ``table.include.list``: each configured table as a regex matching exactly its
    raw ``schema.table`` (case-sensitive; every character other than a letter or digit
    escaped, so commas, spaces and quotes in names are safe: cdc.names.include_regex)."""
    return ",".join(include_regex(t.source) for t in config.tables)


def notification_topic(config: Config) -> str:
    """Topic of Debezium's notifications (``notification.sink.topic.name``):
    ``__debezium-notification.<topic_prefix>`` unless ``source.debezium`` names another. The
    incremental snapshot progress and completion (cdc.source.signals) are read from it."""
    extras = config.source.debezium_extras()
    return extras.get(
        "notification.sink.topic.name",
        f"{NOTIFICATION_TOPIC_PREFIX}.{config.source.topic_prefix}",
    )


def debezium_properties(
    config: Config,
    *,
    runtime: Literal["embedded", "connect"],
    offsets_file: Path | None = None,
) -> dict[str, str]:
    """Connector properties for ``runtime``; ``offsets_file`` is required for ``embedded``.

    Types are kept lossless (``decimal.handling.mode=string``: numerics as their digits, NaN
    and ±Infinity included; microsecond times, intervals as ISO strings, bytea as bytes,
    hstore as JSON, source column types propagated, types Debezium has no converter for as
    their text); deletes are
    followed by tombstones; heartbeats keep the slot moving (with an action query writing a
    logical message, so the slot moves even while this database is idle and others write).
    ``source.debezium`` extras are applied last and win over everything derived here.

    With ``source.signal_table`` set, the signal table is the source signal channel
    (``signal.data.collection``; Debezium adds it to the filtered publication by itself, and
    its changes go to its own topic, which the consumer doesn't read) and notifications go to
    :func:`notification_topic` (``notification.enabled.channels=sink``), where the end of an
    incremental snapshot is seen.
    """
    source = config.source
    props: dict[str, str] = {
        "connector.class": CONNECTOR_CLASS,
        "plugin.name": "pgoutput",
        "database.hostname": source.host,
        "database.port": str(source.port),
        "database.user": source.user,
        "database.password": source.password.get_secret_value(),
        "database.dbname": source.database,
        "topic.prefix": source.topic_prefix,
        "slot.name": source.slot_name,
        "publication.name": source.publication_name,
        "publication.autocreate.mode": "filtered",
        "table.include.list": table_include_list(config),
        "snapshot.mode": source.snapshot_mode,
        # string: NaN and ±Infinity numerics arrive (precise sends them as NULL), exactly
        "decimal.handling.mode": "string",
        "time.precision.mode": "adaptive_time_microseconds",
        "interval.handling.mode": "string",
        "binary.handling.mode": "bytes",
        "hstore.handling.mode": "json",
        "column.propagate.source.type": ".*",
        # types without a Debezium converter (composites, multiranges, geometric types,
        # tsquery, pg_lsn...) arrive as their text instead of being left out of the events
        "include.unknown.datatypes": "true",
        "tombstones.on.delete": "true",
        # TRUNCATE events too (Debezium skips them by default, `t`): the consumer applies
        # each one in order with the table's other changes (docs/guarantees.md)
        "skipped.operations": "none",
        "heartbeat.interval.ms": str(source.heartbeat_interval_ms),
        "provide.transaction.metadata": "false",
    }
    if source.heartbeat_interval_ms > 0:
        # Heartbeats alone don't move the slot of an idle database: Debezium confirms only LSNs
        # it received, and WAL of other databases decodes to nothing. A logical message in this
        # database, on every heartbeat, gives it one (no table, no privilege beyond LOGIN).
        props["heartbeat.action.query"] = HEARTBEAT_ACTION_QUERY
    if source.signal_table is not None:
        props.update(
            {
                "signal.data.collection": source.signal_table,
                "signal.enabled.channels": "source",
                "notification.enabled.channels": "sink",
                "notification.sink.topic.name": notification_topic(config),
            }
        )
    if runtime == "embedded":
        if offsets_file is None:
            raise ValueError("the embedded runtime needs offsets_file (Debezium's offset store)")
        props.update(
            {
                "name": source.connector_name,
                "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
                "offset.storage.file.filename": str(offsets_file),
                "offset.flush.interval.ms": "0",
                "poll.interval.ms": "100",
                "max.batch.size": "2048",
                "key.converter.schemas.enable": "true",
                "value.converter.schemas.enable": "true",
            }
        )
    elif runtime == "connect":
        if offsets_file is not None:
            raise ValueError("offsets_file applies to the embedded runtime only")
        props.update(
            {
                "tasks.max": "1",
                "key.converter": JSON_CONVERTER,
                "value.converter": JSON_CONVERTER,
                "key.converter.schemas.enable": "true",
                "value.converter.schemas.enable": "true",
            }
        )
    else:
        raise ValueError(f"unknown runtime {runtime!r}: expected 'embedded' or 'connect'")
    props.update(source.debezium_extras())
    return props


def redacted(props: Mapping[str, object]) -> dict[str, object]:
    """A copy safe to print: values of keys naming a password (or secret, JAAS config) masked.

    Nested mappings (e.g. the ``config`` of a Kafka Connect response) are redacted too.
    """
    out: dict[str, object] = {}
    for key, value in props.items():
        if isinstance(value, Mapping):
            out[key] = redacted(value)
        elif _SECRET_KEY.search(key) and value not in (None, ""):
            out[key] = _MASK
        else:
            out[key] = value
    return out
