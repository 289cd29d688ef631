"""What a reconciliation found, per table and per run: the report (pure), its JSON, markdown
and table forms (CLI, Prefect artifacts) and its audit rows (``reconcile_runs``)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from warehouse.base import HistoryReport, ReconcileRun

Key = tuple[Any, ...]
EXAMPLES = 5


def key_text(key: Key) -> str:
    return ", ".join(str(v) for v in key)


@dataclass
class TableResult:
    """One table's comparison. ``missing`` / ``extra`` / ``different`` are the confirmed
    differences found (settled: not explained by changes in flight); ``unsettled`` keys kept
    changing or weren't applied within the re-check rounds (listed, not counted as
    differences); ``remaining`` counts the
    differences left after a repair (all of them without one)."""

    table: str
    source_table: str
    mode: str
    source_rows: int = 0
    warehouse_rows: int = 0
    missing: list[Key] = field(default_factory=list)
    extra: list[Key] = field(default_factory=list)
    different: list[tuple[Key, str, Any, Any]] = field(default_factory=list)
    unsettled: list[Key] = field(default_factory=list)
    excluded: int = 0  # keys with open quarantined changes, left out
    stalled: bool = False  # the last re-check round timed out waiting for the consumer
    history: HistoryReport | None = None
    repaired: int = 0
    remaining: int | None = None
    rounds: int = 0
    ranges_checked: int = 0
    rows_fetched: int = 0
    rechecks: int = 0
    seconds: float = 0.0
    error: str | None = None
    note: str | None = None  # what a repair did (or why it did not)

    @property
    def diffs(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.different)

    @property
    def history_problems(self) -> int:
        h = self.history
        if h is None:
            return 0
        return (h.several_current + h.current_not_last + h.current_deleted + h.open_closed
                + h.empty_validity + h.overlaps + h.gaps)  # fmt: skip

    @property
    def left(self) -> int:
        """Differences still there at the end (after the repair, if any). Unsettled keys are
        not counted: they kept changing at the source through every re-check round, so the
        stream is rewriting them anyway; they are listed, not alarmed."""
        rows = self.diffs if self.remaining is None else self.remaining
        return rows + self.history_problems

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        if self.left:
            return "diffs"
        if self.unsettled and self.stalled:
            return "unsettled"  # the consumer didn't catch up: nothing could be confirmed
        return "repaired" if self.repaired else "ok"

    def examples(self, limit: int = EXAMPLES) -> str:
        parts = []
        if self.missing:
            parts.append("missing " + "; ".join(key_text(k) for k in self.missing[:limit]))
        if self.extra:
            parts.append("extra " + "; ".join(key_text(k) for k in self.extra[:limit]))
        for key, column, src, wh in self.different[:limit]:
            parts.append(f"key {key_text(key)} {column}: source {src!r} != warehouse {wh!r}")
        if self.unsettled:
            parts.append("unsettled " + "; ".join(key_text(k) for k in self.unsettled[:limit]))
        if self.history is not None and self.history.examples:
            parts.append("history " + "; ".join(self.history.examples[:limit]))
        if self.note:
            parts.append(self.note)
        if self.error:
            parts.append(self.error)
        return " | ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table, "source_table": self.source_table, "mode": self.mode,
            "status": self.status, "source_rows": self.source_rows,
            "warehouse_rows": self.warehouse_rows, "missing": len(self.missing),
            "extra": len(self.extra), "different": len(self.different),
            "unsettled": len(self.unsettled), "excluded": self.excluded,
            "history_problems": self.history_problems, "repaired": self.repaired,
            "remaining": self.left, "rounds": self.rounds,
            "ranges_checked": self.ranges_checked, "rows_fetched": self.rows_fetched,
            "rechecks": self.rechecks, "seconds": round(self.seconds, 3),
            "examples": {
                "missing": [list(map(str, k)) for k in self.missing[:EXAMPLES]],
                "extra": [list(map(str, k)) for k in self.extra[:EXAMPLES]],
                "different": [
                    {"key": list(map(str, k)), "column": c, "source": str(s), "warehouse": str(w)}
                    for k, c, s, w in self.different[:EXAMPLES]
                ],
                "history": list(self.history.examples[:EXAMPLES]) if self.history else [],
            },
            "error": self.error,
            "note": self.note,
        }  # fmt: skip


@dataclass
class RunReport:
    run_id: str
    started_at: dt.datetime
    finished_at: dt.datetime
    start_lsn: int | None
    repair: bool
    tables: list[TableResult]

    @property
    def ok(self) -> bool:
        return all(t.status in ("ok", "repaired") for t in self.tables)

    @property
    def rows_compared(self) -> int:
        return sum(max(t.source_rows, t.warehouse_rows) for t in self.tables)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "start_lsn": self.start_lsn,
            "repair": self.repair,
            "ok": self.ok,
            "tables": [t.to_json() for t in self.tables],
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per table (the table artifact)."""
        return [
            {"table": t.table, "status": t.status, "source rows": t.source_rows,
             "warehouse rows": t.warehouse_rows, "missing": len(t.missing),
             "extra": len(t.extra), "different": len(t.different),
             "history problems": t.history_problems, "unsettled": len(t.unsettled),
             "repaired": t.repaired, "seconds": round(t.seconds, 2)}
            for t in self.tables
        ]  # fmt: skip

    def markdown(self) -> str:
        lines = [
            f"# Reconciliation {self.run_id}",
            "",
            f"{'OK' if self.ok else 'DIFFERENCES'}: {len(self.tables)} tables, "
            f"{self.rows_compared} rows compared, started {self.started_at:%Y-%m-%d %H:%M:%S} "
            f"UTC at LSN {self.start_lsn}, repair {'on' if self.repair else 'off'}.",
            "",
            "| table | status | source rows | warehouse rows | missing | extra | different "
            "| history problems | unsettled | repaired |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in self.tables:
            lines.append(
                f"| {t.table} | {t.status} | {t.source_rows} | {t.warehouse_rows} | "
                f"{len(t.missing)} | {len(t.extra)} | {len(t.different)} | "
                f"{t.history_problems} | {len(t.unsettled)} | {t.repaired} |"
            )
        details = [(t.table, t.examples()) for t in self.tables if t.examples()]
        if details:
            lines += ["", "## Examples", ""]
            lines += [f"- **{name}**: {text.replace('|', '/')}" for name, text in details]
        return "\n".join(lines) + "\n"

    def audit_rows(self) -> list[ReconcileRun]:
        return [
            ReconcileRun(
                run_id=self.run_id, started_at=self.started_at, finished_at=self.finished_at,
                table=t.table, source_rows=t.source_rows, warehouse_rows=t.warehouse_rows,
                missing=len(t.missing), extra=len(t.extra), different=len(t.different),
                history_problems=t.history_problems, repaired=t.repaired, status=t.status,
                detail=json.dumps({"unsettled": len(t.unsettled), "remaining": t.left,
                                   "examples": t.examples()[:1000]}),
            )
            for t in self.tables
        ]  # fmt: skip


def last_result_text(run: ReconcileRun | None) -> str:
    """``cdc status``'s view of a table's last reconciliation."""
    if run is None:
        return "never"
    when = run.finished_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if run.status in ("ok", "repaired"):
        extra = f", {run.repaired} repaired" if run.repaired else ""
        return f"{run.status} at {when}{extra}"
    counts = (f"missing {run.missing}, extra {run.extra}, different {run.different}, "
              f"history {run.history_problems}")  # fmt: skip
    return f"{run.status} at {when} ({counts})"
