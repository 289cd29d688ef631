"""Dead letters on the real chain: poison messages land in the table's dead-letter topic with
their reason in headers, the good messages after them are applied, and `cdc dlq list` /
`cdc dlq replay` work once the cause is fixed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from confluent_kafka import Message, Producer
from fault_support import verify
from stack_support import read_topic

from cdc.config import Config
from cdc.consumer.dlq import (
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_FAILED_AT,
    H_OFFSET,
    H_PARTITION,
    H_TOPIC,
)
from cdc.decoding import DecodeError, decode_message
from cdc.local.pipeline import compare_all

if TYPE_CHECKING:
    from stack_support import Pipeline

pytestmark = pytest.mark.faults

NOT_JSON = b"{not json"
POISON_ID = 9001  # exists only in the poison envelope, never at the source
NOT_JSON_ID = 9002


def _headers(msg: Message) -> dict[str, str]:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v.decode() if isinstance(v, bytes) else (v or "") for k, v in pairs}


def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> int:
    """Produce one message (its own record batch) and return the offset it got."""
    offsets: list[int] = []

    def delivered(err: Any, msg: Message) -> None:
        assert err is None, err
        offsets.append(msg.offset() or 0)

    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=key, value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    [offset] = offsets
    return offset


def _cdc(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "cdc", *args],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    return result


def _replay(config_path: str) -> int:
    out = _cdc("dlq", "replay", "--config", config_path).stdout
    found = re.search(r"replayed (\d+) dead letters", out)
    assert found, out
    return int(found.group(1))


def _poison_envelope(template: bytes, key_template: bytes) -> tuple[bytes, bytes]:
    """A real insert's key and value, edited into an insert of POISON_ID with no price, at an
    LSN after everything else. A valid envelope the decoder accepts (price is optional)."""
    value = json.loads(template)
    payload = value["payload"]
    assert payload["op"] == "c"
    payload["after"].update(id=POISON_ID, price=None, note="no price")
    source = payload["source"]
    lsn = source["lsn"] + 1_000_000
    source.update(lsn=lsn, txId=source["txId"] + 1_000, sequence=json.dumps([str(lsn), str(lsn)]))
    key = json.loads(key_template)
    key["payload"]["id"] = POISON_ID
    return json.dumps(key).encode(), json.dumps(value).encode()


def _decimal(value: Decimal, scale: int) -> str:
    """A numeric as the connector sends it (``decimal.handling.mode=string``): its digits."""
    return format(value.quantize(Decimal(1).scaleb(-scale)), "f")


def _warehouse(config: Config, statement: str) -> list[tuple[Any, ...]]:
    """One statement on the DuckDB file (no consumer holds it: each run has finished)."""
    with duckdb.connect(str(config.warehouse.path)) as con:
        return con.execute(statement).fetchall()


def _diffs_besides_the_poison(pipeline: Pipeline) -> list[str]:
    """Source vs warehouse, every column: differences other than the poison row."""
    problems = []
    for d in compare_all(pipeline.config_, pipeline.url):
        if d.missing or d.different or [k for k in d.extra if k != (POISON_ID,)]:
            problems.append(d.describe())
    return problems


def test_poison_is_dead_lettered_good_changes_flow_on_and_replay_applies_fixed_letters(
    pipeline: Pipeline,
) -> None:
    """Two poison messages in the middle of normal changes:

    * ``{not json`` (with a valid key) is refused by the decoder: DecodeError;
    * a valid insert envelope whose value doesn't fit the warehouse column: the warehouse table
      has ``price NOT NULL`` (a rule added on the warehouse side) and the insert has no price.
      The decoder accepts it; DuckDB raises a ConstraintException, mapped to DataError, and
      the bisection isolates that one event while the rest of its batch is applied.
      A decimal too big for its ``numeric(5,2)`` does not get that far (checked below): the
      decoder checks the declared precision, and the warehouse widens its columns by itself
      to any type an envelope declares, so "widen the column" is not a fix there is to make.

    Both land in ``<topic>.dlq`` with their key/value bytes untouched and the error class,
    message and original topic/partition/offset in headers (the broker auto-creates the
    dead-letter topic with several partitions: the letters are read from all of them); the
    good changes around them are applied and the consumer keeps running.
    After the fix (dropping the NOT NULL) `cdc dlq replay` re-publishes both letters to the
    table's topic: the insert is applied (row 9001 exists in the warehouse only, never at the
    source); the invalid JSON can never be fixed, so it is dead-lettered again, as a new letter
    pointing at its replayed offset. A second replay sends only that new letter, a third one
    nothing; each replay of the invalid JSON comes back as one more letter.
    """
    pipeline.sql("CREATE TABLE items (id int PRIMARY KEY, price numeric(5,2), note text)")
    pipeline.sql("INSERT INTO items SELECT g, g * 1.25, 'seed' FROM generate_series(1, 20) g")
    config = pipeline.configure(["public.items"], linger_ms=50)
    cfg_path = str(pipeline.workdir / "cdc.yaml")
    bootstrap = config.kafka.bootstrap_servers
    topic = config.topic_for(config.table("items"))
    dlq = config.dlq_topic_for(config.table("items"))
    pipeline.start_debezium()
    pipeline.wait_published()  # the snapshot is done: the next insert streams as op 'c'
    pipeline.sql("INSERT INTO items VALUES (21, 9.99, 'streamed')")  # a real insert to copy
    stats = pipeline.replicate_until_caught_up()
    assert stats.dead_letters == 0
    verify(pipeline)
    # the warehouse's own rule: every item has a price
    _warehouse(config, "ALTER TABLE items ALTER price SET NOT NULL")

    [(insert_key, insert_value)] = [
        (m.key() or b"", m.value() or b"")
        for m in read_topic(bootstrap, topic)
        if b'"streamed"' in (m.value() or b"")
    ]
    poison_key, poison_value = _poison_envelope(insert_value, insert_key)
    # why not a decimal too big for the column: the decoder already refuses it
    too_big = json.loads(poison_value)
    too_big["payload"]["after"]["price"] = _decimal(Decimal("123456789.12"), 2)
    with pytest.raises(DecodeError, match=r"does not fit numeric\(5,2\)"):
        decode_message(poison_key, json.dumps(too_big).encode(), topic=topic, partition=0, offset=0)
    not_json_key = poison_key.replace(str(POISON_ID).encode(), str(NOT_JSON_ID).encode())
    not_json_offset = _produce(bootstrap, topic, not_json_key, NOT_JSON)
    poison_offset = _produce(bootstrap, topic, poison_key, poison_value)

    # normal changes after the poison, all in the same batches as it
    pipeline.sql("INSERT INTO items VALUES (22, 1.50, 'after'), (23, 0.01, 'cheap')")
    pipeline.sql("UPDATE items SET price = 999.99, note = 'updated' WHERE id = 1")
    pipeline.sql("UPDATE items SET price = 123.45 WHERE id = 23")
    pipeline.sql("DELETE FROM items WHERE id IN (2, 21)")
    stats = pipeline.replicate_until_caught_up()  # finish() re-raises if the consumer stopped

    assert stats.dead_letters == 2
    assert not stats.parked
    assert stats.events == 6  # every good change above was applied...
    verify(pipeline)  # ...exactly (the poison row was not)

    # both letters, bytes untouched, the reason and the origin in headers
    letters = read_topic(bootstrap, dlq)
    assert len(letters) == 2
    by_class = {_headers(m)[H_ERROR_CLASS]: m for m in letters}
    assert set(by_class) == {"DecodeError", "DataError"}
    expected = {
        "DecodeError": (not_json_key, NOT_JSON, not_json_offset, "invalid JSON"),
        "DataError": (poison_key, poison_value, poison_offset, "NOT NULL constraint failed"),
    }
    for error_class, (key, value, offset, reason) in expected.items():
        letter = by_class[error_class]
        headers = _headers(letter)
        assert letter.key() == key, error_class
        assert letter.value() == value, error_class
        assert reason in headers[H_ERROR_MESSAGE], headers
        assert headers[H_TOPIC] == topic
        assert headers[H_PARTITION] == "0"
        assert headers[H_OFFSET] == str(offset)
        assert int(headers[H_FAILED_AT]) > 0

    out = _cdc("dlq", "list", "--json", "--config", cfg_path).stdout
    listed = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert sorted((r["topic"], r["partition"], r["offset"]) for r in listed) == sorted(
        (dlq, m.partition(), m.offset()) for m in letters
    )
    assert {r["headers"][H_ERROR_CLASS]: r["headers"][H_OFFSET] for r in listed} == {
        "DecodeError": str(not_json_offset),
        "DataError": str(poison_offset),
    }
    assert sorted(r["original"]["offset"] for r in listed) == sorted(
        [not_json_offset, poison_offset]
    )
    assert {r["original"]["partition"] for r in listed} == {0}
    # the table shows the dead-letter partition and offset of each letter too
    table = _cdc("dlq", "list", "--config", cfg_path).stdout
    rows = [[c.strip() for c in line.split("│")[1:4]] for line in table.splitlines()]
    assert sorted(r for r in rows if r and r[0] == dlq) == sorted(
        [dlq, str(m.partition()), str(m.offset())] for m in letters
    )

    # the fix, then the replay: the insert is applied, the invalid JSON comes back
    _warehouse(config, "ALTER TABLE items ALTER price DROP NOT NULL")
    assert _replay(cfg_path) == 2
    stats = pipeline.replicate_until_caught_up()
    assert stats.dead_letters == 1
    assert not stats.parked
    assert _warehouse(config, f"SELECT price, note FROM items WHERE id = {POISON_ID}") == [
        (None, "no price")
    ]
    assert _diffs_besides_the_poison(pipeline) == []

    replayed = [m for m in read_topic(bootstrap, topic) if (m.offset() or 0) > poison_offset]
    replayed_not_json = [m.offset() for m in replayed if m.value() == NOT_JSON]
    assert len(replayed_not_json) == 1
    assert [(m.key(), m.value()) for m in replayed if m.value() in (NOT_JSON, poison_value)] in (
        [(not_json_key, NOT_JSON), (poison_key, poison_value)],
        [(poison_key, poison_value), (not_json_key, NOT_JSON)],
    )
    letters = read_topic(bootstrap, dlq)
    assert len(letters) == 3
    [again] = [m for m in letters if _headers(m)[H_OFFSET] == str(replayed_not_json[0])]
    assert _headers(again)[H_ERROR_CLASS] == "DecodeError"
    assert again.key() == not_json_key and again.value() == NOT_JSON

    # replay remembers its progress: only the letter that arrived since, then nothing
    assert _replay(cfg_path) == 1
    assert _replay(cfg_path) == 0
    stats = pipeline.replicate_until_caught_up()
    assert stats.dead_letters == 1  # the invalid JSON, once more
    assert len(read_topic(bootstrap, dlq)) == 4
    assert _diffs_besides_the_poison(pipeline) == []
