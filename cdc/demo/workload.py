"""A random DML workload on the shop: inserts, updates, deletes, multi-statement transactions,
changes to one key several times in a transaction, primary-key changes, and updates that leave
large (TOASTed) values untouched, so Debezium sends its unchanged-TOAST placeholder.

For the SCD2 dimensions (customers, products; see ``shop.SHOP_TABLE_CONFIG``) it also makes
history: customer updates that touch only untracked columns (in place) or also tracked ones (a
new version), a tracked value changed and put back in one transaction (no new version), deleted
keys that come back later, and keys deleted and re-inserted in one transaction.

With ``violations`` it also breaks the demo's first data contract (``shop.SHOP_TABLE_CONFIG``)
now and then, as the seeded random stream decides: about 1 in 250 customer rows gets a staff
intranet address (no top-level domain), and about 1 in 100 orders is a return with a negative
total. Half of those keys are changed again later (the customer rewritten, the order
cancelled), so there are changes waiting behind a quarantined one."""

from __future__ import annotations

import datetime as dt
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg
from psycopg.types.json import Json, Jsonb

# How often the workload breaks each check of the demo's first contract, when asked to.
BREAK_RATE = {"customers.email": 0.004, "orders.total": 0.01}

NASTY_TEXT = ["O'Reilly", 'say "hi"; DROP TABLE customers; --', "$$ dollar $$", "ünï©ødé ✓ 🚀", ""]


@dataclass
class WorkloadStats:
    transactions: int = 0
    changes: int = 0  # rows inserted, updated or deleted
    by_kind: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    violations: dict[str, int] = field(default_factory=dict)  # contract broken on purpose


