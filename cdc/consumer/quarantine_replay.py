"""``cdc quarantine replay``: apply quarantined changes once their check or data is fixed.

Per table, the open quarantined changes are decoded again from their raw Kafka message and
checked against the table's current contract. In origin order, per key, every change up to the
first one that still fails is applied through the normal apply path (position guard, TOAST,
scd2 versions) and marked replayed in the same transaction; that failing change and the key's
later changes stay in quarantine, in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cdc.config import Config
from cdc.consumer.fitting import fit_batch, override_type
from cdc.contracts import ContractError, Validator
from cdc.decoding import DecodeError, Skip, decode_message
from cdc.model import ChangeEvent, ColumnType
from warehouse.base import (
    Capabilities,
    QuarantinedChange,
    QuarantineRow,
    TableBatch,
    TableTarget,
    Warehouse,
)


@dataclass
class TableReplay:
    table: str
    replayed: int = 0
    still_open: int = 0
    reasons: list[str] = field(default_factory=list)  # why the first few still wait


def _decode(row: QuarantineRow) -> ChangeEvent | str:
    try:
        result = decode_message(
            row.raw_key, row.raw_value, topic=row.topic, partition=row.partition, offset=row.offset
        )
    except DecodeError as exc:
        return f"can't be decoded: {exc}"
    if isinstance(result, Skip):
        return "not a row change"
    return result


def plan_replay(
    rows: Sequence[QuarantinedChange],
    validator: Validator | None,
    target: TableTarget,
    overrides: Mapping[str, ColumnType] | None = None,
    caps: Capabilities | None = None,
) -> tuple[list[tuple[QuarantineRow, ChangeEvent]], dict[str, str]]:
    """Which rows to apply now (origin order), and why each blocked key still waits. With
    ``caps``, values are fitted to the warehouse first (after the column ``overrides``): a
    value that still doesn't fit keeps its key waiting."""
    decoded = [(c.row, _decode(c.row)) for c in rows]
    failing: dict[int, tuple[str, ...]] = {}
    if caps is not None:
        changes = [e for _, e in decoded if not isinstance(e, str)]
        if changes:
            fitted, unfit = fit_batch(
                TableBatch(target, changes[-1].schema, changes), overrides or {}, caps
            )
            by_id = dict(zip(map(id, changes), fitted.events, strict=True))
            reasons = {id(changes[u.index]): u.reasons for u in unfit}
            for i, (row, event) in enumerate(decoded):
                if isinstance(event, str):
                    continue
                why = reasons.get(id(event))
                fitted_event = by_id[id(event)]
                decoded[i] = (
                    row,
                    f"still can't be stored: {'; '.join(why)}" if why else fitted_event,
                )
    events = [(r, e) for r, e in decoded if not isinstance(e, str)]
    if validator is not None and events:
        batch_events = [e for _, e in events]
        target_batch = TableBatch(target, batch_events[-1].schema, batch_events)
        try:
            failing = {v.index: v.checks for v in validator.violations(target_batch)}
        except ContractError as exc:
            return [], {"*": str(exc)}
    position = {id(e): i for i, (_, e) in enumerate(events)}
    blocked: dict[str, str] = {}
    ready: list[tuple[QuarantineRow, ChangeEvent]] = []
    for row, event in decoded:
        if row.key in blocked:
            continue
        if isinstance(event, str):
            blocked[row.key] = f"offset {row.offset}: {event}"
            continue
        checks = failing.get(position[id(event)])
        if checks:
            blocked[row.key] = f"offset {row.offset}: still fails {'; '.join(checks)}"
            continue
        ready.append((row, event))
    return ready, blocked


def replay_quarantine(
    config: Config, warehouse: Warehouse, tables: Sequence[str] = ()
) -> list[TableReplay]:
    """Replay the open quarantined changes of the given tables (default: every table)."""
    chosen = [config.table(t) for t in tables] if tables else list(config.tables)
    results = []
    for table in chosen:
        target = config.table_target(table)
        rows = warehouse.list_quarantine(target.name)
        result = TableReplay(target.name)
        results.append(result)
        if not rows:
            continue
        contract = config.contract_for(table)
        overrides = {name: override_type(o.type) for name, o in table.columns.items()}
        ready, blocked = plan_replay(
            rows,
            Validator(contract) if contract else None,
            target,
            overrides,
            warehouse.capabilities,
        )
        if ready:
            events = [e for _, e in ready]
            batch = TableBatch(target, events[-1].schema, events)
            warehouse.apply([batch], [], resolve=[r for r, _ in ready])
        result.replayed = len(ready)
        result.still_open = len(rows) - len(ready)
        result.reasons = [f"key {k}: {why}" for k, why in list(blocked.items())[:5]]
    return results
