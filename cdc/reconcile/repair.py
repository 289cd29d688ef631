"""Repair: re-write differing keys in the warehouse from the source, at a fresh position.

Missing and different keys become snapshot reads (``op = r``) of the source rows, extra keys
deletes, all at ``lsn = pg_current_wal_lsn()`` read after the rows were read: newer than any
damaged stored row, so the position guard lets them in, and older than any change committed
later, so the stream still wins over the repair. They go through ``Warehouse.apply`` like any
batch (one transaction; no Kafka offsets move), so mirror and history tables are repaired by
the same rules as the stream (a history table gets a new version with ``_cdc_op = 'r'``)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cdc.compare import normalise
from cdc.model import (
    END_OF_DAY,
    ChangeEvent,
    ColumnType,
    FarDate,
    FarTimestamp,
    KafkaOrigin,
    Kind,
    Op,
    SourcePosition,
    TableSchema,
)
from warehouse.base import SourceRows, TableBatch, TableTarget

Key = tuple[Any, ...]
ORIGIN_TOPIC = "cdc.reconcile"
_FAR = (FarDate, FarTimestamp, type(END_OF_DAY))


def model_value(ct: ColumnType, value: Any) -> Any:
    """A source value (``source_connection``) in the form the apply path stages: times with a
    zone in UTC (a TIMETZ with ``tzinfo=UTC``, as Debezium sends it), lists element-wise;
    far dates and timestamps (BC, ±infinity) and 24:00:00 as they are."""
    if value is None or value.__class__ in _FAR or isinstance(value, float):
        return value  # a float as it is: NaN too (normalise() gives its comparison text)
    if ct.kind is Kind.ARRAY and ct.element is not None:
        return [model_value(ct.element, v) for v in value]
    if ct.kind is Kind.TIMETZ:
        return normalise(value).replace(tzinfo=dt.UTC)
    if ct.kind is Kind.TIMESTAMPTZ:
        return value.astimezone(dt.UTC)
    return normalise(value)


def repair_events(
    target: TableTarget,
    schema: TableSchema,
    upserts: Sequence[Mapping[str, Any]],
    deletes: Sequence[Key],
    lsn: int,
    now_us: int | None = None,
) -> list[ChangeEvent]:
    """Snapshot reads of ``upserts`` (source rows) and deletes of ``deletes`` at ``lsn``."""
    commit = now_us if now_us is not None else time.time_ns() // 1000
    position = SourcePosition(lsn=lsn, tx_id=None, commit_ts_us=commit, snapshot=True)
    types = [c.type for c in schema.columns]
    rows = [
        tuple(model_value(t, row.get(name)) for t, name in zip(types, schema.names, strict=True))
        for row in upserts
    ]
    origin = KafkaOrigin(ORIGIN_TOPIC, 0, 0)
    events = SourceRows(target, schema, rows, position, origin).events()
    for j, key in enumerate(deletes, start=len(events)):
        keyed = dict(zip(schema.key, key, strict=True))
        events.append(
            ChangeEvent(
                op=Op.DELETE, schema=schema, key=keyed, before=dict(keyed), after=None,
                position=position, origin=KafkaOrigin(ORIGIN_TOPIC, 0, j),
            )
        )  # fmt: skip
    return events


def repair_batch(
    target: TableTarget,
    schema: TableSchema,
    upserts: Sequence[Mapping[str, Any]],
    deletes: Sequence[Key],
    lsn: int,
) -> TableBatch:
    """The batch ``Warehouse.apply`` repairs one table with."""
    return TableBatch(target, schema, repair_events(target, schema, upserts, deletes, lsn))