class ShopWorkload:
    """Random transactions against the shop schema; keeps its own view of which keys exist."""

    def __init__(self, url: str, seed: int = 7, *, violations: bool = False) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.violations = violations
        self.breaking = False  # while run() runs with violations (not while seeding)
        self.revisit: list[tuple[str, int]] = []  # (table, key) to change again after a break
        self.customers: list[int] = []
        self.products: list[uuid.UUID] = []
        self.gone_customers: list[int] = []  # deleted; may come back
        self.gone_products: list[uuid.UUID] = []
        self.orders: dict[int, int] = {}  # order id -> number of lines
        self.next_id = 1
        self.stats = WorkloadStats()

    # ----------------------------------------------------------- value makers
    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _big_text(self) -> str:
        # random hex doesn't compress below the 2 kB TOAST threshold: stored out of line
        return self.rng.randbytes(6000).hex()

    def _text(self) -> str:
        return self.rng.choice(NASTY_TEXT) + f" #{self.rng.randint(0, 10**6)}"

    def _ts(self) -> dt.datetime:
        zone = dt.timezone(dt.timedelta(minutes=self.rng.choice([0, 60, 330, -480])))
        base = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        return (base + dt.timedelta(microseconds=self.rng.randint(0, 10**14))).astimezone(zone)

    def _money(self, digits: int) -> Decimal:
        return Decimal(self.rng.randint(-(10 ** (digits - 1)), 10**digits)) / 100

    def _break(self, check: str, table: str, key: int) -> bool:
        """Whether to break ``check`` this time; if so, count it and maybe revisit the key."""
        if not self.breaking or self.rng.random() >= BREAK_RATE[check]:
            return False
        self.stats.violations[check] = self.stats.violations.get(check, 0) + 1
        if self.rng.random() < 0.5:
            self.revisit.append((table, key))
        return True

    def _email(self, cid: int) -> str:
        if self._break("customers.email", "customers", cid):
            return f"user{cid}@shop-intranet"  # a staff account: no top-level domain
        return f"user{cid}@example.com"

    def _customer_row(self, cid: int) -> dict[str, object]:
        r = self.rng
        return {
            "id": cid,
            "email": self._email(cid),
            "name": self._text() if r.random() < 0.9 else None,
            "country": r.choice(["DE", "FR", "US", "JP", None]),
            "tier": r.choice(["bronze", "silver", "gold", None]),
            "balance": self._money(9),
            "credit": Decimal(r.randint(-(10**12), 10**12)) / Decimal(10) ** r.randint(0, 10)
            if r.random() < 0.8
            else None,
            "tags": r.choice([["a", "b c"], [], ["x", None, "quote'd"], None]),
            "prefs": Jsonb({"lang": r.choice(["en", "de"]), "n": r.randint(0, 9), "ü": [1, 2.5]})
            if r.random() < 0.8
            else None,
            "last_ip": r.choice(["10.0.0.1", "192.168.1.0/24", "::1", None]),
            "created_at": self._ts(),
            "birthday": dt.date(1900, 1, 1) + dt.timedelta(days=r.randint(0, 45000))
            if r.random() < 0.7
            else None,
            "avatar": r.randbytes(r.randint(0, 40)) if r.random() < 0.6 else None,
            "notes": self._big_text() if r.random() < 0.3 else self._text(),
            "updated_at": self._ts().replace(tzinfo=None),
        }

    def _product_row(self, sku: uuid.UUID) -> dict[str, object]:
        r = self.rng
        return {
            "sku": sku,
            "name": self._text(),
            "price": abs(self._money(7)),
            "weight_kg": r.choice([0.5, 1.25, 3.75, None]),
            "volume_l": r.random() * 100,
            "attrs": Json({"color": r.choice(["red", "blue"]), "size": r.randint(1, 5)}),
            "available": r.choice([True, False, None]),
            "warranty": r.choice(
                [
                    dt.timedelta(days=r.randint(0, 900), seconds=r.randint(0, 86399)),
                    "1 year 2 mons 3 days 04:05:06.789",
                    "-3 mons +2 days -00:00:01.5",
                    None,
                ]
            ),
            "opens_at": dt.time(r.randint(0, 23), r.randint(0, 59), 0, r.randint(0, 999999)),
            "pickup_at": dt.time(
                r.randint(0, 23),
                r.randint(0, 59),
                tzinfo=dt.timezone(dt.timedelta(hours=r.choice([0, 2, -5]))),
            ),
            "ratings": r.choice([[1, 2, 3], [5, None], None]),
            "stock": r.randint(-32768, 32767),
            "description": self._big_text() if r.random() < 0.5 else self._text(),
        }

    # ----------------------------------------------------------- transactions
    def _insert(self, cur: psycopg.Cursor[object], table: str, row: dict[str, object]) -> None:
        cols = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        cur.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))

    def _count(self, kind: str, n: int) -> None:
        self.stats.changes += n
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + n

    def tx_new_customer(self, cur: psycopg.Cursor[object]) -> None:
        cid = self._id()
        self._insert(cur, "customers", self._customer_row(cid))
        self.customers.append(cid)
        self._count("insert", 1)

    def tx_new_product(self, cur: psycopg.Cursor[object]) -> None:
        sku = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        self._insert(cur, "products", self._product_row(sku))
        self.products.append(sku)
        self._count("insert", 1)

    def tx_touch_customer(self, cur: psycopg.Cursor[object]) -> None:
        """Update a customer without touching `notes` (unchanged TOAST), up to three times:
        `balance` and `tags` (untracked: in place), sometimes `tier` too (a new version)."""
        if not self.customers:
            return self.tx_new_customer(cur)
        cid = self.rng.choice(self.customers)
        for _ in range(self.rng.choice([1, 1, 2, 3])):
            if self.rng.random() < 0.3:
                cur.execute(
                    "UPDATE customers SET balance = %s, tier = %s, tags = %s WHERE id = %s",
                    (self._money(9), self.rng.choice(["bronze", "gold"]), ["t", self._text()], cid),
                )
            else:
                cur.execute(
                    "UPDATE customers SET balance = %s, tags = %s WHERE id = %s",
                    (self._money(9), ["t", self._text()], cid),
                )
            self._count("update", cur.rowcount)
        return None

    def tx_tier_round_trip(self, cur: psycopg.Cursor[object]) -> None:
        """Change a customer's tier and put it back in one transaction (with a balance change
        between): one committed state, so no new version."""
        if not self.customers:
            return self.tx_new_customer(cur)
        cid = self.rng.choice(self.customers)
        cur.execute("SELECT tier FROM customers WHERE id = %s", (cid,))
        row = cur.fetchone()
        tier = row[0] if row else None  # type: ignore[index]
        other = "silver" if tier != "silver" else "gold"
        cur.execute("UPDATE customers SET tier = %s WHERE id = %s", (other, cid))
        self._count("update", cur.rowcount)
        cur.execute("UPDATE customers SET balance = %s WHERE id = %s", (self._money(9), cid))
        self._count("update", cur.rowcount)
        cur.execute("UPDATE customers SET tier = %s WHERE id = %s", (tier, cid))
        self._count("update", cur.rowcount)
        return None

    def tx_rewrite_customer(self, cur: psycopg.Cursor[object], cid: int | None = None) -> None:
        if not self.customers:
            return self.tx_new_customer(cur)
        if cid is None:
            cid = self.rng.choice(self.customers)
        row = self._customer_row(cid)
        sets = ", ".join(f"{c} = %s" for c in row if c != "id")
        cur.execute(f"UPDATE customers SET {sets} WHERE id = %s", [*list(row.values())[1:], cid])
        self._count("update", cur.rowcount)
        return None

    def tx_touch_product(self, cur: psycopg.Cursor[object]) -> None:
        """Update a product's price, stock and warranty, sometimes twice in one transaction;
        `description` untouched (unchanged TOAST)."""
        if not self.products:
            return self.tx_new_product(cur)
        sku = self.rng.choice(self.products)
        for _ in range(self.rng.choice([1, 1, 2])):
            cur.execute(
                "UPDATE products SET price = %s, stock = %s, warranty = %s WHERE sku = %s",
                (
                    abs(self._money(7)),
                    self.rng.randint(0, 100),
                    dt.timedelta(days=self.rng.randint(1, 60)),
                    sku,
                ),
            )
            self._count("update", cur.rowcount)
        return None

    def tx_delete_customer(self, cur: psycopg.Cursor[object]) -> None:
        if len(self.customers) < 5:
            return self.tx_new_customer(cur)
        cid = self.customers.pop(self.rng.randrange(len(self.customers)))
        cur.execute("DELETE FROM customers WHERE id = %s", (cid,))
        self._count("delete", cur.rowcount)
        self.gone_customers.append(cid)
        return None

    def tx_return_customer(self, cur: psycopg.Cursor[object]) -> None:
        """A deleted customer comes back (same id, new values)."""
        if not self.gone_customers:
            return self.tx_delete_customer(cur)
        cid = self.gone_customers.pop(self.rng.randrange(len(self.gone_customers)))
        self._insert(cur, "customers", self._customer_row(cid))
        self.customers.append(cid)
        self._count("reinsert", 1)
        return None

    def tx_replace_customer(self, cur: psycopg.Cursor[object]) -> None:
        """Delete a customer and insert it again in the same transaction."""
        if not self.customers:
            return self.tx_new_customer(cur)
        cid = self.rng.choice(self.customers)
        cur.execute("DELETE FROM customers WHERE id = %s", (cid,))
        self._count("delete", cur.rowcount)
        self._insert(cur, "customers", self._customer_row(cid))
        self._count("reinsert", 1)
        return None

    def tx_delete_product(self, cur: psycopg.Cursor[object]) -> None:
        if len(self.products) < 5:
            return self.tx_new_product(cur)
        sku = self.products.pop(self.rng.randrange(len(self.products)))
        cur.execute("DELETE FROM products WHERE sku = %s", (sku,))
        self._count("delete", cur.rowcount)
        self.gone_products.append(sku)
        return None

    def tx_return_product(self, cur: psycopg.Cursor[object]) -> None:
        """A deleted product comes back (same sku, new values)."""
        if not self.gone_products:
            return self.tx_delete_product(cur)
        sku = self.gone_products.pop(self.rng.randrange(len(self.gone_products)))
        self._insert(cur, "products", self._product_row(sku))
        self.products.append(sku)
        self._count("reinsert", 1)
        return None

    def tx_place_order(self, cur: psycopg.Cursor[object]) -> None:
        """A multi-statement transaction: an order and its lines, then a status change."""
        if not self.customers or not self.products:
            self.tx_new_customer(cur)
            return self.tx_new_product(cur)
        oid = self._id()
        lines = self.rng.randint(1, 4)
        total = Decimal(0)
        self._insert(
            cur,
            "orders",
            {
                "id": oid,
                "customer_id": self.rng.choice(self.customers),
                "status": "new",
                "total": None,
                "placed_at": self._ts(),
                "meta": Jsonb({"channel": self.rng.choice(["web", "app"])}),
            },
        )
        for line in range(1, lines + 1):
            price = abs(self._money(6))
            qty = self.rng.randint(1, 5)
            total += price * qty
            self._insert(
                cur,
                "order_items",
                {
                    "order_id": oid,
                    "line": line,
                    "sku": self.rng.choice(self.products),
                    "qty": qty,
                    "price": price,
                },
            )
        if self._break("orders.total", "orders", oid):
            total = -total  # a return
        cur.execute("UPDATE orders SET total = %s, status = 'paid' WHERE id = %s", (total, oid))
        self.orders[oid] = lines
        self._count("insert", 1 + lines)
        self._count("update", 1)
        return None

    def tx_renumber_order(self, cur: psycopg.Cursor[object]) -> None:
        """A primary-key change of an order and its lines."""
        if not self.orders:
            return self.tx_place_order(cur)
        old = self.rng.choice(list(self.orders))
        new = self._id()
        cur.execute("UPDATE orders SET id = %s WHERE id = %s", (new, old))
        self._count("pk_change", cur.rowcount)
        cur.execute("UPDATE order_items SET order_id = %s WHERE order_id = %s", (new, old))
        self._count("pk_change", cur.rowcount)
        self.orders[new] = self.orders.pop(old)
        return None

    def tx_cancel_order(self, cur: psycopg.Cursor[object], oid: int | None = None) -> None:
        if oid is None:
            if len(self.orders) < 3:
                return self.tx_place_order(cur)
            oid = self.rng.choice(list(self.orders))
        del self.orders[oid]
        cur.execute("UPDATE orders SET status = 'cancelled' WHERE id = %s", (oid,))
        self._count("update", cur.rowcount)
        cur.execute("DELETE FROM order_items WHERE order_id = %s", (oid,))
        self._count("delete", cur.rowcount)
        cur.execute("DELETE FROM orders WHERE id = %s", (oid,))
        self._count("delete", cur.rowcount)
        return None

    def tx_revisit(self, cur: psycopg.Cursor[object]) -> None:
        """Change a key again after it broke a check: a customer is rewritten, an order
        cancelled (nothing when no such key is waiting, or it is gone meanwhile)."""
        if not self.revisit:
            return None
        table, key = self.revisit.pop(0)
        if table == "customers" and key in self.customers:
            return self.tx_rewrite_customer(cur, key)
        if table == "orders" and key in self.orders:
            return self.tx_cancel_order(cur, key)
        return None

    # -------------------------------------------------------------------- run
    def seed(self, customers: int = 50, products: int = 30) -> None:
        with psycopg.connect(self.url) as conn, conn.cursor() as cur:
            for _ in range(customers):
                self.tx_new_customer(cur)
            for _ in range(products):
                self.tx_new_product(cur)
            self.stats.transactions += 1

    def run(
        self,
        *,
        seconds: float | None = None,
        changes: int | None = None,
        rate: float | None = None,
        on_progress: Callable[[WorkloadStats], None] | None = None,
    ) -> WorkloadStats:
        """Run random transactions until ``seconds`` pass or ``changes`` rows changed,
        at most ``rate`` transactions per second when given."""
        weighted: list[tuple[Callable[[psycopg.Cursor[object]], None], int]] = [
            (self.tx_new_customer, 10),
            (self.tx_new_product, 5),
            (self.tx_touch_customer, 20),
            (self.tx_tier_round_trip, 2),
            (self.tx_rewrite_customer, 6),
            (self.tx_touch_product, 10),
            (self.tx_delete_customer, 4),
            (self.tx_return_customer, 2),
            (self.tx_replace_customer, 2),
            (self.tx_delete_product, 2),
            (self.tx_return_product, 1),
            (self.tx_place_order, 20),
            (self.tx_renumber_order, 3),
            (self.tx_cancel_order, 5),
        ]
        if self.violations:
            weighted.append((self.tx_revisit, 1))
        funcs = [f for f, _ in weighted]
        weights = [w for _, w in weighted]
        started = time.monotonic()
        self.breaking = self.violations
        with psycopg.connect(self.url) as conn:
            while True:
                elapsed = time.monotonic() - started
                if seconds is not None and elapsed >= seconds:
                    break
                if changes is not None and self.stats.changes >= changes:
                    break
                with conn.transaction(), conn.cursor() as cur:
                    for fn in self.rng.choices(funcs, weights, k=self.rng.choice([1, 1, 2, 3])):
                        fn(cur)
                self.stats.transactions += 1
                if rate:
                    ahead = self.stats.transactions / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                if on_progress is not None and self.stats.transactions % 50 == 0:
                    on_progress(self.stats)
        self.breaking = False
        self.stats.seconds = time.monotonic() - started
        return self.stats


def jsonable(stats: WorkloadStats) -> str:
    return json.dumps(stats.__dict__)
