"""Before Debezium starts on the local stack: every configured table must be a table of the
source database.

Debezium starts without complaint for a table that doesn't exist (``table.include.list`` is
only a filter); its filtered publication is created without the table, and the table's changes
never arrive. ``cdc local up -c`` and ``cdc local restart debezium`` refuse such a config up
front, naming the tables and saying what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from cdc.config import Config
from cdc.model import TableId
from cdc.names import display

# pg_class.relkind of the tables Debezium publishes: ordinary and partitioned tables
PUBLISHABLE = ("r", "p")
RELKIND_NAMES = {
    "v": "a view",
    "m": "a materialized view",
    "f": "a foreign table",
    "S": "a sequence",
    "i": "an index",
    "I": "a partitioned index",
    "c": "a composite type",
    "t": "a TOAST table",
}

_RELKIND = (
    "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s"
)


@dataclass(frozen=True, slots=True)
class AbsentTable:
    """A configured table that is not a table of the source database."""

    table: TableId
    found: str | None = None  # what holds the name instead ("a view"), None: nothing

    def describe(self) -> str:
        what = "does not exist" if self.found is None else f"is {self.found}, not a table"
        return f"{display(self.table)} ({what})"


class MissingTablesError(Exception):
    """Configured tables that are not tables of the source database: Debezium must not start."""

    def __init__(self, database: str, absent: list[AbsentTable]) -> None:
        self.database = database
        self.absent = absent
        names = ", ".join(a.describe() for a in absent)
        super().__init__(
            f"{len(absent)} configured table(s) are not tables of the source database "
            f"{database!r}: {names}. Debezium would start without them and leave them out of "
            "its publication, so their changes would never arrive. Create them (with a primary "
            "key), or remove them from `tables` in the config"
        )


def absent_tables(config: Config, url: str) -> list[AbsentTable]:
    """The configured tables that are not ordinary or partitioned tables at ``url``, in the
    config's order."""
    absent = []
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        for table in config.tables:
            row = conn.execute(_RELKIND, (table.source.schema, table.source.name)).fetchone()
            if row is None:
                absent.append(AbsentTable(table.source))
            elif row[0] not in PUBLISHABLE:
                kind = str(row[0])
                absent.append(AbsentTable(table.source, RELKIND_NAMES.get(kind, f"relkind {kind}")))
    return absent


def require_source_tables(config: Config, url: str) -> None:
    """Raise :class:`MissingTablesError` unless every configured table is a table at ``url``."""
    absent = absent_tables(config, url)
    if absent:
        raise MissingTablesError(config.source.database, absent)
