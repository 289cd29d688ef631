"""Names of source tables and columns, as cdc.yaml writes them and as the pieces downstream
(Debezium's filters and topics, the warehouse) see them. Pure: no I/O.

Rules (README, "Names"):

- A configured table is ``schema.table`` or ``table`` (schema ``public``). A part written
  plainly (a letter or ``_``, then letters, digits, ``_`` or ``$``) is taken as written, case
  kept. Any other name is written in PostgreSQL's quoted form: ``"Sales Data"."Order""Items"``
  (a doubled ``"`` is one ``"``; the quotes keep case, spaces, dots, reserved words, unicode).
  The keys ``schema:`` + ``table:`` hold the raw names instead, without quoting.
- :func:`display` is the canonical form (plain parts bare, others quoted); it parses back to
  the same table, and is what ``tables[].name`` holds once loaded.
- Debezium's topic of a table is ``<prefix>.<schema>.<table>`` with every character other
  than ``[A-Za-z0-9._-]`` replaced by ``_`` (one per UTF-16 unit, as Java counts them): two
  tables can share a topic, so the consumer takes the table from the envelope.
- Warehouse names are the source names unchanged (always quoted in SQL). Two warehouse names
  that differ only in letter case are the same name (DuckDB folds case even when quoted; the
  same rule applies on Snowflake, so a configuration works on both).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

from cdc.model import TableId

__all__ = [
    "BadNameError",
    "case_collisions",
    "debezium_carries",
    "display",
    "display_ident",
    "include_regex",
    "parse_table",
    "path_segment",
    "quote_ident",
    "signal_collection",
    "topic_name",
    "warehouse_key",
]

PLAIN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_TOPIC_CHAR_RE = re.compile(r"[A-Za-z0-9._-]")
PG_MAX_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL truncates longer names


class BadNameError(ValueError):
    """A table or column name that can't be read; the message says how to write it."""


def quote_ident(name: str) -> str:
    """PostgreSQL's quoted form of one identifier (``"`` doubled)."""
    return '"' + name.replace('"', '""') + '"'


def display_ident(name: str) -> str:
    """One identifier as cdc.yaml and messages write it: bare when plain, else quoted."""
    return name if PLAIN_RE.fullmatch(name) else quote_ident(name)


def display(table: TableId) -> str:
    """The canonical ``schema.table`` of a source table (parses back to ``table``)."""
    return f"{display_ident(table.schema)}.{display_ident(table.name)}"


def check_ident(name: str, what: str) -> str:
    """A raw PostgreSQL identifier, refused when PostgreSQL couldn't hold it as written."""
    if not name:
        raise BadNameError(f"{what} is empty")
    if "\x00" in name:
        raise BadNameError(f"{what} holds a NUL character, which PostgreSQL names can't")
    if len(name.encode()) > PG_MAX_BYTES:
        raise BadNameError(
            f"{what} {display_ident(name)} is longer than PostgreSQL's {PG_MAX_BYTES} bytes "
            "(PostgreSQL truncates such names: write the name as it is stored)"
        )
    return name


def _split(text: str) -> list[tuple[str, bool]]:
    """``text`` as (part, quoted) pairs separated by dots; raises BadNameError."""
    parts: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            j, buf = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise BadNameError(f"unterminated quoted name in {text!r}")
                buf.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            parts.append(("".join(buf), True))
        else:
            j = i
            while j < n and text[j] not in '."':
                j += 1
            part = text[i:j]
            if not PLAIN_RE.fullmatch(part):
                raise BadNameError(
                    f"{part!r} in {text!r} is not a plain name (a letter or _, then letters, "
                    'digits, _ or $): quote it, e.g. "Sales Data"."Order Items" (a " inside '
                    "is written twice), or use the keys schema: and table:"
                )
            parts.append((part, False))
            i = j
        if i == n:
            return parts
        if text[i] != ".":
            raise BadNameError(f"expected '.' after a quoted name in {text!r}")
        i += 1


def parse_table(text: str, default_schema: str = "public") -> TableId:
    """``schema.table`` or ``table`` (PostgreSQL quoting allowed) as a TableId."""
    parts = _split(text.strip()) if text.strip() else []
    if not 1 <= len(parts) <= 2:
        raise BadNameError(
            f"{text!r} must be 'schema.table' or 'table'; a name holding a dot, a space or "
            'a quote is written quoted: "Sales Data"."a.b"'
        )
    names = [check_ident(p, "a name") for p, _ in parts]
    return TableId(default_schema, names[0]) if len(names) == 1 else TableId(*names)


