"""Decode one Kafka message from a Debezium PostgreSQL topic into a ChangeEvent (or a Skip).

Both JSON converter layouts are accepted: ``{"schema": {...}, "payload": {...}}``
(``schemas.enable=true``) and the bare payload (``schemas.enable=false``). Every message repeats
its schema, so the parsed row plan is cached by the schema's JSON text; for the common compact
``{"schema":...,"payload":...}`` layout only the payload is parsed once a schema is cached.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeVar

import orjson

from cdc.decoding.schema import StructPlan, hint_plan, infer_plan, infer_type, struct_plan
from cdc.decoding.values import DEFAULT_TOAST_PLACEHOLDER, DecodeError, decoder_for_type
from cdc.model import ChangeEvent, KafkaOrigin, Op, SourcePosition, TableId, TableSchema

SkipReason = Literal["tombstone", "heartbeat", "transaction", "schema_change"]


@dataclass(frozen=True, slots=True)
class Skip:
    """A message that must not reach the apply path, and why."""

    reason: SkipReason


HEARTBEAT_TOPIC_PREFIX: Final = "__debezium-heartbeat"
HEARTBEAT_SCHEMA: Final = "io.debezium.connector.common.Heartbeat"
_OPS: Final = {op.value: op for op in Op}
_SNAPSHOT_TRUE: Final = frozenset(
    {
        "true",
        "last",
        "first",
        "first_in_data_collection",
        "last_in_data_collection",
        "incremental",
    }
)
_CACHE_LIMIT: Final = 4096
_P = TypeVar("_P")
_SCHEMA_PREFIX: Final = b'{"schema":'
_PAYLOAD_SEP: Final = b',"payload":'


@dataclass(slots=True)
class _ValuePlan:
    """What a value schema means: a skip reason, or the row plan of a table topic."""

    skip: SkipReason | None
    row: StructPlan | None
    tables: dict[tuple[TableId, tuple[str, ...]], TableSchema] = field(default_factory=dict)


_VALUE_PLANS: dict[bytes, _ValuePlan] = {}
_KEY_PLANS: dict[bytes, StructPlan] = {}
_HINT_PLANS: dict[int, tuple[TableSchema, StructPlan]] = {}


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def _value_plan(schema: Mapping[str, Any]) -> _ValuePlan:
    """Classify a value schema and build the row plan of an envelope schema."""
    name = schema.get("name")
    if isinstance(name, str):
        if name == HEARTBEAT_SCHEMA:
            return _ValuePlan("heartbeat", None)
        if name.endswith(".TransactionMetadataValue"):
            return _ValuePlan("transaction", None)
        if name.endswith(".SchemaChangeValue"):
            return _ValuePlan("schema_change", None)
    fields = schema.get("fields")
    if schema.get("type") != "struct" or not isinstance(fields, list):
        raise DecodeError("value schema is not a struct", field="schema")
    by_name = {f.get("field"): f for f in fields if isinstance(f, Mapping)}
    row = by_name.get("after") or by_name.get("before")
    if not isinstance(row, Mapping):
        raise DecodeError("envelope schema has no before/after struct", field="schema")
    return _ValuePlan(None, struct_plan(row, "schema.after"))


def _split(raw: bytes) -> tuple[bytes, bytes] | None:
    """Split compact ``{"schema":S,"payload":P}`` into S and P without parsing. A literal
    ``,"payload":`` cannot occur inside a JSON string, so if S parses it is the whole schema."""
    if raw.startswith(_SCHEMA_PREFIX) and raw.endswith(b"}"):
        i = raw.find(_PAYLOAD_SEP, len(_SCHEMA_PREFIX))
        if i > 0:
            return raw[len(_SCHEMA_PREFIX) : i], raw[i + len(_PAYLOAD_SEP) : -1]
    return None


def _loads(raw: bytes, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}", field=what) from None


def _parse_with_schema(
    raw: bytes, cache: dict[bytes, _P], build: Callable[[dict[str, Any]], _P], what: str
) -> tuple[_P, Any] | tuple[None, Any]:
    """(plan, payload) of a JSON-converter message; plan is None when it has no schema.

    Plans are cached by the schema's JSON text. The compact layout is split without parsing
    the schema; anything else (or a failed split) takes the full parse.
    """
    parts = _split(raw)
    if parts is not None:
        schema_bytes, payload_bytes = parts
        plan = cache.get(schema_bytes)
        if plan is None:
            try:
                schema = orjson.loads(schema_bytes)
            except orjson.JSONDecodeError:
                schema = None
            if isinstance(schema, dict):
                plan = build(schema)
                _remember(cache, schema_bytes, plan)
        if plan is not None:
            try:
                return plan, orjson.loads(payload_bytes)
            except orjson.JSONDecodeError:
                pass  # the full parse below reports it
    doc = _loads(raw, what)
    if isinstance(doc, dict) and "schema" in doc and "payload" in doc:
        schema = doc["schema"]
        if schema is None:
            return None, doc["payload"]
        if not isinstance(schema, dict):
            raise DecodeError("schema is not an object", field=f"{what}.schema")
        schema_bytes = orjson.dumps(schema)
        plan = cache.get(schema_bytes)
        if plan is None:
            plan = build(schema)
            _remember(cache, schema_bytes, plan)
        return plan, doc["payload"]
    return None, doc


def _payload_skip(payload: Mapping[str, Any]) -> SkipReason | None:
    """Skip reason of a payload without ``op`` (schemaless metadata messages)."""
    if payload.get("status") in ("BEGIN", "END") and "event_count" in payload:
        return "transaction"
    if "ddl" in payload and "tableChanges" in payload:
        return "schema_change"
    return None


def _position(source: Mapping[str, Any]) -> SourcePosition:
    """The change's position. An incremental snapshot read (``snapshot: "incremental"``) has
    no ``lsn`` and no ``txId``: Debezium emits a chunk's rows when it streams the chunk's
    window-close signal, so its ``sequence`` is that signal's ``[last_commit_lsn, lsn]``, and
    the read's position is that ``lsn`` (see :func:`_incremental_read_lsn`)."""
    lsn = source.get("lsn")
    if lsn is None and source.get("snapshot") == "incremental":
        lsn = _incremental_read_lsn(source.get("sequence"))
    if lsn.__class__ is not int:
        raise DecodeError(f"expected int lsn, got {lsn!r}", field="source.lsn")
    tx_id = source.get("txId")
    if tx_id is not None and tx_id.__class__ is not int:
        raise DecodeError(f"expected int txId, got {tx_id!r}", field="source.txId")
    ts_us = source.get("ts_us")
    if ts_us.__class__ is not int:
        ts_ms = source.get("ts_ms")
        if ts_ms.__class__ is not int:
            raise DecodeError("no int ts_us or ts_ms", field="source.ts_us")
        ts_us = ts_ms * 1000
    snapshot_raw = source.get("snapshot")
    if snapshot_raw is None or snapshot_raw == "false" or snapshot_raw is False:
        snapshot = False
    elif snapshot_raw is True or snapshot_raw in _SNAPSHOT_TRUE:
        snapshot = True
    else:
        raise DecodeError(f"unknown snapshot marker {snapshot_raw!r}", field="source.snapshot")
    return SourcePosition(lsn, tx_id, ts_us, snapshot, _commit_lsn(source.get("sequence")))


