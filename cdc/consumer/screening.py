"""Screening a batch against the tables' data contracts before it is applied.

Per table with a contract, the failing events leave the batch and, by ``on_violation``, become
quarantine rows (stored in the same warehouse transaction as the batch), dead letters (with the
failed checks in a header), or stop the run (nothing applied, offsets unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from cdc.consumer.fitting import fit_batch
from cdc.contracts import ContractError, Validator
from cdc.model import ChangeEvent, ColumnType
from warehouse.base import Capabilities, QuarantineRow, TableBatch
from warehouse.quarantine import key_text, quarantine_row
from warehouse.truncation import truncation_of


class ContractViolationError(Exception):
    """An event failed checks (the dead letter's error; the message names the checks)."""

    def __init__(self, table: str, checks: Sequence[str]) -> None:
        super().__init__(f"table {table!r}: failed checks: {'; '.join(checks)}")
        self.checks = tuple(checks)


class ContractStopError(Exception):
    """``on_violation: fail`` met a failing row, or a contract can't apply to its table."""


@dataclass
class Screened:
    batches: list[TableBatch]
    quarantine: list[QuarantineRow] = field(default_factory=list)
    dead_letters: list[tuple[ChangeEvent, ContractViolationError]] = field(default_factory=list)
    failed_checks: dict[str, int] = field(default_factory=dict)  # "table: check" -> rows


UNFIT_CHECK = "type"
"""The check name of values the warehouse column can't hold (cdc.consumer.fitting)."""


def fit(
    batches: Sequence[TableBatch],
    overrides: Mapping[str, Mapping[str, ColumnType]],
    caps: Capabilities,
    holding: set[str],
    out: Screened,
) -> list[TableBatch]:
    """Apply the column overrides and quarantine the events holding a value their column
    can't hold (always quarantine, whatever ``on_violation`` says: it is not a data contract).
    A table with such an event holds its keys' later changes from then on (``holding``)."""
    fitted: list[TableBatch] = []
    for batch in batches:
        table = batch.target.name
        if truncation_of(batch) is not None:  # no values to fit
            fitted.append(batch)
            continue
        batch, unfit = fit_batch(batch, overrides.get(table, {}), caps)
        if unfit:
            holding.add(table)
            bad = {u.index: u.reasons for u in unfit}
            for i, reasons in bad.items():
                checks = tuple(f"{UNFIT_CHECK}: {r}" for r in reasons)
                out.quarantine.append(
                    quarantine_row(batch.events[i], table, batch.schema, checks, "violation")
                )
                name = f"{table}: {UNFIT_CHECK}"
                out.failed_checks[name] = out.failed_checks.get(name, 0) + 1
            keep = [e for i, e in enumerate(batch.events) if i not in bad]
            batch = TableBatch(batch.target, batch.schema, keep)
        if table in holding and not batch.target.quarantine:
            batch = TableBatch(replace(batch.target, quarantine=True), batch.schema, batch.events)
        fitted.append(batch)
    return fitted


def screen(
    batches: Sequence[TableBatch],
    validators: Mapping[str, Validator],
    *,
    overrides: Mapping[str, Mapping[str, ColumnType]] | None = None,
    caps: Capabilities | None = None,
    holding: set[str] | None = None,
) -> Screened:
    """Split every batch into the events that pass their table's checks and the rest: first
    the values the warehouse can't hold (with ``caps``, after the column ``overrides``), then
    the data contracts."""
    out = Screened(batches=[])
    if caps is not None:
        batches = fit(
            batches, overrides or {}, caps, holding if holding is not None else set(), out
        )
    for batch in batches:
        validator = validators.get(batch.target.name)
        if validator is None or truncation_of(batch) is not None:  # a truncate has no row
            out.batches.append(batch)
            continue
        try:
            violations = validator.violations(batch)
        except ContractError as exc:
            raise ContractStopError(f"the data contract of {batch.target.name!r}: {exc}") from exc
        if not violations:
            out.batches.append(batch)
            continue
        table, mode = batch.target.name, validator.contract.on_violation
        for v in violations:
            for check in v.checks:
                name = f"{table}: {check}"
                out.failed_checks[name] = out.failed_checks.get(name, 0) + 1
        if mode == "fail":
            first = violations[0]
            event = batch.events[first.index]
            raise ContractStopError(
                f"table {table!r}: key {key_text(event, batch.schema)} at "
                f"{event.origin.topic}[{event.origin.partition}]@{event.origin.offset} fails "
                f"{'; '.join(first.checks)} ({len(violations)} failing rows in this batch). "
                "on_violation is `fail`: nothing of this batch was applied and no offset moved. "
                "Fix the rows at the source or the check in cdc.yaml, then start `cdc run` "
                "again (or set on_violation: quarantine)"
            )
        bad = {v.index: v.checks for v in violations}
        for i, checks in bad.items():
            event = batch.events[i]
            if mode == "quarantine":
                out.quarantine.append(
                    quarantine_row(event, table, batch.schema, checks, "violation")
                )
            else:
                out.dead_letters.append((event, ContractViolationError(table, checks)))
        keep = [e for i, e in enumerate(batch.events) if i not in bad]
        out.batches.append(TableBatch(batch.target, batch.schema, keep))
    return out
