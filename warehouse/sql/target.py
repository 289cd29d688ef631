"""The statements' view of one target table (:class:`TargetTable`), built and checked from a
batch (:func:`target_table`): which columns, key, metadata and delete markers it has."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlglot import exp

from cdc.model import ColumnType
from cdc.names import case_collisions, display
from warehouse.arrow import Stage
from warehouse.base import (
    IncompatibleSchemaChangeError,
    MetadataColumns,
    Scd2Options,
    TableBatch,
    TableTarget,
    TerminalWarehouseError,
)
from warehouse.sql.names import S, StagedValue, TableRef, col
from warehouse.types import metadata_types


@dataclass(frozen=True, slots=True)
class TargetTable:
    """What the apply statements need to know about one target table.

    ``columns`` are the data columns in schema order (stage column ``c<i>`` is column i);
    ``markers`` is the delete-marker table (key columns + lsn), None with soft deletes and
    for a table without a primary key (``key`` empty: :mod:`warehouse.keyless`);
    ``scd2`` is set for history tables; ``value`` reads a staged column as its target type
    (default: ``CAST``; the Snowflake adapter parses JSON text into VARIANT and ARRAY).
    """

    target: TableRef
    markers: TableRef | None
    columns: tuple[tuple[str, exp.DataType], ...]
    key: tuple[str, ...]
    meta: MetadataColumns
    soft_delete: bool
    scd2: Scd2Options | None = None
    value: StagedValue | None = None

    def index(self, name: str) -> int:
        return [c for c, _ in self.columns].index(name)

    def staged(self, name: str) -> exp.Expr:
        """The stage's value of a data column, cast to the column's SQL type."""
        i = self.index(name)
        if self.value is not None:
            return self.value(col(Stage.data(i), S), self.columns[i][1])
        return exp.Cast(this=col(Stage.data(i), S), to=self.columns[i][1].copy())

    def key_match(self, other: str, staged: bool = True) -> exp.Expr:
        """``other.k = <stage key>`` for every key column, ANDed."""
        conds = [
            exp.EQ(this=col(k, other), expression=self.staged(k) if staged else col(k, S))
            for k in self.key
        ]
        return exp.and_(*conds)


def reserved_columns(target: TableTarget) -> set[str]:
    """The names a target table keeps for itself: every metadata column, and for a history
    table the validity columns. Source columns may not use them; reads leave them out."""
    names = {n for n, _ in metadata_types(target.metadata, True)} | {target.metadata.row}
    return names | (set(target.scd2.names) if target.mode == "scd2" else set())


def keyless_refusal(target: TableTarget) -> str:
    """Why a table without a primary key can't have the table's settings (mode ``scd2``,
    ``soft_delete``, quarantining contracts), with what to do; empty when it can."""
    if target.mode == "scd2":
        return (
            "mode 'scd2' keeps the history of each key: rows without a key have no identity "
            "from one change to the next, so there is no history to keep. Set `mode: mirror` "
            "for this table in cdc.yaml, or add a primary key at the source (ALTER TABLE ... ADD "
            "PRIMARY KEY) and re-snapshot the table"
        )
    if target.soft_delete:
        return (
            "soft_delete marks a deleted key's row: of equal rows without a key none is the "
            "one deleted, and a deleted row's mark could not tell a re-insert from a new row. "
            "Set `soft_delete: false` for this table in cdc.yaml, or add a primary key at the "
            "source (ALTER TABLE ... ADD PRIMARY KEY) and re-snapshot the table"
        )
    if target.quarantine:
        return (
            "on_violation 'quarantine' holds a key's later changes behind its quarantined "
            "one, and a replayed change of a table without a key is older than the table's "
            "watermark, so it would never apply. Set `on_violation: dlq` or `fail` for this "
            "table in cdc.yaml, or add a primary key at the source (ALTER TABLE ... ADD "
            "PRIMARY KEY) and re-snapshot the table"
        )
    return ""


def target_table(
    batch: TableBatch,
    schema: str,
    bookkeeping: str,
    column_type: Callable[[ColumnType], exp.DataType],
    value: StagedValue | None = None,
) -> TargetTable:
    """The statements' view of a batch's target table, checked (both adapters).

    Refuses what can't be replicated: an unknown mode (terminal), a source table without a
    primary key in mode ``scd2``, with soft deletes or quarantine (:func:`keyless_refusal`),
    or with
    columns named like the metadata or validity columns, a type the
    engine can't hold (the table is parked). History tables and hard-delete mirror tables
    keep delete markers in ``bookkeeping.<table>__deleted`` (so do tiered soft-delete mirror
    tables: tiering records there the deleted rows it moves out).
    """
    target, source = batch.target, batch.schema
    if target.mode not in ("mirror", "scd2"):
        raise TerminalWarehouseError(f"table {target.name!r}: mode {target.mode!r} unsupported")
    if not source.key and keyless_refusal(target):
        raise IncompatibleSchemaChangeError(
            f"table {target.name!r}: the source table {source.table} has no primary key, and "
            f"{keyless_refusal(target)}; the table is parked",
            table=target.name,
        )
    scd2 = target.scd2 if target.mode == "scd2" else None
    folded = case_collisions([*source.names, *sorted(reserved_columns(target))])
    if folded:
        shown = "; ".join(" and ".join(repr(n) for n in group) for group in folded)
        raise IncompatibleSchemaChangeError(
            f"table {target.name!r}: the source table {display(source.table)} has columns "
            f"whose names differ only in letter case ({shown}); warehouse names are compared "
            "ignoring case (DuckDB folds case even in quotes), so they would be one column. "
            "Nothing of the table was applied and it is parked. Rename one of them at the "
            "source (ALTER TABLE ... RENAME COLUMN), then restart `cdc run`",
            table=target.name,
        )
    clash = reserved_columns(target).intersection(source.names)
    if clash:
        raise IncompatibleSchemaChangeError(
            f"table {target.name!r}: source columns {sorted(clash)} collide with the "
            "metadata or validity columns; rename them in the table's settings "
            "(consumer.metadata_prefix, scd2.valid_from/valid_to/is_current)",
            table=target.name,
        )
    try:
        columns = tuple((c.name, column_type(c.type)) for c in source.columns)
    except IncompatibleSchemaChangeError as exc:
        exc.table = exc.table or target.name
        raise
    keeps = scd2 is not None or not target.soft_delete or target.tiered
    keep_markers = bool(source.key) and keeps
    return TargetTable(
        target=TableRef(schema, target.name),
        markers=TableRef(bookkeeping, f"{target.name}__deleted") if keep_markers else None,
        columns=columns,
        key=source.key,
        meta=target.metadata,
        soft_delete=target.soft_delete,
        scd2=scd2,
        value=value,
    )


def mode_switch_refused(
    m: TargetTable, rows: int, stored: str, wanted: str
) -> IncompatibleSchemaChangeError:
    """The error for a table holding rows of the other mode (mirror vs scd2)."""
    markers = f"{m.markers.schema}.{m.markers.name}" if m.markers else f"{m.target.name}__deleted"
    return IncompatibleSchemaChangeError(
        f"table {m.target.name!r} holds {rows} rows replicated in mode {stored!r}, but "
        f"cdc.yaml now says mode {wanted!r}; the two are not mixed and the table is "
        f"parked. To keep the old table, set its mode back. To switch, migrate: rename "
        f"or drop {m.target.schema}.{m.target.name} (and {markers}), then re-snapshot the "
        f"table so it is rebuilt in mode {wanted!r}",
        table=m.target.name,
    )


def history_table(target_: TableRef, key: Sequence[str], meta: MetadataColumns,
                  scd2: Scd2Options) -> TargetTable:  # fmt: skip
    """The statements' view of a registered history table (reads: key columns only)."""
    return TargetTable(target=target_, markers=None, columns=(), key=tuple(key), meta=meta,
                       soft_delete=False, scd2=scd2)  # fmt: skip
