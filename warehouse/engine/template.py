"""The engine-neutral warehouse: every read and bookkeeping method on the engine hooks.

:class:`SqlWarehouse` is what an engine subclasses: it inherits the apply pipeline
(:mod:`warehouse.engine.apply`) and the DDL (:mod:`warehouse.engine.core`) and adds here the
reads (live rows, history, registry, quarantine, offsets), reconciliation (checksums, rows and
split points per key range), the audit and cost bookkeeping. Each method is one unit of work
(:meth:`~warehouse.engine.core.EngineCore._session`), its driver errors mapped once there; a
read of bookkeeping that does not exist yet answers "nothing" (the engine's ``_missing``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlglot import exp

from cdc.model import ColumnType, Kind, TableSchema
from warehouse import checksum, cost_sql, sql
from warehouse.base import (
    COST_REPORT_COLUMNS,
    RECONCILE_COLUMNS,
    AppliedPosition,
    ComputeRow,
    CostReportRow,
    HistoryReport,
    KeyRange,
    QuarantinedChange,
    QuarantineRow,
    RangeChecksum,
    ReconcileRun,
    RegisteredTable,
    TableTarget,
    TerminalWarehouseError,
    compute_values,
    cost_report_row,
    cost_report_values,
    history_report,
    reconcile_run,
    reconcile_values,
)
from warehouse.engine.apply import ApplyTemplate
from warehouse.engine.core import (
    I64,
    QUARANTINE_KINDS,
    RECONCILE_KINDS,
    TEXT,
    TSTZ,
    Field,
    meta_kinds,
)
from warehouse.sql import TableRef, TargetTable

Rows = list[tuple[dict[str, Any], int]]
_F64 = ColumnType(Kind.FLOAT64)


class SqlWarehouse(ApplyTemplate):
    """A SQL engine as the warehouse: subclasses supply the hooks (see
    :mod:`warehouse.engine.core`) and what only they know (``table_storage``)."""

    def _fields(self, kinds: Sequence[tuple[str, ColumnType]]) -> list[Field]:
        return [Field(n, self._type(k), k) for n, k in kinds]

    # ---- offsets, registry, quarantine --------------------------------------------------------

    def load_offsets(self, consumer_group: str) -> dict[tuple[str, int], int]:
        def work(c: Any) -> dict[tuple[str, int], int]:
            rows = self._exec(c, sql.select_offsets(self._ref("offsets")), [consumer_group])
            return {(topic, int(p)): int(n) for topic, p, n in rows.fetchall()}

        return dict(self._or_missing(work, {}))

    def registered(self, name: str) -> RegisteredTable | None:
        def work(c: Any) -> RegisteredTable | None:
            doc = self._registry_doc(c, name)
            if doc is None:
                return None
            return RegisteredTable(name=name, source_table=doc[0], mode=doc[1],
                                   key=tuple(doc[2]["schema"]["key"]))  # fmt: skip

        found: RegisteredTable | None = self._or_missing(work, None, table=name)
        return found

    def list_quarantine(
        self, table: str | None = None, *, include_replayed: bool = False
    ) -> list[QuarantinedChange]:
        if not self._bookkept:
            self.ensure_bookkeeping()
        query = sql.quarantine_list(self._ref("quarantine"), table is not None, include_replayed)
        query.set("order", None)  # ordered outside (the fetch wraps the query)
        names = (*sql.QUARANTINE_COLUMNS, "quarantined_at", "replayed_at")
        fields = self._fields([(n, QUARANTINE_KINDS.get(n, TEXT)) for n in names])
        with self._session(table) as c:
            params = [table] if table is not None else []
            found = self._fetch(c, query, fields, params, order=sql.QUARANTINE_ORIGIN)
        out = []
        for r in found:
            row = QuarantineRow(
                table=r["table_name"], key=r["key_json"], topic=r["topic"],
                partition=int(r["partition"]), offset=int(r["offset"]), lsn=int(r["lsn"]),
                op=r["op"], checks=tuple(json.loads(r["checks"])), reason=r["reason"],
                raw_key=r["raw_key"], raw_value=r["raw_value"],
            )  # fmt: skip
            out.append(QuarantinedChange(row, r["quarantined_at"], r["replayed_at"]))
        return out

    # ---- live rows and history --------------------------------------------------------------

    def _existing_columns(self, c: Any, ref: TableRef) -> dict[str, exp.DataType]:
        stored = self._columns_of(c, ref)
        if not stored:
            raise TerminalWarehouseError(f"table {ref.schema}.{ref.name} does not exist")
        return stored

    def _live_query(
        self, c: Any, target: TableTarget
    ) -> tuple[exp.Select, list[tuple[str, exp.DataType]]]:
        """Live rows: mirror rows not soft-deleted, or current scd2 versions; data columns."""
        ref = TableRef(self.schema, target.name)
        stored = self._existing_columns(c, ref)
        hidden = sql.reserved_columns(target)
        columns = [(n, t) for n, t in stored.items() if n not in hidden]
        if target.mode == "scd2":
            query = sql.select_live(ref, columns, None).where(sql.col(target.scd2.is_current))
            return query, columns
        deleted = target.metadata.deleted
        return sql.select_live(ref, columns, deleted if deleted in stored else None), columns

    def fetch_table(self, target: TableTarget) -> list[dict[str, Any]]:
        with self._session(target.name) as c:
            query, columns = self._live_query(c, target)
            kinds = self._kinds(c, target.name)
            return self._fetch(c, query, [Field(n, t, kinds.get(n)) for n, t in columns])

    def _history_table(self, c: Any, target: TableTarget) -> TargetTable:
        """The statements' view of a registered scd2 table (key from the registry)."""
        if target.mode != "scd2":
            raise TerminalWarehouseError(f"table {target.name!r} is not an scd2 table")
        doc = self._registry_doc(c, target.name)
        if doc is None:
            raise TerminalWarehouseError(
                f"table {target.name!r} has no history yet (nothing replicated to it)"
            )
        ref = TableRef(self.schema, target.name)
        return sql.history_table(ref, doc[2]["schema"]["key"], target.metadata, target.scd2)

    def fetch_history(
        self, target: TableTarget, key: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every version (or those of one key, given as the key columns' values in text)."""
        with self._session(target.name) as c:
            m = self._history_table(c, target)
            columns = list(self._existing_columns(c, m.target).items())
            kinds = self._kinds(c, target.name) | meta_kinds(target)
            query, params = sql.of_key(sql.select_history(m, columns), m, key)
            fields = [Field(n, t, kinds.get(n)) for n, t in columns]
            return self._fetch(c, query, fields, params, order=[*m.key, m.meta.lsn])

    def close_history_gaps(self, target: TableTarget) -> HistoryReport:
        with self._session(target.name) as c, self._atomic(c):
            self._exec(c, sql.scd2_close_gaps(self._history_table(c, target)))
        return self.history_report(target)

    def history_report(self, target: TableTarget) -> HistoryReport:
        strict = target.scd2.granularity == "transaction"
        with self._session(target.name) as c:
            m = self._history_table(c, target)
            counts = self._exec(c, sql.history_counts(m, strict)).fetchone()
            examples = self._exec(c, sql.history_examples(m, strict)).fetchall()
        assert counts is not None
        return history_report(target.name, counts, examples, sql.HISTORY_CHECKS)

    def last_applied(self, target: TableTarget) -> AppliedPosition | None:
        meta, ref = target.metadata, TableRef(self.schema, target.name)
        fields = self._fields([(meta.lsn, I64), (meta.source_ts, TSTZ), (meta.loaded_at, TSTZ)])
        with self._session(target.name) as c:
            if not self._columns_of(c, ref):
                return None  # not created yet: nothing applied
            [row] = self._fetch(c, sql.newest_applied(ref, meta), fields)
        lsn = row[meta.lsn]
        return AppliedPosition(None if lsn is None else int(lsn), row[meta.source_ts],
                               row[meta.loaded_at])  # fmt: skip

    def dropped_columns(self, target: TableTarget) -> list[str]:
        def work(c: Any) -> list[str]:
            stored = self._columns_of(c, TableRef(self.schema, target.name))
            doc = self._registry_doc(c, target.name) if stored else None
            if doc is None:
                return []
            source = [col["name"] for col in doc[2]["schema"]["columns"]]
            return sql.dropped_columns(stored, source, target, doc[2])

        found: list[str] = self._or_missing(work, [], table=target.name)
        return found

    def row_counts(self) -> dict[str, int]:
        """Live rows per registered table (soft-deleted rows excluded; current versions)."""
        registry = exp.select(sql.col("table_name"), sql.col("schema_json"))
        counts: dict[str, int] = {}
        with self._session(None) as c:
            for name, doc in self._exec(c, registry.from_(self._ref("tables").expr())).fetchall():
                row = self._exec(c, sql.live_rows_count(self.schema, name, doc)).fetchone()
                counts[name] = int(row[0]) if row else 0
        return counts

    # ---- reconciliation ---------------------------------------------------------------------

    def _reconcile_view(
        self, c: Any, target: TableTarget
    ) -> tuple[TableRef, dict[str, exp.DataType], exp.Expr | None] | None:
        """The table, its stored columns and its live-row filter (None: no such table)."""
        ref = TableRef(self.schema, target.name)
        stored = self._columns_of(c, ref)
        if not stored:
            return None
        return ref, stored, checksum.live_condition(target, set(stored))

    def checksums(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[KeyRange]
    ) -> list[RangeChecksum]:
        with self._session(target.name) as c:
            view = self._reconcile_view(c, target)
            if view is None:
                return [RangeChecksum(0, 0) for _ in ranges]
            ref, stored, live = view
            query, params = checksum.checksum_query(
                ref, schema.columns, schema.key, ranges, self.checksum_dialect, live=live,
                present=set(stored),
            )  # fmt: skip
            found = self._exec(c, query, params).fetchall()
        sums = {int(i): RangeChecksum(int(n), int(s or 0)) for i, n, s in found}
        return [sums[i] for i in range(len(ranges))]

    def _rows(self, c: Any, target: TableTarget, schema: TableSchema, build: Any) -> Rows:
        view = self._reconcile_view(c, target)
        if view is None:
            return []
        ref, stored, live = view
        lsn = target.metadata.lsn
        columns = [(n, stored[n]) for n in schema.names if n in stored]
        projections = list(sql.select_live(ref, columns, None).expressions)
        projections.append(exp.alias_(sql.col(lsn), sql.ident(lsn)))
        query, params = build(ref, projections, live)
        fields = [Field(n, t, schema.column(n).type) for n, t in columns]
        fields.append(Field(lsn, self._type(I64), I64))
        out = []
        for row in self._fetch(c, query, fields, params):
            position = int(row.pop(lsn) or 0)
            out.append(({n: row.get(n) for n in schema.names}, position))
        return out

    def range_rows(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[KeyRange]
    ) -> Rows:
        key_columns = [schema.column(k) for k in schema.key]
        out: Rows = []
        with self._session(target.name) as c:
            for rng in ranges:

                def build(ref: TableRef, projections: list[exp.Expr], live: Any,
                          rng: KeyRange = rng) -> Any:  # fmt: skip
                    return checksum.range_rows_query(
                        ref, projections, key_columns, rng, self.checksum_dialect, live=live
                    )

                out += self._rows(c, target, schema, build)
        return out

    def key_rows(
        self, target: TableTarget, schema: TableSchema, keys: Sequence[tuple[Any, ...]]
    ) -> Rows:
        out: Rows = []
        with self._session(target.name) as c:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]

                def build(ref: TableRef, projections: list[exp.Expr], live: Any,
                          chunk: Sequence[tuple[Any, ...]] = chunk) -> Any:  # fmt: skip
                    query = checksum.keys_rows_query(ref, projections, schema.key, len(chunk),
                                                     live=live)  # fmt: skip
                    return query, [v for k in chunk for v in k]

                out += self._rows(c, target, schema, build)
        return out

    def split_keys(
        self, target: TableTarget, schema: TableSchema, ranges: Sequence[tuple[KeyRange, int]]
    ) -> list[list[tuple[Any, ...]]]:
        key_columns = [schema.column(k) for k in schema.key]
        out: list[list[tuple[Any, ...]]] = []
        with self._session(target.name) as c:
            view = self._reconcile_view(c, target)
            if view is None:
                return [[] for _ in ranges]
            ref, stored, live = view
            fields = [Field(k.name, stored[k.name], k.type) for k in key_columns]
            for rng, step in ranges:
                query, params = checksum.split_query(
                    ref, key_columns, rng, step, self.checksum_dialect, live=live
                )
                query.set("order", None)  # ordered outside (the fetch wraps the query)
                rows = self._fetch(c, query, fields, params, order=schema.key)
                out.append([tuple(r[k] for k in schema.key) for r in rows])
        return out

    def record_reconcile(self, runs: Sequence[ReconcileRun]) -> None:
        insert = sql.reconcile_insert(self._ref("reconcile_runs"), self._timestamp())

        def work(c: Any) -> None:
            for run in runs:
                self._exec(c, insert, reconcile_values(run))

        self._bookkeeping_write(work)

    def last_reconciles(self) -> dict[str, ReconcileRun]:
        query = sql.reconcile_latest(self._ref("reconcile_runs"))
        rows: list[dict[str, Any]] = self._or_missing(
            lambda c: self._fetch(c, query, self._fields(RECONCILE_KINDS)), []
        )
        return {r["table_name"]: reconcile_run([r[n] for n in RECONCILE_COLUMNS]) for r in rows}

    # ---- measured compute and cost reports (cdc.costs) --------------------------------------

    def record_compute(self, rows: Sequence[ComputeRow]) -> None:
        if rows:
            insert = cost_sql.compute_insert(self._ref("compute_log"), len(rows),
                                             self._timestamp())  # fmt: skip
            self._append_cost(insert, [v for r in rows for v in compute_values(r)])

    def compute_totals(self, since: dt.datetime | None) -> dict[tuple[str, str], float]:
        query = cost_sql.compute_totals(self._ref("compute_log"), since is not None,
                                        self._timestamp())  # fmt: skip
        params = [since.isoformat()] if since else []
        found: list[tuple[Any, ...]] = self._or_missing(
            lambda c: self._exec(c, query, params).fetchall(), []
        )
        return {(str(job), str(table)): float(s or 0) for job, table, s in found}

    def record_cost_report(self, rows: Sequence[CostReportRow]) -> None:
        if rows:
            insert = cost_sql.cost_report_insert(self._ref("cost_reports"), len(rows),
                                                 self._timestamp())  # fmt: skip
            self._append_cost(insert, [v for r in rows for v in cost_report_values(r)])

    def cost_history(self) -> list[CostReportRow]:
        kinds = [(n, TSTZ if n == "at" else I64 if n in ("rows", "bytes")
                  else _F64 if n in ("storage_cost", "compute_cost") else TEXT)
                 for n in COST_REPORT_COLUMNS]  # fmt: skip
        query = cost_sql.cost_history(self._ref("cost_reports"))
        order = ("at", "report_id", "table_name", "tier")
        rows: list[dict[str, Any]] = self._or_missing(
            lambda c: self._fetch(c, query, self._fields(kinds), order=order), []
        )
        return [cost_report_row([r[n] for n in COST_REPORT_COLUMNS]) for r in rows]
