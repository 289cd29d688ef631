"""Pure planning of a bulk snapshot: key-range chunks, their SQL predicates, the plan's saved
form (for resuming), and the change events a chunk's rows become. No I/O.

A chunk is the half-open key range ``(lower, upper]`` in primary-key order (row-value
comparison, so composite keys work); the first chunk has no lower bound and the last no upper
bound, so together the chunks cover every key, also keys inserted while the snapshot runs.

The position of every snapshot row is the plan's ``lsn``: just below the oldest change of any
transaction that was still open when the snapshot was taken (the connector slot's
``restart_lsn``, read before the snapshot, minus one). The warehouse's position guard then lets
every change the snapshot could not see win over the snapshot's row (architecture.md §4,
invariant 2), including changes of a transaction that began before the snapshot and committed
after it; changes the snapshot did see and that arrive again replay values the stream brings
up to date anyway.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from psycopg import sql

from cdc.model import (
    Column,
    ColumnType,
    Kind,
    SourcePosition,
    TableSchema,
)

KeyValues = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Keys in ``(lower, upper]``; None: unbounded on that side."""

    index: int
    lower: KeyValues | None
    upper: KeyValues | None


def chunks_from_bounds(bounds: Sequence[KeyValues]) -> list[Chunk]:
    """Chunks split at ``bounds`` (ascending key values; each the last key of its chunk)."""
    edges: list[KeyValues | None] = [None, *bounds, None]
    return [Chunk(i, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def _row(key: Sequence[str]) -> sql.Composable:
    names = sql.SQL(", ").join(sql.Identifier(k) for k in key)
    return sql.SQL("({})").format(names) if len(key) > 1 else names


def _values(values: KeyValues) -> sql.Composable:
    literals = sql.SQL(", ").join(sql.Literal(v) for v in values)
    return sql.SQL("({})").format(literals) if len(values) > 1 else literals


def chunk_predicate(key: Sequence[str], chunk: Chunk) -> sql.Composable:
    """The chunk's range as a WHERE condition on the key columns (values as literals,
    quoted by psycopg)."""
    parts: list[sql.Composable] = []
    if chunk.lower is not None:
        parts.append(sql.SQL("{} > {}").format(_row(key), _values(chunk.lower)))
    if chunk.upper is not None:
        parts.append(sql.SQL("{} <= {}").format(_row(key), _values(chunk.upper)))
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")


def chunk_query(
    schema: TableSchema, chunk: Chunk, where: str | None = None, *, utc_text: bool = False
) -> sql.Composed:
    """``SELECT <columns> FROM <table> WHERE <chunk> [AND (<where>)]`` for COPY.

    ``utc_text``: timestamptz columns as UTC wall-clock time without an offset (``AT TIME
    ZONE 'UTC'``), the form Arrow's CSV reader takes (see ``warehouse.arrow.csv_columns``).
    """
    parts: list[sql.Composable] = []
    for c in schema.columns:
        ident = sql.Identifier(c.name)
        if utc_text and c.type.kind is Kind.TIMESTAMPTZ:
            parts.append(sql.SQL("({} AT TIME ZONE 'UTC')").format(ident))
        elif c.type.source_type == "MONEY":  # its text is locale-formatted ('$1,234.56')
            parts.append(sql.SQL("({}::numeric)").format(ident))
        else:
            parts.append(ident)
    cond = chunk_predicate(schema.key, chunk)
    if where:
        cond = sql.SQL("{} AND ({})").format(cond, sql.SQL(where))  # type: ignore[arg-type]
    return sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(parts), sql.Identifier(schema.table.schema, schema.table.name), cond
    )


def bounds_query(schema: TableSchema, rows_per_chunk: int) -> sql.Composed:
    """Every ``rows_per_chunk``-th key in key order (one index scan): the chunk bounds."""
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in schema.key)
    return sql.SQL(
        "SELECT {keys} FROM (SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS _rn "
        "FROM {table}) AS k WHERE _rn % {n} = 0 ORDER BY {keys}"
    ).format(
        keys=keys,
        table=sql.Identifier(schema.table.schema, schema.table.name),
        n=sql.Literal(rows_per_chunk),
    )


