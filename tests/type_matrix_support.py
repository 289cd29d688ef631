"""Machinery of the type matrix (``tests/integration/test_type_matrix.py``): the source tables,
reading each warehouse's values back as text, judging them with PostgreSQL's own reading of
the value, the Debezium schema seen on the topics, and the README table.

Every (type, value) is judged on the warehouse's value, never through our decoder: the value is
read with the warehouse's own driver, rendered as PostgreSQL input text, and PostgreSQL compares
``((rendered)::<type>)::text`` with ``v::text`` (numeric-like types, whose text keeps the scale,
also by ``=``; ``json``, which has no ``=``, as ``jsonb``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

# ---- outcomes --------------------------------------------------------------------------------

EXACT = "exact"
QUARANTINED = "quarantined"
REFUSED = "refused"  # the table is parked before any row is read
DEAD = "dead-lettered"
WRONG = "wrong value"
MISSING_COLUMN = "missing column"
MISSING_ROW = "missing row"
MISSING_TABLE = "missing table"
ERROR = "error"  # surfaced as an error (the run failed, or the value never arrived)
# Debezium itself fails on the value and retries forever, stopping every table: such values
# are kept out of the shared run (written nowhere) and only listed
FATAL = "stops Debezium"

WAREHOUSES = ("duckdb", "snowflake")

# row ids: value i (1-based) is written by each phase at base + i
PHASES = {"snapshot": 0, "insert": 100, "update": 200}
DELETE_IDS = {"delete (snapshot row)": 300, "delete (streamed row)": 301}
TOAST_IDS = {"toast (snapshot row)": 400, "toast (streamed row)": 401}
DELETE_VALUE = "(deleted)"
TOAST_VALUE = "(> 2 KB, untouched by an update)"


@dataclass(frozen=True)
class V:
    """One value of a type (SQL text, cast to the column type) and its expected outcomes."""

    sql: str
    duckdb: str = EXACT
    snowflake: str = EXACT
    override: str = EXACT  # expected in the `columns: {v: {type: text}}` copy of the table
    snapshot: str | None = None  # expected of the snapshot read, when it differs (Debezium)

    def expected(self, warehouse: str, phase: str = "") -> str:
        if phase == "snapshot" and self.snapshot is not None:
            return self.snapshot
        return self.duckdb if warehouse == "duckdb" else self.snowflake


@dataclass(frozen=True)
class T:
    """One source type: its table ``m_<name>``, values, and the type-level expectation."""

    name: str
    type: str
    values: tuple[V, ...]
    refused: str | None = None  # why the table is refused (all its values are then refused)
    toast: str | None = None  # SQL of a value > 2 KB (TOASTed), for the untouched-TOAST update
    note: str = ""  # for the README's outcome column
    display: str | None = None  # how the README names the type (default: `type`)
    replica_full: bool = False  # the table has REPLICA IDENTITY FULL

    @property
    def table(self) -> str:
        return f"m_{self.name}"

    @property
    def override_table(self) -> str:
        return f"m_{self.name}_t"

    def all_values(self) -> tuple[V, ...]:
        """The declared values written to the source, and NULL (expected exact unless the
        table is refused); values that stop Debezium are left out."""
        return (*(v for v in self.values if v.duckdb != FATAL), V("NULL"))

    def fatal_values(self) -> tuple[V, ...]:
        return tuple(v for v in self.values if v.duckdb == FATAL)

    def expected(self, value: V, warehouse: str, phase: str = "") -> str:
        return REFUSED if self.refused else value.expected(warehouse, phase)

    def needs_override(self) -> bool:
        """A text-override copy proves the quarantined values are then exact."""
        return not self.refused and any(QUARANTINED in (v.duckdb, v.snowflake) for v in self.values)

    def base(self) -> V | None:
        """A value expected exact everywhere (written first where an update needs a prior
        value: the NULL update, the deletes)."""
        for v in self.values:
            if v.duckdb == EXACT and v.snowflake == EXACT:
                return v
        return None


def V_(sql: str, both: str = EXACT, **kw: str) -> V:
    """A value with the same expectation on both warehouses (``kw`` overrides one)."""
    return V(sql, duckdb=kw.get("duckdb", both), snowflake=kw.get("snowflake", both),
             override=kw.get("override", EXACT), snapshot=kw.get("snapshot"))  # fmt: skip


# ---- the source ------------------------------------------------------------------------------


def create_statements(types: Sequence[T]) -> list[str]:
    out = []
    for t in types:
        tables = [t.table] + ([t.override_table] if t.needs_override() else [])
        for name in tables:
            out.append(f"CREATE TABLE {name} (id integer PRIMARY KEY, v {t.type}, note text)")
            if t.replica_full:
                out.append(f"ALTER TABLE {name} REPLICA IDENTITY FULL")
    return out


def _insert(table: str, type_: str, rows: Iterable[tuple[int, str]]) -> str:
    values = ", ".join(f"({i}, ({sql})::{type_}, 'n{i}')" for i, sql in rows)
    return f"INSERT INTO {table} (id, v, note) VALUES {values}"


def snapshot_statements(t: T, table: str) -> list[str]:
    """Rows present before Debezium starts (read by its snapshot)."""
    values = t.all_values()
    rows = [(PHASES["snapshot"] + i, v.sql) for i, v in enumerate(values, 1)]
    base = t.base()
    for i, v in enumerate(values, 1):  # the update rows' prior values
        prior = "NULL" if v.sql != "NULL" else (base.sql if base else None)
        if prior is not None:
            rows.append((PHASES["update"] + i, prior))
    if base is not None:
        rows.append((DELETE_IDS["delete (snapshot row)"], base.sql))
    if t.toast is not None:
        rows.append((TOAST_IDS["toast (snapshot row)"], t.toast))
    return [_insert(table, t.type, rows)]


def stream_statements(t: T, table: str) -> list[str]:
    """Changes made while Debezium streams: inserts, updates, deletes, untouched TOAST."""
    values = t.all_values()
    out = [_insert(table, t.type, [(PHASES["insert"] + i, v.sql) for i, v in enumerate(values, 1)])]
    base = t.base()
    for i, v in enumerate(values, 1):
        if v.sql != "NULL" or base is not None:
            out.append(
                f"UPDATE {table} SET v = ({v.sql})::{t.type}, note = 'u' "
                f"WHERE id = {PHASES['update'] + i}"
            )
    if base is not None:
        out.append(_insert(table, t.type, [(DELETE_IDS["delete (streamed row)"], base.sql)]))
        out.append(f"DELETE FROM {table} WHERE id IN ({', '.join(map(str, DELETE_IDS.values()))})")
    if t.toast is not None:
        out.append(_insert(table, t.type, [(TOAST_IDS["toast (streamed row)"], t.toast)]))
        # another column changes: Debezium sends the unchanged TOASTed value as a placeholder
        out.append(f"UPDATE {table} SET note = 'toast untouched' WHERE id >= 400 AND id < 500")
    return out


def expected_rows(t: T) -> list[tuple[int, str, str]]:
    """(row id, value label, phase) of every row the matrix judges."""
    out = []
    values = t.all_values()
    base = t.base()
    for i, v in enumerate(values, 1):
        for phase, offset in PHASES.items():
            if phase == "update" and v.sql == "NULL" and base is None:
                continue
            out.append((offset + i, v.sql, phase))
    if base is not None:
        out.extend((i, DELETE_VALUE, phase) for phase, i in DELETE_IDS.items())
    if t.toast is not None:
        out.extend((i, TOAST_VALUE, phase) for phase, i in TOAST_IDS.items())
    return out


# ---- warehouse values as PostgreSQL input text -----------------------------------------------


def _unbc(text: str) -> str:
    """DuckDB's '4713-01-01 (BC) 10:00:00' -> PostgreSQL's '4713-01-01 10:00:00 BC'."""
    return text.replace(" (BC)", "") + " BC" if " (BC)" in text else text


def pg_array(items: Sequence[Any]) -> str:
    """A PostgreSQL array literal of rendered elements (str or nested lists, None = NULL)."""
    parts = []
    for item in items:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, list):
            parts.append(pg_array(item))
        else:
            escaped = str(item).replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'"{escaped}"')
    return "{" + ",".join(parts) + "}"


def duckdb_render_expr(expr: str, dtype: str, depth: int = 0) -> str:
    """DuckDB SQL rendering a column of type ``dtype`` as text (lists as lists of text)."""
    if dtype.endswith("[]"):
        x = f"x{depth}"
        return f"list_transform({expr}, lambda {x}: {duckdb_render_expr(x, dtype[:-2], depth + 1)})"
    if dtype == "BLOB":
        return f"'\\x' || lower(hex({expr}))"
    return f"CAST({expr} AS VARCHAR)"


def duckdb_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return pg_array([_duck_elem(v) for v in value])
    return _unbc(str(value))


def _duck_elem(value: Any) -> Any:
    if isinstance(value, list):
        return [_duck_elem(v) for v in value]
    return None if value is None else _unbc(str(value))


def snowflake_text(value: Any, dtype: str, pg_kind: str = "") -> str | None:
    """A Snowflake connector value as PostgreSQL input text: arrays (ARRAY or VARIANT JSON
    text) as array literals, intervals (a VARIANT {months, days, micros}) as ISO 8601, TIME of
    a timetz column with its UTC offset. ``pg_kind``: "array", "interval", "timetz" or ""."""
    if value is None:
        return None
    if pg_kind.startswith("array") and isinstance(value, str) and value.lstrip().startswith("["):
        items = [_json_elem(v) for v in json.loads(value, parse_float=Decimal)]
        if pg_kind == "array:bytea":  # Snowflake's arrays hold bytea elements as hex
            items = [None if v is None else f"\\x{v}" for v in items]
        elif pg_kind == "array:timetz":  # and TIME elements of a timetz[] in UTC
            items = [None if v is None else f"{v}+00" for v in items]
        return pg_array(items)
    if pg_kind == "interval" and isinstance(value, str) and value.lstrip().startswith("{"):
        doc = json.loads(value)
        micros = int(doc["micros"])
        seconds = f"{abs(micros) // 1_000_000}.{abs(micros) % 1_000_000:06d}"
        return f"P{int(doc['months'])}M{int(doc['days'])}DT{'-' if micros < 0 else ''}{seconds}S"
    if pg_kind == "timetz":
        return _py_text(value) + "+00"
    return _py_text(value)


def _json_elem(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [_json_elem(v) for v in value]
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _py_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if hasattr(value, "isoformat"):
        try:
            return str(value.isoformat(sep=" "))
        except TypeError:  # date, time
            return str(value.isoformat())
    return str(value)


# ---- PostgreSQL's judgement ------------------------------------------------------------------

_NUMERIC_LIKE = """
WITH RECURSIVE b(oid, depth) AS (
    SELECT %s::regtype::oid, 0
    UNION ALL
    SELECT COALESCE(NULLIF(t.typbasetype, 0::oid), NULLIF(t.typelem, 0::oid),
                    r.rngsubtype, m.rngsubtype), depth + 1
    FROM b JOIN pg_type t ON t.oid = b.oid
    LEFT JOIN pg_range r ON r.rngtypid = t.oid
    LEFT JOIN pg_range m ON m.rngmultitypid = t.oid
    WHERE depth < 5 AND (t.typtype IN ('d', 'r', 'm') OR t.typcategory = 'A')
)
SELECT bool_or(t.typcategory = 'N' OR t.typname IN ('jsonb', 'timestamptz'))
FROM b JOIN pg_type t ON t.oid = b.oid
"""


@dataclass
class Judge:
    """Compares rendered warehouse values with the source, in PostgreSQL."""

    url: str
    _conn: psycopg.Connection[Any] | None = None
    _numeric: dict[str, bool] = field(default_factory=dict)

    def __enter__(self) -> Judge:
        self._conn = psycopg.connect(self.url, autocommit=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()

    def _one(self, query: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        assert self._conn is not None
        return self._conn.execute(query, params).fetchone()

    def source_text(self, table: str, row_id: int) -> tuple[bool, str | None]:
        """(row exists, v::text) at the source."""
        row = self._one(f"SELECT v::text FROM {table} WHERE id = %s", [row_id])
        return (row is not None, None if row is None else row[0])

    def equal(self, table: str, type_: str, row_id: int, text: str | None) -> tuple[bool, str]:
        """Whether the rendered warehouse value is the source's value; with PostgreSQL's
        reading of the warehouse value (or the cast's error) for the report."""
        if text is None:
            row = self._one(f"SELECT v IS NULL FROM {table} WHERE id = %s", [row_id])
            return (row is not None and bool(row[0]), "NULL")
        if type_ == "hstore[]":  # elements stored as Debezium's JSON of each hstore
            row = self._one(
                f"SELECT ARRAY(SELECT hstore_to_json(x)::jsonb FROM unnest(v) x) = "
                f"ARRAY(SELECT x::jsonb FROM unnest((%s)::text[]) x) FROM {table} WHERE id = %s",
                [text, row_id],
            )
            return (bool(row and row[0]), text)
        if type_ == "hstore":  # stored as Debezium's JSON of it (hstore.handling.mode=json)
            try:
                row = self._one(
                    f"SELECT hstore_to_json(v)::jsonb = (%s)::jsonb FROM {table} WHERE id = %s",
                    [text, row_id],
                )
            except psycopg.Error as exc:
                return (False, f"{text!r} (not JSON: {str(exc).splitlines()[0]})")
            return (bool(row and row[0]), text)
        try:
            row = self._one(
                f"SELECT ((%s)::{type_})::text, ((%s)::{type_})::text IS NOT DISTINCT FROM v::text "
                f"FROM {table} WHERE id = %s",
                [text, text, row_id],
            )
        except psycopg.Error as exc:
            return (False, f"{text!r} (not a {type_}: {str(exc).splitlines()[0]})")
        if row is None:
            return (False, "row gone at the source")
        read, same = row
        if same:
            return (True, read)
        if type_ == "json":
            row = self._one(
                f"SELECT (%s)::jsonb = v::jsonb FROM {table} WHERE id = %s", [text, row_id]
            )
            return (bool(row and row[0]), read)
        if type_ == "timetz[]":
            row = self._one(
                f"SELECT ARRAY(SELECT x AT TIME ZONE 'UTC' FROM unnest((%s)::timetz[]) x) = "
                f"ARRAY(SELECT x AT TIME ZONE 'UTC' FROM unnest(v) x) FROM {table} WHERE id = %s",
                [text, row_id],
            )
            return (bool(row and row[0]), read)
        if type_ == "timetz":  # Debezium sends timetz in UTC: the same time of day, offset +00
            row = self._one(
                f"SELECT ((%s)::timetz AT TIME ZONE 'UTC') = (v AT TIME ZONE 'UTC') "
                f"FROM {table} WHERE id = %s",
                [text, row_id],
            )
            return (bool(row and row[0]), read)
        if self._numeric_like(type_):
            row = self._one(
                f"SELECT ((%s)::{type_}) = v FROM {table} WHERE id = %s", [text, row_id]
            )
            return (bool(row and row[0]), read)
        return (False, read)

    def kind(self, type_: str) -> str:
        """ "array", "interval", "timetz" or "" for a type (domains followed to their base)."""
        row = self._one(
            "WITH RECURSIVE b(oid, d) AS (SELECT %s::regtype::oid, 0 UNION ALL "
            "SELECT t.typbasetype, d + 1 FROM b JOIN pg_type t ON t.oid = b.oid "
            "WHERE t.typtype = 'd' AND d < 5) "
            "SELECT t.typcategory, t.typname FROM b JOIN pg_type t ON t.oid = b.oid "
            "ORDER BY d DESC LIMIT 1",
            [type_],
        )
        if row is None:
            return ""
        if row[0] == "A":
            element = row[1].removeprefix("_")
            return f"array:{element}" if element in ("bytea", "timetz") else "array"
        return row[1] if row[1] in ("interval", "timetz") else ""

    def _numeric_like(self, type_: str) -> bool:
        if type_ not in self._numeric:
            row = self._one(_NUMERIC_LIKE, [type_])
            self._numeric[type_] = bool(row and row[0])
        return self._numeric[type_]


# ---- what happened ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    warehouse: str
    type: str  # T.name
    value: str  # the value's SQL (or DELETE_VALUE / TOAST_VALUE)
    phase: str
    table: str
    outcome: str
    detail: str = ""
    expected: str = EXACT

    @property
    def unexpected(self) -> bool:
        return self.outcome != self.expected


def short(text: str | None, limit: int = 60) -> str:
    if text is None:
        return "NULL"
    text = text.replace("\n", "\\n").replace("|", "\\|")
    return text if len(text) <= limit else f"{text[: limit - 12]}…({len(text)} chars)"


def debezium_field_type(messages: Iterable[Any]) -> str | None:
    """The Connect schema of column ``v`` in the first change event of a topic."""
    for m in messages:
        raw = m.value()
        if not raw:
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        for f in doc.get("schema", {}).get("fields", []):
            if f.get("field") in ("after", "before"):
                for col in f.get("fields", []):
                    if col.get("field") == "v":
                        return connect_type(col)
                return "(none: Debezium leaves the column out)"
    return None


def connect_type(schema: Mapping[str, Any]) -> str:
    name, kind = schema.get("name"), schema.get("type", "?")
    if kind == "array":
        return f"array<{connect_type(schema.get('items', {}))}>"
    if name:
        return f"{name} ({kind})"
    return str(kind)


# ---- the README table ------------------------------------------------------------------------

START = "<!-- type-matrix:start -->"
END = "<!-- type-matrix:end -->"


def outcome_summary(t: T, observations: Sequence[Observation]) -> str:
    """One README cell: `exact`, or which values end how, per warehouse."""
    if t.refused and all(o.outcome == REFUSED for o in observations):
        return f"refused (table parked): {t.refused}"
    groups: dict[tuple[str, str], list[str]] = {}
    for o in observations:
        if o.table != t.table or o.outcome == EXACT:
            continue
        label = o.value if o.value not in (DELETE_VALUE, TOAST_VALUE) else o.phase
        groups.setdefault((o.outcome, label), []).append(o.warehouse)
    if not groups:
        return "exact" + (f"; {t.note}" if t.note else "")
    by_outcome: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (outcome, label), whs in groups.items():
        key = (outcome, tuple(w for w in WAREHOUSES if w in whs))
        if label not in by_outcome.setdefault(key, []):
            by_outcome[key].append(label)
    parts = []
    for (outcome, whs_seen), labels in sorted(by_outcome.items()):
        where = " and ".join("DuckDB" if w == "duckdb" else "Snowflake" for w in whs_seen)
        shown = ", ".join(f"`{short(x, 40)}`" for x in labels[:6])
        more = f" (+{len(labels) - 6})" if len(labels) > 6 else ""
        text = f"{shown}{more}: {outcome} on {where}"
        if outcome == QUARANTINED and t.needs_override():
            text += " (exact with `columns: {<col>: {type: text}}`)"
        parts.append(text)
    others = "exact otherwise"
    return "; ".join(parts) + f"; {others}" + (f"; {t.note}" if t.note else "")


def readme_table(
    types: Sequence[T],
    observations: Sequence[Observation],
    connect: Mapping[str, str | None],
    columns: Mapping[tuple[str, str], str | None],
) -> str:
    """The markdown table between the README markers."""
    lines = [
        "| PostgreSQL | Debezium / Connect type | DuckDB | Snowflake | Outcome |",
        "|---|---|---|---|---|",
    ]
    for t in types:
        obs = [o for o in observations if o.type == t.name]
        cells = [
            f"`{t.display or t.type}`",
            _code(connect.get(t.name)),
            f"`{columns.get(('duckdb', t.name))}`" if columns.get(("duckdb", t.name)) else "—",
            f"`{columns.get(('snowflake', t.name))}`"
            if columns.get(("snowflake", t.name))
            else "—",
            outcome_summary(t, obs).replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _code(text: str | None) -> str:
    if not text:
        return "—"
    return text if text.startswith("(") else f"`{text}`"


def replace_section(readme: str, table: str) -> str:
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise AssertionError(f"docs/type-mapping.md has no {START} ... {END} section")
    return pattern.sub(lambda _: f"{START}\n{table}{END}", readme)


def current_section(readme: str) -> str | None:
    match = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), readme, re.S)
    return match.group(1) if match else None


def failure_table(observations: Sequence[Observation], limit: int = 400) -> str:
    bad = [o for o in observations if o.unexpected]
    lines = [f"{len(bad)} unexpected outcomes of {len(observations)}:",
             "warehouse | type | value | phase | expected | observed | detail"]  # fmt: skip
    for o in bad[:limit]:
        lines.append(
            f"{o.warehouse} | {o.table} | {short(o.value, 40)} | {o.phase} | {o.expected} | "
            f"{o.outcome} | {short(o.detail, 160)}"
        )
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more")
    return "\n".join(lines)
