"""The demo's source schema: a shop whose columns use the types replication gets wrong."""

from __future__ import annotations

from typing import Any

SHOP_TABLES = ("customers", "products", "orders", "order_items")

# The data contracts (`checks`, on_violation quarantine). The first version is stricter than
# the shop's data: an email's domain must have a top-level part, and an order's total can't be
# negative. The workload breaks both now and then: staff accounts use intranet addresses
# (user7@shop-intranet), and returns are booked as orders with a negative total.
EMAIL_STRICT = r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"
EMAIL_RELAXED = r"^[^@\s]+@[^@\s]+$"
TOTAL_STRICT: dict[str, Any] = {">=": 0}
TOTAL_RELAXED: dict[str, Any] = {">=": -1_000_000}


DEMO_TIERING = {"hot": "5s", "warm": "2m", "retention": "1h"}


def shop_table_config(
    *, email_pattern: str, order_total: dict[str, Any]
) -> tuple[dict[str, Any], ...]:
    """The cdc.yaml `tables` entries of the shop, with the given email and order-total checks.

    customers and products are SCD2 dimensions: customers opens a version when who the customer
    is changes (email, name, country, tier), while balance, notes etc. are updated in place on
    the current version; products keeps a version for every change of any column. Orders and
    their lines are facts: mirrored."""
    return (
        {
            "name": "public.customers",
            "mode": "scd2",
            "scd2": {"track": ["email", "name", "country", "tier"]},
            "checks": [{"column": "email", "not_null": True, "pattern": email_pattern}],
            "on_violation": "quarantine",
        },
        {
            "name": "public.products",
            "mode": "scd2",
            "checks": [{"column": "price", "not_null": True, "between": [0, 100_000]}],
            "on_violation": "quarantine",
            # the demo's tiering pass: a policy of seconds and minutes instead of days
            "tiering": DEMO_TIERING,
        },
        {
            "name": "public.orders",
            "checks": [
                {"column": "total", **order_total},
                {"column": "status", "allowed": ["new", "paid", "shipped", "cancelled"]},
            ],
            "on_violation": "quarantine",
        },
        {"name": "public.order_items"},
    )


# How each table is replicated (cdc.yaml `tables` entries), with the first, strict contract.
SHOP_TABLE_CONFIG = shop_table_config(email_pattern=EMAIL_STRICT, order_total=TOTAL_STRICT)

# The contract after reviewing the quarantine: intranet addresses and negative totals
# (returns) are valid data, so the two checks are relaxed; the demo replays the quarantined
# changes with it.
SHOP_RELAXED_TABLE_CONFIG = shop_table_config(
    email_pattern=EMAIL_RELAXED, order_total=TOTAL_RELAXED
)

SHOP_DDL = """
DROP TABLE IF EXISTS order_items, orders, products, customers CASCADE;
DROP TYPE IF EXISTS customer_tier, order_status CASCADE;
CREATE TYPE customer_tier AS ENUM ('bronze', 'silver', 'gold');
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');

CREATE TABLE customers (
    id          bigint PRIMARY KEY,
    email       varchar(120) NOT NULL,
    name        text,
    country     char(2),
    tier        customer_tier,
    balance     numeric(12, 2),
    credit      numeric,                 -- unconstrained: sent as its digits, DECIMAL(38,10)
    tags        text[],
    prefs       jsonb,
    last_ip     inet,
    created_at  timestamptz NOT NULL,
    birthday    date,
    avatar      bytea,
    notes       text,                    -- large values: TOASTed out of line
    updated_at  timestamp
);

CREATE TABLE products (
    sku          uuid PRIMARY KEY,
    name         varchar(200) NOT NULL,
    price        numeric(10, 2) NOT NULL,
    weight_kg    real,
    volume_l     double precision,
    attrs        json,
    available    boolean,
    warranty     interval,
    opens_at     time,
    pickup_at    timetz,
    ratings      integer[],
    stock        smallint,
    description  text                    -- large values: TOASTed out of line
);

CREATE TABLE orders (
    id           bigint PRIMARY KEY,
    customer_id  bigint NOT NULL,
    status       order_status NOT NULL,
    total        numeric(14, 2),
    placed_at    timestamptz NOT NULL,
    meta         jsonb
);

CREATE TABLE order_items (
    order_id  bigint,
    line      smallint,
    sku       uuid NOT NULL,
    qty       integer NOT NULL,
    price     numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, line)
);
"""
