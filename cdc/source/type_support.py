"""The up-front type check: before any row moves, which configured tables hold a column whose
values can't be replicated exactly (:mod:`cdc.decoding.refusals`), or a column override that
can't apply. ``cdc run`` parks such tables from the start (the others flow), and
``cdc config check`` lists them; each message names the table, the column, the type and what
to do.
"""

from __future__ import annotations

from typing import Any

import psycopg
import structlog

from cdc.config import Config, TableConfig
from cdc.consumer.fitting import override_problem, override_type
from cdc.model import Kind
from cdc.source.catalog import (
    SourceTableError,
    column_refusals,
    primary_key,
    qualified,
    reflect_table,
    source_connection,
    source_dsn,
)
from warehouse.sql.target import keyless_refusal

log = structlog.get_logger("cdc.types")

MAX_DECIMAL_PRECISION = 38  # every engine's (warehouse.types)


def _override_problems(conn: psycopg.Connection[Any], table: TableConfig) -> list[str]:
    if not table.columns:
        return []
    try:
        schema = reflect_table(conn, table.source)
    except SourceTableError:
        return []  # the refusal (or a missing table) is reported on its own
    types = {c.name: c.type for c in schema.columns}
    out = []
    for name, override in table.columns.items():
        if name not in types:
            out.append(
                f"column override {name!r}: the source table has no such column "
                f"(columns: {', '.join(repr(n) for n in types)})"
            )
            continue
        problem = override_problem(types[name], override_type(override.type))
        if problem is not None:
            out.append(f"column override {name!r}: {problem}")
    return out


def _wide_decimals(conn: psycopg.Connection[Any], table: TableConfig) -> list[str]:
    try:
        schema = reflect_table(conn, table.source)
    except SourceTableError:
        return []
    return [
        f"column {c.name!r}: type numeric({c.type.precision},{c.type.scale}) has more digits "
        f"than a warehouse DECIMAL holds ({MAX_DECIMAL_PRECISION}). Set `columns: "
        f"{{{c.name!r}: {{type: text}}}}` (or a decimal(p,s) with p <= {MAX_DECIMAL_PRECISION} "
        "that holds its values) on this table in cdc.yaml"
        for c in schema.columns
        if c.type.kind is Kind.DECIMAL
        and (c.type.precision or 0) > MAX_DECIMAL_PRECISION
        and c.name not in table.columns
    ]


def _keyless_settings(
    config: Config, conn: psycopg.Connection[Any], table: TableConfig
) -> list[str]:
    """A table without a primary key is mirrored as a multiset: settings that need a key
    (mode scd2, soft_delete, quarantining contracts) are refused, and so are snapshot modes
    that snapshot a streamed table again."""
    why = keyless_refusal(config.table_target(table))
    if not why and config.source.snapshot_mode in ("always", "when_needed"):
        why = (
            f"source.snapshot_mode {config.source.snapshot_mode!r} lets Debezium snapshot it "
            "again after its changes streamed, which can't be applied exactly without a key "
            "(which streamed changes the snapshot holds is unknown). Set snapshot_mode "
            "'initial' (or 'no_data', 'never'), or add a primary key at the source"
        )
    exists = conn.execute("SELECT to_regclass(%s)", (qualified(table.source),)).fetchone()
    if not why or exists is None or exists[0] is None or primary_key(conn, table.source):
        return []
    return [f"the table has no primary key, and {why}"]


def table_problems(config: Config, conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """Configured table name -> why it can't be replicated exactly (only tables with
    problems). An override can't bring back what Debezium loses: refused types stay refused."""
    out: dict[str, list[str]] = {}
    for table in config.tables:
        problems = column_refusals(conn, table.source)
        problems += _keyless_settings(config, conn, table)
        problems += _wide_decimals(conn, table)
        problems += _override_problems(conn, table)
        if problems:
            out[table.name] = problems
    return out


def check_source_types(config: Config) -> dict[str, list[str]] | None:
    """:func:`table_problems` read from the configured source, or None (logged) when the
    source can't be reached: the decoder then refuses such columns message by message."""
    try:
        with source_connection(source_dsn(config.source)) as conn:
            return table_problems(config, conn)
    except psycopg.Error as exc:
        log.warning(
            "could not check the source's column types before starting; columns that can't "
            "be replicated exactly are refused message by message instead",
            error=str(exc).strip()[:300],
        )
        return None