# ---- the saved plan -------------------------------------------------------------------------


def _to_json(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return {"t": type(value).__name__, "v": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"t": "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {"t": "uuid", "v": str(value)}
    if isinstance(value, bytes):
        return {"t": "bytes", "v": value.hex()}
    return value


_FROM_JSON: dict[str, Any] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
    "bytes": bytes.fromhex,
}


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        return _FROM_JSON[value["t"]](value["v"])
    return value


def _bound(values: KeyValues | None) -> list[Any] | None:
    return None if values is None else [_to_json(v) for v in values]


def _unbound(values: list[Any] | None) -> KeyValues | None:
    return None if values is None else tuple(_from_json(v) for v in values)


@dataclass(slots=True)
class SnapshotPlan:
    """A bulk snapshot of one table: its chunks and position; saved so a rerun resumes.

    ``id`` names the snapshot in the warehouse's offsets (group ``snapshot:<id>``, topic = the
    target table, partition = chunk index), written in the same transaction as the chunk's
    rows: a chunk is loaded exactly once.
    """

    id: str
    table: str  # source table, schema.name
    target: str
    where: str | None
    lsn: int
    commit_ts_us: int
    chunks: list[Chunk]
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    @property
    def group(self) -> str:
        return f"snapshot:{self.id}"

    def dumps(self) -> str:
        doc = asdict(self)
        doc["chunks"] = [
            {"index": c.index, "lower": _bound(c.lower), "upper": _bound(c.upper)}
            for c in self.chunks
        ]
        return json.dumps(doc, indent=1)

    @classmethod
    def loads(cls, text: str) -> SnapshotPlan:
        doc = json.loads(text)
        doc["chunks"] = [
            Chunk(c["index"], _unbound(c["lower"]), _unbound(c["upper"])) for c in doc["chunks"]
        ]
        return cls(**doc)


# ---- rows -> events -------------------------------------------------------------------------


def schema_with_key_not_null(schema: TableSchema) -> TableSchema:
    """Key columns are NOT NULL (a primary key), as Debezium describes them."""
    cols = tuple(
        Column(c.name, c.type, False, c.default) if c.name in schema.key else c
        for c in schema.columns
    )
    return TableSchema(schema.table, cols, schema.key)


def snapshot_position(lsn: int, commit_ts_us: int) -> SourcePosition:
    return SourcePosition(lsn=lsn, tx_id=None, commit_ts_us=commit_ts_us, snapshot=True)


def copy_types(schema: TableSchema) -> list[str]:
    """PostgreSQL type names for ``Copy.set_types``: the loaders that give each column its
    :mod:`cdc.model` representation (see :func:`cdc.compare.source_connection`)."""
    return [_copy_type(c.type) for c in schema.columns]


def _copy_type(ct: ColumnType) -> str:
    if ct.kind is Kind.ARRAY:
        assert ct.element is not None
        return _copy_type(ct.element) + "[]"
    return _COPY_TYPES[ct.kind]


# Text-like kinds (enums, inet, json...) load as their text output, exactly what Debezium sends.
_COPY_TYPES: dict[Kind, str] = {
    Kind.INT16: "int2",
    Kind.INT32: "int4",
    Kind.INT64: "int8",
    Kind.DECIMAL: "numeric",
    Kind.VARDECIMAL: "numeric",
    Kind.FLOAT32: "float4",
    Kind.FLOAT64: "float8",
    Kind.BOOLEAN: "bool",
    Kind.TEXT: "text",
    Kind.ENUM: "text",
    Kind.BYTES: "bytea",
    Kind.DATE: "date",
    Kind.TIME: "time",
    Kind.TIMETZ: "timetz",
    Kind.TIMESTAMP: "timestamp",
    Kind.TIMESTAMPTZ: "timestamptz",
    Kind.INTERVAL: "interval",
    Kind.UUID: "uuid",
    Kind.JSON: "text",
    Kind.ARRAY: "text",
}