def sanitize_topic(name: str) -> str:
    """Debezium's topic name sanitising: each UTF-16 unit outside ``[A-Za-z0-9._-]`` -> ``_``."""
    out = []
    for ch in name:
        if _TOPIC_CHAR_RE.fullmatch(ch):
            out.append(ch)
        else:
            out.append("_" * (2 if ord(ch) > 0xFFFF else 1))
    return "".join(out)


def topic_name(prefix: str, table: TableId) -> str:
    """The topic Debezium writes ``table``'s changes to (its default naming strategy)."""
    return sanitize_topic(f"{prefix}.{table.schema}.{table.name}")


def _java_literal(text: str) -> str:
    """A Java regex matching exactly ``text``: ASCII letters, digits and ``_`` as they are,
    every other character as ``\\x{HEX}`` (so no comma, space or quote reaches Debezium's
    list parser, which splits on commas and trims spaces)."""
    return "".join(
        ch if ch.isascii() and (ch.isalnum() or ch == "_") else f"\\x{{{ord(ch):X}}}" for ch in text
    )


def include_regex(table: TableId) -> str:
    """One entry of Debezium's ``table.include.list``: exactly ``schema.table``, case
    included (Debezium compiles the list case-insensitively; ``(?-i:...)`` undoes that)."""
    return f"(?-i:{_java_literal(table.schema)}\\.{_java_literal(table.name)})"


_DBZ_QUOTES = "\"'`"


def debezium_identifier_parts(text: str) -> list[str]:
    """The parts Debezium's ``TableIdParser`` reads from ``text`` (split on dots outside
    quotes; ``"``, ``'`` or a backtick quote; whitespace outside quotes ends a part; every
    part then has ``''``, ``""`` and a doubled backtick undone); ValueError where it fails."""
    parts: list[str] = []
    i, n = 0, len(text)
    expect_part = True
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if not expect_part:
            if ch != ".":
                raise ValueError(f"unexpected input {ch!r}")
            expect_part, i = True, i + 1
            continue
        if ch == ".":
            raise ValueError("unexpected input '.'")
        if ch in _DBZ_QUOTES:
            j, buf = i + 1, []
            while True:
                if j >= n:
                    raise ValueError("unterminated quote")
                if text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:
                        buf.append(ch + ch)
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            token, i = "".join(buf), j + 1
        else:
            j = i
            while j < n and text[j] != "." and not text[j].isspace():
                j += 1
            token, i = text[i:j], j
        for q in "'\"`":
            token = token.replace(q + q, q)
        parts.append(token)
        expect_part = False
    if expect_part:
        raise ValueError("nothing after '.'" if parts else "empty")
    return parts


def debezium_carries(table: TableId) -> bool:
    """Whether Debezium's incremental snapshot can name ``table``: it keeps the tables of a
    running snapshot in its offsets as the raw ``schema.table`` and reads them back with
    ``TableId.parse``, which must give back the same schema and table: a name with a space, a
    leading or doubled quote fails to parse (the connector stops), one with a dot parses as
    ``catalog.schema.table`` (the snapshot's events then name another table)."""
    try:
        return debezium_identifier_parts(f"{table.schema}.{table.name}") == [
            table.schema,
            table.name,
        ]
    except ValueError:
        return False


def signal_collection(table: TableId) -> str:
    """The regex naming exactly ``table`` in an ``execute-snapshot`` signal, both as its
    ``data-collections`` entry and as an ``additional-conditions`` ``data-collection``.

    Debezium (3.6, ``AbstractIncrementalSnapshotChangeEventSource``) compiles each
    data-collections entry as a case-sensitive Java regex, full-matches it against the raw
    ``schema.table`` of every table it captures, and reads the matches with ``TableId.parse``;
    an additional condition's ``data-collection`` is a case-insensitive regex over that same
    string. :func:`include_regex` matches exactly one raw ``schema.table``, case included.

    Raises BadNameError when Debezium can't carry the table (:func:`debezium_carries`).
    """
    if not debezium_carries(table):
        raw = f"{table.schema}.{table.name}"
        raise BadNameError(
            f"Debezium's incremental snapshot can't name {display(table)}: it keeps the "
            f"tables of a snapshot as the raw text {raw!r} and reads that back wrong (a dot, a "
            "space, a leading or doubled quote); use the bulk method"
        )
    return include_regex(table)


def warehouse_key(name: str) -> str:
    """Two warehouse names are one name when their keys are equal (case folded)."""
    return name.lower()


def case_collisions(names: Iterable[str]) -> list[tuple[str, ...]]:
    """Groups of names (in the order given) that are one warehouse name."""
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):
        groups.setdefault(warehouse_key(name), []).append(name)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def path_segment(name: str) -> str:
    """A warehouse table name as one folder name of tier storage: percent-encoded (``/``,
    ``=``, spaces, quotes, non-ASCII...), plain names unchanged."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if set(name) <= {"."} else encoded
