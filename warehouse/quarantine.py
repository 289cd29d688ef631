"""Pure quarantine rules: a key's text form, and holding later changes of quarantined keys.

Order is what matters: once a change of a key is quarantined, applying that key's later
changes would put the table in a state the source never had in that order (and, for scd2,
versions out of sequence). So every later change of the key waits in quarantine too, marked
``held``, until ``cdc quarantine replay`` applies them all in their original order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cdc.model import ChangeEvent, TableSchema
from warehouse.base import QuarantineRow, TableBatch

# key text -> (partition, lowest open quarantined offset) of one table
OpenKeys = Mapping[str, tuple[int, int]]


def key_text(event: ChangeEvent, schema: TableSchema) -> str:
    """The event's key as JSON text, values in key-column order (str() for non-JSON types)."""
    return json.dumps([_plain(event.key.get(k)) for k in schema.key], default=str)


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def quarantine_row(
    event: ChangeEvent, table: str, schema: TableSchema, checks: Sequence[str], reason: str
) -> QuarantineRow:
    return QuarantineRow(
        table=table,
        key=key_text(event, schema),
        topic=event.origin.topic,
        partition=event.origin.partition,
        offset=event.origin.offset,
        lsn=event.position.lsn,
        op=event.op.value,
        checks=tuple(checks),
        reason="held" if reason == "held" else "violation",
        raw_key=event.raw_key,
        raw_value=event.raw_value,
    )


def open_keys(
    rows: Iterable[tuple[str, str, int, int]], resolved: Sequence[QuarantineRow]
) -> dict[str, tuple[int, int]]:
    """Per key, (partition, lowest offset) of the open quarantined rows read as
    (key, topic, partition, offset), leaving out the ``resolved`` origins (being replayed)."""
    done = {(r.topic, r.partition, r.offset) for r in resolved}
    out: dict[str, tuple[int, int]] = {}
    for key, topic, partition, offset in rows:
        if (topic, int(partition), int(offset)) in done:
            continue
        seen = out.get(key)
        if seen is None or (int(partition), int(offset)) < seen:
            out[key] = (int(partition), int(offset))
    return out


def first_open(rows: Sequence[QuarantineRow], stored: OpenKeys) -> dict[str, tuple[int, int]]:
    """Per key, the earliest open quarantined change: stored ones and this call's new rows."""
    out = dict(stored)
    for r in rows:
        seen = out.get(r.key)
        if seen is None or (r.partition, r.offset) < seen:
            out[r.key] = (r.partition, r.offset)
    return out


def hold(batch: TableBatch, open_keys: OpenKeys) -> tuple[TableBatch, list[QuarantineRow]]:
    """Split off the changes that must wait behind an earlier quarantined change of their key
    (same partition, later offset; any offset on another partition)."""
    if not open_keys:
        return batch, []
    keep: list[ChangeEvent] = []
    held: list[QuarantineRow] = []
    name = batch.target.name
    for event in batch.events:
        first = open_keys.get(key_text(event, batch.schema))
        origin = event.origin
        if first is not None and (origin.partition != first[0] or origin.offset > first[1]):
            held.append(quarantine_row(event, name, batch.schema, (), "held"))
        else:
            keep.append(event)
    if not held:
        return batch, []
    return TableBatch(batch.target, batch.schema, keep), held