def _sequence_items(sequence: Any) -> Any:
    """``source.sequence`` (a JSON array in a string) parsed; None when it doesn't parse."""
    if not isinstance(sequence, str):
        return None
    try:
        return orjson.loads(sequence)
    except orjson.JSONDecodeError:
        return None


def _incremental_read_lsn(sequence: Any) -> int:
    """Position of an incremental snapshot read: the LSN of the window-close signal that
    released its chunk (the second element of ``sequence``).

    Debezium drops a key from the chunk when a change of it streams between the window's open
    and close, so an emitted row holds the state of every change streamed before the close:
    each has a lower LSN, and the guard lets the read repair a stored row written by any of
    them. Every later change of the key streams after the close with a higher LSN and wins.
    (One exception the single-LSN guard can't see: a transaction that wrote the key before the
    close but commits after it streams after the read with a lower LSN and is refused, so the
    read's value stays until the key's next change.)
    """
    items = _sequence_items(sequence)
    last = items[-1] if isinstance(items, list) and len(items) == 2 else None
    try:
        return int(last)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise DecodeError(
            f"incremental snapshot read without lsn and with sequence {sequence!r}: expected "
            "'[last_commit_lsn, lsn]' of its window-close signal",
            field="source.sequence",
        ) from None


def _commit_lsn(sequence: Any) -> int | None:
    """First element of ``source.sequence`` (a JSON array in a string) as an int, or None."""
    if sequence is None:
        return None
    items = _sequence_items(sequence)
    if not isinstance(items, list):
        raise DecodeError(f"sequence {sequence!r} is not a JSON array", field="source.sequence")
    first = items[0] if items else None
    if first is None:
        return None
    try:
        return int(first)
    except (ValueError, TypeError):
        raise DecodeError(f"invalid commit LSN {first!r}", field="source.sequence") from None


def _key_struct_plan(schema: dict[str, Any]) -> StructPlan:
    return struct_plan(schema, "key")


