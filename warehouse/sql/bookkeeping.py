"""Bookkeeping statements: consumer offsets and the table registry."""

from __future__ import annotations

from sqlglot import exp

from warehouse.sql.clauses import when_insert, when_update
from warehouse.sql.names import S, T, TableRef, col, ident, stage_table

OFFSET_KEY = ("consumer_group", "topic", "partition")


def upsert_offsets(offsets: TableRef, stage: str) -> exp.Merge:
    """Store next offsets, forward only: an older offset (a zombie consumer) changes nothing."""
    on = exp.and_(*[exp.EQ(this=col(k, T), expression=col(k, S)) for k in OFFSET_KEY])
    now = exp.CurrentTimestamp()
    return exp.Merge(
        this=offsets.expr(T),
        using=stage_table(stage),
        on=on,
        whens=exp.Whens(
            expressions=[
                exp.When(
                    matched=True,
                    condition=exp.GT(this=col("next_offset", S), expression=col("next_offset", T)),
                    then=when_update(
                        [
                            (
                                "next_offset",
                                exp.Greatest(
                                    this=col("next_offset", T), expressions=[col("next_offset", S)]
                                ),
                            ),
                            ("updated_at", now),
                        ]
                    ),
                ),
                exp.When(
                    matched=False,
                    then=when_insert(
                        [(k, col(k, S)) for k in (*OFFSET_KEY, "next_offset")]
                        + [("updated_at", now.copy())]
                    ),
                ),
            ]
        ),
    )


def select_offsets(offsets: TableRef) -> exp.Select:
    """(topic, partition, next_offset) of one consumer group (bound: group)."""
    return (
        exp.select(col("topic"), col("partition"), col("next_offset"))
        .from_(offsets.expr())
        .where(exp.EQ(this=col("consumer_group"), expression=exp.Placeholder()))
    )


REGISTRY_COLUMNS = ("table_name", "source_table", "mode", "schema_json")


def register_table(registry: TableRef) -> exp.Merge:
    """Upsert one table's registry row (bound: table_name, source_table, mode, schema_json)."""
    source = exp.select(
        *[exp.alias_(exp.Placeholder(), ident(c)) for c in REGISTRY_COLUMNS]
    ).subquery(S)
    pairs = [(c, col(c, S)) for c in REGISTRY_COLUMNS] + [("updated_at", exp.CurrentTimestamp())]
    return exp.Merge(
        this=registry.expr(T),
        using=source,
        on=exp.EQ(this=col("table_name", T), expression=col("table_name", S)),
        whens=exp.Whens(
            expressions=[
                exp.When(matched=True, then=when_update(pairs[1:])),
                exp.When(matched=False, then=when_insert(pairs)),
            ]
        ),
    )
