"""``cdc history``: every version of one key of an ``scd2`` table, oldest first.

The command itself lives with the others in ``cdc.cli``; this module finds the table, checks
the key against the table's key columns, fetches the versions and renders them (a rich table
or JSON lines). Failures are :class:`HistoryError` with the exit code the command uses.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rich.table import Table

from cdc.config import Config, TableConfig
from cdc.model import Interval
from warehouse.base import TableTarget, Warehouse, WarehouseError

# Exit codes of `cdc history` (also listed in its --help).
EXIT_NO_VERSIONS = 1
EXIT_USAGE = 2
EXIT_WAREHOUSE = 3


class HistoryError(Exception):
    """Why the versions can't be shown; ``code`` is the command's exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def find_table(config: Config, name: str) -> TableConfig:
    """The configured table named ``schema.table``, ``table`` (schema public; PostgreSQL's
    quoted form for other names) or by its warehouse table name."""
    try:
        return config.table(name)
    except KeyError:
        pass
    for table in config.tables:
        if table.target_name == name:
            return table
    configured = ", ".join(
        t.name if t.target_name == t.source.name else f"{t.name} (warehouse: {t.target_name})"
        for t in config.tables
    )
    raise HistoryError(
        f"table {name!r} is not configured; configured tables: {configured}", EXIT_USAGE
    )


def history_target(config: Config, table: TableConfig) -> TableTarget:
    """The table's target, refusing tables that keep no history."""
    if table.mode != "scd2":
        scd2 = [t.name for t in config.tables if t.mode == "scd2"]
        hint = f"scd2 tables here: {', '.join(scd2)}" if scd2 else "no table here is in mode scd2"
        raise HistoryError(
            f"table {table.name} is in mode {table.mode!r}: it keeps only the current rows, no "
            f"history. `cdc history` reads tables in mode 'scd2' ({hint})",
            EXIT_USAGE,
        )
    return config.table_target(table)


def _key_columns(warehouse: Warehouse, target: TableTarget) -> tuple[str, ...] | None:
    """The key columns of a replicated scd2 table (from the warehouse's table registry), or
    None when nothing has been replicated to it yet."""
    info = warehouse.registered(target.name)
    if info is None:
        return None
    if info.mode != "scd2":
        raise HistoryError(
            f"warehouse table {target.name!r} was replicated in mode {info.mode!r}, but "
            "cdc.yaml says scd2 (the consumer parks such a table until it is migrated); it "
            "has no history to show",
            EXIT_WAREHOUSE,
        )
    return info.key


def fetch_versions(
    config: Config, table_name: str, key: Sequence[str]
) -> tuple[TableTarget, list[dict[str, Any]]]:
    """The table's target and the key's versions, oldest first.

    Raises :class:`HistoryError`: table not configured or not scd2, wrong number of key values
    (usage, 2); no versions (1); the warehouse can't be read (3).
    """
    table = find_table(config, table_name)
    target = history_target(config, table)
    missing = config.warehouse.missing_store()
    if missing is not None:
        raise HistoryError(missing, EXIT_WAREHOUSE)
    from cdc.runtime import open_warehouse

    warehouse = open_warehouse(config)
    try:
        columns = _key_columns(warehouse, target)
        if columns is None:
            raise HistoryError(
                f"no versions: nothing has been replicated to table {target.name!r} yet",
                EXIT_NO_VERSIONS,
            )
        if len(key) != len(columns):
            raise HistoryError(
                f"table {table.name} has {len(columns)} key column(s) {', '.join(columns)}; "
                f"give one value for each, in that order (got {len(key)}: "
                f"{' '.join(map(repr, key))})",
                EXIT_USAGE,
            )
        rows = warehouse.fetch_history(target, key=list(key))
    except WarehouseError as exc:
        raise HistoryError(f"cannot read the warehouse: {exc}", EXIT_WAREHOUSE) from exc
    finally:
        warehouse.close()
    if not rows:
        shown = ", ".join(f"{c}={v}" for c, v in zip(columns, key, strict=True))
        raise HistoryError(f"no versions of {table.name} key {shown}", EXIT_NO_VERSIONS)
    return target, rows