def _decode_key(
    raw: bytes | None, row: StructPlan, placeholder: str
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Key column names (in order) and decoded key values."""
    if not raw:
        return (), {}
    plan, payload = _parse_with_schema(raw, _KEY_PLANS, _key_struct_plan, "key")
    if not isinstance(payload, dict):
        raise DecodeError(f"expected a key object, got {type(payload).__name__}", field="key")
    if plan is None:  # schemaless key: decode with the row's column types
        decoded: dict[str, Any] = {}
        for name, value in payload.items():
            decoder = row.decoder(name)
            if value is None or decoder is None:
                decoded[name] = value if decoder else _infer_value(name, value, placeholder)
                continue
            try:
                decoded[name] = decoder(value, placeholder)
            except DecodeError as exc:
                raise exc.within(f"key.{name}") from None
        return tuple(payload), decoded
    values = plan.decode(payload, placeholder, "key")
    return tuple(name for name, _, _ in plan.fields), values


def _infer_value(name: str, value: Any, placeholder: str) -> Any:
    if value is None:
        return None
    try:
        return decoder_for_type(infer_type(value))(value, placeholder)
    except DecodeError as exc:
        raise exc.within(f"key.{name}") from None


def _schemaless_plan(payload: Mapping[str, Any], hint: TableSchema | None) -> StructPlan:
    if hint is not None:
        cached = _HINT_PLANS.get(id(hint))
        if cached is None or cached[0] is not hint:
            cached = (hint, hint_plan(hint))
            _remember(_HINT_PLANS, id(hint), cached)
        return cached[1]
    row = payload.get("after")
    if not isinstance(row, dict):
        row = payload.get("before")
    return infer_plan(row if isinstance(row, dict) else {})


def decode_message(
    key: bytes | None,
    value: bytes | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    schema_hint: TableSchema | None = None,
    toast_placeholder: str = DEFAULT_TOAST_PLACEHOLDER,
) -> ChangeEvent | Skip:
    """Decode one Debezium message. Raises :class:`DecodeError` (only) if it is malformed.

    ``schema_hint`` types the values of schemaless envelopes (ignored when the envelope carries
    its schema); ``toast_placeholder`` is the connector's ``unavailable.value.placeholder``.
    """
    if value is None:
        return Skip("tombstone")
    if topic.startswith(HEARTBEAT_TOPIC_PREFIX):
        return Skip("heartbeat")
    try:
        return _decode(key, value, topic, partition, offset, schema_hint, toast_placeholder)
    except DecodeError:
        raise
    except Exception as exc:  # the contract: DecodeError, never another exception type
        raise DecodeError(f"malformed message ({type(exc).__name__}: {exc})") from exc


def _decode(
    key: bytes | None,
    value: bytes,
    topic: str,
    partition: int,
    offset: int,
    hint: TableSchema | None,
    placeholder: str,
) -> ChangeEvent | Skip:
    plan, payload = _parse_with_schema(value, _VALUE_PLANS, _value_plan, "value")
    if plan is not None and plan.skip is not None:
        return Skip(plan.skip)
    if not isinstance(payload, dict):
        raise DecodeError("missing payload object", field="payload")
    op = _OPS.get(payload.get("op"))  # type: ignore[arg-type]
    if op is None:
        if "op" not in payload:
            reason = _payload_skip(payload)
            if reason is not None:
                return Skip(reason)
            raise DecodeError("missing op", field="op")
        raise DecodeError(f"unknown op {payload['op']!r}", field="op")
    source = payload.get("source")
    if not isinstance(source, dict):
        raise DecodeError("missing source block", field="source")
    schema_name, table_name = source.get("schema"), source.get("table")
    if not isinstance(schema_name, str) or not isinstance(table_name, str):
        raise DecodeError("missing source schema/table", field="source.table")
    table = TableId(schema_name, table_name)
    position = _position(source)

    row = plan.row if plan is not None else _schemaless_plan(payload, hint)
    assert row is not None  # a plan without skip always has a row plan
    before_raw, after_raw = payload.get("before"), payload.get("after")
    before = None if before_raw is None else row.decode_lenient(before_raw, placeholder)
    after = None if after_raw is None else row.decode(after_raw, placeholder, "after")
    if after is None and op in (Op.CREATE, Op.UPDATE, Op.READ):
        raise DecodeError(f"op {op.value!r} without after", field="after")
    key_names, key_values = _decode_key(key, row, placeholder)

    if plan is not None:
        schema = plan.tables.get((table, key_names))
        if schema is None:
            schema = TableSchema(table, row.columns, key_names)
            plan.tables[(table, key_names)] = schema
    elif hint is not None and hint.table == table and hint.key == key_names:
        schema = hint
    elif hint is not None:
        schema = replace(hint, table=table, key=key_names)
    else:
        schema = TableSchema(table, row.columns, key_names)
    return ChangeEvent(
        op=op,
        schema=schema,
        key=key_values,
        before=before,
        after=after,
        position=position,
        origin=KafkaOrigin(topic, partition, offset),
        raw_value=value,
        raw_key=key,
    )
