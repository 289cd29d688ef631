"""Quarantine statements: rows that couldn't be applied, stored once per Kafka origin."""

from __future__ import annotations

from sqlglot import exp

from warehouse.sql.clauses import is_null, when_insert, when_update
from warehouse.sql.names import S, StageName, T, TableRef, col, stage_table

QUARANTINE_ORIGIN = ("topic", "partition", "offset")
QUARANTINE_COLUMNS = (
    "table_name", "key_json", "topic", "partition", "offset", "lsn", "op", "checks", "reason",
    "raw_key", "raw_value",
)  # fmt: skip


def origin_match() -> exp.Expr:
    return exp.and_(*[exp.EQ(this=col(k, T), expression=col(k, S)) for k in QUARANTINE_ORIGIN])


def quarantine_insert(ref: TableRef, stage: str) -> exp.Merge:
    """Store staged quarantine rows, once per origin (a redelivery adds nothing)."""
    pairs: list[tuple[str, exp.Expr]] = [(c, col(c, S)) for c in QUARANTINE_COLUMNS]
    pairs.append(("quarantined_at", exp.CurrentTimestamp()))
    return exp.Merge(
        this=ref.expr(T),
        using=stage_table(stage),
        on=origin_match(),
        whens=exp.Whens(expressions=[exp.When(matched=False, then=when_insert(pairs))]),
    )


def quarantine_resolve(ref: TableRef, stage: StageName) -> exp.Update:
    """Mark the staged origins replayed."""
    update = when_update([("replayed_at", exp.CurrentTimestamp())])
    update.set("this", ref.expr(T))
    update.set("from_", exp.From(this=stage_table(stage)))
    update.set("where", exp.Where(this=exp.and_(origin_match(), is_null(col("replayed_at", T)))))
    return update


def quarantine_open(ref: TableRef) -> exp.Select:
    """Per key of one table (bound: table name): partition and earliest open offset."""
    return (
        exp.select(col("key_json"), col("partition"), exp.Min(this=col("offset")))
        .from_(ref.expr())
        .where(
            exp.and_(
                exp.EQ(this=col("table_name"), expression=exp.Placeholder()),
                is_null(col("replayed_at")),
            )
        )
        .group_by(col("key_json"), col("partition"))
    )


def quarantine_open_rows(ref: TableRef) -> exp.Select:
    """Open quarantine rows of one table (bound: table name): key, topic, partition, offset."""
    return (
        exp.select(*map(col, ("key_json", *QUARANTINE_ORIGIN)))
        .from_(ref.expr())
        .where(
            exp.and_(
                exp.EQ(this=col("table_name"), expression=exp.Placeholder()),
                is_null(col("replayed_at")),
            )
        )
    )


def quarantine_list(ref: TableRef, table: bool, include_replayed: bool) -> exp.Select:
    """Quarantine rows in origin order (bound: the table name when ``table``)."""
    query = exp.select(*map(col, (*QUARANTINE_COLUMNS, "quarantined_at", "replayed_at")))
    query = query.from_(ref.expr())
    conds: list[exp.Expr] = []
    if table:
        conds.append(exp.EQ(this=col("table_name"), expression=exp.Placeholder()))
    if not include_replayed:
        conds.append(is_null(col("replayed_at")))
    if conds:
        query = query.where(exp.and_(*conds))
    return query.order_by(*map(col, QUARANTINE_ORIGIN))
