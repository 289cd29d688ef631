"""The ``accounts`` table of the data-contract tests, shared by tests/unit/test_contracts.py and
tests/conformance/test_quarantine_contract.py: Debezium envelopes built here and decoded, so
the events carry the raw Kafka key and value the quarantine stores and a replay decodes again;
a cdc.yaml with the table's checks, and its validator and batches.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import textwrap
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from cdc.config import Config, parse_config
from cdc.contracts import Validator
from cdc.decoding import DEFAULT_TOAST_PLACEHOLDER, decode_message
from cdc.model import ChangeEvent
from warehouse.base import TableBatch

PARTS = json.loads(
    (Path(__file__).parent / "unit" / "fixtures" / "debezium" / "envelope_parts.json").read_text()
)
TOPIC = "cdc.public.accounts"
GROUP = "g"
TOAST = DEFAULT_TOAST_PLACEHOLDER  # what Debezium sends for an unchanged TOASTed value


# ------------------------------------------------------------------------------- envelopes


def _field(name: str, typ: str, logical: str | None = None, **params: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": typ, "optional": name != "id"}
    if logical:
        out.update(name=logical, version=1)
    if params:
        out["parameters"] = params
    out["field"] = name
    return out


COLUMNS = [
    _field("id", "int32", **{"__debezium.source.column.type": "INT4"}),
    _field("email", "string"),
    _field("balance", "int64"),
    _field("tier", "string"),
    _field(
        "price",
        "bytes",
        "org.apache.kafka.connect.data.Decimal",
        scale="2",
        **{"connect.decimal.precision": "10"},
    ),
    _field("born", "int32", "io.debezium.time.Date"),
    _field("note", "string"),
]
ROW_SCHEMA = {"type": "struct", "fields": COLUMNS, "optional": True, "name": f"{TOPIC}.Value"}
VALUE_SCHEMA = {
    "type": "struct",
    "fields": [
        {**ROW_SCHEMA, "field": "before"},
        {**ROW_SCHEMA, "field": "after"},
        PARTS["source_schema"],
        PARTS["transaction_schema"],
        *PARTS["trailing_fields"],
    ],
    "optional": False,
    "name": f"{TOPIC}.Envelope",
    "version": 2,
}
KEY_SCHEMA = {"type": "struct", "fields": [COLUMNS[0]], "optional": False, "name": f"{TOPIC}.Key"}


def _wire(row: dict[str, Any]) -> dict[str, Any]:
    """A row's values as Debezium's JsonConverter writes them."""
    out = dict(row)
    if isinstance(out.get("price"), str | Decimal):
        unscaled = int(Decimal(out["price"]).scaleb(2))
        raw = unscaled.to_bytes(unscaled.bit_length() // 8 + 1, "big", signed=True)
        out["price"] = base64.b64encode(raw).decode()
    if isinstance(out.get("born"), dt.date):
        out["born"] = (out["born"] - dt.date(1970, 1, 1)).days
    return out


def change(op: str, key: int, offset: int, partition: int = 0, **after: Any) -> ChangeEvent:
    """One decoded change of ``accounts`` at ``offset`` (its LSN grows with the offset).

    Columns not given are NULL; ``note=TOAST`` is an unchanged TOASTed value."""
    lsn = 10_000 + offset
    row = {c["field"]: None for c in COLUMNS} | {"id": key} | after
    payload = {
        "before": {c["field"]: None for c in COLUMNS} | {"id": key} if op == "d" else None,
        "after": None if op == "d" else _wire(row),
        "source": {
            **PARTS["source"],
            "table": "accounts",
            "lsn": lsn,
            "txId": lsn,
            "sequence": json.dumps([str(lsn), str(lsn)]),
            "ts_us": 1_795_594_583_000_000 + offset * 1_000_000,
            "snapshot": "false",
        },
        "transaction": None,
        "op": op,
        "ts_ms": 1,
        "ts_us": 1,
        "ts_ns": 1,
    }
    raw_key = json.dumps({"schema": KEY_SCHEMA, "payload": {"id": key}}).encode()
    raw_value = json.dumps({"schema": VALUE_SCHEMA, "payload": payload}).encode()
    event = decode_message(raw_key, raw_value, topic=TOPIC, partition=partition, offset=offset)
    assert isinstance(event, ChangeEvent)
    return event


# ---------------------------------------------------------------------------------- config

HEAD = """\
source: {{host: db, database: shop, user: u}}
kafka: {{bootstrap_servers: "k:9092"}}
warehouse: {{type: duckdb}}
tables:
  - name: public.accounts
    mode: {mode}
    on_violation: {on_violation}
    checks:
"""  # the first check entry is on line 9
FIRST_CHECK_LINE = 9


def yaml_text(checks: str, on_violation: str = "quarantine", mode: str = "mirror") -> str:
    body = textwrap.indent(textwrap.dedent(checks), "      ")
    return HEAD.format(mode=mode, on_violation=on_violation) + body


def config(checks: str, on_violation: str = "quarantine", mode: str = "mirror") -> Config:
    return parse_config(yaml_text(checks, on_violation, mode), file="cdc.yaml", env={})


def validator(cfg: Config) -> Validator:
    contract = cfg.contract_for(cfg.tables[0])
    assert contract is not None
    return Validator(contract)


def batch_of(cfg: Config, events: Sequence[ChangeEvent]) -> TableBatch:
    return TableBatch(cfg.table_target(cfg.tables[0]), events[-1].schema, list(events))


ACCOUNT_CHECKS = """\
- column: email
  not_null: true
  pattern: '^[^@]+@[^@]+$'
- column: balance
  '>=': 0
"""
EMAIL = "email: pattern ^[^@]+@[^@]+$"
BALANCE = "balance: >= 0"