# ---- rendering -------------------------------------------------------------------------------


def leading_columns(target: TableTarget) -> list[str]:
    """The columns shown first: validity, then the opening change's op and txid, the lsn."""
    v, m = target.scd2, target.metadata
    return [v.valid_from, v.valid_to, v.is_current, m.op, m.txid, m.lsn]


def data_columns(target: TableTarget, row: Mapping[str, Any]) -> list[str]:
    """The source table's columns of a version row, in table order."""
    m = target.metadata
    hidden = {
        *target.scd2.names,
        m.lsn,
        m.txid,
        m.op,
        m.source_ts,
        m.loaded_at,
        m.deleted,
        m.commit_lsn,
    }
    return [c for c in row if c not in hidden]


def _toward_zero(value: int, unit: int) -> tuple[int, int]:
    """(value // unit, rest), both rounded toward zero (parts keep the value's sign)."""
    whole = abs(value) // unit * (1 if value >= 0 else -1)
    return whole, value - whole * unit


def interval_text(value: Interval) -> str:
    """ISO 8601, as PostgreSQL prints it with ``intervalstyle = iso_8601`` (P1Y2M3DT4H5M6.7S;
    each part keeps its own sign, as in P-3M2DT-1.5S)."""
    years, months = _toward_zero(value.months, 12)
    hours, rest = _toward_zero(value.microseconds, 3_600_000_000)
    minutes, micros = _toward_zero(rest, 60_000_000)
    seconds = decimal.Decimal(micros).scaleb(-6).normalize()
    date = "".join(f"{n}{u}" for n, u in ((years, "Y"), (months, "M"), (value.days, "D")) if n)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M")) if n)
    time += f"{seconds:f}S" if micros else ""
    if not (date or time):
        return "PT0S"
    return f"P{date}{'T' + time if time else ''}"


def jsonable(value: Any) -> Any:
    """A value as JSON: exact numbers and UUIDs as strings, times in ISO 8601, bytes base64."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Interval):
        return interval_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def json_lines(target: TableTarget, rows: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    """One JSON object per version: the leading columns, the other metadata, the data."""
    m = target.metadata
    for row in rows:
        names = [*leading_columns(target), m.deleted, m.source_ts, *data_columns(target, row)]
        yield json.dumps({n: jsonable(row.get(n)) for n in names if n in row}, ensure_ascii=False)


def shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return f"{text[: max(width - 1, 1)]}… ({len(text)} chars)"


def display(value: Any, width: int) -> str:
    """A value as table text; long texts, byte strings and arrays shortened (numbers and
    times never: a shortened number would read as another number)."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        return shorten("\\x" + bytes(value).hex(), width)
    if isinstance(value, list | tuple):
        return shorten(json.dumps(jsonable(value), ensure_ascii=False), width)
    if isinstance(value, str):
        return shorten(value, width)
    if isinstance(value, Interval):
        return interval_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def versions_table(
    target: TableTarget, rows: Sequence[Mapping[str, Any]], key: Sequence[str], width: int
) -> Table:
    """The versions as a rich table; ``is_current`` also says when a version ended by a delete."""
    v, m = target.scd2, target.metadata
    noun = "version" if len(rows) == 1 else "versions"
    table = Table(title=f"{target.name} key {' '.join(key)}: {len(rows)} {noun}, oldest first")
    data = data_columns(target, rows[0])
    for name in [*leading_columns(target), *data]:
        table.add_column(name, overflow="fold")
    for row in rows:
        current = "true" if row.get(v.is_current) else "false"
        if row.get(m.deleted):
            current += " (deleted)"
        cells = [
            display(row.get(v.valid_from), width),
            display(row.get(v.valid_to), width),
            current,
            display(row.get(m.op), width),
            display(row.get(m.txid), width),
            display(row.get(m.lsn), width),
            *(display(row.get(c), width) for c in data),
        ]
        table.add_row(*cells)
    return table
