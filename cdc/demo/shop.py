"""The demo's source schema: a shop whose columns use the types replication gets wrong."""

from __future__ import annotations

from typing import Any

SHOP_TABLES = ("customers", "products", "orders", "order_items")

# How each table is replicated (cdc.yaml `tables` entries). customers and products are SCD2
# dimensions: customers opens a version when who the customer is changes (email, name,
# country, tier), while balance, notes etc. are updated in place on the current version;
# products keeps a version for every change of any column. Orders and their lines are facts:
# mirrored.
SHOP_TABLE_CONFIG: tuple[dict[str, Any], ...] = (
    {
        "name": "public.customers",
        "mode": "scd2",
        "scd2": {"track": ["email", "name", "country", "tier"]},
    },
    {"name": "public.products", "mode": "scd2"},
    {"name": "public.orders"},
    {"name": "public.order_items"},
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
    credit      numeric,                 -- unconstrained: Debezium's VariableScaleDecimal
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
