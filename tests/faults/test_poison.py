"""Fault scenario 7: poison messages of several kinds, produced into a table's topic while the
source keeps writing and the consumer runs. Each one is dead-lettered (with its reason), every
good change around them is applied, and the warehouse ends equal to the source."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import Producer
from fault_support import Workload, create_load_table, verify
from stack_support import read_topic

from cdc.local.pipeline import ReplicatorThread

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults


def _poisons(key: bytes, value: bytes) -> dict[str, tuple[bytes, bytes]]:
    """Broken variants of a real change message (key, value), by kind."""
    envelope = json.loads(value)

    def edited(**after: object) -> bytes:
        e = json.loads(value)
        e["payload"]["after"].update(after)
        return json.dumps(e).encode()

    unknown_op = json.loads(value)
    unknown_op["payload"]["op"] = "x"
    no_payload = {k: v for k, v in envelope.items() if k != "payload"}
    return {
        "not json": (key, b"{not json"),
        "binary garbage": (key, bytes(range(256))),
        "truncated": (key, value[: len(value) // 2]),
        "not an envelope": (key, b'{"hello": "world"}'),
        "no payload": (key, json.dumps(no_payload).encode()),
        "unknown op": (key, json.dumps(unknown_op).encode()),
        "wrong type": (key, edited(v="not a number")),
        "key not json": (b"\x00\x01", value),
    }


def test_poison_messages_of_several_kinds_are_dead_lettered_and_nothing_else_is_lost(
    pipeline: Pipeline,
) -> None:
    create_load_table(pipeline, "items")
    config = pipeline.configure(["public.items"], batch_size=200, linger_ms=50)
    topic = config.topic_for(config.table("items"))
    bootstrap = config.kafka.bootstrap_servers
    pipeline.start_debezium()
    pipeline.wait_published()
    pipeline.sql("UPDATE items SET v = v + 1 WHERE id = 1")  # a streamed update to copy
    pipeline.wait_published()
    [(key, value)] = [
        (m.key() or b"", m.value() or b"")
        for m in read_topic(bootstrap, topic)
        if m.value() and json.loads(m.value() or b"")["payload"]["op"] == "u"
    ]
    poisons = _poisons(key, value)

    replicator = ReplicatorThread(config).start()
    replicator.wait_caught_up()
    with Workload(pipeline.url, "items", rate=40):
        time.sleep(1)
        producer = Producer({"bootstrap.servers": bootstrap})
        for k, v in poisons.values():  # one at a time, between the workload's changes
            producer.produce(topic, key=k, value=v)
            producer.flush(10)
            time.sleep(0.3)
        time.sleep(1)
    pipeline.wait_published()
    stats = replicator.finish()

    letters = read_topic(bootstrap, config.dlq_topic_for(config.table("items")))
    assert stats.dead_letters == len(poisons) == len(letters), (
        stats.dead_letters,
        [m.headers() for m in letters],
    )
    assert {m.value() for m in letters} == {v for _, v in poisons.values()}
    assert not stats.parked
    verify(pipeline)
