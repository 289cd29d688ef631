"""Lag awareness: a difference is reported only once the consumer has applied everything the
source had committed when the rows were read.

A re-check reads the differing keys' source rows in one snapshot together with its position
``L`` (``pg_current_wal_lsn()`` in the same REPEATABLE READ transaction), then waits until the
warehouse holds every change up to ``L``: a WAL marker written after ``L`` is confirmed by the
replication slot (so Debezium published everything before it), and the consumer's stored
offsets reach the end of the table's topic as it was then. Only then are the warehouse rows
read. A key still differing is **confirmed** when its warehouse row is not newer than ``L``
(``_cdc_lsn``: it was not changed after the snapshot) and its source row still reads the same
afterwards (it was not changed meanwhile either). Other keys are re-checked in the next round,
up to a bounded number of rounds; what is left is reported as *unsettled*, not as a difference.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cdc.compare import normalise
from cdc.config import Config, TableConfig
from cdc.consumer.partitions import log_ends
from cdc.reconcile.rows import Key, Row, RowsDiff
from warehouse.base import Warehouse


@dataclass
class Settled:
    """One re-check round's verdict over the keys it re-read."""

    confirmed: RowsDiff = field(default_factory=RowsDiff)
    pending: set[Key] = field(default_factory=set)


def _same(a: Row | None, b: Row | None) -> bool:
    if a is None or b is None:
        return a is b
    return {k: normalise(v) for k, v in a.items()} == {k: normalise(v) for k, v in b.items()}


def settle(
    diff: RowsDiff,
    keys: Set[Key],
    position: int,
    applied: bool,
    later_source: Mapping[Key, Row],
) -> Settled:
    """Split the keys that still differ (``diff``, computed from source rows read at
    ``position`` and warehouse rows read once ``applied`` up to it, or the wait timed out) into
    confirmed ones and ones to re-check (see the module docstring); ``later_source``: the
    differing keys' source rows read again after the warehouse."""
    out = Settled()
    for key in diff.keys & keys:
        newer = diff.lsn.get(key, 0) > position
        moved = not _same(diff.source.get(key), later_source.get(key))
        if not applied or newer or moved:
            out.pending.add(key)
            continue
        if key in diff.missing:
            out.confirmed.missing[key] = diff.missing[key]
        elif key in diff.extra:
            out.confirmed.extra.add(key)
        else:
            out.confirmed.different[key] = diff.different[key]
        if key in diff.source:
            out.confirmed.source[key] = diff.source[key]
        if key in diff.lsn:
            out.confirmed.lsn[key] = diff.lsn[key]
    return out


class LagProbe:
    """Waits until the consumer has applied a table's changes up to a source position."""

    def __init__(self, config: Config, warehouse: Warehouse, source: psycopg.Connection[Any]):
        self.config = config
        self.warehouse = warehouse
        self.source = source

    def _slot_confirmed(self) -> int | None:
        row = self.source.execute(
            "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (self.config.source.slot_name,),
        ).fetchone()
        if row is None:
            return None
        return int(row[0]) if row[0] is not None else -1

    def _marker(self, position: int) -> int:
        """A WAL position the slot must pass: a logical message written now (it needs the
        REPLICATION privilege; without it, ``position`` itself)."""
        try:
            row = self.source.execute(
                "SELECT pg_logical_emit_message(false, 'cdc-reconcile', '') - '0/0'::pg_lsn"
            ).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            return position
        return int(row[0]) if row else position

    def applied(self, table: TableConfig, position: int, timeout: float) -> bool:
        """True once every change up to ``position`` is in the warehouse; False on timeout.
        Without a replication slot nothing streams, so nothing is in flight: True."""
        deadline = time.monotonic() + timeout
        if self._slot_confirmed() is None:
            return True
        marker = self._marker(position)
        while (self._slot_confirmed() or -1) < marker:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        topic = self.config.topic_for(table)
        ends = log_ends(self.config, [topic]).get(topic, {})
        while True:
            stored = self.warehouse.load_offsets(self.config.kafka.group_id)
            if all(stored.get((topic, p), low) >= end for p, (low, end) in ends.items()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
