"""Statement builders: every statement is a sqlglot expression, rendered per dialect.

Identifiers are always quoted (:mod:`.names`, the one place that quotes); values never appear
in SQL text: rows reach the engine as a staged (registered) Arrow table whose columns follow
:class:`warehouse.arrow.Stage`, and the few scalar inputs are bound parameters
(``exp.Placeholder``). Nothing here is engine-specific beyond the default dialect, so every
engine's adapter reuses the builders and renders them with its own dialect.

One module per kind of statement:

- :mod:`.names`: identifiers, columns, tables, stages, :func:`render`;
- :mod:`.target`: the statements' view of a target table (:class:`TargetTable`);
- :mod:`.clauses`: small shared expression pieces (guards, MERGE clauses, counts, windows);
- :mod:`.ddl`: schemas, tables, columns; :mod:`.reads`: live rows, counts;
- :mod:`.mirror`: mirror apply (MERGE); :mod:`.logical_merge`: the same as UPDATE + INSERT;
- :mod:`.scd2`: history apply and reads; :mod:`.history`: history checks and repair;
- :mod:`.bookkeeping`: offsets, registry; :mod:`.quarantine`; :mod:`.audit`: reconcile runs;
- :mod:`.tiering`: lifecycle tiering (tier bookkeeping, moves, the history view);
- :mod:`.truncation`: TRUNCATE (set-based over the table) and the truncation marks;
- :mod:`.dropped`: columns dropped at the source (``on_column_drop``);
- :mod:`.keyless`: tables without a primary key (multiset apply, the table's watermark).

This package re-exports every builder.
"""

from __future__ import annotations

from warehouse.sql.audit import reconcile_insert, reconcile_latest
from warehouse.sql.bookkeeping import (
    OFFSET_KEY,
    REGISTRY_COLUMNS,
    register_table,
    select_offsets,
    upsert_offsets,
)
from warehouse.sql.ddl import (
    add_column,
    alter_column_type,
    create_schema,
    create_table,
    drop,
    drop_column,
    fill_column,
    table_columns,
)
from warehouse.sql.dropped import (
    count_holding,
    dropped_columns,
    null_columns,
    registered_reserved,
)
from warehouse.sql.history import (
    HISTORY_CHECKS,
    history_counts,
    history_examples,
    scd2_close_gaps,
)
from warehouse.sql.keyless import WATERMARK_COLUMNS
from warehouse.sql.logical_merge import (
    logical_guard_counts,
    logical_hard_delete,
    logical_insert_if_missing,
    logical_key_match,
    logical_markers_insert,
    logical_markers_update,
    logical_offsets_update,
    logical_prune_delete_markers,
    logical_quarantine_insert,
    logical_register_update,
    logical_soft_delete_insert,
    logical_soft_delete_update,
    logical_upsert_insert,
    logical_upsert_update,
)
from warehouse.sql.mirror import (
    guard_counts,
    hard_delete,
    mirror_upsert,
    prune_delete_markers,
    record_delete_markers,
    soft_delete,
)
from warehouse.sql.names import (
    Columns,
    D,
    S,
    StagedValue,
    StageName,
    T,
    TableRef,
    col,
    ident,
    render,
)
from warehouse.sql.quarantine import (
    QUARANTINE_COLUMNS,
    QUARANTINE_ORIGIN,
    quarantine_insert,
    quarantine_list,
    quarantine_open,
    quarantine_open_rows,
    quarantine_resolve,
)
from warehouse.sql.reads import count_rows, live_rows_count, newest_applied, select_live
from warehouse.sql.scd2 import (
    create_current_view,
    deleted_at,
    key_is_text,
    latest_rows,
    of_key,
    scd2_hwm,
    scd2_insert,
    scd2_meta_columns,
    scd2_remove,
    scd2_tail,
    scd2_update,
    select_history,
)
from warehouse.sql.target import (
    TargetTable,
    history_table,
    mode_switch_refused,
    reserved_columns,
    target_table,
)
from warehouse.sql.truncation import (
    TRUNCATION_LOG,
    record_truncation,
    registered_table,
    truncate_close,
    truncate_count,
    truncate_delete,
    truncate_flag_replaced,
    truncate_mark_deleted,
    truncate_prune_markers,
    truncate_remove_own,
    truncation_marks,
)

__all__ = [
    "HISTORY_CHECKS",
    "OFFSET_KEY",
    "QUARANTINE_COLUMNS",
    "QUARANTINE_ORIGIN",
    "REGISTRY_COLUMNS",
    "TRUNCATION_LOG",
    "WATERMARK_COLUMNS",
    "Columns",
    "D",
    "S",
    "StageName",
    "StagedValue",
    "T",
    "TableRef",
    "TargetTable",
    "add_column",
    "alter_column_type",
    "col",
    "count_holding",
    "count_rows",
    "create_current_view",
    "create_schema",
    "create_table",
    "deleted_at",
    "drop",
    "drop_column",
    "dropped_columns",
    "fill_column",
    "guard_counts",
    "hard_delete",
    "history_counts",
    "history_examples",
    "history_table",
    "ident",
    "key_is_text",
    "latest_rows",
    "live_rows_count",
    "logical_guard_counts",
    "logical_hard_delete",
    "logical_insert_if_missing",
    "logical_key_match",
    "logical_markers_insert",
    "logical_markers_update",
    "logical_offsets_update",
    "logical_prune_delete_markers",
    "logical_quarantine_insert",
    "logical_register_update",
    "logical_soft_delete_insert",
    "logical_soft_delete_update",
    "logical_upsert_insert",
    "logical_upsert_update",
    "mirror_upsert",
    "mode_switch_refused",
    "newest_applied",
    "null_columns",
    "of_key",
    "prune_delete_markers",
    "quarantine_insert",
    "quarantine_list",
    "quarantine_open",
    "quarantine_open_rows",
    "quarantine_resolve",
    "reconcile_insert",
    "reconcile_latest",
    "record_delete_markers",
    "record_truncation",
    "register_table",
    "registered_reserved",
    "registered_table",
    "render",
    "reserved_columns",
    "scd2_close_gaps",
    "scd2_hwm",
    "scd2_insert",
    "scd2_meta_columns",
    "scd2_remove",
    "scd2_tail",
    "scd2_update",
    "select_history",
    "select_live",
    "select_offsets",
    "soft_delete",
    "table_columns",
    "target_table",
    "truncate_close",
    "truncate_count",
    "truncate_delete",
    "truncate_flag_replaced",
    "truncate_mark_deleted",
    "truncate_prune_markers",
    "truncate_remove_own",
    "truncation_marks",
    "upsert_offsets",
]
